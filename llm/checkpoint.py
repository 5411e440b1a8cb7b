"""Reading a gpt-oss checkpoint directory in the Hugging Face layout, and sizing it first.

`config.json`, `model.safetensors.index.json` naming the shard of every tensor (or a single
`model.safetensors`), and `tokenizer.json`. Tensors are read one at a time with their dtype from
the safetensors header; MXFP4 blocks and scales stay uint8.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from llm.config import GptOssConfig
from llm.errors import CheckpointError, OutOfMemoryError

if TYPE_CHECKING:
    from safetensors import safe_open

GIB = 1 << 30
_SAFETENSORS_DTYPES = {"BF16": 2, "F16": 2, "F32": 4, "U8": 1, "I8": 1, "F64": 8, "I64": 8, "I32": 4}


class Checkpoint:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        if not folder.is_dir():
            raise CheckpointError(f"no checkpoint folder {folder}")
        self.config = GptOssConfig.load(folder)
        self.weight_map = self._weight_map()
        self._handles: dict[str, safe_open] = {}

    def _weight_map(self) -> dict[str, str]:
        index = self.folder / "model.safetensors.index.json"
        if index.is_file():
            try:
                return dict(json.loads(index.read_text())["weight_map"])
            except (ValueError, KeyError) as exc:
                raise CheckpointError(f"{index.name} is damaged ({type(exc).__name__})") from None
        single = self.folder / "model.safetensors"
        if single.is_file():
            from safetensors import safe_open

            with safe_open(str(single), framework="pt") as fh:
                return {name: single.name for name in fh.keys()}
        raise CheckpointError(f"no model.safetensors(.index.json) in {self.folder}")

    def stop_ids(self) -> tuple[int, ...]:
        """End-of-sequence ids: generation_config.json's, else config.json's."""
        path = self.folder / "generation_config.json"
        try:
            eos = json.loads(path.read_text()).get("eos_token_id") if path.is_file() else None
        except (OSError, ValueError):
            eos = None
        if eos is None:
            return self.config.eos_token_ids
        return tuple(eos if isinstance(eos, list) else [eos])

    def names(self) -> list[str]:
        return sorted(self.weight_map)

    def has(self, name: str) -> bool:
        return name in self.weight_map

    def tensor(self, name: str) -> torch.Tensor:
        """One tensor as stored (dtype from the header), read from its shard."""
        from safetensors import safe_open

        shard = self.weight_map.get(name)
        if shard is None:
            raise CheckpointError(f"the checkpoint has no tensor {name}")
        if shard not in self._handles:
            path = self.folder / shard
            if not path.is_file():
                raise CheckpointError(f"shard {shard} named in the index is missing")
            try:
                self._handles[shard] = safe_open(str(path), framework="pt")
            except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
                raise CheckpointError(f"shard {shard} cannot be read: {exc}") from None
        return self._handles[shard].get_tensor(name)

    def header_dtypes(self) -> dict[str, str]:
        """Tensor name -> safetensors dtype string, read from the shard headers only."""
        out: dict[str, str] = {}
        for shard in sorted(set(self.weight_map.values())):
            for name, meta in _read_header(self.folder / shard).items():
                if name != "__metadata__":
                    out[name] = meta["dtype"]
        return out

    def close(self) -> None:
        self._handles.clear()


def _read_header(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if size <= 0 or size > 100 * 1024 * 1024:
                raise ValueError("bad header size")
            return json.loads(fh.read(size))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path.name} is not a safetensors file ({exc})") from None


# ---- memory ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemoryEstimate:
    dense_bytes: int  # embeddings, attention, router, norms, biases in the compute dtype
    expert_bytes: int  # MXFP4 blocks and scales, as stored
    cache_bytes: int  # decoded experts kept (the cache budget, capped at all experts)
    kv_bytes: int  # KV cache for the given batch and context

    @property
    def total(self) -> int:
        return self.dense_bytes + self.expert_bytes + self.cache_bytes + self.kv_bytes

    def as_json(self) -> dict[str, float]:
        parts = ("dense_bytes", "expert_bytes", "cache_bytes", "kv_bytes")
        return {k: round(getattr(self, k) / GIB, 2) for k in parts} | {"total_gib": round(self.total / GIB, 2)}


def estimate_memory(config: GptOssConfig, dtype: torch.dtype, cache_mb: float, batch: int = 1,
                    context: int = 8192) -> MemoryEstimate:
    width = torch.finfo(dtype).bits // 8
    expert_weights = config.expert_params()
    expert_bytes = expert_weights // 32 * 17  # 16 bytes of nibbles + 1 scale byte per 32 weights
    full_decoded = expert_weights * width
    cache = min(int(cache_mb * 1024 * 1024), full_decoded)
    sliding = sum(t == "sliding_attention" for t in config.layer_types)
    per_layer_token = 2 * config.num_kv_heads * config.head_dim * width
    kv = batch * per_layer_token * ((config.num_layers - sliding) * context
                                    + sliding * min(context, config.sliding_window))
    return MemoryEstimate(config.dense_params() * width, expert_bytes, cache, kv)


def available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def ensure_fits(estimate: MemoryEstimate, device: torch.device) -> None:
    """Refuse before loading rather than crash halfway: 'needs X GiB, Y available'."""
    have = available_bytes(device)
    if estimate.total > have:
        where = "GPU memory" if device.type == "cuda" else "memory"
        raise OutOfMemoryError(f"the model needs {estimate.total / GIB:.1f} GiB of {where}, "
                               f"{have / GIB:.1f} GiB available "
                               f"(lower RAGQA_EXPERT_CACHE_MB or the context length, or use a larger device)")


def layer_tensors(checkpoint: Checkpoint, layer: int) -> Iterator[tuple[str, torch.Tensor]]:
    prefix = f"model.layers.{layer}."
    for name in checkpoint.names():
        if name.startswith(prefix):
            yield name[len(prefix):], checkpoint.tensor(name)
