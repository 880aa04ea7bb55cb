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
#   r8       the Dawn tests of the matrix kernel (GQA's groups of 8 rows in one 16-row block by
#            default, 4 where asked), then a sweep of the f32 kernels' 8-row class (r8 d128: lanes,
#            unroll, row sets) through Deno's WebGPU on the 8- and 12-row cases of
#            bench/cases_groups.json, at grid 264 (the class's calibrated grid), checked.
#   final    the 7-16-row cases of bench/cases_groups.json through Dawn: the matrix kernel by
#            default under `matrixMath` (groups of 7 or more rows over f16), dense and paged, and the
#            f32 kernels' paged twins, checked; packed f16 (`halfMath`) on the 8- and 12-row cases
#            through Deno's WebGPU; the CLI's MLA bench command of the README.
#   kv8      the 7-12-row groups over 8-bit K/V (int8, FP8 E4M3 with a scale per tensor or per
#            token) of bench/cases_groups.json through Dawn: the f32 kernels against the matrix
#            kernel asked to take them (`matrixMinRows: 4`), dense, checked.
set -u
mode=${1:?usage: bash bench/h200_s57_session.sh wide|groups|r8|final|kv8}
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
  run_anchors 80 bench/cases_groups.json
  ;;
r8)
  run_backend_tests dawn 150 tests_dawn.txt tests/matrix_kernel_test.ts
  configs=(
    'table={}'
    'L16U4rs1={"lanes":16,"unroll":4,"prefetch":true,"rowSets":1,"rowScatter":true}'
    'L16U4rs2={"lanes":16,"unroll":4,"prefetch":true,"rowSets":2,"rowScatter":true}'
    'L8U2rs2={"lanes":8,"unroll":2,"prefetch":true,"rowSets":2,"rowScatter":true}'
    'L8U4rs4={"lanes":8,"unroll":4,"prefetch":true,"rowSets":4,"rowScatter":true}'
    'L8U8rs2split={"lanes":8,"unroll":8,"prefetch":"split","rowSets":2,"tokenRuns":true,"rowScatter":true}'
  )
  kernel_sweep 75 r8 configs --backend=webgpu --strategies=lean --grid=264 \
    --cases=bench/cases_groups.json --only="gqa64/8 32k|gqa64/8 128k|gqa96/8" --check
  ;;
final)
  many=(--cases=bench/cases_groups.json --only="gqa28/4|gqa64/8|gqa96/8|gqa64/4")
  rows_bench 150 groups_matrix_paged '{"matrixMath":true}' --check --paged "${many[@]}"
  rows_bench 120 groups_default_paged '{}' --check --paged "${many[@]}"
  run_deno 60 half_webgpu.txt bench/gpu_bench.ts --backend=webgpu --strategies=lean --grid=264 \
    --cases=bench/cases_groups.json --only="gqa64/8 32k|gqa64/8 128k|gqa96/8" --check \
    --kernel='{"halfMath":true}' --out="$out/half_webgpu.json"
  run_deno 90 cli_mla.txt cli.ts bench --backend=dawn --matrix-math --batch=8 --heads=16 \
    --kv-heads=1 --head-dim=576 --head-dim-v=512 --v-from-k --contexts=32768
  ;;
kv8)
  kv8=(--cases=bench/cases_groups.json --only="int8|e4m3")
  rows_bench 120 kv8_matrix '{"matrixMath":true,"matrixMinRows":4}' --check "${kv8[@]}"
  rows_bench 120 kv8_default '{}' --check "${kv8[@]}"
  ;;
esac
stamp "done"
