#!/usr/bin/env bash
# The runner against Hugging Face transformers, and its decode speed, on a GPU machine with
# PyTorch, transformers and safetensors (no network needed), in one command:
#
#   bash examples/llm/cross_check.sh WORK OUT
#
# 1. hf_reference.py builds each model from its config with seeded random weights, saves it in
#    float32 and bfloat16 under WORK, and writes HF's greedy tokens and logits (in the background;
#    each model is checked as soon as its references exist).
# 2. generate.ts runs every checkpoint through Deno's WebGPU and through Dawn (--logits-out);
#    compare.ts compares tokens and logits: one JSON line per run in OUT/cross_check.jsonl.
# 3. speed.ts times the 1B-shaped model (bf16 weights, f16 KV) at batch 1 and 8, 4k and 32k
#    contexts, on both runtimes: OUT/speed_webgpu.json, OUT/speed_dawn.json.
# 4. The tiny checkpoints and their references, for tests/fixtures/llm_tiny (OUT/fixture.tar) and
#    tests/fixtures/llm_gptoss (OUT/fixture_gptoss.tar, from MODELS=gptoss_fixture).
# 0. First (ATTENTION=0 skips it): hf_attention.py runs transformers' gpt-oss and Gemma 2 eager
#    attention (sinks, soft-cap, alternating windows) on random decode batches, and
#    attention_check.ts runs the same batches through the library on Deno's WebGPU:
#    OUT/attention_check.jsonl.
#
# MODELS (default: tiny llama32_1b qwen25_05b qwen25_7b_1l mistral7b_2l; hf_reference.py has more, e.g.
# mistral7b_2l_w32 gemma2_2b_2l gptoss_tiny gptoss_fixture) picks the models, WEIGHTS (default
# "f32 bf16") the checkpoints checked, SKIP_SPEED=1 skips step 3; DEADLINE (seconds, default 480)
# skips what is left once exceeded, so partial results still come back.
set -u
work=${1:?usage: cross_check.sh WORK OUT}
out=${2:?usage: cross_check.sh WORK OUT}
models=${MODELS:-"tiny llama32_1b qwen25_05b qwen25_7b_1l mistral7b_2l"}
deadline=$((SECONDS + ${DEADLINE:-480}))
mkdir -p "$work" "$out"
out=$(cd "$out" && pwd)
log="$out/log.txt"
results="$out/cross_check.jsonl"
: > "$results"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >> "$log" 2>&1
deno --version | head -1 >> "$log"

if [ "${ATTENTION:-1}" != 0 ]; then
  start=$SECONDS
  if timeout 120 python3 examples/llm/hf_attention.py "$work/attention" > "$work/attention.log" 2>&1; then
    timeout 120 deno run -A examples/llm/attention_check.ts --in "$work/attention" \
      --out "$out/attention_check.jsonl" --backend webgpu >> "$work/attention.log" 2>&1 ||
      echo '{"error": "attention_check.ts failed"}' >> "$out/attention_check.jsonl"
  else
    echo '{"error": "hf_attention.py failed"}' >> "$out/attention_check.jsonl"
  fi
  { echo "== attention ($((SECONDS - start)) s)"; cat "$work/attention.log"; } >> "$log"
fi

hf_pid=
if [ -z "${SKIP_HF:-}" ]; then
  # shellcheck disable=SC2086
  python3 examples/llm/hf_reference.py "$work" $models > "$work/hf.log" 2>&1 &
  hf_pid=$!
fi
hf_running() { [ -n "$hf_pid" ] && kill -0 "$hf_pid" 2>/dev/null; }

prompt_args() { # the reference's prompts and token count, as generate.ts flags
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))
print(";".join(",".join(map(str,p)) for p in r["prompts"]), len(r["tokens"][0]))' "$1/hf_reference.json"
}

run_one() { # DIR LABEL BACKEND
  local dir=$1 label=$2 backend=$3 ids n start
  read -r ids n < <(prompt_args "$dir")
  start=$SECONDS
  if timeout 240 deno run -A --v8-flags=--expose-gc examples/llm/generate.ts --model "$dir" \
    --prompt-ids "$ids" --max-new-tokens "$n" --backend "$backend" --json \
    --logits-out "$work/$label.safetensors" > "$work/$label.json" 2> "$work/$label.err"; then
    deno run -A examples/llm/compare.ts --model "$dir" --ours "$work/$label.json" \
      --ours-logits "$work/$label.safetensors" --label "$label" >> "$results" 2>> "$work/$label.err" ||
      echo "{\"label\": \"$label\", \"error\": \"compare failed\"}" >> "$results"
  else
    echo "{\"label\": \"$label\", \"error\": \"generate.ts failed\"}" >> "$results"
  fi
  { echo "== $label ($((SECONDS - start)) s)"; cat "$work/$label.err"; } >> "$log"
  rm -f "$work/$label.safetensors"
}

for m in $models; do
  while [ ! -f "$work/$m.done" ] && hf_running && [ "$SECONDS" -le "$deadline" ]; do sleep 1; done
  if [ ! -f "$work/$m.done" ]; then echo "no reference for $m" >> "$log"; continue; fi
  for w in ${WEIGHTS:-f32 bf16}; do
    if [ "$SECONDS" -gt "$deadline" ]; then echo "deadline: skipped $m-$w" >> "$log"; continue; fi
    run_one "$work/$m-$w" "$m-$w-webgpu" webgpu & a=$!
    run_one "$work/$m-$w" "$m-$w-dawn" dawn & b=$!
    wait "$a" "$b"
  done
  case $m in tiny) tar_name=fixture.tar ;; gptoss_fixture) tar_name=fixture_gptoss.tar ;; *) tar_name= ;; esac
  if [ -n "$tar_name" ] && [ -f "$work/$m-f32/hf_reference.json" ]; then
    (cd "$work/$m-f32" && tar -cf "$out/$tar_name" config.json model*.safetensors \
      hf_reference.json hf_logits.safetensors) >> "$log" 2>&1
  fi
done
if hf_running; then echo "deadline: stopping hf_reference.py" >> "$log"; kill "$hf_pid"; fi
[ -n "$hf_pid" ] && wait "$hf_pid"
cat "$work/hf.log" >> "$log" 2>/dev/null
cp "$work/hf_summary.json" "$out/" 2>/dev/null

if [ -d "$work/llama32_1b-bf16" ] && [ -z "${SKIP_SPEED:-}" ]; then
  for backend in webgpu dawn; do
    left=$((deadline + 60 - SECONDS))
    if [ "$left" -lt 20 ]; then echo "deadline: skipped speed $backend" >> "$log"; continue; fi
    echo "== speed $backend" >> "$log"
    timeout "$left" deno run -A --v8-flags=--expose-gc examples/llm/speed.ts \
      --model "$work/llama32_1b-bf16" --backend "$backend" --batches 1,8 --contexts 4096,32768 \
      --kv f16 --steps 32 --out "$out/speed_$backend.json" > /dev/null 2>> "$log"
  done
fi
echo "total $SECONDS s" >> "$log"
