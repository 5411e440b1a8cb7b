"""Follow-up questions: the standalone-query rule, the model's rewrite and its fallback, and the
earlier turns in the prompt (questions and final answers only, oldest left out first)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from llm.errors import GeneratorError
from llm.generator import Piece, Prompt
from rag.answer import Answerer, fit_history
from rag.conversations import Message, exchanges
from rag.extractive import ExtractiveGenerator
from rag.followup import Exchange, looks_like_followup, rewrite_query, standalone_query, subject_words
from rag.prompt import build_prompt
from rag.retrieval import Retriever
from tests.helpers import Library, ScriptedModel

KILN = Exchange("At what temperature does a kiln fire clay pots?", "At 1200 degrees [1].")


class Scripted(ScriptedModel):
    """A model backend that answers every prompt with the same final text (or fails), and keeps
    the prompts it was given."""

    def __init__(self, final: str = "", fail: bool = False, context: int = 8192) -> None:
        super().__init__(context)
        self.final, self.fail = final, fail

    def stream(self, prompt: Prompt) -> Iterator[Piece]:
        self.prompts.append(prompt)
        if self.fail:
            raise GeneratorError("the server is down")
        yield Piece("analysis", "thinking about it")
        yield Piece("final", self.final)


@pytest.mark.parametrize("question", ["When was it built?", "Who painted them?", "And the second floor?",
                                      "What about Paris?", "Why?", "Where is its entrance?"])
def test_followups_are_recognised(question: str) -> None:
    assert looks_like_followup(question)


@pytest.mark.parametrize("question", ["When was the Forth Bridge built?", "Who painted the Sistine Chapel ceiling?"])
def test_questions_that_name_their_subject_are_not_followups(question: str) -> None:
    assert not looks_like_followup(question)


def test_the_rule_carries_the_earlier_subject_into_a_followup() -> None:
    assert standalone_query("Who built it?", [KILN]).startswith("Who built it? ")
    added = standalone_query("Who built it?", [KILN]).split("?", 1)[1].split()
    assert "kiln" in added and "clay" in added and len(added) <= 8
    named = Exchange("When did Abraham Lincoln become President?", "In 1861.")
    assert standalone_query("Where was he born?", [named]).startswith("Where was he born? Abraham Lincoln")
    assert subject_words("How many kangaroos live in Australia?") == ["kangaroos", "live", "Australia"]


def test_the_rule_leaves_a_standalone_question_and_a_first_question_alone() -> None:
    question = "When was sonar first used to detect icebergs?"
    assert standalone_query(question, [KILN]) == question
    assert standalone_query("When was it built?", []) == "When was it built?"


def test_a_chain_of_followups_keeps_the_subject() -> None:
    first = Exchange("When did Abraham Lincoln become President?", "In 1861.")
    second_query = standalone_query("Where was he born?", [first])
    second = Exchange("Where was he born?", "In Kentucky.", second_query)
    third = standalone_query("Who was his wife?", [first, second])
    assert "Lincoln" in third and "Abraham" in third


def test_a_model_rewrites_the_followup_with_low_reasoning() -> None:
    model = Scripted('"kiln builder Stoke"\nmore text')
    assert rewrite_query("Who built it?", [KILN], model) == "kiln builder Stoke"
    prompt = model.prompts[0]
    assert prompt.reasoning == "low" and prompt.max_tokens <= 256 and not prompt.sources
    assert [t.role for t in prompt.turns] == ["user", "assistant", "user"]
    assert "Who built it?" in prompt.turns[-1].text and KILN.question == prompt.turns[0].text


@pytest.mark.parametrize("model", [Scripted(fail=True), Scripted(""), Scripted("x" * 1000)])
def test_a_failing_or_useless_rewrite_falls_back_to_the_rule(model: Scripted) -> None:
    assert rewrite_query("Who built it?", [KILN], model) == standalone_query("Who built it?", [KILN])


def test_no_history_no_rewrite() -> None:
    model = Scripted("something else")
    assert rewrite_query("Who built the kiln?", [], model) == "Who built the kiln?" and not model.prompts
    assert rewrite_query("Who built it?", [KILN], ExtractiveGenerator()) == standalone_query("Who built it?", [KILN])


def test_the_prompt_carries_earlier_questions_and_final_answers_never_reasoning() -> None:
    messages = [Message(1, "user", KILN.question, None, None),
                Message(2, "assistant", KILN.answer, {"reasoning": "SECRET THOUGHTS", "searched_for": "kiln"}, None),
                Message(3, "user", "A question that failed", None, None)]
    history = exchanges(messages)
    assert history == [Exchange(KILN.question, KILN.answer, "kiln")]
    prompt = build_prompt("Who built it?", (), history=history, today=date(2026, 1, 2))
    assert [(t.role, t.text) for t in prompt.turns[:2]] == [("user", KILN.question), ("assistant", "At 1200 degrees.")]
    assert prompt.turns[-1].role == "user" and "Who built it?" in prompt.turns[-1].text
    assert not any("SECRET" in t.text for t in prompt.turns)


def test_oldest_turns_are_left_out_first_and_reported() -> None:
    history = [Exchange(f"Question {i} " + "word " * 40, "Answer " + "word " * 40) for i in range(5)]
    base = build_prompt("Who built it?", (), max_tokens=100)
    used, dropped = fit_history(base, history, Scripted(), history_tokens=250)
    assert used == [3, 4]
    assert dropped == [f"earlier turn {i}: did not fit in the conversation's 250-token budget" for i in (1, 2, 3)]
    used, dropped = fit_history(base, history, Scripted(), history_tokens=0)
    assert used == [] and len(dropped) == 5


def test_answerer_searches_for_the_followup_with_its_subject(library: Library, store, embedder) -> None:
    library({"kiln.md": "# Kilns\n\nA kiln fires clay pots at 1200 degrees. The bottle kilns of Stoke were built "
                        "by Josiah Wedgwood in 1769.",
             "sonar.md": "# Sonar\n\nSonar was first used in 1906 to detect icebergs. It was built by Lewis Nixon."})
    answerer = Answerer(Retriever(store, lambda: embedder), ExtractiveGenerator(embedder.encode), passages=1,
                        history_tokens=512)
    answer = answerer.ask("Who built it?", history=[KILN])
    assert "kiln" in answer.search_query and answer.turns_used == (0,)
    assert answer.sources[0].passage.title == "Kilns" and "Wedgwood" in answer.text
    as_json = answer.as_json()
    assert as_json["searched_for"] == answer.search_query and as_json["turns_used"] == [0]
    model = Scripted("Who built the bottle kilns?")
    draft = Answerer(Retriever(store, lambda: embedder), model, passages=1).prepare("Who built it?", history=[KILN])
    assert draft.search_query == "Who built the bottle kilns?" and draft.passages[0].title == "Kilns"
    assert [t.role for t in draft.prompt.turns] == ["user", "assistant", "user"]
