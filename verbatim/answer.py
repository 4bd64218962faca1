"""Question -> verbatim quotes. The one function behind the CLI, the server and the evaluation."""

from __future__ import annotations

import json
import time
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote as urlquote

import numpy as np

from verbatim.errors import InvalidQuestion
from verbatim.records import Answer, Quote
from verbatim.settings import Settings

CANDIDATES = 50  # passages considered before quote selection
MAX_WINDOW = 3  # sentences in one quote at most
DEFAULT_THRESHOLD = 0.30
EXTRA_SENTENCE = 0.05  # what each sentence beyond the first must add to a quote's score
SPECIFIC_TERMS = 10  # questions with at most this many content terms lean on single sentences


def clean_question(question: str, settings: Settings) -> str:
    """The question after Unicode NFKC and trimming.

    Raises:
        InvalidQuestion: longer than `settings.max_question_chars` as given, or empty once
            normalised.
    """
    if not isinstance(question, str):
        raise InvalidQuestion("the question must be text")
    if len(question) > settings.max_question_chars:
        raise InvalidQuestion(
            f"the question is {len(question)} characters long; the limit is "
            f"{settings.max_question_chars} (VERBATIM_MAX_QUESTION_CHARS); shorten it"
        )
    text = unicodedata.normalize("NFKC", question)
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
    text = " ".join(text.split())
    if not text:
        raise InvalidQuestion("the question is empty; type a question, e.g. 'How do I start?'")
    return text


def text_fragment_link(url: str | None, quote: str) -> str | None:
    """The source URL with a Text Fragment (`#:~:text=`) that scrolls to and highlights `quote`."""
    if not url or not url.lower().startswith(("http://", "https://")):
        return None
    words = quote.split()

    def enc(part: list[str]) -> str:
        return urlquote(" ".join(part), safe="").replace("-", "%2D")

    if len(words) <= 8:
        fragment = enc(words)
    else:
        fragment = f"{enc(words[:4])},{enc(words[-4:])}"
    return f"{url.split('#', 1)[0]}#:~:text={fragment}"


@dataclass
class _Candidate:
    row: int
    score: float  # relevance of the passage
    window: tuple[int, int]  # sentence rows [lo, hi)
    window_score: float


def specificity(n_terms: int) -> float:
    """1 for a short question (answered by one sentence), falling to 0 as it grows longer."""
    return min(1.0, SPECIFIC_TERMS / max(n_terms, 1))


def blend(passage: float, sentence: float, specific: float) -> float:
    """Mix a passage-level and a sentence-level figure by a question's specificity.

    The evidence that the corpus addresses a question is the blend of its best passage and best
    sentence cosine; the threshold it is compared with is the blend of the index's calibrated
    passage and sentence thresholds, with the same weight.
    """
    return (1 - specific) * passage + specific * sentence


def _term_weights(index, text: str) -> tuple[list[str], np.ndarray]:
    """The question's indexed terms and their IDF weights, summing to 1."""
    terms = index.lexical.terms(text)
    weights = np.array([index.lexical.idf(t) for t in terms], dtype=np.float64)
    return terms, (weights / weights.sum() if weights.sum() > 0 else weights)


def _best_window(
    index, row: int, qvec: np.ndarray, terms: list[str], weights: np.ndarray
) -> tuple[int, int, float]:
    """The run of 1-3 consecutive sentences of passage `row` that best answers the question.

    A window scores the cosine of the question with its mean sentence vector plus half the
    IDF-weighted share of question terms it contains; each extra sentence costs a little, so
    the minimal span that answers wins and unrelated neighbours dilute the mean.
    """
    lo, hi = int(index.sent_lo[row]), int(index.sent_hi[row])
    vecs = np.asarray(index.sentence_vectors[lo:hi], dtype=np.float32)
    has = index.sentence_lexical.contains(terms, np.arange(lo, hi)) if terms else None
    best = (lo, lo + 1, -np.inf)
    for i in range(hi - lo):
        for j in range(i + 1, min(i + MAX_WINDOW, hi - lo) + 1):
            mean = vecs[i:j].sum(axis=0)
            score = float(mean @ qvec / (np.linalg.norm(mean) + 1e-9))
            if has is not None:
                score += 0.5 * float(has[i:j].any(axis=0) @ weights)
            score -= EXTRA_SENTENCE * (j - i - 1)
            if score > best[2]:
                best = (lo + i, lo + j, score)
    return best


