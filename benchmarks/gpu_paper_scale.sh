#!/usr/bin/env bash
# Paper-scale dense-vs-exact figures on a CUDA machine (issue 12, item 6).
# NOT YET RUN ON A GPU: no device was lent in issue 12's sessions; every step was run on the
# CPU at reduced scale (benchmarks/RESULTS.md). The timeouts add up to 590 s (< 10 min).
# Run from the repository root with ../shared/{data,weights,reference} present:
#     bash benchmarks/gpu_paper_scale.sh
# Writes benchmarks/results/dense/*_cuda*.json. Uses only the authors' splits 0-4.
set -euo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
OUT=benchmarks/results/dense
# 1. agreement: 2 pool images per split, 5 splits, 100 exact candidates per image, per dataset
timeout 180 python benchmarks/bench_dense.py agreement --device cuda --datasets ssTEM EM \
    --splits 0 1 2 3 4 --images-per-split 2 --candidates-per-image 100 --groups 1 4 \
    --out "$OUT/agreement_cuda.json"
# 2. whole pools of split 0, dense consistency (contrast_groups=4)
timeout 100 python benchmarks/bench_dense.py pool --device cuda --datasets EM --splits 0 \
    --groups 4 --out "$OUT/pool_EM_cuda.json"
timeout 40 python benchmarks/bench_dense.py pool --device cuda --datasets ssTEM --splits 0 \
    --groups 4 --out "$OUT/pool_ssTEM_cuda.json"
# 3. the paper's protocol, ssTEM split 0, 1 shot of 500 patches, 20 epochs at batch 64:
#    before (exact scoring, pre-issue-12 training step) and after (dense, today's)
timeout 120 python benchmarks/e2e_protocol.py e2e --device cuda --dataset ssTEM --splits 0 \
    --out "$OUT/e2e_ssTEM_cuda.json"
# 4. downstream mIoU, exact vs dense selection, same fine-tuning, paper scale, splits 0-2
timeout 150 python benchmarks/e2e_protocol.py downstream --device cuda --dataset ssTEM \
    --splits 0 1 2 --out "$OUT/downstream_ssTEM_cuda.json"
