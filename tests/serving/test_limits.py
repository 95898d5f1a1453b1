"""Limits on what one request may ask: n, the query's length, the ids of exclude= and of a
history body, the body's size and the request's time. Each is enforced with a JSON error,
shown in the OpenAPI document where it bounds a parameter, and set by its NIGHTREC_*
variable (real Redis, real index and encoder; Flask test client)."""

from __future__ import annotations

import io
import json

import pytest

from serving.app import create_app
from serving.cli import serve_main
from serving.config import ConfigError, build_serve_config
from tests.serving import catalogue

pytestmark = pytest.mark.slow

TIGHT = {
    "NIGHTREC_MAX_N": "5",
    "NIGHTREC_MAX_QUERY_CHARS": "12",
    "NIGHTREC_MAX_EXCLUDE": "3",
    "NIGHTREC_MAX_BODY_BYTES": "2000",
}
ITEM = next(iter(catalogue.MOVIES))
N_ROUTES = [
    "/v1/users/9/recommendations",
    "/v1/users/9/history",
    f"/v1/items/{ITEM}/similar",
    "/v1/search?q=zombies",
]


def app_with(published, env: dict[str, str]):
    """Return a test client of an app configured by NIGHTREC_* variables."""
    flags = {"out": str(published.out), "redis_url": published.redis_url}
    return create_app(build_serve_config(flags, env), background=False).test_client()


@pytest.fixture(scope="module")
def tight(published):
    return app_with(published, TIGHT)


def with_n(path: str, n: int) -> str:
    return f"{path}{'&' if '?' in path else '?'}n={n}"


def assert_error(response, status: int, code: str, *words: str) -> dict:
    assert response.status_code == status, response.data[:300]
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["code"] == code
    for word in words:
        assert word in error["message"]
    return error


def history(n: int | None = None, ids: int = 1, pad: int = 0) -> bytes:
    body: dict = {"item_ids": list(catalogue.MOVIES)[:ids]}
    if n is not None:
        body["n"] = n
    return json.dumps(body).encode() + b" " * pad


def test_n_up_to_max_n_and_no_further(client, tight):
    for app, limit in ((client, 100), (tight, 5)):
        for path in N_ROUTES:
            assert app.get(with_n(path, limit)).status_code == 200, path
            error = assert_error(app.get(with_n(path, limit + 1)), 400, "bad_parameter")
            assert error["parameter"] == "n" and f"from 1 to {limit}" in error["message"]
        ok = app.post("/v1/recommendations", data=history(limit), content_type="application/json")
        assert ok.status_code == 200 and len(ok.get_json()["items"]) <= limit
        over = app.post("/v1/recommendations", data=history(limit + 1))
        assert assert_error(over, 400, "bad_parameter")["parameter"] == "n"
        default = min(10, limit)  # without n: the documented default, never past the limit
        assert len(app.get("/v1/users/9/recommendations").get_json()["items"]) == default
        assert len(app.post("/v1/recommendations", data=history()).get_json()["items"]) == default
        document = app.get("/openapi.json").get_json()
        n_schemas = [
            p["schema"]
            for methods in document["paths"].values()
            for op in methods.values()
            for p in op["parameters"]
            if p["name"] == "n"
        ]
        assert len(n_schemas) == len(N_ROUTES)
        assert all(s["maximum"] == limit and s["default"] <= limit for s in n_schemas)


def test_query_length_up_to_max_query_chars(client, tight):
    for app, limit in ((client, 500), (tight, 12)):
        text = ("zombie " * 100)[:limit]
        assert app.get("/v1/search", query_string={"q": text}).status_code == 200
        response = app.get("/v1/search", query_string={"q": text + "s"})
        assert_error(response, 400, "bad_parameter", f"at most {limit}")
        document = app.get("/openapi.json").get_json()
        q = document["paths"]["/v1/search"]["get"]["parameters"]
        assert [p["schema"]["maxLength"] for p in q if p["name"] == "q"] == [limit]


def test_exclude_and_history_ids_up_to_max_exclude(tight):
    ids = [str(i) for i in list(catalogue.MOVIES)[:4]]
    path = "/v1/users/9/recommendations?exclude="
    assert tight.get(path + ",".join(ids[:3])).status_code == 200
    assert_error(tight.get(path + ",".join(ids)), 400, "bad_parameter", "at most 3")
    assert tight.post("/v1/recommendations", data=history(ids=3)).status_code == 200
    response = tight.post("/v1/recommendations", data=history(ids=4))
    assert_error(response, 400, "bad_parameter", "at most 3")


def test_a_body_over_max_body_bytes_is_a_json_413(client, tight):
    for app, limit in ((client, 1 << 20), (tight, 2000)):
        body = history(5)
        at_limit = body + b" " * (limit - len(body))
        response = app.post("/v1/recommendations", data=at_limit, content_type="application/json")
        assert response.status_code == 200
        over = app.post("/v1/recommendations", data=at_limit + b" ")
        assert_error(over, 413, "request_entity_too_large")
    # a chunked body (no Content-Length; gunicorn marks it terminated) is cut at the limit too
    body = history(5)
    for size, status in ((len(body), 200), (2000, 200), (2001, 413), (50_000, 413)):
        chunked = tight.post(
            "/v1/recommendations",
            input_stream=io.BytesIO(body + b" " * (size - len(body))),
            content_type="application/json",
            headers={"Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},
        )
        assert chunked.request.content_length is None
        assert chunked.status_code == status, chunked.data[:300]
        assert chunked.mimetype == "application/json"


def test_a_request_past_request_timeout_is_a_json_503(published, client):
    late = app_with(published, {"NIGHTREC_REQUEST_TIMEOUT": "1e-9"})
    gets = [*N_ROUTES, "/v1/version"]
    for path in gets:
        assert client.get(path).status_code == 200, path
        assert_error(late.get(path), 503, "timeout", "NIGHTREC_REQUEST_TIMEOUT")
    assert client.post("/v1/recommendations", data=history()).status_code == 200
    slow = late.post("/v1/recommendations", data=history())
    assert_error(slow, 503, "timeout", "NIGHTREC_REQUEST_TIMEOUT")
    assert late.get("/healthz").status_code == 200  # the probes read no version
    assert late.get("/readyz").status_code == 200


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("NIGHTREC_MAX_BODY_BYTES", "0"),
        ("NIGHTREC_MAX_BODY_BYTES", "1MB"),
        ("NIGHTREC_REQUEST_TIMEOUT", "0"),
        ("NIGHTREC_REQUEST_TIMEOUT", "-1"),
        ("NIGHTREC_REQUEST_TIMEOUT", "soon"),
        ("NIGHTREC_MAX_QUERY_CHARS", "-5"),
    ],
)
def test_bad_limits_are_one_line_errors_naming_the_variable(
    variable, value, monkeypatch, capsys, tmp_path
):
    with pytest.raises(ConfigError, match=variable):
        build_serve_config({}, {variable: value})
    monkeypatch.setenv(variable, value)
    assert serve_main(["--out", str(tmp_path), "--redis-url", "redis://127.0.0.1:1/0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nightrec serve: ") and variable in err
    assert err.count("\n") == 1 and "Traceback" not in err
