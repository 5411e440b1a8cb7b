"""Conversations continued: `ragqa ask --conversation`, a follow-up on the Ask page, and
`ragqa eval followups` on a small folder in the CMU layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from rag.audit import entries
from rag.conversations import Conversations
from ragqa.cli.access import cli_user
from tests.helpers import FileSpec, Library, no_traceback, ragqa

MAIN = str(Path(__file__).parents[1] / "ragqa" / "ui_app.py")
LIBRARY: dict[str, FileSpec] = {
    "kiln.md": "# Kilns\n\nA kiln fires clay pots at 1200 degrees. The bottle kilns of Stoke were built by Josiah "
               "Wedgwood in 1769.",
    "sonar.md": "# Sonar\n\nSonar was first used in 1906 to detect icebergs. The first sonar was built by Lewis Nixon."}


def test_ask_continues_a_stored_conversation(library: Library, store, cli_env: dict[str, str]) -> None:
    library(LIBRARY)
    chats = Conversations(store.engine)
    conversation = chats.start("At what temperature does a kiln fire clay pots?", cli_user())
    first = ragqa(cli_env, "ask", "At what temperature does a kiln fire clay pots?", "--conversation",
                  str(conversation), "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["turns_used"] == []
    out = ragqa(cli_env, "ask", "Who built them?", "--conversation", str(conversation), "--json")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert "kiln" in answer["searched_for"].lower() and answer["turns_used"] == [0]
    assert "Wedgwood" in answer["answer"] and answer["sources"][0]["title"] == "Kilns"
    messages = chats.messages(conversation)
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[2].content == "Who built them?" and messages[3].answer is not None
    assert messages[3].answer["searched_for"] == answer["searched_for"]
    asked = [e for e in entries(store.engine) if e["action"] == "ask"]
    assert asked[-1]["detail"]["searched_for"] == answer["searched_for"]
    text = ragqa(cli_env, "ask", "When were they built?", "--conversation", str(conversation))
    assert text.returncode == 0 and "searched for: When were they built?" in text.stdout


def test_ask_refuses_someone_elses_conversation(library: Library, store, cli_env: dict[str, str]) -> None:
    library(LIBRARY)
    chats = Conversations(store.engine)
    theirs = chats.start("When was sonar first used?", "alice")
    for conversation in (theirs, theirs + 100):  # someone else's, and none at all: the same answer
        out = ragqa(cli_env, "ask", "Who built it?", "--conversation", str(conversation))
        no_traceback(out)
        assert out.returncode == 2 and f"no conversation {conversation}" in out.stderr
    assert len(chats.messages(theirs)) == 0


@pytest.fixture
def ui(monkeypatch: pytest.MonkeyPatch, library: Library, settings, store):
    library(LIBRARY)
    for key, value in {"RAGQA_HOME": str(settings.home), "RAGQA_DATABASE_URL": settings.database_url,
                       "RAGQA_GENERATOR": "extractive", "RAGQA_CHUNK_TOKENS": "64",
                       "RAGQA_CHUNK_OVERLAP": "8"}.items():
        monkeypatch.setenv(key, value)
    st.cache_resource.clear()
    yield store
    st.cache_resource.clear()


def test_ask_page_answers_a_followup_from_the_right_document(ui) -> None:
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    at.chat_input[0].set_value("At what temperature does a kiln fire clay pots?").run()
    assert not at.exception and not at.error
    at.chat_input[0].set_value("Who built them?").run()
    assert not at.exception and not at.error
    chats = Conversations(ui.engine)
    [conv] = chats.recent()
    messages = chats.messages(conv.id)
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    answer = messages[3].answer
    assert answer is not None and "kiln" in answer["searched_for"].lower() and answer["turns_used"] == [0]
    assert "Wedgwood" in messages[3].content
    assert answer["sources"][0]["title"] == "Kilns" and answer["sources"][0]["cited"]
    shown = [c.value.replace("\\", "") for c in at.caption]  # captions are escaped Markdown
    assert any(c.startswith("searched for: Who built them?") and "kiln" in c.lower() for c in shown), shown


#: Articles that compete for "when was it first built", "who built it": without its subject a
#: follow-up cannot tell them from the right one.
DISTRACTORS = ("Bridge", "Tower", "Canal", "Lighthouse", "Railway", "Harbour", "Castle", "Cathedral", "Dam",
               "Tunnel", "Mill", "Observatory")


def test_eval_followups_on_a_cmu_format_folder(tmp_path: Path, cli_env: dict[str, str]) -> None:
    folder = tmp_path / "cmu"
    (folder / "data" / "set1").mkdir(parents=True)
    articles = {"Kiln": "Kilns\n\nA kiln fires clay pots at 1200 degrees. The first kiln of Stoke was built in 1769 "
                        "by Josiah Wedgwood.",
                "Sonar": "Sonar\n\nSonar detects icebergs with sound. The first sonar was built in 1906 by Lewis "
                         "Nixon.",
                **{name: f"{name}\n\nThe first {name.lower()} of the town was built in {1800 + i} by a local "
                         f"engineer. Who built it is recorded." for i, name in enumerate(DISTRACTORS)}}
    rows = ["ArticleTitle\tQuestion\tAnswer\tDifficultyFromQuestioner\tDifficultyFromAnswerer\tArticleFile"]
    for i, (title, text) in enumerate(articles.items()):
        (folder / "data" / "set1" / f"a{i}.txt.clean").write_bytes(text.encode("latin-1"))
        rows.append(f"{title}\tWhat is a {title.lower()}?\tx\teasy\teasy\tdata/set1/a{i}")
    rows += ["Kiln\tAt what temperature does a kiln fire clay pots?\t1200 degrees\teasy\teasy\tdata/set1/a0",
             "Kiln\tWhen was a kiln first built?\t1769\teasy\teasy\tdata/set1/a0",
             "Sonar\tWho built the sonar?\tLewis Nixon\teasy\teasy\tdata/set1/a1"]
    (folder / "question_answer_pairs.txt").write_text("\n".join(rows) + "\n", encoding="latin-1")
    out = ragqa(cli_env, "eval", "followups", str(folder), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert {"standalone", "conversation", "named", "questions", "recovered"} <= set(result)
    assert result["questions"] == 3 and result["named"] == 1.0
    assert result["conversation"] > result["standalone"]


def test_followups_replace_the_subject_with_a_pronoun() -> None:
    from ragqa.eval.followups import build_followups, names_subject, refer_to_subject

    assert refer_to_subject("Did Abraham Lincoln sign the Act?", "Abraham_Lincoln") == "Did it sign the Act?"
    assert refer_to_subject("Was Lincoln's father a farmer?", "Abraham_Lincoln") == "Was its father a farmer?"
    assert refer_to_subject("Where do penguins live?", "penguin") == "Where do they live?"
    assert refer_to_subject("Can an elephant swim?", "elephant") == "Can it swim?"
    assert names_subject("Who was Ulysses S. Grant?", "Ulysses_S._Grant")
    assert refer_to_subject("Who was Ulysses S. Grant?", "Ulysses_S._Grant") == "Who was it?"
    pairs = [("Kiln", "What is a kiln?", "a1.txt"), ("Kiln", "Who built the kiln?", "a1.txt"),
             ("Kiln", "Is pottery fired?", "a1.txt")]
    [f] = build_followups(pairs)
    assert (f.opening, f.question, f.named) == ("What is a kiln?", "Who built it?", "Who built the kiln?")


def test_a_model_rewrites_the_followup_through_an_openai_server(library: Library, store,
                                                                 cli_env: dict[str, str]) -> None:
    from tests.openai_standin import StandIn

    library(LIBRARY)
    chats = Conversations(store.engine)
    conversation = chats.start("At what temperature does a kiln fire clay pots?", cli_user())
    chats.add(conversation, "user", "At what temperature does a kiln fire clay pots?")
    chats.add(conversation, "assistant", "At 1200 degrees [1].", {"reasoning": "SECRET", "searched_for": ""})
    with StandIn(["Who built the kilns of Stoke?"], ["Thinking."]) as server:
        env = {**cli_env, "RAGQA_OPENAI_BASE_URL": server.url, "RAGQA_OPENAI_MODEL": "gpt-oss-test"}
        out = ragqa(env, "ask", "Who built them?", "--conversation", str(conversation), "--json")
        rewrite, answering = server.requests
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["searched_for"] == "Who built the kilns of Stoke?" and answer["turns_used"] == [0]
    assert rewrite["reasoning_effort"] == "low" and "Who built them?" in rewrite["messages"][-1]["content"]
    roles = [(m["role"], m["content"]) for m in answering["messages"]][-3:]
    assert roles[0] == ("user", "At what temperature does a kiln fire clay pots?")
    assert roles[1] == ("assistant", "At 1200 degrees.") and roles[2][0] == "user"
    assert "Wedgwood" in roles[2][1] and not any("SECRET" in str(m) for m in answering["messages"])
