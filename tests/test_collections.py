"""Several document sets in one data directory, and filters that narrow a question to some of a
collection's documents: through the library, the API (POST and GET), the CLI and the form."""

import json
import random
import threading
from collections.abc import Iterator
from datetime import date

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import FakeEmbedder
from verbatim.cli import cli
from verbatim.engine import ingest_paths, open_engines
from verbatim.errors import InvalidCollectionName, InvalidFilter
from verbatim.index import generations, load_index
from verbatim.index.catalog import Catalog
from verbatim.records import DocumentMeta, Filters
from verbatim.server import create_app
from verbatim.settings import Settings

KITE = "How do I launch a kite?"
OIL = "How often should I change the engine oil?"


@pytest.fixture
def fake_cli(monkeypatch, fake_model):
    """The CLI on the fake embedder, reading indexes built with it."""
    monkeypatch.setenv("VERBATIM_MODEL", "fake")


def _client(settings: Settings, embedder: FakeEmbedder) -> Iterator[TestClient]:
    engines = open_engines(settings, embedder)
    app = create_app(settings.model_copy(update={"admin_token": "t"}), engine=engines)
    with TestClient(app) as client:
        yield client
    for engine in engines.values():
        engine.close()


@pytest.fixture(scope="module")
def client(shared_two):
    """The app over both collections, once for the tests that only read through it."""
    yield from _client(shared_two[0], FakeEmbedder())


@pytest.fixture
def fresh_client(two, fake_embedder):
    """The app over `two`, for a test that ingests or posts feedback."""
    yield from _client(two[0], fake_embedder)


def docs(answer: dict) -> set[str]:
    return {q["doc_id"] for q in answer["quotes"]}


# --- collections ----------------------------------------------------------------------------


def test_each_collection_answers_only_from_itself(shared_two, fake_embedder):
    settings, _ = shared_two
    engines = open_engines(settings, fake_embedder)
    assert list(engines) == ["default", "papers"]
    kite = engines["papers"].ask(KITE, k=3)
    assert kite.collection == "papers" and not kite.abstained
    assert all(q.collection == "papers" for q in kite.quotes)
    assert docs({"quotes": [q.__dict__ for q in kite.quotes]}) <= {
        "kites/flying",
        "kites/repair",
        "bees/hives",
        "undated",
    }
    oil = engines["default"].ask(OIL, k=3)
    assert {q.doc_id for q in oil.quotes} <= {"gardening", "bread", "cars"}
    assert oil.collection == "default"
    for engine in engines.values():
        engine.close()


def test_each_collection_has_its_own_generations_and_calibration(shared_two):
    settings, _ = shared_two
    default = load_index(settings)
    papers = load_index(settings.model_copy(update={"collection": "papers"}))
    with default, papers:
        assert default.path.parent == settings.data_dir / "generations"
        assert papers.path.parent == settings.data_dir / "collections/papers/generations"
        assert default.manifest["corpus_hash"] != papers.manifest["corpus_hash"]
        assert "calibration" in papers.manifest
    assert generations.collection_names(settings.data_dir) == ["default", "papers"]


@pytest.mark.parametrize("name", ["Papers", "-x", "a b", "../up", "", "x" * 65, "é"])
def test_a_bad_collection_name_is_refused_with_the_rule(settings, name):
    with pytest.raises(InvalidCollectionName, match=r"\[a-z0-9\]\[a-z0-9_-\]\{0,63\}"):
        Settings(data_dir=settings.data_dir, collection=name)
    result = CliRunner().invoke(cli, ["ingest", "--collection", name, "--data-dir", "d"])
    assert result.exit_code != 0 and "a-z0-9" in result.output


def test_api_lists_collections_and_names_them_in_answers(client):
    listed = client.get("/api/collections").json()["collections"]
    assert [c["name"] for c in listed] == ["default", "papers"]
    assert listed[1]["documents"] == 4 and listed[1]["passages"] >= 4
    health = client.get("/api/health").json()
    assert [c["name"] for c in health["collections"]] == ["default", "papers"]
    post = client.post("/api/ask", json={"question": KITE, "collection": "papers"}).json()
    get = client.get("/api/ask", params={"q": KITE, "collection": "papers"}).json()
    assert post["collection"] == get["collection"] == "papers"
    assert post["quotes"] == get["quotes"] and post["quotes"]
    assert client.get("/api/ask", params={"q": OIL}).json()["collection"] == "default"
    page = client.get("/api/documents", params={"collection": "papers"}).json()
    assert page["total"] == 4
    one = client.get("/api/documents/kites/flying", params={"collection": "papers"})
    assert one.status_code == 200 and one.json()["author"] == "Kim Flyer"
    assert client.get("/api/documents/kites/flying").status_code == 404  # not in default


