#!/usr/bin/env bash
# Issue 13, session 20, on the H200 in one call per mode:
#   remeasure  the floors diagnostic (bench/diag_floors.ts: what a pass costs besides streaming),
#              every case on Dawn (all strategies, each case's kernel checked against float64
#              first), and lean with its paged twin (`--paged`: a KVCache of 16-token pages and
#              the attention encoder) on Deno's WebGPU, which also times lean under its own
#              name on the b64 cases.
# Results under $OUT (default bench/results/h200_session7): session.log and one file per step.
# On the device machine: bash .gpu/boot.sh bash bench/h200_remeasure_session.sh remeasure
set -u
out=${OUT:-bench/results/h200_session7}
# shellcheck source=bench/session_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/session_lib.sh"
anchors="--anchor=bench/results/h200_torch_sdpa.json --triton=bench/results/h200_triton.json"
mode=${1:-remeasure}
stamp "$mode"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | tee -a "$log"

if [ "$mode" = remeasure ]; then
  run_deno 120 diag_floors.txt bench/diag_floors.ts --out="$out/diag_floors.json"
  run_deno 260 bench_dawn.txt bench/gpu_bench.ts --backend=dawn --check $anchors \
    --out="$out/h200_dawn.json"
  run_deno 200 bench_paged.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --paged \
    $anchors --out="$out/h200_paged.json"
  stamp "done"
fi
