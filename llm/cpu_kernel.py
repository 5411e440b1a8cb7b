"""The CPU decode kernels (cpu_kernel.c): one token, or several tokens of a batch, through a
layer's chosen experts, read straight from MXFP4.

Why C: decoding one token on a CPU is bound by memory bandwidth, and a float32 copy of an expert
is 7.5 times the bytes of its MXFP4 blocks and scales. PyTorch has no kernel that multiplies
MXFP4 (or bfloat16) weights with float32 activations, so this one is ours. It is compiled on first
use with the system C compiler (`-march=native`: the machine it runs on) into a private temporary
directory; without a compiler, or with `RAGQA_CPU_KERNEL=false` (load_model's `cpu_kernel`), the
engine falls back to decoding experts into the cache and multiplying with PyTorch, with the same
results.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)
SOURCE = Path(__file__).with_name("cpu_kernel.c")
FLAGS = ("-O3", "-fopenmp", "-shared", "-fPIC")

_p = ctypes.c_void_p
_ARGTYPES: list[type[ctypes.c_void_p | ctypes.c_int | ctypes.c_float]] = [
    _p, ctypes.c_int, ctypes.c_int, ctypes.c_int, _p, _p, _p, _p, _p, _p, _p, _p, ctypes.c_float, ctypes.c_float, _p]

_i = ctypes.c_int
_BATCH_ARGTYPES: list[type[ctypes.c_void_p | ctypes.c_int | ctypes.c_float]] = [
    _p, _i, _i, _i, _i, _i, _p, _p, _p, _p, _p, _p, _p, _p, ctypes.c_float, ctypes.c_float, _p]

_ATTEND_ARGTYPES: list[type[ctypes.c_void_p | ctypes.c_int | ctypes.c_float]] = [
    _p, _p, _p, _p, _p, _i, _p, _p, _i, _i, _i, _i, _i, _p, ctypes.c_float, _p]


@cache
def load() -> ctypes.CDLL | None:
    """The kernel built for this machine, or None where it cannot be built (the caller falls back)."""
    return build("native")


def build(march: str) -> ctypes.CDLL | None:
    """Compile for `march` (native: AVX-512 where the CPU has it; x86-64-v2: the portable loop)."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        log.info("no C compiler: MoE decode uses the PyTorch path")
        return None
    folder = Path(tempfile.mkdtemp(prefix="ragqa-kernel-"))
    library = folder / "cpu_kernel.so"
    try:
        subprocess.run([compiler, *FLAGS, f"-march={march}", str(SOURCE), "-o", str(library), "-lm"],
                       check=True, capture_output=True, text=True, timeout=120)
        lib = ctypes.CDLL(str(library))
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        log.warning("CPU kernel not built (%s): MoE decode uses the PyTorch path", detail.strip()[:200])
        return None
    finally:  # the loaded library stays mapped; the file is no longer needed
        shutil.rmtree(folder, ignore_errors=True)
    lib.moe_one_token.argtypes = _ARGTYPES
    lib.moe_one_token.restype = ctypes.c_int
    lib.moe_batch.argtypes = _BATCH_ARGTYPES
    lib.moe_batch.restype = ctypes.c_int
    lib.attend_decode.argtypes = _ATTEND_ARGTYPES
    lib.attend_decode.restype = ctypes.c_int
    return lib


