#!/usr/bin/env bash
# Issues 13 and 16, session 36, on the H200 in one call per mode (results under $OUT or
# bench/results/h200_session22/MODE).
#   slices  page slices (`KernelSpec.pageSlices`, the new default for paged kernels whose pages
#           hold whole slices of a step's token groups) against one page read and page arithmetic
#           per token (`kernel: { pageSlices: false }`): the 8-bit rows with their paged twins
#           (paged caches with per-tensor scales where the row has them), checked against
#           float64 and timed back to back, then the f16 GQA rows with their paged twins; then the
#           registers and token loops of the paged 8-bit kernels with and without slices (SPIR-V
#           from `deno run -A --unstable-webgpu bench/dump_spirv.ts --out=.scratch/spv36
#           --only=...`, carry .scratch).
#   e4m3    per-tensor E4M3 paged with page slices and early loads (see the block below).
#   tests2  the page-slice tests (split prefetch added) through Deno's WebGPU and Dawn.
#   final   the 8-bit rows and their paged twins with the session's final defaults.
#   noearly the 8-bit rows and paged twins without early loads, and the kernels' machine code.
#   f16early the f16 GQA kernels at unroll 2 or 16 lanes, with and without early loads.
#   pages2  the paged 8-bit kernels with their page-table entries out of the early test.
#   tests   the paged GPU tests through Deno's WebGPU (page slices, paged caches and runner pages
#           in every dtype, token runs, MLA pages), then the kernel options and combinations.
# The device returns at most 8 files per call: run a mode into a folder and pack it, e.g.
#   mkdir -p $OUT/r; OUT=$OUT/r/MODE bash .gpu/boot.sh bash bench/h200_s36_session.sh MODE;
#   tar -czf $OUT/MODE.tgz -C $OUT/r MODE; rm -rf $OUT/r
set -u
mode=${1:-slices}
out=${OUT:-bench/results/h200_session22/$mode}
# shellcheck source=bench/session_lib.sh
source "$(dirname "$0")/session_lib.sh"
stamp "$mode"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$log"

if [ -x .scratch/bin/zstd ]; then
  export PATH="$PWD/.scratch/bin:$PATH" LD_LIBRARY_PATH="$PWD/.scratch/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

if [ "$mode" = slices ]; then
  for run in slices plain; do
    kernel=()
    [ "$run" = plain ] && kernel=(--kernel='{"pageSlices":false}')
    run_deno 200 "paged8_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      --paged "${kernel[@]}" --only='int8|e4m3|e5m2' --out="$out/paged8_$run.json"
  done
  for run in slices plain; do
    kernel=()
    [ "$run" = plain ] && kernel=(--kernel='{"pageSlices":false}')
    run_deno 150 "f16_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --paged \
      "${kernel[@]}" --only='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b16 16k|b1 h32 128k' \
      --skip='int8|e4m3|e5m2' --out="$out/f16_$run.json"
  done
  if [ -d .scratch/spv36 ]; then sass_of .scratch/spv36/*.spv; fi
  stamp "done"
fi

if [ "$mode" = e4m3 ]; then
  # After `slices`: the per-tensor E4M3 paged kernel, whose loads page slices sank to the end of
  # its loop (12% slower), with early loads too, against no slices, checked and timed back to
  # back; then its registers and token loop (.scratch/spv36, carry .scratch).
  cases='gqa32/8 32k e4m3|gqa32/8 128k e4m3|gqa32/8 512k e4m3'
  for run in early plain; do
    kernel=(--kernel='{"earlyLoads":true}')
    [ "$run" = plain ] && kernel=(--kernel='{"pageSlices":false}')
    run_deno 120 "e4m3_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      --paged "${kernel[@]}" --only="$cases" --skip='tok' --out="$out/e4m3_$run.json"
  done
  if [ -d .scratch/spv36 ]; then sass_of .scratch/spv36/*.spv; fi
  stamp "done"
fi

if [ "$mode" = final ]; then
  # The defaults at the end of the session: the 8-bit rows with their paged twins (slices for
  # 8-bit, early loads for per-tensor E4M3 with them), checked against float64, back to back.
  run_deno 200 paged8.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check --paged \
    --only='int8|e4m3|e5m2' --out="$out/paged8.json"
  stamp "done"
fi

if [ "$mode" = tests2 ]; then
  # The page-slice tests again (split prefetch added) through Deno's WebGPU, then through Dawn
  # with the per-tensor cache test.
  run_backend_tests webgpu 150 tests_webgpu.log tests/page_slices_test.ts
  run_backend_tests dawn 200 tests_dawn.log tests/page_slices_test.ts tests/kv8_tensor_cache_test.ts
  stamp "done"
fi

if [ "$mode" = noearly ]; then
  # After `final`: where the 4-row paged 8-bit kernels still lose 4-7% to dense with fewer than
  # 1.2% more instructions: the 8-bit rows with their paged twins without early loads (dense
  # too), checked and back to back; then the machine code of the dense and paged int8 and E4M3
  # kernels, each loop's full instruction mix (.scratch/spv36, carry .scratch), the SASS files
  # kept (sass.tgz).
  run_deno 200 paged8.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check --paged \
    --kernel='{"earlyLoads":false}' --only='int8|e4m3|e5m2' --out="$out/paged8.json"
  if [ -d .scratch/spv36 ]; then sass_of .scratch/spv36/*.spv; fi
  stamp "done"
fi

if [ "$mode" = f16early ]; then
  # The f16 GQA kernels (4-row d128, 255 registers, loads sunk to the loop's end; early loads
  # spilled at unroll 4 in session 28) with fewer registers for the data in flight, so early
  # loads fit: unroll 2, or 16 lanes per token (half the query and output registers), each with
  # and without early loads, against the default, checked and back to back.
  cases='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b4 16k|b16 16k'
  for run in plain u2 u2_early l16 l16_early; do
    kernel=()
    [ "$run" = u2 ] && kernel=(--kernel='{"unroll":2}')
    [ "$run" = u2_early ] && kernel=(--kernel='{"unroll":2,"earlyLoads":true}')
    [ "$run" = l16 ] && kernel=(--kernel='{"lanes":16}')
    [ "$run" = l16_early ] && kernel=(--kernel='{"lanes":16,"earlyLoads":true}')
    run_deno 100 "$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      "${kernel[@]}" --only="$cases" --skip='int8|e4m3|e5m2' --out="$out/$run.json"
  done
  stamp "done"
fi

if [ "$mode" = pages2 ]; then
  # After `noearly`: the paged 8-bit kernels with the page-table entries left out of the early
  # test (`kernel: { earlyPages: false }`) against the default, checked and back to back.
  for run in base eplate; do
    kernel=()
    [ "$run" = eplate ] && kernel=(--kernel='{"earlyPages":false}')
    run_deno 150 "paged8_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean \
      --check --paged "${kernel[@]}" --only='int8|e4m3' --out="$out/paged8_$run.json"
  done
  stamp "done"
fi

if [ "$mode" = tests ]; then
  run_backend_tests webgpu 280 tests_paged.log tests/page_slices_test.ts tests/paged_plans_test.ts tests/paged_gpu_test.ts \
    tests/kv8_cache_test.ts tests/kv8_cache_gpu_test.ts tests/kv8_tensor_cache_test.ts tests/runner_formats_test.ts \
    tests/token_runs_test.ts tests/mla_pages_test.ts
  run_backend_tests webgpu 250 tests_kernels.log tests/kernel_options_test.ts \
    tests/combinations_gpu_test.ts
  stamp "done"
fi