@pytest.mark.parametrize(
    "request_",
    [
        ("post", "/api/ask", {"json": {"question": KITE, "collection": "nope"}}),
        ("get", "/api/ask", {"params": {"q": KITE, "collection": "nope"}}),
        ("get", "/api/documents", {"params": {"collection": "nope"}}),
        ("get", "/api/documents/bread", {"params": {"collection": "nope"}}),
    ],
)
def test_an_unknown_collection_is_404_listing_the_known(client, request_):
    method, url, kwargs = request_
    r = getattr(client, method)(url, **kwargs)
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "unknown_collection" and "default, papers" in error["message"]


def test_openapi_documents_collections_and_filters(client):
    spec = client.get("/openapi.json").json()
    assert "/api/collections" in spec["paths"]
    get_params = {p["name"] for p in spec["paths"]["/api/ask"]["get"]["parameters"]}
    assert get_params >= {"q", "k", "collection", "documents", "author", "site"}
    assert get_params >= {"date_from", "date_to", "path"}
    schemas = spec["components"]["schemas"]
    assert set(schemas["Filters"]["properties"]) == {
        "documents",
        "author",
        "site",
        "date_from",
        "date_to",
        "path",
    }
    assert "collection" in schemas["AskRequest"]["properties"]


def test_reload_picks_up_a_new_collection_without_dropping_requests(
    fresh_client, two, tmp_path, fake_embedder
):
    client = fresh_client
    settings, papers = two
    failures, answered, stop = [], [], threading.Event()

    def load():
        while not stop.is_set():
            r = client.get("/api/ask", params={"q": KITE, "collection": "papers"})
            (answered if r.status_code == 200 else failures).append(r.status_code)

    workers = [threading.Thread(target=load) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        notes = settings.model_copy(update={"collection": "notes"})
        ingest_paths([papers / "bees"], notes, fake_embedder)
        (papers / "kites/new.md").write_text("Fly a kite on a windy hill.\n", encoding="utf-8")
        ingest_paths([papers], settings.model_copy(update={"collection": "papers"}), fake_embedder)
        r = client.post("/api/admin/reload", headers={"Authorization": "Bearer t"})
        assert r.status_code == 200, r.text
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert failures == [] and answered
    names = [c["name"] for c in client.get("/api/collections").json()["collections"]]
    assert names == ["default", "notes", "papers"]
    bees = client.get(
        "/api/ask", params={"q": "When do I inspect the hive?", "collection": "notes"}
    )
    assert bees.status_code == 200 and docs(bees.json()) == {"hives"}
    assert (
        client.get("/api/documents/kites/new", params={"collection": "papers"}).status_code == 200
    )

    generations.remove_collection(settings.data_dir, "notes")
    client.post("/api/admin/reload", headers={"Authorization": "Bearer t"})
    gone = client.get("/api/ask", params={"q": KITE, "collection": "notes"})
    assert gone.status_code == 404


def test_reload_loads_only_the_collections_that_changed(two, fake_embedder, monkeypatch):
    """An unchanged collection keeps its engine, known from its CURRENT pointer: a reload after
    ingesting one collection does not load the others again (a million-passage index takes
    25 s and gigabytes to load)."""
    import verbatim.engine
    from verbatim.engine import open_engines
    from verbatim.server.state import State

    settings, papers = two
    state = State(settings, open_engines(settings, fake_embedder))
    before = dict(state.engines)
    loaded: list[str] = []
    real = verbatim.engine.load_engine

    def counting(s, embedder):
        loaded.append(s.collection)
        return real(s, embedder)

    monkeypatch.setattr(verbatim.engine, "load_engine", counting)
    state.reload()
    assert loaded == [] and state.engines == before
    (papers / "kites/new.md").write_text("Fly a kite on a windy hill.\n", encoding="utf-8")
    ingest_paths([papers], settings.model_copy(update={"collection": "papers"}), fake_embedder)
    served = state.reload()
    assert loaded == ["papers"]
    assert state.engines["default"] is before["default"]
    assert served["papers"] != before["papers"].answering.generation


# --- filters --------------------------------------------------------------------------------

KIM = {"kites/flying", "bees/hives", "undated"}
CASES = [
    ({"author": "kim flyer"}, KIM),  # any case
    ({"site": "kites.example"}, {"kites/flying", "kites/repair"}),
    ({"date_from": "2023-01-01"}, {"kites/repair", "bees/hives"}),  # undated left out
    ({"date_to": "2022-12-31"}, {"kites/flying"}),
    ({"date_from": "2021-06-01", "date_to": "2021-06-01"}, {"kites/flying"}),  # inclusive
    ({"path": "kites/"}, {"kites/flying", "kites/repair"}),
    ({"documents": ["undated", "bees/hives"]}, {"undated", "bees/hives"}),
    ({"author": "Kim Flyer", "site": "kites.example"}, {"kites/flying"}),
    ({"author": "Kim Flyer", "date_from": "2022-01-01", "path": "bees"}, {"bees/hives"}),
]


@pytest.mark.parametrize(("given", "allowed"), CASES)
def test_every_filter_alone_and_combined_through_post_get_and_form(client, given, allowed):
    body = {"question": KITE, "collection": "papers", "k": 5, "filters": given}
    post = client.post("/api/ask", json=body).json()
    params = {"q": KITE, "collection": "papers", "k": 5, **given}
    get = client.get("/api/ask", params=params).json()
    assert post["quotes"] == get["quotes"]
    shown = docs(post) | {q["doc_id"] for q in post["near_misses"]}
    assert shown and shown <= allowed
    page = client.get("/", params=params)
    assert page.status_code == 200
    for doc_id in {"kites/flying", "kites/repair", "bees/hives", "undated"} - allowed:
        assert f"/documents/{doc_id}?" not in page.text


@pytest.mark.parametrize(("given", "allowed"), CASES)
def test_every_filter_through_the_cli(shared_two, fake_cli, given, allowed):
    settings, _ = shared_two
    flags = {"author": "--author", "site": "--site", "date_from": "--since"}
    flags |= {"date_to": "--until", "path": "--path", "documents": "--document"}
    args = ["ask", KITE, "--json", "-k", "5", "--collection", "papers"]
    for name, value in given.items():
        for one in value if isinstance(value, list) else [value]:
            args += [flags[name], one]
    result = CliRunner().invoke(cli, [*args, "--data-dir", str(settings.data_dir)])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    shown = docs(answer) | {q["doc_id"] for q in answer["near_misses"]}
    assert shown and shown <= allowed


def test_a_filter_matching_nothing_says_so(client):
    body = {"question": KITE, "collection": "papers", "filters": {"author": "Nobody"}}
    answer = client.post("/api/ask", json=body).json()
    assert answer["abstained"] and answer["quotes"] == [] and answer["near_misses"] == []
    assert answer["reason"] == "No document matches these filters; widen or remove them."
    assert "similarity" not in answer["reason"]
    page = client.get("/", params={"q": KITE, "collection": "papers", "site": "none.example"})
    assert "No document matches these filters" in page.text


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"documents": ["kites/flying", "no/such", "nor/this"]}, "documents"),
        ({"date_from": "2023-13-01"}, "date_from"),
        ({"date_to": "last week"}, "date_to"),
        ({"date_from": "2024-01-02", "date_to": "2024-01-01"}, "date_from"),
    ],
)
def test_bad_filters_are_422_naming_the_field(client, given, field):
    body = {"question": KITE, "collection": "papers", "filters": given}
    for r in (
        client.post("/api/ask", json=body),
        client.get("/api/ask", params={"q": KITE, "collection": "papers", **given}),
    ):
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "invalid_filter" and error["message"].startswith(field)
    if field == "documents":
        assert "'no/such', 'nor/this'" in error["message"]
    page = client.get("/", params={"q": KITE, "collection": "papers", **given})
    assert page.status_code == 422 and field in page.text


