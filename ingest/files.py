"""Which files to read under the given folders, and the document id each one gets.

Ids are stable across re-ingest (they come from paths, not from the order of reading) and
unique within one index: with one folder an id is the file's path in it without its suffix
(`guides/install`); with several folders it starts with the folder's name (`notes/index`,
`saved-articles/index`), or with as much of its path as tells two same-named folders apart.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
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


@dataclass(frozen=True)
class SourceFile:
    """A file as it was when read (`fingerprint`): its absolute path (`printable`), size,
    modification time and content hash, and the ids of the documents it gave. A collection's
    manifest keeps one for each file read, so that `verbatim watch` reads again only the files
    that changed."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    docs: tuple[str, ...] = ()


def fingerprint(path: Path) -> SourceFile:
    """`path` (absolute), its size and modification time, then its content's sha256 (a file
    that changes
    while it is hashed gets another time, so the next look reads it again); an unreadable file
    gets an empty hash (its read then says why)."""
    try:
        info = os.stat(path)
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return SourceFile(printable(os.path.abspath(path)), -1, -1, "")
    found = printable(os.path.abspath(path))
    return SourceFile(found, info.st_size, info.st_mtime_ns, digest.hexdigest())


# What an id or a shown path never holds as is: bytes of a name that are not UTF-8 (Python
# holds them as lone surrogates), control characters (a newline ends a URL path), and a "%"
# that would read as an escape.
_UNPRINTABLE = re.compile(r"[\udc80-\udcff\x00-\x1f\x7f-\x9f]|%(?=[0-9A-Fa-f]{2})")
# Files that are not regular files, by what `stat` calls them: never opened (a FIFO's open
# waits for a writer forever, a device's read may never end).
_SPECIAL = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def _percent(match: re.Match[str]) -> str:
    char = match.group()
    if "\udc80" <= char <= "\udcff":  # an undecodable byte, as os.fsdecode holds it
        return f"%{ord(char) - 0xDC00:02X}"
    return "".join(f"%{byte:02X}" for byte in char.encode())


def printable(name: str) -> str:
    """`name` with the bytes that are not UTF-8 and the control characters percent-encoded
    (`bad%E9name`, `new%0Aline`), as git and ripgrep show such names; a "%" before two hex
    digits becomes `%25`. Reversible: percent-decoding the result gives the name's bytes back.
    Every other name is returned as it is."""
    return _UNPRINTABLE.sub(_percent, name)


def special_file(mode: int) -> str | None:
    """Why a file of this `st_mode` is not read, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return _SPECIAL.get(stat.S_IFMT(mode), "not a regular file")


def walk(root: Path) -> list[Path]:
    """Files under `root`, sorted; links and hidden entries are not followed."""
    if not root.is_dir():
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
    kind = f"'{printable(path.suffix)}'" if path.suffix else "(no suffix)"
    return f"unsupported file type {kind}" + (f"; {hint}" if hint else "")


def _unique_roots(paths: list[Path], skipped: list[Skipped]) -> list[Path]:
    """The roots to walk: each once, and none inside another (its files are read anyway)."""
    real: dict[Path, str] = {}
    for root in map(Path, paths):
        if not root.exists():
            raise NoDocuments(f"{root} does not exist; give a folder or file of documents")
        if os.path.realpath(root) in real.values():
            skipped.append(Skipped(printable(str(root)), "given twice; read once"))
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
            reason = f"inside {printable(str(outer))}, which is read whole; read once"
            skipped.append(Skipped(printable(str(root)), reason))
            continue
        roots.append(root)
    return roots


def _doc_id(path: Path, root: Path, label: str | None) -> str:
    if root.is_dir():
        rel = path.relative_to(root).with_suffix("").as_posix()
        return printable(f"{label}/{rel}" if label else rel)
    return printable(str(Path(label).with_suffix("")) if label else path.stem)


def collect(paths: list[Path], settings: Settings) -> tuple[list[FileTask], list[Skipped]]:
    """The files to read under `paths`, in a fixed order, and those skipped with the reason
    (links, files that are not regular files, unsupported types, too large, the same file
    reached twice). Paths are shown `printable`.

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
            reason = _skip_reason(path, settings, first)
            if reason:
                skipped.append(Skipped(printable(str(path)), reason))
                continue
            tasks.append(FileTask(path, _doc_id(path, root, labels.get(root)), format_of(path)))
    return tasks, skipped


def _skip_reason(path: Path, settings: Settings, first: dict[tuple[int, int], Path]) -> str:
    """Why `path` is not read ("" if it is read; then `first` records it)."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return "symbolic link (not followed)"
    special = special_file(info.st_mode)
    if special:
        return f"{special}, not a regular file; not opened"
    if path.suffix.lower() not in SUFFIXES:
        return _unsupported(path)
    if info.st_size > settings.max_file_bytes:
        return f"{info.st_size} bytes is over VERBATIM_MAX_FILE_BYTES"
    key = (info.st_dev, info.st_ino)
    if key in first:
        return f"the same file as {printable(str(first[key]))}, given twice; read once"
    first[key] = path
    return ""
