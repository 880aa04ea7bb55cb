#!/usr/bin/env bash
# Issue 16, session 33, on the H200 in one call per mode (results under $OUT or
# bench/results/h200_session20/MODE).
#   half    packed f16 arithmetic over 8-bit KV (`kernel: { halfMath: true }`: int8 and E4M3 keys
#           unpacked into f16 halves, V's weighted sums in f16 at per-tensor scales): the token
#           loop with and without it, its arithmetic alone (K/V rows from cache), its f16 sums
#           added into the f32 state every 1, 2, 4 (default) or 8 steps (bench/diag_floors.ts),
#           then every GQA 8-bit case and its f16 twin with it, checked against float64 and
#           timed back to back, then the kernel options tests through Deno's WebGPU.
#   half2   the same with its f16 sums added into the f32 state every step (the default since
#           `half`, where that was fastest): the token loop with and without it and its arithmetic
#           alone, then the GQA 8-bit cases and their f16 twins with the default kernels and with
#           packed f16, each checked against float64 and timed back to back in the same run.
#   int     int8 keys by packed integer dot products (`kernel: { intDots: true }`): the token loop
#           with and without them and their arithmetic alone, then the int8 rows with the default
#           kernels and with them, checked against float64 and timed back to back.
#   int2    int8 under packed f16 since integer dot products take its keys (V's weighted sums in
#           f16), against the default (integer keys, f32 V), checked and timed back to back; the
#           int8 rows through Dawn (its compiler's integer dot products) checked and timed; then
#           the kernel options, 8-bit and token-run tests through Deno's WebGPU.
#   final   the shipped kernels: int8 keys by integer dot products with power-of-two scales against
#           the f32 dot products (`f32 dots`), back to back; then every 8-bit case of the table and
#           its f16 twin with the default kernels, checked against float64 and timed.
#   regs    int8 with integer keys at twice the tokens per step, in the registers those keys free:
#           128-token tiles (unroll 8, whole or split prefetch), two row sets at unroll 8 (with
#           and without prefetch), unroll 8 without prefetch, against the default, back to back.
#   t128    the 8-bit rows with 128-token tiles (`--tile-tokens=128`: int8 at unroll 8 in the
#           registers integer keys free, `regs` mode's fastest at 128k-512k), checked against
#           float64 and timed back to back.
#   t128p   the int8 rows with 128-token tiles through the paged cache and the attention encoder
#           as well as dense (`--paged`), checked and timed: whether paged keeps within 5% there.
# Run: OUT=... bash .gpu/boot.sh bash bench/h200_s33_session.sh MODE
set -u
mode=${1:-half}
out=${OUT:-bench/results/h200_session20/$mode}
# shellcheck source=bench/session_lib.sh
source "$(dirname "$0")/session_lib.sh"
stamp "$mode"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$log"

if [ "$mode" = half ]; then
  run_deno 200 half.txt bench/diag_floors.ts --stream-ms=2 \
    --variants='lean|half math|cached loads|half cached|half s1|half s2|half s8' \
    --bench-cases='gqa32/8 128k int8|gqa32/8 128k e4m3|gqa32/8 128k' --out="$out/half.json"
  run_deno 240 half_check.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
    --kernel='{"halfMath":true}' --only='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b16 16k' \
    --skip='b16 16k int8 tok' --out="$out/half_check.json"
  run_backend_tests webgpu 120 tests_webgpu.log tests/kernel_options_test.ts
  stamp "done"
fi

if [ "$mode" = half2 ]; then
  run_deno 160 half2.txt bench/diag_floors.ts --stream-ms=2 \
    --variants='lean|half math|cached loads|half cached' \
    --bench-cases='gqa32/8 32k int8|gqa32/8 128k int8|gqa32/8 128k e4m3|gqa32/8 512k int8' \
    --out="$out/half2.json"
  for run in plain half; do
    kernel=()
    [ "$run" = half ] && kernel=(--kernel='{"halfMath":true}')
    run_deno 200 "rows_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      "${kernel[@]}" --only='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b16 16k' \
      --out="$out/rows_$run.json"
  done
  stamp "done"
fi

if [ "$mode" = int ]; then
  run_deno 150 int.txt bench/diag_floors.ts --stream-ms=2 \
    --variants='lean|int dots|cached loads|int cached' \
    --bench-cases='gqa32/8 32k int8|gqa32/8 128k int8|gqa32/8 512k int8|b16 16k int8' \
    --out="$out/int.json"
  for run in plain int; do
    kernel=()
    [ "$run" = int ] && kernel=(--kernel='{"intDots":true}')
    run_deno 150 "rows_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      "${kernel[@]}" --only='gqa32/8 128k|int8' --out="$out/rows_$run.json"
  done
  run_backend_tests webgpu 120 tests_webgpu.log tests/kernel_options_test.ts
  stamp "done"
fi

if [ "$mode" = int2 ]; then
  run_deno 120 int2.txt bench/diag_floors.ts --stream-ms=2 --variants='lean|half math|half cached' \
    --bench-cases='gqa32/8 32k int8|gqa32/8 128k int8|gqa32/8 512k int8|b16 16k int8' \
    --out="$out/int2.json"
  run_deno 150 rows_dawn.txt bench/gpu_bench.ts --backend=dawn --strategies=lean --check \
    --only='int8|gqa32/8 128k' --skip='e4m3|e5m2' --out="$out/rows_dawn.json"
  run_backend_tests webgpu 200 tests_webgpu.log tests/kernel_options_test.ts \
    tests/kv8_decode_test.ts tests/kv8_cache_test.ts tests/token_runs_test.ts
  stamp "done"
fi

if [ "$mode" = final ]; then
  run_deno 120 final_ab.txt bench/diag_floors.ts --stream-ms=2 --variants='lean|f32 dots' \
    --bench-cases='gqa32/8 32k int8|gqa32/8 128k int8|gqa32/8 512k int8|b16 16k int8' \
    --out="$out/final_ab.json"
  run_deno 240 rows.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
    --only='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b16 16k|b1 h32 128k' --out="$out/rows.json"
  stamp "done"
fi

if [ "$mode" = regs ]; then
  run_deno 240 regs.txt bench/diag_floors.ts --stream-ms=2 \
    --variants='lean|T128|T128 split|RS2 U8|RS2 U8 pf|U8 nopf' \
    --bench-cases='gqa32/8 32k int8|gqa32/8 128k int8|gqa32/8 512k int8|b16 16k int8' \
    --out="$out/regs.json"
  stamp "done"
fi

if [ "$mode" = t128 ]; then
  run_deno 200 t128.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
    --tile-tokens=128 --only='int8|e4m3' --out="$out/t128.json"
  stamp "done"
fi

if [ "$mode" = t128p ]; then
  run_deno 200 t128p.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check --paged \
    --tile-tokens=128 --only='int8' --out="$out/t128p.json"
  stamp "done"
fi
