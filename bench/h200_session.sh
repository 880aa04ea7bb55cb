#!/usr/bin/env bash
# Performance session on the H200 (issue 13), in one call: the kernel sweep, the kernel table
# picked from it, the PyTorch and Triton anchors, then every case of bench/cases.json on Deno's
# WebGPU (with the paged mode) and on Dawn, each case's kernel first checked against the float64
# reference on a shortened input. Results under $OUT (default bench/results/h200_session): all
# text in session.log, JSON beside it. Each step has its own timeout, so partial output survives;
# bench/merge_results.ts merges the JSON of a cut run with a later run of the missing cases.
# `complete` is the short second call of issue 13 (the cases the first call's limit cut).
# On the device machine: bash .gpu/boot.sh bash bench/h200_session.sh [complete]
# Full run, no time limit in mind: about 10 minutes (Dawn's part alone about 4).
set -u
out=${OUT:-bench/results/h200_session}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export NO_COLOR=1 PYTHONUNBUFFERED=1
log="$out/session.log"
stamp() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$log"; }
# Runs a Deno script under a timeout, its output (minus npm warnings) appended to the log.
run_deno() {
  local limit=$1
  shift
  timeout "$limit" deno run -A --unstable-webgpu --v8-flags=--expose-gc "$@" 2>&1 |
    grep -v -E '^Warning|lifecycle|node_modules|^\s*$|│|╭|╰' | tee -a "$log"
  stamp "exit ${PIPESTATUS[0]}"
}

if [ "${1:-}" = complete ]; then
  # The second, short call: the FMA ceiling with every chain live, the webgpu cases the first
  # call's time limit cut, a few more GQA configurations, and Dawn on the GQA-heavy cases.
  stamp "complete"
  stamp "== tune (GQA leads)"
  run_deno 22 bench/tune.ts --cases='gqa32/8 128k,b16 16k' --out="$out/tune_gqa.json" \
    --configs='[{"name":"L8 U2 nopf","lanes":8,"unroll":2,"prefetch":false},
{"name":"L8 U4 nopf","lanes":8,"unroll":4,"prefetch":false},
{"name":"L4 U4 nopf","lanes":4,"unroll":4,"prefetch":false}]'
  anchors="--anchor=bench/results/h200_session/torch.json"
  anchors="$anchors --triton=bench/results/h200_session/triton.json"
  stamp "== bench webgpu (rest)"
  run_deno 28 bench/gpu_bench.ts --backend=webgpu --paged --check $anchors \
    --only='ragged|qLen4' --out="$out/h200_webgpu_rest.json"
  stamp "== bench dawn (rest)"
  run_deno 45 bench/gpu_bench.ts --backend=dawn --check $anchors \
    --only='gqa32/8 32k|gqa32/8 128k|b16 16k|d64|d256|ragged|qLen4' \
    --out="$out/h200_dawn_rest.json"
  stamp "done"
  exit 0
fi
if [ "${1:-}" = rows ]; then
  # Session 18, first call: the sweep of row sets, shared query rows and unroll 4 over the GQA,
  # head-dim and qLen cases (bench/tune_configs_rows.json), the table picked from it, and the
  # multi-row cases of the benchmark with that table (anchors from the earlier session's files).
  stamp "rows"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv 2>&1 | tee -a "$log"
  stamp "== tune (rows)"
  run_deno 200 bench/tune.ts --out="$out/tune_rows.json" --configs="$(cat bench/tune_configs_rows.json)" \
    --cases='b1 h32 32k,b1 h32 128k,gqa32/8 32k,gqa32/8 128k,b16 16k,d64 32k,d256 32k,qLen4 gqa 16k'
  stamp "== table"
  run_deno 20 bench/pick_table.ts "$out/tune_rows.json" "$out/table_rows.json"
  table=""
  [ -s "$out/table_rows.json" ] && table="--table=$out/table_rows.json"
  stamp "== bench webgpu (multi-row cases)"
  run_deno 120 bench/gpu_bench.ts --backend=webgpu --check $table \
    --anchor=bench/results/h200_torch_sdpa.json --triton=bench/results/h200_triton.json \
    --only='gqa32|b4 4k|b16 4k|b64 4k|b4 16k|b16 16k|d64|d256|ragged|qLen4' \
    --out="$out/h200_webgpu_rows.json"
  stamp "done"
  exit 0
fi
if [ "${1:-}" = rows2 ]; then
  # Session 18, second call: a second sweep (bench/tune_configs_rows2.json: unroll 8, prefetch
  # at unroll 4, 16 lanes with row sets, 64-thread workgroups), the table picked from it, every
  # case on Deno's WebGPU (paged mode, float64 check) and lean on Dawn.
  stamp "rows2"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv 2>&1 | tee -a "$log"
  stamp "== tune (rows2)"
  run_deno 115 bench/tune.ts --out="$out/tune_rows2.json" --configs="$(cat bench/tune_configs_rows2.json)" \
    --cases='gqa32/8 32k,gqa32/8 128k,b16 16k,d64 32k,d256 32k,qLen4 gqa 16k'
  stamp "== table"
  run_deno 15 bench/pick_table.ts "$out/tune_rows2.json" "$out/table_rows2.json"
  table=""
  [ -s "$out/table_rows2.json" ] && table="--table=$out/table_rows2.json"
  anchors="--anchor=bench/results/h200_torch_sdpa.json --triton=bench/results/h200_triton.json"
  stamp "== bench webgpu"
  run_deno 210 bench/gpu_bench.ts --backend=webgpu --paged --check $table $anchors \
    --out="$out/h200_webgpu.json"
  # Dawn: lean on the cases whose kernels changed or that Dawn had not measured (the MHA
  # kernel of b1 h32 1k-256k is unchanged since bench/results/h200_dawn.json).
  stamp "== bench dawn (lean)"
  run_deno 130 bench/gpu_bench.ts --backend=dawn --check --strategies=lean $table $anchors \
    --only='gqa|b4 |b16 |b64 |d64|d256|ragged|qLen4|512k' --out="$out/h200_dawn.json"
  stamp "done"
  exit 0
fi
stamp "start"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.draw --format=csv \
  2>&1 | tee -a "$log"

stamp "== tune"
run_deno 110 bench/tune.ts \
  --cases='b1 h32 128k,gqa32/8 128k,b16 16k,d256 32k,qLen4 gqa 16k,d64 32k' \
  --out="$out/tune.json"
stamp "== table"
run_deno 20 bench/pick_table.ts "$out/tune.json" "$out/table.json"
table=""
[ -s "$out/table.json" ] && table="--table=$out/table.json"

stamp "== torch anchor"
(cd bench/anchors && timeout 45 python3 torch_sdpa.py ../cases.json "$out/torch.json") 2>&1 |
  tee -a "$log"
stamp "exit ${PIPESTATUS[0]}"
stamp "== triton anchor"
(cd bench/anchors && timeout 75 python3 triton_decode.py ../cases.json "$out/triton.json") 2>&1 |
  tee -a "$log"
stamp "exit ${PIPESTATUS[0]}"

stamp "== bench webgpu"
run_deno 140 bench/gpu_bench.ts --backend=webgpu --paged --check $table \
  --anchor="$out/torch.json" --triton="$out/triton.json" --out="$out/h200_webgpu.json"
stamp "== bench dawn"
run_deno 110 bench/gpu_bench.ts --backend=dawn --check $table \
  --anchor="$out/torch.json" --triton="$out/triton.json" --out="$out/h200_dawn.json"

nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv 2>&1 |
  tee -a "$log"
stamp "done"
