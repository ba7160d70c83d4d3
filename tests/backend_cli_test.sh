#!/usr/bin/env bash
# Choosing a backend (model/ops/registry.h): `--backend NAME` on every command that runs a model,
# the recipe key `backend:` (the flag wins), errors that list the available backends, and
# `grpo info`.
source "$(dirname "$0")/cli_test_lib.sh" "$@"

# ---- grpo info
"$GRPO" info > info.out 2> info.err
check "info exits 0" '[ $? -eq 0 ]' || cat info.err
check "info: the build with version and compiler" \
  'grep -q "^build:" info.out && grep -qE "^  version +grpo 0\.1\.0$" info.out && grep -qE "^  compiler +(gcc|clang) " info.out'
check "info: whether CUDA is compiled in" 'grep -qE "^  cuda +(not )?compiled in$" info.out'
check "info: cpu backend available" 'grep -q "^backends:" info.out && grep -qE "^  cpu +available " info.out'
check "info: the host CPU with cores and memory" \
  'grep -q "^devices:" info.out && grep -qE "^  cpu +.+: [0-9]+ cores usable \([0-9]+ online\), memory .* total" info.out'

# ---- logprobs and generate
"$GRPO" init-model --preset qwen3-nano --seed 3 --out model 2>/dev/null
printf '{"tokens":[1,2,3,4,5]}\n' > in.jsonl
"$GRPO" logprobs --model model --input in.jsonl --output lp_default.jsonl 2>/dev/null
"$GRPO" logprobs --model model --input in.jsonl --output lp_cpu.jsonl --backend cpu 2>/dev/null
check "logprobs --backend cpu exits 0" '[ $? -eq 0 ]'
check "logprobs --backend cpu equals the default" 'cmp -s lp_default.jsonl lp_cpu.jsonl && [ -s lp_cpu.jsonl ]'
"$GRPO" logprobs --model model --input in.jsonl --output lp_guarded.jsonl --backend cpu_guarded 2>/dev/null
check "logprobs --backend cpu_guarded exits 0" '[ $? -eq 0 ]'
check "logprobs --backend cpu_guarded equals cpu" 'cmp -s lp_cpu.jsonl lp_guarded.jsonl'
err=$("$GRPO" logprobs --model model --input in.jsonl --output lp_bad.jsonl --backend nosuch 2>&1); rc=$?
check "logprobs --backend nosuch exits 1 (got $rc)" '[ $rc -eq 1 ]'
check "logprobs --backend nosuch lists the available backends" \
  'grep -q "unknown backend '"'"'nosuch'"'"'; available backends: cpu" <<<"$err"' || echo "$err"
check "logprobs --backend nosuch writes nothing" '[ ! -e lp_bad.jsonl ]'

"$GRPO" generate --model model --input in.jsonl --output g_default.jsonl --max-new-tokens 4 --seed 1 2>/dev/null
"$GRPO" generate --model model --input in.jsonl --output g_cpu.jsonl --max-new-tokens 4 --seed 1 --backend cpu 2>/dev/null
check "generate --backend cpu exits 0" '[ $? -eq 0 ]'
check "generate --backend cpu equals the default" 'cmp -s g_default.jsonl g_cpu.jsonl && [ -s g_cpu.jsonl ]'
err=$("$GRPO" generate --model model --input in.jsonl --output g_bad.jsonl --backend nosuch 2>&1); rc=$?
check "generate --backend nosuch exits 1 (got $rc)" '[ $rc -eq 1 ]'
check "generate --backend nosuch lists the available backends" 'grep -q "available backends: cpu" <<<"$err"' || echo "$err"
err=$("$GRPO" generate --model model --input in.jsonl --output g_bad.jsonl --backend cuda 2>&1); rc=$?
if ! grep -qE "^  cuda +compiled in" info.out; then
  check "generate --backend cuda in a build without it exits 1 (got $rc)" '[ $rc -eq 1 ]'
  check "--backend cuda says it is not compiled in" 'grep -q "backend '"'"'cuda'"'"' is not compiled into this build" <<<"$err"' || echo "$err"
