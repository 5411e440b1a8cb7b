"""The `ragqa` command. Thin: parse arguments, build parts through `wiring`, print results."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer

from ragqa.cli import access, bench, keys, llm
from ragqa.cli.common import JsonOpt, edge, settings
from ragqa.cli.common import print_json as _print_json
from ragqa.cli.eval import eval_app

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Question answering over your own documents, with citations.")
app.add_typer(bench.bench_app, name="bench")
app.add_typer(eval_app, name="eval")


@app.command()
@edge
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to ingest.")],
    collection: Annotated[str, typer.Option(help="Collection to put the documents in.")] = "default",
    password_file: Annotated[Path | None, typer.Option(help="TSV: FILENAME<TAB>PASSWORD per line.")] = None,
    prune: Annotated[bool, typer.Option("--prune", help="Remove documents whose files are gone.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add and update documents; unchanged files are skipped. Exit 1 when some files failed."""
    from ingest.discover import PasswordBook
    from ingest.pipeline import ingest as run_ingest
    from ragqa import wiring
    from ragqa.cli.progress import terminal_progress

    wiring.offline()
    cfg = settings()
    book = PasswordBook.read(password_file) if password_file else None
    store = wiring.open_store(cfg)
    progress = terminal_progress(not as_json)
    loaded: list[Any] = []

    def load_embedder() -> Any:
        loaded.append(wiring.load_embedder(cfg))
        return loaded[-1]

    with progress or contextlib.nullcontext():
        summary = run_ingest(paths, store, cfg, wiring.embedding_ref(cfg), collection=collection,
                             passwords=book, prune=prune, load_embedder=load_embedder, progress=progress)
    for embedder in loaded:  # the model is loaded anyway: make the first search's query encoder now
        embedder.prepare_for_queries()
    from rag.audit import record
    from ragqa.cli.access import cli_user

    record(store.engine, cli_user(), "ingest", collection=collection, paths=[str(p) for p in paths],
           changes=summary.changes, failed=len(summary.failed))
    if as_json:
        _print_json(summary.as_json())
    else:
        _print_ingest_summary(summary)
    raise typer.Exit(1 if summary.failed else 0)


def _print_ingest_summary(summary: Any) -> None:
    typer.echo(f"added {summary.added}, updated {summary.updated}, unchanged {summary.unchanged}, "
               f"removed {summary.removed}, failed {len(summary.failed)}"
               + (f", duplicates {len(summary.duplicates)}" if summary.duplicates else "")
               + f"  ({summary.pages} pages, {summary.chunks} chunks, {summary.seconds:.1f}s)")
    if summary.skipped_by_type:
        typer.echo(f"  {summary.skipped_text()}")
    for d in summary.duplicates:
        typer.echo(f"  same content: {d['path']} = {d['same_as']} (stored once)")
    for w in summary.warnings:
        typer.echo(f"  warning: {w['path']}: {w['warning']}")
    for f in summary.failed:
        typer.echo(f"  failed: {f['path']}: {f['error']}", err=True)


