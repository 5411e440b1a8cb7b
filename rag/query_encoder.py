"""Query embedding through ONNX Runtime: the same network and weights as sentence-transformers, but
run as one optimised graph. For one short text on a CPU the PyTorch model spends most of its time
in per-operator overhead and unfused small matrix products; ONNX Runtime fuses attention, GELU and
layer norm and pre-packs the weights, about 2.5 times faster (docs/benchmarks.md, History, "Query encoder").
Queries are embedded one at a time while a user waits, so this is where the time goes.

The graph is exported once from the loaded PyTorch model (torch's TorchScript exporter, which needs
the `onnx` package) into a cache file keyed by the model's own files, and is checked against
PyTorch on probe texts once per graph file and runtime: a stamp beside the file records the check
(the file's hash and the versions of onnxruntime and torch), so a CLI command or a UI process does
not spend a second and a half re-proving it at every start; any change to those checks it again.
Anything unusual (a model whose modules do not trace, no onnxruntime, a damaged cache file, a
disagreement) means PyTorch keeps serving queries: slower, never wrong. Document embedding in
bulk stays on PyTorch, where batches keep it efficient.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from rag.vectors import write_atomically

log = logging.getLogger(__name__)

# Texts the exported graph must embed as PyTorch does: short, accented, numeric, and one past the
# model's input limit (truncation happens in the tokenizer, before the graph).
PROBES = ("annual leave for new staff", "Ünïcödé, naïve café — 12,345.67 € (§4.2)",
          "who approves travel expenses above the limit? " * 60)
MIN_COSINE = 0.9999


class OnnxQueryEncoder:
    """Encodes one text at a time: the model's own tokenizer, then the exported graph."""

    def __init__(self, session: Any, preprocess: Any) -> None:
        self._session = session
        self._preprocess = preprocess

    def encode(self, text: str) -> np.ndarray:
        """[dim] float32, as the PyTorch model gives it (normalised if the model normalises)."""
        features = self._preprocess([text])
        feed = {"input_ids": features["input_ids"].numpy().astype(np.int64),
                "attention_mask": features["attention_mask"].numpy().astype(np.int64)}
        return np.ascontiguousarray(self._session.run(None, feed)[0][0], dtype=np.float32)


def cache_key(model_path: Path) -> str:
    """Changes whenever the model's files do (names, sizes and modification times)."""
    h = hashlib.sha256()
    for f in sorted(p for p in model_path.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(model_path)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def load_query_encoder(model: Any, model_path: Path, cache_dir: Path, threads: int) -> OnnxQueryEncoder | None:
    """The ONNX encoder for this sentence-transformers model, exported on first use; None when it
    cannot be had or does not match PyTorch (the reason is logged)."""
    try:
        import onnxruntime as ort
    except ImportError:
        log.info("onnxruntime is not installed: queries are embedded with PyTorch")
        return None
    path = cache_dir / f"query-encoder-{cache_key(model_path)}.onnx"
    try:
        if not path.exists():
            cache_dir.mkdir(parents=True, exist_ok=True)
            _export(model, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        encoder = OnnxQueryEncoder(session, model.preprocess)
        stamp = _check_stamp(path, ort.__version__)
        worst = 1.0 if _was_checked(path, stamp) else _worst_cosine(model, encoder)
    except Exception as exc:  # noqa: BLE001 - any failure here only costs speed: PyTorch serves queries
        log.warning("query encoder: ONNX export or load failed (%s: %s); using PyTorch", type(exc).__name__, exc)
        with contextlib.suppress(OSError):  # a read-only cache (an app replica) keeps its file
            path.unlink(missing_ok=True)
            _stamp_path(path).unlink(missing_ok=True)
        return None
    if worst < MIN_COSINE:
        log.warning("query encoder: ONNX disagrees with PyTorch (cosine %.6f); using PyTorch", worst)
        return None
    with contextlib.suppress(OSError):  # a read-only cache (an app replica) checks at every start
        if not _was_checked(path, stamp):
            write_atomically(_stamp_path(path), lambda fh: fh.write(stamp.encode()))
    return encoder


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".checked")


def _check_stamp(path: Path, runtime_version: str) -> str:
    """What a check against PyTorch was made on: the graph file's bytes and both runtimes."""
    import torch

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return f"{h.hexdigest()} onnxruntime {runtime_version} torch {torch.__version__}"


def _was_checked(path: Path, stamp: str) -> bool:
    try:
        return _stamp_path(path).read_text() == stamp
    except OSError:
        return False


def _export(model: Any, path: Path) -> None:
    import torch

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.model({"input_ids": input_ids, "attention_mask": attention_mask})["sentence_embedding"]

    sample = model.preprocess([PROBES[0]])
    args = (sample["input_ids"], sample["attention_mask"])
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
            "embedding": {0: "batch"}}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.export")
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shapes: the probes check the result
        torch.onnx.export(Graph().eval(), args, str(tmp), dynamo=False, input_names=list(axes)[:2],
                          output_names=["embedding"], dynamic_axes=axes, opset_version=17)
    try:
        data = tmp.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)
    write_atomically(path, lambda fh: fh.write(data))


def _worst_cosine(model: Any, encoder: OnnxQueryEncoder) -> float:
    import torch

    worst = 1.0
    with torch.inference_mode():
        for text in PROBES:
            ref = model(model.preprocess([text]))["sentence_embedding"][0].float().numpy()
            got = encoder.encode(text)
            cos = float(ref @ got / (np.linalg.norm(ref) * np.linalg.norm(got) + 1e-12))
            worst = min(worst, cos)
    return worst
