"""Reading on a Ray cluster: the same files, ids and documents as `read_documents`, read by
Ray Data tasks instead of this machine's process pool (`pip install ".[ray]"`).

Each task reads a batch of files with the local reader (`read_all`: PDF, DOCX and EPUB still
in sandboxed processes, with their time and memory limits) and returns the documents as JSON,
so no document is pickled on the way. The files must be readable at the same path on every
node (a shared or copied folder), as for any Ray job over files.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verbatim.ingest.files import FileTask
from verbatim.ingest.sandbox import from_json, to_json
from verbatim.ingest.workers import Result, read_all

if TYPE_CHECKING:
    from verbatim.settings import Settings

FILES_PER_TASK = 16  # files a Ray task reads: enough to pay for its start, few to balance


def read_on_ray(tasks: list[FileTask], settings: Settings, advance) -> list[Result]:
    """Every file's documents (or skip reason), in the order of `tasks`, read by Ray tasks.
    A drop-in for `read_all`; Ray must be initialised (`ray.init`)."""
    import ray.data

    rows = [
        {"i": i, "path": str(t.path), "doc_id": t.doc_id, "format": t.format}
        for i, t in enumerate(tasks)
    ]
    one_each = settings.model_copy(update={"read_workers": 1, "progress": False})
    read = ray.data.from_items(rows).map_batches(
        functools.partial(_read_batch, settings=one_each.model_dump_json()),
        batch_size=FILES_PER_TASK,
        batch_format="pandas",
    )
    results: list[Result] = ["not read"] * len(tasks)
    for row in read.iter_rows():
        answer = json.loads(row["result"])
        results[int(row["i"])] = (
            answer if isinstance(answer, str) else [from_json(d) for d in answer]
        )
        advance()
    return results


def _read_batch(batch: Any, settings: str) -> Any:
    """Read one batch of files in a Ray worker: a column of JSON results beside their index."""
    from verbatim.settings import Settings

    local = Settings.model_validate_json(settings)
    tasks = [
        FileTask(Path(p), d, f)
        for p, d, f in zip(batch["path"], batch["doc_id"], batch["format"], strict=True)
    ]
    results = read_all(tasks, local, lambda: None)
    encoded = [
        json.dumps(r if isinstance(r, str) else [to_json(d) for d in r])  # ASCII: no surrogates
        for r in results
    ]
    return batch.assign(result=encoded)[["i", "result"]]
