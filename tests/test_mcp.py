"""The MCP server (server/mcp.py) through clients nobody here wrote: the Python SDK's own client
in process, over stdio (a real `verbatim mcp`) and over streamable HTTP (a real app under
uvicorn); the TypeScript SDK's in the slow suite. Fake embedder except where marked slow; the
fast suite holds the HTTP endpoint's rules through the app in process."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import httpx2
import jsonschema
import pytest
from fastapi.testclient import TestClient
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.conftest import PAPERS, TINY, FakeEmbedder
from verbatim.engine import ingest_paths, open_engines
from verbatim.server import create_app, state
from verbatim.server.errors import BUSY
from verbatim.server.mcp import create_server, document_uri
from verbatim.server.state import State
from verbatim.settings import MAX_K, Settings

ROOT = Path(__file__).resolve().parent.parent
TOOLS = {"ask", "read_document", "list_collections", "list_documents", "verify_citation"}
QUESTION = "How often should I change the engine oil?"
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
LIMIT = Settings.model_fields["max_question_chars"].default  # the question limit `served` has
TOO_LONG_MESSAGE = f"question: String should have at most {LIMIT} characters"
ACCEPT = {"Accept": "application/json, text/event-stream"}
# The tiny corpus answers QUESTION from cars.html (see tests/conftest.py).


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """conftest's `two` (the tiny corpus as "default", PAPERS as "papers"), built once for the
    module, since nothing here writes, and open as the server holds them: (settings, State)."""
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


def run(server, check: Callable[[Client], Awaitable[Any]]) -> Any:
    """`check(client)` with the SDK's client connected to `server` (an MCPServer, in process;
    a URL or a transport; stdio parameters)."""

    async def connected() -> Any:
        async with Client(server) as client:
            return await check(client)

    # A browser test's Playwright (its sync API) keeps an event loop running on the main thread
    # while its session lasts, and asyncio.run refuses to start beside one: a thread of its own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, connected()).result()


def _valid(result, tool) -> dict:
    """The structured content of a successful call, checked against the tool's outputSchema."""
    assert not result.is_error, result.content[0].text
    jsonschema.validate(result.structured_content, tool.output_schema)
    return result.structured_content


async def exercise(client: Client) -> dict:
    """What any client can do: list the tools and resources, call each tool, read a resource;
    every structured result valid against its declared schema, every quote exact."""
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    asked = _valid(await client.call_tool("ask", {"question": QUESTION, "k": 3}), tools["ask"])
    assert not asked["abstained"] and asked["quotes"][0]["doc_id"] == "cars"
    for q in asked["quotes"]:
        (content,) = (await client.read_resource(q["resource"])).contents
        assert content.text[q["start"] : q["end"]] == q["text"]  # exact, at its offsets
        around = {"doc_id": q["doc_id"], "start": q["start"], "end": q["end"], "context": 20}
        read = _valid(await client.call_tool("read_document", around), tools["read_document"])
        assert read["text"] == content.text[read["start"] : read["end"]]
        assert q["text"] in read["text"] and read["start"] == max(0, q["start"] - 20)
        verified = await client.call_tool("verify_citation", q)  # a quote sent as it is
        assert _valid(verified, tools["verify_citation"])["status"] == "current"
    listed = _valid(await client.call_tool("list_collections", {}), tools["list_collections"])
    documents = await client.call_tool("list_documents", {"collection": "papers", "limit": 2})
    page = _valid(documents, tools["list_documents"])
    resources = (await client.list_resources()).resources
    templates = (await client.list_resource_templates()).resource_templates
    return {
        "answer": asked,
        "text": (await client.call_tool("ask", {"question": QUESTION})).content[0].text,
        "collections": [c["name"] for c in listed["collections"]],
        "page": page,
        "resources": sorted(str(r.uri) for r in resources),
        "templates": [t.uri_template for t in templates],
    }


