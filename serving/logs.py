"""Structured logs: one JSON object per line, shared by the job and the API.

Every line carries `ts` (UTC, ISO 8601), `level`, `logger` and `message`, the fields given
when the formatter was built (the job's run id, the process id) and those a call site adds
with `extra={"fields": {...}}` (the version a request was answered from).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any


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
