#!/usr/bin/env bash
# Issue 13, session 20, on the H200 in one call per mode:
#   remeasure  the floors diagnostic (bench/diag_floors.ts: what a pass costs besides streaming),
#              every case on Dawn (all strategies, each case's kernel checked against float64
#              first), and lean with its paged twin (`--paged`: a KVCache of 16-token pages and
#              the attention encoder) on Deno's WebGPU, which also times lean under its own
#              name on the b64 cases.
#   more       the floors diagnostic again (its first run hung on a pass with nothing to warm),
#              the f16 cases the first Dawn run had no time for (all strategies) and the 8-bit,
#              MLA and MQA cases on Dawn (lean), then lean and its paged twin on Deno's WebGPU
#              on the cases whose paged time lagged (the page table now read a step ahead).
#   merge      after the parallel group merge: the GPU tests of the changed kernels, the floors
#              diagnostic on three shapes, every case on Deno's WebGPU with the paged twin of
#              lean (all strategies, checked against float64), and the 8-bit, MLA and MQA rows.
#   dawn       the multi-row cases on Dawn again after the parallel group merge (all strategies).
#   kv8        (prepared for the next session) a sweep of 8-bit KV's own table entries
#              (bench/tune_configs_kv8.json: an 8-bit row is half an f16 row, so the f16 choices
#              keep half the bytes in flight), the entries picked from it ("<class> 8-bit", see
#              kernelChoiceKey), then lean on the 8-bit cases with them, checked against float64,
#              beside their f16 twins (the sweep has no f16 case, so f16 keeps the built-in table).
#   floors     (session 21) the no-loop floor taken apart (bench/diag_floors.ts's session-21
#              variants: the decode kernel returning at once, no barriers, constant queries, one
#              piece per run) on four shapes, then the kv8 mode.
#   cuts       (session 21) the no-loop decode kernel cut at four points of its first piece
#              (bench/diag_floors.ts's "cut:" variants) beside the whole, on a 4-row and a 1-row
#              shape.
#   shuffle    (session 21) after the shuffle pre-merge of the token groups and the merge
#              kernel's early reads: the GPU tests of the changed kernels, then the floors
#              diagnostic with the shuffle pre-merge off, on, and at two groups.
#   final21    (session 21) after the branch-free query loads too: the GPU tests of the changed
#              kernels, the floors diagnostic (whole, no loop, merge alone, before the loop, the
#              old group merge), every f16 case on Deno's WebGPU with lean's paged twin (all
#              strategies, checked against float64).
#   rows21     (session 21) the 8-bit, MLA and MQA rows on Deno's WebGPU, then lean on Dawn over
#              the multi-row cases; then batch-1 MHA at 4k-16k with and without the shuffle
#              pre-merge (same run).
#   tests21    (session 21) the GPU tests of the variants, 8-bit KV, runner formats, batches and
#              non-finite inputs on the final kernels (the shuffle pre-merge is on for every
#              default kernel here, where lavapipe's 8-lane subgroups leave it off).
#   e5m2       (prepared in session 21, run in session 22) E5M2 MHA at 128k with
#              "r1 d128 8-bit" entries of bench/kv8_tables/
#              (the 8-bit entry leaves the grid calibrated on the class's f16 kernel, unlike the
#              kv8 sweep's device-wide tunings), each checked against float64, then f16 beside it.
#   abmha      (session 21) the shuffle pre-merge off and on, alternating twice, on batch-1 MHA
#              (4k, 16k, 32k) and GQA 32/8 32k: lean's median each time.
# Results under $OUT (default bench/results/h200_session7): session.log and one file per step.
# On the device machine: bash .gpu/boot.sh bash bench/h200_remeasure_session.sh remeasure
set -u
out=${OUT:-bench/results/h200_session7}
# shellcheck source=bench/session_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/session_lib.sh"
anchors="--anchor=bench/results/h200_torch_sdpa.json --triton=bench/results/h200_triton.json"
mode=${1:-remeasure}
# The GPU tests of the decode and merge kernels' paths (sessions 20-21's kernel changes).
kernel_tests="tests/decode_test.ts tests/kernel_options_test.ts tests/paged_test.ts tests/mla_test.ts"
stamp "$mode"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | tee -a "$log"

