"""Our gpt-oss engine against transformers' own implementation, on tiny random checkpoints in the
published layout: MXFP4 decoding bit for bit, logits within 1e-4 in float32 (prompts shorter and
longer than the sliding window; prefill, decode and batched paths), greedy tokens identical."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llm.engine import Engine, Sampling
from llm.loader import load_model
from llm.mxfp4 import decode_all, encode_rows
from llm.tiny import TinySpec, make_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # hidden 160 = one 128-value chunk of the CPU decode kernel plus a 32-value tail
    spec = TinySpec(layers=3, sliding_window=8, seed=1, hidden=160, intermediate=160)
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), spec)


@pytest.fixture(scope="module")
def reference(tiny: Path):
    from transformers import GptOssForCausalLM
    from transformers.utils import logging
    from transformers.utils.quantization_config import Mxfp4Config  # not in transformers' typed exports

    logging.set_verbosity_error()
    model = GptOssForCausalLM.from_pretrained(str(tiny), dtype=torch.float32,
                                              quantization_config=Mxfp4Config(dequantize=True))
    return model.eval()


@pytest.fixture(scope="module")
def ours(tiny: Path):
    model, _, _ = load_model(tiny, device="cpu", dtype="float32", expert_cache_mb=64)
    return model


def _prompt(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n,), generator=torch.Generator().manual_seed(seed))


def test_mxfp4_decoding_matches_transformers_bit_for_bit() -> None:
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    g = torch.Generator().manual_seed(0)
    blocks = torch.randint(0, 256, (3, 64, 4, 16), generator=g, dtype=torch.uint8)
    scales = torch.randint(100, 140, (3, 64, 4), generator=g, dtype=torch.uint8)
    for dtype in (torch.float32, torch.bfloat16):
        ours = decode_all(blocks, scales, dtype)
        theirs = convert_moe_packed_tensors(blocks.clone(), scales.clone(), dtype=dtype)
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)
    # The encoder used for test checkpoints round-trips FP4-representable values exactly.
    values = torch.tensor([0.5, -1.5, 6.0, -3.0] * 8).repeat(2, 1) * 4
    b, s = encode_rows(values)
    assert torch.equal(decode_all(b[None], s[None], torch.float32)[0].T, values)


@pytest.mark.parametrize("length", [5, 8, 30])  # shorter than, equal to and longer than the window (8)
def test_prefill_logits_match_reference(ours, reference, length: int) -> None:
    ids = _prompt(length, length)[None]
    with torch.no_grad():
        expected = reference(ids).logits[0]  # [T, V]
    got = ours(ids, ours.new_cache(torch.zeros(1, dtype=torch.long)), last_only=False)[0]
    assert torch.allclose(got, expected, atol=1e-4, rtol=0), (got - expected).abs().max()


def test_decode_steps_match_reference_past_the_window(ours, reference) -> None:
    ids = _prompt(24, 7)[None]
    with torch.no_grad():
        expected = reference(ids).logits[0]
    cache = ours.new_cache(torch.zeros(1, dtype=torch.long))
    ours(ids[:, :6], cache)
    for t in range(6, 24):  # one token at a time, well past the 8-token window
        got = ours(ids[:, t:t + 1], cache)[0]
        assert torch.allclose(got, expected[t], atol=1e-4, rtol=0), (t, (got - expected[t]).abs().max())
    # Sliding layers kept only the window; full layers kept everything.
    assert cache.kept(0) == 8 and cache.kept(1) == 24


def test_batched_generation_equals_one_by_one(ours) -> None:
    engine = Engine(ours, pad_id=0)
    prompts = [_prompt(n, n).tolist() for n in (3, 17, 11)]
    params = Sampling(max_new_tokens=12, greedy=True)
    together = engine.generate(prompts, params)
    alone = [engine.generate([p], params)[0] for p in prompts]
    assert together == alone


def test_greedy_tokens_equal_transformers_generate(ours, reference) -> None:
    engine = Engine(ours, pad_id=0)
    for n in (4, 20):
        ids = _prompt(n, 100 + n)
        # An explicit mask: token 0 may occur in the prompt and must not be taken for padding.
        expected = reference.generate(ids[None], attention_mask=torch.ones(1, n, dtype=torch.long), max_new_tokens=16,
                                      do_sample=False, eos_token_id=None, pad_token_id=257)[0, n:].tolist()
        assert engine.generate([ids.tolist()], Sampling(max_new_tokens=16, greedy=True))[0] == expected


def test_expert_cache_off_gives_the_same_logits(tiny: Path, ours) -> None:
    uncached, _, _ = load_model(tiny, device="cpu", dtype="float32", expert_cache_mb=0)
    ids = _prompt(12, 3)[None]
    a = ours(ids, ours.new_cache(torch.zeros(1, dtype=torch.long)))
    b = uncached(ids, uncached.new_cache(torch.zeros(1, dtype=torch.long)))
    assert torch.equal(a, b)
    assert uncached.blocks()[0].mlp.experts.cache.used == 0


def test_decode_kernel_on_and_off_agree(tiny: Path, ours) -> None:
    """One-token steps run through the C kernel (llm/cpu_kernel.c) by default; without it they
    run through decoded experts and PyTorch. Both match the reference above; here, each other."""
    from llm import cpu_kernel

    if cpu_kernel.load() is None:
        pytest.skip("no C compiler on this machine")
    plain, _, _ = load_model(tiny, device="cpu", dtype="float32", expert_cache_mb=64, cpu_kernel=False)
    ids = _prompt(14, 5)[None]
    caches = [m.new_cache(torch.zeros(1, dtype=torch.long)) for m in (ours, plain)]
    ours(ids[:, :4], caches[0])
    plain(ids[:, :4], caches[1])
    for t in range(4, 14):
        a, b = ours(ids[:, t:t + 1], caches[0]), plain(ids[:, t:t + 1], caches[1])
        assert torch.allclose(a, b, atol=1e-4, rtol=0), (t, (a - b).abs().max())
