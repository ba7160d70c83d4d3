#!/usr/bin/env bash
# recipes/r1zero-nano.yaml under --backend cpu_guarded (model/ops/cpu_guarded: any host access to
# device memory crashes), shortened to 100 pretraining steps and 3 GRPO steps so that it fits CI:
# it must finish, and its pretraining and RL metrics (losses, gradient norms, rewards, entropies,
# evaluations; timings aside) must equal the plain CPU backend's bit for bit. The full recipe's
# result under cpu_guarded is recorded in docs/recipes.md.
set -u
GRPO="$(realpath "$1")"
RECIPE="$(realpath "$2")"
T=${TEST_TMPDIR:-$(mktemp -d)}
SHORT=(--set pretrain.steps=100 --set train.steps=3 --set train.eval_every=3
       --set train.eval_size=16 --set rollout.prompts_per_step=8)
for backend in cpu cpu_guarded; do
  mkdir -p "$T/$backend"
  cd "$T/$backend"
  start=$(date +%s)
  "$GRPO" train "$RECIPE" --backend "$backend" "${SHORT[@]}" > out.txt 2> err.txt
  rc=$?
  echo "$backend: exit $rc, wall time $(( $(date +%s) - start )) s"
  if [ $rc -ne 0 ]; then tail -n 20 err.txt; echo "FAIL: grpo train --backend $backend exited $rc"; exit 1; fi
done
/usr/bin/python3 - "$T/cpu/runs/r1zero-nano" "$T/cpu_guarded/runs/r1zero-nano" <<'PY'
import json, os, sys
def rows(run, name):
    return [{k: v for k, v in json.loads(l).items() if not k.startswith("time/")}
            for l in open(os.path.join(run, name))]
ok = True
for name, steps in (("pretrain_metrics.jsonl", 100), ("metrics.jsonl", 4)):
    cpu, guarded = rows(sys.argv[1], name), rows(sys.argv[2], name)
    if len(cpu) != steps:
        print("FAIL: %s has %d rows, want %d" % (name, len(cpu), steps)); ok = False
    for a, b in zip(cpu, guarded):
        if a != b:
            diff = {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
            print("FAIL: %s step %s differs (cpu, cpu_guarded): %s" % (name, a.get("step"), diff))
            ok = False
            break
    if len(cpu) != len(guarded):
        print("FAIL: %s: %d rows on cpu, %d on cpu_guarded" % (name, len(cpu), len(guarded))); ok = False
rl = [r for r in rows(sys.argv[2], "metrics.jsonl") if "reward_mean" in r]
if not rl or max(r["reward_mean"] for r in rl) <= 0 or max(r["grad_norm"] for r in rl) <= 0:
    print("FAIL: the short run's GRPO steps had no reward or no gradient:", rl); ok = False
for f in ("report.html", "checkpoints/latest", "store", "tb"):
    if not os.path.exists(os.path.join(sys.argv[2], f)):
        print("FAIL: run directory lacks", f); ok = False
print("pretraining and GRPO metrics equal on cpu and cpu_guarded" if ok else "")
sys.exit(0 if ok else 1)
PY
