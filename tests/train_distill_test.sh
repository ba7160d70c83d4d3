#!/usr/bin/env bash
# On-policy distillation end to end (issue 20 item 2): a smaller nano student (2 layers, from
# scratch) is trained on its own samples with per-token advantages -(log pi_student - log
# pi_teacher) from a pretrained nano teacher (3 layers), without and with the rule rewards; every
# step logs distill/reverse_kl and a non-zero gradient. The same teacher served by `grpo rollout
# serve --serve-logprobs` (distill.teacher_server) gives the same run as the embedded one. A
# teacher with another vocabulary, none at the path, or a server that does not serve Logprobs is
# refused naming the key; a dead teacher address fails within the connect deadline; with two
# teacher servers, one killed mid-run, the run finishes on the other. With distill.divergence
# reverse_kl / forward_kl the student learns from the embedded teacher's whole distribution and
# logs distill/divergence; a teacher server is refused for it.
source "$(dirname "$0")/cli_test_lib.sh" "$@"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; }
trap cleanup EXIT

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

# ---- full-distribution distillation: KL over the whole vocabulary from the teacher's logits
for div in reverse_kl forward_kl; do
  "$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=student-$div --set pretrain.steps=0 --set train.steps=3 \
    --set model.init.config.num_hidden_layers=2 --set distill.teacher="$TEACHER" --set distill.divergence=$div \
    --set distill.rule_rewards=false --set algorithm.kl_beta=0 --quiet > /dev/null 2> student-$div.err
  check "student (divergence $div) exits 0" '[ $? -eq 0 ]' || tail -n 5 student-$div.err
  check "student (divergence $div): distill/divergence > 0 and a gradient every step" "/usr/bin/python3 - runs/student-$div/metrics.jsonl <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
steps = [r for r in rows if r['step'] > 0]
assert [r['step'] for r in steps] == [1, 2, 3], [r['step'] for r in rows]
assert all(math.isfinite(r['distill/divergence']) and r['distill/divergence'] > 0 and r['grad_norm'] > 0
           for r in steps), steps
assert all('distill/reverse_kl' not in r for r in steps), steps
PY"
done

# the same with 2 data-parallel ranks: the teacher logits travel with the step to rank 1
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=student-reverse_kl-2 --set pretrain.steps=0 --set train.steps=3 \
  --set model.init.config.num_hidden_layers=2 --set distill.teacher="$TEACHER" --set distill.divergence=reverse_kl \
  --set distill.rule_rewards=false --set algorithm.kl_beta=0 --nproc 2 --quiet > /dev/null 2> student-reverse_kl-2.err
check "student (divergence reverse_kl) with --nproc 2 exits 0" '[ $? -eq 0 ]' || tail -n 5 student-reverse_kl-2.err
check "--nproc 2 gives the 1-rank run's divergence and gradient norm" "/usr/bin/python3 - runs/student-reverse_kl/metrics.jsonl runs/student-reverse_kl-2/metrics.jsonl <<'PY'
import json, math, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
a, b = [r for r in a if r['step'] > 0], [r for r in b if r['step'] > 0]
assert [r['step'] for r in a] == [r['step'] for r in b] == [1, 2, 3], (a, b)
for x, y in zip(a, b):
    for k in ('distill/divergence', 'grad_norm'):
        assert math.isclose(x[k], y[k], rel_tol=1e-4), (k, x[k], y[k])
PY"

"$GRPO" init-model --preset llama-nano --out other 2> /dev/null
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=bad --set pretrain.steps=0 --set train.steps=1 \
  --set distill.teacher="$T/other" > /dev/null 2> bad.err
check "teacher with another vocabulary refused" 'grep -q "distill.teacher" bad.err && grep -q "vocab_size" bad.err'
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=missing --set pretrain.steps=0 --set train.steps=1 \
  --set distill.teacher="$T/nowhere" > /dev/null 2> missing.err
check "missing teacher refused naming the key" 'grep -q "distill.teacher" missing.err'

# ---- the teacher on a rollout server (Logprobs RPC)
"$GRPO" rollout serve --model "$TEACHER" --listen 127.0.0.1:0 --kv-memory-mb 16 --serve-logprobs 2> teacher-serve.err &
pids+=($!)
"$GRPO" rollout serve --model "$TEACHER" --listen 127.0.0.1:0 --kv-memory-mb 16 2> plain-serve.err &
pids+=($!); plain_pid=$!
"$GRPO" rollout serve --model "$T/other" --listen 127.0.0.1:0 --kv-memory-mb 16 --serve-logprobs 2> other-serve.err &
pids+=($!)
TP=$(port_of teacher-serve.err); PP=$(port_of plain-serve.err); OP=$(port_of other-serve.err)
check "teacher servers listening" '[ -n "$TP" ] && [ -n "$PP" ] && [ -n "$OP" ]' || cat teacher-serve.err
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=student-remote --set pretrain.steps=0 --set train.steps=3 \
  --set model.init.config.num_hidden_layers=2 --set distill.teacher_server=127.0.0.1:$TP \
  --set distill.rule_rewards=false --set algorithm.kl_beta=0 --quiet > /dev/null 2> student-remote.err
