"""Leases: the pure rule (brute-forced over random answer sequences), then the Redis side on a
real redis-server, under the shipped ACL users too."""

from __future__ import annotations

import shlex
import time
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from harness.parts import REPO
from supervisor.adapters.lease_store import LeaseStore, lease_key
from supervisor.clock import Frame, Here
from supervisor.core.events import EventKind
from supervisor.core.governor import GovernorState
from supervisor.core.lease import MARGIN, RENEW_EVERY, Answer, Lease, due, holds, observe
from supervisor.core.tracker import TrackerState, adopt
from supervisor.runtime.leasing import Leases
from tests.helpers import make_policy

PERIOD = 9.0
ANSWERS = st.sampled_from([Answer.ACQUIRED, Answer.RENEWED, Answer.HELD, None])


def step(lease: Lease, answer: Answer | None, at: float) -> tuple[Lease, list[str], bool]:
    holder = "me" if answer in (Answer.ACQUIRED, Answer.RENEWED) else "other"
    error = "ConnectionError: refused" if answer is None else None
    lease, evs, took = observe(
        lease,
        answer,
        None if answer is None else holder,
        error,
        sent=at,
        period=PERIOD,
        policy="w",
        target="c",
    )
    return lease, [e.kind.value for e in evs], took


@given(st.lists(st.tuples(ANSWERS, st.floats(0, 20)), max_size=30), st.floats(0, 30))
def test_it_acts_only_on_a_fresh_answer_that_the_lease_is_its_own(
    tries: list[tuple[Answer | None, float]], later: float
) -> None:
    lease, at, holding = Lease(), 0.0, False
    for answer, gap in tries:
        at += gap
        lease, kinds, took = step(lease, answer, at)
        ours = answer in (Answer.ACQUIRED, Answer.RENEWED)
        # a takeover, and its event, exactly when it was not holding and now is
        assert took == (ours and not holding)
        assert ("lease_acquired" in kinds) == took
        assert ("lease_lost" in kinds) == (answer is Answer.HELD and holding)
        holding = ours
        assert lease.next_try == at + PERIOD * RENEW_EVERY
        assert due(lease, at + PERIOD * RENEW_EVERY) and not due(lease, at)
    now = at + later
    # brute force: it holds now only if the last answer was its own and fresh enough
    last = tries[-1][0] if tries else None
    expect = last in (Answer.ACQUIRED, Answer.RENEWED) and later < PERIOD * (1 - MARGIN)
    assert holds(lease, now) == expect


def test_redis_silence_is_one_outage_and_never_holding() -> None:
    lease, kinds, _ = step(Lease(), Answer.ACQUIRED, 0)
    assert holds(lease, 1)
    lease, kinds, _ = step(lease, None, 3)
    assert kinds == ["lease_error_begin"] and not holds(lease, 3.1)
    lease, kinds, _ = step(lease, None, 6)
    assert kinds == []
    lease, kinds, took = step(lease, Answer.HELD, 9)
    assert kinds == ["lease_error_end"] and not took and lease.holder == "other"


def test_a_takeover_adopts_the_shared_history_only_when_there_is_one() -> None:
    mine = TrackerState()
    shared = GovernorState(100.0, 1, (100.0,), False)
    assert adopt(mine, None, None) is mine
    assert adopt(mine, shared, None).history == shared


# -- on a real redis-server ----------------------------------------------------------------


@pytest.mark.integration
def test_one_holder_at_a_time_renewal_expiry_and_release(redis_url: str) -> None:
    policy = make_policy(broker={"url": redis_url})
    a, b = LeaseStore(policy.broker), LeaseStore(policy.broker)
    key = policy.target.key
    try:
        assert a.hold(key, "a", 1.0) == (Answer.ACQUIRED, "a", None)
        assert b.hold(key, "b", 1.0) == (Answer.HELD, "a", None)
        assert a.hold(key, "a", 1.0) == (Answer.RENEWED, "a", None)
        assert a.still_mine(key, "a", 1.0) is None
        assert b.still_mine(key, "b", 1.0) == "the lease is held by a"
        b.release(key, "b")  # not b's: nothing happens
        assert b.hold(key, "b", 1.0)[0] is Answer.HELD
        time.sleep(1.2)  # a stopped renewing: it lapses
        assert a.still_mine(key, "a", 1.0) == "the lease has lapsed"
        assert b.hold(key, "b", 1.0) == (Answer.ACQUIRED, "b", None)
        b.release(key, "b")
        assert a.hold(key, "a", 5.0)[0] is Answer.ACQUIRED
    finally:
        a.close()
        b.close()


