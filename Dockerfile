# syntax=docker/dockerfile:1
# fraudstream worker image.
#
#   docker build -t fraudstream .
#   docker run --rm -e FRAUDSTREAM_BOOTSTRAP_SERVERS=host:9092 \
#     -e FRAUDSTREAM_MODEL_SIGNING_KEY -e FRAUDSTREAM_WEB_TOKEN fraudstream           # worker (secrets from the host env)
#   docker run --rm -e FRAUDSTREAM_BOOTSTRAP_SERVERS=host:9092 fraudstream alerts   # any subcommand
#
# Two stages: the build stage makes a virtual environment in /opt/venv, the
# runtime stage copies only that venv onto a clean base, so pip, its cache and
# the source tree stay out of the final image. Only runtime dependencies are
# installed (no test extra).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# CPU-only PyTorch from PyTorch's own wheel index, installed before the
# package: `torch==2.13.0` from PyPI would pull several GB of CUDA wheels a
# CPU worker never uses. The CPU build is 2.13.0+cpu, which satisfies the
# package's `torch==2.13.0` pin, so `pip install .` below keeps it. (This
# needs network access to download.pytorch.org during the build; the project's
# own machines cannot reach it, which is why this is only done here.)
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# Faust's RocksDB table store (FRAUDSTREAM_STORE=rocksdb://, what the compose
# workers use) needs a RocksDB binding; rocksdict ships wheels, so no compiler.
RUN pip install "rocksdict>=0.3.11,<4"

WORKDIR /src
# Metadata first, code second: editing code does not redo the layers above.
# README.m[d] matches nothing (and is skipped) while the README does not exist.
COPY pyproject.toml README.m[d] ./
COPY stream ./stream
COPY models ./models
COPY replay ./replay
RUN pip install . && pip check


FROM ${PYTHON_IMAGE} AS runtime

# A fixed, unprivileged uid: files it writes into mounted volumes have a
# predictable owner on the host.
RUN groupadd --system --gid 10001 fraudstream \
 && useradd --system --uid 10001 --gid fraudstream --home-dir /var/lib/fraudstream \
            --no-create-home --shell /usr/sbin/nologin fraudstream \
 && mkdir -p /var/lib/fraudstream /data \
 && chown fraudstream:fraudstream /var/lib/fraudstream /data

COPY --from=build /opt/venv /opt/venv

# Container defaults (each is a setting; see stream/contracts/settings.py):
# - the web server must listen beyond loopback to be reached from outside the
#   container (health checks from other containers, Prometheus). Only /healthz,
#   /ready, /metrics and /stats/ answer without FRAUDSTREAM_WEB_TOKEN (card
#   views need `Authorization: Bearer <token>`; without a token set they answer
#   403). No secret is baked in: pass FRAUDSTREAM_WEB_TOKEN and
#   FRAUDSTREAM_MODEL_SIGNING_KEY at run time;
# - tables live under /var/lib/fraudstream, which is a volume in compose;
# - so does Numba's cache of the compiled loops (models/compiled.py): the
#   venv is not writable by the worker's user, and a restart loads the cache
#   instead of compiling again.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FRAUDSTREAM_WEB_ENABLED=1 \
    FRAUDSTREAM_WEB_HOST=0.0.0.0 \
    FRAUDSTREAM_WEB_PORT=6066 \
    FRAUDSTREAM_DATA_DIR=/var/lib/fraudstream \
    NUMBA_CACHE_DIR=/var/lib/fraudstream/numba-cache

# Numeric, so that runtimes can verify it is not root (e.g. runAsNonRoot).
USER 10001:10001
WORKDIR /var/lib/fraudstream
EXPOSE 6066

# python:*-slim has no curl; urllib does the same. The container hostname
# resolves to the container's address, which the server listens on whether it
# binds 0.0.0.0 or that address (as the compose workers do). /healthz is
# liveness: 200 while the worker runs and no agent has stopped.
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=4 \
    CMD ["python", "-c", "import os, socket, urllib.request; urllib.request.urlopen('http://%s:%s/healthz' % (socket.gethostname(), os.environ.get('FRAUDSTREAM_WEB_PORT', '6066')), timeout=4)"]

ENTRYPOINT ["fraudstream"]
CMD ["worker"]
