#!/usr/bin/env bash
# Issue 13, session 22, on the H200 in one call per mode: every benchmark row timed two ways, a
# pass alone between its timestamps (as before) and passes back to back ("stream", per pass), the
# way the PyTorch and Triton anchors have always been timed (CUDA graphs of ~2 ms of calls); the
# anchors now also time one call alone.
#   stream  the anchors (bench/anchors/torch_sdpa.py, triton_decode.py: back to back and alone),
#           then every f16 case on Deno's WebGPU with lean's paged twin (all strategies, each
#           case's kernel checked against float64 first) against them.
#   rows    the pass-cost diagnostic (bench/diag_pass_cost.ts: timed passes of 1-32 recordings),
#           the 8-bit, MLA and MQA rows on Deno's WebGPU (lean), then lean on Dawn over every f16
#           case against the anchors of `stream` (copied to bench/results/h200_torch_sdpa.json
#           and h200_triton.json).
#   loop    the token loop's step taken apart (bench/diag_floors.ts's session-22 variants: K/V
#           from cache, no lane shuffles, no exponentials, no f16 unpacking) on the 4-row GQA
#           kernel and the 1-row kernel over the same bytes.
#   loop2   the loop's arithmetic with cached rows, part by part (unpacking, exponentials, all
#           three of session 22's removals).
#   proto   (prepared in session 22, run in session 23) the token-lanes prototype
#           (bench/proto_token_lanes.ts: checked against float64, then timed beside lean at GQA
#           32/8 32k and 128k, f16, whole and with parts left out).
#   kv8     (session 23) the 8-bit unpacking with fewer instructions per word (int8 by bit-field
#           extracts, FP8 bytes shifted in pairs): its GPU tests (every code at every byte
#           position, 8-bit decode against float64), then the 8-bit rows (lean, each kernel
#           checked against float64 first).
#   kv8dawn (session 23) the 8-bit rows of kv8 on Dawn.
#   fmab    (session 23) scores as chains of scalar multiply-adds (tuning `fmaDots`) against the
#           sums of vec4 dot products, in two alternating rounds, on the multi-row cases and
#           batch-1 MHA 128k (lean, each kernel checked against float64).
#   fmab2   (session 23, after fmaDots became the default, with the chains also over query rows
#           in workgroup memory) the same A/B over d256 32k and d64 32k (rows in workgroup
#           memory) and qLen 4, then the decode and kernel-option GPU tests.
#   tests8  (session 23) every test file that decodes 8-bit KV, with exhaustive GPU shapes
#           (LEAN_TEST_EXHAUSTIVE=1), through Deno's WebGPU.
#   refresh (session 24) the f16 rows of `stream` and `rows` with the kernels of session 23,
#           against the anchors committed from `stream` (bench/results/h200_torch_sdpa.json,
#           h200_triton.json): every f16 case on Deno's WebGPU with lean's paged twin, then lean
#           on Dawn.
#   tiled   (session 24) the tiled many-row prototype (bench/proto_tiled.ts: checked against
#           float64, then timed beside lean on MLA b1/b8 32k, MQA h128/1 32k and qLen 4 GQA 16k).
#   mla     (session 24) the tiled kernel in the library: the MLA and tiled GPU test files with
#           exhaustive shapes (Deno's WebGPU), then the MLA and MQA rows (every strategy, each
#           kernel checked against float64) on Deno's WebGPU and lean's on Dawn.
#   mla2    (session 24) the MLA rows again (lean and split) after the tiled kernel's changes, and
#           the MLA and tiled GPU test files with exhaustive shapes.
#   mladawn (session 24) the MLA and MQA rows on Dawn (lean) with the final tiled kernel, then
#           the tiled and backend GPU tests through Deno's WebGPU and Dawn.
#   tiledab (session 24) the MLA rows (128, 32 and 16 heads) with the tiled kernel and without it
#           (`--kernel={"tiled":false}`: the decode kernel's 4-row blocks), lean, one round.
#   imma    (session 25) the integer-matrix prototype on Dawn (bench/proto_imma.ts: int8 K/V
#           through i8 subgroup matrices, exact to f32 grade; checked against float64, then timed
#           beside lean's int8 and f16 on GQA 32/8 32k-512k and b16 16k), then the MLA rows on
#           Deno's WebGPU (lean; session 24's last tiled-kernel changes, not yet measured there).
#   imma2   (session 25) the prototype alone (its checks, then its timings), without the library's
#           rows. (Its first runs in session 25 also timed cuts: prototype versions in git.)
#   mladawn2 (session 25) the MLA and MQA rows on Dawn (lean) with session 25's tiled kernel,
#           then the tiled GPU tests through Dawn alone.
#   mlagrid (session 25) the MLA rows (lean) on Dawn, then on Deno's WebGPU, after the tiled
#           class's calibration probe went to 512 tokens up to 1024 workgroups.
#   warm    (session 26) after back-to-back passes were sized from the warm rate (they had been
#           sized from a cold probe, which left the first strategy of each case with 1-2
#           recordings per pass where later ones got 4-7): the anchors (their graphs sized the
#           same way), every f16 case on Deno's WebGPU with lean's paged twin against them, then
#           the 8-bit, MLA and MQA rows (lean).
#   warmdawn (session 26) lean on Dawn over every f16 case against the anchors of `warm`
#           (copied to bench/results/h200_torch_sdpa.json and h200_triton.json); MLA on Dawn at
#           grids 131 and 264; d256 32k dense and paged with other "r4 d256" entries
#           (bench/paged_tables/); the timing GPU tests.
#   warm2   (session 26) after a case's first strategy was timed again at its end (the better of
#           its two timings kept) and the tiled class calibrated at 1.25x: every f16 case on
#           Deno's WebGPU with lean's paged twin, MLA on Dawn (calibrated), PyTorch's anchor
#           again (`torch_sdpa2.json`: its spread between runs), the 8-bit, MLA and MQA rows.
#   dawn2   (session 26) lean on Dawn over every f16 case again, now timed twice (the case's
#           first strategy again at its end, the better kept), against the best-of anchors.
#   tests   the GPU tests of timing (alone and back to back) and of reliability through Deno's
#           WebGPU.
# Results under $OUT (default bench/results/h200_session9): session.log and one file per step.
# On the device machine: bash .gpu/boot.sh bash bench/h200_stream_session.sh stream
set -u
out=${OUT:-bench/results/h200_session9}
# shellcheck source=bench/session_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/session_lib.sh"
mode=${1:-stream}
stamp "$mode"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | tee -a "$log"
f16_only="--skip=int8|e4m3|e5m2|mla|mqa"

