"""Ray figures (`pip install ".[ray]"`), two benches.

1. Texts embedded per second on a local Ray cluster with 1 and 2 model actors, against the
   plain `ModelEmbedder` in the same run (issue #21's figures):
   `python bench/ray_bench.py [--texts N] [--json OUT]`. The texts are CounselChat passages
   from ../shared/benchmarks, as ingest embeds them.
2. The streaming ingest into Qdrant (`verbatim.index.cluster.stream`, issue #34) over
   `make scale`'s realistic passages with its stand-in embedder (bench.scale.Jitter):
   `python -m bench.ray_bench --stream N [--sink null|local] [--workers W] [--json OUT]`.
   `--sink local` runs the whole ingest into qdrant-client's local mode (the driver writes
   what the workers send, then weighs, calibrates and publishes; local mode itself holds every
   point in the driver's memory, so keep N small). `--sink null` measures the workers' pass
   and the driver's counters alone: workers "write" to a client that keeps only the progress
   records (what a Qdrant server would take), so nothing but the pipeline is measured.
   Reported: wall time by pass, the driver's peak RSS, each worker's peak RSS, and the
   points the workers sent.
3. Answers of a streamed generation against the local store's: `python -m bench.ray_bench
   --parity N` (N CounselChat dev questions, 0 for all; see `parity`).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import ray

from bench.scale import Jitter, prepare, settings_for, write_corpus
from verbatim.index import ModelEmbedder
from verbatim.index.cluster import RayEmbedder

CORPUS = Path("../shared/benchmarks/counselchat/corpus.jsonl")


def _rss_mb() -> float:
    """This process's peak resident memory (VmHWM; not ru_maxrss, which a child inherits)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def texts(n: int) -> list[str]:
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    paragraphs = [p for r in rows for p in r["text"].split("\n\n") if p.strip()]
    return paragraphs[:n]


def rate(encode, batch: list[str]) -> float:
    began = time.perf_counter()
    encode(batch)
    return round(len(batch) / (time.perf_counter() - began), 1)


def embedding(n: int) -> dict:
    batch = texts(n)
    cache = Path.home() / ".cache" / "verbatim-bench-models"
    options = {"model": "all-MiniLM-L6-v2", "cache_dir": cache}
    plain = ModelEmbedder(**options)
    plain.encode(["warm up"])
    figures = {"texts": len(batch), "plain_texts_per_s": rate(plain.encode, batch)}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    for workers in (1, 2):
        embedder = RayEmbedder(workers, **options)
        embedder.encode(["warm up"])  # starts the actors' models once, as a long ingest would
        figures[f"ray_{workers}_texts_per_s"] = rate(embedder.encode, batch)
    ray.shutdown()
    return figures


