#!/usr/bin/env bash
# Spark resource discovery script for NVIDIA GPUs: prints the GPUs this node (or container)
# can use, as Spark's ResourceInformation JSON, e.g. {"name": "gpu", "addresses": ["0", "1"]}.
#
# Spark runs it when an executor starts (spark.executor.resource.gpu.discoveryScript), or on a
# standalone worker (spark.worker.resource.gpu.discoveryScript), and hands each task the
# addresses it assigned to it; Candid pins the task's Python worker to them
# (CUDA_VISIBLE_DEVICES, udfs/engines/gpu.py). The wheel installs this file as bin/getGpusResources.sh,
# so a packed environment (make dist; --archives ...#environment) has it at
# ./environment/bin/getGpusResources.sh, which is where conf/spark/gpu-cluster.yaml points.
#
# The addresses are nvidia-smi's GPU indices. nvidia-smi lists the GPUs the container was given
# (YARN and Kubernetes isolate them), so the indices are the ones CUDA_VISIBLE_DEVICES takes.
set -euo pipefail

if ! indices=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>&1); then
  echo "getGpusResources.sh: nvidia-smi failed: ${indices}" >&2
  exit 1
fi
addresses=""
for index in ${indices}; do
  addresses="${addresses:+${addresses}, }\"${index}\""
done
echo "{\"name\": \"gpu\", \"addresses\": [${addresses}]}"
