"""Question -> verbatim quotes. The one function behind the CLI, the server and the evaluation."""

from __future__ import annotations

import bisect
import re
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import NamedTuple
from urllib.parse import quote as urlquote

import numpy as np

from verbatim.arrays import spans
from verbatim.errors import InvalidQuestion
from verbatim.index import Candidates, PassageRows, SentenceRows, Store
from verbatim.records import (
    CODE,
    DEFINITION,
    ITEM,
    LEAD_IN,
    PROSE,
    ROW,
    TERM,
    Answer,
    Embedder,
    Filters,
    Quote,
    web_url,
)
from verbatim.settings import Settings

CANDIDATES = 50  # passages considered before quote selection (by embedding and by BM25 each)
COVER_WEIGHT = 0.4  # weighted share of question terms in a passage, and in its best sentence
BM25_WEIGHT = 0.1  # BM25 relative to the candidates' best
DOCUMENT_WEIGHT = 0.2  # x the cosine of a passage's document (its own vector) with the question
WINDOW_COVER_WEIGHT = 0.5  # weighted share of question terms in a quote's sentence window
QUOTE_CANDIDATES = 30  # best passages a quote is chosen from (3 per quote when k > 10)
CANDIDATES_PER_QUOTE = 3  # passages a quote is chosen from, each, when k > 10
MAX_WINDOW = 3  # sentences in one quote at most
DEFAULT_THRESHOLD = 0.30
EXTRA_SENTENCE = 0.05  # what each sentence beyond the first must add to a quote's score
SPECIFIC_TERMS = 10  # questions with at most this many content terms lean on single sentences
NEAR_MISSES = 3  # best quotes shown as near misses when abstaining
# A text fragment quotes a short quote whole; a longer one by its first and last words
# (`text=start,end`): a short link that still highlights the whole range.
FRAGMENT_WORDS = 8
FRAGMENT_EDGE_WORDS = 4
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc, exactly
# MiniLM reads the first 256 word pieces of a text, about 190 English words: a question of up to
# QUESTION_WORDS words is embedded whole, as written; a longer one in pieces of whole sentences
# of at most PIECE_WORDS words (each read whole), whose vectors are averaged (`embed_question`).
QUESTION_WORDS = 180
PIECE_WORDS = 150
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def clean_question(question: str, settings: Settings) -> str:
    """The question after Unicode NFKC and trimming.

    Raises:
        InvalidQuestion: longer than `settings.max_question_chars` as given, or empty once
            normalised: nothing but white space, control and invisible format characters
            (category Cf: zero-width spaces and joiners, a byte-order mark, soft hyphens).
    """
    if not isinstance(question, str):
        raise InvalidQuestion("the question must be text")
    if len(question) > settings.max_question_chars:
        raise InvalidQuestion(
            f"the question is {len(question)} characters long; the limit is "
            f"{settings.max_question_chars} (VERBATIM_MAX_QUESTION_CHARS); shorten it"
        )
    text = unicodedata.normalize("NFKC", question)
    text = CONTROL.sub(" ", text)
    text = " ".join(text.split())
    if all(c == " " or unicodedata.category(c) == "Cf" for c in text):  # nothing visible
        raise InvalidQuestion("the question is empty; type a question, e.g. 'How do I start?'")
    return text


def question_pieces(text: str) -> list[str]:
    """What the model reads of a (clean) question: the question itself when it has at most
    `QUESTION_WORDS` words, else consecutive pieces of it, each of whole sentences of at most
    `PIECE_WORDS` words together (a longer sentence is cut between words)."""
    if len(text.split()) <= QUESTION_WORDS:
        return [text]
    pieces: list[list[str]] = [[]]
    for sentence in SENTENCE_END.split(text):
        words = sentence.split()
        for at in range(0, len(words), PIECE_WORDS):
            part = words[at : at + PIECE_WORDS]
            if pieces[-1] and len(pieces[-1]) + len(part) > PIECE_WORDS:
                pieces.append([])
            pieces[-1] += part
    return [" ".join(words) for words in pieces if words]


