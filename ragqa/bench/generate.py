"""`ragqa bench generate`: our engine against transformers on the same checkpoint.

Times are taken as tokens arrive (our stream; a streamer on transformers' `generate`): the first
token's time is the prefill, decode speed is the tokens after it over the time they took; each is
the median of ROUNDS runs. Each configuration runs in a fresh process, so its peak memory (the
resident-set high-water mark minus what the process held before loading the model) is its own.
Configurations: our engine with the configured expert cache, with the cache off (experts decoded
at every step), with every expert decoded up front (the fully decoded copy), without the C decode
kernel (every step through decoded experts and PyTorch), and transformers' `generate` (which
dequantizes the whole model on the CPU).

With `--concurrency N` (repeatable), also: N requests of the same prompt length started together
through the continuous-batching scheduler (llm/scheduler.py), greedy, exactly `new_tokens`
decoded tokens each after the first. Per N: time to first token from the moment all were
submitted (p50, p95), each request's decode tok/s (median), the aggregate decode tok/s (tokens
per second while all N decode at once: from the last first token to the first last token), and
peak memory.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ALL_DECODED_MB = 1 << 30  # a budget no checkpoint reaches: every expert stays decoded
ROUNDS = 3  # each configuration's prefill and decode times are medians over this many runs


def bench_all(model: Path, prompt_tokens: int, new_tokens: int, cache_mb: float, reference: bool) -> dict[str, Any]:
    runs = {"ours": ("ours", cache_mb), "ours_cache_off": ("ours", 0.0), "ours_all_decoded": ("ours", ALL_DECODED_MB),
            "ours_without_kernel": ("ours-pytorch", cache_mb)}
    if reference:
        runs["transformers"] = ("transformers", 0.0)
    results = {name: _run(model, kind, mb, prompt_tokens, new_tokens) for name, (kind, mb) in runs.items()}
    comparisons: dict[str, Any] = {}
    if reference:
        comparisons["decode_speedup_vs_transformers"] = round(
            results["ours"]["decode_tok_s"] / results["transformers"]["decode_tok_s"], 2)
    comparisons["cache_off_peak_vs_all_decoded"] = round(
        results["ours_cache_off"]["peak_mib"] / results["ours_all_decoded"]["peak_mib"], 3)
    return {"model": str(model), "prompt_tokens": prompt_tokens, "new_tokens": new_tokens,
            "expert_cache_mb": cache_mb, "runs": results, "comparisons": comparisons}


def bench_concurrency(model: Path, levels: list[int], prompt_tokens: int, new_tokens: int,
                      cache_mb: float) -> list[dict[str, Any]]:
    """Per N in `levels`: N requests started together through the scheduler (fresh process each)."""
    return [{"concurrency": n, **_run(model, f"batch{n}", cache_mb, prompt_tokens, new_tokens)} for n in levels]


def _run(model: Path, kind: str, cache_mb: float, prompt_tokens: int, new_tokens: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "ragqa.bench.generate", str(model), kind, str(cache_mb), str(prompt_tokens),
           str(new_tokens)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        from llm.errors import LlmError

        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise LlmError(f"benchmark run {kind} failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class _Clock:
    """A `generate()` streamer that only notes when each report arrives."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: Any) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _worker(model: Path, kind: str, cache_mb: float, prompt_tokens: int, new_tokens: int) -> dict[str, Any]:
    import torch

    torch.manual_seed(0)
    prompt = torch.randint(0, 256, (1, prompt_tokens))
    if kind.startswith("batch"):
        return _batch_worker(model, int(kind[5:]), cache_mb, prompt_tokens, new_tokens)
    kernel = False  # whether one-token steps ran through llm/cpu_kernel.c
    if kind == "transformers":
        from transformers import GptOssForCausalLM
        from transformers.utils import logging
        from transformers.utils.quantization_config import Mxfp4Config  # not in transformers' typed exports

        logging.set_verbosity_error()
        before = _rss_mib()
        net = GptOssForCausalLM.from_pretrained(str(model), dtype=torch.float32,
                                                quantization_config=Mxfp4Config(dequantize=True)).eval()
        mask = torch.ones_like(prompt)

        def run(n: int) -> list[float]:
            clock = _Clock()  # generate() reports the prompt, then each new token, to its streamer
            clock.times.append(time.perf_counter())
            net.generate(prompt, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                         pad_token_id=0, streamer=clock)
            return clock.times[:1] + clock.times[2:]
    else:
        from llm import cpu_kernel
        from llm.engine import Engine, Sampling
        from llm.loader import load_model

        before = _rss_mib()
        ours, _, _ = load_model(model, device="cpu", dtype="float32", expert_cache_mb=cache_mb,
                                cpu_kernel=kind == "ours")
        engine = Engine(ours)
        kernel = kind == "ours" and cpu_kernel.load() is not None
        if cache_mb >= ALL_DECODED_MB:  # decode every expert now, as a fully decoded copy would be
            for layer in ours.blocks():
                for e in range(layer.mlp.experts.num_experts):
                    layer.mlp.experts.get(e, torch.float32)

        def run(n: int) -> list[float]:
            times = [time.perf_counter()]
            for _ in engine.stream([prompt[0].tolist()], Sampling(max_new_tokens=n, greedy=True)):
                times.append(time.perf_counter())
            return times

    run(2)  # warm up
    firsts, decodes = [], []
    for _ in range(ROUNDS):  # medians: one short run on a shared machine is noisy
        times = run(new_tokens + 1)  # start, then the moment each token arrived
        assert len(times) == new_tokens + 2, len(times)
        firsts.append(times[1] - times[0])  # prefill and the first token
        decodes.append(max(times[-1] - times[1], 1e-9))  # the next new_tokens tokens, one by one
    first, decode_s = statistics.median(firsts), statistics.median(decodes)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"prefill_tok_s": round(prompt_tokens / first, 1), "decode_tok_s": round(new_tokens / decode_s, 1),
            "first_token_ms": round(first * 1000, 1), "peak_mib": round(peak - before, 1), "cpu_kernel": kernel}


