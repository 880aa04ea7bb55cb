#!/usr/bin/env bash
# Session 54 on the H200. Results under $OUT or bench/results/h200_session54/MODE:
#   probe  (1) bench/probe_balance.ts through Deno's WebGPU: a stream split in equal shares per
#          workgroup (lean's split) against shares plus chunks claimed at run time, at 128 MiB
#          to 1 GiB, grids 264 and 528, with and without the 4-row kernel's arithmetic per word:
#          how much a pass loses waiting for its slowest workgroup. (2) The paged E5M2 miss of
#          the matrix kernel (qLen 4 over GQA 64/8 32k, 1.064x of dense in session 52): the
#          paged kernel with its layer's scale pair read from the params block, as the dense
#          kernel reads it (bench/diag_rewritten_bench.ts, timing only), against the kernel as
#          it is, twice each, alternating, with int8 beside it.
#   grids  lean at grids other than the calibrated one where those cut each head's tiles into
#          equal runs (below).
#   code   bench/probe_code_size.ts: passes of two dispatches (264 then 32 workgroups) with one
#          running straight-line code of 512-16384 multiply-adds or the same as a loop.
#   suite  the whole test folder through Deno's WebGPU with every GPU shape, then every GPU test
#          file through Dawn (session 44's modes).
#   paged  the matrix kernel's page reads a tile's products ahead: its tests through Dawn, and
#          paged against dense on the E5M2 miss's shape and two f16 shapes.
#   paged2 one more round of paged's E5M2 shape, timing only.
# Run: OUT=... bash .gpu/boot.sh bash bench/h200_s54_session.sh MODE
set -u
mode=${1:?usage: bash bench/h200_s54_session.sh probe|grids|code|suite|paged|paged2}
out=${OUT:-bench/results/h200_session54/$mode}
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
stamp "$mode: $(nproc) cores, $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
case $mode in
suite)
  # After the kernels' @binding lines were generated from their layout entries (a blank line and
  # the order of two bindings changed in the WGSL): the whole test folder through Deno's WebGPU,
  # then every GPU test file through Dawn (session 44's modes, as in session 53).
  OUT=$out/webgpu bash bench/h200_s44_session.sh webgpu
  OUT=$out/dawn bash bench/h200_s44_session.sh dawn
  ;;
paged)
  # The matrix kernel's next-tile page reads issued before the tile's score products (stored
  # after them) instead of after: its tests through Dawn, then paged against dense, checked
  # against float64, on the 8-bit shape of the E5M2 miss and two f16 shapes.
  LEAN_TEST_EXHAUSTIVE=1 LEAN_TEST_DAWN_GRID=264 run_backend_tests dawn 90 matrix_dawn.txt \
    --v8-flags=--expose-gc tests/matrix_kernel_test.ts
  rows_bench 110 matrix8 '{"matrixMath":true}' --check --paged --cases=bench/cases_rows8.json \
    --only="qLen4 gqa64/8 32k"
  rows_bench 110 matrix '{"matrixMath":true}' --check --paged --only="qLen4 gqa 16k|qLen4 gqa64/8"
  ;;
paged2)
  # One more round of the E5M2 shape after `paged` (timing only).
  rows_bench 100 matrix8_r2 '{"matrixMath":true}' --paged --cases=bench/cases_rows8.json \
    --only="qLen4 gqa64/8 32k e5m2"
  ;;
probe)
  run_deno 200 balance.txt bench/probe_balance.ts --out="$out/balance.json"
  for round in 1 2; do
    rows_bench 100 "as_is_r$round" '{"matrixMath":true}' --paged \
      --cases=bench/cases_rows8.json --only="qLen4 gqa64/8 32k"
    run_deno 100 "bench_rows_layer_scales_r$round.txt" bench/diag_rewritten_bench.ts \
      --rewrite=layer-scales --backend=dawn --strategies=lean --cases=bench/cases_rows8.json \
      --kernel='{"matrixMath":true}' --paged --only="qLen4 gqa64/8 32k" \
      --out="$out/bench_rows_layer_scales_r$round.json"
  done
  ;;
grids)
  # Whole-tile balance: MHA 16k/32k at grid 480 (the calibrated one-wave size: 15 runs of 17-18
  # tiles per head at 16k) against 512 and 528 (16 runs of 16 tiles, if they still fit in one
  # wave); GQA at 264 (62-63 tiles per run at 128k, 15-16 at 32k) against 256 (64 and 16 each).
  for round in 1 2; do
    for g in 480 512 528; do
      run_deno 60 "mha_g${g}_r$round.txt" bench/gpu_bench.ts --strategies=lean --grid=$g \
        --only="b1 h32 16k|b1 h32 32k" --skip="e4m3|e5m2"
    done
    for g in 264 256; do
      run_deno 90 "gqa_g${g}_r$round.txt" bench/gpu_bench.ts --strategies=lean --grid=$g \
        --only="gqa32/8 32k|gqa32/8 128k|b4 16k|d256 32k|d64 32k" --skip="int8|e4m3"
    done
  done
  ;;
code)
  run_deno 300 code_size.txt bench/probe_code_size.ts --sizes=512,2048,8192,16384 \
    --out="$out/code_size.json"
  ;;
*)
  echo "unknown mode $mode" >&2
  exit 2
  ;;
esac
stamp done
