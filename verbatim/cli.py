"""The `verbatim` command: a thin layer over the library."""

from __future__ import annotations

import json
import re
import signal
import textwrap
import threading
from contextlib import closing
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import click

from verbatim.errors import VerbatimError
from verbatim.records import Filters
from verbatim.settings import DEFAULT_COLLECTION, MAX_K, Settings


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


collection_option = click.option(
    "--collection",
    default=None,
    envvar="VERBATIM_COLLECTION",
    help="The collection (document set) [default: default].",
)


@cli.command(cls=_Command)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@collection_option
@click.option(
    "--ray",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Read and embed on a Ray cluster (ray://host:10001, auto, host:port); alone, on a "
    "local one, or on --ray-address. A file or folder after --ray is a path to ingest, not an "
    'address. Needs pip install "verbatim[ray]".',
)
@click.option(
    "--ray-address",
    metavar="ADDRESS",
    envvar="VERBATIM_RAY_ADDRESS",
    help="The Ray cluster to read and embed on (implies --ray) [env: VERBATIM_RAY_ADDRESS].",
)
@click.option(
    "--workers", type=click.IntRange(min=1), help="With --ray: model actors (default: per GPU)."
)
@data_dir_option
def ingest(
    paths: tuple[Path, ...],
    collection: str | None,
    ray: str | None,
    ray_address: str | None,
    workers: int | None,
    data_dir: Path | None,
) -> None:
    """Index PATHS (folders or files of Markdown, text, HTML, PDF, DOCX, EPUB or JSONL) as
    a collection; default: the bundled corpus, as the default collection.

    Writes a new generation of the collection and switches to it only once it is complete;
    unchanged passages reuse their stored vectors. With --ray, Ray Data reads the files and
    embeds the texts (one model per actor); the index is the same as without it. With --ray
    and VERBATIM_STORE=qdrant, the Ray workers write the generation straight into Qdrant (no
    local copy), and an ingest killed and run again with the same arguments resumes.
    """
    from verbatim.engine import ingest_on_ray, ingest_paths

    paths, address = _ray_cluster(paths, ray, ray_address)
    settings = _settings(data_dir, collection=collection)
    given = list(paths) or [settings.corpus_dir]
    streamed = address is not None and settings.store == "qdrant"  # written to Qdrant alone
    where = (settings.qdrant_url or settings.data_dir / "qdrant") if streamed else settings.data_dir
    if address is None:
        report, skipped = ingest_paths(given, settings)
    else:
        address = None if address == "local" else address
        report, skipped = ingest_on_ray(given, settings, address, workers)
    _print_skipped(skipped)
    read = ", ".join(f"{n} {kind}" for kind, n in sorted(report.formats.items())) or "none"
    click.echo(
        f"Read {sum(report.formats.values())} files ({read}), skipped {len(skipped)}.\n"
        f"Indexed {report.documents} documents, {report.passages} passages, "
        f"{report.sentences} sentences in {report.read_seconds + report.seconds:.1f}s: "
        f"reading {report.read_seconds:.1f}s, embedding and indexing {report.seconds:.1f}s "
        f"({report.embedded} texts embedded, {report.reused} passages reused).\n"
        f"Collection {report.collection}: generation {report.generation} in {where}"
    )
    _print_feedback_check(settings, report.generation)


# What Ray takes as a cluster's address: auto, local, a URL (ray://host:10001), host:port.
RAY_ADDRESS = re.compile(r"auto|local|[a-z][a-z0-9+.-]*://\S+|[\w.-]+:\d+|\[[0-9a-fA-F:.]+\]:\d+")


def _ray_cluster(
    paths: tuple[Path, ...], ray: str | None, ray_address: str | None
) -> tuple[tuple[Path, ...], str | None]:
    """The paths to ingest and the Ray cluster to ingest on ("local", an address; None: no
    Ray). `--ray` takes the word after it when that is not an option: an existing file or
    folder there is a path (as `--ray` was typed before it), something else must be an address.
    """
    if ray is None or ray == "local":
        return paths, ray_address or ray
    if Path(ray).exists():
        return (Path(ray), *paths), ray_address or "local"
    if not RAY_ADDRESS.fullmatch(ray):
        raise click.UsageError(
            f"--ray {ray}: there is no file or folder {ray!r}, and it is not a Ray address "
            "(auto, host:port, ray://host:10001). Give the paths to ingest and --ray, or the "
            "cluster with --ray-address ADDRESS."
        )
    return paths, ray


def _print_skipped(skipped) -> None:
    """Each skipped file with its reason; past 20, each reason once with its count."""
    if len(skipped) <= 20:
        for s in skipped:
            click.echo(f"skipped {s.path}: {s.reason}", err=True)
        return
    by_reason: dict[str, list[str]] = {}
    for s in skipped:
        by_reason.setdefault(s.reason, []).append(s.path)
    for reason, where in sorted(by_reason.items(), key=lambda item: -len(item[1])):
        more = f" and {len(where) - 1} more" if len(where) > 1 else ""
        click.echo(f"skipped {where[0]}{more}: {reason}", err=True)


def _print_quote(q) -> None:
    if q.kind == "code":  # a code block keeps its lines; a lead-in before it is wrapped
        intro = q.text[: q.lead_in].strip()
        if intro:
            click.echo(
                textwrap.fill(intro, width=88, initial_indent="  “", subsequent_indent="   ")
            )
        code = q.text[q.lead_in :]
        click.echo(("" if intro else "  “\n") + textwrap.indent(code, "    ", lambda _: True))
        click.echo("  ”")
    else:
        body = textwrap.fill(q.text, width=88, initial_indent="  “", subsequent_indent="   ")
        click.echo(body + "”")
    who = ", ".join(x for x in (q.author, q.site, q.date) if x)
    role = " (the reader's letter, not advice)" if q.role == "letter" else ""
    click.echo(
        f"  — {q.title}"
        + (f", {who}" if who else "")
        + (f" · {q.section}" if q.section else "")
        + (f" · p. {q.page}" if q.page else "")
        + role
    )
    click.echo(f"    {q.link or q.doc_id} [{q.start}:{q.end}] score {q.score:.2f}")
    if q.also_in:
        click.echo(f"    also in: {', '.join(q.also_in)}")


def _filters(
    document: tuple[str, ...],
    author: str | None,
    site: str | None,
    since: str | None,
    until: str | None,
    path: str | None,
) -> Filters | None:
    found = Filters(tuple(document), author, site, since, until, path)
    return found or None


@cli.command(cls=_Command)
@click.argument("question")
@click.option(
    "-k", type=click.IntRange(1, MAX_K), default=None, help=f"Quotes to return (1-{MAX_K})."
)
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@collection_option
@click.option("--document", multiple=True, help="Only this document id (repeatable).")
@click.option("--author", help="Only documents by this author (whole name, any case).")
@click.option("--site", help="Only documents from this site (whole name, any case).")
@click.option("--since", metavar="YYYY-MM-DD", help="Only documents dated on or after this.")
@click.option("--until", metavar="YYYY-MM-DD", help="Only documents dated on or before this.")
@click.option("--path", help="Only documents whose id or source path starts with this.")
@data_dir_option
def ask(
    question: str,
    k: int | None,
    as_json: bool,
    collection: str | None,
    data_dir: Path | None,
    **narrow,
) -> None:
    """Answer QUESTION with verbatim quotes from a collection, optionally narrowed to some of
    its documents (undated documents are left out by --since and --until)."""
    from verbatim.answer import clean_question
    from verbatim.engine import open_engine

    settings = _settings(data_dir, progress=False, collection=collection)
    clean_question(question, settings)  # refuse bad input before loading anything
    engine = open_engine(settings)
    result = engine.ask(question, k=k, filters=_filters(**narrow))
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
@click.option(
    "--watch",
    "live",
    is_flag=True,
    help="Keep every collection in step with the folders it was ingested from.",
)
@data_dir_option
def serve(host: str | None, port: int | None, live: bool, data_dir: Path | None) -> None:
    """Serve the web form and JSON API, indexing the bundled corpus on first run.

    A collection's new generation (after `verbatim ingest` or `verbatim watch`) is served
    within a second or two, without downtime; SIGHUP (or POST /api/admin/reload with
    VERBATIM_ADMIN_TOKEN) switches at once. With --watch, files saved, renamed or deleted in
    the folders are applied as they change.
    """
    import uvicorn

    from verbatim.engine import open_engines
    from verbatim.server import create_app

    settings = _settings(data_dir, host=host, port=port)
    # Opened here rather than in the app's start-up, so that an index that cannot be built or
    # loaded (a full disk) is a message and exit 1, not uvicorn's traceback.
    engines = open_engines(settings, build_if_missing=True)
    app = create_app(settings, engine=engines)

    def reload(*_) -> None:  # SIGHUP: switch to the newest generation, off the event loop
        threading.Thread(target=app.state.verbatim.reload, daemon=True).start()

    signal.signal(signal.SIGHUP, reload)
    stop = threading.Event()
    if live:
        _watch_served(settings, engines, lambda: app.state.verbatim.follow(), stop)
    click.echo(f"Verbatim at http://{settings.host}:{settings.port}", err=True)
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    finally:
        stop.set()
        served = getattr(app.state, "verbatim", None)  # reloads replace the engines
        for engine in (served.engines if served else engines).values():
            engine.close()


def _watch_served(settings: Settings, engines: dict, served, stop: threading.Event) -> None:
    """A watcher thread for each collection with recorded folders; `served` after each batch
    (the server then serves it at once)."""
    from verbatim.watch import Watcher, watched_folders

    for name, engine in engines.items():
        each = settings.model_copy(update={"collection": name, "progress": False})
        roots = watched_folders(each)
        if not roots:
            click.echo(
                f"{name}: not watched: its index records no folders (ingested before they were "
                f"recorded); run `verbatim ingest PATHS --collection {name}` once",
                err=True,
            )
            continue

        def applied(batch) -> None:
            click.echo(batch.line(), err=True)
            served()

        watcher = Watcher(each, roots, engine.embedder, applied)
        threading.Thread(target=watcher.run, args=(stop,), daemon=True).start()
        click.echo(f"{name}: watching {', '.join(map(str, watcher.roots))}", err=True)


@cli.command(cls=_Command)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@collection_option
@data_dir_option
def watch(paths: tuple[Path, ...], collection: str | None, data_dir: Path | None) -> None:
    """Keep a collection in step with PATHS (by default the folders it was ingested from):
    files saved, renamed or deleted are applied as they change, reading only those, and
    what changed while nothing watched is caught up first. A running `verbatim serve` serves
    each new generation by itself. One line per applied batch; Ctrl-C stops."""
    from verbatim.engine import make_embedder
    from verbatim.watch import Watcher, watched_folders

    settings = _settings(data_dir, collection=collection, progress=False)
    roots = list(paths) or watched_folders(settings)
    if not roots:
        raise click.ClickException(
            f"collection {settings.collection!r} records no folders; give them: "
            "verbatim watch PATHS [--collection NAME]"
        )
    watcher = Watcher(settings, roots, make_embedder(settings), lambda b: click.echo(b.line()))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    folders = ", ".join(map(str, watcher.roots))
    click.echo(f"watching {folders} for collection {settings.collection!r}", err=True)
    watcher.run(stop)


@cli.command(cls=_Command)
@collection_option
@data_dir_option
def mcp(collection: str | None, data_dir: Path | None) -> None:
    """Serve the MCP tools and document resources over stdio, for an AI assistant that launches
    it (Claude Desktop, Claude Code, Cursor, VS Code...); see docs/mcp.md. Tools that name no
    collection answer from --collection. `verbatim serve` serves the same over HTTP at /mcp.
    """
    import sys
    from contextlib import redirect_stdout

    from verbatim.engine import open_engines
    from verbatim.server.mcp import create_server
    from verbatim.server.state import State

    settings = _settings(data_dir, progress=False)
    with redirect_stdout(sys.stderr):  # stdout carries the protocol alone
        engines = open_engines(settings, build_if_missing=True)
    state = State(settings, engines)
    if collection is not None:
        state.collection(collection)  # an unknown collection: say so now, not at each call
    try:
        create_server(settings, lambda: state, collection).run("stdio")
    finally:
        for engine in engines.values():
            engine.close()


@cli.command(cls=_Command)
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON.")
@data_dir_option
def collections(as_json: bool, data_dir: Path | None) -> None:
    """List the collections: each a document set with its own index."""
    from verbatim.engine import collection_info, served_collections, store_location
    from verbatim.watch import watch_status

    settings = _settings(data_dir)
    rows = [collection_info(settings, name) for name in served_collections(settings)]
    for row in rows:
        row["watch"] = watch_status(settings.model_copy(update={"collection": row["name"]}))
    if as_json:
        click.echo(json.dumps({"collections": rows}, indent=2))
        return
    if not rows:
        click.echo(f"No collections in {store_location(settings)}; run `verbatim ingest PATH`.")
    for row in rows:
        click.echo(
            f"{row['name']:<20} {row['documents']:>8} documents {row['passages']:>10} passages"
            f"  generation {row['generation']}"
        )
        if row["watch"]:
            _print_watch(row["watch"])


def _print_watch(status: dict) -> None:
    """A collection's watch status under its line: folders, last update, pending, skipped."""
    state = "watching" if status["active"] else "watched (no watcher running)"
    last = status.get("last_update")
    when = datetime.fromtimestamp(last).strftime("%Y-%m-%d %H:%M:%S") if last else "none yet"
    click.echo(
        f"  {state} {', '.join(status['folders'])}: last update {when}, "
        f"{status.get('pending', 0)} changes pending"
        + (", merging in the background" if status.get("merging") else "")
    )
    for line in filter(None, (status.get("paused"), status.get("error"))):
        click.echo(f"  {line}")
    for s in status.get("skipped", []):
        click.echo(f"  skipped {s['path']}: {s['reason']}")


@cli.command(cls=_Command)
@click.option("--collection", required=True, help="The collection to delete.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@data_dir_option
def remove(collection: str, yes: bool, data_dir: Path | None) -> None:
    """Delete a collection and its index (its feedback is kept), from the store in use. A
    running server drops it at its next reload (SIGHUP)."""
    from verbatim.engine import remove_collection, served_collections, store_location

    settings = _settings(data_dir, collection=collection)
    known = served_collections(settings)
    if collection not in known:
        names = ", ".join(known) or "none"
        raise click.ClickException(f"no collection named {collection!r}; known: {names}")
    if not yes:
        where = store_location(settings)
        click.confirm(f"Delete collection {collection!r} in {where}?", abort=True)
    remove_collection(settings, collection)
    click.echo(f"Removed collection {collection}.")


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
@click.option(
    "--worst",
    type=click.IntRange(min=0),
    default=0,
    help="Print the N answerable questions answered worst, with their first three quotes.",
)
@click.option(
    "--folds",
    type=click.IntRange(min=2),
    help="Also report the mean, sd and se of the headline figures over K folds by question.",
)
@click.option(
    "--baseline/--no-baseline",
    default=True,
    help="Rank the documents by a whole-document dense baseline beside Verbatim (default on).",
)
@data_dir_option
def eval_command(
    questions: Path,
    corpus: Path | None,
    offtopic: tuple[Path, ...],
    json_out: Path | None,
    gate: bool,
    worst: int,
    folds: int | None,
    baseline: bool,
    data_dir: Path | None,
) -> None:
    """Measure grounding, quotes, retrieval and abstention on QUESTIONS.

    QUESTIONS is a file in Verbatim's eval format (one JSON object a line) or a BEIR folder
    (corpus.jsonl, queries.jsonl, qrels/*.tsv).
    """
    from verbatim.engine import open_engine
    from verbatim.eval import (
        corpus_engine,
        cross_validate,
        evaluate,
        load_questions,
        read_questions,
    )
    from verbatim.eval.dense import comparison
    from verbatim.eval.folds import lines as fold_lines
    from verbatim.eval.report import gate as check_gate
    from verbatim.eval.report import plot, table

    settings = _settings(data_dir)
    items, beir_corpus = load_questions(questions)
    corpus = corpus or beir_corpus
    engine = corpus_engine(corpus, settings) if corpus else open_engine(settings)
    extra = [q for path in offtopic for q in read_questions(path)]
    cache = settings.data_dir / "eval" / "dense"
    report = evaluate(items, engine, extra, settings.progress, baseline, cache)
    title = f"{questions}" + (f" on {corpus}" if corpus else "")
    click.echo(table(report, title))
    click.echo(comparison(report.metrics))
    if folds:
        report.folds = cross_validate(report, folds)
        click.echo(fold_lines(report.folds))
    if worst:
        _print_worst(report, worst)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_json(), indent=1, ensure_ascii=False))
        try:
            plot(report, json_out.with_suffix(".png"), title=questions.name)
            click.echo(f"wrote {json_out} and {json_out.with_suffix('.png')}")
        except VerbatimError as exc:  # no plotting extra: the JSON is written all the same
            click.echo(f"wrote {json_out}; no curve: {exc}")
    if gate:
        failures = check_gate(report)
        if failures:
            raise click.ClickException("quality gate failed:\n  " + "\n  ".join(failures))
        click.echo("quality gate passed")


