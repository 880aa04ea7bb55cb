#!/usr/bin/env bash
# Issues 13 and 16, session 34, on the H200 in one call per mode (results under $OUT or
# bench/results/h200_session21/MODE).
#   hv      f16 V's weighted sums in packed f16 (`kernel: { halfMath: true, halfValues: true }`:
#           its halves used as stored, the sums added into the f32 state every step or every 2):
#           the token loop against the default and `halfMath`'s f16 keys alone, and its
#           arithmetic alone (K/V rows from cache), on the multi-row f16 cases
#           (bench/diag_floors.ts); then the f16 rows of those cases with the default kernels and
#           with packed f16 keys and values, each checked against float64 and timed back to back;
#           then the int8 rows through the paged cache at the default 64-token tiles (integer keys),
#           checked; then the kernel options tests through Deno's WebGPU.
#   t128    f16 keys as packed f16 (`halfMath`, query rows in f16: half the registers) at twice
#           the tokens per step in 128-token tiles (unroll 8; whole or split prefetch, or V
#           unpacked per token), against the default, `halfMath` alone and plain f16 at unroll 8,
#           back to back (bench/diag_floors.ts); then the f16 rows with the fastest of them,
#           checked against float64 and timed (`gpu_bench --tile-tokens=128`).
#   sass    what NVIDIA's driver makes of the 4-row d128 kernels over f16 (the default, packed f16
#           keys, packed f16 keys and values) and int8: registers and spills
#           (bench/vk_pipeline_stats.c over the SPIR-V that `deno run -A --unstable-webgpu
#           bench/dump_spirv.ts --out=.scratch/spv --only=...` dumped on lavapipe; the tool built
#           into .scratch/ by `gcc -O2 -o .scratch/vk_pipeline_stats bench/vk_pipeline_stats.c
#           -lvulkan`; carry .scratch), and the token loops' machine code
#           (bench/sass_from_cache.py with the nvdisasm of the installed Triton).
#   tokv    per-token V scales joined to each token's weights (a multiply per row and token)
#           instead of each unpacked V element: the dense per-token-scale rows, this commit's
#           kernels against the commit before's (its files in .scratch/base, from `git archive`;
#           carry .scratch), back to back (bench/diag_floors.ts); then every 8-bit case with its
#           paged twin (the paged cache keeps per-token scales), checked against float64, with
#           both trees; then the 8-bit, kernel options and token-run tests through Deno's WebGPU.
#   tok8    what the driver makes of the 8-bit kernels with per-token scales (E4M3's takes 1.2x
#           its per-tensor kernel's time, int8's 1.04x): registers, spills and the token loops'
#           machine code (as `sass`, over the SPIR-V of dump_spirv.ts's `*_tok*` kernels; a zstd
#           binary in .scratch/bin with its libraries in .scratch/lib, where the device has none),
#           then the per-token-scale rows with and without V unpacked per token (`vpt`), back to
#           back.
#   pin8    int8 (integer keys, 237 registers) with the next step's loads used early (`pin`,
#           `pin K`) and at unroll 2 with and without them (`U2`, `U2 pin`), back to back: whether
#           the loads the compiler sinks to the loop's end overlap the step's arithmetic there, as
#           in the E4M3 kernel (its loads at the loop's top; its time that of its arithmetic).
#   early   the shipped int8 kernels with their next step's loads issued early (`earlyLoads`, the
#           default since `pin8`) against them left late, back to back; then the GQA int8 rows and
#           their f16 twins with their paged twins, checked against float64 (the README's 8-bit
#           table); then the kernel options and 8-bit cache tests through Deno's WebGPU.
#   early2  after `early`: no early loads with per-token scales (the paged int8 kernels were
#           slower with them); the GQA int8 rows with their paged twins, checked, back to back.
# Run: OUT=... bash .gpu/boot.sh bash bench/h200_s34_session.sh MODE
set -u
mode=${1:-hv}
out=${OUT:-bench/results/h200_session21/$mode}
# shellcheck source=bench/session_lib.sh
source "$(dirname "$0")/session_lib.sh"
stamp "$mode"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$log"

f16_rows='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b4 16k|b16 16k|d64 32k|d256 32k|qLen4'

