#!/usr/bin/env bash
# Session 40 on the H200, one call per mode (results under $OUT or bench/results/h200_session26/MODE):
#   suite  the whole test folder (or the test files given after the mode) with exhaustive GPU
#          shapes through Deno's WebGPU (the CPU tests beside it), after the device-test helper
#          (tests/gpu_device.ts `deviceTests`) replaced each GPU test file's own loop over the
#          runtimes. The whole folder takes longer than one call's 600 s there: the first call
#          ran it up to tests/shaders_test.ts, the second the files from there on.
#   dawn   the device tests (the files given after the mode, else every file using the helper)
#          through Dawn with exhaustive shapes, each file in its own process (a stalled Dawn run
#          cannot hide the others' results). Without `LEAN_TEST_DAWN_GC=1`: with it (the first
#          `dawn2` call) each decode's collection made tiled_test.ts take 29-47 s instead of 1-2 s
#          there, past the per-file limit, on this tree and the one before the helper alike.
set -u
mode=${1:?usage: bash bench/h200_s40_session.sh suite|dawn [TEST_FILE...]}
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
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
