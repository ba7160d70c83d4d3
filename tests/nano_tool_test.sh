#!/usr/bin/env bash
# recipes/tool-calculator-nano.yaml, unchanged: multi-turn rollouts with the calculator must raise
# the held-out tool-call rate by at least 30 points and the held-out accuracy by at least 20
# (issue 21); the run's store must hold the tool spans, and `grpo export --format openai` must
# write them as OpenAI tool calls and tool results.
CLI_TEST_ALL_THREADS=1 source "$(dirname "$0")/cli_test_lib.sh" "$@"
train_recipe
RUN=runs/tool-calculator-nano
if ! "$GRPO" export --store "$RUN/store" --format openai --output export.jsonl 2> export_err.txt; then
  cat export_err.txt; echo "FAIL: grpo export"; exit 1
fi
/usr/bin/python3 - "$RUN" export.jsonl <<'PY'
import json, os, sys
run, export = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
evals = [r for r in rows if "eval/accuracy" in r]
first, last = evals[0], evals[-1]
print("held-out accuracy %.3f -> %.3f, tool-call rate %.3f -> %.3f" % (
    first["eval/accuracy"], last["eval/accuracy"], first["eval/tool_call_rate"], last["eval/tool_call_rate"]))
ok = True
if first["step"] != 0:
    print("FAIL: no evaluation before RL"); ok = False
if last["eval/tool_call_rate"] - first["eval/tool_call_rate"] < 0.30:
    print("FAIL: tool-call rate rose by less than 30 points"); ok = False
if last["eval/accuracy"] - first["eval/accuracy"] < 0.20:
    print("FAIL: accuracy rose by less than 20 points"); ok = False
if not all("tool_call_rate" in r for r in rows if r["step"] > 0):
    print("FAIL: a training step without tool_call_rate"); ok = False
calls = correct_calls = 0
for line in open(export):
    msgs = json.loads(line)["messages"]
    for i, m in enumerate(msgs):
        if m["role"] != "assistant" or "tool_calls" not in m:
            continue
        calls += 1
        call = m["tool_calls"][0]
        result = msgs[i + 1]
        if result["role"] != "tool" or result["tool_call_id"] != call["id"]:
            print("FAIL: a tool call without its result:", line); ok = False; break
        expr = json.loads(call["function"]["arguments"]).get("expression", "")  # {} for a call without <c>
        terms = expr.split("+")
        if len(terms) > 1 and all(t.isdigit() and len(t) < 18 for t in terms):
            correct_calls += 1
            if result["content"] != str(sum(int(t) for t in terms)):
                print("FAIL: calculator gave", result["content"], "for", expr); ok = False
print("exported tool calls: %d (%d well-formed sums)" % (calls, correct_calls))
if calls == 0 or correct_calls == 0:
    print("FAIL: no tool calls in the export"); ok = False
sys.exit(0 if ok else 1)
PY
