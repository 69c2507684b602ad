#!/usr/bin/env python3
"""Benchmark what denormal weights cost a training step on the CPU, and what ``util.flush_denormals()``
gives back; PRINTS a table (not a test).

Every training run calls ``util.flush_denormals()`` (``training.train``), which makes the CPU treat
floats below 1.2e-38 as zero. Without it, an RNN trained with ``--weight-decay 1e-4`` slowed from
110 s to 565 s an epoch over its epochs 11-14: the weights of dead ReLU units, pulled only by the
decay, had shrunk into the denormal range (0.4 % of its weights after 1,600 steps; 3 % of Adam's
first-moment averages), and arithmetic on denormals takes a slow path.

This builds the shipped RNN's shape (``Model_RNN.RNNMaskNet``, 513 bins, random weights), takes one
Adam step on a batch of 16 random 250-frame excerpts (weight decay 1e-4), then times further steps
(forward, backward, Adam), each after setting a fixed random ``--fraction`` of every weight
matrix's entries (default 0.004, as measured) to 3e-39, with the flag off and on. Configurations
are interleaved within each repeat, so load from other jobs hits them alike; medians of
``--repeats`` steps.

    python bench/bench_denormal.py
    python bench/bench_denormal.py --fraction 0.01 --repeats 7 --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import Model_RNN  # noqa: E402
import util  # noqa: E402

DENORMAL = 3e-39


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fraction", type=float, default=0.004, help="share of each weight matrix set denormal")
    p.add_argument("--repeats", type=util.positive_int, default=5, help="timed steps per configuration (median)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = Model_RNN.RNNMaskNet(513)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    batch = torch.rand(16, 250, 513)

    def step() -> float:
        start = time.perf_counter()
        loss = model(batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - start

    step()                                                   # Adam's state exists from here on
    gen = torch.Generator().manual_seed(args.seed + 1)
    matrices = [w for w in model.parameters() if w.dim() == 2]
    where = [torch.rand(w.shape, generator=gen) < args.fraction for w in matrices]
    configs = [(fraction, flush) for fraction in (0.0, args.fraction) for flush in (False, True)]
    times = {c: [] for c in configs}
    for _ in range(args.repeats):
        for fraction, flush in configs:
            torch.set_flush_denormal(False)                  # else the denormals would be stored as zeros
            if fraction:
                with torch.no_grad():
                    for w, m in zip(matrices, where):
                        w[m] = DENORMAL
            torch.set_flush_denormal(flush)
            times[(fraction, flush)].append(step())
    torch.set_flush_denormal(False)
    base = statistics.median(times[(0.0, False)])
    print(f"RNN training step, batch 16 x 250 frames, {args.threads} thread(s), median of {args.repeats}")
    print("| denormal share of the weights | flush_denormals | s a step | x the clean step |")
    print("|---|---|---|---|")
    for fraction, flush in configs:
        t = statistics.median(times[(fraction, flush)])
        print(f"| {fraction:g} | {'on' if flush else 'off'} | {t:.2f} | {t / base:.2f} |")


if __name__ == "__main__":
    main()
