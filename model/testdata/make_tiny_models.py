#!/usr/bin/python3
"""Writes tiny random HF-layout checkpoints for the parity tests of model/.

    /usr/bin/python3 model/testdata/make_tiny_models.py OUT_DIR

Each model goes to OUT_DIR/<name>/ (config.json + model.safetensors, or shards + index).
Deterministic: fixed seeds, numpy's PCG64, so the files are byte-identical on every run.
See model/testdata/README.md for the list of models.
"""

import copy
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import E4M3FN, write_safetensors  # noqa: E402

VOCAB = 97


# --------------------------------------------------------------------------------------------
# Storage conversions (round to nearest even)
# --------------------------------------------------------------------------------------------


def f32_to_bf16_bits(a):
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise ValueError("non-finite value in bf16 conversion")
    u = a.view(np.uint32).astype(np.uint64)
    rounding = ((u >> 16) & 1) + 0x7FFF
    return ((u + rounding) >> 16).astype(np.uint16)


_E4M3_POS = E4M3FN[:0x7F].astype(np.float64)  # codes 0x00..0x7E, increasing, 0 .. 448


def f32_to_e4m3_codes(x):
    """Round-to-nearest-even, saturating to +-448, OCP E4M3FN codes (uint8)."""
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError("non-finite value in fp8 conversion")
    a = np.minimum(np.abs(x).astype(np.float64), 448.0)
    hi = np.searchsorted(_E4M3_POS, a, side="left")  # _E4M3_POS[hi-1] < a <= _E4M3_POS[hi]
    hi = np.minimum(hi, len(_E4M3_POS) - 1)
    lo = np.maximum(hi - 1, 0)
    d_lo = a - _E4M3_POS[lo]
    d_hi = _E4M3_POS[hi] - a
    pick_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (hi % 2 == 0))
    code = np.where(pick_hi, hi, lo).astype(np.uint8)
    code = np.where(a == _E4M3_POS[hi], hi, code).astype(np.uint8)
    return code | np.where(np.signbit(x), 0x80, 0).astype(np.uint8)


