"""`ragqa bench ...`: speed measurements, one command each (nothing is asserted; numbers are printed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ragqa.cli.common import JsonOpt, edge, settings
from ragqa.cli.common import print_json as _print_json
from ragqa.cli.llm import ModelOpt, model_dir

bench_app = typer.Typer(no_args_is_help=True, help="Measure speed (nothing is asserted; numbers are printed).")


@bench_app.command("ingest")
@edge
def bench_ingest(
    path: Annotated[Path, typer.Argument(help="A file or folder to ingest into a temporary store.")],
    rounds: Annotated[int, typer.Option(min=1, help="Interleaved rounds of pipeline and encode alone.")] = 2,
    as_json: JsonOpt = False,
) -> None:
    """Pages/s and chunks/s of the pipeline against SentenceTransformer.encode alone."""
    from ragqa.bench.ingest import bench_ingest as run

    if not path.exists():
        from rag.errors import ConfigError

        raise ConfigError(f"no such file or folder: {path}")
    result = run(path, settings(), rounds=rounds)
    if as_json:
        _print_json(result)
        return
    for key, value in result.items():
        typer.echo(f"{key:<28} {value}")


@bench_app.command("search")
@edge
def bench_search(
    chunks: Annotated[list[int] | None, typer.Option("--chunks", help="Synthetic store sizes (repeatable).")] = None,
    store: Annotated[bool, typer.Option("--store", help="Also time searches on your own store.")] = False,
    queries: Annotated[int, typer.Option(min=10, help="Queries per measurement.")] = 200,
    as_json: JsonOpt = False,
) -> None:
    """Search latency p50/p95, query embedding included (default: a synthetic 100,000-chunk store)."""
    from ragqa import wiring
    from ragqa.bench import search as b

    wiring.offline()
    cfg = settings()
    retriever = wiring.retriever(cfg)
    sizes = chunks or ([] if store else [100_000])
    results: dict[str, Any] = {f"synthetic_{n}": b.bench_synthetic(retriever, n, cfg.exact_search_max_vectors, queries)
                               for n in sizes}
    if store:
        results["store"] = b.bench_store(retriever, queries)
    if as_json:
        _print_json(results)
        return
    for name, r in results.items():
        typer.echo(f"{name}: {r.get('index', '')}")
        for mode in ("hybrid", "dense", "lexical", "embed_query"):
            if mode in r:
                typer.echo(f"  {mode:<12} p50 {r[mode]['p50_ms']:.1f} ms  p95 {r[mode]['p95_ms']:.1f} ms")
        if r.get("ivf_recall@10") is not None:
            typer.echo(f"  IVF recall@10 against exact search: {r['ivf_recall@10']}")


@bench_app.command("load")
@edge
def bench_load(
    path: Annotated[Path | None,
                    typer.Argument(help="Documents to ingest during the run (default: synthetic).")] = None,
    users: Annotated[int, typer.Option(min=1, help="Simulated staff asking at once.")] = 20,
    duration: Annotated[float, typer.Option(min=1, help="Seconds of asking.")] = 60,
    files: Annotated[int, typer.Option(min=1, help="Synthetic documents, when no PATH is given.")] = 300,
    think: Annotated[float, typer.Option(min=0, help="Mean pause between one user's questions (s).")] = 1.0,
    api: Annotated[bool, typer.Option("--api", help="Ask a `ragqa serve` process over HTTP (a key per user) "
                                      "instead of threads in this process.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Answer latency while a large ingest runs, in a store of its own; errors and lost documents."""
    from ragqa import wiring
    from ragqa.bench.load import bench_load as run

    wiring.offline()
    result = run(settings(), users, duration, path, files, think, api=api)
    if as_json:
        _print_json(result)
    else:
        for key, value in result.items():
            typer.echo(f"{key:<18} {value}")
    raise typer.Exit(0 if not result["errors"] and not result["lost_documents"] and result["check_ok"] else 1)


@bench_app.command("generate")
@edge
def bench_generate(
    model: ModelOpt = None,
    prompt_tokens: Annotated[int, typer.Option(min=1)] = 256,
    new_tokens: Annotated[int, typer.Option(min=1)] = 64,
    reference: Annotated[bool, typer.Option(help="Also time transformers' generate on the same weights.")] = True,
    concurrency: Annotated[list[int] | None, typer.Option(
        "--concurrency", min=1, help="Also N requests started together through the batching scheduler "
                                     "(repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Prefill and decode tokens/s, time to first token and peak memory, each in a fresh process."""
    from ragqa.bench.generate import bench_all, bench_concurrency

    cfg = settings()
    folder = model_dir(model)
    result = bench_all(folder, prompt_tokens, new_tokens, cfg.expert_cache_mb, reference)
    if concurrency:
        result["concurrency"] = bench_concurrency(folder, concurrency, prompt_tokens, new_tokens, cfg.expert_cache_mb)
    if as_json:
        _print_json(result)
        return
    for name, r in result["runs"].items():
        typer.echo(f"{name:<22} prefill {r['prefill_tok_s']:>8.1f} tok/s  decode {r['decode_tok_s']:>7.1f} tok/s  "
                   f"first token {r['first_token_ms']:>7.1f} ms  peak {r['peak_mib']:>7.1f} MiB")
    for key, value in result["comparisons"].items():
        typer.echo(f"{key}: {value}")
    for r in result.get("concurrency", []):
        typer.echo(f"concurrency {r['concurrency']:>3}: decode {r['aggregate_decode_tok_s']:>7.1f} tok/s in all, "
                   f"{r['per_request_decode_tok_s']:>6.1f} per request  first token p50 {r['ttft_p50_ms']:>7.1f} ms "
                   f"p95 {r['ttft_p95_ms']:>7.1f} ms  peak {r['peak_mib']:>7.1f} MiB")


@bench_app.command("ocr")
@edge
def bench_ocr(
    folder: Annotated[Path, typer.Argument(help="Page images (NAME.png) with their text (NAME.txt).")],
    generate: Annotated[int, typer.Option("--generate", min=0, help="First write this many generated scanned "
                                          "pages (200 dpi, several fonts, noise, slight rotation) into FOLDER.")] = 0,
    engine: Annotated[list[str] | None, typer.Option("--engine", help="tesseract (ours) or rapidocr (for "
                                                     "comparison, if installed); repeatable.")] = None,
    limit: Annotated[int, typer.Option(min=0, help="Read only the first N pages (0: all).")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Character error rate and pages/minute of OCR on scanned pages with known text."""
    from rag.errors import ConfigError
    from ragqa.bench import ocr as b

    engines = engine or ["tesseract"]
    unknown = [e for e in engines if e not in b.ENGINES]
    if unknown:
        raise ConfigError(f"unknown OCR engine {unknown[0]!r} (known: {', '.join(b.ENGINES)})")
    result: dict[str, Any] = {}
    if generate:
        result["generated"] = b.generate(folder, generate)
    elif not folder.is_dir():
        raise ConfigError(f"no such folder: {folder} (--generate N makes a set)")
    result["engines"] = b.bench_ocr(folder, engines, settings().ocr_languages, limit)
    if as_json:
        _print_json(result)
        return
    for name, r in result["engines"].items():
        if "error" in r:
            typer.echo(f"{name:<10} {r['error']}")
        else:
            typer.echo(f"{name:<10} CER {100 * r['cer']:.2f}% (worst page {100 * r['worst_page_cer']:.2f}%)  "
                       f"{r['pages_per_minute']:.1f} pages/min over {r['pages']} pages")
