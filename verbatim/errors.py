"""Errors Verbatim shows to people. Each message says what to do about it."""


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
