"""The `verbatim` command: a thin layer over the library."""

from __future__ import annotations

import json
import signal
import textwrap
import threading
from dataclasses import asdict
from pathlib import Path

import click

from verbatim.errors import VerbatimError
from verbatim.settings import MAX_K, Settings


def _settings(data_dir: Path | None, **extra) -> Settings:
    values = {k: v for k, v in extra.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)


class _Command(click.Command):
    """Shows library errors as clean messages (exit 1), never as tracebacks."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except VerbatimError as exc:
            raise click.ClickException(exc.message) from None


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="VERBATIM_DATA_DIR",
    help="Where the index lives [env: VERBATIM_DATA_DIR; default: the user data directory].",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="verbatim")
def cli() -> None:
    """Verbatim answers questions only with verbatim, attributed quotes from your documents."""


@cli.command(cls=_Command)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@data_dir_option
def ingest(paths: tuple[Path, ...], data_dir: Path | None) -> None:
    """Index PATHS (folders or files of Markdown, text, HTML or JSONL); default: the bundled
    corpus.

    Writes a new index generation and switches to it only once it is complete; unchanged
    passages reuse their stored vectors.
    """
    from verbatim.engine import ingest_paths

    settings = _settings(data_dir)
    report, skipped = ingest_paths(list(paths) or [settings.corpus_dir], settings)
    for s in skipped:
        click.echo(f"skipped {s.path}: {s.reason}", err=True)
    click.echo(
        f"Indexed {report.documents} documents, {report.passages} passages, "
        f"{report.sentences} sentences in {report.seconds:.1f}s "
        f"({report.embedded} texts embedded, {report.reused} passages reused).\n"
        f"Generation {report.generation} in {settings.data_dir}"
    )


def _print_quote(q) -> None:
    body = textwrap.fill(q.text, width=88, initial_indent="  “", subsequent_indent="   ")
    click.echo(body + "”")
    who = ", ".join(x for x in (q.author, q.site, q.date) if x)
    role = " (the reader's letter, not advice)" if q.role == "letter" else ""
    click.echo(
        f"  — {q.title}"
        + (f", {who}" if who else "")
        + (f" · {q.section}" if q.section else "")
        + role
    )
    click.echo(f"    {q.link or q.doc_id} [{q.start}:{q.end}] score {q.score:.2f}")
    if q.also_in:
        click.echo(f"    also in: {', '.join(q.also_in)}")


@cli.command(cls=_Command)
@click.argument("question")
@click.option(
    "-k", type=click.IntRange(1, MAX_K), default=None, help=f"Quotes to return (1-{MAX_K})."
)
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@data_dir_option
def ask(question: str, k: int | None, as_json: bool, data_dir: Path | None) -> None:
    """Answer QUESTION with verbatim quotes from the index."""
    from verbatim.answer import clean_question
    from verbatim.engine import open_engine

    settings = _settings(data_dir, progress=False)
    clean_question(question, settings)  # refuse bad input before loading anything
    engine = open_engine(settings)
    result = engine.ask(question, k=k)
    if as_json:
        click.echo(json.dumps(asdict(result), ensure_ascii=False, indent=2))
        return
    if result.abstained:
        click.echo(result.reason)
        if result.near_misses:
            click.echo("\nWeaker matches (not an answer):")
            for q in result.near_misses:
                _print_quote(q)
        return
    for q in result.quotes:
        _print_quote(q)
        click.echo()


@cli.command(cls=_Command)
@click.option("--host", default=None, help="Interface to listen on [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default: 8000].")
@data_dir_option
def serve(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Serve the web form and JSON API, indexing the bundled corpus on first run.

    After `verbatim ingest`, send SIGHUP (or POST /api/admin/reload with VERBATIM_ADMIN_TOKEN)
    to switch to the new index without downtime.
    """
    import uvicorn

    from verbatim.server import create_app

    settings = _settings(data_dir, host=host, port=port)
    app = create_app(settings)

    def reload(*_) -> None:  # SIGHUP: switch to the newest generation, off the event loop
        threading.Thread(target=app.state.verbatim.reload, daemon=True).start()

    signal.signal(signal.SIGHUP, reload)
    click.echo(f"Verbatim at http://{settings.host}:{settings.port}", err=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


@cli.command("eval", cls=_Command)
@click.argument("questions", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--corpus",
    type=click.Path(exists=True, path_type=Path),
    help="Corpus to index for this run (a corpus.jsonl or a folder); cached by content. "
    "Default: the installed index, or corpus.jsonl of a BEIR folder.",
)
@click.option(
    "--offtopic",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="Questions that must all be abstained on (eval format). Repeatable.",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every figure and per-question results here (and a .png curve).",
)
@click.option("--gate", is_flag=True, help="Exit 1 unless the CI quality gate is met.")
@data_dir_option
def eval_command(
    questions: Path,
    corpus: Path | None,
    offtopic: tuple[Path, ...],
    json_out: Path | None,
    gate: bool,
    data_dir: Path | None,
) -> None:
    """Measure grounding, quotes, retrieval and abstention on QUESTIONS.

    QUESTIONS is a file in Verbatim's eval format (one JSON object a line) or a BEIR folder
    (corpus.jsonl, queries.jsonl, qrels/*.tsv).
    """
    from verbatim.engine import open_engine
    from verbatim.eval import corpus_engine, evaluate, load_questions, read_questions
    from verbatim.eval.report import gate as check_gate
    from verbatim.eval.report import plot, table

    settings = _settings(data_dir)
    items, beir_corpus = load_questions(questions)
    corpus = corpus or beir_corpus
    engine = corpus_engine(corpus, settings) if corpus else open_engine(settings)
    extra = [q for path in offtopic for q in read_questions(path)]
    report = evaluate(items, engine, extra, progress=settings.progress)
    title = f"{questions}" + (f" on {corpus}" if corpus else "")
    click.echo(table(report, title))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_json(), indent=1, ensure_ascii=False))
        plot(report, json_out.with_suffix(".png"), title=questions.name)
        click.echo(f"wrote {json_out} and {json_out.with_suffix('.png')}")
    if gate:
        failures = check_gate(report)
        if failures:
            raise click.ClickException("quality gate failed:\n  " + "\n  ".join(failures))
        click.echo("quality gate passed")
