"""Which files to read under the given folders, and the document id each one gets.

Ids are stable across re-ingest (they come from paths, not from the order of reading) and
unique within one index: with one folder an id is the file's path in it without its suffix
(`guides/install`); with several folders it starts with the folder's name (`notes/index`,
`saved-articles/index`), or with as much of its path as tells two same-named folders apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from verbatim.errors import NoDocuments
from verbatim.ingest.formats import FORMATS, SUFFIXES, format_of
from verbatim.records import Skipped

if TYPE_CHECKING:  # a worker process reads files without loading the settings
    from verbatim.settings import Settings


@dataclass(frozen=True)
class FileTask:
    """One file to read: where it is, the id its document gets, and its format."""

    path: Path
    doc_id: str
    format: str


def walk(root: Path) -> list[Path]:
    """Files under `root`, sorted; links and hidden entries are not followed."""
    if root.is_file():
        return [root]
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                found.append(Path(dirpath) / name)
    return found


def root_labels(roots: list[Path]) -> dict[Path, str]:
    """For several roots, the shortest ending of each one's absolute path that no other root
    shares: `notes`, `saved-articles`; `a/notes` and `b/notes` for two folders named notes."""
    parts = {root: Path(os.path.abspath(root)).parts[1:] or ("root",) for root in roots}
    labels = {}
    for root, mine in parts.items():
        others = [p for r, p in parts.items() if r != root]
        k = 1
        while k < len(mine) and any(p[-k:] == mine[-k:] for p in others):
            k += 1
        labels[root] = "/".join(mine[-k:])
    return labels


def _unsupported(path: Path) -> str:
    known = FORMATS.get(path.suffix.lower())
    hint = known.convert if known else ""
    kind = f"'{path.suffix}'" if path.suffix else "(no suffix)"
    return f"unsupported file type {kind}" + (f"; {hint}" if hint else "")


def _unique_roots(paths: list[Path], skipped: list[Skipped]) -> list[Path]:
    """The roots to walk: each once, and none inside another (its files are read anyway)."""
    real: dict[Path, str] = {}
    for root in map(Path, paths):
        if not root.exists():
            raise NoDocuments(f"{root} does not exist; give a folder or file of documents")
        if os.path.realpath(root) in real.values():
            skipped.append(Skipped(str(root), "given twice; read once"))
            continue
        real[root] = os.path.realpath(root)
    roots = []
    for root, where in real.items():
        outer = next(
            (
                r
                for r, w in real.items()
                if r != root and r.is_dir() and where.startswith(w + os.sep)
            ),
            None,
        )
        if outer is not None:
            skipped.append(Skipped(str(root), f"inside {outer}, which is read whole; read once"))
            continue
        roots.append(root)
    return roots


def _doc_id(path: Path, root: Path, label: str | None) -> str:
    if root.is_dir():
        rel = path.relative_to(root).with_suffix("").as_posix()
        return f"{label}/{rel}" if label else rel
    return str(Path(label).with_suffix("")) if label else path.stem


def collect(paths: list[Path], settings: Settings) -> tuple[list[FileTask], list[Skipped]]:
    """The files to read under `paths`, in a fixed order, and those skipped with the reason
    (links, unsupported types, too large, the same file reached twice).

    Raises:
        NoDocuments: when a path does not exist.
    """
    skipped: list[Skipped] = []
    roots = _unique_roots(paths, skipped)
    labels = root_labels(roots) if len(roots) > 1 else {}
    tasks: list[FileTask] = []
    first: dict[tuple[int, int], Path] = {}
    for root in roots:
        for path in walk(root):
            if path.is_symlink():
                skipped.append(Skipped(str(path), "symbolic link (not followed)"))
                continue
            if path.suffix.lower() not in SUFFIXES:
                skipped.append(Skipped(str(path), _unsupported(path)))
                continue
            stat = path.stat()
            if stat.st_size > settings.max_file_bytes:
                reason = f"{stat.st_size} bytes is over VERBATIM_MAX_FILE_BYTES"
                skipped.append(Skipped(str(path), reason))
                continue
            key = (stat.st_dev, stat.st_ino)
            if key in first:
                reason = f"the same file as {first[key]}, given twice; read once"
                skipped.append(Skipped(str(path), reason))
                continue
            first[key] = path
            tasks.append(FileTask(path, _doc_id(path, root, labels.get(root)), format_of(path)))
    return tasks, skipped
