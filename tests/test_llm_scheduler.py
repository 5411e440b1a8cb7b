"""Continuous batching (llm/scheduler.py): requests join and leave a running batch, each with its
own KV cache slot, and get the same tokens as alone; cancelled requests stop; a full queue says
busy; the native backend streams to several callers at once. Tiny random checkpoints, float32."""

from __future__ import annotations

import gc
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from llm import cpu_kernel
from llm.engine import Engine, Sampling
from llm.errors import GeneratorError
from llm.loader import load_model
from llm.model import GptOss, StepPlan, clamped_swiglu
from llm.mxfp4 import decode_expert
from llm.scheduler import Scheduler
from llm.tiny import TinySpec, make_tiny_checkpoint

WINDOW = 8


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = TinySpec(layers=2, hidden=128, intermediate=128, experts=8, experts_per_token=2, sliding_window=WINDOW)
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), spec)


@pytest.fixture(scope="module")
def model(tiny: Path) -> GptOss:
    net, _, _ = load_model(tiny, device="cpu", dtype="float32", expert_cache_mb=0)
    return net


@pytest.fixture
def scheduler(model: GptOss) -> Iterator[Scheduler]:
    s = Scheduler(model, max_batch=16, max_queue=16, prefill_chunk=16)
    yield s
    s.close()