def test_bad_filters_in_the_cli_name_the_flag_value(shared_two, fake_cli):
    settings, _ = shared_two
    args = ["ask", KITE, "--collection", "papers", "--data-dir", str(settings.data_dir)]
    result = CliRunner().invoke(cli, [*args, "--since", "2024-02-30"])
    assert result.exit_code == 1 and "date_from" in result.output and "YYYY-MM-DD" in result.output
    result = CliRunner().invoke(cli, [*args, "--document", "nope"])
    assert result.exit_code == 1 and "'nope'" in result.output


def test_the_form_keeps_collection_and_filters_through_feedback(fresh_client):
    client = fresh_client
    params = {"q": KITE, "collection": "papers", "author": "Kim Flyer", "k": "3"}
    page = client.get("/", params=params)
    assert '<option value="papers" selected>' in page.text
    assert '<details class="narrow" open>' in page.text
    assert 'name="author" value="Kim Flyer"' in page.text
    assert "collection=papers#quote" in page.text  # the source view of the right collection
    answer = client.get("/api/ask", params={**params, "k": 3}).json()
    quote = answer["quotes"][0]
    form = {
        "question": KITE,
        "doc_id": quote["doc_id"],
        "start": quote["start"],
        "end": quote["end"],
        "content_hash": quote["content_hash"],
        "verdict": "helpful",
        "collection": "papers",
        "author": "Kim Flyer",
        "k": "3",
    }
    back = client.post("/feedback", data=form, follow_redirects=False)
    assert back.status_code == 303
    location = back.headers["location"]
    assert "collection=papers" in location and "author=Kim+Flyer" in location
    assert "k=3" in location
    shown = client.get(f"/documents/{quote['doc_id']}", params={"collection": "papers"})
    assert shown.status_code == 200


