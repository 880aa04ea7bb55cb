#!/usr/bin/env bash
# Session 41 on the H200, one call per mode (results under $OUT or bench/results/h200_session27/MODE):
#   tiled   many query rows per KV head at head dim 128 (bench/cases_rows.json: qLen 2-8 over
#           GQA groups, MQA h128/1): the decode kernel's row blocks (calibrated grid) against the
#           tiled kernel's matrix blocks (`LEAN_X_TILED_MIN=64`, an experiment's switch that lets
#           head dims from 64 take them) at grids 132, 264, 528 and 1056, each checked against
#           float64, back to back.
set -u
mode=${1:?usage: bash bench/h200_s41_session.sh tiled}
shift
out=${OUT:-bench/results/h200_session27/$mode}
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
rows() { # FILE ARGS...
  local file=$1
  shift
  run_deno 200 "$file" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
    --cases=bench/cases_rows.json --out="$out/${file%.txt}.json" "$@"
}
case $mode in
  tiled)
    rows base.txt
    for g in 132 264 528 1056; do
      (export LEAN_X_TILED_MIN=64; rows "tiled_g$g.txt" --grid=$g)
    done
    rows base2.txt
    ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
