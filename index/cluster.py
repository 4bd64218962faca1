"""Embedding on a Ray cluster: an `Embedder` whose texts are encoded by a pool of Ray Data
actors, one model each, on GPUs when the cluster has them (`pip install ".[ray]"`).

The vectors are the model's own: every actor runs the same `ModelEmbedder` as a plain ingest,
and texts are sorted by length before they are split into batches (as `ModelEmbedder` sorts
its own), so a batch pads little. Only the order of texts in a batch differs from a plain
ingest, which moves a vector by float rounding at most.
"""

from __future__ import annotations

from typing import Any

import numpy as np

TEXTS_PER_TASK = 256  # texts one actor encodes per call


class RayEmbedder:
    """Implements `verbatim.records.Embedder` on Ray Data's `map_batches` with an actor pool.

    Args:
        workers: actors, each holding one model; by default one per GPU, or per 2 CPUs. Without
            GPUs each actor reserves an equal share of the cluster's CPUs for its model.
        options: how each actor builds its `ModelEmbedder` (model, batch_size, backend,
            cache_dir).
    """

    def __init__(self, workers: int | None = None, **options: Any) -> None:
        import ray

        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        cpus = int(resources.get("CPU", 1))
        self.workers = workers or self.gpus or max(1, cpus // 2)
        # Each actor reserves its share of the CPUs (at most one node's, or it could not be
        # placed) and its model uses that many threads: actors with every core each contend.
        node = max((n["Resources"].get("CPU", 1) for n in ray.nodes() if n["Alive"]), default=1)
        self.cpus = 1 if self.gpus else max(1, min(cpus // self.workers, int(node)))
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


class _Encoder:
    """One Ray actor: loads the model once, then encodes batch after batch."""

    def __init__(self, options: dict[str, Any]) -> None:
        import ray

        from verbatim.index.embed import ModelEmbedder

        if ray.get_gpu_ids() and options.get("backend", "onnx") == "onnx":
            # A GPU of its own: torch runs the model there (sentence-transformers picks CUDA),
            # with the same vectors as the float ONNX export. int8 stays on the CPU's ONNX.
            options = {**options, "backend": "torch"}
        self.model = ModelEmbedder(progress=False, **options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.model.encode([str(t) for t in batch["text"]], progress=False)
        return {"i": batch["i"], "vector": vectors}