@cli.group()
def feedback() -> None:
    """The feedback readers gave on quotes (helpful / not helpful), as eval data."""


@feedback.command("export", cls=_Command)
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--collection",
    default=DEFAULT_COLLECTION,
    show_default=True,
    help="The collection whose feedback to export.",
)
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
    metavar="DATE",
    help="Only feedback given from this date on: YYYY-MM-DD, or with THH:MM:SS (UTC).",
)
@data_dir_option
def feedback_export(
    out: Path, collection: str, since: datetime | None, data_dir: Path | None
) -> None:
    """Write the feedback as an eval set: one line a question, for `verbatim eval OUT`.

    `answers` holds the quotes marked helpful, `relevant` their documents, `not_answers` the
    quotes marked unhelpful. Quotes whose text left the index (changed or gone at the last
    ingest) are left out.
    """
    from verbatim.errors import UnknownCollection
    from verbatim.feedback import FeedbackStore, export
    from verbatim.index import generations

    settings = _settings(data_dir)
    known = sorted(
        {
            *generations.collection_names(settings.data_dir),
            *FeedbackStore(settings.data_dir).collections(),
        }
    )
    if collection not in known:
        raise UnknownCollection(
            f"no collection named {collection!r}; known collections: {', '.join(known) or 'none'}"
        )
    stamp = since.strftime("%Y-%m-%dT%H:%M:%S") if since else None
    done = export(settings.data_dir, out, collection, stamp)
    click.echo(
        f"Wrote {done.questions} questions to {out} ({done.helpful} quotes marked helpful, "
        f"{done.unhelpful} unhelpful)"
        + (f"; left out {done.stale} whose text is no longer in the index" if done.stale else "")
    )


