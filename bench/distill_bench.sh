#!/usr/bin/env bash
# On-policy distillation vs SFT on the teacher's exported samples (issue 20, item 2), side by side
# in one run on the nano task. Not a test: run it by hand.
#   1. teacher: the nano R1-Zero recipe (pretraining, then TEACHER_STEPS RL steps);
#   2. student base: recipes/distill-nano.yaml's pretraining only (a 2-layer student);
#   3. teacher samples: STEPS rollout steps of the teacher at optimizer.lr 0 (16 prompts x 8
#      samples a step, as the student's), exported with `grpo export --format prompt-completion`;
#   4. on-policy distillation: STEPS steps of recipes/distill-nano.yaml from the student base, one
#      run per learning rate in LRS;
#   5. SFT: `grpo sft` from the student base on the exported samples, batch 128 (= one distillation
#      step's samples), constant lr; one run per evaluation point (EVERY, 2 EVERY, ... STEPS steps;
#      the same first steps each time), each checkpoint evaluated by a `grpo train` run with
#      train.steps 0 (the same held-out questions and evaluation seed as the distillation run).
# Prints held-out accuracy (T = 1, 200 questions) per step of both, and the wall time of each stage.
#   THREADS=2 STEPS=40 EVERY=5 LRS="1e-4 1e-3" SFT_LRS="1e-4 1e-3" bash bench/distill_bench.sh
# GRPO_BIN=PATH runs that binary instead of building `bazel build -c opt //cli:grpo` (the binary is
# copied first either way, so a build in this tree during the run does not change it).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}; STEPS=${STEPS:-40}; EVERY=${EVERY:-5}; LRS=${LRS-"1e-4 1e-3"}; SFT_LRS=${SFT_LRS-"1e-4 1e-3"}  # "" skips that arm
PRETRAIN_STEPS=${PRETRAIN_STEPS:-1000}; TEACHER_STEPS=${TEACHER_STEPS:-100}
[ -n "${GRPO_BIN:-}" ] || bazel build -c opt //cli:grpo >/dev/null 2>&1
W=$(mktemp -d /tmp/grpo-distill-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
export GRPO_NUM_THREADS=$THREADS
GRPO="$W/grpo"
cp "${GRPO_BIN:-bazel-bin/cli/grpo}" "$GRPO"
NANO=recipes/r1zero-nano.yaml; STUDENT=recipes/distill-nano.yaml
OUT=(--set run.output_dir="$W/runs" --quiet)
now() { date +%s.%N; }
run() {  # a grpo command; its stderr is shown only when it fails
  "$@" >/dev/null 2>"$W/last.err" || { cat "$W/last.err"; exit 1; }
}
accuracy() {  # eval/accuracy rows of a metrics file as "step accuracy" lines
  /usr/bin/python3 -c "
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if 'eval/accuracy' in r: print(r['step'], r['eval/accuracy'])" "$1"
}

t0=$(now)
run $GRPO train $NANO "${OUT[@]}" --set run.name=teacher --set pretrain.steps=$PRETRAIN_STEPS \
  --set train.steps=$TEACHER_STEPS --set train.eval_every=0
TEACHER=$(ls -d "$W"/runs/teacher/checkpoints/rl-* | tail -n 1)
t1=$(now)
run $GRPO train $STUDENT "${OUT[@]}" --set run.name=base --set pretrain.steps=$PRETRAIN_STEPS --set train.steps=0 \
  --set distill.teacher=
BASE=$(ls -d "$W"/runs/base/checkpoints/pretrain-* | tail -n 1)
t2=$(now)
run $GRPO train $NANO "${OUT[@]}" --set run.name=samples --set model.init=null --set model.path="$TEACHER" \
  --set pretrain.steps=0 --set train.steps=$STEPS --set optimizer.lr=0 --set train.eval_size=0
run $GRPO export --store "$W/runs/samples/store" --format prompt-completion --output "$W/teacher.jsonl"
t3=$(now)
for lr in $LRS; do
  run $GRPO train $STUDENT "${OUT[@]}" --set run.name=distill-$lr --set model.init=null --set model.path="$BASE" \
    --set pretrain.steps=0 --set train.steps=$STEPS --set train.eval_every=$EVERY --set optimizer.lr=$lr \
    --set distill.teacher="$TEACHER"
  accuracy "$W/runs/distill-$lr/metrics.jsonl" > "$W/distill-$lr.acc"
done
t4=$(now)
for lr in $SFT_LRS; do
  accuracy "$W/runs/base/metrics.jsonl" > "$W/sft-$lr.acc"  # step 0: the student base
  for ((k = EVERY; k <= STEPS; k += EVERY)); do
    run $GRPO sft $STUDENT "${OUT[@]}" --set run.name=sft-$lr-$k --set model.init=null --set model.path="$BASE" \
      --set sft.train="$W/teacher.jsonl" --set sft.steps=$k --set sft.batch_size=128 --set sft.lr=$lr \
      --set sft.schedule=constant --set sft.warmup_steps=0
    run $GRPO train $STUDENT "${OUT[@]}" --set run.name=eval-$lr-$k --set model.init=null \
      --set model.path="$(ls -d "$W"/runs/sft-$lr-$k/checkpoints/sft-* | tail -n 1)" --set pretrain.steps=0 \
      --set train.steps=0 --set distill.teacher=
    echo "$k $(accuracy "$W/runs/eval-$lr-$k/metrics.jsonl" | cut -d' ' -f2)" >> "$W/sft-$lr.acc"
  done
done
t5=$(now)

/usr/bin/python3 - "$W" "$SFT_LRS" "$LRS" <<'PY'
import json, sys
w, sft_lrs, lrs = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
def curve(path):
    return {int(s): float(a) for s, a in (l.split() for l in open(path))}
teacher = [json.loads(l) for l in open(w + '/runs/teacher/metrics.jsonl')]
teacher_acc = [r['eval/accuracy'] for r in teacher if 'eval/accuracy' in r][-1]
samples = [json.loads(l) for l in open(w + '/runs/samples/metrics.jsonl')]
correct = sum(r['reward/math'] for r in samples if r['step'] > 0) / max(1, sum(1 for r in samples if r['step'] > 0))
rows = sum(1 for _ in open(w + '/teacher.jsonl'))
print('teacher held-out accuracy (T = 1): %.3f; exported teacher samples: %d (mean math reward %.3f)'
      % (teacher_acc, rows, correct))
curves = [('distill lr ' + l, curve('%s/distill-%s.acc' % (w, l))) for l in lrs]
curves += [('sft lr ' + l, curve('%s/sft-%s.acc' % (w, l))) for l in sft_lrs]
print('%5s' % 'step' + ''.join(' %16s' % name for name, _ in curves))
for s in sorted(set().union(*(c.keys() for _, c in curves))):
    print('%5d' % s + ''.join(' %16s' % ('%.3f' % c[s] if s in c else '-') for _, c in curves))
PY
printf 'wall s: teacher %.0f, student base %.0f, teacher samples + export %.0f, distillation %.0f, SFT runs + evals %.0f\n' \
  "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$(echo "$t3 - $t2" | bc)" "$(echo "$t4 - $t3" | bc)" \
  "$(echo "$t5 - $t4" | bc)"
