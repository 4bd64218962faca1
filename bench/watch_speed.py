"""Live folders (#33): one edited file in a collection of N realistic passages, from the save
to the first answer that quotes it, and the p99 of /api/ask at 4 clients during the update
against its p99 without one.

The collection is `bench.scale`'s realistic synthetic corpus (real CounselChat sentences, 50
passages a document), written as one Markdown file per document, embedded by `bench.scale`'s
stand-in `Jitter` (real vectors plus noise; the real model would take hours at 1M). Three
processes, as a user runs them: `verbatim serve` (here: the same app with the stand-in
embedder), `verbatim watch` (a `Watcher` with it) and the clients. The server serves the new
generation when its CURRENT moves (`FOLLOW_EVERY`); the watcher waits for the events to stop
(`EVENT_QUIET_MS`) and the file to be stable (`STABLE_S`), then runs `update_paths`, which
reads the one file and publishes it as a delta beside the base (`index/delta.py`); a server
already serving the base opens only the delta.

After the edits, the run waits for the watcher's background merge (`watch.MERGE_QUIET_S` of
quiet), times it, and compares the first quote of `AGREEMENT_QUESTIONS` dev questions as the
delta served them with the merged generation's (which equals a fresh ingest): the delta's
BM25 statistics and thresholds are the base's until then (`index/segments.py`).

Run: `python -m bench.watch_speed [--size 100000] [--edits 3] [--keep DIR]` (prepares the base
vectors like `make scale`, with the real model, once in DIR).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from bench.common import free_port, http_load, ms
from bench.scale import PASSAGES_PER_DOC, Jitter, paragraph, prepare, settings_for

BASELINE_S = 20.0  # seconds of load without an update, for the p99 to compare with
TARGETS = {100_000: 10.0, 1_000_000: 30.0}  # seconds from save to answered (#33)
GIVE_UP_S = 1_200  # an edit not answered by then fails the run
AGREEMENT_QUESTIONS = 200  # asked before and after the merge


def write_folder(folder: Path, sentences: list[str], n_passages: int) -> None:
    """`n_passages` paragraphs, `PASSAGES_PER_DOC` to a Markdown file with front matter."""
    rng = np.random.default_rng(0)
    n_docs = -(-n_passages // PASSAGES_PER_DOC)
    for d in range(n_docs):
        count = min(PASSAGES_PER_DOC, n_passages - d * PASSAGES_PER_DOC)
        body = "\n\n".join(paragraph(f"{d}.{j}:", sentences, rng) for j in range(count))
        sub = folder / f"part{d // 100:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        head = f"---\ntitle: Document {d}\nauthor: Author {d % 10}\ndate: {2000 + d % 10}-06-01\n"
        (sub / f"doc{d:06d}.md").write_text(f"{head}---\n\n{body}\n")


def stage_build(work: Path) -> dict:
    from verbatim.engine import ingest_paths

    began = time.perf_counter()
    report, _ = ingest_paths(
        [work / "corpus"], settings_for(work), Jitter(np.load(work / "base.npy"))
    )
    return {"passages": report.passages, "ingest_s": round(time.perf_counter() - began, 1)}


def stage_serve(work: Path, port: int) -> None:
    import uvicorn

    from verbatim.engine import open_engines
    from verbatim.server import create_app

    settings = settings_for(work)
    engines = open_engines(settings, Jitter(np.load(work / "base.npy")))
    uvicorn.run(create_app(settings, engine=engines), port=port, log_level="warning")


def stage_watch(work: Path) -> None:
    """A `verbatim watch` with the stand-in embedder: one JSON line per applied batch."""
    from verbatim.watch import Watcher

    def printed(batch) -> None:
        report = batch.update.report
        row = {"at": batch.at, "update_s": round(batch.update.seconds, 2)}
        row |= {"build_s": round(report.seconds, 2), "read_s": round(report.read_seconds, 2)}
        print(json.dumps(row | {"line": batch.line()}), flush=True)

    settings = settings_for(work)
    watcher = Watcher(settings, [work / "corpus"], Jitter(np.load(work / "base.npy")), printed)
    watcher.apply()  # caught up (an earlier run's edit) before the clients measure anything
    print(json.dumps({"ready": True}), flush=True)
    watcher.run(threading.Event())


def _spawn(*args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "bench.watch_speed", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def _wait_answering(base: str, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/api/ask", params={"q": "therapy?"}, timeout=5).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not answer")


def _quoted(base: str, question: str, marker: str, doc_id: str) -> bool:
    """Whether the question, asked of the edited document, is answered with the new words.
    Asked of that document alone: the stand-in embedder's vectors are noise, and across 100k
    passages they can outrank the one passage that holds the question's rare word."""
    params = {"q": question, "k": 5, "documents": doc_id}
    r = httpx.get(f"{base}/api/ask", params=params, timeout=30)
    return r.is_success and any(marker in q["text"] for q in r.json().get("quotes", []))


