#!/usr/bin/env bash
# Installs everything vq-hf needs on a fresh Debian machine (Python 3.11, root): the Debian packages the
# stand-in corpus generators use (Festival voices, handwriting fonts, the Dutch word list), the CPU
# build of torch, then this package with all its extras (training, speech, stand-ins, benchmarks, tests).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq \
    festival festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k \
    fonts-joscelyn fonts-dancingscript fonts-kristi fonts-dkg-handwriting wdutch \
    libsndfile1 >/dev/null
fi
python3 -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# The CPU wheel first, so that nothing below can pull a CUDA build.
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e ".[all]"
# accelerate's default config for this machine (CPU, or its GPUs), so that `accelerate launch training/run_vq.py`
# needs no flags and prints no "values were not passed" warnings; `accelerate config default` never overwrites a
# config that exists (e.g. one written by `accelerate config`).
accelerate config default >/dev/null
