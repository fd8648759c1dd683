"""`supervisor quarantine list|requeue|drop POLICY [TASK_ID]`: the poison messages the daemon
parked for a policy's target (core/quarantine.py), in the broker's dead-letter list
iti-supervisor:quarantine:TARGET. `requeue` puts one back on its queue as kombu's restore
delivers it (it will run, and may hang, again); `drop` deletes it for good."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from supervisor.broker_url import redact
from supervisor.core import quarantine
from supervisor.errors import UsageError
from supervisor.policy import Policy

EXIT_OK, EXIT_NOT_FOUND = 0, 1


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def run(action: str, policy: Policy, task_id: str | None, as_json: bool) -> int:
    from supervisor.adapters.unacked_store import UnackedStore

    if action != "list" and not task_id:
        raise UsageError(f"quarantine {action} needs a TASK_ID (see: quarantine list)")
    key = quarantine.key_for(policy.target.key, policy.broker.key_prefix)
    store = UnackedStore(policy.broker)
    try:
        if action == "list":
            return _list(policy, store.parked(key), key, as_json)
        assert task_id is not None
        taken = store.requeue(key, task_id) if action == "requeue" else store.drop(key, task_id)
    finally:
        store.close()
    if taken is None:
        print(f"no parked message with task id {task_id} in {key}")
        return EXIT_NOT_FOUND
    did = f"requeued onto {taken.queue}" if action == "requeue" else "dropped"
    print(f"{did}: {taken.name} ({taken.task_id}), parked at {_when(taken.parked_at)}")
    return EXIT_OK


def _list(
    policy: Policy,
    entries: Sequence[tuple[quarantine.Entry | None, bytes]],
    key: str,
    as_json: bool,
) -> int:
    if as_json:
        print(
            json.dumps(
                [
                    e.to_json() if e else {"unreadable": redact(raw.decode(errors="replace"))}
                    for e, raw in entries
                ]
            )
        )
        return EXIT_OK
    if not entries:
        print(f"{policy.name}: nothing parked ({key})")
        return EXIT_OK
    print(f"{policy.name}: {len(entries)} parked in {key}")
    for entry, raw in entries:
        if entry is None:
            print(f"  (unreadable entry: {redact(raw.decode(errors='replace'))[:120]})")
            continue
        print(
            f"  {entry.task_id}  {entry.name}  queue {entry.queue}  parked "
            f"{_when(entry.parked_at)}: {entry.reason}"
        )
    return EXIT_OK