@pytest.mark.integration
def test_the_holder_shares_the_history_and_a_taker_reads_it(redis_url: str) -> None:
    policy = make_policy(broker={"url": redis_url})
    # Two hosts: their stepless clocks share nothing, their wall clocks agree. The first's
    # stepless clock is 100 s behind the wall clock, the second's 40 s ahead of it.
    first = Leases(10, "first", here=lambda: Here(Frame("a", 0.0), 5000.0, 5100.0))
    second = Leases(10, "second", here=lambda: Here(Frame("b", 0.0), 6000.0, 5960.0))
    try:
        first.refresh(policy, 0.0)
        assert first.holds(policy, 1.0)
        history = GovernorState(1234.5, 1, (1234.5,), False)
        on_second = GovernorState(1234.5 + 140, 1, (1234.5 + 140,), False)
        state = adopt(TrackerState(), history, None)
        assert first.share(policy, state) is None
        evs, took = second.refresh(policy, 0.0)
        assert not took and not second.holds(policy, 1.0) and evs == ()
        stored, error = second.shared(policy)
        assert error is None and stored is not None and stored.history == on_second
        first.close([policy])  # a clean stop gives it back
        evs, took = second.refresh(policy, 5.0)
        assert took and [e.kind for e in evs] == [EventKind.LEASE_ACQUIRED]
    finally:
        second.close([policy])


@pytest.mark.integration
@pytest.mark.parametrize("user", ["supervisor", "supervisor-progress"])
def test_the_shipped_acl_users_can_hold_leases_and_nothing_more(
    redis_server_factory: Any, user: str
) -> None:
    server = redis_server_factory()
    server.start()
    admin = server.client()
    for line in (REPO / "deploy/redis/acl.txt").read_text().splitlines():
        if line.startswith("ACL SETUSER"):
            admin.execute_command(*shlex.split(line.replace("PASSWORD", "pw")))
    url = f"redis://{user}:pw@127.0.0.1:{server.port}/0"
    policy = make_policy(broker={"url": url})
    store = LeaseStore(policy.broker)
    key = policy.target.key
    try:
        assert store.hold(key, "me", 5.0) == (Answer.ACQUIRED, "me", None)
        assert store.hold(key, "me", 5.0)[0] is Answer.RENEWED
        assert store.still_mine(key, "me", 5.0) is None
        assert store.save(key, {"format": 2}) is None
        assert store.load(key) == ({"format": 2}, None)
        store.release(key, "me")
        assert admin.get(lease_key(key)) is None
        # the lease's commands reach only the supervisor's own keys
        client = redis.Redis.from_url(url)
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set("celery", "x")
        with pytest.raises(redis.exceptions.ResponseError, match=r"(?i)permission|no perm"):
            client.eval("return redis.call('DEL', KEYS[1])", 1, "celery")
        client.close()
    finally:
        store.close()


@pytest.mark.integration
def test_a_demoted_master_never_passes_the_fence(redis_server_factory: Any) -> None:
    """A connection still open to a master that a failover demoted reads what it held: on
    main the fence (a GET) passed there although the lease may be another's on the new
    master. The fence is a write now: a replica refuses it, so nothing is restarted."""
    master = redis_server_factory()
    master.start()
    replica = redis_server_factory()
    replica.start()
    replica.client().execute_command("REPLICAOF", "127.0.0.1", master.port)
    policy = make_policy(broker={"url": master.url})
    key = policy.target.key
    held = LeaseStore(policy.broker)
    try:
        assert held.hold(key, "me", 30.0)[0] is Answer.ACQUIRED
        wait = time.monotonic() + 10
        while replica.client().get(lease_key(key)) is None and time.monotonic() < wait:
            time.sleep(0.05)
        assert replica.client().get(lease_key(key)) == b"me"  # the stale copy says: mine
        stale = LeaseStore(make_policy(broker={"url": replica.url}).broker)
        try:
            why = stale.still_mine(key, "me", 30.0)
        finally:
            stale.close()
        assert why is not None and "cannot check the lease" in why and "READONLY" in why.upper()
        assert held.still_mine(key, "me", 30.0) is None  # on the master it is ours
    finally:
        held.close()
