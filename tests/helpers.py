"""Helpers shared by the tests: one way to ingest files into the test's store (`Library`, the
`library` fixture), one way to run `ragqa` in this process (`ragqa`) and one to run it as a process
of its own (`ragqa_process`), looks into the store, and the common part of the tests' scripted
model backends (`ScriptedModel`)."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ingest.pipeline import IngestSummary, ingest
from llm.generator import Prompt
from rag import schema as s


def run_ingest(paths: list[Path], store: Any, settings: Any, embedder: Any, **kw: Any) -> IngestSummary:
    return ingest(paths, store, settings, embedder.ref, load_embedder=lambda: embedder, **kw)


#: A file's content: text, bytes, a PDF's pages (a list of strings), or a function that writes the path.
FileSpec = str | bytes | list[str] | Callable[[Path], object]


def write_files(folder: Path, files: Mapping[str, FileSpec]) -> Path:
    """Write `files` (relative name -> content) under `folder`; returns the folder."""
    from tests.fixtures import make_pdf

    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, list):
            make_pdf(path, content)
        else:
            content(path)
    return folder


class Library:
    """What the `library` fixture gives: `library(files, collection=..., folder=...)` writes the
    files into a folder of the test's tmp_path, ingests that folder into the test's store (with
    the session's embedder) and returns the folder; every file must go in (tests of failures call
    `run_ingest`). The last ingest's summary is `library.summary`."""

    def __init__(self, root: Path, store: Any, settings: Any, embedder: Any) -> None:
        self.root, self.store, self.settings, self.embedder = root, store, settings, embedder
        self.summary: IngestSummary | None = None

    def __call__(self, files: Mapping[str, FileSpec], *, collection: str = "default", folder: str = "lib",
                 **ingest_kw: Any) -> Path:
        path = write_files(self.root / folder, files)
        self.summary = run_ingest([path], self.store, self.settings, self.embedder, collection=collection,
                                  **ingest_kw)
        assert not self.summary.failed, self.summary.failed
        return path


@dataclass(frozen=True)
class Ran:
    """A finished `ragqa` run, named as subprocess.CompletedProcess names it."""

    returncode: int
    stdout: str
    stderr: str


def ragqa(env: Mapping[str, str] | None, *args: str, input: str | None = None) -> Ran:
    """`ragqa ARGS` in this process (typer's CliRunner on `ragqa.cli.app`), seeing exactly `env` as
    its environment (None: this process's), as a subprocess would: for output and exit codes.
    Tests that need a process of their own (kill -9, processes racing, a server) use `ragqa_process`."""
    from typer.testing import CliRunner

    from ragqa.cli import app, common

    changes = None if env is None else {**{k: None for k in os.environ if k not in env}, **env}
    common._settings = None  # the CLI reads its settings once per process: here, once per run
    try:
        result = CliRunner().invoke(app, list(args), input=input, env=changes)
    finally:
        common._settings = None
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # An exception that escaped the CLI: what the interpreter would have printed, exit status 1.
        stderr += "".join(traceback.format_exception(result.exception))
    return Ran(result.exit_code, result.stdout, stderr)


def ragqa_command(*args: str) -> list[str]:
    """The command line of `ragqa ARGS` run by this interpreter, for subprocess.Popen."""
    return [sys.executable, "-m", "ragqa.cli", *args]


def ragqa_process(env: Mapping[str, str], *args: str, input: str | None = None,
                  timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`ragqa ARGS` as a separate process, waited for: only where a test needs a real process."""
    return subprocess.run(ragqa_command(*args), env=dict(env), input=input, capture_output=True, text=True,
                          timeout=timeout, check=False)


def no_traceback(result: Ran | subprocess.CompletedProcess[str]) -> None:
    """Users see one-line errors, never a Python traceback."""
    assert "Traceback" not in result.stdout + result.stderr


def nearest_texts(store: Any, embedder: Any, query: str, k: int = 3) -> list[str]:
    """Texts of the k nearest chunks by the FAISS index (what retrieval will build on)."""
    _, vectors = store.load_vectors()
    if vectors is None:
        return []
    _, ids = vectors.search(embedder.encode([query]), k)
    wanted = [int(i) for i in ids[0] if i >= 0]
    with store.engine.connect() as c:
        rows = dict(c.execute(select(s.chunks.c.id, s.chunks.c.text).where(s.chunks.c.id.in_(wanted))).all())
    return [rows[i] for i in wanted]


def chunk_snapshot(store: Any) -> set[tuple[str, int, str]]:
    """(path, ordinal, text) of every stored chunk: equal snapshots mean equal content."""
    with store.engine.connect() as c:
        rows = c.execute(select(s.documents.c.path, s.chunks.c.ordinal, s.chunks.c.text)
                         .join(s.documents, s.documents.c.id == s.chunks.c.document_id)).all()
    return {(r[0], r[1], r[2]) for r in rows}


class ScriptedModel:
    """What the tests' scripted model backends share (a subclass writes `stream`, appending each
    prompt to `prompts`): no checks, 4 characters a token, a `context`-token window."""

    name = "scripted"
    extractive = False
    tools_capable = False

    def __init__(self, context: int = 8192) -> None:
        self.context = context
        self.prompts: list[Prompt] = []

    def check(self) -> str | None:
        return None

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    @property
    def context_tokens(self) -> int:
        return self.context

    def describe(self) -> dict[str, str]:
        return {"backend": "scripted"}
