#!/usr/bin/env bash
# `grpo init-model` and `grpo logprobs` as users' scripts call them (ARCHITECTURE.md, "CLI").
set -u
GRPO="$1"
T=${TEST_TMPDIR:-$(mktemp -d)}
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
# check_rescored MODEL GENERATED COUNT LABEL: `grpo logprobs` of MODEL on each of GENERATED's
# samples (its prompt from $T/prompts.jsonl plus the sampled tokens) gives, within 1e-5, the
# logprobs generate returned for the sampled tokens; COUNT samples in all.
check_rescored() {
  python3 - "$T/prompts.jsonl" "$2" <<'PY' > "$T/rescore.jsonl"
import json, sys
prompts = [json.loads(l)["tokens"] for l in open(sys.argv[1])]
for p, line in zip(prompts, open(sys.argv[2])):
    for s in json.loads(line)["samples"]:
        print(json.dumps({"tokens": p + s["tokens"], "n": len(s["tokens"]), "want": s["logprobs"]}))
PY
  "$GRPO" logprobs --model "$1" --input "$T/rescore.jsonl" --output "$T/rescored.jsonl" 2>/dev/null
  local count=$3  # seen by check's eval (bash locals are dynamically scoped)
  check "$4" 'python3 - "$T" "$count" <<'"'"'PY'"'"'
import json, sys
t, count = sys.argv[1], int(sys.argv[2])
rows = [json.loads(l) for l in open(t + "/rescore.jsonl")]
got = [json.loads(l)["logprobs"] for l in open(t + "/rescored.jsonl")]
assert len(rows) == count and len(got) == count, (len(rows), len(got))
for r, g in zip(rows, got):
    tail = g[-r["n"]:]
    assert all(abs(a - b) <= 1e-5 for a, b in zip(tail, r["want"])), (tail, r["want"])
PY'
}

for family in llama qwen2 qwen3 qwen3_moe deepseek_v3; do
  for dtype in f32 bf16 fp8; do
    dir="$T/$family-$dtype"
    "$GRPO" init-model --preset "$family-nano" --dtype "$dtype" --seed 7 --out "$dir" 2>/dev/null
    check "init-model $family $dtype" '[ -f "$dir/config.json" ] && [ -f "$dir/model.safetensors" ]'
  done
  printf '{"tokens":[1,2,3,4,5]}\n{"id":7,"tokens":[9]}\n' > "$T/in.jsonl"
  "$GRPO" logprobs --model "$T/$family-fp8" --input "$T/in.jsonl" --output "$T/out.jsonl" 2>/dev/null
  check "logprobs $family fp8 exit 0" '[ $? -eq 0 ]'
  check "logprobs $family: one line per input" '[ "$(wc -l < "$T/out.jsonl")" -eq 2 ]'
  check "logprobs $family: 4 values <= 0" \
    'python3 -c "import json,sys; r=json.loads(open(sys.argv[1]).readline())[\"logprobs\"]; sys.exit(0 if len(r)==4 and all(x<=0 for x in r) else 1)" "$T/out.jsonl"'
  check "logprobs $family: id passed through, empty logprobs" 'sed -n 2p "$T/out.jsonl" | grep -q "{\"id\":7,\"logprobs\":\[\]}"'
done

# A config.json written by init-model is accepted by --config, and the same seed gives the same weights.
"$GRPO" init-model --config "$T/qwen3-f32/config.json" --seed 7 --out "$T/again" 2>/dev/null
check "init-model --config reproduces --preset with the same seed" 'cmp -s "$T/again/model.safetensors" "$T/qwen3-f32/model.safetensors"'

# Bad lines: reported with their line number and skipped; --strict fails.
printf '{"tokens":[1,2]}\n{"tokens":"x"}\n[1]\n{"tokens":[1,100000]}\n{"tokens":[3,4,5]}\n' > "$T/bad.jsonl"
err=$("$GRPO" logprobs --model "$T/qwen3-f32" --input "$T/bad.jsonl" --output "$T/o.jsonl" 2>&1)
check "bad lines skipped, run succeeds" '[ $? -eq 0 ] && [ "$(wc -l < "$T/o.jsonl")" -eq 2 ]'
check "line 2 named" 'grep -q "bad.jsonl:2: \"tokens\" must be an array" <<<"$err"'
check "line 3 named" 'grep -q "bad.jsonl:3: not a JSON object" <<<"$err"'
check "line 4 named" 'grep -q "bad.jsonl:4: token id 100000 is outside the vocabulary" <<<"$err"'
"$GRPO" logprobs --model "$T/qwen3-f32" --input "$T/bad.jsonl" --output "$T/s.jsonl" --strict 2>/dev/null
check "--strict fails" '[ $? -eq 1 ]'
check "--strict leaves no output file" '[ ! -e "$T/s.jsonl" ]'
"$GRPO" logprobs --model "$T/nonexistent" --input "$T/bad.jsonl" --output "$T/x.jsonl" 2>/dev/null
check "missing model fails" '[ $? -eq 1 ]'
"$GRPO" init-model --preset deepseek-v3 --out "$T/huge" 2>/dev/null
check "a model too big for memory is refused" '[ $? -eq 1 ] && [ ! -e "$T/huge/model.safetensors" ]'
check "--info prints the real config" '"$GRPO" init-model --preset deepseek-v3 --info 2>/dev/null | grep -q "\"n_routed_experts\": 256"'
# grpo generate: n samples per prompt; the logprobs it returns equal grpo logprobs on the same tokens.
printf '{"id":1,"tokens":[1,2,3,4]}\n{"tokens":[9,8]}\n' > "$T/prompts.jsonl"
"$GRPO" generate --model "$T/deepseek_v3-f32" --input "$T/prompts.jsonl" --output "$T/gen.jsonl" \
  --n 3 --max-new-tokens 6 --seed 5 2>/dev/null