check "student with distill.teacher_server exits 0" '[ $? -eq 0 ]' || tail -n 5 student-remote.err
check "the served teacher gives the embedded teacher's run" "/usr/bin/python3 - runs/student-false/metrics.jsonl runs/student-remote/metrics.jsonl <<'PY'
import json, math, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
assert [r['step'] for r in a] == [r['step'] for r in b], (a, b)
for x, y in zip(a[1:], b[1:]):
    for k in ('distill/reverse_kl', 'grad_norm', 'reward_mean'):
        assert math.isclose(x[k], y[k], rel_tol=1e-5, abs_tol=1e-7), (k, x[k], y[k])
PY"
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=plain --set pretrain.steps=0 --set train.steps=1 \
  --set distill.teacher_server=127.0.0.1:$PP > /dev/null 2> plain.err
check "a server without --serve-logprobs refused" 'grep -q "distill.teacher_server" plain.err && grep -q -- "--serve-logprobs" plain.err'
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=other-remote --set pretrain.steps=0 --set train.steps=1 \
  --set distill.teacher_server=127.0.0.1:$OP > /dev/null 2> other-remote.err
check "a served teacher with another vocabulary refused" 'grep -q "distill.teacher_server" other-remote.err && grep -q "vocab_size" other-remote.err'
"$GRPO" train "$RECIPE" --set distill.teacher_server=localhost --check > /dev/null 2> bad-server.err
check "a teacher_server without a port refused at --check" 'grep -q "distill.teacher_server" bad-server.err'
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=no-teacher --set pretrain.steps=0 --set train.steps=1 \
  --set distill.divergence=reverse_kl > /dev/null 2> no-teacher.err
check "distill.divergence without a teacher trains without distillation" \
  '[ $? -eq 0 ] && ! grep -q "distill/" runs/no-teacher/metrics.jsonl' || tail -n 3 no-teacher.err
"$GRPO" train "$RECIPE" --set distill.teacher_server=127.0.0.1:$TP --set distill.divergence=reverse_kl --check \
  > /dev/null 2> full-server.err
check "full-distribution distillation from a teacher server refused at --check" \
  'grep -q "distill.divergence" full-server.err && grep -q "embedded teacher" full-server.err'

# ---- a dead teacher address fails within the 10 s connect deadline (not the 5-minute RPC one)
kill -9 "$plain_pid"; wait "$plain_pid" 2>/dev/null
start=$(date +%s)
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=dead --set pretrain.steps=0 --set train.steps=1 \
  --set distill.teacher_server=127.0.0.1:$PP > /dev/null 2> dead.err
took=$(( $(date +%s) - start ))
check "a dead teacher_server fails fast naming it and the connect deadline" \
  '[ $took -lt 60 ] && grep -q "distill.teacher_server 127.0.0.1:$PP" dead.err && grep -q "10s connect deadline" dead.err' \
  || { echo "took $took s"; cat dead.err; }

# ---- two teacher servers used round robin; one killed during training, the run goes on
"$GRPO" rollout serve --model "$TEACHER" --listen 127.0.0.1:0 --kv-memory-mb 16 --serve-logprobs 2> teacher2-serve.err &
pids+=($!); teacher2_pid=$!
TP2=$(port_of teacher2-serve.err)
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=failover --set pretrain.steps=0 --set train.steps=8 \
  --set model.init.config.num_hidden_layers=2 --set "distill.teacher_server=[127.0.0.1:$TP, 127.0.0.1:$TP2]" \
  --set distill.rule_rewards=false --set algorithm.kl_beta=0 > /dev/null 2> failover.err &
train_pid=$!
for _ in $(seq 1 1200); do grep -q "^step 1/" failover.err 2>/dev/null && break; sleep 0.05; done
kill -9 "$teacher2_pid"
wait $train_pid
rc=$?
check "a run whose second teacher server is killed finishes" '[ $rc -eq 0 ]' || tail -n 5 failover.err
check "the killed teacher server was marked down" 'grep "teacher server" failover.err | grep -q "127.0.0.1:$TP2 marked down"'
check "every step was scored by a teacher" "/usr/bin/python3 - runs/failover/metrics.jsonl <<'PY'
import json, math, sys
steps = [json.loads(l) for l in open(sys.argv[1])][1:]
assert [r['step'] for r in steps] == list(range(1, 9)), [r['step'] for r in steps]
assert all(math.isfinite(r['distill/reverse_kl']) and r['grad_norm'] > 0 for r in steps), steps
PY"

if [ $fail -eq 0 ]; then echo "PASS"; fi
exit $fail
