#!/usr/bin/env bash
# What a resume trusts (issue 19, class 1): checkpoint checksums, the store rolled back to the
# checkpoint, and runs killed during pretraining.
#  - a flipped byte in a checkpoint's weights or optimizer state is refused with an error naming
#    the file, before the store is touched; `grpo logprobs` refuses the damaged weights too;
#  - a resume from an unverifiable damaged checkpoint that poisons the store (samples of the
#    broken model) no longer blocks the next resume: with the good checkpoint restored, the run
#    resumes (the poisoned steps are removed, with a line saying which) and ends bit-identical to
#    an uninterrupted run;
#  - a run killed during pretraining says plainly that --overwrite is the way forward; one stopped
#    and then killed during pretraining resumes without duplicated pretraining rows.
source "$(dirname "$0")/cli_test_lib.sh" "$@"

SMALL=(--set pretrain.steps=12 --set pretrain.batch_size=8 --set train.steps=6
       --set rollout.prompts_per_step=4 --set rollout.group_size=4 --set train.eval_size=6
       --set train.eval_every=2 --set train.checkpoint_every=2 --set rollout.max_new_tokens=16
       --set optimizer.mini_batches=2 --set optimizer.epochs=2)
num_steps() { "$GRPO" inspect --store "$1" --json 2>/dev/null | /usr/bin/python3 -c \
  'import json,sys; print(json.load(sys.stdin)["runs"][0]["num_steps"])' 2>/dev/null; }

# Damages one float of the first tensor of a safetensors file (past its header, so it parses).
damage() { /usr/bin/python3 - "$1" <<'PY'
import json, struct, sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
meta = json.loads(b[8:8 + n])
name = sorted(k for k in meta if k != '__metadata__')[0]
start = 8 + n + meta[name]['data_offsets'][0]
for i in range(16):
    struct.pack_into('<f', b, start + 4 * i, 3.0)
open(p, 'wb').write(bytes(b))
PY
}

# ---- an uninterrupted run (checkpoints after steps 4 and 6 are kept); what it ended with is
# saved, then the run is set back to its step-4 checkpoint (the store holds steps 0..5)
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=r --quiet > /dev/null 2> r.err
check "uninterrupted run exits 0" '[ $? -eq 0 ]' || cat r.err
C=runs/r/checkpoints
check "checkpoints carry a checksum manifest" '[ -s $C/rl-000006/checksums.json ] && [ -s $C/pretrain-000012/checksums.json ]'
check "the manifest lists the weights and the optimizer state" \
  'grep -q "\"model.safetensors\"" $C/rl-000006/checksums.json && grep -q "\"optimizer.safetensors\"" $C/rl-000006/checksums.json'
cp $C/rl-000006/model.safetensors ref-model.safetensors
cp $C/rl-000006/optimizer.safetensors ref-optimizer.safetensors
"$GRPO" export --store runs/r/store --format prompt-completion --output ref.jsonl 2> /dev/null
"$GRPO" export --store runs/r/store --format prompt-completion --first-step 4 --last-step 4 --output ref4.jsonl 2> /dev/null
check "the run's samples exported" '[ -s ref.jsonl ] && [ -s ref4.jsonl ]'
cp -r $C/rl-000004 good-rl-000004
echo rl-000004 > $C/latest
check "the store holds steps past the checkpoint" '[ "$(num_steps runs/r/store)" = 6 ]'

# ---- a flipped byte in the weights: refused, naming the file; the store is untouched
printf '\x01' | dd of=$C/rl-000004/model.safetensors bs=1 seek=$(( $(stat -c %s $C/rl-000004/model.safetensors) - 5 )) conv=notrunc 2>/dev/null
check "the flip changed the weights" '! cmp -s $C/rl-000004/model.safetensors good-rl-000004/model.safetensors'
touch marker
sleep 1
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=r --resume --quiet > /dev/null 2> flip.err
rc=$?
check "resume from a damaged checkpoint fails" '[ $rc -ne 0 ]'
check "the error names the damaged file" "grep -q 'checkpoints/rl-000004/model.safetensors is damaged' flip.err" || cat flip.err
check "the store is untouched" '[ -z "$(find runs/r/store -newer marker)" ]' || find runs/r/store -newer marker
check "metrics are untouched" '[ -z "$(find runs/r/metrics.jsonl -newer marker)" ]'
"$GRPO" logprobs --model $C/rl-000004 --input /dev/null --output lp.jsonl > /dev/null 2> lp.err
check "grpo logprobs refuses the damaged weights, naming the file" \
  "grep -q 'rl-000004/model.safetensors is damaged' lp.err" || cat lp.err

# ---- the same in the optimizer state (another file, another field)
cp good-rl-000004/model.safetensors $C/rl-000004/model.safetensors
printf '\x20' | dd of=$C/rl-000004/optimizer.safetensors bs=1 seek=4000 conv=notrunc 2>/dev/null
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=r --resume --quiet > /dev/null 2> flip2.err
check "a flipped optimizer byte is named" "grep -q 'rl-000004/optimizer.safetensors is damaged' flip2.err" || cat flip2.err
check "the store is still untouched" '[ -z "$(find runs/r/store -newer marker)" ]'

