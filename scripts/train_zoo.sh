#!/usr/bin/env bash
# The exact commands that produced the shipped Fashion-MNIST checkpoints in assets/models/
# (NAME.pt = plain float32 state dict, NAME.json = model card with the measured numbers).
# Needs Fashion-MNIST: apt-get install dataset-fashion-mnist. Runs one training at a time on one
# CPU thread (faster than two on a shared, busy 2-core machine); about an hour of CPU in all there.
# Usage: scripts/train_zoo.sh [OUT_DIR]   (default: assets/models)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-assets/models}"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
COMMON=(--dataset fashion-mnist --seed 0 --threads 1 --eval-eps 0:0.3:0.03 --pgd-n 500 --out-dir "$OUT")

# The evaluation subset (3,000 official test images, 300 per class); deterministic (seed 0).
[ -f assets/fashion-mnist/test-subset.npz ] || "$PY" -c "from advcore import datasets; datasets.make_subset()"

"$PY" -m advcore train --recipe standard --epochs 2 --name fmnist-naive "${COMMON[@]}"
"$PY" -m advcore train --recipe fgsm --strengths 0.1 --epochs 2 --name fmnist-fgsm "${COMMON[@]}"
# Mixed MAT, full size; strengths chosen by the random walk over 0.05..0.3 from quick single-strength
# models (10,000 images, 1 epoch each, FGSM-evaluated on 1,000 validation images).
"$PY" -m advcore train --recipe mat-mixed --strengths auto --grid 0.05:0.3:0.05 --penalty 0.005 \
    --matrix-images 10000 --epochs 2 --name fmnist-mat-mixed "${COMMON[@]}"
# Parallel MAT: the random walk over the same accuracy matrix (read back from the mixed MAT card), one
# sub-network per chosen strength. Penalty 0.002 instead of 0.005: on our matrix 0.005 keeps two strengths
# (0.05, 0.3) and the issue asked for S=3; 0.002 gives 0.05, 0.2, 0.3 (also the best 3-set by exhaustive search).
"$PY" -m advcore train --recipe mat-parallel --strengths auto --grid 0.05:0.3:0.05 --penalty 0.002 \
    --matrix-from "$OUT/fmnist-mat-mixed.json" --epochs 2 --name fmnist-mat-parallel "${COMMON[@]}"
"$PY" -m advcore train --recipe pgd --strengths 0.1 --pgd-steps 7 --epochs 1 --name fmnist-pgd "${COMMON[@]}"
# The Defense lab's models: the same network and settings as fmnist-naive, trained on Floyd-Steinberg
# halftones only, or on every batch plus its halftones (the paper's hybrid); both halftone their input at
# inference (their cards say so, and advcore.models.load wraps them).
"$PY" -m advcore train --recipe standard --input halftone --halftone floyd-steinberg --epochs 2 --name fmnist-halftone \
    "${COMMON[@]}"
"$PY" -m advcore train --recipe standard --input hybrid --halftone floyd-steinberg --epochs 2 --name fmnist-hybrid \
    "${COMMON[@]}"
