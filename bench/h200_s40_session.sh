#!/usr/bin/env bash
# Session 40 on the H200, one call per mode (results under $OUT or bench/results/h200_session26/MODE):
#   suite  the whole test folder (or the test files given after the mode) with exhaustive GPU
#          shapes through Deno's WebGPU (the CPU tests beside it), after the device-test helper
#          (tests/gpu_device.ts `deviceTests`) replaced each GPU test file's own loop over the
#          runtimes. The whole folder takes longer than one call's 600 s there: the first call
#          ran it up to tests/shaders_test.ts, the second the files from there on; `split`, a
#          third, the files that the split of the largest test files made or changed, and
#          `split_dawn` their device tests through Dawn (`dawn` with those files).
#   dawn   the device tests (the files given after the mode, else every file using the helper)
#          through Dawn with exhaustive shapes, each file in its own process (a stalled Dawn run
#          cannot hide the others' results). Without `LEAN_TEST_DAWN_GC=1`: with it (the first
#          `dawn2` call) each decode's collection made tiled_test.ts take 29-47 s instead of 1-2 s
#          there, past the per-file limit, on this tree and the one before the helper alike.
#   gcab   tiled_test.ts through Dawn on this tree and on the tree before the helper (made here
#          with `git archive 334541b mod.ts plan.ts runner.ts dawn.ts cli.ts deno.json deno.lock
#          src tests examples web | tar -x -C .scratch/old334`, carried), with and without
#          `LEAN_TEST_DAWN_GC=1`, and mla_test.ts without: whether `dawn2`'s timeouts were the
#          helper's (results in `ab/`).
set -u
mode=${1:?usage: bash bench/h200_s40_session.sh suite|dawn|gcab [TEST_FILE...]}
shift
out=${OUT:-bench/results/h200_session26/$mode}
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
export LEAN_TEST_EXHAUSTIVE=1
case $mode in
  suite)
    run_backend_tests webgpu "${SUITE_LIMIT:-540}" tests.txt "${@:-tests/}"
    ;;
  dawn)
    files=("$@")
    [ ${#files[@]} -gt 0 ] || mapfile -t files < <(grep -l "deviceTest" tests/*_test.ts)
    for f in "${files[@]}"; do
      run_backend_tests dawn "${DAWN_LIMIT:-80}" "$(basename "$f" .ts).txt" "$f"
    done
    ;;
  gcab)
    ab() { # TAG DIR GC FILE
      (cd "$2" && LEAN_TEST_BACKENDS=dawn LEAN_TEST_DAWN_GC=$3 timeout 60 \
        deno test -A --unstable-webgpu "$4" >"$out/$1.txt" 2>&1)
      stamp "$1 exit $? ($(grep -E '^(ok|FAILED) \|' "$out/$1.txt" | tail -1))"
    }
    ab new_nogc_tiled . 0 tests/tiled_test.ts
    ab old_gc_tiled .scratch/old334 1 tests/tiled_test.ts
    ab old_nogc_tiled .scratch/old334 0 tests/tiled_test.ts
    ab new_gc_tiled . 1 tests/tiled_test.ts
    ab new_nogc_mla . 0 tests/mla_test.ts
    ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
