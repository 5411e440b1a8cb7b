"""`ragqa bench ingest`: "encode alone" encodes exactly the texts the pipeline handed to the
embedder (the chunks' windows), and the report keeps its keys."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from rag.settings import Settings
from tests.fixtures import paragraph

KEYS = {"files", "failed", "pages", "chunks", "rounds", "seconds", "pages_per_s", "chunks_per_s",
        "encode_alone_chunks_per_s", "pipeline_vs_encode", "per_round_pipeline_chunks_per_s",
        "per_round_encode_chunks_per_s", "embed_share", "read_wait_share", "store_share", "reingest_seconds",
        "reingest_share", "embedding_model", "batch_size"}


def test_encode_alone_encodes_the_pipelines_window_texts(tmp_path: Path, embedder: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from ragqa import wiring
    from ragqa.bench.ingest import bench_ingest

    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "kiln.txt").write_text(paragraph("kiln firing", 12))
    (lib / "sea.md").write_text("# Sea\n\n" + paragraph("sonar mapping", 9))
    cfg = Settings(home=tmp_path / "home", chunk_tokens=64, chunk_overlap=8, window_tokens=24)
    calls: list[list[str]] = []
    real_encode = embedder.model.encode

    def spy(texts: list[str], **kwargs: Any) -> Any:
        calls.append(list(texts))
        return real_encode(texts, **kwargs)

    monkeypatch.setattr(wiring, "load_embedder", lambda *_a, **_k: embedder)
    monkeypatch.setattr(embedder.model, "encode", spy)
    result = bench_ingest(lib, cfg, rounds=1)

    assert set(result) == KEYS and result["failed"] == 0 and result["chunks"] > 2
    # Calls: the warm-up, the pipeline's steps, then encode alone (the re-ingest encodes nothing).
    pipeline, alone = [t for call in calls[1:-1] for t in call], calls[-1]
    assert Counter(alone) == Counter(pipeline)
    assert len(alone) > result["chunks"]  # windows, not whole chunks
