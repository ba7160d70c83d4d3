#!/usr/bin/env bash
# Issue 19, class 6: no silent outcomes. What was skipped is counted with its reasons, a command
# that produced nothing from a non-empty input exits 1 (and leaves its output as it was), "-" is
# standard input / output for every JSON Lines command, and no command writes over what it
# reads. Each instance of the issue has a check here, plus a fresh variant per class.
set -u
GRPO=$(realpath "$1")
RECIPE=$(realpath "$2")
T=${TEST_TMPDIR:-$(mktemp -d)}
cd "$T" || exit 1
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
run() { "$@" >"$T/out" 2>"$T/err"; echo $? >"$T/rc"; }
rc() { cat "$T/rc"; }
err_has() { grep -qF -- "$1" "$T/err"; }

# ---- rule weights: 1e308 gave "reward": null counted as scored; train --check accepted them.
printf 'rules:\n  - {type: format, mode: lenient, weight: 1e308}\n  - {type: math, weight: 1e308}\n' >big.yaml
printf '{"completion":"<think>a</think><answer>4</answer>","answer":"4"}\n' >items.jsonl
run "$GRPO" reward score --rules big.yaml --input items.jsonl --output scored.jsonl
check "reward score refuses weight 1e308" '[ "$(rc)" -eq 1 ] && err_has "big.yaml:2" && err_has "must be a finite number in [-1e6, 1e6]"'
check "... and writes nothing" '[ ! -e scored.jsonl ]'
run "$GRPO" train "$RECIPE" --check --set reward.rules.1.weight=1e308
check "train --check refuses weight 1e308" '[ "$(rc)" -eq 1 ] && err_has "rules.1.weight" && err_has "[-1e6, 1e6]"'
# Fresh variant: weights in bounds, a rule's own value overflows the total: an item error, and a
# file of which nothing was scored exits 1.
printf 'rules:\n  - {type: cosine, min_value_correct: 1e308, max_value_correct: 1e308, min_value_wrong: 1e308, max_value_wrong: 1e308, weight: 10}\n' >cos.yaml
run "$GRPO" reward score --rules cos.yaml --input items.jsonl --output cos.jsonl
check "an overflowing total is an error, never null counted as scored" \
  '[ "$(rc)" -eq 1 ] && err_has "1 error: reward is not finite" && err_has "none of the 1 lines could be used" && [ ! -e cos.jsonl ]'
printf 'rules:\n  - {type: format, mode: lenient, weight: 1e6}\n' >ok.yaml
run "$GRPO" reward score --rules ok.yaml --input items.jsonl --output ok.jsonl
check "weight 1e6 is accepted" '[ "$(rc)" -eq 0 ] && grep -q "\"reward\":1000000" ok.jsonl && err_has "1 lines: 1 scored"'

# ---- generate: every line skipped (default --max-new-tokens 256 on a 128-position model) exited 0.
"$GRPO" init-model --preset llama-nano --info 2>/dev/null >nano.json
python3 -c 'import json; c=json.load(open("nano.json")); c["max_position_embeddings"]=128; json.dump(c, open("c128.json","w"))'
"$GRPO" init-model --config c128.json --out m128 2>/dev/null
printf '{"tokens":[1,2,3]}\n{"tokens":[4,5]}\n' >prompts.jsonl
echo old >gen.jsonl
run "$GRPO" generate --model m128 --input prompts.jsonl --output gen.jsonl
check "generate with every line skipped exits 1" '[ "$(rc)" -eq 1 ] && err_has "none of the 2 lines could be used (2 does not fit the model or the flags"'
check "... naming the reason of the first" 'err_has "prompts.jsonl:1: prompt (3 tokens) + max_new_tokens (256) exceeds max_position_embeddings 128"'
check "... and leaves the output as it was" '[ "$(cat gen.jsonl)" = old ]'
printf '{"tokens":[1,2,3]}\nnot json\n' | (run "$GRPO" generate --model m128 --input - --output - --max-new-tokens 4)
check "generate counts what it skipped, - is stdin/stdout" \
  '[ "$(rc)" -eq 0 ] && [ "$(grep -c samples out)" -eq 1 ] && err_has "2 lines: 1 generated, 1 skipped (1 bad line, first <stdin>:2: not valid JSON"'