def embed_question(text: str, embedder: Embedder) -> np.ndarray:
    """The question's vector: its embedding, for a question the model reads whole (one encode
    call, as ever); for a longer one, the mean of its pieces' unit vectors (`question_pieces`,
    one call), each weighted by its words, renormalised, so that every word counts."""
    pieces = question_pieces(text)
    vectors = np.asarray(embedder.encode(pieces, progress=False), dtype=np.float32)
    if len(pieces) == 1:
        return vectors[0]
    words = np.array([len(p.split()) for p in pieces], dtype=np.float32)
    units = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    mean = words @ units / words.sum()
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def text_fragment_link(url: str | None, quote: str, page: int | None = None) -> str | None:
    """The source URL with a Text Fragment (`#:~:text=`) that scrolls to and highlights `quote`;
    for a paged document (PDF) with `#page=N`, which PDF viewers open at, instead."""
    url = web_url(url)
    if url is None:
        return None
    if page is not None:
        return f"{url.split('#', 1)[0]}#page={page}"
    words = quote.split()

    def enc(part: list[str]) -> str:
        return urlquote(" ".join(part), safe="").replace("-", "%2D")

    if len(words) <= FRAGMENT_WORDS:
        fragment = enc(words)
    else:
        edge = FRAGMENT_EDGE_WORDS
        fragment = f"{enc(words[:edge])},{enc(words[-edge:])}"
    return f"{url.split('#', 1)[0]}#:~:text={fragment}"


@dataclass
class _Candidate:
    row: int
    score: float  # relevance of the passage
    window: tuple[int, int]  # sentence rows [lo, hi): the passage's best window


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


@dataclass
class Retrieval:
    """Passages ranked for a question, best first, before any quote is chosen."""

    question: str
    vector: np.ndarray
    terms: list[str]  # the question's indexed terms
    weights: np.ndarray  # how much each says (IDF x information in English), summing to 1
    rows: np.ndarray  # passage rows
    scores: np.ndarray  # fused relevance, descending
    best_passage: float  # highest passage cosine of the candidates
    best_sentence: float  # highest sentence cosine of the candidates
    specific: float  # the question's specificity, 0..1
    began: float
    sentences: np.ndarray  # the sentence rows of every candidate passage, ascending
    sentence_cos: np.ndarray  # their cosine with the question
    sentence_has: np.ndarray  # whether each of those holds each term: (sentences, terms)
    filtered_out: bool = False  # the filters matched no passage at all
    passage_rows: PassageRows | None = None  # the candidates by row, as the store gave them
    sentence_rows: SentenceRows | None = None  # their sentences (`sentences` above), by row

    @property
    def evidence(self) -> float:
        """How strongly the corpus speaks to the question; see `blend()`."""
        return blend(self.best_passage, self.best_sentence, self.specific)

    def documents(self, index, n: int = 10) -> list[str]:
        """Document ids in rank order (each at its best passage), at most `n`."""
        seen: dict[str, None] = {}
        passages = self.passage_rows
        for row in self.rows:
            seen.setdefault(
                index.passage_doc[int(row)] if passages is None else passages.doc_of(row), None
            )
            if len(seen) == n:
                break
        return list(seen)


class Window(NamedTuple):
    """A run of consecutive sentences of one passage: sentence rows [lo, hi) and its score."""

    lo: int
    hi: int
    score: float


