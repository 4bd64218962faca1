"""Ingest on a Ray cluster (`pip install ".[ray]"`).

`RayEmbedder`: an `Embedder` whose texts are encoded by a pool of Ray Data actors, one model
each, on GPUs when the cluster has them. The vectors are the model's own: every actor runs the
same `ModelEmbedder` as a plain ingest, and texts are sorted by length before they are split
into batches (as `ModelEmbedder` sorts its own), so a batch pads little. Only the order of
texts in a batch differs from a plain ingest, which moves a vector by float rounding at most.

`stream`: a streaming ingest into Qdrant. Actors read, split, embed and write batches of files
into the new generation's collections (`write_batch`); the driver holds counters, not
documents or vectors, and builds no local generation. BM25 weights need the whole corpus's
document frequencies: each batch records its counters, the driver sums them and a second pass
writes each passage's exact weights (`weigh_all`). Calibration probes the new generation
before it is published (`Probe`). Every write is recorded, so a killed ingest started again
with the same arguments goes on where it stopped (docs/deploy.md, "Streaming ingest").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from verbatim.errors import IndexMissing, NoDocuments
from verbatim.index import documents, qdrant, tables
from verbatim.index.build import SENTENCE_DTYPE, SENTENCE_VECTORS, corpus_hash, passage_text
from verbatim.index.load import vector_space
from verbatim.index.records import IngestReport
from verbatim.index.vectors import dequantise, quantise
from verbatim.ingest.files import FileTask, collect, printable
from verbatim.ingest.formats import SUFFIXES
from verbatim.ingest.split import split_passages
from verbatim.ingest.workers import Result, read_all
from verbatim.records import Document, Embedder, Passage, Skipped
from verbatim.settings import Settings

log = logging.getLogger("verbatim")
Calibrate = Callable[[Any], Any]  # a `Probe` of the new generation -> its thresholds, or None

TEXTS_PER_TASK = 256  # texts one actor encodes per call


def pool(workers: int | None = None) -> tuple[int, int, int]:
    """(actors, CPUs each, the cluster's GPUs) for a pool of model actors: by default one per
    GPU, or per 2 CPUs. Without GPUs each actor reserves an equal share of the cluster's CPUs
    (at most one node's, or it could not be placed) and its model uses that many threads:
    actors with every core each contend."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = int(resources.get("CPU", 1))
    count = workers or gpus or max(1, cpus // 2)
    node = max((n["Resources"].get("CPU", 1) for n in ray.nodes() if n["Alive"]), default=1)
    return count, 1 if gpus else max(1, min(cpus // count, int(node))), gpus


class RayEmbedder:
    """Implements `verbatim.records.Embedder` on Ray Data's `map_batches` with an actor pool.

    Args:
        workers: actors, each holding one model; by default one per GPU, or per 2 CPUs. Without
            GPUs each actor reserves an equal share of the cluster's CPUs for its model.
        options: how each actor builds its `ModelEmbedder` (model, batch_size, backend,
            cache_dir).
    """

    def __init__(self, workers: int | None = None, **options: Any) -> None:
        self.workers, self.cpus, self.gpus = pool(workers)
        self.options = {**options, "threads": self.cpus}
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.encode(["dimension"]).shape[1])
        return self._dim

    def encode(self, texts: list[str], progress: bool | None = None) -> np.ndarray:
        """L2-normalised vectors of `texts`, in their order."""
        import ray.data

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        items = [{"i": i, "text": texts[i]} for i in order]
        vectors = ray.data.from_items(items).map_batches(
            _Encoder,
            fn_constructor_kwargs={"options": self.options},
            concurrency=self.workers,
            num_gpus=1 if self.gpus else 0,
            num_cpus=self.cpus,
            batch_size=TEXTS_PER_TASK,
            batch_format="numpy",
        )
        out: np.ndarray | None = None
        for batch in vectors.iter_batches(batch_format="numpy", batch_size=None):
            if out is None:
                out = np.zeros((len(texts), batch["vector"].shape[1]), dtype=np.float32)
            out[batch["i"]] = batch["vector"]
        if out is None:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        self._dim = out.shape[1]
        return out


def model_for(options: dict[str, Any]) -> Embedder:
    """The model a Ray worker embeds with (`ModelEmbedder` built with `options`)."""
    import ray

    from verbatim.index.embed import ModelEmbedder

    if ray.get_gpu_ids() and options.get("backend", "onnx") == "onnx":
        # A GPU of its own: torch runs the model there (sentence-transformers picks CUDA),
        # with the same vectors as the float ONNX export. int8 stays on the CPU's ONNX.
        options = {**options, "backend": "torch"}
    return ModelEmbedder(progress=False, **options)


class _Encoder:
    """One Ray actor: loads the model once, then encodes batch after batch."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.model = model_for(options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.model.encode([str(t) for t in batch["text"]], progress=False)
        return {"i": batch["i"], "vector": vectors}


# A streaming ingest into Qdrant (`stream`): Ray workers read, split, embed and write batches of
# files; the driver holds counters. See docs/deploy.md, "Streaming ingest".
FILES_PER_BATCH = 16  # files a batch reads at most: what a resumed ingest redoes at worst ...
BYTES_PER_BATCH = 16 << 20  # ... and their bytes at most (a larger file is a batch alone)
BLOCK = 512  # passages (with their sentences) a worker embeds and writes at a time
DOCUMENTS = 512  # documents a worker embeds and writes at a time: block -1, -2, ...


def batches(tasks: list[FileTask]) -> list[list[FileTask]]:
    """`tasks` in consecutive groups of at most `FILES_PER_BATCH` files and `BYTES_PER_BATCH`
    bytes: the same groups for the same files, so a resumed ingest finds its batches."""
    out: list[list[FileTask]] = []
    size = 0
    for task in tasks:
        try:
            bytes_ = task.path.stat().st_size
        except OSError:
            bytes_ = 0
        if not out or len(out[-1]) >= FILES_PER_BATCH or size + bytes_ > BYTES_PER_BATCH:
            out.append([])
            size = 0
        out[-1].append(task)
        size += bytes_
    return out


def run_key(paths: list[Path], groups: list[list[FileTask]], settings: Settings) -> str:
    """What makes two streaming ingests the same one: the folders, every file with its size and
    modification time, how they are batched and blocked, and the settings that change what is
    written."""
    files: list[list] = []
    for b, group in enumerate(groups):
        for t in group:
            try:
                info = t.path.stat()
                files.append([b, str(t.path), t.doc_id, t.format, info.st_size, info.st_mtime_ns])
            except OSError:
                files.append([b, str(t.path), t.doc_id, t.format])
    what = {
        "roots": [os.path.abspath(p) for p in paths],
        "files": files,
        "block": BLOCK,
        "space": list(vector_space(settings)),
        "passage_chars": settings.passage_chars,
        "collection": settings.collection,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def _apply_plan(results: list[Result], plan: dict[str, str | None]) -> tuple[list[Document], list]:
    """The documents a batch keeps, under the ids `plan` ("file:document" -> id, None to skip)
    gives those whose id another took, and what each file gave as read: its documents' ids and
    sources, or why it was skipped."""
    kept: list[Document] = []
    read: list = []
    for f, result in enumerate(results):
        if isinstance(result, str):
            read.append(printable(result))
            continue
        read.append([[d.id, d.source] for d in result])
        for i, doc in enumerate(result):
            new = plan.get(f"{f}:{i}", doc.id)
            if new is not None:
                kept.append(dataclasses.replace(doc, id=new) if new != doc.id else doc)
    return kept, read


@dataclasses.dataclass
class Ids:
    """How the whole corpus settles document ids (`plan_ids`)."""

    plans: dict[int, dict]  # batch -> {"file:document": the id it keeps, or None: skipped}
    skipped: list[Skipped]  # files unread and documents whose id was taken, in file order
    owners: set[int]  # batches holding an id that a later document also had as read


def plan_ids(groups: list[list[FileTask]], stats: dict[int, dict]) -> Ids:
    """Each batch's plan of ids and the files and documents skipped, given every batch's
    `stats`: reading's rule applied across the whole corpus in file order (`read_folders`):
    a file's document whose id is taken keeps its suffix if that is free; a JSONL row whose id
    is taken is skipped."""
    seen: dict[str, int] = {}
    ids = Ids({}, [], set())
    for b, group in enumerate(groups):
        ids.plans[b] = {}
        for f, (task, read) in enumerate(zip(group, stats[b]["read"], strict=True)):
            if isinstance(read, str):
                ids.skipped.append(Skipped(printable(str(task.path)), read))
                continue
            for i, (doc_id, source) in enumerate(read):
                new = doc_id
                if new in seen:  # its document point was written over as read: write it again
                    ids.owners.add(seen[new])
                    if task.format != "jsonl" and f"{new}{task.path.suffix}" not in seen:
                        new = f"{new}{task.path.suffix}"
                if new in seen:
                    ids.skipped.append(Skipped(source, f"duplicate document id '{new}'"))
                    ids.plans[b][f"{f}:{i}"] = None
                    continue
                seen[new] = b
                if new != doc_id:
                    ids.plans[b][f"{f}:{i}"] = new
    return ids


def write_batch(task: dict, settings: Settings, embedder: Embedder) -> Iterator[dict]:
    """A worker's batch: read its files, split, embed and make the points of each block of
    passages not yet written (`task["done"]`), then of its documents; each comes as a step
    ({"points": {kind: [...]}, "record": [kind, name, payload]}: write the points, then the
    record). The last step records the batch's statistics: counts, the passages' document
    frequencies and length in terms, its documents' hash fields; never a text or a vector."""
    batch, done = int(task["batch"]), set(task["done"])
    files = [FileTask(Path(p), d, f) for p, d, f in task["files"]]
    docs, read = _apply_plan(read_all(files, settings, lambda: None), task["plan"])
    by_id = {d.id: d for d in docs}
    passages = [p for d in docs for p in split_passages(d, settings.passage_chars)]
    counts = [Counter(qdrant.tokens(passage_text(by_id[p.doc_id], p))) for p in passages]
    first = np.concatenate([[0], np.cumsum([len(p.sentences) for p in passages])]).astype(int)
    embedded = 0
    size = int(task["block"])
    for j, at in enumerate(range(0, len(passages), size)):
        if j not in done:
            rows = range(at, min(at + size, len(passages)))
            step = _block(batch, j, rows, passages, first, by_id, counts, embedder)
            embedded += len(rows) + int(first[rows.stop] - first[rows.start])
            yield step
    documents_embedded = 0
    for j, at in enumerate(range(0, len(docs), DOCUMENTS), 1):
        if -j not in done:
            documents_embedded += len(docs[at : at + DOCUMENTS])
            yield _documents(batch, -j, docs[at : at + DOCUMENTS], embedder)
    df: Counter[str] = Counter()
    for c in counts:
        df.update(c.keys())
    stats = {
        "batch": batch,
        "plan": task["plan"],
        "settled": bool(task.get("settled")),
        "block": size,
        "read": read,
        "passages": len(passages),
        "sentences": int(first[-1]),
        "length": sum(sum(c.values()) for c in counts),
        "df": dict(df),
        "docs": [[d.id, d.content_hash, d.title, d.author, d.url] for d in docs],
        "embedded": embedded,
        "documents_embedded": documents_embedded,
        "document_blocks": -(-len(docs) // DOCUMENTS),
    }
    yield {"points": {}, "record": ["batch", f"batch:{batch}", {"batch": batch, "stats": stats}]}


def _block(
    batch: int,
    j: int,
    rows: range,
    passages: list[Passage],
    first: np.ndarray,
    by_id: dict[str, Document],
    counts: list[Counter],
    embedder: Embedder,
) -> dict:
    """The points of passage `rows` of a batch (block `j`): passages, their sentences, their
    term counts."""
    block = [passages[r] for r in rows]
    texts = [passage_text(by_id[p.doc_id], p) for p in block]
    owned = [(r, s) for r, p in zip(rows, block, strict=True) for s in p.sentences]
    said = [by_id[passages[r].doc_id].text[s.start : s.end] for r, s in owned]
    vectors = np.asarray(embedder.encode(texts + said), dtype=np.float32)
    if SENTENCE_DTYPE == "int8":  # the values the local store keeps, so the same cosines
        vectors[len(block) :] = dequantise(*quantise(vectors[len(block) :]))
    points: dict[str, list[dict]] = {"passages": [], "sentences": [], "terms": []}
    for r, p, vector in zip(rows, block, vectors, strict=False):
        pid = qdrant.point_id(batch, r)
        payload: dict[str, Any] = {"doc": p.doc_id, "heading": p.heading, "role": p.role}
        payload |= {"pid": p.id, "start": p.start, "end": p.end}
        payload |= {"sent_lo": qdrant.point_id(batch, int(first[r]))}
        payload |= {"sent_hi": qdrant.point_id(batch, int(first[r + 1]))}
        points["passages"].append(
            {"id": pid, "vector": {"dense": vector.tolist()}, "payload": payload}
        )
        terms: dict[str, Any] = {"t": list(counts[r]), "c": list(counts[r].values())}
        points["terms"].append({"id": pid, "payload": terms})
    at = int(first[rows.start])
    for k, ((r, s), text, vector) in enumerate(
        zip(owned, said, vectors[len(block) :], strict=True)
    ):
        said_by = {"passage": qdrant.point_id(batch, r), "start": s.start, "end": s.end}
        payload = said_by | {"terms": sorted(set(qdrant.tokens(text)))}
        sid = qdrant.point_id(batch, at + k)
        points["sentences"].append(
            {"id": sid, "vector": {"dense": vector.tolist()}, "payload": payload}
        )
    return {
        "points": points,
        "record": ["block", f"block:{batch}:{j}", {"batch": batch, "block": j}],
    }


def _documents(batch: int, j: int, docs: list[Document], embedder: Embedder) -> dict:
    """The points of a batch's documents: metadata as the local store keeps it, text, vector."""
    vectors = np.zeros((0, 0), dtype=np.float32)
    if docs:
        texts = [documents.document_text(d.title, d.text) for d in docs]
        vectors = np.asarray(embedder.encode(texts), dtype=np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    with tempfile.TemporaryDirectory() as folder:  # the local store's own rows, read back
        path = Path(folder) / "rows.sqlite"
        tables.write_rows(path, list({d.id: d for d in docs}.values()), [])  # ids unplanned yet
        db = tables.open_db(path)
        try:
            metas = tables.read_documents(db)
        finally:
            db.close()
    points = [
        {
            "id": qdrant.doc_point(d.id),
            "payload": {**metas[d.id]._asdict(), "text": d.text, "vector": v.tolist()},
        }
        for d, v in zip(docs, vectors, strict=True)
    ]
    return {
        "points": {"documents": points},
        "record": ["block", f"block:{batch}:{j}", {"batch": batch, "block": j}],
    }


def apply(client: Any, base: str, step: dict) -> None:
    """Write a step's points into generation `base`, then its progress record."""
    for kind, points in step["points"].items():
        qdrant.write(client, base, kind, points)
    kind, name, payload = step["record"]
    qdrant.record(client, base, kind, name, payload)


def writes_itself(settings: Settings) -> bool:
    """Whether workers write to Qdrant themselves: a server's address. Local mode (a folder or
    `:memory:`) is this process's alone, so there workers send each step here to be written."""
    return (settings.qdrant_url or "").startswith(("http://", "https://"))


class _BatchWriter:
    """A Ray actor of a streaming ingest: its embedder, and its Qdrant client where it writes
    itself; it works through batch after batch (`write_batch`)."""

    def __init__(self, settings: str, base: str, make: Callable[[], Embedder]) -> None:
        self.settings = Settings.model_validate_json(settings)
        self.base = base
        self.embedder = make()
        self.client = qdrant.client_for(self.settings) if writes_itself(self.settings) else None

    def __call__(self, rows: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        for task in rows["task"]:
            for step in write_batch(json.loads(str(task)), self.settings, self.embedder):
                if self.client is not None:
                    apply(self.client, self.base, step)
                    step = {"points": {}, "record": step["record"], "applied": True}
                yield {"step": np.array([json.dumps(step)])}


Run = Callable[[list[dict]], Iterator[dict]]  # batch tasks -> each one's statistics


def run_here(client: Any, base: str, settings: Settings, make: Callable[[], Embedder]) -> Run:
    """Batches written one after another in this process (tests; what one worker does)."""
    embedder = make()

    def run(items: list[dict]) -> Iterator[dict]:
        for item in items:
            for step in write_batch(item, settings, embedder):
                apply(client, base, step)
                if step["record"][0] == "batch":
                    yield step["record"][2]["stats"]

    return run


def run_on_ray(
    client: Any, base: str, settings: Settings, make: Callable[[], Embedder], workers: int | None
) -> Run:
    """Batches written by a pool of Ray actors (Ray Data `map_batches`, one batch a call)."""

    def run(items: list[dict]) -> Iterator[dict]:
        import ray.data

        if not items:
            return
        count, cpus, gpus = pool(workers)
        steps = ray.data.from_items([{"task": json.dumps(i)} for i in items]).map_batches(
            _BatchWriter,
            fn_constructor_kwargs={
                "settings": settings.model_dump_json(),
                "base": base,
                "make": make,
            },
            concurrency=min(count, len(items)),
            num_cpus=cpus,
            num_gpus=1 if gpus else 0,
            batch_size=1,
            batch_format="numpy",
        )
        for row in steps.iter_rows():
            step = json.loads(str(row["step"]))
            if not step.get("applied"):
                apply(client, base, step)
            if step["record"][0] == "batch":
                yield step["record"][2]["stats"]

    return run


def write_all(client: Any, base: str, groups: list[list[FileTask]], run: Run) -> dict[int, dict]:
    """Every batch written, with the statistics of each: those a killed run recorded are kept.
    Where the whole corpus gives some documents other ids than reading their batch alone did
    (a duplicate id, `plan_ids`), their batch is written again, its points deleted first, and
    the batch that kept the id writes its documents again (the duplicate wrote over them)."""
    stats = {r["batch"]: _light(r["stats"]) for r in qdrant.records(client, base, "batch")}
    done: dict[int, list[int]] = defaultdict(list)
    for r in qdrant.records(client, base, "block"):
        done[r["batch"]].append(r["block"])
    plans: dict[int, dict] = {}
    for settled in (False, True, True):  # the second round has every batch's ids to go by
        items = [
            {"batch": b, "files": [[str(t.path), t.doc_id, t.format] for t in group]}
            | {"plan": plans.get(b, {}), "done": done.get(b, []), "block": BLOCK}
            | {"settled": settled}
            for b, group in enumerate(groups)
            if b not in stats
        ]
        for found in run(items):
            stats[found["batch"]] = _light(found) | {"fresh": True}  # written by this run
        ids = plan_ids(groups, stats)
        plans = ids.plans
        stale = [b for b in sorted(stats) if stats[b]["plan"] != plans[b]]
        rewrite = [b for b in sorted(ids.owners - set(stale)) if not stats[b]["settled"]]
        if not stale and not rewrite:
            return stats
        for b in stale:
            _forget(client, base, b, stats.pop(b))
            done.pop(b, None)
        for b in rewrite:  # its documents only
            old = stats.pop(b)
            qdrant.forget(client, base, [*_document_blocks(b, old), f"batch:{b}"], {})
            done[b] = [j for j in done.get(b, []) if j >= 0]
    raise RuntimeError("document ids did not settle in three rounds")  # reading is deterministic


def _light(stats: dict) -> dict:
    """A batch's statistics less its document frequencies, which the second pass sums from
    the records (`weigh_all`): the driver never holds every batch's vocabulary at once."""
    return {key: value for key, value in stats.items() if key != "df"}


def _document_blocks(b: int, old: dict) -> list[str]:
    """The records of batch `b`'s blocks of documents (`old`: its statistics)."""
    return [f"block:{b}:{-j}" for j in range(1, old["document_blocks"] + 1)]


def _forget(client: Any, base: str, b: int, old: dict) -> None:
    """Delete batch `b`'s points and records (`old`: its statistics)."""
    blocks = -(-old["passages"] // old["block"])
    names = [f"block:{b}:{j}" for j in range(blocks)] + _document_blocks(b, old) + [f"batch:{b}"]
    ids = qdrant.batch_ids(b, old["passages"])
    sentences = qdrant.batch_ids(b, old["sentences"])
    qdrant.forget(client, base, names, {"passages": ids, "terms": ids, "sentences": sentences})


def weigh_all(
    client: Any, base: str, stats: dict[int, dict], settings: Settings | None = None
) -> tuple[list[str], np.ndarray]:
    """The second pass: every passage's BM25 weights from the corpus's document frequencies,
    summed here from the batches' records. Where workers write to Qdrant themselves (a server,
    `settings`) and Ray is running, Ray tasks weigh the batches, one each; else this process
    does, 256 passages at a time. Returns the vocabulary and its query IDF."""
    df: Counter[str] = Counter()
    for r in qdrant.records(client, base, "batch"):  # one page of batches at a time
        df.update(r["stats"]["df"])
    n = sum(s["passages"] for s in stats.values())
    avgdl = np.float64(sum(s["length"] for s in stats.values())) / max(n, 1)  # as np.mean
    terms = sorted(df)
    vocab = {t: (i, df[t]) for i, t in enumerate(terms)}
    weighed = {r["batch"] for r in qdrant.records(client, base, "weights")}
    todo = [(b, stats[b]["passages"]) for b in sorted(stats) if b not in weighed]
    if settings is not None and writes_itself(settings) and _ray_running():
        _weigh_on_ray(settings, base, todo, vocab, n, avgdl)
    else:
        for b, count in todo:
            qdrant.weigh(client, base, b, count, vocab, n, avgdl)
    return terms, qdrant.query_idf(np.array([df[t] for t in terms]), n)


def _ray_running() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return bool(ray.is_initialized())


def _weigh_on_ray(
    settings: Settings, base: str, todo: list[tuple[int, int]], vocab: dict, n: int, avgdl: float
) -> None:
    """`qdrant.weigh` of each batch in `todo` ((batch, passages)) in a Ray task, each with its
    own client of the server `settings` names; the vocabulary is shared once."""
    import ray

    task = ray.remote(num_cpus=1)(_weigh_there)
    shared = ray.put(vocab)
    config = settings.model_dump_json()
    ray.get([task.remote(config, base, b, count, shared, n, float(avgdl)) for b, count in todo])


def _weigh_there(
    config: str, base: str, batch: int, count: int, vocab: dict, n: int, avgdl: float
) -> None:
    client = qdrant.client_for(Settings.model_validate_json(config))
    qdrant.weigh(client, base, batch, count, vocab, n, np.float64(avgdl))


def manifest(
    settings: Settings, dim: int, stats: dict[int, dict], key: str, paths: list[Path]
) -> dict:
    """The generation's manifest, as a local build writes it, from the batches' statistics."""
    docs = [
        Document(id=i, title=t, text="", content_hash=h, source="", sections=(), author=a, url=u)
        for s in stats.values()
        for i, h, t, a, u in s["docs"]
    ]
    return {
        "model": settings.model,
        "int8": vector_space(settings)[1],
        "dim": int(dim),
        "sentence_vectors": SENTENCE_VECTORS,
        "sentence_dtype": SENTENCE_DTYPE,  # Qdrant holds float32s: these values, dequantised
        "document_vectors": documents.DOCUMENT_VECTORS,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "passage_chars": settings.passage_chars,
        "counts": {
            "documents": len(docs),
            "passages": sum(s["passages"] for s in stats.values()),
            "sentences": sum(s["sentences"] for s in stats.values()),
        },
        "corpus_hash": corpus_hash(docs),
        "sources": {"roots": [os.path.abspath(p) for p in paths]},
        "stream": {"key": key, "batches": len(stats)},
    }


class _Lazy:
    """A column of a generation in Qdrant, read by the rows asked for (`fetch`), kept once
    read: what `calibrate` reads of a local index's arrays, for the few rows it samples."""

    def __init__(self, fetch: Callable[[list[int]], dict[int, Any]], size: int) -> None:
        self.fetch, self.size = fetch, size
        self.known: dict[int, Any] = {}

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, rows: Any) -> Any:
        listed = [int(r) for r in np.atleast_1d(rows)]
        missing = [r for r in listed if r not in self.known]
        if missing:
            self.known.update(self.fetch(missing))
        if np.ndim(rows) == 0:
            return self.known[int(rows)]
        return np.array([self.known[r] for r in listed])


class Probe(qdrant.QdrantStore):
    """The generation being written, as `calibrate` reads an `Index`: a `QdrantStore` of it,
    with its sentences by global row (`sent_passage`, `sent_start`, `sent_end`,
    `sentence_vectors`) and passages by point id (`passage_doc`, `passage_vectors`), each
    read from Qdrant for the rows calibration samples only."""

    def __init__(
        self, client: Any, collection: str, generation: str, sentences: list[int], probes: int
    ) -> None:
        super().__init__(client, collection, generation)
        starts = np.concatenate([[0], np.cumsum(sentences)]).astype(np.int64)
        n = int(starts[-1])

        def sid(k: int) -> int:  # global sentence row -> its point id
            b = int(np.searchsorted(starts, k, side="right")) - 1
            return qdrant.point_id(b, k - int(starts[b]))

        def read(kind: str, ids: dict[int, int], vectors: bool) -> dict[int, Any]:
            got = self.client.retrieve(
                f"{self.base}-{kind}",
                list(ids),
                with_payload=not vectors,
                with_vectors=["dense"] if vectors else False,
            )
            by = {p.id: p for p in got}
            return {k: by[i].vector["dense"] if vectors else by[i].payload for i, k in ids.items()}

        sentence = _Lazy(lambda ks: read("sentences", {sid(k): k for k in ks}, False), n)

        def field(name: str) -> Callable[[list[int]], dict[int, Any]]:
            return lambda ks: {k: s[name] for k, s in zip(ks, sentence[ks], strict=True)}

        self.sent_passage = _Lazy(field("passage"), n)
        self.sent_start = _Lazy(field("start"), n)
        self.sent_end = _Lazy(field("end"), n)
        self.sentence_vectors = _Lazy(
            lambda ks: read("sentences", {sid(k): k for k in ks}, True), n
        )
        count = int(self.manifest["counts"]["passages"])
        passage = _Lazy(lambda ps: read("passages", {p: p for p in ps}, False), count)
        self.passage_doc = _Lazy(
            lambda ps: {p: r["doc"] for p, r in zip(ps, passage[ps], strict=True)}, count
        )
        self.passage_vectors = _Lazy(lambda ps: read("passages", {p: p for p in ps}, True), count)
        self.faiss = SimpleNamespace(ntotal=count)
        if n:  # the sentences `calibrate` samples, read in one request each way
            sample = np.unique(np.linspace(0, n - 1, min(n, 10 * probes)).astype(int)).tolist()
            self.passage_doc[sorted(set(self.sent_passage[sample].tolist()))]


def _calibration(
    client: Any, settings: Settings, name: str, made: dict, stats: dict, calibrate: Calibrate
) -> Any:
    """The thresholds: the current generation's when the corpus is the same, else measured
    against the new one, unpublished, through a `Probe` (a bounded sample of its sentences)."""
    try:
        _, old = qdrant.manifest(client, settings.collection)
    except IndexMissing:
        old = {}
    same = all(old.get(k) == made[k] for k in ("corpus_hash", "passage_chars", "model", "int8"))
    if same and "calibration" in old:
        return old["calibration"]
    sentences = [stats[b]["sentences"] for b in sorted(stats)]
    probe = Probe(client, settings.collection, name, sentences, settings.calibration_probes)
    return calibrate(probe)


def _generation(client: Any, settings: Settings, key: str, dim: int) -> str:
    """The unpublished generation an ingest with run key `key` was writing, or a new one."""
    name = qdrant.resumable(client, settings.collection, key)
    if name is None:
        name = time.strftime("%Y%m%dT%H%M%S") + f"-{uuid.uuid4().hex[:6]}"
        base = f"{qdrant.alias(settings.collection)}-{name}"
        qdrant.create_generation(
            client, base, dim, settings.qdrant_shards, settings.qdrant_replicas
        )
        qdrant.record(client, base, "build", "build", {"key": key})
    return name


def stream(
    paths: list[Path],
    settings: Settings,
    dim: int,
    calibrate: Calibrate,
    runner: Callable[[Any, str], Run],
) -> tuple[IngestReport, list[Skipped]]:
    """Ingest `paths` into a new generation of `settings.collection` in Qdrant without a local
    copy and without the corpus in this process: workers (`runner(client, base)`) write the
    batches; this process sums their counters, gives the passages their BM25 weights, writes
    the manifest, calibrates against the new generation and switches the alias. Started again
    with the same arguments after being killed, it goes on from the records of what was
    written (`run_key`), and the alias switches only once all is.

    Raises:
        NoDocuments: nothing readable under `paths`.
    """
    began = time.perf_counter()
    tasks, skipped = collect(paths, settings)
    groups = batches(tasks)
    key = run_key(paths, groups, settings)
    client = qdrant.client_for(settings)
    name = _generation(client, settings, key, dim)
    base = f"{qdrant.alias(settings.collection)}-{name}"
    sealed = any(True for _ in qdrant.records(client, base, "sealed"))
    stats = write_all(client, base, groups, runner(client, base))
    log.info(
        "streamed %d batches into %s in %.1f s", len(groups), base, time.perf_counter() - began
    )
    dropped = plan_ids(groups, stats).skipped
    made = manifest(settings, dim, stats, key, paths)
    if not made["counts"]["documents"]:
        where = ", ".join(str(p) for p in paths)
        raise NoDocuments(
            f"no readable documents in {where}; supported: {' '.join(sorted(SUFFIXES))}"
        )
    if not sealed:
        weighing = time.perf_counter()
        terms, idf = weigh_all(client, base, stats, settings)
        log.info("BM25 weights written in %.1f s", time.perf_counter() - weighing)
        qdrant.write_manifest(client, base, made, terms, idf)
        calibrating = time.perf_counter()
        calibration = _calibration(client, settings, name, made, stats, calibrate)
        log.info("calibrated in %.1f s", time.perf_counter() - calibrating)
        if calibration is not None:
            qdrant.write_manifest(client, base, made | {"calibration": calibration}, terms, idf)
        qdrant.record(client, base, "sealed", "sealed", {})
    qdrant.finish(client, settings.collection, base)
    return _report(
        name, settings, made, stats, groups, time.perf_counter() - began
    ), skipped + dropped


def _report(
    name: str, settings: Settings, made: dict, stats: dict, groups: list, seconds: float
) -> IngestReport:
    formats: Counter[str] = Counter()
    for b, group in enumerate(groups):
        for task, read in zip(group, stats[b]["read"], strict=True):
            if not isinstance(read, str):
                formats[task.format] += 1
    counts = made["counts"]
    return IngestReport(
        generation=name,
        documents=counts["documents"],
        passages=counts["passages"],
        sentences=counts["sentences"],
        embedded=sum(s["embedded"] for s in stats.values() if s.get("fresh")),
        documents_embedded=sum(s["documents_embedded"] for s in stats.values() if s.get("fresh")),
        reused=0,
        seconds=seconds,
        collection=settings.collection,
        formats=dict(formats),
    )
