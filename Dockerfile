# Salesbot's image. Build: `docker build -t salesbot .`; run it with docker-compose.yml or see
# docs/deploy.md. One image serves every role: `salesbot web` (the default command),
# `salesbot worker`, and the one-shot `salesbot db upgrade`.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: the exact dependencies of requirements.lock, hashes checked, in a venv ----------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
# The lock alone first, so the dependency layer is rebuilt only when the lock changes. Every
# locked package has a wheel for CPython 3.11 on Linux x86_64: no compiler is needed.
COPY requirements.lock /tmp/requirements.lock
RUN /opt/venv/bin/pip install --require-hashes --only-binary=:all: -r /tmp/requirements.lock
# The build backend, pinned with hashes too: the project's wheel is built without fetching.
COPY requirements-build.lock /tmp/requirements-build.lock
RUN /opt/venv/bin/pip install --require-hashes --only-binary=:all: -r /tmp/requirements-build.lock
COPY pyproject.toml README.md /src/
COPY bot /src/bot
COPY domain /src/domain
COPY storage /src/storage
COPY integrations /src/integrations
COPY handlers /src/handlers
COPY jobs /src/jobs
COPY sandbox /src/sandbox
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation /src

# --- runtime: the venv on a slim base, run by an unprivileged user ----------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=3000
RUN groupadd --system --gid 10001 salesbot \
    && useradd --system --uid 10001 --gid salesbot --home-dir /var/lib/salesbot \
       --create-home --shell /usr/sbin/nologin salesbot
COPY --from=builder /opt/venv /opt/venv
# Relative paths of the settings (the SQLite file, OFFLINE_CORRECTIONS_FILE) land here, in the
# user's own home; mount a volume on it to keep them.
WORKDIR /var/lib/salesbot
USER 10001:10001
EXPOSE 3000
# /healthz answers 200 when the database answers and its schema is the code's (503 otherwise).
# The slim image has no curl: Python asks. Worker and one-shot containers turn this off.
HEALTHCHECK --interval=30s --timeout=5s --start-period=40s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '3000') + '/healthz', timeout=4)"]
CMD ["salesbot", "web"]
