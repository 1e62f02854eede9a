#!/usr/bin/env bash
# The GPU benchmark in one command (under 8 minutes on a CUDA GPU): images/s of the JetCar U-Net at 224 px in fp32,
# AMP fp16 and bf16, each with and without channels_last, torch.compile of the fastest, peak memory, the largest
# batch that fits, and the GPU busy share while seglib's real loader feeds it. On a machine without a CUDA GPU it
# says so and exits 0. Writes benchmarks/results/gpu.json (make bench puts it into BENCHMARKS.md).
#   bash benchmarks/gpu.sh [--data <CamVid folder>] [--batch 64]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
exec timeout 480 "$PY" -m benchmarks.gpu --compile "$@"
