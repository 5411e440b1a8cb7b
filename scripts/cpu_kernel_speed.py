"""Time the CPU decode kernel (llm/cpu_kernel.c) on one checkpoint's experts, per build.

    python scripts/cpu_kernel_speed.py MODEL_DIR [--march native --march x86-64-v3 ...] [--calls 200]

One call = one token through one layer's top-k experts (the layers are cycled, so weights come
from memory rather than cache). The PyTorch path (float32 GEMVs on decoded experts) is timed
the same way for comparison.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

from llm import cpu_kernel
from llm.loader import load_model
from llm.model import clamped_swiglu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("--march", action="append", default=None)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    net, _, _ = load_model(args.model, device="cpu", dtype="float32", expert_cache_mb=1 << 20, cpu_kernel=False)
    layers = [block.mlp for block in net.blocks()]
    cfg = net.config
    x = torch.randn(cfg.hidden_size, generator=torch.Generator().manual_seed(0))
    experts = torch.arange(cfg.experts_per_token) * (cfg.num_experts // cfg.experts_per_token)
    weights = torch.full((cfg.experts_per_token,), 1.0 / cfg.experts_per_token)
    tensors = [(m.experts.gate_up_blocks, m.experts.gate_up_scales, m.experts.gate_up_bias.float(),
                m.experts.down_blocks, m.experts.down_scales, m.experts.down_bias.float()) for m in layers]

    def timed(step: Callable[[int], object]) -> float:
        for i in range(len(layers)):
            step(i)
        t0 = time.perf_counter()
        for i in range(args.calls):
            step(i % len(layers))
        return (time.perf_counter() - t0) / args.calls * 1e6

    for march in args.march or ["native"]:
        lib = cpu_kernel.build(march)
        if lib is None:
            print(f"{march}: not built")
            continue
        # timed() calls the lambda before the loop moves on, so binding `lib` late is harmless.
        us = timed(lambda i: cpu_kernel.moe_one_token(lib, x, experts, weights, tensors[i], 7.0, 1.702))  # noqa: B023
        print(f"kernel -march={march}: {us:.0f} us per layer")

    def pytorch(i: int) -> None:
        m = layers[i]
        for j, e in enumerate(experts.tolist()):
            w = m.experts.get(e, torch.float32)
            h = clamped_swiglu(F.linear(x[None], w.gate_up, w.gate_up_bias), m.limit, m.alpha)
            F.linear(h, w.down, w.down_bias) * weights[j]

    print(f"PyTorch path (decoded float32 experts): {timed(pytorch):.0f} us per layer")


if __name__ == "__main__":
    main()