# Fresh variant: logprobs with every line too long.
python3 -c 'import json; print(json.dumps({"tokens": [1] * 200}))' >long.jsonl
run "$GRPO" logprobs --model m128 --input long.jsonl --output lp.jsonl
check "logprobs with every line skipped exits 1" \
  '[ "$(rc)" -eq 1 ] && err_has "none of the 1 lines could be used (1 longer than max_position_embeddings" && [ ! -e lp.jsonl ]'
# ---- dataset rows: 3 of 4 bad were dropped with no warning or metric.
printf '%s\n' '{"prompt":"Q:1+1\n","answer":"2"}' '{"prompt":"no answer"}' 'not json' '{"question":5,"answer":"1"}' >train.jsonl
DATA=(--set data.source=jsonl --set data.jsonl.train="$T/train.jsonl" --set run.output_dir="$T/runs"
      --set pretrain.steps=0 --set train.steps=1 --set train.eval_every=0 --set rollout.prompts_per_step=1
      --set rollout.group_size=2 --set rollout.max_new_tokens=4 --quiet)
run "$GRPO" train "$RECIPE" "${DATA[@]}" --set run.name=bad
check "3 of 4 bad rows fail the run" \
  '[ "$(rc)" -eq 1 ] && err_has "more than 0.1 of the rows are bad: 4 rows: 1 usable, 3 bad" && err_has "train.jsonl:2: missing field"'
run "$GRPO" train "$RECIPE" "${DATA[@]}" --set run.name=noisy --set data.max_bad_fraction=0.75
check "with data.max_bad_fraction 0.75 it runs, warning with the counts" \
  '[ "$(rc)" -eq 0 ] && err_has "warning: data.jsonl.train: $T/train.jsonl: 4 rows: 1 usable, 3 bad (skipped) (1 missing field \"answer\""'
check "... and the metrics count the bad rows" 'grep -q "\"data/bad_rows\": 3" runs/noisy/metrics.jsonl'
run "$GRPO" train "$RECIPE" "${DATA[@]}" --set run.name=checked --check
check "train --check reads the dataset: 3 of 4 bad rows fail it too" \
  '[ "$(rc)" -eq 1 ] && err_has "more than 0.1 of the rows are bad: 4 rows: 1 usable, 3 bad" && [ ! -e runs/checked ]'
run "$GRPO" train "$RECIPE" "${DATA[@]}" --set run.name=checked --set data.max_bad_fraction=0.75 --check
check "... and passes with data.max_bad_fraction 0.75, warning with the counts" \
  '[ "$(rc)" -eq 0 ] && err_has "warning: data.jsonl.train: $T/train.jsonl: 4 rows: 1 usable, 3 bad (skipped)" && [ ! -e runs/checked ]'
run "$GRPO" train "$RECIPE" "${DATA[@]}" --set data.jsonl.train="$T/elsewhere.jsonl" --check
check "... a dataset not on this machine is a note (checked when training starts)" \
  '[ "$(rc)" -eq 0 ] && err_has "note: data.jsonl.train: open $T/elsewhere.jsonl"'
run "$GRPO" train "$RECIPE" --check --set data.max_bad_fraction=2
check "data.max_bad_fraction out of [0, 1] is refused" '[ "$(rc)" -eq 1 ] && err_has "data.max_bad_fraction"'
# Fresh variant: grpo sft over a file with a bad row.
printf '%s\n' '{"prompt":"Q:1+1\n","completion":"2"}' '{"prompt":"Q:2+2\n","completion":"4"}' '{"prompt":"Q:3+3\n"}' >sft.jsonl
SFT=(--set run.output_dir="$T/runs" --set pretrain.steps=0 --set sft.train="$T/sft.jsonl" --set sft.steps=1
     --set sft.batch_size=2 --quiet)
run "$GRPO" sft "$RECIPE" "${SFT[@]}" --set run.name=sft-strict
check "sft: 1 of 3 rows bad is more than 0.1" '[ "$(rc)" -eq 1 ] && err_has "sft.train" && err_has "3 rows: 2 usable, 1 bad"'
run "$GRPO" sft "$RECIPE" "${SFT[@]}" --set run.name=sft-ok --set data.max_bad_fraction=0.5
check "sft warns and logs data/bad_rows" \
  '[ "$(rc)" -eq 0 ] && err_has "warning: sft.train" && grep -q "\"data/bad_rows\": 1" runs/sft-ok/metrics.jsonl'
