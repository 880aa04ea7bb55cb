#!/usr/bin/env bash
# Session 52 on the H200, through Dawn. Results under $OUT or bench/results/h200_session52/MODE:
#   wide   the matrix kernel at head dims above 128 (up to 256: blocks of 16 rows, 32-token
#          tiles, each tile's scores in two parts of the dims): its tests through Dawn (the real
#          matrix units, and the emulated matrices of CI at head dim 160), the d256/d192 cases
#          of bench/cases_rows256.json checked against float64 dense and paged, the default
#          kernels on them, the d128 many-row cases again (unchanged WGSL: a drift check), and
#          `cli bench --kv-dtype` (8-bit K/V from the command line) through Dawn (its 60 s limit
#          was too short: see `recheck`).
#   recheck after `wide` found paged/dense at 1.040-1.053x on the d256/d192 cases: the two d256
#          shapes of 16 rows per block over 32 tokens twice more, dense and paged; the README's
#          `cli bench --kv-dtype=fp8e4m3 --matrix-math` line with time to compile and calibrate,
#          and the default kernels' lean on the same cases beside it.
#   paged  after `recheck` put the paged cost at about 4.5 us a pass (up to 1.058x of dense): a
#          tile's token addresses read from the page table once each, by the tile's first T
#          threads, into workgroup memory, instead of by every staging load; the matrix tests
#          through Dawn (a runner's HND pages among them), and every many-row case (f16 d128,
#          8-bit, d192/d256) checked against float64 dense and paged.
#   paged2 the many-row cases that `paged`'s time limits cut (MQA and qLen 4 over GQA 64/8 over
#          f16, MQA over E4M3 with per-token scales), dense and paged, without the float64 check
#          (the same kernels passed it in `paged` and in the tests).
set -u
mode=${1:?usage: bash bench/h200_s52_session.sh wide|recheck|paged|paged2}
shift
out=${OUT:-bench/results/h200_session52/$mode}
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
stamp "$(nproc) cores, $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
case $mode in
wide)
  run_backend_tests dawn 240 tests_dawn.txt tests/matrix_kernel_test.ts tests/matrix_emulated_test.ts
  rows_bench 150 matrix256 '{"matrixMath":true}' --check --paged --cases=bench/cases_rows256.json
  rows_bench 120 default256 '{}' --cases=bench/cases_rows256.json
  rows_bench 100 matrix '{"matrixMath":true}'
  run_deno 60 cli_kv8.txt cli.ts bench --backend=dawn --q-len=4 --matrix-math --kv-dtype=fp8e4m3
  run_deno 60 cli_kv8_default.txt cli.ts bench --backend=dawn --q-len=4 --kv-dtype=fp8e4m3
  ;;
recheck)
  for round in 1 2; do
    rows_bench 100 "matrix256_r$round" '{"matrixMath":true}' --paged \
      --cases=bench/cases_rows256.json --only="qLen2 gqa16/2|qLen4 gqa32/8 d256"
  done
  run_deno 240 cli_kv8.txt cli.ts bench --backend=dawn --q-len=4 --matrix-math --kv-dtype=fp8e4m3
  run_deno 150 cli_kv8_default.txt cli.ts bench --backend=dawn --q-len=4 --kv-dtype=fp8e4m3 \
    --strategies=lean
  ;;
paged)
  run_backend_tests dawn 200 tests_dawn.txt tests/matrix_kernel_test.ts
  rows_bench 120 matrix '{"matrixMath":true}' --check --paged
  rows_bench 120 matrix8 '{"matrixMath":true}' --check --paged --cases=bench/cases_rows8.json
  rows_bench 120 matrix256 '{"matrixMath":true}' --check --paged --cases=bench/cases_rows256.json
  ;;
paged2)
  rows_bench 150 matrix '{"matrixMath":true}' --paged --only="qLen4 gqa64/8|mqa h128/1"
  rows_bench 90 matrix8 '{"matrixMath":true}' --paged --cases=bench/cases_rows8.json \
    --only="mqa h128/1 b8 32k e4m3"
  ;;
*)
  echo "unknown mode $mode" >&2
  exit 2
  ;;
esac
