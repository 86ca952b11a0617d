#!/usr/bin/env bash
# The prepared GPU check (issue 14): one command on a lent GPU machine, a dry run on a CPU.
#   bash bench/gpu_check.sh            # on the GPU machine: installs, then measures
#   bash bench/gpu_check.sh --dry-run  # here, on the CPU: the same steps, tiny
# Prints JSON lines: bf16 + channels_last training throughput of resnet50 and densenet121 at
# 224 px (anchors: ~2,470 img/s ResNet-50 AMP on an A100, 914 img/s DenseNet-121 on an RTX 3090),
# and the streaming feeder's rate against N-process PNG decoding.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-/tmp}
if [[ "${1:-}" == "--dry-run" ]]; then
  PY=.venv/bin/python
  $PY -m bench.gpu_throughput --device cpu --size 64 --batch-size 4 --steps 2 --warmup 1
  $PY -m bench.bench_feeder --exams 200 --size 64 --workers 2 --epochs 1
  exit 0
fi
# The GPU machine is offline: its own torch is used, radsim goes in without dependencies, and
# any other missing package must travel as a wheel (PYTHONPATH may point at them).
if ! $PY -c "import radsim" 2>/dev/null; then
  $PY -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tail -2 || true
fi
$PY -c "import radsim, torch, webdataset, pyarrow, numpy" || { echo "gpu_check: missing packages (above)" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -m bench.gpu_throughput --device cuda --size 224 --batch-size 128 --steps 30 | tee "$OUT/gpu_throughput.jsonl"
CORES=$(nproc)
$PY -m bench.bench_feeder --exams 3000 --size 256 --workers $(( CORES > 8 ? 8 : CORES )) --json "$OUT/feeder.json"
