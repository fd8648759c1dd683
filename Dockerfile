# The supervisor sidecar.
# BASE_IMAGE: any Debian-like image with Python >= 3.11, venv and useradd. The default is the
# official slim image; where no registry is reachable, point it at a local base (the tests do).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG PYTHON=python3
ARG UID=10001
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/supervisor/bin:$PATH \
    SUPERVISOR_STATE_DIR=/var/lib/iti-worker-supervisor \
    SUPERVISOR_POLICIES=/etc/iti-worker-supervisor/policies

COPY pyproject.toml README.md /src/
COPY supervisor /src/supervisor
RUN ${PYTHON} -m venv /opt/supervisor \
    && /opt/supervisor/bin/pip install --no-cache-dir --disable-pip-version-check /src \
    && rm -rf /src \
    && useradd --system --uid ${UID} --user-group --no-create-home \
        --home-dir /var/lib/iti-worker-supervisor supervisor \
    && mkdir -p /var/lib/iti-worker-supervisor /etc/iti-worker-supervisor/policies \
    && chown supervisor:supervisor /var/lib/iti-worker-supervisor
COPY policies /etc/iti-worker-supervisor/policies

# Non-root: Docker is reached through the socket proxy over TCP, Redis over the network.
USER ${UID}
VOLUME ["/var/lib/iti-worker-supervisor"]
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["supervisor", "health"]
ENTRYPOINT ["supervisor"]
CMD ["run", "/etc/iti-worker-supervisor/policies"]
