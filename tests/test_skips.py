"""Files in a folder that ingest does not read are named by type with the reason, in the text
summary and the JSON, and the exit status is that of the files that were read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.discover import Skipped, describe_skipped, discover, group_skipped
from ingest.formats import skip_reason
from tests.helpers import FileSpec, ragqa, write_files

HEIC = "image format not read: save it as PNG, JPEG or TIFF"
MIXED: dict[str, FileSpec] = {
    "policy.md": "# Leave\n\nStaff get 27 days of annual leave.", "scan1.heic": b"\x00\x00\x00\x18ftypheic",
    "scan2.HEIC": b"\x00\x00\x00\x18ftypheic", "deck.pptx": b"PK\x03\x04....", ".DS_Store": b"\x00\x00",
    "notes/readme": "no extension here"}


def test_skips_are_grouped_by_type_most_frequent_first(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "lib", MIXED)
    candidates, skipped = discover([folder])
    assert [c.path.name for c in candidates] == ["policy.md"]
    assert group_skipped(skipped) == [
        {"type": ".heic", "count": 2, "reason": "image format not read: save it as PNG, JPEG or TIFF"},
        {"type": ".pptx", "count": 1, "reason": "not a supported type"},
        {"type": "hidden file", "count": 1, "reason": "names starting with a dot are skipped"},
        {"type": "no extension", "count": 1, "reason": "not a supported type"},
    ]
    assert describe_skipped(group_skipped([Skipped(Path("a.png"), "images need OCR: not enabled"),
                                           Skipped(Path("b.png"), "images need OCR: not enabled"),
                                           Skipped(Path("c.pptx"), "not a supported type")])) == \
        "skipped 3: 2 .png (images need OCR: not enabled), 1 .pptx (not a supported type)"
    assert describe_skipped([]) == ""


@pytest.mark.parametrize("name, reason", [("a.pdf", None), ("a.JPEG", None), ("a.tiff", None),
                                          ("a.xlsx", None), ("a.csv", None), ("a.heic", HEIC),
                                          ("a.pptx", "not a supported type"),
                                          (".hidden.md", "names starting with a dot are skipped")])
def test_skip_reason(name: str, reason: str | None) -> None:
    assert skip_reason(Path(name), ocr=True) == reason


@pytest.mark.db
def test_ingest_names_what_it_skipped_in_text_and_json(tmp_path: Path, cli_env: dict[str, str]) -> None:
    folder = write_files(tmp_path / "lib", MIXED)
    text = ragqa(cli_env, "ingest", str(folder))
    assert text.returncode == 0, text.stderr  # skipping is not failing
    assert ("skipped 5: 2 .heic (image format not read: save it as PNG, JPEG or TIFF), 1 .pptx (not a supported type), "
            "1 hidden file (names starting with a dot are skipped), 1 no extension (not a supported type)"
            ) in text.stdout
    (folder / "more.txt").write_text("The canteen opens at eight.")
    as_json = ragqa(cli_env, "ingest", str(folder), "--json")
    assert as_json.returncode == 0
    summary = json.loads(as_json.stdout)
    assert summary["added"] == 1 and summary["skipped"] == 5
    assert summary["skipped_by_type"][0] == {"type": ".heic", "count": 2, "reason": HEIC}
    (folder / "broken.pdf").write_bytes(b"not a pdf")
    failed = ragqa(cli_env, "ingest", str(folder), "--json")
    assert failed.returncode == 1 and json.loads(failed.stdout)["skipped"] == 5  # a failure still decides the exit
