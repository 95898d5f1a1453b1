"""Query parameters, declared once: each declaration parses and checks the value a request
sends and describes itself for the OpenAPI document (`serving.openapi`).

Limits that come from the configuration (largest n, longest query) are read from the
`ServeConfig` at request time, so the document and the checks always agree.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from serving.config import ServeConfig
from serving.errors import bad_parameter

_DIGITS = re.compile(r"[0-9]{1,9}")
_SPACES = re.compile(r"\s+")
MAX_ID_CHARS = 256


@dataclass(frozen=True)
class IntParam:
    """An integer query parameter in [minimum, maximum(config)] with a default (lowered to
    the maximum when the configured maximum is smaller)."""

    name: str
    description: str
    default: int
    minimum: int
    maximum: Callable[[ServeConfig], int]

    def read(self, args: Mapping[str, str], config: ServeConfig) -> int:
        raw = _arg(args, self.name)
        if raw is None:
            return self.default_for(config)
        return check_int(self.name, raw, self.minimum, self.maximum(config))

    def default_for(self, config: ServeConfig) -> int:
        return min(self.default, self.maximum(config))

    def schema(self, config: ServeConfig) -> dict[str, Any]:
        return {
            "type": "integer",
            "minimum": self.minimum,
            "maximum": self.maximum(config),
            "default": self.default_for(config),
        }

    required = False


@dataclass(frozen=True)
class TextParam:
    """A text query parameter, cleaned (see `clean_text`) and at most max_chars(config) long."""

    name: str
    description: str
    required: bool
    max_chars: Callable[[ServeConfig], int]

    def read(self, args: Mapping[str, str], config: ServeConfig) -> str | None:
        raw = _arg(args, self.name)
        if raw is None:
            if self.required:
                raise bad_parameter(self.name, "is required")
            return None
        limit = self.max_chars(config)
        if len(raw) > limit:
            raise bad_parameter(self.name, f"is {len(raw)} characters long; at most {limit}")
        text = clean_text(raw)
        if not text:
            raise bad_parameter(self.name, "must contain some text (got only blanks)")
        return text

    def schema(self, config: ServeConfig) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "maxLength": self.max_chars(config)}


@dataclass(frozen=True)
class IdParam:
    """An optional id (user or item) given in the query string."""

    name: str
    description: str
    required = False

    def read(self, args: Mapping[str, str], config: ServeConfig) -> str | None:
        raw = _arg(args, self.name)
        return None if raw is None or raw == "" else check_id(self.name, raw)

    def schema(self, config: ServeConfig) -> dict[str, Any]:
        return {"type": "string", "maxLength": MAX_ID_CHARS}


@dataclass(frozen=True)
class IdListParam:
    """Comma-separated ids, at most max_ids(config) of them; blanks between commas ignored."""

    name: str
    description: str
    max_ids: Callable[[ServeConfig], int]
    required = False

    def read(self, args: Mapping[str, str], config: ServeConfig) -> frozenset[str]:
        raw = _arg(args, self.name)
        if not raw:
            return frozenset()
        ids = [part.strip() for part in raw.split(",") if part.strip()]
        limit = self.max_ids(config)
        if len(ids) > limit:
            raise bad_parameter(self.name, f"lists {len(ids)} ids; at most {limit}")
        return frozenset(check_id(self.name, i) for i in ids)

    def schema(self, config: ServeConfig) -> dict[str, Any]:
        return {"type": "string", "pattern": "^[^,]*(,[^,]*)*$"}


Param = IntParam | TextParam | IdParam | IdListParam


def _arg(args: Mapping[str, str], name: str) -> str | None:
    """Return a query parameter or None. Werkzeug's `MultiDict.get` answers a missing key by
    raising and catching a `BadRequestKeyError`, which costs more than the rest of reading
    a parameter; most requests leave most parameters out."""
    return args[name] if name in args else None


def check_int(name: str, raw: object, minimum: int, maximum: int) -> int:
    """Return raw as an int in [minimum, maximum], or raise a 400 naming the parameter."""
    if isinstance(raw, bool):
        raise bad_parameter(name, f"must be an integer from {minimum} to {maximum}")
    if isinstance(raw, str):
        if not _DIGITS.fullmatch(raw.strip()):
            raise bad_parameter(name, f"must be an integer from {minimum} to {maximum}")
        raw = int(raw.strip())
    if not isinstance(raw, int) or not minimum <= raw <= maximum:
        raise bad_parameter(name, f"must be an integer from {minimum} to {maximum} (got {raw!r})")
    return raw


def check_id(name: str, raw: str) -> str:
    """Return an id as sent, or raise a 400 when it is too long or holds control characters
    or unpaired surrogates (a JSON body can carry "\\ud800"; no answer could encode it)."""
    if len(raw) > MAX_ID_CHARS:
        raise bad_parameter(name, f"ids are at most {MAX_ID_CHARS} characters")
    if raw.isascii() and raw.isprintable():  # the usual id, checked without a loop
        return raw
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in raw):
        raise bad_parameter(name, "ids must not contain control characters or lone surrogates")
    return raw


def clean_text(raw: str) -> str:
    """Normalise a query the way item texts are written: NFC, no control characters, single
    spaces, no blanks at the ends."""
    text = unicodedata.normalize("NFC", raw)
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Cs") else ch for ch in text)
    return _SPACES.sub(" ", text).strip()
