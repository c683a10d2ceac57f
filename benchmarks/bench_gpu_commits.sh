#!/bin/bash
# Compare commits on one GPU machine: the bare-loop rows of bench_gpu.py for each commit's
# tree, alternated, so a slow or fast spell of the machine falls on every commit.
#
#   benchmarks/bench_gpu_commits.sh prepare DIR NAME=COMMIT...  # here: one tree per commit
#   benchmarks/bench_gpu_commits.sh run DIR ROUNDS [OUTDIR]     # on the GPU machine
#
# `prepare` writes DIR/NAME (the Python packages of COMMIT); `run` runs every tree under DIR
# ROUNDS times in turn (vanilla, ANT 1x1 and ANT 3x3 at bf16 + channels_last, 30 steps) and
# writes OUTDIR/q<i>_<NAME>.json. DIR must travel with the working tree (e.g. an ignored
# folder named in the device tool's `carry`).
set -euo pipefail
cmd=$1 dir=$2
shift 2
case $cmd in
prepare)
  for pair in "$@"; do
    name=${pair%%=*} commit=${pair#*=}
    rm -rf "$dir/$name" && mkdir -p "$dir/$name"
    git archive "$commit" generators trainers benchmarks orchestrator evaluation tune_spaces |
      tar -x -C "$dir/$name"
  done
  ;;
run)
  rounds=$1 out=${2:-.}
  i=0
  for _ in $(seq "$rounds"); do
    for tree in "$dir"/*/; do
      name=$(basename "$tree") i=$((i + 1))
      echo "== $name"
      (cd "$tree" && PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" timeout 120 python3 \
        benchmarks/bench_gpu.py --modes vanilla,ant1x1,ant3x3 --precisions bf16 \
        --formats channels_last --orchestrator off --steps 30 --json "$out/q${i}_$name.json" |
        grep -E "ant|Command" || true)
    done
  done
  ;;
*) echo "usage: $0 prepare DIR NAME=COMMIT... | run DIR ROUNDS [OUTDIR]" >&2; exit 2 ;;
esac
