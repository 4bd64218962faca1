"""Errors Verbatim shows to people. Each message says what to do about it."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

# What a write says when the disk (or the user's quota) has no room left.
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
SQLITE_FULL = 13  # "database or disk is full"


class VerbatimError(Exception):
    """Base class: the message is shown as is, without a traceback."""

    status = 400
    code = "error"

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class InvalidQuestion(VerbatimError):
    status = 422
    code = "invalid_question"


class NoDocuments(VerbatimError):
    status = 400
    code = "no_documents"


class IndexMissing(VerbatimError):
    status = 503
    code = "index_missing"


class IndexCorrupt(VerbatimError):
    status = 503
    code = "index_corrupt"


class IndexWriteFailed(VerbatimError):
    status = 507
    code = "index_write_failed"


class StorageFull(VerbatimError):
    """The disk holding the data directory is full; what failed was not written."""

    status = 507
    code = "storage_full"


def storage_full(exc: BaseException, where: Path | str) -> StorageFull | None:
    """`exc` as a `StorageFull` naming the folder `where`, if it says the disk is full (ENOSPC
    or EDQUOT from the OS, SQLITE_FULL from SQLite); None for any other error.

    The one place a full disk is recognised: callers re-raise the result, or `exc` if None.
    """
    if isinstance(exc, OSError):
        full = exc.errno in FULL_ERRNOS
    elif isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        full = code & 0xFF == SQLITE_FULL if code is not None else "disk is full" in str(exc)
    else:
        full = False
    if not full:
        return None
    return StorageFull(
        f"the disk holding {where} is full ({exc}); nothing was written. Free some space on "
        "it, or set VERBATIM_DATA_DIR to a folder on a disk with room, and try again."
    )


class FolderMissing(VerbatimError):
    """A file was to be written into a folder that does not exist (it is not made: a typo in
    a path should not make folders)."""

    status = 400
    code = "folder_missing"


class ModelMismatch(VerbatimError):
    status = 503
    code = "model_mismatch"


class ModelUnsupported(VerbatimError):
    status = 503
    code = "model_unsupported"


class NotFound(VerbatimError):
    status = 404
    code = "not_found"


class Forbidden(VerbatimError):
    status = 403
    code = "forbidden"


class InvalidCollectionName(VerbatimError):
    status = 422
    code = "invalid_collection"


class UnknownCollection(VerbatimError):
    status = 404
    code = "unknown_collection"


class InvalidFilter(VerbatimError):
    """A filter's value is malformed or names what does not exist; the message names the field."""

    status = 422
    code = "invalid_filter"
