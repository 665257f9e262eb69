# syntax=docker/dockerfile:1
# Base images pinned by digest: a rebuild gets the same bytes. To move to a newer patch release,
# look up the current digest (`docker buildx imagetools inspect python:3.11-slim-bookworm`) and
# replace both lines.
#
# Build stage: the dependencies from the hashed lock, then the worker's own wheel built with the
# locked build backend; nothing is resolved or downloaded unchecked.
FROM python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91 AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# Dependencies first (their own layer): a code change does not reinstall them.
COPY requirements/runtime.txt requirements/build.txt ./requirements/
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --no-deps --requirement requirements/runtime.txt \
 && python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --requirement requirements/build.txt
COPY pyproject.toml README.md ./
COPY worker ./worker
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-deps /wheels/*.whl \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

# Runtime stage: the venv and nothing else, run as an unprivileged user. No installer is left in
# the image: neither in the venv (removed above) nor in the base image's own Python.
FROM python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 LOG_FORMAT=json HEALTH_PORT=8080
RUN python -m pip uninstall --yes pip setuptools wheel \
 && rm -rf /usr/local/lib/python3.11/ensurepip \
 && useradd --system --uid 10001 --no-create-home worker
COPY --from=build /opt/venv /opt/venv
USER 10001
EXPOSE 8080
# No curl in a slim image: the interpreter itself asks /healthz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('HEALTH_PORT', '8080') + '/healthz', timeout=4).status == 200 else 1)"]
# Exec form: the worker is PID 1 and receives ECS's SIGTERM itself.
ENTRYPOINT ["cognito-worker"]
CMD ["run"]
