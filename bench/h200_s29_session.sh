#!/usr/bin/env bash
# Issues 13 and 16, session 29, on the H200 in one call per mode (results under $OUT or
# bench/results/h200_session16/MODE):
#   bar     the next step's K and V requests followed by a workgroup barrier (`fenceIssue` in
#           bench/diag_lib.ts), so NVIDIA's compiler cannot sink them to the end of the loop body
#           and they stay in flight through the step's arithmetic: the machine code of the
#           fenced kernels (SPIR-V from bench/dump_spirv.ts in .scratch/spv; carry .scratch),
#           then the variants timed back to back.
#   u8      twice the tokens per step (unroll 8) with the query rows read from workgroup memory
#           every step, so the registers they leave hold the step's K and V: machine code and
#           timing, with the same unroll without shared rows and with row sets beside.
#   vpt     V unpacked one token at a time inside the softmax update (`vPerToken`): machine code,
#           timing beside lean, with 128-token tiles (8-bit rows at unroll 8) and unroll 8 with
#           shared query rows; then lean with it checked against float64 (gpu_bench --check).
#   rsc     row scatter (`rowScatter`: each lane adds and weighs one row's scores, the others'
#           weights by shuffles): machine code, timing beside lean, then checked against float64.
#   final   the committed kernels timed (every f16 and 8-bit case, paged twins, checked), then
#           their GPU tests: the next session's first call.
#   tests   the GPU tests of the kernels' generated source changes, through Deno's WebGPU and
#           Dawn: 8-bit decodes (Dawn refused a 136-dim one-lane kernel's 136-deep multiply-add
#           chain, now in runs of 16), kernel options (packed f16 chains, shader-f16 on Deno's
#           WebGPU) and the merge kernel with ~470 slots per row.
# Run: OUT=... bash .gpu/boot.sh bash bench/h200_s29_session.sh MODE
set -u
mode=${1:-bar}
out=${OUT:-bench/results/h200_session16/$mode}
# shellcheck source=bench/session_lib.sh
source "$(dirname "$0")/session_lib.sh"
stamp "$mode"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$log"

# sass_of (bench/session_lib.sh) names its files after the mode.
sass_tag="_$mode"

if [ "$mode" = bar ]; then
  sass_of .scratch/spv/*_bar.spv .scratch/spv/r4_d128_f16.spv .scratch/spv/r4_d128_int8.spv
  cases='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b4 16k|b16 16k|gqa32/8 128k int8|b1 h32 128k'
  run_deno 420 bar.txt bench/diag_floors.ts --stream-ms=2 \
    --variants='lean|bar|split bar|qs reload bar|qs reload split bar|U2 bar' \
    --bench-cases="$cases" --out="$out/bar.json"
  stamp "done"
fi

if [ "$mode" = u8 ]; then
  sass_of .scratch/spv/*u8*.spv .scratch/spv/r4_d128_int8_t128.spv .scratch/spv/r4_d128_int8_u16.spv
  cases='gqa32/8 32k|gqa32/8 128k|b16 16k|gqa32/8 128k int8|gqa32/8 512k int8|b16 16k int8'
  run_deno 480 u8.txt bench/diag_floors.ts --stream-ms=2 \
    --variants='lean|T128|qs reload U8|qs reload U8 split|U8 nopf|RS2 U8|T256 U16' \
    --bench-cases="$cases" --out="$out/u8.json"
  stamp "done"
fi

if [ "$mode" = vpt ]; then
  sass_of .scratch/spv/*vpt*.spv
  cases='gqa32/8 32k|gqa32/8 128k|b16 16k|gqa32/8 128k int8|gqa32/8 512k int8|b16 16k int8'
  run_deno 300 vpt.txt bench/diag_floors.ts --stream-ms=2 \
    --variants='lean|vpt|vpt T128|vpt qs reload U8|vpt split' \
    --bench-cases="$cases|b1 h32 128k" --out="$out/vpt.json"
  run_deno 150 vpt_check.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
    --kernel='{"vPerToken":true}' --only='gqa32/8 128k|gqa32/8 128k int8|b1 h32 128k' \
    --out="$out/vpt_check.json"
  stamp "done"
fi

if [ "$mode" = rsc ]; then
  sass_of .scratch/spv/*rsc*.spv
  cases='gqa32/8 32k|gqa32/8 128k|b16 16k|b4 16k|gqa32/8 128k int8|qLen4 gqa 16k'
  run_deno 150 rsc.txt bench/diag_floors.ts --stream-ms=2 --variants='lean|rsc|rsc vpt' \
    --bench-cases="$cases" --out="$out/rsc.json"
  run_deno 60 rsc_check.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
    --kernel='{"rowScatter":true}' --only='gqa32/8 128k|gqa32/8 128k int8|qLen4 gqa 16k' \
    --runs=5 --out="$out/rsc_check.json"
  stamp "done"
fi

if [ "$mode" = final ]; then
  # The committed kernels (row scatter after session 29's three untimed changes): every f16 and
  # 8-bit case, lean with its paged twin, each kernel checked against float64; anchors as in
  # session 28's paged mode. Then the changed kernels' GPU tests.
  anchors="--anchor=bench/results/h200_torch_sdpa.json --triton=bench/results/h200_triton.json"
  # shellcheck disable=SC2086
  run_deno 420 final.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check --paged \
    $anchors --skip='mla|mqa' --out="$out/final.json"
  LEAN_TEST_BACKENDS=cpu,webgpu,dawn timeout 150 deno test -A --unstable-webgpu \
    tests/kernel_options_test.ts tests/row_scatter_test.ts >"$out/tests.log" 2>&1
  stamp "tests exit $? ($(grep -E '^(ok|FAILED) \|' "$out/tests.log" | tail -1))"
  stamp "done"
fi

if [ "$mode" = tests ]; then
  LEAN_TEST_BACKENDS=cpu,webgpu,dawn timeout 400 deno test -A --unstable-webgpu \
    tests/kv8_decode_test.ts tests/kernel_options_test.ts tests/non_finite_test.ts >"$out/tests.log" 2>&1
  stamp "tests exit $? ($(grep -E '^(ok|FAILED) \|' "$out/tests.log" | tail -1))"
  stamp "done"
fi
