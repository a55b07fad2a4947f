#!/usr/bin/env bash
# Reproduce the bundled model (AorticRootLandmarks/Resources/Models/phantom-glip) on a 2-core CPU, ~55 min + ~10 min
# of phantom generation. Usage: scripts/train_bundled_model.sh [WORK_DIR]   (default /tmp/aortic-root-bundled)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/aortic-root-bundled}
A=.venv/bin/aortic-root
$A phantom --out "$WORK/phantom-train" --n 100 --seed 0 --size full
# The paper's GLiP settings (sigma 1 mm, lambda 10, c = 1/sqrt(3), Adam 1e-3) on the default grid (1.6 mm,
# 128x128x80), one small U-Net per landmark (8->64 channels), 4-fold CV as in the paper. CPU budget: 10 epochs x 100
# steps of batch 1 per fold, not to convergence.
$A train "$WORK/phantom-train/manifest.csv" --out "$WORK/run" --folds 4 --epochs 10 --steps-per-epoch 100 \
  --batch-size 1 --features 8 16 32 64 --test-fraction 0.2 --seed 0 --threads 2 --name phantom-glip --force
mkdir -p AorticRootLandmarks/Resources/Models/phantom-glip
cp "$WORK/run/model/"* AorticRootLandmarks/Resources/Models/phantom-glip/
echo "model copied to AorticRootLandmarks/Resources/Models/phantom-glip; test evaluation: $WORK/run/test_evaluation"
