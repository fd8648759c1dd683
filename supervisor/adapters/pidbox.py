"""Celery's remote control on the Redis transport, asked with about one Redis command per
worker: the request through kombu's own mailbox (one PUBLISH on the broadcast channel, so the
message is exactly what Celery's `inspect` sends), the replies read with BRPOP from the
mailbox's reply list. kombu's own `inspect` declares, consumes and deletes its reply queue at
every request (some 25 commands for one worker); here the reply queue is declared once, kept
while the supervisor runs, and deleted when it stops.

Every request of the progress monitor's kept connection goes this way (progress_probe.py:
the periodic `stats` of workers that send no heartbeats, their queues, what they are); the two
parallel questions asked at a restart, each on a connection of its own, keep kombu's `inspect`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from typing import Any

import redis
from kombu.connection import Connection
from kombu.messaging import Producer


class LeanRequests:
    def __init__(self, mailbox: Any, connection: Connection, client: redis.Redis, prefix: str):
        self._channel = connection.default_channel
        self._box = mailbox(connection)
        self._producer = Producer(self._channel)  # type: ignore[no-untyped-call]
        self._client, self._prefix = client, prefix
        reply_queue = self._box.reply_queue(self._channel)
        reply_queue.declare()  # once: kombu would declare it again at every request
        self._reply_key = prefix + reply_queue.name

    def ask(
        self,
        hosts: list[str],
        method: str,
        timeout: float,
        arguments: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """`method` of `hosts`: their replies, by host, as they came within `timeout`."""
        ticket, box = str(uuid.uuid4()), self._box
        request = {  # what kombu's Mailbox._publish sends, but for the reply queue's declare
            "method": method,
            "arguments": arguments or {},
            "destination": hosts,
            "pattern": None,
            "matcher": None,
            "ticket": ticket,
            "reply_to": {"exchange": box.reply_exchange.name, "routing_key": box.oid},
        }
        self._producer.publish(  # type: ignore[no-untyped-call]
            request,
            exchange=box.exchange.name,
            declare=[box.exchange],
            headers={"clock": box.clock.forward(), "expires": time.time() + timeout},
            serializer=box.serializer,
            retry=True,
        )
        replies: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while len(replies) < len(hosts):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            got: Any = self._client.brpop([self._reply_key], timeout=max(left, 0.01))
            if got is None:
                break
            reply = _decode(got[1], ticket)
            if reply:
                replies.update(reply)
        return replies

    def close(self) -> None:
        """Remove the reply queue and its binding (best effort)."""
        with contextlib.suppress(Exception):  # the broker may be gone: nothing to clean then
            self._channel.queue_delete(self._reply_key.removeprefix(self._prefix))  # type: ignore[no-untyped-call]


def _decode(raw: bytes, ticket: str) -> dict[str, Any] | None:
    """A reply of kombu's Redis transport, if it answers `ticket` (a late one from an earlier
    request is dropped)."""
    try:
        message = json.loads(raw)
        if (message.get("headers") or {}).get("ticket") != ticket:
            return None
        body = message["body"]
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        reply = json.loads(body)
    except (ValueError, KeyError, TypeError):
        return None
    return reply if isinstance(reply, dict) else None
