"""The app without a published version: it starts, says why it is not ready, checks input
first, documents itself, and imports nothing heavy (no job needed, so these are quick)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from serving.app import create_app
from serving.config import build_serve_config
from serving.local_redis import free_port
from serving.store import Catalogue, ListStore

ROUTES = {
    "/v1/users/{user_id}/recommendations": "get",
    "/v1/users/{user_id}/history": "get",
    "/v1/version": "get",
    "/explore": "get",
    "/v1/recommendations": "post",
    "/v1/items/{item_id}/similar": "get",
    "/v1/search": "get",
    "/healthz": "get",
    "/readyz": "get",
    "/metrics": "get",
    "/openapi.json": "get",
}


@pytest.fixture
def empty_app(redis_url, tmp_path):
    return create_app(build_serve_config({"redis_url": redis_url, "out": str(tmp_path)}, {}))


def test_without_a_version_the_app_is_alive_but_not_ready(empty_app):
    client = empty_app.test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["reason"] == "no version published yet (run the job)"
    response = client.get("/v1/users/1/recommendations")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "unavailable"


def test_parameters_are_checked_before_anything_is_read(empty_app):
    client = empty_app.test_client()
    assert client.get("/v1/users/1/recommendations?n=0").status_code == 400
    assert client.get("/v1/search?q=").status_code == 400
    assert client.post("/v1/recommendations", data="{").status_code == 400


def test_redis_down_at_start_is_a_503_not_a_crash(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(build_serve_config({"redis_url": url, "out": str(tmp_path)}, {}))
    client = app.test_client()
    for path in ("/v1/users/1/recommendations", "/v1/search?q=zombies", "/readyz"):
        response = client.get(path)
        assert response.status_code == 503
    assert "Redis" in client.get("/readyz").get_json()["reason"]
    assert client.get("/v1/items/1/similar").get_json()["error"]["code"] == "unavailable"


def test_an_unexpected_error_is_a_json_500_without_a_traceback(empty_app, caplog):
    @empty_app.get("/boom")
    def boom():
        raise KeyError("secret detail")

    response = empty_app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.get_json() == {
        "error": {"code": "internal", "message": "internal error; it has been logged"}
    }
    assert "secret detail" in caplog.text


def test_the_openapi_document_is_generated_from_the_routes(empty_app):
    document = empty_app.test_client().get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    assert {path: next(iter(ops)) for path, ops in document["paths"].items()} == ROUTES
    recs = document["paths"]["/v1/users/{user_id}/recommendations"]["get"]
    params = {p["name"]: p for p in recs["parameters"]}
    assert params["user_id"]["in"] == "path" and params["user_id"]["required"]
    assert params["n"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}
    assert set(recs["responses"]) == {"200", "400", "503", "500"}
    schemas = document["components"]["schemas"]
    assert schemas["Recommendations"]["required"] == [
        "user_id",
        "version",
        "generated_at",
        "source",
        "items",
    ]
    assert schemas["Recommendations"]["properties"]["source"] == {"enum": ["personal", "popular"]}
    assert schemas["Item"]["required"] == ["item_id", "score", "title"]
    search = document["paths"]["/v1/search"]["get"]
    q = next(p for p in search["parameters"] if p["name"] == "q")
    assert q["required"] and q["schema"]["maxLength"] == 500
    history = document["paths"]["/v1/recommendations"]["post"]["requestBody"]
    assert history["content"]["application/json"]["schema"]["$ref"].endswith("HistoryRequest")


def test_the_document_follows_the_configured_limits(redis_url, tmp_path):
    config = build_serve_config({"redis_url": redis_url, "out": str(tmp_path), "max_n": 7}, {})
    document = create_app(config).test_client().get("/openapi.json").get_json()
    similar = document["paths"]["/v1/items/{item_id}/similar"]["get"]
    assert next(p for p in similar["parameters"] if p["name"] == "n")["schema"]["maximum"] == 7


def test_importing_the_app_pulls_in_no_spark_tensorflow_or_torch():
    code = (
        "import sys, serving.app, serving.cli, serving.item_index\n"
        "heavy = {'pyspark', 'tensorflow', 'scann', 'torch', 'jobs'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_store_keeps_the_catalogues_of_recent_versions(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    store = ListStore(client, keep_catalogues=2)
    for name in ("a", "b", "c"):
        client.set(store.keys.items(name), f'{{"item_ids": [1], "titles": ["{name}"]}}')
    assert [store.catalogue(n).titles for n in ("a", "b")] == [["a"], ["b"]]
    client.delete(store.keys.items("a"), store.keys.items("b"))
    assert store.catalogue("a") == Catalogue("a", [1], ["a"])  # still in memory
    store.catalogue("c")
    assert store.catalogue("b").titles == ["b"]
    with pytest.raises(LookupError):
        store.catalogue("a")  # dropped: only the last two are kept
