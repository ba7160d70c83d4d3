"""PyTorch eager side of bench/model_bench.sh: the same model (model/testdata/torch_reference.py,
HF-transformers semantics, f32) on the same token sequences, forward and forward+backward.
Usage: /usr/bin/python3 bench/torch_model_bench.py MODEL_DIR SEQUENCES.json REPEATS THREADS
Prints one JSON object like bench/model_bench.cc."""
import json
import os
import resource
import runpy
import statistics
import sys
import time

# Debian's PyTorch runs its matrix products on OpenBLAS, whose own threads torch.set_num_threads
# does not govern: left alone, a "1-thread" PyTorch multiplies on every core (and a 2-thread one
# oversubscribes). Pin OpenBLAS (and OpenMP) to the bench's thread count before torch loads.
if len(sys.argv) > 4:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = sys.argv[4]

import torch  # noqa: E402


def main():
    model_dir, seq_path, repeats, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    ref = runpy.run_path(os.path.join(os.path.dirname(__file__), "..", "model", "testdata", "torch_reference.py"))
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = ref["Config"](json.load(f))
    params, buffers = ref["load_params"](cfg, ref["load_checkpoint"](model_dir), torch.float32)
    model = ref["Model"](cfg, params, buffers, torch.float32)
    with open(seq_path) as f:
        seqs = json.load(f)
    tokens = sum(len(s) for s in seqs)

    def logprob_sum(seq):
        logits, _, _ = model.forward(seq)
        logp = torch.log_softmax(logits[:-1], dim=-1)
        return logp.gather(1, torch.tensor(seq[1:]).unsqueeze(1)).sum()

    fwd, fwdbwd = [], []
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        with torch.no_grad():
            for s in seqs:
                logprob_sum(s)
        t1 = time.perf_counter()
        for p in params.values():
            p.grad = None
        loss = sum(logprob_sum(s) for s in seqs)
        loss.backward()
        t2 = time.perf_counter()
        if r == 0:
            continue
        fwd.append(t1 - t0)
        fwdbwd.append(t2 - t1)
    print(json.dumps({"impl": "pytorch", "threads": threads, "tokens": tokens,
                      "fwd_tok_s": tokens / statistics.median(fwd),
                      "fwdbwd_tok_s": tokens / statistics.median(fwdbwd),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))


if __name__ == "__main__":
    main()
