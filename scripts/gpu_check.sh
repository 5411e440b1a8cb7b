#!/usr/bin/env bash
# One prepared check of the engine's GPU path (issue 18); see docs/engine.md, "On a GPU".
# From the repository root of a machine with an NVIDIA GPU, python3 with torch (CUDA) and triton:
#   bash scripts/gpu_check.sh            # about 4 minutes on an H200, at most 8
#   GPU_CHECK_DRY=1 bash scripts/gpu_check.sh   # the same code on the CPU, tiny shapes, Triton's interpreter
# Prints a summary table at the end and writes it to $OUT/gpu_check.txt when OUT is set.
# The random checkpoints go to $GPU_CHECK_DIR (default /tmp/gpu_check; the 20b shape takes 13 GiB).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PYTHON="${PYTHON:-python3}"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader
else
    echo "nvidia-smi: not found"
fi
# The script keeps its own deadline (GPU_CHECK_SECONDS, default 450); `timeout` is the last resort.
if command -v timeout >/dev/null; then
    timeout --signal=TERM 480 "$PYTHON" scripts/gpu_check.py
else
    "$PYTHON" scripts/gpu_check.py
fi
status=$?
[ "$status" -eq 124 ] && echo "gpu_check: stopped after 480 s"
exit "$status"
