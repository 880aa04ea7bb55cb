#!/usr/bin/env bash
# Issues 13 and 16, session 27, on the H200 in one call per mode (results under $OUT or
# bench/results/h200_session14/MODE):
#   stats   what the NVIDIA driver makes of the decode kernels (registers, spills, as reported
#           by VK_KHR_pipeline_executable_properties through bench/vk_pipeline_stats.c, over the
#           SPIR-V of Deno's WebGPU and of Dawn dumped on lavapipe by bench/dump_spirv.ts into
#           .scratch/spv; the tool built into .scratch/ by `gcc -O2 -o .scratch/vk_pipeline_stats
#           bench/vk_pipeline_stats.c -lvulkan`; carry .scratch), then the pass floors back to
#           back (bench/diag_floors.ts --stream-ms=2 on the cases that miss issue 13's target:
#           lean, an empty decode dispatch with and without the merge dispatch, no token loop),
#           then the tiled class's grid on Dawn in three fresh processes (the MLA rows).
#   regs    the driver's statistics again (with session 27's register experiments dumped), then
#           those experiments timed (bench/diag_floors.ts variants, back to back) on GQA 32/8 32k
#           and 128k, b16 16k and int8 GQA 128k: workgroups of 256 and 512 threads (512 makes
#           the driver fit a thread in 128 registers), 16 lanes, query rows in workgroup memory
#           read again every step, tiles of 128 tokens; then the tiled class's grid on Dawn in
#           two fresh processes after its calibration became two sweeps (`sweeps: 2`). Ran at
#           commit 5d760bc: its 512-thread variants are gone since (the planner allows 256).
#   w64     workgroups of 64 threads against 128 on the GQA cases, back to back (session 19 had
#           found 64 threads 2-4% faster at GQA 32/8 2k-128k, 2% slower at b16 16k).
#   empty   the floors of `stats` again with a merge kernel that returns at once too ("empty
#           both": the least a pass of two dispatches takes, whatever its kernels). Lean first:
#           the first variant's kernels calibrate the process's grids (its first run, kept in
#           h200_session14/empty_uncalibrated, calibrated on the empty kernel: 1024-3840
#           workgroups).
#   final   packed f16 scores (tuning `halfMath`, Deno's WebGPU offers `shader-f16` on the H200)
#           against the default on the GQA, head-dim and qLen 4 cases, back to back; MLA b1 and
#           b8 on Dawn (two sweeps); the tiled kernel's GPU tests through Deno's WebGPU and Dawn.
#   mla     MLA b1 and b8 32k through Deno's WebGPU (lean), its grids with the tiled class's two
#           sweeps.
# Run: OUT=... bash .gpu/boot.sh bash bench/h200_s27_session.sh MODE
set -u
mode=${1:-stats}
out=${OUT:-bench/results/h200_session14/$mode}
# shellcheck source=bench/session_lib.sh
source "$(dirname "$0")/session_lib.sh"
stamp "$mode"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$log"

missed='b1 h32 16k|gqa32/8 32k|gqa32/8 128k|b4 16k|b16 16k|d64 32k|d256 32k|qLen4 gqa 16k'

# MLA through Dawn in $1 fresh processes (each calibrates the tiled class anew; the first also
# times the cases $2, the others b1 32k alone), their `tiled r64` grids into the log.
mla_grid_runs() {
  for i in $(seq 1 "$1"); do
    local only='mla b1 32k'
    if [ "$i" = 1 ]; then only=$2; fi
    run_deno 90 "mla_dawn_$i.txt" bench/gpu_bench.ts --backend=dawn --check --strategies=lean \
      --only="$only" --out="$out/mla_dawn_$i.json"
    grep -o '"tiled r64":[0-9]*' "$out/mla_dawn_$i.txt" | tee -a "$log"
  done
}

# The driver's statistics of every dumped kernel (NVIDIA's reports no internal representations).
pipeline_stats() {
  timeout 120 .scratch/vk_pipeline_stats .scratch/spv/*.spv >"$out/stats.txt" 2>&1
  stamp "exit $? (stats.txt)"
}

if [ "$mode" = stats ]; then
  pipeline_stats
  run_deno 240 floors.txt bench/diag_floors.ts --bench-cases="$missed" --stream-ms=2 \
    --variants='lean|empty decode|empty, no merge|no loop' --out="$out/floors.json"
  mla_grid_runs 3 'mla b1 32k|mla b8 32k'
  stamp "done"
fi

if [ "$mode" = regs ]; then
  pipeline_stats
  variants='lean|W256|W512|W512 L16|qs reload|L16 qs reload|W512 qs reload|W512 T128 qs reload'
  variants="$variants|W512 L16 T128|W512 L16 T128 qs reload"
  run_deno 330 regs.txt bench/diag_floors.ts --stream-ms=2 --variants="$variants" \
    --bench-cases='gqa32/8 32k|gqa32/8 128k|b16 16k|gqa32/8 128k int8' --out="$out/regs.json"
  mla_grid_runs 2 'mla b1 32k'
  stamp "done"
fi

if [ "$mode" = w64 ]; then
  cases='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b4 16k|b16 16k|b64 16k|qLen4 gqa 16k|d256 32k'
  run_deno 300 w64.txt bench/diag_floors.ts --stream-ms=2 --variants='lean|W64' \
    --bench-cases="$cases" --out="$out/w64.json"
  stamp "done"
fi

if [ "$mode" = empty ]; then
  run_deno 240 empty.txt bench/diag_floors.ts --bench-cases="$missed" --stream-ms=2 \
    --variants='lean|empty both|empty, no merge|empty decode' --out="$out/empty.json"
  stamp "done"
fi

if [ "$mode" = final ]; then
  run_deno 240 half.txt bench/diag_floors.ts --stream-ms=2 --variants='lean|half math' \
    --bench-cases='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b16 16k|qLen4 gqa 16k|d256 32k|d64 32k' \
    --out="$out/half.json"
  run_deno 120 mla_dawn.txt bench/gpu_bench.ts --backend=dawn --check --strategies=lean \
    --only='mla b1 32k|mla b8 32k' --out="$out/mla_dawn.json"
  grep -o '"tiled r64":[0-9]*' "$out/mla_dawn.txt" | tee -a "$log"
  LEAN_TEST_BACKENDS=cpu,webgpu,dawn timeout 200 deno test -A --unstable-webgpu \
    tests/tiled_test.ts >"$out/tests_tiled.log" 2>&1
  stamp "tests exit $? ($(grep -E '^(ok|FAILED) \|' "$out/tests_tiled.log" | tail -1))"
  stamp "done"
fi

if [ "$mode" = mla ]; then
  run_deno 150 mla_webgpu.txt bench/gpu_bench.ts --backend=webgpu --check --strategies=lean \
    --only='mla b1 32k|mla b8 32k' --out="$out/mla_webgpu.json"
  grep -o '"tiled r64":[0-9]*' "$out/mla_webgpu.txt" | tee -a "$log"
  stamp "done"
fi