# ---- an unverifiable damaged checkpoint (no manifest) poisons the store; restoring the good
# checkpoint resumes anyway (before: "step 4 is already in the store" on every resume)
cp good-rl-000004/optimizer.safetensors $C/rl-000004/optimizer.safetensors
damage $C/rl-000004/model.safetensors
rm $C/rl-000004/checksums.json
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=r --resume --quiet > /dev/null 2> poison.err
check "a checkpoint without a manifest loads with a warning" "grep -q 'no checksums.json' poison.err" || cat poison.err
check "the resume names the steps it removes from the store" "grep -q 'removed 2 step(s) from the store (store steps 4 to 5' poison.err" || cat poison.err
"$GRPO" export --store runs/r/store --format prompt-completion --first-step 4 --last-step 4 --output bad4.jsonl 2> /dev/null
check "the damaged model's samples are in the store" '[ -s bad4.jsonl ] && ! cmp -s ref4.jsonl bad4.jsonl'
rm -rf $C/rl-000004 && cp -r good-rl-000004 $C/rl-000004
echo rl-000004 > $C/latest
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=r --resume --quiet > /dev/null 2> restored.err
check "the restored good checkpoint resumes" '[ $? -eq 0 ]' || cat restored.err
check "the resume says which poisoned steps it removed" "grep -q 'removed [12] step(s) from the store (store steps 4 to' restored.err"
check "the resumed run is bit-identical to the uninterrupted one" \
  'cmp -s ref-model.safetensors $C/rl-000006/model.safetensors && cmp -s ref-optimizer.safetensors $C/rl-000006/optimizer.safetensors'
check "the store holds 6 steps" '[ "$(num_steps runs/r/store)" = 6 ]'
"$GRPO" export --store runs/r/store --format prompt-completion --output after.jsonl 2> /dev/null
check "the stored samples equal the uninterrupted run's" 'cmp -s ref.jsonl after.jsonl'

# ---- killed during pretraining (before any checkpoint): a plain way forward
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=k --set pretrain.steps=100000 --quiet > /dev/null 2> k.err &
pid=$!
for _ in $(seq 1 600); do [ -s runs/k/pretrain_metrics.jsonl ] && break; sleep 0.05; done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
check "the killed run pretrained" '[ -s runs/k/pretrain_metrics.jsonl ] && [ ! -e runs/k/checkpoints/latest ]'
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=k --set pretrain.steps=100000 --quiet > /dev/null 2> k1.err
check "starting it again points to --overwrite" "grep -q 'has no checkpoint to resume from; pass --overwrite' k1.err" || cat k1.err
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=k --set pretrain.steps=100000 --resume --quiet > /dev/null 2> k2.err
check "--resume says plainly that --overwrite is the way forward" \
  "grep -q 'has no checkpoint to continue from' k2.err && grep -q 'start the run over with --overwrite' k2.err" || cat k2.err
"$GRPO" train "$RECIPE" "${SMALL[@]}" --set run.name=k --overwrite --quiet > /dev/null 2> k3.err
check "--overwrite starts it over" '[ $? -eq 0 ]' || cat k3.err

# ---- stopped during pretraining (a checkpoint), resumed, killed during pretraining, resumed:
# pretraining rows are not duplicated and the result equals an uninterrupted pretraining
P=(--set pretrain.steps=400 --set train.steps=0)
"$GRPO" train "$RECIPE" "${SMALL[@]}" "${P[@]}" --set run.name=p0 --quiet > /dev/null 2> p0.err
check "uninterrupted pretraining exits 0" '[ $? -eq 0 ]' || cat p0.err
"$GRPO" train "$RECIPE" "${SMALL[@]}" "${P[@]}" --set run.name=p --quiet > /dev/null 2> p1.err &
pid=$!
for _ in $(seq 1 600); do [ -s runs/p/pretrain_metrics.jsonl ] && break; sleep 0.05; done
kill -TERM $pid
wait $pid
check "SIGTERM during pretraining leaves a pretraining checkpoint" \
  'grep -q "^pretrain-" runs/p/checkpoints/latest' || cat p1.err
stopped=$(cat runs/p/checkpoints/latest)
"$GRPO" train "$RECIPE" "${SMALL[@]}" "${P[@]}" --set run.name=p --resume --quiet > /dev/null 2> p2.err &
pid=$!
before=$(wc -l < runs/p/pretrain_metrics.jsonl)
for _ in $(seq 1 600); do [ "$(wc -l < runs/p/pretrain_metrics.jsonl)" -gt $((before + 2)) ] && break; sleep 0.05; done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
check "the kill came during the resumed pretraining" \
  '[ "$(cat runs/p/checkpoints/latest)" = "$stopped" ] && [ "$(wc -l < runs/p/pretrain_metrics.jsonl)" -gt "$before" ]'
"$GRPO" train "$RECIPE" "${SMALL[@]}" "${P[@]}" --set run.name=p --resume --quiet > /dev/null 2> p3.err
check "resume after a kill during pretraining exits 0" '[ $? -eq 0 ]' || cat p3.err
check "pretraining rows are each logged once" "/usr/bin/python3 -c \"
import json
rows = [json.loads(l) for l in open('runs/p/pretrain_metrics.jsonl')]
assert [r['step'] for r in rows] == list(range(400)), [r['step'] for r in rows][:20]
\""
check "resumed pretraining is bit-identical" \
  'cmp -s runs/p0/checkpoints/pretrain-000400/model.safetensors runs/p/checkpoints/pretrain-000400/model.safetensors'

if [ $fail -eq 0 ]; then echo "PASS"; fi
exit $fail
