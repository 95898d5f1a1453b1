"""Search ranking maths and query cleaning, without an index file or a model."""

from __future__ import annotations

import numpy as np
import pytest

from serving.errors import ApiError
from serving.params import check_int, clean_text
from serving.ranking import blend


def test_without_cf_the_order_is_semantic_and_cut_at_n():
    rows, query = np.array([5, 2, 9]), np.array([0.9, 0.5, 0.1], dtype=np.float32)
    ranked = blend(rows, query, None, 0.3, 2)
    assert ranked.rows.tolist() == [5, 2] and ranked.cf is None
    np.testing.assert_array_equal(ranked.score, query[:2])


def test_cf_reorders_close_matches_but_cannot_lift_a_poor_match():
    rows = np.array([10, 11, 12])
    query = np.array([0.60, 0.58, 0.20], dtype=np.float32)
    cf_raw = np.array([-3.0, 5.0, 9.0], dtype=np.float32)  # the poor match is the favourite
    ranked = blend(rows, query, cf_raw, 0.3, 3)
    assert ranked.rows.tolist() == [11, 10, 12]
    np.testing.assert_allclose(ranked.cf, [0.6667, 0.0, 1.0], atol=1e-4)
    np.testing.assert_allclose(ranked.score, ranked.query * (0.7 + 0.3 * ranked.cf), rtol=1e-6)


def test_only_matches_within_the_margin_of_the_best_are_re_ranked():
    rows = np.arange(6)
    query = np.array([0.77, 0.74, 0.70, 0.66, 0.60, 0.55], dtype=np.float32)
    cf_raw = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 9.0], dtype=np.float32)  # likes weak matches
    ranked = blend(rows, query, cf_raw, 0.3, 2, margin=0.1)

    assert ranked.rows.tolist() == [2, 1]  # the head is rows 0-2 (>= 0.67): row 5 stays out
    np.testing.assert_allclose(ranked.cf, [1.0, 0.5])
    assert blend(rows, query, cf_raw, 0.3, 4, margin=0.01).rows.tolist() == [3, 2, 1, 0]
    assert blend(rows, query, cf_raw, 0.3, 2, margin=np.inf).rows.tolist()[0] == 5  # no floor


def test_tied_cf_scores_keep_the_semantic_order():
    rows, query = np.array([3, 1, 2]), np.array([0.5, 0.4, 0.3], dtype=np.float32)
    ranked = blend(rows, query, np.full(3, 2.5, dtype=np.float32), 0.3, 3)
    assert ranked.rows.tolist() == [3, 1, 2]
    np.testing.assert_array_equal(ranked.cf, np.ones(3))


def test_weight_zero_is_semantic_and_empty_input_is_empty():
    rows, query = np.array([1, 2]), np.array([0.5, 0.4], dtype=np.float32)
    assert blend(rows, query, np.array([0.0, 9.0]), 0.0, 2).rows.tolist() == [1, 2]
    assert len(blend(rows[:0], query[:0], np.zeros(0), 0.3, 5).rows) == 0


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("  scary \t zombie\n movies ", "scary zombie movies"),
        ("a\x00b", "a b"),
        ("\u200f\u202e", ""),
        ("Cafe\u0301", "Café"),
        ("שלום  עולם", "שלום עולם"),
    ],
)
def test_queries_are_cleaned(raw, clean):
    assert clean_text(raw) == clean


@pytest.mark.parametrize("raw", ["0", "101", "-1", "1e3", "abc", "", " ", "٣", True, 2.0])
def test_check_int_refuses_what_is_not_an_int_in_range(raw):
    with pytest.raises(ApiError) as error:
        check_int("n", raw, 1, 100)
    assert error.value.status == 400 and error.value.details == {"parameter": "n"}


def test_check_int_accepts_plain_ints():
    assert [check_int("n", v, 1, 100) for v in ("1", " 42 ", "100", 7)] == [1, 42, 100, 7]
