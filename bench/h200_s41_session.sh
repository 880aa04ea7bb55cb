#!/usr/bin/env bash
# Session 41 on the H200, one call per mode (results under $OUT or bench/results/h200_session27/MODE):
#   tiled   many query rows per KV head at head dim 128 (bench/cases_rows.json: qLen 2-8 over
#           GQA groups, MQA h128/1): the decode kernel's row blocks (calibrated grid) against the
#           tiled kernel's matrix blocks (`LEAN_X_TILED_MIN=64`, an experiment's switch that lets
#           head dims from 64 take them) at grids 132, 264, 528 and 1056, each checked against
#           float64, back to back.
#   rows16  the same cases with blocks of 16 rows (`LEAN_X_ROWS=16`, an experiment's switch for
#           the planner's most rows per block, 8) in four row sets of 4 rows per thread
#           (`--kernel='{"rowSets":4}'`), so each K and V chunk is read once for 16 rows instead of
#           once per block of 8, at the calibrated grid and at 264 and 528, against the defaults,
#           each checked against float64, back to back.
#   dawngc  after the test suite's Dawn collector (tests/dawn_collector.ts: a full garbage
#           collection every 200 ms while a Dawn device is open, where gc is exposed): the kernel
#           options, decode, cache-model and tiled tests through Dawn with `--v8-flags=--expose-gc`
#           (exhaustive shapes), once with the harness's fixed Dawn grid and once calibrating every
#           decoder (`LEAN_TEST_DAWN_GRID=calibrate`, where Dawn under `deno test` stalled in
#           sessions 30-32), each file in its own process; then the decode-loop example (after its
#           model moved to examples/toy_model.ts) at the large shape through both runtimes.
set -u
mode=${1:?usage: bash bench/h200_s41_session.sh tiled|rows16|dawngc}
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
  rows16)
    rows base.txt
    (export LEAN_X_ROWS=16; rows r16_cal.txt --kernel='{"rowSets":4}')
    (export LEAN_X_ROWS=16; rows r16_g264.txt --kernel='{"rowSets":4}' --grid=264)
    (export LEAN_X_ROWS=16; rows r16_g528.txt --kernel='{"rowSets":4}' --grid=528)
    rows base2.txt
    ;;
  dawngc)
    export LEAN_TEST_EXHAUSTIVE=1
    for f in kernel_options_test decode_test cache_model_test tiled_test; do
      LEAN_TEST_BACKENDS=dawn timeout 60 deno test -A --unstable-webgpu --v8-flags=--expose-gc \
        "tests/$f.ts" >"$out/$f.txt" 2>&1
      stamp "dawn $f exit $? ($(grep -E '^(ok|FAILED) \|' "$out/$f.txt" | tail -1))"
    done
    for f in kernel_options_test decode_test; do
      LEAN_TEST_DAWN_GRID=calibrate LEAN_TEST_BACKENDS=dawn timeout 60 deno test -A \
        --unstable-webgpu --v8-flags=--expose-gc "tests/$f.ts" >"$out/${f}_cal.txt" 2>&1
      stamp "dawn calibrating $f exit $? ($(grep -E '^(ok|FAILED) \|' "$out/${f}_cal.txt" | tail -1))"
    done
    for b in webgpu dawn; do
      timeout 60 deno run -A --unstable-webgpu --v8-flags=--expose-gc examples/decode_loop.ts \
        --backend "$b" --large --gc 2>&1 | tr '\r' '\n' | grep -v -E '^\[[#.]+\]|^Warning' \
        >"$out/decode_loop_$b.txt"
      stamp "decode loop $b exit ${PIPESTATUS[0]}"
    done
    ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
