#!/usr/bin/python3
"""Tests of tools/hf_parity.py that need no transformers and no GPU (Debian's python3 with
PyTorch 1.13 CPU and numpy): its comparison functions on logprobs that PyTorch computes from the
same logits at different precisions, and that the script itself fails cleanly where it cannot
run (exit 2 and the reason)."""
import importlib.util
import math
import os
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "hf_parity.py")
spec = importlib.util.spec_from_file_location("hf_parity", SCRIPT)
hf_parity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hf_parity)

failures = []


def check(name, ok, detail=""):
    if not ok:
        failures.append(f"FAIL: {name} {detail}")


def logprobs(logits, targets, dtype):
    """Per-sequence logprobs of the targets, the log-softmax computed in `dtype` (logits rounded
    to it first), as python lists of floats."""
    out = []
    for lg, tg in zip(logits, targets):
        lp = torch.log_softmax(lg.to(dtype).double() if dtype == torch.bfloat16 else lg.to(dtype), dim=-1)
        out.append(lp.gather(1, tg.unsqueeze(1))[:, 0].double().tolist())
    return out


gen = torch.Generator().manual_seed(17)
lengths = [4, 16, 39]  # targets per sequence (the batch's 5, 17, 40 tokens minus one)
logits = [torch.randn(n, 256, generator=gen, dtype=torch.float64) * 3 for n in lengths]
targets = [torch.randint(0, 256, (n,), generator=gen) for n in lengths]
exact = logprobs(logits, targets, torch.float64)
f32 = logprobs(logits, targets, torch.float32)

# rel_err
check("rel_err of a batch with itself is 0", hf_parity.rel_err(exact, exact) == 0.0)
err = hf_parity.rel_err(f32, exact)
check("rel_err of f32 vs f64 log-softmax is f32 rounding (1e-9 < err < 1e-6)", 1e-9 < err < 1e-6, err)
check("rel_err is inf when a sequence's length differs", hf_parity.rel_err(exact, [exact[0], exact[1], exact[2][:-1]]) == math.inf)
check("rel_err is inf when the number of sequences differs", hf_parity.rel_err(exact[:2], exact) == math.inf)
nan = [list(s) for s in f32]
nan[1][3] = float("nan")
check("rel_err is inf with a NaN on either side", hf_parity.rel_err(nan, exact) == math.inf and hf_parity.rel_err(exact, nan) == math.inf)
check("rel_err of two all-zero batches is 0", hf_parity.rel_err([[0.0, 0.0]], [[0.0, 0.0]]) == 0.0)

# compare_f32: f32 rounding passes 1e-4; one value off by 0.05 (relative to a norm of ~100) fails.
c = hf_parity.compare_f32(f32, exact)
check("compare_f32 passes f32 rounding", c["ok"] and c["tolerance"] == 1e-4, c)
off = [list(s) for s in f32]
off[2][10] += 0.05
norm = math.sqrt(sum(v * v for s in exact for v in s))
c = hf_parity.compare_f32(off, exact)
check("compare_f32 fails one value off by 0.05", not c["ok"] and abs(c["rel_err"] - 0.05 / norm) < 1e-6, (c, norm))
check("compare_f32 fails a NaN", not hf_parity.compare_f32(nan, exact)["ok"])

# compare_bf16: "HF" eager rounds the logits to bf16; "HF" sdpa rounds logits perturbed by 1e-3
# relative (attention rounding elsewhere); ours rounds half as coarsely -> passes; ours with ten
# times HF's bf16 error fails; NaN on our side or HF's fails.
hf_eager = logprobs(logits, targets, torch.bfloat16)
hf_sdpa = logprobs([lg * (1 + 1e-3 * torch.randn(lg.shape, generator=gen, dtype=torch.float64)) for lg in logits],
                   targets, torch.bfloat16)
ours_good = [[e + 0.5 * (h - e) for h, e in zip(hs, es)] for hs, es in zip(hf_eager, exact)]
ours_bad = [[e + 10 * (h - e) for h, e in zip(hs, es)] for hs, es in zip(hf_eager, exact)]
c = hf_parity.compare_bf16(ours_good, hf_eager, hf_sdpa, exact)
check("compare_bf16: HF's bf16 error is bf16-sized (1e-4 < err < 1e-2)", 1e-4 < c["hf_bf16_err"] < 1e-2, c)
check("compare_bf16: tolerance is the larger of HF's error and its eager/sdpa spread",
      c["tolerance"] == max(c["hf_bf16_err"], c["hf_spread"]) and c["hf_spread"] > 0, c)
check("compare_bf16 passes half HF's bf16 error", c["ok"] and abs(c["rel_err"] - 0.5 * hf_parity.rel_err(hf_eager, exact)) < 1e-9, c)
c = hf_parity.compare_bf16(ours_bad, hf_eager, hf_sdpa, exact)
check("compare_bf16 fails ten times HF's bf16 error", not c["ok"] and c["rel_err"] > 3 * c["tolerance"], c)
check("compare_bf16 fails our NaN", not hf_parity.compare_bf16(nan, hf_eager, hf_sdpa, exact)["ok"])
check("compare_bf16 fails when HF's bf16 run is NaN (no tolerance)",
      not hf_parity.compare_bf16(ours_good, nan, hf_sdpa, exact)["ok"])

# first_mismatch
check("first_mismatch: equal lists", hf_parity.first_mismatch([1, 2, 3], [1, 2, 3]) is None)
check("first_mismatch: differing token", hf_parity.first_mismatch([1, 2, 3], [1, 5, 3]) == 1)
check("first_mismatch: a prefix", hf_parity.first_mismatch([1, 2], [1, 2, 2]) == 2)
check("first_mismatch: empty vs not", hf_parity.first_mismatch([], [4]) == 0)

# token_batch: fixed, in the vocabulary, of the documented lengths.
b = hf_parity.token_batch(256)
check("token_batch lengths", [len(s) for s in b] == [5, 17, 40], b)
check("token_batch is deterministic and in range",
      b == hf_parity.token_batch(256) and all(0 <= t < 256 for s in b for t in s) and len({t for s in b for t in s}) > 20, b)


# The script: --help works; without transformers (as here), a bad family or no grpo binary it
# exits 2 saying why.
def run(*args):
    r = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


with tempfile.TemporaryDirectory() as tmp:
    rc, out = run("--help")
    check("--help exits 0 and names the checks", rc == 0 and "--families" in out and "greedy" in out, (rc, out))
    rc, out = run("--grpo", "/bin/true", "--work", tmp, "--families", "qwen2,gpt2")
    check("an unknown family exits 2 naming it", rc == 2 and "gpt2" in out, (rc, out))
    rc, out = run("--grpo", os.path.join(tmp, "no-such-grpo"), "--work", tmp)
    check("a missing grpo binary exits 2 naming it", rc == 2 and "no-such-grpo" in out and "not an executable" in out, (rc, out))
    rc, out = run("--work", tmp)
    check("no --grpo exits 2 (argparse)", rc == 2 and "--grpo" in out, (rc, out))
    if importlib.util.find_spec("transformers") is None:
        rc, out = run("--grpo", "/bin/true", "--work", tmp)
        check("without transformers it exits 2 saying so", rc == 2 and "needs numpy, torch and transformers" in out
              and "ROW" not in out, (rc, out))

for f in failures:
    print(f)
print(f"hf_parity_test: {'FAILED' if failures else 'passed'}")
sys.exit(1 if failures else 0)
