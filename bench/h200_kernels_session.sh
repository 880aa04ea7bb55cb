#!/usr/bin/env bash
# Issue 13, session 19, on the H200 in one call per mode:
#   sweep  the kernel sweep of bench/tune_configs_split.json (split prefetch: the next K requested
#          after this step's dot products, the next V after its update; query rows in workgroup
#          memory; 4-16 lanes, unroll 2-8, row sets; MLA's class), the table picked from it
#          (bench/pick_table.ts), then lean with that table, each case's kernel checked against
#          the float64 reference, on the multi-row, 8-bit and MLA cases.
#   half   packed f16 dot products (halfMath): the kernel-option tests, and a sweep of
#          bench/tune_configs_half.json beside the table's f32 kernels.
#   final  the GPU tests of this session's code, every case on Deno's WebGPU (all strategies),
#          and the multi-row cases with packed f16 dot products.
# Results under $OUT (default bench/results/h200_session6): session.log and one file per step.
# On the device machine: bash .gpu/boot.sh bash bench/h200_kernels_session.sh sweep|final
set -u
out=${OUT:-bench/results/h200_session6}
# shellcheck source=bench/session_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/session_lib.sh"
anchors="--anchor=bench/results/h200_torch_sdpa.json --triton=bench/results/h200_triton.json"
stamp "${1:-sweep}"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | tee -a "$log"

if [ "${1:-sweep}" = sweep ]; then
  sweep_and_pick split 270 bench/tune_configs_split.json \
    'b1 h32 128k,gqa32/8 32k,gqa32/8 128k,b16 16k,d64 32k,d256 32k,qLen4 gqa 16k,gqa32/8 128k int8,gqa32/8 128k e4m3,mqa h128/1 b1 32k,mla b1 32k'
  run_deno 200 bench_split.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
    $table $anchors --only='gqa32|b16 16k|b64 16k|d64|d256|qLen4|ragged|mla b1|mqa h128/1 b1|b1 h32 128k|e5m2' \
    --out="$out/h200_split.json"
  stamp "done"
  exit 0
fi

if [ "${1:-sweep}" = half ]; then
  # Packed f16 dot products (KernelTuning.halfMath): the kernel-option tests on the H200, then
  # the sweep of bench/tune_configs_half.json beside the table's f32 kernels.
  LEAN_TEST_BACKENDS=cpu,webgpu,dawn timeout 100 deno test -A --unstable-webgpu \
    tests/kernel_options_test.ts tests/shaders_test.ts >"$out/tests_half.log" 2>&1
  stamp "tests exit $? ($(grep -E '^(ok|FAILED) \|' "$out/tests_half.log" | tail -1))"
  run_deno 280 tune_half.txt bench/tune.ts --out="$out/tune_half.json" \
    --configs="$(cat bench/tune_configs_half.json)" \
    --cases='b1 h32 128k,gqa32/8 32k,gqa32/8 128k,gqa32/8 512k,b16 16k,d64 32k,d256 32k,qLen4 gqa 16k,mqa h128/1 b1 32k,mla b1 32k'
  stamp "done"
  exit 0
fi

# final: the GPU tests of this session's code on the H200 (kernel options, MLA pages, decode,
# ragged batches), every case of bench/cases.json on Deno's WebGPU (all strategies, each case's
# kernel checked against float64 first; the new table entries, lean's aligned cut and the merge
# change all show here), then the multi-row cases with packed f16 dot products (lean, checked at
# f16's tolerance).
LEAN_TEST_BACKENDS=cpu,webgpu timeout 80 deno test -A --unstable-webgpu \
  tests/kernel_options_test.ts tests/mla_pages_test.ts tests/decode_test.ts \
  tests/batches_test.ts >"$out/tests_final.log" 2>&1
stamp "tests exit $? ($(grep -E '^(ok|FAILED) \|' "$out/tests_final.log" | tail -1))"
run_deno 240 bench_webgpu.txt bench/gpu_bench.ts --backend=webgpu --check $anchors \
  --skip='int8|e4m3|e5m2|mla|mqa' --out="$out/h200_webgpu.json"
run_deno 90 bench_kv8_mla.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
  --only='int8|e4m3|e5m2|mla|mqa' --out="$out/h200_kv8_mla.json"
run_deno 70 bench_half.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
  --kernel='{"halfMath":true}' $anchors \
  --only='gqa32/8 8k|gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b16 16k|b64 16k|d64|d256|qLen4|mla b1 32k|mqa h128/1 b1' \
  --skip='int8|e4m3|mha|bf16' --out="$out/h200_half.json"
stamp "done"
