"""The MCP server (server/mcp.py) through real transports and clients nobody here wrote: the
Python SDK's client over stdio (a real `verbatim mcp`) and over streamable HTTP (a real app
under uvicorn), the TypeScript SDK's client over both, and the installed command on the real
model. All slow; tests/test_mcp.py holds the same rules in process."""

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import httpx2
import jsonschema
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.mcp_checks import (
    ACCEPT,
    LIMIT,
    PING,
    ROOT,
    TOO_LONG_MESSAGE,
    TOOLS,
    check_exercised,
    exercise,
    hold_encode,
    run,
)
from verbatim.server import create_app, state
from verbatim.server.errors import BUSY
from verbatim.server.state import State
from verbatim.settings import MAX_K


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
        held = hold_encode(monkeypatch, fake_embedder)
        worker = threading.Thread(target=lambda: httpx.get(f"{url}/api/ask?q=oil", timeout=20))
        worker.start()
        try:
            assert held.entered.wait(10)
            door = httpx.post(f"{url}/mcp", json=PING)
        finally:
            held.gate.set()
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
