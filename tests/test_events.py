"""The one vocabulary: every kind has exactly one class, every class a sentence, and what the
audit keeps of an event is its facts (decision facts inline, nothing None)."""

from __future__ import annotations

from supervisor.core.events import EVENT_CLASSES, EventKind
from supervisor.sinks.render import record, text
from tests.event_examples import WHY, examples


def test_one_class_per_kind_and_every_class_listed() -> None:
    kinds = [cls.kind for cls in EVENT_CLASSES]
    assert sorted(k.value for k in kinds) == sorted(k.value for k in EventKind)
    assert set(examples()) == set(EventKind)


def test_every_event_renders_a_sentence_and_a_record() -> None:
    for kind, ev in examples("w", "docker-worker-1").items():
        sentence = text(ev)
        assert sentence and "None" not in sentence, (kind, sentence)
        rec = record(ev)
        assert rec["event"] == kind.value and rec["text"] == sentence
        assert all(v is not None for v in rec.values() if v is not rec["policy"])


def test_a_decisions_facts_are_inline_in_the_record() -> None:
    rec = record(examples()[EventKind.ESCALATE])
    assert rec["reason"] == WHY.reason and rec["depths"] == [[99.0, 9]] and "why" not in rec
    assert rec["text"] == f"ESCALATION, a person is needed: {WHY.reason}"
