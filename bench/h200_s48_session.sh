#!/usr/bin/env bash
# Session 48 on the H200: the matrix-unit kernel in the library (src/kernels/matrix_kernel.ts,
# opt-in `kernel: { matrixMath: true }`, Dawn's f16 subgroup matrices). Results under $OUT or
# bench/results/h200_session48/MODE:
#   matrix  tests/matrix_kernel_test.ts through Dawn (every block size, variants, ragged batches,
#           a runner's HND pages, against float64 within f16 tolerance), then lean through Dawn
#           with and without `matrixMath` on the many-row cases (bench/cases_rows.json and the
#           MQA rows of bench/cases.json), back to back after 400 ms of warm passes.
#   matrix2 the same after the compile probe for a caller's device (whose adapterInfo lacked the
#           matrix configurations in `matrix`, so the benchmark's decoders ran the default
#           kernels), without the default kernels' rows (as in `matrix`), and the matrix kernel on
#           the MQA and qLen 4 rows at fixed grids of 132, 264 and 528 workgroups.
#   matrix3 after `matrix2` found the kernel slower than the default ones: scores kept in
#           registers through the softmax (f16 weights only), the query matrices loaded without
#           a branch where one round stages every row, no barrier at the end of a plain tile,
#           and four subgroups per workgroup at every block size (at 16 and 32 rows they share
#           a block's tile: 64 and 32 tokens); the tests, the many-row cases, then blocks of at
#           most 32 rows (`matrixRows: 32`) at 132 workgroups, and qLen 4 at 528.
set -u
mode=${1:?usage: bash bench/h200_s48_session.sh matrix|matrix2|matrix3}
shift
out=${OUT:-bench/results/h200_session48/$mode}
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
stamp "$(nproc) cores, $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
# `rows_bench NAME KERNEL`: lean through Dawn on the many-row cases with a kernel tuning (JSON).
rows_bench() {
  local name=$1 kernel=$2
  run_deno 200 "bench_rows_$name.txt" bench/gpu_bench.ts --backend=dawn --strategies=lean \
    --cases=bench/cases_rows.json --kernel="$kernel" --check --out="$out/bench_rows_$name.json"
  run_deno 120 "bench_mqa_$name.txt" bench/gpu_bench.ts --backend=dawn --strategies=lean \
    --only="mqa h128/1" --kernel="$kernel" --check --out="$out/bench_mqa_$name.json"
}
case $mode in
matrix)
  run_backend_tests dawn 200 tests_dawn.txt tests/matrix_kernel_test.ts
  rows_bench matrix '{"matrixMath":true}'
  rows_bench default '{}'
  ;;
matrix2)
  run_backend_tests dawn 200 tests_dawn.txt tests/matrix_kernel_test.ts
  rows_bench matrix '{"matrixMath":true}'
  for grid in 132 264 528; do
    run_deno 120 "bench_grid$grid.txt" bench/gpu_bench.ts --backend=dawn --strategies=lean \
      --only="mqa h128/1|qLen4 gqa 16k" --kernel='{"matrixMath":true}' --grid=$grid \
      --out="$out/bench_grid$grid.json"
  done
  ;;
matrix3)
  run_backend_tests dawn 120 tests_dawn.txt tests/matrix_kernel_test.ts
  run_deno 200 bench_rows_matrix.txt bench/gpu_bench.ts --backend=dawn --strategies=lean \
    --cases=bench/cases_rows.json --kernel='{"matrixMath":true}' --check \
    --out="$out/bench_rows_matrix.json"
  run_deno 60 bench_r32_g132.txt bench/gpu_bench.ts --backend=dawn --strategies=lean \
    --cases=bench/cases_rows.json --only="mqa h128/1|qLen8 gqa 16k" \
    --kernel='{"matrixMath":true,"matrixRows":32}' --grid=132 --out="$out/bench_r32_g132.json"
  run_deno 40 bench_q4_g528.txt bench/gpu_bench.ts --backend=dawn --strategies=lean \
    --only="qLen4 gqa 16k" --kernel='{"matrixMath":true}' --grid=528 --out="$out/bench_q4_g528.json"
  ;;
*)
  echo "unknown mode $mode" >&2
  exit 2
  ;;
esac
