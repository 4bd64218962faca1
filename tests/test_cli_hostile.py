"""The command line as careless or unlucky people meet it: a full disk at `serve`, a flag typed
before the path, an export into a folder that is not there. A message and exit 1, never a
traceback. Fake embedder: fast."""

import errno

import numpy as np
from click.testing import CliRunner

from verbatim.cli import cli


def test_serve_on_a_full_disk_with_no_index_says_so_and_exits(tmp_path, fake_model, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    data = tmp_path / "data"
    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(data), "--port", "0"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.exc_info[0] is SystemExit
    assert "No space left on device" in result.output and str(data) in result.output
    assert "Free some disk space" in result.output
    assert not list(data.rglob(".tmp-*"))  # no half-written generation left behind
