#!/usr/bin/env bash
# Performance session on the H200 (issue 13), in one call. Results and logs under $OUT (default
# bench/results/h200_session), each step under its own timeout so partial output survives.
#   explore: the kernel sweep (bench/tune.ts) on Deno's WebGPU, the Triton and PyTorch anchors
#            (their JSON is what the benchmark's --anchor/--triton read later), and a paged probe.
#   final:   the GPU tests on both runtimes (float64 reference), then bench/gpu_bench.ts on every
#            case for Deno's WebGPU (with --paged) and Dawn, against the anchors in bench/results.
# On the device machine: bash .gpu/boot.sh bash bench/h200_session.sh explore|final
set -u
mode=${1:-final}
out=${OUT:-bench/results/h200_session}
mkdir -p "$out"
export NO_COLOR=1 PYTHONUNBUFFERED=1
log="$out/session.log"
stamp() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$log"; }

stamp "mode $mode"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv \
  2>&1 | tee -a "$log"

if [ "$mode" = explore ]; then
  stamp "tune"
  timeout 170 bash -c "deno run -A --unstable-webgpu --v8-flags=--expose-gc bench/tune.ts \
    --cases='b1 h32 128k,gqa32/8 128k,b16 16k,d256 32k,qLen4 gqa 16k,d64 32k' \
    --out=$out/tune.json" 2>&1 | grep -v '^Warning' | tee "$out/tune.txt"
  stamp "tune exit ${PIPESTATUS[0]}"
  stamp "triton anchor"
  (cd bench/anchors && timeout 120 python3 triton_decode.py ../cases.json "$out/triton.json") \
    2>&1 | tee "$out/anchors.log"
  stamp "triton exit ${PIPESTATUS[0]}"
  stamp "torch anchor"
  (cd bench/anchors && timeout 80 python3 torch_sdpa.py ../cases.json "$out/torch.json") \
    2>&1 | tee -a "$out/anchors.log"
  stamp "torch exit ${PIPESTATUS[0]}"
  stamp "bench probe"
  timeout 50 bash -c "deno run -A --unstable-webgpu --v8-flags=--expose-gc bench/gpu_bench.ts \
    --only='b1 h32 128k|gqa32/8 128k|b16 16k' --paged --out=$out/probe.json" 2>&1 |
    grep -v '^Warning' | tee "$out/probe.txt"
  stamp "probe exit ${PIPESTATUS[0]}"
else
  stamp "tests"
  LEAN_TEST_BACKENDS=webgpu,dawn timeout 150 deno test -A --unstable-webgpu \
    tests/decode_test.ts tests/edge_cases_test.ts tests/non_finite_test.ts tests/paged_test.ts \
    tests/gpu_backend_test.ts >"$out/tests.log" 2>&1
  stamp "tests exit $? ($(grep -E '^(ok|FAILED) \|' "$out/tests.log" | tail -1))"
  anchors="--anchor=bench/results/h200_torch_sdpa.json --triton=bench/results/h200_triton.json"
  stamp "bench webgpu"
  timeout 220 bash -c "deno run -A --unstable-webgpu --v8-flags=--expose-gc bench/gpu_bench.ts \
    --backend=webgpu --paged $anchors --out=$out/h200_webgpu.json" 2>&1 | grep -v '^Warning' |
    tee "$out/h200_webgpu_bench.txt"
  stamp "bench webgpu exit ${PIPESTATUS[0]}"
  stamp "bench dawn"
  timeout 200 bash -c "deno run -A --unstable-webgpu --v8-flags=--expose-gc bench/gpu_bench.ts \
    --backend=dawn $anchors --out=$out/h200_dawn.json" 2>&1 | grep -v '^Warning' |
    tee "$out/h200_dawn_bench.txt"
  stamp "bench dawn exit ${PIPESTATUS[0]}"
fi
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv 2>&1 |
  tee -a "$log"
stamp "done"
