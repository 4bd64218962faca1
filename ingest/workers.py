"""Read many files on all cores, with progress, in a fixed order.

PDF, DOCX and EPUB files (C and zip parsers on untrusted input) are always read in sandboxed
workers (`verbatim.ingest.sandbox`), with a time and a memory limit each. Markdown, text and
HTML are read in this process while the workers run, or, for a large folder, by the workers
too; JSONL here (one file, many documents). A read in this process has the same time limit, by
a SIGALRM timer; where no timer can be set (a thread other than the main one, a timer already
running), the workers read every file. Results are kept by the file's place in the list, so
the order never depends on which worker finished first.
"""

from __future__ import annotations

import selectors
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from verbatim.ingest.files import FileTask
from verbatim.ingest.formats import BY_NAME
from verbatim.ingest.read import UnreadableFile, read_bytes, read_file
from verbatim.ingest.sandbox import Worker, from_json
from verbatim.records import Document

if TYPE_CHECKING:  # a worker process reads files without loading the settings
    from verbatim.settings import Settings

# Text and HTML files beyond which the workers read them too: below it, reading them here
# while the workers start costs less than the workers' start.
IN_PROCESS_UP_TO = 64
LOG_EVERY_S = 10.0  # a progress line this often when not on a terminal

Result = list[Document] | str  # the documents of a file, or why it was skipped


class Progress:
    """A bar of files with rate and ETA on a terminal; a line every few seconds otherwise."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.began = total, 0, time.perf_counter()
        self.enabled = enabled and total > 0
        self.bar = None
        self.logged = self.began
        if self.enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="file", desc="Reading", leave=False)

    def advance(self) -> None:
        self.done += 1
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.update(1)
        elif self.enabled and now - self.logged >= LOG_EVERY_S and self.done < self.total:
            self.logged = now
            rate = self.done / (now - self.began)
            left = (self.total - self.done) / rate if rate else 0
            print(
                f"Reading: {self.done}/{self.total} files, {rate:.1f} files/s, "
                f"about {left:.0f} s left",
                file=sys.stderr,
                flush=True,
            )

    def close(self, formats: dict[str, int], skipped: int) -> None:
        if self.bar is not None:
            self.bar.close()
        if not self.enabled:
            return
        seconds = time.perf_counter() - self.began
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(formats.items()))
        print(
            f"Read {self.done} files in {seconds:.1f} s ({self.done / max(seconds, 1e-9):.1f} "
            f"files/s): {kinds or 'none'}" + (f"; {skipped} skipped" if skipped else ""),
            file=sys.stderr,
            flush=True,
        )


class _Overran(Exception):
    """Raised by the SIGALRM timer in a read in this process that passed its time limit."""


def _overran(signum: int, frame: object) -> None:
    raise _Overran


def can_time_here() -> bool:
    """Whether a read in this process can be stopped at its time limit: by a SIGALRM timer,
    which only the main thread can use, and only while no other timer runs."""
    return (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    )


def read_here(task: FileTask, settings: Settings) -> Result:
    """Read one file in this process, stopped after `settings.read_timeout_s` (call only
    where `can_time_here()`). A parser busy in C code stops when it next returns to Python."""
    previous = signal.signal(signal.SIGALRM, _overran)
    try:
        signal.setitimer(signal.ITIMER_REAL, settings.read_timeout_s)
        try:
            return read_file(task.path, task.doc_id, read_bytes(task.path))
        finally:  # the timer is stopped before anything else can be interrupted
            signal.setitimer(signal.ITIMER_REAL, 0)
    except (UnreadableFile, OSError) as exc:
        return str(exc)
    except _Overran:
        return _timed_out(settings)
    finally:
        signal.signal(signal.SIGALRM, previous)


def _answered(answer: dict) -> Result:
    if "error" in answer:
        return str(answer["error"])
    return [from_json(row) for row in answer["docs"]]


def _died(worker: Worker, settings: Settings) -> str:
    return worker.death() + (
        "; the file is damaged or built to exhaust the reader (memory limit "
        f"VERBATIM_READ_MEMORY_MB={settings.read_memory_mb})"
    )


def _timed_out(settings: Settings) -> str:
    return (
        f"reading took longer than {settings.read_timeout_s:g} s (VERBATIM_READ_TIMEOUT_S); "
        "the file is very large, damaged or built to stall a reader; raise the limit to try "
        "again"
    )


def _in_worker(task: FileTask, many: bool, timed_here: bool) -> bool:
    """Whether a worker reads the file: always a sandboxed format; in a large folder, every
    format but one of many documents (JSONL, read here); every file where a read here could
    not be stopped at its time limit."""
    fmt = BY_NAME[task.format]
    return not timed_here or fmt.sandboxed or (many and fmt.shape != "rows")


def read_all(
    tasks: list[FileTask], settings: Settings, advance: Callable[[], None]
) -> list[Result]:
    """Every file's documents (or skip reason), in the order of `tasks`."""
    return list(read_each(tasks, settings, advance, len(tasks) + 1))


