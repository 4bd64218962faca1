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
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from verbatim.errors import IndexCorrupt, IndexMissing, IndexWriteFailed
from verbatim.records import Document, DocumentMeta, Passage, Section
from verbatim.settings import COLLECTION_RULE, DEFAULT_COLLECTION, collection_name

FORMAT = 1
MANIFEST = "manifest.json"
SCHEMA = """
CREATE TABLE documents (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, author TEXT, date TEXT, url TEXT, site TEXT,
    source TEXT NOT NULL, content_hash TEXT NOT NULL, metadata TEXT NOT NULL, text TEXT NOT NULL
);
CREATE TABLE passages (
    row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, doc_id TEXT NOT NULL REFERENCES documents,
    start INTEGER NOT NULL, "end" INTEGER NOT NULL, heading TEXT NOT NULL, role TEXT NOT NULL,
    sent_lo INTEGER NOT NULL, sent_hi INTEGER NOT NULL
);
CREATE TABLE sentences (
    row INTEGER PRIMARY KEY, passage_row INTEGER NOT NULL,
    start INTEGER NOT NULL, "end" INTEGER NOT NULL
);
CREATE INDEX passages_doc ON passages(doc_id);
"""


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
def writing(data_dir: Path) -> Iterator[Path]:
    """A workspace for a new generation; removed again if anything goes wrong inside.

    Raises:
        IndexWriteFailed: a write failed (no space, read-only or missing directory, ...).
    """
    try:
        path = new_workspace(data_dir)
    except OSError as exc:
        raise IndexWriteFailed(_write_message(data_dir, exc)) from None
    try:
        yield path
    except (OSError, sqlite3.Error) as exc:
        shutil.rmtree(path, ignore_errors=True)
        raise IndexWriteFailed(_write_message(data_dir, exc)) from None
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


def _write_message(data_dir: Path, exc: Exception) -> str:
    return (
        f"could not write the index in {data_dir} ({exc}); the previous index is unchanged. "
        "Free some disk space or set VERBATIM_DATA_DIR to a writable folder."
    )


def write_rows(path: Path, documents: list[Document], passages: list[Passage]) -> None:
    """Create the generation's SQLite file: documents with their text, passages, sentences.

    Passage rows number `passages` in order and sentence rows run on across them, the same
    order as the vector files' rows.
    """
    db = sqlite3.connect(path)
    try:
        db.executescript(SCHEMA)
        with db:
            db.executemany(
                "INSERT INTO documents VALUES (?,?,?,?,?,?,?,?,?,?)", map(_document_row, documents)
            )
            db.executemany(
                "INSERT INTO passages VALUES (?,?,?,?,?,?,?,?,?)", _passage_rows(passages)
            )
            db.executemany("INSERT INTO sentences VALUES (?,?,?,?)", _sentence_rows(passages))
    finally:
        db.close()


def _document_row(d: Document) -> tuple:
    # Pages go first, where `DocumentMeta.pages` reads them without parsing the rest; a
    # document without pages stores no key, as before pages existed.
    pages = {"pages": list(d.pages)} if d.pages else {}
    extra = {**pages, "metadata": d.metadata, "sections": [asdict(s) for s in d.sections]}
    return (
        *(d.id, d.title, d.author, d.date, d.url, d.site, d.source, d.content_hash),
        json.dumps(extra),
        d.text,
    )


def _passage_rows(passages: list[Passage]) -> Iterator[tuple]:
    first = 0  # the passage's first sentence row
    for row, p in enumerate(passages):
        last = first + len(p.sentences)
        yield row, p.id, p.doc_id, p.start, p.end, p.heading, p.role, first, last
        first = last


def _sentence_rows(passages: list[Passage]) -> Iterator[tuple[int, int, int, int]]:
    at = 0
    for row, p in enumerate(passages):
        for s in p.sentences:
            yield at, row, s.start, s.end
            at += 1


