"""The load generator behind `make bench` and `make stress` counts what the server answered."""

import asyncio
import threading

from bench.common import http_load

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


def _server(replies: list[bytes]):
    """A loopback HTTP server answering each request with the next reply in `replies`."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box = {}

    async def handle(reader, writer):
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                reply = (
                    replies.pop(0) if replies else b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
                )
                writer.write(reply)
                await writer.drain()
                if b"Connection: close" in reply:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        box["port"] = server.sockets[0].getsockname()[1]
        box["server"] = server
        ready.set()
        try:
            await server.serve_forever()
        except asyncio.CancelledError:  # closed by the test
            pass

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    ready.wait(5)
    return box["port"], lambda: loop.call_soon_threadsafe(box["server"].close)


def test_statuses_and_retry_after_are_counted():
    replies = [
        b"HTTP/1.1 503 Busy\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",  # no Retry-After: counted as -503
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
    ]
    port, stop = _server(replies)
    load = http_load(f"http://127.0.0.1:{port}", ["q"], 1, each=5)
    assert load.statuses == {503: 1, -503: 1, 200: 3} and not load.errors
    assert len(load.latencies) == 5 and all(t >= 0 for t in load.latencies)
    stop()


def test_a_refused_connection_is_an_error_not_a_hang():
    load = http_load("http://127.0.0.1:9", ["q"], 2, each=2)  # nothing listens
    assert load.statuses == {-1: 4} and load.errors


def test_the_target_table_says_met_or_missed_against_each_bound():
    from bench.speed import target_table, targets

    report = {
        "backend": "onnx",
        "cold_start_s": 8.0,  # on the bound: met
        "ratios": {
            "http_p50_1_client_over_bare_encode": 1.51,  # over 1.5: missed
            "ingest_over_bare_encode": 0.9,
            "reingest_over_ingest": 0.01,
            "txtai_query_p50_over_verbatim_answer_p50": 2.5,  # under 3: missed
        },
    }
    met = {name: ok for name, _, _, ok in targets(report)}
    assert list(met.values()) == [False, True, True, False, True]
    table = target_table(report)
    assert table.count("MISSED") == 2 and table.count(" met") == 3
    assert "backend onnx" in table


def test_the_million_passage_table_says_met_or_missed():
    from bench.scale import million_table

    row = {"passages": 1_000_000, "search_p50_ms": 26.0, "recall_at_10": 0.95}
    row |= {"answer_without_encode_p50_ms": 10.0, "filtered_answer_p50_ms": 20.0}
    row |= {"filtered_90_answer_p50_ms": 12.0}
    table = million_table(row | {"serve_peak_rss_mb": 1900})
    assert table.count("MISSED") == 1 and "search p50 (ms)" in table.split("MISSED")[0]
    assert million_table(row | {"search_p50_ms": 25.0, "serve_peak_rss_mb": 3001}).count(
        "MISSED"
    ) == 1  # fmt: skip
    slow = million_table(
        row | {"search_p50_ms": 1.0, "serve_peak_rss_mb": 1, "filtered_answer_p50_ms": 20.1}
    )
    assert (
        slow.count("MISSED") == 1 and "filtered (10%)" in slow.split("MISSED")[0].splitlines()[-1]
    )
