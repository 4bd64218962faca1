"""`make stress`: the long reliability checks, printed as a table of figures.

Load runs against a real `verbatim serve` on loopback with bounded request counts and times;
the crash and fuzz suites are the test files run with larger counts.
Run: `python -m bench.stress [--seconds 60] [--json OUT]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import free_port, http_load, ingest_default, ms, serve

QUESTIONS = [
    "How can I get my partner to go to therapy?",
    "What if my husband refuses couples therapy?",
    "Will insurance pay for couples therapy?",
    "Should I threaten to leave if he won't go?",
]


Row = tuple[str, bool, str]  # (check, held, figure)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def pytest_row(test: str, env: dict) -> tuple[bool, str]:
    began = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "", "-n", "0", test],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    tail = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    return result.returncode == 0, f"{tail} ({time.perf_counter() - began:.0f} s)"


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, default=Path("eval/reports/stress.json"))
    parser.add_argument("--seconds", type=float, default=60)
    return parser.parse_args()


def steady_row(base: str, seconds: float) -> Row:
    """16 clients for `seconds`: every request answered 200."""
    load = http_load(base, QUESTIONS, 16, seconds=seconds)
    took = ms(load.latencies)
    return (
        f"16 clients for {seconds:.0f} s: 0 errors",
        set(load.statuses) == {200},
        f"{sum(load.statuses.values())} requests, status {load.statuses}, "
        f"p50 {took['p50']} ms, p99 {took['p99']} ms {load.errors or ''}",
    )


def burst_rows(base: str) -> list[Row]:
    """256 clients at once: refused politely (503 with Retry-After) or answered in time."""
    load = http_load(base, QUESTIONS, 256, each=4)
    slowest = max(load.latencies) if load.latencies else 0
    return [
        (
            "256 clients: only 200 or 503 with Retry-After",
            set(load.statuses) <= {200, 503},
            f"status {load.statuses} {load.errors or ''}",
        ),
        (
            "256 clients: no request over 2.5 s",
            slowest <= 2.5,
            f"slowest {slowest:.2f} s, p99 {ms(load.latencies)['p99']} ms",
        ),
    ]


def recovery_row(base: str) -> Row:
    """Seconds until a question is answered 200 again, trying for up to 5 s."""
    import httpx

    began = time.monotonic()
    recovered = None
    while time.monotonic() - began < 5:
        r = httpx.get(f"{base}/api/ask", params={"q": QUESTIONS[0]}, timeout=5)
        if r.status_code == 200:
            recovered = time.monotonic() - began
            break
    return (
        "normal service within 5 s after",
        recovered is not None,
        f"{recovered:.2f} s" if recovered is not None else "not recovered",
    )


def load_rows(seconds: float) -> list[Row]:
    """The load checks against a `verbatim serve` over the default corpus, and its cold start."""
    proc, cold = serve(ingest_default("verbatim-stress-"), port := free_port())
    base = f"http://127.0.0.1:{port}"
    try:
        rows = [steady_row(base, seconds), *burst_rows(base)]
        rss = _rss_mb(proc.pid)
        rows.append(("memory bounded (server peak RSS)", rss < 2048, f"{rss} MB"))
        rows.append(recovery_row(base))
    finally:
        proc.terminate()
        proc.wait(10)
    rows.append(("cold start to first answer (default corpus)", cold <= 8, f"{cold:.2f} s"))
    return rows


def suite_rows() -> list[Row]:
    """The crash and fuzz test files, run with larger counts."""
    ok, detail = pytest_row("tests/test_crash.py", {"VERBATIM_CRASH_KILLS": "50"})
    rows = [("SIGKILL during ingest x50: old or new generation, never a mix", ok, detail)]
    ok, detail = pytest_row("tests/test_fuzz.py", {"VERBATIM_FUZZ_EXAMPLES": "1000"})
    rows.append(
        ("schemathesis, 1,000 cases per operation: no 5xx, no schema violation", ok, detail)
    )
    return rows


def main() -> None:
    args = _parse_args()
    rows = load_rows(args.seconds) + suite_rows()
    width = max(len(r[0]) for r in rows)
    for name, held, figure in rows:
        print(f"{name:<{width}}  {'held' if held else 'NOT HELD':<8}  {figure}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps([{"check": n, "held": h, "figure": f} for n, h, f in rows], indent=2)
    )
    sys.exit(0 if all(r[1] for r in rows) else 1)


if __name__ == "__main__":
    main()
