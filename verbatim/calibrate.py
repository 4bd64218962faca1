"""Choose the abstention thresholds of an index from the scores of its own sentences.

Procedure (run at every ingest; the result is stored in the manifest):
1. In-domain probes: up to 300 (VERBATIM_CALIBRATION_PROBES) sentences of at least 8 words,
   sampled evenly from the corpus. Each is asked of the index with its own passage left out,
   so that it must be answered by *other* text, exactly as a real question is
   (`answer.retrieve_by_vector`): its best passage and best sentence cosine among its
   candidates are recorded. Copies of its passage, and of itself, are left out too: a corpus
   holding a manual twice would otherwise answer every probe with itself.
2. Each threshold is the 5th percentile of its distribution: Verbatim accepts abstaining on
   about 1 in 20 in-domain questions, and treats as unaddressed whatever scores below what 95%
   of the corpus's own statements reach. A question is compared with the blend of the two
   thresholds that matches the blend of its evidence (`answer.blend`, by specificity).
3. Off-topic probes (`offtopic.txt`: everyday questions on cooking, tax, sport, programming,
   travel...) are scored the same way and recorded for inspection only: for a broad corpus
   (an encyclopedia) they are not off-topic at all, so they cannot set the threshold.
"""

from __future__ import annotations

from importlib.resources import files

import numpy as np

from verbatim.answer import DUPLICATE, Retrieval, retrieve_by_vector
from verbatim.index import Index
from verbatim.records import Embedder
from verbatim.settings import Settings

MIN_WORDS = 8
FALSE_ABSTENTION = 0.05
PASSAGE, SENTENCE = 0, 1  # the columns of `_best`: best passage and best sentence cosine


def offtopic_questions() -> list[str]:
    text = files("verbatim").joinpath("offtopic.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def _best(
    index: Index, settings: Settings, texts: list[str], vectors: np.ndarray, exclude: list
) -> np.ndarray:
    """(n, 2): each probe's best passage and best sentence cosine, asked as a question is, with
    its own passage (`exclude`) and that passage's copies left out (`_apart_from_copies`)."""
    out = []
    for text, vector, row in zip(texts, vectors, exclude, strict=True):
        found = retrieve_by_vector(text, vector, index, settings, exclude=row)
        if row is None:
            out.append((found.best_passage, found.best_sentence))
        else:
            own = np.asarray(index.passage_vectors[[row]], dtype=np.float32)[0]
            out.append(_apart_from_copies(found, vector, own))
    return np.array(out).reshape(-1, 2)


def _apart_from_copies(found: Retrieval, vector: np.ndarray, own: np.ndarray) -> tuple:
    """A probe's best passage and sentence cosine among text that is not its own, repeated.

    A corpus holding a manual twice (its HTML chapters and its PDF) answers every probe with
    the probe's own sentence from the other copy (cosine ~1), which would lift the thresholds
    until real questions are refused. So passages that are copies of the probe's passage
    (cosine above `DUPLICATE`, as quoting collapses them) and sentences that are the probe
    itself are left out, as the probe's own passage is.
    """
    passages = found.passage_rows
    if passages is None or not len(found.sentence_cos):
        return found.best_passage, found.best_sentence
    vecs = np.asarray(passages.vectors, dtype=np.float32)
    copy = vecs @ own > DUPLICATE
    dense = vecs @ vector
    in_copy = np.repeat(copy, passages.sent_hi - passages.sent_lo)
    other = ~in_copy & (found.sentence_cos <= DUPLICATE)
    best_passage = float(dense[~copy].max()) if (~copy).any() else 0.0
    best_sentence = float(found.sentence_cos[other].max()) if other.any() else 0.0
    return best_passage, best_sentence


def _summary(values: np.ndarray) -> dict:
    return {
        "q05": round(float(np.quantile(values, 0.05)), 4),
        "q50": round(float(np.median(values)), 4),
        "q95": round(float(np.quantile(values, 0.95)), 4),
    }


def calibrate(index: Index, embedder: Embedder, settings: Settings) -> dict:
    """The passage and sentence thresholds, and both probe distributions, for the manifest."""
    settings = settings.model_copy(update={"max_question_chars": 1_000_000})
    questions = offtopic_questions()
    vectors = embedder.encode(questions, progress=False)  # one batch, not one call each
    off = _best(index, settings, questions, vectors, [None] * len(questions))
    owner = index.sent_passage

    def sentence(s: int) -> str:
        return index.text(index.passage_doc[owner[s]])[index.sent_start[s] : index.sent_end[s]]

    n = len(index.sent_start)
    probes = settings.calibration_probes
    sample = np.unique(np.linspace(0, n - 1, min(n, 10 * probes)).astype(int))
    long_enough = [int(s) for s in sample if len(sentence(s).split()) >= MIN_WORDS]
    if index.faiss.ntotal < 2 or not long_enough:
        # Too small to probe itself: fall back to what the off-topic probes reach.
        high = {column: float(np.quantile(off[:, column], 0.95)) for column in (PASSAGE, SENTENCE)}
        return {"passage": high[PASSAGE], "sentence": high[SENTENCE], "method": "off-topic q95"}
    step = np.linspace(0, len(long_enough) - 1, min(probes, len(long_enough)))
    picks = [long_enough[int(i)] for i in step]
    # A probe is a corpus sentence, embedded at ingest exactly as a question would be.
    vectors = np.asarray(index.sentence_vectors[picks], dtype=np.float32)
    inside = _best(
        index, settings, [sentence(s) for s in picks], vectors, [int(owner[s]) for s in picks]
    )
    return {
        "passage": round(float(np.quantile(inside[:, PASSAGE], FALSE_ABSTENTION)), 4),
        "sentence": round(float(np.quantile(inside[:, SENTENCE], FALSE_ABSTENTION)), 4),
        "method": f"in-domain probes, {FALSE_ABSTENTION:.0%} quantile of each",
        "in_domain": {
            "n": len(inside),
            "passage": _summary(inside[:, PASSAGE]),
            "sentence": _summary(inside[:, SENTENCE]),
        },
        "offtopic": {
            "n": len(off),
            "passage": _summary(off[:, PASSAGE]),
            "sentence": _summary(off[:, SENTENCE]),
        },
    }