def one_edit(base: str, corpus: Path, questions: list[str], n: int, window: float) -> dict:
    """Append a paragraph to one file under load; seconds until an answer quotes it, and the
    p99 of the 4 clients over `window` seconds from 2 s before the save (the update and the
    server's switch to the new generation fall inside it when they take less)."""
    target = sorted(corpus.glob("part000/*.md"))[n]
    marker = f"zebracorn{n}quokka{int(time.time())}"  # a word no run wrote before
    question = f"What does the {marker} lighthouse keeper remember?"
    load: dict = {}
    worker = threading.Thread(
        target=lambda: load.update(l=http_load(base, questions, 4, seconds=window)), daemon=True
    )
    worker.start()
    time.sleep(2)
    saved = time.time()
    with open(target, "a") as fh:
        fh.write(f"\nThe {marker} lighthouse keeper remembers every storm since 1962.\n")
    doc_id = target.relative_to(corpus).with_suffix("").as_posix()
    while not _quoted(base, question, marker, doc_id):
        if time.time() - saved > GIVE_UP_S:
            raise RuntimeError(f"the edit was not answered within {GIVE_UP_S} s")
        time.sleep(0.1)
    answered = time.time() - saved
    worker.join()
    if answered + 2 > window:
        print(f"the update outlasted the {window:.0f} s load window", file=sys.stderr)
    return {"answered_s": round(answered, 2), "saved_at": saved, "during": load["l"]}


def _firsts(base: str, questions: list[str]) -> list[tuple | None]:
    """Each question's first quote as served (document and offsets), None when it abstains."""
    found: list[tuple | None] = []
    for q in questions:
        quotes = httpx.get(f"{base}/api/ask", params={"q": q}, timeout=30).json()["quotes"]
        found.append((quotes[0]["doc_id"], quotes[0]["start"]) if quotes else None)
    return found


def _served_generation(base: str) -> str:
    return httpx.get(f"{base}/api/health", timeout=30).json()["generation"]


