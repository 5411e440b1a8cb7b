"""`ragqa eval beir`, `ragqa eval qa` and `ragqa eval followups`: retrieval and answer quality on
judged data, each in a store of its own."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from ragqa.cli.common import JsonOpt, edge, settings
from ragqa.cli.common import print_json as _print_json

eval_app = typer.Typer(no_args_is_help=True, help="Measure retrieval quality on judged data.")


@eval_app.command("beir")
@edge
def eval_beir(
    folder: Annotated[Path, typer.Argument(help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv.")],
    split: Annotated[str, typer.Option(help="Which qrels file to judge by.")] = "test",
    mode: Annotated[str, typer.Option("--mode", help="hybrid, dense, lexical or all.")] = "hybrid",
    work_dir: Annotated[Path | None, typer.Option(help="Keep the evaluation store here (re-runs reuse it).")] = None,
    baselines: Annotated[bool, typer.Option(help="Also rank by the published protocols, which do not chunk "
                                            "(BM25 over whole entries; one vector per entry, truncated by the "
                                            "model), to check the evaluation against published figures.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """nDCG@10, Recall@10, Recall@100 and MRR@10 on a BEIR folder, in a store of its own."""
    from ragqa import wiring
    from ragqa.cli.progress import terminal_progress
    from ragqa.eval.beir import eval_beir as run
    from ragqa.eval.beir import parse_modes

    wiring.offline()
    modes = parse_modes(mode)
    progress = terminal_progress(not as_json)
    with progress or contextlib.nullcontext():
        results = run(folder, split, modes, settings(), work_dir=work_dir, progress=progress, baselines=baselines)
    if as_json:
        _print_json(results[modes[0]] if len(results) == 1 else results)
        return
    for m, r in results.items():
        units = f"{r['chunks']} chunks" if "chunks" in r else "whole entries"
        typer.echo(f"{m:<14} nDCG@10 {r['ndcg@10']:.4f}  Recall@10 {r['recall@10']:.4f}  "
                   f"Recall@100 {r['recall@100']:.4f}  MRR@10 {r['mrr@10']:.4f}  right first {r['success@1']:.4f}  "
                   f"({r['queries']} queries, {r['documents']} documents, {units})")


@eval_app.command("qa")
@edge
def eval_qa(
    folder: Annotated[Path, typer.Argument(help="question_answer_pairs.txt (CMU format) or qa.jsonl, and documents.")],
    work_dir: Annotated[Path | None, typer.Option(help="Keep the evaluation store here (re-runs reuse it).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N questions.")] = None,
    holdout_every: Annotated[int, typer.Option(min=0, help="Leave every Nth document out of the store: "
                                               "its questions test that no answer is admitted.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """How often the gold answer is in the top 5 passages and in the extractive answer."""
    from ragqa import wiring
    from ragqa.cli.progress import terminal_progress
    from ragqa.eval.qa import eval_qa as run

    wiring.offline()
    progress = terminal_progress(not as_json)
    with progress or contextlib.nullcontext():
        result = run(folder, settings(), work_dir=work_dir, limit=limit, progress=progress,
                     holdout_every=holdout_every)
    if as_json:
        _print_json(result)
        return
    typer.echo(f"{result['questions']} questions ({result['factual_questions']} not yes/no), "
               f"top {result['passages']} passages")
    for name in ("all", "factual"):
        typer.echo(f"  {name:<8} right document in top passages {result[f'{name}_document_in_top']:.3f}  "
                   f"gold answer in passages {result[f'{name}_in_passages']:.3f}  "
                   f"in extractive answer {result[f'{name}_in_answer']:.3f}  answered {result[f'{name}_answered']:.3f}")
    if "unanswerable_questions" in result:
        typer.echo(f"  {result['unanswerable_questions']} questions about {result['held_out_documents']} documents "
                   f"left out: answer admitted missing {result['unanswerable_abstained']:.3f}")


@eval_app.command("followups")
@edge
def eval_followups(
    folder: Annotated[Path, typer.Argument(help="question_answer_pairs.txt (CMU format) and the articles.")],
    work_dir: Annotated[Path | None, typer.Option(help="Keep the evaluation store here (re-runs reuse it).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N follow-ups.")] = None,
    holdout_every: Annotated[int, typer.Option(min=0, help="Report on every Nth article only (the rest, kept "
                                               "for tuning the rule, under \"tuning\").")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """How often a follow-up that leaves its subject to an earlier turn finds the right article (success@5):
    alone, with the conversation, and with the subject named."""
    from ragqa import wiring
    from ragqa.cli.progress import terminal_progress
    from ragqa.eval.followups import eval_followups as run

    wiring.offline()
    progress = terminal_progress(not as_json)
    with progress or contextlib.nullcontext():
        result = run(folder, settings(), work_dir=work_dir, limit=limit, progress=progress,
                     holdout_every=holdout_every)
    if as_json:
        _print_json(result)
        return
    held = f" on {result['held_out_articles']} held-out articles" if "held_out_articles" in result else ""
    typer.echo(f"{result['questions']} follow-ups{held}, right article in the top 5 passages:")
    typer.echo(f"  standalone {result['standalone']:.3f}  with the conversation {result['conversation']:.3f}  "
               f"subject named {result['named']:.3f}  (gap recovered {result['recovered']:.2f})")
