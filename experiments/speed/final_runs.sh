#!/usr/bin/env bash
# The issue-16 measurements, one after another, each at nice 19 (the machine is shared):
# two consecutive `python -m slr.bench peer=keras` runs, the extraction table for num_workers
# 0/1/2 over real clips, then (information only) the peer bench with slr's default torch backbone.
#   experiments/speed/final_runs.sh OUT_DIR WLASL100_ROOT SPLIT_FILE WEIGHTS
set -euo pipefail
out=${1:?OUT_DIR}; root=${2:?WLASL100_ROOT}; split=${3:?SPLIT_FILE}; weights=${4:?WEIGHTS}
mkdir -p "$out"
stamp() { echo "== $1: $(date -u +%H:%M:%S) $(uptime)" | tee -a "$out/log.txt"; }
for run in 1 2; do
  stamp "bench run $run"
  nice -n 19 python -m slr.bench peer=keras hydra.run.dir="$out/bench$run" > "$out/bench$run.out" 2>&1
done
stamp "extraction"
nice -n 19 python experiments/speed/extract_workers.py --root "$root" --split-file "$split" \
  --weights "$weights" --out "$out/extract" > "$out/extract.out" 2>&1
stamp "bench, slr with runtime=torch (information)"
nice -n 19 python -m slr.bench peer=keras peer.implementations.slr.options.runtime=torch \
  hydra.run.dir="$out/bench_torch" > "$out/bench_torch.out" 2>&1
stamp "done"
