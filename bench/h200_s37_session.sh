#!/usr/bin/env bash
# Issues 13 and 16, session 37, on the H200 in one call per mode (results under $OUT or
# bench/results/h200_session23/MODE).
#   nans    FP8 E4M3 with one NaN-code test per step for K and one for V (`kernel: { nanSteps:
#           true }`) against a test per word: the E4M3 rows with their paged twins, checked
#           against float64 and timed back to back; then the kernels' registers and token loops
#           (SPIR-V from `deno run -A --unstable-webgpu bench/dump_spirv.ts --out=.scratch/spv37
#           --only=...`, carry .scratch/spv37 and .scratch/vk_pipeline_stats).
#   nans2   after `nans`: E4M3 with `nanSteps` and early loads for every kernel, for none, or
#           without the page-table entries in the early test, checked and back to back; MHA
#           E4M3 (b1 h32 128k) with and without `nanSteps`; then the machine code (.scratch/spv37).
#   nans3   after `nans2`: dense kernels reading the rows past a piece's end instead of clamping
#           each token (`unclampedRows`, removed after this run: no faster): E4M3 with `nanSteps`, early loads off for both, or on
#           for both without the paged kernel's page-table entries; then f16 and int8 GQA dense
#           with and without it; then the machine code (.scratch/spv37).
#   dense   after `final`, where the paged E4M3 kernels beat dense ones by 8-16%: dense E4M3
#           kernels with `nanSteps` and split prefetch, and the 1-row one with early loads at the
#           default kernel's grid (502), against the defaults, checked and back to back.
#   ahead   dense kernels addressing the next step's rows from the piece's first row read from
#           the schedule a step ahead (`baseAhead`, as paged kernels read their pages): E4M3
#           with early loads (and without), int8 and f16 GQA, checked and back to back.
#   final   the session's defaults (one NaN test per step for 4-row E4M3 kernels and 1-row paged
#           ones, with their early-load defaults): the 8-bit rows with their paged twins, checked
#           and back to back; the paged E4M3 kernel's machine code (.scratch/spv37); then the
#           8-bit tests through Deno's WebGPU, and the NaN-step tests through Dawn.
#   final2  after `ahead`, the session's last defaults (the 4-row dense per-tensor E4M3 kernel with
#           its base read ahead and early loads, the 1-row dense one with early loads): the E4M3
#           rows with their paged twins, checked and back to back; the dense kernels' machine
#           code (.scratch/spv37); the NaN-step and 8-bit decode tests through Deno's WebGPU and
#           the NaN-step tests through Dawn.
# The device returns at most 8 files per call: run a mode into a folder and pack it, e.g.
#   mkdir -p $OUT/r; OUT=$OUT/r/MODE bash .gpu/boot.sh bash bench/h200_s37_session.sh MODE;
#   tar -czf $OUT/MODE.tgz -C $OUT/r MODE; rm -rf $OUT/r
set -u
mode=${1:-nans}
out=${OUT:-bench/results/h200_session23/$mode}
# shellcheck source=bench/session_lib.sh
source "$(dirname "$0")/session_lib.sh"
stamp "$mode"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$log"

if [ -x .scratch/bin/zstd ]; then
  export PATH="$PWD/.scratch/bin:$PATH" LD_LIBRARY_PATH="$PWD/.scratch/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

