#!/usr/bin/python3
"""PyTorch reference forward/backward for the model families of model/ (parity tests).

    /usr/bin/python3 model/testdata/torch_reference.py MODEL_DIR INPUT_JSON OUTPUT_DIR \
        [--dtype float64|float32] [--bf16-weights]

An independent re-implementation of the HuggingFace transformers modeling code for the
`llama`, `qwen2`, `qwen3`, `qwen3_moe` and `deepseek_v3` families (eager attention, no cache),
written for Debian's python3-torch 1.13 (CPU) and numpy only: no transformers, no safetensors
module.  The interface is documented in model/testdata/README.md.

Inputs:  MODEL_DIR/config.json, MODEL_DIR/model.safetensors or model.safetensors.index.json;
         INPUT_JSON {"sequences": [[ids]..], "weights": [[w]..]?, "forced_routing": [...]?,
                     "divergence": {"kind": "reverse_kl"|"forward_kl",
                                    "teacher_logits": [[[V floats] per target] per sequence],
                                    "weights": [[w per target] per sequence]}?}
         loss = sum weights * logprob (+ sum divergence.weights * D, D the divergence per target
         between softmax(logits) and softmax(teacher_logits): KL(p||q) or KL(q||p))
Outputs: OUTPUT_DIR/result.json {"logprobs", "entropy", "routing", "routing_weights", "loss",
                                 "divergence" (per sequence, when asked)}
         OUTPUT_DIR/grads.safetensors  dloss/dparam (F32) for every trainable checkpoint tensor.
"""

import argparse
import json
import math
import os
import re
import struct
import sys

import numpy as np
import torch


class RefError(Exception):
    """A user-facing error (bad model, bad input): printed without a traceback."""


# --------------------------------------------------------------------------------------------
# Number formats
# --------------------------------------------------------------------------------------------


def e4m3fn_table():
    """float32 values of all 256 OCP FP8 E4M3FN codes (bias 7, 3 mantissa bits, no inf;
    0x7F/0xFF are NaN; subnormals m * 2^-9)."""
    vals = np.zeros(256, dtype=np.float64)
    for code in range(256):
        sign = -1.0 if code & 0x80 else 1.0
        exp = (code >> 3) & 0xF
        man = code & 0x7
        if exp == 0xF and man == 0x7:
            vals[code] = np.nan
        elif exp == 0:
            vals[code] = sign * man * 2.0 ** -9
        else:
            vals[code] = sign * (1.0 + man / 8.0) * 2.0 ** (exp - 7)
    return vals.astype(np.float32)


E4M3FN = e4m3fn_table()

_ST_NUMPY = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "F8_E4M3": np.dtype("u1"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("u1"),
}


def to_f32(dtype, raw):
    """Widens a raw safetensors array (numpy, storage dtype) to float32, exactly."""
    if dtype == "F32":
        return raw.astype(np.float32)
    if dtype == "F64":
        return raw.astype(np.float64)  # kept wide; the caller converts to the compute dtype
    if dtype == "F16":
        return raw.astype(np.float32)
    if dtype == "BF16":
        return (raw.astype(np.uint32) << np.uint32(16)).view(np.float32)
    if dtype == "F8_E4M3":
        return E4M3FN[raw]
    if dtype in ("I64", "I32", "I16", "I8", "U8", "BOOL"):
        return raw.astype(np.float64)
    raise RefError("unsupported safetensors dtype %r" % dtype)


# --------------------------------------------------------------------------------------------
# safetensors I/O
# --------------------------------------------------------------------------------------------