def kernel_tensors(gu_blocks: torch.Tensor, gu_scales: torch.Tensor, gu_bias: torch.Tensor, dn_blocks: torch.Tensor,
                   dn_scales: torch.Tensor, dn_bias: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """A layer's expert tensors as the kernel reads them: contiguous, biases in float32, and shapes
    checked against each other here, because C reads past a wrong shape instead of failing."""
    experts, rows, groups, width = gu_blocks.shape  # [E, 2I, hidden/32, 16]
    inter, hidden = rows // 2, groups * 32
    expected = {"gate_up_scales": (gu_scales.shape, (experts, rows, groups)),
                "gate_up_bias": (gu_bias.shape, (experts, rows)),
                "down_blocks": (dn_blocks.shape, (experts, hidden, inter // 32, 16)),
                "down_scales": (dn_scales.shape, (experts, hidden, inter // 32)),
                "down_bias": (dn_bias.shape, (experts, hidden))}
    if width != 16 or rows % 64:
        raise ValueError(f"gate_up blocks of shape {tuple(gu_blocks.shape)} are not MXFP4 [E, 2I, in/32, 16]")
    for name, (got, want) in expected.items():
        if tuple(got) != want:
            raise ValueError(f"{name} has shape {tuple(got)}, {want} expected")
    return (gu_blocks.contiguous(), gu_scales.contiguous(), gu_bias.float().contiguous(),
            dn_blocks.contiguous(), dn_scales.contiguous(), dn_bias.float().contiguous())


def moe_one_token(lib: ctypes.CDLL, x: torch.Tensor, experts: torch.Tensor, weights: torch.Tensor,
                  tensors: tuple[torch.Tensor, ...], limit: float, alpha: float) -> torch.Tensor:
    """x [hidden] float32, experts [K] int64, weights [K] float32 -> [hidden].
    tensors: the layer's expert tensors as `kernel_tensors` returns them."""
    hidden, inter = _check_moe(x, tensors)
    assert experts.dtype == torch.int64 and weights.dtype == torch.float32
    out = torch.zeros_like(x)
    _ok(lib.moe_one_token(x.data_ptr(), hidden, inter, experts.shape[0], experts.data_ptr(), weights.data_ptr(),
                          *_pointers(tensors), limit, alpha, out.data_ptr()))
    return out


def moe_batch(lib: ctypes.CDLL, x: torch.Tensor, experts: torch.Tensor, weights: torch.Tensor,
              tensors: tuple[torch.Tensor, ...], limit: float, alpha: float) -> torch.Tensor:
    """x [N, hidden] float32, experts [N, K] int64 (any order), weights [N, K] float32 -> [N, hidden]:
    each chosen expert read once for all the tokens routed to it (continuous batching).
    tensors: the layer's expert tensors as `kernel_tensors` returns them."""
    hidden, inter = _check_moe(x, tensors)
    n, num_experts = x.shape[0], tensors[0].shape[0]
    assert experts.dtype == torch.int64 and experts.is_contiguous() and experts.shape[0] == n
    assert weights.dtype == torch.float32 and weights.is_contiguous() and weights.shape == experts.shape
    if n and not 0 <= int(experts.min()) <= int(experts.max()) < num_experts:
        raise ValueError(f"expert ids outside 0..{num_experts - 1}")
    out = torch.zeros_like(x)
    _ok(lib.moe_batch(x.data_ptr(), n, hidden, inter, experts.shape[1], num_experts, experts.data_ptr(),
                      weights.data_ptr(), *_pointers(tensors), limit, alpha, out.data_ptr()))
    return out


def _check_moe(x: torch.Tensor, tensors: tuple[torch.Tensor, ...]) -> tuple[int, int]:
    """(hidden, intermediate) of the layer's expert tensors (as `kernel_tensors` returns them),
    checked against the activations x [..., hidden], float32 and contiguous."""
    gu_blocks, gu_bias, dn_blocks = tensors[0], tensors[2], tensors[3]
    hidden = x.shape[-1]
    if hidden != gu_blocks.shape[2] * 32:  # C would read past the activations
        raise ValueError(f"hidden size {hidden} does not match the experts' {gu_blocks.shape[2] * 32}")
    assert x.dtype == torch.float32 and x.is_contiguous() and gu_bias.dtype == torch.float32
    return hidden, dn_blocks.shape[2] * 32


def _pointers(tensors: tuple[torch.Tensor, ...]) -> list[int]:
    return [t.data_ptr() for t in tensors]


def _ok(status: int) -> None:
    if status != 0:
        raise MemoryError("CPU kernel: no memory for its scratch buffers")


def attend_decode(lib: ctypes.CDLL, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                  key_buffer: torch.Tensor, value_buffer: torch.Tensor, slots: torch.Tensor, positions: torch.Tensor,
                  window: int | None, sinks: torch.Tensor, scale: float) -> torch.Tensor:
    """Decode attention of B sequences, one new token each (continuous batching): q [B, H, D],
    the new keys and values [B, KV, D] written into their slots of the buffers [slots, KV, cap, D]
    at `positions` [B] (modulo the window on a sliding layer's ring), then attended with the
    sinks [H] -> [B, H, D]. Same arithmetic as model.Attention, in another summation order."""
    b, heads, d = q.shape
    kv_heads, cap = key_buffer.shape[1], key_buffer.shape[2]
    tensors = (q, keys, values, key_buffer, value_buffer, sinks)
    assert all(t.dtype == torch.float32 and t.is_contiguous() for t in tensors)
    assert slots.dtype == positions.dtype == torch.int64 and keys.shape == values.shape == (b, kv_heads, d)
    assert value_buffer.shape == key_buffer.shape and key_buffer.shape[3] == d and sinks.shape == (heads,)
    if b and (int(slots.max()) >= key_buffer.shape[0] or window is None and int(positions.max()) >= cap):
        raise ValueError("a slot or position lies outside the cache's buffers")
    out = torch.empty_like(q)
    _ok(lib.attend_decode(q.data_ptr(), keys.data_ptr(), values.data_ptr(), key_buffer.data_ptr(),
                          value_buffer.data_ptr(), cap, slots.contiguous().data_ptr(),
                          positions.contiguous().data_ptr(), b, heads, kv_heads, d, window or 0,
                          sinks.data_ptr(), scale, out.data_ptr()))
    return out
