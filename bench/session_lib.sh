# Shared by the H200 session scripts (bench/h200_kernels_session.sh, h200_variants_session.sh):
# sourced after `out` is set, it makes the results folder absolute, and defines `stamp` (a
# timestamped line into session.log) and `run_deno LIMIT FILE ARGS...` (a Deno script under a
# timeout, its output minus npm warnings into $out/FILE, its exit status stamped).
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
