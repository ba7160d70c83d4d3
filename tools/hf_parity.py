#!/usr/bin/env python3
"""`grpo --backend cuda` against HF transformers on the same checkpoints: a step of
`tools/gpu_check.sh run`, for the GPU machine (PyTorch and transformers installed, a CUDA device).

    python3 tools/hf_parity.py --grpo PATH/TO/grpo --work DIR [--families qwen2,llama,...]

For each family (qwen2, llama, qwen3, qwen3_moe, deepseek_v3) it writes the nano preset's
checkpoint twice with `grpo init-model` (HF layout: config.json + model.safetensors; f32, and
bf16 storage), loads them with transformers' AutoModelForCausalLM (eager and sdpa attention),
and checks on a fixed batch of token sequences (lengths 5, 17 and 40):

  f32 logprobs    `grpo logprobs --backend cuda` on the f32 checkpoint against transformers in
                  f32 (eager; TF32 off): ||ours - hf|| / ||hf|| <= 1e-4 over all values.
  bf16 logprobs   `grpo logprobs --backend cuda --serve-format bf16` (bf16 weights and bf16
                  GEMM operands) on the bf16 checkpoint, against transformers in f32 on the same
                  weights (widened exactly): its relative error must be within what bf16 costs
                  transformers itself there, the larger of its bf16 eager and sdpa runs' errors
                  and the spread between those two runs (compare_bf16).
  greedy f32      `grpo generate --backend cuda --temperature 0` on the f32 checkpoint against
                  transformers' generate(do_sample=False), both stopping at the config's EOS:
                  the same tokens for each of three prompts.

The checkpoint must load completely: a tensor transformers leaves uninitialized (missing, or of
another shape) or does not use, or a class other than config.json's `architectures`, fails the
family. Prints one line per check, "ROW<TAB>check<TAB>PASS|FAIL|SKIP<TAB>numbers" (gpu_check's
table), as soon as a family is done, and a JSON summary last. Exit 0 when every check passed,
1 when one failed or could not run, 2 when nothing can run here (no transformers, torch or CUDA
device; no grpo binary; bad arguments), saying why on stderr.

The comparison functions (rel_err, compare_f32, compare_bf16, first_mismatch) use numpy only;
tools/hf_parity_test.py tests them without transformers.
"""
import argparse
import json
import math
import os
import subprocess
import sys

FAMILIES = ("qwen2", "llama", "qwen3", "qwen3_moe", "deepseek_v3")
F32_TOLERANCE = 1e-4
SEQUENCE_LENGTHS = (5, 17, 40)
PROMPTS = ([1, 2, 3, 4, 5], [7, 9], list(range(11, 22)))
MAX_NEW_TOKENS = 16
SEED, INIT_STD = 7, 0.1  # peaked next-token distributions: greedy choices far from ties


# ---- comparisons --------------------------------------------------------------------------------

def _flatten(seqs):
    import numpy as np
    parts = [np.asarray(s, dtype=np.float64).reshape(-1) for s in seqs]
    return np.concatenate(parts) if parts else np.zeros(0)


def rel_err(got, ref):
    """||got - ref|| / ||ref|| over every value of two batches of per-sequence logprob lists.
    inf when the batches differ in shape (number of sequences or a sequence's length) or hold a
    non-finite value; 0 for two all-zero batches."""
    if [len(s) for s in got] != [len(s) for s in ref]:
        return math.inf
    import numpy as np
    g, r = _flatten(got), _flatten(ref)
    if not (np.isfinite(g).all() and np.isfinite(r).all()):
        return math.inf
    denom = float(np.linalg.norm(r))
    diff = float(np.linalg.norm(g - r))
    if denom == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / denom


def compare_f32(ours, hf, tolerance=F32_TOLERANCE):
    """f32: ours passes when rel_err(ours, hf) <= tolerance."""
    err = rel_err(ours, hf)
    return {"ok": err <= tolerance, "rel_err": err, "tolerance": tolerance}


