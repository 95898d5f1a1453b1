"""The API's JSON bodies as dataclasses: the routes build them, `serving.openapi` derives the
OpenAPI schemas from their type hints, so the document cannot drift from the answers.

Ids keep the type the job gave them (int ids are JSON numbers, string ids strings). Field
order is the order of the JSON keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ItemId = int | str


@dataclass
class Item:
    """One recommended item: its id, its score in the list, and its title.

    Neither frozen nor slotted: answers build tens of these per request, a frozen
    dataclass's `__init__` costs three times as much, and orjson writes slotted ones six
    times slower. Treat them as values all the same.
    """

    item_id: ItemId
    score: float
    title: str


@dataclass(frozen=True)
class Recommendations:
    """A user's list; users the model does not know get the popular list."""

    user_id: ItemId
    version: str
    generated_at: str
    source: Literal["personal", "popular"]
    items: list[Item]


@dataclass(frozen=True)
class SimilarItems:
    """The items most like one item (text and CF), best first."""

    item_id: ItemId
    version: str
    items: list[Item]


@dataclass(frozen=True)
class SearchItem:
    """One search hit with the parts of its score.

    `query_score` is the cosine between the query and the item text; `cf_score` is the
    user's CF score min-max normalised over the candidates (null without a known user);
    `score` is query_score * ((1 - w) + w * cf_score), or query_score alone.
    """

    item_id: ItemId
    title: str
    score: float
    query_score: float
    cf_score: float | None


@dataclass(frozen=True)
class SearchResults:
    """Items whose text matches the query, re-ranked for the user when one is known."""

    query: str
    user_id: ItemId | None
    version: str
    ranking: Literal["semantic", "personal"]
    items: list[SearchItem]


@dataclass(frozen=True)
class HistoryRequest:
    """What an anonymous visitor has seen: item ids, most relevant first or in any order."""

    item_ids: list[ItemId]
    n: int = 10


@dataclass(frozen=True)
class HistoryRecommendations:
    """Items near the mean text embedding of the seen items, the seen items removed.

    With no known item among the seen ones, the popular list (`"source": "popular"`).
    """

    version: str
    source: Literal["history", "popular"]
    items: list[Item]
    unknown_item_ids: list[ItemId]


@dataclass(frozen=True)
class HistoryItem:
    """One interaction of a user: the item, its title, the rating and when it happened.

    `timestamp` is in epoch seconds (UTC); 0 when the input had no time column. `rating` is
    1.0 for every interaction when the input had no rating column.
    """

    item_id: ItemId
    title: str
    rating: float
    timestamp: int


@dataclass(frozen=True)
class UserHistory:
    """A user's interactions in the version's training data, most recent first.

    `total` counts all of them, `items` holds the first n. A user the version holds no
    interactions of gets `"total": 0` and an empty list (not a 404: user ids are open-ended,
    and the recommendations of such a user are the popular list).
    """

    user_id: ItemId
    version: str
    total: int
    items: list[HistoryItem]


@dataclass(frozen=True)
class VersionInfo:
    """The version this worker serves: where it came from and how well its run measured.

    `quality` is the quality record of the run's manifest.json as the job wrote it (held-out
    metrics of the model and of the popularity baseline); its keys belong to the job and may
    change between releases. Empty when the run did not evaluate. `search` says whether
    search, cold start and history are served (their index and run files are loaded).
    """

    version: str
    run_id: str
    generated_at: str
    users: int | None
    items: int
    encoder: str
    search: bool
    quality: dict[str, Any]


@dataclass(frozen=True)
class Health:
    """The process is up."""

    status: Literal["ok"]


@dataclass(frozen=True)
class Readiness:
    """Whether this worker can answer: Redis answers and its version's index is loaded.

    `stale` is true when the published version could not be loaded and an older one is
    served; `reason` says why the worker is not ready or stale. `query_backend` is what
    encodes search queries: "onnx", "onnx-int8" or "torch".
    """

    ready: bool
    redis: bool
    serving_version: str | None
    published_version: str | None
    index_items: int | None
    stale: bool
    reason: str | None
    query_backend: str | None = None


@dataclass(frozen=True)
class ErrorDetail:
    """What went wrong: a stable code and a message for people."""

    code: str
    message: str
    parameter: str | None = None


@dataclass(frozen=True)
class ErrorBody:
    """Every error answer."""

    error: ErrorDetail


SCORE_DECIMALS = 6  # answers show scores to 6 decimals (float32 carries about 7 digits)
