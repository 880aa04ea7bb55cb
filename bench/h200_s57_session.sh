#!/usr/bin/env bash
# Session 57 on the H200. Results under $OUT or bench/results/h200_session57/MODE:
#   wide     the matrix kernel's MLA layout at 32 rows per block (`matrixRows: 32`: eight
#            subgroups, two 16-row blocks sharing each staged tile, 256 threads, one workgroup per
#            multiprocessor) against its 16-row blocks (four subgroups, two workgroups per
#            multiprocessor), on the MLA cases of bench/cases.json with V read from K's rows
#            (`vFromK`) and with V of its own, dense and paged, checked against float64; then
#            the Dawn tests of the matrix kernel (its 32-row MLA cases among them) and of the MLA
#            layout. The 32-row layout was slower on every case and was taken out after this
#            run (bench/notes.md, session 57): check out commit d9bb64a to run it again.
#   groups   the GQA groups of the open models people run (bench/cases_groups.json: 4-16 query
#            rows per KV head at qLen 1, d128, f16 KV), the default (f32) kernels against the
#            matrix kernel taking groups of 4 or more rows in 16-row blocks (`matrixMath`,
#            `matrixMinRows: 4`), dense, checked against float64; then PyTorch's flash SDPA and
#            the Triton decode anchor on the same cases.
set -u
mode=${1:?usage: bash bench/h200_s57_session.sh wide|groups}
shift
out=${OUT:-bench/results/h200_session57/$mode}
# shellcheck source=bench/session_lib.sh
source bench/session_lib.sh
stamp "$(nproc) cores, $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
latent=(--cases=bench/cases.json --only="mla latent" --skip=bf16)
own=(--cases=bench/cases.json --only="mla b1 32k|mla b8 32k|mla h16|mla h32" --skip="bf16|latent")
case $mode in
wide)
  rows_bench 170 latent32 '{"matrixMath":true,"matrixRows":32}' --check --paged "${latent[@]}"
  rows_bench 110 latent16 '{"matrixMath":true}' --check --paged "${latent[@]}"
  rows_bench 110 own32 '{"matrixMath":true,"matrixRows":32}' --check "${own[@]}"
  run_backend_tests dawn 170 tests_dawn.txt tests/matrix_kernel_test.ts tests/matrix_mla_test.ts
  ;;
groups)
  groups=(--cases=bench/cases_groups.json)
  rows_bench 200 groups_matrix '{"matrixMath":true,"matrixMinRows":4}' --check "${groups[@]}"
  rows_bench 170 groups_default '{}' --check "${groups[@]}"
  timeout 80 python3 bench/anchors/torch_sdpa.py bench/cases_groups.json "$out/torch_sdpa.json" \
    >"$out/torch_sdpa.txt" 2>&1
  stamp "torch_sdpa exit $?"
  timeout 80 python3 bench/anchors/triton_decode.py bench/cases_groups.json "$out/triton.json" \
    >"$out/triton.txt" 2>&1
  stamp "triton exit $?"
  ;;
esac
stamp "done"
