"""The explorer's routes over the Flask client: a user's history and the version's facts
(JSON, documented), and the /explore page itself (HTML, its script and style)."""

from __future__ import annotations

import json
import re

import pytest

from serving.app import create_app
from serving.config import build_serve_config
from serving.routes.explore import quality_view, readable_time
from tests.serving import catalogue

HISTORY_KEYS = ["item_id", "title", "rating", "timestamp"]


def expected_history(user: int) -> list[list]:
    """Return a user's rows of the input, most recent first, as the history answers them."""
    rows = [r for r in catalogue.ratings() if r[0] == user]
    rows.sort(key=lambda r: (-r[3], r[1]))
    return [[item, catalogue.MOVIES[item][0], rating, ts] for _, item, rating, ts in rows]


@pytest.mark.slow
@pytest.mark.parametrize("user", [catalogue.FAN, 9, 30])
def test_history_is_the_users_ratings_most_recent_first(client, user):
    body = client.get(f"/v1/users/{user}/history?n=100").get_json()
    assert list(body) == ["user_id", "version", "total", "items"]
    assert (body["user_id"], body["version"]) == (user, "v1")
    expected = expected_history(user)
    assert body["total"] == len(expected)
    assert all(list(item) == HISTORY_KEYS for item in body["items"])
    assert [list(item.values()) for item in body["items"]] == expected


@pytest.mark.slow
def test_history_n_keeps_the_latest(client):
    body = client.get(f"/v1/users/{catalogue.FAN}/history?n=3").get_json()
    expected = expected_history(catalogue.FAN)
    assert body["total"] == len(expected) and len(body["items"]) == 3
    assert [i["item_id"] for i in body["items"]] == [row[0] for row in expected[:3]]
    assert len(client.get("/v1/users/9/history").get_json()["items"]) == min(
        20, len(expected_history(9))
    )


@pytest.mark.slow
@pytest.mark.parametrize("user", ["nobody", "999999", "01", "%D7%A9"])
def test_history_of_a_user_without_interactions_is_empty(client, user):
    response = client.get(f"/v1/users/{user}/history")
    assert response.status_code == 200
    assert {k: v for k, v in response.get_json().items() if k != "user_id"} == {
        "version": "v1",
        "total": 0,
        "items": [],
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "path",
    [
        "/v1/users/1/history?n=0",
        "/v1/users/1/history?n=101",
        "/v1/users/1/history?n=x",
        "/v1/users/%00/history",
        "/v1/users/" + "7" * 300 + "/history",
    ],
)
def test_bad_history_requests_are_400(client, path):
    response = client.get(path)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_parameter"


@pytest.mark.slow
def test_version_reports_the_run_and_its_manifest_quality(client, published):
    manifest = json.loads((published.out / "runs" / "v1" / "manifest.json").read_text())
    body = client.get("/v1/version").get_json()
    assert set(manifest["quality"]) >= {"k", "model", "popularity"}
    generated = client.get("/v1/users/1/recommendations").get_json()["generated_at"]
    assert body == {
        "version": "v1",
        "run_id": "v1",
        "generated_at": generated,
        "users": 30,
        "items": len(catalogue.MOVIES),
        "encoder": manifest["encoder"],
        "search": True,
        "quality": manifest["quality"],
    }


@pytest.mark.slow
def test_the_page_shows_the_version_and_its_quality(client, published):
    response = client.get("/explore?user_id=1&q=%3Cscary%3E%20zombies")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    info = client.get("/v1/version").get_json()
    assert '<dd id="version-name">v1</dd>' in page
    assert f'<time datetime="{info["generated_at"]}">' in page
    assert '<th scope="col">model</th><th scope="col">popularity</th>' in page
    assert f"<td>{info['quality']['model']['ndcg']:.4f}</td>" in page
    assert 'value="&lt;scary&gt; zombies"' in page and 'value="1"' in page
    users = re.findall(r'<option value="([^"]+)">', page)
    assert users == [str(u) for u in sorted({r[0] for r in catalogue.ratings()})][:50]
    for label, target in (("User id", "user-id"), ("Search text", "query")):
        assert f'<label for="{target}">{label}</label>' in page and f'id="{target}"' in page


@pytest.mark.slow
def test_the_page_loads_nothing_from_elsewhere(client):
    page = client.get("/explore").get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(s.startswith("/") or s == "data:," for s in sources), sources
    script = client.get("/static/explore.js")
    style = client.get("/static/explore.css")
    assert script.status_code == style.status_code == 200
    code = script.get_data(as_text=True)
    assert not re.search(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write", code)
    assert "http" not in code  # every URL is relative to the page's own origin
    assert "url(" not in style.get_data(as_text=True)  # no fonts or images fetched by CSS


def test_without_a_version_the_page_says_why(redis_url, tmp_path):
    app = create_app(build_serve_config({"redis_url": redis_url, "out": str(tmp_path)}, {}))
    client = app.test_client()
    response = client.get("/explore")
    assert response.status_code == 503 and response.mimetype == "text/html"
    assert "no version published yet (run the job)" in response.get_data(as_text=True)
    for path in ("/v1/version", "/v1/users/1/history"):
        response = client.get(path)
        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == "unavailable"


def test_quality_is_laid_out_without_knowing_its_keys():
    view = quality_view(
        {
            "protocol": "last 1",
            "k": 10,
            "model": {"ndcg": 0.123456, "users": 30},
            "popularity": {"ndcg": 0.5, "recall": None, "extra": [1]},
            "beats_popularity": False,
        }
    )
    assert view.facts == [("protocol", "last 1"), ("k", "10"), ("beats_popularity", "no")]
    assert view.groups == ["model", "popularity"]
    assert view.rows == [
        ("ndcg", ["0.1235", "0.5000"]),
        ("users", ["30", "–"]),
        ("recall", ["–", "–"]),
        ("extra", ["–", "[1]"]),
    ]
    assert quality_view({}) == quality_view({}).__class__([], [], [])


def test_the_model_and_each_baseline_of_the_quality_record_are_columns():
    view = quality_view(
        {
            "baselines": {"popularity": {"ndcg": 0.05}, "ease": {"ndcg": 0.07}},
            "best_baseline": {"name": "ease", "ndcg": 0.07},
            "gate": {"verdict": "published", "drop": 0.01},
            "k": 10,
            "model": {"ndcg": 0.1},
            "popularity": {"ndcg": 0.05},  # the same group again: not a column of its own
            "score_histogram": [1, 2, 3],
        }
    )
    assert view.groups == ["model", "popularity", "ease"]
    assert view.rows == [("ndcg", ["0.1000", "0.0500", "0.0700"])]
    assert view.facts == [("k", "10")]


def test_times_read_as_utc():
    assert readable_time("2026-11-23T12:43:07+00:00") == "2026-11-23 12:43 UTC"
    assert readable_time("2026-11-23T13:43:07+01:00") == "2026-11-23 12:43 UTC"
    assert readable_time("2026-11-23T12:43:07") == "2026-11-23 12:43"
    assert readable_time("yesterday") == "yesterday"
