"""Regenerate the documentation read off the code: the README's settings table and `.env.example`'s
settings section (ragqa/docs_gen.py).

    python scripts/gen_docs.py           # rewrite them
    python scripts/gen_docs.py --check   # exit 1 if they are out of date (tests/test_docs.py does the same)
"""

from __future__ import annotations

import argparse
import sys

from ragqa import docs_gen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report out-of-date files")
    args = parser.parse_args()
    if args.check:
        stale = docs_gen.stale()
        for path in stale:
            print(f"out of date: {path.relative_to(docs_gen.ROOT)} (run {docs_gen.REGENERATE})")
        return 1 if stale else 0
    for path in docs_gen.write():
        print(f"rewrote {path.relative_to(docs_gen.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
