"""The Qdrant store's figures (issue #21, item 5), each labelled measured or simulated.

Run: `python scripts/qdrant_bench.py [--quick] [--json OUT]` (needs `pip install ".[qdrant]"`
and qdrant-edge-py). Four parts:

1. MEASURED, real data: `answer()` (what `Engine.ask` runs) p50/p95 on the local store and on
   `QdrantStore` over qdrant-client's local mode, same corpus, same questions, with the bare
   model encode of each question timed in the same loop (ratios to it: the machine is shared);
   and the passage stage alone (`candidates`) on each store and on Qdrant Edge.
2. MEASURED, real data: the same passage-stage query plan on qdrant-edge-py (Qdrant's Rust
   shard engine in process): a dense and a sparse prefetch, their union by RRF, then
   `QdrantStore._pool`.
3. SIMULATED: N Edge shards (N = 1, 2, 4), each in its own process, passages split by row; a
   query is fanned out to every shard and the candidates merged as `QdrantStore._pool` merges
   them. QPS with 1 and several concurrent clients. Shards are the real corpus (real vectors)
   and synthetic ones (real passage vectors plus noise, as eval/scale.py's `Jitter`, each with
   its base passage's real BM25 term weights).
4. MEASURED: bytes on disk per passage and per sentence in each store, and the resident memory
   opening each store adds (each opened in a process of its own).

The corpus is the CounselChat benchmark (its cached eval index is reused when there is one:
`verbatim eval` builds it) or, with `--quick`, the bundled corpus. Published Qdrant folders and
Edge shards of the real corpus are kept under `--work` and reused; synthetic shards are deleted
after each size unless `--keep`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np

from verbatim.eval.metrics import percentile
from verbatim.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT.parent / "shared" / "benchmarks" / "counselchat"
NOISE = 0.03  # per dimension, as eval/scale.py's Jitter: cosine ~.86 with the base vector
CHUNK = 10_000  # synthetic rows whose noise one seed draws
BATCH = 2_000  # points per Edge upsert
MB = 1 << 20


# ---------------------------------------------------------------------------- small helpers


def rss_mb(pid: int | str = "self", key: str = "VmRSS") -> float:
    """Resident (VmRSS) or peak resident (VmHWM) memory of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def folder_bytes(path: Path) -> dict[str, int]:
    """Apparent size (sum of file lengths) and allocated size (blocks) of a file or folder."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    stats = [p.stat() for p in files]
    return {
        "bytes": sum(s.st_size for s in stats),
        "allocated": sum(s.st_blocks * 512 for s in stats),
    }


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def summary(values: list[float]) -> dict[str, float]:
    """p50 and p95 of `values` (ms), and how many."""
    return {
        "p50": round(percentile(values, 50), 2),
        "p95": round(percentile(values, 95), 2),
        "n": len(values),
    }


def timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """`fn(*args)` and how long it took, in ms."""
    began = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - began) * 1000


def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    lines = [f"\n\n**{title}**\n", "| " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def stage(*argv: str) -> dict:
    """Run `--stage ...` of this script in a process of its own; its JSON result."""
    done = subprocess.run(  # noqa: S603 (this script, fixed arguments)
        [sys.executable, str(Path(__file__).resolve()), "--stage", *argv],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- the corpus


def _settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, progress=False, max_question_chars=20_000)


def cached_eval(corpus: Path) -> Path | None:
    """The newest cached eval data dir (`corpus_engine`) holding as many documents as `corpus`
    has lines, with the default model; None if there is none."""
    root = Settings().data_dir / "eval"
    want = sum(1 for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip())
    found = []
    for current in root.glob("*/CURRENT"):
        manifest = current.parent / "generations" / current.read_text().strip() / "manifest.json"
        if manifest.exists():
            meta = json.loads(manifest.read_text())
            if meta["counts"]["documents"] == want and meta["model"] == Settings().model:
                found.append((manifest.stat().st_mtime, current.parent))
    return max(found)[1] if found else None


def corpus_settings(args: argparse.Namespace, embedder: Any) -> tuple[Settings, str]:
    """Settings of a data dir holding the corpus's index, and the corpus's name."""
    from verbatim.engine import ingest_paths

    if args.data_dir:
        return _settings(args.data_dir), str(args.data_dir)
    if args.quick:
        settings = _settings(args.work / "default-data")
        if not (settings.data_dir / "CURRENT").exists():
            ingest_paths([ROOT / "corpus"], settings, embedder)
        return settings, "bundled corpus (corpus/)"
    cached = cached_eval(BENCH / "corpus.jsonl")
    if cached is not None:
        return _settings(cached), "CounselChat"
    print("no cached CounselChat index: ingesting it (~20 min here)", file=sys.stderr)
    from verbatim.eval import corpus_engine

    engine = corpus_engine(BENCH / "corpus.jsonl", _settings(Settings().data_dir), embedder)
    engine.close()
    cached = cached_eval(BENCH / "corpus.jsonl")
    assert cached is not None  # noqa: S101 (corpus_engine just wrote it)
    return _settings(cached), "CounselChat"


def questions(args: argparse.Namespace) -> list[str]:
    path = ROOT / "eval" / "seeds.jsonl" if args.quick else BENCH / "questions.dev.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [r["question"] for r in rows][: args.questions]


# ---------------------------------------------------------------------------- Qdrant and Edge


def qdrant_folder(work: Path, generation: str) -> Path:
    return work / f"qdrant-{generation}"


def publish_stage(data_dir: Path, folder: Path) -> dict:
    """Publish the generation of `data_dir` into a local-mode folder (in a process of its
    own, for its peak RSS): seconds and memory."""
    import qdrant_client

    from verbatim.index import load_index, qdrant

    index = load_index(_settings(data_dir))
    before = rss_mb()
    shutil.rmtree(folder, ignore_errors=True)
    client = qdrant_client.QdrantClient(path=str(folder))
    began = time.perf_counter()
    qdrant.publish(index, client)
    seconds = time.perf_counter() - began
    client.close()
    peak = rss_mb(key="VmHWM")
    (folder / "bench-published.json").write_text(json.dumps({"generation": index.generation}))
    return {"publish_s": round(seconds, 1), "rss_before_mb": before, "peak_rss_mb": peak}


def edge_config(dim: int, sparse: bool, threads: int | None = 1) -> Any:
    import qdrant_edge as qe

    return qe.EdgeConfig(
        vectors={"dense": qe.EdgeVectorParams(size=dim, distance=qe.Distance.Dot)},
        sparse_vectors={"bm25": qe.EdgeSparseVectorParams()} if sparse else None,
        max_search_threads=threads,
    )


def _edge_point(point: Any) -> Any:
    """A qdrant-client `PointStruct` as `publish` writes it, as an Edge point."""
    import qdrant_edge as qe

    vector: dict = {"dense": point.vector["dense"]}
    if "bm25" in point.vector:
        sparse = point.vector["bm25"]
        vector["bm25"] = qe.SparseVector(indices=sparse.indices, values=sparse.values)
    return qe.Point(id=point.id, vector=vector, payload=point.payload)


def build_edge(index: Any, folder: Path) -> dict:
    """The passages and the sentences of `index` as `publish` writes them, in two Edge shards
    under `folder` (kept: a second run reuses them)."""
    import qdrant_edge as qe

    from verbatim.index import qdrant

    if (folder / "done").exists():
        return json.loads((folder / "done").read_text())
    shutil.rmtree(folder, ignore_errors=True)
    dim, out = int(index.manifest["dim"]), {}
    for kind, points in (
        ("passages", qdrant._passage_points(index)),
        ("sentences", qdrant._sentence_points(index)),
    ):
        began = time.perf_counter()
        shard = qe.EdgeShard.create(str(folder / kind), edge_config(dim, kind == "passages"))
        while batch := [_edge_point(p) for p in itertools.islice(points, BATCH)]:
            shard.update(qe.UpdateOperation.upsert_points(batch))
        shard.flush()
        shard.close()
        out[f"{kind}_build_s"] = round(time.perf_counter() - began, 1)
    (folder / "done").write_text(json.dumps(out))
    return out


def edge_request(vector: np.ndarray, ids: list[int], n: int, exact: bool = True) -> Any:
    """QdrantStore's passage query (two prefetches of `n`, their union by RRF) for Edge."""
    import qdrant_edge as qe

    dense = qe.Query.Nearest(vector.tolist(), using="dense")
    prefetch = [qe.Prefetch(limit=n, query=dense, params=qe.SearchParams(exact=exact))]
    if ids:
        sparse = qe.SparseVector(indices=ids, values=[1.0] * len(ids))
        prefetch.append(qe.Prefetch(limit=n, query=qe.Query.Nearest(sparse, using="bm25")))
    return qe.QueryRequest(
        limit=2 * n,
        prefetches=prefetch,
        query=qe.Fusion.Rrf(k=60),  # type: ignore[arg-type]  # the stub omits Rrf
        with_vector=True,
        with_payload=True,
    )