def _best_windows(found: Retrieval, index, rows: np.ndarray) -> list[Window]:
    """For each passage row, the run of 1-3 consecutive sentences that best answers the question.

    A window scores the cosine of the question with its mean sentence vector plus half the
    weighted share (`Lexical.query`) of question terms it contains; each extra sentence costs
    a little, so the minimal span that answers wins and unrelated neighbours dilute the mean.
    All windows (`_structured` ones) are scored in one pass; ties go to the earliest, shortest.

    The cosine needs no window vector: for a window's sentence vectors v_i, the question q and
    s = sum(v_i), cos(q, s) = sum(q . v_i) / |s| with |s|^2 = sum over pairs of v_i . v_j, so
    the sentence cosines already known from retrieval and the dot products of neighbouring
    sentences (one and two apart) give every window's score.
    """
    if not len(rows) or found.passage_rows is None or found.sentence_rows is None:
        return []
    of_rows = found.passage_rows.at(rows)
    lo, hi = found.passage_rows.sent_lo[of_rows], found.passage_rows.sent_hi[of_rows]
    sents = spans(lo, hi)
    at = np.searchsorted(found.sentences, sents)  # where the candidates' arrays hold them
    vecs, n = found.sentence_rows.vectors[at], len(sents)

    def padded(x: np.ndarray) -> np.ndarray:
        return np.concatenate([x, np.zeros(MAX_WINDOW)])

    cos = padded(found.sentence_cos[at])
    self_dot = padded(np.einsum("ij,ij->i", vecs, vecs))
    near = {g: padded(np.einsum("ij,ij->i", vecs[:-g], vecs[g:])) for g in range(1, MAX_WINDOW)}
    has, marks = found.sentence_has[at], _marks(index, found, of_rows, hi - lo, at)
    counts = np.vstack([np.zeros((1, has.shape[1])), np.cumsum(has, axis=0)])
    ends = np.repeat(np.cumsum(hi - lo), hi - lo)  # one past each sentence's passage's last
    first = np.arange(n)
    dot = np.zeros(n)  # q . s of the window of the current size starting at each sentence
    norm2 = np.zeros(n)  # |s|^2 of the same windows
    starts, sizes, scores = [], [], []
    for size in range(1, MAX_WINDOW + 1):
        last = size - 1  # the sentence this size adds, counted from the window's first
        dot += cos[last : last + n]
        norm2 += self_dot[last : last + n]
        for g in range(1, size):  # its products with the sentences g before it
            norm2 += 2 * near[g][last - g : last - g + n]
        ok = (first + size <= ends) & _structured(marks, first, size, ends)
        i = first[ok]
        score = dot[i] / (np.sqrt(np.maximum(norm2[i], 0)) + 1e-9)
        if len(found.terms):
            score = score + WINDOW_COVER_WEIGHT * (
                ((counts[i + size] - counts[i]) > 0) @ found.weights
            )
        starts.append(i)
        sizes.append(np.full(len(i), size))
        scores.append(score - EXTRA_SENTENCE * (size - 1))
    w_start, w_size, w_score = (np.concatenate(x) for x in (starts, sizes, scores))
    owner = np.repeat(np.arange(len(rows)), hi - lo)[w_start]  # the passage of each window
    # Best window per passage: sort by passage, then score descending, then earliest and
    # shortest (a tie goes to those); each passage's first window is its best.
    order = np.lexsort((w_size, w_start, -w_score, owner))
    best = order[np.searchsorted(owner[order], np.arange(len(rows)))]
    return [
        Window(int(sents[w_start[k]]), int(sents[w_start[k]]) + int(w_size[k]), float(w_score[k]))
        for k in best
    ]


class _Marks(NamedTuple):
    """What quoting must know of each sentence of the candidates, in `_best_windows`' order:
    how many of the sentences before it are code (`code[i + n] - code[i]`: code among
    sentences i..i+n-1), and whether it is a lead-in."""

    code: np.ndarray  # running count, one longer than the sentences
    lead: np.ndarray  # bool, padded by MAX_WINDOW


def _marks(index, found: Retrieval, of_rows, sizes: np.ndarray, at) -> _Marks:
    """The `_Marks` of the sentences of the passages at `of_rows` in the retrieval's passages
    (`sizes` sentences each; `at`: where their sentences are in its sentences), from their
    documents' stored block kinds (none in an index made before kinds were stored: prose)."""
    passages, sentences = found.passage_rows, found.sentence_rows
    if passages is None or sentences is None:  # `_best_windows` asks only when both are known
        return _Marks(np.zeros(len(at) + 1), np.zeros(len(at) + MAX_WINDOW, dtype=bool))
    start, end = sentences.start[at], sentences.end[at]
    code = np.zeros(len(at), dtype=bool)
    lead = np.zeros(len(at) + MAX_WINDOW, dtype=bool)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    for p, row in enumerate(of_rows):
        blocks = index.documents[passages.doc[row]].blocks()
        if not blocks:
            continue
        b_start, b_end = np.array([b[0] for b in blocks]), np.array([b[1] for b in blocks])
        b_kind = np.array([b[2] for b in blocks])
        mine = slice(bounds[p], bounds[p + 1])
        k = np.maximum(np.searchsorted(b_start, start[mine], side="right") - 1, 0)
        inside = (b_start[k] <= start[mine]) & (start[mine] < b_end[k])
        code[mine] = inside & (b_kind[k] == CODE)
        lead[mine] = inside & (b_kind[k] == LEAD_IN) & (end[mine] == b_end[k])
    return _Marks(np.concatenate([[0], np.cumsum(code)]), lead)


