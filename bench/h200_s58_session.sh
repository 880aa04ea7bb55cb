#!/usr/bin/env bash
# Session 58 on the H200. Results under $OUT or bench/results/h200_session58/MODE:
#   kv8r8    the f32 kernels' 8-row class over 8-bit K/V (int8, FP8 E4M3 with a scale per tensor
#            or per token: the 7-12-row cases of bench/cases_groups.json) through Deno's WebGPU
#            at grid 264, swept over unroll, row sets, E4M3's NaN test per step and token runs.
#            Until now the class took f16's two row sets at twice f16's unroll (8: one token per
#            group and step fills a 64-token tile), which f16's own sweep found 1.9x slower
#            (session 57, `r8`). Then the calibration of the MLA matrix class through Dawn
#            (bench/calibration_sweep.ts), repeated, after an idle GPU and not, with the probe's
#            pieces of 512 tokens and of 2048: it took 1010 workgroups once in session 57.
#   kv8      the 8-bit kernels' unroll by their registers (kernel_choice.ts `eightBitUnroll`) and
#            E4M3's NaN test per step on blocks of 5-8 rows: the 8-bit cases of
#            bench/cases_groups.json (5-12 rows at d128, 7 and 8 at d64) through Deno's WebGPU at
#            grid 264, the new defaults against the old choice (d128: unroll 8, d64: 4, no NaN
#            steps) and the f16 twins; the new defaults calibrated, dense and paged, checked; the
#            MLA matrix class's calibration after an idle GPU with 300 ms of warm-up.
#   final    the final defaults over every 8-bit case of bench/cases_groups.json through Deno's
#            WebGPU, calibrated, dense and paged, checked; E5M2 at 8 rows, old unroll (8) against
#            new (4) at grid 264; the f16 group cases' default f32 kernels calibrated, dense and
#            paged; the GPU tests of 8-bit K/V, E4M3's NaN steps, page slices and the variants'
#            combinations through Deno's WebGPU, exhaustive.
#   pad      blocks padded to their class's row sets (`padRows`, default on: 7 rows run as 8, 5 as
#            6, 3 as 4 at d64 and d256) against the old blocks (`padRows: false`) through Deno's
#            WebGPU, calibrated, on the 5-14-row cases of bench/cases_groups.json (f16, int8,
#            E4M3) and its 3- and 6-row cases at d64 and d256, checked; the new blocks paged.
#   suite    every test file with every GPU shape through Deno's WebGPU, three processes at once
#            (session 44's `webgpu` mode): the plans of 7-row groups (now 8-row blocks), the 8-bit
#            kernels' unroll and E4M3's NaN steps at 5-8 rows met by every GPU test.
set -u
mode=${1:?usage: bash bench/h200_s58_session.sh kv8r8|kv8|final|pad|suite}
shift
out=${OUT:-bench/results/h200_session58/$mode}
if [ "$mode" = suite ]; then OUT=$out exec bash bench/h200_s44_session.sh webgpu; fi
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
stamp "$(nproc) cores, $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
case $mode in
kv8r8)
  configs=(
    'table={}'
    'U4={"unroll":4}'
    'U4nan={"unroll":4,"nanSteps":true}'
    'U4nanRuns={"unroll":4,"nanSteps":true,"tokenRuns":true}'
    'U2={"unroll":2}'
    'U4rs4={"unroll":4,"rowSets":4}'
    'U8rs4={"unroll":8,"rowSets":4}'
  )
  kernel_sweep 75 r8 configs --backend=webgpu --strategies=lean --grid=264 \
    --cases=bench/cases_groups.json --only="int8|e4m3" --check
  classes=--classes=m16:128:f16,m16:576/512:f16
  run_deno 60 sweep_busy.txt bench/calibration_sweep.ts --backend=dawn --max=1100 "$classes" \
    --repeat=4 --warmup=50 --out="$out/sweep_busy.json"
  run_deno 60 sweep_idle.txt bench/calibration_sweep.ts --backend=dawn --max=1100 "$classes" \
    --repeat=4 --warmup=50 --idle=1500 --out="$out/sweep_idle.json"
  run_deno 60 sweep_idle_t2048.txt bench/calibration_sweep.ts --backend=dawn --max=1100 \
    "$classes" --repeat=4 --warmup=50 --idle=1500 --tokens=2048 --out="$out/sweep_idle_t2048.json"
  ;;