class Phases(logging.Handler):
    """The streaming ingest's log lines (the time each pass took)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class NullClient:
    """What `--sink null` writes to, in the workers and the driver: the progress records go to
    files in `folder` (shared, as a server's collection is), every other point is only
    counted, as a server would take it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.points = 0
        self.tally = folder / f"points-{os.getpid()}.json"

    def upsert(self, name: str, points: list, wait: bool = True) -> None:
        for p in points:
            if isinstance(p.payload, dict) and "record" in p.payload:
                (self.folder / f"record-{p.id}.json").write_text(json.dumps(p.payload))
            else:
                self.points += 1
        self.tally.write_text(json.dumps({"points": self.points}))

    def scroll(self, name: str, scroll_filter=None, limit=1024, offset=None, **_):
        kind = scroll_filter.must[0].match.value
        found = [json.loads(p.read_text()) for p in self.folder.glob("record-*.json")]
        return [SimpleNamespace(payload=r) for r in found if r["record"] == kind], None

    def retrieve(self, *args, **kwargs) -> list:
        return []

    def update_vectors(self, *args, **kwargs) -> None:
        pass

    def delete(self, *args, **kwargs) -> None:
        pass


def _kind(kind: str) -> SimpleNamespace:
    """A filter condition on a progress record's kind, as `NullClient.scroll` reads it."""
    return SimpleNamespace(match=SimpleNamespace(value=kind))


class Measured(Jitter):
    """`Jitter`, writing this process's peak RSS to `folder/<pid>.json` after each call."""

    def __init__(self, base: np.ndarray, folder: Path) -> None:
        super().__init__(base)
        self.folder = folder

    def encode(self, texts: list[str], progress: bool | None = None) -> np.ndarray:
        out = super().encode(texts, progress)
        (self.folder / f"rss-{os.getpid()}.json").write_text(json.dumps({"peak_rss_mb": _rss_mb()}))
        return out


def stand_in(base: str, folder: str) -> Measured:
    """A worker's embedder."""
    return Measured(np.load(base), Path(folder))


def null_workers() -> None:
    """Every Ray worker's setup with `--sink null`: its Qdrant client is a `NullClient`."""
    from verbatim.index import qdrant

    folder = Path(os.environ["VERBATIM_BENCH_NULL"])
    qdrant.connect = lambda url, key=None: NullClient(folder)  # type: ignore[assignment]


def streaming(n: int, sink: str, workers: int, scale_root: Path) -> dict:
    """One streaming ingest of `n` realistic passages (see the module's docstring)."""
    from verbatim.calibrate import calibrate
    from verbatim.index import cluster, qdrant
    from verbatim.ingest.files import collect

    work = Path(tempfile.mkdtemp(prefix="verbatim-stream-"))
    sentences = json.loads((scale_root / "sentences.json").read_text())
    write_corpus(work / "corpus", sentences, n)
    url = "http://null.invalid" if sink == "null" else str(work / "q")
    settings = settings_for(work).model_copy(update={"store": "qdrant", "qdrant_url": url})
    (work / "rss").mkdir()
    make = functools.partial(stand_in, str(scale_root / "base.npy"), str(work / "rss"))
    null = {
        "worker_process_setup_hook": "bench.ray_bench.null_workers",
        # the hook runs before a worker knows the driver's folder: bench is imported from here
        "env_vars": {"VERBATIM_BENCH_NULL": str(work / "rss"), "PYTHONPATH": str(Path.cwd())},
    }
    environment = null if sink == "null" else None
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=environment)
    phases = Phases()
    logging.getLogger("verbatim").addHandler(phases)
    logging.getLogger("verbatim").setLevel(logging.INFO)
    began = time.perf_counter()
    figures: dict = {"passages": n, "sink": sink, "workers": workers, "phases": phases.lines}
    if sink == "null":
        client, base = NullClient(work / "rss"), "verbatim-default-bench-0"
        groups = cluster.batches(collect([work / "corpus"], settings)[0])
        runner = cluster.run_on_ray(client, base, settings, make, workers)
        stats = cluster.write_all(client, base, groups, runner)
        figures["first_pass_s"] = round(time.perf_counter() - began, 1)
        counting = time.perf_counter()  # the counters, and a Ray task a batch (no points)
        terms, _ = cluster.weigh_all(client, base, stats, settings)
        figures["second_pass_s"] = round(time.perf_counter() - counting, 1)
        weighed = client.scroll("", SimpleNamespace(must=[_kind("weights")]))[0]
        figures["batches_weighed"] = len(weighed)  # by Ray tasks, through their own clients
        figures["terms"] = len(terms)
        figures["points_sent"] = sum(
            json.loads(p.read_text())["points"] for p in (work / "rss").glob("points-*.json")
        )
    else:
        model = make()
        report, _ = cluster.stream(
            [work / "corpus"],
            settings,
            model.dim,
            lambda probe: calibrate(probe, model, settings),
            lambda client, base: cluster.run_on_ray(client, base, settings, make, workers),
        )
        figures["generation"] = report.generation
        qdrant.client_for(settings).close()
    figures["seconds"] = round(time.perf_counter() - began, 1)
    figures["driver_peak_rss_mb"] = _rss_mb()
    figures["worker_peak_rss_mb"] = sorted(
        json.loads(p.read_text())["peak_rss_mb"] for p in (work / "rss").glob("rss-*.json")
    )
    ray.shutdown()
    shutil.rmtree(work)
    return figures