def test_a_single_collection_shows_no_selector(shared_engine):
    with TestClient(create_app(shared_engine.settings, engine=shared_engine)) as client:
        page = client.get("/")
    assert 'id="collection"' not in page.text and "Narrow" in page.text


# --- the CLI --------------------------------------------------------------------------------


def test_cli_collections_and_remove(two, fake_cli):
    settings, _ = two
    data = ["--data-dir", str(settings.data_dir)]
    runner = CliRunner()
    listed = json.loads(runner.invoke(cli, ["collections", "--json", *data]).output)
    assert [c["name"] for c in listed["collections"]] == ["default", "papers"]
    assert listed["collections"][1]["documents"] == 4
    assert "papers" in runner.invoke(cli, ["collections", *data]).output
    kept = runner.invoke(cli, ["remove", "--collection", "papers", *data], input="n\n")
    assert kept.exit_code == 1 and generations.collection_names(settings.data_dir) == [
        "default",
        "papers",
    ]
    done = runner.invoke(cli, ["remove", "--collection", "papers", "--yes", *data])
    assert done.exit_code == 0, done.output
    assert generations.collection_names(settings.data_dir) == ["default"]
    assert not (settings.data_dir / "collections" / "papers").exists()
    again = runner.invoke(cli, ["remove", "--collection", "papers", "--yes", *data])
    assert again.exit_code == 1 and "known: default" in again.output
    asked = runner.invoke(cli, ["ask", KITE, "--collection", "papers", *data])
    assert asked.exit_code == 1 and "verbatim ingest PATH --collection papers" in asked.output
    assert runner.invoke(cli, ["ask", OIL, *data]).exit_code == 0  # default untouched


def test_cli_ingest_into_a_collection_reports_it(tmp_path, tiny_corpus, fake_cli):
    data = ["--data-dir", str(tmp_path / "d")]
    result = CliRunner().invoke(cli, ["ingest", str(tiny_corpus), "--collection", "cars", *data])
    assert result.exit_code == 0, result.output
    assert "Collection cars" in result.output and "1 html" in result.output
    assert generations.collection_names(tmp_path / "d") == ["cars"]


# --- the catalog against a plain Python oracle ------------------------------------------------


def _oracle(metas: list[DocumentMeta], f: Filters) -> set[str]:
    def day(value):
        try:
            return date.fromisoformat((value or "")[:10])
        except ValueError:
            return None

    lo = date.fromisoformat(f.date_from) if f.date_from else None
    hi = date.fromisoformat(f.date_to) if f.date_to else None
    keep = set()
    for m in metas:
        d = day(m.date)
        ok = (not f.documents or m.id in f.documents) and (
            f.author is None or (m.author or "\0").casefold() == f.author.casefold()
        )
        ok = ok and (f.site is None or (m.site or "\0").casefold() == f.site.casefold())
        ok = ok and (lo is None or (d is not None and d >= lo))
        ok = ok and (hi is None or (d is not None and d <= hi))
        ok = ok and (f.path is None or m.id.startswith(f.path) or m.source.startswith(f.path))
        if ok:
            keep.add(m.id)
    return keep