def check_exercised(found: dict, served_state: State) -> None:
    assert found["collections"] == ["default", "papers"]
    assert found["page"]["total"] == 4 and len(found["page"]["documents"]) == 2
    expected = [
        document_uri(name, doc_id)
        for name, engine in served_state.engines.items()
        for doc_id in engine.answering.documents
    ]
    assert found["resources"] == sorted(expected)
    assert found["templates"] == ["verbatim://{collection}/{+doc_id}"]
    for q in found["answer"]["quotes"]:  # the index itself agrees with the resource
        text = served_state.collection(q["collection"]).answering.text(q["doc_id"])
        assert text[q["start"] : q["end"]] == q["text"]
        assert f"“{q['text']}”" in found["text"]
        assert (q["link"] or q["resource"]) in found["text"]


def test_every_tool_and_resource_in_process(served):
    settings, held = served
    found = run(create_server(settings, lambda: held), exercise)
    check_exercised(found, held)
    first = found["answer"]["quotes"][0]
    assert first["link"].startswith("https://example.com/oil#:~:text=")
    assert "— Changing Oil, Bob Mechanic" in found["text"]


def test_a_quote_keeps_every_field_of_the_api_quote():
    """The MCP quote is the API's quote plus its resource URI: no field dropped or renamed."""
    from dataclasses import fields

    from verbatim.records import Quote
    from verbatim.server.mcp import QuoteOut

    assert set(QuoteOut.model_fields) == {f.name for f in fields(Quote)} | {"resource"}


def test_the_tools_say_how_to_use_them(served):
    settings, held = served

    async def listed(client: Client):
        return {t.name: t for t in (await client.list_tools()).tools}

    tools = run(create_server(settings, lambda: held), listed)
    ask = tools["ask"]
    assert "exact" in ask.description and "link" in ask.description
    assert "quotation marks" in ask.description and "near_misses" in ask.description
    question = ask.input_schema["properties"]["question"]
    assert question["maxLength"] == settings.max_question_chars
    assert ask.input_schema["properties"]["k"]["anyOf"][0]["maximum"] == MAX_K
    assert ask.input_schema["required"] == ["question"]
    assert "NOT an answer" in json.dumps(ask.output_schema)
    for tool in tools.values():
        assert tool.annotations.read_only_hint is True
        assert tool.output_schema["type"] == "object" and "Call" in tool.description


def test_an_abstention_says_so_and_marks_the_near_misses(served):
    settings, held = served

    async def asked(client: Client):
        return await client.call_tool("ask", {"question": "zygote quasar fjord"})

    result = run(create_server(settings, lambda: held), asked)
    assert result.structured_content["abstained"] is True
    assert result.structured_content["quotes"] == []
    assert result.content[0].text.startswith("No answer: ")
    if result.structured_content["near_misses"]:
        assert "Weaker matches (NOT an answer):" in result.content[0].text


# Bad calls, each with the message the HTTP API answers the same request with (POST /api/ask).
BAD_ASKS = [
    {"question": "x" * (LIMIT + 1)},
    {"question": "oil", "k": 0},
    {"question": "oil", "k": MAX_K + 1},
    {"question": "oil", "k": "3"},
    {"question": "oil", "collection": "nope"},
    {"question": "oil", "filters": {"documents": ["nope"]}},
    {"question": "oil", "filters": {"date_from": "last week"}},
    {"question": "oil", "filters": {"color": "red"}},
    {},
    {"question": 42},
    {"question": "   "},
]


def _http_message(client: TestClient, path: str, body: dict) -> str:
    response = client.post(path, json=body)
    assert response.status_code >= 400, response.text
    return response.json()["error"]["message"]