# ---------------------------------------------------------------------------- part 1 and 2


class Real:
    """The real corpus opened three ways: the local `Index`, `QdrantStore` on local mode, and
    an Edge shard of its passages."""

    def __init__(self, settings: Settings, embedder: Any, work: Path) -> None:
        import qdrant_client
        import qdrant_edge as qe

        from verbatim.engine import open_engine
        from verbatim.index import qdrant

        self.settings, self.embedder = settings, embedder
        self.engine = open_engine(settings, embedder)
        if self.engine.index is None:
            raise RuntimeError(f"{settings.data_dir} has no local index")
        self.index = self.engine.index
        folder = qdrant_folder(work, self.index.generation)
        self.client = qdrant_client.QdrantClient(path=str(folder))
        self.qdrant, self.open_qdrant_ms = timed(
            qdrant.QdrantStore, self.client, settings.collection
        )
        edge = work / f"edge-{self.index.generation}" / "passages"
        self.edge = qe.EdgeShard.load(str(edge))

    def edge_candidates(self, vector: np.ndarray, terms: list[str], n: int) -> Any:
        ids = self.qdrant._terms.ids(terms)
        return self.qdrant._pool(self.edge.query(edge_request(vector, ids, n)), vector, terms, n)

    def close(self) -> None:
        self.edge.close()
        self.client.close()
        self.engine.close()


