"""The command line as careless or unlucky people meet it: a full disk at `serve`, a flag typed
before the path, an export into a folder that is not there. A message and exit 1, never a
traceback. Fake embedder: fast."""

import errno

import numpy as np
import pytest
from click.testing import CliRunner

from verbatim.cli import cli
from verbatim.errors import NoDocuments
from verbatim.feedback import FeedbackStore, NewFeedback


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