if [ "$mode" = remeasure ]; then
  run_deno 120 diag_floors.txt bench/diag_floors.ts --out="$out/diag_floors.json"
  run_deno 260 bench_dawn.txt bench/gpu_bench.ts --backend=dawn --check $anchors \
    --out="$out/h200_dawn.json"
  run_deno 200 bench_paged.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --paged \
    $anchors --out="$out/h200_paged.json"
  stamp "done"
fi

if [ "$mode" = more ]; then
  run_deno 150 diag_floors.txt bench/diag_floors.ts
  run_deno 240 bench_dawn2.txt bench/gpu_bench.ts --backend=dawn --check $anchors \
    --only='b64 4k|b4 16k|b16 16k|b64 16k|d64 32k|d256 32k|ragged|qLen4' \
    --skip='int8|e4m3|e5m2|mla|mqa' --out="$out/h200_dawn2.json"
  run_deno 120 bench_dawn_kv8.txt bench/gpu_bench.ts --backend=dawn --check --strategies=lean \
    --only='int8|e4m3|e5m2|mla|mqa' --out="$out/h200_dawn_kv8.json"
  run_deno 150 bench_paged2.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --paged \
    $anchors --only='gqa32/8|b64 4k|b16|b4 16k|d64|d256|ragged|qLen4|mqa|e5m2' \
    --out="$out/h200_paged2.json"
  stamp "done"
fi

if [ "$mode" = merge ]; then
  # shellcheck disable=SC2086
  run_tests 90 tests_merge.log $kernel_tests
  run_deno 75 diag_floors.txt bench/diag_floors.ts --only='gqa32/8 2k|gqa32/8 128k|h8/8'
  run_deno 280 bench_webgpu.txt bench/gpu_bench.ts --backend=webgpu --check --paged $anchors \
    --skip='int8|e4m3|e5m2|mla|mqa' --out="$out/h200_webgpu.json"
  run_deno 90 bench_kv8_mla.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
    --only='int8|e4m3|e5m2|mla|mqa' --out="$out/h200_kv8_mla.json"
  stamp "done"
fi

if [ "$mode" = dawn ]; then
  run_deno 250 bench_dawn3.txt bench/gpu_bench.ts --backend=dawn --check $anchors \
    --only='gqa32/8|b4 4k|b16 4k|b4 16k|b16 16k|qLen4|ragged|d64 32k|d256 32k' \
    --skip='int8|e4m3|e5m2|mla|mqa' --out="$out/h200_dawn3.json"
  stamp "done"
fi

if [ "$mode" = floors ]; then
  run_deno 200 diag_floors21.txt bench/diag_floors.ts --out="$out/diag_floors21.json" \
    --only='gqa32/8 2k|gqa32/8 128k|h8/8|b1 h32 32k' \
    --variants='lean|no loop|merge only|empty decode|empty, no merge|no loop/merge|no loop/barrier|no loop/q|no loop/1 piece|1 piece'
  mode=kv8
fi

if [ "$mode" = cuts ]; then
  run_deno 150 diag_cuts.txt bench/diag_floors.ts --out="$out/diag_cuts.json" \
    --only='gqa32/8 2k|b1 h32 32k' \
    --variants='lean|no loop|empty decode|cut: fields|cut: pre-loop|cut: pre-merge|cut: pre-output|no loop/q'
  stamp "done"
fi

if [ "$mode" = shuffle ]; then
  # shellcheck disable=SC2086
  run_tests 120 tests_shuffle.log $kernel_tests tests/determinism_test.ts tests/variants_test.ts
  run_deno 150 diag_shuffle.txt bench/diag_floors.ts --out="$out/diag_shuffle.json" \
    --only='gqa32/8 2k|gqa32/8 32k|gqa32/8 128k|b1 h32 32k' \
    --variants='lean|no shuffle merge|shuffle 2 groups|no loop|no loop/no shuffle|merge only'
  stamp "done"
