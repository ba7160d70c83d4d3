#!/usr/bin/env bash
# Decoding speed side by side with llama.cpp (node-llama-cpp, pinned: tools/llama_cpp_npm.sh) on
# the same random model, written to GGUF by bench/gguf_writer.py: MODEL=qwen2.5-0.5b (default,
# the preset of the dense architecture) or MODEL=moe-mid (a Qwen3-MoE shape,
# bench/moe-mid.config.json: hidden 1024, 8 layers, 32 experts of 512, top-4; llama.cpp's
# `qwen3moe`). Ours at f32 / bf16 / fp8 (--serve-format) against llama.cpp at F32 / BF16 / Q8_0,
# at 1 and 2 threads: prefill of one PROMPT_LEN-token prompt, batch-1 decode and 16 sequences
# decoding together (STEPS greedy tokens each). Runs are interleaved (ours, theirs, per format
# and thread count) for ROUNDS rounds; the table shows medians and, in brackets, the spread
# (min-max) over the rounds. Each of our runs also measures a STREAM-like triad and prints the
# batch-1 bandwidth bound (weight bytes read per token / triad bandwidth) and our share of it,
# and the prefill compute bound (the f32 FMA peak of the same threads / FLOPs per prompt token:
# the most prefill with f32 products can reach; llama.cpp's BF16 and Q8_0 multiply narrower
# numbers and can pass it).
# Before timing, greedy continuations of a nano model of the same family (qwen2-nano,
# qwen3_moe-nano) must agree token for token, ours f32 / bf16 against llama.cpp F32 / BF16;
# CHECK_ONLY=1 stops after that check. BASELINE=PATH (a rollout_bench binary of another build,
# e.g. main's) runs that binary too, interleaved with ours, for a before/after column.
# Not a test: run it by hand.
#   MODEL=moe-mid ROUNDS=3 PROMPT_LEN=512 STEPS=128 THREADS="1 2" FORMATS="f32 bf16 fp8" bash bench/llama_cpp_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; PROMPT_LEN=${PROMPT_LEN:-512}; STEPS=${STEPS:-128}
THREADS=${THREADS:-"1 2"}; FORMATS=${FORMATS:-"f32 bf16 fp8"}
W=${WORKDIR:-/tmp/grpo-llama-cpp-bench}
bash tools/llama_cpp_npm.sh >/dev/null
bazel build -c opt //bench:rollout_bench //cli:grpo >/dev/null 2>&1
mkdir -p "$W"
MODEL=${MODEL:-qwen2.5-0.5b}
case "$MODEL" in
  qwen2.5-0.5b) INIT=(--preset qwen2.5-0.5b); NANO=qwen2-nano ;;
  moe-mid) INIT=(--config bench/moe-mid.config.json); NANO=qwen3_moe-nano ;;
  *) echo "MODEL=$MODEL: expected qwen2.5-0.5b or moe-mid" >&2; exit 2 ;;
esac
gguf_type() { case "$1" in f32) echo F32;; bf16) echo BF16;; fp8) echo Q8_0;; esac; }
# Same model on both sides: greedy continuations of a random nano model of the family (weights
# large enough for varied tokens) agree token for token, ours f32 / bf16 against llama.cpp F32 / BF16.
N="$W/$NANO"
[ -f "$N/config.json" ] || bazel-bin/cli/grpo init-model --preset "$NANO" --seed 3 --init-std 0.3 --out "$N" >/dev/null
for pair in f32:F32 bf16:BF16; do
  f=${pair%%:*}; t=${pair##*:}
  /usr/bin/python3 bench/gguf_writer.py "$N" "$W/$NANO-$t.gguf" "$t" >/dev/null
  theirs=$(LLAMA_GREEDY=1 node bench/llama_cpp_bench.mjs "$W/$NANO-$t.gguf" 1 16 16 "$t" 256)
  python3 -c "import json,sys; print(json.dumps({'tokens': json.loads(sys.argv[1])['prompt']}))" "$theirs" >"$W/nano-prompt.jsonl"
  ours=$(bazel-bin/cli/grpo generate --model "$N" --input "$W/nano-prompt.jsonl" --output - --temperature 0 \
           --max-new-tokens 16 --serve-format "$f" 2>/dev/null)
  python3 -c "
import json, sys
a = json.loads(sys.argv[1])['samples'][0]['tokens']; b = json.loads(sys.argv[2])['tokens']
print('greedy continuations, ours %s vs llama.cpp %s: %s' % (sys.argv[3], sys.argv[4], 'agree' if a == b else 'DIFFER %s %s' % (a, b)))
" "$ours" "$theirs" "$f" "$t"
done
[ -z "${CHECK_ONLY:-}" ] || exit 0
M="$W/$MODEL"
[ -f "$M/config.json" ] || bazel-bin/cli/grpo init-model "${INIT[@]}" --seed 1 --out "$M" >/dev/null
for f in $FORMATS; do
  t=$(gguf_type "$f")
  [ -f "$W/$MODEL-$t.gguf" ] || /usr/bin/python3 bench/gguf_writer.py "$M" "$W/$MODEL-$t.gguf" "$t" >/dev/null
done
VOCAB=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['vocab_size'])" "$M/config.json")
R="$W/results.jsonl"
: >"$R"
echo "model: $MODEL; machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "llama.cpp CPU backend: $(ls third_party/llamacpp/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/ | grep -c 'libggml-cpu-') variants, chosen at load by CPU features"
for round in $(seq "$ROUNDS"); do
  for thr in $THREADS; do
    for f in $FORMATS; do
      t=$(gguf_type "$f")
      GRPO_NUM_THREADS=$thr bazel-bin/bench/rollout_bench "$M" "$PROMPT_LEN" "$STEPS" \
        --serve-format "$f" --llama-workloads | sed "s/^{/{\"round\": $round, /" >>"$R"
      if [ -n "${BASELINE:-}" ]; then
        GRPO_NUM_THREADS=$thr "$BASELINE" "$M" "$PROMPT_LEN" "$STEPS" --serve-format "$f" --llama-workloads |
          sed "s/^{/{\"round\": $round, /; s/\"impl\": *\"grpo\"/\"impl\": \"grpo-baseline\"/" >>"$R"
      fi
      node bench/llama_cpp_bench.mjs "$W/$MODEL-$t.gguf" "$thr" "$PROMPT_LEN" "$STEPS" "$t" "$VOCAB" |
        sed "s/^{/{\"round\": $round, /" >>"$R"
    done
  done
  echo "round $round done; load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
