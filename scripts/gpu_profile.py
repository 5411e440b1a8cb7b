"""The profile stage of scripts/gpu_check.py: where one single-stream decode token's time goes.

Imported by gpu_check.py (after it has set TRITON_INTERPRET for a dry run); on the loaded model,
one stream's decode steps under torch.profiler, cProfile and synchronized hooks: wall and GPU-busy
ms per token, kernel launches, top ops, attention against MoE per layer.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, cast

import torch

from llm.engine import Engine, Sampling
from llm.model import GptOss

PROFILE_STEPS, PROFILE_WARM = (3, 1) if os.environ.get("GPU_CHECK_DRY") == "1" else (8, 3)
Steps = Generator[list[int | None], None, None]  # what Engine.stream returns


def _on_cuda(model: GptOss) -> bool:
    return next(model.parameters()).is_cuda


def _decoder(model: GptOss, prompt: list[int]) -> Steps:
    """Engine.stream over one prompt, prefilled and warmed up: each next() then is one decode step
    (forward on the last token, greedy pick, the host sync of .tolist()), as `single` measures."""
    sampling = Sampling(max_new_tokens=PROFILE_WARM + PROFILE_STEPS + 1, greedy=True)
    it = cast(Steps, Engine(model).stream([prompt], sampling))
    for _ in range(1 + PROFILE_WARM):
        next(it)
    return it


def _timed(it: Steps, step: Callable[[], Any] | None = None) -> float:
    """Wall ms per token of PROFILE_STEPS decode steps, each inside the context `step()` if given."""
    try:
        start = time.perf_counter()
        for _ in range(PROFILE_STEPS):
            with step() if step else contextlib.nullcontext():
                next(it)
        return (time.perf_counter() - start) * 1000 / PROFILE_STEPS
    finally:
        it.close()


def _with_hooks(model: GptOss, hook: Callable[[str, bool], None]) -> list[Any]:
    """hook(label, entering) before and after every layer's attention and MoE call; the handles."""
    handles = []
    for block in model.blocks():
        for label, module in (("attention", block.self_attn), ("MoE", block.mlp)):
            handles.append(module.register_forward_pre_hook(lambda *_, label=label: hook(label, True)))
            handles.append(module.register_forward_hook(lambda *_, label=label: hook(label, False)))
    return handles


def _ms_table(title: str, rows: list[tuple[str, float, float]], n: int = 12) -> list[str]:
    """rows (name, calls, microseconds) over PROFILE_STEPS tokens -> a table per token, largest first."""
    out = ["", title, "", "| name | calls/token | ms/token |", "| --- | --- | --- |"]
    for name, calls, us in sorted(rows, key=lambda r: -r[2])[:n]:
        name = name.replace("|", "/").replace("\n", " ")
        out.append(f"| {name[:90]} | {calls / PROFILE_STEPS:,.1f} | {us / PROFILE_STEPS / 1000:.3f} |")
    return out


def _layer_times(model: GptOss, prompt: list[int]) -> list[str]:
    """Wall ms per layer of attention and MoE, the device synchronized around each call (so host
    and GPU run in series: each figure is its launches plus whatever the GPU still had to do)."""
    spent = {"attention": 0.0, "MoE": 0.0}
    sync = torch.cuda.synchronize if _on_cuda(model) else (lambda: None)

    def hook(label: str, entering: bool) -> None:
        sync()
        spent[label] += -time.perf_counter() if entering else time.perf_counter()

    it = _decoder(model, prompt)
    handles = _with_hooks(model, hook)
    try:
        step = _timed(it)
    finally:
        for handle in handles:
            handle.remove()
    layers = len(model.blocks())
    per = {k: v * 1000 / PROFILE_STEPS / layers for k, v in spent.items()}
    rest = step - (per["attention"] + per["MoE"]) * layers
    return [f"per layer, synchronized around each module ({layers} layers): attention {per['attention']:.3f} ms, "
            f"MoE {per['MoE']:.3f} ms; rest of the step (embedding, norms, head, sampling) {rest:.2f} ms; "
            f"step {step:.2f} ms"]


