"""Choose the abstention threshold of an index from score distributions.

Procedure (run at every ingest; the result is stored in the manifest):
1. In-domain probes: up to 300 sentences of at least 8 words, sampled evenly from the corpus.
   Each is asked of the index with its own passage left out, so it must be answered by *other*
   text, as a real question is. Its evidence is computed exactly as for a question
   (`answer.evidence`: best passage and best sentence cosine, mixed by specificity).
2. The threshold is the 5th percentile of the in-domain probes' evidence: Verbatim accepts
   abstaining on about 1 in 20 in-domain questions, and everything scoring below what 95% of
   the corpus's own statements reach is treated as not addressed by it.
3. Off-topic probes (`offtopic.txt`: everyday questions on cooking, tax, sport, programming,
   travel...) are scored the same way and recorded for inspection. They do not set the
   threshold: for a broad corpus (an encyclopedia) they are not off-topic at all.
"""

from __future__ import annotations

from importlib.resources import files

import numpy as np

from verbatim.answer import evidence
from verbatim.settings import Settings

IN_DOMAIN_PROBES = 300
MIN_WORDS = 8
NEIGHBOURS = 20  # passages searched per probe, as a question's candidate pool
FALSE_ABSTENTION = 0.05


def offtopic_questions() -> list[str]:
    text = files("verbatim").joinpath("offtopic.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def _evidence(index, vectors: np.ndarray, texts: list[str], exclude: list[int] | None) -> list:
    k = min(NEIGHBOURS + 1, index.faiss.ntotal)
    scores, rows = index.faiss.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
    out = []
    for i, vec in enumerate(vectors):
        keep = rows[i] >= 0
        if exclude is not None:
            keep &= rows[i] != exclude[i]
        if not keep.any():
            continue
        pool = rows[i][keep]
        sents = np.concatenate([np.arange(index.sent_lo[r], index.sent_hi[r]) for r in pool])
        best_sentence = float((np.asarray(index.sentence_vectors[sents]) @ vec).max())
        n_terms = len(index.lexical.terms(texts[i]))
        out.append(evidence(float(scores[i][keep].max()), best_sentence, n_terms))
    return out


def calibrate(index, embedder, settings: Settings) -> dict:
    """The threshold and summaries of both probe distributions, for the manifest."""
    questions = offtopic_questions()
    off = np.array(_evidence(index, embedder.encode(questions, progress=False), questions, None))
    owner = index.sent_passage

    def sentence(s: int) -> str:
        return index.text(index.passage_doc[owner[s]])[index.sent_start[s] : index.sent_end[s]]

    n = len(index.sent_start)
    sample = np.unique(np.linspace(0, n - 1, min(n, 10 * IN_DOMAIN_PROBES)).astype(int))
    long_enough = [int(s) for s in sample if len(sentence(s).split()) >= MIN_WORDS]
    if index.faiss.ntotal < 2 or not long_enough:
        return {"threshold": round(float(np.quantile(off, 0.95)), 4), "method": "offtopic-q95"}
    step = np.linspace(0, len(long_enough) - 1, min(IN_DOMAIN_PROBES, len(long_enough)))
    picks = [long_enough[int(i)] for i in step]
    inside = np.array(
        _evidence(
            index,
            np.asarray(index.sentence_vectors[picks], dtype=np.float32),
            [sentence(s) for s in picks],
            [int(owner[s]) for s in picks],
        )
    )
    return {
        "threshold": round(float(np.quantile(inside, FALSE_ABSTENTION)), 4),
        "method": f"in-domain probes, {FALSE_ABSTENTION:.0%} quantile",
        "in_domain": {
            "n": len(inside),
            "q05": float(np.quantile(inside, 0.05)),
            "q50": float(np.median(inside)),
        },
        "offtopic": {
            "n": len(off),
            "q50": float(np.median(off)),
            "q95": float(np.quantile(off, 0.95)),
        },
    }
