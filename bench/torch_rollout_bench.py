"""PyTorch eager side of bench/rollout_bench.sh: the same model (model/testdata/torch_reference.py
weights and building blocks, f32) generating greedily with a KV cache (per-layer key/value
tensors [B, kv_heads, S, head_dim], concatenated each step), on the same thread count.
GQA families only (llama, qwen2, qwen3, qwen3_moe).
Usage: /usr/bin/python3 bench/torch_rollout_bench.py MODEL_DIR PROMPT_LEN DECODE_STEPS THREADS
Prints one JSON object with the keys bench/rollout_bench.cc prints."""
import json
import os
import runpy
import sys
import time

# Debian's PyTorch runs its matrix products on OpenBLAS, whose own threads torch.set_num_threads
# does not govern: left alone, a "1-thread" PyTorch multiplies on every core (and a 2-thread one
# oversubscribes). Pin OpenBLAS (and OpenMP) to the bench's thread count before torch loads.
if len(sys.argv) > 4:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = sys.argv[4]

import torch  # noqa: E402


class CachedModel:
    def __init__(self, ref, model):
        self.ref, self.m, self.cfg = ref, model, model.cfg
        cos, sin = ref["rope_cos_sin"](self.cfg, self.cfg.head_dim, 4096, torch.float32)
        self.cos, self.sin = cos, sin

    def step(self, ids, cache, past):
        """ids [B, T]; cache: list of (k, v) [B, kvh, past, d] or None -> next-token logits [B, V]."""
        cfg, m, P = self.cfg, self.m, self.m.P
        B, T = ids.shape
        d = cfg.head_dim
        cos, sin = self.cos[past:past + T], self.sin[past:past + T]
        h = P["model.embed_tokens.weight"][ids]
        new_cache = []
        qkv_bias = cfg.model_type == "qwen2" or cfg.attention_bias
        o_bias = cfg.model_type != "qwen2" and cfg.attention_bias
        mask = torch.ones(T, past + T, dtype=torch.bool).triu(past + 1)
        for i in range(cfg.layers):
            A = "model.layers.%d.self_attn" % i
            x = m.rms(h, "model.layers.%d.input_layernorm.weight" % i)
            q = m.linear(x, A + ".q_proj", qkv_bias).view(B, T, cfg.heads, d)
            k = m.linear(x, A + ".k_proj", qkv_bias).view(B, T, cfg.kv_heads, d)
            v = m.linear(x, A + ".v_proj", qkv_bias).view(B, T, cfg.kv_heads, d)
            if cfg.model_type in ("qwen3", "qwen3_moe"):
                q = m.rms(q, A + ".q_norm.weight")
                k = m.rms(k, A + ".k_norm.weight")
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            q = self.ref["apply_rope"](q, cos, sin)
            k = self.ref["apply_rope"](k, cos, sin)
            if cache is not None:
                k = torch.cat((cache[i][0], k), dim=2)
                v = torch.cat((cache[i][1], v), dim=2)
            new_cache.append((k, v))
            rep = cfg.heads // cfg.kv_heads
            kk = k.repeat_interleave(rep, dim=1) if rep > 1 else k
            vv = v.repeat_interleave(rep, dim=1) if rep > 1 else v
            scores = (q @ kk.transpose(-1, -2)) * d ** -0.5
            probs = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
            out = (probs @ vv).transpose(1, 2).reshape(B, T, -1)
            h = h + m.linear(out, A + ".o_proj", o_bias)
            x = m.rms(h, "model.layers.%d.post_attention_layernorm.weight" % i)
            if cfg.is_moe_layer(i):
                y, _, _ = m.moe(x.reshape(B * T, -1), i, None)
                h = h + y.view(B, T, -1)
            else:
                h = h + m.mlp(x, "model.layers.%d.mlp" % i, cfg.mlp_bias)
        last = m.rms(h[:, -1], "model.norm.weight")
        head = P["model.embed_tokens.weight" if cfg.tie else "lm_head.weight"]
        return last @ head.t(), new_cache

    def generate(self, prompts, steps, share_prefix_of=1):
        """Greedy; with share_prefix_of=G, prompts[0] is prefilled once and its cache copied G times."""
        if share_prefix_of > 1:
            logits, cache = self.step(torch.tensor(prompts[:1]), None, 0)
            cache = [(k.expand(share_prefix_of, -1, -1, -1).contiguous(),
                      v.expand(share_prefix_of, -1, -1, -1).contiguous()) for k, v in cache]
            logits = logits.expand(share_prefix_of, -1)
        else:
            logits, cache = self.step(torch.tensor(prompts), None, 0)
        past = len(prompts[0])
        for _ in range(steps - 1):
            nxt = logits.argmax(-1, keepdim=True)
            logits, cache = self.step(nxt, cache, past)
            past += 1


def prompts(n, length, salt, vocab):
    return [[(7 * i + 13 * j + salt) % vocab for j in range(length)] for i in range(n)]


def timed(fn, repeats=2):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    model_dir, plen, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    ref = runpy.run_path(os.path.join(os.path.dirname(__file__), "..", "model", "testdata", "torch_reference.py"))
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = ref["Config"](json.load(f))
    params, buffers = ref["load_params"](cfg, ref["load_checkpoint"](model_dir), torch.float32)
    cm = CachedModel(ref, ref["Model"](cfg, params, buffers, torch.float32))
    V = cfg.vocab
    out = {"impl": "pytorch", "threads": threads}
    with torch.no_grad():
        pf = prompts(8, plen, 1, V)
        t = timed(lambda: cm.generate(pf, 1))
        out["prefill_tok_s"] = 8 * plen / t
        for b in (1, 64):
            p = prompts(b, 16, 2, V)
            t_pf = timed(lambda: cm.generate(p, 1))
            t_all = timed(lambda: cm.generate(p, steps))
            out["decode_b%d_tok_s" % b] = b * (steps - 1) / max(t_all - t_pf, 1e-9)
        g = prompts(1, plen, 3, V) * 16
        out["group16_shared_s"] = timed(lambda: cm.generate(g, steps, share_prefix_of=16))
        out["group16_indep_s"] = timed(lambda: cm.generate(g, steps))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
