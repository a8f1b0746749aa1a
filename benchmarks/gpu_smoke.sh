#!/usr/bin/env bash
# GPU smoke test on one GPU node: first the preflight (NVIDIA driver new enough for torch's CUDA
# build, gcc and Python.h for Triton's launcher, vLLM installed: the checks of `candid doctor`),
# then benchmarks/gpu_smoke.py with the production engine settings (bf16, CUDA graphs, prefix
# caching, the streamed feeder), killed after SMOKE_TIMEOUT_S seconds (6 minutes).
#   bash benchmarks/gpu_smoke.sh [gpu_smoke.py options]
#   ALLOW_NO_VLLM=1 bash benchmarks/gpu_smoke.sh     # a node without vLLM: transformers only
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
preflight=(--preflight)
[[ "${ALLOW_NO_VLLM:-0}" == "1" ]] && preflight+=(--allow-no-vllm)
"$PY" benchmarks/gpu_smoke.py "${preflight[@]}" || {
  echo "gpu_smoke: preflight found a blocker (lines above); nothing was run" >&2
  exit 2
}
exec timeout "${SMOKE_TIMEOUT_S:-360}" "$PY" benchmarks/gpu_smoke.py "$@"
