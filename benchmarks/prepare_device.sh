#!/usr/bin/env bash
# Stage what a lent GPU machine needs beside the repository (it cannot reach ../shared or PyPI):
# the real COCO-Stuff sample (all train images, the curated val images) and a faiss-cpu wheel,
# under .device/ (git-ignored); pass `carry: [".device"]` to the device tool.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${SRC:-../shared/data/cocostuff_mini}
DST=.device/cocostuff_mini
rm -rf "$DST"; mkdir -p "$DST"/images/val2017 "$DST"/annotations/val2017 .device/wheels
cp -r "$SRC"/images/train2017 "$DST"/images/; cp -r "$SRC"/annotations/train2017 "$DST"/annotations/
cp -r "$SRC"/curated "$DST"/; cp "$SRC"/fine_to_coarse_dict.pickle "$DST"/
for id in $(cat "$SRC"/curated/val2017/Coco164kFull_Stuff_Coarse_7.txt); do
  cp "$SRC/images/val2017/$id.jpg" "$DST/images/val2017/"; cp "$SRC/annotations/val2017/$id.png" "$DST/annotations/val2017/"
done
ls .device/wheels/faiss_cpu-*.whl >/dev/null 2>&1 || .venv/bin/pip download --quiet --no-deps --only-binary=:all: \
  --python-version 3.12 --platform manylinux_2_28_x86_64 faiss-cpu==1.15.1 -d .device/wheels
du -sh .device
