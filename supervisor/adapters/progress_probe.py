"""The workers' progress: how many tasks each has started, from two sources.

1. Heartbeats. A Celery worker sends `worker-heartbeat` every 2 s with `processed`, its count of
   started tasks. A listener thread keeps the latest count of each worker.
2. Remote control, for workers that send no heartbeats (`--without-heartbeat`, the common
   workaround for celery/celery#8030). Once per interval a poller thread reads the broker's
   remote-control bindings (`_kombu.binding.celery.pidbox`: one member per live worker), and asks
   the workers it has no fresh heartbeat from for their `stats`, in one broadcast addressed to
   them (`destination`) with `limit` set, so the wait ends at their replies. `stats()['total']`
   counts started tasks per task name: its sum is the heartbeat's `processed`.

Each worker's queues come from `active_queues`, asked once a minute, addressed to it. The tick
only reads this snapshot (`progress`), so neither source ever stalls a tick. Everything talks to
the policy's broker URL and nothing else (`PinnedCelery`): Celery's own settings would let
`CELERY_BROKER_URL` in the environment redirect it to another broker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, cast

from celery import Celery
from kombu.connection import Connection

from supervisor.adapters.pidbox import LeanRequests
from supervisor.adapters.redis_probe import client_for
from supervisor.broker_url import for_kombu, redact
from supervisor.core.evidence import Holding
from supervisor.durations import format_duration
from supervisor.policy import Broker
from supervisor.sample import Answer, Load, Progress, Running, WorkerFacts

log = logging.getLogger("supervisor.progress")

QUEUES_REFRESH = 60.0
FORGET_AFTER = 600.0  # a worker neither heard nor answering for this long is gone
HEARTBEATS = "heartbeats"
REMOTE_CONTROL = "remote control"
PIDBOX_SUFFIX = ".celery.pidbox"
BINDING_SEPARATOR = "\x06\x16"  # kombu's Redis transport: routing key, pattern, queue
NO_SOURCE = "the worker sends no heartbeats and does not answer remote control"


@dataclass(frozen=True)
class Limits:
    """A worker's Celery limits, as it told them (`conf`, `registered`)."""

    time_limit: float | None = None  # task_time_limit
    task_limits: tuple[tuple[str, float], ...] = ()  # each task's own time_limit
    rate_limits: tuple[tuple[str, float], ...] = ()  # seconds between two starts, by task


@dataclass
class _Worker:
    processed: int
    seen: float  # when its last heartbeat or answer came (on the monitor's clock)
    every: float  # how often it reports: what "fresh" is measured against
    source: str
    queues: frozenset[str] | None = None
    queues_checked: float = float("-inf")
    facts: WorkerFacts | None = None  # pool, backend...: asked once per start of the worker
    version: str | None = None  # from its heartbeats (sw_ver)
    active: int | None = None  # tasks it runs, from its heartbeats (None: no heartbeat yet)
    # Celery's time limits and rate limits as it told them, learnt with its facts.
    limits: Limits = Limits()
    limits_known: bool = False  # both `conf` and `registered` replied

    def fresh(self, now: float) -> bool:
        return now - self.seen <= max(3 * self.every, 5.0)


# kombu's Redis transport has every consumer sweep kombu's unacked hash now and then
# (restore_visible, under `unacked_mutex` taken with SET NX PX). That is the workers' to do,
# not the supervisor's, and the Redis ACL lets the supervisor write nothing to `unacked_mutex`
# (unacked_store.py needs no lock): its own connections sweep under a key of its own and find
# nothing (no message is older than the visibility timeout), so they never touch kombu's mutex.
# The rules' questions are asked in the background (the loop does not wait on them): a worker
# gets longer to answer than a restart's bounded wait allows, so that a slow reply (a long list
# of ETA tasks, a loaded host) is not taken for silence.
INQUIRY_TIMEOUT = 5.0
# A wall clock this far from where it was against the samples' clock has been stepped (slewing
# moves it by far less); the tasks' own start times are then not trusted alone.
STEP = 30.0
FIRST_SEEN_KEPT = 4096  # task ids remembered for that

SWEEP_OPTIONS = {
    "unacked_mutex_key": "iti-supervisor:kombu-sweep",
    "visibility_timeout": 100 * 365 * 86400,
}


