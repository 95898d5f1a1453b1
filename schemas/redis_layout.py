"""The Redis key layout and value encoding, the whole cache contract in one place.

The prose version for operators is docs/redis-layout.md; tests pin the literal key strings.

Keys (PREFIX defaults to "nightrec"; VERSION is a published version id):

    {PREFIX}:current                string  the version readers must use (the pointer)
    {PREFIX}:versions               zset    published versions, scored by publish time (s)
    {PREFIX}:serving                zset    versions API workers still answer from although
                                            the pointer names another one, scored by when
                                            that hold expires (unix time, s)
    PREFIX:v:VERSION:meta           string  JSON: run_id, generated_at, counts, index location
    PREFIX:v:VERSION:items          string  JSON: {"item_ids": [...], "titles": [...]}; a packed
                                            list's indices point into these arrays
    PREFIX:v:VERSION:popular        packed  the popular list, for users unknown to the model
    PREFIX:v:VERSION:u:USER_ID      packed  a user's top-N, seen items already removed
    PREFIX:v:VERSION:i:ITEM_ID      packed  an item's similar items

No key has a TTL: a version lives until garbage collection removes it, which keeps the
newest `keep_versions` published versions, the current one always, and every version an API
worker holds in {PREFIX}:serving (a worker holds the version it answers from while the
pointer names another, for HOLD_SECONDS from its latest pointer read: the new version is
loading, or failed to load and the old one stays served). Keys of a version that never got
published (a crash mid-write) are removed by the next garbage collection.

A packed list is little-endian bytes: magic b"NR", uint16 count n, then n uint32 item
indices, then n float32 scores (best first). 8 bytes per item.

Redis Cluster: the two control keys carry the hash tag {PREFIX}, so they sit in one slot and
the switch (add to versions, move the pointer) is one MULTI/EXEC transaction. A version's keys
have no hash tag and spread over every slot: lists are written with single-key SETs in
pipelines (split per node by a cluster client) and removed with UNLINK batches split per slot.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import numpy as np

DEFAULT_PREFIX = "nightrec"
PACK_MAGIC = b"NR"
_HEADER = struct.Struct("<2sH")
MAX_LIST_LENGTH = 65535
HOLD_SECONDS = 60.0  # a worker renews its hold at every pointer read (about once a second)
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class LayoutError(ValueError):
    """A value read from or written to Redis does not follow the layout."""


@dataclass(frozen=True)
class Keys:
    """Builds every key name; one instance per prefix."""

    prefix: str = DEFAULT_PREFIX

    @property
    def current(self) -> str:
        return f"{{{self.prefix}}}:current"  # one hash slot with `versions`: one transaction

    @property
    def versions(self) -> str:
        return f"{{{self.prefix}}}:versions"

    @property
    def serving(self) -> str:
        return f"{{{self.prefix}}}:serving"  # read by garbage collection beside `versions`

    def version_root(self, version: str) -> str:
        if not VERSION_PATTERN.match(version):
            raise LayoutError(
                f"version {version!r} is not a valid version id "
                "(letters, digits, '.', '_' and '-', at most 128 characters)"
            )
        return f"{self.prefix}:v:{version}"

    def version_pattern(self, version: str = "*") -> str:
        """Return a SCAN MATCH pattern for one version's keys (or every version's)."""
        root = f"{self.prefix}:v:*" if version == "*" else self.version_root(version)
        return root if version == "*" else f"{root}:*"

    def meta(self, version: str) -> str:
        return f"{self.version_root(version)}:meta"

    def items(self, version: str) -> str:
        return f"{self.version_root(version)}:items"

    def popular(self, version: str) -> str:
        return f"{self.version_root(version)}:popular"

    def user(self, version: str, user_id: object) -> str:
        return f"{self.version_root(version)}:u:{user_id}"

    def similar(self, version: str, item_id: object) -> str:
        return f"{self.version_root(version)}:i:{item_id}"

    def version_of(self, key: str) -> str | None:
        """Return the version a key belongs to, or None for keys outside any version."""
        head = f"{self.prefix}:v:"
        if not key.startswith(head):
            return None
        return key[len(head) :].split(":", 1)[0]


def pack_list(indices: np.ndarray, scores: np.ndarray) -> bytes:
    """Encode a ranked list (catalogue indices, scores; best first) as packed bytes."""
    n = len(indices)
    if n != len(scores):
        raise LayoutError(f"a list needs as many scores as items (got {n} and {len(scores)})")
    if n > MAX_LIST_LENGTH:
        raise LayoutError(f"a list holds at most {MAX_LIST_LENGTH} items (got {n})")
    return (
        _HEADER.pack(PACK_MAGIC, n)
        + np.asarray(indices, dtype="<u4").tobytes()
        + np.asarray(scores, dtype="<f4").tobytes()
    )


def unpack_list(value: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Decode packed bytes into (catalogue indices uint32, scores float32)."""
    n = _packed_length(value)
    indices = np.frombuffer(value, dtype="<u4", count=n, offset=_HEADER.size)
    scores = np.frombuffer(value, dtype="<f4", count=n, offset=_HEADER.size + 4 * n)
    return indices, scores


def unpack_head(
    value: bytes, limit: int | None = None
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Decode the first `limit` entries (None: all) of packed bytes as Python ints and floats.

    What an answer needs: for the few entries a request shows this is several times cheaper
    than `unpack_list` and converting its arrays.
    """
    n = _packed_length(value)
    k = n if limit is None else max(0, min(limit, n))
    indices = struct.unpack_from(f"<{k}I", value, _HEADER.size)
    scores = struct.unpack_from(f"<{k}f", value, _HEADER.size + 4 * n)
    return indices, scores


def _packed_length(value: bytes) -> int:
    """Return the number of entries of a packed list, or raise LayoutError if it is not one."""
    if len(value) < _HEADER.size:
        raise LayoutError(f"packed list too short ({len(value)} bytes)")
    magic, n = _HEADER.unpack_from(value)
    if magic != PACK_MAGIC or len(value) != _HEADER.size + 8 * n:
        raise LayoutError(
            f"not a packed list: magic {magic!r}, {len(value)} bytes for {n} items "
            f"(expected {PACK_MAGIC!r} and {_HEADER.size + 8 * n} bytes)"
        )
    return int(n)
