#!/usr/bin/env bash
# The README's main job, unchanged: recipes/r1zero-nano.yaml must raise held-out accuracy by at
# least 20 points and end with a held-out format rate of at least 0.9 (issue #8), and leave the
# run directory complete.
CLI_TEST_ALL_THREADS=1 source "$(dirname "$0")/cli_test_lib.sh" "$@"
train_recipe
/usr/bin/python3 - runs/r1zero-nano <<'PY'
import json, os, sys
run = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
evals = [r for r in rows if "eval/accuracy" in r]
first, last = evals[0], evals[-1]
print("held-out accuracy %.3f -> %.3f, format %.3f -> %.3f" % (
    first["eval/accuracy"], last["eval/accuracy"], first["eval/format"], last["eval/format"]))
ok = True
if first["step"] != 0:
    print("FAIL: no evaluation before RL"); ok = False
if last["eval/accuracy"] - first["eval/accuracy"] < 0.20:
    print("FAIL: accuracy rose by less than 20 points"); ok = False
if last["eval/format"] < 0.90:
    print("FAIL: final format rate below 0.9"); ok = False
for f in ("report.html", "checkpoints/latest", "store", "tb"):
    if not os.path.exists(os.path.join(run, f)):
        print("FAIL: run directory lacks", f); ok = False
sys.exit(0 if ok else 1)
PY