class PinnedCelery(Celery):  # type: ignore[misc]
    """A Celery app whose every connection goes to the URL it was made with.

    Celery's settings give `CELERY_BROKER_URL`, `CELERY_BROKER_READ_URL` and
    `CELERY_BROKER_WRITE_URL` in the environment precedence over the configured broker, and its
    remote control publishes through the app's own producer pool even when handed a connection.
    Dify's .env sets CELERY_BROKER_URL: a supervisor started with it would listen to another
    broker and see healthy workers there."""

    def __init__(self, url: str) -> None:
        super().__init__("iti-worker-supervisor", broker=url, set_as_current=False)
        self._pinned_url = url

    def connection_for_read(self, url: str | None = None, **kwargs: Any) -> Any:
        return super().connection_for_read(url or self._pinned_url, **kwargs)

    def connection_for_write(self, url: str | None = None, **kwargs: Any) -> Any:
        return super().connection_for_write(url or self._pinned_url, **kwargs)


class ProgressMonitor:
    def __init__(
        self,
        broker: Broker,
        # The samples' clock (RedisProbe's): the answers it hands over are stamped on it.
        clock: Callable[[], float] = time.time,
        wall: Callable[[], float] = time.time,  # the wall clock (Celery's times are on it)
        inspect_timeout: float = 1.0,
        poll_every: float = 10.0,
    ) -> None:
        self._broker = broker
        self._where = redact(broker.url)
        self._transport_options: dict[str, Any] = dict(SWEEP_OPTIONS)
        if broker.key_prefix:
            self._transport_options["global_keyprefix"] = broker.key_prefix
        url = broker.endpoint()
        if url.sentinel:
            self._transport_options["master_name"] = broker.master_name
            if broker.sentinel_password:
                self._transport_options["sentinel_kwargs"] = {"password": broker.sentinel_password}
        self._app = PinnedCelery(for_kombu(url))
        self._app.conf.update(
            broker_transport_options=self._transport_options,
            broker_connection_timeout=broker.timeout,
            broker_connection_retry_on_startup=False,
            broker_use_ssl=dict(url.tls) or (url.scheme == "rediss") or None,
        )
        self._clock = clock
        self._inspect_timeout = inspect_timeout
        self.poll_every = poll_every
        self._workers: dict[str, _Worker] = {}
        self._bound: frozenset[str] = frozenset()  # workers with a remote-control binding
        self._lock = threading.Lock()
        # The rules at any depth (issue 26): answers to active, reserved and scheduled that
        # came since the last tick, and the workers being asked now.
        self._answers: dict[str, Answer] = {}
        self._inquiring: set[str] = set()
        self._stop = threading.Event()
        self._receiver: Any = None
        self._redis = client_for(broker)
        self._control: Connection | None = None  # for remote-control requests
        self._lean: LeanRequests | None = None  # its kept reply queue (pidbox.py)
        self._prefix = broker.key_prefix
        self._ask_lock = threading.Lock()  # the listener and the poller both ask
        self._pidbox_key = f"{broker.key_prefix}_kombu.binding.celery.pidbox"
        # Why the supervisor's own event listener cannot read the broker now (None: it can):
        # then a silent worker is not the worker's fault, and its last facts are kept.
        self._events_error: str | None = None
        self._control_error: str | None = None  # likewise for its remote-control requests
        self._wall = wall
        # How far the wall clock reads from the samples' clock now; moved by a step of the
        # wall clock since (see _started).
        self._offset = self._wall() - self._clock()
        self._first_seen: dict[str, float] = {}  # task id -> first answer naming it
        self._listener = threading.Thread(
            target=self._listen, name=f"heartbeats {self._where}", daemon=True
        )
        self._poller = threading.Thread(
            target=self._poll_loop, name=f"remote control {self._where}", daemon=True
        )

    def connection(self) -> Connection:
        """A connection to the policy's broker, whatever the environment says."""
        return cast(Connection, self._app.connection_for_read())

    def start(self) -> None:
        self._listener.start()
        self._poller.start()

    def request_stop(self) -> None:
        """Ask both threads to end, without waiting (several monitors stop side by side)."""
        self._stop.set()
        if self._receiver is not None:
            self._receiver.should_stop = True

    def stop(self, timeout: float = 3.0) -> None:
        """Stop and wait for both threads, `timeout` in all (daemon threads: a thread still
        blocked in a connection attempt then ends with the process)."""
        self.request_stop()
        deadline = time.monotonic() + timeout
        for thread in (self._listener, self._poller):
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        self._redis.close()
        with self._ask_lock:
            self._drop_control()

    def poll_at_least_every(self, seconds: float) -> None:
        self.poll_every = min(self.poll_every, seconds)

    # -- what the tick reads ------------------------------------------------------------------

    def progress(self, queues: Iterable[str]) -> Progress:
        wanted = list(queues)
        found = self._progress(set(wanted))
        return replace(found, unconsumed=self._unconsumed(wanted))

    def consumers(self) -> dict[str, frozenset[str] | None]:
        """Every worker known on the broker, with the queues it consumes (None: not known)."""
        with self._lock:
            return {h: w.queues for h, w in self._workers.items()}

    def by_worker(self, queues: Iterable[str]) -> dict[str, Progress]:
        """Each worker known to consume any of `queues`, with its own progress: None when it
        has sent no heartbeat and given no answer for a while (it may be hung)."""
        wanted = set(queues)
        now = self._clock()
        out = {}
        with self._lock:
            for host, w in self._workers.items():
                if w.queues is None or not w.queues & wanted:
                    continue
                if w.fresh(now):
                    out[host] = Progress(w.processed, w.source)
                else:
                    silent = format_duration(round(now - w.seen))
                    out[host] = Progress(None, unknown=f"nothing from {host} for {silent}")
        return out

    def holding(self, workers: list[str]) -> Holding | None:
        """What these workers hold, as they say: their active and reserved requests, both asked
        at once, each on its own connection, so a worker that cannot answer costs one bounded
        wait (`inspect_timeout`), not one per question. Those that did not answer are named."""
        if not workers:
            return None
        with ThreadPoolExecutor(2, thread_name_prefix="held-by") as pool:
            asked = [pool.submit(self._ask_once, workers, what) for what in ("active", "reserved")]
            active, reserved = (f.result() or {} for f in asked)

        def requests(replies: dict[str, Any]) -> dict[str, tuple[dict[str, Any], ...]]:
            return {
                w: tuple(t for t in replies[w] or () if isinstance(t, dict))
                for w in workers
                if w in replies
            }

        silent = tuple(w for w in workers if w not in active or w not in reserved)
        return Holding(requests(active), requests(reserved), silent)

    def loads(self, workers: list[str], ask: list[str]) -> tuple[Load, ...]:
        """The live ones of `workers` as their heartbeats describe them, each with its answer
        when one came since the last call (once); and `ask` asked in the background what they
        run, reserve and schedule (all three at once, one bounded wait), for the next call."""
        if ask:
            self._inquire(ask)
        now = self._clock()
        out = []
        with self._lock:
            for host in workers:
                w = self._workers.get(host)
                if w is None or not w.fresh(now):
                    self._answers.pop(host, None)
                    continue
                f = w.facts
                out.append(
                    Load(
                        host,
                        f.concurrency if f else None,
                        w.active if w.source == HEARTBEATS else None,
                        w.processed,
                        tuple(sorted(w.queues)) if w.queues is not None else None,
                        f.pool if f else None,
                        w.limits.time_limit,
                        self._answers.pop(host, None),
                        w.limits.task_limits,
                        w.limits.rate_limits,
                        limits_known=w.limits_known,
                    )
                )
        return tuple(out)

    def _inquire(self, hosts: list[str]) -> None:
        with self._lock:
            new = [h for h in hosts if h not in self._inquiring]
            self._inquiring.update(new)
        if new:
            threading.Thread(target=self._answer, args=(new,), name="inquire", daemon=True).start()

    def _answer(self, hosts: list[str]) -> None:
        try:
            with ThreadPoolExecutor(3, thread_name_prefix="inquire") as pool:
                asked = [
                    pool.submit(self._ask_once, hosts, what, INQUIRY_TIMEOUT)
                    for what in ("active", "reserved", "scheduled")
                ]
                replies = [f.result() for f in asked]
            if any(r is None for r in replies):
                # The supervisor's own request failed (the broker refused, a dropped
                # connection): that says nothing of the worker. No answer; the rule asks again.
                return
            active, reserved, scheduled = (r or {} for r in replies)
            # The answer is stamped on the samples' (stepless) clock; Celery's time_start is
            # the worker's wall clock, so each start is moved into that frame by how long the
            # task had run when it answered: a step of the wall clock since (or since this
            # process started) cannot make a task look hung or fresh.
            t, wall = self._clock(), self._wall()
            with self._lock:
                for h in hosts:
                    heard = [h in active, h in reserved, h in scheduled]
                    if not any(heard):  # no reply to any of the three within the wait
                        self._answers[h] = Answer(t, silent=True)
                        continue
                    if not all(heard):  # a partial answer: neither silent nor whole; ask again
                        continue
                    running = tuple(
                        Running(
                            str(r.get("name") or r.get("type") or "?"),
                            str(r.get("id")),
                            self._started(r, t, wall),
                        )
                        for r in active[h] or ()
                        if isinstance(r, dict)
                    )
                    self._answers[h] = Answer(
                        t, running, len(reserved[h] or ()), len(scheduled[h] or ())
                    )
        finally:
            with self._lock:
                self._inquiring.difference_update(hosts)

    def _started(self, request: dict[str, Any], t: float, wall: float) -> float | None:
        """When the task started, on the samples' clock (t: now on it, wall: the wall clock
        now): Celery's time_start, moved by how long the task had run when it answered. A step
        of the wall clock between the task's start and now would count as run time; once the
        wall clock has moved from the samples' clock by more than STEP since this monitor
        began, no start is taken as earlier than the first answer that named the task (a
        younger task: never a false "hung", only a later one)."""
        task = str(request.get("id"))
        first = self._first_seen.setdefault(task, t)
        if len(self._first_seen) > FIRST_SEEN_KEPT:  # the oldest go first (insertion order)
            del self._first_seen[next(iter(self._first_seen))]
        value = request.get("time_start")
        if not isinstance(value, int | float):
            return None
        started = t - max(0.0, wall - float(value))
        if abs((wall - t) - self._offset) > STEP:
            return max(started, first)
        return started

    def _ask_once(
        self, hosts: list[str], what: str, timeout: float | None = None
    ) -> dict[str, Any] | None:
        """One request on a connection of its own (the kept one may be busy with a poll);
        None: the request itself failed."""
        try:
            with self.connection() as conn:
                # Celery's inspect gives None when nobody replied: that is an answer ({}).
                return self._inspect(conn, hosts, what, timeout) or {}
        except Exception as exc:  # noqa: BLE001 - not answering is what this tells
            log.debug("%s of %s failed: %s", what, hosts, exc)
            return None

    def facts(self, workers: Iterable[str]) -> tuple[WorkerFacts, ...]:
        """What these workers said of themselves (pool, backend, acks_late, version, queues)
        while they answered; kept when they stop answering."""
        out = []
        with self._lock:
            for host in workers:
                w = self._workers.get(host)
                if w is None or w.facts is None:
                    continue
                queues = tuple(sorted(w.queues)) if w.queues is not None else None
                out.append(replace(w.facts, version=w.version, queues=queues))
        return tuple(out)

    def live_consumers(self, queues: Iterable[str]) -> tuple[str, ...]:
        """The live workers (a fresh heartbeat or answer, or a remote-control binding) that
        consume any of `queues`, or whose queues are not known (they may)."""
        wanted = set(queues)
        now = self._clock()
        with self._lock:
            live = set(self._bound) | {h for h, w in self._workers.items() if w.fresh(now)}
            out = []
            for host in live:
                worker = self._workers.get(host)
                if worker is None or worker.queues is None or worker.queues & wanted:
                    out.append(host)
        return tuple(sorted(out))

    def _unconsumed(self, wanted: list[str]) -> tuple[str, ...] | None:
        """The queues no live worker consumes; None when that cannot be told: no worker seen at
        all (one may run with neither heartbeats nor remote control), or a live worker whose
        queues are not known (a worker hung since before we started answers nothing)."""
        now = self._clock()
        with self._lock:
            live = set(self._bound) | {h for h, w in self._workers.items() if w.fresh(now)}
            if not live:
                return None
            consumed: set[str] = set()
            for host in live:
                worker = self._workers.get(host)
                if worker is None or worker.queues is None:
                    return None
                consumed |= worker.queues
        return tuple(q for q in wanted if q not in consumed)

    def _progress(self, wanted: set[str]) -> Progress:
        now = self._clock()
        with self._lock:
            consuming = [
                (host, w)
                for host, w in self._workers.items()
                if w.queues is not None and w.queues & wanted
            ]
            fresh = [(host, w) for host, w in consuming if w.fresh(now)]
            pending = any(w.queues is None and w.fresh(now) for w in self._workers.values())
        if fresh:
            sources = sorted({w.source for _, w in fresh})
            return Progress(sum(w.processed for _, w in fresh), " + ".join(sources))
        if consuming:
            host, last = max(consuming, key=lambda item: item[1].seen)
            silent = format_duration(round(now - last.seen))
            if last.source == HEARTBEATS and self._events_error is not None:
                return Progress(
                    None,
                    unknown=f"cannot read worker events from the broker: {self._events_error}",
                )
            if last.source == REMOTE_CONTROL and self._control_error is not None:
                return Progress(
                    None,
                    unknown=f"cannot ask the workers by remote control: {self._control_error}",
                )
            how = "no heartbeat" if last.source == HEARTBEATS else "no answer to remote control"
            return Progress(None, unknown=f"{how} from {host} for {silent}")
        if pending:
            return Progress(None, unknown="the workers' queues are not known yet")
        if self._events_error is not None:
            return Progress(
                None, unknown=f"cannot read worker events from the broker: {self._events_error}"
            )
        return Progress(None, unknown=NO_SOURCE)

    def processed(self, queues: Iterable[str]) -> int | None:
        """Tasks started so far by the live workers that consume any of `queues`, or None."""
        return self.progress(queues).processed

    def workers(self) -> dict[str, tuple[int, frozenset[str] | None, str]]:
        with self._lock:
            return {h: (w.processed, w.queues, w.source) for h, w in self._workers.items()}

    # -- source 1: heartbeats -----------------------------------------------------------------

    def _listen(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                with self.connection() as conn:
                    receiver = self._app.events.Receiver(
                        conn,
                        handlers={
                            "worker-heartbeat": self._on_heartbeat,
                            "worker-online": self._on_online,
                            "worker-offline": self._on_offline,
                        },
                    )
                    receiver.connect_max_retries = 1
                    self._receiver = receiver
                    if self._stop.is_set():
                        return
                    if failing:
                        log.info("heartbeat listener on %s reconnected", self._where)
                        failing = False
                    self._events_error = None
                    receiver.capture(limit=None, timeout=None, wakeup=False)
            except Exception as exc:  # noqa: BLE001 - any broker fault: retry, never die
                if not failing:
                    log.warning("heartbeat listener on %s failed, will retry: %s", self._where, exc)
                    failing = True
                # The workers are kept with what they said (queues, facts, last count): a
                # worker whose heartbeats come back frozen after a broker restart is judged on
                # them, not as one the supervisor never saw.
                self._events_error = f"{type(exc).__name__}: {exc}"
                self._stop.wait(1.0)  # retry soon: a failover or restart is over in seconds

    def _on_heartbeat(self, event: dict[str, Any]) -> None:
        hostname = str(event.get("hostname", ""))
        if not hostname:
            return
        freq = float(event.get("freq") or 2.0)
        version = event.get("sw_ver")
        self._heard(
            hostname,
            int(event.get("processed") or 0),
            freq,
            HEARTBEATS,
            version if isinstance(version, str) else None,
        )
        active = event.get("active")
        with self._lock:
            worker = self._workers.get(hostname)
            if worker is not None:
                worker.active = active if isinstance(active, int) else None

    def _heard(
        self, hostname: str, processed: int, every: float, source: str, version: str | None = None
    ) -> None:
        now = self._clock()
        with self._lock:
            worker = self._workers.get(hostname)
            if worker is None:
                worker = self._workers[hostname] = _Worker(processed, now, every, source)
            worker.processed, worker.seen, worker.every = processed, now, every
            worker.source = source
            worker.version = version or worker.version
            needs_queues = now - worker.queues_checked >= QUEUES_REFRESH
        if needs_queues:
            self._lookup_queues([hostname])

    def _on_online(self, event: dict[str, Any]) -> None:
        hostname = str(event.get("hostname", ""))
        with self._lock:
            worker = self._workers.get(hostname)
            if worker is not None:
                worker.queues_checked = float("-inf")  # a restarted worker may consume others
                worker.facts = None  # and may run another pool or configuration
                worker.limits_known = False

    def _on_offline(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._workers.pop(str(event.get("hostname", "")), None)

    # -- source 2: remote control -------------------------------------------------------------

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_every):
            try:
                self.poll_once()
                self._control_error = None
            except Exception as exc:  # noqa: BLE001 - any broker fault: next interval retries
                log.debug("remote-control poll on %s failed: %s", self._where, exc)
                self._control_error = f"{type(exc).__name__}: {exc}"

    def live_workers(self) -> list[str]:
        """The workers whose remote-control queue is bound on the broker now."""
        members = self._redis.smembers(self._pidbox_key)
        hosts = []
        for member in members:
            text = member.decode(errors="replace") if isinstance(member, bytes) else str(member)
            queue = text.split(BINDING_SEPARATOR)[-1]
            if queue.endswith(PIDBOX_SUFFIX):
                hosts.append(queue.removesuffix(PIDBOX_SUFFIX))
        return sorted(hosts)

    def poll_once(self) -> None:
        """Ask the live workers that send no heartbeats how many tasks they have started."""
        now = self._clock()
        with self._lock:
            heard = {h for h, w in self._workers.items() if w.source == HEARTBEATS and w.fresh(now)}
            for host in [h for h, w in self._workers.items() if now - w.seen > FORGET_AFTER]:
                del self._workers[host]
        bound = self.live_workers()
        with self._lock:
            self._bound = frozenset(bound)
        silent = [h for h in bound if h not in heard]
        if not silent:
            return
        replies = self._ask(silent, "stats")
        for host, stats in (replies or {}).items():
            totals = stats.get("total") if isinstance(stats, dict) else None
            if isinstance(totals, dict):
                self._heard(
                    host, sum(int(n) for n in totals.values()), self.poll_every, REMOTE_CONTROL
                )

    def _ask(
        self, hosts: list[str], what: str, arguments: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """One remote-control request addressed to `hosts`; the wait ends at their replies.
        One connection and its reply queue are kept for these requests (pidbox.py: a new
        queue per request costs some 25 Redis commands); both are dropped on any error and
        made again by the next request."""
        with self._ask_lock:
            try:
                if self._lean is None:
                    self._control = self.connection()
                    mailbox = self._app.control.mailbox
                    self._lean = LeanRequests(mailbox, self._control, self._redis, self._prefix)
                return self._lean.ask(hosts, what, self._inspect_timeout, arguments)
            except Exception:
                self._drop_control()
                raise

    def _drop_control(self) -> None:
        if self._lean is not None:
            self._lean.close()
        if self._control is not None:
            self._control.release()  # type: ignore[no-untyped-call]
        self._control, self._lean = None, None

    def _inspect(
        self, conn: Connection, hosts: list[str], what: str, timeout: float | None = None
    ) -> dict[str, Any] | None:
        """One remote-control request addressed to `hosts` on `conn`; the wait ends at their
        replies (`limit`), or after `timeout` (`inspect_timeout` by default)."""
        inspect = self._app.control.inspect(
            destination=hosts,
            timeout=timeout or self._inspect_timeout,
            limit=len(hosts),
            connection=conn,
        )
        replies: dict[str, Any] | None = getattr(inspect, what)()
        return replies

    def _lookup_queues(self, hosts: list[str]) -> None:
        """Each worker's queues (once a minute), and once per start of the worker what it is:
        its pool and concurrency (`stats`), result backend and acks_late (`conf`). Asked while
        it answers, so a restart never has to ask a hung worker what it is."""
        replies = self._ask_quietly(hosts, "active_queues")
        with self._lock:
            unknown = [h for h in hosts if (w := self._workers.get(h)) and w.facts is None]
            # Its limits are asked again until both replies came (a rate limit missed once
            # would let a rate-limited worker be taken for idle while it runs).
            limitless = [h for h in hosts if (w := self._workers.get(h)) and not w.limits_known]
        stats = self._ask_quietly(unknown, "stats") if unknown else None
        confless = sorted(set(unknown) | set(limitless))
        conf = self._ask_quietly(confless, "conf") if confless else None
        # Each task's own time_limit and rate_limit.
        registered = (
            self._ask_quietly(
                limitless, "registered", {"taskinfoitems": ["time_limit", "rate_limit"]}
            )
            if limitless
            else None
        )
        now = self._clock()
        with self._lock:
            for host in hosts:
                worker = self._workers.get(host)
                if worker is None:
                    continue
                worker.queues_checked = now
                queues = (replies or {}).get(host)
                if queues is not None:
                    worker.queues = frozenset(str(q.get("name")) for q in queues)
                if host in unknown and stats and host in stats:
                    worker.facts = facts_from(
                        host, stats[host], (conf or {}).get(host), self._wall()
                    )
                if host in limitless and host in (conf or {}) and host in (registered or {}):
                    assert conf is not None and registered is not None
                    worker.limits = limits_from(conf[host], registered[host])
                    worker.limits_known = True

    def _ask_quietly(
        self, hosts: list[str], what: str, arguments: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        try:
            return self._ask(hosts, what, arguments)
        except Exception as exc:  # noqa: BLE001 - a failed lookup leaves it unknown
            log.debug("%s of %s failed: %s", what, hosts, exc)
            return None


def limits_from(conf: Any, registered: Any) -> Limits:
    """Celery's task_time_limit and task_default_rate_limit (`conf` lists only what differs
    from the defaults), and each task's own time_limit and rate_limit (`registered` with those
    info items: "name [rate_limit=2/m time_limit=600]"). Rate limits that the worker does not
    apply (worker_disable_rate_limits) are none."""
    settings = conf if isinstance(conf, dict) else {}
    default = _seconds(settings.get("task_time_limit"))
    rates_off = bool(settings.get("worker_disable_rate_limits"))
    default_rate = None if rates_off else _interval(settings.get("task_default_rate_limit"))
    own: list[tuple[str, float]] = []
    rates: list[tuple[str, float]] = [("*", default_rate)] if default_rate else []
    for line in registered if isinstance(registered, list) else ():
        name, _, info = str(line).rpartition(" [")  # a task's name may hold " [" too
        if not name:  # no info items
            name, info = str(line), ""
        for item in info.rstrip("]").split():
            key, _, value = item.partition("=")
            if key == "time_limit" and (seconds := _seconds(value)) is not None:
                own.append((name, seconds))
            if key == "rate_limit" and not rates_off and (every := _interval(value)):
                rates.append((name, every))
    return Limits(default, tuple(sorted(own)), tuple(sorted(rates)))


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 else None


def _interval(value: Any) -> float | None:
    """Seconds between two starts under Celery's rate limit `value` (None: no limit), read by
    Celery's own parser ("N/s", "N/m", "N/h", or tasks a second)."""
    from celery.utils.time import rate

    if value is None:
        return None
    try:
        per_second = float(rate(str(value)))
    except (KeyError, ValueError):  # not a rate Celery would run with
        return None
    return 1.0 / per_second if per_second > 0 else None


def facts_from(host: str, stats: Any, conf: Any, t: float) -> WorkerFacts:
    """A worker's facts from its `stats` and `conf` replies (conf lists only what differs from
    Celery's defaults: no result_backend there means none, no task_acks_late means False)."""
    pool = stats.get("pool") if isinstance(stats, dict) else None
    pool = pool if isinstance(pool, dict) else {}
    implementation = pool.get("implementation")
    concurrency = pool.get("max-concurrency")
    # An autoscaling worker's pool grows to its autoscaler's max while messages wait; the
    # pool's max-concurrency is only its size when asked (the min, at start). Its slots are
    # that max: else a worker grown to 3 and running 1 task would be judged 1 of 1 busy.
    scaler = stats.get("autoscaler") if isinstance(stats, dict) else None
    if isinstance(scaler, dict) and isinstance(scaler.get("max"), int) and scaler["max"] > 0:
        concurrency = scaler["max"]
    settings = conf if isinstance(conf, dict) else None
    backend = acks_late = None
    if settings is not None:
        value = settings.get("result_backend")
        backend = bool(value) and str(value).lower() not in ("none", "disabled")
        acks_late = bool(settings.get("task_acks_late", False))
    return WorkerFacts(
        host,
        str(implementation) if implementation else None,
        int(concurrency) if isinstance(concurrency, int) else None,
        backend,
        acks_late,
        t=t,
    )
