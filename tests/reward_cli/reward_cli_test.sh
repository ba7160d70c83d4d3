#!/usr/bin/env bash
# `grpo reward score` over JSONL (good, bad and erroring lines, --strict, --rule, plugins through
# the grpo binary's own worker) and `grpo reward serve` (listens on loopback, exits 0 on SIGTERM).
set -u
GRPO="$1"
RULES=tests/reward_cli/rules.yaml
T=$(mktemp -d "${TEST_TMPDIR:-/tmp}/reward_cli.XXXXXX")
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }

cat >"$T/in.jsonl" <<'JSONL'
{"id":"1","task":"math","completion":"<think>ok</think><answer>\\frac{1}{2}</answer>","answer":"0.5"}
{"id":"2","task":"math","completion":"<answer>1</answer>","answer":"0.5"}
this is not json
{"id":"4","task":"countdown","completion":"<answer>(5-1)*6</answer>","meta":{"numbers":[1,5,6],"target":24}}
{"id":"5","task":"math","completion":"\\boxed{1}","answer":"\\frac{"}
{"id":"6","task":"keyword","completion":"alpha beta"}
JSONL

"$GRPO" reward score --rules "$RULES" --input "$T/in.jsonl" --output "$T/out.jsonl" 2>"$T/err"; rc=$?
check "score exits 0 with a bad line (got $rc)" '[ $rc -eq 0 ]'
check "bad line reported with its number" 'grep -q "in.jsonl:3: not valid JSON" "$T/err"'
check "five results" '[ $(wc -l <"$T/out.jsonl") -eq 5 ]'
check "correct math gets 1 + 0.5 format" 'grep -q "{\"id\":\"1\",\"reward\":1.5,\"rules\":{\"accuracy\":1.0,\"format\":1.0}}" "$T/out.jsonl"'
check "wrong math gets 0" 'grep -q "{\"id\":\"2\",\"reward\":0.0," "$T/out.jsonl"'
check "countdown exact" 'grep -q "{\"countdown\":1.0" "$T/out.jsonl"'
check "bad gold is an error, no reward" 'grep "\"id\":\"5\"" "$T/out.jsonl" | grep -q "\"error\"" && ! grep "\"id\":\"5\"" "$T/out.jsonl" | grep -q "\"reward\""'
check "plugin through grpo reward plugin-worker" 'grep "\"id\":\"6\"" "$T/out.jsonl" | grep -q "\"keyword\":1.0"'

"$GRPO" reward score --rules "$RULES" --input "$T/in.jsonl" --output "$T/out2.jsonl" --strict 2>"$T/err2"; rc=$?
check "--strict fails on the bad line (got $rc)" '[ $rc -eq 1 ]'
check "--strict names the line" 'grep -q ":3:" "$T/err2"'

echo '{"completion":"\\boxed{7}","answer":"7"}' >"$T/one.jsonl"
"$GRPO" reward score --rule math --input "$T/one.jsonl" --output "$T/one.out" 2>/dev/null
check "--rule math" 'grep -q "{\"reward\":1.0,\"rules\":{\"math\":1.0}}" "$T/one.out"'
# --rule code: the APPS-form tests as JSON text in `answer`, the program run in the sandbox.
cat >"$T/code.jsonl" <<'JSONL'
{"id":"right","completion":"```python\nprint(sum(map(int, input().split())))\n```","answer":"{\"inputs\": [\"1 2\", \"5 5\"], \"outputs\": [\"3\", \"10\"]}"}
{"id":"wrong","completion":"```python\nprint(0)\n```","answer":"{\"inputs\": [\"1 2\", \"0 0\"], \"outputs\": [\"3\", \"0\"]}"}
{"id":"shadow","completion":"```python\nprint(open('/etc/shadow').read())\n```","answer":"{\"inputs\": [\"\"], \"outputs\": [\"\"]}"}
JSONL
"$GRPO" reward score --rule code --input "$T/code.jsonl" --output "$T/code.out" 2>"$T/code.err"; rc=$?
check "--rule code exits 0 (got $rc: $(cat "$T/code.err"))" '[ $rc -eq 0 ]'
check "--rule code: right program 1" 'grep -q "{\"id\":\"right\",\"reward\":1.0," "$T/code.out"'
check "--rule code: wrong program 0.5" 'grep -q "{\"id\":\"wrong\",\"reward\":0.5," "$T/code.out"'
check "--rule code: /etc/shadow unreadable" 'grep -q "{\"id\":\"shadow\",\"reward\":0.0," "$T/code.out"'

"$GRPO" reward score --rule nope --input "$T/one.jsonl" --output "$T/x" 2>/dev/null; rc=$?
check "unknown --rule exits 1 (got $rc)" '[ $rc -eq 1 ]'
"$GRPO" reward score --input "$T/one.jsonl" 2>/dev/null; rc=$?
check "missing --output is a usage error (got $rc)" '[ $rc -eq 2 ]'

# A hostile plugin inside `grpo reward score`: it signals its parent and this script, writes garbage into every
# descriptor it might have inherited (the output file among them), prints to stdout, and forks
# children. The scorer must finish, its output must hold exactly its results, and nothing the
# plugin started may outlive it.
printf '%s\n' "{\"id\":\"a\",\"completion\":\"kill:$$\"}" '{"id":"b","completion":"write-fds"}' \
  '{"id":"c","completion":"stdout"}' '{"id":"d","completion":"fork"}' >"$T/hostile.jsonl"
"$GRPO" reward score --rules tests/reward_cli/hostile_rules.yaml --input "$T/hostile.jsonl" \
  --output "$T/hostile.out" >"$T/hostile.stdout" 2>"$T/hostile.err"; rc=$?
check "hostile plugin: score exits 0 (got $rc: $(cat "$T/hostile.err"))" '[ $rc -eq 0 ]'
cat >"$T/hostile.want" <<'JSONL'
{"id":"a","reward":0.0,"rules":{"hostile":0.0}}
{"id":"b","reward":0.0,"rules":{"hostile":0.0}}
{"id":"c","reward":0.0,"rules":{"hostile":0.0}}
{"id":"d","reward":20.0,"rules":{"hostile":20.0}}
JSONL
check "hostile plugin: output holds only the four results ($(cat "$T/hostile.out"))" 'cmp -s "$T/hostile.out" "$T/hostile.want"'
check "hostile plugin: nothing on the scorer's stdout" '[ ! -s "$T/hostile.stdout" ]'
check "hostile plugin: no process outlives the scorer" '! pgrep -f "reward-cli-hostile-plugin" >/dev/null'

"$GRPO" reward serve --rules "$RULES" --listen 127.0.0.1:0 2>"$T/serve.log" &
pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$T/serve.log" && break; sleep 0.1; done
check "serve listens on loopback" 'grep -qE "listening on 127.0.0.1:[0-9]+" "$T/serve.log"'
kill -TERM "$pid"
wait "$pid"; rc=$?
check "serve exits 0 on SIGTERM (got $rc)" '[ $rc -eq 0 ]'
check "serve says it stopped" 'grep -q "stopped" "$T/serve.log"'

"$GRPO" reward serve --rules /nonexistent.yaml 2>/dev/null; rc=$?
check "serve with a missing rules file exits 1 (got $rc)" '[ $rc -eq 1 ]'
rm -rf "$T"
exit $fail
