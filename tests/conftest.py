import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings as hypothesis_settings

from verbatim.settings import Settings

# CI runs the same examples every time (a red build is then reproducible); `make stress` and
# local runs explore new ones.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    hypothesis_settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent


class FakeEmbedder:
    """Deterministic bag-of-words vectors: texts sharing words are similar. No model needed."""

    name = "fake"
    dim = 64

    def __init__(self):
        self.calls = 0
        self.texts = 0

    def encode(self, texts, progress=None):
        self.calls += 1
        self.texts += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                h = int(hashlib.md5(word.encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0
            out[i, -1] += 0.01  # never a zero vector
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test gets its own data directory; nothing touches the user's index."""
    monkeypatch.setenv("VERBATIM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VERBATIM_PROGRESS", "false")


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", model="fake", progress=False)


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


TINY = {
    "gardening.md": """---
title: Growing Tomatoes
author: Ada Gardener
date: 2024-03-01
url: https://example.org/tomatoes
---

Tomatoes need full sun and regular watering. Plant them after the last frost.

## Pests

Aphids love tomato plants. Spray them off with water every morning.
""",
    "bread.txt": """Baking Bread at Home

Knead the dough for ten minutes. Let it rise until doubled in size.

Bake the loaf at 230 degrees for forty minutes.
""",
    "cars.html": """<html><head><title>Changing Oil</title>
<meta name="author" content="Bob Mechanic"><meta property="og:url" content="https://example.com/oil">
</head><body><nav>Home | About | Share on Facebook</nav>
<article><h1>Changing Oil</h1><p>Change the engine oil every ten thousand kilometres to keep
the engine healthy and the warranty valid.</p><p>Warm the engine first so the oil drains
quickly and completely from the sump.</p></article><footer>Previous Next Copyright</footer>
</body></html>""",
}


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in TINY.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """One ONNX export of the real model for the whole test session."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def real_embedder(model_cache):
    from verbatim.index import ModelEmbedder

    return ModelEmbedder("all-MiniLM-L6-v2", cache_dir=model_cache)


@pytest.fixture(scope="session")
def default_engine(tmp_path_factory, real_embedder):
    """The bundled corpus, indexed once with the real model."""
    from verbatim.engine import ingest_paths, open_engine

    settings = Settings(data_dir=tmp_path_factory.mktemp("default-index"), progress=False)
    ingest_paths([settings.corpus_dir], settings, real_embedder)
    engine = open_engine(settings, real_embedder)
    yield engine
    engine.close()
