"""`serving.balance.ConnectionBoard`: the even share of keep-alive connections per worker
(`test_gunicorn.py` checks the split over HTTP)."""

from __future__ import annotations

import os

from serving.balance import STALE_SECONDS, ConnectionBoard


def test_a_worker_accepts_until_it_holds_one_over_the_average():
    board = ConnectionBoard(4)
    first, second = board.claim(set()), board.claim({0})
    assert (first, second) == (0, 1)

    assert board.may_accept(second, 0, now=100.0)
    assert board.may_accept(first, 1, now=100.0)  # (1, 0): 1 < 0.5 + 1
    assert not board.may_accept(first, 2, now=100.0)  # (2, 0): 2 is not < 1 + 1
    assert board.may_accept(second, 1, now=100.0)
    assert board.may_accept(first, 2, now=100.0)  # (2, 1): 2 < 1.5 + 1


def test_a_worker_that_stopped_looking_or_left_counts_as_not_there():
    board = ConnectionBoard(3)
    stuck, busy = board.claim(set()), board.claim({0})
    board.may_accept(stuck, 0, now=100.0)

    assert not board.may_accept(busy, 5, now=100.0 + STALE_SECONDS)
    assert board.may_accept(busy, 5, now=100.0 + STALE_SECONDS + 0.1)  # stuck went stale

    board.may_accept(stuck, 0, now=200.0)
    assert not board.may_accept(busy, 5, now=200.0)
    board.release(stuck)  # it exited
    assert board.may_accept(busy, 5, now=200.0)


def test_slots_are_claimed_once_and_shared_with_forked_workers():
    board = ConnectionBoard(2)
    assert board.claim({0, 1}) is None  # every slot taken: that worker goes without
    slot = board.claim({1})
    pid = os.fork()
    if pid == 0:  # the child writes its count, as a worker does
        board.may_accept(slot, 7, now=50.0)
        os._exit(0)
    os.waitpid(pid, 0)

    assert slot == 0
    assert not board.may_accept(1, 9, now=50.0)  # with the child's 7: 9 is not < 8 + 1


def test_the_average_counts_a_workers_own_connections_as_it_says():
    board = ConnectionBoard(3)
    board.may_accept(0, 10, now=100.0)
    board.may_accept(1, 2, now=100.0)

    assert board.average(0, 12, now=100.0) == 7.0  # its own 12, not the 10 it last wrote
    assert board.average(2, 0, now=100.0) == 4.0  # slot 2 has not looked yet: it counts 0
    assert board.average(1, 2, now=100.0 + STALE_SECONDS + 1) == 2.0  # slot 0 went stale
