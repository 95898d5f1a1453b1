"""Hostile input to every route of the API: hypothesis draws path parameters, query strings
and bodies for each operation the app's own /openapi.json lists, and every answer must be a
success or a JSON error of the contract's shape, never a 5xx (the version is published and
Redis is up, so not even a 503). Real Redis, real index, real encoder (Flask test client).
"""

from __future__ import annotations

import json
from collections import Counter
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serving import catalogue

pytestmark = pytest.mark.slow

settings.register_profile(
    "nightrec-fuzz",
    max_examples=100,  # per operation: 11 operations, about 25 s on the shared 2 cores
    deadline=None,  # the first query through the encoder, a loaded machine
    database=None,  # nothing written into the repository
    derandomize=True,  # the same cases on every run: a failure in CI reproduces here
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("nightrec-fuzz")

NASTY = [
    "",
    " ",
    "0",
    "-1",
    "+1",
    "042",
    "1.5",
    "1e9",
    "NaN",
    "inf",
    "0x1f",
    "１",  # full-width digit
    "١",  # Arabic-Indic digit
    "9" * 40,
    str(2**63),
    str(-(2**63) - 1),
    "*",
    "?",
    ":",
    "{nightrec}:current",
    "nightrec:v:v1:meta",
    "..",
    "../../etc/passwd",
    "a/b",
    "%00",
    "\x00",
    "\n",
    "\r\nFLUSHALL\r\n",
    "*1\r\n$8\r\nFLUSHALL\r\n",
    "\u202e\u200fevil",  # right-to-left override and mark
    "\ufeff",
    "\ud800",  # a lone surrogate
    "\udfff\ud800",
    "🧟" * 100,
    "x" * 256,
    "y" * 257,
    "z" * 5000,
    "<script>alert(1)</script>",
    "'; DROP TABLE items; --",
    "true",
    "null",
    "[]",
    "{}",
]
KNOWN_IDS = [str(i) for i in list(catalogue.MOVIES)[:5]] + ["1", "9", str(catalogue.FAN)]

any_char = st.characters(exclude_categories=())  # every code point, surrogates included
odd_text = st.one_of(
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),  # lone surrogates
    st.text(st.characters(categories=["Cf", "Mn", "Lo", "So", "Zl"]), min_size=1),
)
hostile_text = st.one_of(
    st.sampled_from(NASTY),
    st.sampled_from(KNOWN_IDS),
    st.text(any_char, max_size=40),
    st.text(st.characters(categories=["Cc", "Zp"]), max_size=8),
    odd_text,
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.builds(
        lambda s, k: s * k, st.sampled_from(["a", "é", "🧟", ",", "%"]), st.integers(0, 9000)
    ),
)
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**18),
    st.floats(allow_nan=False, allow_infinity=False),
    hostile_text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(hostile_text, inner, max_size=4)
    ),
    max_leaves=20,
)
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-16",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "application/octet-stream",
    "",
]


def url_quote(text: str) -> str:
    """Percent-encode text for a URL; lone surrogates go as their (invalid) UTF-8 bytes."""
    return quote(text, safe="", errors="surrogatepass")


def schema_value(schema: dict) -> st.SearchStrategy:
    """Return values a client could mean: within the schema's bounds, as text."""
    if schema.get("type") == "integer":
        return st.integers(schema.get("minimum", 0), schema.get("maximum", 1000)).map(str)
    if schema.get("type") == "string":
        limit = schema.get("maxLength", 50)
        pick = st.sampled_from(KNOWN_IDS + ["zombie", "scary zombie movies", "1,2,3"])
        return st.one_of(pick, st.text(any_char, min_size=1, max_size=limit))
    return st.text(max_size=10)