# sft --check reads sft.train as sft does (as train --check reads data.jsonl.*).
run "$GRPO" sft "$RECIPE" "${SFT[@]}" --set run.name=sft-check --check
check "sft --check reads sft.train: 1 of 3 rows bad fails it too" \
  '[ "$(rc)" -eq 1 ] && err_has "sft.train: $T/sft.jsonl: more than 0.1 of the rows are bad" && err_has "3 rows: 2 usable, 1 bad" && [ ! -e runs/sft-check ]'
run "$GRPO" sft "$RECIPE" "${SFT[@]}" --set run.name=sft-check --set data.max_bad_fraction=0.5 --check
check "... and passes with data.max_bad_fraction 0.5, warning with the counts" \
  '[ "$(rc)" -eq 0 ] && err_has "warning: sft.train: $T/sft.jsonl: 3 rows: 2 usable, 1 bad (skipped)" && [ ! -e runs/sft-check ]'
printf '%s\n' 'not json' '{"prompt":1,"completion":"2"}' >sft-none.jsonl
run "$GRPO" sft "$RECIPE" "${SFT[@]}" --set sft.train="$T/sft-none.jsonl" --set data.max_bad_fraction=1 --check
check "sft --check: no usable row is an error naming sft.train" '[ "$(rc)" -eq 1 ] && err_has "sft.train: no usable row in $T/sft-none.jsonl"'
run "$GRPO" sft "$RECIPE" "${SFT[@]}" --set sft.train="$T/elsewhere.jsonl" --check
check "sft --check: a dataset not on this machine is a note (checked when training starts)" \
  '[ "$(rc)" -eq 0 ] && err_has "note:" && err_has "elsewhere.jsonl"'

# ---- init-model: --init-std nan was accepted, an existing model was overwritten without a flag.
run "$GRPO" init-model --preset llama-nano --out m-nan --init-std nan
check "--init-std nan is refused" '[ "$(rc)" -eq 1 ] && err_has "--init-std must be a finite number > 0" && [ ! -e m-nan ]'
for std in 0 -0.5 inf; do
  run "$GRPO" init-model --preset llama-nano --out m-std --init-std "$std"
  check "--init-std $std is refused" '[ "$(rc)" -eq 1 ] && [ ! -e m-std ]'
done
"$GRPO" init-model --preset llama-nano --out m --seed 1 2>/dev/null
cp m/model.safetensors first.safetensors
run "$GRPO" init-model --preset llama-nano --out m --seed 2
check "an existing model dir is refused without --overwrite" \
  '[ "$(rc)" -eq 1 ] && err_has "already exists and is not empty (it holds a model); pass --overwrite" && cmp -s m/model.safetensors first.safetensors'
run "$GRPO" init-model --preset llama-nano --out m --seed 2 --overwrite
check "--overwrite writes over it" '[ "$(rc)" -eq 0 ] && ! cmp -s m/model.safetensors first.safetensors'
mkdir empty && run "$GRPO" init-model --preset llama-nano --out empty
check "an empty --out directory is fine" '[ "$(rc)" -eq 0 ] && [ -s empty/model.safetensors ]'
# Fresh variant: the recipe's model.init.std.
run "$GRPO" train "$RECIPE" --check --set model.init.std=-1
check "train --check refuses model.init.std -1" '[ "$(rc)" -eq 1 ] && err_has "model.init.std" && err_has "finite number > 0"'
# Fresh variant: data gen --n 0 produced an empty dataset and exited 0.
run "$GRPO" data gen --task countdown --n 0 --output gen0.jsonl
check "data gen --n 0 is refused" '[ "$(rc)" -eq 1 ] && err_has "--n must be >= 1" && [ ! -e gen0.jsonl ]'

# ---- "-": reward score --output - wrote a file named "-", --input - failed.
run "$GRPO" reward score --rule math --input items.jsonl --output -
check "reward score --output - writes stdout" '[ "$(rc)" -eq 0 ] && grep -q "\"reward\":1.0" out && [ ! -e ./- ]'
"$GRPO" reward score --rule math --input - --output - <items.jsonl >stdin.out 2>/dev/null
check "reward score --input - reads stdin" 'grep -q "\"reward\":1.0" stdin.out && [ ! -e ./- ]'
# Fresh variant: data gen and logprobs through - as well.
"$GRPO" data gen --task arithmetic --n 3 --output - 2>/dev/null >arith.jsonl
check "data gen --output - writes stdout" '[ "$(wc -l <arith.jsonl)" -eq 3 ] && [ ! -e ./- ]'
printf '{"tokens":[1,2,3]}\n' | "$GRPO" logprobs --model m128 --input - --output - 2>/dev/null >lp.out
check "logprobs - / -" 'grep -q "\"logprobs\":\[" lp.out && [ ! -e ./- ]'

