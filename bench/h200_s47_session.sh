#!/usr/bin/env bash
# Session 47 on the H200: the f16 matrix prototype at split precision, and the machine code of
# its matrix loads. Results under $OUT or bench/results/h200_session47/MODE:
#   split  the wide kernel (W 4, T 128) with queries and weights as f16 hi + 2^-12 lo pairs
#          (`split`; the weights' high parts from their bits) against the plain f16 one: the
#          checks against float64 (split: within 5e-6), then the many-row cases beside the
#          library's lean decode on the same Dawn device (arguments after the mode go to
#          bench/proto_hmma.ts).
#   sass   what Tint and NVIDIA's driver make of the wide kernel (session 46's `sass`, not run
#          then): Tint's SPIR-V printed through Dawn's `dump_shaders` toggle (spirv.txt), the
#          driver's own shader cache pointed at a fresh folder (glcache.tgz), and Triton's
#          nvdisasm copied beside them, to read the cache's machine code off the device.
#   all    split, then sass.
#   pipe   K/V tiles staged through workgroup memory with the staging loads a stage ahead in
#          registers (`pipelined`) against session 46's staged and unstaged kernels, at 1 and 2
#          times the splits; then `sass` of the pipelined kernel (into sass_pipe/). Made after
#          `all`'s machine code showed every matrix load from storage lowered to 2-byte loads
#          (LDG.E.U16, 8 per lane per 16 x 16 matrix) and those from workgroup memory to LDSM.
#   pipe2  the pipelined staging again with constant register indices, and staged as halves.
#   pipe3  the pipelined staging at split precision.
#   qst    the pipelined staging with the query block in workgroup memory (fewer registers).
#   rows   the row-parallel kernel: subgroups take different row blocks, share staged tiles.
#   rows2  the row-parallel kernel at 16-token tiles (fewer registers), MQA h128/1 alone.
set -u
mode=${1:?usage: bash bench/h200_s47_session.sh split|sass|all|pipe|pipe2|pipe3|qst|rows|rows2}
shift
out=${OUT:-bench/results/h200_session47/$mode}
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
stamp "$(nproc) cores, $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
split_mode() {
  local v='[{"T":128,"W":4,"tolerance":1e-3},{"T":128,"W":4,"split":true,"tolerance":5e-6}]'
  run_deno 300 hmma.txt bench/proto_hmma.ts --wide --variants="$v" --split-factors=1 \
    --only='qLen4|gqa32/8 128k|mqa|mla b1' --out="$out/hmma.json" "$@"
}
# `sass_mode [VARIANT]`: the wide kernel's variant (default W 4, T 128).
sass_mode() {
  local work nvdisasm
  work=$(mktemp -d)
  __GL_SHADER_DISK_CACHE=1 __GL_SHADER_DISK_CACHE_PATH="$work" \
    __GL_SHADER_DISK_CACHE_SKIP_CLEANUP=1 run_deno 60 spirv.txt bench/proto_hmma.ts \
    --probe="${1:-{\"T\":128,\"W\":4\}}" --dawn-features=dump_shaders
  tar -czf "$out/glcache.tgz" -C "$work" .
  stamp "glcache: $(find "$work" -type f | wc -l) files, $(du -sh "$work" | cut -f1)"
  nvdisasm=$(python3 -c 'import os, triton; print(os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/nvdisasm"))' 2>/dev/null)
  if [ -x "$nvdisasm" ]; then
    cp "$nvdisasm" "$out/nvdisasm"
    stamp "nvdisasm: $("$nvdisasm" --version 2>&1 | tail -1)"
  fi
}
case $mode in
  split) split_mode "$@" ;;
  sass) sass_mode ;;
  all)
    split_mode "$@"
    sass_mode
    ;;
  pipe)
    v='[{"T":128,"W":4,"tolerance":1e-3},{"T":64,"W":4,"staged":true,"tolerance":1e-3},'
    v+='{"T":64,"W":4,"staged":true,"pipelined":true,"tolerance":1e-3}]'
    run_deno 300 hmma.txt bench/proto_hmma.ts --wide --variants="$v" --split-factors=1,2 \
      --only='qLen4|gqa32/8 128k|mqa' --out="$out/hmma.json" "$@"
    out=$out/sass_pipe
    mkdir -p "$out"
    sass_mode '{"T":64,"W":4,"staged":true,"pipelined":true}'
    ;;
  pipe3)
    # After pipe2: the pipelined staging (its best) at split precision, beside the plain one.
    v='[{"T":64,"W":4,"staged":true,"pipelined":true,"tolerance":1e-3},'
    v+='{"T":64,"W":4,"staged":true,"pipelined":true,"split":true,"tolerance":5e-6}]'
    run_deno 300 hmma.txt bench/proto_hmma.ts --wide --variants="$v" --split-factors=1 \
      --only='qLen4|gqa32/8 128k|mqa' --out="$out/hmma.json" "$@"
    ;;
  qst)
    # After pipe2's machine code (about 190 registers per thread: two workgroups per
    # multiprocessor): the query block staged in workgroup memory instead of kept in
    # registers, at 1 and 2 times the splits; then its code (sass_qst/).
    v='[{"T":64,"W":4,"staged":true,"pipelined":true,"tolerance":1e-3},'
    v+='{"T":64,"W":4,"staged":true,"pipelined":true,"qStaged":true,"tolerance":1e-3}]'
    run_deno 300 hmma.txt bench/proto_hmma.ts --wide --variants="$v" --split-factors=1,2 \
      --only='qLen4|gqa32/8 128k|mqa' --out="$out/hmma.json" "$@"
    out=$out/sass_qst
    mkdir -p "$out"
    sass_mode '{"T":64,"W":4,"staged":true,"pipelined":true,"qStaged":true}'
    rm -f "$out/nvdisasm"
    ;;
  rows)
    # The row-parallel kernel (bench/proto_hmma_rows_wgsl.ts: subgroups take different blocks
    # of 16 rows and share each staged tile) against the best wide one, at 1, 2 and 4 times
    # the splits; then its code (sass_rows/).
    v='[{"T":64,"W":4,"staged":true,"pipelined":true,"tolerance":1e-3},'
    v+='{"T":32,"W":2,"rows":true,"tolerance":1e-3},{"T":32,"W":4,"rows":true,"tolerance":1e-3}]'
    run_deno 400 hmma.txt bench/proto_hmma.ts --wide --variants="$v" --split-factors=1,2,4 \
      --only='qLen4|gqa32/8 128k|mqa' --out="$out/hmma.json" "$@"
    out=$out/sass_rows
    mkdir -p "$out"
    sass_mode '{"T":32,"W":4,"rows":true}'
    rm -f "$out/nvdisasm"
    ;;
  rows2)
    # After rows (its W 4 T 32 kernel took 251 registers, one workgroup per multiprocessor):
    # 16-token tiles (a quarter of the staging registers), MQA h128/1 alone.
    v='[{"T":32,"W":4,"rows":true,"tolerance":1e-3},{"T":16,"W":4,"rows":true,"tolerance":1e-3},'
    v+='{"T":16,"W":2,"rows":true,"tolerance":1e-3}]'
    run_deno 200 hmma.txt bench/proto_hmma.ts --wide --variants="$v" --split-factors=1,2,4 \
      --only='mqa' --out="$out/hmma.json" "$@"
    ;;
  pipe2)
    # After pipe: the pipelined staging with every register index a constant (pipe's kernel
    # kept its staging registers in local memory), and with K/V staged as halves; their code.
    v='[{"T":128,"W":4,"tolerance":1e-3},{"T":64,"W":4,"staged":true,"pipelined":true,"tolerance":1e-3},'
    v+='{"T":64,"W":4,"staged":true,"pipelined":true,"halves":true,"tolerance":1e-3}]'
    run_deno 300 hmma.txt bench/proto_hmma.ts --wide --variants="$v" --split-factors=1,2 \
      --only='qLen4|gqa32/8 128k|mqa' --out="$out/hmma.json" "$@"
    top=$out
    out=$top/sass_pipe
    mkdir -p "$out"
    sass_mode '{"T":64,"W":4,"staged":true,"pipelined":true}'
    out=$top/sass_halves
    mkdir -p "$out"
    sass_mode '{"T":64,"W":4,"staged":true,"pipelined":true,"halves":true}'
    ;;
  *)
    echo "unknown mode $mode" >&2
    exit 2
    ;;
esac