@st.composite
def requests_for(draw, path: str, method: str, op: dict) -> dict:
    """Draw one request for an operation: its URL, method, body and content type."""
    url = path
    for param in op.get("parameters", []):
        if param["in"] == "path":
            value = draw(st.one_of(hostile_text, st.sampled_from(KNOWN_IDS)))
            url = url.replace("{" + param["name"] + "}", url_quote(value))
    pairs = []
    for param in op.get("parameters", []):
        if param["in"] != "query" or not draw(st.booleans()):
            continue
        value = draw(st.one_of(schema_value(param.get("schema", {})), hostile_text))
        pairs += [(param["name"], value)] * draw(st.sampled_from([1, 1, 1, 2]))
    if draw(st.integers(0, 5)) == 0:
        pairs.append((draw(hostile_text), draw(hostile_text)))  # a parameter nobody declared
    if pairs:
        url += "?" + urlencode(pairs, quote_via=quote, errors="surrogatepass")
    body, content_type = None, None
    if "requestBody" in op:
        body, content_type = draw(bodies())
    if draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(["put", "delete", "patch", "post", "get"]))
    return {"url": url, "method": method, "body": body, "content_type": content_type}


@st.composite
def bodies(draw) -> tuple[bytes, str]:
    """Draw a request body: a history-shaped object, any JSON value, or bytes that are not
    JSON at all, under a right or wrong content type."""
    shaped = st.fixed_dictionaries(
        {},
        optional={
            "item_ids": st.one_of(
                st.lists(
                    st.one_of(st.integers(), hostile_text, st.sampled_from(KNOWN_IDS), odd_text),
                    max_size=4,
                ),
                json_value,
            ),
            "n": st.one_of(st.integers(-5, 200), json_value),
        },
    )
    kind = draw(st.sampled_from(["shaped", "shaped", "json", "bytes", "deep"]))
    if kind == "shaped":
        raw = json.dumps(draw(shaped)).encode()  # ensure_ascii: lone surrogates as \\udXXX
    elif kind == "json":
        raw = json.dumps(draw(json_value)).encode()
    elif kind == "deep":
        depth = draw(st.sampled_from([10, 500, 5_000, 100_000]))
        raw = draw(st.sampled_from([b"[", b'{"a":'])) * depth + b"1"
    else:
        raw = draw(st.binary(max_size=200))
    return raw, draw(st.sampled_from(CONTENT_TYPES))


def check_answer(response, request: dict) -> None:
    """Fail unless the answer is a success or a JSON error of the contract's shape."""
    where = f"{request['method'].upper()} {request['url'][:300]!r}"
    assert response.status_code < 500, f"{where}: {response.status_code} {response.data[:300]}"
    if response.status_code < 400:
        if response.mimetype == "application/json":
            assert response.get_json() is not None, where
        return
    assert response.mimetype == "application/json", f"{where}: {response.mimetype} error"
    error = response.get_json()["error"]
    assert isinstance(error["code"], str) and error["code"], where
    assert isinstance(error["message"], str) and error["message"], where
    assert "Traceback" not in error["message"], where


def operations(client) -> list[tuple[str, str, dict]]:
    document = client.get("/openapi.json").get_json()
    return [
        (path, method, op)
        for path, methods in sorted(document["paths"].items())
        for method, op in sorted(methods.items())
    ]


def test_every_route_survives_hostile_input(client):
    ops = operations(client)
    assert len(ops) >= 11  # every route of the contract, and whatever was added since
    statuses: Counter = Counter()
    cases: Counter = Counter()
    for path, method, op in ops:
        fuzz_operation(client, path, method, op, statuses, cases)
    assert set(cases) == {(path, method) for path, method, _ in ops}
    assert min(cases.values()) >= FUZZ.max_examples
    print(
        f"\nfuzz: {sum(cases.values())} requests over {len(ops)} operations; "
        f"statuses {dict(sorted(statuses.items()))}"
    )


def fuzz_operation(client, path, method, op, statuses: Counter, cases: Counter) -> None:
    """Run the hypothesis cases of one operation, counting statuses and cases."""

    examples = FUZZ.max_examples * (3 if "requestBody" in op else 1)  # bodies: more to cover

    @settings(FUZZ, max_examples=examples)
    @given(request=requests_for(path, method, op))
    def fuzz(request: dict) -> None:
        response = client.open(
            request["url"],
            method=request["method"].upper(),
            data=request["body"],
            content_type=request["content_type"],
        )
        check_answer(response, request)
        statuses[response.status_code] += 1
        cases[(path, method)] += 1

    fuzz()
