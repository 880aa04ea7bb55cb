#!/usr/bin/env bash
# Issue 13, session 32, on the H200 in one call per mode (results under $OUT or
# bench/results/h200_session19/MODE). Session 32's first call was session 31's prepared `next`
# mode (`bash bench/h200_s31_session.sh next`, results in bench/results/h200_session18/next).
#   flat    (run at commit d170b91, where the flat merge lived; removed since) the flat merge kernel (`kernel: { flatMerge: true }`, src/kernels/merge_flat.ts: one
#           thread per output dim merging every slot itself, no workgroup memory, barriers or
#           shuffles) against the slot-group merge and no merge at all, back to back, on the
#           cases whose targets the merge bounds (bench/diag_floors.ts); then every such case
#           with the flat merge checked against float64 and timed, MLA's 512-dim rows
#           and the ragged batches too.
#   rounds  what one dependent round of global reads costs in each kernel (the merge waiting one or
#           two more rounds before its slots' reads, the decode kernel one more before its first
#           piece's fields), and both kernels without their early return past the dispatch's
#           count (the decode kernel's schedule reads then no longer wait for params); then int8
#           bytes unpacked without the add per element (values wrong: what that add costs).
#   parts   int8 and f16 GQA 32/8 128k with parts of the token loop's step removed (session 22's
#           variants: K/V rows from cache, no lane shuffles, no exponentials; values wrong): where
#           int8's time goes now that one add per element proved free; then `stack`.
#   stack   the kernel options test through Dawn with LEAN_TEST_TRACE=1 under gdb where the
#           image has it (its child, so no ptrace rights are needed): after 60 s every thread's
#           native stack (where a stalled run's spinning thread is); without gdb, the tools the
#           image has and the ptrace scope.
#   fresh   the merge reading its slots from `out` or the schedule instead of the partial states the
#           decode dispatch has just written (values wrong, for timing): whether that first read
#           is the merge's unexplained ~3 us.
#   shared  the Dawn GPU tests that stalled (kernel options, then non-finite inputs, row scatter and
#           8-bit decodes) with one Dawn device per test module (LEAN_TEST_DAWN_SHARED=1,
#           tests/backends.ts) instead of one per decoder; then `fresh`.
#   grid    the kernel options test through Dawn with a fixed lean grid (LEAN_TEST_DAWN_GRID=264:
#           no calibration, so no timestamp-query readbacks) and a device per decoder as before;
#           then more GPU test files through Dawn the same way.
#   dawnsuite  GPU test files through Dawn with the harness's default since session 32 (Dawn
#           decoders under test take the grid the module's probe decoder calibrated): the kernel
#           options test, then the paged, runner-format and MLA tests.
#   dawnopt the kernel options test through Dawn with the harness's default again, stamped, with a
#           longer limit (its fifth test took 34 s in `grid` mode and was cut at 90 s in
#           `dawnsuite`).
# Run: OUT=... bash .gpu/boot.sh bash bench/h200_s32_session.sh MODE
set -u
mode=${1:-flat}
out=${OUT:-bench/results/h200_session19/$mode}
# shellcheck source=bench/session_lib.sh
source "$(dirname "$0")/session_lib.sh"
stamp "$mode"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$log"

merge_cases='gqa32/8 32k|gqa32/8 128k|b4 16k|b16 16k|d64 32k|d256 32k|qLen4 gqa 16k|b1 h32 16k|b1 h32 128k|gqa32/8 128k int8'

if [ "$mode" = flat ]; then
  run_deno 230 flat.txt bench/diag_floors.ts --stream-ms=2 --variants='lean|flat merge|no merge' \
    --bench-cases="$merge_cases" --out="$out/flat.json"
  run_deno 260 flat_check.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
    --kernel='{"flatMerge":true}' --skip='e4m3|e5m2|bf16' \
    --only="$merge_cases|mla b1 32k|mla b8 32k|ragged lognormal 32|gqa32/8 8k" \
    --out="$out/flat_check.json"
  stamp "done"
fi

if [ "$mode" = rounds ]; then
  run_deno 200 rounds.txt bench/diag_floors.ts --stream-ms=2 \
    --variants='lean|merge +1 round|merge +2 rounds|decode +1 round|no count checks' \
    --bench-cases='gqa32/8 32k|gqa32/8 128k|b4 16k|d256 32k|b1 h32 16k' --out="$out/rounds.json"
  run_deno 120 int8.txt bench/diag_floors.ts --stream-ms=2 --variants='lean|int8 no add' \
    --bench-cases='gqa32/8 32k int8|gqa32/8 128k int8|gqa32/8 512k int8|b16 16k int8' \
    --out="$out/int8.json"
  stamp "done"
