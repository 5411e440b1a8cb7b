"""`ragqa eval followups`: how well a follow-up question finds its document when its subject is
only in an earlier turn.

From each article's questions in the CMU QA layout (`ArticleTitle` names the subject) it builds a
conversation: the first question that names the subject (contains a word of the title) opens it,
and every later question that names it becomes a follow-up by replacing the title's words with a
pronoun ("it", "its", "they"). Each follow-up is ranked with the real `Retriever` (hybrid, 5
passages) three ways: (a) the follow-up alone, (b) its standalone query given the opening turn as
history (rag/followup.py's rule, what the extractive backend searches with), (c) the original
question, subject named. success@5 = the article's document is among the 5 passages.
`recovered` = (b - a) / (c - a): the share of what the missing subject costs that the rule wins back.
"""

from __future__ import annotations

import contextlib
import csv
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from rag.followup import Exchange, standalone_query
from rag.settings import Settings

PASSAGES = 5
_TITLE_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_NAME = re.compile(r"[^\W_]{3,}", re.UNICODE)  # an initial alone ("S.") does not name anyone


@dataclass(frozen=True)
class Followup:
    article: str  # the title, as ArticleTitle gives it
    document: str  # the file name of the article in the evaluation corpus
    opening: str  # the conversation's first question, which names the subject
    question: str  # the follow-up: the subject replaced by a pronoun
    named: str  # the same question as asked, subject named


def title_words(title: str) -> list[str]:
    return _TITLE_WORD.findall(title.replace("_", " "))


def _subject_pattern(title: str) -> re.Pattern[str] | None:
    """A run of the title's words (with an optional leading "the", trailing plural or possessive)."""
    words = title_words(title)
    if not words:
        return None
    word = "(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + ")"
    run = rf"(?:{word}(?:\.?\s+|\s*-\s*))*{word}"  # "Abraham Lincoln", "Ulysses S. Grant"
    return re.compile(rf"\b(?:(?:the|an?)\s+)?{run}(?P<plural>e?s)?(?P<own>'s?)?(?![\w'])", re.IGNORECASE)


def names_subject(question: str, title: str) -> bool:
    pattern = _subject_pattern(title)
    return bool(pattern and any(_NAME.search(m.group()) for m in pattern.finditer(question)))


def refer_to_subject(question: str, title: str) -> str:
    """The question with every mention of the subject replaced by a pronoun."""
    pattern = _subject_pattern(title)
    if pattern is None:
        return question

    def pronoun(m: re.Match[str]) -> str:
        if not _NAME.search(m.group()):
            return m.group()
        if m.group("own"):
            word = "their" if m.group("plural") else "its"
        else:
            word = "they" if m.group("plural") else "it"
        return word.capitalize() if m.start() == 0 else word

    return " ".join(pattern.sub(pronoun, question).split())


def read_pairs(folder: Path) -> list[tuple[str, str, str]]:
    """(title, question, document file name) of each question once, in file order."""
    path = folder / "question_answer_pairs.txt"
    if not path.is_file():
        raise ConfigError(f"{folder}: no question_answer_pairs.txt (CMU format): follow-ups need article titles")
    seen, out = set(), []
    with open(path, encoding="latin-1", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            title = (row.get("ArticleTitle") or "").strip()
            question = " ".join((row.get("Question") or "").split())
            article = (row.get("ArticleFile") or "").strip()
            if title and question and article and (title, question) not in seen:
                seen.add((title, question))
                out.append((title, question, article.replace("/", "_") + ".txt"))
    return out


def build_followups(pairs: Sequence[tuple[str, str, str]]) -> list[Followup]:
    """One conversation per article: its first naming question opens it, later naming questions
    (whose subject can be replaced) follow up."""
    openings: dict[str, str] = {}
    out = []
    for title, question, document in pairs:
        if not names_subject(question, title):
            continue
        if title not in openings:
            openings[title] = question
            continue
        followup = refer_to_subject(question, title)
        if followup != question and not names_subject(followup, title):
            out.append(Followup(title, document, openings[title], followup, question))
    return out


def held_out_articles(followups: Sequence[Followup], every: int) -> set[str]:
    """Every `every`-th article (title order): the articles kept apart from tuning the rule."""
    titles = sorted({f.article for f in followups})
    return set(titles[every - 1::every]) if every > 0 else set()


def score(followups: Sequence[Followup], found: Callable[[str, str], bool],
          rule: Callable[[str, Sequence[Exchange]], str] = standalone_query) -> dict[str, Any]:
    """success@5 of the three ways of asking; `found(query, document)`: is the document in the top 5."""
    if not followups:
        return {"standalone": 0.0, "conversation": 0.0, "named": 0.0, "questions": 0, "recovered": 0.0}
    hits = {"standalone": 0, "conversation": 0, "named": 0}
    for f in followups:
        history = (Exchange(f.opening, "", f.opening),)
        hits["standalone"] += found(f.question, f.document)
        hits["conversation"] += found(rule(f.question, history), f.document)
        hits["named"] += found(f.named, f.document)
    n = len(followups)
    rates = {k: round(v / n, 4) for k, v in hits.items()}
    gap = rates["named"] - rates["standalone"]
    recovered = round((rates["conversation"] - rates["standalone"]) / gap, 4) if gap > 0 else 1.0
    return {**rates, "questions": n, "recovered": recovered}


def eval_followups(folder: Path, settings: Settings, work_dir: Path | None = None, limit: int | None = None,
                   progress: Any = None, holdout_every: int = 0) -> dict[str, Any]:
    from ingest.pipeline import ingest
    from ragqa import wiring
    from ragqa.eval.qa import read_qa

    followups = build_followups(read_pairs(folder))[:limit]
    with contextlib.ExitStack() as stack:
        home = work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ragqa-evalfu-")))
        cfg = settings.model_copy(update={"home": home, "database_url": ""})  # never the user's store
        read_qa(folder, home / "corpus")  # writes the articles as UTF-8 text
        store = wiring.open_store(cfg)
        stack.callback(store.close)
        ingest([home / "corpus"], store, cfg, wiring.embedding_ref(cfg), collection="qa", prune=True,
               load_embedder=lambda: wiring.load_embedder(cfg), progress=progress)
        retriever = wiring.retriever(cfg, store)
        cache: dict[str, list[str]] = {}

        def found(query: str, document: str) -> bool:
            if query not in cache:
                cache[query] = [p.path for p in retriever.search(query, PASSAGES, "hybrid")]
            return any(path.endswith(document) for path in cache[query])

        held = held_out_articles(followups, holdout_every)
        if not held:
            return score(followups, found)
        result = score([f for f in followups if f.article in held], found)
        result["held_out_articles"] = len(held)
        result["tuning"] = score([f for f in followups if f.article not in held], found)
        return result
