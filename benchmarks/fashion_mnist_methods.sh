#!/usr/bin/env bash
# Issue 3 benchmark: every method on Fashion-MNIST with the benchmark teacher and student, 3 seeds.
# Needs the teacher of benchmarks/fashion_mnist_kd.py (runs/bench-fmnist/teacher/student.safetensors).
# Weights: the papers' (or CRD's benchmark code's) loss weights.
# small: alpha = 0.1 weighs the hard-label loss (Hinton's KD setting) for every method.
# full: alpha = 0.5, so that CE : method = 1 : weight, the ratio of the papers' and CRD's benchmark code
#       (cross-entropy weight 1 plus beta * the method's loss). Logit-only rows share one teacher cache,
#       kept in runs/fmnist-teacher-cache for later compares; --resume continues an interrupted run.
#   bash benchmarks/fashion_mnist_methods.sh small   # 10% of the training set, 6 epochs (the published table)
#   bash benchmarks/fashion_mnist_methods.sh full    # the full training set, 4 epochs (~1.5 h on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
METHODS="kd,dkd,dist,lskd,fitnet=100,at=1000,sp=3000,rkd,pkt=30000,crd=0.8,nst=50,kd+at=1000"
BEST_PAIR="dist+dkd"  # the two best single methods of the full-data table, combined
case "${1:-small}" in
  small) exec .venv/bin/kdistill compare configs/fashion_mnist_methods.yaml --methods "$METHODS" --seeds 0,1,2 \
           --name compare-fmnist-10pct --set data.train_fraction=0.1 --set trainer.epochs=6 --overwrite ;;
  full)  exec .venv/bin/kdistill compare configs/fashion_mnist_methods.yaml --methods "$METHODS,$BEST_PAIR" --seeds 0,1,2 \
           --name compare-fmnist-full --set trainer.epochs=4 --set distill.alpha=0.5 \
           --cache-dir runs/fmnist-teacher-cache "${@:2}" ;;
  *) echo "usage: $0 small|full" >&2; exit 2 ;;
esac
