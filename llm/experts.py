"""Expert weights kept MXFP4-quantized, decoded only when a step routes to them.

Each layer's experts stay as the checkpoint stores them (uint8 blocks and scales, about 4.25 bits
per weight). A step decodes the experts its tokens chose, on the device they live on (on CUDA the
decode runs on the GPU), and keeps the decoded weights in a least-recently-used cache bounded in
bytes (`RAGQA_EXPERT_CACHE_MB`; 0 decodes at every step). The whole model is decoded at once only
when the budget holds it all.

Decoding one token in float32 on the CPU skips decoding altogether: the C kernel in cpu_kernel.c
reads the chosen experts' MXFP4 blocks directly (a quarter of the bytes of bfloat16, an eighth of
float32), which is what bounds decode speed there. On CUDA every step skips it too: the Triton
kernels in triton_moe.py decode each weight tile in registers inside the matrix product, and the
cache stays empty.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
from collections import OrderedDict
from dataclasses import dataclass

import torch

from llm import cpu_kernel
from llm.mxfp4 import decode_expert

log = logging.getLogger(__name__)


@functools.cache
def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


@dataclass(frozen=True)
class DecodedExpert:
    gate_up: torch.Tensor  # [2I, hidden], rows interleave gate and linear
    gate_up_bias: torch.Tensor  # [2I]
    down: torch.Tensor  # [hidden, I]
    down_bias: torch.Tensor  # [hidden]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.gate_up, self.gate_up_bias, self.down, self.down_bias))


class ExpertCache:
    """Decoded experts, least recently used evicted first, within `budget_bytes`."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.used = 0
        self._items: OrderedDict[tuple[int, int, torch.dtype], DecodedExpert] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: tuple[int, int, torch.dtype]) -> DecodedExpert | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
            self.hits += 1
        else:
            self.misses += 1
        return item

    def put(self, key: tuple[int, int, torch.dtype], item: DecodedExpert) -> None:
        size = item.nbytes()
        if size > self.budget:
            return
        while self.used + size > self.budget and self._items:
            _, old = self._items.popitem(last=False)
            self.used -= old.nbytes()
        self._items[key] = item
        self.used += size


