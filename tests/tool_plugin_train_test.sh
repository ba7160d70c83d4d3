#!/usr/bin/env bash
# `grpo train` with a tool plugin (docs/tools.md, "Tool plugins") that crashes on every call: the
# trainer runs through its steps, the rollouts' tool calls get "error: the tool crashed (...)"
# as their result (calls without their start marker: "error: no <c> before </c>"), and the store
# keeps them. Args: GRPO RECIPE (the nano tool recipe) PLUGIN.
PLUGIN="$(realpath "$3")"  # before the library changes directory
source "$(dirname "$0")/cli_test_lib.sh" "$1" "$2"
SMALL=(--set tools.environment=plugin --set "tools.plugin=$PLUGIN" --set "tools.plugin_config={every_call: crash}"
       --set pretrain.steps=300 --set train.steps=2 --set train.eval_every=2 --set train.eval_size=16
       --set train.checkpoint_every=2 --set run.name=crashing)
"$GRPO" train "$RECIPE" "${SMALL[@]}" > out.txt 2> err.txt
rc=$?
tail -n 4 err.txt
check "grpo train with a crashing tool plugin exits 0 (got $rc)" '[ $rc -eq 0 ]'
RUN=runs/crashing
"$GRPO" export --store "$RUN/store" --format openai --output export.jsonl 2> export_err.txt
check "grpo export" '[ $? -eq 0 ]'
/usr/bin/python3 - "$RUN" export.jsonl <<'PY'
import json, os, sys
run, export = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
rate = max(r.get("tool_call_rate", 0) for r in rows)
results = [m["content"] for line in open(export) for m in json.loads(line)["messages"] if m["role"] == "tool"]
print("tool-call rate up to %.3f; %d tool results, e.g. %r" % (rate, len(results), results[:1]))
if rate <= 0 or not results:
    print("FAIL: the model made no tool calls"); sys.exit(1)
# A call without its start marker never reaches the plugin ("error: no <c> before </c>").
crashed = [r for r in results if r.startswith("error: the tool crashed (worker killed by signal 11")]
bad = [r for r in results if r not in crashed and not r.startswith("error: no <c> before")]
if not crashed or bad:
    print("FAIL: no crash result, or a result that is not the crash:", bad[:3]); sys.exit(1)
PY
check "every tool result is the crash" '[ $? -eq 0 ]'
exit $fail
