"""Question -> verbatim quotes. The one function behind the CLI, the server and the evaluation."""

from __future__ import annotations

import json
import re
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
_WORD = re.compile(r"(?u)\b\w\w+\b")


def clean_question(question: str, settings: Settings) -> str:
    """The question after Unicode NFKC and trimming.

    Raises:
        InvalidQuestion: empty, or longer than `settings.max_question_chars`.
    """
    if not isinstance(question, str):
        raise InvalidQuestion("the question must be text")
    text = " ".join(unicodedata.normalize("NFKC", question).split())
    if not text:
        raise InvalidQuestion("the question is empty; type a question, e.g. 'How do I start?'")
    if len(text) > settings.max_question_chars:
        raise InvalidQuestion(
            f"the question is {len(text)} characters long; the limit is "
            f"{settings.max_question_chars} (VERBATIM_MAX_QUESTION_CHARS); shorten it"
        )
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
    dense: float  # cosine of question and passage
    window: tuple[int, int]  # sentence rows [lo, hi)
    window_score: float


def _minmax(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    return np.zeros_like(values) if hi - lo < 1e-9 else (values - lo) / (hi - lo)


def _best_window(index, row: int, qvec: np.ndarray, terms: set[str], stem) -> tuple:
    """The run of 1-3 consecutive sentences of passage `row` that best answers the question."""
    lo, hi = int(index.sent_lo[row]), int(index.sent_hi[row])
    vecs = np.asarray(index.sentence_vectors[lo:hi], dtype=np.float32)
    text = index.text(index.passage_doc[row])
    sims = vecs @ qvec
    overlap = []
    for s in range(lo, hi):
        words = text[index.sent_start[s] : index.sent_end[s]].lower()
        tokens = set(stem(_WORD.findall(words))) if terms else set()
        overlap.append(tokens & terms)
    best = (lo, lo + 1, -1.0)
    for i in range(hi - lo):
        for width in range(1, MAX_WINDOW + 1):
            j = i + width
            if j > hi - lo:
                break
            mean = vecs[i:j].sum(axis=0)
            cos = float(mean @ qvec / (np.linalg.norm(mean) + 1e-9))
            covered = set().union(*overlap[i:j])
            lexical = len(covered) / len(terms) if terms else 0.0
            # Each extra sentence must earn its place: prefer the minimal span that answers.
            score = max(cos, float(sims[i:j].max())) + 0.15 * lexical - 0.04 * (width - 1)
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
    dense: np.ndarray  # cosine of question and passage, same order
    began: float

    @property
    def evidence(self) -> float:
        """How strongly the corpus speaks to the question: the best passage cosine."""
        return float(self.dense.max()) if len(self.dense) else 0.0

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
    question: str, index, embedder, settings: Settings, filters: dict | None = None
) -> Retrieval:
    """Rank passages for `question` by dense and BM25 evidence together.

    Args:
        filters: optional `documents` (ids), `author`, `site`: only matching documents count.

    Raises:
        InvalidQuestion: see `clean_question`.
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
    if not len(pool):
        empty = np.zeros(0, dtype=np.float32)
        return Retrieval(text, qvec, pool, empty, empty, began)
    dense = np.asarray(index.passage_vectors()[pool], dtype=np.float32) @ qvec
    lex_pool = lex[pool]
    lex_norm = lex_pool / lex_pool.max() if lex_pool.max() > 0 else np.zeros_like(lex_pool)
    fused = dense + 0.2 * lex_norm
    order = np.argsort(-fused, kind="stable")
    return Retrieval(text, qvec, pool[order], fused[order], dense[order], began)


def compose(found: Retrieval, index, settings: Settings, k: int | None = None) -> Answer:
    """Choose the quotes for a retrieval, or abstain when the evidence is weak."""
    k = k or settings.default_k
    terms = set(index.lexical.terms(found.question))
    stem = index.lexical._stem
    candidates = []
    top = max(3 * k, 10)
    for row, score, dense in zip(
        found.rows[:top], found.scores[:top], found.dense[:top], strict=True
    ):
        lo, hi, wscore = _best_window(index, int(row), found.vector, terms, stem)
        candidates.append(_Candidate(int(row), float(score), float(dense), (lo, hi), wscore))
    threshold = settings.min_score
    if threshold is None:
        threshold = index.threshold if index.threshold is not None else DEFAULT_THRESHOLD
    evidence = found.evidence
    quotes = _select(index, candidates, index.passage_vectors(), k)
    abstained = evidence < threshold or not quotes
    reason = None
    near: list[Quote] = []
    if abstained:
        reason = (
            "These documents don't address that: the closest passage scores "
            f"{evidence:.2f}, below the threshold {threshold:.2f}."
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
