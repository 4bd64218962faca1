"""K-fold figures by question: which fold each question is in, and the mean and spread of a
figure over the folds. Pure functions; `verbatim.eval.cross_validate` applies them to a report.

A question's fold depends only on its id, its kind and the other ids of the same kind in the
set: within each kind (answerable, unanswerable, off-topic) the questions are ordered by the
SHA-256 of their id and dealt round-robin, the count carried from one kind to the next. So
the same set always splits the same way, whatever the order of its file, and every fold holds
the same number of questions of each kind, give or take one.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

# The figures reported per fold, as (group, name) in `Report.metrics`.
HEADLINE = (
    ("quotes", "hit@1"),
    ("quotes", "hit@3"),
    ("quotes", "source@1"),
    ("retrieval", "ndcg@10"),
    ("retrieval", "recall@10"),
    ("retrieval", "mrr@10"),
    ("abstention", "false_abstained"),
    ("abstention", "must_abstain"),
    ("dense_baseline", "ndcg@10"),
    ("dense_baseline", "recall@10"),
    ("dense_baseline", "source@1"),
)


def _hash(qid: str) -> str:
    return hashlib.sha256(qid.encode("utf-8")).hexdigest()


def assign(questions: Sequence[tuple[str, str]], k: int) -> dict[str, int]:
    """The fold (0 .. k-1) of each question, given as (id, kind)."""
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, not {k}; pass --folds 5")
    folds: dict[str, int] = {}
    dealt = 0
    for kind in sorted({kind for _, kind in questions}):
        ids = sorted({qid for qid, own in questions if own == kind}, key=lambda q: (_hash(q), q))
        for qid in ids:
            folds.setdefault(qid, dealt % k)
            dealt += 1
    return folds


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation and standard error (sd / sqrt(n)) of fold figures."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": round(mean, 4), "sd": round(sd, 4), "se": round(sd / math.sqrt(n), 4)}


def summarise(per_fold: Sequence[dict]) -> dict[str, dict[str, float] | None]:
    """For each headline figure, its `spread` over the folds' metrics (`Report.metrics` each);
    None where some fold has no value (no question of the kind it averages over)."""
    out: dict[str, dict[str, float] | None] = {}
    for group, name in HEADLINE:
        values = [m.get(group, {}).get(name) for m in per_fold]
        present = all(v is not None for v in values) and bool(values)
        out[f"{group}.{name}"] = spread([float(v) for v in values]) if present else None
    return out


def lines(cv: dict) -> str:
    """The cross-validated figures as a plain-text table: mean, sd and se over the folds."""
    rows = [f"cross-validated over {cv['k']} folds by question (mean, sd, se over folds)"]
    rows.append(f"  {'figure':<28}{'mean':>8}{'sd':>8}{'se':>8}")
    for name, value in cv["figures"].items():
        if value is not None:
            rows.append(f"  {name:<28}{value['mean']:>8.3f}{value['sd']:>8.3f}{value['se']:>8.3f}")
    return "\n".join(rows)