if [ "$mode" = stream ]; then
  for anchor in torch_sdpa triton_decode; do
    (cd bench/anchors && timeout 120 python3 "$anchor.py" ../cases.json "$out/$anchor.json") \
      >"$out/$anchor.txt" 2>&1
    stamp "exit $? ($anchor.txt)"
  done
  run_deno 330 bench_webgpu.txt bench/gpu_bench.ts --backend=webgpu --check --paged \
    --anchor="$out/torch_sdpa.json" --triton="$out/triton_decode.json" "$f16_only" \
    --out="$out/h200_webgpu.json"
  stamp "done"
fi

if [ "$mode" = rows ]; then
  run_deno 120 diag_pass_cost.txt bench/diag_pass_cost.ts --out="$out/diag_pass_cost.json"
  run_deno 120 bench_kv8_mla.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
    --only='int8|e4m3|e5m2|mla|mqa' --out="$out/h200_kv8_mla.json"
  run_deno 300 bench_dawn.txt bench/gpu_bench.ts --backend=dawn --check --strategies=lean \
    --anchor=bench/results/h200_torch_sdpa.json --triton=bench/results/h200_triton.json \
    "$f16_only" --out="$out/h200_dawn.json"
  stamp "done"
fi

if [ "$mode" = refresh ]; then
  anchors="--anchor=bench/results/h200_torch_sdpa.json --triton=bench/results/h200_triton.json"
  # shellcheck disable=SC2086
  run_deno 300 bench_webgpu.txt bench/gpu_bench.ts --backend=webgpu --check --paged $anchors \
    "$f16_only" --out="$out/h200_webgpu.json"
  # shellcheck disable=SC2086
  run_deno 260 bench_dawn.txt bench/gpu_bench.ts --backend=dawn --check --strategies=lean \
    $anchors "$f16_only" --out="$out/h200_dawn.json"
  stamp "done"
