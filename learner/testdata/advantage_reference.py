"""PyTorch reference for learner/advantage, written as TRL's GRPOTrainer computes advantages
(rewards.view(-1, G), mean(dim=1), std(dim=1) unbiased, (r - mean) / (std + eps)), float64.
Groups of different sizes are handled one at a time. Usage: advantage_reference.py IN.json OUT.json
with IN {"cases": [{"rewards": [...], "offsets": [...], "scale": "std"|"none",
"unbiased": bool, "epsilon": x}]} and OUT {"results": [{"advantages": [...], "std": [...]}]}.
"""
import json
import sys

import torch


def run(case):
    r = torch.tensor(case["rewards"], dtype=torch.float64)
    off = case["offsets"]
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
