#!/usr/bin/env bash
# `grpo export` and `grpo inspect` end to end on the demo store: the CLI's exports equal the
# golden files of export_test, inspect's views show what the store holds, and a missing or
# foreign store fails with a clear error and exit 1.
set -u
GRPO="$1"
MAKE="$2"
TESTDATA="$(dirname "$3")"
T="${TEST_TMPDIR:-$(mktemp -d)}"
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }

rm -rf "$T/store" "$T/foreign"
"$MAKE" "$T/store" || { echo "FAIL: make_demo_store"; exit 1; }

# Exports: same options as export_test's golden files.
"$GRPO" export --store "$T/store" --format openai --output "$T/a.jsonl" 2>"$T/err"
check "export openai exits 0" '[ $? -eq 0 ]'
check "export openai matches golden" 'cmp -s "$T/a.jsonl" "$TESTDATA/openai_all.jsonl"'
check "export summary names kept and dropped" 'grep -q "kept 11 of 12 samples" "$T/err" && grep -q "dropped: aborted 1" "$T/err"'
check "no temporary file left" '[ ! -e "$T/a.jsonl.tmp" ]'

"$GRPO" export --store "$T/store" --run demo --format sharegpt --correct-only --output "$T/b.jsonl" 2>"$T/err"
check "export sharegpt --correct-only matches golden" 'cmp -s "$T/b.jsonl" "$TESTDATA/sharegpt_correct_only.jsonl"'
check "correct-only drop reasons" 'grep -q "dropped: aborted 1, no_reward 1, not_correct 5" "$T/err"'

"$GRPO" export --store "$T/store" --format prompt-completion --best-of-group --dedupe --output "$T/c.jsonl" 2>/dev/null
check "export prompt-completion best-of-group dedupe matches golden" \
  'cmp -s "$T/c.jsonl" "$TESTDATA/prompt_completion_best_dedupe.jsonl"'

"$GRPO" export --store "$T/store" --format sharegpt --min-reward 0.5 --max-tokens 30 --drop-truncated \
  --reasoning split --output "$T/d.jsonl" 2>/dev/null
check "export min-reward/max-tokens/split matches golden" \
  'cmp -s "$T/d.jsonl" "$TESTDATA/sharegpt_min_reward_max_tokens.jsonl"'

"$GRPO" export --store "$T/store" --format openai --reasoning split --metadata --first-step 1 --last-step 1 \
  --output - 2>/dev/null >"$T/e.jsonl"
check "export to stdout with metadata matches golden" 'cmp -s "$T/e.jsonl" "$TESTDATA/openai_split_meta_step1.jsonl"'

"$GRPO" export --store "$T/store" --format alpaca --output "$T/x.jsonl" 2>"$T/err"; rc=$?
check "unknown format exits 1 (got $rc)" '[ $rc -eq 1 ] && grep -q "unknown export format" "$T/err"'

# Inspect.
out=$("$GRPO" inspect --store "$T/store")
check "inspect lists the run" 'grep -q "^demo " <<<"$out"'
out=$("$GRPO" inspect --store "$T/store" --json)
check "inspect --json runs" 'python3 -c "import json,sys; v=json.load(sys.stdin); assert v[\"runs\"][0][\"num_samples\"]==12" <<<"$out"'
out=$("$GRPO" inspect --store "$T/store" --run demo --json)
check "inspect --run --json has steps" 'python3 -c "import json,sys; v=json.load(sys.stdin); assert len(v[\"steps\"])==2" <<<"$out"'
out=$("$GRPO" inspect --store "$T/store" --step 0 --k 2)
check "inspect --step shows pass@2" 'grep -q "pass@2" <<<"$out"'
out=$("$GRPO" inspect --store "$T/store" --step 1 --prompt 1 --sample 0)
check "inspect shows a sample's full text" 'grep -qF "<think>Café \"prices\": 7?</think><answer>7</answer>" <<<"$out"'

out=$("$GRPO" inspect --store "$T/store" --min-reward 1.5 --json)
check "inspect --min-reward lists 4 samples" 'python3 -c "import json,sys; v=json.load(sys.stdin); assert v[\"view\"]==\"query\" and len(v[\"samples\"])==4" <<<"$out"'
out=$("$GRPO" inspect --store "$T/store" --rule format:0:0 --step 0)
check "inspect --rule lists matching samples" 'grep -q "2 matching sample" <<<"$out"'
"$GRPO" inspect --store "$T/store" --rule format:x 2>"$T/err"; rc=$?
check "bad --rule exits 1 (got $rc)" '[ $rc -eq 1 ] && grep -q "NAME\[:MIN\[:MAX\]\]" "$T/err"'

# Errors: missing store, foreign RocksDB, a directory of other files.
"$GRPO" inspect --store "$T/nope" 2>"$T/err"; rc=$?
check "missing store exits 1 (got $rc)" '[ $rc -eq 1 ] && grep -q "no trajectory store at" "$T/err"'
"$MAKE" "$T/foreign" --foreign
"$GRPO" export --store "$T/foreign" --format openai --output "$T/f.jsonl" 2>"$T/err"; rc=$?
check "foreign RocksDB exits 1 (got $rc)" '[ $rc -eq 1 ] && grep -q "is not a grpo trajectory store" "$T/err"'
check "failed export leaves no output" '[ ! -e "$T/f.jsonl" ] && [ ! -e "$T/f.jsonl.tmp" ]'
"$GRPO" inspect --store "$TESTDATA" 2>"$T/err"; rc=$?
check "a directory of other files exits 1 (got $rc)" '[ $rc -eq 1 ] && grep -q "is not a grpo trajectory store" "$T/err"'
exit $fail