fi

if [ "$mode" = tiled ]; then
  run_deno 90 tiled_check.txt bench/proto_tiled.ts --check
  run_deno 400 tiled.txt bench/proto_tiled.ts --out="$out/tiled.json"
  stamp "done"
fi

if [ "$mode" = mla ]; then
  LEAN_TEST_EXHAUSTIVE=1 run_tests 240 tests_mla.log tests/tiled_test.ts tests/mla_test.ts \
    tests/mla_cache_test.ts tests/mla_pages_test.ts
  run_deno 150 bench_mla.txt bench/gpu_bench.ts --backend=webgpu --check --only='mla|mqa' \
    --out="$out/h200_mla.json"
  run_deno 120 bench_mla_dawn.txt bench/gpu_bench.ts --backend=dawn --check --strategies=lean \
    --only='mla|mqa' --out="$out/h200_mla_dawn.json"
  stamp "done"
fi

if [ "$mode" = mla2 ]; then
  run_deno 150 bench_mla2.txt bench/gpu_bench.ts --backend=webgpu --check --only='mla' \
    --strategies=lean,split --out="$out/h200_mla2.json"
  LEAN_TEST_EXHAUSTIVE=1 run_tests 240 tests_mla2.log tests/tiled_test.ts tests/mla_test.ts \
    tests/mla_cache_test.ts tests/mla_pages_test.ts
  stamp "done"
fi

if [ "$mode" = mladawn ]; then
  run_deno 150 bench_mla_dawn2.txt bench/gpu_bench.ts --backend=dawn --check --strategies=lean \
    --only='mla|mqa' --out="$out/h200_mla_dawn2.json"
  LEAN_TEST_BACKENDS=cpu,webgpu,dawn timeout 240 deno test -A --unstable-webgpu \
    tests/tiled_test.ts tests/gpu_backend_test.ts >"$out/tests_dawn.log" 2>&1
  stamp "tests exit $? ($(grep -E '^(ok|FAILED) \|' "$out/tests_dawn.log" | tail -1))"
  stamp "done"
fi

if [ "$mode" = tiledab ]; then
  for round in 1; do
    for tiled in false true; do
      run_deno 100 "tiled_${tiled}_$round.txt" bench/gpu_bench.ts --backend=webgpu --check \
        --strategies=lean --only='mla' --kernel="{\"tiled\":$tiled}" \
        --out="$out/tiled_${tiled}_$round.json"
    done
  done
  grep -H ' lean ' "$out"/tiled_*.txt | tee -a "$log"
  stamp "done"
fi

if [ "$mode" = loop ]; then
  run_deno 200 diag_loop.txt bench/diag_floors.ts --out="$out/diag_loop.json" \
    --only='gqa32/8 128k|h8/8 128k|gqa32/8 32k' \
    --variants='lean|no loop|cached loads|no lane shuffles|no exp|no unpack|cached/no shuffles'
  stamp "done"
fi

if [ "$mode" = loop2 ]; then
  run_deno 150 diag_loop2.txt bench/diag_floors.ts --out="$out/diag_loop2.json" \
    --only='gqa32/8 128k|h8/8 128k' \
    --variants='lean|cached loads|cached/no unpack|cached/no exp|cached/no shuffles|cached/bare'
  stamp "done"
fi

