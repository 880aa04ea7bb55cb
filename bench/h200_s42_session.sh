#!/usr/bin/env bash
# Session 42 on the H200: the test suite with its files in parallel worker threads
# (`deno test --parallel`, one per core: 16 here), one call per mode (results under $OUT or
# bench/results/h200_session42/MODE; each output line stamped with its time, which the first two
# calls' files lack):
#   suite   both runtimes, under a 300 s limit; then every GPU shape (`LEAN_TEST_EXHAUSTIVE=1`)
#           through Deno's WebGPU alone, 240 s. Run before tests/backends.ts fixed the grid of
#           Deno's WebGPU decoders under test: each calibrated its own (`LEAN_TEST_GRID=calibrate`
#           does so again).
#   webgpu  Deno's WebGPU alone (`LEAN_TEST_BACKENDS=webgpu`; every GPU shape on a hardware
#           adapter), with the harness's fixed grid (`LEAN_TEST_GRID`), 500 s.
#   dawn    the same through Dawn alone.
#   serial  the webgpu mode's tests one file after another (`deno task test`), 250 s, then in
#           parallel, 250 s.
set -u
mode=${1:?usage: bash bench/h200_s42_session.sh suite|webgpu|dawn|serial}
shift
out=${OUT:-bench/results/h200_session42/$mode}
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
parallel=(deno test -A --parallel --v8-flags=--expose-gc --doc)
stamp "$(nproc) cores"
case $mode in
  suite)
    stamped_tests test.txt 300 "${parallel[@]}"
    LEAN_TEST_EXHAUSTIVE=1 LEAN_TEST_BACKENDS=webgpu stamped_tests test_gpu_webgpu.txt 240 "${parallel[@]}"
    ;;
  serial)
    export LEAN_TEST_BACKENDS=webgpu
    stamped_tests serial.txt 250 deno task test
    stamped_tests parallel.txt 250 "${parallel[@]}"
    ;;
  webgpu | dawn)
    LEAN_TEST_BACKENDS=$mode stamped_tests "test_$mode.txt" 500 "${parallel[@]}"
    ;;
  *)
    echo "unknown mode $mode" >&2
    exit 2
    ;;
esac
