"""Adapters to the outside world: Redis (queue depth, worker progress) and Docker."""
