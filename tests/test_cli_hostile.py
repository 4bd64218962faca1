"""The command line as careless or unlucky people meet it: a full disk at `serve`, a flag typed
before the path, an export into a folder that is not there. A message and exit 1, never a
traceback. Fake embedder: fast."""

import errno
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from verbatim.cli import cli
from verbatim.errors import NoDocuments
from verbatim.feedback import FeedbackStore, NewFeedback

from .conftest import ROOT


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_serve_on_a_full_disk_with_no_index_says_so_and_exits(tmp_path, fake_model, monkeypatch):
    monkeypatch.setattr(np, "save", no_space)
    data = tmp_path / "data"
    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(data), "--port", "0"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.exc_info[0] is SystemExit
    assert "No space left on device" in result.output and str(data) in result.output
    assert "Free some disk space" in result.output
    assert not list(data.rglob(".tmp-*"))  # no half-written generation left behind


@pytest.fixture
def on_ray(monkeypatch):
    """`ingest_on_ray` and `ingest_paths` recording how they were called (no Ray is started):
    each call stops the command with NoDocuments, so nothing is written either."""
    calls = []

    def record(how):
        def called(paths, settings, address=None, workers=None):
            calls.append((how, [str(p) for p in paths], address))
            raise NoDocuments("recorded")

        return called

    monkeypatch.setattr("verbatim.engine.ingest_on_ray", record("ray"))
    monkeypatch.setattr("verbatim.engine.ingest_paths", record("here"))
    return calls


@pytest.mark.parametrize(
    ("args", "how", "address"),
    [
        (["--ray", "docs"], "ray", None),  # the flag typed before the path
        (["docs", "--ray"], "ray", None),
        (["--ray", "auto", "docs"], "ray", "auto"),
        (["--ray", "ray://head:10001", "docs"], "ray", "ray://head:10001"),
        (["--ray", "10.0.0.5:6379", "docs"], "ray", "10.0.0.5:6379"),
        (["--ray-address", "auto", "docs"], "ray", "auto"),
        (["--ray", "--ray-address", "ray://head:10001", "docs"], "ray", "ray://head:10001"),
        (["--ray", "docs", "--ray-address", "auto"], "ray", "auto"),
        (["docs"], "here", None),
    ],
)
def test_ray_takes_an_address_but_never_a_path(args, how, address, tmp_path, on_ray, monkeypatch):
    (tmp_path / "docs").mkdir()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["ingest", *args])
    assert result.exit_code == 1 and "recorded" in result.output, result.output
    assert on_ray == [(how, ["docs"], address)]


def test_ray_before_a_missing_path_says_what_was_meant(tmp_path, on_ray, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["ingest", "--ray", "corpus"])
    assert result.exit_code == 2 and on_ray == []
    assert "no file or folder 'corpus'" in result.output and "--ray-address" in result.output
    assert "Traceback" not in result.output


@pytest.fixture
def given_feedback(tmp_path):
    data = tmp_path / "data"
    entry = NewFeedback("Why?", "default", "doc", 0, 4, "h", "Text", "helpful", None, "g")
    FeedbackStore(data).add(entry, 10)
    return data


def test_feedback_export_into_a_missing_folder_names_it(tmp_path, given_feedback):
    out = tmp_path / "nonexistent" / "dir" / "out.jsonl"
    args = ["feedback", "export", str(out), "--data-dir", str(given_feedback)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"no folder {out.parent}" in result.output
    assert not (tmp_path / "nonexistent").exists()  # no folders made


def test_feedback_export_on_a_full_disk_keeps_the_last_export(
    tmp_path, given_feedback, monkeypatch
):
    out = tmp_path / "out.jsonl"
    args = ["feedback", "export", str(out), "--data-dir", str(given_feedback)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    before = out.read_text()
    monkeypatch.setattr("verbatim.feedback.os.replace", no_space)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"the disk holding {tmp_path} is full" in result.output
    assert out.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "data",
        "out.jsonl",
    ]


# `verbatim ask` on a Qdrant local-mode store, with the fake embedder, in a process of its own:
# what it prints while the interpreter shuts down is what is tested.
ASK_ON_QDRANT = """
import sys
from pathlib import Path

import verbatim.engine
from tests.conftest import TINY, FakeEmbedder
from verbatim.cli import cli
from verbatim.engine import ingest_paths
from verbatim.settings import Settings

root = Path(sys.argv[1])
(root / "docs").mkdir()
for name, text in TINY.items():
    (root / "docs" / name).write_text(text)
settings = Settings(data_dir=root / "data", model="fake", store="qdrant", progress=False)
ingest_paths([root / "docs"], settings, FakeEmbedder())
verbatim.engine.make_embedder = lambda settings: FakeEmbedder()
cli(["ask", "How often should I change the oil?", "--data-dir", str(root / "data")])
"""


@pytest.mark.stress  # a process of its own: seconds
def test_ask_on_a_local_qdrant_store_exits_without_a_shutdown_error(tmp_path):
    pytest.importorskip("qdrant_client")
    env = {**os.environ, "VERBATIM_STORE": "qdrant", "PYTHONPATH": str(ROOT)}
    env.pop("VERBATIM_QDRANT_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", ASK_ON_QDRANT, str(tmp_path)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Change the engine oil" in done.stdout  # it answered, from Qdrant
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr
