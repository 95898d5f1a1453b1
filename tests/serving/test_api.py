"""The API over a version the real job published: contract shapes, the round trip from the
job's tables to the answers, search, cold start and bad input (Flask client, real Redis,
real ScaNN index, real encoder)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from schemas.manifest import QUERY_ENCODER_DIR
from schemas.text_onnx import read_manifest
from tests.serving import catalogue
from tests.serving.conftest import TOP_N

pytestmark = pytest.mark.slow

SCARY = "scary zombie movies"
HORROR_IDS = set(catalogue.ZOMBIE) | set(catalogue.HORROR)
ITEM_KEYS = ["item_id", "score", "title"]


def job_table(published, table: str) -> list[dict]:
    return pq.read_table(published.out / "runs" / published.version / table).to_pylist()


def job_lists(published, table: str, owner: str, item: str) -> dict:
    lists: dict = {}
    for row in sorted(job_table(published, table), key=lambda r: (r[owner], r["rank"])):
        lists.setdefault(row[owner], []).append(row[item])
    return lists


def test_user_lists_are_the_jobs_lists(client, published):
    expected = job_lists(published, "recommendations", "user_id", "item_id")
    for user in (1, 9, 17, 24):
        response = client.get(f"/v1/users/{user}/recommendations?n={TOP_N}")
        body = response.get_json()
        assert response.status_code == 200
        assert list(body) == ["user_id", "version", "generated_at", "source", "items"]
        assert (body["user_id"], body["version"], body["source"]) == (user, "v1", "personal")
        assert body["generated_at"].startswith("20")
        assert [i["item_id"] for i in body["items"]] == expected[user]
        assert all(list(i) == ITEM_KEYS for i in body["items"])
        assert all(i["title"] == catalogue.MOVIES[i["item_id"]][0] for i in body["items"])
        scores = [i["score"] for i in body["items"]]
        assert scores == sorted(scores, reverse=True)


def test_default_n_is_ten_and_n_is_capped_by_the_list(client):
    assert len(client.get("/v1/users/9/recommendations").get_json()["items"]) == 10
    assert len(client.get("/v1/users/9/recommendations?n=100").get_json()["items"]) == TOP_N


@pytest.mark.parametrize("user", ["nobody", "999999", "042", "%D7%A9%D7%9C%D7%95%D7%9D"])
def test_unknown_user_gets_the_popular_list(client, published, user):
    popular = [
        r["item_id"] for r in sorted(job_table(published, "popular"), key=lambda r: r["rank"])
    ]
    body = client.get(f"/v1/users/{user}/recommendations?n=5").get_json()
    assert body["source"] == "popular"
    assert [i["item_id"] for i in body["items"]] == popular[:5]


def test_exclude_removes_items_and_still_returns_n(client):
    full = [
        i["item_id"] for i in client.get("/v1/users/9/recommendations?n=20").get_json()["items"]
    ]
    shown = ",".join(str(i) for i in full[:3])
    body = client.get(f"/v1/users/9/recommendations?n=5&exclude={shown}, 424242,,").get_json()
    assert [i["item_id"] for i in body["items"]] == full[3:8]
    popular = client.get("/v1/users/nobody/recommendations?n=6").get_json()["items"]
    first = popular[0]["item_id"]
    body = client.get(f"/v1/users/nobody/recommendations?n=5&exclude={first}").get_json()
    assert [i["item_id"] for i in body["items"]] == [i["item_id"] for i in popular[1:6]]


def test_similar_items_are_the_jobs_lists(client, published):
    expected = job_lists(published, "similar_items", "item_id", "similar_item_id")
    response = client.get("/v1/items/1794/similar?n=5")
    body = response.get_json()
    assert response.status_code == 200
    assert list(body) == ["item_id", "version", "items"]
    assert (body["item_id"], body["version"]) == (1794, "v1")
    assert [i["item_id"] for i in body["items"]] == expected[1794][:5]
    assert 1794 not in [i["item_id"] for i in body["items"]]


@pytest.mark.parametrize("item", ["999999", "abc", "01794", "%E2%80%AE1794"])
def test_similar_of_an_unknown_item_is_a_json_404(client, item):
    response = client.get(f"/v1/items/{item}/similar")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "unknown_item"


def test_search_finds_zombie_and_horror_titles_first(client):
    body = client.get("/v1/search", query_string={"q": SCARY, "n": 8}).get_json()
    ids = [i["item_id"] for i in body["items"]]
    assert body["ranking"] == "semantic" and body["user_id"] is None
    assert set(ids[:6]) <= HORROR_IDS
    assert len(set(ids[:5]) & set(catalogue.ZOMBIE)) >= 3
    assert all(i["cf_score"] is None and i["score"] == i["query_score"] for i in body["items"])
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_personal_search_drops_seen_items_and_reports_both_parts(client, app):
    weight = app.extensions["nightrec"].config.search_cf_weight
    query = {"q": SCARY, "n": 10, "user_id": str(catalogue.FAN)}
    body = client.get("/v1/search", query_string=query).get_json()
    ids = [i["item_id"] for i in body["items"]]
    assert body["ranking"] == "personal" and body["user_id"] == catalogue.FAN
    assert not set(ids) & (set(catalogue.FAN_SEEN_ZOMBIES) | set(catalogue.HORROR))
    assert set(ids[:3]) <= set(catalogue.ZOMBIE)  # the zombie films the fan has not seen
    for item in body["items"]:
        assert 0.0 <= item["cf_score"] <= 1.0
        blended = item["query_score"] * ((1 - weight) + weight * item["cf_score"])
        assert item["score"] == pytest.approx(blended, abs=2e-6)
    semantic = client.get("/v1/search", query_string={"q": SCARY, "n": 40}).get_json()
    assert {i["item_id"] for i in semantic["items"]} >= set(catalogue.FAN_SEEN_ZOMBIES)


def test_search_for_an_unknown_user_is_semantic(client):
    plain = client.get("/v1/search", query_string={"q": SCARY}).get_json()
    unknown = client.get("/v1/search", query_string={"q": SCARY, "user_id": "nobody"}).get_json()
    assert unknown["ranking"] == "semantic"
    assert unknown["items"] == plain["items"]


def test_cold_start_from_a_history(client):
    seen = [1, 3114, 424242]
    response = client.post("/v1/recommendations", json={"item_ids": seen, "n": 4})
    body = response.get_json()
    assert response.status_code == 200
    assert (body["source"], body["unknown_item_ids"]) == ("history", [424242])
    ids = [i["item_id"] for i in body["items"]]
    assert len(ids) == 4 and not set(ids) & set(seen)
    assert set(ids) <= set(catalogue.ANIMATION)
    nothing_known = client.post("/v1/recommendations", json={"item_ids": ["x"]}).get_json()
    assert nothing_known["source"] == "popular" and nothing_known["unknown_item_ids"] == ["x"]


BAD_REQUESTS = [
    ("/v1/users/1/recommendations?n=0", 400),
    ("/v1/users/1/recommendations?n=abc", 400),
    ("/v1/users/1/recommendations?n=10000", 400),
    ("/v1/users/1/recommendations?n=-1", 400),
    ("/v1/users/1/recommendations?n=1.5", 400),
    ("/v1/users/1/recommendations?n=", 400),
    ("/v1/users/1/recommendations?exclude=" + ",".join(map(str, range(600))), 400),
    ("/v1/users/" + "7" * 300 + "/recommendations", 400),
    ("/v1/users/%00/recommendations", 400),
    ("/v1/items/1794/similar?n=0", 400),
    ("/v1/items/1794/similar?n=%F0%9F%A7%9F", 400),
    ("/v1/items/%00/similar", 400),
    ("/v1/search", 400),
    ("/v1/search?q=", 400),
    ("/v1/search?q=%20%20%09", 400),
    ("/v1/search?q=%00", 400),
    ("/v1/search?q=%E2%80%8F%E2%80%AE", 400),
    ("/v1/search?q=" + "a" * 10_000, 400),
    ("/v1/search?q=zombies&n=101", 400),
    ("/v1/search?q=zombies&user_id=%00", 400),
    ("/v1/nothing", 404),
]


@pytest.mark.parametrize(("path", "status"), BAD_REQUESTS)
def test_bad_input_is_a_json_error_never_a_500(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert set(error) >= {"code", "message"} and error["message"]


ODD_QUERIES = ["שלום עולם", "زومبي مخيف", "🧟🧟 zombies", "x\u200f\u202eevil", "%00", "\ufeff?"]


@pytest.mark.parametrize("q", ODD_QUERIES)
def test_odd_unicode_queries_are_answered(client, q):
    response = client.get("/v1/search", query_string={"q": q, "user_id": "1"})
    assert response.status_code == 200
    assert response.get_json()["items"]


def test_invalid_utf8_in_the_url_is_not_a_500(client):
    for path in ("/v1/search?q=%ED%A0%80%FF", "/v1/users/%FF%FE/recommendations"):
        assert client.get(path).status_code in (200, 400)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("{not json", "body"),
        ("[1, 2]", "body"),
        ('{"item_ids": []}', "item_ids"),
        ('{"item_ids": "1,2"}', "item_ids"),
        ('{"item_ids": [1, null]}', "item_ids"),
        ('{"item_ids": [1, true]}', "item_ids"),
        ('{"item_ids": [1], "n": 0}', "n"),
        ('{"item_ids": [1], "n": "ten"}', "n"),
        ('{"item_ids": [1], "n": 1000}', "n"),
        ('{"item_ids": [' + ",".join(["1"] * 501) + "]}", "item_ids"),
    ],
)
def test_bad_history_bodies_are_400(client, body, field):
    response = client.post("/v1/recommendations", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["parameter"] == field


def test_readiness_and_metrics(client, published):
    chosen = read_manifest(published.out / "runs" / "v1" / QUERY_ENCODER_DIR).backend
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {
        "ready": True,
        "redis": True,
        "serving_version": "v1",
        "published_version": "v1",
        "index_items": len(catalogue.MOVIES),
        "stale": False,
        "reason": None,
        "query_backend": chosen,
    }
    client.get("/v1/users/1/recommendations")
    client.get("/v1/search?q=zombies")
    client.get("/v1/search?q=zombies")
    text = client.get("/metrics").get_data(as_text=True)
    route = 'route="/v1/users/<user_id>/recommendations"'
    assert f'nightrec_http_requests_total{{method="GET",{route},status="200"}}' in text
    assert "nightrec_http_request_duration_seconds_bucket" in text
    assert 'nightrec_version_info{role="serving",version="v1"} 1.0' in text
    assert f"nightrec_index_items {float(len(catalogue.MOVIES))}" in text
    assert "nightrec_version_stale 0.0" in text
    assert 'nightrec_query_cache_total{result="hit"}' in text
