"""`make bench`: how close a question and an ingest come to the bare model's cost.

Everything is measured in one run on the CounselChat corpus (the cold start on the default one)
and reported as ratios against the bare embedding call measured in the same run, because the
machine is shared and noisy. torch's bare encode and txtai run in a process of their own.
Run: `python -m bench.speed [--benchmarks ../shared/benchmarks] [--json OUT]`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import checked, free_port, http_load, ingest_default, ms, serve, target_lines
from verbatim.eval import corpus_engine, read_questions
from verbatim.settings import Settings

if TYPE_CHECKING:
    from verbatim.engine import Engine
    from verbatim.index import Index


def _seconds(call: Callable[[str], object], texts: list[str]) -> list[float]:
    """Seconds each `call(text)` took, one text after another."""
    took = []
    for text in texts:
        began = time.perf_counter()
        call(text)
        took.append(time.perf_counter() - began)
    return took


def load_figures(base: str, questions: list[str], clients: int, total: int) -> dict:
    """`total` requests from `clients` clients: latency percentiles, throughput, statuses."""
    began = time.perf_counter()
    load = http_load(base, questions, clients, each=max(1, total // clients))
    wall = time.perf_counter() - began
    return {
        "clients": clients,
        "requests": len(load.latencies),
        **ms(load.latencies),
        "per_s": round(len(load.latencies) / wall, 1),
        "status": load.statuses,
    }


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--benchmarks", type=Path, default=Path("../shared/benchmarks"))
    parser.add_argument("--json", type=Path, default=Path("eval/reports/bench.json"))
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--ingest-docs", type=int, default=300)
    parser.add_argument("--compare", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def in_process(engine: Engine, questions: list[str]) -> dict:
    """The bare query encode and a whole `answer()`, each question once, in this process."""
    return {
        "bare_query_encode_ms": ms(
            _seconds(lambda q: engine.embedder.encode([q], progress=False), questions)
        ),
        "backend": engine.settings.backend,
        "answer_in_process_ms": ms(_seconds(engine.ask, questions)),
    }


def _passages(index: Index) -> list[str]:
    """Every passage's text, in row order."""
    return [
        index.text(doc)[start:end]
        for doc, start, end in zip(
            index.passage_doc, index.passage_start, index.passage_end, strict=True
        )
    ]


def http_figures(data_dir: Path, questions: list[str]) -> list[dict]:
    """`load_figures` at 1, 8 and 32 clients against a `verbatim serve` over `data_dir`."""
    port = free_port()
    proc, _ = serve(data_dir, port)
    try:
        base = f"http://127.0.0.1:{port}"
        # One client asks each question once, as the bare encode did: a like-for-like ratio.
        return [
            load_figures(base, questions, c, len(questions) if c == 1 else max(100, 4 * c))
            for c in (1, 8, 32)
        ]
    finally:
        proc.terminate()
        proc.wait(10)


def cold_start() -> float:
    """Seconds from starting `verbatim serve` on the default corpus to its first answer."""
    proc, cold = serve(ingest_default("verbatim-bench-"), free_port())
    proc.terminate()
    proc.wait(10)
    return cold


def ratios(report: dict) -> dict:
    """Each figure over the bare model call it is compared with."""
    bare_p50 = report["bare_query_encode_ms"]["p50"]
    answer_p50 = report["answer_in_process_ms"]["p50"]
    return {
        "http_p50_1_client_over_bare_encode": round(report["http"][0]["p50"] / bare_p50, 2),
        "answer_p50_over_bare_encode": round(answer_p50 / bare_p50, 2),
        "ingest_over_bare_encode": report["ingest"]["ratio"],
        "reingest_over_ingest": report["ingest"]["reingest_ratio"],
        "txtai_query_p50_over_verbatim_answer_p50": round(
            report["txtai"]["query_p50_ms"] / answer_p50, 2
        ),
    }


def main() -> None:
    args = _parse_args()
    if args.compare:
        print(json.dumps(_compare_here(args.compare)))
        return
    cc = args.benchmarks / "counselchat"
    settings = Settings(progress=False, max_question_chars=20_000)
    engine = corpus_engine(cc / "corpus.jsonl", settings)
    questions = [q.question for q in read_questions(cc / "questions.dev.jsonl")][: args.questions]
    short = [" ".join(q.split()[:60]) for q in questions]  # within the API's 1,000 characters
    report = in_process(engine, short)
    report |= compare(_passages(engine.local()), short)
    report["txtai"]["verbatim_answer_p50_ms"] = report["answer_in_process_ms"]["p50"]
    data_dir = engine.settings.data_dir
    engine.close()
    report["http"] = http_figures(data_dir, short)
    report["cold_start_s"] = round(cold_start(), 2)
    report["ingest"] = ingest_ratio(cc / "corpus.jsonl", args.ingest_docs)
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    report["ratios"] = ratios(report)
    report["targets"] = [
        {"figure": name, "measured": value, "target": target, "met": met}
        for name, value, target, met in targets(report)
    ]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print()
    print(target_table(report))


