"""Where events go: audit log, log lines, Prometheus metrics, notifications."""
