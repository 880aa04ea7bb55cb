#!/usr/bin/env bash
# Issues 13 and 16, session 39, on the H200 in one call per mode (results under $OUT or
# bench/results/h200_session25/MODE).
#   t128    the dense 4-row 8-bit kernels (GQA 32/8 int8 and E4M3, b16 16k int8) at the
#           planner's 64-token tiles and at 128-token tiles (`--tile-tokens=128`, where the
#           8-bit table's unroll of 8 takes effect), alternating twice, each checked against
#           float64, back to back; the kernels' registers and loops (SPIR-V from `deno run -A
#           --unstable-webgpu bench/dump_spirv.ts --out=.scratch/spv39
#           --only='r4_d128_int8|r4_d128_int8_t128|r4_d128_e4m3|r4_d128_e4m3_t128'`, carry
#           .scratch/spv39, .scratch/vk_pipeline_stats, .scratch/bin, .scratch/lib).
# The device returns at most 8 files per call: run a mode into a folder and pack it, e.g.
#   mkdir -p $OUT/r; OUT=$OUT/r/MODE bash .gpu/boot.sh bash bench/h200_s39_session.sh MODE;
#   tar -czf $OUT/MODE.tgz -C $OUT/r MODE; rm -rf $OUT/r
set -u
mode=${1:-t128}
out=${OUT:-bench/results/h200_session25/$mode}
# shellcheck source=bench/session_lib.sh
source "$(dirname "$0")/session_lib.sh"
stamp "$mode"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$log"

if [ "$mode" = t128 ]; then
  for run in t64 t128 t64b t128b; do
    tiles=()
    case $run in t128*) tiles=(--tile-tokens=128) ;; esac
    run_deno 150 "kv8_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      "${tiles[@]}" --only='k int8|k e4m3' --skip='tok|b1 h32' --out="$out/kv8_$run.json"
  done
  if [ -d .scratch/spv39 ]; then sass_of .scratch/spv39/*.spv; fi
  stamp "done"
fi
