#!/usr/bin/env bash
# One prepared run on a real GPU, for the minutes one is lent: build, the GPU
# tests, `check`, the copy floor, `bench --all-kernels --repeat 3 --json`
# (every kernel on every shape) and the autotuner's picks (`bench --tune-file`,
# which tunes and keeps the winners) and the grouped ops (GroupNorm,
# InstanceNorm, BatchNorm, LpNorm: `bench --ops …` on their own shapes),
# everything under one folder (9 files).
# Meant to finish in under 8 minutes on a GPU.
#
#   scripts/gpu-run.sh [FOLDER]          (default: $OUT/gpu-run if OUT is set, else ./gpu-run)
#
# SHAPES (comma-separated, e.g. SHAPES=8x512x768,64x64x64) limits the bench to
# those shapes, for a dry run on a software adapter.
set -uo pipefail
cd "$(dirname "$0")/.."
dir="${1:-${OUT:-.}/gpu-run}"
mkdir -p "$dir"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
shapes=()
[ -n "${SHAPES:-}" ] && shapes=(--shapes "$SHAPES")
start=$(date +%s)
stage() { echo "== $1 ($(($(date +%s) - start)) s)" | tee -a "$dir/run.log"; }

stage "machine"
{ uname -a; nproc; (nvidia-smi 2>/dev/null || true); } >> "$dir/run.log" 2>&1

stage "build"
cargo build --release >> "$dir/run.log" 2>&1 || { stage "build failed"; exit 1; }
bin=./target/release/wgpu-norm

stage "adapters"
"$bin" adapters --json > "$dir/adapters.json" 2>> "$dir/run.log"

stage "tests"
timeout 300 cargo test --release --test gpu > "$dir/tests.log" 2>&1
echo "tests exit $?" >> "$dir/run.log"

stage "check"
"$bin" check > "$dir/check.txt" 2>&1
echo "check exit $?" >> "$dir/run.log"

stage "copies"
"$bin" bench --copies --iters 20 --json "${shapes[@]}" > "$dir/copies.json" 2>> "$dir/run.log"

stage "bench, every kernel"
timeout 200 "$bin" bench --all-kernels --repeat 3 --iters 20 --json "${shapes[@]}" \
  > "$dir/bench-all.json" 2>> "$dir/run.log"
echo "bench exit $?" >> "$dir/run.log"

stage "bench, autotuned"
timeout 120 "$bin" bench --tune-file "$dir/tuned.json" --repeat 3 --iters 20 --json "${shapes[@]}" \
  > "$dir/bench-tuned.json" 2>> "$dir/run.log"
echo "bench exit $?" >> "$dir/run.log"

stage "bench, grouped ops"
grouped=group-norm,group-norm-backward,instance-norm,instance-norm-backward,batch-norm
grouped=$grouped,batch-norm-training,batch-norm-backward,lp-norm,lp-norm-backward
timeout 90 "$bin" bench --ops "$grouped" --repeat 3 --iters 20 --json "${shapes[@]}" \
  > "$dir/bench-grouped.json" 2>> "$dir/run.log"
echo "bench exit $?" >> "$dir/run.log"

stage "done"
