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
# `wide_run LIMIT FACTORS CASES VARIANTS`: bench/proto_hmma.ts --wide over the variants (a JSON
# array), at the split factors, on the cases matching CASES, into hmma.txt and hmma.json.
wide_run() {
  local limit=$1 factors=$2 cases=$3 variants=$4
  shift 4
  run_deno "$limit" hmma.txt bench/proto_hmma.ts --wide --variants="$variants" \
    --split-factors="$factors" --only="$cases" --out="$out/hmma.json" "$@"
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
# `sass_in DIR VARIANT`: sass_mode into $out/DIR, without the nvdisasm copy.
sass_in() {
  local top=$out
  out=$top/$1
  mkdir -p "$out"
  sass_mode "$2"
  rm -f "$out/nvdisasm"
  out=$top
}
cases='qLen4|gqa32/8 128k|mqa'
# The variants (bench/proto_hmma_wide_wgsl.ts, bench/proto_hmma_rows_wgsl.ts), each with its
# tolerance against float64 (split precision must reach f32 grade).
plain='{"T":128,"W":4,"tolerance":1e-3}'
plain_split='{"T":128,"W":4,"split":true,"tolerance":5e-6}'
staged='{"T":64,"W":4,"staged":true,"tolerance":1e-3}'
pipelined='{"T":64,"W":4,"staged":true,"pipelined":true,"tolerance":1e-3}'
halves='{"T":64,"W":4,"staged":true,"pipelined":true,"halves":true,"tolerance":1e-3}'
pipelined_split='{"T":64,"W":4,"staged":true,"pipelined":true,"split":true,"tolerance":5e-6}'
q_staged='{"T":64,"W":4,"staged":true,"pipelined":true,"qStaged":true,"tolerance":1e-3}'
rows_w2_t32='{"T":32,"W":2,"rows":true,"tolerance":1e-3}'
rows_w4_t32='{"T":32,"W":4,"rows":true,"tolerance":1e-3}'
rows_w4_t16='{"T":16,"W":4,"rows":true,"tolerance":1e-3}'
rows_w2_t16='{"T":16,"W":2,"rows":true,"tolerance":1e-3}'
case $mode in
  split) wide_run 300 1 "$cases|mla b1" "[$plain,$plain_split]" "$@" ;;
  sass) sass_mode ;;
  all)
    wide_run 300 1 "$cases|mla b1" "[$plain,$plain_split]" "$@"
    sass_mode
    ;;
  pipe)
    wide_run 300 1,2 "$cases" "[$plain,$staged,$pipelined]" "$@"
    sass_in sass_pipe '{"T":64,"W":4,"staged":true,"pipelined":true}'
    ;;
  pipe2)
    # After pipe: the pipelined staging with every register index a constant (pipe's kernel
    # kept its staging registers in local memory), and with K/V staged as halves; their code.
    wide_run 300 1,2 "$cases" "[$plain,$pipelined,$halves]" "$@"
    sass_in sass_pipe '{"T":64,"W":4,"staged":true,"pipelined":true}'
    sass_in sass_halves '{"T":64,"W":4,"staged":true,"pipelined":true,"halves":true}'
    ;;
  pipe3)
    # After pipe2: the pipelined staging (its best) at split precision, beside the plain one.
    wide_run 300 1 "$cases" "[$pipelined,$pipelined_split]" "$@"
    ;;
  qst)
    # After pipe2's machine code (about 190 registers per thread: two workgroups per
    # multiprocessor): the query block staged in workgroup memory instead of kept in
    # registers, at 1 and 2 times the splits; then its code.
    wide_run 300 1,2 "$cases" "[$pipelined,$q_staged]" "$@"
    sass_in sass_qst '{"T":64,"W":4,"staged":true,"pipelined":true,"qStaged":true}'
    ;;
  rows)
    # The row-parallel kernel (subgroups take different blocks of 16 rows and share each staged
    # tile) against the best wide one, at 1, 2 and 4 times the splits; then its code.
    wide_run 400 1,2,4 "$cases" "[$pipelined,$rows_w2_t32,$rows_w4_t32]" "$@"
    sass_in sass_rows '{"T":32,"W":4,"rows":true}'
    ;;
  rows2)
    # After rows (its W 4 T 32 kernel took 251 registers, one workgroup per multiprocessor):
    # 16-token tiles (a quarter of the staging registers), MQA h128/1 alone.
    wide_run 200 1,2,4 mqa "[$rows_w4_t32,$rows_w4_t16,$rows_w2_t16]" "$@"
    ;;
  *)
    echo "unknown mode $mode" >&2
    exit 2
    ;;
esac
