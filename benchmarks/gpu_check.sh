#!/usr/bin/env bash
# GPU readiness: paper miniature on cuda, paper-preset step times (fp32 and autocast), Inception throughput and
# FID-50k end to end, a 1-process torchrun with NCCL.  `--cpu` runs the same steps on the CPU at tiny sizes.
# Run from anywhere: bash benchmarks/gpu_check.sh [--cpu] [--out FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
exec python benchmarks/gpu_check.py "$@"
