#!/usr/bin/env bash
# Issues 13 and 16, session 31, on the H200 in one call per mode (results under $OUT or
# bench/results/h200_session18/MODE). Session 31's first call was session 30's prepared `qst`
# mode (`bash bench/h200_s30_session.sh qst`, results in bench/results/h200_session18/qst).
#   dawn    where a Dawn decoder under Deno stops making progress: the kernel options test's
#           steps one by one, stamped, with a garbage collection after 20 s of waiting
#           (bench/dawn_stall_probe.ts); then lean on Dawn over every f16 and 8-bit case with
#           the committed kernels, checked against float64 (the Dawn table was session 26's).
#   dawn2   the kernel options test through Dawn with every decoder step stamped
#           (LEAN_TEST_TRACE=1, tests/backends.ts: which step a stall waits in); lean on Dawn over
#           the 8-bit rows `dawn` did not reach; split and single on Dawn over every f16 case.
#   trace   the kernel options test through Dawn with Dawn's native calls stamped too
#           (tests/dawn_trace.ts): the call a stalled run is blocked in.
#   threads (prepared, not run in session 31) the trace mode's test, with every thread of the
#           test process listed every 15 s (state, kernel wait channel, CPU share, name): whether
#           a stalled run's main thread spins (R, CPU ~100%) or sleeps on a lock (S, futex).
#   next    (prepared for session 32) r4 d256 with its query rows in registers (session 31's
#           table) against shared rows (`shared`) in one process, the new kernel checked against
#           float64 with its paged twin; then `threads`.
# Run: OUT=... bash .gpu/boot.sh bash bench/h200_s31_session.sh MODE
set -u
mode=${1:-dawn}
out=${OUT:-bench/results/h200_session18/$mode}
# shellcheck source=bench/session_lib.sh
source "$(dirname "$0")/session_lib.sh"
stamp "$mode"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$log"

if [ "$mode" = dawn ]; then
  run_deno 130 dawn_probe.txt bench/dawn_stall_probe.ts --rounds=3 --nudge-s=20
  anchors="--anchor=bench/results/h200_torch_sdpa.json --triton=bench/results/h200_triton.json"
  # shellcheck disable=SC2086
  run_deno 360 dawn_bench.txt bench/gpu_bench.ts --backend=dawn --strategies=lean --check \
    $anchors --skip='mla|mqa' --out="$out/dawn.json"
  stamp "done"
fi

if [ "$mode" = dawn2 ]; then
  LEAN_TEST_TRACE=1 run_backend_tests dawn 100 tests_dawn.log tests/kernel_options_test.ts
  anchors="--anchor=bench/results/h200_torch_sdpa.json --triton=bench/results/h200_triton.json"
  # shellcheck disable=SC2086
  run_deno 130 dawn_kv8.txt bench/gpu_bench.ts --backend=dawn --strategies=lean --check \
    $anchors --only='int8|e4m3|e5m2' --skip='32k int8|mla|mqa' --out="$out/dawn_kv8.json"
  # shellcheck disable=SC2086
  run_deno 280 dawn_others.txt bench/gpu_bench.ts --backend=dawn --strategies=split,single \
    $anchors --skip='mla|mqa|int8|e4m3|e5m2' --out="$out/dawn_others.json"
  stamp "done"
fi

if [ "$mode" = trace ]; then
  LEAN_TEST_TRACE=1 run_backend_tests dawn 150 tests_dawn.log tests/kernel_options_test.ts
  stamp "done"
fi

if [ "$mode" = next ]; then
  run_deno 100 d256.txt bench/diag_floors.ts --stream-ms=2 --variants='lean|shared' \
    --bench-cases='d256 32k|gqa32/8 128k' --out="$out/d256.json"
  run_deno 100 d256_check.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
    --paged --only='d256 32k' --out="$out/d256_check.json"
  mode=threads
fi

if [ "$mode" = threads ]; then
  LEAN_TEST_TRACE=1 LEAN_TEST_BACKENDS=dawn timeout 170 deno test -A --unstable-webgpu \
    tests/kernel_options_test.ts >"$out/tests_dawn.log" 2>&1 &
  for _ in $(seq 11); do
    sleep 15
    pid=$(pgrep -f "deno test -A --unstable-webgpu tests/kernel_options_test.ts" | tail -1)
    [ -n "$pid" ] || break
    {
      echo "== $(date -u +%H:%M:%S) pid $pid, last test line: $(grep -a '^\[' "$out/tests_dawn.log" | tail -1)"
      ps -L -o tid,stat,wchan:28,pcpu,comm -p "$pid"
    } >>"$out/threads.txt" 2>&1
  done
  wait
  stamp "dawn tests ($(grep -E '^(ok|FAILED) \|' "$out/tests_dawn.log" | tail -1))"
  stamp "done"
fi