@app.command()
@edge
def docs(
    collection: Annotated[str | None, typer.Option(help="Only this collection.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List documents with their status."""
    from ragqa import wiring

    rows = wiring.open_store(settings()).documents(collection)
    if as_json:
        _print_json([d.as_json() for d in rows])
        return
    if not rows:
        typer.echo("no documents (add some with `ragqa ingest PATH`)")
    for d in rows:
        pages = f"{d.pages}p" if d.pages else "-"
        note = f"  [{d.error}]" if d.error else ""
        typer.echo(f"{d.id:>6}  {d.status:<9} {d.collection:<12} {pages:>5} {d.chunks:>5}ch  "
                   f"{d.title[:50]:<50}  {d.path}{note}")


@app.command()
@edge
def remove(
    documents: Annotated[list[str], typer.Argument(help="Document ids or paths (see `ragqa docs`).")],
    as_json: JsonOpt = False,
) -> None:
    """Delete documents from the store (their files are left alone)."""
    from rag.writer import open_writer
    from ragqa import wiring

    store = wiring.open_store(settings())
    found = store.resolve_documents(documents)
    with open_writer(store) as w:
        for d in found:
            w.remove(d.id)
    from rag.audit import record
    from ragqa.cli.access import cli_user

    record(store.engine, cli_user(), "remove", documents=[{"id": d.id, "path": d.path} for d in found])
    if as_json:
        _print_json({"removed": [d.id for d in found]})
    else:
        for d in found:
            typer.echo(f"removed {d.id}  {d.path}")


@app.command()
@edge
def check(
    repair: Annotated[bool, typer.Option("--repair", help="Rebuild the vector and lexical indexes from SQL.")] = False,
    generator: Annotated[bool, typer.Option("--generator", help="Check the generator instead: which server, model, "
                                            "context window and tokenizer are in use, or why none answers.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Verify that the SQL store, the vector index and the lexical index agree (exit 0 when they do)."""
    from rag.consistency import check_store, repair_store
    from ragqa import wiring

    if generator:
        _check_generator(as_json)
        return
    store = wiring.open_store(settings())
    report = repair_store(store) if repair else check_store(store)
    if as_json:
        _print_json({"ok": report.ok, "problems": report.problems, "notes": report.notes,
                     "documents": report.documents, "chunks": report.chunks, "vectors": report.vectors,
                     "generation": report.generation})
    else:
        verdict = "ok" if report.ok else "INCONSISTENT"
        typer.echo(f"{verdict}: {report.documents} documents, {report.chunks} chunks, {report.vectors} vectors "
                   f"(index generation {report.generation})")
        for p in report.problems:
            typer.echo(f"  problem: {p}")
        for n in report.notes:
            typer.echo(f"  note: {n}")
        if not report.ok:
            typer.echo("  run `ragqa check --repair` to rebuild the vector and lexical indexes from SQL")
    raise typer.Exit(0 if report.ok else 1)


def _check_generator(as_json: bool) -> None:
    """`ragqa check --generator`: the generator's facts, and whether it can answer now (exit 1 if not)."""
    from ragqa import wiring

    gen = wiring.generator(settings())
    facts = gen.describe()
    problem = gen.check()
    if as_json:
        _print_json({**facts, "ok": problem is None, "problem": problem})
    else:
        for key, value in facts.items():
            typer.echo(f"{key + ':':<11} {value}")
        typer.echo("ok: the generator can answer" if problem is None else f"problem: {problem}")
    raise typer.Exit(0 if problem is None else 1)


@app.command()
@edge
def backup(
    folder: Annotated[Path, typer.Argument(help="A new, empty folder for the backup.")],
    as_json: JsonOpt = False,
) -> None:
    """Back up the library (database, index, uploaded originals) while no ingest can commit."""
    from rag.backup import backup as run
    from ragqa import wiring

    cfg = settings()
    manifest = run(wiring.open_store(cfg), cfg, folder)
    if as_json:
        _print_json(manifest)
    else:
        typer.echo(f"backed up {manifest['documents']} documents, {manifest['chunks']} chunks "
                   f"({manifest['dialect']}, index generation {manifest['generation']}) to {folder}")


@app.command()
@edge
def restore(
    folder: Annotated[Path, typer.Argument(help="A folder written by `ragqa backup`.")],
    as_json: JsonOpt = False,
) -> None:
    """Restore a backup into an empty database and data folder, then check it."""
    from rag.backup import restore as run
    from rag.consistency import check_store
    from ragqa import wiring

    cfg = settings()
    manifest = run(cfg, folder)
    report = check_store(wiring.open_store(cfg))  # opening applies newer migrations, if any
    if as_json:
        _print_json({**manifest, "ok": report.ok, "problems": report.problems})
    else:
        typer.echo(f"restored {manifest['documents']} documents, {manifest['chunks']} chunks; "
                   + ("check ok" if report.ok else "INCONSISTENT: " + "; ".join(report.problems)))
    raise typer.Exit(0 if report.ok else 1)


ModeOpt = Annotated[str, typer.Option("--mode", help="hybrid, dense or lexical.")]


@app.command()
@edge
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", min=1, max=200, help="Passages to return.")] = 10,
    collection: Annotated[list[str] | None, typer.Option(help="Only these collections (repeatable).")] = None,
    document: Annotated[list[int] | None, typer.Option(help="Only these document ids (repeatable).")] = None,
    mode: ModeOpt = "hybrid",
    as_json: JsonOpt = False,
) -> None:
    """Ranked passages for a query, with document, pages and score."""
    from rag.retrieval import Scope
    from ragqa import wiring

    wiring.offline()
    retriever = wiring.retriever(settings())
    passages = retriever.search(query, k, mode, Scope(tuple(collection or ()), tuple(document or ())))  # type: ignore[arg-type]
    if as_json:
        _print_json({"query": query, "mode": mode, "passages": [p.as_json() for p in passages]})
        return
    if not passages:
        typer.echo("no matching passages")
    for n, p in enumerate(passages, 1):
        typer.echo(f"[{n}] {p.score:.3f}  {p.title}  (p. {p.pages}; {p.collection}; doc {p.document_id})")
        typer.echo("    " + " ".join(p.text.split())[:400])


@app.command()
@edge
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    reasoning: Annotated[str | None, typer.Option(help="low, medium or high (default: RAGQA_REASONING).")] = None,
    collection: Annotated[list[str] | None, typer.Option(help="Only these collections (repeatable).")] = None,
    show_reasoning: Annotated[bool, typer.Option("--show-reasoning", help="Also print the model's reasoning.")] = False,
    user: Annotated[str | None, typer.Option(help="Ask as this account: only what it may read is searched.")] = None,
    conversation: Annotated[int | None, typer.Option(
        "--conversation", help="Continue this stored conversation of yours (see the Ask page): its earlier "
        "questions and answers are the context, and the new ones are added to it.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question from the library, with checked citations."""
    from rag.answer import REASONING_LEVELS, Collected
    from rag.errors import ConfigError
    from rag.retrieval import Scope
    from rag.tools import Step
    from ragqa import wiring

    wiring.offline()
    cfg = settings()
    level = reasoning or cfg.reasoning
    if level not in REASONING_LEVELS:
        raise ConfigError(f"--reasoning must be one of {', '.join(REASONING_LEVELS)}")
    from rag.access import Accounts
    from rag.audit import answer_detail, record
    from ragqa.cli.access import cli_user

    store = wiring.open_store(cfg)
    accounts = Accounts(store.engine)
    readable = accounts.readable(accounts.get(user)) if user else None
    chats, history = _conversation(store, conversation, user or cli_user())
    answerer = wiring.answerer(cfg, wiring.retriever(cfg, store))
    draft = answerer.prepare(question, history=history, scope=Scope(tuple(collection or ()), readable=readable),
                             reasoning=level)
    if not as_json and draft.search_query != draft.question:
        typer.echo(f"searched for: {draft.search_query}\n")
    collected = Collected()
    # With tools, each step is printed as it runs and the answer once its line citations are resolved.
    streamed = not draft.prompt.tools
    for piece in answerer.stream(draft, collected):
        if as_json:
            continue
        if isinstance(piece, Step):
            typer.echo(f"- {piece.summary}")
        elif streamed and piece.channel == "final":
            typer.echo(piece.text, nl=False)
    answer = answerer.finish(draft, collected)
    record(store.engine, user or cli_user(), "ask", **answer_detail(answer))
    if chats is not None and conversation is not None:
        chats.add(conversation, "user", question.strip())
        chats.add(conversation, "assistant", answer.text, answer.as_json())
    if as_json:
        _print_json(answer.as_json())
        return
    if not streamed:
        typer.echo(("\n" if answer.steps else "") + answer.text, nl=False)
    typer.echo()
    _print_answer_details(answer, show_reasoning)


def _conversation(store: Any, conversation: int | None, who: str) -> tuple[Any, list[Any]]:
    """The stored conversations and the earlier exchanges of `conversation`, which must be `who`'s
    (the same message whether it is someone else's or missing: ids are not to be probed)."""
    if conversation is None:
        return None, []
    from rag.conversations import Conversations, exchanges
    from rag.errors import ConfigError

    chats = Conversations(store.engine)
    if chats.owner(conversation) != who:
        raise ConfigError(f"no conversation {conversation} of {who}'s (see the Ask page's list)")
    return chats, exchanges(chats.messages(conversation))


def _print_answer_details(answer: Any, show_reasoning: bool) -> None:
    if show_reasoning and answer.reasoning:
        typer.echo("\nreasoning:\n" + answer.reasoning)
    label = " (extractive: sentences quoted from the sources, no language model)" if answer.extractive else ""
    typer.echo(f"\nbackend: {answer.backend}{label}")
    for s in answer.sources:
        mark = "*" if s.cited else " "
        p = s.passage
        typer.echo(f"{mark}[{s.number}] {p.title}  (p. {p.pages}; doc {p.document_id}; {p.path})")
        for q in s.quotes:
            typer.echo(f"      p. {q.page}, characters {q.start}-{q.end}: " + " ".join(q.text.split())[:160])
    for d in answer.dropped:
        typer.echo(f"  left out: {d}")
    for note in answer.notes:
        typer.echo(f"  note: {note}")
    for problem in answer.problems:
        typer.echo(f"  citation problem: {problem}", err=True)


@app.command()
@edge
def ui(
    address: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8501,
    published_on_loopback: Annotated[bool, typer.Option(
        "--published-on-loopback",
        help="Listen on ADDRESS without sign-in because only 127.0.0.1 of the host can reach it "
             "(a container whose port is published on 127.0.0.1).")] = False,
) -> None:
    """Start the staff UI (Streamlit) at http://ADDRESS:PORT."""
    import os
    import sys

    import ragqa as ragqa_package
    from rag.access import Accounts
    from rag.errors import ConfigError
    from ragqa import wiring

    wiring.offline()
    cfg = settings()  # a bad setting is reported here, in one line, before the server starts
    loopback = address in ("127.0.0.1", "localhost", "::1")
    if (not loopback and not published_on_loopback and not _oidc_configured()
            and not Accounts(wiring.open_store(cfg).engine).any()):
        raise ConfigError(f"no sign-in is configured: the UI serves 127.0.0.1 only (not {address}) until an "
                          "account exists (`ragqa users add`) or OIDC is set up in .streamlit/secrets.toml")
    script = Path(ragqa_package.__file__).parent / "ui_app.py"
    args = [sys.executable, "-m", "streamlit", "run", str(script), "--server.address", address, "--server.port",
            str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--client.showErrorDetails", "none", "--client.toolbarMode", "minimal",
            "--server.maxUploadSize", str(int(settings().max_file_mb))]
    typer.echo(f"ragqa UI on http://{address}:{port}  (Ctrl+C stops it)", err=True)
    os.execv(sys.executable, args)


def _oidc_configured() -> bool:
    """An `[auth]` section in the Streamlit secrets file Streamlit will read."""
    import tomllib

    for path in (Path.cwd() / ".streamlit" / "secrets.toml", Path.home() / ".streamlit" / "secrets.toml"):
        try:
            if "auth" in tomllib.loads(path.read_text()):
                return True
        except (OSError, ValueError):
            continue
    return False


# After the commands above, so that `ragqa --help` lists them first.
llm.register(app)
access.register(app)
keys.register(app)


def main() -> None:
    app()

