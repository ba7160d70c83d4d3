#!/usr/bin/env python3
"""Writes a model directory of ours (config.json + model.safetensors, f32 or bf16) as a GGUF file
for llama.cpp, for the side-by-side benchmark bench/llama_cpp_bench.sh. Benchmark-only: the
weights are ours, the file lets llama.cpp run the same model.

  /usr/bin/python3 bench/gguf_writer.py MODEL_DIR OUT.gguf {F32|BF16|F16|Q8_0}

Architectures: qwen2 (Qwen2/Qwen2.5, q/k/v biases), qwen3 (per-head q/k RMSNorms: attn_q_norm,
attn_k_norm) and qwen3_moe (llama.cpp's `qwen3moe`: qwen3 attention; every layer's routed experts
stacked into ffn_gate_exps / ffn_up_exps [experts, moe_intermediate, hidden] and ffn_down_exps
[experts, hidden, moe_intermediate], the router as ffn_gate_inp; llama.cpp always renormalizes
the top-k weights, so norm_topk_prob must be true, and every layer must be sparse). llama.cpp
applies their rope the HF way, "NEOX", so the weights are written as they are; a llama would
need q/k rows permuted. The projection weights (experts included), the token embedding and the
output head are written in the requested type; norms, biases and the router stay F32 (as
llama.cpp's own converter and quantizer do). BF16 rounds f32 to nearest even (as our bf16 serving
does), Q8_0 is llama.cpp's block format: 32 values, an f16 scale d = max|x| / 127 and
int8 q = round(x / d). The vocabulary is a stand-in (our random models have no tokenizer): the
256 byte-level GPT-2 tokens, then "<tokN>"; the benchmark feeds token ids, never text.
"""
import json
import os
import struct
import sys

import numpy as np

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGNMENT = 32
# gguf value types
T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9
# ggml tensor types
GGML = {"F32": 0, "F16": 1, "Q8_0": 8, "BF16": 30}


def read_safetensors(model_dir):
    """name -> float32 array, from model.safetensors (one file; f32, bf16 or f16)."""
    path = os.path.join(model_dir, "model.safetensors")
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            f.seek(base + start)
            raw = f.read(end - start)
            dtype = info["dtype"]
            if dtype == "F32":
                a = np.frombuffer(raw, dtype="<f4")
            elif dtype == "BF16":
                a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
            elif dtype == "F16":
                a = np.frombuffer(raw, dtype="<f2").astype(np.float32)
            else:
                raise SystemExit(f"{path}: tensor {name} has dtype {dtype} (expected F32, BF16 or F16)")
            out[name] = a.reshape(info["shape"])
    return out


def to_bf16(a):
    """f32 -> bf16 bits, round to nearest even (finite inputs)."""
    u = a.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def to_q8_0(a):
    """llama.cpp's Q8_0 blocks of a row-major matrix whose rows are multiples of 32."""
    x = a.astype(np.float32).reshape(-1, 32)
    amax = np.abs(x).max(axis=1)
    d = amax / 127.0
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0)
    q = np.round(x * inv[:, None]).astype(np.int8)  # ties to even; llama.cpp's roundf rounds away
    blocks = np.empty(x.shape[0], dtype=[("d", "<f2"), ("q", "i1", 32)])
    blocks["d"] = d.astype(np.float16)
    blocks["q"] = q
    return blocks.tobytes()


def encode(a, kind):
    if kind == "F32":
        return a.astype("<f4").tobytes()
    if kind == "F16":
        return a.astype("<f2").tobytes()
    if kind == "BF16":
        return to_bf16(a).tobytes()
    if kind == "Q8_0":
        if a.shape[-1] % 32:
            raise SystemExit(f"Q8_0 needs rows of a multiple of 32 values, got {a.shape}")
        return to_q8_0(a)
    raise SystemExit(f"unknown type {kind}")