if [ "$mode" = hv ]; then
  run_deno 200 hv.txt bench/diag_floors.ts --stream-ms=2 \
    --variants='lean|half math|half values|half values s2|cached loads|half values cached' \
    --bench-cases='gqa32/8 128k|gqa32/8 512k|b16 16k|qLen4 gqa 16k|d256 32k' \
    --out="$out/hv.json"
  for run in plain hv; do
    kernel=()
    [ "$run" = hv ] && kernel=(--kernel='{"halfMath":true,"halfValues":true}')
    run_deno 150 "rows_$run.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      "${kernel[@]}" --only="$f16_rows" --skip='int8|e4m3|e5m2' --out="$out/rows_$run.json"
  done
  run_deno 150 paged_int8.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
    --paged --only='int8' --out="$out/paged_int8.json"
  run_backend_tests webgpu 120 tests_webgpu.log tests/kernel_options_test.ts
  stamp "done"
fi

if [ "$mode" = t128 ]; then
  run_deno 240 t128.txt bench/diag_floors.ts --stream-ms=2 \
    --variants='lean|half math|half T128 U8|half T128 U8 split|half T128 U8 vpt|T128 U8' \
    --bench-cases='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b4 16k|b16 16k|qLen4 gqa 16k' \
    --out="$out/t128.json"
  run_deno 150 rows_t128.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
    --tile-tokens=128 --kernel='{"halfMath":true,"unroll":8}' \
    --only='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b4 16k|b16 16k|qLen4' --skip='int8|e4m3|e5m2' \
    --out="$out/rows_t128.json"
  stamp "done"
fi

if [ -x .scratch/bin/zstd ]; then
  export PATH="$PWD/.scratch/bin:$PATH" LD_LIBRARY_PATH="$PWD/.scratch/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

if [ "$mode" = sass ] || [ "$mode" = tok8 ]; then
  sass_of .scratch/spv/*.spv
  stamp "done"
fi

if [ "$mode" = tokv ]; then
  tok='gqa32/8 32k e4m3 tok|gqa32/8 128k e4m3 tok|gqa32/8 512k e4m3 tok'
  for tree in base new; do
    dir=.
    if [ "$tree" = base ]; then dir=.scratch/base; fi
    (cd "$dir" && run_deno 120 "tok_$tree.txt" bench/diag_floors.ts --stream-ms=2 \
      --variants='lean' --bench-cases="$tok" --out="$out/tok_$tree.json")
  done
  for tree in new base; do
    dir=.
    if [ "$tree" = base ]; then dir=.scratch/base; fi
    (cd "$dir" && run_deno 200 "paged_$tree.txt" bench/gpu_bench.ts --backend=webgpu \
      --strategies=lean --check --paged --only='int8|e4m3|e5m2' --out="$out/paged_$tree.json")
  done
  run_backend_tests webgpu 200 tests_webgpu.log tests/kv8_decode_test.ts tests/kv8_cache_test.ts \
    tests/kernel_options_test.ts tests/token_runs_test.ts
  stamp "done"
fi

if [ "$mode" = tok8 ]; then
  run_deno 200 tok8.txt bench/diag_floors.ts --stream-ms=2 --variants='lean|vpt|cached loads' \
    --bench-cases='gqa32/8 128k e4m3|gqa32/8 128k e4m3 tok|gqa32/8 512k e4m3 tok|gqa32/8 128k int8' \
    --out="$out/tok8.json"
  stamp "done"
fi

if [ "$mode" = pin8 ]; then
  run_deno 200 pin8.txt bench/diag_floors.ts --stream-ms=2 \
    --variants='lean|pin|pin K|U2|U2 pin|cached loads' \
    --bench-cases='gqa32/8 128k int8|gqa32/8 512k int8|b16 16k int8' --out="$out/pin8.json"
  stamp "done"
fi

if [ "$mode" = early ]; then
  run_deno 150 early.txt bench/diag_floors.ts --stream-ms=2 --variants='lean|late loads' \
    --bench-cases='gqa32/8 32k int8|gqa32/8 128k int8|gqa32/8 512k int8|b16 16k int8' \
    --out="$out/early.json"
  run_deno 240 rows.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check --paged \
    --only='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b16 16k' --skip='e4m3|e5m2' --out="$out/rows.json"
  run_backend_tests webgpu 150 tests_webgpu.log tests/kernel_options_test.ts tests/kv8_cache_test.ts
  stamp "done"
fi

if [ "$mode" = early2 ]; then
  run_deno 200 rows.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check --paged \
    --only='int8' --out="$out/rows.json"
  stamp "done"
fi