def _structured(marks: _Marks, first: np.ndarray, size: int, ends: np.ndarray) -> np.ndarray:
    """Which windows of `size` sentences from each of `first` respect the document's
    structure: code is never mixed with prose, except a lead-in followed by the code it
    introduces; and a lead-in never ends a window when what it introduces follows it in the
    passage (split keeps the two in one passage when they fit in it), so the two are quoted,
    and scored, together."""
    n = len(first)
    code = marks.code[np.minimum(first + size, n)] - marks.code[first]
    led = marks.lead[first]
    mixed = (code > 0) & (code < size) & ~(led & (code == size - 1))
    dangling = marks.lead[first + size - 1] & (first + size < ends)
    return ~mixed & ~dangling


def retrieve(
    question: str,
    index: Store,
    embedder: Embedder,
    settings: Settings,
    filters: Filters | None = None,
) -> Retrieval:
    """Rank passages for `question` by dense and lexical evidence together.

    Candidates are the nearest passages by embedding and the best by BM25. Each is scored on
    absolute scales, so no per-query normalisation (z-scores, min-max) can blow up the noise of
    a flat score distribution, as it does for long questions:
      passage cosine
      + COVER_WEIGHT (0.4) x weighted share (`Lexical.query`) of the question's terms in the
        passage and in its best sentence
      + w x best sentence cosine, w = min(1, 10 / content terms): a short, specific question is
        usually answered by one sentence, a long descriptive one by a passage as a whole
      + BM25_WEIGHT (0.1) x BM25 relative to the best candidate's
      + DOCUMENT_WEIGHT (0.2) x the cosine of the passage's document vector (its title and text
        start, `index/documents.py`), where the store has them: an answer is often a whole
        document about one problem, not its best passage alone.
    A question longer than the model reads is embedded in pieces (`embed_question`); its
    lexical terms are all its words.
    See docs/design.md for the measurements behind each term.

    Args:
        filters: only the passages of the documents they match count (see `Filters`).

    Raises:
        InvalidFilter: a filter names unknown documents or holds a malformed date.
    """
    began = time.perf_counter()
    text = clean_question(question, settings)
    allowed = index.allow(filters) if filters else None  # bad filters fail before encoding
    vector = embed_question(text, embedder)
    return _rank(text, vector, index, allowed, None, began)


def retrieve_by_vector(
    question: str,
    vector: np.ndarray,
    index: Store,
    settings: Settings,
    exclude: int | None = None,
) -> Retrieval:
    """`retrieve` for a question whose embedding is already known.

    Calibration asks the corpus's own sentences, embedded at ingest, each with its own passage
    row left out (`exclude`) so that other text must answer it.
    """
    began = time.perf_counter()
    return _rank(clean_question(question, settings), vector, index, None, exclude, began)


def _rank(text: str, qvec: np.ndarray, index: Store, allowed, exclude, began: float) -> Retrieval:
    """The store's candidates (`Store.candidates`: the CANDIDATES nearest passages by embedding
    and the CANDIDATES best by BM25, of the `allowed` ones only when a filter gives them),
    fused and ordered."""
    terms, weights = index.query_terms(text)
    candidates = index.candidates(qvec, terms, CANDIDATES, allowed, exclude)
    rows = candidates.passages.rows
    found = Retrieval(
        question=text,
        vector=qvec,
        terms=terms,
        weights=weights,
        rows=rows,
        scores=np.zeros(0, dtype=np.float32),
        best_passage=0.0,
        best_sentence=0.0,
        specific=1.0,
        began=began,
        sentences=rows,
        sentence_cos=np.zeros(0, dtype=np.float32),
        sentence_has=np.zeros((0, len(terms)), dtype=bool),
        filtered_out=allowed is not None and not allowed.any(),
        passage_rows=candidates.passages,
    )
    return _fuse(found, index, candidates) if len(rows) else found


