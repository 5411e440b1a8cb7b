"""Turn the CMU Question/Answer dataset (Wikipedia articles + questions) into a BEIR folder, so
`ragqa eval beir` can measure retrieval on long documents that must be chunked.

    python scripts/beir_from_cmu_qa.py ../shared/data/cmu-qa/S08 /tmp/cmu-beir
    ragqa eval beir /tmp/cmu-beir --mode all

Corpus: one entry per article (`setN/aM`), its .txt.clean text (Latin-1). Queries: each distinct
question; its one relevant document is the article it was written about.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def main(src: Path, out: Path) -> None:
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    titles: dict[str, str] = {}
    questions: dict[str, str] = {}  # question text -> article id
    with open(src / "question_answer_pairs.txt", encoding="latin-1", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            article = (row.get("ArticleFile") or "").removeprefix("data/")
            question = " ".join((row.get("Question") or "").split())
            if article and question and row.get("ArticleTitle"):
                titles[article] = row["ArticleTitle"].replace("_", " ")
                questions.setdefault(question, article)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as fh:
        for article, title in sorted(titles.items()):
            path = src / "data" / f"{article}.txt.clean"
            if path.is_file():
                fh.write(json.dumps({"_id": article, "title": title,
                                     "text": path.read_text(encoding="latin-1")}) + "\n")
    with open(out / "queries.jsonl", "w", encoding="utf-8") as q, open(out / "qrels" / "test.tsv", "w") as r:
        r.write("query-id\tcorpus-id\tscore\n")
        for n, (question, article) in enumerate(questions.items()):
            q.write(json.dumps({"_id": f"q{n}", "text": question}) + "\n")
            r.write(f"q{n}\t{article}\t1\n")
    print(f"{len(titles)} articles, {len(questions)} questions -> {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