def compare_bf16(ours, hf_eager, hf_sdpa, hf_f32):
    """bf16: ours and transformers' bf16 eager and sdpa results on one bf16 checkpoint, each
    measured against transformers in f32 on the same weights. What bf16 costs transformers
    there -- the larger of its eager and sdpa runs' errors, or the spread between the two runs
    if larger -- is the tolerance; ours passes within it. (Ours is not compared with the eager
    run alone: it rounds differently, GEMM operands only, so its distance to any one bf16 run is
    about that run's own error, not the eager/sdpa spread.)"""
    spread = rel_err(hf_eager, hf_sdpa)
    hf_err = max(rel_err(hf_eager, hf_f32), rel_err(hf_sdpa, hf_f32))
    tolerance = max(spread, hf_err)
    err = rel_err(ours, hf_f32)
    return {"ok": math.isfinite(tolerance) and err <= tolerance, "rel_err": err, "tolerance": tolerance,
            "hf_bf16_err": hf_err, "hf_spread": spread, "vs_hf_eager": rel_err(ours, hf_eager)}


def first_mismatch(ours, hf):
    """Index of the first token where two token lists differ (the shorter one's length when it
    is a prefix of the other), None when they are equal."""
    for i, (a, b) in enumerate(zip(ours, hf)):
        if a != b:
            return i
    return None if len(ours) == len(hf) else min(len(ours), len(hf))


def token_batch(vocab):
    """The fixed batch: sequences of SEQUENCE_LENGTHS tokens from a linear congruential generator."""
    x, seqs = 12345, []
    for n in SEQUENCE_LENGTHS:
        seq = []
        for _ in range(n):
            x = (1103515245 * x + 12345) % 2**31
            seq.append(x % vocab)
        seqs.append(seq)
    return seqs


# ---- our side: the grpo CLI ----------------------------------------------------------------------

class CheckError(Exception):
    """A check that could not be carried out; the message says why."""


def run_grpo(cmd, timeout=120):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CheckError(f"`grpo {cmd[1]}` timed out after {timeout} s")
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise CheckError(f"`grpo {cmd[1]}` failed (rc {r.returncode}): {last}")


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def init_model(grpo, family, out, dtype):
    run_grpo([grpo, "init-model", "--preset", f"{family}-nano", "--out", out, "--seed", str(SEED),
              "--init-std", str(INIT_STD), "--dtype", dtype, "--overwrite"])


def grpo_logprobs(grpo, model_dir, seqs, work, serve_format):
    inp, out = os.path.join(work, "lp-in.jsonl"), os.path.join(work, f"lp-{serve_format}.jsonl")
    write_jsonl(inp, [{"tokens": s} for s in seqs])
    run_grpo([grpo, "logprobs", "--model", model_dir, "--input", inp, "--output", out, "--backend", "cuda",
              "--serve-format", serve_format, "--strict"])
    return [row["logprobs"] for row in read_jsonl(out)]


def grpo_generate(grpo, model_dir, prompts, eos, work):
    inp, out = os.path.join(work, "gen-in.jsonl"), os.path.join(work, "gen-out.jsonl")
    write_jsonl(inp, [{"tokens": p} for p in prompts])
    cmd = [grpo, "generate", "--model", model_dir, "--input", inp, "--output", out, "--backend", "cuda",
           "--temperature", "0", "--max-new-tokens", str(MAX_NEW_TOKENS), "--n", "1", "--strict"]
    for e in eos:
        cmd += ["--stop-token", str(e)]
    run_grpo(cmd)
    return [row["samples"][0]["tokens"] for row in read_jsonl(out)]


# ---- transformers' side --------------------------------------------------------------------------

