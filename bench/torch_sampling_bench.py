"""PyTorch's side of bench/sampling_bench.sh: one row's draw as the Python RL frameworks do it
on CPU (torch 1.13, one thread): greedy = argmax plus log_softmax for the token's logprob;
temperature = log_softmax(logits / T), multinomial over its exp, and the raw logprob from
log_softmax(logits). Best of 5 repeats of ROWS rows. Prints one JSON object.
    /usr/bin/python3 bench/torch_sampling_bench.py VOCAB TEMPERATURE ROWS"""
import json
import sys
import time

import torch

vocab, temperature, rows = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
gen = torch.Generator().manual_seed(1)
logits = torch.randn(vocab, generator=gen) * 3.0
best = float("inf")
checksum = 0
for _ in range(5):
    start = time.perf_counter()
    for _ in range(rows):
        raw = torch.log_softmax(logits, dim=-1)
        if temperature == 0.0:
            token = int(torch.argmax(logits))
            logprob = float(raw[token])
        else:
            scaled = torch.log_softmax(logits / temperature, dim=-1)
            token = int(torch.multinomial(scaled.exp(), 1, generator=gen))
            logprob = float(scaled[token]), float(raw[token])
        checksum += token
    best = min(best, time.perf_counter() - start)
print(json.dumps({"impl": "pytorch", "vocab": vocab, "temperature": temperature,
                  "ms_per_row": best * 1e3 / rows, "checksum": checksum}))
