#!/usr/bin/env bash
# learner.precision: bf16 end to end: recipes/r1zero-nano.yaml under --backend cpu_guarded (any
# host access to device memory crashes), shortened to 30 pretraining steps and 2 GRPO steps. The
# run must finish with finite losses, rewards and gradient norms, the pretraining loss must fall,
# and the checkpoint must hold the f32 masters (every tensor of model.safetensors F32), not the
# bf16 compute copies.
set -u
GRPO="$(realpath "$1")"
RECIPE="$(realpath "$2")"
T=${TEST_TMPDIR:-$(mktemp -d)}
cd "$T"
"$GRPO" train "$RECIPE" --backend cpu_guarded --set learner.precision=bf16 \
  --set pretrain.steps=30 --set train.steps=2 --set train.eval_every=2 --set train.eval_size=8 \
  --set rollout.prompts_per_step=4 > out.txt 2> err.txt
rc=$?
if [ $rc -ne 0 ]; then tail -n 20 err.txt; echo "FAIL: grpo train with learner.precision bf16 exited $rc"; exit 1; fi
/usr/bin/python3 - "$T/runs/r1zero-nano" <<'PY'
import json, math, os, struct, sys
run = sys.argv[1]
ok = True
def fail(*a):
    global ok
    print("FAIL:", *a); ok = False
def rows(name):
    return [json.loads(l) for l in open(os.path.join(run, name))]
pre = rows("pretrain_metrics.jsonl")
if len(pre) != 30: fail("pretrain_metrics.jsonl has %d rows, want 30" % len(pre))
if not all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in pre): fail("non-finite pretraining loss")
if pre and not sum(r["loss"] for r in pre[-5:]) < sum(r["loss"] for r in pre[:5]): fail("pretraining loss did not fall")
rl = [r for r in rows("metrics.jsonl") if "reward_mean" in r]
if len(rl) != 2: fail("metrics.jsonl has %d GRPO steps, want 2" % len(rl))
for r in rl:
    for k in ("reward_mean", "grad_norm", "entropy"):
        if not math.isfinite(r[k]): fail("step", r["step"], k, "is", r[k])
if "bf16" not in open(os.path.join(run, "recipe.yaml")).read(): fail("recipe.yaml does not record learner.precision bf16")
ckpt = os.path.join(run, "checkpoints", open(os.path.join(run, "checkpoints", "latest")).read().strip())
with open(os.path.join(ckpt, "model.safetensors"), "rb") as f:
    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
if dtypes != {"F32"}: fail("checkpoint tensors are", dtypes, "want only F32 masters")
print("bf16 run: final pretraining loss %.4f, rewards %s, checkpoint %d F32 tensors"
      % (pre[-1]["loss"], [r["reward_mean"] for r in rl], len(header) - ("__metadata__" in header)))
sys.exit(0 if ok else 1)
PY
