"""Embeddings, FAISS and the on-disk store.

Public entry points: `build_index(corpus, settings, embedder)` writes a new generation and makes it
current; `load_index(settings)` opens the current one as an `Index`.
"""

from __future__ import annotations

import array
import functools
import json
import logging
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from index import store
from index.embed import INT8_VERSION, Embedder
from index.lexical import Lexical
from ingest import Corpus, split_passages
from verbatim.errors import IndexCorrupt, ModelMismatch
from verbatim.records import Document, Passage, Section
from verbatim.settings import Settings

__all__ = ["Embedder", "Index", "IngestReport", "build_index", "load_index"]
log = logging.getLogger("verbatim")

# Above this many passages an approximate (IVF) FAISS index replaces exact search: exact search
# costs about 0.26 µs a passage here (13 ms at 50k, as much as encoding the question), while IVF
# scanning 1/16 of its lists finds .987 of the exact top 10 on real MiniLM vectors (eval/README.md).
EXACT_SEARCH_LIMIT = 50_000
TEXT_CACHE = 2048  # documents whose text is kept in memory once quoted


def _nprobe(nlist: int) -> int:
    """How many IVF lists a search scans: 1/16 of them, at least 32."""
    return min(nlist, max(32, nlist // 16))


@dataclass
class IngestReport:
    generation: str
    documents: int
    passages: int
    sentences: int
    embedded: int
    reused: int
    seconds: float


def _passage_text(doc: Document, passage: Passage) -> str:
    """What is embedded for a passage: its text, with the title and heading as context."""
    context = " — ".join(x for x in (doc.title, passage.heading) if x)
    return f"{context}\n{passage.text}" if context else passage.text


def _faiss_index(vectors: np.ndarray):
    import faiss

    dim = vectors.shape[1]
    if len(vectors) <= EXACT_SEARCH_LIMIT:
        # Inner product on L2-normalised vectors is cosine similarity.
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = max(1, min(int(4 * np.sqrt(len(vectors))), len(vectors) // 39))  # 39+ a list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(len(vectors), min(len(vectors), 50 * nlist), False)
        index.train(vectors[np.sort(sample)])
        index.nprobe = _nprobe(nlist)
    index.add(vectors)
    return index


def _previous(settings: Settings) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The current generation's manifest, and its passage and sentence vectors by passage id."""
    try:
        old = load_index(settings)
    except Exception as exc:  # no usable previous index: embed everything
        log.debug("nothing to reuse: %s", exc)
        return {}, {}, {}
    with old:
        if _space(old.manifest) != _space(settings):
            return {}, {}, {}
        pvecs = old.passage_vectors
        passages, sentences = {}, {}
        for row, pid in enumerate(old.passage_ids):
            passages[pid] = pvecs[row]
            lo, hi = old.sent_lo[row], old.sent_hi[row]
            sentences[pid] = np.asarray(old.sentence_vectors[lo:hi])
    return old.manifest, passages, sentences


def build_index(
    corpus: Corpus, settings: Settings, embedder: Embedder, calibrate=None
) -> IngestReport:
    """Embed `corpus` and publish it as the new current generation.

    Vectors of passages whose text is unchanged since the current generation are reused, so
    re-ingesting an unchanged folder embeds nothing (and keeps its calibration). Until
    `publish` returns, the previous generation stays current: a crash loses nothing.

    Args:
        calibrate: `callable(Index) -> dict` run on the new index before publishing; its result
            is stored in the manifest under "calibration".
    """
    began = time.perf_counter()
    docs = corpus.documents
    passages = [(doc, p) for doc in docs for p in split_passages(doc, settings.passage_chars)]
    old_manifest, old_passages, old_sentences = _previous(settings)
    todo_p = [i for i, (_, p) in enumerate(passages) if p.id not in old_passages]
    texts = [_passage_text(*passages[i]) for i in todo_p]
    texts += [
        doc.text[s.start : s.end] for doc, p in (passages[i] for i in todo_p) for s in p.sentences
    ]
    fresh = embedder.encode(texts)  # new passages' vectors, then their sentences', in order
    dim = (
        embedder.dim
        if not len(fresh) and not old_passages
        else (fresh.shape[1] if len(fresh) else len(next(iter(old_passages.values()))))
    )
    fresh_row: dict[int, tuple[int, int]] = {}  # passage -> rows of its and its sentences' vectors
    at = len(todo_p)
    for k, i in enumerate(todo_p):
        fresh_row[i] = (k, at)
        at += len(passages[i][1].sentences)

    with store.writing(settings.data_dir) as workspace:
        db = store.create_db(workspace / "store.sqlite")
        with db:
            db.executemany(
                "INSERT INTO documents VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        d.id,
                        d.title,
                        d.author,
                        d.date,
                        d.url,
                        d.site,
                        d.source,
                        d.content_hash,
                        json.dumps(
                            {"metadata": d.metadata, "sections": [asdict(s) for s in d.sections]}
                        ),
                        d.text,
                    )
                    for d in docs
                ],
            )
            n_total = sum(len(p.sentences) for _, p in passages)
            pvecs = np.zeros((len(passages), dim), dtype=np.float32)
            svecs = np.zeros((n_total, dim), dtype=np.float32)
            prows, srows = [], []
            n_sent = 0
            for row, (_doc, p) in enumerate(passages):
                span = slice(n_sent, n_sent + len(p.sentences))
                if row in fresh_row:
                    k, first = fresh_row[row]
                    pvecs[row] = fresh[k]
                    svecs[span] = fresh[first : first + len(p.sentences)]
                else:
                    pvecs[row] = old_passages[p.id]
                    svecs[span] = old_sentences[p.id]
                prows.append(
                    (
                        row,
                        p.id,
                        p.doc_id,
                        p.start,
                        p.end,
                        p.heading,
                        p.role,
                        n_sent,
                        n_sent + len(p.sentences),
                    )
                )
                srows.extend((n_sent + j, row, s.start, s.end) for j, s in enumerate(p.sentences))
                n_sent += len(p.sentences)
            db.executemany("INSERT INTO passages VALUES (?,?,?,?,?,?,?,?,?)", prows)
            db.executemany("INSERT INTO sentences VALUES (?,?,?,?)", srows)
        db.close()
        del fresh, prows, srows, old_passages, old_sentences  # a million rows' worth, each
        np.save(workspace / "sentences.npy", svecs, allow_pickle=False)
        del svecs
        np.save(workspace / "passages.npy", pvecs, allow_pickle=False)
        import faiss

        faiss.write_index(_faiss_index(pvecs), str(workspace / "passages.faiss"))
        del pvecs
        Lexical.build([_passage_text(d, p) for d, p in passages]).save(workspace / "bm25")
        Lexical.build([d.text[s.start : s.end] for d, p in passages for s in p.sentences]).save(
            workspace / "bm25-sentences"
        )
        manifest = {
            "model": settings.model,
            "int8": _space(settings)[1],
            "dim": int(dim),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "passage_chars": settings.passage_chars,
            "counts": {"documents": len(docs), "passages": len(passages), "sentences": n_sent},
            "corpus_hash": corpus_hash(docs),
        }
        unchanged = all(
            old_manifest.get(key) == manifest[key] for key in ("corpus_hash", "passage_chars")
        )
        if unchanged and "calibration" in old_manifest:
            manifest["calibration"] = old_manifest["calibration"]  # same corpus, same answer
        elif calibrate is not None:
            with Index(workspace, {**manifest, "files": {}}) as fresh_index:
                manifest["calibration"] = calibrate(fresh_index)
        name = store.publish(workspace, manifest, settings.data_dir)
    return IngestReport(
        generation=name,
        documents=len(docs),
        passages=len(passages),
        sentences=n_sent,
        embedded=len(texts),
        reused=len(passages) - len(todo_p),
        seconds=time.perf_counter() - began,
    )


def _space(source: Settings | dict) -> tuple[str, int]:
    """The vector space of an index or of the configured embedder: the model, and the version of
    its int8 weights, 0 for float (the `onnx` and `torch` backends give the same vectors).
    Manifests before versions said `true` for int8, which reads as 1."""
    if isinstance(source, dict):
        return source["model"], int(source.get("int8", 0))
    return source.model, INT8_VERSION if source.backend == "onnx-int8" else 0


def corpus_hash(docs: list[Document]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for d in sorted(docs, key=lambda d: d.id):
        digest.update(f"{d.id}\0{d.content_hash}\0{d.title}\0{d.author}\0{d.url}\n".encode())
    return digest.hexdigest()


class Index:
    """A loaded, read-only generation. Safe to share between threads."""

    def __init__(self, path: Path, manifest: dict) -> None:
        import faiss

        self.path = path
        self.generation = path.name
        self.manifest = manifest
        # IVF lists are memory-mapped (a million passages' vectors need not be in RAM); a flat
        # index is small by construction (EXACT_SEARCH_LIMIT) and read whole.
        self.faiss = faiss.read_index(str(path / "passages.faiss"), faiss.IO_FLAG_MMAP)
        flat = not hasattr(self.faiss, "nprobe")
        if not flat:  # the current rule, also for indexes built before it
            self.faiss.nprobe = _nprobe(self.faiss.nlist)
        self.sentence_vectors = store.open_vectors(path / "sentences.npy")
        self.passage_vectors = store.open_vectors(path / "passages.npy")
        # Exact search of one question is one matrix-vector product over the (memory-mapped)
        # passage vectors: three times faster than FAISS's flat search, whose fixed cost per
        # call dominates at this size. FAISS searches IVF indexes.
        self._exact = (
            self.passage_vectors if flat and isinstance(self.passage_vectors, np.ndarray) else None
        )
        self.lexical = Lexical.load(path / "bm25")
        self.sentence_lexical = Lexical.load(path / "bm25-sentences")
        self._db = sqlite3.connect(
            f"file:{path / 'store.sqlite'}?mode=ro", uri=True, check_same_thread=False
        )
        # Row by row into compact columns: a million passages fetched as a list of tuples would
        # take gigabytes for a moment. A repeated string (document, heading, role) is kept once.
        self.passage_ids, self.passage_doc, self.passage_heading, self.passage_role = [], [], [], []
        numbers = array.array("q")  # start, end, sent_lo, sent_hi of each passage in turn
        shared: dict[str | None, str | None] = {}
        query = (
            'SELECT id, doc_id, heading, role, start, "end", sent_lo, sent_hi FROM passages '
            "ORDER BY row"
        )
        for pid, doc, heading, role, *spans in self._db.execute(query):
            self.passage_ids.append(pid)
            self.passage_doc.append(shared.setdefault(doc, doc))
            self.passage_heading.append(shared.setdefault(heading, heading))
            self.passage_role.append(shared.setdefault(role, role))
            numbers.extend(spans)
        del shared
        columns = np.frombuffer(numbers, dtype=np.int64).reshape(-1, 4).T.copy()
        self.passage_start, self.passage_end, self.sent_lo, self.sent_hi = columns
        self.sent_start = self._column("SELECT start FROM sentences ORDER BY row")
        self.sent_end = self._column('SELECT "end" FROM sentences ORDER BY row')
        self.sent_passage = np.repeat(
            np.arange(len(self.passage_ids), dtype=np.int32), self.sent_hi - self.sent_lo
        )
        self.documents = {
            r[0]: r
            for r in self._db.execute(
                "SELECT id, title, author, date, url, site, source, content_hash, metadata "
                "FROM documents ORDER BY id"
            )
        }
        # The texts quoted lately (bounded: a long-running server over a million documents
        # would otherwise end up holding every text it ever quoted).
        self._recent_texts = functools.lru_cache(maxsize=TEXT_CACHE)(self._read_text)
        if self.faiss.ntotal != len(self.passage_ids) or len(self.sentence_vectors) != len(
            self.sent_start
        ):
            raise IndexCorrupt(f"{path}: vector and row counts differ; run `verbatim ingest`")

    def _column(self, query: str) -> np.ndarray:
        return np.fromiter((r[0] for r in self._db.execute(query)), dtype=np.int64)

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        for vectors in (self.passage_vectors, self.sentence_vectors):
            if isinstance(vectors, store.Vectors):
                vectors.close()

    @property
    def thresholds(self) -> tuple[float, float] | None:
        """Calibrated abstention thresholds (passage, sentence), if the index has them."""
        calibration = self.manifest.get("calibration") or {}
        if "passage" in calibration and "sentence" in calibration:
            return float(calibration["passage"]), float(calibration["sentence"])
        return None

    def text(self, doc_id: str) -> str:
        """The clean text of a document: every offset points into it."""
        return self._recent_texts(doc_id)

    def _read_text(self, doc_id: str) -> str:
        row = self._db.execute("SELECT text FROM documents WHERE id = ?", (doc_id,)).fetchone()
        if row is None:
            raise KeyError(doc_id)
        return row[0]

    def document(self, doc_id: str) -> Document:
        """The whole document with metadata and sections."""
        r = self.documents[doc_id]
        extra = json.loads(r[8])
        return Document(
            id=r[0],
            title=r[1],
            author=r[2],
            date=r[3],
            url=r[4],
            site=r[5],
            source=r[6],
            content_hash=r[7],
            text=self.text(doc_id),
            metadata=extra["metadata"],
            sections=tuple(
                Section(
                    s["start"],
                    s["end"],
                    s["heading"],
                    s["role"],
                    tuple(tuple(p) for p in s["paragraphs"]),
                )
                for s in extra["sections"]
            ),
        )

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and cosine scores of the `k` passages nearest to a normalised query vector."""
        if self._exact is not None:
            scores = self._exact @ vector.astype(np.float32)
            k = min(k, len(scores))
            top = np.argpartition(-scores, k - 1)[:k] if k else np.zeros(0, dtype=np.int64)
            top = top[np.lexsort((top, -scores[top]))]  # best first; a tie to the lower row
            return top, scores[top]
        scores, rows = self.faiss.search(vector.reshape(1, -1).astype(np.float32), k)
        keep = rows[0] >= 0
        return rows[0][keep], scores[0][keep]


def load_index(settings: Settings) -> Index:
    """Open the current generation, verified against its manifest.

    When the current generation is damaged, the newest intact older one is served instead.

    Raises:
        IndexMissing: nothing was ever ingested into `settings.data_dir`.
        IndexCorrupt: no generation passes its checks.
        ModelMismatch: the index was built with another model than `settings.model`.
    """
    errors = []
    for path in store.candidates(settings.data_dir):
        try:
            manifest = store.verify(path)
            index = Index(path, manifest)
        except (IndexCorrupt, OSError, RuntimeError, ValueError) as exc:
            message = exc.message if isinstance(exc, IndexCorrupt) else f"{path}: {exc}"
            log.warning("skipping generation %s: %s", path.name, message)
            errors.append(message)
            continue
        if manifest["model"] == settings.model and _space(manifest) != _space(settings):
            index.close()
            built = "the onnx-int8" if manifest.get("int8") else "the onnx or torch"
            if manifest.get("int8") and settings.backend == "onnx-int8":
                built = "an older version of the onnx-int8"
            raise ModelMismatch(
                f"the index in {settings.data_dir} was built with {built} backend but "
                f"VERBATIM_BACKEND is {settings.backend!r}; run `verbatim ingest` to rebuild it "
                f"or change VERBATIM_BACKEND back"
            )
        if manifest["model"] != settings.model:
            index.close()
            raise ModelMismatch(
                f"the index in {settings.data_dir} was built with model {manifest['model']!r} "
                f"but VERBATIM_MODEL is {settings.model!r}; run `verbatim ingest` to rebuild it "
                f"or set VERBATIM_MODEL={manifest['model']}"
            )
        return index
    raise IndexCorrupt("no intact index generation: " + "; ".join(errors))