@cli.command(cls=_Command)
@click.argument("citations", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write each citation's result here, as JSON.",
)
@data_dir_option
def verify(citations: Path, json_out: Path | None, data_dir: Path | None) -> None:
    """Check the quotes cited in CITATIONS against the index; exit 1 if any changed or is gone.

    CITATIONS holds one JSON object a line: doc_id, start, end, content_hash, text (and
    optionally collection); each quote of `verbatim ask --json` is one. A citation is current
    (same text, same offsets), moved (the text elsewhere in the document: new offsets), changed
    (the document no longer has it) or gone (no such document).
    """
    from verbatim.citations import BROKEN, read_citations

    settings = _settings(data_dir, progress=False)
    items = read_citations(citations)
    results, generation = _verify_by_collection(settings, items)
    _print_verifications(items, results)
    counts = {s: sum(r.status == s for r in results) for s in ("current", "moved", *BROKEN)}
    click.echo(", ".join(f"{n} {s}" for s, n in counts.items()) + f" (generation {generation})")
    if json_out:
        rows = [
            {
                "line": i,
                "citation": asdict(c),
                **{k: v for k, v in asdict(r).items() if v is not None},
            }
            for i, (c, r) in _numbered(items, results)
        ]
        report = {"generation": generation, "counts": counts, "citations": rows}
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    if counts["changed"] + counts["gone"]:
        raise click.exceptions.Exit(1)


