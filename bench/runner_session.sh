#!/usr/bin/env bash
# The runner API on a GPU machine, in one go (results under $OUT, default bench/results/runner):
#   1. the paged-cache, plan-reuse and decode-loop tests on both runtimes,
#   2. the host cost of a decode step (bench/step_bench.ts) through Dawn and Deno's WebGPU,
#   3. the decode-loop example's large model through Dawn (per-token latency) and Deno's WebGPU
#      (syncing every 16 steps, then every step).
# On the device machine: bash .gpu/boot.sh bash bench/runner_session.sh
set -u
out=${OUT:-bench/results/runner}
mkdir -p "$out"
export NO_COLOR=1
stamp() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$out/session.log"; }

stamp "tests"
timeout 200 deno test -A --unstable-webgpu tests/paged_test.ts tests/plan_reuse_test.ts \
  tests/decode_loop_test.ts >"$out/tests.log" 2>&1
stamp "tests exit $? ($(grep -E '^(ok|FAILED) \|' "$out/tests.log" | tail -1))"

for backend in dawn webgpu; do
  stamp "step bench $backend"
  timeout 120 deno run -A --unstable-webgpu bench/step_bench.ts --backend="$backend" --runs=2000 \
    2>&1 | grep -v '^Warning' >>"$out/step_bench.txt"
done

run_loop() {
  local name=$1 limit=$2
  shift 2
  stamp "decode loop $name"
  timeout "$limit" deno run -A --unstable-webgpu examples/decode_loop.ts "$@" 2>&1 |
    tr '\r' '\n' | grep -v -E '^\[[#.]+\]|^Warning' >"$out/decode_loop_$name.txt"
}
run_loop dawn_large 150 --backend dawn --large
run_loop webgpu_large_sync16 120 --backend webgpu --large --sync-every 16
run_loop webgpu_large 120 --backend webgpu --large
stamp "done"