fi

if [ "$mode" = final21 ]; then
  # shellcheck disable=SC2086
  run_tests 150 tests_final.log $kernel_tests tests/determinism_test.ts
  run_deno 90 diag_final.txt bench/diag_floors.ts --out="$out/diag_final.json" \
    --only='gqa32/8 2k|gqa32/8 32k|gqa32/8 128k|b1 h32 32k' \
    --variants='lean|no loop|merge only|cut: pre-loop|no shuffle merge'
  run_deno 290 bench_webgpu.txt bench/gpu_bench.ts --backend=webgpu --check --paged $anchors \
    --skip='int8|e4m3|e5m2|mla|mqa' --out="$out/h200_webgpu.json"
  stamp "done"
fi

if [ "$mode" = rows21 ]; then
  run_deno 100 bench_kv8_mla.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
    --only='int8|e4m3|e5m2|mla|mqa' --out="$out/h200_kv8_mla.json"
  run_deno 200 bench_dawn.txt bench/gpu_bench.ts --backend=dawn --check --strategies=lean \
    $anchors --only='gqa32/8|b4 16k|b16 16k|qLen4|ragged|d64 32k|d256 32k|b1 h32 1k|b1 h32 16k|b1 h32 32k' \
    --skip='int8|e4m3|e5m2|mla|mqa' --out="$out/h200_dawn.json"
  run_deno 40 bench_mha.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean \
    --only='b1 h32 4k|b1 h32 8k|b1 h32 16k' --out="$out/h200_mha.json"
  run_deno 40 bench_mha_noshuffle.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean \
    --only='b1 h32 4k|b1 h32 8k|b1 h32 16k' --kernel='{"shuffleGroups":1}' \
    --out="$out/h200_mha_noshuffle.json"
  stamp "done"
fi

if [ "$mode" = tests21 ]; then
  run_tests 280 tests21.log tests/variants_test.ts tests/kv8_decode_test.ts \
    tests/runner_formats_test.ts tests/batches_test.ts tests/non_finite_test.ts \
    tests/combinations_gpu_test.ts
  grep -E 'FAILED|ok \||failed' "$out/tests21.log" | tail -5
  stamp "done"
fi

if [ "$mode" = e5m2 ]; then
  for t in L8U4 L8U8 L8U8s L4U4 L4U8s; do
    run_deno 40 "e5m2_$t.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
      --only='b1 h32 128k e5m2' --table="bench/kv8_tables/$t.json"
  done
  run_deno 40 e5m2_f16.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean \
    --only='b1 h32 128k' --skip='e5m2'
  grep -H ' lean ' "$out"/e5m2_*.txt | tee -a "$log"
  stamp "done"
fi

if [ "$mode" = abmha ]; then
  for round in 1 2; do
    for sg in 1 32; do
      run_deno 40 "ab_sg${sg}_$round.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean \
        --only='b1 h32 4k|b1 h32 16k|b1 h32 32k|gqa32/8 32k' --kernel="{\"shuffleGroups\":$sg}"
    done
  done
  grep -H ' lean ' "$out"/ab_sg*.txt | tee -a "$log"
  stamp "done"
fi

if [ "$mode" = kv8 ]; then
  sweep_and_pick kv8 240 bench/tune_configs_kv8.json \
    'b1 h32 128k e5m2,gqa32/8 128k int8,gqa32/8 128k e4m3,gqa32/8 512k int8,b16 16k int8'
  run_deno 120 bench_kv8.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
    $table --only='int8|e4m3|e5m2|b1 h32 128k|gqa32/8 128k|gqa32/8 512k|b16 16k' \
    --out="$out/h200_kv8.json"
  stamp "done"
fi
