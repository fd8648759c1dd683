"""The sampler against a real redis-server, with messages published by real Celery/kombu."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from supervisor.adapters.redis_probe import RedisProbe
from supervisor.cli import main
from supervisor.policy import Policy

from .helpers import make_policy

pytestmark = pytest.mark.integration


def policy_for(url: str, **broker: object) -> Policy:
    return make_policy(broker={"url": url, "timeout": 1, **broker})


def sample(policy: Policy):  # type: ignore[no-untyped-def]
    probe = RedisProbe(policy.broker)
    try:
        return probe.sample()
    finally:
        probe.close()


def publish(
    url: str, queue: str, count: int, priority: int | None = None, prefix: str = ""
) -> None:
    app = Celery("producer", broker=url)
    if prefix:
        app.conf.broker_transport_options = {"global_keyprefix": prefix}
    for i in range(count):
        app.send_task("tasks.anything", args=[i], queue=queue, priority=priority)
    app.close()


def test_missing_keys_are_depth_zero(redis_url: str) -> None:
    s = sample(policy_for(redis_url, queues=["celery", "mail"]))
    assert s.ok and s.depth == 0 and dict(s.queues) == {"celery": 0, "mail": 0}
    assert s.unacked == 0 and s.oldest_unacked_age is None


def test_priority_lists_published_by_celery_are_summed_per_queue(redis_url: str) -> None:
    publish(redis_url, "celery", 4)
    publish(redis_url, "celery", 3, priority=9)
    publish(redis_url, "celery", 2, priority=5)
    publish(redis_url, "mail", 5, priority=3)
    keys = {k.decode() for k in redis.Redis.from_url(redis_url).keys("*")}
    assert any("\x06\x16" in k for k in keys), keys  # kombu really made priority lists
    s = sample(policy_for(redis_url, queues=["celery", "mail"]))
    assert s.ok
    assert dict(s.queues) == {"celery": 9, "mail": 5}
    assert s.depth == 14
    only_default_step = sample(policy_for(redis_url, queues=["celery"], priority_steps=[0]))
    assert only_default_step.depth == 4


def test_global_keyprefix_applies_to_queues_and_unacked(redis_url: str) -> None:
    publish(redis_url, "dataset", 6, prefix="dify:")
    client = redis.Redis.from_url(redis_url)
    client.hset("dify:unacked", "tag-1", "{}")
    client.zadd("dify:unacked_index", {"tag-1": time.time() - 42})
    assert sample(policy_for(redis_url, queues=["dataset"])).depth == 0
    s = sample(policy_for(redis_url, queues=["dataset"], key_prefix="dify:"))
    assert s.depth == 6
    assert s.unacked == 1
    assert s.oldest_unacked_age is not None and 41 <= s.oldest_unacked_age <= 60


def test_a_key_of_the_wrong_type_fails_the_sample_naming_the_key(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.rpush("celery", "m")
    client.set("celery\x06\x166", "not a list")
    s = sample(policy_for(redis_url))
    assert not s.ok and s.depth is None
    assert s.error is not None and "WRONGTYPE" in s.error and "celery\\x06\\x166" in s.error


def test_redis_stopped_mid_run_gives_failed_samples_then_recovers(
    redis_server_factory,  # type: ignore[no-untyped-def]
) -> None:
    server = redis_server_factory()
    server.start()
    server.client().rpush("celery", *range(120))
    probe = RedisProbe(policy_for(server.url).broker)
    try:
        assert probe.sample().depth == 120
        server.stop()
        started = time.monotonic()
        failed = probe.sample()
        assert time.monotonic() - started < 3
        assert not failed.ok and failed.error is not None
        assert "ConnectionError" in failed.error and str(server.port) in failed.error
        server.start()  # data is gone: the server saves nothing
        server.client().rpush("celery", *range(7))
        assert probe.sample().depth == 7
    finally:
        probe.close()


def test_password_protected_server(redis_server_factory) -> None:  # type: ignore[no-untyped-def]
    server = redis_server_factory(password="s3cret-pw")
    server.start()
    server.client().rpush("celery", 1, 2, 3)
    assert sample(policy_for(server.url)).depth == 3
    wrong = sample(policy_for(server.url.replace("s3cret-pw", "nope-pw")))
    assert not wrong.ok and wrong.error is not None
    assert "nope-pw" not in wrong.error and "***" in wrong.error
    no_auth = sample(policy_for(f"redis://127.0.0.1:{server.port}/0"))
    assert not no_auth.ok and no_auth.error is not None and "auth" in no_auth.error.lower()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts and never answers: a hung Redis."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_a_hung_server_fails_the_sample_within_the_timeout(silent_server: int) -> None:
    policy = make_policy(broker={"url": f"redis://127.0.0.1:{silent_server}/0", "timeout": 0.5})
    started = time.monotonic()
    s = sample(policy)
    elapsed = time.monotonic() - started
    assert not s.ok and s.error is not None and "Timeout" in s.error
    assert elapsed < 5  # bounded by the policy's timeout, not redis-py's retries


def test_sample_command_prints_json_and_exit_code(
    redis_url: str,
    tmp_path,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    publish(redis_url, "celery", 3)
    path = tmp_path / "p.toml"
    path.write_text(f'name = "w"\n[broker]\nurl = "{redis_url}"\n[target]\ncontainer = "c"\n')
    assert main(["sample", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["policy"] == "w" and out["ok"] is True and out["depth"] == 3
    assert out["queues"] == {"celery": 3}
    dead = f"redis://127.0.0.1:{socket.socket().getsockname()[1] or 1}/0"
    path.write_text(f'name = "w"\n[broker]\nurl = "{dead}"\n[target]\ncontainer = "c"\n')
    assert main(["sample", str(path)]) == 1
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["ok"] is False and out["depth"] is None and out["error"]


def test_bindings_are_read_on_their_own_cadence_not_in_every_sample(redis_url: str) -> None:
    """A sample holds only what a decision needs; whether the queues are bound on this
    database is asked with the first sample, then every BINDINGS_EVERY seconds while all are
    bound, in every sample while one is not, and when the watched queues change."""
    client = redis.Redis.from_url(redis_url)
    client.delete("_kombu.binding.celery", "_kombu.binding.mail")
    client.sadd("_kombu.binding.celery", "celery\x06\x16\x06\x16celery")
    mono = [0.0]
    probe = RedisProbe(policy_for(redis_url, queues=["celery"]).broker, monotonic=lambda: mono[0])
    try:
        assert probe.sample().unbound == ()
        client.delete("_kombu.binding.celery")
        mono[0] = probe.BINDINGS_EVERY - 1
        assert probe.sample().unbound == ()  # not asked again yet
        assert probe.sample(["celery", "mail"]).unbound == ("celery", "mail")  # new queues
        client.sadd("_kombu.binding.mail", "mail\x06\x16\x06\x16mail")
        assert probe.sample(["celery", "mail"]).unbound == ("celery",)  # unbound: every sample
        client.sadd("_kombu.binding.celery", "celery\x06\x16\x06\x16celery")
        assert probe.sample(["celery", "mail"]).unbound == ()
        client.delete("_kombu.binding.celery")
        assert probe.sample(["celery", "mail"]).unbound == ()  # all bound: the slow cadence
        mono[0] = 3 * probe.BINDINGS_EVERY
        assert probe.sample(["celery", "mail"]).unbound == ("celery",)
    finally:
        probe.close()
        client.delete("_kombu.binding.celery", "_kombu.binding.mail")


def calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats").get(f"cmdstat_{command}")
    return int(stats["calls"]) if stats else 0


def test_probes_of_one_connection_are_sampled_in_one_round_trip(
    redis_server_factory,  # type: ignore[no-untyped-def]
) -> None:
    """A daemon watching many targets on one Redis makes one round trip a pass: each probe
    gets its own queues' depths, `unacked` is asked once for all, and a key of the wrong type
    fails only the sample that watches it. (A server of its own: the counts are server-wide.)"""
    server = redis_server_factory()
    server.start()
    redis_url = server.url
    client = redis.Redis.from_url(redis_url)
    client.rpush("a", *range(3))
    client.rpush("b\x06\x169", *range(5))
    client.set("c", "not a list")
    client.hset("unacked", "tag", "{}")
    probes = [RedisProbe(policy_for(redis_url, queues=[q]).broker) for q in "abc"]
    other_db = RedisProbe(policy_for(redis_url.rsplit("/", 1)[0] + "/2", queues=["a"]).broker)
    try:
        assert len({p.group for p in probes}) == 1 and other_db.group != probes[0].group
        client.config_resetstat()
        samples = probes[0].sample_group([(p, [q]) for p, q in zip(probes, "abc", strict=True)])
        assert [s.depth for s in samples] == [3, 5, None]
        assert [s.unacked for s in samples] == [1, 1, None]
        error = samples[2].error
        assert error is not None and "WRONGTYPE" in error and "(LLEN c)" in error
        assert calls(client, "hlen") == 1 and calls(client, "zrange") == 1  # asked once
        assert calls(client, "llen") == 3 * 4  # every priority list of each queue, once
        assert calls(client, "exists") == 3  # the first sample checks the bindings
        # One connection for the three: the others never opened one of their own.
        assert calls(client, "hello") == 1
        assert other_db.sample(["a"]).depth == 0  # its own database: a group of its own
    finally:
        for p in [*probes, other_db]:
            p.close()
        client.close()


def test_the_head_of_each_non_empty_list_is_read_from_its_second_sample_cheaply(
    redis_url: str,
) -> None:
    """Issue 26: kombu's next message is the list's tail; LINDEX only for lists that were not
    empty at the previous sample, so an empty queue costs no command, and a head keeps its id
    until a worker takes it."""
    policy = policy_for(redis_url, queues=["mail", "dataset"])
    client = redis.Redis.from_url(redis_url)
    probe = RedisProbe(policy.broker)
    try:
        before = client.info("commandstats").get("cmdstat_lindex", {}).get("calls", 0)
        assert probe.sample().heads == {"mail": (), "dataset": ()}
        publish(redis_url, "mail", 2)
        publish(redis_url, "mail", 1, priority=9)
        first = probe.sample()  # non-empty now: its heads are read from the next sample
        assert first.queues["mail"] == 3 and first.heads == {"mail": (), "dataset": ()}
        second, third = probe.sample(), probe.sample()
        assert second.heads is not None and len(second.heads["mail"]) == 2  # steps 0 and 9
        assert third.heads == second.heads
        client.rpop("mail")  # a worker takes the oldest message of step 0
        fourth = probe.sample()
        assert fourth.heads is not None and fourth.heads["mail"][1] == second.heads["mail"][1]
        assert fourth.heads["mail"][0] != second.heads["mail"][0]
        after = client.info("commandstats")["cmdstat_lindex"]["calls"]
        assert after - before == 6  # 2 lists x 3 samples, none for the empty ones
    finally:
        probe.close()
        client.close()


def test_a_user_without_lindex_keeps_its_depths_and_loses_only_the_waits(redis_url: str) -> None:
    """An ACL file from before issue 26: LINDEX refused (NOPERM) must not fail the sample."""
    client = redis.Redis.from_url(redis_url)
    client.execute_command(
        "ACL", "SETUSER", "old-probe", "on", ">pw", "~*", "resetchannels", "-@all",
        "+ping", "+select", "+llen", "+hlen", "+zrange", "+exists",
    )  # fmt: skip
    try:
        publish(redis_url, "mail", 2)
        host, port = (
            client.connection_pool.connection_kwargs["host"],
            client.connection_pool.connection_kwargs["port"],
        )
        db = client.connection_pool.connection_kwargs.get("db", 0)
        policy = policy_for(f"redis://old-probe:pw@{host}:{port}/{db}", queues=["mail"])
        probe = RedisProbe(policy.broker)
        try:
            probe.sample()
            s = probe.sample()  # LINDEX asked for mail's list, and refused
            assert s.ok and s.queues["mail"] == 2 and s.heads is None
        finally:
            probe.close()
    finally:
        client.execute_command("ACL", "DELUSER", "old-probe")
        client.close()


def test_sample_command_shows_the_running_daemons_oldest_waits(
    redis_url: str,
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    """One sample cannot measure a wait: `sample` shows the daemon's, when one runs here."""
    import os

    from supervisor.runtime.heartbeat import Heartbeat, PolicyBeat

    path = tmp_path / "p.toml"
    path.write_text(f'name = "w"\n[broker]\nurl = "{redis_url}"\n[target]\ncontainer = "c"\n')
    monkeypatch.setenv("SUPERVISOR_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "state").mkdir()
    assert main(["sample", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["oldest_wait"] is None  # no daemon
    beat = Heartbeat(
        t=1.0,
        pid=os.getpid(),
        stopped=False,
        dry_run=False,
        policies={"w": PolicyBeat(10.0, waits={"celery": 130.0})},
        docker_error=None,
        state_error=None,
        policy_paths=(),
        started=1.0,
    )
    beat.write(tmp_path / "state")
    assert main(["sample", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["oldest_wait"] == {"celery": 130.0}