def quantize_fp8_blocks(w, block=(128, 128)):
    """DeepSeek-V3 convention: scale_inv = amax/448 per block (1.0 if all-zero),
    q = e4m3(w / scale_inv).  Returns (codes uint8 [r, c], scale_inv f32 [R, C])."""
    w = np.asarray(w, dtype=np.float32)
    r, c = w.shape
    br, bc = block
    R, C = -(-r // br), -(-c // bc)
    scale = np.ones((R, C), dtype=np.float32)
    codes = np.zeros((r, c), dtype=np.uint8)
    for i in range(R):
        for j in range(C):
            blk = w[i * br : (i + 1) * br, j * bc : (j + 1) * bc]
            amax = np.float32(np.max(np.abs(blk)))
            s = np.float32(amax / np.float32(448.0)) if amax > 0 else np.float32(1.0)
            scale[i, j] = s
            codes[i * br : (i + 1) * br, j * bc : (j + 1) * bc] = f32_to_e4m3_codes(
                (blk / s).astype(np.float32))
    return codes, scale


# --------------------------------------------------------------------------------------------
# Random weights
# --------------------------------------------------------------------------------------------


class Gen:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.t = {}

    def normal(self, name, shape, std):
        self.t[name] = (self.rng.standard_normal(shape) * std).astype(np.float32)

    def linear(self, name, out_f, in_f, bias=False, std=0.1):
        self.normal(name + ".weight", (out_f, in_f), std)
        if bias:
            self.normal(name + ".bias", (out_f,), 0.05)

    def norm(self, name, n):
        self.t[name + ".weight"] = (1.0 + self.rng.standard_normal(n) * 0.1).astype(np.float32)

    def mlp(self, prefix, hidden, inter, bias=False):
        self.linear(prefix + ".gate_proj", inter, hidden, bias)
        self.linear(prefix + ".up_proj", inter, hidden, bias)
        self.linear(prefix + ".down_proj", hidden, inter, bias)


def base_config(model_type, arch, hidden, inter, layers, heads, kv_heads, **extra):
    c = {
        "architectures": [arch],
        "model_type": model_type,
        "vocab_size": VOCAB,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "hidden_act": "silu",
        "max_position_embeddings": 256,
        "initializer_range": 0.02,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "attention_dropout": 0.0,
        "use_cache": True,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "transformers_version": "4.56.0",
    }
    c.update(extra)
    return c


def embed_and_head(g, c):
    # Tied models read the embedding back as the output projection: a smaller scale keeps the
    # next-token distribution from collapsing onto the input token.
    std = 0.15 if c["tie_word_embeddings"] else 0.5
    g.normal("model.embed_tokens.weight", (c["vocab_size"], c["hidden_size"]), std)
    g.norm("model.norm", c["hidden_size"])
    if not c["tie_word_embeddings"]:
        g.normal("lm_head.weight", (c["vocab_size"], c["hidden_size"]), 0.2)


def gqa_layers(g, c):
    mt = c["model_type"]
    H = c["hidden_size"]
    d = c.get("head_dim") or H // c["num_attention_heads"]
    nh, nkv = c["num_attention_heads"], c["num_key_value_heads"]
    for i in range(c["num_hidden_layers"]):
        L = "model.layers.%d" % i
        A = L + ".self_attn"
        g.norm(L + ".input_layernorm", H)
        g.norm(L + ".post_attention_layernorm", H)
        qkv_bias = mt == "qwen2" or c.get("attention_bias", False)
        o_bias = mt != "qwen2" and c.get("attention_bias", False)
        g.linear(A + ".q_proj", nh * d, H, qkv_bias)
        g.linear(A + ".k_proj", nkv * d, H, qkv_bias)
        g.linear(A + ".v_proj", nkv * d, H, qkv_bias)
        g.linear(A + ".o_proj", H, nh * d, o_bias)
        if mt in ("qwen3", "qwen3_moe"):
            g.norm(A + ".q_norm", d)
            g.norm(A + ".k_norm", d)
        moe = (mt == "qwen3_moe" and i not in c["mlp_only_layers"] and c["num_experts"] > 0
               and (i + 1) % c["decoder_sparse_step"] == 0)
        if moe:
            g.linear(L + ".mlp.gate", c["num_experts"], H, std=0.3)
            for e in range(c["num_experts"]):
                g.mlp("%s.mlp.experts.%d" % (L, e), H, c["moe_intermediate_size"])
        else:
            g.mlp(L + ".mlp", H, c["intermediate_size"], c.get("mlp_bias", False))
    embed_and_head(g, c)


def deepseek_layer(g, c, i):
    H = c["hidden_size"]
    nh = c["num_attention_heads"]
    L = "model.layers.%d" % i
    A = L + ".self_attn"
    g.norm(L + ".input_layernorm", H)
    g.norm(L + ".post_attention_layernorm", H)
    qk = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
    if c["q_lora_rank"] is None:
        g.linear(A + ".q_proj", nh * qk, H)
    else:
        g.linear(A + ".q_a_proj", c["q_lora_rank"], H)
        g.norm(A + ".q_a_layernorm", c["q_lora_rank"])
        g.linear(A + ".q_b_proj", nh * qk, c["q_lora_rank"], std=0.15)
    g.linear(A + ".kv_a_proj_with_mqa", c["kv_lora_rank"] + c["qk_rope_head_dim"], H)
    g.norm(A + ".kv_a_layernorm", c["kv_lora_rank"])
    g.linear(A + ".kv_b_proj", nh * (c["qk_nope_head_dim"] + c["v_head_dim"]), c["kv_lora_rank"],
             std=0.15)
    g.linear(A + ".o_proj", H, nh * c["v_head_dim"])
    if i >= c["first_k_dense_replace"]:
        M = L + ".mlp"
        g.linear(M + ".gate", c["n_routed_experts"], H, std=0.3)
        g.normal(M + ".gate.e_score_correction_bias", (c["n_routed_experts"],), 0.02)
        for e in range(c["n_routed_experts"]):
            g.mlp("%s.experts.%d" % (M, e), H, c["moe_intermediate_size"])
        g.mlp(M + ".shared_experts", H, c["moe_intermediate_size"] * c["n_shared_experts"])
    else:
        g.mlp(L + ".mlp", H, c["intermediate_size"])


def deepseek_weights(g, c):
    for i in range(c["num_hidden_layers"]):
        deepseek_layer(g, c, i)
    embed_and_head(g, c)
    H = c["hidden_size"]
    for j in range(c.get("num_nextn_predict_layers", 0)):
        i = c["num_hidden_layers"] + j  # MTP module: a full layer plus its own projections
        deepseek_layer(g, c, i)
        L = "model.layers.%d" % i
        g.norm(L + ".enorm", H)
        g.norm(L + ".hnorm", H)
        g.linear(L + ".eh_proj", H, 2 * H)
        g.norm(L + ".shared_head.norm", H)
        g.normal(L + ".shared_head.head.weight", (c["vocab_size"], H), 0.2)


# --------------------------------------------------------------------------------------------
# Model definitions
# --------------------------------------------------------------------------------------------


def cfg_llama():
    return base_config(
        "llama", "LlamaForCausalLM", hidden=48, inter=80, layers=2, heads=4, kv_heads=2,
        max_position_embeddings=512, rms_norm_eps=1e-5, attention_bias=False, mlp_bias=False,
        pretraining_tp=1,
        rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 64, "rope_type": "llama3"},
        bos_token_id=1, eos_token_id=[2, 3])