# ---- export --output <store>/CURRENT destroyed the store it reads.
run "$GRPO" train "$RECIPE" --set run.output_dir="$T/runs" --set run.name=st --set pretrain.steps=0 --set train.steps=1 \
  --set train.eval_every=0 --set rollout.prompts_per_step=2 --set rollout.group_size=2 --set rollout.max_new_tokens=4 --quiet
S=runs/st/store
cp "$S/CURRENT" current.before
run "$GRPO" export --store "$S" --format openai --output "$S/CURRENT"
check "export into the store it reads is refused" \
  '[ "$(rc)" -eq 1 ] && err_has "--output $S/CURRENT is inside --store $S, which this command reads" && cmp -s "$S/CURRENT" current.before'
run "$GRPO" export --store "$S/" --format openai --output "$T/runs/st/./store/../store/new.jsonl"
check "... also through another spelling of the path" '[ "$(rc)" -eq 1 ] && [ ! -e "$S/new.jsonl" ]'
ln -s "$T/runs/st/store" store-link
run "$GRPO" export --store store-link --format openai --output "$S/x.jsonl"
check "... and through a symbolic link" '[ "$(rc)" -eq 1 ] && [ ! -e "$S/x.jsonl" ]'
run "$GRPO" export --store "$S" --format openai --output all.jsonl
check "the store still exports" '[ "$(rc)" -eq 0 ] && [ "$(wc -l <all.jsonl)" -eq 4 ]'
run "$GRPO" export --store "$S" --format openai --min-reward 1e9 --output all.jsonl
check "an export that keeps nothing exits 1, names the drops, keeps the old file" \
  '[ "$(rc)" -eq 1 ] && err_has "none of the 4 samples read was kept (dropped: below_min_reward 4)" && [ "$(wc -l <all.jsonl)" -eq 4 ]'
# Fresh variant: an output equal to an input (tokenize, logprobs, generate into the model).
cp prompts.jsonl same.jsonl
run "$GRPO" logprobs --model m128 --input same.jsonl --output ./same.jsonl
check "logprobs --output = --input is refused" '[ "$(rc)" -eq 1 ] && err_has "is --input same.jsonl" && cmp -s same.jsonl prompts.jsonl'
run "$GRPO" reward score --rule math --input items.jsonl --output items.jsonl
check "reward score --output = --input is refused" '[ "$(rc)" -eq 1 ] && grep -q completion items.jsonl'
run "$GRPO" generate --model m128 --input prompts.jsonl --output m128/config.json --max-new-tokens 2
check "generate into the model directory is refused" '[ "$(rc)" -eq 1 ] && err_has "inside --model m128" && grep -q max_position_embeddings m128/config.json'

# Fresh variant: train --overwrite would delete a dataset kept inside the run directory.
cp train.jsonl runs/noisy/train.jsonl
run "$GRPO" train "$RECIPE" "${DATA[@]}" --set run.name=noisy --set data.max_bad_fraction=0.75 \
  --set data.jsonl.train="$T/runs/noisy/train.jsonl" --overwrite
check "train --overwrite refuses to delete its own dataset" \
  '[ "$(rc)" -eq 1 ] && err_has "--overwrite would delete data.jsonl.train" && [ -s runs/noisy/train.jsonl ]'

# Fresh variant: tokenize with only bad lines (the run's byte tokenizer).
printf '{"ids":"x"}\n[1]\n' >notext.jsonl
run "$GRPO" tokenize --tokenizer runs/st/tokenizer --input notext.jsonl --output t.jsonl
check "tokenize with only bad lines exits 1" \
  '[ "$(rc)" -eq 1 ] && err_has "none of the 2 lines could be used (1 cannot encode" && [ ! -e t.jsonl ]'
run "$GRPO" tokenize --tokenizer runs/st/tokenizer --input notext.jsonl --output runs/st/tokenizer/tokenizer.json
check "tokenize into its tokenizer is refused" '[ "$(rc)" -eq 1 ] && err_has "inside --tokenizer"'

exit $fail
