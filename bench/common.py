"""What the benchmarks share: a free port, latency percentiles, a load generator speaking plain
HTTP/1.1, a `verbatim serve` of their own, and targets printed as met or MISSED."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, urlencode, urlsplit

from verbatim.eval.metrics import percentile

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def ms(seconds: list[float]) -> dict:
    """p50, p95 and p99 of `seconds`, in milliseconds."""
    millis = [s * 1000 for s in seconds]
    return {q: round(percentile(millis, v), 2) for q, v in (("p50", 50), ("p95", 95), ("p99", 99))}


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str
) -> tuple[int, dict[str, str]]:
    """One HTTP/1.1 GET on an open keep-alive connection: the status and headers (body read)."""
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    fields = (line.partition(":") for line in head[1:] if line)
    headers = {name.strip().lower(): value.strip() for name, _, value in fields}
    await reader.readexactly(int(headers.get("content-length", 0)))
    return int(head[0].split()[1]), headers


@dataclass
class Load:
    """What the clients of one `http_load` saw, request by request: the latencies (seconds), the
    count of each status (-1: no response; -503: a 503 without Retry-After) and the transport
    errors (`http_load` returns the first three)."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


async def _client(
    address: SplitResult,
    questions: list[str],
    n: int,
    tally: Load,
    stop: float | None,
    each: int | None,
) -> None:
    """Client `n` of `http_load`: asks on its own keep-alive connection until `stop` or `each`."""
    connection: Connection | None = None
    i = 0
    while (stop and time.monotonic() < stop) or (each and i < each):
        began = time.perf_counter()
        target = "/api/ask?" + urlencode({"q": questions[(n + i) % len(questions)]})
        try:
            if connection is None:
                connection = await asyncio.wait_for(
                    asyncio.open_connection(address.hostname, address.port), 30
                )
            reader, writer = connection
            code, headers = await asyncio.wait_for(_get(reader, writer, target), 30)
            if code == 503 and "retry-after" not in headers:
                code = -503
            if headers.get("connection", "").lower() == "close":
                writer.close()
                connection = None
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            code = -1
            tally.errors.append(repr(exc))
            if connection is not None:
                connection[1].close()
            connection = None
        tally.latencies.append(time.perf_counter() - began)
        tally.statuses[code] = tally.statuses.get(code, 0) + 1
        i += 1
    if connection is not None:
        connection[1].close()


def http_load(
    base: str,
    questions: list[str],
    clients: int,
    *,
    seconds: float | None = None,
    each: int | None = None,
) -> Load:
    """Clients asking GET /api/ask in a loop, for `seconds` or `each` requests each.

    Each client is an asyncio task with a keep-alive connection of its own, speaking plain
    HTTP/1.1 over asyncio streams (the server's JSON and error responses always carry a
    Content-Length). A load generator must not be what it measures: with 256 clients on one
    httpx connection pool the slowest request took 16 s, against 0.74 s for the same burst on
    the same server from this client, and hundreds of threads would fight over the GIL.

    Returns one `Load`: the latencies, the count of each status and the first few errors.
    """
    address = urlsplit(base)
    tally = Load()
    stop = time.monotonic() + seconds if seconds else None

    async def run() -> None:
        await asyncio.gather(
            *(_client(address, questions, n, tally, stop, each) for n in range(clients))
        )

    asyncio.run(run())
    tally.errors = tally.errors[:3]
    return tally


def serve(data_dir: Path, port: int) -> tuple[subprocess.Popen, float]:
    """Start `verbatim serve`; seconds until it answered its first question."""
    env = {**os.environ, "VERBATIM_DATA_DIR": str(data_dir), "VERBATIM_PROGRESS": "false"}
    began = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "verbatim", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import httpx

    deadline = began + 120
    while time.perf_counter() < deadline:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/api/ask", params={"q": "therapy?"}, timeout=5)
            if r.status_code == 200:
                return proc, time.perf_counter() - began
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("verbatim serve did not answer within 120 s")


def ingest_default(prefix: str) -> Path:
    """`verbatim ingest` of the default corpus into a new temporary data directory."""
    data = Path(tempfile.mkdtemp(prefix=prefix))
    subprocess.run(
        [sys.executable, "-m", "verbatim", "ingest", "--data-dir", str(data)],
        check=True,
        capture_output=True,
    )
    return data


def checked(rows: list[tuple[str, float, str, float]]) -> list[tuple[str, float, str, bool]]:
    """(figure, measured, "<=" or ">=", bound) -> (figure, measured, target, met)."""
    return [
        (name, value, f"{op} {bound}", value <= bound if op == "<=" else value >= bound)
        for name, value, op, bound in rows
    ]


def target_lines(title: str, rows: list[tuple[str, float, str, bool]]) -> str:
    """Checked targets as a plain-text table: each met or MISSED."""
    width = max(len(name) for name, *_ in rows)
    lines = [title]
    for name, value, target, met in rows:
        lines.append(f"{name:<{width}}  {value:>8}  {target:<8}  {'met' if met else 'MISSED'}")
    return "\n".join(lines)
