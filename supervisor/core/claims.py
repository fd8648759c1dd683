"""One container, one policy: when two policies' targets resolve at run time to the same
container (`container = "x"` in one, compose labels matching x in another), the first policy
(in load order) keeps it and the others never touch it. Two histories and two budgets for one
worker would let it be restarted twice as often as either policy allows."""

from __future__ import annotations

from collections.abc import Iterable


def claims(found: Iterable[tuple[str, Iterable[str]]]) -> dict[str, dict[str, str]]:
    """For each policy, in order, with the containers its target resolves to: the containers it
    must leave alone, each with the policy that found it first."""
    owner: dict[str, str] = {}
    refused: dict[str, dict[str, str]] = {}
    for policy, containers in found:
        for container in containers:
            first = owner.setdefault(container, policy)
            if first != policy:
                refused.setdefault(policy, {})[container] = first
    return refused
