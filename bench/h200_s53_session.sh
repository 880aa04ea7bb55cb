#!/usr/bin/env bash
# Session 53 on the H200, one device call per mode (results under $OUT or
# bench/results/h200_session53/MODE):
#   suite  the whole test folder through Deno's WebGPU with every GPU shape
#          (`LEAN_TEST_EXHAUSTIVE=1`), the files dealt into three processes at once: session
#          44's `webgpu` mode (bench/h200_s44_session.sh), the last such run eight sessions before.
#   dawn   every GPU test file through Dawn, each in its own process, six at a time, at the fixed
#          grid: session 44's `dawn` mode (the matrix-unit kernel's tests among them).
#   lean   today's default kernels timed on every f16 and 8-bit case of bench/cases.json with
#          their paged twins, each checked against float64 (session 30's `final` command, whose
#          run the README's main table shows), against the stored anchors; then the matrix-unit
#          kernel's tests through Dawn (tests/matrix_kernel_test.ts, split from its CPU tests this
#          session), in case `dawn` gets no device time.
# Run: OUT=... bash .gpu/boot.sh bash bench/h200_s53_session.sh MODE
set -u
mode=${1:?usage: bash bench/h200_s53_session.sh suite|dawn|lean}
out=${OUT:-bench/results/h200_session53/$mode}
case $mode in
  suite) OUT=$out exec bash bench/h200_s44_session.sh webgpu ;;
  dawn) OUT=$out exec bash bench/h200_s44_session.sh dawn ;;
esac
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
stamp "$mode: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
if [ "$mode" = lean ]; then
  anchors="--anchor=bench/results/h200_torch_sdpa.json --triton=bench/results/h200_triton.json"
  # shellcheck disable=SC2086
  run_deno 420 lean.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check --paged \
    $anchors --skip='mla|mqa' --out="$out/lean.json"
  LEAN_TEST_EXHAUSTIVE=1 LEAN_TEST_DAWN_GRID=264 run_backend_tests dawn 110 matrix_dawn.txt \
    --v8-flags=--expose-gc tests/matrix_kernel_test.ts
  stamp done
fi