fi

if [ "$mode" = parts ]; then
  run_deno 150 parts.txt bench/diag_floors.ts --stream-ms=2 \
    --variants='lean|cached loads|no lane shuffles|no exp|cached/bare' \
    --bench-cases='gqa32/8 128k|gqa32/8 128k int8' --out="$out/parts.json"
  mode=stack
fi

if [ "$mode" = stack ]; then
  { command -v gdb eu-stack perf pstack lldb; cat /proc/sys/kernel/yama/ptrace_scope;
    grep -E '^(NAME|VERSION)=' /etc/os-release; ldd --version | head -1; } >"$out/tools.txt" 2>&1
  # The image has no gdb: .gpu/gdb.tgz (made by bench/pack_gdb.sh, not by prepare) holds
  # Debian's gdb-minimal with the libraries it needs, which only gdb itself loads.
  gdb=(gdb)
  if ! command -v gdb >/dev/null && [ -f .gpu/gdb.tgz ]; then
    mkdir -p /tmp/gdb && tar -xzf .gpu/gdb.tgz -C /tmp/gdb
    gdb=(env LD_LIBRARY_PATH=/tmp/gdb/lib /tmp/gdb/gdb)
  fi
  if "${gdb[@]}" --version >>"$out/tools.txt" 2>&1; then
    LEAN_TEST_TRACE=1 LEAN_TEST_BACKENDS=dawn timeout 230 "${gdb[@]}" -q -batch \
      -ex 'set pagination off' -ex 'unset environment LD_LIBRARY_PATH' \
      -ex 'handle all nostop noprint pass' -ex 'run' -ex 'info threads' \
      -ex 'thread apply all bt 30' \
      --args "$(command -v deno)" test -A --unstable-webgpu tests/kernel_options_test.ts \
      >"$out/gdb.txt" 2>&1 &
    gdbpid=$!
    # The second test stalls about 10 s in (20-60 s under gdb's symbol loading): list the threads'
    # CPU shares at 75 s, then stop the test and let gdb print every thread's stack.
    sleep 75
    pid=$(pgrep -f "^$(command -v deno) test" | head -1)
    [ -n "$pid" ] && ps -L -o tid,stat,wchan:28,pcpu,comm -p "$pid" >"$out/threads.txt" 2>&1
    [ -n "$pid" ] && kill -INT "$pid"
    wait $gdbpid
    stamp "gdb exit $? ($(grep -c '^Thread' "$out/gdb.txt") threads listed)"
  fi
  stamp "done"
fi

if [ "$mode" = shared ]; then
  LEAN_TEST_DAWN_SHARED=1 LEAN_TEST_TRACE=1 run_backend_tests dawn 120 tests_dawn_shared.log \
    tests/kernel_options_test.ts
  LEAN_TEST_DAWN_SHARED=1 run_backend_tests dawn 100 tests_dawn_shared2.log \
    tests/non_finite_test.ts tests/row_scatter_test.ts tests/kv8_decode_test.ts
  mode=fresh
fi

if [ "$mode" = fresh ]; then
  run_deno 150 fresh.txt bench/diag_floors.ts --stream-ms=2 \
    --variants='lean|merge reads out|merge reads sched|no merge' \
    --bench-cases='gqa32/8 32k|gqa32/8 128k|b4 16k|d256 32k|b1 h32 16k' --out="$out/fresh.json"
  stamp "done"
fi

if [ "$mode" = grid ]; then
  LEAN_TEST_DAWN_GRID=264 LEAN_TEST_TRACE=1 run_backend_tests dawn 120 tests_dawn_grid.log \
    tests/kernel_options_test.ts
  LEAN_TEST_DAWN_GRID=264 run_backend_tests dawn 170 tests_dawn_grid2.log tests/decode_test.ts \
    tests/paged_test.ts tests/combinations_gpu_test.ts tests/token_runs_test.ts
  stamp "done"
fi

if [ "$mode" = dawnsuite ]; then
  run_backend_tests dawn 90 tests_dawn.log tests/kernel_options_test.ts
  run_backend_tests dawn 160 tests_dawn2.log tests/paged_test.ts tests/runner_formats_test.ts \
    tests/mla_test.ts
  stamp "done"
fi

if [ "$mode" = dawnopt ]; then
  LEAN_TEST_TRACE=1 run_backend_tests dawn 170 tests_dawn.log tests/kernel_options_test.ts
  stamp "done"
fi