def _fuse(found: Retrieval, index: Store, candidates: Candidates) -> Retrieval:
    """Score the candidate passages (see `retrieve`) and order them, best first."""
    rows, qvec, terms, weights = found.rows, found.vector, found.terms, found.weights
    dense = candidates.dense
    passage_cover = candidates.cover @ weights if terms else 0.0
    passages = candidates.passages
    lo, hi = passages.sent_lo, passages.sent_hi
    sentences = index.sentences(passages, terms)
    sents = sentences.rows
    starts = np.concatenate([[0], np.cumsum(hi - lo)[:-1]])
    sent_cos = sentences.vectors @ qvec
    best_sent = np.maximum.reduceat(sent_cos, starts)
    has = sentences.has  # sents ascend, as the candidates do
    best_cover = np.maximum.reduceat(has @ weights, starts) if terms else 0.0
    specific = specificity(len(terms))
    lex = candidates.bm25
    bm25 = lex / lex.max() if lex.max() > 0 else np.zeros(len(rows))
    fused = (
        dense
        + COVER_WEIGHT * (passage_cover + best_cover)
        + specific * best_sent
        + BM25_WEIGHT * bm25
    )
    if candidates.document is not None:
        fused = fused + DOCUMENT_WEIGHT * candidates.document
    order = np.argsort(-fused, kind="stable")
    return replace(
        found,
        rows=rows[order],
        scores=fused[order],
        best_passage=float(dense.max()),
        best_sentence=float(best_sent.max()),
        specific=specific,
        sentences=sents,
        sentence_cos=sent_cos,
        sentence_has=has,
        sentence_rows=sentences,
    )


def compose(found: Retrieval, index, settings: Settings, k: int | None = None) -> Answer:
    """Choose the quotes for a retrieval, or abstain when the evidence is weak."""
    k = k or settings.default_k
    rows = found.rows[
        : max(CANDIDATES_PER_QUOTE * k, QUOTE_CANDIDATES)
    ]  # the first quotes do not depend on k
    windows = _best_windows(found, index, rows)
    candidates = [
        _Candidate(int(row), float(score), (w.lo, w.hi))
        for row, score, w in zip(rows, found.scores, windows, strict=False)
    ]
    threshold = settings.min_score
    if threshold is None:
        calibrated = index.thresholds
        threshold = (
            blend(calibrated.passage, calibrated.sentence, found.specific)
            if calibrated
            else DEFAULT_THRESHOLD
        )
    evidence = found.evidence
    quotes = _select(index, candidates, k, found.passage_rows, found.sentence_rows)
    abstained = evidence < threshold or not quotes
    reason = None
    near: list[Quote] = []
    if found.filtered_out:
        reason = "No document matches these filters; widen or remove them."
    elif abstained:
        reason = (
            "These documents don't address that: the best match's similarity to the "
            f"question is {evidence:.2f}, below this index's threshold of {threshold:.2f}."
        )
        near, quotes = quotes[:NEAR_MISSES], []
    return Answer(
        question=found.question,
        quotes=quotes,
        abstained=abstained,
        reason=reason,
        near_misses=near,
        threshold=float(threshold),
        timing_ms=(time.perf_counter() - found.began) * 1000,
        generation=index.generation,
        collection=index.collection,
    )


