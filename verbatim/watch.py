"""Live folders: keep a collection in step with the folders it was read from, as files are
saved, renamed and deleted (`verbatim watch`, `verbatim serve --watch`).

Public entry: `Watcher(settings, roots, embedder).run(stop)`, and `watch_status(settings)` for
what `/api/health` and `verbatim collections` show. Each batch of file events (gathered by
watchfiles) is waited on until the changed files are stable, then applied with
`engine.update_paths`: only changed files are read, the new generation is published
atomically, and servers pick it up by its pointer. The first look, and one every
`FULL_SCAN_S` without events, compares the whole folder with the manifest: what changed while
nothing watched is caught up.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from verbatim.engine import Update, update_paths
from verbatim.errors import VerbatimError
from verbatim.index import Store, generations, load_index, where
from verbatim.records import Embedder
from verbatim.settings import Settings

# watchfiles gathers events until none came for EVENT_QUIET_MS (at most EVENT_BATCH_MS in
# all): an editor's save (a temporary file, then a rename) and a `git checkout`'s burst
# arrive as one batch.
EVENT_QUIET_MS = 300
EVENT_BATCH_MS = 5_000
# A changed file is read once its size and modification time held for STABLE_S (a file still
# being written keeps changing them), waiting at most SETTLE_MAX_S.
STABLE_S = 0.5
SETTLE_MAX_S = 60.0
# The whole folder is compared with the manifest this often even without events: file systems
# that send none (network shares, some container mounts) are kept in step this late.
FULL_SCAN_S = 60.0
# A collection served as a base and a delta (`index.segments`) is merged into one generation in
# the background once its folders have been quiet this long: answers are then exactly those of
# a fresh ingest again (BM25 statistics and calibration included).
MERGE_QUIET_S = FULL_SCAN_S
PAUSED_LOOK_S = 5.0  # how often a missing folder is looked for again
SKIPPED_SHOWN = 20  # the last skipped files shown by the status, with their reasons
STATUS = "watch.json"  # a collection's watch status, beside its CURRENT

log = logging.getLogger("verbatim")


@dataclass
class Batch:
    """One applied batch, as the CLI prints it."""

    collection: str
    update: Update
    at: float

    def line(self) -> str:
        u, report = self.update, self.update.report
        embedded = report.embedded if report else 0  # passages and sentences
        return (
            f"{time.strftime('%H:%M:%S', time.localtime(self.at))} {self.collection}: "
            f"+{u.added} ~{u.changed} -{u.removed} files, {embedded} texts embedded, "
            f"{u.seconds:.1f} s" + (f", {len(u.skipped)} skipped" if u.skipped else "")
        )


class Watcher:
    """Keeps `settings.collection` in step with `roots` until `run`'s `stop` is set."""

    def __init__(
        self,
        settings: Settings,
        roots: list[Path],
        embedder: Embedder,
        on_batch: Callable[[Batch], None] | None = None,
    ) -> None:
        self.settings = settings
        self.roots = [Path(os.path.abspath(r)) for r in roots]
        self.embedder = embedder
        self.on_batch = on_batch
        self.status: dict = {
            "folders": [str(r) for r in self.roots],
            "pid": os.getpid(),
            "heartbeat": time.time(),
            "last_update": None,
            "last_batch": None,
            "pending": 0,
            "paused": None,
            "error": None,
            "skipped": [],
            "merging": False,
        }
        self._lock = threading.Lock()  # one update at a time: a batch, or a merge's catch-up
        self._held: Store | None = None  # the current generation, kept open (`_hold`)
        self._merge: threading.Thread | None = None
        self._quiet_since = time.monotonic()

    def run(self, stop: threading.Event) -> None:
        """Catch up, then apply each batch of changes, until `stop` is set. A missing folder
        pauses the updates (the collection keeps being served) until it is back."""
        while not stop.is_set():
            missing = [r for r in self.roots if not r.is_dir()]
            if missing:
                self._pause(missing)
                stop.wait(PAUSED_LOOK_S)
                continue
            if self.status["paused"]:
                log.warning("%s: %s is back; updates resume", self.settings.collection, missing)
                self.status["paused"] = None
            self.apply()
            self._follow_events(stop)
        if self._held is not None:
            self._held.close()
            self._held = None

    def _follow_events(self, stop: threading.Event) -> None:
        """Apply each batch of events (and a full look every `FULL_SCAN_S`) until `stop` is
        set or a folder goes missing."""
        import watchfiles

        try:
            for changes in watchfiles.watch(
                *self.roots,
                debounce=EVENT_BATCH_MS,
                step=EVENT_QUIET_MS,
                stop_event=stop,
                rust_timeout=int(FULL_SCAN_S * 1000),
                yield_on_timeout=True,
                raise_interrupt=False,
            ):
                if any(not r.is_dir() for r in self.roots):
                    return
                paths = {Path(path) for _, path in changes}
                if not paths:  # FULL_SCAN_S without events
                    self.apply()
                    self._merge_when_quiet()
                    continue
                self.status["pending"] = len(paths)
                self._write_status()
                self._settle(paths, stop)
                self.apply()
        except (OSError, RuntimeError) as exc:  # a folder went away under the watch
            log.warning("%s: watching stopped (%s); looking again", self.settings.collection, exc)

    def _settle(self, paths: set[Path], stop: threading.Event) -> None:
        """Wait until none of `paths` changed size or modification time for `STABLE_S`."""
        deadline = time.monotonic() + SETTLE_MAX_S
        before = _stats(paths)
        while not stop.wait(STABLE_S) and time.monotonic() < deadline:
            now = _stats(paths)
            if now == before:
                return
            before = now

    def apply(self) -> Batch | None:
        """Compare the folders with the collection's manifest and publish what changed."""
        try:
            with self._lock:
                update = update_paths(self.roots, self.settings, self.embedder)
                self._hold()
        except VerbatimError as exc:
            log.warning("%s: not updated: %s", self.settings.collection, exc.message)
            self.status |= {"error": exc.message, "pending": 0, "heartbeat": time.time()}
            self._write_status()
            return None
        skipped = [{"path": s.path, "reason": s.reason} for s in update.skipped]
        self.status |= {"error": None, "pending": 0, "heartbeat": time.time()}
        self.status["skipped"] = skipped[-SKIPPED_SHOWN:]
        batch = None
        if update.report is not None:
            self._quiet_since = time.monotonic()
            batch = Batch(self.settings.collection, update, time.time())
            self.status |= {"last_update": batch.at, "last_batch": batch.line()}
        self._write_status()
        if batch is not None and self.on_batch is not None:
            self.on_batch(batch)
        return batch

    def _hold(self) -> None:
        """Keep the current local generation open: the next update then shares its base
        (`load.load_index`) instead of hashing every file of it again (seconds at 100k
        passages)."""
        if self.settings.store != "local":
            return
        held = self._held
        try:
            self._held = load_index(self.settings)
        except VerbatimError:
            self._held = None
        if held is not None:
            held.close()

    def _merge_when_quiet(self) -> None:
        """Start a merge in the background when the collection is served as a delta and its
        folders have been quiet for `MERGE_QUIET_S` (one merge at a time)."""
        quiet = time.monotonic() - self._quiet_since >= MERGE_QUIET_S
        if not quiet or (self._merge is not None and self._merge.is_alive()):
            return
        if "delta" not in _current_manifest(self.settings):
            return
        self._merge = threading.Thread(target=self.merge, name="verbatim-merge", daemon=True)
        self._merge.start()

    def merge(self) -> None:
        """Write one full generation of the folders (reading nothing unchanged, recalibrated),
        sealed but not current; then, one update at a time, apply on it whatever changed
        meanwhile (as a delta) or make it current. Batches go on being applied meanwhile."""
        self.status["merging"] = True
        self._write_status()
        try:
            with generations.sealing():
                merged = update_paths(self.roots, self.settings, self.embedder, merge=True)
            if merged.report is None:
                return
            with self._lock:
                name = merged.report.generation
                caught_up = update_paths(self.roots, self.settings, self.embedder, since=name)
                if caught_up.report is None:
                    generations.point(where(self.settings), name)
                self._hold()
            log.info("%s: merged into %s", self.settings.collection, name)
        except VerbatimError as exc:
            log.warning("%s: merge not done: %s", self.settings.collection, exc.message)
        finally:
            self.status["merging"] = False
            self._write_status()

    def _pause(self, missing: list[Path]) -> None:
        message = (
            f"{', '.join(map(str, missing))} is missing (unmounted or removed): updates of "
            f"{self.settings.collection!r} are paused and it is served as it was; they resume "
            "when the folder is back"
        )
        if self.status["paused"] != message:
            log.warning("%s", message)
        self.status |= {"paused": message, "heartbeat": time.time()}
        self._write_status()

    def _write_status(self) -> None:
        path = generations.collection_dir(self.settings.data_dir, self.settings.collection)
        tmp = path / f".{STATUS}.{os.getpid()}"
        try:
            tmp.write_text(json.dumps(self.status, indent=1), encoding="utf-8")
            os.replace(tmp, path / STATUS)
        except OSError as exc:  # the status is for people; the updates go on without it
            log.warning("watch status not written to %s: %s", path, exc)


