#!/usr/bin/env python3
"""The main job on the embedded default: no dataset needed.

  python demo.py

1. generates the synthetic demo set (DSD100 layout, data/demo/; deterministic, seconds);
2. trains the single-frame model, then the recurrent model initialised from it
   (assignment settings: 32 kHz, FFT 4096, hop 2048);
3. separates one test song of the demo set with each model (runs/demo-<date-time>/separated/<model>/<song>/);
4. evaluates both on the demo test split with BSS Eval v3 and prints the SDR table beside the
   unprocessed mixture and the oracle masks.

Everything goes to a new folder runs/demo-<date-time>/; nothing is overwritten. The demo set is
synthetic: it shows the pipeline working end to end, not how well a model does on real songs
(see the README for MIR-1K and DSD100 results).
"""
import argparse
import sys
import time
from pathlib import Path

import demo_data
import evaluate_sdr
import separate
import train_feedforward
import train_rnn
import training
import util


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=util.positive_int, default=12, help="epochs for each model (default 12)")
    p.add_argument("--seed", type=util.nonneg_int, default=42, help="random seed (default 42)")
    p.add_argument("--run-dir", type=Path, default=None, help="output folder (default runs/demo-<date-time>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    t0 = time.time()
    run = args.run_dir or training.ROOT / "runs" / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    if run.exists() and not run.is_dir():
        raise util.UserError(f"{run}: exists and is not a folder; choose another --run-dir")
    if run.exists() and any(run.iterdir()):
        raise util.UserError(f"{run}: exists and is not empty; choose another --run-dir")
    data = demo_data.make_demo_dataset(demo_data.DEMO_ROOT)
    q = ["--quiet"] if args.quiet else []
    common = ["--data", str(data), "--epochs", str(args.epochs), "--seed", str(args.seed), *q]
    print("== training the single-frame model", file=sys.stderr)
    train_feedforward.main([*common, "--run-dir", str(run / "feedforward")])
    ff = run / "feedforward" / "savedModel_feedforward_best.pt"
    print("== training the recurrent model (initialised from it)", file=sys.stderr)
    train_rnn.main([*common, "--run-dir", str(run / "rnn"), "--init", str(ff)])
    rnn = run / "rnn" / "savedModel_RNN_best.pt"
    song = sorted((data / "Mixtures" / "Test").iterdir())[0] / "mixture.wav"
    for name, model in (("feedforward", ff), ("rnn", rnn)):
        separate.main([str(song), "--model", str(model), "-o", str(run / "separated" / name), *q])
    print("== evaluating on the demo test split", file=sys.stderr)
    evaluate_sdr.main(["--model", str(ff), str(rnn), "--name", "feedforward", "RNN", "--data", str(data),
                       "--out", str(run / "results"), *q])
    print(f"\nseparated '{song.parent.name}': listen to {run / 'separated'}/*/{song.parent.name}/vocals.wav")
    print(f"main job done in {time.time() - t0:.0f} s; everything is in {run}")
    return 0


if __name__ == "__main__":
    util.run_cli(main)
