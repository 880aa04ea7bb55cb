#!/usr/bin/env bash
# Issues 13 and 16, session 35, on the H200 in one call per mode (results under $OUT or
# bench/results/h200_session22/MODE).
#   tok     early loads where they were not measured: the per-token-scale kernels (dense E4M3
#           "tok"; every paged 8-bit kernel), the next step's scale pairs used early too
#           (`early`) or left late as session 34's paged int8 had them (`early sc late`), back to
#           back (bench/diag_floors.ts); int8's loop with 16 lanes per token (half the registers
#           for its outputs) and at 128-token tiles and unroll 8, each with and without early
#           loads; then the 8-bit rows with their paged twins, the default against
#           `kernel: { earlyLoads: true }`, checked against float64; then the registers and
#           token loops of the per-token-scale kernels with and without early loads (SPIR-V from
#           `deno run -A --unstable-webgpu bench/dump_spirv.ts --out=.scratch/spv
#           --only=...`, carry .scratch); then the kernel options and 8-bit tests through Deno's
#           WebGPU.
#   pages, tensor, runs, half, half2: see each mode's block below.
# The device returns at most 8 files per call: run a mode into a folder and pack it, e.g.
#   mkdir -p $OUT/r; OUT=$OUT/r/MODE bash .gpu/boot.sh bash bench/h200_s35_session.sh MODE;
#   tar -czf $OUT/MODE.tgz -C $OUT/r MODE; rm -rf $OUT/r
# (carry .gpu; `tok` also .scratch, `pages` .scratch/base: this tree with no page-table entries in
# the early test, made by copying the tree's files there; keep the carry under 64 MiB).
set -u
mode=${1:-tok}
out=${OUT:-bench/results/h200_session22/$mode}
# shellcheck source=bench/session_lib.sh
source "$(dirname "$0")/session_lib.sh"
stamp "$mode"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$log"

if [ -x .scratch/bin/zstd ]; then
  export PATH="$PWD/.scratch/bin:$PATH" LD_LIBRARY_PATH="$PWD/.scratch/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

if [ "$mode" = tok ]; then
  run_deno 150 tok.txt bench/diag_floors.ts --stream-ms=2 \
    --variants='lean|early|early sc late|cached loads' \
    --bench-cases='gqa32/8 32k e4m3 tok|gqa32/8 128k e4m3 tok|gqa32/8 512k e4m3 tok' \
    --out="$out/tok.json"
  run_deno 200 int8.txt bench/diag_floors.ts --stream-ms=2 \
    --variants='lean|L16|L16 late|T128 U8|T128 U8 late' \
    --bench-cases='gqa32/8 32k int8|gqa32/8 128k int8|gqa32/8 512k int8|b16 16k int8' \
    --out="$out/int8.json"
  for run in plain early; do
    kernel=()
    [ "$run" = early ] && kernel=(--kernel='{"earlyLoads":true}')
    run_deno 200 "paged_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      --paged "${kernel[@]}" --only='int8|e4m3' --out="$out/paged_$run.json"
  done
  sass_of .scratch/spv/r4_d128_e4m3_tok*.spv .scratch/spv/r4_d128_int8*.spv
  run_backend_tests webgpu 150 tests_webgpu.log tests/kernel_options_test.ts \
    tests/kv8_decode_test.ts tests/kv8_cache_test.ts
  stamp "done"
fi

if [ "$mode" = pages ]; then
  # After `tok`: the paged kernels' page-table entries read ahead used early too (this tree)
  # against early loads of K, V and scale pairs alone (.scratch/base: this tree with no page
  # entries in the early test; carry .scratch), the 8-bit rows with their paged twins, checked,
  # back to back; then the kernel options, 8-bit, token-run and paged tests through Deno's WebGPU.
  for tree in new base; do
    dir=.
    if [ "$tree" = base ]; then dir=.scratch/base; fi
    (cd "$dir" && run_deno 200 "paged_$tree.txt" bench/gpu_bench.ts --backend=webgpu \
      --strategies=lean --check --paged --only='int8|e4m3' --out="$out/paged_$tree.json")
  done
  run_backend_tests webgpu 400 tests_webgpu.log tests/kernel_options_test.ts \
    tests/kv8_decode_test.ts tests/kv8_cache_test.ts tests/token_runs_test.ts
  stamp "done"
