"""PyTorch reference for learner/optimizer and learner/schedule.

AdamW: torch.optim.AdamW (foreach=False) with two parameter groups (weight decay / no decay for
1-D tensors unless decay_1d), gradients clipped by torch.nn.utils.clip_grad_norm_ before every
step, the learning rate set per step. Schedule: torch.optim.lr_scheduler.LambdaLR driven by the
documented formula. Usage: optimizer_reference.py IN.json OUT.json.
IN: {"params": [{"name", "shape", "value", "trainable"}], "steps": [{"grads": [[...] per param],
"lr": x}], "options": {"beta1", "beta2", "eps", "weight_decay", "decay_1d", "max_norm"},
"schedules": [{"lr", "warmup_steps", "decay", "total_steps", "min_lr_ratio", "steps"}]}.
OUT: {"norms": [...], "params": [[...]], "exp_avg": [[...]], "exp_avg_sq": [[...]],
"clipped_grads": [[...] of the last step], "schedules": [[lr per step]]}.
"""
import json
import math
import sys

import torch


def lr_lambda(s, warmup, decay, total, min_ratio):
    if s < warmup:
        return (s + 1) / warmup
    if decay == "constant":
        return 1.0
    progress = min(1.0, (s - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def main():
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    o = cfg["options"]
    params = []
    for p in cfg["params"]:
        t = torch.tensor(p["value"], dtype=torch.float32).view(p["shape"])
        params.append(torch.nn.Parameter(t, requires_grad=p["trainable"]))
    trainable = [(p, spec) for p, spec in zip(params, cfg["params"]) if spec["trainable"]]
    decay = [p for p, spec in trainable if o["decay_1d"] or len(spec["shape"]) != 1]
    no_decay = [p for p, spec in trainable if not (o["decay_1d"] or len(spec["shape"]) != 1)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1.0, betas=(o["beta1"], o["beta2"]), eps=o["eps"], foreach=False)
    norms = []
    for step in cfg["steps"]:
        for p, g in zip(params, step["grads"]):
            p.grad = torch.tensor(g, dtype=torch.float32).view(p.shape) if p.requires_grad else None
        tp = [p for p, _ in trainable]
        norms.append(torch.nn.utils.clip_grad_norm_(tp, o["max_norm"]).item())
        for group in opt.param_groups:
            group["lr"] = step["lr"]
        opt.step()
    out = {
        "norms": norms,
        "params": [p.detach().view(-1).tolist() for p in params],
        "exp_avg": [opt.state[p]["exp_avg"].view(-1).tolist() if p.requires_grad else [] for p in params],
        "exp_avg_sq": [opt.state[p]["exp_avg_sq"].view(-1).tolist() if p.requires_grad else [] for p in params],
        "clipped_grads": [p.grad.view(-1).tolist() if p.requires_grad else [] for p in params],
        "schedules": [],
    }
    for s in cfg["schedules"]:
        w = torch.nn.Parameter(torch.zeros(1))
        sgd = torch.optim.SGD([w], lr=s["lr"])
        sched = torch.optim.lr_scheduler.LambdaLR(
            sgd, lambda k: lr_lambda(k, s["warmup_steps"], s["decay"], s["total_steps"], s["min_lr_ratio"]))
        lrs = []
        for _ in range(s["steps"]):
            lrs.append(sgd.param_groups[0]["lr"])
            sgd.step()
            sched.step()
        out["schedules"].append(lrs)
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