def cfg_qwen2(tied):
    return base_config(
        "qwen2", "Qwen2ForCausalLM", hidden=32, inter=56, layers=2, heads=4, kv_heads=2,
        rope_theta=1000000.0, use_sliding_window=False, sliding_window=4096, max_window_layers=2,
        tie_word_embeddings=tied, bos_token_id=0, eos_token_id=2)


def cfg_qwen3():
    return base_config(
        "qwen3", "Qwen3ForCausalLM", hidden=40, inter=72, layers=2, heads=4, kv_heads=2,
        head_dim=16, rope_theta=1000000.0, attention_bias=False, use_sliding_window=False,
        sliding_window=None, max_window_layers=2)


def cfg_qwen3_moe():
    return base_config(
        "qwen3_moe", "Qwen3MoeForCausalLM", hidden=32, inter=48, layers=3, heads=4, kv_heads=2,
        head_dim=8, attention_bias=False, use_sliding_window=False, sliding_window=None,
        max_window_layers=3, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=20,
        norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[1],
        output_router_logits=False, router_aux_loss_coef=0.001,
        rope_scaling={"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 128})


def cfg_deepseek(q_lora=True):
    c = base_config(
        "deepseek_v3", "DeepseekV3ForCausalLM", hidden=64, inter=160, layers=3, heads=4,
        kv_heads=4, q_lora_rank=32 if q_lora else None, kv_lora_rank=24, qk_nope_head_dim=16,
        qk_rope_head_dim=8, v_head_dim=16, moe_intermediate_size=24, n_routed_experts=8,
        n_shared_experts=1, num_experts_per_tok=2, n_group=4, topk_group=2,
        first_k_dense_replace=1, moe_layer_freq=1, routed_scaling_factor=2.5,
        norm_topk_prob=True, scoring_func="sigmoid", topk_method="noaux_tc",
        num_nextn_predict_layers=1, ep_size=1, aux_loss_alpha=0.001, seq_aux=True,
        attention_bias=False, rope_interleave=True, bos_token_id=0, eos_token_id=1,
        max_position_embeddings=256,
        rope_scaling={"type": "yarn", "factor": 4.0, "mscale": 1.0, "mscale_all_dim": 1.0,
                      "original_max_position_embeddings": 64, "beta_fast": 32, "beta_slow": 1})
    if not q_lora:
        # A DeepSeek-V2-Lite-like variant: no q LoRA, plain RoPE, other routing knobs.
        c.update(num_nextn_predict_layers=0, rope_scaling=None, n_group=2, topk_group=1,
                 norm_topk_prob=False, routed_scaling_factor=1.5)
    return c


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_config(d, c):
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
        f.write("\n")


def as_f32(t):
    return {n: ("F32", a.shape, a) for n, a in t.items()}


def as_bf16(t):
    return {n: ("BF16", a.shape, f32_to_bf16_bits(a)) for n, a in t.items()}


FP8_SUFFIXES = ("q_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj",
                "gate_proj", "up_proj", "down_proj", "eh_proj")


def as_fp8(t, block=(128, 128)):
    out = {}
    for n, a in t.items():
        parts = n.split(".")
        if a.ndim == 2 and parts[-1] == "weight" and parts[-2] in FP8_SUFFIXES:
            codes, scale = quantize_fp8_blocks(a, block)
            out[n] = ("F8_E4M3", a.shape, codes)
            out[n + "_scale_inv"] = ("F32", scale.shape, scale)
        else:
            out[n] = ("F32", a.shape, a)
    return out


def save(out_dir, name, c, tensors, shards=1):
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.endswith(".safetensors") or f.endswith(".json"):
            os.remove(os.path.join(d, f))
    write_config(d, c)
    meta = {"format": "pt"}
    if shards == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), tensors, metadata=meta)
        return
    names = sorted(tensors)
    per = -(-len(names) // shards)
    weight_map, total = {}, 0
    for k in range(shards):
        fname = "model-%05d-of-%05d.safetensors" % (k + 1, shards)
        part = {n: tensors[n] for n in names[k * per : (k + 1) * per]}
        write_safetensors(os.path.join(d, fname), part, metadata=meta)
        for n, (_, _, a) in part.items():
            weight_map[n] = fname
            total += a.nbytes
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2,
                  sort_keys=True)
        f.write("\n")


