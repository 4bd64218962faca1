"""Shared fixtures. The default run (`pytest`) is the fast suite: the deterministic
`FakeEmbedder`, TestClient, tiny corpora in `tmp_path`. Tests marked `slow` load the real
model and `browser` ones drive Chromium; `pytest -m ""` runs everything."""

import ast
import hashlib
import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from hypothesis import settings as hypothesis_settings

from verbatim.records import Embedder
from verbatim.settings import Settings

if TYPE_CHECKING:
    from verbatim.engine import Engine

# CI runs the same examples every time (a red build is then reproducible); `make stress` and
# local runs explore new ones.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    hypothesis_settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class FakeEmbedder:
    """Deterministic bag-of-words vectors: texts sharing words are similar. No model needed.

    Implements `verbatim.records.Embedder`; `calls` and `texts` count what was encoded.
    """

    name = "fake"
    dim: int = 64

    def __init__(self) -> None:
        self.calls = 0
        self.texts = 0

    def encode(self, texts: list[str], progress: bool | None = None) -> np.ndarray:
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


@pytest.fixture(autouse=True)
def _no_disk_flush(request, monkeypatch):
    """In the fast suite `os.fsync` checks its descriptor and returns: a flush changes nothing a
    test can observe (only a power cut would), and the thousands an ingest's blocks, files and
    directories ask for cost seconds of waiting on a shared disk. Tests marked slow, stress or
    browser (and every child process) flush for real."""
    if not any(request.node.get_closest_marker(m) for m in ("slow", "stress", "browser")):
        monkeypatch.setattr(os, "fsync", _checked_no_flush)


def _checked_no_flush(fd) -> None:
    os.fstat(fd if isinstance(fd, int) else fd.fileno())  # a bad descriptor still raises


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", model="fake", progress=False)


@pytest.fixture
def fake_embedder() -> Embedder:
    return FakeEmbedder()


@pytest.fixture
def fake_model(monkeypatch) -> None:
    """The CLI, `ingest_paths` and `open_engine` build a `FakeEmbedder`, not the real model."""
    monkeypatch.setattr("verbatim.engine.make_embedder", lambda settings: FakeEmbedder())


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


def write_files(folder: Path, files: dict[str, str]) -> Path:
    """`files` (relative path: text) written under `folder`; returns `folder`."""
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    return write_files(tmp_path / "docs", TINY)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`two` below (the tiny corpus as "default", PAPERS as "papers"), built once for a
    module whose tests write nothing, and open as the server holds them: (settings, State)."""
    from verbatim.engine import ingest_paths, open_engines
    from verbatim.server.state import State

    root = tmp_path_factory.mktemp("mcp")
    settings = Settings(data_dir=root / "data", model="fake", progress=False)
    embedder = FakeEmbedder()
    for collection, files in (("default", TINY), ("papers", PAPERS)):
        for name, text in files.items():
            (root / collection / name).parent.mkdir(parents=True, exist_ok=True)
            (root / collection / name).write_text(text, encoding="utf-8")
        chosen = settings.model_copy(update={"collection": collection})
        ingest_paths([root / collection], chosen, embedder)
    engines = open_engines(settings, embedder)
    yield settings, State(settings, engines)
    for engine in engines.values():
        engine.close()


@pytest.fixture
def bundled_and_tiny(tmp_path, tiny_corpus, settings) -> Path:
    """The bundled corpus and the tiny one in one folder: five files."""
    both = tmp_path / "both"
    shutil.copytree(settings.corpus_dir, both)
    for path in tiny_corpus.iterdir():
        shutil.copy(path, both / path.name)
    return both


@pytest.fixture
def fake_engine(tiny_corpus, settings, fake_embedder) -> Iterator["Engine"]:
    """The tiny corpus ingested (and calibrated) with the fake embedder, open to answer."""
    from verbatim.engine import Engine, ingest_paths
    from verbatim.index import load_index

    ingest_paths([tiny_corpus], settings, fake_embedder)
    engine = Engine(settings, load_index(settings), fake_embedder)
    yield engine
    engine.close()


PAPERS = {
    "kites/flying.md": "---\ntitle: Flying Kites\nauthor: Kim Flyer\ndate: 2021-06-01\n"
    "site: kites.example\n---\n\nLaunch the kite with the wind at your back. Let out line slowly "
    "as the kite climbs.\n",
    "kites/repair.md": "---\ntitle: Repairing Kites\nauthor: Lee Mender\ndate: 2023-02-10\n"
    "site: kites.example\n---\n\nPatch a torn kite sail with ripstop tape on both sides.\n",
    "bees/hives.md": "---\ntitle: Keeping Bees\nauthor: Kim Flyer\ndate: 2023-09-15\n"
    "site: bees.example\n---\n\nInspect the hive every week in spring for queen cells.\n",
    "undated.md": "---\ntitle: Kite Knots\nauthor: Kim Flyer\n---\n\nTie the kite line to the "
    "bridle with a larks head knot.\n",
}


@pytest.fixture
def two(tmp_path, settings, tiny_corpus, fake_embedder):
    """The tiny corpus as the default collection, PAPERS as the collection "papers", both
    ingested with the fake embedder; returns the settings and the papers folder."""
    from verbatim.engine import ingest_paths

    papers = write_files(tmp_path / "papers", PAPERS)
    ingest_paths([tiny_corpus], settings, fake_embedder)
    ingest_paths([papers], settings.model_copy(update={"collection": "papers"}), fake_embedder)
    return settings, papers


# Built once for a module whose tests only read them (ask, list, page, reload from the same
# files): an ingest and its calibration are most of a small test's time. A test that writes to
# the data directory or the folders uses the function-scoped fixture above instead.


@pytest.fixture(scope="module")
def shared_engine(tmp_path_factory) -> Iterator["Engine"]:
    """`fake_engine`, built once for the module; tests must not write to its data directory."""
    from verbatim.engine import Engine, ingest_paths
    from verbatim.index import load_index

    root = tmp_path_factory.mktemp("shared-engine")
    settings = Settings(data_dir=root / "data", model="fake", progress=False)
    embedder = FakeEmbedder()
    ingest_paths([write_files(root / "docs", TINY)], settings, embedder)
    engine = Engine(settings, load_index(settings), embedder)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def shared_two(tmp_path_factory) -> tuple[Settings, Path]:
    """`two`, built once for the module; tests must not write to its data directory."""
    from verbatim.engine import ingest_paths

    root = tmp_path_factory.mktemp("shared-two")
    settings = Settings(data_dir=root / "data", model="fake", progress=False)
    embedder = FakeEmbedder()
    papers = write_files(root / "papers", PAPERS)
    ingest_paths([write_files(root / "docs", TINY)], settings, embedder)
    ingest_paths([papers], settings.model_copy(update={"collection": "papers"}), embedder)
    return settings, papers


@pytest.fixture(scope="session")
def serve() -> Callable[..., AbstractContextManager[str]]:
    """`with serve(app) as url:` runs `app` under uvicorn in a thread on a free loopback port."""
    import uvicorn

    @contextmanager
    def serving(app) -> Iterator[str]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(10)

    return serving


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium driven by Playwright; skipped where it is not installed
    (an error on CI, where `make test` installs it)."""
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "chromium is not installed; `make test` installs it (apt-get install chromium)"
            )
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


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