class Transformers:
    def __init__(self, torch, transformers):
        self.torch, self.transformers = torch, transformers
        torch.set_float32_matmul_precision("highest")  # no TF32 in f32 products
        major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
        self.dtype_kwarg = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"

    def load(self, model_dir, dtype_name, attn):
        """The checkpoint as transformers loads it, in dtype_name ("float32", "bfloat16"); a
        CheckError when a tensor is left uninitialized or unused, or the class or dtype is off."""
        torch = self.torch
        dtype = getattr(torch, dtype_name)
        kwargs = {self.dtype_kwarg: dtype, "attn_implementation": attn, "output_loading_info": True}
        try:
            model, info = self.transformers.AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
        except Exception as e:  # noqa: BLE001 -- any failure to load is the finding
            raise CheckError(f"transformers cannot load it ({attn}, {dtype_name}): {type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200] if str(e) else ''}")
        missing = set(map(str, info.get("missing_keys") or []))
        if self.tied(model):  # a tied head is the embedding: not in the checkpoint, not missing
            missing.discard("lm_head.weight")
        info = dict(info, missing_keys=sorted(missing))
        problems = [f"{k}: {sorted(map(str, info.get(k) or []))[:4]}"
                    for k in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(k)]
        if problems:
            raise CheckError("transformers did not load every tensor: " + "; ".join(problems))
        with open(os.path.join(model_dir, "config.json")) as f:
            want = json.load(f)["architectures"][0]
        if type(model).__name__ != want:
            raise CheckError(f"transformers built {type(model).__name__}, config.json says {want}")
        if next(model.parameters()).dtype != dtype:
            raise CheckError(f"transformers loaded {next(model.parameters()).dtype}, asked for {dtype_name}")
        return model.to("cuda").eval()

    @staticmethod
    def tied(model):
        """Whether the output head is the token embedding's very tensor."""
        head, embed = model.get_output_embeddings(), model.get_input_embeddings()
        return head is not None and embed is not None and head.weight.data_ptr() == embed.weight.data_ptr()

    def logprobs(self, model, seqs):
        torch = self.torch
        out = []
        with torch.no_grad():
            for s in seqs:
                ids = torch.tensor([s], device="cuda")
                logits = model(input_ids=ids).logits[0, :-1].float()
                lp = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:].unsqueeze(1))[:, 0]
                out.append(lp.double().cpu().tolist())
        return out

    def generate(self, model, prompt, eos):
        """Greedy new tokens (EOS kept as the last one) and the raw logits of each step."""
        torch = self.torch
        ids = torch.tensor([prompt], device="cuda")
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, num_beams=1,
                                 max_new_tokens=MAX_NEW_TOKENS, eos_token_id=list(eos), pad_token_id=eos[0],
                                 output_logits=True, return_dict_in_generate=True)
        return out.sequences[0, len(prompt):].tolist(), [l[0].float().cpu() for l in out.logits]

    def top2_gap(self, logits):
        top = self.torch.topk(logits, 2).values
        return float(top[0] - top[1])


# ---- one family ---------------------------------------------------------------------------------

def row(check, result, numbers):
    print(f"ROW\t{check}\t{result}\t{numbers}", flush=True)
    return {"check": check, "result": result, "numbers": numbers}


