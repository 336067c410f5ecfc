#!/usr/bin/env bash
# Paper-scale dense-vs-exact figures on a CUDA machine (issue 12, item 6).
# UNTESTED ON A GPU: written and smoke-tested on CPU only (see benchmarks/RESULTS.md).
# Run from the repository root with ../shared/{data,weights,reference} present:
#     bash benchmarks/gpu_paper_scale.sh            # ~5-10 min on one recent GPU (estimate)
# Writes benchmarks/results/dense/*_cuda*.json. Uses only the authors' splits 0-4.
set -euo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
OUT=benchmarks/results/dense
# 1. agreement: 2 pool images per split, 5 splits, 200 exact candidates per image, per dataset
timeout 420 python benchmarks/bench_dense.py agreement --device cuda --datasets ssTEM EM \
    --splits 0 1 2 3 4 --images-per-split 2 --candidates-per-image 200 --groups 1 4 \
    --out "$OUT/agreement_cuda.json"
# 2. whole pools of split 0, dense consistency (contrast_groups=4)
for ds in EM ssTEM; do
    timeout 120 python benchmarks/bench_dense.py pool --device cuda --datasets "$ds" --splits 0 \
        --groups 4 --out "$OUT/pool_${ds}_cuda.json"
done
