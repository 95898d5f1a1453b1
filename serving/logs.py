"""Structured logs: one JSON object per line, shared by the job and the API, and the API's
access lines (`AccessLog`).

Every line carries `ts` (UTC, ISO 8601), `level`, `logger` and `message`, the fields given
when the formatter was built (the job's run id, the process id) and those a call site adds
with `extra={"fields": {...}}` (the version a request was answered from).
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any, BinaryIO

import orjson


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line."""

    def __init__(self, **static: Any) -> None:
        super().__init__()
        self.static = static

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
            **self.static,
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def json_line(**fields: Any) -> str:
    """Return one JSON log line with a timestamp, for records written outside `logging`."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    return json.dumps({"ts": now, **fields}, ensure_ascii=False, default=str)


class AccessLog:
    """The API's access lines: one JSON object per answered request on a binary stream.

    A line costs one orjson call and a write into the stream's buffer, not a `logging`
    record and a write(2): at a few thousand requests a second per worker that difference
    is a tenth of the API's work. The buffer is flushed by a thread every `flush_seconds`
    and when the process exits (as nginx's `access_log ... buffer= flush=`), so a line may
    reach the stream up to a second late and a killed worker loses its last second.
    """

    def __init__(self, stream: BinaryIO, flush_seconds: float = 1.0) -> None:
        self.stream = stream
        self.flush_seconds = flush_seconds
        self._flusher: threading.Thread | None = None
        self._lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        """Write one line (the stream's own lock keeps lines whole across threads); a line
        that cannot be written is dropped, never the request's answer."""
        if self._flusher is None:
            self._start_flusher()
        try:
            self.stream.write(orjson.dumps(entry) + b"\n")
        except (OSError, ValueError):  # the stream went away (closed pipe, shut down)
            pass

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):  # the stream went away (closed pipe, shut down)
            pass

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(
                target=self._flush_every, name="nightrec-access-flush", daemon=True
            )
            self._flusher.start()
            atexit.register(self.flush)

    def _flush_every(self) -> None:
        while True:
            time.sleep(self.flush_seconds)
            self.flush()