def _verify_by_collection(settings: Settings, items: list) -> tuple[list, str]:
    """Each citation checked against its own collection's index, in the given order; and the
    generations checked against (one name, or name per collection)."""
    from verbatim.citations import verify_in
    from verbatim.index import open_store

    results: list = [None] * len(items)
    generations = {}
    for name in dict.fromkeys(c.collection for c in items):
        rows = [i for i, c in enumerate(items) if c.collection == name]
        with closing(open_store(settings.model_copy(update={"collection": name}))) as index:
            for i, result in zip(rows, verify_in(index, [items[i] for i in rows]), strict=True):
                results[i] = result
            generations[name] = index.generation
    if len(generations) <= 1:
        return results, next(iter(generations.values()), "none checked")
    return results, ", ".join(f"{name} {g}" for name, g in generations.items())


def _numbered(items: list, results: list) -> list:
    return list(enumerate(zip(items, results, strict=True), 1))


def _print_verifications(items: list, results: list) -> None:
    width = max([len(c.doc_id) for c in items] + [8])
    click.echo(f"{'#':>4}  {'status':<8} {'document':<{width}}  {'cited':<15} now")
    for i, (c, r) in _numbered(items, results):
        now = f"[{r.start}:{r.end}]" if r.start is not None else "-"
        click.echo(f"{i:>4}  {r.status:<8} {c.doc_id:<{width}}  {f'[{c.start}:{c.end}]':<15} {now}")


def _print_feedback_check(settings: Settings, generation: str) -> None:
    """The ingest summary's last line: how the stored feedback citations fared."""
    from verbatim.engine import feedback_check

    counts = feedback_check(settings, generation)
    if counts:
        kept = (
            " (changed and gone ones are kept, marked)"
            if counts["changed"] + counts["gone"]
            else ""
        )
        summary = ", ".join(f"{n} {status}" for status, n in counts.items())
        click.echo(f"Feedback citations re-checked: {summary}{kept}")


def _print_worst(report, n: int) -> None:
    from verbatim.eval import worst_lines

    click.echo("\n" + worst_lines(report, n))
