# Shared by the H200 session scripts (bench/h200_kernels_session.sh, h200_variants_session.sh):
# sourced after `out` is set, it makes the results folder absolute, and defines `stamp` (a
# timestamped line into session.log), `run_deno LIMIT FILE ARGS...` (a Deno script under a
# timeout, its output minus npm warnings into $out/FILE, its exit status stamped) and
# `run_tests LIMIT FILE TESTS...` (GPU tests through Deno's WebGPU, and their CPU twins, under a
# timeout into $out/FILE, the summary line stamped), `run_backend_tests` and `stamped_tests`
# (below) and `sweep_and_pick NAME LIMIT CONFIGS CASES` (a bench/tune.ts sweep of the
# configurations file over the cases into $out/tune_NAME.json, the table picked from it by
# bench/pick_table.ts into $out/table_NAME.json, and `table` set to its `--table=` flag, empty if
# nothing was picked).
mkdir -p "$out"
out=$(cd "$out" && pwd)
export NO_COLOR=1
log="$out/session.log"
stamp() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$log"; }
run_deno() {
  local limit=$1 file=$2
  shift 2
  timeout "$limit" deno run -A --unstable-webgpu --v8-flags=--expose-gc "$@" 2>&1 |
    grep -v -E '^Warning|lifecycle|node_modules|^\s*$|│|╭|╰' >"$out/$file"
  stamp "exit ${PIPESTATUS[0]} ($file)"
}
run_tests() {
  local limit=$1 file=$2
  shift 2
  LEAN_TEST_BACKENDS=cpu,webgpu timeout "$limit" deno test -A --unstable-webgpu "$@" \
    >"$out/$file" 2>&1
  stamp "tests exit $? ($(grep -E '^(ok|FAILED) \|' "$out/$file" | tail -1))"
}
# `run_backend_tests BACKEND LIMIT FILE TESTS...`: GPU tests through one runtime alone (its own
# process, so a stalled Dawn run cannot hide Deno's WebGPU failures), the summary line stamped.
run_backend_tests() {
  local backend=$1 limit=$2 file=$3
  shift 3
  LEAN_TEST_BACKENDS=$backend timeout "$limit" deno test -A --unstable-webgpu "$@" \
    >"$out/$file" 2>&1
  stamp "$backend tests exit $? ($(grep -E '^(ok|FAILED) \|' "$out/$file" | tail -1))"
}
# `stamped_tests FILE LIMIT COMMAND...`: COMMAND's output under a timeout, each line stamped with
# its time, into $out/FILE; its exit status, seconds and summary line stamped (sessions 42, 44).
stamped_tests() {
  local file=$1 limit=$2 t0=$SECONDS
  shift 2
  timeout "$limit" "$@" 2>&1 |
    while IFS= read -r line; do printf '%(%T)T %s\n' -1 "$line"; done >"$out/$file"
  stamp "$file: exit ${PIPESTATUS[0]} in $((SECONDS - t0)) s" \
    "($(grep -E '(ok|FAILED) \|' "$out/$file" | tail -1))"
}
sweep_and_pick() {
  local name=$1 limit=$2 configs=$3 cases=$4
  run_deno "$limit" "tune_$name.txt" bench/tune.ts --out="$out/tune_$name.json" \
    --configs="$(cat "$configs")" --cases="$cases"
  run_deno 20 "table_$name.txt" bench/pick_table.ts "$out/tune_$name.json" "$out/table_$name.json"
  table=""
  if [ -s "$out/table_$name.json" ]; then table="--table=$out/table_$name.json"; fi
}
# `sass_of SPV...`: the driver's statistics of each kernel into $out/stats.txt, its pipeline
# caches into $out/sass.tgz and, where the installed Triton's nvdisasm and a zstd command are at
# hand (session 34 ships zstd in .scratch/bin), the token loops' machine code into $out/loops.txt
# (bench/sass_from_cache.py); `sass_tag` suffixes the three names.
sass_of() {
  local work nvdisasm
  work=$(mktemp -d)
  mkdir -p "$work/cache"
  timeout 100 .scratch/vk_pipeline_stats --cache="$work/cache" "$@" >"$out/stats${sass_tag:-}.txt" 2>&1
  stamp "exit $? (stats${sass_tag:-}.txt)"
  nvdisasm=$(python3 -c 'import os, triton; print(os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/nvdisasm"))' 2>/dev/null)
  if [ -x "$nvdisasm" ] && command -v zstd >/dev/null; then
    python3 bench/sass_from_cache.py --nvdisasm="$nvdisasm" "$work"/cache/*.cache \
      >"$out/loops${sass_tag:-}.txt" 2>&1
    stamp "exit $? (loops${sass_tag:-}.txt)"
  fi
  tar -czf "$out/sass${sass_tag:-}.tgz" -C "$work" cache
}
# `kernel_sweep LIMIT PREFIX CONFIGS ARGS...`: bench/gpu_bench.ts with ARGS once per entry of the
# array named CONFIGS (`NAME=KERNEL_JSON`), each under LIMIT into $out/PREFIX_NAME.txt and .json
# (sessions 57-58).
kernel_sweep() {
  local limit=$1 prefix=$2 entry name
  local -n sweep_configs=$3
  shift 3
  for entry in "${sweep_configs[@]}"; do
    name=${entry%%=*}
    run_deno "$limit" "${prefix}_$name.txt" bench/gpu_bench.ts "$@" --kernel="${entry#*=}" \
      --out="$out/${prefix}_$name.json"
  done
}
# `run_anchors LIMIT CASES`: the PyTorch SDPA and Triton decode anchors (bench/anchors/) on a
# cases file, each under LIMIT, into $out/torch_sdpa.json and $out/triton.json (sessions 57, 59).
run_anchors() {
  local limit=$1 cases=$2
  timeout "$limit" python3 bench/anchors/torch_sdpa.py "$cases" "$out/torch_sdpa.json" \
    >"$out/torch_sdpa.txt" 2>&1
  stamp "torch_sdpa exit $?"
  timeout "$limit" python3 bench/anchors/triton_decode.py "$cases" "$out/triton.json" \
    >"$out/triton.txt" 2>&1
  stamp "triton exit $?"
}
# `model_runs NAME CASES`: the README's per-model table on a cases file (sessions 59 and 60): the
# default kernels through Deno's WebGPU and through Dawn, the matrix kernel through Dawn
# (`matrixMinRows: 4`, so every group of 4 rows or more takes it), each calibrated and checked
# against float64, then the PyTorch and Triton anchors.
model_runs() {
  local name=$1 cases=$2
  run_deno 200 "${name}_webgpu.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean \
    --cases="$cases" --check --out="$out/${name}_webgpu.json"
  rows_bench 150 "${name}_dawn" '{}' --check --cases="$cases"
  rows_bench 150 "${name}_matrix" '{"matrixMath":true,"matrixMinRows":4}' --check --cases="$cases"
  run_anchors 100 "$cases"
}
# `rows_bench LIMIT NAME KERNEL ARGS...`: lean through Dawn on the many-row cases (JSON and text;
# sessions 49-50).
rows_bench() {
  local limit=$1 name=$2 kernel=$3
  shift 3
  run_deno "$limit" "bench_rows_$name.txt" bench/gpu_bench.ts --backend=dawn --strategies=lean \
    --cases=bench/cases_rows.json --kernel="$kernel" --out="$out/bench_rows_$name.json" "$@"
}