def pytest_collection_modifyitems(items):
    """A test that loads the real model must say so (`slow`), so that the default run stays
    fast: one using a real-model fixture without the mark is an error, not a silent minute."""
    real = {"real_embedder", "default_engine", "model_cache"}
    for item in items:
        uses = real & set(getattr(item, "fixturenames", ()))
        if uses and item.get_closest_marker("slow") is None:
            raise pytest.UsageError(f"{item.nodeid} uses {sorted(uses)} but is not marked slow")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """A test module whose `pytestmark` the `-m` expression deselects whatever other marks its
    tests carry is not imported at all: the fast run then never loads Ray, Playwright or
    schemathesis (about 1.5 s of imports) only to deselect every test of those modules."""
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    here = config.invocation_params.dir
    if collection_path in {(here / arg.split("::")[0]).resolve() for arg in config.args}:
        return None  # named on the command line: collected, and deselected as pytest says
    marks = _module_marks(collection_path)
    expression = config.getoption("markexpr")
    if not marks or not expression:
        return None
    try:
        tree = ast.parse(expression, mode="eval").body
        named = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} - marks
        others = [set(c) for n in range(len(named) + 1) for c in combinations(sorted(named), n)]
        return not any(_selects(tree, marks | extra) for extra in others) or None
    except (SyntaxError, ValueError):
        return None  # an expression this reading does not know: let pytest decide


def _module_marks(path: Path) -> set[str]:
    """The marks named in a module's top-level `pytestmark = pytest.mark.x` (or a list)."""
    for node in ast.parse(path.read_bytes()).body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "pytestmark":
            found = [ast.unparse(n) for n in ast.walk(node.value) if isinstance(n, ast.Attribute)]
            return {name.removeprefix("pytest.mark.") for name in found if "mark." in name}
    return set()


def _selects(node: ast.expr, marks: set[str]) -> bool:
    """A `-m` expression (names, `not`, `and`, `or`) for an item carrying `marks`."""
    if isinstance(node, ast.Name):
        return node.id in marks
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _selects(node.operand, marks)
    if isinstance(node, ast.BoolOp):
        values = (_selects(value, marks) for value in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    raise ValueError(f"not a plain mark expression: {ast.unparse(node)}")


# Three one-line documents as a JSONL corpus, for the eval's tests.
TINY_JSONL = [
    {"id": "d1", "title": "Oil", "text": "Change the engine oil every ten thousand kilometres."},
    {"id": "d2", "title": "Tomatoes", "text": "Tomatoes need full sun. Water them daily."},
    {"id": "d3", "title": "Bread", "text": "Knead the dough for ten minutes before baking."},
]


@pytest.fixture
def tiny_engine(tmp_path, settings, fake_embedder) -> Iterator["Engine"]:
    """`TINY_JSONL` built with the fake embedder, open to answer."""
    from verbatim.engine import Engine
    from verbatim.index import build_index, load_index
    from verbatim.ingest import read_documents

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in TINY_JSONL))
    build_index(read_documents([corpus], settings), settings, fake_embedder)
    engine = Engine(settings, load_index(settings), fake_embedder)
    yield engine
    engine.close()
