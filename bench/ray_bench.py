"""Texts embedded per second on a local Ray cluster with 1 and 2 model actors, against the
plain `ModelEmbedder` in the same run (issue #21's Ray figures).

Run: `python bench/ray_bench.py [--texts N] [--json OUT]` (needs `pip install ".[ray]"`).
The texts are CounselChat passages from ../shared/benchmarks, as ingest embeds them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import ray

from verbatim.index import ModelEmbedder
from verbatim.index.cluster import RayEmbedder

CORPUS = Path("../shared/benchmarks/counselchat/corpus.jsonl")


def texts(n: int) -> list[str]:
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    paragraphs = [p for r in rows for p in r["text"].split("\n\n") if p.strip()]
    return paragraphs[:n]


def rate(encode, batch: list[str]) -> float:
    began = time.perf_counter()
    encode(batch)
    return round(len(batch) / (time.perf_counter() - began), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    batch = texts(args.texts)
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
    print(json.dumps(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