NAMES = st.sampled_from(["a", "b", "A", None])
DATES = st.sampled_from(["2020-01-01", "2021-05-05T10:00:00", "2022-12-31", "bad", None])


@given(
    st.lists(st.tuples(NAMES, NAMES, DATES, st.sampled_from(["x/", "x/y", "z", "xy"])), max_size=8),
    st.builds(
        Filters,
        author=NAMES,
        site=NAMES,
        date_from=st.sampled_from([None, "2021-01-01", "2020-01-01"]),
        date_to=st.sampled_from([None, "2022-12-31", "2021-05-05"]),
        path=st.sampled_from([None, "x", "x/", "src/x", "q"]),
    ),
)
def test_catalog_masks_equal_a_plain_python_filter(rows, filters):
    metas = [
        DocumentMeta(f"{p}{i}", "t", a, d, None, s, f"src/{p}{i}", "h", "{}")
        for i, (a, s, d, p) in enumerate(rows)
    ]
    passages = [m.id for m in metas for _ in range(random.Random(m.id).randint(0, 3))]
    catalog = Catalog({m.id: m for m in metas}, passages)
    expected = _oracle(metas, filters)
    keep = catalog.documents(filters)
    assert {m.id for m, k in zip(metas, keep, strict=True) if k} == expected
    mask = catalog.rows(filters)
    assert mask.dtype == bool and len(mask) == len(passages)
    assert [passages[i] for i in np.flatnonzero(mask)] == [p for p in passages if p in expected]


def test_catalog_refuses_unknown_ids_and_bad_dates():
    meta = DocumentMeta("a", "t", None, "2020-01-01", None, None, "a.md", "h", "{}")
    catalog = Catalog({"a": meta}, ["a"])
    with pytest.raises(InvalidFilter, match="documents: no document with id 'b'"):
        catalog.rows(Filters(documents=("a", "b")))
    with pytest.raises(InvalidFilter, match="^date_to: "):
        catalog.rows(Filters(date_to="2020/01/01"))
    with pytest.raises(InvalidFilter, match="^date_from .* is after date_to"):
        catalog.rows(Filters(date_from="2020-02-01", date_to="2020-01-01"))


def test_a_filtered_ivf_search_finds_the_exact_filtered_top(tmp_path, monkeypatch):
    """Above EXACT_SEARCH_LIMIT an index is IVF; a filter then scans more lists the fewer rows it
    allows, and a filter allowing few rows is searched exactly."""
    from verbatim.index import build as index_build
    from verbatim.index import local

    monkeypatch.setattr(index_build, "EXACT_SEARCH_LIMIT", 100)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((4000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ivf = index_build._faiss_index(vectors)
    assert hasattr(ivf, "nlist")
    fake = local.Index.__new__(local.Index)
    fake.faiss, fake._exact, fake.passage_vectors = ivf, None, vectors
    found = 0
    for share, limit in ((0.1, 10_000), (0.1, 0), (0.9, 0)):
        monkeypatch.setattr(local, "FILTERED_EXACT_LIMIT", limit)
        allowed = rng.random(4000) < share
        for q in vectors[:20]:
            rows, _ = fake.search(q, 10, allowed)
            assert allowed[rows].all()
            exact = np.flatnonzero(allowed)[np.argsort(-(vectors[allowed] @ q))[:10]]
            found += len(set(rows) & set(exact))
    assert found / (3 * 20 * 10) >= 0.9


def test_settings_collection_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VERBATIM_COLLECTION", "papers")
    assert Settings(data_dir=tmp_path).collection == "papers"
    monkeypatch.setenv("VERBATIM_COLLECTION", "Bad Name")
    with pytest.raises(InvalidCollectionName):
        Settings(data_dir=tmp_path)


def test_asking_the_default_where_only_named_collections_exist_names_them(
    tmp_path, tiny_corpus, fake_cli
):
    data = ["--data-dir", str(tmp_path / "d")]
    runner = CliRunner()
    assert (
        runner.invoke(cli, ["ingest", str(tiny_corpus), "--collection", "cars", *data]).exit_code
        == 0
    )
    asked = runner.invoke(cli, ["ask", OIL, *data])
    assert asked.exit_code == 1 and "its collections are cars" in asked.output
    assert runner.invoke(cli, ["ask", OIL, "--collection", "cars", *data]).exit_code == 0