check "generate exit 0" '[ $? -eq 0 ] && [ "$(wc -l < "$T/gen.jsonl")" -eq 2 ]'
check_rescored "$T/deepseek_v3-f32" "$T/gen.jsonl" 6 "generate's logprobs equal grpo logprobs (6 samples)"
"$GRPO" generate --model "$T/qwen3-f32" --input "$T/prompts.jsonl" --output "$T/g1.jsonl" --temperature 0 --max-new-tokens 5 2>/dev/null
"$GRPO" generate --model "$T/qwen3-f32" --input "$T/prompts.jsonl" --output "$T/g2.jsonl" --temperature 0 --max-new-tokens 5 2>/dev/null
check "greedy generation is reproducible" 'cmp -s "$T/g1.jsonl" "$T/g2.jsonl"'
# --stats: one JSON line of host<->device traffic on stderr; a decode step moves ids and
# logprobs, not logits (qwen3-f32's vocabulary alone would be 4 bytes x vocab per token).
"$GRPO" generate --model "$T/qwen3-f32" --input "$T/prompts.jsonl" --output "$T/g4.jsonl" --temperature 0 \
  --max-new-tokens 5 --stats 2> "$T/stats.txt"
check "generate --stats prints host_device_bytes_per_token, far below one row of logits" 'python3 - "$T" <<'"'"'PY'"'"'
import json, sys
t = sys.argv[1]
line = [l for l in open(t + "/stats.txt") if l.startswith("{")][-1]
s = json.loads(line)
vocab = json.load(open(t + "/qwen3-f32/config.json"))["vocab_size"]
assert s["tokens"] == 10 and 0 < s["host_device_bytes_per_token"] < 64 < 4 * vocab, s
PY'
"$GRPO" generate --model "$T/qwen3-f32" --input "$T/prompts.jsonl" --output "$T/g3.jsonl" --top-p 0 2>/dev/null
check "bad sampling option fails" '[ $? -eq 1 ]'
# --serve-format: a bf16 checkpoint served as bf16 (and as stored: the same weights) samples the
# same tokens, with logprobs within 1e-5 of the f32 computation on the same weights (docs/numerics.md).
for fmt in bf16 stored; do
  "$GRPO" generate --model "$T/qwen3-bf16" --input "$T/prompts.jsonl" --output "$T/s-$fmt.jsonl" \
    --n 2 --max-new-tokens 6 --seed 3 --serve-format "$fmt" 2>/dev/null
  check "generate --serve-format $fmt exit 0" '[ $? -eq 0 ] && [ "$(wc -l < "$T/s-$fmt.jsonl")" -eq 2 ]'
done
check "bf16 and stored serve the same weights" 'cmp -s "$T/s-bf16.jsonl" "$T/s-stored.jsonl"'
check_rescored "$T/qwen3-bf16" "$T/s-bf16.jsonl" 4 "bf16-served logprobs within 1e-5 of f32 logprobs (4 samples)"
# grpo logprobs --serve-format: the bf16 checkpoint served as bf16 scores within 1e-5 of f32.
printf '{"tokens":[3,1,4,1,5,9,2,6]}\n{"tokens":[2,7,1,8]}\n' > "$T/lp.jsonl"
"$GRPO" logprobs --model "$T/qwen3-bf16" --input "$T/lp.jsonl" --output "$T/lp-f32.jsonl" 2>/dev/null
"$GRPO" logprobs --model "$T/qwen3-bf16" --input "$T/lp.jsonl" --output "$T/lp-bf16.jsonl" --serve-format bf16 2>/dev/null
check "logprobs --serve-format bf16 within 1e-5 of f32 (7 + 3 values)" 'python3 - "$T" <<'"'"'PY'"'"'
import json, sys
a = [json.loads(l)["logprobs"] for l in open(sys.argv[1] + "/lp-f32.jsonl")]
b = [json.loads(l)["logprobs"] for l in open(sys.argv[1] + "/lp-bf16.jsonl")]
assert [len(x) for x in a] == [7, 3] and [len(x) for x in b] == [7, 3], (a, b)
assert all(abs(p - q) <= 1e-5 for x, y in zip(a, b) for p, q in zip(x, y)), (a, b)
PY'
err=$("$GRPO" logprobs --model "$T/qwen3-bf16" --input "$T/lp.jsonl" --output "$T/lp-x.jsonl" --serve-format int4 2>&1)
check "logprobs: unknown --serve-format fails naming the flag" '[ $? -eq 1 ] && grep -q -- "--serve-format: weight format: unknown name \"int4\"" <<<"$err"'
err=$("$GRPO" generate --model "$T/qwen3-bf16" --input "$T/prompts.jsonl" --output "$T/s-x.jsonl" --serve-format int4 2>&1)
check "unknown --serve-format fails naming the flag" '[ $? -eq 1 ] && grep -q -- "--serve-format: weight format: unknown name \"int4\"" <<<"$err"'
exit $fail