class Cached:
    """An `Embedder` that knows the texts of one local generation: each passage's, sentence's
    and document's vector as that generation stores it, so a streamed generation of the same
    corpus gets the real model's vectors without running it."""

    def __init__(self, corpus: Path, engine) -> None:
        from verbatim.index.build import passage_text
        from verbatim.index.documents import document_text
        from verbatim.ingest import read_documents

        index = engine.local()
        read = read_documents([corpus], engine.settings)
        if [p.id for p in read.passages] != list(index.passage_ids):
            raise RuntimeError("the corpus splits otherwise than its cached generation")
        docs = {d.id: d for d in read.documents}
        passages = np.asarray(index.passage_vectors, dtype=np.float32)
        sentences = np.asarray(index.sentence_vectors, dtype=np.float32)
        self.vectors: dict[str, np.ndarray] = {}
        row = 0
        for at, p in enumerate(read.passages):
            self.vectors[passage_text(docs[p.doc_id], p)] = passages[at]
            for s in p.sentences:
                self.vectors[docs[p.doc_id].text[s.start : s.end]] = sentences[row]
                row += 1
        for d in read.documents:
            self.vectors[document_text(d.title, d.text)] = index.document_vectors.of(d.id)

    @property
    def dim(self) -> int:
        return len(next(iter(self.vectors.values())))

    def encode(self, texts: list[str], progress: bool | None = None) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts]).astype(np.float32)


def parity(n: int | None) -> dict:
    """CounselChat's dev questions on its cached local generation (real model) and on the same
    corpus streamed into Qdrant's local mode (its workers in this process, the cached vectors):
    the share of questions with the same first quote, and both nDCG@10."""
    from verbatim.calibrate import calibrate
    from verbatim.engine import Engine
    from verbatim.eval import corpus_engine, evaluate, read_questions
    from verbatim.index import cluster, qdrant
    from verbatim.settings import Settings

    cc = Path("../shared/benchmarks/counselchat")
    local = corpus_engine(cc / "corpus.jsonl", Settings(progress=False))
    cached = Cached(cc / "corpus.jsonl", local)
    work = Path(tempfile.mkdtemp(prefix="verbatim-parity-"))
    update = {"store": "qdrant", "qdrant_url": ":memory:", "data_dir": work}
    settings = local.settings.model_copy(update=update)
    began = time.perf_counter()
    cluster.stream(
        [cc / "corpus.jsonl"],
        settings,
        cached.dim,
        lambda probe: calibrate(probe, local.embedder, settings),
        lambda client, base: cluster.run_here(client, base, settings, lambda: cached),
    )
    streamed_s = time.perf_counter() - began
    remote = Engine(settings, None, local.embedder, qdrant.open_store(settings))
    questions = read_questions(cc / "questions.dev.jsonl")[:n]
    a = evaluate(questions, local, progress=False, baseline=False)
    b = evaluate(questions, remote, progress=False, baseline=False)
    same = [x.first_quote == y.first_quote for x, y in zip(a.results, b.results, strict=True)]
    shutil.rmtree(work, ignore_errors=True)
    return {
        "questions": len(questions),
        "same_first_quote": round(sum(same) / len(same), 4),
        "local": a.metrics["retrieval"],
        "streamed": b.metrics["retrieval"],
        "thresholds": [local.answering.thresholds, remote.answering.thresholds],
        "stream_s": round(streamed_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--stream", type=int, help="passages: bench the streaming ingest")
    parser.add_argument("--sink", choices=["null", "local"], default="null")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--scale-root",
        type=Path,
        help="a `bench.scale --keep` folder (base.npy, sentences.json); default: made afresh",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--parity", type=int, help="CounselChat dev questions (0: all): streamed against local"
    )
    args = parser.parse_args()
    if args.parity is not None:
        figures = parity(args.parity or None)
    elif args.stream:
        if args.scale_root is None:
            args.scale_root = Path(tempfile.mkdtemp(prefix="verbatim-scale-"))
            prepare(args.scale_root, Path("../shared/benchmarks"))
        figures = streaming(args.stream, args.sink, args.workers, args.scale_root)
    else:
        figures = embedding(args.texts)
    print(json.dumps(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
