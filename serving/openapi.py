"""The OpenAPI document, generated from the code: routes from the app's URL map, summaries
from the view docstrings, parameters from their `serving.params` declarations, bodies from
the `serving.models` dataclasses.

`@operation(...)` declares what a view takes and answers; it also parses the declared query
parameters and passes them to the view as keyword arguments, so what is documented is what
is checked.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, request

from serving.config import ServeConfig
from serving.models import ErrorBody
from serving.params import Param

ERROR_TEXT = {
    400: "a parameter or the body cannot be used",
    404: "unknown id",
    503: "Redis or the version's index is unavailable, or the request ran past "
    "NIGHTREC_REQUEST_TIMEOUT; retry shortly",
}
_PATH_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


@dataclass(frozen=True)
class Operation:
    """What a view takes and answers, for the document.

    Attributes:
        query: the query parameters, parsed and passed to the view by name.
        path: descriptions of the path parameters.
        body: the dataclass of the JSON request body, if any.
        response: the dataclass of the success body (None for a non-JSON answer).
        errors: the error statuses the view can answer with.
        media_type: the success media type.
        tag: the group the operation is listed under.
    """

    query: tuple[Param, ...] = ()
    path: dict[str, str] = dataclasses.field(default_factory=dict)
    body: type | None = None
    response: type | None = None
    errors: tuple[int, ...] = ()
    media_type: str = "application/json"
    tag: str = "api"


def operation(**declared: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a view's parameters and answers (see `Operation`) and parse its query string."""
    spec = Operation(**declared)

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            config: ServeConfig = current_app.extensions["nightrec"].config
            for param in spec.query:
                kwargs[param.name] = param.read(request.args, config)
            return view(*args, **kwargs)

        wrapper.openapi = spec  # type: ignore[attr-defined]
        return wrapper

    return decorate


def build_document(app: Flask, config: ServeConfig, version: str) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of every declared route of `app`."""
    components: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions.get(rule.endpoint)
        spec = getattr(view, "openapi", None)
        if spec is None or view is None:
            continue
        path = _PATH_PARAM.sub(r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op = _operation(view, spec, rule.arguments, config, components)
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "nightrec", "version": version},
        "paths": paths,
        "components": {"schemas": components},
    }


def _operation(
    view: Callable[..., Any],
    spec: Operation,
    path_args: set[str],
    config: ServeConfig,
    components: dict[str, Any],
) -> dict[str, Any]:
    doc = inspect.getdoc(view) or ""
    summary, _, description = doc.partition("\n")
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        | ({"description": spec.path[name]} if name in spec.path else {})
        for name in sorted(path_args)
    ]
    params += [
        {
            "name": p.name,
            "in": "query",
            "required": p.required,
            "description": p.description,
            "schema": p.schema(config),
        }
        for p in spec.query
    ]
    op: dict[str, Any] = {
        "operationId": view.__name__,
        "summary": summary.strip(),
        "tags": [spec.tag],
        "parameters": params,
        "responses": _responses(spec, components),
    }
    if description.strip():
        op["description"] = description.strip()
    if spec.body is not None:
        body = {"schema": schema_of(spec.body, components)}
        op["requestBody"] = {"required": True, "content": {"application/json": body}}
    return op


def _responses(spec: Operation, components: dict[str, Any]) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "success"}
    if spec.response is not None:
        ok["content"] = {spec.media_type: {"schema": schema_of(spec.response, components)}}
    elif spec.media_type != "application/json":
        ok["content"] = {spec.media_type: {"schema": {"type": "string"}}}
    answers = {"200": ok}
    error = {"application/json": {"schema": schema_of(ErrorBody, components)}}
    for status in (*spec.errors, 500):
        text = ERROR_TEXT.get(status, "internal error (a bug; never for client input)")
        answers[str(status)] = {"description": text, "content": error}
    return answers


def schema_of(hint: Any, components: dict[str, Any]) -> dict[str, Any]:
    """Return the JSON schema of a type hint; dataclasses become named components."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        name = hint.__name__
        if name not in components:
            components[name] = {}  # placeholder: guards against recursion
            components[name] = _dataclass_schema(hint, components)
        return {"$ref": f"#/components/schemas/{name}"}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return {"anyOf": [schema_of(a, components) for a in args]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin is list:
        return {"type": "array", "items": schema_of(args[0], components)}
    if origin is dict or hint is dict:
        return {"type": "object"}
    simple = {int: "integer", float: "number", str: "string", bool: "boolean"}
    if hint is type(None):
        return {"type": "null"}
    if hint in simple:
        return {"type": simple[hint]}
    return {}


def _dataclass_schema(cls: type, components: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    props, required = {}, []
    for field in dataclasses.fields(cls):
        props[field.name] = schema_of(hints[field.name], components)
        no_default = field.default is dataclasses.MISSING
        if no_default and field.default_factory is dataclasses.MISSING:
            required.append(field.name)
    schema: dict[str, Any] = {"type": "object", "properties": props, "required": required}
    if cls.__doc__:
        schema["description"] = inspect.cleandoc(cls.__doc__)
    return schema
