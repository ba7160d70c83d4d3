#!/usr/bin/env bash
# On-policy distillation vs SFT on the teacher's exported samples (issue 20, item 2), side by side
# in one run on the nano task, each method at its own learning rate from a small sweep, over
# several seeds. Not a test: run it by hand.
#   1. teacher: the nano R1-Zero recipe (pretraining, then TEACHER_STEPS RL steps), or TEACHER=DIR;
#   2. student base: recipes/distill-nano.yaml's pretraining only (a 2-layer student), or BASE=DIR;
#   3. teacher samples: STEPS rollout steps of the teacher at optimizer.lr 0 (16 prompts x 8
#      samples a step, as the student's), exported with `grpo export --format prompt-completion`
#      (all of them, right or wrong: the teacher's distribution, which distillation matches too);
#   4. learning-rate sweep with the first seed: on-policy distillation (pure reverse KL,
#      distill.rule_rewards false) at each of LRS, SFT at each of SFT_LRS; each method keeps the lr
#      with the highest mean held-out accuracy over its evaluation points after step 0 (the area
#      under its curve: "fastest per step");
#   5. the other seeds at the chosen lrs, and the mixed form (reverse KL + the rule-reward
#      advantages, distill.rule_rewards true) at distillation's chosen lr for every seed;
#   5b. FULL="rkl fkl rklr" (the default; FULL= leaves them out): on-policy distillation from the
#      teacher's whole distribution, reverse KL (rkl, distill.divergence reverse_kl), forward KL
#      (fkl, forward_kl) and reverse KL + the rule-reward advantages (rklr), each swept over
#      FULL_LRS with the first seed, then run with every seed at its chosen lr;
#   6. with COEFS="c ...": distillation at its chosen lr and the first seed with distill.coef c
#      (the advantage's scale; Adam and the gradient clipping make it matter little).
#  - distillation: STEPS steps of recipes/distill-nano.yaml from the student base, held-out
#    evaluation every EVERY steps (200 questions, T = 1 and greedy);
#  - SFT: `grpo sft` from the student base on the exported samples, batch 128 (= one distillation
#    step's samples), constant lr, run EVERY steps at a time (--resume continues it with its
#    optimizer state and data cursor), each checkpoint evaluated by a `grpo train` run with
#    train.steps 0 (the held-out questions and evaluation seed of the distillation run of that
#    seed; step 0 of both is the base evaluated with that seed).
#  - run.seed = the seed: the student's sampling and the evaluation's in distillation, the data
#    order and the evaluation's in SFT (the exported teacher samples are the same for all seeds).
# Prints per method and seed the held-out accuracy (T = 1) per step, the mean over seeds, the
# teacher's accuracy with each seed, completion tokens trained per step, and stage wall times.
#   THREADS=2 STEPS=30 EVERY=5 SEEDS="1 2 3 4 5" LRS="1e-4 2e-4 3e-4 5e-4 1e-3" \
#     SFT_LRS="1e-4 3e-4 5e-4 1e-3 3e-3" COEFS="0.3 3" \
#     TEACHER=runs/r1zero-nano-3digit/checkpoints/rl-000100 bash bench/distill_bench.sh
#   (docs/PERFORMANCE.md; 5-8 minutes on this 2-core VM with the teacher built by the script)
# SETS="KEY=VALUE ..." is given to every run (teacher, base, distillation, SFT, evaluations):
# default "data.addition.digits=3 rollout.max_new_tokens=40", the distillation recipe's task;
# SETS="data.addition.digits=2 rollout.max_new_tokens=32" runs the R1-Zero recipe's own task.
# RESULTS=DIR keeps every curve and metrics file there (default: a temporary directory, removed).
# GRPO_BIN=PATH runs that binary instead of building `bazel build -c opt //cli:grpo` (the binary is
# copied first either way, so a build in this tree during the run does not change it).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}; STEPS=${STEPS:-30}; EVERY=${EVERY:-5}; SEEDS=${SEEDS:-"1 2 3 4 5"}
LRS=${LRS:-"1e-4 2e-4 3e-4 5e-4 1e-3"}; SFT_LRS=${SFT_LRS:-"1e-4 3e-4 5e-4 1e-3 3e-3"}; MIXED=${MIXED:-1}
COEFS=${COEFS:-}
FULL=${FULL-"rkl fkl rklr"}; FULL_LRS=${FULL_LRS:-"2e-4 3e-4 5e-4 1e-3"}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-1000}; TEACHER_STEPS=${TEACHER_STEPS:-100}
[ -n "${GRPO_BIN:-}" ] || bazel build -c opt //cli:grpo >/dev/null 2>&1
W=$(mktemp -d /tmp/grpo-distill-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
R=${RESULTS:-$W}; mkdir -p "$R"
export GRPO_NUM_THREADS=$THREADS
GRPO="$W/grpo"
cp "${GRPO_BIN:-bazel-bin/cli/grpo}" "$GRPO"
NANO=recipes/r1zero-nano.yaml; STUDENT=recipes/distill-nano.yaml
OUT=(--set run.output_dir="$W/runs" --quiet)
# The task of recipes/distill-nano.yaml (3-digit sums) for every run, the teacher's R1-Zero run included.
SETS=${SETS-"data.addition.digits=3 rollout.max_new_tokens=40"}
for kv in $SETS; do OUT+=(--set "$kv"); done
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
echo "start $(date -u '+%F %T') UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"

t0=$(now)
if [ -z "${TEACHER:-}" ]; then
  run $GRPO train $NANO "${OUT[@]}" --set run.name=teacher --set pretrain.steps=$PRETRAIN_STEPS \
    --set train.steps=$TEACHER_STEPS --set train.eval_every=0
  TEACHER=$(ls -d "$W"/runs/teacher/checkpoints/rl-* | tail -n 1)
fi
t1=$(now)
if [ -z "${BASE:-}" ]; then
  run $GRPO train $STUDENT "${OUT[@]}" --set run.name=base --set pretrain.steps=$PRETRAIN_STEPS \
    --set train.steps=0 --set train.eval_size=0 --set distill.teacher=
  BASE=$(ls -d "$W"/runs/base/checkpoints/pretrain-* | tail -n 1)
fi
t2=$(now)
run $GRPO train $NANO "${OUT[@]}" --set run.name=samples --set model.init=null --set model.path="$TEACHER" \
  --set pretrain.steps=0 --set train.steps=$STEPS --set optimizer.lr=0 --set train.eval_size=0
run $GRPO export --store "$W/runs/samples/store" --format prompt-completion --output "$W/teacher.jsonl"
for seed in $SEEDS; do  # the teacher on the held-out questions with each seed's evaluation
  run $GRPO train $NANO "${OUT[@]}" --set run.name=teacher-eval-$seed --set run.seed=$seed --set model.init=null \
    --set model.path="$TEACHER" --set pretrain.steps=0 --set train.steps=0
  accuracy "$W/runs/teacher-eval-$seed/metrics.jsonl" | cut -d' ' -f2 > "$R/teacher-$seed.acc"
done
t3=$(now)

# METHOD LR SEED [COEF]: METHOD distill (pure sampled reverse KL), mixed (+ rule rewards), rkl or
# fkl (reverse / forward KL over the whole vocabulary, distill.divergence reverse_kl / forward_kl),
# rklr (rkl + rule rewards)
distill() {
  local name=$1-$2-$3 rule=false coef=${4:-1} div=sampled
  [ -n "${4:-}" ] && name=$1-coef$4-$2-$3
  [ -f "$R/$name.acc" ] && return
  [ "$1" = mixed ] || [ "$1" = rklr ] && rule=true
  [ "$1" = rkl ] || [ "$1" = rklr ] && div=reverse_kl
  [ "$1" = fkl ] && div=forward_kl
  run $GRPO train $STUDENT "${OUT[@]}" --set run.name=$name --set run.seed=$3 --set model.init=null \
    --set model.path="$BASE" --set pretrain.steps=0 --set train.steps=$STEPS --set train.eval_every=$EVERY \
    --set optimizer.lr=$2 --set distill.teacher="$TEACHER" --set distill.rule_rewards=$rule --set distill.coef=$coef \
    --set distill.divergence=$div
  cp "$W/runs/$name/metrics.jsonl" "$R/$name.metrics.jsonl"
  accuracy "$W/runs/$name/metrics.jsonl" > "$R/$name.acc"
}
sft() {  # LR SEED
  local name=sft-$1-$2 k
  [ -f "$R/$name.acc" ] && return
  # its step 0: the base evaluated with this seed, as step 0 of every distillation run of the seed
  head -n 1 "$(ls "$R"/distill-*-$2.acc | head -n 1)" > "$R/$name.acc.part"
  local SFT=(--set run.name=$name --set run.seed=$2 --set model.init=null --set model.path="$BASE"
             --set sft.train="$W/teacher.jsonl" --set sft.batch_size=128 --set sft.lr=$1
             --set sft.schedule=constant --set sft.warmup_steps=0)
  for ((k = EVERY; k <= STEPS; k += EVERY)); do
    run $GRPO sft $STUDENT "${OUT[@]}" "${SFT[@]}" --set sft.steps=$k $([ $k -gt $EVERY ] && echo --resume)
    run $GRPO train $STUDENT "${OUT[@]}" --set run.name=eval-$name-$k --set run.seed=$2 --set model.init=null \
      --set model.path="$(ls -d "$W"/runs/$name/checkpoints/sft-* | tail -n 1)" --set pretrain.steps=0 \
      --set train.steps=0 --set distill.teacher=
    echo "$k $(accuracy "$W/runs/eval-$name-$k/metrics.jsonl" | cut -d' ' -f2)" >> "$R/$name.acc.part"
  done
  cp "$W/runs/$name/metrics.jsonl" "$R/$name.metrics.jsonl"
  mv "$R/$name.acc.part" "$R/$name.acc"
}
first_word() { echo "$1"; }
best() {  # PREFIX LR...: the lr whose curve (first seed) has the highest mean accuracy after step 0
  local prefix=$1; shift
  /usr/bin/python3 -c "
import sys
r, prefix, seed, lrs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
def auc(lr):
    acc = [float(l.split()[1]) for l in open('%s/%s-%s-%s.acc' % (r, prefix, lr, seed)) if int(l.split()[0]) > 0]
    return sum(acc) / len(acc)
print(max(lrs, key=auc))" "$R" "$prefix" "$(first_word $SEEDS)" "$@"
}

seed1=$(first_word $SEEDS)
for lr in $LRS; do distill distill $lr $seed1; done
t4=$(now)
for lr in $SFT_LRS; do sft $lr $seed1; done
t5=$(now)
for m in $FULL; do for lr in $FULL_LRS; do distill $m $lr $seed1; done; done
t5b=$(now)
DLR=$(best distill $LRS); SLR=$(best sft $SFT_LRS)
FULL_CHOSEN=""
for m in $FULL; do FULL_CHOSEN="$FULL_CHOSEN $m:$(best $m $FULL_LRS)"; done
echo "chosen lr: distillation $DLR, SFT $SLR,${FULL_CHOSEN:- no full-distribution method} (sweep with seed $seed1)"
for seed in $SEEDS; do
  distill distill $DLR $seed
  sft $SLR $seed
  [ "$MIXED" = 1 ] && distill mixed $DLR $seed
  for mc in $FULL_CHOSEN; do distill ${mc%%:*} ${mc#*:} $seed; done
done
for coef in $COEFS; do distill distill $DLR $seed1 $coef; done
t6=$(now)

/usr/bin/python3 - "$R" "$W" "$SEEDS" "$LRS" "$SFT_LRS" "$DLR" "$SLR" "$MIXED" "$FULL_LRS" "$FULL_CHOSEN" <<'PY'
import json, os, statistics, sys
r, w, seeds, lrs, sft_lrs, dlr, slr, mixed, full_lrs, full_chosen = sys.argv[1:]
seeds, lrs, sft_lrs, full_lrs = seeds.split(), lrs.split(), sft_lrs.split(), full_lrs.split()
full = [tuple(mc.split(':')) for mc in full_chosen.split()]
def curve(name):
    return {int(s): float(a) for s, a in (l.split() for l in open('%s/%s.acc' % (r, name)))}
def mean_tokens(name, key):
    rows = [json.loads(l) for l in open('%s/%s.metrics.jsonl' % (r, name))]
    rows = [x for x in rows if x['step'] > 0 and key in x]
    return sum(x[key] for x in rows) / len(rows)
teacher = [float(open('%s/teacher-%s.acc' % (r, s)).read()) for s in seeds]
rows = sum(1 for _ in open(w + '/teacher.jsonl'))
print('teacher held-out accuracy (T = 1) per seed: %s; exported teacher samples: %d' %
      (' '.join('%.3f' % t for t in teacher), rows))
print('completion tokens per step (mean): distillation %.0f (128 x response_len_mean), SFT %.0f (with EOS)' %
      (128 * mean_tokens('distill-%s-%s' % (dlr, seeds[0]), 'response_len_mean'),
       mean_tokens('sft-%s-%s' % (slr, seeds[0]), 'tokens')))
def table(title, names):
    curves = [(n, curve(n)) for n in names if os.path.exists('%s/%s.acc' % (r, n))]
    steps = sorted(set().union(*(c.keys() for _, c in curves)))
    print(title)
    print('%-22s' % 'step' + ''.join(' %6d' % s for s in steps) + '   mean>0')
    for n, c in curves:
        after = [c[s] for s in steps if s > 0 and s in c]
        print('%-22s' % n + ''.join(' %6s' % ('%.3f' % c[s] if s in c else '-') for s in steps) +
              '   %.3f' % (sum(after) / len(after)))
    return curves, steps
table('sweep (seed %s):' % seeds[0], ['distill-%s-%s' % (l, seeds[0]) for l in lrs] +
      ['sft-%s-%s' % (l, seeds[0]) for l in sft_lrs] +
      ['%s-%s-%s' % (m, l, seeds[0]) for m, _ in full for l in full_lrs])
methods = [('distill', dlr), ('sft', slr)] + ([('mixed', dlr)] if mixed == '1' else []) + full
coef_runs = sorted(n[:-4] for n in os.listdir(r) if n.startswith('distill-coef') and n.endswith('.acc'))
if coef_runs:
    table('distill.coef (lr %s, seed %s):' % (dlr, seeds[0]), ['distill-%s-%s' % (dlr, seeds[0])] + coef_runs)
def grad_norms(name):
    rows = [json.loads(l) for l in open('%s/%s.metrics.jsonl' % (r, name))]
    g = [x['grad_norm'] for x in rows if x['step'] > 0 and 'grad_norm' in x]
    return (statistics.mean(g), max(g)) if g else (float('nan'), float('nan'))
for m, lr in methods:
    g = [grad_norms('%s-%s-%s' % (m, lr, s)) for s in seeds]
    print('%s lr %s: gradient norm before clipping, mean %.2f, max %.2f over steps and seeds' %
          (m, lr, statistics.mean(x[0] for x in g), max(x[1] for x in g)))
for m, lr in methods:
    table('%s lr %s per seed:' % (m, lr), ['%s-%s-%s' % (m, lr, s) for s in seeds])
print('mean over seeds %s (sample sd across seeds in brackets):' % ' '.join(seeds))
for m, lr in methods:
    cs = [curve('%s-%s-%s' % (m, lr, s)) for s in seeds]
    steps = sorted(cs[0])
    cells = []
    for s in steps:
        v = [c[s] for c in cs]
        cells.append('%.3f(%.3f)' % (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0))
    aucs = [statistics.mean(c[s] for s in steps if s > 0) for c in cs]
    print('%-18s' % ('%s %s' % (m, lr)) + ' '.join(cells) + '   mean>0 %.3f(%.3f)' %
          (statistics.mean(aucs), statistics.stdev(aucs) if len(aucs) > 1 else 0))
PY
printf 'wall s: teacher %.0f, student base %.0f, teacher samples + export + teacher evals %.0f, distillation sweep %.0f, SFT sweep %.0f, full-distribution sweeps %.0f, seeds %.0f\n' \
  "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$(echo "$t3 - $t2" | bc)" "$(echo "$t4 - $t3" | bc)" \
  "$(echo "$t5 - $t4" | bc)" "$(echo "$t5b - $t5" | bc)" "$(echo "$t6 - $t5b" | bc)"
echo "end $(date -u '+%F %T') UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"