if [ "$mode" = nans ]; then
  for run in base nans base2 nans2; do
    kernel=()
    case $run in nans*) kernel=(--kernel='{"nanSteps":true}') ;; esac
    run_deno 150 "e4m3_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      --paged "${kernel[@]}" --only='e4m3' --out="$out/e4m3_$run.json"
  done
  if [ -d .scratch/spv37 ]; then sass_of .scratch/spv37/*.spv; fi
  stamp "done"
fi

if [ "$mode" = nans2 ]; then
  for run in nans early late eplate base; do
    case $run in
      nans) kernel=(--kernel='{"nanSteps":true}') ;;
      early) kernel=(--kernel='{"nanSteps":true,"earlyLoads":true}') ;;
      late) kernel=(--kernel='{"nanSteps":true,"earlyLoads":false}') ;;
      eplate) kernel=(--kernel='{"nanSteps":true,"earlyPages":false}') ;;
      base) kernel=() ;;
    esac
    run_deno 150 "e4m3_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      --paged "${kernel[@]}" --only='e4m3' --out="$out/e4m3_$run.json"
  done
  if [ -d .scratch/spv37 ]; then sass_of .scratch/spv37/*.spv; fi
  stamp "done"
fi

if [ "$mode" = nans3 ]; then
  for run in late late_unclamped early_unclamped; do
    case $run in
      late) kernel=(--kernel='{"nanSteps":true,"earlyLoads":false}') ;;
      late_unclamped) kernel=(--kernel='{"nanSteps":true,"earlyLoads":false,"unclampedRows":true}') ;;
      early_unclamped)
        kernel=(--kernel='{"nanSteps":true,"earlyLoads":true,"earlyPages":false,"unclampedRows":true}') ;;
    esac
    run_deno 150 "e4m3_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      --paged "${kernel[@]}" --only='e4m3' --out="$out/e4m3_$run.json"
  done
  for run in base unclamped; do
    kernel=()
    [ "$run" = unclamped ] && kernel=(--kernel='{"unclampedRows":true}')
    run_deno 150 "gqa_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      "${kernel[@]}" --only='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b4 16k|b16 16k' \
      --skip='e4m3|e5m2' --out="$out/gqa_$run.json"
  done
  if [ -d .scratch/spv37 ]; then sass_of .scratch/spv37/*.spv; fi
  stamp "done"
fi

if [ "$mode" = final ]; then
  run_deno 200 paged8.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check --paged \
    --only='int8|e4m3|e5m2' --out="$out/paged8.json"
  if [ -d .scratch/spv37 ]; then sass_of .scratch/spv37/*.spv; fi
  run_backend_tests webgpu 240 tests_webgpu.log tests/nan_steps_test.ts tests/kv8_decode_test.ts \
    tests/kv8_tensor_cache_test.ts tests/page_slices_test.ts tests/kv8_cache_test.ts tests/kv8_cache_gpu_test.ts \
    tests/kernel_options_test.ts
  run_backend_tests dawn 100 tests_dawn.log tests/nan_steps_test.ts
  stamp "done"
fi

if [ "$mode" = dense ]; then
  for run in base split; do
    kernel=()
    [ "$run" = split ] && kernel=(--kernel='{"nanSteps":true,"prefetch":"split"}')
    run_deno 100 "e4m3_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      "${kernel[@]}" --only='e4m3' --out="$out/e4m3_$run.json"
  done
  for run in base early; do
    kernel=()
    [ "$run" = early ] && kernel=(--kernel='{"nanSteps":true,"earlyLoads":true}')
    run_deno 60 "mha_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      --grid=502 "${kernel[@]}" --only='b1 h32 128k e4m3' --out="$out/mha_$run.json"
  done
  stamp "done"
fi

if [ "$mode" = ahead ]; then
  for run in early ahead_early ahead; do
    case $run in
      early) kernel=(--kernel='{"earlyLoads":true}') ;;
      ahead_early) kernel=(--kernel='{"baseAhead":true,"earlyLoads":true}') ;;
      ahead) kernel=(--kernel='{"baseAhead":true}') ;;
    esac
    run_deno 100 "e4m3_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      "${kernel[@]}" --only='e4m3' --out="$out/e4m3_$run.json"
  done
  for run in base ahead; do
    kernel=()
    [ "$run" = ahead ] && kernel=(--kernel='{"baseAhead":true}')
    run_deno 100 "gqa_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      "${kernel[@]}" --only='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b16 16k' --skip='e4m3|e5m2' \
      --out="$out/gqa_$run.json"
  done
  stamp "done"
fi

if [ "$mode" = final2 ]; then
  run_deno 120 e4m3.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check --paged \
    --only='e4m3' --out="$out/e4m3.json"
  if [ -d .scratch/spv37 ]; then sass_of .scratch/spv37/*.spv; fi
  run_backend_tests webgpu 120 tests_webgpu.log tests/nan_steps_test.ts tests/kv8_decode_test.ts
  run_backend_tests dawn 60 tests_dawn.log tests/nan_steps_test.ts
  stamp "done"
fi