def make_all(out_dir):
    made = []

    c = cfg_llama()
    g = Gen(101)
    gqa_layers(g, c)
    save(out_dir, "llama", c, as_f32(g.t))
    save(out_dir, "llama_sharded", c, as_f32(g.t), shards=2)
    made += ["llama", "llama_sharded"]

    c = cfg_qwen2(tied=False)
    g = Gen(202)
    gqa_layers(g, c)
    save(out_dir, "qwen2", c, as_f32(g.t))
    made.append("qwen2")

    c = cfg_qwen2(tied=True)
    g = Gen(203)
    gqa_layers(g, c)
    save(out_dir, "qwen2_tied", c, as_f32(g.t))
    made.append("qwen2_tied")

    c = cfg_qwen3()
    g = Gen(303)
    gqa_layers(g, c)
    save(out_dir, "qwen3", c, as_f32(g.t))
    cb = copy.deepcopy(c)
    cb["torch_dtype"] = "bfloat16"
    save(out_dir, "qwen3_bf16", cb, as_bf16(g.t))
    made += ["qwen3", "qwen3_bf16"]

    c = cfg_qwen3_moe()
    g = Gen(404)
    gqa_layers(g, c)
    save(out_dir, "qwen3_moe", c, as_f32(g.t))
    made.append("qwen3_moe")

    c = cfg_deepseek(q_lora=True)
    g = Gen(505)
    deepseek_weights(g, c)
    save(out_dir, "deepseek_v3", c, as_f32(g.t))
    cq = copy.deepcopy(c)
    cq["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3",
                                 "quant_method": "fp8", "weight_block_size": [128, 128]}
    save(out_dir, "deepseek_v3_fp8", cq, as_fp8(g.t))
    made += ["deepseek_v3", "deepseek_v3_fp8"]

    c = cfg_deepseek(q_lora=False)
    g = Gen(606)
    deepseek_weights(g, c)
    save(out_dir, "deepseek_v3_noq", c, as_f32(g.t))
    made.append("deepseek_v3_noq")
    return made


def main(argv):
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: make_tiny_models.py OUT_DIR", file=sys.stderr)
        return 2
    try:
        os.makedirs(argv[0], exist_ok=True)
        make_all(argv[0])
    except (OSError, ValueError) as e:
        print("make_tiny_models: error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
