#!/usr/bin/env bash
# On-policy distillation end to end (issue 20 item 2, the part built so far): a smaller nano
# student (2 layers, from scratch) is trained on its own samples with per-token advantages
# -(log pi_student - log pi_teacher) from a pretrained nano teacher (3 layers), without and with
# the rule rewards; every step logs distill/reverse_kl and a non-zero gradient. A teacher with
# another vocabulary, or none at the path, is refused naming distill.teacher.
source "$(dirname "$0")/cli_test_lib.sh" "$@"

SMALL=(--set pretrain.batch_size=16 --set rollout.prompts_per_step=4 --set rollout.group_size=4
       --set train.eval_size=2 --set rollout.max_new_tokens=24)
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=teacher --set pretrain.steps=60 --set train.steps=0 \
  --quiet > /dev/null 2> teacher.err
TEACHER="$T/runs/teacher/checkpoints/pretrain-000060"
check "teacher pretrained" '[ -f "$TEACHER/model.safetensors" ]' || tail -n 5 teacher.err

for rule in false true; do
  "$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=student-$rule --set pretrain.steps=0 --set train.steps=3 \
    --set model.init.config.num_hidden_layers=2 --set distill.teacher="$TEACHER" \
    --set distill.rule_rewards=$rule --set algorithm.kl_beta=0 --quiet > /dev/null 2> student-$rule.err
  check "student (rule_rewards $rule) exits 0" '[ $? -eq 0 ]' || tail -n 5 student-$rule.err
  check "student (rule_rewards $rule): distill/reverse_kl and a gradient every step" "/usr/bin/python3 - runs/student-$rule/metrics.jsonl <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
steps = [r for r in rows if r['step'] > 0]
assert [r['step'] for r in steps] == [1, 2, 3], [r['step'] for r in rows]
assert all(math.isfinite(r['distill/reverse_kl']) and r['grad_norm'] > 0 for r in steps), steps
PY"
done

"$GRPO" init-model --preset llama-nano --out other 2> /dev/null
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=bad --set pretrain.steps=0 --set train.steps=1 \
  --set distill.teacher="$T/other" > /dev/null 2> bad.err
check "teacher with another vocabulary refused" 'grep -q "distill.teacher" bad.err && grep -q "vocab_size" bad.err'
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=missing --set pretrain.steps=0 --set train.steps=1 \
  --set distill.teacher="$T/nowhere" > /dev/null 2> missing.err
check "missing teacher refused naming the key" 'grep -q "distill.teacher" missing.err'

if [ $fail -eq 0 ]; then echo "PASS"; fi
exit $fail
