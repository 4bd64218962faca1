"""`make scale`: time and memory of the real ingest and search code at 10k, 100k and 1M passages.

Encoding a million passages with MiniLM would take hours here, so the embedder is replaced by
one that returns vectors drawn around real embeddings: each text gets a real CounselChat passage
vector (chosen by a hash of the text) plus Gaussian noise, normalised. Everything else is the
real code path: read_documents over JSONL files, split_passages, SQLite, BM25, FAISS (exact up
to 50,000 passages, `EXACT_SEARCH_LIMIT`; IVF above), calibration, load_index, search and
`answer()`. Questions are the real CounselChat dev questions, embedded by the real model.

Each size is built in one subprocess and searched in another, so each reports its own peak RSS.
The JSON is `{"sizes": {"<size>": {...}}}`: `answer_p50_ms` is the whole `answer()` with the
real model, `encode_p50_ms` that model's bare encode of the same questions, taken in turns in the
same run; `answer_without_encode_p50_ms` uses the questions' stored vectors.
Run: `python -m bench.scale [--sizes 10000 100000 1000000] [--json OUT]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np

from bench.common import checked, target_lines
from verbatim.eval.metrics import percentile
from verbatim.records import Embedder, Filters
from verbatim.settings import Settings

PASSAGES_PER_DOC = 50
DOCS_PER_FILE = 400  # about 17 MB of JSONL a file, under the default VERBATIM_MAX_FILE_BYTES
PASSAGE_CHARS = 900  # the default `passage_chars`
NOISE = 0.03  # per dimension: a copy keeps cosine ~.86 with the real vector it is drawn around
SAMPLE_S = 0.25  # how often the build stage samples its resident memory (`Phases`)


class Jitter:
    """A stand-in `Embedder`: real vectors plus noise, deterministic per text."""

    name = "jitter"

    def __init__(self, base: np.ndarray) -> None:
        self.base = base
        rng = np.random.default_rng(0)
        self.noise = rng.normal(0, NOISE, (1 << 16, self.dim)).astype(np.float32)

    @property
    def dim(self) -> int:
        return int(self.base.shape[1])

    def encode(self, texts: list[str], progress: bool | None = None) -> np.ndarray:
        """A real vector and a noise vector, both picked by the text's CRC-32, summed."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for at in range(0, len(texts), 100_000):
            chunk = texts[at : at + 100_000]
            crc = np.array([zlib.crc32(t.encode()) for t in chunk], dtype=np.int64)
            vecs = self.base[crc % len(self.base)] + self.noise[crc >> 16]
            out[at : at + len(chunk)] = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        return out


class Known:
    """A stand-in `Embedder` for known questions: their real-model vectors, looked up by the
    cleaned question text (or each piece of a long one), so that timing `answer` leaves out the
    encoding."""

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors

    @property
    def dim(self) -> int:
        return len(next(iter(self.vectors.values())))

    def encode(self, texts: list[str], progress: bool | None = None) -> np.ndarray:
        return np.stack([self.vectors[text] for text in texts])