def open_db(path: Path) -> sqlite3.Connection:
    """A generation's SQLite file, read-only, shareable between threads."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


def read_passages(
    db: sqlite3.Connection,
) -> Iterator[tuple[str, str, str, str, int, int, int, int]]:
    """(id, doc_id, heading, role, start, end, sent_lo, sent_hi) of each passage, by row."""
    yield from db.execute(
        'SELECT id, doc_id, heading, role, start, "end", sent_lo, sent_hi FROM passages '
        "ORDER BY row"
    )


def read_sentence_column(db: sqlite3.Connection, column: str) -> Iterator[int]:
    """One column of the sentences table (`start` or `end`), by row."""
    if column not in ("start", "end"):
        raise ValueError(column)
    return (r[0] for r in db.execute(f'SELECT "{column}" FROM sentences ORDER BY row'))  # noqa: S608


def read_documents(db: sqlite3.Connection) -> dict[str, DocumentMeta]:
    """Every document without its text, by id."""
    query = (
        "SELECT id, title, author, date, url, site, source, content_hash, metadata "
        "FROM documents ORDER BY id"
    )
    return {row[0]: DocumentMeta._make(row) for row in db.execute(query)}


def read_text(db: sqlite3.Connection, doc_id: str) -> str:
    row = db.execute("SELECT text FROM documents WHERE id = ?", (doc_id,)).fetchone()
    if row is None:
        raise KeyError(doc_id)
    return row[0]


def document(meta: DocumentMeta, text: str) -> Document:
    """The whole document: its stored metadata and sections, with its text."""
    extra = json.loads(meta.extra)
    sections = tuple(
        Section(s["start"], s["end"], s["heading"], s["role"], tuple(map(tuple, s["paragraphs"])))
        for s in extra["sections"]
    )
    return Document(
        id=meta.id,
        title=meta.title,
        text=text,
        content_hash=meta.content_hash,
        source=meta.source,
        sections=sections,
        author=meta.author,
        date=meta.date,
        url=meta.url,
        site=meta.site,
        metadata=extra["metadata"],
        pages=tuple(extra.get("pages", ())),
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
    manifest = {**manifest, "format": FORMAT, "files": files}
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
    pointer = Path(data_dir) / "CURRENT"
    tmp = pointer.with_suffix(f".tmp-{uuid.uuid4().hex[:6]}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, pointer)
    _fsync_dir(Path(data_dir))
    prune(data_dir, keep=keep)
    return name


def prune(data_dir: Path, keep: int = 2) -> None:
    """Remove abandoned workspaces and all but the newest `keep` generations (current kept)."""
    root = generations_dir(data_dir)
    if not root.exists():
        return
    current = current_name(data_dir)
    for path in root.glob(".tmp-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in Path(data_dir).glob("CURRENT.tmp-*"):
        path.unlink(missing_ok=True)
    done = sorted((p for p in root.iterdir() if not p.name.startswith(".")), reverse=True)
    for path in [p for p in done if p.name != current][max(keep - 1, 0) :]:
        shutil.rmtree(path, ignore_errors=True)


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


def thresholds(manifest: dict) -> tuple[float, float] | None:
    """A generation's calibrated abstention thresholds (passage, sentence), if it has them."""
    calibration = manifest.get("calibration") or {}
    if "passage" in calibration and "sentence" in calibration:
        return float(calibration["passage"]), float(calibration["sentence"])
    return None


def read_manifest(generation: Path) -> dict:
    """A generation's manifest as written, unchecked (for listing; `verify` checks it)."""
    return json.loads((generation / MANIFEST).read_text(encoding="utf-8"))


def verify(generation: Path) -> dict:
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


# The dtypes a vector file may hold. Sentence vectors are stored as float16 (half the disk and
# page cache; cosines move by about 1e-3, answers not at all on the dev sets, docs/design.md);
# passage vectors stay float32, as FAISS and the exact search read them whole. Rows are always
# handed out as float32, so answering never sees the stored type.
DTYPES = ("float32", "float16")