def _batch_worker(model: Path, n: int, cache_mb: float, prompt_tokens: int, new_tokens: int) -> dict[str, Any]:
    import numpy as np
    import torch

    from llm.engine import Sampling
    from llm.loader import load_model
    from llm.scheduler import Scheduler

    before = _rss_mib()
    net, _, _ = load_model(model, device="cpu", dtype="float32", expert_cache_mb=cache_mb)
    scheduler = Scheduler(net, max_batch=n, max_queue=n)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 256, (prompt_tokens,), generator=g).tolist() for _ in range(n)]  # no shared prefix

    def run(count: int) -> tuple[float, list[list[float]]]:
        times: list[list[float]] = [[] for _ in range(n)]

        def consume(i: int, stream: Any) -> None:
            for _ in stream:
                times[i].append(time.perf_counter())

        start = time.perf_counter()
        # Greedy, no stop ids: every request runs to the end.
        streams = [scheduler.submit(p, Sampling(max_new_tokens=count, greedy=True)) for p in prompts]
        threads = [threading.Thread(target=consume, args=(i, s)) for i, s in enumerate(streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return start, times

    run(2)  # warm up (the C kernel is built on first use)
    rounds = []
    for _ in range(ROUNDS):
        start, times = run(new_tokens + 1)
        assert all(len(t) == new_tokens + 1 for t in times), [len(t) for t in times]
        ttft = np.array([t[0] - start for t in times]) * 1000
        per_request = [new_tokens / max(t[-1] - t[0], 1e-9) for t in times]
        rounds.append({"aggregate_decode_tok_s": _aggregate_decode(times),
                       "per_request_decode_tok_s": statistics.median(per_request),
                       "ttft_p50_ms": float(np.percentile(ttft, 50)), "ttft_p95_ms": float(np.percentile(ttft, 95))})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    scheduler.close()
    medians = {key: round(statistics.median(r[key] for r in rounds), 1) for key in rounds[0]}
    return {**medians, "peak_mib": round(peak - before, 1), "steps": scheduler.steps}


def _aggregate_decode(times: list[list[float]]) -> float:
    """Tokens per second while every request decodes: from the moment the last one has its first
    token to the moment the first one has its last (for one request: its own decode). Outside that
    window prompts are still being read, or the batch is emptying."""
    start, end = max(t[0] for t in times), min(t[-1] for t in times)
    if end <= start:  # no moment with all decoding: all decoded tokens over the whole span
        start, end = min(t[0] for t in times), max(t[-1] for t in times)
        return sum(len(t) - 1 for t in times) / max(end - start, 1e-9)
    return sum(sum(1 for x in t if start < x <= end) for t in times) / (end - start)


if __name__ == "__main__":
    a = sys.argv[1:]
    print(json.dumps(_worker(Path(a[0]), a[1], float(a[2]), int(a[3]), int(a[4]))))