def merged(base: str, work: Path, questions: list[str], unedited: list) -> dict:
    """Wait for the watcher's background merge and for the server to serve it; seconds from
    the last edit's delta being served, and the share of `questions` whose first quote the
    delta served as the merged generation does. For scale, the same share for the generation
    served before the edits (`unedited`): a merge trains IVF and calibrates afresh, which
    moves some first quotes whatever the delta did."""
    from verbatim.index import generations, where

    folder = where(settings_for(work))
    before = _firsts(base, questions)
    began = time.time()
    while True:
        name = generations.current_name(folder) or ""
        manifest = generations.read_manifest(generations.generations_dir(folder) / name)
        if "delta" not in manifest and _served_generation(base) == name:
            break
        if time.time() - began > GIVE_UP_S:
            return {"merged": False}
        time.sleep(1)
    after = _firsts(base, questions)

    def agreement(answers: list) -> float:
        return round(sum(a == b for a, b in zip(answers, after, strict=True)) / len(after), 3)

    return {
        "merged": True,
        "waited_s": round(time.time() - began, 1),
        "first_quote_agreement": agreement(before),
        "unedited_agreement": agreement(unedited),
        "questions": len(questions),
    }


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--edits", type=int, default=3)
    parser.add_argument("--window", type=float, default=30.0, help="seconds of load per edit")
    parser.add_argument("--keep", type=Path, help="prepare and build here, and keep it")
    parser.add_argument("--benchmarks", type=Path, default=Path("../shared/benchmarks"))
    parser.add_argument("--json", type=Path, default=Path("eval/reports/watch_speed.json"))
    parser.add_argument("--stage", choices=["build", "serve", "watch"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def _setup(args: argparse.Namespace) -> Path:
    root = args.keep or Path(tempfile.mkdtemp(prefix="verbatim-watch-"))
    if not (root / "questions.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        prepare(root, args.benchmarks)
    work = root / str(args.size)
    if not (work / "build.json").exists():
        work.mkdir(exist_ok=True)
        (work / "base.npy").unlink(missing_ok=True)
        (work / "base.npy").symlink_to(root / "base.npy")
        sentences = json.loads((root / "sentences.json").read_text())
        write_folder(work / "corpus", sentences, args.size)
        built = subprocess.run(
            [sys.executable, "-m", "bench.watch_speed", "--stage", "build", "--work", str(work)],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        (work / "build.json").write_text(built.stdout.strip().splitlines()[-1])
    return work


def main() -> None:
    args = _parse_args()
    if args.stage == "build":
        print(json.dumps(stage_build(args.work)))
        return
    if args.stage in ("serve", "watch"):
        stage_serve(args.work, args.port) if args.stage == "serve" else stage_watch(args.work)
        return
    work = _setup(args)
    questions = json.loads((work.parent / "questions.json").read_text())
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = _spawn("--stage", "serve", "--work", str(work), "--port", str(port))
    watcher = _spawn("--stage", "watch", "--work", str(work))
    try:
        _wait_answering(base)
        while "ready" not in json.loads(watcher.stdout.readline()):
            pass  # a catch-up batch
        time.sleep(5)
        baseline = http_load(base, questions, 4, seconds=BASELINE_S)
        corpus = work / "corpus"
        asked = questions[:AGREEMENT_QUESTIONS]
        unedited = _firsts(base, asked)
        edits = [one_edit(base, corpus, questions, n, args.window) for n in range(args.edits)]
        merge = merged(base, work, asked, unedited)
    finally:
        server.terminate()
        watcher.terminate()
    batches = [json.loads(line) for line in watcher.stdout.read().splitlines() if line]
    built = json.loads((work / "build.json").read_text())
    result = report(args.size, built, baseline, edits, batches) | {"merge": merge}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def report(size: int, built: dict, baseline, edits: list[dict], batches: list[dict]) -> dict:
    without = ms(baseline.latencies)["p99"]
    rows = []
    for edit in edits:
        during = ms(edit["during"].latencies)["p99"]
        applied = [b for b in batches if b["at"] >= edit["saved_at"]][:1]
        rows.append(
            {
                "answered_s": edit["answered_s"],
                "p99_during_ms": during,
                "p99_ratio": round(during / without, 2),
                "statuses": edit["during"].statuses,
                "batch": applied[0] if applied else None,
            }
        )
    target = TARGETS.get(size)
    return {
        "size": size,
        "build": built,
        "p99_without_ms": without,
        "baseline_statuses": baseline.statuses,
        "edits": rows,
        "target_answered_s": target,
        "met": all(r["answered_s"] <= (target or 0) and r["p99_ratio"] <= 2 for r in rows),
    }


if __name__ == "__main__":
    main()
