"""What a cross-encoder reranker would cost beside a whole `answer()`, on this machine, now.

    python scripts/rerank_cost.py [--set squad2] [--questions 100] [--rounds 3]

A cross-encoder reads each (question, candidate) pair through the transformer together. Built
from all-MiniLM-L6-v2 (the only model here, issue #17), its forward pass is the same network
over the pair's tokens, so its cost is measured with the embedder's own ONNX session on
`question [SEP] quote` for the quotes `answer()` shows, 1, 3 and 10 of them. Each question is
timed as a whole `answer()` (its encode included) and then each pair batch, interleaved, best of
`--rounds`, so a busy machine slows them alike; the ratios to `answer()` are what to read.
Issue #17 allows a p50 per question within 1.2x of `answer()`'s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from verbatim.answer import answer
from verbatim.eval import corpus_engine, read_questions
from verbatim.settings import Settings

BENCHMARKS = Path(__file__).resolve().parents[2] / "shared/benchmarks"
PAIRS = (1, 3, 10)


def best_ms(call: Callable[[], object], rounds: int) -> float:
    """The fastest of `rounds` calls, in milliseconds."""
    took = []
    for _ in range(rounds):
        began = time.perf_counter()
        call()
        took.append(time.perf_counter() - began)
    return min(took) * 1000


def measure(folder: Path, n: int, rounds: int) -> dict:
    """p50 of a whole `answer()` and of reading 1, 3 and 10 of its quote pairs through MiniLM."""
    settings = Settings()
    engine = corpus_engine(folder / "corpus.jsonl", settings)
    questions = [q.question for q in read_questions(folder / "questions.dev.jsonl")]
    settings = settings.model_copy(
        update={"max_question_chars": max(len(q) for q in questions[:n])}
    )
    encode = engine.embedder.encode
    times: dict[str, list[float]] = {"answer": [], **{f"{k} pairs": [] for k in PAIRS}}
    for q in questions[:n]:
        shown = answer(q, engine.answering, engine.embedder, settings, k=10)
        quotes = [x.text for x in shown.quotes + shown.near_misses]
        times["answer"].append(
            best_ms(lambda q=q: answer(q, engine.answering, engine.embedder, settings), rounds)
        )
        for k in PAIRS:
            pairs = [f"{q} [SEP] {text}" for text in quotes[:k]]
            if len(pairs) == k:
                times[f"{k} pairs"].append(best_ms(lambda p=pairs: encode(p), rounds))
    p50 = {name: round(statistics.median(ms), 2) for name, ms in times.items() if ms}
    ratio = {name: round(ms / p50["answer"], 2) for name, ms in p50.items() if name != "answer"}
    return {"set": folder.name, "questions": n, "p50_ms": p50, "pairs_over_answer": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", default="squad2", help="a folder of ../shared/benchmarks")
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(measure(BENCHMARKS / args.set, args.questions, args.rounds), indent=2))


if __name__ == "__main__":
    main()
