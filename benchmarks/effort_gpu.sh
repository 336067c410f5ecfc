#!/usr/bin/env bash
# benchmarks/effort.py on a lent GPU machine (one NVIDIA GPU, 16 cores), from the repository
# root, with the bundle parts (effort.py pack) in .device/effort1 .device/effort2, earlier
# records in .device/prev and the skorch wheel in .whl/ (the machine has no skorch and no
# network). Records go to .device/out/runs (kept while the machine stays up) and to
# $OUT/results.jsonl, the log to $OUT/log.txt.
#     bash benchmarks/effort_gpu.sh SECONDS WORKERS [PHASE ...]
# SECONDS: stop starting runs after this; running ones finish (<= 30 s more).
# DEVICE (default cuda) and EXTRA (more `effort.py run` arguments, e.g. "--smoke") from the
# environment; a CPU check of this script: OUT=/tmp/o DEVICE=cpu EXTRA=--smoke bash ...
set -uo pipefail
seconds=${1:-300}
workers=${2:-14}
shift 2
phases=${*:-1 2 3}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 KWTL_THREADS=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, skorch, sklearn; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'skorch', skorch.__version__, 'sklearn', sklearn.__version__)"
ls -d .device/* 2>/dev/null | tr '\n' ' '; echo
mkdir -p .device/out .device/prev
parts=$(ls -d .device/effort[0-9]* 2>/dev/null)
# selections the bundle lacks are made here first (skipped when the plan has them all)
python3 benchmarks/effort.py prepare --bundle $parts --out .device/out --device "${DEVICE:-cuda}" \
    --tf32 --workers 8 --targets ssTEM EM 2>&1 | grep -v Warning | tail -n 20
python3 benchmarks/effort.py run --bundle $parts --out .device/out --previous .device/prev \
    --device "${DEVICE:-cuda}" --tf32 --workers "$workers" --seconds "$seconds" \
    --phases $phases --jsonl "$OUT/results.jsonl" --log "$OUT/log.txt" ${EXTRA:-}
(cd .device/out && tar czf "$OUT/selections.tgz" selections 2>/dev/null)
echo "records kept on the machine: $(ls .device/out/runs 2>/dev/null | wc -l)"
