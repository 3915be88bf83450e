#!/usr/bin/env bash
# Creates .venv-ref/ (git-ignored): the Python packages users trust, pinned, as independent
# references for the tests (transformers, tokenizers, safetensors, PEFT, lm-evaluation-harness,
# TensorBoard) and PyTorch 2.13 (CPU) for the torch engine. Tests that need it find it through
# tests/reference_python.ts and skip with a message where it is missing.
#   tools/reference_env.sh            # create or complete it (idempotent)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv-ref/bin/python ]; then
  "$PY" -m venv .venv-ref
fi
# torch pinned alone first: an open range would pull a multi-GB CUDA build.
.venv-ref/bin/pip install -q torch==2.13.0
.venv-ref/bin/pip install -q numpy transformers==5.23.0 tokenizers==0.23.3 safetensors==0.8.0 \
  peft==0.21.2 lm-eval==0.4.13 tensorboard==2.21.0
.venv-ref/bin/python -c "import torch, transformers, tokenizers, safetensors, peft, lm_eval, tensorboard; print('reference env: torch', torch.__version__, 'transformers', transformers.__version__)"
