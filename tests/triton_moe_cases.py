"""Cases for the Triton MoE kernels (llm/triton_moe.py) against the PyTorch path of llm.model.MoE,
shared by tests/test_triton_moe.py (the interpreter on the CPU, or a real GPU) and
scripts/gpu_check.py (a GPU machine that may have no pytest). No pytest import here."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llm.config import GptOssConfig
from llm.experts import ExpertCache, ExpertWeights
from llm.model import MoE
from llm.mxfp4 import encode_rows


@dataclass(frozen=True)
class Case:
    tokens: int
    experts: int
    hidden: int
    intermediate: int
    top_k: int = 4

    @property
    def name(self) -> str:
        return f"N{self.tokens}-E{self.experts}-h{self.hidden}-i{self.intermediate}-k{self.top_k}"


#: Small enough for the interpreter (2 shared cores): one token, a few, a batch routed to many
#: experts; hidden 96 and intermediate 160 are not multiples of the 64-value block.
CASES = (Case(1, 4, 64, 64), Case(5, 8, 96, 64), Case(64, 32, 64, 96), Case(5, 16, 160, 160))
#: A real layer's widths (gpt-oss: 2880, a multiple of 64 but not of 128), for the GPU only.
GPU_CASES = (Case(1, 32, 2880, 2880), Case(7, 32, 2880, 2880), Case(300, 32, 2880, 2880))



def random_mxfp4(experts: int, out: int, inp: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random weights (std 0.1) as MXFP4 blocks [E, out, inp/32, 16] and scales [E, out, inp/32],
    drawn and encoded on the generator's device a few rows at a time (encoding a whole 20b-sized
    layer at once would take gigabytes)."""
    rows = max(1, (1 << 22 if g.device.type == "cuda" else 1 << 16) // inp)
    blocks, scales = [], []
    for _ in range(experts):
        for r0 in range(0, out, rows):
            b, s = encode_rows(torch.randn(min(rows, out - r0), inp, generator=g, device=g.device) * 0.1)
            blocks.append(b)
            scales.append(s)
    return (torch.cat(blocks).reshape(experts, out, inp // 32, 16),
            torch.cat(scales).reshape(experts, out, inp // 32))


def make_moe(case: Case, dtype: torch.dtype, device: str, seed: int = 0) -> tuple[MoE, torch.Tensor]:
    """A MoE layer with random MXFP4 experts and an input x [tokens, hidden], drawn on `device`."""
    g = torch.Generator(device).manual_seed(seed)
    e, h, i = case.experts, case.hidden, case.intermediate
    gu_blocks, gu_scales = random_mxfp4(e, 2 * i, h, g)
    dn_blocks, dn_scales = random_mxfp4(e, h, i, g)

    def normal(*shape: int, std: float) -> torch.Tensor:
        return torch.randn(*shape, generator=g, device=device) * std

    experts = ExpertWeights(0, gu_blocks, gu_scales, normal(e, 2 * i, std=0.1), dn_blocks, dn_scales,
                            normal(e, h, std=0.1), cache=ExpertCache(1 << 30), use_kernel=False, use_triton=False)
    config = GptOssConfig(vocab_size=8, hidden_size=h, intermediate_size=i, num_layers=1, num_heads=1,
                          num_kv_heads=1, head_dim=h, num_experts=e, experts_per_token=case.top_k, sliding_window=8,
                          layer_types=("sliding_attention",), rope_theta=150000.0, yarn=None, rms_norm_eps=1e-5,
                          swiglu_limit=7.0, swiglu_alpha=1.702, max_positions=4096)
    moe = MoE(config, experts)
    moe = moe.to(device=device)
    with torch.no_grad():
        moe.router.weight.copy_(normal(e, h, std=0.5))
        moe.router.bias.copy_(normal(e, std=0.5))
    moe = moe.to(dtype=dtype)
    x = normal(case.tokens, h, std=2.0).to(dtype)
    return moe, x


def compare(case: Case, dtype: torch.dtype, device: str) -> tuple[float, float]:
    """(largest |Triton - PyTorch|, largest |PyTorch|) for one case: the same MoE layer through
    the decoded-expert path and through the kernels."""
    moe, x = make_moe(case, dtype, device)
    with torch.inference_mode():
        expected = moe(x).float()
        moe.experts.use_triton = True
        got = moe(x).float()
    return (got - expected).abs().max().item(), expected.abs().max().item()


def tolerance(dtype: torch.dtype, scale: float) -> float:
    """float32: summation order only. bfloat16: the PyTorch path rounds to bfloat16 after every
    operation, the kernels once at the end: a few units in the last place of the largest value."""
    return scale * (1e-5 if dtype == torch.float32 else 8 * 2.0**-8)
