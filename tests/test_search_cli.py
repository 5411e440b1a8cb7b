"""`ragqa search` and `ragqa eval beir` as users run them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures import make_pdf
from tests.helpers import no_traceback, ragqa

TOPICS = {
    "kiln": "A kiln fires clay pots at high temperature until the glaze turns to glass.",
    "sonar": "Sonar sends sound pulses through water and times the echoes to map the sea floor.",
    "lichen": "Lichen is a partnership of a fungus and an alga that grows on bare rock.",
    "abacus": "An abacus counts with beads that slide on rods inside a wooden frame.",
    "glacier": "A glacier is a river of ice that carves valleys as it creeps downhill.",
    "compost": "Compost turns kitchen scraps into soil as worms and microbes break them down.",
}


def test_search_json_and_text_and_bad_mode(tmp_path: Path, cli_env: dict[str, str]) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    make_pdf(lib / "manual.pdf", ["Safety first. Wear gloves.", "The kiln fires clay pots at high temperature."])
    (lib / "sea.md").write_text("# Sea\n\n" + TOPICS["sonar"])
    cli_env = {**cli_env, "RAGQA_CACHE_DIR": str(tmp_path / "cache")}
    assert ragqa(cli_env, "ingest", str(lib)).returncode == 0
    assert list((tmp_path / "cache").glob("query-encoder-*.onnx"))  # ready before the first search
    out = ragqa(cli_env, "search", "kiln temperature", "-k", "2", "--json")
    no_traceback(out)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    top = result["passages"][0]
    assert top["title"] and top["page_start"] == top["page_end"] == 2 and "kiln" in top["text"]
    assert {"document_id", "score", "char_start", "page_char_start", "collection", "path"} <= set(top)
    text = ragqa(cli_env, "search", "echoes under water", "--mode", "dense")
    assert text.returncode == 0 and text.stdout.startswith("[1]") and "Sea" in text.stdout.splitlines()[0]
    bad = ragqa(cli_env, "search", "x", "--mode", "fuzzy")
    no_traceback(bad)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error:") and len(bad.stderr.strip().splitlines()) == 1
    missing = ragqa(cli_env, "search", "x", "--collection", "nope")
    assert missing.returncode == 1 and "nope" in missing.stderr


def _beir(folder: Path) -> None:
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as fh:
        for n, (title, text) in enumerate(TOPICS.items()):
            fh.write(json.dumps({"_id": f"d{n}", "title": title.title(), "text": text}) + "\n")
        # Same content as d0 under another id: stored once, still credited to both.
        fh.write(json.dumps({"_id": "d0copy", "title": "Kiln", "text": TOPICS["kiln"]}) + "\n")
    queries = {"q1": "how are clay pots hardened", "q2": "mapping the ocean bottom with sound",
               "q3": "fungus and alga living together", "q4": "counting with beads"}
    with open(folder / "queries.jsonl", "w") as fh:
        for qid, text in queries.items():
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td0\t1\nq1\td0copy\t1\nq2\td1\t1\nq3\td2\t1\nq4\td3\t1\n")


def test_eval_beir_reports_metrics_and_leaves_the_users_store_alone(tmp_path: Path, cli_env: dict[str, str]) -> None:
    _beir(tmp_path / "set")
    home = Path(cli_env["RAGQA_HOME"])
    out = ragqa(cli_env, "eval", "beir", str(tmp_path / "set"), "--mode", "all", "--json")
    no_traceback(out)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) == {"hybrid", "dense", "lexical"}
    for scores in result.values():
        assert {"ndcg@10", "recall@10", "recall@100", "mrr@10"} <= set(scores)
        assert scores["queries"] == 4 and scores["documents"] == 7
    # Paraphrased questions over six topics: dense answers every one first, and finds both copies of d0.
    assert result["dense"]["mrr@10"] == 1.0 and result["dense"]["recall@10"] == 1.0
    assert result["hybrid"]["recall@100"] == 1.0
    assert not home.exists() or not any(home.iterdir()), "eval wrote into the user's home"
    one = ragqa(cli_env, "eval", "beir", str(tmp_path / "set"), "--mode", "lexical", "--json")
    assert set(json.loads(one.stdout)) >= {"ndcg@10", "recall@10", "recall@100", "mrr@10"}
    broken = ragqa(cli_env, "eval", "beir", str(tmp_path), "--json")
    assert broken.returncode == 2 and "not a BEIR folder" in broken.stderr
