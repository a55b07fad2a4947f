#!/usr/bin/env bash
# Reproduce the bundled model (AorticRootLandmarks/Resources/Models/phantom-glip) on a 2-core CPU: the localizer
# (~4 min of phantoms + ~12 min of training) and the landmark model (~10 min of phantoms + ~55 min of training).
# Usage: scripts/train_bundled_model.sh [WORK_DIR]   (default /tmp/aortic-root-bundled)
#
# The landmark model in the repository was trained with phantom version 1 (one random stream per case); version 2
# (one stream per part) draws other cases from seed 0, so a rerun trains on different phantoms (same distribution).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/aortic-root-bundled}
A=.venv/bin/aortic-root
# 1. The localizer: 60 'train'-style phantoms (fields of view 150-450 mm, root anywhere, varied sampling and contrast),
#    a 5.2 mm grid of 96^3 voxels, 2 folds x 40 epochs, large translations (the --stage localizer defaults).
$A phantom --out "$WORK/phantom-localizer" --n 60 --seed 100 --style train
$A train "$WORK/phantom-localizer/manifest.csv" --out "$WORK/localizer" --stage localizer --epochs 40 --seed 0 \
  --threads 2 --force
# 2. The landmark model: the paper's GLiP settings (sigma 1 mm, lambda 10, c = 1/sqrt(3), Adam 1e-3) on the default
#    grid (1.6 mm, 128x128x80), one small U-Net per landmark (8->64 channels), 4-fold CV as in the paper. CPU budget:
#    10 epochs x 100 steps of batch 1 per fold, not to convergence. The localizer ships inside the exported model.
$A phantom --out "$WORK/phantom-train" --n 100 --seed 0 --size full
$A train "$WORK/phantom-train/manifest.csv" --out "$WORK/run" --folds 4 --epochs 10 --steps-per-epoch 100 \
  --batch-size 1 --features 8 16 32 64 --test-fraction 0.2 --seed 0 --threads 2 --name phantom-glip \
  --localizer "$WORK/localizer" --force
rm -rf AorticRootLandmarks/Resources/Models/phantom-glip/localizer
mkdir -p AorticRootLandmarks/Resources/Models/phantom-glip
cp -r "$WORK/run/model/"* AorticRootLandmarks/Resources/Models/phantom-glip/
echo "model copied to AorticRootLandmarks/Resources/Models/phantom-glip; test evaluation: $WORK/run/test_evaluation"
