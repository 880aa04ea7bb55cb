#!/usr/bin/env bash
# Session 55 on the H200, through Dawn. Results under $OUT or bench/results/h200_session55/MODE:
#   mla    the matrix kernel's MLA layout (K rows of 576 with V rows of 512: blocks of 16 rows,
#          16-token tiles scored by four subgroups over a quarter of K's dims each, V's rows
#          loaded at their own tile's start): the matrix tests through Dawn (MLA 576/512 dense
#          and over a runner's HND pages on the real matrix units, and CI's emulated matrices),
#          the MLA cases of bench/cases.json checked against float64, dense and paged, then the
#          default kernels (the tiled kernel) on them, and MQA h128/1 beside them.
#   mla2   after `mla` (2.5-4.3x faster than the tiled kernel): the MLA cases again with their
#          paged twins (gpu_bench's paged mode now takes V rows of their own length), checked
#          against float64, and PyTorch's MLA anchor (bench/anchors/torch_mla.py: memory-efficient
#          SDPA and two batched products, the faster kept).
#   mla3   after `mla2` found paged 1.14-1.20x of dense (the tiled kernel's 1.03x): the MLA
#          layout's pages read two tiles ahead (a tile writes the next tile's addresses from pages
#          read a tile earlier, then reads the pages of the tile after it): the matrix tests
#          through Dawn, then the MLA cases dense and paged, checked against float64, twice.
#   sass   after `mla3` (pages two tiles ahead: paged still 1.13-1.19x of dense): the driver's
#          machine code of the MLA layout's dense and paged kernels (its own shader disk cache
#          pointed at a fresh folder while gpu_bench builds them, and Triton's nvdisasm copied
#          beside it; read here by bench/sass_from_cache.py), to see whether paged spills.
#   mla4   the MLA layout's paged V addresses read into registers right after the next tile's K
#          loads (not at the V loads, behind the tile's stores to workgroup memory): the MLA
#          cases dense and paged checked against float64, then `sass` of this kernel.
#   mla5   after `mla4` (paged 1.07-1.10x of dense): the next tile's K addresses into registers
#          too, both read before the tile's V stores: the MLA cases dense and paged checked
#          against float64, then the matrix tests through Dawn.
#   tests  after `mla5` (1.12-1.16x: slower than `mla4`, so mla4's kernel was restored): the
#          matrix tests through Dawn on it.
#   verify not run in session 55 (its device time was spent): the matrix tests through Dawn on the
#          kept kernels, then the MLA cases with `matrixMath` on, bf16 among them (bf16 MLA keeps
#          the tiled kernel: its grid should be the calibrated `tiled r64` class's, about 131),
#          dense and paged, checked against float64.
set -u
mode=${1:?usage: bash bench/h200_s55_session.sh mla|mla2|mla3|sass|mla4|mla5|tests|verify}
shift
out=${OUT:-bench/results/h200_session55/$mode}
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
stamp "$(nproc) cores, $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
mla_cases=(--cases=bench/cases.json --only="mla b1 32k|mla b8 32k|mla h16|mla h32|mqa h128/1"
  --skip=bf16)
case $mode in
mla)
  run_backend_tests dawn 240 tests_dawn.txt tests/matrix_kernel_test.ts tests/matrix_mla_test.ts
  rows_bench 150 mla '{"matrixMath":true}' --check --paged "${mla_cases[@]}"
  rows_bench 120 mla_default '{}' "${mla_cases[@]}"
  ;;
mla2)
  rows_bench 200 mla '{"matrixMath":true}' --check --paged --cases=bench/cases.json \
    --only="mla b1 32k|mla b8 32k|mla h16|mla h32" --skip=bf16
  timeout 240 python3 bench/anchors/torch_mla.py bench/cases.json "$out/torch_mla.json" \
    --only=mla >"$out/torch_mla.txt" 2>&1
  stamp "torch_mla exit $?"
  rows_bench 150 mla_default '{}' --paged --cases=bench/cases.json \
    --only="mla b1 32k|mla b8 32k|mla h16|mla h32" --skip=bf16
  ;;
mla3)
  run_backend_tests dawn 240 tests_dawn.txt tests/matrix_kernel_test.ts tests/matrix_mla_test.ts
  rows_bench 150 mla '{"matrixMath":true}' --check --paged --cases=bench/cases.json \
    --only="mla b1 32k|mla b8 32k|mla h16|mla h32" --skip=bf16
  rows_bench 120 mla_r2 '{"matrixMath":true}' --paged --cases=bench/cases.json \
    --only="mla b1 32k|mla b8 32k|mla h16|mla h32" --skip=bf16
  ;;
mla5)
  rows_bench 150 mla '{"matrixMath":true}' --check --paged --cases=bench/cases.json \
    --only="mla b1 32k|mla b8 32k|mla h16|mla h32" --skip=bf16
  run_backend_tests dawn 200 tests_dawn.txt tests/matrix_kernel_test.ts tests/matrix_mla_test.ts
  ;;
tests)
  run_backend_tests dawn 150 tests_dawn.txt tests/matrix_kernel_test.ts tests/matrix_mla_test.ts
  ;;
verify)
  run_backend_tests dawn 200 tests_dawn.txt tests/matrix_kernel_test.ts tests/matrix_mla_test.ts \
    tests/mla_test.ts tests/tiled_test.ts
  rows_bench 200 mla '{"matrixMath":true}' --check --paged --cases=bench/cases.json \
    --only="mla b1 32k|mla b8 32k|mla h16|mla h32"
  ;;
mla4)
  rows_bench 150 mla '{"matrixMath":true}' --check --paged --cases=bench/cases.json \
    --only="mla b1 32k|mla b8 32k|mla h16|mla h32" --skip=bf16
  bash "$0" sass
  ;;
sass)
  work=$(mktemp -d)
  __GL_SHADER_DISK_CACHE=1 __GL_SHADER_DISK_CACHE_PATH="$work" \
    __GL_SHADER_DISK_CACHE_SKIP_CLEANUP=1 rows_bench 120 sass '{"matrixMath":true}' --paged \
    --cases=bench/cases.json --only="mla b1 32k" --skip=bf16 --runs=5
  tar -czf "$out/glcache.tgz" -C "$work" .
  stamp "glcache: $(find "$work" -type f | wc -l) files, $(du -sh "$work" | cut -f1)"
  nvdisasm=$(python3 -c 'import os, triton; print(os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/nvdisasm"))' 2>/dev/null)
  if [ -x "$nvdisasm" ]; then cp "$nvdisasm" "$out/nvdisasm"; fi
  ;;
*)
  echo "unknown mode $mode" >&2
  exit 2
  ;;
esac