if [ "$mode" = proto ]; then
  run_deno 60 proto_check.txt bench/proto_token_lanes.ts --check
  run_deno 240 proto.txt bench/proto_token_lanes.ts --out="$out/proto.json" --dtypes=f16 \
    --variants=full,no-pv,no-scores,no-k-dots,skeleton
  stamp "done"
fi

if [ "$mode" = kv8 ]; then
  run_tests 200 tests_kv8.log tests/kv8_unpack_gpu_test.ts tests/kv8_decode_test.ts
  run_deno 150 bench_kv8.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
    --only='int8|e4m3|e5m2' --out="$out/h200_kv8.json"
  stamp "done"
fi

if [ "$mode" = kv8dawn ]; then
  run_deno 200 bench_kv8_dawn.txt bench/gpu_bench.ts --backend=dawn --strategies=lean --check \
    --only='int8|e4m3|e5m2' --out="$out/h200_kv8_dawn.json"
  stamp "done"
fi

if [ "$mode" = fmab ]; then
  cases='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b16 16k|d256 32k|qLen4 gqa 16k|b1 h32 128k'
  for round in 1 2; do
    for fd in false true; do
      run_deno 100 "fma_${fd}_$round.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean \
        --check --only="$cases" --skip='int8|e4m3|e5m2' --kernel="{\"fmaDots\":$fd}" \
        --out="$out/fma_${fd}_$round.json"
    done
  done
  grep -H ' lean ' "$out"/fma_*.txt | tee -a "$log"
  stamp "done"
fi

if [ "$mode" = fmab2 ]; then
  for round in 1 2; do
    for fd in false true; do
      run_deno 60 "fma2_${fd}_$round.txt" bench/gpu_bench.ts --backend=webgpu --strategies=lean \
        --check --only='d256 32k|d64 32k|qLen4 gqa 16k' --kernel="{\"fmaDots\":$fd}" \
        --out="$out/fma2_${fd}_$round.json"
    done
  done
  grep -h ' lean ' "$out"/fma2_*.txt | tee -a "$log"
  run_tests 150 tests_fma.log tests/kernel_options_test.ts tests/decode_test.ts \
    tests/kv8_decode_test.ts
  stamp "done"
fi

if [ "$mode" = tests8 ]; then
  LEAN_TEST_EXHAUSTIVE=1 run_tests 420 tests8.log tests/kv8_unpack_gpu_test.ts \
    tests/kv8_decode_test.ts tests/kv8_cache_test.ts tests/combinations_gpu_test.ts \
    tests/combinations_test.ts tests/combinations_paged_test.ts tests/runner_formats_test.ts
  stamp "done"
fi

if [ "$mode" = imma ]; then
  run_deno 400 imma.txt bench/proto_imma.ts --twins --out="$out/imma.json"
  run_deno 150 bench_mla3.txt bench/gpu_bench.ts --backend=webgpu --check --only='mla' \
    --strategies=lean --out="$out/h200_mla3.json"
  stamp "done"
fi

if [ "$mode" = imma2 ]; then
  run_deno 300 imma2.txt bench/proto_imma.ts --out="$out/imma2.json"
  stamp "done"
fi

if [ "$mode" = mladawn2 ]; then
  run_deno 150 bench_mla_dawn3.txt bench/gpu_bench.ts --backend=dawn --check --strategies=lean \
    --only='mla|mqa' --out="$out/h200_mla_dawn3.json"
  LEAN_TEST_BACKENDS=cpu,dawn timeout 200 deno test -A --unstable-webgpu tests/tiled_test.ts \
    >"$out/tests_dawn.log" 2>&1
  stamp "tests exit $? ($(grep -E '^(ok|FAILED) \|' "$out/tests_dawn.log" | tail -1))"
  stamp "done"
fi

if [ "$mode" = mlagrid ]; then
  run_deno 150 bench_mla_dawn4.txt bench/gpu_bench.ts --backend=dawn --check --strategies=lean \
    --only='mla' --out="$out/h200_mla_dawn4.json"
  run_deno 150 bench_mla4.txt bench/gpu_bench.ts --backend=webgpu --check --strategies=lean \
    --only='mla' --out="$out/h200_mla4.json"
  stamp "done"
fi

if [ "$mode" = warm ]; then
  for anchor in torch_sdpa triton_decode; do
    (cd bench/anchors && timeout 150 python3 "$anchor.py" ../cases.json "$out/$anchor.json") \
      >"$out/$anchor.txt" 2>&1
    stamp "exit $? ($anchor.txt)"
  done
  run_deno 330 bench_webgpu.txt bench/gpu_bench.ts --backend=webgpu --check --paged \
    --anchor="$out/torch_sdpa.json" --triton="$out/triton_decode.json" "$f16_only" \
    --out="$out/h200_webgpu.json"
  run_deno 120 bench_kv8_mla.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
    --only='int8|e4m3|e5m2|mla|mqa' --anchor="$out/torch_sdpa.json" \
    --triton="$out/triton_decode.json" --out="$out/h200_kv8_mla.json"
  stamp "done"
fi

if [ "$mode" = warmdawn ]; then
  anchors="--anchor=bench/results/h200_torch_sdpa.json --triton=bench/results/h200_triton.json"
  # shellcheck disable=SC2086
  run_deno 260 bench_dawn.txt bench/gpu_bench.ts --backend=dawn --check --strategies=lean \
    $anchors "$f16_only" --out="$out/h200_dawn.json"
  for grid in 131 264; do
    run_deno 90 "bench_mla_dawn_$grid.txt" bench/gpu_bench.ts --backend=dawn --check \
      --strategies=lean --only='mla b1 32k|mla b8 32k' --grid="$grid" \
      --out="$out/h200_mla_dawn_$grid.json"
  done
  for table in default U4s U4p U8s_rows1; do
    flag=""
    if [ "$table" != default ]; then flag="--table=bench/paged_tables/$table.json"; fi
    # shellcheck disable=SC2086
    run_deno 60 "paged_d256_$table.txt" bench/gpu_bench.ts --backend=webgpu --check --paged \
      --strategies=lean --only='d256 32k' $flag --out="$out/paged_d256_$table.json"
  done
  grep -h -E ' lean(-paged)? ' "$out"/paged_d256_*.txt | tee -a "$log"
  run_tests 150 tests_timing.log tests/timing_test.ts tests/gpu_timing_test.ts
  stamp "done"
fi

if [ "$mode" = warm2 ]; then
  anchors="--anchor=bench/results/h200_torch_sdpa.json --triton=bench/results/h200_triton.json"
  # shellcheck disable=SC2086
  run_deno 330 bench_webgpu.txt bench/gpu_bench.ts --backend=webgpu --check --paged $anchors \
    "$f16_only" --out="$out/h200_webgpu.json"
  run_deno 90 bench_mla_dawn.txt bench/gpu_bench.ts --backend=dawn --check --strategies=lean \
    --only='mla b1 32k|mla b8 32k' --out="$out/h200_mla_dawn.json"
  (cd bench/anchors && timeout 100 python3 torch_sdpa.py ../cases.json "$out/torch_sdpa2.json") \
    >/tmp/torch_sdpa2.txt 2>&1
  stamp "exit $? (torch_sdpa2)"
  # shellcheck disable=SC2086
  run_deno 150 bench_kv8_mla.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check \
    --only='int8|e4m3|e5m2|mla|mqa' $anchors --out="$out/h200_kv8_mla.json"
  stamp "done"
fi

if [ "$mode" = dawn2 ]; then
  anchors="--anchor=bench/results/h200_torch_sdpa.json --triton=bench/results/h200_triton.json"
  # shellcheck disable=SC2086
  run_deno 330 bench_dawn.txt bench/gpu_bench.ts --backend=dawn --check --strategies=lean \
    $anchors "$f16_only" --out="$out/h200_dawn.json"
  stamp "done"
fi

if [ "$mode" = tests ]; then
  run_tests 200 tests.log tests/timing_test.ts tests/reliability_test.ts
  stamp "done"
fi
