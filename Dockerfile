# syntax=docker/dockerfile:1
# Build stage: resolve and install the dependencies into a virtual environment of their own, so
# that a code change does not rebuild the dependency layer.
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
# Dependencies first (their own layer): install the pinned runtime requirements only.
RUN /opt/venv/bin/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['dependencies']))" > requirements.txt \
 && /opt/venv/bin/pip install --requirement requirements.txt
COPY worker ./worker
RUN /opt/venv/bin/pip install --no-deps .

# Runtime stage: the venv and nothing else, run as an unprivileged user.
FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 LOG_FORMAT=json HEALTH_PORT=8080
COPY --from=build /opt/venv /opt/venv
RUN useradd --system --uid 10001 --no-create-home worker
USER 10001
EXPOSE 8080
# No curl in a slim image: the interpreter itself asks /healthz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('HEALTH_PORT', '8080') + '/healthz', timeout=4).status == 200 else 1)"]
# Exec form: the worker is PID 1 and receives ECS's SIGTERM itself.
ENTRYPOINT ["cognito-worker"]
CMD ["run"]
