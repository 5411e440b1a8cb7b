"""Calibrate the extractive backend's "no answer" threshold (rag/extractive.py, MIN_SCORE).

    python scripts/calibrate_extractive.py ../shared/data/cmu-qa/S08 WORK_DIR [EVERY]

Runs `ragqa eval qa` with every EVERY-th document (default 3) left out of the store and the
threshold off, records each question's best sentence score, and prints per threshold: answerable
questions answered, factual questions whose gold answer is in the answer, and questions about
left-out documents answered "no answer".
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import numpy as np

from rag import extractive
from rag.settings import Settings
from ragqa.eval import qa as eval_qa

best_score: dict[str, float] = {}
judged: dict[str, dict[str, bool]] = {}


def _recording_scores(question: str, sentences: Any, embed: Any = None) -> np.ndarray:
    scores = SCORE_SENTENCES(question, sentences, embed)
    best_score[question] = float(scores.max()) if len(scores) else 0.0
    return scores


def _recording_judge(answerer: Any, item: eval_qa.QaItem) -> dict[str, bool]:
    row = JUDGE(answerer, item)
    judged[item.question] = row
    return row


SCORE_SENTENCES, JUDGE = extractive.score_sentences, eval_qa._judge


def main() -> None:
    folder, work = Path(sys.argv[1]), Path(sys.argv[2])
    every = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    extractive.score_sentences = _recording_scores
    # A stand-in for the class (every sentence kept): deliberately not a type.
    extractive.ExtractiveGenerator = functools.partial(  # type: ignore[assignment,misc]
        extractive.ExtractiveGenerator, min_score=0.0)
    eval_qa._judge = _recording_judge
    eval_qa.eval_qa(folder, Settings(), work_dir=work, holdout_every=every)
    held_out = {p.name for p in (work / "held-out").iterdir()}
    items = [i for i in eval_qa.read_qa(folder, work / "questions") if i.question in best_score]
    answerable = np.array([best_score[i.question] for i in items if i.document not in held_out])
    unanswerable = np.array([best_score[i.question] for i in items if i.document in held_out])
    factual = [i for i in items if i.document not in held_out and not judged[i.question]["yes_no"]]
    print(f"{len(answerable)} answerable, {len(unanswerable)} about left-out documents")
    for t in np.arange(0.25, 0.80, 0.05):
        gold = np.mean([judged[i.question]["in_answer"] and best_score[i.question] >= t for i in factual])
        print(f"threshold {t:.2f}: answerable answered {np.mean(answerable >= t):.3f}, "
              f"gold in factual answers {gold:.3f}, left-out answered 'no answer' {np.mean(unanswerable < t):.3f}")


if __name__ == "__main__":
    main()