def test_bad_calls_are_tool_errors_with_the_http_messages(served):
    settings, held = served
    server = create_server(settings, lambda: held)

    async def bad(client: Client):
        asks = [await client.call_tool("ask", body) for body in BAD_ASKS]
        other = {
            "unknown tool": await client.call_tool("forget_everything", {}),
            "unknown document": await client.call_tool("read_document", {"doc_id": "nope"}),
            "verify typed": await client.call_tool("verify_citation", {"doc_id": "cars"}),
            "documents": await client.call_tool("list_documents", {"collection": "nope"}),
            "filters": await client.call_tool("list_documents", {"filters": {"author": 3}}),
            "past the end": await client.call_tool(
                "read_document", {"doc_id": "cars", "start": 10**6}
            ),
        }
        return asks, other

    asks, other = run(server, bad)
    assert all(r.is_error and r.structured_content is None for r in [*asks, *other.values()])
    with TestClient(create_app(settings, engine=held.engines)) as c:
        expected = [_http_message(c, "/api/ask", body) for body in BAD_ASKS]
        document = c.get("/api/documents/nope").json()["error"]["message"]
        collection = c.get("/api/documents", params={"collection": "nope"}).json()
        verify = _http_message(c, "/api/verify", {"doc_id": "cars"})
    assert [r.content[0].text for r in asks] == expected
    assert expected[0] == TOO_LONG_MESSAGE
    assert other["unknown document"].content[0].text == document
    assert other["documents"].content[0].text == collection["error"]["message"]
    assert other["verify typed"].content[0].text == verify
    assert other["unknown tool"].content[0].text == "Unknown tool: forget_everything"
    assert other["filters"].content[0].text == "filters.author: Input should be a valid string"
    assert "past the document's end" in other["past the end"].content[0].text


def test_read_document_pages_a_document_and_resources_refuse_unknown_ids(served):
    settings, held = served
    text = held.collection("papers").answering.text("kites/flying")

    async def reads(client: Client):
        page = await client.call_tool(
            "read_document", {"doc_id": "kites/flying", "collection": "papers"}
        )
        tail = {"doc_id": "kites/flying", "collection": "papers", "start": 10, "context": 0}
        rest = await client.call_tool("read_document", tail)
        with pytest.raises(MCPError, match="no document with id 'nope'"):
            await client.read_resource(document_uri("default", "nope"))
        return page.structured_content, rest.structured_content

    page, rest = run(create_server(settings, lambda: held), reads)
    assert page["text"] == text and (page["start"], page["end"]) == (0, len(text))
    assert page["more_after"] is False and page["resource"] == "verbatim://papers/kites/flying"
    assert rest["text"] == text[10:] and rest["more_before"] is True


def test_list_documents_filters_and_pages(served):
    settings, held = served

    async def listed(client: Client):
        kim = {"collection": "papers", "filters": {"author": "kim flyer"}, "limit": 200}
        first = {"collection": "papers", "offset": 0, "limit": 1}
        return [
            (await client.call_tool("list_documents", args)).structured_content
            for args in (kim, first)
        ]

    kim, first = run(create_server(settings, lambda: held), listed)
    assert sorted(d["id"] for d in kim["documents"]) == ["bees/hives", "kites/flying", "undated"]
    assert kim["total"] == 3 and first["total"] == 4 and len(first["documents"]) == 1


def test_tools_that_name_no_collection_answer_from_the_chosen_one(served):
    settings, held = served

    async def asked(client: Client):
        return await client.call_tool("ask", {"question": "How do I patch a kite sail?"})

    result = run(create_server(settings, lambda: held, "papers"), asked)
    assert result.structured_content["collection"] == "papers"
    assert result.structured_content["quotes"][0]["doc_id"] == "kites/repair"


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    }


def test_nothing_an_agent_calls_writes_to_the_data_directory(served):
    settings, held = served
    before = _snapshot(settings.data_dir)
    run(create_server(settings, lambda: held), exercise)
    assert _snapshot(settings.data_dir) == before


