"""Loaders on mutated PDFs, HTML and DOCX: each file loads or fails with a one-line LoadError.
A short run here; `scripts/fuzz_loaders.py --minutes N` runs the same for longer."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.fuzz import check_one, mutate
from tests.fixtures import encrypt_pdf, make_docx, make_pdf, paragraph


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("seeds")
    html = ("<html><head><title>T</title><script>var x = 1;</script></head><body><nav>menu</nav><article>"
            f"<h1>Heading</h1><p>{paragraph('html fuzz', 3)}</p><table><tr><td>a</td></tr></table></article>"
            "</body></html>")
    pdf = make_pdf(root / "s.pdf", [paragraph("pdf fuzz", 4), "second page"])
    return {"pdf": pdf.read_bytes(), "encrypted": encrypt_pdf(pdf, root / "e.pdf", "").read_bytes(),
            "docx": make_docx(root / "s.docx", "Title", [paragraph("docx fuzz", 2)], [["a", "b"]]).read_bytes(),
            "html": html.encode()}


@pytest.mark.parametrize("kind", ["pdf", "encrypted", "docx", "html"])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_files_load_or_fail_cleanly(kind: str, seed: int, seeds: dict[str, bytes],
                                            tmp_path: Path) -> None:
    doc_type = "pdf" if kind == "encrypted" else kind
    path = tmp_path / f"f.{doc_type}"
    path.write_bytes(mutate(seeds[kind], random.Random(seed)))
    assert check_one(path, doc_type) is None
