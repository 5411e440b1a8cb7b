"""The CPU decode kernel (llm/cpu_kernel.c) against the PyTorch path it replaces: the experts
decoded from MXFP4 to float32, multiplied with F.linear, the clamped swiglu, the weighted sum."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch.nn import functional as F

from llm import cpu_kernel
from llm.experts import ExpertCache, ExpertWeights
from llm.model import clamped_swiglu
from llm.mxfp4 import decode_expert

pytestmark = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                reason="no C compiler on this machine")
LIMIT, ALPHA = 7.0, 1.702


def _random_layer(hidden: int, inter: int, experts: int, seed: int) -> ExpertWeights:
    g = torch.Generator().manual_seed(seed)

    def blocks(rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = torch.randint(0, 256, (experts, rows, cols // 32, 16), generator=g, dtype=torch.uint8)
        s = torch.randint(118, 130, (experts, rows, cols // 32), generator=g, dtype=torch.uint8)
        s[0, 0, 0] = 0  # a subnormal scale (2^-127) and a large one stay exact
        s[0, 1, -1] = 140
        return b, s

    gu_b, gu_s = blocks(2 * inter, hidden)
    dn_b, dn_s = blocks(hidden, inter)
    gu_bias = torch.randn(experts, 2 * inter, generator=g).bfloat16()  # stored as the checkpoint does
    dn_bias = torch.randn(experts, hidden, generator=g).bfloat16()
    return ExpertWeights(0, gu_b, gu_s, gu_bias, dn_b, dn_s, dn_bias, cache=ExpertCache(0))


def _pytorch_path(layer: ExpertWeights, x: torch.Tensor, chosen: list[int], weights: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(x)
    for j, e in enumerate(chosen):
        gate_up = F.linear(x, decode_expert(layer.gate_up_blocks[e], layer.gate_up_scales[e], torch.float32),
                           layer.gate_up_bias[e].float())
        h = clamped_swiglu(gate_up, LIMIT, ALPHA)
        y = F.linear(h, decode_expert(layer.down_blocks[e], layer.down_scales[e], torch.float32),
                     layer.down_bias[e].float())
        out += y * weights[j]
    return out


# 64: the portable loop only; 160 and 2880 (gpt-oss): 128-value AVX-512 chunks plus a tail
@pytest.mark.parametrize(("hidden", "inter"), [(64, 96), (160, 160), (2880, 64)])
@pytest.mark.parametrize("march", ["native", "x86-64-v3", "x86-64-v2"])  # AVX-512 here, AVX2, portable
def test_kernel_matches_the_pytorch_path(hidden: int, inter: int, march: str) -> None:
    lib = cpu_kernel.build(march)
    assert lib is not None
    layer = _random_layer(hidden, inter, experts=6, seed=hidden + inter)
    x = torch.randn(hidden, generator=torch.Generator().manual_seed(1))
    chosen, weights = [1, 2, 5], torch.tensor([0.5, 0.3, 0.2])
    tensors = cpu_kernel.kernel_tensors(layer.gate_up_blocks, layer.gate_up_scales, layer.gate_up_bias,
                                        layer.down_blocks, layer.down_scales, layer.down_bias)
    got = cpu_kernel.moe_one_token(lib, x, torch.tensor(chosen), weights, tensors, LIMIT, ALPHA)
    want = _pytorch_path(layer, x, chosen, weights)
    assert got.shape == want.shape and torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_expert_weights_use_the_kernel_for_one_float32_token_only() -> None:
    layer = _random_layer(160, 160, experts=4, seed=3)
    x = torch.randn(160, generator=torch.Generator().manual_seed(2))
    experts, weights = torch.tensor([0, 3]), torch.tensor([0.6, 0.4])
    direct = layer.one_token(x, experts, weights, LIMIT, ALPHA)
    assert direct is not None
    want = _pytorch_path(layer, x, [0, 3], weights)
    torch.testing.assert_close(direct, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())
    assert layer.one_token(x.bfloat16(), experts, weights, LIMIT, ALPHA) is None  # bfloat16: PyTorch path
    layer.use_kernel = False
    assert layer.one_token(x, experts, weights, LIMIT, ALPHA) is None


def test_without_a_compiler_the_engine_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert cpu_kernel.build("native") is None  # logged, not raised
    cpu_kernel.load.cache_clear()
    try:
        assert cpu_kernel.load() is None
        layer = _random_layer(64, 64, experts=2, seed=4)  # the engine then takes the PyTorch path
        assert layer.one_token(torch.randn(64), torch.tensor([1]), torch.tensor([1.0]), LIMIT, ALPHA) is None
    finally:
        cpu_kernel.load.cache_clear()


def test_mismatched_expert_shapes_are_refused_before_c_reads_them() -> None:
    layer = _random_layer(64, 64, experts=2, seed=5)
    good = (layer.gate_up_blocks, layer.gate_up_scales, layer.gate_up_bias, layer.down_blocks,
            layer.down_scales, layer.down_bias)
    with pytest.raises(ValueError, match="down_blocks"):
        cpu_kernel.kernel_tensors(*good[:3], layer.down_blocks[:, :32], *good[4:])
    with pytest.raises(ValueError, match="hidden size"):
        layer.one_token(torch.randn(96), torch.tensor([0]), torch.tensor([1.0]), LIMIT, ALPHA)
