#!/usr/bin/env bash
# The default test suite (CPU, offline). Slow tests: `bash scripts/test.sh -m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 -m pytest -q "$@"
