#!/usr/bin/env bash
# Session 51 on the H200, through Dawn. Results under $OUT or bench/results/h200_session51/MODE:
#   verify  the matrix kernel with session 50's explicit zero initializer of each piece's sums
#           (which only ran on lavapipe) and its K and V loads sharing one address (one
#           page-table read per load when paged, where two cases were 5-6% over dense): its
#           tests through Dawn (the real matrix units, and the emulated matrices of CI), the
#           many-row cases checked against float64 dense and paged, and the default kernels on
#           them, in one call.
#   kv8     the matrix kernel over 8-bit K/V (int8, FP8 E4M3 and E5M2 codes staged as their
#           values in f16; per-tensor and per-token scales): its tests through Dawn, the many-row
#           cases over 8-bit K/V (bench/cases_rows8.json) checked against float64 dense and paged,
#           the default kernels on them, and the f16 cases again (the same call's baseline).
#   recheck after `kv8` found paged E5M2 at 1.059x of dense (int8 of the same shape 1.030x): that
#           shape's int8 and E5M2 cases dense and paged, twice; and how many test processes the
#           suite runner (tests/run_suite.ts) starts here (1 on a hardware GPU), with its serial
#           path on one test file.
#   early   after `recheck` put the paged cost at a few microseconds a pass whatever the dtype: the
#           first tile's K/V loads (with their page-table reads) issued before the query rows are
#           staged instead of after; the many-row cases checked against float64, dense and paged,
#           f16 and the 8-bit cases of `recheck`'s shape and MQA int8.
set -u
mode=${1:?usage: bash bench/h200_s51_session.sh verify|kv8|recheck|early}
shift
out=${OUT:-bench/results/h200_session51/$mode}
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
stamp "$(nproc) cores, $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
case $mode in
verify)
  run_backend_tests dawn 200 tests_dawn.txt tests/matrix_kernel_test.ts tests/matrix_emulated_test.ts
  rows_bench 300 matrix '{"matrixMath":true}' --check --paged
  rows_bench 150 default '{}'
  ;;
kv8)
  run_backend_tests dawn 250 tests_dawn.txt tests/matrix_kernel_test.ts tests/matrix_emulated_test.ts
  rows_bench 200 matrix8 '{"matrixMath":true}' --check --paged --cases=bench/cases_rows8.json
  rows_bench 150 default8 '{}' --cases=bench/cases_rows8.json
  rows_bench 150 matrix '{"matrixMath":true}'
  ;;
recheck)
  for round in 1 2; do
    rows_bench 150 "matrix8_r$round" '{"matrixMath":true}' --paged --cases=bench/cases_rows8.json \
      --only="qLen4 gqa64/8 32k"
  done
  timeout 60 deno eval 'import { suiteJobs } from "./tests/run_suite.ts";
console.log(`suite processes here: ${await suiteJobs()}`);' >"$out/suite_jobs.txt" 2>&1
  stamp "$(cat "$out/suite_jobs.txt")"
  stamped_tests suite_serial.txt 120 deno task test tests/run_suite_test.ts
  ;;
early)
  rows_bench 200 matrix '{"matrixMath":true}' --check --paged
  rows_bench 150 matrix8 '{"matrixMath":true}' --check --paged --cases=bench/cases_rows8.json \
    --only="qLen4 gqa64/8 32k|mqa h128/1 b8 32k int8"
  ;;
*)
  echo "unknown mode $mode" >&2
  exit 2
  ;;
esac
