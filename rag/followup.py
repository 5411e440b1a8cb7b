"""Follow-up questions: the search query for a question asked after others in a conversation.

"When was it built?" finds nothing by itself: the subject is in an earlier turn. With a model, a
short low-reasoning generation rewrites the question into a self-contained query
(`rewrite_query`); without one (the extractive backend), or when the model fails, a deterministic
rule (`standalone_query`) adds the earlier turn's subject words that the question lacks. The rule
reads the earlier turn's *search query*, not its question, so a chain of follow-ups keeps the
subject. Both are measured by `ragqa eval followups`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from llm.errors import GeneratorError
from llm.generator import Generator, Piece, Prompt, Turn
from rag.sentences import terms

#: Words that refer back to something named earlier.
REFERRING = frozenset("it its they them their theirs this that these those he she his her him there".split())
#: Openings that continue the previous question ("and the second one?", "what about Paris?").
CONTINUING = ("and ", "also ", "what about ", "how about ", "same for ")
#: A question with at most this many content words cannot name its subject and ask about it.
FEW_CONTENT_WORDS = 2
#: The most subject words the rule adds to a query (3 lost follow-ups on the training articles of
#: `ragqa eval followups`; 5 and 8 did equally well, and fewer words pull the query less).
MAX_SUBJECT_WORDS = 5
#: Words that ask rather than name: they are not a subject to carry.
_ASKING = frozenset("many much long often name named called kind type year years date give tell know".split())
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)

REWRITE_INSTRUCTIONS = """You rewrite the user's last question as one self-contained search query, using the \
conversation to fill in what the question refers to (a name, a thing, a place). Keep the question's own words; \
add only what is needed to make it understandable on its own. Output only the query, on one line, nothing else."""
#: The rewrite's budget. gpt-oss reasons before it answers even at low effort, and the budget
#: counts the reasoning too: a budget of a query's length could be spent before the query starts.
REWRITE_MAX_TOKENS = 160
#: A rewrite longer than this many characters is not a query: the rule is used instead.
REWRITE_MAX_CHARS = 300


@dataclass(frozen=True)
class Exchange:
    """An earlier turn of the conversation: the question, the final answer (never the reasoning)
    and the query it was searched with."""

    question: str
    answer: str
    search_query: str = ""

    @property
    def query(self) -> str:
        return self.search_query or self.question


def looks_like_followup(question: str) -> bool:
    """Whether the question leans on an earlier one: a referring word, a continuing opening, or
    too few content words to name a subject."""
    lowered = " ".join(question.lower().split())
    if lowered.startswith(CONTINUING):
        return True
    tokens = [t.split("'")[0] for t in _TOKEN.findall(lowered)]
    if any(t in REFERRING for t in tokens):
        return True
    return len(terms(question)) <= FEW_CONTENT_WORDS


def subject_words(query: str) -> list[str]:
    """The content words of an earlier query, as written, in order. Not only its names: a subject
    is often a common noun ("do kangaroos swim?"), and carrying only capitalised words lost a third
    of what the rule wins back on `ragqa eval followups`' training articles."""
    tokens = [t.split("'")[0] for t in _TOKEN.findall(query)]
    return _unique([t for t in tokens if terms(t) and t.lower() not in _ASKING])


def standalone_query(question: str, history: Sequence[Exchange]) -> str:
    """The deterministic rule: a follow-up gets the previous turn's subject words it lacks; any
    other question is its own query."""
    question = " ".join(question.split())
    if not history or not looks_like_followup(question):
        return question
    have = set(terms(question))
    missing = [w for w in subject_words(history[-1].query) if not set(terms(w)) <= have]
    return " ".join([question, *missing[:MAX_SUBJECT_WORDS]]) if missing else question


def rewrite_query(question: str, history: Sequence[Exchange], generator: Generator, *,
                  today: date | None = None) -> str:
    """The search query for `question`: itself without history; the model's rewrite when the
    generator is a model; the rule when it is extractive, or when the model fails or says
    nothing usable."""
    question = " ".join(question.split())
    if not history:
        return question
    if generator.extractive:
        return standalone_query(question, history)
    try:
        # No tools are offered, so the stream holds pieces only; anything else is not text.
        pieces = [p.text for p in generator.stream(rewrite_prompt(question, history, today))
                  if isinstance(p, Piece) and p.channel == "final"]
    except GeneratorError:
        return standalone_query(question, history)
    rewritten = _one_line("".join(pieces))
    if not rewritten or len(rewritten) > REWRITE_MAX_CHARS:
        return standalone_query(question, history)
    return rewritten


def rewrite_prompt(question: str, history: Sequence[Exchange], today: date | None = None) -> Prompt:
    """The conversation (questions and final answers) and the question to rewrite; no sources."""
    turns: list[Turn] = []
    for ex in history:
        turns += [Turn("user", ex.question), Turn("assistant", ex.answer or "(no answer)")]
    turns.append(Turn("user", f"Rewrite this question as one self-contained search query: {question}"))
    return Prompt(REWRITE_INSTRUCTIONS, tuple(turns), question, (), "low", today or date.today(),
                  REWRITE_MAX_TOKENS)


def _one_line(text: str) -> str:
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    line = re.sub(r"^(?:search query|query)\s*:\s*", "", line.strip(), flags=re.I)
    return line.strip().strip("\"'`“”‘’").strip()


def _unique(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for w in items:
        if w.lower() not in seen:
            seen.add(w.lower())
            out.append(w)
    return out
