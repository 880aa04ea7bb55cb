#!/usr/bin/env bash
# Session 59 on the H200. Results under $OUT or bench/results/h200_session59/MODE:
#   rows5    the f32 kernels' 5-row blocks (Qwen2.5 14B and 32B: GQA 40/8, d128) through Deno's
#            WebGPU at grid 264: they take the 8-row class (8 lanes, unroll 4, two row sets), but
#            two row sets do not divide 5 rows, so each thread holds all 5 rows: 160 floats of
#            query and output state, where the 4- and 8-row blocks hold 128. Swept over lanes
#            (16 lanes halve the state to 80 floats), unroll and packed f16 (`halfMath`), f16 and
#            8-bit K/V, qLen 1 and 2 (10 rows: blocks of 8 and 2); then the pick calibrated,
#            dense and paged, checked, with the 4- and 8-row f16 cases as anchors.
#   models   the README's "Which kernels for which model" cases (bench/cases_models.json: GQA
#            groups of 4-16 rows at qLen 1, and qLen 4 over GQA 32/8) in one call: the default
#            kernels through Deno's WebGPU and through Dawn, the matrix kernel through Dawn
#            (`matrixMinRows: 4`, so every case takes it), each calibrated and checked against
#            float64, then the PyTorch and Triton anchors on the same cases.
#   suite    every test file with every GPU shape through Deno's WebGPU, three processes at once
#            (session 44's `webgpu` mode): main as it stands, after session 58's host-test fix.
#   dawnsuite every GPU test file through Dawn, each in its own process, six at a time, at a fixed
#            grid (session 44's `dawn` mode; last run in session 56, before sessions 57-58's
#            kernel choices: matrixMinRows, padRows, the 8-bit unroll).
set -u
mode=${1:?usage: bash bench/h200_s59_session.sh rows5|models|suite|dawnsuite}
shift
out=${OUT:-bench/results/h200_session59/$mode}
if [ "$mode" = suite ]; then OUT=$out exec bash bench/h200_s44_session.sh webgpu; fi
if [ "$mode" = dawnsuite ]; then OUT=$out exec bash bench/h200_s44_session.sh dawn; fi
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
stamp "$(nproc) cores, $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
case $mode in
rows5)
  configs=(
    'table={}'
    'L16={"lanes":16}'
    'L16U8={"lanes":16,"unroll":8}'
    'L16U2={"lanes":16,"unroll":2}'
    'U2={"unroll":2}'
    'U8={"unroll":8}'
    'half={"halfMath":true}'
  )
  kernel_sweep 60 r5 configs --backend=webgpu --strategies=lean --grid=264 \
    --cases=bench/cases_groups.json --only="gqa40/8" --check
  run_deno 90 anchors.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean \
    --cases=bench/cases_groups.json --only="gqa32/8|gqa64/8 32k|gqa64/8 128k" --skip="int8|e4m3|e5m2|d64" \
    --check --paged --out="$out/anchors.json"
  ;;
models)
  model_runs models bench/cases_models.json
  ;;
*)
  echo "unknown mode $mode" >&2
  exit 2
  ;;
esac
stamp "done"
