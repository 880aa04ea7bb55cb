#!/usr/bin/env bash
# Session 44 on the H200: the whole test folder at this tree, every GPU shape
# (`LEAN_TEST_EXHAUSTIVE=1`), with the harness's fixed grid of session 42 (tests/backends.ts), which
# had run through Deno's WebGPU for only 250 s there. Results under $OUT or
# bench/results/h200_session44/MODE, each output line stamped with its time:
#   webgpu  Deno's WebGPU alone (the CPU tests beside it): the test files dealt into three parts,
#           each part in its own process at the same time (separate processes, each with its own
#           device, not `deno test --parallel`'s worker threads of one process, which hung in
#           session 42), 560 s each.
#   dawn    the GPU tests through Dawn (the files given after the mode, else every GPU test file),
#           each file in its own process (a stalled Dawn run cannot hide the others' results), six
#           at a time, 90 s each, at a fixed grid (`LEAN_TEST_DAWN_GRID`, default 264), which since
#           this session spares the module's probe decoder its calibration too: the first `dawn`
#           call (the probe calibrating; results in dawn/) stalled 11 of the 33 files, most before
#           their first test; the second (dawn2/) stalled one, tests/reliability_test.ts.
#   dawnstall [first|script]  where that file stalls through Dawn (below; the calls' folders:
#           dawnstall_first/, dawnstall2/, dawnscript/). rel/ holds the file through Deno's WebGPU
#           after its change (`LEAN_TEST_EXHAUSTIVE=1 LEAN_TEST_BACKENDS=webgpu deno test -A
#           --unstable-webgpu --v8-flags=--expose-gc tests/reliability_test.ts`); final/ the timing
#           and reliability tests through both runtimes and bench/dawn_timing_stall.ts --calls=3
#           after timeWarm's bound on warm-up recordings (the device call's command, by hand).
set -u
mode=${1:?usage: bash bench/h200_s44_session.sh webgpu|dawn|dawnstall [first|script]}
shift
out=${OUT:-bench/results/h200_session44/$mode}
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
export LEAN_TEST_EXHAUSTIVE=1
suite=(deno test -A --unstable-webgpu --v8-flags=--expose-gc)
stamp "$(nproc) cores, $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null)"
case $mode in
  webgpu)
    mapfile -t files < <(ls tests/*_test.ts)
    export LEAN_TEST_BACKENDS=webgpu
    for part in 0 1 2; do
      mine=()
      for i in "${!files[@]}"; do [ $((i % 3)) -ne "$part" ] || mine+=("${files[$i]}"); done
      stamped_tests "part$part.txt" 560 "${suite[@]}" "${mine[@]}" &
    done
    wait
    ;;
  dawn)
    files=("$@")
    [ ${#files[@]} -gt 0 ] || mapfile -t files < <(grep -l -E "deviceTest|gpuTest|backendTest" tests/*_test.ts)
    export LEAN_TEST_BACKENDS=dawn LEAN_TEST_DAWN_GRID=${LEAN_TEST_DAWN_GRID:-264}
    for f in "${files[@]}"; do
      while [ "$(jobs -rp | wc -l)" -ge 6 ]; do wait -n; done
      stamped_tests "dawn_$(basename "$f" .ts).txt" 90 "${suite[@]}" "$f" &
    done
    wait
    ;;
  dawnstall)
    # Where tests/reliability_test.ts stalls through Dawn: its calls stamped (`LEAN_TEST_TRACE=1`),
    # the whole file, the whole file collecting garbage after each decode, and the stalling
    # test alone, each in its own process at the same time (the first `dawnstall` call, with the
    # test's timing calls at the default 400 ms warm-up: all three stalled in its fourth call).
    # Then (the second call, the test at `warmupMs: 0`) the file again, and beside it
    # bench/dawn_timing_stall.ts: timing calls alone in a plain script (`dawnstall script`: the
    # script alone).
    export LEAN_TEST_BACKENDS=dawn LEAN_TEST_DAWN_GRID=264 LEAN_TEST_TRACE=1
    f=tests/reliability_test.ts
    if [ "${1:-}" = script ]; then
      LEAN_TEST_TRACE= stamped_tests script.txt 60 deno run -A --unstable-webgpu bench/dawn_timing_stall.ts
      exit
    fi
    stamped_tests file.txt 75 "${suite[@]}" "$f" &
    if [ "${1:-}" = first ]; then
      LEAN_TEST_DAWN_GC=1 stamped_tests file_gc.txt 75 "${suite[@]}" "$f" &
      stamped_tests alone.txt 75 "${suite[@]}" --filter "timeKernels while decodes" "$f" &
    else
      LEAN_TEST_TRACE= stamped_tests script.txt 60 deno run -A --unstable-webgpu bench/dawn_timing_stall.ts &
    fi
    wait
    ;;
  *)
    echo "unknown mode $mode" >&2
    exit 2
    ;;
esac
