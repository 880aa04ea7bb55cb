#!/usr/bin/env bash
# Session 56 on the H200. Results under $OUT or bench/results/h200_session56/MODE:
#   latent   MLA's latent cache (`vFromK`: V is the first 512 dims of each 576-dim K row, read
#            from K's binding; in the matrix kernel's MLA layout from K's staged rows, with no V
#            loads or stores): the tests of it through Dawn (the matrix kernel's MLA cases, dense
#            and over a runner's HND pages, the emulated MLA layout, the tiled and per-row
#            kernels, the library's cache), then the MLA cases of bench/cases.json with V of its
#            own and read from K, matrix kernel (`matrixMath`), dense and paged, checked against
#            float64.
#   tiled    the same cases on the default kernels (the tiled kernel), dense and paged, checked;
#            then PyTorch's MLA anchor on them (bench/anchors/torch_mla.py: V a view of K for the
#            latent cases).
#   suite    after `latent` and `tiled`: the whole test folder with every GPU shape through Deno's
#            WebGPU, then every GPU test file through Dawn (session 44's modes, as in sessions 53
#            and 54), on the code that added `vFromK`.
#   deepseek tests/mla_deepseek_test.ts (DeepSeek-V3's MLA layer against transformers' outputs)
#            with every GPU shape, through Deno's WebGPU and through Dawn: f32 and f16 latent caches.
#   sass     the driver's machine code of the latent MLA layout's dense and paged kernels (its
#            shader disk cache pointed at a fresh folder while gpu_bench builds them, as session
#            55's `sass`; the cache and Triton's nvdisasm go to $OUT/sass_files, outside the repo,
#            read there by bench/sass_from_cache.py): does the layout still spill without V?
set -u
mode=${1:?usage: bash bench/h200_s56_session.sh latent|tiled|suite|sass|deepseek}
shift
out=${OUT:-bench/results/h200_session56/$mode}
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
stamp "$(nproc) cores, $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
mla=(--cases=bench/cases.json --only="mla b1 32k|mla b8 32k|mla h16|mla h32|mla latent" --skip=bf16)
case $mode in
latent)
  run_backend_tests dawn 240 tests_dawn.txt tests/matrix_kernel_test.ts tests/matrix_mla_test.ts \
    tests/v_from_k_test.ts tests/mla_latent_cache_test.ts tests/mla_latent_cache_gpu_test.ts
  rows_bench 240 mla '{"matrixMath":true}' --check --paged "${mla[@]}"
  ;;
tiled)
  rows_bench 200 mla_default '{}' --check --paged "${mla[@]}"
  timeout 150 python3 bench/anchors/torch_mla.py bench/cases.json "$out/torch_mla.json" \
    --only=mla >"$out/torch_mla.txt" 2>&1
  stamp "torch_mla exit $?"
  ;;
suite)
  OUT=$out/webgpu bash bench/h200_s44_session.sh webgpu
  OUT=$out/dawn bash bench/h200_s44_session.sh dawn
  ;;
deepseek)
  for backend in webgpu dawn; do
    LEAN_TEST_EXHAUSTIVE=1 run_backend_tests "$backend" 120 "deepseek_$backend.txt" \
      --v8-flags=--expose-gc tests/mla_deepseek_test.ts
  done
  ;;
sass)
  work=$(mktemp -d)
  __GL_SHADER_DISK_CACHE=1 __GL_SHADER_DISK_CACHE_PATH="$work" \
    __GL_SHADER_DISK_CACHE_SKIP_CLEANUP=1 rows_bench 120 sass '{"matrixMath":true}' --paged \
    --cases=bench/cases.json --only="mla latent b1 32k" --runs=5
  files=${SASS_FILES:-$out/../sass_files}
  mkdir -p "$files"
  tar -czf "$files/glcache.tgz" -C "$work" .
  stamp "glcache: $(find "$work" -type f | wc -l) files, $(du -sh "$work" | cut -f1)"
  nvdisasm=$(python3 -c 'import os, triton; print(os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/nvdisasm"))' 2>/dev/null)
  if [ -x "$nvdisasm" ]; then cp "$nvdisasm" "$files/nvdisasm"; fi
  ;;
esac
stamp "done"
