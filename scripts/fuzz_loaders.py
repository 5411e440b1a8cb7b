"""Fuzz the loaders for a while on mutations of real files.

    python scripts/fuzz_loaders.py --minutes 5 ../shared/data/pdfs/good some.docx page.html

Every mutated file must load or fail with a LoadError (the one-line reason users see); anything
else is printed with the seed that reproduces it. Exit status 1 if anything escaped.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from ingest.fuzz import check_one, mutate

TYPES = {".pdf": "pdf", ".docx": "docx", ".html": "html", ".htm": "html"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("paths", nargs="+", type=Path)
    ap.add_argument("--minutes", type=float, default=5.0)
    a = ap.parse_args()
    files = [p for root in a.paths for p in ([root] if root.is_file() else sorted(root.rglob("*")))
             if p.suffix.lower() in TYPES and p.stat().st_size < 5 * 2**20]
    seeds = [(p, TYPES[p.suffix.lower()], p.read_bytes()) for p in files]
    deadline = time.monotonic() + a.minutes * 60
    runs: Counter[str] = Counter()
    escaped: list[tuple[str, int, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        n = 0
        while time.monotonic() < deadline:
            path, kind, data = seeds[n % len(seeds)]
            target = Path(tmp) / f"m{path.suffix}"
            target.write_bytes(mutate(data, random.Random(n)))
            problem = check_one(target, kind)
            runs[kind] += 1
            if problem:
                escaped.append((path.name, n, problem))
                print(f"ESCAPED {path.name} seed {n}: {problem}", flush=True)
            n += 1
    print(f"{sum(runs.values())} mutated files in {a.minutes} min ({dict(runs)}) from {len(seeds)} seeds; "
          f"{len(escaped)} escaped")
    return 1 if escaped else 0


if __name__ == "__main__":
    sys.exit(main())
