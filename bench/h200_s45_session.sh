#!/usr/bin/env bash
# Session 45 on the H200: packed f16 arithmetic through Dawn. Dawn withholds `shader-f16` from
# NVIDIA's Vulkan drivers unless its adapter toggle `vulkan_enable_f16_on_nvidia` is on (Dawn's
# PhysicalDeviceVk.cpp, crbug.com/tint/2164); dawn.ts now turns it on. Dawn's WGSL compiler (Tint)
# reinterprets a u32 as two f16 halves (`bitcast<vec2<f16>>`), which Deno's (naga) refuses, so
# 8-bit codes reach f16 in one operation per pair there. Results under $OUT or
# bench/results/h200_session45/MODE:
#   f16    the adapters' features (probe.txt); lean over GQA 32/8 32k-512k and b16 16k (f16, int8,
#          E4M3) through Dawn: the defaults, `halfMath`, and `halfMath` with the bitcast unpacking
#          (`LEAN_X_F16_BITCAST=1`, a temporary switch in src/core/kv8_dtypes.ts, not kept), int8
#          also with f16 keys (`intDots: false`); `halfMath` through Deno's WebGPU beside them. Every kernel checked against float64 (`--check`), grid 264.
#   hmma   the f16 matrix-unit prototype (bench/proto_hmma.ts; arguments after the mode go to it):
#          hmma/ as it is, hmma_unsafe/ with `--dawn-features=disable_robustness
#          '--only=qLen4|mqa|mla b1'`; hmma2/ the unrolled kernels and scaled remainders
#          (`hmma '--only=qLen4|gqa32/8 128k|mqa|mla b1'`).
#   verify `halfMath` through Dawn over more cases, and the kernel option tests through both
#          runtimes (below).
set -u
mode=${1:?usage: bash bench/h200_s45_session.sh f16|hmma|verify}
shift
out=${OUT:-bench/results/h200_session45/$mode}
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
stamp "$(nproc) cores, $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
only='gqa32/8 32k|gqa32/8 128k|gqa32/8 512k|b16 16k'
bench=(bench/gpu_bench.ts --strategies=lean --check --grid=264 --only="$only")
case $mode in
  f16)
    run_deno 60 probe.txt bench/probe_features.ts
    run_deno 150 dawn_plain.txt "${bench[@]}" --backend=dawn --out="$out/dawn_plain.json"
    run_deno 150 dawn_half.txt "${bench[@]}" --backend=dawn --kernel='{"halfMath":true}' \
      --out="$out/dawn_half.json"
    LEAN_X_F16_BITCAST=1 run_deno 150 dawn_half_bitcast.txt "${bench[@]}" --backend=dawn \
      --kernel='{"halfMath":true}' --out="$out/dawn_half_bitcast.json"
    LEAN_X_F16_BITCAST=1 run_deno 100 dawn_half_bitcast_f16keys.txt "${bench[@]}" --backend=dawn \
      --kernel='{"halfMath":true,"intDots":false}' --only='int8' --out="$out/dawn_half_f16keys.json"
    run_deno 150 webgpu_half.txt "${bench[@]}" --kernel='{"halfMath":true}' \
      --out="$out/webgpu_half.json"
    ;;
  hmma)
    # The f16 matrix prototype (bench/proto_hmma.ts): its checks against float64, then the
    # many-row cases beside the library's lean decode on the same Dawn device.
    run_deno 300 hmma.txt bench/proto_hmma.ts --out="$out/hmma.json" "$@"
    ;;
  verify)
    # After turning Dawn's f16 toggle on in dawn.ts: `halfMath` through Dawn over more cases,
    # then the kernel option tests (packed f16 among them) through each runtime, every GPU
    # shape, at once in two processes.
    run_deno 200 dawn_half_more.txt bench/gpu_bench.ts --strategies=lean --check --grid=264 \
      --backend=dawn --kernel='{"halfMath":true}' --only='b4 16k|d64 32k|d256 32k|qLen4|mla b1 32k' \
      --out="$out/dawn_half_more.json"
    export LEAN_TEST_EXHAUSTIVE=1 LEAN_TEST_DAWN_GRID=264
    run_backend_tests dawn 240 tests_dawn.log --v8-flags=--expose-gc tests/kernel_options_test.ts &
    run_backend_tests webgpu 240 tests_webgpu.log tests/kernel_options_test.ts &
    wait
    ;;
  *)
    echo "unknown mode $mode" >&2
    exit 2
    ;;
esac