def _first_quote(found: Any) -> tuple:
    quotes = found.quotes + found.near_misses
    return tuple((q.doc_id, q.start, q.end) for q in quotes[:1])


def answer_times(real: Real, texts: list[str], n_qdrant: int) -> dict:
    """Per question, in one loop: the model's encode, `answer()` on the local store, and (for
    the first `n_qdrant`) on QdrantStore. Also how often the first quotes agree."""
    from verbatim.answer import answer, clean_question

    out: dict[str, list[float]] = {"encode": [], "local": [], "qdrant": [], "encode_q": []}
    same = 0
    for i, text in enumerate(texts):
        clean = clean_question(text, real.settings)
        out["encode"].append(timed(real.embedder.encode, [clean])[1])
        a, ms = timed(answer, text, real.index, real.embedder, real.settings)
        out["local"].append(ms)
        if i < n_qdrant:
            out["encode_q"].append(out["encode"][-1])
            b, ms = timed(answer, text, real.qdrant, real.embedder, real.settings)
            out["qdrant"].append(ms)
            same += _first_quote(a) == _first_quote(b)
    figures: dict[str, Any] = {k: summary(v) for k, v in out.items()}
    figures["same_first_quote"] = f"{same}/{min(n_qdrant, len(texts))}"
    return figures


def sentences_by_id(real: Real, passages: Any) -> list:
    """The candidates' sentences read by point id (`retrieve`, with vectors and payload): a
    passage's sentences are rows `sent_lo`..`sent_hi`, so no filter is needed. Not what
    QdrantStore.sentences does (a filtered scroll); timed beside it for comparison."""
    spans = zip(passages.sent_lo.tolist(), passages.sent_hi.tolist(), strict=True)
    ids = [row for lo, hi in spans for row in range(lo, hi)]
    name = f"{real.qdrant.base}-sentences"
    return real.client.retrieve(name, ids, with_payload=True, with_vectors=True)


def stage_times(real: Real, texts: list[str], n_qdrant: int) -> dict:
    """The passage stage alone (`candidates`, the question already encoded) on each store, and
    the sentence read (`sentences`) on the local and the Qdrant store."""
    from verbatim.answer import CANDIDATES, clean_question

    out: dict[str, list[float]] = {}
    same = 0
    for i, text in enumerate(texts):
        clean = clean_question(text, real.settings)
        vector = real.embedder.encode([clean], progress=False)[0]
        terms, _ = real.index.query_terms(clean)
        runs = {"local": real.index.candidates, "edge": real.edge_candidates}
        if i < n_qdrant:
            runs["qdrant"] = real.qdrant.candidates
        pools = {}
        for name, run in runs.items():
            pools[name], ms = timed(run, vector, terms, CANDIDATES)
            out.setdefault(f"{name}_candidates", []).append(ms)
        same += pools["edge"].passages.rows.tolist() == pools["local"].passages.rows.tolist()
        local_sent = timed(real.index.sentences, pools["local"].passages, terms)[1]
        out.setdefault("local_sentences", []).append(local_sent)
        if "qdrant" in pools:
            got = timed(real.qdrant.sentences, pools["qdrant"].passages, terms)[1]
            out.setdefault("qdrant_sentences", []).append(got)
            got = timed(sentences_by_id, real, pools["qdrant"].passages)[1]
            out.setdefault("qdrant_sentences_by_id", []).append(got)
    figures: dict[str, Any] = {k: summary(v) for k, v in out.items()}
    figures["edge_pool_equals_local"] = f"{same}/{len(texts)}"
    return figures


# ---------------------------------------------------------------------------- part 3: shards


