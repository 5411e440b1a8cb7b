"""`ragqa ask` and `ragqa eval qa` as users run them, with each backend: extractive (default),
native (a tiny random checkpoint: nonsense text, real plumbing) and openai (a stand-in server)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import FileSpec, Library, no_traceback, ragqa
from tests.openai_standin import StandIn

#: A two-page PDF and a note, ingested into the test's store by the `library` fixture.
HANDBOOK: dict[str, FileSpec] = {
    "handbook.pdf": ["Staff handbook\nThis handbook covers leave and travel.",
                     "Travel\nThe mileage allowance for private cars is 42 pence per mile."],
    "canteen.md": "# Canteen\n\nThe canteen opens at eight and serves soup on Fridays."}


def test_ask_extractive_json_cites_page_and_characters(library: Library, cli_env: dict[str, str]) -> None:
    library(HANDBOOK)
    out = ragqa(cli_env, "ask", "What is the mileage allowance for private cars?", "--json")
    no_traceback(out)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["backend"] == "extractive" and answer["extractive"] and answer["answered"]
    assert "42 pence per mile" in answer["answer"] and not answer["problems"]
    cited = [s for s in answer["sources"] if s["cited"]]
    assert cited[0]["title"] == "Staff handbook" and cited[0]["pages"] == "2"
    quote = cited[0]["quotes"][0]
    assert quote["page"] == 2 and quote["verbatim"] and quote["end"] - quote["start"] == len(quote["text"])


def test_ask_text_output_and_bad_reasoning(library: Library, cli_env: dict[str, str]) -> None:
    library(HANDBOOK)
    out = ragqa(cli_env, "ask", "When does the canteen open?")
    assert out.returncode == 0 and "eight" in out.stdout and "backend: extractive" in out.stdout
    assert "*[1]" in out.stdout or "*[2]" in out.stdout  # cited sources are starred
    bad = ragqa(cli_env, "ask", "x", "--reasoning", "extreme")
    no_traceback(bad)
    assert bad.returncode == 2 and "reasoning" in bad.stderr


def test_ask_with_the_native_engine_on_a_tiny_checkpoint(library: Library, cli_env: dict[str, str],
                                                         tmp_path: Path) -> None:
    from llm.tiny import TinySpec, make_tiny_checkpoint

    library(HANDBOOK)
    model = make_tiny_checkpoint(tmp_path / "tiny", TinySpec())
    env = {**cli_env, "RAGQA_MODEL_PATH": str(model), "RAGQA_ANSWER_MAX_TOKENS": "32", "RAGQA_CONTEXT_TOKENS": "4096",
           "RAGQA_GENERATOR_SEED": "0"}  # sampling from random weights: a fixed seed keeps the run reproducible
    out = ragqa(env, "ask", "When does the canteen open?", "--json", "--reasoning", "low")
    no_traceback(out)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["backend"] == "native" and not answer["extractive"] and answer["sources"]
    assert answer["answer"] or answer["reasoning"]  # nonsense, but produced by our engine


def test_ask_through_an_openai_compatible_server(library: Library, cli_env: dict[str, str]) -> None:
    library(HANDBOOK)
    with StandIn(["The canteen opens at eight [1]. ", "See also [9]."], ["Checking the sources."]) as server:
        env = {**cli_env, "RAGQA_OPENAI_BASE_URL": server.url, "RAGQA_OPENAI_MODEL": "gpt-oss-test"}
        out = ragqa(env, "ask", "When does the canteen open?", "--json", "--reasoning", "high")
        request = server.requests[0]
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["backend"] == "openai" and answer["reasoning"] == "Checking the sources."
    assert answer["answer"].startswith("The canteen opens at eight [1].")
    assert answer["problems"] == ["[9] cites no source that was given"]
    assert request["reasoning_effort"] == "high" and "canteen" in request["messages"][1]["content"]
    shown = ragqa(env | {"RAGQA_OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}, "ask", "When?")
    no_traceback(shown)
    assert shown.returncode == 1 and "cannot reach the generator server" in shown.stderr


def test_eval_qa_on_a_cmu_format_folder(tmp_path: Path, cli_env: dict[str, str]) -> None:
    folder = tmp_path / "cmu"
    (folder / "data" / "set1").mkdir(parents=True)
    (folder / "data" / "set1" / "a1.txt.clean").write_bytes(
        "Kilns\n\nA kiln fires clay pots at 1200 degrees. Potters in Stoke built bottle kilns.".encode("latin-1"))
    (folder / "data" / "set1" / "a2.txt.clean").write_bytes(
        "Sonar\n\nSonar was first used in 1906 to detect icebergs. Bats use a natural sonar.".encode("latin-1"))
    rows = ["ArticleTitle\tQuestion\tAnswer\tDifficultyFromQuestioner\tDifficultyFromAnswerer\tArticleFile",
            "Kiln\tAt what temperature does a kiln fire clay pots?\t1200 degrees\teasy\teasy\tdata/set1/a1",
            "Kiln\tAt what temperature does a kiln fire clay pots?\t1200 degrees.\teasy\teasy\tdata/set1/a1",
            "Sonar\tWhen was sonar first used?\t1906\teasy\teasy\tdata/set1/a2",
            "Sonar\tDo bats use sonar?\tyes\teasy\teasy\tdata/set1/a2",
            "Sonar\tWho invented the kiln?\tNULL\thard\thard\tdata/set1/a2"]
    (folder / "question_answer_pairs.txt").write_text("\n".join(rows) + "\n", encoding="latin-1")
    out = ragqa(cli_env, "eval", "qa", str(folder), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["questions"] == 3 and result["factual_questions"] == 2
    assert result["factual_in_passages"] == 1.0 and result["factual_in_answer"] == 1.0
    assert result["all_document_in_top"] == 1.0
    assert "unanswerable_questions" not in result
    # The sonar article left out of the store: its two questions must be admitted unanswerable.
    out = ragqa(cli_env, "eval", "qa", str(folder), "--holdout-every", "2", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["questions"] == 1 and result["held_out_documents"] == 1
    assert result["unanswerable_questions"] == 2 and result["unanswerable_abstained"] == 1.0
    assert result["all_answered"] == 1.0 and result["all_in_answer"] == 1.0


def test_hold_out_moves_every_nth_document_and_is_idempotent(tmp_path: Path) -> None:
    from ragqa.eval.qa import hold_out

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in "abcde":
        (corpus / f"{name}.txt").write_text(name)
    assert hold_out(corpus, tmp_path / "aside", 2) == {"b.txt", "d.txt"}
    (corpus / "b.txt").write_text("b")  # a re-run copies every document into the corpus again
    assert hold_out(corpus, tmp_path / "aside", 2) == {"b.txt", "d.txt"}  # a kept work dir, again
    assert sorted(p.name for p in corpus.iterdir()) == ["a.txt", "c.txt", "e.txt"]
    assert hold_out(corpus, tmp_path / "aside", 0) == set()  # and back
    assert len(list(corpus.iterdir())) == 5


def test_answer_matching_is_squad_style() -> None:
    from ragqa.eval.qa import contains, is_yes_no

    assert contains("It was opened in 1932, by the king.", "1932.")
    assert contains("The Eiffel Tower", "eiffel tower")
    assert not contains("in 19321", "1932")
    assert is_yes_no({"Yes.", "yes"}) and not is_yes_no({"Yes, in 1932", "1932"})
