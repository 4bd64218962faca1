"""The on-disk index: one directory per generation, switched to atomically.

    data_dir/
      CURRENT                 the default collection: name of the generation being served
                              (replaced atomically)
      generations/<name>/     manifest.json, store.sqlite, passages.faiss, passages.npy,
                              sentences.npy, bm25/ and bm25-sentences/ (bm25s's own files)
      generations/.tmp-*      a generation being written; removed by the next ingest
      collections/<name>/     every other collection: its own CURRENT and generations/
      models/                 the ONNX export of the model, made once
      eval/<key>/             `verbatim eval`'s cached benchmark indexes, each laid out as above

No pickle: vectors are `.npy` (allow_pickle=False) and a FAISS file, records are SQLite rows.

This module holds the generations' lifecycle: writing one (`writing`, `publish`), finding and
checking them (`candidates`, `verify_manifest`), and the collections they belong to. The SQLite
rows are `tables`, the vector files `vectors`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import NamedTuple

from verbatim.errors import IndexCorrupt, IndexMissing, IndexWriteFailed
from verbatim.index.records import Thresholds
from verbatim.settings import COLLECTION_RULE, DEFAULT_COLLECTION, collection_name

log = logging.getLogger("verbatim")

FORMAT = 1
MANIFEST = "manifest.json"
# What the caller of a build adds to the manifest it publishes (`recording`): the folders a
# collection was read from and each file's fingerprint, for `verbatim watch`.
_EXTRA: ContextVar[dict | None] = ContextVar("manifest_extra", default=None)
_SEALING: ContextVar[bool] = ContextVar("sealing", default=False)  # `sealing`


@contextmanager
def recording(extra: dict) -> Iterator[None]:
    """Every generation published inside (in this thread) carries `extra`'s keys in its
    manifest, written with it atomically."""
    token = _EXTRA.set(extra)
    try:
        yield
    finally:
        _EXTRA.reset(token)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def collection_dir(data_dir: Path, name: str) -> Path:
    """Where a collection's generations live. The default collection sits at the top of the
    data directory, where indexes were before collections, so those keep working as they are."""
    if name == DEFAULT_COLLECTION:
        return Path(data_dir)
    return Path(data_dir) / "collections" / collection_name(name)


def collection_names(data_dir: Path) -> list[str]:
    """The collections with a published generation: the default one first, then by name."""
    names = [DEFAULT_COLLECTION] if current_name(data_dir) else []
    root = Path(data_dir) / "collections"
    if root.is_dir():
        names += sorted(
            p.name
            for p in root.iterdir()
            if re.fullmatch(COLLECTION_RULE, p.name) and current_name(p)
        )
    return names


def remove_collection(data_dir: Path, name: str) -> None:
    """Delete a collection. Its CURRENT pointer goes first (atomically: from then on it is not
    listed, and a server drops it at its next reload), then its generations.

    Raises:
        IndexMissing: there is no such collection.
    """
    where = collection_dir(data_dir, name)
    if current_name(where) is None:
        raise IndexMissing(f"no collection named {name!r} in {data_dir}; `verbatim collections`")
    if name == DEFAULT_COLLECTION:  # beside the feedback, the models and the eval cache
        (where / "CURRENT").unlink()
        _fsync_dir(where)
        shutil.rmtree(generations_dir(where), ignore_errors=True)
        return
    gone = where.with_name(f".removed-{name}-{uuid.uuid4().hex[:6]}")
    os.rename(where, gone)
    shutil.rmtree(gone, ignore_errors=True)


def generations_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "generations"


def new_workspace(data_dir: Path) -> Path:
    """A fresh temporary directory to write a generation into."""
    root = generations_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f".tmp-{uuid.uuid4().hex[:12]}"
    path.mkdir()
    return path


@contextmanager
def writing(data_dir: Path, resume: str | None = None) -> Iterator[Path]:
    """A workspace for a new generation, locked while written (`prune` leaves it alone) and
    removed if anything goes wrong inside. With `resume` (a key), the workspace
    `.tmp-resume-<resume>` a killed build left, or a new one of that name: kept when the build
    is interrupted (Ctrl-C) or killed, so that the next build with the same key continues it;
    a fresh one when another writer holds it.

    Raises:
        IndexWriteFailed: a write failed (no space, read-only or missing directory, ...).
    """
    try:
        path, hold, resumable = _workspace(data_dir, resume)
    except OSError as exc:
        raise IndexWriteFailed(_write_message(data_dir, exc)) from None
    try:
        yield path
    except (OSError, sqlite3.Error) as exc:
        shutil.rmtree(path, ignore_errors=True)
        raise IndexWriteFailed(_write_message(data_dir, exc)) from None
    except BaseException as exc:
        if not resumable or isinstance(exc, Exception):
            shutil.rmtree(path, ignore_errors=True)
        raise
    finally:
        os.close(hold)


def _workspace(data_dir: Path, resume: str | None) -> tuple[Path, int, bool]:
    """The workspace `writing` yields, its lock (`_lock`), and whether it is resumable."""
    if resume:
        path = generations_dir(data_dir) / f".tmp-resume-{resume}"
        path.mkdir(parents=True, exist_ok=True)
        hold = _try_lock(path)
        if hold is not None:
            return path, hold, True
        log.warning("another ingest is writing %s; this one starts afresh", path.name)
    path = new_workspace(data_dir)
    return path, _lock(path), False


def _lock(workspace: Path) -> int:
    """Lock `workspace` while it is written: an open descriptor holding `flock`, so that
    `prune`, run by another writer of the collection (a live update publishing while a merge
    is written, or another process), leaves it alone. The lock ends with the descriptor, also
    when the writer is killed."""
    fd = os.open(workspace, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _try_lock(workspace: Path) -> int | None:
    """`_lock` if no other writer holds `workspace`, else None."""
    fd = os.open(workspace, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _held(workspace: Path) -> bool:
    """Whether a writer holds `workspace` (`_lock`)."""
    try:
        fd = _try_lock(workspace)
    except OSError:
        return False
    if fd is None:
        return True
    os.close(fd)
    return False


def _write_message(data_dir: Path, exc: Exception) -> str:
    return (
        f"could not write the index in {data_dir} ({exc}); the previous index is unchanged. "
        "Free some disk space or set VERBATIM_DATA_DIR to a writable folder."
    )


def publish(workspace: Path, manifest: dict, data_dir: Path, keep: int = 2) -> str:
    """Seal `workspace` as a generation and make it current, atomically.

    Every file is hashed into the manifest and fsynced, the directory is renamed into place,
    then the CURRENT pointer is replaced (write, fsync, rename). A crash at any point leaves
    CURRENT naming the previous, complete generation.
    """
    files = {}
    for path in sorted(p for p in workspace.rglob("*") if p.is_file()):
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())
        files[path.relative_to(workspace).as_posix()] = sha256_file(path)
    for sub in (p for p in workspace.rglob("*") if p.is_dir()):
        _fsync_dir(sub)
    manifest = {**manifest, **(_EXTRA.get() or {}), "format": FORMAT, "files": files}
    manifest_path = workspace / MANIFEST
    with open(manifest_path, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_dir(workspace)
    name = time.strftime("%Y%m%dT%H%M%S") + f"-{uuid.uuid4().hex[:6]}"
    root = generations_dir(data_dir)
    os.rename(workspace, root / name)
    _fsync_dir(root)
    if not _SEALING.get():
        point(data_dir, name, keep)
    return name


def point(data_dir: Path, name: str, keep: int = 2) -> None:
    """Make generation `name` current (write, fsync, rename), then `prune`."""
    pointer = Path(data_dir) / "CURRENT"
    tmp = pointer.with_suffix(f".tmp-{uuid.uuid4().hex[:6]}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, pointer)
    _fsync_dir(Path(data_dir))
    prune(data_dir, keep=keep)


@contextmanager
def sealing() -> Iterator[None]:
    """Generations published inside (in this thread) are sealed but not made current: a
    merge written in the background is made current (`point`) once what changed meanwhile
    is applied on it."""
    token = _SEALING.set(True)
    try:
        yield
    finally:
        _SEALING.reset(token)


def prune(data_dir: Path, keep: int = 2) -> None:
    """Remove abandoned workspaces (those no writer holds, `writing`) and all but the newest
    `keep` generations (current kept), keeping the base of every delta kept."""
    root = generations_dir(data_dir)
    if not root.exists():
        return
    current = current_name(data_dir)
    for path in root.glob(".tmp-*"):
        if path.is_dir() and not _held(path):
            shutil.rmtree(path, ignore_errors=True)
    for path in Path(data_dir).glob("CURRENT.tmp-*"):
        path.unlink(missing_ok=True)
    done = sorted((p for p in root.iterdir() if not p.name.startswith(".")), reverse=True)
    kept = [p for p in done if p.name == current] + [p for p in done if p.name != current][
        : max(keep - 1, 0)
    ]
    needed = {p.name for p in kept} | {d.base for d in map(delta_of, kept) if d}
    for path in done:
        if path.name not in needed:
            shutil.rmtree(path, ignore_errors=True)


class Delta(NamedTuple):
    """What a delta generation (`index.delta`) stands on: its base and the base documents it
    masks."""

    base: str
    masked: frozenset[str]


def delta_of(generation: Path) -> Delta | None:
    """The base and masked documents of a delta generation, as its manifest says (unchecked);
    None for a full generation, or one without a readable manifest."""
    try:
        delta = read_manifest(generation)["delta"]
        return Delta(str(delta["base"]), frozenset(delta["masked"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def current_name(data_dir: Path) -> str | None:
    pointer = Path(data_dir) / "CURRENT"
    try:
        return pointer.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def candidates(data_dir: Path) -> list[Path]:
    """Generations to try loading: the current one first, then older complete ones."""
    root = generations_dir(data_dir)
    current = current_name(data_dir)
    if current is None or not root.exists():
        raise IndexMissing(
            f"no index in {data_dir}; run `verbatim ingest` (or set VERBATIM_DATA_DIR)"
        )
    older = sorted(
        (p for p in root.iterdir() if not p.name.startswith(".") and p.name != current),
        reverse=True,
    )
    return [root / current, *older]


def thresholds(manifest: dict) -> Thresholds | None:
    """A generation's calibrated abstention thresholds (passage, sentence), if it has them."""
    calibration = manifest.get("calibration") or {}
    if "passage" in calibration and "sentence" in calibration:
        return Thresholds(float(calibration["passage"]), float(calibration["sentence"]))
    return None


def read_manifest(generation: Path) -> dict:
    """A generation's manifest as written, unchecked (for listing; `verify_manifest` checks it)."""
    return json.loads((generation / MANIFEST).read_text(encoding="utf-8"))


def verify_manifest(generation: Path) -> dict:
    """The generation's manifest, after checking every file's hash against it.

    Raises:
        IndexCorrupt: naming the file that is missing, truncated or changed.
    """
    try:
        manifest = json.loads((generation / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexCorrupt(
            f"{generation / MANIFEST} is unreadable ({exc}); run `verbatim ingest` again"
        ) from None
    if manifest.get("format") != FORMAT:
        raise IndexCorrupt(f"{generation} has index format {manifest.get('format')}; re-ingest")
    for name, expected in files.items():
        path = generation / name
        if not path.exists() or sha256_file(path) != expected:
            raise IndexCorrupt(
                f"{path} does not match its manifest hash (truncated or changed); "
                "run `verbatim ingest` again"
            )
    return manifest