def targets(report: dict) -> list[tuple[str, float, str, bool]]:
    """The issue's targets that one bench run measures: (figure, measured, target, met)."""
    ratios = report["ratios"]
    return checked([
        ("HTTP /api/ask p50 at 1 client / bare encode p50",
         ratios["http_p50_1_client_over_bare_encode"], "<=", 1.5),
        ("ingest wall time / bare encode of the same texts",
         ratios["ingest_over_bare_encode"], "<=", 1.15),
        ("re-ingest of the unchanged corpus / full ingest",
         ratios["reingest_over_ingest"], "<=", 0.05),
        ("txtai query p50 / answer() p50",
         ratios["txtai_query_p50_over_verbatim_answer_p50"], ">=", 3),
        ("cold start to first answer, default corpus (s)", report["cold_start_s"], "<=", 8),
    ])  # fmt: skip


def target_table(report: dict) -> str:
    """The targets as a plain-text table, backend named (1M passages: `make scale`)."""
    return target_lines(f"targets, backend {report['backend']}:", targets(report))


def compare(passages: list[str], questions: list[str]) -> dict:
    """torch's bare encode and txtai, measured in a process of their own.

    In one process, torch's and ONNX Runtime's thread pools spin on the same two cores and slow
    each other down, which would make every figure here depend on what ran before it.
    """
    with tempfile.TemporaryDirectory() as folder:
        given = Path(folder) / "given.json"
        given.write_text(json.dumps({"passages": passages, "questions": questions}))
        done = subprocess.run(
            [sys.executable, "-m", "bench.speed", "--compare", str(given)],
            check=True,
            capture_output=True,
            text=True,
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _compare_here(given: Path) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from verbatim.index import ModelEmbedder

    data = json.loads(given.read_text())
    torch = ModelEmbedder(Settings().model, backend="torch")
    torch.encode(["warm up"])
    took = _seconds(lambda q: torch.encode([q]), data["questions"])
    return {
        "bare_query_encode_torch_ms": ms(took),
        "txtai": txtai_figures(data["passages"], data["questions"]),
    }


def txtai_figures(passages: list[str], questions: list[str]) -> dict:
    """The same passages and questions through txtai's hybrid (BM25 + dense) `Embeddings`, with
    the same model from the same folder, in its default (torch) runtime."""
    from txtai import Embeddings

    from verbatim.index.embed import BUNDLED, model_path

    embeddings = Embeddings(path=model_path(BUNDLED), hybrid=True, content=False)
    began = time.perf_counter()
    embeddings.index(passages)
    indexed = time.perf_counter() - began
    took = _seconds(lambda q: embeddings.search(q, 5), questions)
    return {
        "passages": len(passages),
        "index_s": round(indexed, 2),
        "query_p50_ms": ms(took)["p50"],
    }


def ingest_ratio(corpus: Path, n_docs: int) -> dict:
    """Full ingest of the first `n_docs` documents against bare encoding of the same texts."""
    from verbatim.engine import ingest_paths, make_embedder
    from verbatim.index import passage_text
    from verbatim.ingest import read_documents

    folder = Path(tempfile.mkdtemp(prefix="verbatim-bench-corpus-"))
    lines = corpus.read_text(encoding="utf-8").splitlines()[:n_docs]
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = Settings(data_dir=folder / "data", progress=False)
    embedder = make_embedder(settings)
    embedder.encode(["warm up"])
    read = read_documents([folder], settings)
    docs = {d.id: d for d in read.documents}
    texts = [passage_text(docs[p.doc_id], p) for p in read.passages]
    texts += [docs[p.doc_id].text[s.start : s.end] for p in read.passages for s in p.sentences]
    began = time.perf_counter()
    embedder.encode(texts)
    bare = time.perf_counter() - began
    began = time.perf_counter()
    ingest_paths([folder], settings, embedder)
    full = time.perf_counter() - began
    began = time.perf_counter()
    ingest_paths([folder], settings, embedder)
    again = time.perf_counter() - began
    return {
        "documents": len(docs),
        "texts": len(texts),
        "bare_encode_s": round(bare, 2),
        "ingest_s": round(full, 2),
        "reingest_s": round(again, 2),
        "ratio": round(full / bare, 3),
        "reingest_ratio": round(again / full, 3),
    }


if __name__ == "__main__":
    main()
