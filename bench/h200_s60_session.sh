#!/usr/bin/env bash
# Session 60 on the H200. Results under $OUT or bench/results/h200_session60/MODE:
#   variants the README's "Which kernels for which model" cases with attention variants
#            (bench/cases_models_variants.json: gpt-oss with its sinks, full and 128-token sliding
#            layers; Llama 3.2 1B; Gemma 2 9B with its soft-cap, global and 4096-token sliding
#            layers; Gemma 3 27B, global and 1024-token sliding layers) in one call, as session
#            59's `models`: the default kernels through Deno's WebGPU and through Dawn, the matrix
#            kernel through Dawn (`matrixMinRows: 4`), each calibrated and checked against
#            float64, then the PyTorch and Triton anchors on the same cases (a window's tokens
#            only, no sinks or soft-cap: bench/anchors/anchor_common.py).
set -u
mode=${1:?usage: bash bench/h200_s60_session.sh variants}
shift
out=${OUT:-bench/results/h200_session60/$mode}
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
stamp "$(nproc) cores, $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
case $mode in
variants)
  cases=(--cases=bench/cases_models_variants.json)
  run_deno 170 variants_webgpu.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean \
    "${cases[@]}" --check --out="$out/variants_webgpu.json"
  rows_bench 150 variants_dawn '{}' --check "${cases[@]}"
  rows_bench 150 variants_matrix '{"matrixMath":true,"matrixMinRows":4}' --check "${cases[@]}"
  run_anchors 100 bench/cases_models_variants.json
  ;;
*)
  echo "unknown mode $mode" >&2
  exit 2
  ;;
esac
stamp "done"
