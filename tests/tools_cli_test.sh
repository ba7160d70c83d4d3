#!/usr/bin/env bash
# Tool use from the command line (issue 21). `grpo generate --tools-*` runs the calculator on a
# base model that writes calls, with the recipe's markers. Tools with a remote rollout server: `grpo train` with rollout.endpoints and the
# calculator recipe's tools section sends the environment settings with every request, the
# `grpo rollout serve` server runs the calculator, and the samples come back multi-turn: tool
# turns happen (tool_call_rate > 0), the store keeps the environment spans (mask 0 inside them),
# and the export has the calls and results. (That the server's samples and spans equal the
# embedded engine's is rollout:service_test, RolloutServeTools.)
source "$(dirname "$0")/cli_test_lib.sh" "$@"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; }
trap cleanup EXIT

SMALL=(--set pretrain.batch_size=16 --set rollout.prompts_per_step=4 --set rollout.group_size=4
       --set train.eval_size=8 --set train.eval_every=2 --set rollout.max_new_tokens=32
       --set "pretrain.teacher_mix={careful: 0.0, guess: 0.0, plain: 0.0, tool: 1.0}")

# A base that writes calculator calls ("<c>47+38</c>") for the server to load.
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=base --set pretrain.steps=80 --set train.steps=0 --quiet \
  > /dev/null 2> base.err
BASE=runs/base/checkpoints/pretrain-000080
check "base run" '[ -d "$BASE" ]' || cat base.err

# grpo generate with the calculator: every call's result is the calculator's answer to the call.
printf '{"prompt": "Q:47+38\\n"}\n{"prompt": "Q:12+9\\n"}\n' > prompts.jsonl
"$GRPO" generate --model "$BASE" --input prompts.jsonl --output gen.jsonl --n 4 --seed 3 --max-new-tokens 32 \
  --tools-environment calculator --tools-call-start '<c>' --tools-call-end '</c>' --tools-result-start '<r>' \
  --tools-result-end '</r>' --tools-max-calls 1 2> gen.err
rc=$?
check "generate with tools exits 0" '[ $rc -eq 0 ]' || cat gen.err
check "generate's samples carry the calculator's turns" "/usr/bin/python3 -c \"
import json
n = 0
for line in open('gen.jsonl'):
    for s in json.loads(line)['samples']:
        assert len(s['environment_spans']) <= 1, s
        for e in s['environment_spans']:
            assert e['tool'] == 'calculator' and e['call'].endswith('</c>'), e
            assert '<r>' + e['output'][:8] in s['text'], s
            expr = json.loads(e['arguments']).get('expression', '')
            if expr.replace('+', '').isdigit() and '+' in expr:
                assert e['output'] == str(sum(int(t) for t in expr.split('+'))), e
            n += 1
assert n > 0, 'no tool call in 8 samples'
\""
err=$("$GRPO" generate --model "$BASE" --input prompts.jsonl --output bad.jsonl --tools-environment calculator \
  --tools-max-calls -1 2>&1)
check "a bad tools flag is named" 'echo "$err" | grep -q -- "--tools-max-calls"' || echo "$err"
# Calls on the engine's loop thread (--tools-call-threads 0) give the same samples.
"$GRPO" generate --model "$BASE" --input prompts.jsonl --output gen0.jsonl --n 4 --seed 3 --max-new-tokens 32 \
  --tools-environment calculator --tools-call-start '<c>' --tools-call-end '</c>' --tools-result-start '<r>' \
  --tools-result-end '</r>' --tools-max-calls 1 --tools-call-threads 0 2> gen0.err
check "tool-call threads do not change the samples" "/usr/bin/python3 -c \"
import json
tokens = lambda f: [[s['tokens'] for s in json.loads(l)['samples']] for l in open(f)]
assert tokens('gen.jsonl') == tokens('gen0.jsonl')
\"" || cat gen0.err
err=$("$GRPO" generate --model "$BASE" --input prompts.jsonl --output bad.jsonl --tools-environment calculator \
  --tools-call-threads 300 2>&1)
check "a bad --tools-call-threads is named" 'echo "$err" | grep -q -- "--tools-call-threads"' || echo "$err"

(umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > push.token)
export GRPO_PUSH_TOKEN_FILE="$T/push.token"
"$GRPO" rollout serve --model "$BASE" --listen 127.0.0.1:0 --kv-memory-mb 32 2> rollout.err &
pids+=($!)
R=""
for _ in $(seq 1 400); do
  R=$(sed -n 's/.*listening on [^:]*:\([0-9]*\).*/\1/p' rollout.err | head -n1)
  [ -n "$R" ] && break
  sleep 0.05
done
check "server listening" '[ -n "$R" ]' || cat rollout.err

"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=remote --set pretrain.steps=0 \
  --set model.path="$T/$BASE" --set model.init=null --set train.steps=2 \
  --set "rollout.endpoints=[127.0.0.1:$R]" > train.out 2> train.err
rc=$?
check "remote run with tools finishes" '[ $rc -eq 0 ]' || tail -20 train.err
check "tool turns happen on the server" "/usr/bin/python3 -c \"
import json
rows = [json.loads(l) for l in open('runs/remote/metrics.jsonl')]
steps = [r for r in rows if r['step'] > 0]
assert len(steps) == 2 and all('tool_call_rate' in r for r in steps), rows
assert sum(r['tool_call_rate'] for r in steps) > 0, [r['tool_call_rate'] for r in steps]
assert 'eval/tool_call_rate' in rows[0], rows[0]
\""
"$GRPO" export --store runs/remote/store --format openai --output export.jsonl 2> export.err
check "the export has tool calls with the calculator's results" "/usr/bin/python3 -c \"
import json
n = 0
for line in open('export.jsonl'):
    msgs = json.loads(line)['messages']
    for i, m in enumerate(msgs):
        if m['role'] == 'assistant' and 'tool_calls' in m:
            assert msgs[i + 1]['role'] == 'tool', msgs
            assert m['tool_calls'][0]['function']['name'] == 'calculator', m
            n += 1
assert n > 0, 'no tool calls exported'
\""
if [ $fail -eq 0 ]; then echo "PASS"; fi
exit $fail
