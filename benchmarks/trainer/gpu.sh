#!/usr/bin/env bash
# The GPT on one GPU with bf16 and torch.compile: tokens/s and MFU (benchmarks/trainer/gpu.py says
# what it runs). Needs an NVIDIA GPU and the project installed; PYTHON picks the interpreter
# (default .venv/bin/python). Usage, from anywhere:
#
#   benchmarks/trainer/gpu.sh [--smoke]     (--smoke: a tiny model, a few steps, any device)
set -euo pipefail
cd "$(dirname "$0")/../.."
exec "${PYTHON:-.venv/bin/python}" -m benchmarks.trainer.gpu "$@"