@dataclass
class Retrieval:
    """Passages ranked for a question, best first, before any quote is chosen."""

    question: str
    vector: np.ndarray
    rows: np.ndarray  # passage rows
    scores: np.ndarray  # fused relevance, descending
    best_passage: float  # highest passage cosine in the pool
    best_sentence: float  # highest sentence cosine in the pool
    specific: float  # the question's specificity, 0..1
    began: float

    @property
    def evidence(self) -> float:
        """How strongly the corpus speaks to the question; see `blend()`."""
        return blend(self.best_passage, self.best_sentence, self.specific)

    def documents(self, index, n: int = 10) -> list[str]:
        """Document ids in rank order (each at its best passage), at most `n`."""
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.setdefault(index.passage_doc[int(row)], None)
            if len(seen) == n:
                break
        return list(seen)


def _allowed_rows(index, filters: dict) -> np.ndarray:
    """Passage rows of the documents matching every filter (documents, author, site)."""
    wanted = set(filters.get("documents") or index.documents)
    docs = {
        d
        for d in wanted
        if d in index.documents
        and filters.get("author") in (None, index.documents[d][2])
        and filters.get("site") in (None, index.documents[d][5])
    }
    return np.array([r for r, d in enumerate(index.passage_doc) if d in docs], dtype=np.int64)


def retrieve(
    question: str,
    index,
    embedder,
    settings: Settings,
    filters: dict | None = None,
    exclude: int | None = None,
) -> Retrieval:
    """Rank passages for `question` by dense and lexical evidence together.

    Candidates are the nearest passages by embedding and the best by BM25. Each is scored on
    absolute scales, so no per-query normalisation (z-scores, min-max) can blow up the noise of
    a flat score distribution, as it does for long questions:
      passage cosine
      + 0.4 x IDF-weighted share of the question's terms in the passage and in its best sentence
      + w x best sentence cosine, w = min(1, 10 / content terms): a short, specific question is
        usually answered by one sentence, a long descriptive one by a passage as a whole
      + 0.1 x BM25 relative to the best candidate's.
    See eval/README.md for the measurements behind each term.

    Args:
        filters: optional `documents` (ids), `author`, `site`: only matching documents count.
        exclude: a passage row left out (calibration asks the corpus's own sentences).
    """
    began = time.perf_counter()
    text = clean_question(question, settings)
    qvec = embedder.encode([text], progress=False)[0]
    n = min(CANDIDATES, index.faiss.ntotal)
    rows, _ = index.search(qvec, n)
    lex = index.lexical.scores(text)
    lex_rows = np.argsort(-lex)[:n]
    lex_rows = lex_rows[lex[lex_rows] > 0]
    pool = np.unique(np.concatenate([rows, lex_rows])).astype(np.int64)
    if filters:
        pool = _allowed_rows(index, filters)
    if exclude is not None:
        pool = pool[pool != exclude]
    if not len(pool):
        empty = np.zeros(0, dtype=np.float32)
        return Retrieval(text, qvec, pool, empty, 0.0, 0.0, 1.0, began)
    terms, weights = _term_weights(index, text)
    dense = np.asarray(index.passage_vectors()[pool], dtype=np.float32) @ qvec
    passage_cover = index.lexical.contains(terms, pool) @ weights if terms else 0.0
    lo, hi = index.sent_lo[pool], index.sent_hi[pool]
    sents = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)])
    starts = np.concatenate([[0], np.cumsum(hi - lo)[:-1]])
    sent_cos = np.asarray(index.sentence_vectors[sents], dtype=np.float32) @ qvec
    best_sent = np.maximum.reduceat(sent_cos, starts)
    best_cover = 0.0
    if terms:
        sent_cover = index.sentence_lexical.contains(terms, sents) @ weights
        best_cover = np.maximum.reduceat(sent_cover, starts)
    specific = specificity(len(terms))
    bm25 = lex[pool] / lex[pool].max() if lex[pool].max() > 0 else np.zeros(len(pool))
    fused = dense + 0.4 * (passage_cover + best_cover) + specific * best_sent + 0.1 * bm25
    order = np.argsort(-fused, kind="stable")
    return Retrieval(
        text,
        qvec,
        pool[order],
        fused[order],
        float(dense.max()),
        float(best_sent.max()),
        specific,
        began,
    )


