"""PyTorch reference for learner/advantage, written as TRL's GRPOTrainer computes advantages
(rewards.view(-1, G), mean(dim=1), std(dim=1) unbiased, (r - mean) / (std + eps)), float64.
Groups of different sizes are handled one at a time. The other estimators: RLOO (each reward minus
the mean of the other rewards of its group), REINFORCE++ (the whole batch normalized,
(r - mean) / (std + eps)) and REINFORCE++-baseline (group mean subtracted, then the batch
normalized). Usage: advantage_reference.py IN.json OUT.json with IN {"cases": [{"rewards": [...],
"offsets": [...], "scale": "std"|"none", "unbiased": bool, "epsilon": x, "estimator":
"group_norm"|"rloo"|"reinforce_pp"|"reinforce_pp_baseline"}]} and OUT {"results": [{"advantages":
[...], "std": [...]}]}.
"""
import json
import sys

import torch


def whiten(x, case):
    """(x - mean) / (std + eps) over the whole batch; 0 where every value is equal."""
    if bool((x == x[0]).all()):
        return torch.zeros_like(x)
    return (x - x.mean()) / (x.std(unbiased=case["unbiased"]) + case["epsilon"])


def run(case):
    r = torch.tensor(case["rewards"], dtype=torch.float64)
    off = case["offsets"]
    est = case.get("estimator", "group_norm")
    if est != "group_norm":
        advs, stds = [], []
        for b, e in zip(off[:-1], off[1:]):
            g = r[b:e]
            n = e - b
            equal = bool((g == g[0]).all())
            std = torch.zeros((), dtype=torch.float64) if equal or n < 2 else g.std(unbiased=case["unbiased"])
            stds.append(std.item())
            if est == "rloo":
                a = torch.zeros_like(g) if equal else g - (g.sum() - g) / (n - 1)
            elif est == "reinforce_pp":
                a = g.clone()
            elif est == "reinforce_pp_baseline":
                a = torch.zeros_like(g) if equal else g - g.mean()
            else:
                raise ValueError(est)
            advs.append(a)
        a = torch.cat(advs)
        if est != "rloo":
            a = whiten(a, case)
        return {"advantages": a.tolist(), "std": stds}
    advs, stds = [], []
    for b, e in zip(off[:-1], off[1:]):
        g = r[b:e].view(1, -1)
        mean = g.mean(dim=1)
        std = g.std(dim=1, unbiased=case["unbiased"]) if e - b > 1 else torch.zeros(1, dtype=torch.float64)
        if bool((g == g[0, 0]).all()):
            std = torch.zeros(1, dtype=torch.float64)  # all-equal groups: advantages 0
        a = g - mean.unsqueeze(1)
        if case["scale"] == "std":
            a = a / (std.unsqueeze(1) + case["epsilon"])
        advs += a.view(-1).tolist()
        stds.append(std.item())
    return {"advantages": advs, "std": stds}


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)["cases"]
    with open(sys.argv[2], "w") as f:
        json.dump({"results": [run(c) for c in cases]}, f)


if __name__ == "__main__":
    main()
