"""Real parts shared by the tests, the benchmarks and the examples: private redis-server
processes, Celery worker containers on the private Docker engine, a producer, the supervisor as a
process. Nothing here imports pytest."""