def _header(path: Path) -> tuple[tuple[int, int], str, int]:
    """A `.npy` matrix's shape, dtype name and where its rows begin.

    Raises:
        IndexCorrupt: the file is not a C-ordered matrix of a dtype in `DTYPES`.
    """
    import numpy as np

    with open(path, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        header = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = header(f)
        offset = f.tell()
    if fortran or dtype.name not in DTYPES or dtype.byteorder == ">" or len(shape) != 2:
        raise IndexCorrupt(f"{path}: not a float32 or float16 matrix; run `verbatim ingest`")
    return shape, dtype.name, offset


def stored_dtype(path: Path) -> str:
    """The dtype a vector file holds its rows in ("float32" or "float16")."""
    return _header(path)[1]


class Vectors:
    """A float32 or float16 `.npy` matrix whose rows are read from disk on demand (`os.preadv`),
    always returned as float32.

    Not memory-mapped: for every row touched the kernel would also map the neighbouring pages
    it holds in its cache, so a server answering over a million passages would show gigabytes
    of resident memory for rows it never reads. A question reads a few hundred rows, one read
    per run of consecutive rows (a passage's sentences are one run). Safe to share between
    threads; `np.asarray(vectors)` reads the whole matrix.
    """

    def __init__(self, path: Path) -> None:
        import numpy as np

        self._fd = -1  # until opened: `close` (also `__del__`) has nothing to close
        self.shape, self.dtype, self._offset = _header(path)
        self._stored = np.dtype(self.dtype)
        self._row_bytes = self.shape[1] * self._stored.itemsize
        self._fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows):
        """The rows numbered `rows` (an int, a slice, or row numbers in any order), float32."""
        import numpy as np

        if isinstance(rows, slice):
            rows = np.arange(*rows.indices(len(self)))
        wanted = np.asarray(rows, dtype=np.int64)
        flat = wanted.reshape(-1)
        if len(flat) and (flat.min() < 0 or flat.max() >= len(self)):
            raise IndexError(f"row out of range 0..{len(self) - 1}")
        out = self._read(flat).astype(np.float32, copy=False)
        return out[0] if wanted.ndim == 0 else out

    def _read(self, flat):
        """Rows `flat` (in range) as stored: one `preadv` per run of consecutive rows."""
        import numpy as np

        out = np.empty((len(flat), self.shape[1]), dtype=self._stored)
        breaks = np.flatnonzero(np.diff(flat) != 1) + 1
        for lo, hi in zip([0, *breaks], [*breaks, len(flat)], strict=True):
            if lo == hi:
                continue
            buffer = out[lo:hi].data.cast("B")
            offset = self._offset + int(flat[lo]) * self._row_bytes
            if os.preadv(self._fd, [buffer], offset) != len(buffer):
                raise IndexCorrupt("a vector file is shorter than its header says")
        return out

    def __array__(self, dtype=None, copy=None):
        whole = self[0 : len(self)]
        return whole if dtype is None else whole.astype(dtype)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    __del__ = close


MAP_LIMIT = 256 << 20  # vector files up to this size (as float32) are in memory, larger ones read


def open_vectors(path: Path):
    """A vector file for reading float32 rows. Small float32 files are memory-mapped (the
    fastest; whatever it maps stays within the file's size); small float16 ones are read whole
    into float32 (as much memory as the mapped float32 file would take at most); larger files
    are `Vectors`, which keeps a large index's resident memory to the rows a question reads."""
    import numpy as np

    shape, dtype, _ = _header(path)
    if shape[0] * shape[1] * 4 > MAP_LIMIT:
        return Vectors(path)
    if dtype == "float32":  # a plain view: np.memmap's indexing adds a few µs
        return np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))
    return np.load(path, allow_pickle=False).astype(np.float32)


class VectorWriter:
    """A `.npy` matrix of `rows` rows written block by block, converted to `dtype` on the way:
    an ingest never holds a million passages' vectors in memory, nor maps them (pages written
    through a map stay resident). The width is taken from the first block, or given to `close`
    when there was none.
    """

    def __init__(self, path: Path, rows: int, dtype: str) -> None:
        import numpy as np

        if dtype not in DTYPES:
            raise ValueError(f"vector dtype {dtype!r}; use one of {', '.join(DTYPES)}")
        self.path, self.rows, self.dtype = path, rows, np.dtype(dtype)
        self.dim: int | None = None
        self.written = 0
        self._fh = open(path, "wb")  # noqa: SIM115 (closed by `close`)

    def _start(self, dim: int) -> None:
        import numpy as np

        self.dim = dim
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": (self.rows, dim),
        }
        np.lib.format.write_array_header_1_0(self._fh, header)

    def write(self, block) -> None:
        """Append `block` (rows, dim) as the next rows."""
        import numpy as np

        if self.dim is None:
            self._start(int(block.shape[1]))
        if block.ndim != 2 or block.shape[1] != self.dim or self.written + len(block) > self.rows:
            shape = f"{self.rows} x {self.dim}"
            raise ValueError(f"{self.path}: a block of shape {block.shape} does not fit {shape}")
        self._fh.write(np.ascontiguousarray(block, dtype=self.dtype).data)
        self.written += len(block)

    def close(self, dim: int) -> None:
        """Finish the file (`dim`: the width when no block was written); every row must be."""
        if self.dim is None:
            self._start(dim)
        self._fh.close()
        if self.written != self.rows:
            raise ValueError(f"{self.path}: {self.written} of {self.rows} rows written")