class ExpertWeights:
    """One layer's experts, quantized."""

    def __init__(self, layer: int, gate_up_blocks: torch.Tensor, gate_up_scales: torch.Tensor,
                 gate_up_bias: torch.Tensor, down_blocks: torch.Tensor, down_scales: torch.Tensor,
                 down_bias: torch.Tensor, cache: ExpertCache, use_kernel: bool = True,
                 use_triton: bool | None = None) -> None:
        """use_kernel: the CPU C kernel for one-token steps. use_triton: the Triton kernels of
        llm/triton_moe.py for every step (None: on CUDA where Triton is installed; True: also on
        the CPU, which only Triton's interpreter can run, for tests; False: never)."""
        # blocks [E, out, in/32, 16] uint8, scales [E, out, in/32] uint8, bias [E, out]
        self.layer = layer
        self.gate_up_blocks, self.gate_up_scales, self.gate_up_bias = gate_up_blocks, gate_up_scales, gate_up_bias
        self.down_blocks, self.down_scales, self.down_bias = down_blocks, down_scales, down_bias
        self.cache = cache
        self.use_kernel = use_kernel
        self.use_triton = use_triton
        self.triton_error: str | None = None  # why the Triton path was given up, if it was
        self._kernel_tensors: tuple[torch.Tensor, ...] | None = None
        self._biases: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def num_experts(self) -> int:
        return int(self.gate_up_blocks.shape[0])

    def get(self, expert: int, dtype: torch.dtype) -> DecodedExpert:
        key = (self.layer, expert, dtype)
        item = self.cache.get(key)
        if item is None:
            item = DecodedExpert(
                gate_up=decode_expert(self.gate_up_blocks[expert], self.gate_up_scales[expert], dtype),
                gate_up_bias=self.gate_up_bias[expert].to(dtype),
                down=decode_expert(self.down_blocks[expert], self.down_scales[expert], dtype),
                down_bias=self.down_bias[expert].to(dtype),
            )
            self.cache.put(key, item)
        return item

    def _kernel(self, x: torch.Tensor) -> tuple[ctypes.CDLL, tuple[torch.Tensor, ...]] | None:
        """The C kernel and this layer's tensors as it reads them, where it applies to x (float32
        on the CPU, use_kernel) and is built; else None."""
        if not self.use_kernel or x.dtype != torch.float32 or x.device.type != "cpu":
            return None
        lib = cpu_kernel.load()
        if lib is None:
            return None
        if self._kernel_tensors is None:  # biases in float32 once (a few KB per layer)
            self._kernel_tensors = cpu_kernel.kernel_tensors(
                self.gate_up_blocks, self.gate_up_scales, self.gate_up_bias, self.down_blocks, self.down_scales,
                self.down_bias)
        return lib, self._kernel_tensors

    def one_token(self, x: torch.Tensor, experts: torch.Tensor, weights: torch.Tensor, limit: float,
                  alpha: float) -> torch.Tensor | None:
        """x [hidden] float32 on the CPU through `experts` [K] (ascending), weighted by
        `weights` [K], by the C kernel; None where the kernel does not apply or is not built."""
        kernel = self._kernel(x)
        if kernel is None:
            return None
        return cpu_kernel.moe_one_token(kernel[0], x.contiguous(), experts.to(torch.int64).contiguous(),
                                        weights.float().contiguous(), kernel[1], limit, alpha)

    def batch(self, x: torch.Tensor, experts: torch.Tensor, weights: torch.Tensor, limit: float,
              alpha: float) -> torch.Tensor | None:
        """x [N, hidden] float32 on the CPU through `experts` [N, K] (any order), weighted by
        `weights` [N, K], by the C kernel, each chosen expert read once for all its tokens; None
        where the kernel does not apply or is not built."""
        kernel = self._kernel(x)
        if kernel is None:
            return None
        return cpu_kernel.moe_batch(kernel[0], x.contiguous(), experts.contiguous(), weights.float().contiguous(),
                                    kernel[1], limit, alpha)

    def triton_applies(self, x: torch.Tensor) -> bool:
        if self.use_triton is False or self.triton_error is not None:
            return False
        return self.use_triton is True or (x.device.type == "cuda" and triton_installed())

    def fused(self, x: torch.Tensor, experts: torch.Tensor, weights: torch.Tensor, limit: float,
              alpha: float) -> torch.Tensor | None:
        """The whole layer for x [N, hidden] routed to experts [N, K] with weights [N, K] by the
        Triton kernels, straight from MXFP4 (no decoded copy); None where they do not apply. If
        Triton fails (no compiler for its launcher, say), the layer says why once and falls back
        to the decoded-expert path for good."""
        if not self.triton_applies(x):
            return None
        from llm import triton_moe

        if x.dtype not in self._biases:  # biases in the activations' dtype once (a few KB per layer)
            self._biases[x.dtype] = (self.gate_up_bias.to(x.dtype), self.down_bias.to(x.dtype))
        gate_up_bias, down_bias = self._biases[x.dtype]
        try:
            return triton_moe.moe_mxfp4(x, experts, weights.to(x.dtype), self.gate_up_blocks, self.gate_up_scales,
                                        gate_up_bias, self.down_blocks, self.down_scales, down_bias, limit, alpha)
        except Exception as exc:  # Triton's compile and launch errors have no common type
            if self.use_triton is True:
                raise
            self.triton_error = f"{type(exc).__name__}: {exc}"
            log.warning("layer %d: the Triton MoE kernel failed (%s); using decoded experts instead",
                        self.layer, self.triton_error)
            return None

    def to(self, device: torch.device) -> ExpertWeights:
        return ExpertWeights(self.layer, self.gate_up_blocks.to(device), self.gate_up_scales.to(device),
                             self.gate_up_bias.to(device), self.down_blocks.to(device), self.down_scales.to(device),
                             self.down_bias.to(device), cache=self.cache, use_kernel=self.use_kernel,
                             use_triton=self.use_triton)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (
            self.gate_up_blocks, self.gate_up_scales, self.gate_up_bias, self.down_blocks, self.down_scales,
            self.down_bias))