def _http_client(url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return streamable_http_client(f"{url}/mcp", http_client=httpx2.AsyncClient(headers=headers))


@pytest.mark.slow  # a uvicorn server and the SDK's client over streamable HTTP
def test_streamable_http_on_the_app(served, serve):
    settings, held = served
    with serve(create_app(settings, engine=held.engines)) as url:
        found = run(_http_client(url), exercise)
    check_exercised(found, held)


@pytest.mark.slow  # a uvicorn server and the SDK's client over streamable HTTP
def test_beyond_localhost_http_needs_the_token(served, serve):
    settings, held = served
    remote = settings.model_copy(update={"host": "0.0.0.0", "mcp_token": "s3cret"})  # noqa: S104
    with serve(create_app(remote, engine=held.engines)) as url:
        missing = httpx.post(f"{url}/mcp", json=PING)
        wrong = httpx.post(f"{url}/mcp", json=PING, headers={"Authorization": "Bearer nope"})
        listed = run(_http_client(url, "s3cret"), lambda c: c.call_tool("list_collections", {}))
    assert missing.status_code == wrong.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer <token>" in missing.json()["error"]["message"]
    assert not listed.is_error and len(listed.structured_content["collections"]) == 2

    untokened = settings.model_copy(update={"host": "0.0.0.0"})  # noqa: S104
    with serve(create_app(untokened, engine=held.engines)) as url:
        refused = httpx.post(f"{url}/mcp", json=PING)
    assert refused.status_code == 403 and "VERBATIM_MCP_TOKEN" in refused.json()["error"]["message"]


@pytest.mark.slow  # a uvicorn server and the SDK's client over streamable HTTP
def test_busy_reads_the_same_over_mcp_as_over_the_api(served, serve, monkeypatch):
    """A call queued past SLOT_WAIT gets the API's busy message as a tool error; one arriving
    while every slot and queue place is taken gets the API's quick 503 at the door."""
    settings, held = served
    fake_embedder = held.engine.embedder
    tight = settings.model_copy(update={"max_concurrent": 1, "max_waiting": 0})
    app = create_app(tight, engine=held.engines)
    monkeypatch.setattr(state, "SLOT_WAIT", 0.1)
    with serve(app) as url:
        slots = app.state.verbatim.slots
        assert slots.acquire(timeout=1)
        try:
            queued = run(_http_client(url), lambda c: c.call_tool("ask", {"question": "oil"}))
        finally:
            slots.release()
        entered, gate, encode = threading.Event(), threading.Event(), fake_embedder.encode

        def held_encode(texts, progress=None):
            entered.set()
            assert gate.wait(10)
            return encode(texts, progress)

        monkeypatch.setattr(fake_embedder, "encode", held_encode)
        worker = threading.Thread(target=lambda: httpx.get(f"{url}/api/ask?q=oil", timeout=20))
        worker.start()
        try:
            assert entered.wait(10)
            door = httpx.post(f"{url}/mcp", json=PING)
        finally:
            gate.set()
            worker.join()
    assert queued.is_error and queued.content[0].text == BUSY
    assert door.status_code == 503 and door.headers["retry-after"] == "1"
    assert door.json()["error"] == {"code": "busy", "message": BUSY, "status": 503}


# `verbatim mcp` in a child process, on the fake embedder (the real model is the slow test's).
CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
import verbatim.engine
from tests.conftest import FakeEmbedder
verbatim.engine.make_embedder = lambda settings: FakeEmbedder()
from verbatim.cli import cli
cli(sys.argv[2:])
"""


@pytest.mark.slow  # a child process importing Verbatim and the SDK: seconds
def test_stdio_verbatim_mcp(served):
    settings, held = served
    child = StdioServerParameters(
        command=sys.executable,
        args=["-c", CHILD, str(ROOT), "mcp", "--data-dir", str(settings.data_dir)],
        env={"VERBATIM_MODEL": "fake"},
    )
    check_exercised(run(child, exercise), held)


@pytest.mark.slow
def test_stdio_refuses_an_unknown_collection_at_start(served):
    settings, _ = served
    args = [
        "-c",
        CHILD,
        str(ROOT),
        "mcp",
        "--collection",
        "nope",
        "--data-dir",
        str(settings.data_dir),
    ]
    done = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "VERBATIM_MODEL": "fake"},
    )
    assert done.returncode == 1 and done.stdout == ""
    assert "no collection named 'nope'" in done.stderr


NODE = ROOT / "tests" / "mcp_node"


@pytest.fixture(scope="session")
def node_client() -> list[str]:
    """`node client.mjs`, the TypeScript SDK's client (tests/mcp_node), its packages installed
    from package-lock.json (`npm ci`) on first use."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node and npm are not installed; the TypeScript client needs them")
        pytest.skip("node and npm are not installed")
    if not (NODE / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE, check=True, capture_output=True
        )
    return [node, str(NODE / "client.mjs")]


