"""Reading published lists from Redis: the pointer, a version's catalogue and packed lists.

The catalogue of a version (item ids and titles, in the order packed lists index into) is
read once per version and kept in memory; a list then costs one Redis GET.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from schemas.redis_layout import Keys, unpack_head
from serving.models import SCORE_DECIMALS, Item
from serving.redis_client import RedisClient


@dataclass(frozen=True)
class Catalogue:
    """A version's items: ids and titles by catalogue index, and the reverse mapping."""

    version: str
    item_ids: list[Any]
    titles: list[str]

    @classmethod
    def from_json(cls, version: str, text: bytes | str) -> Catalogue:
        data = json.loads(text)
        return cls(version, data["item_ids"], data["titles"])


class ListStore:
    """Reads the lists of the published versions through one Redis client.

    The catalogues of the `keep_catalogues` versions read last stay in memory, so requests
    still answering from the previous version during a switch do not read it again.
    """

    def __init__(self, client: RedisClient, keys: Keys | None = None, keep_catalogues: int = 3):
        self.client = client
        self.keys = keys or Keys()
        self.keep_catalogues = max(1, keep_catalogues)
        self._catalogues: dict[str, Catalogue] = {}

    def _get(self, key: str) -> bytes | None:
        value = self.client.get(key)
        return value.encode() if isinstance(value, str) else value  # type: ignore[return-value]

    def current_version(self) -> str | None:
        """Return the version the pointer names, or None before the first publish."""
        value = self._get(self.keys.current)
        return value.decode() if value else None

    def hold(self, version: str, until: float) -> None:
        """Ask garbage collection to keep `version` until `until` (unix time): this worker
        still answers from it although the pointer names another version."""
        self.client.zadd(self.keys.serving, {version: until})

    def meta(self, version: str) -> dict[str, Any]:
        value = self._get(self.keys.meta(version))
        return json.loads(value) if value else {}

    def catalogue(self, version: str) -> Catalogue:
        """Return the version's catalogue (read from Redis the first time only)."""
        if version not in self._catalogues:
            value = self._get(self.keys.items(version))
            if value is None:
                raise LookupError(f"version {version} has no catalogue in Redis")
            kept = list(self._catalogues.items())
            kept = kept[max(0, len(kept) - self.keep_catalogues + 1) :]
            self._catalogues = {**dict(kept), version: Catalogue.from_json(version, value)}
        return self._catalogues[version]

    def decode(self, version: str, value: bytes, limit: int | None = None) -> list[Item]:
        """Decode a packed list of `version` into answer items: ids, scores and titles.

        Scores are rounded to SCORE_DECIMALS here (float32 scores printed in full would show
        digits that mean nothing).

        Args:
            version: the version the list belongs to (its catalogue names the items).
            value: the packed bytes.
            limit: decode only the first `limit` entries (None: all).
        """
        cat = self.catalogue(version)
        indices, scores = unpack_head(value, limit)
        ids, titles = cat.item_ids, cat.titles
        return [
            Item(ids[i], round(s, SCORE_DECIMALS), titles[i])
            for i, s in zip(indices, scores, strict=True)
        ]

    def user_list(
        self, version: str, user_id: object, limit: int | None = None
    ) -> list[Item] | None:
        """Return a user's list in `version` (its first `limit` entries), or None when the
        user has none."""
        value = self._get(self.keys.user(version, user_id))
        return None if value is None else self.decode(version, value, limit)

    def similar_list(
        self, version: str, item_id: object, limit: int | None = None
    ) -> list[Item] | None:
        """Return an item's similar list in `version` (its first `limit` entries), or None."""
        value = self._get(self.keys.similar(version, item_id))
        return None if value is None else self.decode(version, value, limit)

    def popular_list(self, version: str) -> list[Item]:
        value = self._get(self.keys.popular(version))
        return [] if value is None else self.decode(version, value)
