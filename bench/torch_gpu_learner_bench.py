"""PyTorch peer of `gpu_bench learn` (tools/gpu_check.sh): the same model (a config.json that
`gpu_bench config PRESET DIR` wrote) built by HF transformers with random weights, bf16 parameters,
sdpa attention, on the GPU, and the same step: forward over SEQS sequences of SEQ_LEN tokens,
loss = mean log-probability of each next token, backward. Times it with CUDA events (one warm-up
step, the median of three) and counts FLOPs as bench/gpu_bench.cc's TrainFlops does.

Usage: python3 bench/torch_gpu_learner_bench.py CONFIG_DIR LABEL [SEQS] [SEQ_LEN]
Prints one JSON line and one "ROW<TAB>check<TAB>-<TAB>numbers" line for gpu_check's table.
Exit 2 (saying why) without torch, transformers or a CUDA device."""
import json
import statistics
import sys


def train_flops(cfg, seqs, seq_len):
    """Model FLOPs of forward + backward of a dense llama-style model (gpu_bench's TrainFlops):
    2 per multiply-add of every projection matrix and the output head per token, plus causal
    attention's q.k and p.v over seq_len * (seq_len + 1) / 2 pairs per sequence, head and layer;
    backward twice the forward."""
    h, inter, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    dh = cfg.get("head_dim") or h // nh
    per_layer = h * nh * dh + 2 * h * nkv * dh + nh * dh * h + 3 * h * inter
    matrix = layers * per_layer + cfg["vocab_size"] * h
    tokens = seqs * seq_len
    pairs = seqs * seq_len * (seq_len + 1) / 2
    attention = 2 * (dh + dh) * nh * layers * pairs
    return 3 * (2 * matrix * tokens + attention)


def datasheet_bf16_tflops(name):
    """Dense bf16 tensor-core peak of the datasheet (as gpu_bench's DatasheetBf16Tflops), 0 if unknown."""
    if "H100" not in name and "H200" not in name:
        return 0.0
    if "PCIe" in name:
        return 756.0
    if "NVL" in name:
        return 835.0
    return 989.0


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    config_dir, label = sys.argv[1], sys.argv[2]
    seqs = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    seq_len = int(sys.argv[4]) if len(sys.argv) > 4 else 1024
    try:
        import torch
        import transformers
    except ImportError as e:
        print(f"torch_gpu_learner_bench: needs torch and transformers: {e}", file=sys.stderr)
        sys.exit(2)
    if not torch.cuda.is_available():
        print("torch_gpu_learner_bench: no CUDA device visible to torch", file=sys.stderr)
        sys.exit(2)
    with open(f"{config_dir}/config.json") as f:
        cfg_json = json.load(f)
    config = transformers.AutoConfig.from_pretrained(config_dir)
    torch.manual_seed(0)
    with torch.device("cuda"):
        try:
            model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16,
                                                                  attn_implementation="sdpa")
        except TypeError:  # transformers before 4.56 names it torch_dtype
            model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16,
                                                                  attn_implementation="sdpa")
    model = model.to(device="cuda", dtype=torch.bfloat16)
    model.train()
    gen = torch.Generator(device="cpu").manual_seed(1)
    ids = torch.randint(0, cfg_json["vocab_size"], (seqs, seq_len), generator=gen).cuda()

    def step():
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()
        logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1))
        logp.mean().backward()

    step()
    times = []
    for _ in range(3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    secs = statistics.median(times)
    tflops = train_flops(cfg_json, seqs, seq_len) / secs / 1e12
    device = torch.cuda.get_device_name(0)
    peak = datasheet_bf16_tflops(device)
    mfu = tflops / peak if peak else 0.0
    print(json.dumps({"bench": "learn", "impl": "pytorch", "label": label, "seqs": seqs, "seq_len": seq_len,
                      "step_s": secs, "tflops": tflops, "peak_tflops": peak, "mfu": mfu, "device": device,
                      "torch": torch.__version__, "transformers": transformers.__version__}))
    print(f"ROW\tlearn {label} torch bf16\t-\t{tflops:.1f} TFLOP/s = {100 * mfu:.1f}% MFU of {peak:.0f} "
          f"({seqs} x {seq_len} tokens, {secs * 1e3:.0f} ms/step, sdpa)")


if __name__ == "__main__":
    main()
