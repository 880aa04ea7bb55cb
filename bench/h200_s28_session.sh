#!/usr/bin/env bash
# Issues 13 and 16, session 28, on the H200 in one call per mode (results under $OUT or
# bench/results/h200_session15/MODE):
#   sass    the machine code NVIDIA's Vulkan driver makes of the kernels: each SPIR-V of
#           .scratch/spv (bench/dump_spirv.ts, on lavapipe) compiled alone into a pipeline cache
#           by bench/vk_pipeline_stats.c --cache (built into .scratch/ as its header says; carry
#           .scratch), the caches and the driver's own disk cache packed into sass.tgz; the code
#           is found in them and disassembled here by bench/sass_from_cache.py (nvdisasm, which
#           Triton's wheel carries).
# Run: OUT=... bash .gpu/boot.sh bash bench/h200_s28_session.sh MODE
set -u
mode=${1:-sass}
out=${OUT:-bench/results/h200_session15/$mode}
# shellcheck source=bench/session_lib.sh
source "$(dirname "$0")/session_lib.sh"
stamp "$mode"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$log"

if [ "$mode" = sass ]; then
  work=$(mktemp -d)
  mkdir -p "$work/cache" "$work/disk"
  __GL_SHADER_DISK_CACHE=1 __GL_SHADER_DISK_CACHE_PATH="$work/disk" \
    __GL_SHADER_DISK_CACHE_SKIP_CLEANUP=1 timeout 200 .scratch/vk_pipeline_stats \
    --cache="$work/cache" .scratch/spv/*.spv >"$out/stats.txt" 2>&1
  stamp "exit $? (stats.txt)"
  tar -czf "$out/sass.tgz" -C "$work" cache disk
  stamp "$(du -sh "$work/cache" "$work/disk" | tr '\n' ' ')"
  stamp "done"
fi

if [ "$mode" = pin ]; then
  # The machine code of session 28's pinned-prefetch kernels, then the variants timed.
  sass_of .scratch/spv/*pin*.spv
  cases='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b4 16k|b16 16k|gqa32/8 128k int8|b1 h32 128k'
  run_deno 300 pin.txt bench/diag_floors.ts --stream-ms=2 --variants='lean|pin|pin K' \
    --bench-cases="$cases|d256 32k" --out="$out/pin.json"
  stamp "done"
fi

if [ "$mode" = pin2 ]; then
  # The machine code of the pinned kernels with room for their loads and of the paged kernels,
  # then those tunings timed with and without the pin.
  sass_of .scratch/spv/*rs2_pin.spv .scratch/spv/*paged.spv .scratch/spv/r4_d256_f16.spv
  run_deno 330 pin2.txt bench/diag_floors.ts --stream-ms=2 \
    --variants='lean|U2|U2 pin|L16|L16 pin|RS2 pin' \
    --bench-cases='gqa32/8 32k|gqa32/8 128k|b4 16k|b16 16k' --out="$out/pin2.json"
  stamp "done"
fi

if [ "$mode" = runs ]; then
  # Token runs (tuning `tokenRuns`): the machine code of the paged and dense kernels with and
  # without, then lean and its paged twin (pages of 16) timed without and with (checked against
  # float64), two processes.
  sass_of .scratch/spv/*runs.spv
  cases='b1 h32 32k|b1 h32 128k|gqa32/8 32k|gqa32/8 128k|b4 16k|b16 16k|b64 16k|d64 32k'
  cases="$cases|d256 32k|qLen4 gqa 16k"
  run_deno 240 paged_base.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --paged \
    --only="$cases" --skip='int8|e4m3' --out="$out/paged_base.json"
  run_deno 300 paged_runs.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --paged \
    --check --kernel='{"tokenRuns":true}' --only="$cases" --skip='int8|e4m3' \
    --out="$out/paged_runs.json"
  stamp "done"
fi

if [ "$mode" = paged ]; then
  # Every f16 case, lean and its paged twin (pages of 16) with the kernel table's token runs
  # (r4 d64, r4 d256), each case's kernel checked against float64; anchors as in warm2.
  anchors="--anchor=bench/results/h200_torch_sdpa.json --triton=bench/results/h200_triton.json"
  # shellcheck disable=SC2086
  run_deno 400 paged.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --check --paged \
    $anchors --skip='int8|e4m3|e5m2|mla|mqa' --out="$out/paged.json"
  stamp "done"
fi

if [ "$mode" = int8 ]; then
  # int8 unpacked as f32 magic numbers (the library's since session 28) against the signed-byte
  # conversions before and f16 halves: the machine code, then the three timed back to back (f16
  # twin beside). Ran at commit fb15cbf, whose library unpacked halves (column "lean") and whose
  # variant "int8 f32 magic" was today's library.
  sass_of .scratch/spv/r4_d128_int8*.spv
  cases='gqa32/8 32k int8|gqa32/8 128k int8|gqa32/8 512k int8|b16 16k int8|gqa32/8 128k'
  run_deno 300 int8.txt bench/diag_floors.ts --stream-ms=2 \
    --variants='lean|int8 I2F|int8 halves' --bench-cases="$cases" --out="$out/int8.json"
  stamp "done"
fi

if [ "$mode" = merge ]; then
  # Where the merge kernel's time goes: its machine code, then the pass with the merge kernel
  # returning at four points of its work (after the whole decode kernel), back to back.
  sass_of .scratch/spv/merge_*.spv
  variants='lean|merge cut: start|merge cut: record|merge cut: maxima|merge cut: sums|no merge'
  run_deno 300 merge.txt bench/diag_floors.ts --stream-ms=2 --variants="$variants" \
    --bench-cases='b1 h32 16k|gqa32/8 128k|b16 16k|d256 32k|b4 16k|qLen4 gqa 16k' \
    --out="$out/merge.json"
  stamp "done"
fi

if [ "$mode" = mergeab ]; then
  # Session 28's merge kernel (subgroup tree, nested slot reads) against the one before it (a
  # worktree of the commit before, in .wt/base: carry it), back to back; its machine code.
  sass_of .scratch/spv/merge_*.spv
  cases='b1 h32 16k|gqa32/8 32k|gqa32/8 128k|b4 16k|b16 16k|d64 32k|d256 32k|qLen4 gqa 16k'
  for tree in base new; do
    dir=.
    if [ "$tree" = base ]; then dir=.wt/base; fi
    (cd "$dir" && run_deno 200 "merge_$tree.txt" bench/diag_floors.ts --stream-ms=2 \
      --variants='lean|no merge' --bench-cases="$cases" --out="$out/merge_$tree.json")
  done
  stamp "done"
fi

if [ "$mode" = qspin ]; then
  # The prefetch's loads used early with the query rows read from workgroup memory every step
  # (the registers they free may hold the next step's words): machine code and timing.
  sass_of .scratch/spv/*qsr*.spv
  run_deno 240 qspin.txt bench/diag_floors.ts --stream-ms=2 \
    --variants='lean|qs reload|qs reload pin|qs reload pin K' \
    --bench-cases='gqa32/8 32k|gqa32/8 128k|b4 16k|b16 16k|gqa32/8 128k int8' --out="$out/qspin.json"
  stamp "done"
fi

if [ "$mode" = tests ]; then
  # The GPU tests of session 28's kernel changes on the H200, through Deno's WebGPU and Dawn:
  # token runs (dense and paged), int8 unpacking, the merge's subgroup tree (non-finite tests
  # merge ~470 slots per row: two levels of 32-lane subgroups), paged and 8-bit decodes.
  LEAN_TEST_BACKENDS=cpu,webgpu,dawn timeout 400 deno test -A --unstable-webgpu \
    tests/token_runs_test.ts tests/kv8_unpack_gpu_test.ts tests/non_finite_test.ts \
    tests/paged_test.ts tests/kernel_options_test.ts tests/kv8_decode_test.ts >"$out/tests.log" 2>&1
  stamp "tests exit $? ($(grep -E '^(ok|FAILED) \|' "$out/tests.log" | tail -1))"
  stamp "done"
fi
