"""Cross-validate tuned constants: each fitted on K-1 folds of a question set and scored on the
fold left out, against the value in the code.

    python -m bench.cv --sets seeds counselchat squad2 --folds 5 --json eval/reports/cv.json
    python -m bench.cv --sets seeds --constant verbatim.answer.COVER_WEIGHT=0.2,0.4,0.6

Each set's index is built once (`corpus_engine`, cached like `verbatim eval`'s) and every
question embedded once; a constant is varied in-process (`unittest.mock.patch.object` on its
module), so no value re-embeds anything. For each value every answerable question is answered
once; then, for each fold, the value with the best objective on the other K-1 folds is the
fitted one and its figure on the left-out fold is recorded. Reported: the current value's
mean ± standard error over the folds, the fitted value's left-out mean ± standard error, and the
paired difference (fitted - current, per fold) ± its standard error.

Folds are `verbatim eval --folds`'s (`verbatim.eval.folds.assign`): answerable questions land
in the same folds here as there. Only answerable questions are asked; the constants varied here
move the ranking and the quotes, not the evidence abstention reads (`CANDIDATES` aside, whose
pool the evidence is the best of), and the calibrated thresholds stay those of the index.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from pathlib import Path
from unittest import mock

import numpy as np

from verbatim.eval import Question, corpus_engine, evaluate, folds, metrics_of, read_questions
from verbatim.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT.parent / "shared" / "benchmarks"

# Set -> (questions, corpus, objective as "group.figure" in `Report.metrics`).
OBJECTIVE = {
    "seeds": "quotes.hit@1",
    "counselchat": "retrieval.ndcg@10",
    "squad2": "quotes.hit@1",
}
# The tuned constants of docs/design.md that answering reads at each question, with the values
# tried (the code's own value is added when missing).
CONSTANTS: dict[str, list[float]] = {
    "verbatim.answer.COVER_WEIGHT": [0.2, 0.3, 0.4, 0.5, 0.6],
    "verbatim.answer.BM25_WEIGHT": [0.0, 0.05, 0.1, 0.2, 0.3],
    "verbatim.answer.SPECIFIC_TERMS": [6, 8, 10, 12, 15],
    "verbatim.answer.WINDOW_COVER_WEIGHT": [0.25, 0.5, 0.75, 1.0],
    "verbatim.answer.EXTRA_SENTENCE": [0.0, 0.025, 0.05, 0.1, 0.15],
    "verbatim.answer.MAX_WINDOW": [1, 2, 3, 4],
    "verbatim.answer.CANDIDATES": [30, 50, 80],
    "verbatim.answer.QUOTE_CANDIDATES": [20, 30, 50],
    "verbatim.answer.DUPLICATE": [0.9, 0.95, 0.97, 0.99],
}


def set_files(name: str, benchmarks: Path) -> tuple[Path, Path]:
    """A set's questions and corpus."""
    if name == "seeds":
        return ROOT / "eval" / "seeds.jsonl", ROOT / "corpus"
    return benchmarks / name / "questions.dev.jsonl", benchmarks / name / "corpus.jsonl"


class Remembered:
    """An embedder that encodes each distinct text once and then answers from memory."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", "remembered")
        self.seen: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    def encode(self, texts: list[str], progress: bool | None = None) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.seen]
        if todo:
            self.seen.update(zip(todo, self.inner.encode(todo, progress=progress), strict=True))
        return np.stack([self.seen[t] for t in texts]) if texts else self.inner.encode([])


def figure(results: list, objective: str) -> float:
    """The objective over `results`, as the eval computes it (0 where it has no value)."""
    group, name = objective.split(".", 1)
    value = metrics_of(results).get(group, {}).get(name)
    return float(value) if value is not None else 0.0


def answer_all(engine, questions: list[Question], target: str, value) -> list:
    """Every question answered with the constant `target` (module.NAME) set to `value`."""
    module_name, attr = target.rsplit(".", 1)
    with mock.patch.object(importlib.import_module(module_name), attr, value):
        return evaluate(questions, engine, progress=False, baseline=False).results


def fit(by_value: dict, fold: dict[str, int], k: int, objective: str, current) -> dict:
    """For each fold, the value best on the other folds (ties: the current, then the first
    listed) and its figure on the fold; the current value's figure on each fold beside it."""
    chosen, left_out, baseline = [], [], []
    for i in range(k):
        train = {
            v: figure([r for r in rs if fold[r.id] != i], objective) for v, rs in by_value.items()
        }
        best = max(train, key=lambda v: (train[v], v == current, -list(train).index(v)))
        chosen.append(best)
        left_out.append(figure([r for r in by_value[best] if fold[r.id] == i], objective))
        baseline.append(figure([r for r in by_value[current] if fold[r.id] == i], objective))
    gains = [a - b for a, b in zip(left_out, baseline, strict=True)]
    return {
        "current": current,
        "current_cv": folds.spread(baseline),
        "fitted_cv": folds.spread(left_out),
        "difference": folds.spread(gains),
        "chosen": chosen,
        "pooled": {str(v): round(figure(rs, objective), 4) for v, rs in by_value.items()},
    }


