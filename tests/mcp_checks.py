"""What the MCP tests check whatever the transport (tests/test_mcp.py in process,
tests/test_mcp_transports.py over stdio, streamable HTTP and the TypeScript SDK): the SDK's
client connected, every tool and resource exercised, the results checked against the index."""

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from mcp import Client

from verbatim.server.mcp import document_uri
from verbatim.server.state import State
from verbatim.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TOOLS = {"ask", "read_document", "list_collections", "list_documents", "verify_citation"}
QUESTION = "How often should I change the engine oil?"
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
LIMIT = Settings.model_fields["max_question_chars"].default  # the question limit `served` has
TOO_LONG_MESSAGE = f"question: String should have at most {LIMIT} characters"
ACCEPT = {"Accept": "application/json, text/event-stream"}
# The tiny corpus answers QUESTION from cars.html (see tests/conftest.py).


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


@dataclass
class HeldEncode:
    """An embedder whose `encode` signals `entered`, then waits for `gate`: a request holding its
    slot for as long as a test needs."""

    entered: threading.Event
    gate: threading.Event


def hold_encode(monkeypatch, embedder) -> HeldEncode:
    held, encode = HeldEncode(threading.Event(), threading.Event()), embedder.encode

    def waiting(texts, progress=None):
        held.entered.set()
        assert held.gate.wait(10)
        return encode(texts, progress)

    monkeypatch.setattr(embedder, "encode", waiting)
    return held
