"""Check a question set against the documents it is asked of.

Reads CORPUS (a folder or a file) with Verbatim's own reader, without embedding anything, so
the text checked is the clean text ingest stores. Every answerable question needs at least one
id in `relevant` that is a document of the corpus (a set may name the same answer in an HTML
chapter and in the PDF of the same manual), and every gold string in `answers` must occur in
one of its relevant documents present: exactly (default), or with `--fold` after the eval's
own folding of case, white space and quote characters (what quote-hit@1 compares; a PDF's
curly quotes and line breaks differ from the HTML the strings were copied from).

    .venv/bin/python bench/check_questions.py eval/questions/debian-faq.jsonl \
        /usr/share/doc/debian/FAQ

Exit status 1 when any check fails; each failure is printed with the question id.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from verbatim.eval import read_questions
from verbatim.eval.metrics import normalize
from verbatim.ingest import read_documents
from verbatim.settings import Settings


def problems(questions_file: Path, corpus: Path, fold: bool) -> list[str]:
    """Every failed check of `questions_file` against `corpus`, one line each."""
    texts = {d.id: d.text for d in read_documents([corpus], Settings(progress=False)).documents}
    folded = {i: normalize(t) for i, t in texts.items()} if fold else texts
    found: list[str] = []
    for q in read_questions(questions_file):
        if not q.answerable:
            continue
        docs = [folded[r] for r in q.relevant if r in texts]
        if not q.answers or not docs:
            found.append(f"{q.id}: needs gold strings and a relevant document of the corpus")
        for gold in q.answers:
            needle = normalize(gold) if fold else gold
            if not any(needle in text for text in docs):
                found.append(f"{q.id}: gold string not in {q.relevant}: {gold!r}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("questions", type=Path)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--fold", action="store_true", help="compare after the eval's folding")
    args = parser.parse_args()
    found = problems(args.questions, args.corpus, args.fold)
    for line in found:
        print(line)
    questions = read_questions(args.questions)
    answerable = sum(q.answerable for q in questions)
    print(
        f"{args.questions}: {answerable} answerable, {len(questions) - answerable} not; "
        f"{len(found)} problem(s)"
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