def _current_manifest(settings: Settings) -> dict:
    folder = where(settings)
    try:
        name = generations.current_name(folder) or ""
        return generations.read_manifest(generations.generations_dir(folder) / name)
    except (OSError, ValueError):
        return {}


def _stats(paths: set[Path]) -> dict[Path, tuple[int, int] | None]:
    found: dict[Path, tuple[int, int] | None] = {}
    for path in paths:
        try:
            info = os.stat(path)
            found[path] = (info.st_size, info.st_mtime_ns)
        except OSError:
            found[path] = None
    return found


def watch_status(settings: Settings) -> dict | None:
    """`settings.collection`'s watch status as its watcher last wrote it (None if no watcher
    ever ran): folders, last update (epoch seconds), changes pending, paused (why), the last
    skipped files with reasons, and `active`: whether that watcher still runs here."""
    path = where(settings) / STATUS
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    status["active"] = _alive(status.get("pid")) and (
        time.time() - float(status.get("heartbeat", 0)) < 3 * FULL_SCAN_S
    )
    return status


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watched_folders(settings: Settings) -> list[Path]:
    """The folders `settings.collection` was last ingested from (recorded in its manifest)."""
    from verbatim.engine import recorded_sources

    return [Path(r) for r in recorded_sources(settings)[0]]


__all__ = ["Batch", "Watcher", "watch_status", "watched_folders"]
