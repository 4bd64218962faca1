"""The MCP server (server/mcp.py) in process, through the Python SDK's own client and the app's
`/mcp` endpoint under TestClient, on the fake embedder: every tool and resource, bad calls,
paging, and the HTTP endpoint's host, token and busy rules. tests/test_mcp_transports.py holds
the same over real transports."""

import json
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.mcp_checks import (
    ACCEPT,
    LIMIT,
    PING,
    TOO_LONG_MESSAGE,
    check_exercised,
    exercise,
    hold_encode,
    run,
)
from verbatim.server import create_app, state
from verbatim.server.errors import BUSY
from verbatim.server.mcp import create_server, document_uri
from verbatim.settings import MAX_K


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


def test_the_host_and_token_rules_of_http_in_process(served):
    """The host and token rules through the app in process (test_mcp_transports.py holds them
    through uvicorn and the SDK's client, in the slow suite): a rebound Host on localhost is
    refused, a token lets a proxy's Host pass and is then needed, and beyond localhost one is a
    must."""
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
    """test_mcp_transports.py's busy test through the app in process, with a raw `tools/call`
    (JSON-RPC): a queued call is the API's busy message as a tool error, a full house the quick
    503."""
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
        held = hold_encode(monkeypatch, fake_embedder)
        first = []
        worker = threading.Thread(target=lambda: first.append(client.get("/api/ask?q=oil")))
        worker.start()
        try:
            assert held.entered.wait(10)
            door = client.post("/mcp", json=PING, headers=local)
        finally:
            held.gate.set()
            worker.join()
    assert first[0].status_code == 200
    assert queued["isError"] and queued["content"][0]["text"] == BUSY
    assert door.status_code == 503 and door.headers["retry-after"] == "1"
    assert door.json()["error"] == {"code": "busy", "message": BUSY, "status": 503}
