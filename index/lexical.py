"""BM25 over passages (bm25s), with English stemming and stop words.

Besides BM25 scores it answers "which of these texts contain which of these terms" and each
term's IDF, so callers can measure how much of a question's information a passage or a single
sentence covers. For that it keeps the index's matrix transposed as well: each text's term ids
(`terms.npy`, `terms-ptr.npy`), so the answer costs the length of the texts asked about, not of
the terms' postings.
"""

from __future__ import annotations

import functools
import json
import math
import os
import queue
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from scipy.sparse._sparsetools import csc_matvec  # y += A @ x, A one column

from verbatim.arrays import spans
from verbatim.index.vectors import HEADER_BYTES, write_header

EMPTY = "empty.json"  # marks an index of texts without a single indexable term
SPLIT = re.compile(r"(?u)\b\w\w+\b").findall  # bm25s.tokenize's own pattern
TERMS, TERMS_PTR = "terms.npy", "terms-ptr.npy"  # text i's term ids: terms[ptr[i]:ptr[i + 1]]
# Above this many texts `best` ranks only the texts at or above a floor the top must reach:
# ranking a million scores (argpartition) costs 4.5 ms, finding those above the floor 1 ms.
FLOOR_ABOVE = 50_000


def _by_text(indptr: np.ndarray, indices: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The term-by-text matrix (postings: `indptr` by term, `indices` = text rows) transposed:
    each text's term ids, ascending, and where each text's run starts."""
    term = np.repeat(np.arange(len(indptr) - 1, dtype=np.int32), np.diff(indptr))
    terms = term[np.argsort(indices, kind="stable")]
    ptr = np.concatenate([[0], np.cumsum(np.bincount(indices, minlength=size))])
    return terms, ptr.astype(np.int64)


@functools.cache
def _english() -> dict[str, float]:
    from wordfreq import get_frequency_dict

    return get_frequency_dict("en")


def information(word: str) -> float:
    """How much `word` says in general English: -log10 of its frequency there (wordfreq's
    counts), about 1.3 for "the", 6.3 for "normans" and at most 9, for a word it never saw."""
    return -math.log10(max(_english().get(word, 0.0), 1e-9))


def stemmer():
    import Stemmer

    return Stemmer.Stemmer("english").stemWords


class Lexical:
    """A bm25s index over a list of texts; saved as plain `.npy`/JSON files."""

    def __init__(self, retriever, size: int, by_text=None) -> None:
        self.retriever = retriever  # None when no text has a single indexable term
        self.size = size
        self._stem = stemmer()
        from bm25s.stopwords import STOPWORDS_EN

        self._stopwords = frozenset(STOPWORDS_EN)
        empty = {"indptr": np.zeros(1, dtype=np.int64), "indices": np.zeros(0, dtype=np.int32)}
        scores = retriever.scores if retriever else empty
        indptr = np.asarray(scores["indptr"], dtype=np.int64)
        if retriever:  # plain views of bm25s's memory maps: slicing a np.memmap costs ~5 µs
            for key in ("data", "indices", "indptr"):
                retriever.scores[key] = np.asarray(retriever.scores[key])
        indices = np.asarray(scores["indices"])
        terms_ptr = by_text or _by_text(indptr, indices, size)
        self._text_terms: np.ndarray = terms_ptr[0]
        self._text_ptr: np.ndarray = terms_ptr[1]
        self._indptr = indptr
        df = np.diff(indptr).astype(np.float64)
        self._idf = np.log1p((self.size - df + 0.5) / (df + 0.5))
        self._vocab = retriever.vocab_dict if retriever else {}
        self._tables: queue.SimpleQueue = queue.SimpleQueue()  # idle lookup tables of `contains`

    @classmethod
    def build(cls, texts: Iterable[str]) -> Lexical:
        """Index `texts`, read once: an ingest passes a generator, so that its millions of
        sentences are never all held as strings beside their token lists."""
        import bm25s

        tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer(), show_progress=False)
        size = len(tokens.ids)
        if not tokens.vocab:
            return cls(None, size)
        retriever = bm25s.BM25()
        retriever.index(tokens, show_progress=False)
        del tokens  # a list of term ids per text, no longer needed once indexed
        return cls(retriever, size)

    @classmethod
    def load(cls, path: Path) -> Lexical:
        import bm25s

        empty = path / EMPTY
        if empty.exists():
            return cls(None, int(json.loads(empty.read_text())["size"]))
        retriever = bm25s.BM25.load(str(path), allow_pickle=False, show_progress=False, mmap=True)
        by_text = None  # indexes written before the transposed matrix get it computed here
        if (path / TERMS).exists():
            by_text = tuple(
                np.asarray(np.load(path / name, mmap_mode="r", allow_pickle=False))
                for name in (TERMS, TERMS_PTR)
            )
        return cls(retriever, int(retriever.scores["num_docs"]), by_text)

    def save(self, path: Path) -> None:
        if self.retriever is None:
            path.mkdir(parents=True, exist_ok=True)
            (path / EMPTY).write_text(json.dumps({"size": self.size}))
        else:
            self.retriever.save(str(path), allow_pickle=False, show_progress=False)
            np.save(path / TERMS, self._text_terms, allow_pickle=False)
            np.save(path / TERMS_PTR, self._text_ptr, allow_pickle=False)

    def tokenize(self, text: str) -> list[str]:
        """Stemmed terms of `text`, stop words dropped: the analysis `build` gives bm25s, done
        directly, as a question is one short text (bm25s.tokenize sets up progress bars and a
        vocabulary for each call, which costs more than the analysis itself)."""
        return self._stem(self._words(text))

    def _words(self, text: str) -> list[str]:
        return [t for t in SPLIT(text.lower()) if t not in self._stopwords]

    def _written(self, text: str) -> dict[str, str]:
        """Each distinct indexed term of `text`, in order of first use, with its first word."""
        words = self._words(text)
        written: dict[str, str] = {}
        for term, word in zip(self._stem(words), words, strict=True):
            if term in self._vocab:
                written.setdefault(term, word)
        return written

    def query(self, text: str) -> tuple[list[str], np.ndarray]:
        """The distinct indexed terms of `text`, in order of first use, and how much each says,
        as shares summing to 1.

        A term's weight is its IDF in these texts times the information of its word (as
        written in `text`) in general English. IDF alone misjudges a small or one-topic corpus:
        it overrates words that happen to be rare here but are common anywhere ("long",
        "bring" among articles on therapy) and underrates the topic's own names ("Normans" in
        an article about them). Both are estimates of how specific a word is; their product
        keeps the words that are specific in both senses.
        """
        written = self._written(text)
        weights = np.array(
            [self.idf(t) * information(w) for t, w in written.items()], dtype=np.float64
        )
        return list(written), weights / weights.sum() if weights.sum() > 0 else weights

    def idf(self, term: str) -> float:
        """Inverse document frequency (BM25's form); 0 for a term the index never saw."""
        tid = self._vocab.get(term)
        return 0.0 if tid is None else float(self._idf[tid])

    def frequency(self, term: str, uncounted: np.ndarray | None = None) -> int:
        """How many texts hold `term` (0 for a term the index never saw), less its count in
        `uncounted` (by term id, `counts`): the texts a delta masks."""
        tid = self._vocab.get(term)
        if tid is None or tid + 1 >= len(self._indptr):  # bm25s's "" token has no postings
            return 0
        held = int(self._indptr[tid + 1] - self._indptr[tid])
        return held - (int(uncounted[tid]) if uncounted is not None else 0)

    def counts(self, rows: np.ndarray) -> np.ndarray:
        """How many of the texts at `rows` hold each term, by term id."""
        rows = np.asarray(rows, dtype=np.int64)
        ids = self._text_terms[spans(self._text_ptr[rows], self._text_ptr[rows + 1])]
        return np.bincount(ids, minlength=len(self._idf))

    def reweigh(self, idf: np.ndarray) -> None:
        """Score with `idf` (by term id, `vocabulary` order) in place of this index's own: a
        delta segment's texts scored with the document frequencies of its whole generation
        (`segments.Segmented`). Each weight is its term's IDF times a factor that does not
        depend on it (bm25s's "lucene" BM25), so scaling each term's postings is exact."""
        if self.retriever is None:
            return
        postings = self.retriever.scores
        idf = np.asarray(idf, dtype=np.float64)[: len(self._idf)]
        scale = np.repeat(idf / self._idf, np.diff(self._indptr)).astype(postings["data"].dtype)
        postings["data"] = np.asarray(postings["data"]) * scale
        self._idf = idf

    def contains(self, terms: list[str], rows: np.ndarray) -> np.ndarray:
        """Boolean matrix (len(rows), len(terms)): whether each text holds each (distinct) term.

        Reads the texts' own term ids (the transposed matrix) in one vectorised pass, each id
        looked up in a table from term id to column (-1: not asked). Tables are kept between
        calls, reset after each, one per call running at the same time.
        """
        out = np.zeros((len(rows), len(terms)), dtype=bool)
        wanted = np.array([self._vocab.get(t, -1) for t in terms], dtype=np.int64)
        known = np.flatnonzero(wanted >= 0)
        if not len(rows) or not len(known):
            return out
        rows = np.asarray(rows, dtype=np.int64)
        lo, hi = self._text_ptr[rows], self._text_ptr[rows + 1]
        ids = self._text_terms[spans(lo, hi)]
        try:
            column = self._tables.get_nowait()
        except queue.Empty:  # int32: a question may have more terms than int16 counts
            column = np.full(len(self._idf), -1, dtype=np.int32)
        asked = wanted[known]  # the term ids of the columns in `known`
        try:
            column[asked] = known
            at = column[ids]
        finally:
            column[asked] = -1
            self._tables.put(column)
        hit = np.flatnonzero(at >= 0)
        owner = np.searchsorted(np.cumsum(hi - lo), hit, side="right")  # the text of each id
        out[owner, at[hit]] = True
        return out

    def vocabulary(self) -> tuple[list[str], np.ndarray]:
        """Every indexed term in id order, and each one's IDF: what `query` needs, for a store
        that holds the index elsewhere (Qdrant)."""
        terms = [""] * len(self._vocab)
        for term, tid in self._vocab.items():
            terms[tid] = term
        return terms, self._idf

    def weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """bm25s's own term weights by text: text i holds term ids `ids[ptr[i]:ptr[i + 1]]`
        (ascending) with BM25 weights `values[...]`, so that a text's BM25 for a query is the
        sum of its weights of the query's terms, exactly as `scores` computes it."""
        if self.retriever is None:
            return self._text_ptr, self._text_terms, np.zeros(0, dtype=np.float32)
        data = self.retriever.scores
        indptr = np.asarray(data["indptr"], dtype=np.int64)
        term = np.repeat(np.arange(len(indptr) - 1, dtype=np.int32), np.diff(indptr))
        order = np.lexsort((term, np.asarray(data["indices"])))
        return self._text_ptr, term[order], np.asarray(data["data"])[order]

    def scores(self, terms: list[str]) -> np.ndarray:
        """BM25 score of every text for the query `terms` (see `query()`), by row.

        The sum bm25s's `get_scores` computes, term by term in the same order, so the same
        floats; but each term's postings are added by scipy's compiled sparse loop (a one-column
        `csc_matvec` over views of the postings) instead of `np.add.at`: 7.4 ms instead of 17.7
        for the 5.8M postings of a CounselChat question at a million passages (docs/design.md).
        """
        if self.retriever is None:
            return np.zeros(self.size, dtype=np.float32)
        postings = self.retriever.scores
        data, indices = postings["data"], postings["indices"]
        out = np.zeros(self.size, dtype=data.dtype)
        ids = self._ids(terms)
        one = np.ones(1, dtype=data.dtype)
        for t in ids:
            lo, hi = self._indptr[t], self._indptr[t + 1]
            column = np.array([0, hi - lo], dtype=indices.dtype)
            csc_matvec(self.size, 1, column, indices[lo:hi], data[lo:hi], one, out)
        if self.retriever.nonoccurrence_array is not None:  # BM25L and BM25+, not ours
            out += self.retriever.nonoccurrence_array[ids].sum()
        return out

    def _ids(self, terms: list[str]) -> list[int]:
        """The term ids of `terms` the index knows, in their order."""
        return [self._vocab[t] for t in terms if t in self._vocab]

    def best(
        self, terms: list[str], n: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every text's BM25 for `terms` (0 for texts not `allowed`, a boolean mask by row), and
        the rows of the `n` best of them that score above 0."""
        scores = self.scores(terms)
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0)
        if len(scores) > FLOOR_ABOVE:
            rows = np.flatnonzero(scores >= self._floor(scores, terms, n))
        else:
            rows = np.arange(len(scores))
        if n < len(rows):
            rows = rows[np.argpartition(-scores[rows], n - 1)[:n]]
        return rows[scores[rows] > 0], scores

    def _floor(self, scores: np.ndarray, terms: list[str], n: int) -> float:
        """A score the `n`-th best text reaches: the `n`-th best among the texts holding the
        question's rarest term that `n` texts hold (0 if none does)."""
        indptr = self._indptr
        held = [(indptr[t + 1] - indptr[t], t) for t in self._ids(terms)]
        held = [(df, t) for df, t in held if df >= n]
        if not held:
            return 0.0
        _, term = min(held)
        texts = self.retriever.scores["indices"][indptr[term] : indptr[term + 1]]
        return float(np.partition(scores[texts], len(texts) - n)[len(texts) - n])


# `LexicalWriter.finish` turns the texts' term ids into bm25s's matrix by term, a range of
# terms at a time holding at most this many postings (4M: about 200 MB while they are scored).
FINISH_POSTINGS = 1 << 22
READ_TEXTS = 1 << 16  # texts whose (term, count) pairs are read from the scratch files at a time
TF, LENGTHS, VOCAB = ".tf", ".lengths", ".vocab.jsonl"  # scratch files, removed by `finish`


class LexicalWriter:
    """What `Lexical.build(texts).save(path)` writes, for texts that come in batches (`add`), in
    memory that does not grow with their number.

    Each text's distinct term ids (ascending: `terms.npy`, which the index keeps anyway) go to
    disk as they come, with their counts, the text's length and each new term; document
    frequencies are counted on the way. `finish` then writes bm25s's score matrix from those
    files a range of terms at a time: the floats bm25s computes, in its own file format
    (tests/test_stream_lexical.py compares them). Term ids are numbered in order of first use
    (bm25s numbers them in the order of a Python set, which changes from run to run; nothing
    depends on the numbering). `state()` flushes what was added and says how much, so that a
    writer opened again with it (after a crash) goes on from there.
    """

    def __init__(self, path: Path, state: dict | None = None) -> None:
        from bm25s.stopwords import STOPWORDS_EN

        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._stem = stemmer()
        self._word: dict[str, int] = dict.fromkeys(STOPWORDS_EN, -1)  # -1: a stop word
        self._term: dict[str, int] = {}  # stemmed term -> its id
        self._df = np.zeros(0, dtype=np.int64)
        self.texts = self.pairs = self.tokens = 0
        state = state or {}
        resume = bool(state) and (path / TERMS).exists()
        texts, pairs = (state["texts"], state["pairs"]) if resume else (0, 0)
        self._terms = _scratch(path / TERMS, HEADER_BYTES + 4 * pairs, resume)
        self._ptr = _scratch(path / TERMS_PTR, HEADER_BYTES + 8 * (texts + 1), resume)
        self._tf = _scratch(path / TF, 4 * pairs, resume)
        self._lengths = _scratch(path / LENGTHS, 4 * texts, resume)
        self._vocab = _scratch(path / VOCAB, state.get("vocab_bytes", 0) if resume else 0, resume)
        if resume:
            self._reload(texts, pairs)
        else:
            (path / EMPTY).unlink(missing_ok=True)  # left by an earlier try, now overwritten
            write_header(self._terms, np.dtype(np.int32), (0,))
            write_header(self._ptr, np.dtype(np.int64), (0,))
            self._ptr.write(np.zeros(1, dtype=np.int64).data)

    def _reload(self, texts: int, pairs: int) -> None:
        """The vocabulary, frequencies and counts of the texts already on disk."""
        self._vocab.seek(0)
        for line in self._vocab.read().decode("utf-8").splitlines():
            self._term[json.loads(line)] = len(self._term)
        self._df = np.zeros(len(self._term), dtype=np.int64)
        for at in range(0, pairs, FINISH_POSTINGS):
            ids = _read(
                self.path / TERMS, np.int32, HEADER_BYTES, at, min(pairs, at + FINISH_POSTINGS)
            )
            self._df += np.bincount(ids, minlength=len(self._df))
        self.tokens = int(_read(self.path / LENGTHS, np.int32, 0, 0, texts).sum(dtype=np.int64))
        self.texts, self.pairs = texts, pairs

    def _new(self, word: str) -> int:
        """The term id of a word not seen before (a new term if its stem is new too)."""
        stem = self._stem([word])[0]
        tid = self._term.get(stem)
        if tid is None:
            tid = self._term[stem] = len(self._term)
            self._vocab.write((json.dumps(stem) + "\n").encode("utf-8"))
        self._word[word] = tid
        return tid

    def add(self, texts: Iterable[str]) -> None:
        """Index `texts` as the next rows: the analysis of `Lexical.build` (bm25s's tokenizer)."""
        lengths: list[int] = []
        ids: list[int] = []
        get = self._word.get
        for text in texts:
            words = SPLIT(text.lower())
            found = [get(w, -2) for w in words]
            if -2 in found:  # new words: give them ids, then look them all up again
                for word in {w for w, i in zip(words, found, strict=True) if i == -2}:
                    self._new(word)
                found = [get(w, -1) for w in words]
            kept = [i for i in found if i >= 0]
            lengths.append(len(kept))
            ids.extend(kept)
        self._write(np.array(lengths, dtype=np.int64), np.array(ids, dtype=np.int64))

    def _write(self, lengths: np.ndarray, ids: np.ndarray) -> None:
        """Each text's distinct terms, ascending, with their counts; the frequencies counted."""
        owner = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        pairs, tf = np.unique((owner << 32) | ids, return_counts=True)
        terms = (pairs & 0xFFFFFFFF).astype(np.int32)
        ends = self.pairs + np.cumsum(np.bincount(pairs >> 32, minlength=len(lengths)))
        self._terms.write(terms.data)
        self._tf.write(tf.astype(np.int32).data)
        self._lengths.write(lengths.astype(np.int32).data)
        self._ptr.write(ends.astype(np.int64).data)
        if len(self._df) < len(self._term):
            self._df = np.concatenate(
                [self._df, np.zeros(len(self._term) - len(self._df), np.int64)]
            )
        self._df += np.bincount(terms, minlength=len(self._df))
        self.texts += len(lengths)
        self.pairs += len(terms)
        self.tokens += int(lengths.sum())

    def state(self) -> dict:
        """Flush what was added to the disk and say how much it was (for `LexicalWriter(path,
        state)` after a crash)."""
        for fh in (self._terms, self._ptr, self._tf, self._lengths, self._vocab):
            fh.flush()
            os.fsync(fh.fileno())
        return {"texts": self.texts, "pairs": self.pairs, "vocab_bytes": self._vocab.tell()}

    def finish(self) -> None:
        """Write the index's files (those of `Lexical.save`) and remove the scratch files."""
        self.state()
        for fh in (self._terms, self._ptr, self._tf, self._lengths, self._vocab):
            fh.seek(0, os.SEEK_END)
        self._terms.seek(0)
        write_header(self._terms, np.dtype(np.int32), (self.pairs,))
        self._ptr.seek(0)
        write_header(self._ptr, np.dtype(np.int64), (self.texts + 1,))
        for fh in (self._terms, self._ptr, self._tf, self._lengths, self._vocab):
            fh.close()
        if self._term:
            self._postings()
            self._describe()
        else:  # no indexable term in any text: what `Lexical.save` writes for it
            for name in (TERMS, TERMS_PTR):
                (self.path / name).unlink()
            (self.path / EMPTY).write_text(json.dumps({"size": self.texts}))
        for name in (TF, LENGTHS, VOCAB):
            (self.path / name).unlink()

    def _describe(self) -> None:
        """bm25s's vocabulary (with its empty term) and parameters files."""
        import bm25s

        vocab = dict(self._term)
        vocab.setdefault("", len(vocab))  # bm25s's `create_empty_token`
        (self.path / "vocab.index.json").write_text(
            json.dumps(vocab, ensure_ascii=False), encoding="utf-8"
        )
        model = bm25s.BM25()
        params = {
            "k1": model.k1,
            "b": model.b,
            "delta": model.delta,
            "method": model.method,
            "idf_method": model.idf_method,
            "dtype": model.dtype,
            "int_dtype": model.int_dtype,
            "num_docs": self.texts,
            "version": bm25s.__version__,
            "backend": model.backend,
        }
        (self.path / "params.index.json").write_text(json.dumps(params, indent=4))

    def _postings(self) -> None:
        """data, indices and indptr by term, as bm25s's `index` makes them (its Lucene BM25, in
        its dtypes, postings of a term by text row), a range of terms at a time."""
        import bm25s

        model = bm25s.BM25()
        if model.method != "lucene" or model.idf_method != "lucene":
            raise ValueError(f"bm25s's default method is now {model.method}; update LexicalWriter")
        indptr = np.concatenate([[0], np.cumsum(self._df)]).astype(np.int64)
        np.save(self.path / "indptr.csc.index.npy", indptr, allow_pickle=False)
        n = self.texts
        idf = np.zeros(len(self._df), dtype=np.float32)
        for t, df in enumerate(self._df.tolist()):
            if df:
                idf[t] = math.log(1 + (n - df + 0.5) / (df + 0.5))
        score = _Scorer(self.path, idf, model.k1, model.b, np.float64(self.tokens) / n)
        with (
            open(self.path / "data.csc.index.npy", "wb") as data,
            open(self.path / "indices.csc.index.npy", "wb") as indices,
        ):
            write_header(data, np.dtype(np.float32), (self.pairs,))
            write_header(indices, np.dtype(np.int32), (self.pairs,))
            for lo, hi in _term_ranges(indptr, FINISH_POSTINGS):
                texts, scores = score.range(lo, hi)
                data.write(scores.data)
                indices.write(texts.data)


class _Scorer:
    """The BM25 weights of a `LexicalWriter`'s postings, read from its files by term range."""

    def __init__(self, path: Path, idf: np.ndarray, k1: float, b: float, avg: np.float64):
        self.path, self.idf, self.k1, self.b, self.avg = path, idf, k1, b, avg
        self.ptr = np.load(path / TERMS_PTR, allow_pickle=False)
        self.lengths = np.fromfile(path / LENGTHS, dtype=np.int32)

    def range(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """(text rows int32, BM25 weights float32) of terms [lo, hi), by term then text."""
        terms, texts, tfs = [], [], []
        n = len(self.ptr) - 1
        for first in range(0, n, READ_TEXTS):
            last = min(n, first + READ_TEXTS)
            a, z = int(self.ptr[first]), int(self.ptr[last])
            ids = _read(self.path / TERMS, np.int32, HEADER_BYTES, a, z)
            pick = np.flatnonzero((ids >= lo) & (ids < hi))
            ends = self.ptr[first + 1 : last + 1] - a  # each text's last pair + 1, in the chunk
            terms.append(ids[pick])
            texts.append((first + np.searchsorted(ends, pick, side="right")).astype(np.int32))
            tfs.append(_read(self.path / TF, np.int32, 0, a, z)[pick])
        term, text, tf = (np.concatenate(x) for x in (terms, texts, tfs))
        del terms, texts, tfs
        order = np.argsort(term, kind="stable")  # by term; by text within a term, as read
        term, text, tf = term[order], text[order], tf[order].astype(np.float32)
        del order
        # bm25s's `_score_tfc_lucene` and `idf * tfc`, in its order and types (float64, as a
        # float64 scalar meets float32 arrays), in place: tf / (k1 * ((1 - b) + b * l_d / avg) + tf)
        x = self.lengths[text].astype(np.float64)
        x *= self.b
        x /= self.avg
        x += 1 - self.b
        x *= self.k1
        x += tf
        np.divide(tf, x, out=x)
        x *= self.idf[term]
        return text, x.astype(np.float32)


def _term_ranges(indptr: np.ndarray, most: int) -> Iterator[tuple[int, int]]:
    """Consecutive term ranges holding at most `most` postings each (or one term, if more)."""
    lo, terms = 0, len(indptr) - 1
    while lo < terms:
        hi = int(np.searchsorted(indptr, indptr[lo] + most, side="right")) - 1
        hi = max(hi, lo + 1)
        yield lo, min(hi, terms)
        lo = hi


def _scratch(path: Path, size: int, resume: bool):
    """A file to append to: created afresh, or (resuming) cut to its first `size` bytes."""
    if not resume:
        return open(path, "w+b")  # noqa: SIM115 (closed by `finish`)
    fh = open(path, "r+b")  # noqa: SIM115 (closed by `finish`)
    fh.truncate(size)
    fh.seek(size)
    return fh


def _read(path: Path, dtype, header: int, lo: int, hi: int) -> np.ndarray:
    """Items [lo, hi) of a flat file of `dtype` after `header` bytes (read, not mapped)."""
    with open(path, "rb") as fh:
        fh.seek(header + lo * np.dtype(dtype).itemsize)
        return np.fromfile(fh, dtype=dtype, count=hi - lo)
