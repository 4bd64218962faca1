"""`verbatim eval --json` without the `plot` extra: the JSON is written, and the message names
the extra to install instead of a traceback."""

import json

import pytest
from click.testing import CliRunner

from verbatim.cli import cli
from verbatim.errors import VerbatimError
from verbatim.eval.report import plot

QUESTION = {
    "id": "oil",
    "question": "How often should I change the engine oil?",
    "relevant": ["cars.html"],
    "answers": ["Change the engine oil every ten thousand kilometres"],
}


@pytest.fixture
def no_matplotlib(monkeypatch):
    """`import matplotlib` fails, as after a plain `pip install verbatim`."""
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)


def test_plot_names_the_extra_when_matplotlib_is_missing(no_matplotlib, tmp_path):
    with pytest.raises(VerbatimError, match=r"verbatim\[plot\]"):
        plot(object(), tmp_path / "curve.png")
    assert not (tmp_path / "curve.png").exists()


def test_eval_writes_its_json_without_the_plot_extra(
    no_matplotlib, fake_engine, tiny_corpus, tmp_path, monkeypatch
):
    monkeypatch.setattr("verbatim.eval.corpus_engine", lambda corpus, settings: fake_engine)
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps(QUESTION) + "\n")
    out = tmp_path / "report" / "q.json"
    args = ["eval", str(questions), "--corpus", str(tiny_corpus), "--json", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["metrics"]["questions"]["answerable"] == 1
    assert not out.with_suffix(".png").exists()
    assert "pip install 'verbatim[plot]'" in result.output
