#!/usr/bin/env bash
# Issues 13 and 16, session 30, on the H200 in one call per mode (results under $OUT or
# bench/results/h200_session17/MODE):
#   check   after the masked steps took the unmasked steps' operations (session 29's row-scatter
#           test found different bits on the H200: its block-wide limits mask more steps, and
#           NVIDIA's compiler fused the sum's rescale into a multiply-add only in one kernel):
#           lean timed beside row scatter on every multi-row class (d64 and d256 too), both
#           checked against float64, then the kernel options and non-finite tests through Deno's
#           WebGPU and Dawn.
#   final   the GPU tests of the changed kernels through Deno's WebGPU, the committed kernels
#           timed (every f16 and 8-bit case, paged twins, checked), the tests through Dawn.
#   others  split and single on every f16 case with the same kernels (the table's other columns,
#           like for like with final's lean rows; merged by bench/merge_results.ts).
#   qst     (prepared, not run in session 30) query rows read once per workgroup into workgroup
#           memory (`queryStaged`) against every lane group reading them, on every multi-row
#           class and batch-1 MHA, checked against float64; then the kernel options test through
#           Dawn alone with LEAN_TEST_DAWN_GC=1 (its decoders collect garbage after each decode,
#           tests/backends.ts), to see whether that ends the stalls of session 30's runs.
# Run: OUT=... bash .gpu/boot.sh bash bench/h200_s30_session.sh MODE
set -u
mode=${1:-check}
out=${OUT:-bench/results/h200_session17/$mode}
# shellcheck source=bench/session_lib.sh
source "$(dirname "$0")/session_lib.sh"
stamp "$mode"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$log"

if [ "$mode" = check ]; then
  cases='gqa32/8 32k|gqa32/8 128k|b4 16k|b16 16k|d64 32k|d256 32k|qLen4 gqa 16k|gqa32/8 128k int8'
  run_deno 200 rsc.txt bench/diag_floors.ts --stream-ms=2 --variants='lean|rsc' \
    --bench-cases="$cases|b1 h32 128k" --out="$out/rsc.json"
  run_deno 90 rsc_check.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
    --kernel='{"rowScatter":true}' --only='d64 32k|d256 32k|gqa32/8 128k' --runs=5 \
    --out="$out/rsc_check.json"
  # One process per runtime, so a slow Dawn run cannot hide Deno's WebGPU failures' messages.
  for b in webgpu dawn; do
    run_backend_tests "$b" 150 "tests_$b.log" tests/kernel_options_test.ts tests/non_finite_test.ts
  done
  stamp "done"
fi

if [ "$mode" = final ]; then
  # The GPU tests of the changed kernels through Deno's WebGPU, every f16 and 8-bit case timed
  # with the committed kernels (row scatter on r4 d64 and r4 d256 too; paged twins; checked
  # against float64), then the same tests through Dawn.
  run_backend_tests webgpu 120 tests_webgpu.log tests/kernel_options_test.ts \
    tests/non_finite_test.ts
  anchors="--anchor=bench/results/h200_torch_sdpa.json --triton=bench/results/h200_triton.json"
  # shellcheck disable=SC2086
  run_deno 330 final.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check --paged \
    $anchors --skip='mla|mqa' --out="$out/final.json"
  run_backend_tests dawn 100 tests_dawn.log tests/kernel_options_test.ts
  stamp "done"
fi

if [ "$mode" = others ]; then
  anchors="--anchor=bench/results/h200_torch_sdpa.json --triton=bench/results/h200_triton.json"
  # shellcheck disable=SC2086
  run_deno 290 others.txt bench/gpu_bench.ts --backend=webgpu --strategies=split,single \
    $anchors --skip='mla|mqa|int8|e4m3|e5m2' --out="$out/others.json"
  stamp "done"
fi

if [ "$mode" = qst ]; then
  cases='b1 h32 16k|b1 h32 128k|gqa32/8 32k|gqa32/8 128k|b4 16k|b16 16k|d64 32k|d256 32k'
  run_deno 240 qst.txt bench/diag_floors.ts --stream-ms=2 --variants='lean|qst|regs|qst regs' \
    --bench-cases="$cases|qLen4 gqa 16k|gqa32/8 128k int8" --out="$out/qst.json"
  run_deno 90 qst_check.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
    --kernel='{"queryStaged":true}' --only='gqa32/8 128k|b1 h32 128k|qLen4' --runs=5 \
    --out="$out/qst_check.json"
  LEAN_TEST_DAWN_GC=1 run_backend_tests dawn 200 tests_dawn.log tests/kernel_options_test.ts
  stamp "done"
fi
