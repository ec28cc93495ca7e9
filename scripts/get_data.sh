#!/usr/bin/env bash
# Fetch offline data sets that kdistill's tests, demo and benchmarks use.
# Fashion-MNIST: Debian package dataset-fashion-mnist (IDX files in /usr/share/datasets/fashion-mnist).
set -u
dir=/usr/share/datasets/fashion-mnist
if [ -f "$dir/train-images-idx3-ubyte.gz" ]; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "Installing Fashion-MNIST (Debian package dataset-fashion-mnist)..."
  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } \
    || echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST tests and benchmarks need it."
else
  echo "note: Fashion-MNIST not found in $dir. Install it with 'sudo apt-get install dataset-fashion-mnist'," \
       "or put the four IDX .gz files in a folder and set data.root (KDISTILL_DATA)."
fi
exit 0
