"""`ragqa eval beir --baselines`: the published, unchunked protocols beside the product's modes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rag.settings import Settings
from ragqa.eval.baselines import Entries, entry_vectors, whole_entry_index
from ragqa.eval.beir import eval_beir

SHORT = {
    "kiln": "A kiln fires clay pots at high temperature until the glaze turns to glass.",
    "sonar": "Sonar sends sound pulses through water and times the echoes to map the sea floor.",
    "lichen": "Lichen is a partnership of a fungus and an alga that grows on bare rock.",
    "abacus": "An abacus counts with beads that slide on rods inside a wooden frame.",
}
# Well past the model's 256-token input: the published dense protocol never sees what follows.
HEAD = " ".join(f"Invoice {n} lists the office supplies ordered in week {n} and the amount still owed."
                for n in range(1, 31))
TAIL = ("A lighthouse warns ships at night with a rotating beam of light. Its keeper climbs the tower at "
        "dusk to light the lamp. Sailors count the flashes to know which coast they are passing, and a fog "
        "horn sounds from the tower when the beam cannot be seen.")


def _beir(folder: Path) -> None:
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as fh:
        for name, text in SHORT.items():
            fh.write(json.dumps({"_id": name, "title": name.title(), "text": text}) + "\n")
        fh.write(json.dumps({"_id": "ledger", "title": "Ledger", "text": f"{HEAD}\n\n{TAIL}"}) + "\n")
    with open(folder / "queries.jsonl", "w") as fh:
        fh.write(json.dumps({"_id": "q1", "text": "what warns ships at night with a beam of light"}) + "\n")
        fh.write(json.dumps({"_id": "q2", "text": "counting with beads on rods"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tledger\t1\nq2\tabacus\t1\n")


def test_the_dense_baseline_embeds_each_entry_as_the_model_truncates_it(tmp_path: Path, embedder) -> None:
    _beir(tmp_path / "set")
    entries = Entries.read(tmp_path / "set" / "corpus.jsonl")
    assert entries.dense_texts[0] == f"Kiln {SHORT['kiln']}"  # MTEB joins title and text with a space
    bm25 = whole_entry_index(entries)  # the published BM25: plain terms, Anserini's parameters
    assert not bm25.pairs and (bm25.k1, bm25.b) == (0.9, 0.4) and len(bm25) == 5
    vectors = entry_vectors(entries, embedder, tmp_path / "cache")
    head_only = embedder.encode([f"Ledger {HEAD}"])[0]
    assert float(vectors[-1] @ head_only) > 0.9999, "the ledger's tail changed its vector: not truncated"
    assert float(vectors[0] @ embedder.encode([entries.dense_texts[0]])[0]) > 0.9999

    class Refuses:  # the same model, but any encode is a failure: the vectors must come from the cache
        name, dim, model = embedder.name, embedder.dim, embedder.model

        def encode(self, texts: list[str]) -> np.ndarray:
            raise AssertionError("re-embedded although the vectors are cached")

    assert np.array_equal(entry_vectors(entries, Refuses(), tmp_path / "cache"), vectors)  # type: ignore[arg-type]
    (cached,) = (tmp_path / "cache").glob("baseline-dense-*.npy")
    cached.write_bytes(b"not an array")
    with pytest.raises(AssertionError, match="re-embedded"):  # a damaged cache is not trusted
        entry_vectors(entries, Refuses(), tmp_path / "cache")  # type: ignore[arg-type]
    assert np.allclose(entry_vectors(entries, embedder, tmp_path / "cache"), vectors, atol=1e-6)
    assert np.load(cached).shape == vectors.shape  # rewritten whole


def test_baselines_beside_the_product_show_what_chunking_finds(tmp_path: Path) -> None:
    _beir(tmp_path / "set")
    settings = Settings(home=tmp_path / "home")
    results = eval_beir(tmp_path / "set", "test", ["dense", "lexical"], settings, work_dir=tmp_path / "work",
                        baselines=True)
    assert list(results) == ["dense", "lexical", "baseline-bm25", "baseline-dense"]
    for name in ("baseline-bm25", "baseline-dense"):
        assert results[name]["mode"] == name and results[name]["documents"] == 5 and "chunks" not in results[name]
        assert {"ndcg@10", "recall@10", "recall@100", "mrr@10", "success@1"} <= set(results[name])
    # The lighthouse is only in the ledger's tail: chunked dense search finds it first; one truncated
    # vector per entry cannot; BM25 over the whole entry can. Both find the abacus.
    assert results["dense"]["success@1"] == 1.0
    assert results["baseline-dense"]["success@1"] == 0.5
    assert results["baseline-bm25"]["success@1"] == 1.0
    assert results["baseline-dense"]["recall@10"] == 1.0  # five entries: every one is ranked


def test_the_command_prints_the_baselines_after_the_modes(tmp_path: Path) -> None:
    import os

    from tests.helpers import no_traceback, ragqa

    _beir(tmp_path / "set")
    env = {**os.environ, "RAGQA_HOME": str(tmp_path / "home")}
    out = ragqa(env, "eval", "beir", str(tmp_path / "set"), "--mode", "lexical", "--baselines")
    no_traceback(out)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["lexical", "baseline-bm25", "baseline-dense"]
    assert "chunks)" in lines[0] and all("whole entries)" in line for line in lines[1:])
    as_json = json.loads(ragqa(env, "eval", "beir", str(tmp_path / "set"), "--mode", "lexical", "--baselines",
                               "--json").stdout)
    assert set(as_json) == {"lexical", "baseline-bm25", "baseline-dense"}
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").iterdir())


@pytest.mark.parametrize("line", ['{"title": "t", "text": "no id"}', '["a", "list"]'])
def test_a_corpus_entry_without_an_id_is_a_clear_error(tmp_path: Path, line: str) -> None:
    from rag.errors import ConfigError
    from ragqa.eval.beir_files import write_corpus

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "a", "text": "fine"}\n' + line + "\n")
    with pytest.raises(ConfigError, match="entry 2 has no _id"):
        write_corpus(corpus, tmp_path / "out")
