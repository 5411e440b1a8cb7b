"""The extractive answerer: no language model. The answer is the sources' own sentences that best
match the question, each followed by its citation, quoted exactly as they stand in the source.

It is the default backend, so that ragqa answers on any machine; it never invents a word, and
when no sentence matches the question it says that the sources do not contain the answer.
It implements llm's `Generator` protocol but lives in rag: it is rag's answerer without a model,
and reads the prompt's question and sources as data, not its rendered messages.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from llm.generator import Piece, Prompt
from rag.sentences import split_sentences, terms, words

#: Said when nothing in the sources matches the question; callers recognise it as "no answer".
NO_ANSWER = "The sources do not contain an answer to this question."


@dataclass(frozen=True)
class Sentence:
    source: int  # the source's number, as cited
    rank: int  # the source's position in the prompt (0 = best retrieved)
    start: int  # offsets into the source's text
    end: int
    text: str


def score_sentences(question: str, sentences: Sequence[Sentence],
                    embed: Callable[[list[str]], np.ndarray] | None = None) -> np.ndarray:
    """One score per sentence in [0, 1]-ish: the share of the question's content words (weighted
    by rarity among the candidate sentences) that the sentence contains, averaged with the
    cosine similarity of embeddings when an embedder is given, plus a small bonus for sentences
    from better-ranked sources."""
    q_terms = set(terms(question))
    question_words = words(question)
    # "back up" also asks about a "backup", "log in" about a "login": a joined pair found in a
    # sentence counts as a match (but an unmatched pair costs nothing).
    joined = set(terms(" ".join(a + b for a, b in zip(question_words, question_words[1:])))) - q_terms
    bags = [set(terms(s.text)) for s in sentences]
    df = Counter(t for bag in bags for t in bag if t in q_terms or t in joined)
    n = max(len(sentences), 1)
    idf = {t: math.log(1 + n / (1 + df[t])) for t in q_terms | joined}
    total = sum(idf[t] for t in q_terms) or 1.0
    lexical = np.array([min(1.0, sum(idf[t] for t in bag & (q_terms | joined)) / total) for bag in bags],
                       dtype=np.float32)
    scores = lexical
    if embed is not None and len(sentences):
        vecs = embed([question, *[s.text for s in sentences]])
        dense = np.clip(vecs[1:] @ vecs[0], 0.0, 1.0)
        scores = 0.5 * lexical + 0.5 * dense
    bonus = np.array([0.05 / (1 + s.rank) for s in sentences], dtype=np.float32)
    return scores + bonus


#: Below this best-sentence score the sources are taken not to answer the question. Calibrated with
#: `ragqa eval qa ../shared/data/cmu-qa/S08 --holdout-every 3` (questions about 11 articles left
#: out of the store): at 0.50, 77.6% of those get "no answer" (4.1% at the old 0.25) while 95.8% of
#: answerable questions are answered and the gold answer is in 56.2% of factual answers (56.5%).
MIN_SCORE = 0.5
#: Sentences after the best one must score at least this (and 0.6 of the best) to join the answer.
SENTENCE_FLOOR = 0.25


class ExtractiveGenerator:
    """Answers with up to `max_sentences` of the sources' best sentences, each cited."""

    name = "extractive"
    extractive = True
    tools_capable = False

    def __init__(self, embed: Callable[[list[str]], np.ndarray] | None = None, *, max_sentences: int = 3,
                 max_words: int = 120, min_score: float = MIN_SCORE, context: int = 32768) -> None:
        self._embed = embed
        self.max_sentences = max_sentences
        self.max_words = max_words
        self.min_score = min_score
        self._context = context

    def choose(self, prompt: Prompt) -> list[Sentence]:
        """The sentences of the answer, in the order they are given."""
        sentences = [Sentence(src.number, rank, a, b, src.text[a:b])
                     for rank, src in enumerate(prompt.sources) for a, b in split_sentences(src.text)
                     if not _starts_mid_sentence(src.text, a)]
        if not sentences:
            return []
        scores = score_sentences(prompt.question, sentences, self._embed)
        best = float(scores.max())
        if best < self.min_score:
            return []
        chosen: list[Sentence] = []
        words = 0
        for i in np.argsort(-scores, kind="stable"):
            s = sentences[int(i)]
            # Keep to sentences nearly as good as the best: a weak sentence dilutes the answer.
            if scores[i] < max(SENTENCE_FLOOR, 0.6 * best) or len(chosen) == self.max_sentences:
                break
            n_words = len(s.text.split())
            if chosen and words + n_words > self.max_words:
                continue
            if any(c.text == s.text for c in chosen):  # the same sentence in two sources
                continue
            chosen.append(s)
            words += n_words
        return chosen

    def stream(self, prompt: Prompt) -> Iterator[Piece]:
        chosen = self.choose(prompt)
        if not chosen:
            yield Piece("final", NO_ANSWER)
            return
        for i, s in enumerate(chosen):
            yield Piece("final", ("\n\n" if i else "") + f"{s.text} [{s.source}]")

    def check(self) -> str | None:
        return None

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    @property
    def context_tokens(self) -> int:
        return self._context

    def describe(self) -> dict[str, str]:
        return {"backend": "extractive", "model": "none: answers quote the sources' own sentences",
                "context": str(self._context), "tokenizer": "words"}


def _starts_mid_sentence(text: str, start: int) -> bool:
    """A passage that begins inside a sentence (a chunk cut where a sentence was too long for it)
    starts with a fragment: a quote must be a whole sentence, so a lower-case first span is left out."""
    return text[:start].strip() == "" and text[start:start + 1].islower()

