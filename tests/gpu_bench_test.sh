#!/usr/bin/env bash
# bench/gpu_bench's host side on a machine without a GPU: `config` writes the preset's
# config.json, `flops` counts the learner step's FLOPs exactly as the PyTorch peer
# (bench/torch_gpu_learner_bench.py, from that config.json) does, decode and learn run their
# logic on the cpu backend with nano models, bad arguments print the usage, and the GPU modes
# stop at once saying why when no CUDA device is usable.
set -u
BENCH="$1" PEER="$2" GRPO="$3"
T=${TEST_TMPDIR:-$(mktemp -d)}
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }

for preset in qwen2.5-0.5b qwen2.5-1.5b; do
  "$BENCH" config "$preset" "$T/$preset"
  check "config $preset writes a qwen2 config.json" \
    'python3 -c "import json,sys; c=json.load(open(sys.argv[1])); sys.exit(c[\"model_type\"] != \"qwen2\")" "$T/$preset/config.json"'
  ours=$("$BENCH" flops "$preset" 4 1024)
  check "flops $preset: gpu_bench and the PyTorch peer agree ($ours)" 'python3 - "$PEER" "$T/$preset/config.json" "$ours" <<'"'"'PY'"'"'
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("peer", sys.argv[1])
peer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peer)
theirs = peer.train_flops(json.load(open(sys.argv[2])), 4, 1024)
ours = json.loads(sys.argv[3])["flops"]
assert abs(ours - theirs) <= 1e-12 * theirs, (ours, theirs)
PY'
done
# Qwen2.5-0.5B: 494M parameters, 136M of them the embedding (not a product), tied as the head:
# about 6 x 494M x 4096 tokens plus attention.
check "flops qwen2.5-0.5b is about 6 x parameters x tokens" 'python3 -c "
import json, sys
f = json.loads(sys.argv[1])[\"flops\"]
sys.exit(0 if 6 * 494e6 * 4096 * 1.0 < f < 6 * 494e6 * 4096 * 1.3 else 1)" "$("$BENCH" flops qwen2.5-0.5b 4 1024)"'

# decode and learn on the cpu backend (nano models): the program's own logic, every row printed.
"$BENCH" decode qwen3_moe-nano --backend cpu --batches 1,4 --budget-s 0.05 > "$T/decode.out" 2> "$T/decode.err"
check "decode qwen3_moe-nano --backend cpu exits 0" '[ $? -eq 0 ]' || cat "$T/decode.err"
check "decode prints a row per format and batch size" \
  '[ "$(grep -c $'"'"'^ROW\tdecode qwen3_moe-nano \(bf16\|fp8\) b[14]\t-\t'"'"' "$T/decode.out")" -eq 4 ]' || cat "$T/decode.out"
# Bytes one bf16 token reads, counted here from the config: per layer q, k, v, o (bf16), q/k
# norms, two layer norms and the router (f32), top_k of num_experts experts (bf16); one
# embedding row, the untied output head (bf16), the final norm.
check "decode: tokens/s > 0, the bf16 roofline from the active weight bytes" 'python3 - "$T/decode.out" <<'"'"'PY'"'"'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
assert len(rows) == 4 and all(r["tok_s"] > 0 for r in rows), rows
h, nh, nkv, dh, E, k, inter, L, V = 64, 4, 2, 16, 8, 2, 32, 2, 256
layer = 2 * (2 * h * nh * dh + 2 * h * nkv * dh) + 4 * 2 * dh + 4 * 2 * h + 4 * E * h + 2 * 3 * h * inter * k
want = L * layer + 2 * h + 2 * V * h + 4 * h
b1 = [r for r in rows if r["format"] == "bf16" and r["batch"] == 1][0]
assert b1["active_weight_bytes"] == want, (b1, want)
assert abs(b1["roofline_fraction"] - b1["tok_s"] / (b1["copy_gb_s"] * 1e9 / want)) < 1e-9, b1
fp8 = [r for r in rows if r["format"] == "fp8" and r["batch"] == 1][0]
assert want / 2 < fp8["active_weight_bytes"] < want, fp8
PY'
"$BENCH" learn qwen2-nano --backend cpu --seqs 2 --seq-len 16 > "$T/learn.out" 2> "$T/learn.err"
check "learn qwen2-nano --backend cpu exits 0 with its row" \
  '[ $? -eq 0 ] && grep -q $'"'"'^ROW\tlearn qwen2-nano grpo bf16\t-\t'"'"' "$T/learn.out"' || cat "$T/learn.err"
check "learn: a step time and its FLOP rate" 'python3 - "$T/learn.out" <<'"'"'PY'"'"'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")][0]
assert r["step_s"] > 0 and abs(r["tflops"] * 1e12 * r["step_s"] - r["flops"]) < 1e-6 * r["flops"], r
PY'

err=$("$BENCH" decode 2>&1); rc=$?
check "decode without a preset exits 2 with the usage (got $rc)" '[ $rc -eq 2 ] && grep -q "usage: gpu_bench" <<<"$err"'
err=$("$BENCH" flops no-such-preset 4 1024 2>&1); rc=$?
check "an unknown preset exits 1 naming it (got $rc)" '[ $rc -eq 1 ] && grep -q "no-such-preset" <<<"$err"'
if "$GRPO" info | grep -qE "^  cuda +unavailable"; then
  err=$("$BENCH" ceilings 2>&1); rc=$?
  check "ceilings without a GPU exits 2 saying why (got $rc)" '[ $rc -eq 2 ] && grep -q "no CUDA device found" <<<"$err"' || echo "$err"
fi
exit $fail
