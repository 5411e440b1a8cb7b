"""gpt-oss configuration, read from a checkpoint's config.json (the Hugging Face layout).

Both spellings of the rotary settings are accepted: `rope_scaling` plus a top-level `rope_theta`
(the published files) and `rope_parameters` (newer transformers).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from llm.errors import CheckpointError


@dataclass(frozen=True)
class Yarn:
    factor: float = 32.0
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    original_context: int = 4096
    truncate: bool = False  # gpt-oss: the ramp bounds are not rounded


@dataclass(frozen=True)
class GptOssConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    num_experts: int
    experts_per_token: int
    sliding_window: int
    layer_types: tuple[str, ...]
    rope_theta: float
    yarn: Yarn | None
    rms_norm_eps: float
    swiglu_limit: float
    swiglu_alpha: float
    max_positions: int
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None

    @classmethod
    def from_dict(cls, raw: dict) -> GptOssConfig:
        try:
            layers = int(raw["num_hidden_layers"])
            heads = int(raw["num_attention_heads"])
            rope = dict(raw.get("rope_parameters") or raw.get("rope_scaling") or {})
            theta = float(rope.get("rope_theta", raw.get("rope_theta", 150000.0)))
            yarn = None
            if rope.get("rope_type", rope.get("type")) == "yarn":
                yarn = Yarn(float(rope.get("factor", 32.0)), float(rope.get("beta_fast") or 32.0),
                            float(rope.get("beta_slow") or 1.0), int(rope["original_max_position_embeddings"]),
                            bool(rope.get("truncate", True)))
            types = raw.get("layer_types") or [
                "sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)]
            eos = raw.get("eos_token_id")
            return cls(
                vocab_size=int(raw["vocab_size"]), hidden_size=int(raw["hidden_size"]),
                intermediate_size=int(raw["intermediate_size"]), num_layers=layers, num_heads=heads,
                num_kv_heads=int(raw.get("num_key_value_heads") or heads),
                head_dim=int(raw.get("head_dim") or int(raw["hidden_size"]) // heads),
                num_experts=int(raw.get("num_local_experts", raw.get("num_experts", 0))),
                experts_per_token=int(raw.get("num_experts_per_tok", raw.get("experts_per_token", 4))),
                sliding_window=int(raw.get("sliding_window") or 128), layer_types=tuple(types),
                rope_theta=theta, yarn=yarn, rms_norm_eps=float(raw.get("rms_norm_eps", 1e-5)),
                swiglu_limit=float(raw.get("swiglu_limit", 7.0)), swiglu_alpha=float(raw.get("swiglu_alpha", 1.702)),
                max_positions=int(raw.get("max_position_embeddings", 131072)),
                eos_token_ids=tuple(eos if isinstance(eos, list) else [eos] if eos is not None else []),
                pad_token_id=raw.get("pad_token_id"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"config.json is not a gpt-oss config ({type(exc).__name__}: {exc})") from None

    @classmethod
    def load(cls, folder: Path) -> GptOssConfig:
        path = folder / "config.json"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise CheckpointError(f"no config.json in {folder}") from None
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read {path}: {exc}") from None
        config = cls.from_dict(raw)
        if len(config.layer_types) != config.num_layers:
            raise CheckpointError("config.json: layer_types does not have one entry per layer")
        return config

    # ---- sizes, for the memory estimate ------------------------------------------------------
    def expert_params(self) -> int:
        """Weights of all experts of all layers (the MXFP4 part)."""
        per_expert = self.hidden_size * 2 * self.intermediate_size + self.intermediate_size * self.hidden_size
        return self.num_layers * self.num_experts * per_expert

    def dense_params(self) -> int:
        """Everything else: embeddings, unembedding, attention, router, norms, biases."""
        h, d = self.hidden_size, self.head_dim
        attn = h * d * (self.num_heads * 2 + self.num_kv_heads * 2) + d * (self.num_heads + 2 * self.num_kv_heads) + h
        attn += self.num_heads  # sinks
        router = self.num_experts * (h + 1)
        biases = self.num_experts * (2 * self.intermediate_size + h)
        per_layer = attn + router + biases + 2 * h
        return 2 * self.vocab_size * h + self.num_layers * per_layer + h

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        return self.num_layers * 2 * self.num_kv_heads * self.head_dim * dtype_bytes

    def yarn_concentration(self) -> float:
        """The attention factor YaRN applies to cos and sin (0.1 ln(factor) + 1)."""
        if self.yarn is None or self.yarn.factor <= 1:
            return 1.0
        return 0.1 * math.log(self.yarn.factor) + 1.0