fi

if [ "$mode" = tensor ]; then
  # Paged 8-bit caches created with per-tensor scales (`kvScales: "tensor"`: the per-tensor
  # kernels, the layer's scale pair read from the scale table's first entry) against the dense
  # per-tensor kernels, the 8-bit rows checked against float64 (dense) and timed back to back;
  # the per-token-scale rows keep their per-token caches. Then the f16 GQA rows with their paged
  # twins (the same run's f16 baseline for the 8-bit ratios); then the 8-bit cache tests
  # through Deno's WebGPU.
  run_deno 200 paged8.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check --paged \
    --only='int8|e4m3|e5m2' --out="$out/paged8.json"
  run_deno 150 f16.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --paged \
    --only='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b16 16k' --skip='int8|e4m3|e5m2' \
    --out="$out/f16.json"
  run_backend_tests webgpu 200 tests_webgpu.log tests/kv8_tensor_cache_test.ts \
    tests/kv8_cache_test.ts tests/mla_cache_test.ts tests/paged_test.ts
  stamp "done"
fi

if [ "$mode" = runs ]; then
  # After `tensor`: what the per-tensor paged 8-bit kernels (5-10% over dense at 128k and 512k)
  # wait on: one page-table read per token of a step (the default r4 d128) against two per group
  # and step (`tokenRuns`, consecutive tokens per group: the dense kernels take that order too),
  # and early loads for E4M3 (the default for int8), each run checked (dense) and timed with
  # its paged twin, back to back.
  cases='gqa32/8 128k int8|gqa32/8 512k int8|b16 16k int8|gqa32/8 128k e4m3|gqa32/8 512k e4m3'
  for run in plain runs early runs_early; do
    kernel=()
    [ "$run" = runs ] && kernel=(--kernel='{"tokenRuns":true}')
    [ "$run" = early ] && kernel=(--kernel='{"earlyLoads":true}')
    [ "$run" = runs_early ] && kernel=(--kernel='{"tokenRuns":true,"earlyLoads":true}')
    run_deno 120 "$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      --paged "${kernel[@]}" --only="$cases" --skip='tok' --out="$out/$run.json"
  done
  stamp "done"
fi

if [ "$mode" = half ]; then
  # f16 keys in packed f16 (`halfMath`, 224 registers against the default's 254) with the next
  # step's loads issued early (one half of each part of its `KHalves` chunks used early), against
  # the default and `halfMath` alone, back to back (bench/diag_floors.ts); then the early-loads
  # bits test through Deno's WebGPU.
  run_deno 200 half.txt bench/diag_floors.ts --stream-ms=2 \
    --variants='lean|half math|half early' \
    --bench-cases='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b4 16k|b16 16k|qLen4 gqa 16k' \
    --out="$out/half.json"
  LEAN_TEST_BACKENDS=webgpu timeout 150 deno test -A --unstable-webgpu \
    tests/kernel_options_test.ts --filter='issued early' >"$out/tests_webgpu.log" 2>&1
  stamp "webgpu tests exit $? ($(grep -E '^(ok|FAILED) \|' "$out/tests_webgpu.log" | tail -1))"
  stamp "done"
fi

if [ "$mode" = half2 ]; then
  # After `half`: packed f16 keys with early loads by default (`kernel: { halfMath: true }`)
  # against the default kernels, the f16 GQA rows checked against float64 and timed back to back.
  for run in plain half; do
    kernel=()
    [ "$run" = half ] && kernel=(--kernel='{"halfMath":true}')
    run_deno 150 "rows_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      "${kernel[@]}" --only='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b4 16k|b16 16k|qLen4' \
      --skip='int8|e4m3|e5m2' --out="$out/rows_$run.json"
  done
  stamp "done"
fi
