"""iti-worker-supervisor: restarts a Celery worker whose Redis queue is stuck above threshold."""

__version__ = "0.1.0"
