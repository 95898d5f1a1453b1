"""The Redis contract: literal key strings and the packed list encoding."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.redis_layout import Keys, LayoutError, pack_list, unpack_head, unpack_list


def test_key_strings_are_pinned():
    keys = Keys()
    assert keys.current == "{nightrec}:current"
    assert keys.versions == "{nightrec}:versions"
    assert keys.serving == "{nightrec}:serving"
    assert keys.meta("20261122T000000Z") == "nightrec:v:20261122T000000Z:meta"
    assert keys.items("v1") == "nightrec:v:v1:items"
    assert keys.popular("v1") == "nightrec:v:v1:popular"
    assert keys.user("v1", 42) == "nightrec:v:v1:u:42"
    assert keys.user("v1", "a:b*c") == "nightrec:v:v1:u:a:b*c"
    assert keys.similar("v1", "sku-9") == "nightrec:v:v1:i:sku-9"
    assert keys.version_pattern("v1") == "nightrec:v:v1:*"
    assert keys.version_pattern() == "nightrec:v:*"
    assert Keys("shop").current == "{shop}:current"


def test_version_of_reads_the_version_back():
    keys = Keys()
    assert keys.version_of(keys.user("v1.2", "x:y")) == "v1.2"
    assert keys.version_of(keys.current) is None


@pytest.mark.parametrize("version", ["", "a b", "x:y", "*", "v" * 200])
def test_bad_versions_are_refused(version):
    with pytest.raises(LayoutError, match="not a valid version"):
        Keys().meta(version)


def test_pack_round_trip_is_exact_and_8_bytes_per_item():
    indices = np.array([5, 0, 70000], dtype=np.int64)
    scores = np.array([2.5, -1.0, 0.125], dtype=np.float32)

    value = pack_list(indices, scores)
    got_indices, got_scores = unpack_list(value)

    assert len(value) == 4 + 8 * 3
    assert got_indices.tolist() == [5, 0, 70000]
    assert got_scores.tolist() == [2.5, -1.0, 0.125]
    assert unpack_list(pack_list(np.array([]), np.array([])))[0].tolist() == []


def test_the_head_of_a_list_decodes_to_the_same_python_values():
    rng = np.random.default_rng(3)
    value = pack_list(rng.integers(0, 2**32, 50), rng.normal(size=50).astype(np.float32))
    indices, scores = unpack_list(value)

    for limit in (None, 0, 1, 10, 50, 80):
        head = unpack_head(value, limit)
        assert head == (tuple(indices[:limit].tolist()), tuple(scores[:limit].tolist()))


@pytest.mark.parametrize("value", [b"", b"NR", b"XX\x01\x00" + bytes(8), b"NR\x02\x00" + bytes(8)])
@pytest.mark.parametrize("unpack", [unpack_list, unpack_head])
def test_unpack_refuses_what_is_not_a_packed_list(value, unpack):
    with pytest.raises(LayoutError):
        unpack(value)