def compose(found: Retrieval, index, settings: Settings, k: int | None = None) -> Answer:
    """Choose the quotes for a retrieval, or abstain when the evidence is weak."""
    k = k or settings.default_k
    terms, weights = _term_weights(index, found.question)
    candidates = []
    top = max(3 * k, 10)
    for row, score in zip(found.rows[:top], found.scores[:top], strict=True):
        lo, hi, wscore = _best_window(index, int(row), found.vector, terms, weights)
        candidates.append(_Candidate(int(row), float(score), (lo, hi), wscore))
    threshold = settings.min_score
    if threshold is None:
        calibrated = index.thresholds
        threshold = blend(*calibrated, found.specific) if calibrated else DEFAULT_THRESHOLD
    evidence = found.evidence
    quotes = _select(index, candidates, index.passage_vectors(), k)
    abstained = evidence < threshold or not quotes
    reason = None
    near: list[Quote] = []
    if abstained:
        reason = (
            "These documents don't address that: the best match's similarity to the "
            f"question is {evidence:.2f}, below this index's threshold of {threshold:.2f}."
        )
        near, quotes = quotes[:3], []
    return Answer(
        question=found.question,
        quotes=quotes,
        abstained=abstained,
        reason=reason,
        near_misses=near,
        threshold=float(threshold),
        timing_ms=(time.perf_counter() - found.began) * 1000,
        generation=index.generation,
    )


def answer(
    question: str,
    index,
    embedder,
    settings: Settings,
    k: int | None = None,
    filters: dict | None = None,
) -> Answer:
    """Answer `question` with verbatim quotes from `index`.

    Args:
        k: how many quotes at most (default `settings.default_k`).
        filters: see `retrieve`.

    Returns:
        An `Answer`; when the best evidence is below the index's threshold it is abstained, with
        the closest passages as `near_misses`.
    """
    return compose(retrieve(question, index, embedder, settings, filters), index, settings, k)


# Maximal marginal relevance: how much a quote loses for resembling one already chosen, and
# for each quote already taken from the same document (so other sources get a say).
REDUNDANCY = 0.3
SAME_DOCUMENT = 0.08
DUPLICATE = 0.97  # passage cosine above which two passages are the same text, repeated


def _select(index, candidates: list[_Candidate], pvecs, k: int) -> list[Quote]:
    """Pick up to `k` quotes by maximal marginal relevance across passages and documents.

    A reader's letter is never quoted as an answer. Near-duplicate passages (the same answer
    syndicated or repeated) collapse into one quote listing the other sources.
    """
    pool = [c for c in candidates if index.passage_role[c.row] != "letter"]
    chosen: list[tuple[_Candidate, Quote]] = []
    while pool and len(chosen) < k:

        def utility(c: _Candidate) -> float:
            value = c.score + c.window_score
            if chosen:
                value -= REDUNDANCY * max(float(pvecs[c.row] @ pvecs[q.row]) for q, _ in chosen)
                doc = index.passage_doc[c.row]
                value -= SAME_DOCUMENT * sum(index.passage_doc[q.row] == doc for q, _ in chosen)
            return value

        best = max(pool, key=utility)
        pool.remove(best)
        quote = _quote(index, best)
        twin = next(
            (
                existing
                for q, existing in chosen
                if float(pvecs[best.row] @ pvecs[q.row]) > DUPLICATE
                or " ".join(existing.text.lower().split()) == " ".join(quote.text.lower().split())
            ),
            None,
        )
        if twin is not None:
            if quote.doc_id != twin.doc_id and quote.doc_id not in twin.also_in:
                twin.also_in.append(quote.doc_id)
            continue
        chosen.append((best, quote))
    return [q for _, q in chosen]


def _quote(index, c: _Candidate) -> Quote:
    doc_id = index.passage_doc[c.row]
    doc = index.documents[doc_id]
    text = index.text(doc_id)
    start, end = int(index.sent_start[c.window[0]]), int(index.sent_end[c.window[1] - 1])
    body = text[start:end]
    metadata_section = ""
    heading = index.passage_heading[c.row]
    if not heading:
        metadata_section = json.loads(doc[8])["metadata"].get("section") or ""
    return Quote(
        text=body,
        doc_id=doc_id,
        title=doc[1],
        author=doc[2],
        date=doc[3],
        url=doc[4],
        site=doc[5],
        section=heading or metadata_section,
        role=index.passage_role[c.row],
        passage_id=index.passage_ids[c.row],
        passage_start=int(index.passage_start[c.row]),
        passage_end=int(index.passage_end[c.row]),
        start=start,
        end=end,
        content_hash=doc[7],
        score=round(c.score, 4),
        link=text_fragment_link(doc[4], body),
    )
