"""Metric functions, each defined on one question; the report averages them."""

from __future__ import annotations

import math
import re
import unicodedata

_QUOTES = str.maketrans(
    {"‘": "'", "’": "'", "‚": "'", "‛": "'", "“": '"', "”": '"', "„": '"', "`": "'", "´": "'"}
)


def normalize(text: str) -> str:
    """Case, white space and quote characters folded, for comparing gold answers to quotes."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).lower()
    return re.sub(r"\s+", " ", text).strip()


def quote_hit(quotes: list[str], answers: list[str], n: int) -> bool:
    """Whether one of the first `n` quotes contains one of the gold answer strings."""
    golds = [normalize(a) for a in answers if a.strip()]
    return any(g in normalize(q) for q in quotes[:n] for g in golds)


def recall_at(ranked: list[str], relevant: set[str], k: int) -> float:
    """Share of the relevant documents found in the first `k` (0 when none are relevant)."""
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mrr_at(ranked: list[str], relevant: set[str], k: int = 10) -> float:
    """1 / rank of the first relevant document within the first `k`, else 0."""
    for rank, doc in enumerate(ranked[:k], 1):
        if doc in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at(ranked: list[str], relevant: set[str], k: int = 10) -> float:
    """Binary-relevance nDCG: DCG of the ranking over the DCG of an ideal one."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(r + 1) for r, doc in enumerate(ranked[:k], 1) if doc in relevant)
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(len(relevant), k) + 1))
    return dcg / ideal


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def coverage_precision(
    answerable: list[float], must_abstain: list[float], thresholds: list[float]
) -> list[tuple[float, float, float]]:
    """For each threshold: (threshold, coverage, precision).

    coverage: share of answerable questions whose evidence reaches the threshold (answered);
    precision: share of answered questions that were answerable (1.0 when nothing is answered).
    """
    rows = []
    for t in thresholds:
        kept = sum(e >= t for e in answerable)
        wrong = sum(e >= t for e in must_abstain)
        coverage = kept / len(answerable) if answerable else 0.0
        precision = kept / (kept + wrong) if kept + wrong else 1.0
        rows.append((t, coverage, precision))
    return rows