# Files read ahead of the one a stream waits for (`read_each`): what reading holds beyond it.
READ_AHEAD = 64


def read_each(
    tasks: list[FileTask],
    settings: Settings,
    advance: Callable[[], None],
    ahead: int = READ_AHEAD,
) -> Iterator[Result]:
    """`read_all` as a stream: each file's documents (or skip reason) in the order of `tasks`,
    given as soon as the file and those before it are read. Files up to `ahead` places past the
    one given are read meanwhile, by the workers and here, and only those are held."""
    many = len([t for t in tasks if BY_NAME[t.format].shape != "rows"]) > IN_PROCESS_UP_TO
    timed_here = can_time_here()
    remote = deque(i for i, t in enumerate(tasks) if _in_worker(t, many, timed_here))
    elsewhere = set(remote)
    local = deque(i for i in range(len(tasks)) if i not in elsewhere)
    results: dict[int, Result] = {}

    def finish(i: int, result: Result) -> None:
        results[i] = result
        advance()

    size = min(settings.read_workers, len(remote))
    with _Workers(size, settings, tasks, finish) as workers:
        for want in range(len(tasks)):
            while want not in results:
                limit = want + ahead
                workers.feed(remote, limit)
                if local and local[0] < limit:
                    i = local.popleft()
                    finish(i, read_here(tasks[i], settings))
                    workers.poll(0)
                elif workers.busy():
                    workers.poll(None)
                else:  # cannot happen: `want` is either read here, fed, or being read
                    raise RuntimeError(f"file {want} was never read")
            yield results.pop(want)


class _Workers:
    """Up to `size` workers; each reads one file at a time."""

    def __init__(self, size: int, settings: Settings, tasks: list[FileTask], finish) -> None:
        self.size, self.settings, self.tasks, self.finish = size, settings, tasks, finish
        self.workers: list[Worker] = []
        self.selector = selectors.DefaultSelector()

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc) -> None:
        for worker in self.workers:
            worker.kill()
        self.selector.close()

    def busy(self) -> bool:
        return any(w.task is not None for w in self.workers)

    def feed(self, queue: deque[int], limit: int) -> None:
        """Give each idle worker a file (of those numbered below `limit`), starting workers up
        to `size`."""
        while queue and queue[0] < limit:
            idle = next((w for w in self.workers if w.task is None), None)
            if idle is None and len(self.workers) < self.size:
                idle = Worker(self.settings.read_memory_mb)
                self.workers.append(idle)
                self.selector.register(idle.fd, selectors.EVENT_READ, idle)
            if idle is None:
                return
            i = queue.popleft()
            task = self.tasks[i]
            if not idle.send(i, task.path, task.doc_id, self.settings.read_timeout_s):
                self._retire(idle, _died(idle, self.settings))

    def poll(self, timeout: float | None) -> None:
        """Collect answers; kill the workers past their file's deadline."""
        deadlines = [w.deadline for w in self.workers if w.task is not None]
        if not deadlines:
            return
        if timeout is None:
            timeout = max(0.0, min(deadlines) - time.monotonic())
        for key, _ in self.selector.select(timeout):
            worker: Worker = key.data
            answer = worker.receive()
            if answer is None or worker.task is None:
                continue
            if answer:
                i, worker.task = worker.task, None
                self.finish(i, _answered(answer))
            else:
                self._retire(worker, _died(worker, self.settings))
        now = time.monotonic()
        for worker in [w for w in self.workers if w.task is not None and w.deadline <= now]:
            self._retire(worker, _timed_out(self.settings), kill=True)

    def _retire(self, worker: Worker, result: str, kill: bool = False) -> None:
        """A worker that died or overran: skip its file, forget it (a new one will start)."""
        i, worker.task = worker.task, None
        self.selector.unregister(worker.fd)
        self.workers.remove(worker)
        if kill:
            worker.kill()
        else:
            worker.close()
        if i is not None:
            self.finish(i, result)


__all__ = ["Progress", "read_all", "read_each"]
