"""Hard-wrapped text (e-mails, READMEs, exported reports): a single line break inside a paragraph
is not a sentence boundary, so every sentence an extractive answer quotes is a whole sentence of
the source, while list items and headings stay apart."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from llm.generator import Source
from rag.extractive import NO_ANSWER, ExtractiveGenerator
from rag.prompt import build_prompt
from tests.helpers import Library, ragqa

PARAGRAPHS = [
    ["Parental leave for full-time staff is twenty-six weeks at full pay, followed by thirteen weeks at half pay.",
     "Part-time staff receive the same number of weeks, with pay in proportion to their contracted hours.",
     "Leave must be requested from the personnel office at least eight weeks before it starts.",
     "Either parent may take the leave, and the weeks can be shared between two parents who both work here."],
    ["The mileage allowance for private cars is forty-two pence per mile for the first ten thousand miles.",
     "Above ten thousand miles in a tax year the allowance drops to twenty-five pence per mile.",
     "Bicycles are reimbursed at twenty pence per mile, and motorcycles at twenty-four pence per mile.",
     "Claims must be submitted within thirty days of the journey, with the purpose of every trip recorded."],
    ["The staff canteen opens at eight in the morning and closes at half past three in the afternoon.",
     "Hot soup is served on Fridays from noon, and a vegetarian dish is available every working day.",
     "Staff may bring guests to the canteen, provided that each guest is signed in at the reception desk."],
]
LIST_ITEMS = ["Laptops are returned to the service desk on the last working day.",
              "Access badges are handed to the security office before leaving the building.",
              "Personal files are removed from shared folders within one week of departure."]
SENTENCES = {s for para in PARAGRAPHS for s in para} | set(LIST_ITEMS)
QUESTIONS = ["How much parental leave do part-time staff get?", "When must parental leave be requested?",
             "What is the mileage allowance for bicycles?", "What happens to the mileage allowance above ten "
             "thousand miles?", "When does the canteen open?", "Can staff bring guests to the canteen?",
             "Where are laptops returned when staff leave?", "Within how many days must mileage claims be submitted?"]


def wrapped(width: int) -> str:
    """The paragraphs hard-wrapped at `width` columns, a heading and a list, as Markdown."""
    body = "\n\n".join(textwrap.fill(" ".join(p), width, break_on_hyphens=False) for p in PARAGRAPHS)
    items = "\n".join(textwrap.fill(item, width, initial_indent="- ", subsequent_indent="  ",
                                     break_on_hyphens=False) for item in LIST_ITEMS)
    return f"# Staff handbook\n\n{body}\n\n## Leaving\n\nWhen you leave:\n{items}\n"


def quoted_sentences(answer: str) -> list[str]:
    """The extractive answer's quotes, each without its citation, white space collapsed."""
    return [" ".join(re.sub(r"\s*\[\d+\]$", "", part).split()) for part in answer.split("\n\n")]


def test_the_fixture_is_hard_wrapped() -> None:
    text = wrapped(60)
    assert max(len(line) for line in text.splitlines()) <= 60
    assert sum(1 for s in SENTENCES if s not in text) >= len(SENTENCES) - 2  # nearly all cross a line break


@pytest.mark.parametrize("width", [44, 72])
def test_extractive_quotes_whole_sentences_of_a_wrapped_source(width: int) -> None:
    source = Source(1, "Staff handbook", "handbook.md", wrapped(width))
    gen = ExtractiveGenerator()
    for question in QUESTIONS:
        prompt = build_prompt(question, [source])
        answer = "".join(p.text for p in gen.stream(prompt))
        assert answer != NO_ANSWER, question
        for quote in quoted_sentences(answer):
            assert quote in SENTENCES, (question, quote)


def test_a_passage_that_starts_inside_a_sentence_is_not_quoted_from_its_first_fragment() -> None:
    fragment = "back to back: one vector for each chunk of the parental leave policy, and so on. "
    source = Source(1, "Cut", "cut.md", fragment + "Parental leave is twenty-six weeks at full pay for everyone.")
    question = "How long is parental leave at full pay?"
    answer = "".join(p.text for p in ExtractiveGenerator().stream(build_prompt(question, [source])))
    assert quoted_sentences(answer) == ["Parental leave is twenty-six weeks at full pay for everyone."]


@pytest.mark.db
@pytest.mark.parametrize("kind", ["md", "txt"])
def test_ingested_wrapped_documents_answer_in_whole_sentences(kind: str, library: Library,
                                                              cli_env: dict[str, str]) -> None:
    # Small chunks (the test settings' 64 tokens) so that chunk boundaries fall inside paragraphs.
    library({f"handbook.{kind}": wrapped(60)})
    for question in QUESTIONS:
        out = ragqa(cli_env, "ask", question, "--json")
        assert out.returncode == 0, out.stderr
        answer = json.loads(out.stdout)
        assert answer["answered"] and not answer["problems"], (question, answer["answer"])
        for quote in quoted_sentences(answer["answer"]):
            assert quote in SENTENCES, (question, quote)


@pytest.mark.slow
def test_the_demo_librarys_question_is_answered_in_whole_sentences(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """The README's demo question over this project's own docs/ (what `make run` ingests)."""
    docs = Path(__file__).parents[1] / "docs"
    env = {k: v for k, v in cli_env.items() if k not in ("RAGQA_CHUNK_TOKENS", "RAGQA_CHUNK_OVERLAP")}  # defaults
    assert ragqa(env, "ingest", str(docs), "--collection", "docs").returncode == 0
    out = ragqa(env, "ask", "how are documents chunked?", "--json")
    answer = json.loads(out.stdout)
    assert answer["answered"] and not answer["problems"]
    unwrapped = {p["path"]: " ".join(Path(p["path"]).read_text().split()) for p in answer["sources"]}
    for quote in quoted_sentences(answer["answer"]):
        assert quote[0].isupper() or quote[0] in "`*(\"'0123456789", quote  # not the tail of a sentence
        assert quote[-1] in ".:!?)`*", quote  # not cut before its end
        assert any(quote in text for text in unwrapped.values())
