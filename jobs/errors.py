"""The job's named exceptions. Each message says what was expected, what was found, what to do."""

import errno
import os


class JobError(Exception):
    """Base of every error the job reports as a one-line reason (no traceback)."""


class ConfigError(JobError):
    """A setting is missing or invalid; the message names the flag or NIGHTREC_* variable."""


class InputError(JobError):
    """The input data cannot be used: missing file or column, empty, too many bad rows."""


class SchemaError(JobError):
    """A table read or written by a stage does not have the declared columns and types."""


class PublishError(JobError):
    """Writing a version to Redis failed; the previously published version stays current."""


class StageError(JobError):
    """A stage cannot run: an earlier stage's output it needs is missing."""


class QualityGateError(JobError):
    """The new version's held-out quality fell too far below the published one's."""


class StorageError(JobError):
    """The run's files cannot be written: the disk is full or read-only."""


def errno_text(code: int | None, message: str | None = None) -> str:
    """Return an OS error as "No space left on device (ENOSPC)": the message (the system's
    for `code` when not given) and the errno name."""
    name = errno.errorcode.get(code or 0, "")
    text = message or (os.strerror(code) if code else "OS error")
    return f"{text} ({name})" if name else text
