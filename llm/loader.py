"""Checkpoint directory -> a ready GptOss on a device, after checking that it fits."""

from __future__ import annotations

from pathlib import Path

import torch

from llm.checkpoint import Checkpoint, MemoryEstimate, ensure_fits, estimate_memory
from llm.config import GptOssConfig
from llm.errors import CheckpointError
from llm.experts import ExpertCache, ExpertWeights, triton_installed
from llm.model import GptOss, yarn_inverse_frequencies

EXPERT_TENSORS = ("gate_up_proj_blocks", "gate_up_proj_scales", "gate_up_proj_bias",
                  "down_proj_blocks", "down_proj_scales", "down_proj_bias")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CheckpointError("RAGQA_GENERATOR_DEVICE asks for CUDA, but no GPU is available")
    return torch.device(device)


def resolve_dtype(name: str | None, device: torch.device) -> torch.dtype:
    """bfloat16 on a GPU (float16 overflows in this model), float32 on the CPU, unless asked."""
    if not name or name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    if name not in table:
        raise CheckpointError(f"unsupported dtype {name!r}: use float32 or bfloat16")
    return table[name]


def load_model(folder: Path, *, device: str = "auto", dtype: str | None = None, expert_cache_mb: float = 1024.0,
               context: int = 8192, cpu_kernel: bool = True, triton: bool = True,
               ) -> tuple[GptOss, Checkpoint, MemoryEstimate]:
    """cpu_kernel: decode single tokens on the CPU straight from MXFP4 (llm/cpu_kernel.c) where
    it can be built; False keeps every step on the decoded-expert cache. triton: on CUDA, run
    the experts through llm/triton_moe.py straight from MXFP4 where Triton is installed (the
    expert blocks stay on the GPU and no decoded copy is made); False decodes them into the cache."""
    ckpt = Checkpoint(folder)
    config = ckpt.config
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    fused = triton and dev.type == "cuda" and triton_installed()
    # The fused path keeps no decoded experts: the cache is not budgeted (it only fills if
    # Triton fails at run time, and stays within expert_cache_mb then).
    estimate = estimate_memory(config, dt, 0.0 if fused else expert_cache_mb, context=context)
    ensure_fits(estimate, dev)
    cache = ExpertCache(int(expert_cache_mb * 1024 * 1024))
    experts = [_layer_experts(ckpt, i, dev, cache, cpu_kernel, None if fused else False)
               for i in range(config.num_layers)]
    with torch.device("meta"):
        model = GptOss(config, experts)
    model = model.to_empty(device=dev)
    for name, param in model.named_parameters():
        source = ckpt.tensor(name if name.startswith("lm_head") else f"model.{name}")
        if tuple(source.shape) != tuple(param.shape):
            raise CheckpointError(
                f"{name}: shape {tuple(source.shape)} in the checkpoint, {tuple(param.shape)} expected")
        keep_fp32 = name.endswith("layernorm.weight") or name == "norm.weight"
        param.data = source.to(device=dev, dtype=torch.float32 if keep_fp32 else dt)
    model.rotary.inv_freq = yarn_inverse_frequencies(config).to(dev)
    model.eval().fuse()
    return model, ckpt, estimate


def _layer_experts(ckpt: Checkpoint, layer: int, device: torch.device, cache: ExpertCache,
                   use_kernel: bool, use_triton: bool | None) -> ExpertWeights:
    """One layer's experts, as stored (uint8 blocks and scales), on the device; contiguous, as
    the kernels index them by their shape."""
    prefix = f"model.layers.{layer}.mlp.experts."
    tensors = []
    for name, shape in zip(EXPERT_TENSORS, _expert_shapes(ckpt.config)):
        t = ckpt.tensor(prefix + name)
        if name.endswith(("_blocks", "_scales")) and t.dtype != torch.uint8:
            raise CheckpointError(f"{prefix + name} is {t.dtype}, not MXFP4 (uint8)")
        if tuple(t.shape) != shape:  # the kernels index by these shapes: refuse, never read past the end
            raise CheckpointError(f"{prefix + name}: shape {tuple(t.shape)} in the checkpoint, {shape} expected")
        tensors.append(t.to(device).contiguous())
    gate_up_blocks, gate_up_scales, gate_up_bias, down_blocks, down_scales, down_bias = tensors
    return ExpertWeights(layer, gate_up_blocks, gate_up_scales, gate_up_bias, down_blocks, down_scales, down_bias,
                         cache=cache, use_kernel=use_kernel, use_triton=use_triton)


def _expert_shapes(config: GptOssConfig) -> tuple[tuple[int, ...], ...]:
    """The shapes of EXPERT_TENSORS, in order, as the published layout has them."""
    e, h, i = config.num_experts, config.hidden_size, config.intermediate_size
    return ((e, 2 * i, h // 32, 16), (e, 2 * i, h // 32), (e, 2 * i), (e, h, i // 32, 16), (e, h, i // 32), (e, h))
