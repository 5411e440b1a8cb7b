"""Reading and chunking files in a separate process.

Why a process: a hostile or broken file can make a parser loop, recurse or eat memory; in a
worker it can be timed out, capped and killed without taking the ingest down. It also lets the
next files be read while the main process embeds the previous ones.
"""

from __future__ import annotations

import resource
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import LoadError, one_line
from rag.records import DocumentContent

_worker: dict[str, Any] = {}


@dataclass(frozen=True)
class ReaderConfig:
    tokenizer_json: str
    max_tokens: int
    overlap: int
    window_tokens: int
    timeout_s: float
    memory_mb: int
    ocr: bool = True  # RAGQA_OCR: pages without text and image files are read by OCR
    ocr_languages: str = "eng"


def _init_worker(config: ReaderConfig) -> None:
    from ingest.chunking import Chunker

    limit = config.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    _worker["chunker"] = Chunker(config.tokenizer_json, config.max_tokens, config.overlap, config.window_tokens)
    from ingest.loaders import ReadOptions

    _worker["options"] = ReadOptions(config.ocr, config.ocr_languages)


def read_and_chunk(path: str, doc_type: str, passwords: list[str], chunker: Any = None,
                   options: Any = None) -> DocumentContent:
    """Load one file and cut it into chunks. Raises LoadError with a one-line reason."""
    from ingest.loaders import load_file

    chunker = chunker or _worker["chunker"]
    try:
        loaded = load_file(Path(path), doc_type, passwords, options or _worker.get("options"))
    except LoadError:
        raise
    except MemoryError:
        raise LoadError("file needs more memory than the reader may use") from None
    except RecursionError:
        raise LoadError(f"damaged {doc_type} file: structure nested too deeply") from None
    except Exception as exc:  # noqa: BLE001 - a parser's own bug on a broken file: report, go on
        raise LoadError(f"unreadable {doc_type} file ({type(exc).__name__}: {one_line(exc, 160)})") from None
    pages = _tables_with_headers(loaded.pages, set(loaded.ocr), chunker)
    chunks = chunker.chunk(pages)
    if not chunks:
        raise LoadError("no extractable text")
    return DocumentContent(loaded.title, pages, loaded.paginated, chunks, list(loaded.warnings), dict(loaded.ocr))


def _tables_with_headers(pages: list[str], ocr_pages: set[int], chunker: Any) -> list[str]:
    """Long Markdown tables cut into pieces of at most a chunk that each repeat the header row;
    the chunker starts a chunk at every table (piece), so no chunk holds rows without their
    header. OCR'd pages are left as read: their word boxes point into that text."""
    from ingest.tables import repeat_headers

    budget = max(16, chunker.max_tokens - 4)
    return [p if n in ocr_pages else repeat_headers(p, chunker.count_tokens, budget) for n, p in enumerate(pages, 1)]


class FileReader:
    """A pool of one reader process. `submit` returns a future; `result` turns every way a read
    can go wrong (parser error, timeout, crash, memory) into a LoadError."""

    def __init__(self, config: ReaderConfig) -> None:
        import multiprocessing

        from pebble import ProcessPool

        self.config = config
        # forkserver: the worker does not inherit torch's threads from the parent.
        self._pool = ProcessPool(max_workers=1, initializer=_init_worker, initargs=(config,),
                                 context=multiprocessing.get_context("forkserver"))

    def submit(self, path: str, doc_type: str, passwords: list[str]) -> Future:
        return self._pool.schedule(read_and_chunk, args=(path, doc_type, passwords), timeout=self.config.timeout_s)

    def result(self, future: Future) -> DocumentContent:
        from pebble import ProcessExpired

        try:
            return future.result()
        except LoadError:
            raise
        except FutureTimeout:
            raise LoadError(f"reading took longer than {self.config.timeout_s:.0f}s (gave up)") from None
        except ProcessExpired as exc:
            raise LoadError(f"the reader crashed on this file (exit code {exc.exitcode})") from None
        except MemoryError:
            raise LoadError("file needs more memory than the reader may use") from None

    def close(self) -> None:
        self._pool.stop()
        self._pool.join(timeout=10)

    def __enter__(self) -> FileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
