"""Mutations of real files for fuzzing the loaders (used by the test suite and by
`scripts/fuzz_loaders.py`): every mutated file must load or fail with a LoadError, never with
anything else."""

from __future__ import annotations

import random
from pathlib import Path

from ingest.loaders import LoadedFile, load_file
from rag.errors import LoadError


def mutate(seed: bytes, rng: random.Random, rounds: int = 4) -> bytes:
    """A damaged copy: bytes flipped, slices cut, repeated or replaced with noise, the end cut off."""
    data = bytearray(seed)
    for _ in range(rng.randint(1, rounds)):
        if not data:
            break
        op = rng.randrange(5)
        a = rng.randrange(len(data))
        b = min(len(data), a + rng.randint(1, 256))
        if op == 0:
            for i in range(a, b, max(1, (b - a) // 8)):
                data[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            del data[a:b]
        elif op == 2:
            data[a:a] = data[a:b] * rng.randint(1, 4)
        elif op == 3:
            data[a:b] = bytes(rng.randrange(256) for _ in range(b - a))
        else:
            del data[a:]
    return bytes(data)


def check_one(path: Path, doc_type: str) -> str | None:
    """None when the loader behaved (loaded, or refused with a LoadError); else what escaped."""
    try:
        result = load_file(path, doc_type, [""])
        assert isinstance(result, LoadedFile)
    except LoadError:
        pass
    except Exception as exc:  # noqa: BLE001 - this is what fuzzing looks for
        return f"{type(exc).__name__}: {str(exc)[:120]}"
    return None
