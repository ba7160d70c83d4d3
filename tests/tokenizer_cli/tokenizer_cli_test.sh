#!/usr/bin/env bash
# `grpo tokenize` and `grpo data gen` end to end, with the tiny test tokenizer
# (tokenizer/test_tokenizer.h: "hello" = 259, " world" = 264, "<|im_end|>" = 300, BOS "<s>" = 303).
set -u
GRPO="$1"
WRITE_TOKENIZER="$2"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }

mkdir -p "$tmp/tok"
"$WRITE_TOKENIZER" "$tmp/tok"

# Encode, with a bad line in the middle: reported with its line number, answered with an error.
printf '%s\n' '{"text": "hello world"}' 'not json' '{"text": "hello<|im_end|>", "other": 1}' '{"ids": [1]}' >"$tmp/in.jsonl"
"$GRPO" tokenize --tokenizer "$tmp/tok" --input "$tmp/in.jsonl" --output "$tmp/ids.jsonl" 2>"$tmp/err"; rc=$?
check "encode exits 0 (got $rc)" '[ $rc -eq 0 ]'
check "encode line 1" '[ "$(sed -n 1p "$tmp/ids.jsonl")" = "{\"ids\":[259,264]}" ]'
check "bad line 2 answered with an error" 'sed -n 2p "$tmp/ids.jsonl" | grep -q "\"error\":\"line 2: not valid JSON"'
check "bad line 2 reported on stderr" 'grep -q "in.jsonl:2: not valid JSON" "$tmp/err"'
check "encode line 3 (special token inline)" '[ "$(sed -n 3p "$tmp/ids.jsonl")" = "{\"ids\":[259,300]}" ]'
check "line 4 has no text" 'sed -n 4p "$tmp/ids.jsonl" | grep -q "line 4: no \\\\\"text\\\\\" string"'

# --strict fails on the first bad line, names it, and leaves no output file.
"$GRPO" tokenize --tokenizer "$tmp/tok/tokenizer.json" --input "$tmp/in.jsonl" --output "$tmp/strict.jsonl" --strict 2>"$tmp/err"; rc=$?
check "--strict exits 1 (got $rc)" '[ $rc -eq 1 ]'
check "--strict names the line" 'grep -q "in.jsonl:2" "$tmp/err"'
check "--strict leaves no output" '[ ! -e "$tmp/strict.jsonl" ] && [ ! -e "$tmp/strict.jsonl.tmp" ]'

# --add-special-tokens: the tiny config is a Qwen2Tokenizer (adds nothing).
echo '{"text": "hello"}' | "$GRPO" tokenize --tokenizer "$tmp/tok" --input - --output - --add-special-tokens >"$tmp/sp.jsonl" 2>/dev/null
check "add-special-tokens (Qwen adds none)" '[ "$(cat "$tmp/sp.jsonl")" = "{\"ids\":[259]}" ]'

# Decode, including a partial UTF-8 character and an unknown id.
printf '%s\n' '{"ids": [259, 264, 300]}' '{"ids": [228, 189]}' '{"ids": [99999]}' '{"ids": [259, 300]}' >"$tmp/dec.jsonl"
"$GRPO" tokenize --tokenizer "$tmp/tok" --decode --input "$tmp/dec.jsonl" --output "$tmp/text.jsonl" 2>/dev/null; rc=$?
check "decode exits 0" '[ $rc -eq 0 ]'
check "decode line 1" '[ "$(sed -n 1p "$tmp/text.jsonl")" = "{\"text\":\"hello world<|im_end|>\"}" ]'
check "decode partial UTF-8 -> U+FFFD" '[ "$(sed -n 2p "$tmp/text.jsonl")" = "{\"text\":\"�\"}" ]'
check "decode unknown id -> error" 'sed -n 3p "$tmp/text.jsonl" | grep -q "not in the vocabulary"'
"$GRPO" tokenize --tokenizer "$tmp/tok" --decode --skip-special-tokens --input "$tmp/dec.jsonl" --output "$tmp/skip.jsonl" 2>/dev/null
check "--skip-special-tokens" '[ "$(sed -n 4p "$tmp/skip.jsonl")" = "{\"text\":\"hello\"}" ]'

# A missing tokenizer is an error (exit 1), a missing flag a usage error (exit 2).
"$GRPO" tokenize --tokenizer "$tmp/nope" --input "$tmp/in.jsonl" --output "$tmp/x.jsonl" 2>/dev/null; rc=$?
check "missing tokenizer exits 1 (got $rc)" '[ $rc -eq 1 ]'
"$GRPO" tokenize --input "$tmp/in.jsonl" --output "$tmp/x.jsonl" 2>/dev/null; rc=$?
check "missing --tokenizer exits 2 (got $rc)" '[ $rc -eq 2 ]'

# data gen: deterministic per seed, n lines, gold answers present.
"$GRPO" data gen --task countdown --n 50 --seed 3 --output "$tmp/c1.jsonl" 2>/dev/null; rc=$?
check "data gen countdown exits 0 (got $rc)" '[ $rc -eq 0 ]'
"$GRPO" data gen --task countdown --n 50 --seed 3 --output "$tmp/c2.jsonl" 2>/dev/null
"$GRPO" data gen --task countdown --n 50 --seed 4 --output "$tmp/c3.jsonl" 2>/dev/null
check "50 countdown rows" '[ "$(wc -l <"$tmp/c1.jsonl")" -eq 50 ]'
check "same seed, same file" 'cmp -s "$tmp/c1.jsonl" "$tmp/c2.jsonl"'
check "other seed, other file" '! cmp -s "$tmp/c1.jsonl" "$tmp/c3.jsonl"'
check "countdown rows carry nums/target/answer" 'head -1 "$tmp/c1.jsonl" | grep -q "\"nums\":\[" && head -1 "$tmp/c1.jsonl" | grep -q "\"target\":"'
"$GRPO" data gen --task arithmetic --n 20 --min-steps 3 --max-steps 3 --ops "+*" --output "$tmp/a.jsonl" 2>/dev/null; rc=$?
check "data gen arithmetic exits 0 (got $rc)" '[ $rc -eq 0 ] && [ "$(wc -l <"$tmp/a.jsonl")" -eq 20 ]'
check "arithmetic uses only + and *" '! grep -q "\"expression\":\"[^\"]*[-/]" "$tmp/a.jsonl"'
"$GRPO" data gen --task sudoku --n 1 --output "$tmp/s.jsonl" 2>"$tmp/err"; rc=$?
check "unknown task exits 1 (got $rc)" '[ $rc -eq 1 ] && grep -q "countdown or arithmetic" "$tmp/err"'
"$GRPO" data gen --task countdown --min-numbers 5 --max-numbers 2 --output "$tmp/s.jsonl" 2>/dev/null; rc=$?
check "inconsistent knobs exit 1 (got $rc)" '[ $rc -eq 1 ]'

[ $fail -eq 0 ] && echo "PASS"
exit $fail