kv8)
  groups=(--backend=webgpu --strategies=lean --cases=bench/cases_groups.json)
  run_deno 90 new_g264.txt bench/gpu_bench.ts "${groups[@]}" --grid=264 --only="int8|e4m3" \
    --check --out="$out/new_g264.json"
  run_deno 75 old_d128_g264.txt bench/gpu_bench.ts "${groups[@]}" --grid=264 --only="int8|e4m3" \
    --skip=d64 --check --kernel='{"unroll":8,"nanSteps":false}' --out="$out/old_d128_g264.json"
  run_deno 40 old_d64_g264.txt bench/gpu_bench.ts "${groups[@]}" --grid=264 --only=d64 --check \
    --kernel='{"unroll":4,"nanSteps":false}' --out="$out/old_d64_g264.json"
  run_deno 50 f16_g264.txt bench/gpu_bench.ts "${groups[@]}" --grid=264 \
    --only="gqa28/4 32k|gqa40/8 32k|gqa64/8 32k|gqa64/8 128k|gqa96/8 32k" --skip="int8|e4m3|d64" \
    --check --out="$out/f16_g264.json"
  run_deno 150 new_paged.txt bench/gpu_bench.ts "${groups[@]}" --only="int8|e4m3" --check \
    --paged --out="$out/new_paged.json"
  run_deno 60 sweep_idle_w300.txt bench/calibration_sweep.ts --backend=dawn --max=1100 \
    --classes=m16:576/512:f16 --repeat=4 --warmup=300 --idle=1500 --out="$out/sweep_idle_w300.json"
  ;;
final)
  groups=(--backend=webgpu --strategies=lean --cases=bench/cases_groups.json)
  run_deno 170 kv8_paged.txt bench/gpu_bench.ts "${groups[@]}" --only="int8|e4m3|e5m2" --check \
    --paged --out="$out/kv8_paged.json"
  run_deno 40 e5m2_old_g264.txt bench/gpu_bench.ts "${groups[@]}" --grid=264 --only=e5m2 \
    --check --kernel='{"unroll":8}' --out="$out/e5m2_old_g264.json"
  run_deno 40 e5m2_new_g264.txt bench/gpu_bench.ts "${groups[@]}" --grid=264 --only=e5m2 \
    --check --out="$out/e5m2_new_g264.json"
  run_deno 120 f16_paged.txt bench/gpu_bench.ts "${groups[@]}" --skip="int8|e4m3|e5m2|d64" \
    --check --paged --out="$out/f16_paged.json"
  export LEAN_TEST_EXHAUSTIVE=1
  run_backend_tests webgpu 200 tests_webgpu.txt tests/kv8_decode_test.ts \
    tests/nan_steps_test.ts tests/page_slices_test.ts tests/combinations_gpu_test.ts \
    tests/kernel_choice_test.ts
  ;;
pad)
  groups=(--backend=webgpu --strategies=lean --cases=bench/cases_groups.json)
  pick=(--only="gqa28/4 32k|gqa40/8 32k|qLen2|gqa24/8|gqa48/8")
  run_deno 150 pad_on.txt bench/gpu_bench.ts "${groups[@]}" "${pick[@]}" --check --paged \
    --out="$out/pad_on.json"
  run_deno 120 pad_off.txt bench/gpu_bench.ts "${groups[@]}" "${pick[@]}" --check \
    --kernel='{"padRows":false}' --out="$out/pad_off.json"
  ;;
*)
  echo "unknown mode $mode" >&2
  exit 2
  ;;
esac
stamp "done"