def read_safetensors(path):
    """Returns {name: (dtype string, shape tuple, numpy array in storage dtype)}."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise RefError("cannot read %s: %s" % (path, e))
    if len(blob) < 8:
        raise RefError("%s: too short for a safetensors file" % path)
    (hlen,) = struct.unpack("<Q", blob[:8])
    if 8 + hlen > len(blob):
        raise RefError("%s: header length %d exceeds file size %d" % (path, hlen, len(blob)))
    try:
        header = json.loads(blob[8 : 8 + hlen].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise RefError("%s: bad safetensors header: %s" % (path, e))
    if not isinstance(header, dict):
        raise RefError("%s: safetensors header is not a JSON object" % path)
    data = memoryview(blob)[8 + hlen :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = info["dtype"]
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(v) for v in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise RefError("%s: bad header entry for %r" % (path, name))
        if dtype not in _ST_NUMPY:
            raise RefError("%s: tensor %r has unsupported dtype %r" % (path, name, dtype))
        npd = _ST_NUMPY[dtype]
        count = int(np.prod(shape)) if shape else 1
        if not (0 <= begin <= end <= len(data)) or end - begin != count * npd.itemsize:
            raise RefError(
                "%s: tensor %r: data_offsets [%d, %d] do not match shape %s dtype %s "
                "(data size %d)" % (path, name, begin, end, list(shape), dtype, len(data))
            )
        arr = np.frombuffer(data[begin:end], dtype=npd).reshape(shape)
        out[name] = (dtype, shape, arr)
    return out


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: (dtype string, shape, numpy array already in storage dtype)}.
    Names sorted, data contiguous in that order, header padded with spaces to 8 bytes."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    chunks = []
    for name in sorted(tensors):
        dtype, shape, arr = tensors[name]
        npd = _ST_NUMPY[dtype]
        b = np.ascontiguousarray(arr, dtype=npd).tobytes()
        count = int(np.prod(shape)) if len(shape) else 1
        assert len(b) == count * npd.itemsize, name
        header[name] = {"dtype": dtype, "shape": [int(s) for s in shape],
                        "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        chunks.append(b)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in chunks:
            f.write(b)
    os.replace(tmp, path)


def load_checkpoint(model_dir):
    """All tensors of a checkpoint (single file or sharded) as {name: (dtype, shape, array)}."""
    single = os.path.join(model_dir, "model.safetensors")
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(single):
        return read_safetensors(single)
    if not os.path.exists(index):
        raise RefError("%s has neither model.safetensors nor model.safetensors.index.json"
                       % model_dir)
    try:
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
    except (OSError, ValueError, KeyError) as e:
        raise RefError("%s: bad index: %s" % (index, e))
    out = {}
    for shard in sorted(set(weight_map.values())):
        part = read_safetensors(os.path.join(model_dir, shard))
        for name, t in part.items():
            if weight_map.get(name) != shard:
                raise RefError("%s: tensor %r is in %s but the index maps it to %r"
                               % (index, name, shard, weight_map.get(name)))
            out[name] = t
    missing = sorted(set(weight_map) - set(out))
    if missing:
        raise RefError("%s: tensors listed in the index but absent from shards: %s"
                       % (index, ", ".join(missing[:5])))
    return out


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------

FAMILIES = ("llama", "qwen2", "qwen3", "qwen3_moe", "deepseek_v3")


class Config:
    def __init__(self, raw):
        self.raw = raw
        mt = raw.get("model_type")
        if mt not in FAMILIES:
            raise RefError("unsupported model_type %r (supported: %s)" % (mt, ", ".join(FAMILIES)))
        self.model_type = mt
        self.vocab = self.req("vocab_size")
        self.hidden = self.req("hidden_size")
        self.layers = self.req("num_hidden_layers")
        self.heads = self.req("num_attention_heads")
        kv = raw.get("num_key_value_heads")
        self.kv_heads = self.heads if kv is None else int(kv)
        self.eps = float(raw.get("rms_norm_eps", 1e-6))
        self.theta = float(raw.get("rope_theta", 10000.0))
        self.tie = bool(raw.get("tie_word_embeddings", False))
        self.max_pos = raw.get("max_position_embeddings")
        act = raw.get("hidden_act", "silu")
        if act not in ("silu", "swish"):
            raise RefError("unsupported hidden_act %r (only silu)" % act)
        prf = raw.get("partial_rotary_factor", 1.0)
        if prf not in (None, 1, 1.0):
            raise RefError("partial_rotary_factor %r is not supported" % prf)
        hd = raw.get("head_dim")
        if mt in ("qwen3", "qwen3_moe") and hd is None:
            raise RefError("%s config must give head_dim" % mt)
        self.head_dim = int(hd) if hd else self.hidden // self.heads
        if mt != "deepseek_v3" and self.heads % self.kv_heads != 0:
            raise RefError("num_attention_heads %d is not a multiple of num_key_value_heads %d"
                           % (self.heads, self.kv_heads))
        self.attention_bias = bool(raw.get("attention_bias", False))
        self.mlp_bias = bool(raw.get("mlp_bias", False)) if mt == "llama" else False
        self.intermediate = raw.get("intermediate_size")
        rs = raw.get("rope_scaling")
        self.rope_scaling = rs if isinstance(rs, dict) else None
        if mt in ("qwen2", "qwen3", "qwen3_moe") and raw.get("use_sliding_window", False):
            self.sliding_window = raw.get("sliding_window")
            self.max_window_layers = raw.get("max_window_layers", self.layers)
        else:
            self.sliding_window = None
        if mt == "qwen3_moe":
            self.num_experts = int(raw.get("num_experts", 0) or 0)
            self.top_k = int(self.req("num_experts_per_tok")) if self.num_experts else 0
            self.moe_inter = raw.get("moe_intermediate_size")
            self.norm_topk = bool(raw.get("norm_topk_prob", False))
            self.sparse_step = int(raw.get("decoder_sparse_step", 1) or 1)
            self.mlp_only = set(int(i) for i in (raw.get("mlp_only_layers") or []))
        if mt == "deepseek_v3":
            self.q_lora = raw.get("q_lora_rank")
            self.kv_lora = self.req("kv_lora_rank")
            self.nope = self.req("qk_nope_head_dim")
            self.rope_dim = self.req("qk_rope_head_dim")
            self.v_dim = self.req("v_head_dim")
            self.qk_dim = self.nope + self.rope_dim
            self.rope_interleave = bool(raw.get("rope_interleave", True))
            self.first_dense = int(raw.get("first_k_dense_replace", 0) or 0)
            self.moe_freq = int(raw.get("moe_layer_freq", 1) or 1)
            self.n_routed = int(raw.get("n_routed_experts") or 0)
            if self.n_routed:
                self.top_k = self.req("num_experts_per_tok")
                self.n_group = int(raw.get("n_group") or 1)
                self.topk_group = int(raw.get("topk_group") or 1)
                self.n_shared = int(raw.get("n_shared_experts") or 0)
                self.moe_inter = self.req("moe_intermediate_size")
                self.norm_topk = bool(raw.get("norm_topk_prob", True))
                self.routed_scale = float(raw.get("routed_scaling_factor", 1.0))
                sf = raw.get("scoring_func", "sigmoid")
                if sf != "sigmoid":
                    raise RefError("deepseek_v3 scoring_func %r is not supported" % sf)
                tm = raw.get("topk_method", "noaux_tc")
                if tm != "noaux_tc":
                    raise RefError("deepseek_v3 topk_method %r is not supported" % tm)
                if self.n_routed % self.n_group != 0 or self.n_routed // self.n_group < 2:
                    raise RefError("n_routed_experts %d / n_group %d must give >= 2 experts "
                                   "per group" % (self.n_routed, self.n_group))
                if not (1 <= self.topk_group <= self.n_group):
                    raise RefError("topk_group %d out of range" % self.topk_group)
                if self.top_k > self.topk_group * (self.n_routed // self.n_group):
                    raise RefError("num_experts_per_tok exceeds the experts of topk_group groups")
        qc = raw.get("quantization_config") or {}
        self.block = tuple(int(v) for v in qc.get("weight_block_size", (128, 128)))

    def req(self, key):
        v = self.raw.get(key)
        if v is None:
            raise RefError("config.json lacks %r" % key)
        return int(v)

    # Which layers have a MoE block, in HF's rules.
    def is_moe_layer(self, i):
        if self.model_type == "qwen3_moe":
            return (i not in self.mlp_only and self.num_experts > 0
                    and (i + 1) % self.sparse_step == 0)
        if self.model_type == "deepseek_v3":
            return self.n_routed > 0 and i >= self.first_dense and i % self.moe_freq == 0
        return False

    def n_experts(self):
        return self.num_experts if self.model_type == "qwen3_moe" else self.n_routed


# --------------------------------------------------------------------------------------------
# Expected parameter names
# --------------------------------------------------------------------------------------------


def mlp_names(prefix, bias):
    names = []
    for p in ("gate_proj", "up_proj", "down_proj"):
        names.append("%s.%s.weight" % (prefix, p))
        if bias:
            names.append("%s.%s.bias" % (prefix, p))
    return names


def expected_names(cfg):
    """Trainable tensor names the model uses, and non-trainable buffers (name -> default)."""
    names = ["model.embed_tokens.weight", "model.norm.weight"]
    if not cfg.tie:
        names.append("lm_head.weight")
    buffers = {}
    mt = cfg.model_type
    for i in range(cfg.layers):
        L = "model.layers.%d" % i
        names += [L + ".input_layernorm.weight", L + ".post_attention_layernorm.weight"]
        A = L + ".self_attn"
        if mt == "deepseek_v3":
            if cfg.q_lora is None:
                names.append(A + ".q_proj.weight")
            else:
                names += [A + ".q_a_proj.weight", A + ".q_a_layernorm.weight",
                          A + ".q_b_proj.weight"]
                if cfg.attention_bias:
                    names.append(A + ".q_a_proj.bias")
            names += [A + ".kv_a_proj_with_mqa.weight", A + ".kv_a_layernorm.weight",
                      A + ".kv_b_proj.weight", A + ".o_proj.weight"]
            if cfg.attention_bias:
                names += [A + ".kv_a_proj_with_mqa.bias", A + ".o_proj.bias"]
        else:
            for p in ("q_proj", "k_proj", "v_proj", "o_proj"):
                names.append("%s.%s.weight" % (A, p))
            if mt == "qwen2":
                names += [A + ".q_proj.bias", A + ".k_proj.bias", A + ".v_proj.bias"]
            elif cfg.attention_bias:
                names += ["%s.%s.bias" % (A, p) for p in ("q_proj", "k_proj", "v_proj", "o_proj")]
            if mt in ("qwen3", "qwen3_moe"):
                names += [A + ".q_norm.weight", A + ".k_norm.weight"]
        M = L + ".mlp"
        if cfg.is_moe_layer(i):
            names.append(M + ".gate.weight")
            for e in range(cfg.n_experts()):
                names += mlp_names("%s.experts.%d" % (M, e), False)
            if mt == "deepseek_v3":
                buffers[M + ".gate.e_score_correction_bias"] = np.zeros(cfg.n_routed)
                if cfg.n_shared:
                    names += mlp_names(M + ".shared_experts", False)
        else:
            names += mlp_names(M, cfg.mlp_bias)
    return names, buffers


_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.")


def ignorable(cfg, name):
    m = _LAYER_RE.match(name)
    if m and int(m.group(1)) >= cfg.layers:
        return True  # MTP / extra layers (DeepSeek-V3 num_nextn_predict_layers)
    if name.endswith("rotary_emb.inv_freq"):
        return True  # old checkpoints saved the non-persistent RoPE buffer
    if cfg.tie and name == "lm_head.weight":
        return True  # tied: the output projection is model.embed_tokens.weight
    return False


def load_params(cfg, ckpt, dtype):
    """Dequantizes and converts the checkpoint: ({name: leaf tensor requires_grad},
    {buffer name: tensor})."""
    names, buffer_defaults = expected_names(cfg)
    name_set = set(names)
    params, buffers = {}, {}
    consumed = set()
    for name in names:
        if name not in ckpt:
            raise RefError("checkpoint lacks tensor %r" % name)
        st_dtype, shape, arr = ckpt[name]
        consumed.add(name)
        if st_dtype == "F8_E4M3":
            sname = name + "_scale_inv"
            if len(shape) != 2:
                raise RefError("%s: F8_E4M3 tensor must be 2-D, has shape %s" % (name, list(shape)))
            if sname not in ckpt:
                raise RefError("%s is F8_E4M3 but %s is missing" % (name, sname))
            s_dtype, s_shape, s_arr = ckpt[sname]
            consumed.add(sname)
            br, bc = cfg.block
            want = (-(-shape[0] // br), -(-shape[1] // bc))
            if tuple(s_shape) != want:
                raise RefError("%s has shape %s, expected %s for %s blocks of %s"
                               % (sname, list(s_shape), list(want), list(cfg.block), list(shape)))
            scale = to_f32(s_dtype, s_arr).astype(np.float32)
            full = np.repeat(np.repeat(scale, br, axis=0)[: shape[0]], bc, axis=1)[:, : shape[1]]
            w = (E4M3FN[arr] * full).astype(np.float32)  # dequantized in f32, then widened
        else:
            w = to_f32(st_dtype, arr)
        t = torch.from_numpy(np.array(w, copy=True)).to(dtype)
        if not torch.isfinite(t).all():
            raise RefError("tensor %r has non-finite values" % name)
        params[name] = t.requires_grad_(True)
    for name, default in buffer_defaults.items():
        if name in ckpt:
            st_dtype, shape, arr = ckpt[name]
            consumed.add(name)
            buffers[name] = torch.from_numpy(np.array(to_f32(st_dtype, arr), copy=True)).to(dtype)
        else:
            buffers[name] = torch.from_numpy(default).to(dtype)
    extra = []
    for name in ckpt:
        if name in consumed or ignorable(cfg, name):
            continue
        if name.endswith("_scale_inv") and name[: -len("_scale_inv")] in name_set:
            raise RefError("%s present but %s is not F8_E4M3" % (name, name[: -len("_scale_inv")]))
        extra.append(name)
    if extra:
        raise RefError("checkpoint has tensors the %s model does not use: %s%s"
                       % (cfg.model_type, ", ".join(sorted(extra)[:8]),
                          " ..." if len(extra) > 8 else ""))
    check_shapes(cfg, params, buffers)
    return params, buffers


def check_shapes(cfg, P, B):
    H = cfg.hidden

    def want(name, shape):
        t = P[name] if name in P else B[name]
        if tuple(t.shape) != tuple(shape):
            raise RefError("tensor %r has shape %s, config implies %s"
                           % (name, list(t.shape), list(shape)))

    want("model.embed_tokens.weight", (cfg.vocab, H))
    want("model.norm.weight", (H,))
    if not cfg.tie:
        want("lm_head.weight", (cfg.vocab, H))
    for i in range(cfg.layers):
        L = "model.layers.%d" % i
        A = L + ".self_attn"
        want(L + ".input_layernorm.weight", (H,))
        want(L + ".post_attention_layernorm.weight", (H,))
        if cfg.model_type == "deepseek_v3":
            nh = cfg.heads
            if cfg.q_lora is None:
                want(A + ".q_proj.weight", (nh * cfg.qk_dim, H))
            else:
                want(A + ".q_a_proj.weight", (cfg.q_lora, H))
                want(A + ".q_a_layernorm.weight", (cfg.q_lora,))
                want(A + ".q_b_proj.weight", (nh * cfg.qk_dim, cfg.q_lora))
            want(A + ".kv_a_proj_with_mqa.weight", (cfg.kv_lora + cfg.rope_dim, H))
            want(A + ".kv_a_layernorm.weight", (cfg.kv_lora,))
            want(A + ".kv_b_proj.weight", (nh * (cfg.nope + cfg.v_dim), cfg.kv_lora))
            want(A + ".o_proj.weight", (H, nh * cfg.v_dim))
        else:
            d = cfg.head_dim
            want(A + ".q_proj.weight", (cfg.heads * d, H))
            want(A + ".k_proj.weight", (cfg.kv_heads * d, H))
            want(A + ".v_proj.weight", (cfg.kv_heads * d, H))
            want(A + ".o_proj.weight", (H, cfg.heads * d))
            if cfg.model_type in ("qwen3", "qwen3_moe"):
                want(A + ".q_norm.weight", (d,))
                want(A + ".k_norm.weight", (d,))
        M = L + ".mlp"
        if cfg.is_moe_layer(i):
            E = cfg.n_experts()
            want(M + ".gate.weight", (E, H))
            inter = cfg.moe_inter
            for e in range(E):
                want("%s.experts.%d.gate_proj.weight" % (M, e), (inter, H))
                want("%s.experts.%d.up_proj.weight" % (M, e), (inter, H))
                want("%s.experts.%d.down_proj.weight" % (M, e), (H, inter))
            if cfg.model_type == "deepseek_v3":
                want(M + ".gate.e_score_correction_bias", (E,))
                if cfg.n_shared:
                    si = cfg.moe_inter * cfg.n_shared
                    want(M + ".shared_experts.gate_proj.weight", (si, H))
                    want(M + ".shared_experts.down_proj.weight", (H, si))
        else:
            inter = cfg.intermediate
            if inter is None:
                raise RefError("config.json lacks 'intermediate_size'")
            want(M + ".gate_proj.weight", (inter, H))
            want(M + ".up_proj.weight", (inter, H))
            want(M + ".down_proj.weight", (H, inter))


# --------------------------------------------------------------------------------------------
# RoPE (modeling_rope_utils semantics)
# --------------------------------------------------------------------------------------------


def _get_mscale(scale, mscale=1.0):
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def rope_inv_freq(cfg, dim, dtype):
    """(inv_freq [dim/2], attention_factor) for the config's rope_scaling."""
    base = cfg.theta
    rs = cfg.rope_scaling
    rtype = "default"
    if rs is not None:
        rtype = rs.get("rope_type", rs.get("type", "default")) or "default"
    exps = torch.arange(0, dim, 2, dtype=torch.int64).to(dtype) / dim
    pos_freqs = base ** exps
    inv_freq = 1.0 / pos_freqs
    if rtype == "default":
        return inv_freq, 1.0
    if rtype == "linear":
        return inv_freq / float(rs["factor"]), 1.0
    if rtype == "llama3":
        factor = float(rs["factor"])
        low_ff = float(rs["low_freq_factor"])
        high_ff = float(rs["high_freq_factor"])
        old_ctx = float(rs["original_max_position_embeddings"])
        low_wl = old_ctx / low_ff
        high_wl = old_ctx / high_ff
        wavelen = 2 * math.pi / inv_freq
        inv_l = torch.where(wavelen > low_wl, inv_freq / factor, inv_freq)
        smooth = (old_ctx / wavelen - low_ff) / (high_ff - low_ff)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        is_medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
        return torch.where(is_medium, smoothed, inv_l), 1.0
    if rtype == "yarn":
        factor = float(rs["factor"])
        orig = rs.get("original_max_position_embeddings")
        if orig is None:
            orig = cfg.max_pos
        elif cfg.max_pos is not None and abs(cfg.max_pos / orig - factor) > 1e-9:
            # transformers versions differ here: some use max_position_embeddings / original
            # as the factor, newer ones the explicit factor.  We use the explicit factor.
            print("torch_reference: warning: rope_scaling.factor %g != max_position_embeddings/"
                  "original_max_position_embeddings %g; using factor"
                  % (factor, cfg.max_pos / orig), file=sys.stderr)
        orig = float(orig)
        attention_factor = rs.get("attention_factor")
        mscale = rs.get("mscale")
        mscale_all_dim = rs.get("mscale_all_dim")
        if attention_factor is None:
            if mscale and mscale_all_dim:
                attention_factor = _get_mscale(factor, mscale) / _get_mscale(factor, mscale_all_dim)
            else:
                attention_factor = _get_mscale(factor)
        beta_fast = rs.get("beta_fast") or 32
        beta_slow = rs.get("beta_slow") or 1
        truncate = rs.get("truncate", True)

        def corr_dim(n_rot):
            return (dim * math.log(orig / (n_rot * 2 * math.pi))) / (2 * math.log(base))

        low, high = corr_dim(beta_fast), corr_dim(beta_slow)
        if truncate:
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001
        ramp = torch.clamp((torch.arange(dim // 2, dtype=dtype) - low) / (high - low), 0, 1)
        extra = 1 - ramp
        inv_extra = 1.0 / pos_freqs
        inv_inter = 1.0 / (factor * pos_freqs)
        return inv_inter * (1 - extra) + inv_extra * extra, float(attention_factor)
    raise RefError("rope_scaling type %r is not supported" % rtype)


def rope_cos_sin(cfg, dim, length, dtype):
    inv_freq, att = rope_inv_freq(cfg, dim, dtype)
    pos = torch.arange(length, dtype=dtype)
    freqs = pos[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * att, emb.sin() * att  # [L, dim]


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def apply_rope(x, cos, sin):
    return x * cos + rotate_half(x) * sin


def deinterleave(x):
    """HF apply_rotary_pos_emb_interleave's permutation: (x0,x1,x2,x3..) -> (x0,x2,..,x1,x3,..)."""
    *lead, d = x.shape
    return x.reshape(*lead, d // 2, 2).transpose(-1, -2).reshape(*lead, d)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


class Model:
    def __init__(self, cfg, params, buffers, dtype):
        self.cfg = cfg
        self.P = params
        self.B = buffers
        self.dtype = dtype
        self.moe_layers = [i for i in range(cfg.layers) if cfg.is_moe_layer(i)]

    # -- building blocks --
    def linear(self, x, name, bias=False):
        y = x @ self.P[name + ".weight"].t()
        if bias:
            y = y + self.P[name + ".bias"]
        return y

    def rms(self, x, name):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.P[name] * (x * torch.rsqrt(var + self.cfg.eps))

    def mlp(self, x, prefix, bias=False):
        g = self.linear(x, prefix + ".gate_proj", bias)
        u = self.linear(x, prefix + ".up_proj", bias)
        return self.linear(torch.nn.functional.silu(g) * u, prefix + ".down_proj", bias)

    def attend(self, q, k, v, scale, layer):
        """q [h, L, dq], k [h, L, dq], v [h, L, dv] -> [L, h*dv]; causal, eager softmax."""
        L = q.shape[1]
        scores = (q @ k.transpose(-1, -2)) * scale
        mask = torch.ones(L, L, dtype=torch.bool).triu(1)
        cfg = self.cfg
        if cfg.sliding_window is not None and layer >= cfg.max_window_layers:
            if L > cfg.sliding_window:
                raise RefError("sliding-window attention is not implemented (sequence length %d "
                               "> sliding_window %d)" % (L, cfg.sliding_window))
        scores = scores.masked_fill(mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        out = probs @ v  # [h, L, dv]
        return out.transpose(0, 1).reshape(L, -1)

    # -- attention variants --
    def gqa_attention(self, x, i, cos, sin):
        cfg = self.cfg
        A = "model.layers.%d.self_attn" % i
        L = x.shape[0]
        d = cfg.head_dim
        qkv_bias = cfg.model_type == "qwen2" or cfg.attention_bias
        o_bias = cfg.model_type != "qwen2" and cfg.attention_bias
        q = self.linear(x, A + ".q_proj", qkv_bias).view(L, cfg.heads, d)
        k = self.linear(x, A + ".k_proj", qkv_bias).view(L, cfg.kv_heads, d)
        v = self.linear(x, A + ".v_proj", qkv_bias).view(L, cfg.kv_heads, d)
        if cfg.model_type in ("qwen3", "qwen3_moe"):
            q = self.rms(q, A + ".q_norm.weight")
            k = self.rms(k, A + ".k_norm.weight")
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # [h, L, d]
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        rep = cfg.heads // cfg.kv_heads
        if rep > 1:
            k = k.repeat_interleave(rep, dim=0)
            v = v.repeat_interleave(rep, dim=0)
        out = self.attend(q, k, v, d ** -0.5, i)
        return self.linear(out, A + ".o_proj", o_bias)

    def mla_attention(self, x, i, cos, sin):
        cfg = self.cfg
        A = "model.layers.%d.self_attn" % i
        L = x.shape[0]
        nh = cfg.heads
        if cfg.q_lora is None:
            q = self.linear(x, A + ".q_proj")
        else:
            qa = self.linear(x, A + ".q_a_proj", cfg.attention_bias)
            q = self.linear(self.rms(qa, A + ".q_a_layernorm.weight"), A + ".q_b_proj")
        q = q.view(L, nh, cfg.qk_dim).transpose(0, 1)  # [h, L, qk]
        q_pass, q_rot = q[..., : cfg.nope], q[..., cfg.nope :]
        ckv = self.linear(x, A + ".kv_a_proj_with_mqa", cfg.attention_bias)
        k_lat, k_rot = ckv[:, : cfg.kv_lora], ckv[:, cfg.kv_lora :]
        kv = self.linear(self.rms(k_lat, A + ".kv_a_layernorm.weight"), A + ".kv_b_proj")
        kv = kv.view(L, nh, cfg.nope + cfg.v_dim).transpose(0, 1)
        k_pass, v = kv[..., : cfg.nope], kv[..., cfg.nope :]
        k_rot = k_rot.view(1, L, cfg.rope_dim)  # one head shared by all heads
        if cfg.rope_interleave:
            q_rot, k_rot = deinterleave(q_rot), deinterleave(k_rot)
        q_rot = apply_rope(q_rot, cos, sin)
        k_rot = apply_rope(k_rot, cos, sin).expand(nh, L, cfg.rope_dim)
        qs = torch.cat((q_pass, q_rot), dim=-1)
        ks = torch.cat((k_pass, k_rot), dim=-1)
        scale = cfg.qk_dim ** -0.5
        rs = cfg.rope_scaling
        if rs is not None:
            mad = rs.get("mscale_all_dim", 0)
            if mad:
                m = _get_mscale(float(rs["factor"]), mad)
                scale = scale * m * m
        out = self.attend(qs, ks, v, scale, i)
        return self.linear(out, A + ".o_proj", cfg.attention_bias)

    # -- MoE --
    def route(self, x, prefix, forced):
        """Returns (ids [L, k] long, weights [L, k]); forced: [L][k] expert ids or None."""
        cfg = self.cfg
        logits = x @ self.P[prefix + ".gate.weight"].t()  # [L, E]
        E = logits.shape[-1]
        if cfg.model_type == "qwen3_moe":
            scores = torch.softmax(logits, dim=-1)
            if forced is None:
                ids = torch.topk(scores, cfg.top_k, dim=-1)[1]
            else:
                ids = forced
            w = scores.gather(1, ids)
            if cfg.norm_topk:
                w = w / w.sum(dim=-1, keepdim=True)
            return ids, w
        # deepseek_v3 noaux_tc
        scores = logits.sigmoid()
        if forced is None:
            with torch.no_grad():
                choice = scores + self.B[prefix + ".gate.e_score_correction_bias"][None, :]
                per = E // cfg.n_group
                gs = choice.view(-1, cfg.n_group, per).topk(2, dim=-1)[0].sum(dim=-1)
                gidx = torch.topk(gs, cfg.topk_group, dim=-1)[1]
                gmask = torch.zeros_like(gs).scatter_(1, gidx, 1.0)
                smask = gmask.unsqueeze(-1).expand(-1, cfg.n_group, per).reshape(-1, E)
                choice = choice.masked_fill(~smask.bool(), 0.0)
                ids = torch.topk(choice, cfg.top_k, dim=-1)[1]
        else:
            ids = forced
        w = scores.gather(1, ids)
        if cfg.norm_topk:
            w = w / (w.sum(dim=-1, keepdim=True) + 1e-20)
        w = w * cfg.routed_scale
        return ids, w

    def moe(self, x, i, forced):
        cfg = self.cfg
        M = "model.layers.%d.mlp" % i
        ids, w = self.route(x, M, forced)
        # Sorted view of the routing for the output (ids ascending, weights alongside).
        order = torch.argsort(ids, dim=-1)
        sids = ids.gather(1, order)
        sw = w.gather(1, order)
        out = torch.zeros_like(x)
        E = cfg.n_experts()
        for e in range(E):
            tok, slot = torch.where(ids == e)
            if tok.numel() == 0:
                continue
            y = self.mlp(x[tok], "%s.experts.%d" % (M, e))
            out = out.index_add(0, tok, y * w[tok, slot].unsqueeze(-1))
        if cfg.model_type == "deepseek_v3" and cfg.n_shared:
            out = out + self.mlp(x, M + ".shared_experts")
        return out, sids.tolist(), sw.detach().tolist()

    # -- full forward for one sequence --
    def forward(self, tokens, forced=None):
        """tokens: list of ids.  Returns (logits [L, V], routing [moe][L][k], weights)."""
        cfg = self.cfg
        L = len(tokens)
        ids = torch.tensor(tokens, dtype=torch.long)
        h = self.P["model.embed_tokens.weight"][ids]
        if cfg.model_type == "deepseek_v3":
            cos, sin = rope_cos_sin(cfg, cfg.rope_dim, L, self.dtype)
        else:
            cos, sin = rope_cos_sin(cfg, cfg.head_dim, L, self.dtype)
        routing, routing_w = [], []
        for i in range(cfg.layers):
            Lp = "model.layers.%d" % i
            a_in = self.rms(h, Lp + ".input_layernorm.weight")
            if cfg.model_type == "deepseek_v3":
                a = self.mla_attention(a_in, i, cos, sin)
            else:
                a = self.gqa_attention(a_in, i, cos, sin)
            h = h + a
            m_in = self.rms(h, Lp + ".post_attention_layernorm.weight")
            if cfg.is_moe_layer(i):
                f = None
                if forced is not None:
                    f = forced[len(routing)]
                m, r, rw = self.moe(m_in, i, f)
                routing.append(r)
                routing_w.append(rw)
            else:
                m = self.mlp(m_in, Lp + ".mlp", cfg.mlp_bias)
            h = h + m
        h = self.rms(h, "model.norm.weight")
        head = self.P["model.embed_tokens.weight" if cfg.tie else "lm_head.weight"]
        return h @ head.t(), routing, routing_w


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def parse_input(path, cfg, n_moe):
    try:
        with open(path) as f:
            inp = json.load(f)
    except (OSError, ValueError) as e:
        raise RefError("cannot read input %s: %s" % (path, e))
    if not isinstance(inp, dict) or not isinstance(inp.get("sequences"), list):
        raise RefError("input must be an object with a 'sequences' list")
    seqs = inp["sequences"]
    for s, seq in enumerate(seqs):
        if not isinstance(seq, list) or not seq:
            raise RefError("sequences[%d] must be a non-empty list of token ids" % s)
        for t in seq:
            if not isinstance(t, int) or isinstance(t, bool) or not (0 <= t < cfg.vocab):
                raise RefError("sequences[%d]: token %r outside [0, %d)" % (s, t, cfg.vocab))
    weights = inp.get("weights")
    if weights is None:
        weights = [[1.0] * (len(q) - 1) for q in seqs]
    if not isinstance(weights, list) or len(weights) != len(seqs):
        raise RefError("'weights' must have one list per sequence")
    for s, (w, q) in enumerate(zip(weights, seqs)):
        if not isinstance(w, list) or len(w) != len(q) - 1:
            raise RefError("weights[%d] must have %d values (sequence length - 1)" % (s, len(q) - 1))
        for v in w:
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise RefError("weights[%d] has a non-numeric or non-finite value %r" % (s, v))
    forced = inp.get("forced_routing")
    if forced is not None:
        E = cfg.n_experts() if n_moe else 0
        if not isinstance(forced, list) or len(forced) != len(seqs):
            raise RefError("'forced_routing' must have one entry per sequence")
        for s, fr in enumerate(forced):
            if not isinstance(fr, list) or len(fr) != n_moe:
                raise RefError("forced_routing[%d] must have one entry per MoE layer (%d)"
                               % (s, n_moe))
            for m, per_layer in enumerate(fr):
                if not isinstance(per_layer, list) or len(per_layer) != len(seqs[s]):
                    raise RefError("forced_routing[%d][%d] must have one entry per position (%d)"
                                   % (s, m, len(seqs[s])))
                k = None
                for p, ex in enumerate(per_layer):
                    ok = (isinstance(ex, list) and ex and len(set(ex)) == len(ex)
                          and all(isinstance(e, int) and not isinstance(e, bool) and 0 <= e < E
                                  for e in ex))
                    if not ok or (k is not None and len(ex) != k):
                        raise RefError("forced_routing[%d][%d][%d] must be a list of distinct "
                                       "expert ids in [0, %d), the same count at every position"
                                       % (s, m, p, E))
                    k = len(ex)
    return seqs, weights, forced


def parse_divergence(inp, seqs, vocab):
    """The optional "divergence" entry, checked: (kind, teacher logits, weights) or None."""
    d = inp.get("divergence")
    if d is None:
        return None
    if not isinstance(d, dict) or d.get("kind") not in ("reverse_kl", "forward_kl"):
        raise RefError("'divergence' must be an object with kind reverse_kl or forward_kl")
    logits, weights = d.get("teacher_logits"), d.get("weights")
    if not isinstance(logits, list) or not isinstance(weights, list) or \
            len(logits) != len(seqs) or len(weights) != len(seqs):
        raise RefError("divergence: teacher_logits and weights need one entry per sequence")
    for s, q in enumerate(seqs):
        rows = len(q) - 1
        if len(weights[s]) != rows or len(logits[s]) != rows or \
                any(len(r) != vocab for r in logits[s]):
            raise RefError("divergence: sequence %d needs %d rows of %d teacher logits and %d weights"
                           % (s, rows, vocab, rows))
    return d["kind"], logits, weights


def divergence_rows(kind, logits, teacher):
    """Per row: KL(softmax(logits) || softmax(teacher)) or KL(teacher || model), autograd-able."""
    logp = torch.log_softmax(logits, dim=-1)
    logq = torch.log_softmax(teacher, dim=-1)
    if kind == "reverse_kl":
        return (logp.exp() * (logp - logq)).sum(-1)
    return (logq.exp() * (logq - logp)).sum(-1)


def round_to_bf16(params):
    """Mixed precision as the learner runs it (learner.precision bf16): every 2-D weight but the
    MoE routers (the projections, the embedding, the output head) is replaced by its f32 value
    rounded to bfloat16 (nearest even), a new leaf; the gradients are then those with respect to
    the rounded values, which the learner applies to its f32 masters."""
    for name, t in params.items():
        if t.dim() == 2 and not name.endswith("mlp.gate.weight"):
            rounded = t.detach().to(torch.float32).to(torch.bfloat16).to(t.dtype)
            params[name] = rounded.requires_grad_(True)


def run(model_dir, input_path, out_dir, dtype_name, bf16_weights=False):
    dtype = {"float64": torch.float64, "float32": torch.float32}[dtype_name]
    cfg_path = os.path.join(model_dir, "config.json")
    try:
        with open(cfg_path) as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        raise RefError("cannot read %s: %s" % (cfg_path, e))
    cfg = Config(raw)
    ckpt = load_checkpoint(model_dir)
    params, buffers = load_params(cfg, ckpt, dtype)
    del ckpt
    if bf16_weights:
        round_to_bf16(params)
    model = Model(cfg, params, buffers, dtype)
    n_moe = len(model.moe_layers)
    seqs, weights, forced = parse_input(input_path, cfg, n_moe)
    with open(input_path) as f:
        div = parse_divergence(json.load(f), seqs, cfg.vocab)
    divergences = []

    logprobs, entropy, routing, routing_w = [], [], [], []
    loss = torch.zeros((), dtype=dtype)
    for s, seq in enumerate(seqs):
        f = None
        if forced is not None:
            f = [torch.tensor(fr, dtype=torch.long) for fr in forced[s]]
        logits, r, rw = model.forward(seq, f)
        routing.append(r)
        routing_w.append(rw)
        L = len(seq)
        if L < 2:
            logprobs.append([])
            entropy.append([])
            divergences.append([])
            continue
        logp = torch.log_softmax(logits[:-1], dim=-1)  # [L-1, V]
        tgt = torch.tensor(seq[1:], dtype=torch.long)
        lp = logp.gather(1, tgt[:, None])[:, 0]
        ent = -(logp.exp() * logp).sum(-1)
        loss = loss + (torch.tensor(weights[s], dtype=dtype) * lp).sum()
        if div is not None:
            kind, teacher_logits, div_weights = div
            d = divergence_rows(kind, logits[:-1], torch.tensor(teacher_logits[s], dtype=dtype))
            loss = loss + (torch.tensor(div_weights[s], dtype=dtype) * d).sum()
            divergences.append([float(v) for v in d.detach().tolist()])
        logprobs.append([float(v) for v in lp.detach().tolist()])
        entropy.append([float(v) for v in ent.detach().tolist()])

    names = sorted(params)
    if loss.requires_grad:
        grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
    else:
        grads = [None] * len(names)
    out = {}
    for n, g in zip(names, grads):
        if g is None:
            g = torch.zeros_like(params[n])
        a = g.detach().to(torch.float32).numpy()
        if not np.isfinite(a).all():
            raise RefError("non-finite gradient for %s" % n)
        out[n] = ("F32", tuple(a.shape), a)

    result = {
        "logprobs": logprobs,
        "entropy": entropy,
        "routing": routing,
        "routing_weights": routing_w,
        "loss": float(loss.detach()),
    }
    if div is not None:
        result["divergence"] = divergences
    for s in range(len(seqs)):
        if not all(math.isfinite(v) for v in logprobs[s] + entropy[s]):
            raise RefError("non-finite logprob/entropy in sequence %d" % s)
    if not math.isfinite(result["loss"]):
        raise RefError("non-finite loss")
    os.makedirs(out_dir, exist_ok=True)
    write_safetensors(os.path.join(out_dir, "grads.safetensors"), out,
                      metadata={"format": "pt", "dtype": dtype_name})
    tmp = os.path.join(out_dir, "result.json.tmp")
    with open(tmp, "w") as f:
        json.dump(result, f, allow_nan=False)
        f.write("\n")
    os.replace(tmp, os.path.join(out_dir, "result.json"))


def main(argv):
    ap = argparse.ArgumentParser(
        description="PyTorch reference logprobs/entropy/routing/gradients for a HF checkpoint.")
    ap.add_argument("model_dir")
    ap.add_argument("input_json")
    ap.add_argument("output_dir")
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--bf16-weights", action="store_true",
                    help="compute with the 2-D weights (not routers) rounded to bfloat16")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # tiny models; one thread keeps results bit-reproducible
    try:
        run(args.model_dir, args.input_json, args.output_dir, args.dtype, args.bf16_weights)
    except RefError as e:
        print("torch_reference: error: %s" % e, file=sys.stderr)
        return 1
    except (KeyError, TypeError, ValueError, IndexError) as e:  # malformed config or input
        import traceback
        traceback.print_exc()
        print("torch_reference: error: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
