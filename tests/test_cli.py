import json

import pytest
from click.testing import CliRunner

from verbatim.cli import cli
from verbatim.index import load_index
from verbatim.settings import Settings


@pytest.fixture
def runner():
    return CliRunner()


def test_every_command_has_help(runner):
    for name, command in cli.commands.items():
        assert command.help, name
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


@pytest.mark.parametrize("model", ["fake", pytest.param("real", marks=pytest.mark.slow)])
def test_ingest_then_ask_json_grounded(runner, tiny_corpus, tmp_path, request, model):
    if model == "fake":
        request.getfixturevalue("fake_model")
    data = tmp_path / "cli-data"
    result = runner.invoke(cli, ["ingest", str(tiny_corpus), "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert "Indexed 3 documents" in result.output
    result = runner.invoke(
        cli, ["ask", "How often should I change the engine oil?", "--json", "--data-dir", str(data)]
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert not answer["abstained"] and answer["quotes"]
    top = answer["quotes"][0]
    assert top["doc_id"] == "cars" and "ten thousand kilometres" in top["text"]
    with load_index(Settings(data_dir=data, progress=False)) as index:
        for quote in answer["quotes"]:
            assert index.text(quote["doc_id"])[quote["start"] : quote["end"]] == quote["text"]
    result = runner.invoke(cli, ["ask", "How do I keep aphids off?", "--data-dir", str(data)])
    assert result.exit_code == 0 and "Growing Tomatoes, Ada Gardener" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask", ""], "question is empty"),
        (["ask", "   "], "question is empty"),
        (["ask", "x" * 100_000], "the limit is 10000"),
        (["ask", "hello?"], "run `verbatim ingest`"),
        (["ask", "hello?", "-k", "50"], "not in the range"),
    ],
)
def test_bad_input_is_a_clean_error(runner, args, message):
    result = runner.invoke(cli, args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_ingest_errors_are_clean(runner, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "x.txt").write_bytes(b"\x00\xff\xfe")
    for folder in ("empty", "bin", "nowhere"):
        result = runner.invoke(cli, ["ingest", str(tmp_path / folder)])
        assert result.exit_code == 1
        assert "Error:" in result.output and "Traceback" not in result.output