def answer(
    question: str,
    index,
    embedder,
    settings: Settings,
    k: int | None = None,
    filters: Filters | None = None,
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


DUPLICATE = 0.97  # passage cosine above which two passages are the same text, repeated


ASKS = ("?", "!")  # a sentence ending so asks or exclaims: it restates a problem, answers none
CLOSERS = " \"'\u201d\u2019)]"  # closing quotes and brackets after a sentence's last mark


def only_asks(sentences: list[str]) -> bool:
    """Whether every one of a quote's sentences is a question or an exclamation.

    Such a quote restates a problem ("You want your partner to go to therapy and they won't
    go!") or asks one back; it echoes the question's words, and so its embedding, without
    answering it. A document is therefore never led by one when it has another passage.
    """
    return all(s.rstrip(CLOSERS).endswith(ASKS) for s in sentences)


def _shown_order(
    docs: list[str],
    asks: Callable[[int], bool] | None = None,
    navigation: Callable[[str], bool] | None = None,
) -> Iterator[int]:
    """Positions in `docs` (best first, as retrieval ranked them) in the order quotes are shown:
    each document's lead passage first, in retrieval order, then the other passages; and all
    that for the content documents before the navigation pages (`navigation(doc)`: contents,
    indexes), which point to the pages that answer and so never lead, but still answer when
    nothing else does.

    So the documents appear in retrieval's order (quoting never ranks a relevant document
    below where retrieval had it) and every source gets a say before any is quoted twice. A
    document's lead is its best passage whose quote does not only ask or exclaim
    (`asks(position)`, asked lazily, best first), else its best passage. Lazy: a caller that
    stops after k quotes checks only the documents it reached.
    """
    pages = {doc: bool(navigation and navigation(doc)) for doc in docs}
    content = [i for i, doc in enumerate(docs) if not pages[doc]]
    yield from _leads_first(docs, content, asks)
    yield from _leads_first(docs, [i for i, doc in enumerate(docs) if pages[doc]], asks)


def _leads_first(
    docs: list[str], positions: list[int], asks: Callable[[int], bool] | None
) -> Iterator[int]:
    """`positions` (ascending) with each document's lead first (see `_shown_order`)."""
    by_doc: dict[str, list[int]] = {}
    for i in positions:
        by_doc.setdefault(docs[i], []).append(i)
    lead: set[int] = set()
    for mine in by_doc.values():
        first = next((i for i in mine if not asks(i)), mine[0]) if asks else mine[0]
        lead.add(first)
        yield first
    yield from (i for i in positions if i not in lead)


def _select(
    index: Store,
    candidates: list[_Candidate],
    k: int,
    passages: PassageRows | None = None,
    sentences: SentenceRows | None = None,
) -> list[Quote]:
    """Pick up to `k` quotes, in the order of `_shown_order`.

    A reader's letter is never quoted as an answer, and a document is led by a quote that does
    more than ask or exclaim (`only_asks`) where it has one. Near-duplicate passages (the same
    answer syndicated or repeated) collapse into one quote listing the other sources.

    Args:
        passages, sentences: the candidates' passages and sentences as the store gave them
            for the retrieval (read from `index` when not given).
    """
    if passages is None or sentences is None:
        passages = index.passages(np.unique([c.row for c in candidates]).astype(np.int64))
        sentences = index.sentences(passages, [])
    asked = np.fromiter((c.row for c in candidates), np.int64, len(candidates))
    every = passages.at(asked).tolist()
    keep = [j for j, a in enumerate(every) if passages.role[a] != "letter"]
    quotable, at = [candidates[j] for j in keep], [every[j] for j in keep]
    if not quotable:
        return []
    vecs = passages.vectors[at]
    similar = vecs @ vecs.T  # passage cosine between candidates, by position in `quotable`
    # Sentence row + first[passage] = its position in `sentences` (contiguous, by passage).
    first = (np.cumsum(passages.sent_hi - passages.sent_lo) - passages.sent_hi).tolist()
    chosen: list[tuple[int, Quote, str]] = []  # position in `quotable`, quote, its words

    def asks(i: int) -> bool:
        text, lo = index.text(passages.doc[at[i]]), first[at[i]]
        window = range(quotable[i].window[0] + lo, quotable[i].window[1] + lo)
        return only_asks([text[int(sentences.start[j]) : int(sentences.end[j])] for j in window])

    def navigation(doc: str) -> bool:
        return index.documents[doc].navigation()

    for i in _shown_order([passages.doc[a] for a in at], asks, navigation):
        if len(chosen) == k:
            break
        c, a = quotable[i], at[i]
        lo, hi = c.window[0] + first[a], c.window[1] - 1 + first[a]  # positions in `sentences`
        quote = _quote(index, c, passages, a, (int(sentences.start[lo]), int(sentences.end[hi])))
        words = " ".join(quote.text.lower().split())
        twin = next(
            (
                existing
                for j, existing, seen in chosen
                if similar[i, j] > DUPLICATE or seen == words
            ),
            None,
        )
        if twin is None:
            chosen.append((i, quote, words))
        elif quote.doc_id != twin.doc_id and quote.doc_id not in twin.also_in:
            twin.also_in.append(quote.doc_id)
    return [q for _, q, _ in chosen]


# A lead-in quoted with a list, a table or a definition list goes on to the end of it when the
# whole is at most LEAD_IN_CHARS (and inside its passage): "Install these packages:" is
# answered by all the packages; at most about ten lines, read at a glance.
LEAD_IN_CHARS = 900
LISTS = frozenset({ITEM, ROW, TERM, DEFINITION})


def _structure(
    blocks: tuple[tuple[int, int, str], ...], span: tuple[int, int], limit: int
) -> tuple[int, int, str, int]:
    """The quote `span` with its kind and lead-in length (see `Quote.kind`). A quote that
    stops in a lead-in paragraph before its last sentence goes on to the end of the block the
    paragraph introduces, and a lead-in quoted with a list goes on to the list's end; both
    within LEAD_IN_CHARS and not past `limit` (the passage's end)."""
    start, end = span
    k = bisect.bisect_right(blocks, start, key=lambda b: b[0]) - 1
    if k < 0 or not blocks[k][0] <= start < blocks[k][1]:
        return start, end, PROSE, 0
    kind = blocks[k][2]
    if kind != LEAD_IN:
        return start, end, kind, 0
    after = blocks[k + 1] if k + 1 < len(blocks) else None
    if after is None or after[2] == LEAD_IN or after[0] != blocks[k][1] + 2:
        return start, end, PROSE, 0  # what it introduces is prose, or it is a lead-in too
    if after[0] >= end:  # the quote stops in the paragraph that leads in: it goes on to the block
        if after[1] > limit or after[1] - start > LEAD_IN_CHARS:
            return start, end, PROSE, 0
        end = after[1]
    lead_in, kind = after[0] - start, after[2]
    for b_start, b_end, b_kind in blocks[k + 1 :] if kind in LISTS else ():
        if b_start > end + 2 or b_kind not in LISTS or b_end > limit:
            break
        if b_end - start > LEAD_IN_CHARS:
            break
        end = max(end, b_end)
    return start, end, kind, lead_in


def _quote(
    index: Store, c: _Candidate, passages: PassageRows, at: int, span: tuple[int, int]
) -> Quote:
    """The quote of candidate `c`, whose passage is at `at` in `passages`; `span` is its
    window's [start, end) in the document's text."""
    doc_id = passages.doc[at]
    doc = index.documents[doc_id]
    text = index.text(doc_id)
    end_of_passage = int(passages.end[at])
    start, end, kind, lead_in = _structure(doc.blocks(), span, end_of_passage)
    body = text[start:end]
    heading = passages.heading[at]
    pages = doc.pages()
    page = bisect.bisect_right(pages, start) if pages else None
    return Quote(
        text=body,
        doc_id=doc_id,
        title=doc.title,
        author=doc.author,
        date=doc.date,
        url=doc.url,
        site=doc.site,
        section=heading or doc.metadata().get("section") or "",
        role=passages.role[at],
        passage_id=passages.ids[at],
        passage_start=int(passages.start[at]),
        passage_end=int(passages.end[at]),
        start=start,
        end=end,
        content_hash=doc.content_hash,
        score=round(c.score, 4),
        link=text_fragment_link(doc.url, body, page),
        page=page,
        kind=kind,
        lead_in=lead_in,
        collection=index.collection,
    )