def check_family(family, grpo, hf, work):
    rows = []
    d = os.path.join(work, family)
    f32_dir, bf16_dir = os.path.join(d, "f32"), os.path.join(d, "bf16")
    os.makedirs(d, exist_ok=True)
    try:
        init_model(grpo, family, f32_dir, "f32")
        init_model(grpo, family, bf16_dir, "bf16")
        with open(os.path.join(f32_dir, "config.json")) as f:
            config = json.load(f)
        eos = config["eos_token_id"] if isinstance(config["eos_token_id"], list) else [config["eos_token_id"]]
        seqs = token_batch(config["vocab_size"])
        models = {key: hf.load(path, dtype, attn) for key, (path, dtype, attn) in {
            "f32_eager": (f32_dir, "float32", "eager"), "f32_sdpa": (f32_dir, "float32", "sdpa"),
            "bf16_eager": (bf16_dir, "bfloat16", "eager"), "bf16_sdpa": (bf16_dir, "bfloat16", "sdpa"),
            "bf16_as_f32": (bf16_dir, "float32", "eager")}.items()}
    except CheckError as e:
        return [row(f"hf {family}", "FAIL", str(e))]
    cls = type(models["f32_eager"]).__name__
    ref = {key: hf.logprobs(m, seqs) for key, m in models.items()}

    try:
        c = compare_f32(grpo_logprobs(grpo, f32_dir, seqs, d, "f32"), ref["f32_eager"])
        sdpa = rel_err(ref["f32_sdpa"], ref["f32_eager"])
        rows.append(row(f"hf {family} f32 logprobs", "PASS" if c["ok"] else "FAIL",
                        f"rel err {c['rel_err']:.2g} (tol {c['tolerance']:.0e}) vs {cls} eager; "
                        f"its sdpa vs eager {sdpa:.2g}"))
    except CheckError as e:
        rows.append(row(f"hf {family} f32 logprobs", "FAIL", str(e)))

    try:
        c = compare_bf16(grpo_logprobs(grpo, bf16_dir, seqs, d, "bf16"), ref["bf16_eager"], ref["bf16_sdpa"],
                         ref["bf16_as_f32"])
        rows.append(row(f"hf {family} bf16 logprobs", "PASS" if c["ok"] else "FAIL",
                        f"rel err {c['rel_err']:.2g} vs HF f32 (tol {c['tolerance']:.2g}: HF bf16 err "
                        f"{c['hf_bf16_err']:.2g}, eager/sdpa spread {c['hf_spread']:.2g}); vs HF bf16 eager "
                        f"{c['vs_hf_eager']:.2g}"))
    except CheckError as e:
        rows.append(row(f"hf {family} bf16 logprobs", "FAIL", str(e)))

    try:
        ours = grpo_generate(grpo, f32_dir, PROMPTS, eos, d)
        same, notes = 0, []
        for i, prompt in enumerate(PROMPTS):
            theirs, logits = hf.generate(models["f32_eager"], prompt, eos)
            at = first_mismatch(ours[i], theirs)
            if at is None:
                same += 1
                continue
            gap = f", HF's top-2 logit gap there {hf.top2_gap(logits[at]):.2g}" if at < len(logits) else ""
            notes.append(f"prompt {i} differs at token {at} (ours {ours[i][at:at + 3]}, HF {theirs[at:at + 3]}{gap})")
        rows.append(row(f"hf {family} greedy f32", "PASS" if same == len(PROMPTS) else "FAIL",
                        f"{same}/{len(PROMPTS)} prompts token for token ({MAX_NEW_TOKENS} new tokens max)"
                        + ("; " + "; ".join(notes) if notes else "")))
    except CheckError as e:
        rows.append(row(f"hf {family} greedy f32", "FAIL", str(e)))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grpo", required=True, help="the grpo binary (built with the cuda backend)")
    parser.add_argument("--work", required=True, help="a scratch directory for the checkpoints and files")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated (default: all five)")
    args = parser.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        print(f"hf_parity: unknown families {unknown} (known: {', '.join(FAMILIES)})", file=sys.stderr)
        return 2
    if not (os.path.isfile(args.grpo) and os.access(args.grpo, os.X_OK)):
        print(f"hf_parity: --grpo {args.grpo} is not an executable file", file=sys.stderr)
        return 2
    try:
        import numpy  # noqa: F401
        import torch
        import transformers
    except ImportError as e:
        print(f"hf_parity: needs numpy, torch and transformers (the GPU machine's python3): {e}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("hf_parity: torch sees no CUDA device", file=sys.stderr)
        return 2
    os.makedirs(args.work, exist_ok=True)
    hf = Transformers(torch, transformers)
    rows = []
    for family in families:
        try:
            rows += check_family(family, args.grpo, hf, args.work)
        except Exception as e:  # noqa: BLE001 -- transformers or torch failed inside a check
            rows.append(row(f"hf {family}", "FAIL", f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"))
    print(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__,
                      "device": torch.cuda.get_device_name(0), "rows": rows}))
    return 0 if all(r["result"] == "PASS" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