def _prompt(n: int, seed: int) -> list[int]:
    return torch.randint(0, 256, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")
@pytest.mark.parametrize(("hidden", "inter", "experts", "k", "n"), [(64, 64, 8, 2, 5), (2880, 128, 6, 4, 19),
                                                                     (128, 96, 4, 2, 12)])
def test_batch_kernel_matches_the_pytorch_path(hidden: int, inter: int, experts: int, k: int, n: int) -> None:
    """Several tokens through their experts straight from MXFP4 (each expert read once for all
    its tokens) against decoded experts, F.linear and the weighted sum in ascending expert order;
    2880 has a 64-value tail past the 128-value chunks."""
    g = torch.Generator().manual_seed(hidden + n)

    def blocks(rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = torch.randint(0, 256, (experts, rows, cols // 32, 16), generator=g, dtype=torch.uint8)
        s = torch.randint(118, 130, (experts, rows, cols // 32), generator=g, dtype=torch.uint8)
        s[0, 0, 0] = 0  # a subnormal scale stays exact
        return b, s

    (gub, gus), (dnb, dns) = blocks(2 * inter, hidden), blocks(hidden, inter)
    gu_bias, dn_bias = torch.randn(experts, 2 * inter, generator=g), torch.randn(experts, hidden, generator=g)
    x = torch.randn(n, hidden, generator=g)
    chosen = torch.stack([torch.randperm(experts, generator=g)[:k] for _ in range(n)])
    weights = torch.softmax(torch.randn(n, k, generator=g), dim=-1)
    tensors = cpu_kernel.kernel_tensors(gub, gus, gu_bias, dnb, dns, dn_bias)
    want = torch.zeros_like(x)
    for e in torch.unique(chosen).tolist():
        token, slot = torch.where(chosen == e)
        h = clamped_swiglu(F.linear(x[token], decode_expert(gub[e], gus[e], torch.float32), gu_bias[e]), 7.0, 1.702)
        y = F.linear(h, decode_expert(dnb[e], dns[e], torch.float32), dn_bias[e])
        want.index_add_(0, token, y * weights[token, slot, None])
    lib = cpu_kernel.load()
    for build in (lib, cpu_kernel.build("x86-64-v2")):  # this machine's vector code, and the portable loop
        assert build is not None
        got = cpu_kernel.moe_batch(build, x, chosen, weights, tensors, 7.0, 1.702)
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
    assert lib is not None
    with pytest.raises(ValueError, match="expert ids"):
        cpu_kernel.moe_batch(lib, x, chosen + experts, weights, tensors, 7.0, 1.702)


def test_greedy_tokens_are_the_same_alone_and_in_a_batch_of_16(model: GptOss, scheduler: Scheduler) -> None:
    """16 requests joining at different moments, prompts of 1 to 3 windows (prefilled in chunks
    beside running answers), answers of different lengths (they leave at different steps, and
    slots move): each gets exactly the tokens it gets alone."""
    lengths = [3, 1, 12, 5, 25, 7, 2, 9, 17, 4, 30, 6, 11, 8, 14, 20]
    budgets = [6 + (i * 5) % 11 for i in range(16)]
    prompts = [_prompt(n, i) for i, n in enumerate(lengths)]
    alone = [Engine(model).generate([p], Sampling(max_new_tokens=m, greedy=True))[0] for p, m in zip(prompts, budgets)]
    streams = {}
    got: dict[int, list[int]] = {i: [] for i in range(16)}
    for i in range(16):  # staggered: each joins after the previous ones have made progress
        streams[i] = scheduler.submit(prompts[i], Sampling(max_new_tokens=budgets[i], greedy=True))
        if i % 3 == 0:
            got[i].append(next(streams[i]))
    for i, stream in streams.items():
        got[i] += list(stream)
    assert [got[i] for i in range(16)] == alone
    assert scheduler.steps < sum(budgets) // 2  # they really ran together


def test_a_cancelled_request_stops_consuming_steps(scheduler: Scheduler) -> None:
    closed = scheduler.submit(_prompt(5, 1), Sampling(max_new_tokens=100_000, greedy=True))
    dropped = scheduler.submit(_prompt(5, 2), Sampling(max_new_tokens=100_000, greedy=True))
    assert [next(closed), next(dropped)]
    closed.close()
    request = dropped.request
    del dropped  # the caller went away without closing: garbage collection cancels it too
    gc.collect()
    assert scheduler.wait_idle(timeout=60)
    steps = scheduler.steps
    assert request.generated < 1000 and closed.request.generated < 1000
    assert scheduler.active() == (0, 0) and scheduler.steps == steps


def test_a_full_queue_says_busy(model: GptOss) -> None:
    s = Scheduler(model, max_batch=1, max_queue=1)
    try:
        running = s.submit(_prompt(4, 3), Sampling(max_new_tokens=100_000, greedy=True))
        next(running)  # now it holds the only slot
        waiting = s.submit(_prompt(4, 4), Sampling(max_new_tokens=3, greedy=True))
        with pytest.raises(GeneratorError, match="busy.*try again"):
            s.submit(_prompt(4, 5), Sampling(max_new_tokens=3, greedy=True))
        running.close()
        assert len(list(waiting)) == 3  # the waiting one runs once the slot is free
    finally:
        s.close()
    with pytest.raises(GeneratorError, match="shut down"):
        s.submit(_prompt(4, 6), Sampling(max_new_tokens=3))


def test_sampled_tokens_follow_each_requests_own_generator(model: GptOss, scheduler: Scheduler) -> None:
    params = Sampling(max_new_tokens=8, temperature=1.0)
    alone = list(scheduler.submit(_prompt(6, 7), params, torch.Generator().manual_seed(5)))
    others = [scheduler.submit(_prompt(6, 8 + i), params, torch.Generator().manual_seed(i)) for i in range(4)]
    again = scheduler.submit(_prompt(6, 7), params, torch.Generator().manual_seed(5))
    assert list(again) == alone
    for stream in others:
        stream.close()


def test_two_callers_stream_through_the_native_backend_at_once(tiny: Path) -> None:
    """Order of events, not timing: each caller waits, after its first token, until the other
    has its first token too; under one lock for a whole answer this could never happen."""
    from llm.native import NativeGenerator

    gen = NativeGenerator(tiny, device="cpu", dtype="float32", context=1024, seed=0)
    both_started = threading.Barrier(2, timeout=60)
    events: list[tuple[str, str]] = []
    errors: list[BaseException] = []

    def caller(name: str, seed: int) -> None:
        try:
            for n, _token in enumerate(gen._tokens(_prompt(10, seed), Sampling(max_new_tokens=20, greedy=True))):
                events.append((name, "token"))
                if n == 0:
                    both_started.wait()
            events.append((name, "done"))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(name, i)) for i, name in enumerate("ab")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    first_done = min(events.index(("a", "done")), events.index(("b", "done")))
    assert {name for name, what in events[:first_done] if what == "token"} == {"a", "b"}


def test_bench_generate_at_several_concurrencies(tiny: Path) -> None:
    from ragqa.bench.generate import bench_concurrency

    results = bench_concurrency(tiny, [1, 3], prompt_tokens=12, new_tokens=4, cache_mb=0)
    assert [r["concurrency"] for r in results] == [1, 3]
    for r in results:
        assert r["aggregate_decode_tok_s"] > 0 and r["per_request_decode_tok_s"] > 0 and r["peak_mib"] > 0
        assert 0 < r["ttft_p50_ms"] <= r["ttft_p95_ms"]


def test_a_batched_step_through_the_c_kernels_equals_the_pytorch_path(model: GptOss) -> None:
    """The same steps (12 prompts of 2 to 24 tokens read, then 12 sequences decoding at positions
    inside and past the sliding window beside a new prompt chunk) with the C kernels (decode
    attention, MoE from MXFP4) and with PyTorch alone."""
    lengths = [2 + 2 * i for i in range(12)]

    def run(kernel: bool) -> list[torch.Tensor]:
        for layer in model.blocks():
            layer.mlp.experts.use_kernel = kernel
        cache = model.new_slot_cache(13, capacity=8)  # full layers grow on the way
        chunks, offset = [], 0
        for slot, n in enumerate(lengths):
            chunks.append((slot, offset, n, 0))
            offset += n
        read = StepPlan(0, torch.zeros(0, dtype=torch.long), torch.cat([torch.arange(n) for n in lengths]),
                        tuple(chunks), True, 0)
        positions = torch.tensor(lengths + list(range(5)))
        decode = StepPlan(12, torch.arange(12), positions, ((12, 12, 5, 0),), True, max(lengths) + 1)
        try:
            with torch.inference_mode():
                first = model.step(torch.tensor(sum((_prompt(n, n) for n in lengths), [])), read, cache)
                return [first, model.step(torch.tensor(_prompt(17, 99)), decode, cache)]
        finally:
            for layer in model.blocks():
                layer.mlp.experts.use_kernel = True

    for with_kernels, without in zip(run(True), run(False)):
        assert torch.allclose(with_kernels, without, rtol=1e-4, atol=1e-4)
