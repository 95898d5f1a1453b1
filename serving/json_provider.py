"""JSON answers written by orjson: the `serving.models` dataclasses go straight to bytes.

Flask's default provider turns a body into a `str` with the standard library's encoder
(the dataclasses first copied into dicts), and the response encodes that string again: on
the recommendations route, the largest piece of work after the Redis GET. orjson
serialises dataclasses, lists and scalars in C, in field order, as UTF-8 (non-ASCII titles
as they are), with the same shortest float representation as `repr`, so the bodies keep
their keys, order and values.

Request bodies are still parsed by Flask's default (the standard library), whose errors
the routes already turn into 400s.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider

# Non-string dict keys (ints) are written as strings, numpy scalars and arrays as numbers.
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class OrjsonProvider(DefaultJSONProvider):
    """Flask's JSON provider with orjson writing the answers.

    `sort_keys` (off in the API: keys keep the documented order) and Flask's debug mode
    (indented output) are honoured; `ensure_ascii` is not: answers are always UTF-8.
    """

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return self.dump_bytes(obj).decode()

    def dump_bytes(self, obj: Any) -> bytes:
        """Return obj as JSON bytes (dataclasses as objects in field order)."""
        options = _OPTIONS
        if self.sort_keys:
            options |= orjson.OPT_SORT_KEYS
        if self.compact is False or (self.compact is None and self._app.debug):
            options |= orjson.OPT_INDENT_2
        return orjson.dumps(obj, default=self.default, option=options)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        response_class = cast("type[Response]", self._app.response_class)  # Flask's own
        return response_class(self.dump_bytes(obj), mimetype=self.mimetype)
