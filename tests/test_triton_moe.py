"""The CUDA MoE kernels (llm/triton_moe.py) against the PyTorch path, on this machine through
Triton's interpreter (TRITON_INTERPRET=1, CPU tensors), and on a real GPU when there is one
(scripts/gpu_check.sh runs this file there: then no interpreter)."""

from __future__ import annotations

import os

import pytest
import torch

GPU = torch.cuda.is_available()
if not GPU:  # before triton is imported: its kernels are made interpretable when decorated
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton", reason="Triton is not installed (pip install triton)")

from llm import mxfp4, triton_moe  # noqa: E402 - after TRITON_INTERPRET is set
from tests.triton_moe_cases import CASES, GPU_CASES, Case, compare, tolerance  # noqa: E402

DEVICE = "cuda" if GPU else "cpu"


@pytest.mark.parametrize("case", CASES + (GPU_CASES if GPU else ()), ids=lambda c: c.name)
def test_kernels_equal_the_pytorch_path_in_float32(case: Case) -> None:
    err, scale = compare(case, torch.float32, DEVICE)
    assert err <= tolerance(torch.float32, scale), (err, scale)


@pytest.mark.parametrize("case", CASES[1:2] + (GPU_CASES if GPU else ()), ids=lambda c: c.name)
def test_kernels_equal_the_pytorch_path_in_bfloat16(case: Case) -> None:
    err, scale = compare(case, torch.bfloat16, DEVICE)
    assert err <= tolerance(torch.bfloat16, scale), (err, scale)


def _decode_both(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every byte under every scale 0..254: (ours, llm/mxfp4's, the scale of each value), as bits."""
    blocks = torch.arange(256 * 2 * 16, dtype=torch.int64).remainder(256).to(torch.uint8).reshape(256, 2, 16)
    scales = torch.arange(256 * 2).remainder(255).to(torch.uint8).reshape(256, 2)
    bits = torch.int32 if dtype == torch.float32 else torch.int16
    expected = mxfp4.decode_rows(blocks, scales, dtype).view(bits)
    got = triton_moe.decode_rows(blocks.to(DEVICE), scales.to(DEVICE), dtype).cpu().view(bits)
    return got, expected, scales.repeat_interleave(32, dim=1)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # scale 254 times 6 is inf, as in llm/mxfp4
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_decode_is_bit_for_bit_llm_mxfp4(dtype: torch.dtype) -> None:
    """Every byte under every scale from 2 up (real checkpoints' sit near 127), -0 included."""
    got, expected, scale = _decode_both(dtype)
    assert torch.equal(got[scale >= 2], expected[scale >= 2])


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_decode_of_subnormal_scales_in_float32() -> None:
    """Scales 0 and 1 make float32 subnormals, kept exactly. (bfloat16 is not checked there: the
    interpreter's conversion truncates bfloat16 subnormals.)"""
    got, expected, scale = _decode_both(torch.float32)
    assert torch.equal(got[scale < 2], expected[scale < 2])


def test_a_step_with_no_tokens_for_most_experts_and_uneven_tiles() -> None:
    """Many tokens all routed to the same few experts: tiles past the real ones do nothing, and
    an expert's last tile is partly empty."""
    case = Case(37, 8, 64, 64, top_k=2)
    from tests.triton_moe_cases import make_moe

    moe, x = make_moe(case, torch.float32, DEVICE)
    with torch.no_grad():  # experts 3 and 5 win everywhere
        moe.router.bias.copy_(torch.tensor([0, 0, 0, 50.0, 0, 40.0, 0, 0]))
    with torch.inference_mode():
        expected = moe(x)
        moe.experts.use_triton = True
        got = moe(x)
    assert (got - expected).abs().max().item() <= tolerance(torch.float32, expected.abs().max().item())


def test_the_cpu_never_takes_the_triton_path_unless_asked() -> None:
    from tests.triton_moe_cases import make_moe

    moe, x = make_moe(CASES[0], torch.float32, "cpu")
    moe.experts.use_triton = None  # auto: CUDA only
    assert not moe.experts.triton_applies(x)


def test_a_failing_kernel_falls_back_to_decoded_experts_once(monkeypatch, caplog) -> None:
    """A GPU whose Triton cannot compile (no C compiler for its launcher, say): the layer logs
    why, once, and answers through the decoded experts from then on."""
    from tests.triton_moe_cases import make_moe

    moe, x = make_moe(CASES[1], torch.float32, DEVICE)
    with torch.inference_mode():
        expected = moe(x)
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("Failed to find C compiler")

    monkeypatch.setattr(triton_moe, "moe_mxfp4", broken)
    moe.experts.use_triton = None
    monkeypatch.setattr(moe.experts, "triton_applies", lambda x: moe.experts.triton_error is None)
    with torch.inference_mode(), caplog.at_level("WARNING"):
        first, second = moe(x), moe(x)
    assert torch.equal(first, expected) and torch.equal(second, expected)
    assert calls == [1] and "C compiler" in (moe.experts.triton_error or "")
    assert sum("Triton MoE kernel failed" in r.message for r in caplog.records) == 1