def gpt2_byte_tokens():
    """The 256 byte-level tokens of GPT-2 BPE (bytes_to_unicode), in byte order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


class Writer:
    def __init__(self):
        self.kv = []
        self.tensors = []

    def add(self, key, vtype, value):
        self.kv.append((key, vtype, value))

    @staticmethod
    def _str(s):
        b = s.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    def _value(self, vtype, value):
        if vtype == T_UINT32:
            return struct.pack("<I", value)
        if vtype == T_INT32:
            return struct.pack("<i", value)
        if vtype == T_FLOAT32:
            return struct.pack("<f", value)
        if vtype == T_BOOL:
            return struct.pack("<?", value)
        if vtype == T_STRING:
            return self._str(value)
        if vtype == T_ARRAY:
            etype, items = value
            return struct.pack("<IQ", etype, len(items)) + b"".join(self._value(etype, v) for v in items)
        raise ValueError(vtype)

    def tensor(self, name, shape, kind, data):
        self.tensors.append((name, shape, kind, data))

    def write(self, path):
        with open(path, "wb") as f:
            f.write(GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(self.tensors), len(self.kv)))
            for key, vtype, value in self.kv:
                f.write(self._str(key) + struct.pack("<I", vtype) + self._value(vtype, value))
            offset = 0
            for name, shape, kind, data in self.tensors:
                dims = list(reversed(shape))  # ggml: ne[0] is the innermost (column) dimension
                f.write(self._str(name) + struct.pack("<I", len(dims)))
                f.write(b"".join(struct.pack("<Q", d) for d in dims))
                f.write(struct.pack("<IQ", GGML[kind], offset))
                offset += (len(data) + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
            f.write(b"\0" * ((-f.tell()) % ALIGNMENT))
            for _, _, _, data in self.tensors:
                f.write(data)
                f.write(b"\0" * ((-len(data)) % ALIGNMENT))


def check_qwen3_moe(c):
    """The qwen3_moe configs llama.cpp's qwen3moe computes the same way."""
    if not c.get("norm_topk_prob", False):
        raise SystemExit("qwen3_moe: llama.cpp renormalizes the top-k expert weights; norm_topk_prob must be true")
    if c.get("decoder_sparse_step", 1) != 1 or c.get("mlp_only_layers"):
        raise SystemExit("qwen3_moe: llama.cpp's qwen3moe has experts in every layer "
                         "(decoder_sparse_step 1, no mlp_only_layers)")
    if c.get("num_experts_per_tok", 0) <= 0 or c.get("num_experts", 0) < c["num_experts_per_tok"]:
        raise SystemExit("qwen3_moe: num_experts_per_tok must be in [1, num_experts]")


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in GGML:
        raise SystemExit(__doc__)
    model_dir, out_path, kind = sys.argv[1:]
    with open(os.path.join(model_dir, "config.json")) as f:
        c = json.load(f)
    arch = {"qwen2": "qwen2", "qwen3": "qwen3", "qwen3_moe": "qwen3moe"}.get(c["model_type"])
    if arch is None:
        raise SystemExit(f"model_type {c['model_type']}: only qwen2, qwen3 and qwen3_moe are written")
    moe = arch == "qwen3moe"
    if moe:
        check_qwen3_moe(c)
    w = read_safetensors(model_dir)
    g = Writer()
    g.add("general.architecture", T_STRING, arch)
    g.add("general.name", T_STRING, os.path.basename(os.path.normpath(model_dir)))
    g.add("general.alignment", T_UINT32, ALIGNMENT)
    g.add(f"{arch}.block_count", T_UINT32, c["num_hidden_layers"])
    g.add(f"{arch}.context_length", T_UINT32, c["max_position_embeddings"])
    g.add(f"{arch}.embedding_length", T_UINT32, c["hidden_size"])
    g.add(f"{arch}.feed_forward_length", T_UINT32, c["intermediate_size"])
    g.add(f"{arch}.attention.head_count", T_UINT32, c["num_attention_heads"])
    g.add(f"{arch}.attention.head_count_kv", T_UINT32, c.get("num_key_value_heads", c["num_attention_heads"]))
    g.add(f"{arch}.rope.freq_base", T_FLOAT32, float(c.get("rope_theta", 10000.0)))
    g.add(f"{arch}.attention.layer_norm_rms_epsilon", T_FLOAT32, float(c["rms_norm_eps"]))
    head_dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    g.add(f"{arch}.attention.key_length", T_UINT32, head_dim)
    g.add(f"{arch}.attention.value_length", T_UINT32, head_dim)
    g.add(f"{arch}.rope.dimension_count", T_UINT32, head_dim)
    if moe:
        g.add(f"{arch}.expert_count", T_UINT32, c["num_experts"])
        g.add(f"{arch}.expert_used_count", T_UINT32, c["num_experts_per_tok"])
        g.add(f"{arch}.expert_feed_forward_length", T_UINT32, c["moe_intermediate_size"])
    vocab = c["vocab_size"]
    tokens = gpt2_byte_tokens() + [f"<tok{i}>" for i in range(256, vocab)]
    g.add("tokenizer.ggml.model", T_STRING, "gpt2")
    g.add("tokenizer.ggml.tokens", T_ARRAY, (T_STRING, tokens))
    g.add("tokenizer.ggml.token_type", T_ARRAY, (T_INT32, [1] * vocab))
    g.add("tokenizer.ggml.merges", T_ARRAY, (T_STRING, []))
    g.add("tokenizer.ggml.bos_token_id", T_UINT32, 0)
    g.add("tokenizer.ggml.eos_token_id", T_UINT32, vocab - 1)
    g.add("tokenizer.ggml.add_bos_token", T_BOOL, False)

    def put(name, ours, narrow):
        put_array(name, w[ours], narrow)

    def put_array(name, a, narrow):
        k = kind if narrow else "F32"
        g.tensor(name, list(a.shape), k, encode(a, k))

    put("token_embd.weight", "model.embed_tokens.weight", True)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        b = f"blk.{i}."
        put(b + "attn_norm.weight", p + "input_layernorm.weight", False)
        for ours, theirs in (("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v"),
                             ("o_proj", "attn_output")):
            put(b + theirs + ".weight", p + f"self_attn.{ours}.weight", True)
            if p + f"self_attn.{ours}.bias" in w:
                put(b + theirs + ".bias", p + f"self_attn.{ours}.bias", False)
        for ours, theirs in (("q_norm", "attn_q_norm"), ("k_norm", "attn_k_norm")):
            if p + f"self_attn.{ours}.weight" in w:
                put(b + theirs + ".weight", p + f"self_attn.{ours}.weight", False)
        put(b + "ffn_norm.weight", p + "post_attention_layernorm.weight", False)
        for ours, theirs in (("gate_proj", "ffn_gate"), ("up_proj", "ffn_up"), ("down_proj", "ffn_down")):
            if moe:
                experts = [w[p + f"mlp.experts.{e}.{ours}.weight"] for e in range(c["num_experts"])]
                put_array(b + theirs + "_exps.weight", np.stack(experts), True)
            else:
                put(b + theirs + ".weight", p + f"mlp.{ours}.weight", True)
        if moe:
            put(b + "ffn_gate_inp.weight", p + "mlp.gate.weight", False)
    put("output_norm.weight", "model.norm.weight", False)
    if not c.get("tie_word_embeddings", False):
        put("output.weight", "lm_head.weight", True)
    g.write(out_path)
    print(f"{out_path}: {len(g.tensors)} tensors, {kind}, {os.path.getsize(out_path) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
