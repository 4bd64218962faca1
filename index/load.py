"""Opening the current generation of a collection: `load_index` for the local files,
`open_store` for whichever store the settings name."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from verbatim.errors import IndexCorrupt, IndexMissing, ModelMismatch
from verbatim.index import generations
from verbatim.index.embed import INT8_VERSION
from verbatim.index.local import Index
from verbatim.index.records import Store
from verbatim.index.segments import Segmented
from verbatim.settings import DEFAULT_COLLECTION, Settings

log = logging.getLogger("verbatim")

# The full generations open in this process, shared by everyone serving them: a delta published
# on a base the server already serves opens only the delta (`_shared`).
_OPEN: dict[Path, tuple[Index, tuple[int, int] | None]] = {}  # with its manifest's stamp
_OPEN_LOCK = threading.Lock()


def open_store(settings: Settings) -> Store:
    """The current generation in the store `settings.store` names: `load_index` for the local
    files, `qdrant.open_store` for Qdrant (imported only then)."""
    if settings.store == "qdrant":
        from verbatim.index import qdrant

        return qdrant.open_store(settings)
    return load_index(settings)


def vector_space(source: Settings | dict) -> tuple[str, int]:
    """The vector space of an index or of the configured embedder: the model, and the version of
    its int8 weights, 0 for float (the `onnx` and `torch` backends give the same vectors).
    Manifests before versions said `true` for int8, which reads as 1."""
    if isinstance(source, dict):
        return source["model"], int(source.get("int8", 0))
    return source.model, INT8_VERSION if source.backend == "onnx-int8" else 0


def where(settings: Settings) -> Path:
    """The folder of the collection `settings` names: its CURRENT and generations."""
    return generations.collection_dir(settings.data_dir, settings.collection)


def _candidates(settings: Settings) -> list[Path]:
    """The collection's generations to try (`generations.candidates`); when it has none, an error
    that says how to create it, or which collections there are instead of the default."""
    try:
        return generations.candidates(where(settings))
    except IndexMissing:
        name = settings.collection
        if name != DEFAULT_COLLECTION:
            raise IndexMissing(
                f"no collection named {name!r} in {settings.data_dir}; create it with "
                f"`verbatim ingest PATH --collection {name}` (`verbatim collections` lists them)"
            ) from None
        others = ", ".join(generations.collection_names(settings.data_dir))
        if not others:
            raise
        raise IndexMissing(
            f"no default collection in {settings.data_dir}; its collections are {others}: "
            "name one with --collection (or VERBATIM_COLLECTION)"
        ) from None


def load_index(settings: Settings) -> Index | Segmented:
    """Open the current generation, verified against its manifest: an `Index`, or for a delta
    published by a live update a `Segmented` over its base (which, when this process has it open
    already, is shared rather than opened and verified again).

    When the current generation is damaged, the newest intact older one is served instead.

    Raises:
        IndexMissing: nothing was ever ingested into `settings.data_dir`.
        IndexCorrupt: no generation passes its checks.
        ModelMismatch: the index was built with another model than `settings.model`.
    """
    errors = []
    for path in _candidates(settings):
        try:
            index = _open(path, settings.collection)
            manifest = index.manifest
        except (IndexCorrupt, OSError, RuntimeError, ValueError) as exc:
            message = exc.message if isinstance(exc, IndexCorrupt) else f"{path}: {exc}"
            log.warning("skipping generation %s: %s", path.name, message)
            errors.append(message)
            continue
        if manifest["model"] == settings.model and vector_space(manifest) != vector_space(settings):
            index.close()
            built = "the onnx-int8" if manifest.get("int8") else "the onnx or torch"
            if manifest.get("int8") and settings.backend == "onnx-int8":
                built = "an older version of the onnx-int8"
            raise ModelMismatch(
                f"the index in {settings.data_dir} was built with {built} backend but "
                f"VERBATIM_BACKEND is {settings.backend!r}; run `verbatim ingest` to rebuild it "
                f"or change VERBATIM_BACKEND back"
            )
        if manifest["model"] != settings.model:
            index.close()
            raise ModelMismatch(
                f"the index in {settings.data_dir} was built with model {manifest['model']!r} "
                f"but VERBATIM_MODEL is {settings.model!r}; run `verbatim ingest` to rebuild it "
                f"or set VERBATIM_MODEL={manifest['model']}"
            )
        return index
    raise IndexCorrupt("no intact index generation: " + "; ".join(errors))


def load_generation(settings: Settings, name: str) -> Index | Segmented:
    """Generation `name` of `settings.collection`, verified, whether current or not.

    Raises:
        IndexCorrupt: it is missing, or fails its checks.
    """
    try:
        return _open(generations.generations_dir(where(settings)) / name, settings.collection)
    except (OSError, RuntimeError, ValueError) as exc:
        raise IndexCorrupt(f"generation {name}: {exc}") from None


def _open(path: Path, collection: str) -> Index | Segmented:
    """Generation `path`, verified: a full one shared (`_shared`), a delta opened over its
    shared base."""
    delta = generations.delta_of(path)
    if delta is None:
        return _shared(path, collection)
    manifest = generations.verify_manifest(path)
    base = _shared(path.parent / delta.base, collection)
    try:
        return Segmented(base, Index(path, manifest, collection), manifest, collection)
    except BaseException:
        base.close()
        raise


def _shared(path: Path, collection: str) -> Index:
    """Full generation `path`, opened and verified once in this process while anyone uses it
    (a generation's files never change once published; a manifest that did is read again)."""
    stamp = _stamp(path)
    with _OPEN_LOCK:
        for gone in [p for p, (i, _) in _OPEN.items() if i.closed]:
            del _OPEN[gone]
        index, opened = _OPEN.get(path, (None, None))
        if index is not None and opened == stamp and index.collection == collection:
            if index.share():
                return index
    index = Index(path, generations.verify_manifest(path), collection)
    with _OPEN_LOCK:
        _OPEN.setdefault(path, (index, stamp))
    return index


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = (path / generations.MANIFEST).stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size