python3 - "$R" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
pair = {"f32": "F32", "bf16": "BF16", "fp8": "Q8_0"}
def cell(impl, thr, fmt, key):
    v = [r[key] for r in rows if r["impl"] == impl and r["threads"] == thr and r["format"] == fmt]
    return (statistics.median(v), min(v), max(v)) if v else None
base = any(r["impl"] == "grpo-baseline" for r in rows)
print("| workload | threads | ours | tok/s (min-max) | llama.cpp | tok/s (min-max) | ratio |" +
      (" baseline tok/s (min-max) | ratio |" if base else ""))
print("|---|---|---|---|---|---|---|" + ("---|---|" if base else ""))
names = {"decode_b1_tok_s": "batch-1 decode", "decode_b16_tok_s": "16 sequences decoding",
         "prefill_tok_s": "prompt prefill"}
for key in ("decode_b1_tok_s", "decode_b16_tok_s", "prefill_tok_s"):
    for thr in sorted({r["threads"] for r in rows}):
        for ours_fmt, theirs_fmt in pair.items():
            a, b = cell("grpo", thr, ours_fmt, key), cell("llama.cpp", thr, theirs_fmt, key)
            if not a or not b:
                continue
            c = cell("grpo-baseline", thr, ours_fmt, key)
            extra = f" {c[0]:.1f} ({c[1]:.1f}-{c[2]:.1f}) | {c[0] / b[0]:.2f}x |" if c else ""
            print(f"| {names[key]} | {thr} | {ours_fmt} | {a[0]:.1f} ({a[1]:.1f}-{a[2]:.1f}) | {theirs_fmt} | "
                  f"{b[0]:.1f} ({b[1]:.1f}-{b[2]:.1f}) | {a[0] / b[0]:.2f}x |" + extra)
print()
print("| threads | format | triad GB/s (median) | weight MB/token | bound tok/s | ours batch-1 / bound |")
print("|---|---|---|---|---|---|")
for thr in sorted({r["threads"] for r in rows}):
    for fmt in pair:
        v = [r for r in rows if r["impl"] == "grpo" and r["threads"] == thr and r["format"] == fmt]
        if not v:
            continue
        gbs = statistics.median(r["stream_gb_s"] for r in v)
        mb = v[0]["active_weight_mb"]
        bound = gbs * 1e3 / mb
        b1 = statistics.median(r["decode_b1_tok_s"] for r in v)
        print(f"| {thr} | {fmt} | {gbs:.1f} | {mb:.0f} | {bound:.1f} | {100 * b1 / bound:.0f}% |")
print()
print("| threads | format | f32 FMA peak GFLOP/s (median) | GFLOP/token | prefill bound tok/s | ours prefill / bound | llama.cpp prefill / bound |")
print("|---|---|---|---|---|---|---|")
for thr in sorted({r["threads"] for r in rows}):
    for fmt, theirs in pair.items():
        v = [r for r in rows if r["impl"] == "grpo" and r["threads"] == thr and r["format"] == fmt and "fma_peak_gflops" in r]
        if not v:
            continue
        peak = statistics.median(r["fma_peak_gflops"] for r in v)
        per = v[0]["prefill_gflop_per_token"]
        ours = statistics.median(r["prefill_tok_s"] for r in v)
        b = cell("llama.cpp", thr, theirs, "prefill_tok_s")
        them = f"{100 * b[0] * per / peak:.0f}%" if b else "-"
        print(f"| {thr} | {fmt} | {peak:.0f} | {per:.3f} | {peak / per:.1f} | {100 * ours * per / peak:.0f}% | {them} |")
PY
