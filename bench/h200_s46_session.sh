#!/usr/bin/env bash
# Session 46 on the H200: the f16 matrix prototype with several subgroups per workgroup. Tint's
# rule for subgroup-matrix arguments is Chromium's own `chromium.subgroup_matrix_uniformity`
# (session 45 had turned off `subgroup_uniformity`, which does not cover them); with it off, the
# subgroups of a workgroup share a tile (bench/proto_hmma_wide_wgsl.ts). Results under $OUT or
# bench/results/h200_session46/MODE:
#   wide   bench/proto_hmma.ts --wide (arguments after the mode go to it): the wide kernels'
#          checks against float64, then the many-row cases at 1-8 times session 45's splits,
#          beside the library's lean decode of each case on the same Dawn device.
#   staged the wide kernel with K/V tiles staged through workgroup memory (see below).
#   parts  the wide kernel with each part of its tile's work left out in turn (see below).
#   kleft  scores with K as the left matrices (see below).
#   sass   the wide kernel's SPIR-V and the driver's compiled code (not run yet; see below).
#   probe  each kernel variant made and run in its own process (`--probe`), to find which
#          crashed (the first `wide` runs ended in a segmentation fault at their second kernel
#          run: the prototypes' Dawn instance, collected; bench/proto_lib.ts keeps it since).
# `wide` ran into its 400 s limit before its last case (MLA b8 32k); results/wide_crash holds
# the first crashed run, probe/ the first `probe` (one run per variant, also W 4 with prefetch
# and W 8), probe2/ the second (three runs and one at two splits per variant).
set -u
mode=${1:?usage: bash bench/h200_s46_session.sh wide|probe|staged|parts|kleft|sass}
shift
out=${OUT:-bench/results/h200_session46/$mode}
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
stamp "$(nproc) cores, $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
case $mode in
  wide)
    run_deno 400 hmma.txt bench/proto_hmma.ts --wide --out="$out/hmma.json" "$@"
    ;;
  staged)
    # The best wide kernel of `wide` (W 4, T 128) against K/V tiles staged through workgroup
    # memory by 16-byte loads (T 64, W 2 and 4), at 1-2 times session 45's splits; then the
    # first two through Dawn without its bounds checks (`disable_robustness`).
    v='[{"T":128,"W":4,"tolerance":1e-3},{"T":64,"W":4,"staged":true,"tolerance":1e-3},'
    v+='{"T":64,"W":2,"staged":true,"tolerance":1e-3}]'
    only='qLen4|gqa32/8 128k|mqa'
    run_deno 200 hmma.txt bench/proto_hmma.ts --wide --variants="$v" --split-factors=1,2 \
      --only="$only" --out="$out/hmma.json" "$@"
    v='[{"T":128,"W":4,"tolerance":1e-3},{"T":64,"W":4,"staged":true,"tolerance":1e-3}]'
    run_deno 150 hmma_unsafe.txt bench/proto_hmma.ts --wide --variants="$v" --split-factors=1,2 \
      --only="$only" --no-twins --dawn-features=disable_robustness --out="$out/hmma_unsafe.json"
    ;;
  parts)
    # Where the wide kernel's time goes (W 4, T 128, session 45's splits): each part of a
    # tile's work left out in turn (results wrong, timing only), then all but the scores, all
    # but the values.
    v='[{"T":128,"W":4,"tolerance":1e-3}'
    for skip in '["softmax"]' '["values"]' '["scores"]' '["acc"]' '["softmax","values","acc"]' \
      '["scores","softmax","acc"]' '["scores","softmax","values","acc"]'; do
      # (the second run, after the first lost the variants without scores or values: their
      # buffers dropped out of the pipeline's layout; since bound by a phony use)
      case $skip in *'"softmax"]'|'["acc"]') [ -n "${PARTS_ALL:-}" ] || continue ;; esac
      v+=",{\"T\":128,\"W\":4,\"skip\":$skip,\"tolerance\":1e30}"
    done
    run_deno 240 hmma.txt bench/proto_hmma.ts --wide --variants="$v]" --split-factors=1 \
      --only='qLen4|gqa32/8 128k|mqa' --out="$out/hmma.json" "$@"
    ;;
  kleft)
    # Scores with K as the left matrices (S^T = K Q^T, `kLeft`) against the right ones, whole
    # and scores alone (W 4, T 128, session 45's splits; no lean twins: a short call).
    v='[{"T":128,"W":4,"tolerance":1e-3},{"T":128,"W":4,"kLeft":true,"tolerance":1e-3},'
    v+='{"T":128,"W":4,"skip":["softmax","values","acc"],"tolerance":1e30},'
    v+='{"T":128,"W":4,"kLeft":true,"skip":["softmax","values","acc"],"tolerance":1e30}]'
    run_deno 100 hmma.txt bench/proto_hmma.ts --wide --variants="$v" --split-factors=1 \
      --only='qLen4|gqa32/8 128k|mqa' --no-twins --out="$out/hmma.json" "$@"
    ;;
  sass)
    # Not run yet (written after session 46's last device call): what Tint and NVIDIA's driver
    # make of the wide kernel's matrix loads. Dawn prints Tint's SPIR-V with its `dump_shaders`
    # toggle (spirv.txt; checked on lavapipe), and the driver's own shader cache, pointed at a
    # fresh folder, keeps what it compiled (glcache.tgz, for bench/sass_from_cache.py or by hand).
    work=$(mktemp -d)
    __GL_SHADER_DISK_CACHE=1 __GL_SHADER_DISK_CACHE_PATH="$work" \
      __GL_SHADER_DISK_CACHE_SKIP_CLEANUP=1 run_deno 60 spirv.txt bench/proto_hmma.ts \
      --probe='{"T":128,"W":4}' --dawn-features=dump_shaders
    tar -czf "$out/glcache.tgz" -C "$work" .
    stamp "glcache: $(find "$work" -type f | wc -l) files"
    ;;
  probe)
    # Each variant's pipeline made in its own process (`--probe`) and run three times, then at
    # two splits: session 45's kernel, then the wide one at 1, 2 and 4 subgroups.
    i=0
    for v in '{"T":64,"split":false,"unroll":true,"syntax":"template"}' '{"T":16,"W":1}' \
      '{"T":64,"W":1}' '{"T":32,"W":2}' '{"T":64,"W":4}'; do
      i=$((i + 1))
      run_deno 60 "probe$i.txt" bench/proto_hmma.ts --probe="$v"
      tail -n 4 "$out/probe$i.txt" | sed "s/^/  probe$i: /" | tee -a "$log"
    done
    ;;
  *)
    echo "unknown mode $mode" >&2
    exit 2
    ;;
esac