def _python_top(model: GptOss, prompt: list[int]) -> list[str]:
    """cProfile over the decode steps: the Python functions (and torch calls) that take host time."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    _timed(_decoder(model, prompt), lambda: prof)  # enabled for each step, disabled between
    stats: dict[Any, Any] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    rows = [(f"{Path(f).name}:{line}({fn})" if line else fn, float(nc), tt * 1e6)
            for (f, line, fn), (_, nc, tt, _, _) in stats.items()]
    return _ms_table("top 10 Python functions by own time (cProfile; its overhead inflates them):", rows, 10)


def _torch_profile(model: GptOss, prompt: list[int]) -> tuple[dict[str, float], list[str]]:
    """torch.profiler (CPU, and CUDA on a GPU) over the decode steps. Each step and each layer's
    attention and MoE is a labelled region: its self CPU time is the host's time between the
    operations in it (Python), and kernels launched straight from it (Triton's) count to its GPU time."""
    from torch.profiler import ProfilerActivity, profile, record_function

    regions: list[Any] = []

    def hook(label: str, entering: bool) -> None:
        if entering:
            regions.append(record_function(f"[{label}]").__enter__())
        else:
            regions.pop().__exit__(None, None, None)

    it = _decoder(model, prompt)
    handles = _with_hooks(model, hook)
    try:
        with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if _on_cuda(model) else [])) as prof:
            wall = _timed(it, lambda: record_function("[decode step]"))
    finally:
        for handle in handles:
            handle.remove()
    device = [e for e in prof.events() if getattr(e.device_type, "name", "") == "CUDA"
              and not getattr(e, "is_user_annotation", False)]
    busy, reach = 0.0, float("-inf")  # the union of the device intervals, in microseconds
    by_name: dict[str, list[float]] = {}
    for e in sorted(device, key=lambda e: e.time_range.start):
        busy += max(0.0, e.time_range.end - max(e.time_range.start, reach))
        reach = max(reach, e.time_range.end)
        entry = by_name.setdefault(e.name, [0, 0.0])
        entry[0] += 1
        entry[1] += e.time_range.end - e.time_range.start
    copies = sum(1 for e in device if e.name.startswith(("Memcpy", "Memset")))
    averages = prof.key_averages()
    cpu_rows = [(a.key, float(a.count), float(a.self_cpu_time_total)) for a in averages
                if getattr(a.device_type, "name", "CPU") == "CPU"]
    gpu = {a.key: getattr(a, "device_time_total", 0.0) / PROFILE_STEPS / 1000 for a in averages}
    figures = {"wall": wall, "busy": busy / PROFILE_STEPS / 1000, "launches": (len(device) - copies) / PROFILE_STEPS,
               "copies": copies / PROFILE_STEPS, "host": sum(r[2] for r in cpu_rows) / PROFILE_STEPS / 1000}
    lines = []
    if device:
        lines.append(f"GPU ms per token by region (kernels go to the region that launched them): attention "
                     f"{gpu.get('[attention]', 0.0):.2f}, MoE {gpu.get('[MoE]', 0.0):.2f}, whole step "
                     f"{gpu.get('[decode step]', 0.0):.2f}")
        lines += _ms_table("top 12 kernels by GPU time (self CUDA):", [(k, c, t) for k, (c, t) in by_name.items()])
    lines += _ms_table("top 12 by self CPU time ([regions]: host time between operations, i.e. Python):", cpu_rows)
    return figures, lines


def _optional(part: Callable[[GptOss, list[int]], list[str]], model: GptOss, prompt: list[int]) -> list[str]:
    """One optional part of the profile: a failure costs only its own lines."""
    try:
        return part(model, prompt)
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc()
        return [f"{part.__name__} failed: {type(exc).__name__}: {exc}"]


def profile_decode(model: GptOss, prompt_tokens: int) -> tuple[str, str]:
    """Where one single-stream decode token's time goes, on the loaded model: (a summary line,
    the whole profile as text, also printed)."""
    prompt = torch.randint(0, 256, (prompt_tokens,), generator=torch.Generator().manual_seed(3)).tolist()
    wall = _timed(_decoder(model, prompt))  # without any profiler or hook
    figures, tables = _torch_profile(model, prompt)
    busy, launches, cuda = figures["busy"], figures["launches"], _on_cuda(model)
    if not cuda:
        verdict = "CPU only (dry run): no CUDA activity to weigh"
    elif busy == 0:
        verdict = "no CUDA activity recorded (CUPTI unavailable?): see the layer times and the CPU tables"
    elif busy < 0.5 * wall:
        verdict = (f"launch/CPU-bound: the GPU is busy {busy / wall:.0%} of each token's wall time; host time "
                   f"per kernel launch about {(wall - busy) / max(launches, 1) * 1000:.0f} us")
    else:
        verdict = f"{'GPU-bound' if busy > 0.8 * wall else 'mixed'}: the GPU is busy {busy / wall:.0%} of the wall time"
    setting = "gpt-oss-20b shape, bfloat16" if cuda else "a tiny shape, float32 on the CPU"
    head = [f"Decode profile: {setting}, one "
            f"stream, {prompt_tokens}-token prompt, {PROFILE_STEPS} steps after {PROFILE_WARM} warm-up", "",
            f"wall {wall:.2f} ms/token ({1000 / wall:,.1f} tok/s); under torch.profiler {figures['wall']:.2f} ms/token",
            f"GPU busy {busy:.3f} ms/token ({busy / wall:.0%} of wall); {launches:,.0f} kernel launches/token "
            f"(+ {figures['copies']:,.0f} memcpy/memset); host time in profiled ops and regions "
            f"{figures['host']:.2f} ms/token", f"verdict: {verdict}"]
    layers, python = _optional(_layer_times, model, prompt), _optional(_python_top, model, prompt)
    text = "\n".join(head + layers + tables + python) + "\n"
    print(text, flush=True)
    return (f"wall {wall:.1f} ms/token, GPU busy {busy:.2f} ms ({busy / wall:.0%}), {launches:,.0f} launches; "
            f"{verdict}", text)
