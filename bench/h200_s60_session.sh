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
#   sweep    the kernel table's untuned classes that those models take, swept through Deno's
#            WebGPU at their calibrated grids (and 264 where a choice holds twice the state): r8
#            d64 (gpt-oss: 8 rows of 64 dims; the table's fallback, 8 lanes at unroll 2), r2 d128
#            (Gemma 2 27B, Gemma 3: 2 rows of 128; fallback 16 lanes at unroll 2) and r2 d256
#            (Gemma 2 9B; fallback 16 lanes at unroll 1), each config checked against float64.
#   sweep2   r8 d64 again around `sweep`'s best (4 lanes, two row sets): unroll, prefetch, token
#            runs, query rows in workgroup memory, 2 lanes with four row sets; then the paged
#            mode (pages of 16) of each class's two best, dense and paged in one run.
#   final    the variants cases with the kernel table's new r8 d64 and r2 d128 entries: through
#            Deno's WebGPU dense and paged (the paged check and timing now pass the case's
#            variants to the runner's plan), and through Dawn, each calibrated and checked.
set -u
mode=${1:?usage: bash bench/h200_s60_session.sh variants|sweep|sweep2|final}
shift
out=${OUT:-bench/results/h200_session60/$mode}
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
stamp "$(nproc) cores, $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
# The sweeps' cases: the full layers of the variants file, each config checked, timed once.
sweep_cases=(--backend=webgpu --strategies=lean --cases=bench/cases_models_variants.json --check
  --no-retime --skip="W128|W1024|W4096")
case $mode in
variants)
  model_runs variants bench/cases_models_variants.json
  ;;
sweep)
  r8=(
    'table={}'
    'L8U4P={"lanes":8,"unroll":4,"prefetch":true,"rowScatter":true}'
    'L8U4PS2={"lanes":8,"unroll":4,"prefetch":true,"rowSets":2,"rowScatter":true}'
    'L8U8S2={"lanes":8,"unroll":8,"prefetch":"split","rowSets":2,"queryShared":true,"tokenRuns":true,"rowScatter":true}'
    'L8U8PS2={"lanes":8,"unroll":8,"prefetch":true,"rowSets":2,"rowScatter":true}'
    'L4U4PS2={"lanes":4,"unroll":4,"prefetch":true,"rowSets":2,"rowScatter":true}'
    'L8U4S2={"lanes":8,"unroll":4,"rowSets":2,"rowScatter":true}'
  )
  kernel_sweep 45 r8d64 r8 "${sweep_cases[@]}" --only="gpt-oss" --grid=264
  r2=(
    'table={}'
    'L8U4P={"lanes":8,"unroll":4,"prefetch":true,"rowScatter":true}'
    'L16U4P={"lanes":16,"unroll":4,"prefetch":true}'
    'L16U8P={"lanes":16,"unroll":8,"prefetch":"split"}'
    'L8U8P={"lanes":8,"unroll":8,"prefetch":true}'
    'L16U4PR={"lanes":16,"unroll":4,"prefetch":true,"rowScatter":true}'
    'L8U4={"lanes":8,"unroll":4,"prefetch":true}'
  )
  kernel_sweep 60 r2d128 r2 "${sweep_cases[@]}" --only="gemma3" --grid=502
  r2b=(
    'L8U4P={"lanes":8,"unroll":4,"prefetch":true,"rowScatter":true}'
    'L8U8P={"lanes":8,"unroll":8,"prefetch":true}'
  )
  kernel_sweep 60 r2d128g264 r2b "${sweep_cases[@]}" --only="gemma3" --grid=264
  r2c=(
    'table={}'
    'L16U4P={"lanes":16,"unroll":4,"prefetch":true}'
    'L16U8S={"lanes":16,"unroll":8,"prefetch":"split","rowScatter":true}'
    'L32U2={"lanes":32,"unroll":2}'
  )
  kernel_sweep 45 r2d256 r2c "${sweep_cases[@]}" --only="gemma2" --grid=502
  ;;
sweep2)
  r8=(
    'L4U4PS2={"lanes":4,"unroll":4,"prefetch":true,"rowSets":2,"rowScatter":true}'
    'L4U8PS2={"lanes":4,"unroll":8,"prefetch":true,"rowSets":2,"rowScatter":true}'
    'L4U2PS2={"lanes":4,"unroll":2,"prefetch":true,"rowSets":2,"rowScatter":true}'
    'L4U4SpS2T={"lanes":4,"unroll":4,"prefetch":"split","rowSets":2,"tokenRuns":true,"rowScatter":true}'
    'L4U4PS2Q={"lanes":4,"unroll":4,"prefetch":true,"rowSets":2,"queryShared":true,"rowScatter":true}'
    'L4U4PS2T={"lanes":4,"unroll":4,"prefetch":true,"rowSets":2,"tokenRuns":true,"rowScatter":true}'
    'L2U4PS4={"lanes":2,"unroll":4,"prefetch":true,"rowSets":4,"rowScatter":true}'
    'L8U8S2={"lanes":8,"unroll":8,"prefetch":"split","rowSets":2,"queryShared":true,"tokenRuns":true,"rowScatter":true}'
  )
  kernel_sweep 45 r8d64 r8 "${sweep_cases[@]}" --only="gpt-oss" --grid=264
  paged8=(
    'L4U4PS2={"lanes":4,"unroll":4,"prefetch":true,"rowSets":2,"rowScatter":true}'
    'L4U4PS2T={"lanes":4,"unroll":4,"prefetch":true,"rowSets":2,"tokenRuns":true,"rowScatter":true}'
  )
  kernel_sweep 60 paged_r8d64 paged8 "${sweep_cases[@]}" --only="gpt-oss" --grid=264 --paged
  paged2=('L16U4PR={"lanes":16,"unroll":4,"prefetch":true,"rowScatter":true}')
  kernel_sweep 60 paged_r2d128 paged2 "${sweep_cases[@]}" --only="gemma3" --grid=502 --paged
  paged2b=('L8U4P={"lanes":8,"unroll":4,"prefetch":true,"rowScatter":true}')
  kernel_sweep 60 paged_r2d128g264 paged2b "${sweep_cases[@]}" --only="gemma3" --grid=264 --paged
  ;;
final)
  cases=(--cases=bench/cases_models_variants.json)
  run_deno 200 final_webgpu.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean \
    "${cases[@]}" --check --paged --out="$out/final_webgpu.json"
  rows_bench 150 final_dawn '{}' --check "${cases[@]}"
  ;;
*)
  echo "unknown mode $mode" >&2
  exit 2
  ;;
esac
stamp "done"
