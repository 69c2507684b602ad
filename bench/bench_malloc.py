#!/usr/bin/env python3
"""Benchmark what ``util.keep_freed_memory()`` does to training and separation on the CPU; PRINTS a table (not a test).

Every training run calls ``util.keep_freed_memory()`` (``training.train``): glibc's malloc then
keeps the memory torch and numpy free for reuse instead of handing it back to the kernel and
faulting fresh zeroed pages in at the next step. This runs short real trainings with and without
it (``SVS_KEEP_FREED_MEMORY=0`` turns it off) and reports, per configuration, the medians over
``--repeats`` of the child process's wall time, user and system CPU seconds, minor page faults
and peak RSS (``os.wait4``). Repeats are interleaved (repeat r runs every configuration once) so
that load from other jobs hits both alike.

The trainings: the CNN (``train_seed.py --system cnn``, two sources, 11-frame patches) and the RNN
(``train_rnn.py``), each at the shipped 16 kHz and STFT 1024/256, and the same CNN at 44.1 kHz
(``cnn44k``: ``train_seed.py``'s own rate for the CNN, as on DSD100), and the stacked hourglass at
48 features, 2 stacks (the size shipped until the twenty-ninth session; batches of 8 excerpts of 2
s: its activations are 100 MB tensors, past the largest size glibc ever serves from the heap by
default), on the SDR loss with the shipped augmentation (varispeed 0.12, EQ +-6 dB),
``--samples-per-epoch`` excerpts (default 160 = 10 steps of 16), one epoch, one thread, validation
on 2 s of one track. And one separation (``separate-hourglass``): ``separate.py`` with
``models/hourglass.pt`` on the first song of the synthetic demo set made 60 s long at 44.1 kHz, one
thread, one torch separation (``--semitones 0 --runtime torch``: the allocator's effect on torch, not
the transposition averaging's or onnxruntime's memory). Training data: MIR-1K's training clips from
``../shared/data/mir1k`` when that folder exists (validation ``amy_1_01``), else (or with ``--demo``)
the synthetic demo set written to a temporary folder. Decoding and caching the audio is done once, before
the timed runs.

    python bench/bench_malloc.py                          # every configuration, 3 repeats
    python bench/bench_malloc.py --models cnn --repeats 5
    python bench/bench_malloc.py --models hourglass --samples-per-epoch 40
    python bench/bench_malloc.py --models hourglass --hourglass-size 80 4 --samples-per-epoch 12 --repeats 1

``--hourglass-size FEATURES BATCH`` trains another hourglass than the 48-feature one in batches of 8 (the
shipped one: 96 features), to see the peak memory its training needs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import child_usage  # noqa: E402  (bench/, beside this script)
import util  # noqa: E402

MIR1K = ROOT.parent / "shared" / "data" / "mir1k" / "train"

TRAININGS = {
    "cnn": ["train_seed.py", "--system", "cnn", "--sources", "vocals", "accompaniment", "--time-context", "11",
            "--horizontal", "5", "1", "--chunk-seconds", "2"],
    "rnn": ["train_rnn.py", "--chunk-seconds", "4"],
    # the shipped hourglass's size and batch: its activations are 100 MB tensors, past glibc's mmap threshold
    "hourglass": ["train_seed.py", "--system", "hourglass", "--features", "48", "--stacks", "2",
                  "--chunk-seconds", "2.032", "--batch-size", "8"],
}
TRAININGS["cnn44k"] = TRAININGS["cnn"] + ["--sample-rate", "44100"]      # after COMMON's 16000: this rate wins
# not a training: separate.py (which calls keep_freed_memory too) on one demo song with the shipped hourglass
SEPARATE = "separate-hourglass"
COMMON = ["--sample-rate", "16000", "--n-fft", "1024", "--hop", "256", "--loss", "sdr", "--vocal-speed", "0.12",
          "--eq-db", "6", "--epochs", "1", "--valid-seconds", "2", "--seed", "47", "--threads", "1", "--quiet"]


def run(cmd: list[str], keep: bool, env: dict) -> dict:
    """Run one training; its own resource use (``child_usage``: not inflated by this process's peak,
    as a direct child's ru_maxrss is, e.g. after the 60 s song is built here)."""
    env = dict(env, SVS_KEEP_FREED_MEMORY="1" if keep else "0")
    code, wall, usage, err = child_usage.run(cmd, ROOT, env)
    if code != 0 or not usage:
        raise SystemExit(f"run failed ({' '.join(cmd)}):\n{err[-2000:]}")
    return {"wall": wall, "user": usage["user"], "sys": usage["sys"], "minflt": usage["minflt"],
            "rss_mb": usage["rss_bytes"] / 2**20}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=[*TRAININGS, SEPARATE], default=[*TRAININGS, SEPARATE])
    p.add_argument("--samples-per-epoch", type=util.positive_int, default=160,
                   help="training excerpts per run (default 160)")
    p.add_argument("--repeats", type=util.positive_int, default=3, help="runs per configuration (default 3)")
    p.add_argument("--demo", action="store_true", help="train on the synthetic demo set even where MIR-1K is")
    p.add_argument("--hourglass-size", type=int, nargs=2, default=None, metavar=("FEATURES", "BATCH"),
                   help="the hourglass training's features and batch size (default 48 8)")
    args = p.parse_args(argv)
    trainings = dict(TRAININGS)
    if args.hourglass_size:
        features, batch = args.hourglass_size
        trainings["hourglass"] = [*TRAININGS["hourglass"], "--features", str(features), "--batch-size", str(batch)]

    with tempfile.TemporaryDirectory(prefix="bench_malloc_") as tmp:
        tmp = Path(tmp)
        env = dict(os.environ)
        if MIR1K.is_dir() and not args.demo:
            data = ["--data", str(MIR1K), "--valid-tracks", "amy_1_01"]
            what = f"MIR-1K training clips ({MIR1K})"
        else:
            import demo_data

            demo_data.make_demo_dataset(tmp / "demo")
            data, what = ["--data", str(tmp / "demo")], "the synthetic demo set"
        cache = ["--cache-dir", str(tmp / "cache")]
        print(f"# data: {what}; {args.samples_per_epoch} excerpts per run, {args.repeats} repeats, "
              f"load average {os.getloadavg()[0]:.2f} at start")
        cmds = {}
        for m in args.models:
            if m == SEPARATE:
                import demo_data

                demo_data.make_demo_dataset(tmp / "song", n_dev=1, n_test=1, seconds=60.0, sample_rate=44100)
                song = sorted((tmp / "song").rglob("mixture.wav"))[0]
                cmds[m] = lambda run_dir, song=song: [sys.executable, "separate.py", str(song), "--model",
                                                      "models/hourglass.pt", "--threads", "1", "--semitones", "0",
                                                      "--runtime", "torch", "--outdir", str(run_dir)]
                print(f"# {m}: {song.relative_to(tmp)}, 60 s at 44.1 kHz, --semitones 0, torch")
                continue
            script, *opts = trainings[m]
            cmds[m] = lambda run_dir, script=script, opts=opts: [
                sys.executable, script, *COMMON, *opts, *data, *cache,
                "--samples-per-epoch", str(args.samples_per_epoch), "--run-dir", str(run_dir)]
            if m == "hourglass" and args.hourglass_size:
                print(f"# hourglass: {args.hourglass_size[0]} features, batches of {args.hourglass_size[1]}")
            run(cmds[m](tmp / f"warm-{m}"), True, env)          # decode and cache the audio once
        rows = {(m, k): [] for m in args.models for k in (False, True)}
        n = 0
        for r in range(args.repeats):
            for (m, k) in rows:
                n += 1
                rows[(m, k)].append(run(cmds[m](tmp / f"run{n}"), k, env))
                print(f"  repeat {r + 1}: {m} keep_freed_memory={'on ' if k else 'off'} "
                      f"wall {rows[(m, k)][-1]['wall']:.1f} s, system {rows[(m, k)][-1]['sys']:.1f} s",
                      file=sys.stderr)
    print("| training | keep_freed_memory | wall s | user CPU s | system CPU s | minor faults | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    med = {key: {f: statistics.median(r[f] for r in rs) for f in rs[0]} for key, rs in rows.items()}
    for (m, k), v in med.items():
        print(f"| {m} | {'on' if k else 'off'} | {v['wall']:.1f} | {v['user']:.1f} | {v['sys']:.1f} | "
              f"{v['minflt']:,.0f} | {v['rss_mb']:.0f} |")
    for m in args.models:
        print(f"{m}: wall time on / off = {med[(m, True)]['wall'] / med[(m, False)]['wall']:.2f}, "
              f"system CPU on / off = {med[(m, True)]['sys'] / max(med[(m, False)]['sys'], 1e-9):.2f}")


if __name__ == "__main__":
    main()
