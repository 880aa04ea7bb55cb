#!/usr/bin/env bash
# Issues 13 and 16, session 38, on the H200 in one call per mode (results under $OUT or
# bench/results/h200_session24/MODE).
#   quads   paged per-tensor E4M3 (GQA 32/8, 16-token pages) reading a step's four page-table
#           entries as one aligned 16-byte word (`kernel: { pageQuads: true }`, commit ff9c179;
#           reverted after this run: within 0.7%), with the entries
#           out of the early test (the default) and in it, against one read per entry, each
#           checked against float64, with the dense kernel in the same run; then the 1-row dense
#           E4M3 kernel (MHA b1 h32 128k) with the per-step NaN test, early loads and its rows'
#           base read ahead, against its default; then the page-quad and page-slice tests through
#           Deno's WebGPU.
#   mha     the 1-row dense E4M3 kernel (MHA b1 h32 128k) at fixed grids (264-528): its default,
#           early loads with its rows' base read ahead (per-word NaN test, and per step), early
#           loads alone, each checked against float64; the paged twin beside the default.
#   final   after `mha`, the session's defaults (the 1-row dense E4M3 kernel at per-tensor scales
#           with the per-step test, its base read ahead and early loads): the E4M3 rows with
#           their paged twins, checked and back to back; MHA E4M3 at fixed grids; the 1-row
#           kernels' registers and loops (SPIR-V from `deno run -A --unstable-webgpu
#           bench/dump_spirv.ts --out=.scratch/spv38 --only=...`, carry .scratch/spv38,
#           .scratch/vk_pipeline_stats, .scratch/bin, .scratch/lib); the NaN-step and 8-bit
#           decode tests through Deno's WebGPU and the NaN-step tests through Dawn.
#   grids   after `final`, 8-bit kernel classes calibrated with their own kernels on first use
#           (src/gpu/kv_class_grids.ts): the 8-bit rows with their paged twins at the grids the
#           decoder now picks, checked and back to back; the class-grid, NaN-step and 8-bit
#           decode tests through Deno's WebGPU.
#   sweep   after `grids`, where MHA E5M2 took its own class grid (352) and ran 9% slower than at
#           the f16 class's (502): the calibration probe's time at every size for 1- and 4-row
#           d128 classes of each dtype (bench/calibration_sweep.ts); MHA E5M2 at fixed grids; the
#           1-row kernels' registers (.scratch/spv38, as `final`).
#   grids2  after `sweep`, 8-bit classes taking the size before their probe's largest step up to
#           the f16 class's grid: the calibration sweep again (with the grids by that rule), the
#           8-bit rows with their paged twins, checked and back to back; the class-grid tests
#           through Deno's WebGPU.
#   unroll  after `grids2`: MHA E4M3 and E5M2 (1-row d128) at 2 and 3 tokens per group and step
#           instead of 8-bit's 4 (fewer registers, more workgroups resident), each at its own
#           calibrated class grid, checked, with the defaults in the same run.
#   unroll2 the same after E5M2 at 2 tokens per step calibrated to 128 by the step alone: the
#           step's size never below the 1.5x rule's; then the calibration sweep.
#   ptune   paged per-tensor E4M3 (GQA 32/8 128k, where paged is 1.05x of dense) under tunings
#           the kernel choice does not try by default (V per token, shared query rows, no row
#           scatter, split prefetch, two shuffle groups, vec4 dot products, the per-word NaN
#           test, token runs), dense beside it, each checked.
# The device returns at most 8 files per call: run a mode into a folder and pack it, e.g.
#   mkdir -p $OUT/r; OUT=$OUT/r/MODE bash .gpu/boot.sh bash bench/h200_s38_session.sh MODE;
#   tar -czf $OUT/MODE.tgz -C $OUT/r MODE; rm -rf $OUT/r
set -u
mode=${1:-quads}
out=${OUT:-bench/results/h200_session24/$mode}
# shellcheck source=bench/session_lib.sh
source "$(dirname "$0")/session_lib.sh"
stamp "$mode"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$log"

if [ "$mode" = quads ]; then
  for run in base quads quads_ep base2 quads2; do
    case $run in
      base*) kernel=() ;;
      quads_ep) kernel=(--kernel='{"pageQuads":true,"earlyPages":true}') ;;
      quads*) kernel=(--kernel='{"pageQuads":true}') ;;
    esac
    run_deno 90 "e4m3_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      --paged "${kernel[@]}" --only='e4m3' --skip='tok|b1 h32' --out="$out/e4m3_$run.json"
  done
  for run in base nans_ahead ahead; do
    case $run in
      base) kernel=() ;;
      nans_ahead) kernel=(--kernel='{"nanSteps":true,"baseAhead":true,"earlyLoads":true}') ;;
      ahead) kernel=(--kernel='{"baseAhead":true,"earlyLoads":true}') ;;
    esac
    run_deno 60 "mha_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      "${kernel[@]}" --only='b1 h32 128k e4m3' --out="$out/mha_$run.json"
  done
  run_backend_tests webgpu 100 tests_webgpu.log tests/page_quads_test.ts tests/page_slices_test.ts
  stamp "done"
