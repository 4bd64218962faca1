"""Reading files in sandboxed worker processes.

A worker is `python -m verbatim.ingest.sandbox MEMORY_MB`: a child process whose address space
is capped (`RLIMIT_AS`) and which reads one file at a time, named on its standard input, and
answers with one JSON line: the documents, or the reason the file cannot be read. The parent
(`verbatim.ingest.workers`) gives each file a time limit and kills a worker that overruns it or
dies; the file is then skipped with the reason and a fresh worker reads the next one. A
hostile PDF (or DOCX, EPUB) can so cost at most its time limit, never the ingest.

Answers are JSON, not pickle: a worker parses untrusted files, and what it sends back is read
as plain data.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from verbatim.records import Document, Section


def to_json(doc: Document) -> dict[str, Any]:
    return asdict(doc)


def from_json(row: dict[str, Any]) -> Document:
    sections = tuple(
        Section(s["start"], s["end"], s["heading"], s["role"], tuple(map(tuple, s["paragraphs"])))
        for s in row["sections"]
    )
    blocks = tuple((int(a), int(b), str(k)) for a, b, k in row.get("blocks", ()))
    return Document(**{**row, "sections": sections, "pages": tuple(row["pages"]), "blocks": blocks})


def _answer(task: dict, memory_mb: int) -> dict[str, Any]:
    from verbatim.ingest.read import UnreadableFile, read_bytes, read_file

    path = Path(task["path"])
    try:
        docs = read_file(path, task["id"], read_bytes(path))
        return {"docs": [to_json(d) for d in docs]}
    except UnreadableFile as exc:
        return {"error": str(exc)}
    except MemoryError:
        return {"error": f"reading it needs more than {memory_mb} MB (VERBATIM_READ_MEMORY_MB)"}
    except RecursionError:
        return {"error": "nested too deeply to read"}
    except OSError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # a parser's own error on a malformed file
        return {"error": f"could not be read ({type(exc).__name__}: {exc})"}


def main(argv: list[str]) -> None:
    """The worker: limit memory, then answer one JSON line per file named on stdin."""
    import resource

    memory_mb = int(argv[0])
    limit = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # whatever a C library prints goes to stderr, not into the answers
    for line in sys.stdin:
        answer = _answer(json.loads(line), memory_mb)
        # ASCII JSON: an error naming a file whose name is not UTF-8 holds lone surrogates.
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


class Worker:
    """The parent's handle on one worker process and the file it is reading."""

    def __init__(self, memory_mb: int) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 -- this interpreter, this module
            [sys.executable, "-m", "verbatim.ingest.sandbox", str(memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
        )
        self.stdin: IO[bytes] = self.proc.stdin  # type: ignore[assignment]  # both are PIPEs
        self.fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        os.set_blocking(self.fd, False)
        self.buffer = bytearray()
        self.task: int | None = None
        self.deadline = 0.0

    def send(self, task: int, path: Path, doc_id: str, timeout: float) -> bool:
        """Start reading a file; False if the worker has died."""
        self.task, self.deadline = task, time.monotonic() + timeout
        line = json.dumps({"path": str(path), "id": doc_id}) + "\n"
        try:
            self.stdin.write(line.encode())
            self.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        return True

    def receive(self) -> dict | None:
        """Read what the worker sent: its answer once complete, `{}` if it has died, else
        None (more to come)."""
        try:
            chunk = os.read(self.fd, 1 << 20)
        except BlockingIOError:
            return None
        if not chunk:
            return {}
        newline = chunk.find(b"\n")
        self.buffer += chunk
        if newline < 0:
            return None
        answer = json.loads(bytes(self.buffer))
        self.buffer.clear()
        return answer

    def death(self) -> str:
        """Why the worker died (after `receive` returned `{}`)."""
        code = self.proc.wait()
        if code < 0:
            name = signal.Signals(-code).name
            return f"the reader crashed on it ({name})"
        return f"the reader stopped on it (exit status {code})"

    def kill(self) -> None:
        self.proc.kill()
        self.close()

    def close(self) -> None:
        try:
            self.stdin.close()
        except OSError:
            pass
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


if __name__ == "__main__":
    main(sys.argv[1:])
