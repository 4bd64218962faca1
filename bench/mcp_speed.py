"""`python -m bench.mcp_speed`: `ask` over MCP (streamable HTTP, one client) against POST
/api/ask, on one real `verbatim serve` of the default corpus, in the same run (#31 item 6).

Each round asks every seed question once each way, alternating which goes first, from one
client each: the MCP SDK's own `Client` (one session, as an agent holds it) and a keep-alive
HTTP client for the API. Both are timed from the client's side, round trip included; the target
is MCP's p50 within 1.5x the API's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import httpx2
from mcp import Client

from bench.common import checked, free_port, ingest_default, ms, serve, target_lines
from verbatim.eval import read_questions

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.5  # MCP p50 / API p50


async def _timed(way, question: str) -> float:
    began = time.perf_counter()
    await way(question)
    return time.perf_counter() - began


async def measure(base: str, questions: list[str], rounds: int, warmup: int) -> dict:
    """Latencies (seconds) of each way of asking, interleaved question by question."""
    times: dict[str, list[float]] = {"api": [], "mcp": []}
    async with Client(f"{base}/mcp") as agent, httpx2.AsyncClient(base_url=base) as http:

        async def api(question: str) -> None:
            response = await http.post("/api/ask", json={"question": question})
            response.raise_for_status()

        async def mcp(question: str) -> None:
            result = await agent.call_tool("ask", {"question": question})
            if result.is_error:
                raise RuntimeError(f"ask over MCP failed: {result.content}")

        for question in questions[:warmup]:
            await api(question)
            await mcp(question)
        for r in range(rounds):
            for i, question in enumerate(questions):
                ways = [("api", api), ("mcp", mcp)]
                for name, way in ways if (r + i) % 2 == 0 else ways[::-1]:
                    times[name].append(await _timed(way, question))
    return times


def report(times: dict[str, list[float]]) -> dict:
    api, mcp = ms(times["api"]), ms(times["mcp"])
    ratio = round(mcp["p50"] / api["p50"], 2)
    return {"api_ms": api, "mcp_ms": mcp, "p50_ratio": ratio, "asked": len(times["api"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="An ingested default corpus to reuse.")
    parser.add_argument("--questions", type=Path, default=ROOT / "eval" / "seeds.jsonl")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="Write the figures here too.")
    args = parser.parse_args()
    data = args.data_dir or ingest_default("verbatim-mcp-bench-")
    questions = [q.question for q in read_questions(args.questions)]
    port = free_port()
    proc, started = serve(data, port)
    try:
        times = asyncio.run(measure(f"http://127.0.0.1:{port}", questions, args.rounds, 10))
    finally:
        proc.terminate()
        proc.wait(30)
    figures = report(times) | {"serve_started_s": round(started, 1)}
    print(json.dumps(figures, indent=2))
    rows = checked([("ask p50: MCP / API", figures["p50_ratio"], "<=", TARGET)])
    print(target_lines("MCP over streamable HTTP against /api/ask (one client each)", rows))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