def export_base(index: Any, folder: Path) -> Path:
    """What shard workers need of the real corpus, as .npy and JSON: the passage vectors,
    their BM25 term weights (CSR) and payloads."""
    from verbatim.index import qdrant

    folder.mkdir(parents=True, exist_ok=True)
    ptr, ids, values = index.lexical.weights()
    np.save(folder / "vectors.npy", np.asarray(index.passage_vectors, dtype=np.float32))
    np.save(folder / "ptr.npy", np.asarray(ptr, dtype=np.int64))
    np.save(folder / "ids.npy", np.asarray(ids, dtype=np.int64))
    np.save(folder / "values.npy", np.asarray(values, dtype=np.float32))
    payloads = [p.payload for p in qdrant._passage_points(index)]
    (folder / "payloads.json").write_text(json.dumps(payloads))
    return folder


def synthetic_rows(base: np.ndarray, lo: int, hi: int, noise: bool) -> tuple:
    """Rows `lo`..`hi` of a synthetic corpus: each row's base passage and its vector, the base
    vector plus noise (per row, whatever the sharding), normalised. Without noise the rows
    are the real passages. The third array scales each row's BM25 weights (0.9 to 1.1), so
    that copies of one base passage do not tie: engines break ties as they like."""
    rows = np.arange(lo, hi)
    if not noise:
        return rows, base[rows], np.ones(len(rows), dtype=np.float32)
    picks = (rows * 2_654_435_761) % len(base)
    vectors = base[picks].copy()
    for chunk in range(lo // CHUNK, (hi - 1) // CHUNK + 1):
        draw = np.random.default_rng(chunk).normal(0, NOISE, (CHUNK, base.shape[1]))
        a, b = max(lo, chunk * CHUNK), min(hi, (chunk + 1) * CHUNK)
        vectors[a - lo : b - lo] += draw[a - chunk * CHUNK : b - chunk * CHUNK]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scale = 0.9 + 0.2 * ((rows * 40_503) % 10_007) / 10_007  # BM25 ties broken, per row
    return picks, vectors.astype(np.float32), scale.astype(np.float32)


def build_shard(spec: dict) -> Any:
    """Create (or load, when built before) the Edge shard `spec` describes: rows `lo`..`hi`
    of a corpus of `size` passages drawn around the real ones under `base`."""
    import qdrant_edge as qe

    folder, base_dir = Path(spec["folder"]), Path(spec["base"])
    base = np.load(base_dir / "vectors.npy")
    if (folder / "done").exists():
        return qe.EdgeShard.load(str(folder), edge_config(base.shape[1], True))
    shutil.rmtree(folder, ignore_errors=True)
    ptr, ids, values = (np.load(base_dir / f"{n}.npy") for n in ("ptr", "ids", "values"))
    payloads = json.loads((base_dir / "payloads.json").read_text())
    shard = qe.EdgeShard.create(str(folder), edge_config(base.shape[1], True))
    for at in range(spec["lo"], spec["hi"], BATCH):
        end = min(spec["hi"], at + BATCH)
        picks, vectors, scale = synthetic_rows(base, at, end, spec["noise"])
        points = []
        for row, pick, vec in zip(range(at, end), picks.tolist(), vectors, strict=True):
            vector: dict = {"dense": vec.tolist()}
            a, b = int(ptr[pick]), int(ptr[pick + 1])
            if b > a:
                weights = (values[a:b] * scale[row - at]).tolist()
                vector["bm25"] = qe.SparseVector(ids[a:b].tolist(), weights)
            payload = payloads[pick] | ({"pid": f"s{row}"} if spec["noise"] else {})
            points.append(qe.Point(id=row, vector=vector, payload=payload))
        shard.update(qe.UpdateOperation.upsert_points(points))
    shard.flush()
    (folder / "done").write_text("")
    return shard


def shard_answer(shard: Any, request: bytes, dim: int) -> bytes:
    """One fanned-out query: header (terms, n), vector, term ids -> the shard's candidates
    (ids, BM25 over the query's terms, vectors) and their payloads as JSON."""
    count, n = np.frombuffer(request[:8], dtype=np.int32).tolist()
    vector = np.frombuffer(request[8 : 8 + 4 * dim], dtype=np.float32)
    ids = np.frombuffer(request[8 + 4 * dim :], dtype=np.int32).tolist()[:count]
    hits = shard.query(edge_request(vector, ids, n))
    rows = np.array([p.id for p in hits], dtype=np.int64)
    vectors = np.array([p.vector["dense"] for p in hits], dtype=np.float32).reshape(-1, dim)
    bm25 = np.zeros(len(hits), dtype=np.float32)
    for i, p in enumerate(hits):
        sparse = p.vector.get("bm25")
        weight = dict(zip(sparse.indices, sparse.values, strict=True)) if sparse else {}
        for t in ids:  # term by term in float32, as QdrantStore._pool sums them
            bm25[i] += np.float32(weight.get(t, 0.0))
    payload = json.dumps([p.payload for p in hits]).encode()
    head = np.array([len(hits)], dtype=np.int64).tobytes()
    return head + rows.tobytes() + bm25.tobytes() + vectors.tobytes() + payload


def shard_worker(conns: list[Connection], spec: dict) -> None:
    """A shard's process: build or load its shard, say so on the first pipe, then answer the
    queries on every pipe (one per client), one at a time, until told to stop (b"")."""
    began = time.perf_counter()
    shard = build_shard(spec)
    dim = int(np.load(Path(spec["base"]) / "vectors.npy", mmap_mode="r").shape[1])
    ready = {"build_s": round(time.perf_counter() - began, 1), "rss_mb": rss_mb()}
    conns[0].send_bytes(json.dumps(ready).encode())
    live = list(conns)
    while live:
        for conn in wait(live):
            assert isinstance(conn, Connection)  # noqa: S101 (for mypy: wait returns these)
            request = conn.recv_bytes()
            if not request:
                live.remove(conn)
                continue
            conn.send_bytes(shard_answer(shard, request, dim))
    shard.close()


def merge(replies: list[bytes], vector: np.ndarray, n: int) -> np.ndarray:
    """The shards' candidates merged as `QdrantStore._pool` merges one engine's: the `n`
    nearest by the returned vectors (ties to the lower row) and the `n` best by BM25 (above
    0), their union; returns the pooled rows (payloads parsed, as a client would)."""
    dim = len(vector)
    rows, bm25, vectors = [], [], []
    for reply in replies:
        m = int(np.frombuffer(reply[:8], dtype=np.int64)[0])
        at = 8 + 8 * m
        rows.append(np.frombuffer(reply[8:at], dtype=np.int64))
        bm25.append(np.frombuffer(reply[at : at + 4 * m], dtype=np.float32))
        end = at + 4 * m + 4 * m * dim
        vectors.append(np.frombuffer(reply[at + 4 * m : end], dtype=np.float32))
        json.loads(reply[end:])
    row, lex = np.concatenate(rows), np.concatenate(bm25)
    dense = np.concatenate(vectors).reshape(-1, dim) @ vector
    near = np.lexsort((row, -dense))[:n]
    order = np.argsort(row, kind="stable")
    lexical = order[np.flatnonzero(lex[order] > 0)]
    lexical = lexical[np.argsort(-lex[lexical], kind="stable")[:n]]
    return np.unique(row[np.union1d(near, lexical)])


class Cluster:
    """N shard processes and `clients` pipes to each (one per concurrent client)."""

    def __init__(self, specs: list[dict], clients: int) -> None:
        context = get_context("spawn")
        self.pipes: list[list[Connection]] = [[] for _ in range(clients)]
        self.workers, self.ready = [], []
        for spec in specs:
            ends = [context.Pipe() for _ in range(clients)]
            worker = context.Process(target=shard_worker, args=([b for _, b in ends], spec))
            worker.start()
            self.workers.append(worker)
            for c, (mine, _) in enumerate(ends):
                self.pipes[c].append(mine)
        for worker_pipe in self.pipes[0]:
            self.ready.append(json.loads(worker_pipe.recv_bytes()))

    def query(self, client: int, vector: np.ndarray, ids: list[int], n: int) -> np.ndarray:
        request = np.array([len(ids), n], dtype=np.int32).tobytes()
        request += vector.astype(np.float32).tobytes() + np.array(ids, np.int32).tobytes()
        for pipe in self.pipes[client]:
            pipe.send_bytes(request)
        return merge([p.recv_bytes() for p in self.pipes[client]], vector, n)

    def close(self) -> None:
        for pipes in self.pipes:
            for pipe in pipes:
                pipe.send_bytes(b"")
        for worker in self.workers:
            worker.join()


def drive(cluster: Cluster, queries: list[tuple], clients: int, n: int) -> tuple[dict, dict]:
    """Every query once, from `clients` threads at a time: QPS and latency, and the rows."""
    took: list[float] = []
    pools: dict[int, list[int]] = {}
    todo = iter(range(len(queries)))
    lock = threading.Lock()

    def client(c: int) -> None:
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            vector, ids = queries[i]
            rows, ms = timed(cluster.query, c, vector, ids, n)
            with lock:
                took.append(ms)
                pools[i] = rows.tolist()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - began
    return {"qps": round(len(queries) / seconds, 1), **summary(took)}, pools


def shard_specs(base: Path, folder: Path, size: int, shards: int, noise: bool) -> list[dict]:
    cut = [size * i // shards for i in range(shards + 1)]
    return [
        {"folder": str(folder / f"{i}"), "base": str(base), "lo": cut[i], "hi": cut[i + 1]}
        | {"noise": noise}
        for i in range(shards)
    ]


def simulate_size(args: argparse.Namespace, base: Path, size: int, queries: list) -> list:
    """Every shard count for one corpus size: a row per (shards, clients)."""
    from verbatim.answer import CANDIDATES

    noise = size != len(np.load(base / "vectors.npy", mmap_mode="r"))
    rows, reference = [], None
    for shards in args.shards:
        folder = args.work / "shards" / f"{size}-{shards}"
        cluster = Cluster(shard_specs(base, folder, size, shards, noise), max(args.clients))
        drive(cluster, queries[:5], 1, CANDIDATES)  # warm up each shard
        for clients in args.clients:
            figures, pools = drive(cluster, queries, clients, CANDIDATES)
            reference = reference or pools
            same = sum(pools[i] == reference[i] for i in pools)
            on_disk = folder_bytes(folder)
            rows.append({
                "passages": size, "synthetic": noise, "shards": shards, "clients": clients,
                "shard_passages": size // shards, **figures, "same_pool_as_1_shard": same,
                "build_s": max(r["build_s"] for r in cluster.ready),
                "worker_rss_mb": [r["rss_mb"] for r in cluster.ready],
                "bytes_per_passage": round(on_disk["allocated"] / size), "load": load(),
                "apparent_bytes_per_passage": round(on_disk["bytes"] / size),
            })  # fmt: skip
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        cluster.close()
        if noise and not args.keep:
            shutil.rmtree(folder)
    return rows


# ---------------------------------------------------------------------------- part 4: bytes


def sqlite_tables(path: Path) -> dict[str, int]:
    """Bytes of each table of a SQLite file, its indexes included (dbstat), if SQLite has
    dbstat; else the whole file under "*"."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = dict(db.execute("SELECT name, tbl_name FROM sqlite_master WHERE tbl_name != ''"))
        sizes: dict[str, int] = {}
        for name, size in db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            table_name = names.get(name, name)
            sizes[table_name] = sizes.get(table_name, 0) + int(size)
        return sizes
    except sqlite3.DatabaseError:
        return {"*": path.stat().st_size}
    finally:
        db.close()


def local_bytes(path: Path) -> dict:
    """The generation's files, attributed to the passage side, the sentence side and the
    documents (texts and metadata)."""
    files = {p.name: folder_bytes(path / p.name)["allocated"] for p in path.iterdir()}
    tables = sqlite_tables(path / "store.sqlite")
    sentence_tables = sum(v for k, v in tables.items() if "sentence" in k)
    passage_tables = sum(v for k, v in tables.items() if "passage" in k)
    return {
        "files": files,
        "sqlite_tables": tables,
        "passages": files["passages.npy"] + files["passages.faiss"] + files["bm25"]
        + passage_tables,
        "sentences": files["sentences.npy"] + files["bm25-sentences"] + sentence_tables,
        "documents": sum(tables.values()) - passage_tables - sentence_tables,
    }  # fmt: skip


def qdrant_bytes(folder: Path, generation: str) -> dict:
    """Each collection's folder in a local-mode Qdrant folder."""
    out = {}
    for path in (folder / "collection").iterdir():
        if generation in path.name:
            out[path.name.rsplit("-", 1)[1]] = folder_bytes(path)
    return out


def rss_stage(kind: str, path: str) -> dict:
    """RSS added by opening one store in a fresh process (after its imports)."""
    import qdrant_client
    import qdrant_edge as qe

    from verbatim.index import load_index, qdrant

    before = rss_mb()
    began = time.perf_counter()
    if kind == "local":
        held: Any = load_index(_settings(Path(path)))
    elif kind == "qdrant":
        held = qdrant.QdrantStore(qdrant_client.QdrantClient(path=path), Settings().collection)
    else:
        held = [qe.EdgeShard.load(str(Path(path) / k)) for k in ("passages", "sentences")]
    seconds = time.perf_counter() - began
    return {"open_s": round(seconds, 2), "added_rss_mb": round(rss_mb() - before, 1), "_": id(held)}


# ---------------------------------------------------------------------------- the report


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def latency_tables(fig: dict) -> str:
    """Parts 1 and 2: answer() and the passage stage, in ms and as ratios to the encode."""
    ans, st = fig["answer_ms"], fig["stage_ms"]
    header = ["what (MEASURED, real data)", "questions", "p50 ms", "p95 ms", "p50 / encode"]
    header.append("p95 / encode")
    rows = []
    for label, key, enc in (
        ("model encode of the question", "encode", "encode"),
        ("answer(), local store (Index)", "local", "encode"),
        ("model encode (QdrantStore's questions)", "encode_q", "encode_q"),
        ("answer(), QdrantStore on qdrant-client local mode", "qdrant", "encode_q"),
    ):
        a, e = ans[key], ans[enc]
        rows.append([label, a["n"], a["p50"], a["p95"], _ratio(a["p50"], e["p50"])])
        rows[-1].append(_ratio(a["p95"], e["p95"]))
    out = table("answer() (what Engine.ask runs), encode included", header, rows)
    out += f"\n\nSame first quote, QdrantStore vs local: {ans['same_first_quote']}."
    rows = []
    for label, key in (
        ("candidates(), local store", "local_candidates"),
        ("candidates(), QdrantStore, local mode", "qdrant_candidates"),
        ("same plan on Qdrant Edge (query + _pool)", "edge_candidates"),
        ("sentences(), local store", "local_sentences"),
        ("sentences(), QdrantStore, local mode", "qdrant_sentences"),
        ("same sentences by id (retrieve), local mode", "qdrant_sentences_by_id"),
    ):
        a, e = st[key], ans["encode"]
        rows.append([label, a["n"], a["p50"], a["p95"], _ratio(a["p50"], e["p50"])])
        rows[-1].append(_ratio(a["p95"], e["p95"]))
    out += table("Passage stage and sentence read alone (question already encoded)", header, rows)
    out += f"\n\nEdge pool equals the local store's pool: {st['edge_pool_equals_local']}."
    return out


def simulation_table(rows: list[dict]) -> str:
    header = ["passages", "vectors", "shards", "passages/shard", "clients", "QPS", "p50 ms"]
    header += ["p95 ms", "same pool as 1 shard", "shard build s", "RSS MB/shard"]
    header += ["Edge bytes/passage"]
    body = [
        [
            f"{r['passages']:,}",
            "SIMULATED: real + noise" if r["synthetic"] else "real",
            r["shards"],
            f"{r['shard_passages']:,}",
            r["clients"],
            r["qps"],
            r["p50"],
            r["p95"],
            f"{r['same_pool_as_1_shard']}/{r['n']}",
            r["build_s"],
            max(r["worker_rss_mb"]),
            f"{r['bytes_per_passage']:,}",
        ]
        for r in rows
    ]
    title = (
        "SIMULATED sharded deployment: N Edge shards, one process each, on this machine's "
        "cores; passage stage only (fan-out, merge as QdrantStore._pool), exact dense search"
    )
    return table(title, header, body)


def bytes_table(fig: dict) -> str:
    c = fig["counts"]
    header = ["store (MEASURED)", "part", "bytes", "per passage", "per sentence", "per document"]
    rows = []

    def add(store: str, part: str, size: int, per: str) -> None:
        cells = {"passage": "-", "sentence": "-", "document": "-"}
        cells[per] = f"{size / c[per + 's']:,.0f}"
        rows.append([store, part, f"{size:,}", cells["passage"], cells["sentence"]])
        rows[-1].append(cells["document"])

    local = fig["bytes"]["local"]
    add("local", "passages.npy + .faiss + bm25/ + passages table", local["passages"], "passage")
    add("local", "sentences.npy + bm25-sentences/ + table", local["sentences"], "sentence")
    add("local", "documents table (texts, metadata)", local["documents"], "document")
    for kind, per in (
        ("passages", "passage"),
        ("sentences", "sentence"),
        ("documents", "document"),
    ):
        add(
            "Qdrant local mode",
            f"collection {kind}",
            fig["bytes"]["qdrant"][kind]["allocated"],
            per,
        )
    for kind, per in (("passages", "passage"), ("sentences", "sentence")):
        add("Qdrant Edge", f"shard {kind}", fig["bytes"]["edge"][kind]["allocated"], per)
    title = "Bytes on disk (allocated; Edge preallocates sparse files: apparent sizes in JSON)"
    out = table(title, header, rows)
    header = ["store (MEASURED)", "open s", "RSS added MB", "per passage, bytes"]
    rows = [
        [k, r["open_s"], r["added_rss_mb"], f"{r['added_rss_mb'] * MB / c['passages']:,.0f}"]
        for k, r in fig["rss"].items()
    ]
    out += table("Resident memory added by opening each store (own process)", header, rows)
    return out


def report(fig: dict) -> str:
    c = fig["counts"]
    head = (
        f"Corpus: {fig['corpus']}, {c['documents']:,} documents, {c['passages']:,} passages, "
        f"{c['sentences']:,} sentences; model {fig['model']}; {os.cpu_count()} CPUs; load "
        f"average (1, 5, 15 min) at start {fig['load']['start']}, at end {fig['load']['end']}."
    )
    publish = fig["publish"]
    head += (
        f"\n\npublish() into a local-mode folder: {publish.get('publish_s', 'cached')} s, peak "
        f"RSS {publish.get('peak_rss_mb', '?')} MB (index loaded: "
        f"{publish.get('rss_before_mb', '?')} MB) [MEASURED, {publish.get('when', 'this run')}]."
    )
    parts = [head, latency_tables(fig), simulation_table(fig["simulation"]), bytes_table(fig)]
    return "\n".join(parts)


# ---------------------------------------------------------------------------- main


def sim_queries(real: Real, texts: list[str], n: int) -> list[tuple]:
    """(vector, BM25 term ids) of `n` questions (the list repeated if shorter)."""
    from verbatim.answer import clean_question

    out = []
    for i in range(n):
        clean = clean_question(texts[i % len(texts)], real.settings)
        terms, _ = real.index.query_terms(clean)
        vector = real.embedder.encode([clean], progress=False)[0]
        out.append((vector, real.qdrant._terms.ids(terms)))
    return out


def prepare(args: argparse.Namespace, settings: Settings) -> dict:
    """Edge shards, worker files, publish (each once), bytes and RSS of the real corpus."""
    from verbatim.index import load_index

    with load_index(settings) as index:
        fig = {"generation": index.generation, "counts": index.manifest["counts"]}
        fig["model"] = index.manifest["model"]
        fig["edge_build"] = build_edge(index, args.work / f"edge-{index.generation}")
        export_base(index, args.work / f"base-{index.generation}")
        fig["bytes"] = {"local": local_bytes(index.path)}
        path = index.path
    folder = qdrant_folder(args.work, fig["generation"])
    if (folder / "bench-published.json").exists() and not args.republish:
        fig["publish"] = json.loads((folder / "bench-published.json").read_text())
        fig["publish"]["when"] = "an earlier run, folder reused"
    else:
        fig["publish"] = stage("publish", str(settings.data_dir), str(folder))
        (folder / "bench-published.json").write_text(json.dumps(fig["publish"]))
    fig["bytes"]["qdrant"] = qdrant_bytes(folder, fig["generation"])
    edge = args.work / f"edge-{fig['generation']}"
    fig["bytes"]["edge"] = {k: folder_bytes(edge / k) for k in ("passages", "sentences")}
    fig["rss"] = {
        "local": stage("rss", "local", str(settings.data_dir)),
        "Qdrant local mode": stage("rss", "qdrant", str(folder)),
        "Qdrant Edge (passages + sentences)": stage("rss", "edge", str(edge)),
    }
    fig["local_generation"] = str(path)
    return fig


def run(args: argparse.Namespace) -> dict:
    from verbatim.engine import make_embedder

    started = load()
    embedder = make_embedder(Settings(progress=False))
    settings, name = corpus_settings(args, embedder)
    fig: dict[str, Any] = {"corpus": name, "data_dir": str(settings.data_dir)}
    fig |= prepare(args, settings)
    real = Real(settings, embedder, args.work)
    texts = questions(args)
    fig["answer_ms"] = answer_times(real, texts, args.qdrant_questions)
    fig["stage_ms"] = stage_times(real, texts, args.qdrant_questions)
    fig["open_qdrant_store_ms"] = round(real.open_qdrant_ms, 1)
    fig["load_after_real"] = load()
    queries = sim_queries(real, texts, args.sim_queries)
    real.close()
    base = args.work / f"base-{fig['generation']}"
    sizes = [fig["counts"]["passages"], *args.sizes]
    fig["simulation"] = [row for size in sizes for row in simulate_size(args, base, size, queries)]
    fig["load"] = {"start": started, "end": load()}
    fig["args"] = {k: str(v) for k, v in vars(args).items()}
    return fig


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="bundled corpus, small shards")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--data-dir", type=Path, help="a data dir with the corpus's index")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "qdrant_bench")
    parser.add_argument("--questions", type=int, help="questions asked (default 200; quick 52)")
    parser.add_argument("--qdrant-questions", type=int, help="of them, asked of QdrantStore")
    parser.add_argument("--passages", "--sizes", dest="sizes", type=int, nargs="*")
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--sim-queries", type=int, help="queries per simulated run")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic shards")
    parser.add_argument("--republish", action="store_true", help="publish to Qdrant again")
    parser.add_argument("--stage", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    quick = {"questions": 52, "qdrant_questions": 52, "sizes": [20_000], "sim_queries": 40}
    full = {"questions": 200, "qdrant_questions": 30, "sizes": [100_000, 300_000]}
    for key, value in (quick if args.quick else full | {"sim_queries": 80}).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main() -> None:
    args = parse_args()
    if args.stage:
        kind, *rest = args.stage
        done = publish_stage(Path(rest[0]), Path(rest[1])) if kind == "publish" else None
        print(json.dumps(done or rss_stage(rest[0], rest[1])))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    fig = run(args)
    text = report(fig)
    fig["markdown"] = text
    print(text)
    if args.json:
        args.json.write_text(json.dumps(fig, indent=2))


if __name__ == "__main__":
    main()