def _rss_mb() -> float:
    """This process's peak resident memory. Not `ru_maxrss`: Linux carries that over from the
    parent through fork and exec, so every stage would report at least the parent's peak."""
    return _vm("VmHWM") or round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def write_corpus(folder: Path, sentences: list[str], n_passages: int) -> None:
    """`n_passages` paragraphs, 50 to a document, in JSONL files of `DOCS_PER_FILE` documents.
    A paragraph is real CounselChat sentences drawn at random (so their lengths are the
    corpus's), added until the next would pass `PASSAGE_CHARS`, and opened by
    "document.paragraph: " so that no two are the same text (the same text would get the same
    vector): about six sentences each.

    Every paragraph is longer than half of `PASSAGE_CHARS`, so two never merge and each
    paragraph is one passage.
    """
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    n_docs = -(-n_passages // PASSAGES_PER_DOC)
    for first in range(0, n_docs, DOCS_PER_FILE):
        lines = []
        for d in range(first, min(first + DOCS_PER_FILE, n_docs)):
            count = min(PASSAGES_PER_DOC, n_passages - d * PASSAGES_PER_DOC)
            body = "\n\n".join(paragraph(f"{d}.{j}:", sentences, rng) for j in range(count))
            lines.append(json.dumps(_document(d, body)))
        (folder / f"part{first // DOCS_PER_FILE:05d}.jsonl").write_text("\n".join(lines) + "\n")


def _document(d: int, body: str) -> dict:
    """Document `d`, with an author shared by a tenth of the documents and a date in one of
    ten years: the filters timed in `search` match 10% (an author) and 90% (from 2001 on)."""
    meta = {"author": f"Author {d % 10}", "date": f"{2000 + d % 10}-06-01"}
    return {"id": f"doc{d}", "title": f"Document {d}", **meta, "text": body}


# The filters `search` times, by the share of documents they match (see `_document`).
FILTERS = {"10%": Filters(author="Author 3"), "90%": Filters(date_from="2001-01-01")}


def paragraph(label: str, sentences: list[str], rng: np.random.Generator) -> str:
    """`label` and then random sentences, between half of `PASSAGE_CHARS` and all of it."""
    text = label
    while True:
        for pick in rng.integers(len(sentences), size=8).tolist():
            if len(text) + 1 + len(sentences[pick]) <= PASSAGE_CHARS:
                text += " " + sentences[pick]
            elif len(text) > PASSAGE_CHARS // 2:
                return text  # the next would not fit: done


class Phases(logging.Handler):
    """The build's resident memory in each of its steps: VmRSS sampled every `SAMPLE_S` by a
    thread, the steps told apart by the build's log lines ("build: faiss written" ends the
    step named "faiss"; "build: calibrated" ends "calibration"; what follows is "publish")."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.steps: dict[str, dict] = {}
        self.current = {"start_mb": _vm("VmRSS"), "peak_mb": _vm("VmRSS")}
        self.stopped = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self.stopped.wait(SAMPLE_S):
            self.current["peak_mb"] = max(self.current["peak_mb"], _vm("VmRSS"))

    def emit(self, record: logging.LogRecord) -> None:
        step = re.fullmatch(r"build: (\S+) written|build: (calibrated)", record.getMessage())
        if step:
            self._close("calibration" if step[2] else step[1])

    def _close(self, name: str) -> None:
        self.current["peak_mb"] = max(self.current["peak_mb"], _vm("VmRSS"))
        self.steps[name] = self.current
        self.current = {"start_mb": _vm("VmRSS"), "peak_mb": _vm("VmRSS")}

    def stop(self) -> dict[str, dict]:
        self.stopped.set()
        self._close("publish")
        return self.steps


def _vm(field: str) -> float:
    """A field of /proc/self/status in MB (0 where there is none)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def build(work: Path) -> dict:
    from verbatim.engine import ingest_paths

    settings = settings_for(work)
    embedder: Embedder = Jitter(np.load(work / "base.npy"))
    phases = Phases()
    logging.getLogger("verbatim").addHandler(phases)
    logging.getLogger("verbatim").setLevel(logging.INFO)
    began = time.perf_counter()
    report, skipped = ingest_paths([work / "corpus"], settings, embedder)
    if skipped:
        raise RuntimeError(f"the synthetic corpus should be read whole: {skipped[:3]}")
    return {
        "passages": report.passages,
        "sentences": report.sentences,
        "ingest_s": round(time.perf_counter() - began, 1),
        "ingest_peak_rss_mb": _rss_mb(),
        "ingest_steps_rss_mb": phases.stop(),
    }


def search(work: Path) -> dict:
    from verbatim.answer import clean_question, question_pieces
    from verbatim.index import load_index

    settings = settings_for(work)
    began = time.perf_counter()
    index = load_index(settings)
    load_s = time.perf_counter() - began
    questions = np.load(work / "questions.npy")
    texts = json.loads((work / "questions.json").read_text())
    took, found = [], []
    for q in questions:
        began = time.perf_counter()
        rows, _ = index.search(q, 10)
        took.append(time.perf_counter() - began)
        found.append(set(rows.tolist()))
    # A long question is encoded as pieces (`answer.embed_question`): each piece stands for
    # the whole question's vector, so their mean is that vector again.
    known: Embedder = Known(
        {
            piece: q
            for t, q in zip(texts, questions, strict=True)
            for piece in question_pieces(clean_question(t, settings))
        }
    )
    answers = _answer_ms(texts, index, known, settings, None)
    filtered = {share: _answer_ms(texts, index, known, settings, f) for share, f in FILTERS.items()}
    serving_rss = _rss_mb()  # the index alone, before the model and the exact search below
    with_model = _with_model(texts, index, settings)
    vectors = np.load(index.path / "passages.npy", mmap_mode="r")
    exact = [set(np.argpartition(-(vectors @ q), 10)[:10].tolist()) for q in questions]
    recall = [len(a & b) / 10 for a, b in zip(found, exact, strict=True)]
    return {
        "load_s": round(load_s, 2),
        "search_p50_ms": round(percentile([t * 1000 for t in took], 50), 2),
        "recall_at_10": round(float(np.mean(recall)), 4),
        "nprobe_used": getattr(index.faiss, "nprobe", None),  # measured at build (`_probes`)
        "nprobe": _sweep(index.faiss, questions, exact),
        **with_model,
        "answer_without_encode_p50_ms": answers,
        # `answer()` with a filter, also without the encode: matching 10% and 90% of documents
        "filtered_answer_p50_ms": filtered["10%"],
        "filtered_90_answer_p50_ms": filtered["90%"],
        "filtered_recall_at_10": _filtered_recall(index, questions, FILTERS["10%"]),
        "faiss": type(index.faiss).__name__,
        "serve_peak_rss_mb": serving_rss,
    }


def _with_model(texts: list[str], index, settings: Settings) -> dict:
    """p50 of the whole `answer()` with the real model, and of that model's bare encode of the
    same cleaned questions, taken in turns (question by question) so that both see the same
    machine; and the peak RSS of serving with the model loaded."""
    from verbatim.answer import answer, clean_question
    from verbatim.engine import make_embedder

    model = make_embedder(Settings(progress=False))
    cleaned = [clean_question(t, settings) for t in texts]
    model.encode(cleaned[:8], progress=False)  # load and warm up
    encode, whole = [], []
    for text, clean in zip(texts, cleaned, strict=True):
        began = time.perf_counter()
        model.encode([clean], progress=False)
        encoded = time.perf_counter()
        answer(text, index, model, settings)
        whole.append((time.perf_counter() - encoded) * 1000)
        encode.append((encoded - began) * 1000)
    return {
        "answer_p50_ms": round(percentile(whole, 50), 2),
        "encode_p50_ms": round(percentile(encode, 50), 2),
        "serve_with_model_peak_rss_mb": _rss_mb(),
    }


def _answer_ms(texts: list[str], index, known: Embedder, settings: Settings, filters) -> float:
    """p50 of `answer()` over `texts`, in milliseconds."""
    from verbatim.answer import answer

    took = []
    for text in texts:
        began = time.perf_counter()
        answer(text, index, known, settings, filters=filters)
        took.append(time.perf_counter() - began)
    return round(percentile([t * 1000 for t in took], 50), 2)


def _filtered_recall(index, questions: np.ndarray, filters: Filters) -> float:
    """recall@10 of the filtered search against an exact search of the allowed passages."""
    allowed = index.catalog.rows(filters)
    rows = np.flatnonzero(allowed)
    vectors = np.asarray(index.passage_vectors[rows], dtype=np.float32)
    recall = []
    for q in questions:
        found, _ = index.search(q, 10, allowed)
        exact = rows[np.argpartition(-(vectors @ q), 10)[:10]]
        recall.append(len(set(found.tolist()) & set(exact.tolist())) / 10)
    return round(float(np.mean(recall)), 4)


def _sweep(ann, questions: np.ndarray, exact: list[set]) -> dict | None:
    """Search p50 and recall@10 of an IVF index at several `nprobe` (how many lists it scans)."""
    if not hasattr(ann, "nprobe"):
        return None
    default, out = ann.nprobe, {}
    for nprobe in (8, 16, 32, 64, 128, 256):
        ann.nprobe = nprobe
        took, recall = [], []
        for q, want in zip(questions, exact, strict=True):
            began = time.perf_counter()
            _, rows = ann.search(q[None, :], 10)
            took.append(time.perf_counter() - began)
            recall.append(len(want & set(rows[0].tolist())) / 10)
        out[nprobe] = {
            "p50_ms": round(percentile([t * 1000 for t in took], 50), 2),
            "recall_at_10": round(float(np.mean(recall)), 4),
        }
    ann.nprobe = default
    return out


def settings_for(work: Path) -> Settings:
    return Settings(
        data_dir=work / "data",
        model="jitter",
        passage_chars=PASSAGE_CHARS,
        progress=False,
        max_question_chars=20_000,
    )


def prepare(work: Path, benchmarks: Path) -> None:
    """Real CounselChat passage vectors and sentences, and the real dev questions, embedded."""
    from verbatim.eval import corpus_engine, read_questions

    cc = benchmarks / "counselchat"
    engine = corpus_engine(cc / "corpus.jsonl", Settings(progress=False))
    index = engine.local()
    np.save(work / "base.npy", np.asarray(index.passage_vectors, dtype=np.float32))
    sentences = [  # real sentences that split back as one sentence each
        text
        for s in range(len(index.sent_start))
        if (text := _sentence(index, s))[:1].isupper() and text[-1:] in ".!?"
    ]
    (work / "sentences.json").write_text(json.dumps(sentences))
    texts = [q.question[:1000] for q in read_questions(cc / "questions.dev.jsonl")][:200]
    questions = engine.embedder.encode(texts)
    np.save(work / "questions.npy", questions)
    (work / "questions.json").write_text(json.dumps(texts))
    engine.close()


def _sentence(index, row: int) -> str:
    text = index.text(index.passage_doc[index.sent_passage[row]])
    sentence = text[index.sent_start[row] : index.sent_end[row]]
    return sentence if "\n" not in sentence and len(sentence) <= PASSAGE_CHARS // 3 else ""


def _stage(stage: str, work: Path) -> str:
    """Run one stage in a process of its own; its JSON result."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--stage", stage, "--work", str(work)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return done.stdout.strip().splitlines()[-1]


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--benchmarks", type=Path, default=Path("../shared/benchmarks"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--json", type=Path, default=Path("eval/reports/scale.json"))
    parser.add_argument(
        "--keep",
        type=Path,
        help="build under this folder and keep it; a size already built there is only searched",
    )
    parser.add_argument(
        "--build-only", action="store_true", help="time and measure the builds, search nothing"
    )
    parser.add_argument("--stage", choices=["build", "search"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def measure(root: Path, size: int, sentences: list[str], search_too: bool = True) -> dict:
    """Build `size` passages under `root` (unless built there already), then search them."""
    work = root / str(size)
    built = work / "build.json"
    if not built.exists():
        shutil.rmtree(work, ignore_errors=True)  # an unfinished build
        work.mkdir()
        for name in ("base.npy", "questions.npy", "questions.json"):
            (work / name).symlink_to(root / name)
        write_corpus(work / "corpus", sentences, size)
        built.write_text(_stage("build", work))
        shutil.rmtree(work / "corpus")
    searched = json.loads(_stage("search", work)) if search_too else {}
    return {"size": size} | json.loads(built.read_text()) | searched


def main() -> None:
    args = _parse_args()
    if args.stage:
        print(json.dumps((build if args.stage == "build" else search)(args.work)))
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="verbatim-scale-"))
    if not (root / "questions.npy").exists():
        root.mkdir(parents=True, exist_ok=True)
        prepare(root, args.benchmarks)
    sentences = json.loads((root / "sentences.json").read_text())
    rows = []
    for size in args.sizes:
        row = measure(root, size, sentences, not args.build_only)
        print(json.dumps(row), flush=True)
        rows.append(row)
        if not args.keep:
            shutil.rmtree(root / str(size))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"sizes": {str(row["size"]): row for row in rows}}, indent=2))
    for row in rows:
        if row["size"] >= 1_000_000 and not args.build_only:
            print(million_table(row))


def million_table(row: dict) -> str:
    """The issue's targets for a million passages, met or MISSED."""
    rows = checked([
        ("search p50 (ms)", row["search_p50_ms"], "<=", 25),
        ("recall@10 vs exact search", row["recall_at_10"], ">=", 0.95),
        ("serving peak RSS (MB)", row["serve_peak_rss_mb"], "<=", 3000),
        ("filtered (10%) / plain answer p50", _ratio(row, "filtered_answer_p50_ms"), "<=", 2),
        ("filtered (90%) / plain answer p50", _ratio(row, "filtered_90_answer_p50_ms"), "<=", 2),
    ])  # fmt: skip
    if "encode_p50_ms" in row:  # runs before these figures lack them
        ratio = round(row["answer_p50_ms"] / row["encode_p50_ms"], 2)
        rows += checked([
            ("answer p50 / bare encode p50", ratio, "<=", 2),
            ("ingest peak RSS (MB)", row["ingest_peak_rss_mb"], "<=", 2500),
        ])  # fmt: skip
    return target_lines(f"targets at {row['passages']:,} passages:", rows)


def _ratio(row: dict, key: str) -> float:
    return round(row[key] / row["answer_without_encode_p50_ms"], 2)


if __name__ == "__main__":
    main()
