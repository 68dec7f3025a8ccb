# syntax=docker/dockerfile:1
# Two stages: the first installs the dependencies into a virtualenv (wheels only: no compiler needed),
# the second copies that virtualenv and the source into a clean slim image that runs as a non-root user.

FROM python:3.11-slim AS build
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY server/ server/
# The dependencies stay; the package itself is run from /app, where sql/ sits beside server/.
RUN pip install . && pip uninstall -y blog-api

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 PORT=8080 LOG_FORMAT=json VAR_DIR=/app/var
RUN useradd --system --user-group --uid 10001 --home-dir /app --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY server/ server/
COPY sql/ sql/
RUN mkdir -p var && chown app:app var
USER app
EXPOSE 8080
# No curl in the slim image: Python's urllib asks /healthz on the port the process listens on.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=2)"]
CMD ["python", "-m", "server", "serve"]
