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
#   runs    paged per-tensor E4M3 (GQA 32/8 at 32k, 128k, 512k, pages of 16), where paged is 1.05x
#           of dense: token runs (each group's four tokens of a step consecutive) with early
#           loads, their page-table entries in the early test and not, with one page-table read
#           per group and step (`alignedRuns`, new: no run crosses a page) and with two (as
#           session 28's runs), the dense kernel with runs beside each, against the defaults;
#           then d64 32k and d256 32k (f16, runs by default) paged with one read per group and
#           step and with two; each checked against float64, back to back; then the token-run,
#           page-slice and paged tests through Deno's WebGPU.
#   final   after `runs`, the session's defaults (4-row per-tensor E4M3 kernels with token runs,
#           dense and paged, paged ones with early loads and one page-table read per group and
#           step): the GQA E4M3 rows with their paged twins, checked, back to back; d64 32k and
#           d256 32k (f16 runs) with theirs; the token-run, page-slice, NaN-step, per-tensor
#           cache and paged tests through Deno's WebGPU (exhaustive on the H200), and the
#           token-run tests through Dawn.
#   table   after `final`: every GQA 32/8, b16 16k and b1 h32 128k row (f16, int8, E4M3, E5M2)
#           with its paged twin, checked, back to back: the 8-bit rows beside f16's in one run.
#   f16     GQA 32/8 f16 at 32k, 128k, 512k (128k at 88.8% of its roofline, the target 90%): lean at
#           grids 248, 256 (32 equal pieces per KV head at 128k, where 264 cuts 62-63 tiles) and
#           the calibrated 264, and with token runs, each checked, back to back, twice.
#   tok     after `final`: E4M3 with a scale per token (GQA 32/8 "tok" rows, paged through the
#           cache's per-token tables) and int8 at per-tensor scales, with token runs (paged ones
#           one page-table read per group and step), with and without early loads, against the
#           defaults, each checked, back to back.
#   final2  after `tok`, the session's last defaults (4-row E4M3 kernels with token runs at either
#           scale mode; paged with a scale per token with early loads): the GQA E4M3 rows (both
#           scale modes) with their paged twins, checked, back to back, twice; the token-run,
#           NaN-step, page-slice and per-tensor cache tests through Deno's WebGPU (exhaustive)
#           and the token-run tests through Dawn.
#   checked after `final2`, with the benchmark's paged check (bench/bench_check.ts: `--check` now
#           runs the paged kernel on the shortened input against float64 too): the 8-bit rows
#           (both scale modes), MHA E4M3 and E5M2, d64 32k and d256 32k, with their paged twins,
#           back to back.
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

if [ "$mode" = runs ]; then
  for run in base runs_early runs_early_ep runs_two; do
    case $run in
      base) kernel=() ;;
      runs_early) kernel=(--kernel='{"tokenRuns":true,"earlyLoads":true,"earlyPages":false}') ;;
      runs_early_ep) kernel=(--kernel='{"tokenRuns":true,"earlyLoads":true}') ;;
      runs_two) kernel=(--kernel='{"tokenRuns":true,"earlyLoads":true,"earlyPages":false,"alignedRuns":false}') ;;
    esac
    run_deno 120 "e4m3_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      --paged "${kernel[@]}" --only='k e4m3' --skip='tok|b1 h32' --out="$out/e4m3_$run.json"
  done
  for run in aligned two; do
    kernel=()
    case $run in two) kernel=(--kernel='{"alignedRuns":false}') ;; esac
    run_deno 90 "f16_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      --paged "${kernel[@]}" --only='d64 32k|d256 32k' --out="$out/f16_$run.json"
  done
  run_backend_tests webgpu 150 tests_webgpu.log tests/token_runs_test.ts \
    tests/page_slices_test.ts tests/paged_plans_test.ts tests/paged_gpu_test.ts
  stamp "done"
fi

if [ "$mode" = final ]; then
  run_deno 150 e4m3.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check --paged \
    --only='k e4m3' --skip='b1 h32' --out="$out/e4m3.json"
  run_deno 90 f16.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check --paged \
    --only='d64 32k|d256 32k' --out="$out/f16.json"
  run_backend_tests webgpu 200 tests_webgpu.log tests/token_runs_test.ts \
    tests/page_slices_test.ts tests/nan_steps_test.ts tests/kv8_tensor_cache_test.ts \
    tests/paged_plans_test.ts tests/paged_gpu_test.ts
  run_backend_tests dawn 90 tests_dawn.log tests/token_runs_test.ts
  stamp "done"
fi

if [ "$mode" = table ]; then
  run_deno 400 rows.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check --paged \
    --only='gqa32/8|b16 16k|b1 h32 128k' --out="$out/rows.json"
  stamp "done"
fi

if [ "$mode" = f16 ]; then
  for run in base g256 g248 runs base2 g256b; do
    opts=()
    case $run in
      g256*) opts=(--grid=256) ;;
      g248) opts=(--grid=248) ;;
      runs) opts=(--kernel='{"tokenRuns":true}') ;;
    esac
    run_deno 90 "gqa_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      "${opts[@]}" --only='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k' --skip='int8|e4m3' \
      --out="$out/gqa_$run.json"
  done
  stamp "done"
fi

if [ "$mode" = tok ]; then
  for run in base runs runs_early; do
    case $run in
      base) kernel=() ;;
      runs) kernel=(--kernel='{"tokenRuns":true}') ;;
      runs_early) kernel=(--kernel='{"tokenRuns":true,"earlyLoads":true}') ;;
    esac
    run_deno 120 "kv8_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      --paged "${kernel[@]}" --only='e4m3 tok|k int8' --skip='b1 h32' --out="$out/kv8_$run.json"
  done
  stamp "done"
fi

if [ "$mode" = final2 ]; then
  for run in a b; do
    run_deno 150 "e4m3_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      --paged --only='k e4m3' --skip='b1 h32' --out="$out/e4m3_$run.json"
  done
  run_backend_tests webgpu 200 tests_webgpu.log tests/token_runs_test.ts \
    tests/nan_steps_test.ts tests/page_slices_test.ts tests/kv8_tensor_cache_test.ts
  run_backend_tests dawn 90 tests_dawn.log tests/token_runs_test.ts
  stamp "done"
fi

if [ "$mode" = checked ]; then
  run_deno 400 rows.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check --paged \
    --only='k int8|k e4m3|b1 h32 128k e|d64 32k|d256 32k' --out="$out/rows.json"
  stamp "done"
fi