def _node(command: list[str], **env: str) -> dict:
    env = {**os.environ, "TOO_LONG": str(LIMIT + 1), **env}
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def check_node(out: dict, held: State) -> None:
    """What the TypeScript client got: the same tools, valid structured results, exact quotes,
    and the bad calls as tool errors with the API's messages."""
    tools = {t["name"]: t for t in out["tools"]}
    assert set(tools) == TOOLS and out["server"]["name"] == "verbatim"
    calls = {"ask": "ask", "read": "read_document", "verify": "verify_citation"}
    calls |= {"collections": "list_collections", "documents": "list_documents"}
    for key, name in calls.items():
        assert not out[key].get("isError"), out[key]
        jsonschema.validate(out[key]["structuredContent"], tools[name]["outputSchema"])
    for q in out["ask"]["structuredContent"]["quotes"]:
        text = held.collection(q["collection"]).answering.text(q["doc_id"])
        assert text[q["start"] : q["end"]] == q["text"]
        assert f"“{q['text']}”" in out["ask"]["content"][0]["text"]
    first = out["ask"]["structuredContent"]["quotes"][0]
    assert out["resource"]["contents"][0]["text"] == held.engine.answering.text(first["doc_id"])
    assert out["verify"]["structuredContent"]["status"] == "current"
    assert len(out["resources"]) == 7 and len(out["templates"]) == 1
    bad = {key: result["content"][0]["text"] for key, result in out["bad"].items()}
    assert all(result["isError"] for result in out["bad"].values())
    assert bad["long"] == TOO_LONG_MESSAGE
    assert bad["k"] == f"k: Input should be less than or equal to {MAX_K}"
    assert bad["collection"].startswith("no collection named 'nope'")
    assert bad["missing"] == "question: Field required"
    assert bad["typed"] == "question: Input should be a valid string"
    assert bad["unknown"] == "Unknown tool: forget_everything"


@pytest.mark.slow
def test_typescript_client_over_streamable_http(served, serve, node_client):
    settings, held = served
    remote = settings.model_copy(update={"host": "0.0.0.0", "mcp_token": "s3cret"})  # noqa: S104
    with serve(create_app(remote, engine=held.engines)) as url:
        out = _node([*node_client, "http", f"{url}/mcp", "s3cret"])
    check_node(out, held)


@pytest.mark.slow
def test_typescript_client_over_stdio(served, node_client):
    settings, held = served
    child = [sys.executable, "-c", CHILD, str(ROOT), "mcp", "--data-dir", str(settings.data_dir)]
    check_node(_node([*node_client, "stdio", *child], VERBATIM_MODEL="fake"), held)


@pytest.mark.slow
def test_the_installed_command_on_the_real_model(default_engine, model_cache):
    """`verbatim mcp` as an assistant launches it: the installed command, the real model, the
    bundled corpus; an answer with exact quotes, and an abstention."""
    data = default_engine.settings.data_dir
    if not (data / "models").exists():
        (data / "models").symlink_to(model_cache)  # the export the session already made
    command = StdioServerParameters(
        command=str(Path(sys.executable).parent / "verbatim"), args=["mcp", "--data-dir", str(data)]
    )

    async def asked(client: Client):
        question = "What if my husband refuses couples therapy?"
        answered = await client.call_tool("ask", {"question": question})
        off = await client.call_tool("ask", {"question": "What is the boiling point of tungsten?"})
        return answered.structured_content, off.structured_content

    answered, off = run(command, asked)
    assert not answered["abstained"] and answered["quotes"]
    for q in answered["quotes"]:
        text = default_engine.answering.text(q["doc_id"])
        assert text[q["start"] : q["end"]] == q["text"]
    assert off["abstained"] and off["quotes"] == []


@pytest.mark.slow  # a uvicorn server and the SDK's client over streamable HTTP
def test_on_localhost_a_token_replaces_the_host_check(served, serve):
    """Without a token, on localhost, a request naming another host is refused (DNS
    rebinding); with VERBATIM_MCP_TOKEN set, a proxy's Host passes and the token is needed."""
    settings, held = served
    proxied = {**ACCEPT, "Host": "verbatim.example.org"}
    with serve(create_app(settings, engine=held.engines)) as url:
        rebound = httpx.post(f"{url}/mcp", json=PING, headers=proxied)
        local = httpx.post(f"{url}/mcp", json=PING, headers=ACCEPT)
    tokened = settings.model_copy(update={"mcp_token": "s3cret"})
    with serve(create_app(tokened, engine=held.engines)) as url:
        bare = httpx.post(f"{url}/mcp", json=PING, headers=proxied)
        signed = {**proxied, "Authorization": "Bearer s3cret"}
        forwarded = httpx.post(f"{url}/mcp", json=PING, headers=signed)
    assert rebound.status_code == 421 and local.status_code == 200
    assert bare.status_code == 401 and forwarded.status_code == 200
    assert forwarded.json() == {"jsonrpc": "2.0", "id": 1, "result": {}}


