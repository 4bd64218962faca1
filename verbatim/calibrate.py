"""Choose the abstention threshold of an index from score distributions.

Procedure (run at every ingest, stored in the manifest):
1. Off-topic probes: the questions in `offtopic.txt`, about everyday subjects far from any one
   corpus (cooking, tax, sport, programming, travel...). Their best passage cosine is what
   "no answer here" looks like for this index.
2. In-domain probes: sentences sampled evenly from the corpus, each asked of the index with its
   own passage left out, so that it must be answered by *other* text, as a real question is.
3. The threshold is the score that best separates the two (maximal balanced accuracy), but never
   below the 95th percentile of the off-topic scores: abstaining wrongly costs less trust than
   quoting something unrelated.
"""

from __future__ import annotations

from importlib.resources import files

import numpy as np

from verbatim.settings import Settings

IN_DOMAIN_PROBES = 300


def offtopic_questions() -> list[str]:
    text = files("verbatim").joinpath("offtopic.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def _best_scores(index, vectors: np.ndarray, exclude: list[int] | None = None) -> np.ndarray:
    scores, rows = index.faiss.search(np.ascontiguousarray(vectors, dtype=np.float32), 2)
    best = scores[:, 0].copy()
    if exclude is not None:
        own = rows[:, 0] == np.asarray(exclude)
        best[own] = scores[own, 1]
    return best


def calibrate(index, embedder, settings: Settings) -> dict:
    """Threshold and the two score distributions' summaries, for the manifest."""
    off = _best_scores(index, embedder.encode(offtopic_questions(), progress=False))
    n_sent = len(index.sent_start)
    if index.faiss.ntotal < 2 or n_sent == 0:
        return {"threshold": float(np.quantile(off, 0.95)), "method": "offtopic-q95"}
    picks = np.linspace(0, n_sent - 1, min(IN_DOMAIN_PROBES, n_sent)).astype(int)
    owner = np.searchsorted(index.sent_lo, picks, side="right") - 1
    vectors = np.asarray(index.sentence_vectors[picks], dtype=np.float32)
    inside = _best_scores(index, vectors, exclude=owner.tolist())
    floor = float(np.quantile(off, 0.95))
    grid = np.unique(np.concatenate([off, inside]))
    accuracy = [((inside >= t).mean() + (off < t).mean()) / 2 for t in grid]
    best = float(grid[int(np.argmax(accuracy))])
    return {
        "threshold": round(max(best, floor), 4),
        "method": "max balanced accuracy, floored at off-topic q95",
        "offtopic": {"n": len(off), "q50": float(np.median(off)), "q95": floor},
        "in_domain": {
            "n": len(inside),
            "q05": float(np.quantile(inside, 0.05)),
            "q50": float(np.median(inside)),
        },
    }
