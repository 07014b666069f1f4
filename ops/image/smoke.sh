#!/usr/bin/env bash
# Run a built IMP image with no network at all and check what a user would: the CLI starts, the sample
# corpus (samples/) is ingested with the bundled models (embedder, Whisper, diarization), questions are
# answered with citations (extractive and with the bundled SmolLM2 GGUF), the API and the MLflow server
# start and answer their health checks, and the container runs as uid 10001.
#
#   ops/image/smoke.sh [IMAGE]          # default localhost/imp:0.1.0; needs buildah and root
#
# buildah's chroot isolation cannot take a network namespace of its own, so the whole run is wrapped
# in `unshare -n`: a namespace with only loopback (iproute2's `ip` brings it up), where any download fails.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
IMAGE=${1:-localhost/imp:0.1.0}
export BUILDAH_ISOLATION=chroot

ctr=$(buildah from --pull-never "$IMAGE")
trap 'buildah rm "$ctr" >/dev/null' EXIT

# Loopback only (up, for the API and MLflow checks); nothing else.
unshare -n sh -c 'ip link set lo up && exec "$@"' sh buildah run -v "$ROOT/samples:/samples:ro" "$ctr" -- sh -euc '
expect() { grep -q -- "$1" "$2" || { echo "FAILED: \"$1\" not in $2:"; cat "$2"; exit 1; }; }
cd /tmp
echo "== user: $(id)"; [ "$(id -u)" = 10001 ]
echo "== no network"
if python -c "import socket; socket.create_connection((\"pypi.org\", 443), timeout=3)" 2>/dev/null; then
  echo "FAILED: the network is reachable"; exit 1
fi
echo "== imp --help"; imp --help > help.txt; expect "Answer a question" help.txt
echo "== ingest samples/"
start=$(date +%s); imp ingest /samples | tee ingest.txt; expect "8 indexed, 0 unchanged, 0 failed" ingest.txt
echo "   ($(( $(date +%s) - start )) s)"
echo "== ask (extractive)"
imp ask "How much is the hotel reimbursed per night in Europe?" | tee a1.txt; expect "180 EUR" a1.txt; expect "handbook.md" a1.txt
imp ask "How many totes did the robots move in the first week?" | tee a2.txt; expect "rotterdam-pilot-standup.m4a" a2.txt
echo "== ask (bundled SmolLM2 GGUF through transformers)"
# The 135M model loads offline and writes; whether its draft passes the citation check varies, and
# either outcome (a cited answer, or the reason there is none) is a correct reply.
IMP_LLM__BACKEND=transformers imp ask "How much is the hotel reimbursed per night in Europe?" 2>/dev/null | tee a3.txt
grep -q -e "handbook.md" -e "could not find an answer" a3.txt || { echo "FAILED: no reply"; exit 1; }
echo "== imp serve + health check + metrics"
IMP_API__TOKEN=smoke-test-token-0123456789 imp serve --host 0.0.0.0 --port 8000 > serve.log 2>&1 &
serve=$!
for i in $(seq 1 90); do imp-healthcheck http://127.0.0.1:8000/healthz > health.txt && break; sleep 2; done
cat health.txt; grep -q "HTTP 200" health.txt || { tail -20 serve.log; exit 1; }
python -c "import urllib.request; print(urllib.request.urlopen(\"http://127.0.0.1:8000/metrics\").read().decode())" > metrics.txt
expect "# TYPE" metrics.txt; echo "   /metrics: $(grep -c "^# TYPE" metrics.txt) metric families"
kill "$serve"
echo "== imp-healthcheck --db"; imp-healthcheck --db
echo "== mlflow server"
mlflow server --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:////tmp/mlflow.db \
  --artifacts-destination /mlflow/artifacts --workers 1 > mlflow.log 2>&1 &
mlflow=$!
for i in $(seq 1 90); do imp-healthcheck http://127.0.0.1:5000/health > mh.txt && break; sleep 2; done
cat mh.txt; grep -q "HTTP 200" mh.txt || { tail -20 mlflow.log; exit 1; }
kill "$mlflow"
echo "SMOKE OK"
'