def test_the_host_and_token_rules_of_http_in_process(served):
    """The rules of the two tests above through the app in process (they hold them through
    uvicorn and the SDK's client, in the slow suite): a rebound Host on localhost is refused,
    a token lets a proxy's Host pass and is then needed, and beyond localhost one is a must."""
    settings, held = served
    local, proxied = {**ACCEPT, "Host": "127.0.0.1:8000"}, {**ACCEPT, "Host": "verbatim.org"}
    signed = {**proxied, "Authorization": "Bearer s3cret"}
    wrong = {**local, "Authorization": "Bearer nope"}
    tokened = settings.model_copy(update={"mcp_token": "s3cret"})
    remote = tokened.model_copy(update={"host": "0.0.0.0"})  # noqa: S104
    untokened = settings.model_copy(update={"host": "0.0.0.0"})  # noqa: S104
    cases = [
        (settings, [(proxied, 421), (local, 200)]),
        (tokened, [(proxied, 401), (signed, 200)]),
        (remote, [(local, 401), (wrong, 401), (signed, 200)]),
        (untokened, [(local, 403)]),
    ]
    for given, requests in cases:
        with TestClient(create_app(given, engine=held.engines)) as client:
            for headers, status in requests:
                response = client.post("/mcp", json=PING, headers=headers)
                assert response.status_code == status, (given.host, given.mcp_token, headers)
                _check_body(response)


def _check_body(response) -> None:
    """A ping's answer, or the refusal's header and the message naming the fix."""
    if response.status_code == 200:
        assert response.json() == {"jsonrpc": "2.0", "id": 1, "result": {}}
    elif response.status_code == 401:
        assert response.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer <token>" in response.json()["error"]["message"]
    elif response.status_code == 403:
        assert "VERBATIM_MCP_TOKEN" in response.json()["error"]["message"]


def test_busy_reads_the_same_over_mcp_in_process(served, monkeypatch):
    """The busy test above through the app in process, with a raw `tools/call` (JSON-RPC): a
    queued call is the API's busy message as a tool error, a full house the quick 503."""
    settings, held = served
    app = create_app(
        settings.model_copy(update={"max_concurrent": 1, "max_waiting": 0}), engine=held.engines
    )
    monkeypatch.setattr(state, "SLOT_WAIT", 0.1)
    ask = {"name": "ask", "arguments": {"question": "oil"}}
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": ask}
    local = {**ACCEPT, "Host": "127.0.0.1:8000"}
    with TestClient(app) as client:
        slots = app.state.verbatim.slots
        assert slots.acquire(timeout=1)
        try:
            queued = client.post("/mcp", json=call, headers=local).json()["result"]
        finally:
            slots.release()
        fake_embedder = held.engine.embedder
        entered, gate, encode = threading.Event(), threading.Event(), fake_embedder.encode

        def held_encode(texts, progress=None):
            entered.set()
            assert gate.wait(10)
            return encode(texts, progress)

        monkeypatch.setattr(fake_embedder, "encode", held_encode)
        first = []
        worker = threading.Thread(target=lambda: first.append(client.get("/api/ask?q=oil")))
        worker.start()
        try:
            assert entered.wait(10)
            door = client.post("/mcp", json=PING, headers=local)
        finally:
            gate.set()
            worker.join()
    assert first[0].status_code == 200
    assert queued["isError"] and queued["content"][0]["text"] == BUSY
    assert door.status_code == 503 and door.headers["retry-after"] == "1"
    assert door.json()["error"] == {"code": "busy", "message": BUSY, "status": 503}
