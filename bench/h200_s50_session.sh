#!/usr/bin/env bash
# Session 50 on the H200: where the matrix-unit kernel's tile time goes (it streams at about
# 1.4-1.8 TB/s), through Dawn. Results under $OUT or bench/results/h200_session50/MODE:
#   where  bench/diag_matrix_time.ts: lean back to back on four many-row cases with parts of the
#          kernel rewritten (no K/V reads, no products, the next tile's K issued before the
#          scores: `k-early`, checked against float64 first); then the driver's machine code of
#          the kernel as it is (its disk cache, and nvdisasm from Triton's wheel beside it).
#   occ    after `where` found the kernel bound inside the multiprocessor (no K/V reads: 0.92-0.96x
#          of its time) at one workgroup per multiprocessor: bench/probe_occupancy.ts (do two
#          workgroups share one, by workgroup memory?), then the kernel as it is and without K/V
#          reads at twice the grid (262).
#   fw     after `occ` found at most about 56 KB of workgroup memory per multiprocessor (two
#          128-thread workgroups share one only below about 27 KB each, three below 17 KB): the
#          kernel's flushes pass through the score region FW dims at a time (16-row blocks 27.2 ->
#          23.2 KB, 32 rows 26.9 -> 14.9, 64 rows 45.3 -> 21.3), so two workgroups share a
#          multiprocessor. The tests through Dawn, the diagnostic's paths against float64, the
#          many-row cases at the calibrated grids (checked) and at 262 and 393 with `k-early`,
#          and the new kernel's machine code.
#   fw2    after `fw` found 262 workgroups 0.70-0.85x of the old kernel's time while calibration
#          picked 165-222 (its 1.25x rule stops short of two workgroups per multiprocessor, which
#          take about 1.4x one's time): the matrix classes calibrated by throughput; the many-row
#          cases at those grids (checked, and paged), then the default kernels on them.
#   fw3    after `fw2`'s throughput rule picked 752-1008 workgroups (slower: the probe's fixed
#          cost per dispatch favours large grids): the matrix classes' calibration sweeps
#          (bench/calibration_sweep.ts through Dawn, every rule's grid), and the many-row cases at
#          264 workgroups (checked, and paged).
#   final  the matrix classes calibrated at 1.6x (after `fw3`: 264 for all three): the tests
#          through Dawn, the many-row cases at the calibrated grids (checked, and paged), and the
#          default kernels on them, in one call.
set -u
mode=${1:?usage: bash bench/h200_s50_session.sh where|occ|fw|fw2|fw3|final}
shift
out=${OUT:-bench/results/h200_session50/$mode}
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
stamp "$(nproc) cores, $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
FOUR="qLen4 gqa 16k|qLen8 gqa 16k|qLen4 gqa64/8 32k|mqa h128/1 b8 32k"
# `machine_code NAME ARGS...`: diag_matrix_time.ts ARGS with the driver's disk cache in a fresh
# folder, tarred to $out/NAME.tgz, and Triton's nvdisasm copied once beside the mode's folder
# (bring it back by tarring that folder's parent; session 50 copied it to this machine once, to
# read the caches with bench/sass_from_cache.py; neither is committed).
machine_code() {
  local name=$1 work nvdisasm
  shift
  work=$(mktemp -d)
  __GL_SHADER_DISK_CACHE=1 __GL_SHADER_DISK_CACHE_PATH="$work" \
    __GL_SHADER_DISK_CACHE_SKIP_CLEANUP=1 run_deno 90 "$name.txt" bench/diag_matrix_time.ts "$@"
  tar -czf "$out/$name.tgz" -C "$work" . # (read locally into sass_loops.txt, not committed)
  stamp "$name: $(find "$work" -type f | wc -l) files"
  nvdisasm=$(python3 -c 'import os, triton; print(os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/nvdisasm"))' 2>/dev/null)
  if [ -x "$nvdisasm" ] && [ ! -e "$out/../nvdisasm" ]; then cp "$nvdisasm" "$out/../nvdisasm"; fi
}
case $mode in
where)
  run_deno 300 where.txt bench/diag_matrix_time.ts --only="$FOUR" --out="$out/where.json"
  machine_code sass_r16 --variants="as-is" --only="qLen4 gqa 16k"
  machine_code sass_r64 --variants="as-is|k-early" --only="mqa h128/1 b8 32k"
  ;;
occ)
  run_deno 120 occupancy.txt bench/probe_occupancy.ts
  run_deno 120 occupancy_webgpu.txt bench/probe_occupancy.ts --backend=webgpu
  run_deno 200 where_g262.txt bench/diag_matrix_time.ts --only="$FOUR" --grid=262 \
    --variants="as-is|no-kv-reads|no-mma" --out="$out/where_g262.json"
  ;;
fw)
  run_backend_tests dawn 150 tests_dawn.txt tests/matrix_kernel_test.ts
  run_deno 100 diag_matrix.txt bench/diag_matrix.ts
  rows_bench 200 matrix '{"matrixMath":true}' --check
  run_deno 150 where_g262.txt bench/diag_matrix_time.ts --only="$FOUR" --grid=262 \
    --variants="as-is|k-early" --out="$out/where_g262.json"
  run_deno 150 where_g393.txt bench/diag_matrix_time.ts --only="$FOUR" --grid=393 \
    --variants="as-is" --out="$out/where_g393.json"
  machine_code sass --variants="as-is" --only="mqa h128/1 b8 32k"
  ;;
fw2)
  rows_bench 300 matrix '{"matrixMath":true}' --check --paged
  rows_bench 150 default '{}'
  ;;
fw3)
  run_deno 120 sweep.txt bench/calibration_sweep.ts --backend=dawn --max=1100 \
    --classes=m16:128:f16,m32:128:f16,m64:128:f16 --out="$out/sweep.json"
  rows_bench 300 matrix_g264 '{"matrixMath":true}' --check --paged --grid=264
  ;;
final)
  run_backend_tests dawn 150 tests_dawn.txt tests/matrix_kernel_test.ts
  rows_bench 300 matrix '{"matrixMath":true}' --check --paged
  rows_bench 150 default '{}'
  ;;
*)
  echo "unknown mode $mode" >&2
  exit 2
  ;;
esac
