#!/usr/bin/env bash
# Session 40 on the H200, one call per mode (results under $OUT or bench/results/h200_session26/MODE):
#   suite  the whole test folder with exhaustive GPU shapes through Deno's WebGPU (the CPU tests
#          beside it), after the device-test helper (tests/gpu_device.ts `deviceTests`) replaced
#          each GPU test file's own loop over the runtimes.
#   dawn   the same files' device tests, and the decoder tests of the kernel options, through
#          Dawn with exhaustive shapes, each file in its own process (a stalled Dawn run cannot
#          hide the others' results), decoders collecting garbage after each decode.
set -u
mode=${1:?usage: bash bench/h200_s40_session.sh suite|dawn}
out=${OUT:-bench/results/h200_session26/$mode}
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
export LEAN_TEST_EXHAUSTIVE=1
case $mode in
  suite)
    run_backend_tests webgpu 540 tests.txt tests/
    ;;
  dawn)
    export LEAN_TEST_DAWN_GC=1
    for f in $(grep -l "deviceTest" tests/*_test.ts); do
      run_backend_tests dawn 80 "$(basename "$f" .ts).txt" "$f"
    done
    ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
