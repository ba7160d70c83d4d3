#!/usr/bin/env bash
# Issue 19, class 2: sizes that come from outside (configs, recipes, flags, requests) are checked
# against overflow and a memory plan before anything is allocated, and running out of memory is
# an error exit (1), never an abort. Nothing here allocates much: budgets are set small with
# GRPO_MEMORY_LIMIT_MB, or refusals happen before allocating.
set -u
GRPO="$1"
RECIPE="$2"
T=${TEST_TMPDIR:-$(mktemp -d)}
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
run() { "$@" >"$T/out" 2>"$T/err"; echo $? >"$T/rc"; }
rc() { cat "$T/rc"; }
err_has() { grep -qF -- "$1" "$T/err"; }

"$GRPO" init-model --preset llama-nano --info 2>/dev/null >"$T/nano.json"
edit() {  # edit KEY VALUE OUT: nano.json with KEY set
  python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c[sys.argv[2]]=json.loads(sys.argv[3]); json.dump(c,open(sys.argv[4],"w"))' \
    "$T/nano.json" "$1" "$2" "$3"
}

# init-model: intermediate_size 2^62 wrote a model with overflowing shapes and exited 0.
edit intermediate_size 4611686018427387904 "$T/inter.json"
run "$GRPO" init-model --config "$T/inter.json" --out "$T/m-inter"
check "init-model intermediate_size 2^62 fails" '[ "$(rc)" -eq 1 ] && [ ! -e "$T/m-inter/model.safetensors" ]'
check "... naming the key" 'err_has "'"'"'intermediate_size'"'"' must be at most 2147483647"'
# init-model: vocab_size 2^63-1 aborted.
edit vocab_size 9223372036854775807 "$T/vocab.json"
run "$GRPO" init-model --config "$T/vocab.json" --out "$T/m-vocab"
check "init-model vocab_size 2^63-1 fails, no abort" '[ "$(rc)" -eq 1 ] && err_has "'"'"'vocab_size'"'"' must be at most"'
# Fresh variant: layers.
edit num_hidden_layers 1000000 "$T/layers.json"
run "$GRPO" init-model --config "$T/layers.json" --out "$T/m-layers"
check "init-model num_hidden_layers 1e6 fails" '[ "$(rc)" -eq 1 ] && err_has "num_hidden_layers"'
# A model bigger than the budget is refused before its weights are drawn.
GRPO_MEMORY_LIMIT_MB=1 run "$GRPO" init-model --preset llama-tiny --out "$T/m-tiny"
check "init-model over the budget fails" '[ "$(rc)" -eq 1 ] && err_has "random weights, f32" && [ ! -e "$T/m-tiny" ]'

# train --check runs the memory plan that train runs before allocating.
while read -r set needle; do
  run "$GRPO" train "$RECIPE" --check --set "$set"
  check "train --check --set $set fails" '[ "$(rc)" -eq 1 ] && err_has "RESOURCE_EXHAUSTED" && err_has "$needle"'
done <<'CASES'
model.init.config.hidden_size=1000000000 hidden_size 1000000000
rollout.group_size=100000000 rollout.group_size 100000000
rollout.prompts_per_step=1000000000 rollout.prompts_per_step 1000000000
train.eval_size=1000000000 train.eval_size 1000000000
CASES
run "$GRPO" train "$RECIPE" --set rollout.group_size=100000000 --set run.output_dir="$T/runs" --quiet
check "train with group_size 1e8 fails before creating the run" '[ "$(rc)" -eq 1 ] && [ ! -e "$T/runs" ]'
run "$GRPO" train "$RECIPE" --check
check "train --check of the recipe as it is passes" '[ "$(rc)" -eq 0 ]'

