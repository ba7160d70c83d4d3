"""PyTorch (float64 autograd) reference for learner/policy_loss.

Written the way TRL / verl write these losses: sequences padded to [N, Lmax] with a completion
mask, per-token losses combined with masked sums. Usage: policy_loss_reference.py IN.json OUT.json
where IN is {"cases": [{"options": {...}, "logprobs": [...], "old": [...], "rollout": [...],
"ref": [...], "adv": [...], "offsets": [...], "mask": [...], "token_adv": [...] (optional),
"divergences": [...] (optional, with options.divergence_coef)}]}
(flat per-token arrays) and OUT is
{"results": [{"loss": x, "grad": [...], "clip_frac": x, "ratio_mean": x, "kl_mean": x,
"is_weight_mean": x}]}.
"""
import json
import math
import sys

import torch

D = torch.float64


def pad(flat, offsets, fill=0.0):
    n = len(offsets) - 1
    lmax = max([offsets[i + 1] - offsets[i] for i in range(n)] + [1])
    out = torch.full((n, lmax), fill, dtype=D)
    for i in range(n):
        b, e = offsets[i], offsets[i + 1]
        if e > b:
            out[i, : e - b] = torch.tensor(flat[b:e], dtype=D)
    return out


def run(case):
    o = case["options"]
    offsets = case["offsets"]
    n_seq = len(offsets) - 1
    T = offsets[-1]
    mask_flat = case.get("mask") or [1] * T
    mask = pad([float(m != 0) for m in mask_flat], offsets)  # padding is 0
    logp = pad(case["logprobs"], offsets).requires_grad_(True)
    old = pad(case["old"], offsets)
    adv = torch.tensor(case["adv"], dtype=D).unsqueeze(1)  # [N, 1]
    if case.get("token_adv"):  # per-token advantages (on-policy distillation) added to A_i
        adv = adv + pad(case["token_adv"], offsets)  # [N, Lmax]
    lo, hi = 1.0 - o["clip_eps_low"], 1.0 + o["clip_eps_high"]

    log_ratio = logp - old
    if o["ratio_level"] == "sequence":  # GSPO-token (TRL importance_sampling_level="sequence_token")
        seq_log = (log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        log_iw = logp - logp.detach() + seq_log.detach().unsqueeze(-1)
    else:
        log_iw = log_ratio
    coef_1 = torch.exp(log_iw)
    surrogate = o.get("surrogate", "clip")
    if surrogate == "clip":
        coef_2 = torch.clamp(coef_1, lo, hi)
        per_token_loss = -torch.min(coef_1 * adv, coef_2 * adv)
        is_low = (coef_1 < lo) & (adv < 0)
        is_high = (coef_1 > hi) & (adv > 0)
    elif surrogate == "cispo":  # MiniMax-M1: sg(clip(r)) * A * log pi, on every token
        clipped = torch.clamp(coef_1, lo, hi).detach()
        per_token_loss = -clipped * adv * logp
        is_low = coef_1 < lo
        is_high = coef_1 > hi
    elif surrogate == "sapo":  # f(r) = (4 / tau) sigmoid(tau (r - 1)), tau by the sign of A
        tau = torch.where(adv > 0, torch.tensor(o["sapo_tau_pos"], dtype=D), torch.tensor(o["sapo_tau_neg"], dtype=D))
        per_token_loss = -(4.0 / tau) * torch.sigmoid(tau * (coef_1 - 1.0)) * adv
        is_low = torch.zeros_like(coef_1, dtype=torch.bool)
        is_high = is_low
    elif surrogate == "gmpo":  # geometric mean of sign-aware clipped token ratios (log space)
        sgn = torch.sign(adv)
        clamped = torch.clamp(log_ratio, -o["clip_eps_low"], o["clip_eps_high"])
        chosen = sgn * torch.min(sgn * log_ratio, sgn * clamped)
        seq_ratio = torch.exp((chosen * mask).sum(-1) / mask.sum(-1).clamp(min=1.0))  # [N]
        per_token_loss = (-adv * seq_ratio.unsqueeze(-1)).expand_as(log_ratio)
        is_low = (log_ratio < -o["clip_eps_low"]) & (adv < 0)
        is_high = (log_ratio > o["clip_eps_high"]) & (adv > 0)
    else:
        raise ValueError(surrogate)

    mode = o["is_correction"]
    if mode != "none":
        rollout = pad(case["rollout"], offsets)
        cap = o["is_cap"]
        d = (old - rollout) * mask
        if mode == "token_tis":
            w = torch.clamp(torch.exp(d), max=cap)
        elif mode == "seq_tis":
            w = torch.clamp(torch.exp(d.sum(-1, keepdim=True)), max=cap).expand_as(d)
        elif mode == "token_mask":
            w = (d.abs() <= math.log(cap)).to(D)
        elif mode == "seq_mask":
            w = (d.sum(-1, keepdim=True).abs() <= math.log(cap)).to(D).expand_as(d)
        elif mode in ("seq_tis_geo", "seq_mask_geo"):  # geometric mean of the token ratios
            g = d.sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1.0)
            if mode == "seq_tis_geo":
                w = torch.clamp(torch.exp(g), max=cap).expand_as(d)
            else:
                w = (g.abs() <= math.log(cap)).to(D).expand_as(d)
        elif mode == "icepop":  # two-sided token mask on pi_learner / pi_rollout
            ratio = torch.exp(old - rollout)
            w = ((ratio >= o["icepop_low"]) & (ratio <= o["icepop_high"])).to(D)
        else:
            raise ValueError(mode)
        per_token_loss = per_token_loss * w.detach()
    else:
        w = torch.ones_like(old)

    beta = o["kl_beta"]
    kl = None
    if beta > 0:
        ref = pad(case["ref"], offsets)
        if o["kl_estimator"] == "k1":
            kl = logp - ref
        elif o["kl_estimator"] == "k2":
            kl = 0.5 * (logp - ref) ** 2
        else:  # k3, as in TRL: exp(ref - logp) - (ref - logp) - 1
            kl = torch.exp(ref - logp) - (ref - logp) - 1
        per_token_loss = per_token_loss + beta * kl

    div = None
    if case.get("divergences"):  # full-distribution distillation: + coef * D_t, D_t a leaf
        div = pad(case["divergences"], offsets).requires_grad_(True)
        per_token_loss = per_token_loss + o["divergence_coef"] * div

    agg = o["aggregation"]
    if agg == "token-mean":
        loss = (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)
    elif agg == "seq-mean-token-mean":
        loss = ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).sum() / n_seq
    elif agg == "seq-mean-token-sum-norm":
        loss = (per_token_loss * mask).sum(-1).sum() / (n_seq * o["norm_length"])
    elif agg == "seq-mean-token-sum":
        loss = (per_token_loss * mask).sum(-1).sum() / n_seq
    else:
        raise ValueError(agg)
    loss.backward()

    flat_grad, flat_div_grad = [], []
    for i in range(n_seq):
        flat_grad += logp.grad[i, : offsets[i + 1] - offsets[i]].tolist()
        if div is not None:
            flat_div_grad += div.grad[i, : offsets[i + 1] - offsets[i]].tolist()
    msum = mask.sum().clamp(min=1.0)
    clip_frac = (((is_low | is_high).to(D)) * mask).sum() / msum
    return {
        "loss": loss.item(),
        "grad": flat_grad,
        "clip_frac": clip_frac.item(),
        "ratio_mean": ((coef_1.detach() * mask).sum() / msum).item(),
        "kl_mean": ((kl.detach() * mask).sum() / msum).item() if kl is not None else 0.0,
        "is_weight_mean": ((w * mask).sum() / msum).item(),
        "divergence_grad": flat_div_grad,
        "divergence_mean": ((div.detach() * mask).sum() / msum).item() if div is not None else 0.0,
    }


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)["cases"]
    with open(sys.argv[2], "w") as f:
        json.dump({"results": [run(c) for c in cases]}, f)


if __name__ == "__main__":
    main()
