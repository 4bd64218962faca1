"""Read folders of documents into clean `Document`s and split them into `Passage`s.

Public entry point: `read_documents(paths, settings)` -> `Corpus` (documents, their passages
and the files skipped). `split_passages(doc, max_chars)` splits one document.
"""

from __future__ import annotations

import os
from pathlib import Path

from verbatim.ingest.read import SUFFIXES, UnreadableFile, read_file
from verbatim.ingest.split import split_passages, split_sentences

from verbatim.errors import NoDocuments
from verbatim.records import Corpus, Document, Skipped
from verbatim.settings import Settings

__all__ = ["Corpus", "read_documents", "split_passages", "split_sentences"]


def _walk(root: Path) -> list[Path]:
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


def read_documents(paths: list[Path], settings: Settings) -> Corpus:
    """Read every supported file under `paths` (recursively) into documents.

    Files that cannot be read are listed in `Corpus.skipped` with the reason.

    Raises:
        NoDocuments: when nothing readable was found.
    """
    documents: list[Document] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise NoDocuments(f"{root} does not exist; give a folder or file of documents")
        for path in _walk(root):
            if path.is_symlink():
                skipped.append(Skipped(str(path), "symbolic link (not followed)"))
                continue
            if path.suffix.lower() not in SUFFIXES:
                skipped.append(Skipped(str(path), f"unsupported file type '{path.suffix}'"))
                continue
            size = path.stat().st_size
            if size > settings.max_file_bytes:
                skipped.append(Skipped(str(path), f"{size} bytes is over VERBATIM_MAX_FILE_BYTES"))
                continue
            rel = path.relative_to(root) if root.is_dir() else Path(path.name)
            try:
                docs = read_file(path, rel.with_suffix("").as_posix(), path.read_bytes())
            except (UnreadableFile, OSError) as exc:
                skipped.append(Skipped(str(path), str(exc)))
                continue
            for doc in docs:
                if doc.id in seen:
                    skipped.append(Skipped(doc.source, f"duplicate document id '{doc.id}'"))
                    continue
                seen.add(doc.id)
                documents.append(doc)
    if not documents:
        where = ", ".join(str(p) for p in paths)
        raise NoDocuments(
            f"no readable documents in {where}; supported: {' '.join(sorted(SUFFIXES))}"
            + "".join(f"\n  skipped {s.path}: {s.reason}" for s in skipped[:20])
        )
    passages = [p for doc in documents for p in split_passages(doc, settings.passage_chars)]
    return Corpus(documents, passages, skipped)
