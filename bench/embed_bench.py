"""Ingest's model calls, today's way against `ModelEmbedder.encode`, interleaved in one process.

    python bench/embed_bench.py [--texts 3000] [--rounds 2] [--nospin] [--budgets 4096,16384]

The texts are what ingest embeds for CounselChat: every passage's text, then every sentence's
(read with the repo's own reader and splitter). `--texts N` takes a fixed sample with the same
passage/sentence mix (0: all 22,275). "old" is the encode loop before token budgets: sorted by
characters, 64 texts a batch, each padded by the tokenizer to its longest, no de-duplication;
it runs on the same ONNX session. Variants run A, B, A, B, ... on the same texts, so that a
busy machine slows them alike; the ratios are what to read, not the seconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from verbatim.engine import read_documents
from verbatim.index import ModelEmbedder, _texts_to_embed
from verbatim.index.embed import TOKENS_PER_TEXT, _Onnx
from verbatim.settings import Settings

CORPUS = Path(__file__).resolve().parents[2] / "shared/benchmarks/counselchat/corpus.jsonl"


def ingest_texts(corpus: Path) -> tuple[list[str], int]:
    """What ingest embeds for `corpus` (passages first, then sentences), and the passages."""
    settings = Settings(data_dir=Path(tempfile.mkdtemp()), model="fake", progress=False)
    read = read_documents([corpus], settings)
    docs = {d.id: d for d in read.documents}
    texts = _texts_to_embed(docs, read.passages, list(range(len(read.passages))))
    return texts, len(read.passages)


def sample(texts: list[str], passages: int, n: int) -> list[str]:
    """A fixed sample of `n` texts with the corpus's share of passages (all when n is 0)."""
    if not n or n >= len(texts):
        return texts
    rng = np.random.default_rng(0)
    take = round(n * passages / len(texts))
    rows = [*rng.choice(passages, take, replace=False)]
    rows += [*(passages + rng.choice(len(texts) - passages, n - take, replace=False))]
    return [texts[int(i)] for i in rows]


def old_encode(run: _Onnx, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """The encode loop as it was: sorted by characters, fixed batches, tokenizer padding."""
    tokenizer = run.tokenizer.__class__.from_str(run.tokenizer.to_str())
    tokenizer.enable_padding()
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), 384), dtype=np.float32)
    for at in range(0, len(texts), batch_size):
        rows = order[at : at + batch_size]
        encoded = tokenizer.encode_batch([texts[i] for i in rows])
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = run.session.run(None, feed)[0]
        summed = (hidden * mask[..., None]).sum(axis=1)
        out[rows] = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def onnx(embedder: ModelEmbedder) -> _Onnx:
    """The embedder's loaded ONNX model (the comparison is of the ONNX backend)."""
    run = embedder.load()
    if not isinstance(run, _Onnx):
        raise SystemExit(f"{embedder.backend}: not the ONNX backend")
    return run


def nospin(embedder: ModelEmbedder) -> ModelEmbedder:
    """The same embedder on a session whose idle threads sleep instead of spinning."""
    import onnxruntime

    run = onnx(embedder)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    model = run.session._model_path
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    other = ModelEmbedder(embedder.name, cache_dir=embedder.cache_dir)
    other._run = _Onnx(session, run.tokenizer, run.mode)
    return other


def timed_calls(run: _Onnx) -> dict[str, float]:
    """Wrap `run`'s tokenizer and session so that their seconds add up in the returned dict."""
    spent = {"tokenize": 0.0, "session.run": 0.0}
    tokens, session_run = run.tokens, run.session.run

    def clock(name: str, fn: Callable) -> Callable:
        def inner(*args, **kwargs):
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - began

        return inner

    run.tokens = clock("tokenize", tokens)  # type: ignore[method-assign]
    run.session = type("Timed", (), {"run": staticmethod(clock("session.run", session_run))})()
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=3000, help="sample size (0: all)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--nospin", action="store_true", help="add a no-spinning session")
    parser.add_argument(
        "--budgets", default="", help="more token budgets to try, e.g. 4096,16384 (default 8192)"
    )
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args()
    everything, passages = ingest_texts(args.corpus)
    texts = sample(everything, passages, args.texts)
    embedder = ModelEmbedder("all-MiniLM-L6-v2", cache_dir=Path(tempfile.gettempdir()) / "vbm")
    run = onnx(embedder)
    variants: dict[str, Callable[[], np.ndarray]] = {
        "old": lambda: old_encode(run, texts),
        "new": lambda: embedder.encode(texts, progress=False),
    }
    for budget in filter(None, args.budgets.split(",")):
        other = ModelEmbedder(embedder.name, batch_size=int(budget) // TOKENS_PER_TEXT)
        other._run = run
        variants[f"new@{budget}"] = lambda other=other: other.encode(texts, progress=False)
    if args.nospin:
        quiet = nospin(embedder)
        variants["new-nospin"] = lambda: quiet.encode(texts, progress=False)
    print(f"{len(texts)} texts ({len(set(texts))} distinct); variants {list(variants)}")
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    vectors: dict[str, np.ndarray] = {}
    for round_ in range(args.rounds):
        for name, encode in variants.items():
            began = time.perf_counter()
            vectors[name] = encode()
            seconds[name].append(time.perf_counter() - began)
            print(f"round {round_ + 1} {name}: {seconds[name][-1]:.1f} s", flush=True)
    report(texts, seconds, vectors, run)


def report(
    texts: list[str], seconds: dict[str, list[float]], vectors: dict[str, np.ndarray], run: _Onnx
) -> None:
    """Ratios against "old" (each round, and all rounds' sums), the vectors' largest cosine
    distance from the old ones, and where the new encode's time goes (one more timed run)."""
    for name in seconds:
        per_round = [n / o for n, o in zip(seconds[name], seconds["old"], strict=True)]
        total = sum(seconds[name]) / sum(seconds["old"])
        distance = float(1 - (vectors[name] * vectors["old"]).sum(axis=1).min())
        rounds = ", ".join(f"{r:.3f}" for r in per_round)
        print(f"{name}: {total:.3f}x old (rounds {rounds}); max cosine distance {distance:.2e}")
    spent = timed_calls(run)
    embedder = ModelEmbedder("all-MiniLM-L6-v2")
    embedder._run = run
    began = time.perf_counter()
    embedder.encode(texts, progress=False)
    whole = time.perf_counter() - began
    shares = ", ".join(f"{k} {v / whole:.1%}" for k, v in spent.items())
    print(f"new encode, one timed run: {whole:.1f} s: {shares}, the rest (padding, pooling) "
          f"{1 - sum(spent.values()) / whole:.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