fi

if [ "$mode" = mha ]; then
  for grid in 264 352 396 480 528; do
    for run in base ahead nans_ahead nans_early; do
      paged=()
      case $run in
        base) kernel=() paged=(--paged) ;;
        ahead) kernel=(--kernel='{"baseAhead":true,"earlyLoads":true}') ;;
        nans_ahead) kernel=(--kernel='{"nanSteps":true,"baseAhead":true,"earlyLoads":true}') ;;
        nans_early) kernel=(--kernel='{"nanSteps":true,"earlyLoads":true}') ;;
      esac
      case "$run:$grid" in nans_*:264 | nans_*:396 | nans_*:528) continue ;; esac
      run_deno 60 "mha_${run}_$grid.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean \
        --check --grid="$grid" "${paged[@]}" "${kernel[@]}" --only='b1 h32 128k e4m3' \
        --out="$out/mha_${run}_$grid.json"
    done
  done
  stamp "done"
fi

if [ "$mode" = final ]; then
  run_deno 150 e4m3.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check --paged \
    --only='e4m3' --out="$out/e4m3.json"
  for grid in 256 384 512; do
    run_deno 60 "mha_$grid.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      --paged --grid="$grid" --only='b1 h32 128k e4m3' --out="$out/mha_$grid.json"
  done
  if [ -d .scratch/spv38 ]; then sass_of .scratch/spv38/*.spv; fi
  run_backend_tests webgpu 150 tests_webgpu.log tests/nan_steps_test.ts tests/kv8_decode_test.ts
  run_backend_tests dawn 60 tests_dawn.log tests/nan_steps_test.ts
  stamp "done"
fi

if [ "$mode" = grids ]; then
  run_deno 280 kv8.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check --paged \
    --only='int8|e4m3|e5m2' --out="$out/kv8.json"
  run_backend_tests webgpu 150 tests_webgpu.log tests/kv_class_grids_test.ts \
    tests/nan_steps_test.ts tests/kv8_decode_test.ts
  stamp "done"
fi

if [ "$mode" = sweep ]; then
  run_deno 200 sweep.txt bench/calibration_sweep.ts --out="$out/sweep.json"
  for grid in 352 396 448 502; do
    run_deno 60 "e5m2_$grid.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      --grid="$grid" --only='b1 h32 128k e5m2' --out="$out/e5m2_$grid.json"
  done
  if [ -d .scratch/spv38 ]; then sass_of .scratch/spv38/*.spv; fi
  stamp "done"
fi

if [ "$mode" = grids2 ]; then
  run_deno 200 sweep.txt bench/calibration_sweep.ts --out="$out/sweep.json"
  run_deno 280 kv8.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check --paged \
    --only='int8|e4m3|e5m2' --out="$out/kv8.json"
  run_backend_tests webgpu 100 tests_webgpu.log tests/kv_class_grids_test.ts
  stamp "done"
fi

if [ "$mode" = unroll ] || [ "$mode" = unroll2 ]; then
  for run in base u2 u3; do
    kernel=()
    case $run in
      u2) kernel=(--kernel='{"unroll":2}') ;;
      u3) kernel=(--kernel='{"unroll":3}') ;;
    esac
    run_deno 90 "mha_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      --paged "${kernel[@]}" --only='b1 h32 128k e' --out="$out/mha_$run.json"
  done
  if [ "$mode" = unroll2 ]; then
    run_deno 200 sweep.txt bench/calibration_sweep.ts --out="$out/sweep.json"
  fi
  stamp "done"
fi

if [ "$mode" = ptune ]; then
  for run in base vpt qs norsc pfs sgm2 vec4 word runs; do
    case $run in
      base) kernel=() ;;
      vpt) kernel=(--kernel='{"vPerToken":true}') ;;
      qs) kernel=(--kernel='{"queryShared":true}') ;;
      norsc) kernel=(--kernel='{"rowScatter":false}') ;;
      pfs) kernel=(--kernel='{"prefetch":"split"}') ;;
      sgm2) kernel=(--kernel='{"shuffleGroups":2}') ;;
      vec4) kernel=(--kernel='{"fmaDots":false}') ;;
      word) kernel=(--kernel='{"nanSteps":false}') ;;
      runs) kernel=(--kernel='{"tokenRuns":true}') ;;
    esac
    run_deno 45 "e4m3_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      --paged "${kernel[@]}" --only='gqa32/8 128k e4m3' --skip='tok' --out="$out/e4m3_$run.json"
  done
  stamp "done"
fi
