"""The command line as users run it: exit codes, JSON, one-line errors, never a traceback.
Run in this process (tests.helpers.ragqa); the process as a whole is run by test_crash and
test_concurrency, and `python -m ragqa.cli` once below."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures import make_pdf, paragraph
from tests.helpers import no_traceback, ragqa, ragqa_process


def test_ingest_json_exit_codes_and_docs(tmp_path: Path, cli_env: dict[str, str]) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    make_pdf(lib / "a.pdf", ["Alpha page one.", "Alpha page two with " + paragraph("budgets")])
    (lib / "b.md").write_text("# Beta\n\n" + paragraph("trains"))
    ok = ragqa(cli_env, "ingest", str(lib), "--json", "--collection", "team")
    no_traceback(ok)
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout)
    assert {k: summary[k] for k in ("added", "updated", "unchanged", "removed", "failed")} == \
        {"added": 2, "updated": 0, "unchanged": 0, "removed": 0, "failed": []}

    (lib / "bad.pdf").write_bytes(b"%PDF-1.7 truncated")
    some_failed = ragqa(cli_env, "ingest", str(lib), "--json", "--collection", "team")
    no_traceback(some_failed)
    assert some_failed.returncode == 1
    result = json.loads(some_failed.stdout)
    assert result["unchanged"] == 2 and [Path(f["path"]).name for f in result["failed"]] == ["bad.pdf"]

    listing = json.loads(ragqa(cli_env, "docs", "--json").stdout)
    by_name = {Path(d["path"]).name: d for d in listing}
    assert by_name["a.pdf"]["pages"] == 2 and by_name["a.pdf"]["collection"] == "team"
    assert by_name["bad.pdf"]["status"] == "failed"

    checked = ragqa(cli_env, "check", "--json")
    assert checked.returncode == 0 and json.loads(checked.stdout)["ok"] is True

    gone = ragqa(cli_env, "remove", str(by_name["b.md"]["id"]), "--json")
    assert gone.returncode == 0 and json.loads(gone.stdout) == {"removed": [by_name["b.md"]["id"]]}
    assert ragqa(cli_env, "check").returncode == 0


def test_usage_errors_exit_2_with_one_line(tmp_path: Path, cli_env: dict[str, str]) -> None:
    missing = ragqa(cli_env, "ingest", str(tmp_path / "nope"))
    no_traceback(missing)
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    unknown = ragqa(cli_env, "ingest", "--no-such-flag", str(tmp_path))
    assert unknown.returncode == 2
    bad_setting = ragqa({**cli_env, "RAGQA_CHUNK_TOKENS": "many"}, "docs")
    no_traceback(bad_setting)
    assert bad_setting.returncode == 2 and "chunk_tokens" in bad_setting.stderr
    tiny_windows = ragqa({**cli_env, "RAGQA_WINDOW_TOKENS": "4"}, "docs")
    no_traceback(tiny_windows)
    assert tiny_windows.returncode == 2 and "RAGQA_WINDOW_TOKENS" in tiny_windows.stderr
    assert ragqa(cli_env, "remove", "999").returncode == 1


def test_check_reports_a_damaged_index_and_repair_mends_it(tmp_path: Path, cli_env: dict[str, str]) -> None:
    (tmp_path / "n.txt").write_text(paragraph("fire drills", 6))
    assert ragqa(cli_env, "ingest", str(tmp_path / "n.txt")).returncode == 0
    for f in (Path(cli_env["RAGQA_HOME"]) / "index").glob("vectors-*.faiss"):
        f.write_bytes(b"not an index")
    broken = ragqa(cli_env, "check")
    no_traceback(broken)
    assert broken.returncode == 1 and "INCONSISTENT" in broken.stdout
    assert ragqa(cli_env, "check", "--repair").returncode == 0
    assert ragqa(cli_env, "check").returncode == 0


def test_python_m_ragqa_cli_runs_as_its_own_process(cli_env: dict[str, str]) -> None:
    """A separate process, because what is tested is the process: `python -m ragqa.cli` (the
    entry point the console script shares), its exit status and streams, with no traceback."""
    listed = ragqa_process(cli_env, "docs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    bad = ragqa_process({**cli_env, "RAGQA_CHUNK_TOKENS": "many"}, "docs")
    no_traceback(bad)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and len(bad.stderr.splitlines()) == 1