def run_set(name: str, args: argparse.Namespace, constants: dict[str, list]) -> dict:
    """Every constant cross-validated on one set."""
    from verbatim.answer import clean_question

    questions_file, corpus = set_files(name, args.benchmarks)
    settings = Settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    engine = corpus_engine(corpus, settings)
    memo = Remembered(engine.embedder)
    engine = dataclasses.replace(engine, embedder=memo)
    limit = settings.max_question_chars
    asked = [q for q in read_questions(questions_file) if q.answerable]
    memo.encode([clean_question(q.question, settings) for q in asked if len(q.question) <= limit])
    fold = folds.assign([(q.id, "answerable") for q in asked], args.folds)
    objective = OBJECTIVE[name]
    done: dict[tuple, list] = {}  # the code as it is is answered once for every constant
    out = {"objective": objective, "questions": len(asked), "constants": {}}
    for target, values in constants.items():
        module_name, attr = target.rsplit(".", 1)
        current = getattr(importlib.import_module(module_name), attr)
        by_value = {}
        for value in dict.fromkeys([*values, current]):
            key = ("current",) if value == current else (target, value)
            if key not in done:
                done[key] = answer_all(engine, asked, target, value)
            by_value[value] = done[key]
        out["constants"][target] = fit(by_value, fold, args.folds, objective, current)
        print(f"{name} {target}: {_row(out['constants'][target])}", file=sys.stderr, flush=True)
    engine.close()
    return out


def _row(result: dict) -> str:
    cur, fitted, diff = result["current_cv"], result["fitted_cv"], result["difference"]
    return (
        f"current {result['current']} {cur['mean']:.3f} ± {cur['se']:.3f}; "
        f"fitted {fitted['mean']:.3f} ± {fitted['se']:.3f} (chosen {result['chosen']}); "
        f"difference {diff['mean']:+.3f} ± {diff['se']:.3f}"
    )


def _pm(spread: dict) -> str:
    return f"{spread['mean']:.3f} ± {spread['se']:.3f}"


def table(runs: dict) -> str:
    """The results as a Markdown table, one row per set and constant."""
    rows = [
        "| set (objective) | constant | current | current: CV mean ± SE | fitted on K-1 folds: "
        "left-out mean ± SE | fitted − current ± SE | value chosen per fold |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        for target, r in run["constants"].items():
            cur, fit_, diff = (_pm(r[x]) for x in ("current_cv", "fitted_cv", "difference"))
            rows.append(
                f"| {name} ({run['objective']}) | `{target.rsplit('.', 1)[1]}` | {r['current']} "
                f"| {cur} | {fit_} | {diff} | {', '.join(map(str, r['chosen']))} |"
            )
    return "\n".join(rows)


def _constants(specs: list[str] | None) -> dict[str, list]:
    """`--constant module.NAME=v1,v2` specs, or every constant of `CONSTANTS`."""
    if not specs:
        return CONSTANTS
    out = {}
    for spec in specs:
        target, _, values = spec.partition("=")
        if not values or "." not in target:
            raise SystemExit(f"--constant {spec!r}: write it as module.NAME=v1,v2,...")
        out[target] = [json.loads(v) for v in values.split(",")]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(OBJECTIVE), choices=list(OBJECTIVE))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--constant", action="append", help="module.NAME=v1,v2,... (repeatable)")
    parser.add_argument("--benchmarks", type=Path, default=BENCHMARKS)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    constants = _constants(args.constant)
    runs = {name: run_set(name, args, constants) for name in args.sets}
    print(table(runs))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(runs, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