elif grep -qE "^  cuda +unavailable: no CUDA device found" info.out; then
  check "generate --backend cuda without a GPU exits 1 (got $rc)" '[ $rc -eq 1 ]'
  check "--backend cuda without a GPU says no device was found" 'grep -q "no CUDA device found" <<<"$err"' || echo "$err"
fi

# ---- rollout serve: a bad backend fails before listening
err=$(timeout 60 "$GRPO" rollout serve --model model --listen 127.0.0.1:0 --backend nosuch 2>&1); rc=$?
check "rollout serve --backend nosuch exits 1 (got $rc)" '[ $rc -eq 1 ]'
check "rollout serve --backend nosuch lists the available backends" 'grep -q "available backends: cpu" <<<"$err"' || echo "$err"

# ---- recipes: `backend:` and the flag's precedence
TINY=(--set pretrain.steps=2 --set pretrain.batch_size=4 --set train.steps=1 --set rollout.prompts_per_step=2
      --set rollout.group_size=2 --set train.eval_size=2 --set rollout.max_new_tokens=8 --quiet)
cp "$RECIPE" nosuch.yaml && printf '\nbackend: nosuch\n' >> nosuch.yaml
err=$("$GRPO" train nosuch.yaml "${TINY[@]}" --set run.name=bad 2>&1); rc=$?
check "train with recipe backend: nosuch exits 1 (got $rc)" '[ $rc -eq 1 ]'
check "train names the unknown backend and the available ones" \
  'grep -q "unknown backend '"'"'nosuch'"'"'; available backends: cpu" <<<"$err"' || echo "$err"
check "train with a bad backend creates no run directory" '[ ! -e runs/bad ]'
err=$("$GRPO" train nosuch.yaml --check 2>&1 >/dev/null); rc=$?
check "train --check with recipe backend: nosuch exits 1 (got $rc)" '[ $rc -eq 1 ] && grep -q "nosuch" <<<"$err"'
"$GRPO" train nosuch.yaml --backend cpu --check > checked.yaml 2>/dev/null
check "--backend wins over the recipe (--check)" '[ $? -eq 0 ] && grep -qx "backend: cpu" checked.yaml'
"$GRPO" train "$RECIPE" --set backend=nosuch --backend cpu --check > checked2.yaml 2>/dev/null
check "--backend wins over --set backend=" '[ $? -eq 0 ] && grep -qx "backend: cpu" checked2.yaml'
printf '{"prompt":"Q:1+1\\n","completion":"2"}\n' > sft.jsonl
err=$("$GRPO" sft nosuch.yaml --set sft.train=sft.jsonl --set sft.steps=1 --set run.name=sft 2>&1); rc=$?
check "sft with recipe backend: nosuch exits 1 (got $rc)" '[ $rc -eq 1 ] && grep -q "available backends: cpu" <<<"$err"' || echo "$err"

"$GRPO" train "$RECIPE" "${TINY[@]}" --set run.name=plain > /dev/null 2> plain.err
check "train with the default backend exits 0" '[ $? -eq 0 ]' || cat plain.err
"$GRPO" train nosuch.yaml "${TINY[@]}" --set run.name=flag --backend cpu > /dev/null 2> flag.err
check "train --backend cpu over recipe backend: nosuch exits 0" '[ $? -eq 0 ]' || cat flag.err
check "the run's stored recipe records the flag's backend" 'grep -qx "backend: cpu" runs/flag/recipe.yaml'
check "--backend cpu trains the same weights as the default" \
  'cmp -s runs/plain/checkpoints/rl-000001/model.safetensors runs/flag/checkpoints/rl-000001/model.safetensors'
"$GRPO" train "$RECIPE" "${TINY[@]}" --set run.name=plain --set train.steps=2 --resume --backend cpu \
  > /dev/null 2> resume.err
check "--resume may name a backend the run did not (exit 0)" '[ $? -eq 0 ] && [ -d runs/plain/checkpoints/rl-000002 ]' ||
  cat resume.err
exit $fail