# generate / rollout serve: the KV cache flag against memory.
"$GRPO" init-model --preset llama-nano --out "$T/nano" 2>/dev/null
# The recipe's plan with model.path: its config.json is read, nothing loaded. A model.path that
# is not on this machine is left to the machine that trains.
run "$GRPO" train "$RECIPE" --check --set model.init=null --set model.path="$T/nano" --set rollout.kv_memory_mb=100000000
check "train --check with model.path and a huge KV cache fails" '[ "$(rc)" -eq 1 ] && err_has "rollout.kv_memory_mb 100000000"'
run "$GRPO" train "$RECIPE" --check --set model.init=null --set model.path="$T/elsewhere"
check "train --check with a model.path not here passes with a note" '[ "$(rc)" -eq 0 ] && err_has "note: model.path"' 
printf '{"tokens":[1,2,3]}\n' >"$T/p.jsonl"
run "$GRPO" generate --model "$T/nano" --input "$T/p.jsonl" --output "$T/g.jsonl" --kv-memory-mb 100000000
check "generate --kv-memory-mb 1e8 fails" '[ "$(rc)" -eq 1 ] && err_has "KV cache (--kv-memory-mb 100000000)"'
run "$GRPO" generate --model "$T/nano" --input "$T/p.jsonl" --output "$T/g.jsonl" --kv-memory-mb 9000000000000000
check "generate --kv-memory-mb 9e15 (overflows as bytes) fails" '[ "$(rc)" -eq 1 ] && err_has "overflows 64 bits"'
run timeout 20 "$GRPO" rollout serve --model "$T/nano" --listen 127.0.0.1:0 --kv-memory-mb 100000000
check "rollout serve --kv-memory-mb 1e8 does not start" '[ "$(rc)" -eq 1 ] && err_has "KV cache (--kv-memory-mb 100000000)"'

# Services: requests in flight must fit in memory.
printf 'rules:\n  - {type: format}\n' >"$T/rules.yaml"
GRPO_MEMORY_LIMIT_MB=100 run timeout 20 "$GRPO" reward serve --rules "$T/rules.yaml" --listen 127.0.0.1:0 \
  --max-request-mb 64 --max-concurrent-requests 100
check "reward serve refuses 64 MiB x 100 requests in 100 MiB" '[ "$(rc)" -eq 1 ] && err_has "requests in flight"'

# logprobs: lines beyond max_position_embeddings, or whose forward pass would not fit, are bad
# lines (skipped, or --strict fails), never an out-of-memory abort.
edit max_position_embeddings 64 "$T/short.json"
"$GRPO" init-model --config "$T/short.json" --out "$T/short" 2>/dev/null
python3 -c 'import json; print(json.dumps({"tokens": [1] * 100})); print(json.dumps({"tokens": [1, 2, 3]}))' >"$T/long.jsonl"
run "$GRPO" logprobs --model "$T/short" --input "$T/long.jsonl" --output "$T/lp.jsonl"
check "logprobs skips a line beyond max_position_embeddings" \
  '[ "$(rc)" -eq 0 ] && [ "$(wc -l <"$T/lp.jsonl")" -eq 1 ] && err_has "long.jsonl:1: 100 tokens are more than the model'"'"'s max_position_embeddings (64)"'
run "$GRPO" logprobs --model "$T/short" --input "$T/long.jsonl" --output "$T/lp2.jsonl" --strict
check "logprobs --strict fails on it" '[ "$(rc)" -eq 1 ]'
python3 -c 'import json; print(json.dumps({"tokens": [1] * 4000})); print(json.dumps({"tokens": [1, 2, 3]}))' >"$T/big.jsonl"
GRPO_MEMORY_LIMIT_MB=8 run "$GRPO" logprobs --model "$T/nano" --input "$T/big.jsonl" --output "$T/lp3.jsonl"
check "logprobs skips a line whose forward pass needs more than the budget" \
  '[ "$(rc)" -eq 0 ] && [ "$(wc -l <"$T/lp3.jsonl")" -eq 1 ] && err_has "big.jsonl:1: 4000 tokens: its forward pass needs at least"'

# Out of memory despite a plan (here: a budget that lies above an address-space limit) is an
# error exit, not an abort.
(ulimit -v 400000; GRPO_MEMORY_LIMIT_MB=100000 run "$GRPO" init-model --preset qwen2.5-0.5b --out "$T/m-oom")
check "an allocation that fails is exit 1 with a message" '[ "$(rc)" -eq 1 ] && err_has "out of memory: an allocation failed"'

exit $fail
