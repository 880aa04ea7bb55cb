#!/usr/bin/env bash
# Issue 16 (and 14) on the H200, in one call: the GPU test files of the variants, 8-bit KV,
# ragged batches, MLA and runner formats (a hardware GPU runs their whole shape space), then the
# benchmark rows the issue asks for: 8-bit KV beside f16 at 32k-512k, MLA beside MQA, a 128k
# context with a 4096-token sliding window beside 4k and 128k, runner-owned pages (NHD and HND,
# page sizes 1, 16, 128), and three cases of the whole set, all strategies, against the figures
# of bench/results/h200_webgpu.json (issue 14: the one attention program changes no speed).
# Results under $OUT (default bench/results/h200_variants): session.log and one file per step.
# On the device machine: bash .gpu/boot.sh bash bench/h200_variants_session.sh
set -u
out=${OUT:-bench/results/h200_variants}
# shellcheck source=bench/session_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/session_lib.sh"

if [ "${1:-}" = final ]; then
  # The last call: the cross-feature tests on a hardware GPU; with the kernel table of the second
  # call (prefetch at unroll 4), lean through the paged cache on the cases that table changed,
  # the 8-bit cases, and Dawn on the changed cases (lean).
  stamp "final"
  LEAN_TEST_BACKENDS=cpu,webgpu timeout 120 deno test -A --unstable-webgpu \
    tests/combinations_test.ts tests/combinations_gpu_test.ts tests/variants_test.ts \
    tests/kv8_decode_test.ts \
    tests/batches_test.ts tests/mla_test.ts >"$out/tests_final.log" 2>&1
  stamp "tests exit $? ($(grep -E '^(ok|FAILED) \|' "$out/tests_final.log" | tail -1))"
  changed='gqa32/8 8k|gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b4 4k|b16 4k|b64 4k|b4 16k|b16 16k|b64 16k|d256|ragged|qLen4'
  run_deno 120 bench_paged.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --paged \
    --only="$changed" --skip='int8|e4m3|e5m2|mha' --out="$out/h200_paged.json"
  run_deno 80 bench_kv8.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean \
    --only='int8|e4m3|e5m2' --out="$out/h200_kv8.json"
  run_deno 150 bench_dawn.txt bench/gpu_bench.ts --backend=dawn --strategies=lean \
    --only="$changed" --skip='int8|e4m3|e5m2|mha' --out="$out/h200_dawn_changed.json"
  # MLA's kernel class (bench/tune_configs_mla.json): fewer lanes per token, row sets.
  run_deno 100 tune_mla.txt bench/tune.ts --cases='mla b1 32k' \
    --configs="$(cat bench/tune_configs_mla.json)" --out="$out/tune_mla.json"
  stamp "done"
  exit 0
fi
if [ "${1:-}" = second ]; then
  # The second call: the window benchmark (its file was left out of the first call's results),
  # fp8e4m3 after its cheaper unpack, and issue 13's last lead: prefetch at unroll 4 for the
  # 4- and 8-row classes (bench/table_prefetch_u4.json) on every case those classes run.
  stamp "second"
  run_deno 40 window.txt bench/window_bench.ts --backend webgpu --runs 25
  run_deno 60 bench_e4m3.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean \
    --only='gqa32/8 32k e4m3|gqa32/8 128k e4m3|gqa32/8 512k e4m3' --out="$out/h200_e4m3.json"
  anchors="--anchor=bench/results/h200_session/torch.json"
  anchors="$anchors --triton=bench/results/h200_session/triton.json"
  run_deno 330 bench_prefetch.txt bench/gpu_bench.ts --backend=webgpu --check $anchors \
    --table=bench/table_prefetch_u4.json --skip='int8|e4m3|e5m2|mha' \
    --only='gqa32/8 8k|gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b4 4k|b16 4k|b64 4k|b4 16k|b16 16k|b64 16k|d256|ragged|qLen4' \
    --out="$out/h200_prefetch.json"
  stamp "done"
  exit 0
fi
stamp "start"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | tee -a "$log"

stamp "== tests (Deno's WebGPU and the CPU)"
LEAN_TEST_BACKENDS=cpu,webgpu timeout 170 deno test -A --unstable-webgpu \
  tests/variants_test.ts tests/kv8_decode_test.ts tests/kv8_cache_test.ts tests/batches_test.ts \
  tests/mla_test.ts tests/runner_formats_test.ts tests/paged_test.ts >"$out/tests.log" 2>&1
stamp "tests exit $? ($(grep -E '^(ok|FAILED) \|' "$out/tests.log" | tail -1))"

stamp "== 8-bit KV, MLA and MQA cases (lean)"
run_deno 150 bench_kv8_mla.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
  --only='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b1 h32 128k|b16 16k|mla|mqa' \
  --out="$out/h200_kv8_mla.json"

stamp "== sliding window"
run_deno 60 window.txt bench/window_bench.ts --backend webgpu --runs 25

stamp "== runner-owned pages"
run_deno 80 runner_pages.txt bench/runner_pages_bench.ts --context=32768 --batch=8 \
  --page-sizes=1,16,128 --layouts=NHD,HND --out="$out/runner_pages.json"

stamp "== one attention program: three cases, every strategy"
run_deno 90 bench_program.txt bench/gpu_bench.ts --backend=webgpu \
  --only='b1 h32 128k|gqa32/8 128k|b16 16k' --out="$out/h200_program.json"
stamp "done"
