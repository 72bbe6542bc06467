#!/usr/bin/env bash
# The GPU suite: RobotSeg (512/1024 px, fp32/bf16, eager/compiled), SAM 3, diffusion
# backgrounds and the whole pipeline with RobotSeg on one CUDA GPU, in under 8 minutes,
# into one JSON file (benchmarks/results/gpu_suite.json, or --out FILE).
#
#   bash benchmarks/gpu_suite.sh                         # on a machine with a CUDA GPU
#   bash benchmarks/gpu_suite.sh --dry-run --out /tmp/gpu.json   # CPU, tiny models: checks the suite
#   bash benchmarks/gpu_suite.sh --help                  # weights, caps, sizes
#
# Exit status 0 when every section measured without error, 1 otherwise (the JSON says which).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then python="$repo/.venv/bin/python"; else python="$(command -v python3)"; fi
fi
export NO_ALBUMENTATIONS_UPDATE=1   # albumentations would ask PyPI for updates on import
export PYTHONUNBUFFERED=1
cd "$repo"
# The driver caps each section and the total (470 s; dry run 840 s); the outer timeout only guards the driver itself.
exec timeout --signal=TERM --kill-after=15 1200 "$python" benchmarks/gpu_suite.py "$@"
