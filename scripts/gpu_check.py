"""One prepared check of the engine's GPU path (issue 18), for a machine with an NVIDIA GPU.

Run by scripts/gpu_check.sh from the repository root with PYTHONPATH=. . Imports only llm/,
scripts/gpu_profile.py, tests/triton_moe_cases.py and what a bare GPU machine has (torch, triton,
safetensors, tokenizers; pytest if present): no ragqa, so no pydantic-settings or database packages.

Stages, each with its own time budget and its own try/except (one failure loses nothing else),
all within one overall deadline:
  kernels      tests/test_triton_moe.py on the GPU (no interpreter); without pytest, its cases
  agreement    a small random checkpoint: greedy tokens and logits, CUDA (Triton) against the CPU
  build        a random checkpoint of gpt-oss-20b's exact shape (streaming make-tiny, drawn on the GPU)
  load         that checkpoint on the GPU in bfloat16, experts MXFP4 (Triton path checked)
  single       one stream: prefill tok/s (256 and 2048 prompt tokens), decode tok/s (64 new)
  profile      one stream's decode steps under torch.profiler, cProfile and synchronized hooks:
               wall and GPU-busy ms per token, kernel launches, top ops, attention vs MoE per layer
               (scripts/gpu_profile.py)
  concurrency  1, 8 and 64 requests started together (llm/scheduler.py; a static batch without it)
A summary table ends the output; it is also written to $OUT/gpu_check.txt when OUT is set (the
profile alone also to $OUT/gpu_profile.txt).

GPU_CHECK_DRY=1 runs the same code on the CPU with tiny shapes and Triton's interpreter, so that
the script itself can be checked on a machine without a GPU.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

DRY = os.environ.get("GPU_CHECK_DRY") == "1"
if DRY:  # before triton is imported anywhere: kernels become interpretable when decorated
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402
from gpu_profile import profile_decode  # noqa: E402 - scripts/, next to this file

from llm.engine import Engine, Sampling  # noqa: E402
from llm.loader import load_model  # noqa: E402
from llm.model import GptOss  # noqa: E402
from llm.scheduler import Scheduler  # noqa: E402
from llm.tiny import GPT_OSS_20B, TinySpec, make_tiny_checkpoint  # noqa: E402

DEADLINE = time.monotonic() + float(os.environ.get("GPU_CHECK_SECONDS", "450"))
WORK = Path(os.environ.get("GPU_CHECK_DIR", "/tmp/gpu_check"))  # never under $OUT: that comes back
DEVICE = "cpu" if DRY else "cuda"
SMALL = TinySpec(layers=2, hidden=64, intermediate=64, heads=4, head_dim=16, kv_heads=2, experts=8,
                 experts_per_token=4, sliding_window=8, seed=5) if DRY else TinySpec(
    layers=4, hidden=256, intermediate=256, heads=4, head_dim=64, kv_heads=2, experts=16, experts_per_token=4,
    sliding_window=16, seed=5)
BIG = TinySpec(layers=2, hidden=128, intermediate=128, heads=4, head_dim=32, kv_heads=2, experts=8,
               experts_per_token=4, sliding_window=16, vocab=1000) if DRY else GPT_OSS_20B
PROMPT, NEW, LONG_PROMPT = (24, 6, 80) if DRY else (256, 64, 2048)
CONCURRENCY = (1, 2, 4) if DRY else (1, 8, 64)

summary: list[tuple[str, str, float, str]] = []  # stage, ok / FAIL / TIMEOUT / skipped, seconds, details
speed: list[tuple[str, ...]] = []  # the speed table's rows
state: dict[str, Any] = {}  # what later stages need from earlier ones (the loaded 20b model)


class StageTimeoutError(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise StageTimeoutError()


def stage(name: str, budget: float, fn: Callable[[], str]) -> None:
    """Run one stage within min(budget, time left); record its outcome whatever happens."""
    left = DEADLINE - time.monotonic()
    if left < 5:
        summary.append((name, "skipped", 0.0, "out of time"))
        print(f"== {name}: skipped (out of time)", flush=True)
        return
    limit = min(budget, left)
    print(f"== {name} (up to {limit:.0f} s)", flush=True)
    start = time.monotonic()
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        detail, status = fn(), "ok"
    except StageTimeoutError:
        detail, status = f"over its {limit:.0f} s budget", "TIMEOUT"
    except Exception as exc:  # noqa: BLE001 - a failed stage is reported, and the next one runs
        traceback.print_exc()
        detail, status = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}", "FAIL"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if status == "ok" and detail.startswith("FAIL"):
        status, detail = "FAIL", detail[5:]
    seconds = time.monotonic() - start
    summary.append((name, status, seconds, detail))
    print(f"-- {name}: {status} in {seconds:.1f} s: {detail}", flush=True)


# ---- stages ---------------------------------------------------------------------------------
def environment() -> str:
    import shutil

    parts = [f"python {sys.version.split()[0]}", f"torch {torch.__version__} (CUDA {torch.version.cuda})"]
    try:
        import triton

        parts.append(f"triton {triton.__version__}")
    except ImportError:
        parts.append("triton MISSING")
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        parts.append(f"{props.name}, {props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor}")
    parts.append(f"C compiler: {shutil.which('cc') or shutil.which('gcc') or 'none'}")
    parts.append(f"pytest: {'yes' if _has('pytest') else 'no'}")
    parts.append(f"/tmp free {shutil.disk_usage('/tmp').free / 2**30:.0f} GiB")
    return "; ".join(parts)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def kernels() -> str:
    if _has("pytest"):
        left = max(5.0, DEADLINE - time.monotonic() - 2)
        # --noconftest: tests/conftest.py imports rag (pydantic-settings), absent on a bare GPU machine
        ran = subprocess.run([sys.executable, "-m", "pytest", "tests/test_triton_moe.py", "-q", "-rfE", "-p",
                              "no:cacheprovider", "--noconftest"], capture_output=True, text=True, timeout=left)
        lines = (ran.stdout + ran.stderr).strip().splitlines()
        print("\n".join(lines[-25:]))
        last = lines[-1] if lines else "no output"
        return last if ran.returncode == 0 else "FAIL " + last
    from tests.triton_moe_cases import CASES, GPU_CASES, compare, tolerance

    bad, n = [], 0
    for dtype in (torch.float32, torch.bfloat16):
        for case in CASES + (() if DRY else GPU_CASES):
            err, scale = compare(case, dtype, DEVICE)
            n += 1
            print(f"  {case.name} {dtype}: max |diff| {err:.3g} (largest value {scale:.3g})", flush=True)
            if not err <= tolerance(dtype, scale):
                bad.append(f"{case.name}/{dtype}")
    return (f"FAIL {len(bad)} of {n} cases: {bad}" if bad else f"{n} cases passed") + " (without pytest)"


def _load(folder: Path, device: str, dtype: str, triton: bool) -> GptOss:
    model, _, _ = load_model(folder, device=device, dtype=dtype, expert_cache_mb=1024, triton=triton)
    if DRY and triton:  # the CPU stands in for the GPU: the kernels through Triton's interpreter
        for layer in model.blocks():
            layer.mlp.experts.use_triton = True
    return model


def _triton_ran(model: GptOss) -> str:
    """'True' if every layer took the fused path (no error, not one expert decoded into the
    cache); else 'False' and why."""
    experts = [layer.mlp.experts for layer in model.blocks()]
    errors = [e.triton_error for e in experts if e.triton_error]
    if errors:
        return f"False ({errors[0][:200]})"
    applies = all(e.triton_applies(torch.empty(0, device=e.gate_up_blocks.device)) for e in experts)
    return str(applies and experts[0].cache.used == 0)


def _greedy(model: GptOss, prompt: list[int], n: int) -> tuple[list[int], torch.Tensor | None]:
    device = next(model.parameters()).device
    tokens = Engine(model).generate([prompt], Sampling(max_new_tokens=n, greedy=True))[0]
    try:  # the prompt's next-token logits, through the batch forward
        cache = model.new_cache(torch.zeros(1, dtype=torch.long, device=device), capacity=len(prompt) + 1)
        logits = model(torch.tensor([prompt], device=device), cache)[0].float().cpu()
    except Exception as exc:  # noqa: BLE001 - an API change in the forward loses the logits only
        print(f"  logits unavailable: {exc}")
        logits = None
    return tokens, logits


def agreement() -> str:
    folder = make_tiny_checkpoint(WORK / "small", SMALL)
    gen = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, 256, (3 * SMALL.sliding_window,), generator=gen).tolist()  # past the window
    n = 8 if DRY else 32
    passed = False
    ref, ref_logits = _greedy(_load(folder, "cpu", "float32", triton=False), prompt, n)
    out = []
    for dtype, triton in (("float32", True), ("bfloat16", True), ("bfloat16", False)):
        model = _load(folder, DEVICE, dtype, triton)
        tokens, logits = _greedy(model, prompt, n)
        same = next((i for i, (a, b) in enumerate(zip(tokens, ref)) if a != b), len(ref))
        diff = (logits - ref_logits).abs().max().item() if logits is not None and ref_logits is not None else None
        label = f"{DEVICE} {dtype} {'triton' if triton else 'pytorch'}"
        fused = _triton_ran(model) if triton else None
        out.append(f"{label}: {same}/{n} tokens as CPU float32, logits max|diff| "
                   f"{'n/a' if diff is None else f'{diff:.2e}'}" + ("" if fused is None else f", fused={fused}"))
        print("  " + out[-1], flush=True)
        if dtype == "float32":
            passed = same == n and (diff is None or diff < 1e-3) and fused == "True"
    return ("" if passed else "FAIL ") + "; ".join(out)


def build() -> str:
    folder = WORK / ("big-dry" if DRY else "gpt-oss-20b-shape")
    index = folder / "model.safetensors.index.json"
    if index.is_file() and (folder / "done").is_file():
        state["big"] = folder
        return f"reused {folder}"
    start = time.monotonic()
    make_tiny_checkpoint(folder, BIG, device=DEVICE)
    (folder / "done").write_text("")
    state["big"] = folder
    size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    return f"{size / 2**30:.2f} GiB in {time.monotonic() - start:.0f} s, {BIG.layers} layers, hidden {BIG.hidden}"


def load() -> str:
    folder = state.get("big")
    if folder is None:
        return "FAIL no checkpoint (build failed)"
    start = time.monotonic()
    dtype = "float32" if DRY else "bfloat16"
    model = _load(folder, DEVICE, dtype, triton=True)
    state["model"] = model
    seconds = time.monotonic() - start
    Engine(model).generate([[1, 2, 3]], Sampling(max_new_tokens=2, greedy=True))  # compiles, checks the path
    return f"{seconds:.0f} s, {_memory()}, fused={_triton_ran(model)}"


def _memory() -> str:
    if DEVICE != "cuda":
        with open("/proc/self/status") as fh:
            rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
        return f"RSS {rss / 1024:.0f} MiB"
    return (f"allocated {torch.cuda.memory_allocated() / 2**30:.2f} GiB, "
            f"peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


def _peak_mib() -> str:
    return f"{torch.cuda.max_memory_allocated() / 2**20:.0f}" if DEVICE == "cuda" else "n/a"


def _reset_peak() -> None:
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()


def single() -> str:
    model = state["model"]
    engine = Engine(model)
    gen = torch.Generator().manual_seed(2)
    out = []
    for prompt_len in (PROMPT, LONG_PROMPT):
        prompt = torch.randint(0, 256, (prompt_len,), generator=gen).tolist()
        _stream_times(engine, prompt, 2)  # warm-up: kernels compiled for these sizes
        _reset_peak()
        runs = [_stream_times(engine, prompt, NEW + 1) for _ in range(2)]
        first = statistics.median(r[1] - r[0] for r in runs)
        decode = statistics.median(r[-1] - r[1] for r in runs)
        row = ("single stream", f"prompt {prompt_len}", f"{prompt_len / first:,.0f}", f"{NEW / decode:,.1f}",
               f"{first * 1000:.0f}", "", _peak_mib())
        speed.append(row)
        out.append(f"prompt {prompt_len}: prefill {row[2]} tok/s, decode {row[3]} tok/s")
    return "; ".join(out)


def _stream_times(engine: Engine, prompt: list[int], n: int) -> list[float]:
    times = [time.perf_counter()]
    for _ in engine.stream([prompt], Sampling(max_new_tokens=n, greedy=True)):
        times.append(time.perf_counter())
    return times


def concurrency() -> str:
    model = state["model"]
    out = []
    for c in CONCURRENCY:
        if DEADLINE - time.monotonic() < 15:
            out.append(f"{c}: skipped (out of time)")
            continue
        gen = torch.Generator().manual_seed(10 + c)
        prompts = [torch.randint(0, 256, (PROMPT,), generator=gen).tolist() for _ in range(c)]
        _reset_peak()
        try:
            firsts, lasts, counts = _scheduled(model, prompts)
        except Exception as exc:  # noqa: BLE001 - each concurrency on its own
            traceback.print_exc()
            out.append(f"{c}: {type(exc).__name__}: {exc}")
            continue
        decode_wall = max(lasts) - min(firsts)
        aggregate = sum(n - 1 for n in counts) / max(decode_wall, 1e-9)
        per_request = statistics.median((n - 1) / max(last - first, 1e-9)
                                        for first, last, n in zip(firsts, lasts, counts))
        ttft = sorted(firsts)
        p50, p95 = ttft[len(ttft) // 2], ttft[min(len(ttft) - 1, round(0.95 * (len(ttft) - 1)))]
        speed.append(("scheduler", f"concurrency {c}", "", f"{aggregate:,.1f} (per request {per_request:,.1f})",
                      f"{p50 * 1000:.0f}", f"{p95 * 1000:.0f}", _peak_mib()))
        out.append(f"{c}: {aggregate:,.1f} tok/s aggregate")
    return "scheduler: " + "; ".join(out)


def _scheduled(model: GptOss, prompts: list[list[int]]) -> tuple[list[float], list[float], list[int]]:
    """Every request submitted at once; per request: seconds to its first token and to its last,
    and its token count, from one consumer thread each."""
    c = len(prompts)
    sched = Scheduler(model, max_batch=c, max_queue=c, prefill_chunk=512)
    firsts, lasts, counts = [0.0] * c, [0.0] * c, [0] * c
    start = time.perf_counter()
    streams = [sched.submit(p, Sampling(max_new_tokens=NEW, greedy=True)) for p in prompts]

    def consume(i: int) -> None:
        for _ in streams[i]:
            counts[i] += 1
            lasts[i] = time.perf_counter() - start
            if counts[i] == 1:
                firsts[i] = lasts[i]

    threads = [threading.Thread(target=consume, args=(i,), daemon=True) for i in range(c)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join(max(0.0, DEADLINE - time.monotonic()))
    finally:
        for s in streams:
            s.close()
        sched.close()
    if any(t.is_alive() for t in threads) or min(counts) == 0:
        raise RuntimeError(f"requests unfinished: tokens per request {counts}")
    return firsts, lasts, counts


def profile() -> str:
    """The profile stage (scripts/gpu_profile.py) on the loaded model."""
    line, state["profile"] = profile_decode(state["model"], PROMPT)
    return line


# ---- report ---------------------------------------------------------------------------------
def report() -> str:
    lines = [f"gpu_check {'(DRY RUN: CPU, tiny shapes, Triton interpreter) ' if DRY else ''}"
             f"{time.strftime('%Y-%m-%d %H:%M:%S')}", "", "| stage | result | seconds | details |",
             "| --- | --- | --- | --- |"]
    lines += [f"| {n} | {s} | {t:.1f} | {d} |" for n, s, t, d in summary]
    setting = "a tiny shape, float32 on the CPU" if DRY else "gpt-oss-20b's shape, bfloat16 on the GPU"
    lines += ["", f"Speed on {setting}, random weights, greedy, {PROMPT}-token prompts (single stream: as "
              f"given), {NEW} new tokens:", "",
              "| run | setting | prefill tok/s | decode tok/s | first token ms (p50) | p95 ms | peak MiB |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(row) + " |" for row in speed]
    if "profile" in state:
        lines += ["", state["profile"].rstrip("\n")]
    return "\n".join(lines) + "\n"


def main() -> int:
    if not DRY and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU machine, or GPU_CHECK_DRY=1 to check the script on the CPU")
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    stage("environment", 30, environment)
    stage("kernels", 110, kernels)
    stage("agreement", 70, agreement)
    stage("build", 150, build)
    stage("load", 90, load)
    if "model" in state:
        stage("single", 60, single)
        stage("profile", 45, profile)
        stage("concurrency", 120, concurrency)
    text = report()
    print("\n" + text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.txt").write_text(text)
        if "profile" in state:
            Path(os.environ["OUT"], "gpu_profile.txt").write_text(state["profile"])
    return 0 if all(s == "ok" for _, s, _, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
