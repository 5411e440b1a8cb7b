"""`ragqa eval qa`: questions with gold answers over a folder of documents. How often does the gold
answer appear in the top passages, and in the extractive answer?

Formats read:
- the CMU Question/Answer dataset: `question_answer_pairs.txt` (tab separated: ArticleTitle,
  Question, Answer, difficulties, ArticleFile) with the articles at `ArticleFile` + `.txt.clean`
  (or `.txt`), Latin-1;
- `qa.jsonl`: one `{"question": ..., "answers": [...], "document": "relative/path"}` per line,
  documents relative to the folder.

Answers are compared as SQuAD does (lower case, no punctuation, no articles), as whole words.
Yes/no answers are reported apart: "yes" appearing in a passage says nothing.

With `holdout_every=N`, every N-th document (in name order) is left out of the store: its
questions have no answer in the library, and the report says how often the extractive answer
admits it (`unanswerable_abstained`) next to how often answerable questions get an answer.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
import string
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from rag.settings import Settings

PASSAGES = 5


@dataclass
class QaItem:
    question: str
    answers: set[str] = field(default_factory=set)
    document: str = ""  # path relative to the corpus folder written for the evaluation


def normalise(text: str) -> str:
    text = text.lower()
    text = "".join(" " if ch in string.punctuation else ch for ch in text)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def contains(haystack: str, answer: str) -> bool:
    needle = normalise(answer)
    return bool(needle) and f" {needle} " in f" {normalise(haystack)} "


def is_yes_no(answers: set[str]) -> bool:
    return all(normalise(a).split()[:1] in (["yes"], ["no"]) for a in answers)


def read_qa(folder: Path, corpus: Path) -> list[QaItem]:
    """The questions, each with every gold answer given for it; copies their documents (as UTF-8
    text) into `corpus`."""
    if (folder / "question_answer_pairs.txt").is_file():
        return _read_cmu(folder, corpus)
    if (folder / "qa.jsonl").is_file():
        return _read_jsonl(folder, corpus)
    raise ConfigError(f"{folder}: no question_answer_pairs.txt (CMU format) or qa.jsonl")


def _read_cmu(folder: Path, corpus: Path) -> list[QaItem]:
    items: dict[str, QaItem] = {}
    with open(folder / "question_answer_pairs.txt", encoding="latin-1", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            question = " ".join((row.get("Question") or "").split())
            answer = " ".join((row.get("Answer") or "").split())
            article = (row.get("ArticleFile") or "").strip()
            if not question or not answer or answer.upper() == "NULL" or not article:
                continue
            candidates = (folder / f"{article}.txt.clean", folder / f"{article}.txt")
            source = next((p for p in candidates if p.is_file()), None)
            if source is None:
                continue
            target = corpus / (article.replace("/", "_") + ".txt")
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(source.read_text(encoding="latin-1"), encoding="utf-8")
            item = items.setdefault(question, QaItem(question, document=target.name))
            item.answers.add(answer)
    return list(items.values())


def _read_jsonl(folder: Path, corpus: Path) -> list[QaItem]:
    import shutil

    items = []
    for line in (folder / "qa.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            doc = folder / row["document"]
            target = corpus / row["document"].replace("/", "_")
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(doc, target)
            items.append(QaItem(row["question"], set(row["answers"]), target.name))
    return items


def eval_qa(folder: Path, settings: Settings, work_dir: Path | None = None, limit: int | None = None,
            progress: Any = None, holdout_every: int = 0) -> dict[str, Any]:
    from ingest.pipeline import ingest
    from rag.answer import Answerer
    from rag.extractive import ExtractiveGenerator
    from ragqa import wiring

    with contextlib.ExitStack() as stack:
        home = work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ragqa-evalqa-")))
        cfg = settings.model_copy(update={"home": home, "database_url": ""})  # never the user's store
        items = read_qa(folder, home / "corpus")[:limit]
        held_out = hold_out(home / "corpus", home / "held-out", holdout_every)
        store = wiring.open_store(cfg)
        stack.callback(store.close)
        ingest([home / "corpus"], store, cfg, wiring.embedding_ref(cfg), collection="qa", prune=True,
               load_embedder=lambda: wiring.load_embedder(cfg), progress=progress)
        retriever = wiring.retriever(cfg, store)
        answerer = Answerer(retriever, ExtractiveGenerator(lambda t: retriever.embedder().encode(t)),
                            passages=PASSAGES)
        answerable = [item for item in items if item.document not in held_out]
        rows = [_judge(answerer, item) for item in answerable]
        summary = _summary(rows, len(answerable))
        if held_out:
            unanswerable = [answerer.ask(item.question) for item in items if item.document in held_out]
            summary["held_out_documents"] = len(held_out)
            summary["unanswerable_questions"] = len(unanswerable)
            summary["unanswerable_abstained"] = round(
                sum(not a.answered for a in unanswerable) / max(len(unanswerable), 1), 4)
    return summary


def hold_out(corpus: Path, aside: Path, every: int) -> set[str]:
    """Move every `every`-th document of `corpus` (name order) to `aside`; their names. Idempotent
    for a kept work directory, where documents already aside may also have been copied into
    `corpus` again (the copy replaces the one aside)."""
    aside.mkdir(parents=True, exist_ok=True)
    names = sorted({p.name for p in (*corpus.iterdir(), *aside.iterdir()) if p.is_file()})
    chosen = set(names[every - 1::every]) if every > 0 else set()
    for name in names:
        src, dst = (corpus / name, aside / name) if name in chosen else (aside / name, corpus / name)
        if src.exists():
            src.replace(dst)
    return chosen


def _judge(answerer: Any, item: QaItem) -> dict[str, bool]:
    answer = answerer.ask(item.question)
    passages = " ".join(s.passage.text for s in answer.sources)
    return {"yes_no": is_yes_no(item.answers),
            "document_in_top": any(s.passage.path.endswith(item.document) for s in answer.sources),
            "in_passages": any(contains(passages, a) for a in item.answers),
            "in_answer": any(contains(answer.text, a) for a in item.answers),
            "answered": answer.answered}


def _summary(rows: list[dict[str, bool]], n: int) -> dict[str, Any]:
    def rate(subset: list[dict[str, bool]], key: str) -> float:
        return round(sum(r[key] for r in subset) / len(subset), 4) if subset else 0.0

    factual = [r for r in rows if not r["yes_no"]]
    out: dict[str, Any] = {"questions": n, "factual_questions": len(factual), "passages": PASSAGES}
    for name, subset in (("all", rows), ("factual", factual)):
        for key in ("document_in_top", "in_passages", "in_answer", "answered"):
            out[f"{name}_{key}"] = rate(subset, key)
    return out
