#!/usr/bin/env python3
"""How a model's separation depends on the song's tuning: vocals GNSDR of the same clips played at
each of a grid of speeds (pitch and tempo together); PRINTS a table (not a test).

Each clip's mixture is played ``speed`` times faster (soxr, as ``separate.py --semitones`` does),
separated with the raw model (no transposition averaging), and the vocals estimate is played back at
the original speed and scored against the true vocals (BSS Eval v3, bss_eval.py = mir_eval, at the
model's rate; GNSDR = length-weighted mean of SDR - SDR(mixture)). The default grid holds every
hundredth from 0.90 to 1.10 and the whole semitones 2^(k/12) in it: a model that has learnt where
the partials of music in standard tuning fall scores higher at whole semitones than a quarter-tone
off them (the forty-eighth session's finding, which chose ``--semitones``).

With ``--move vocals`` (or ``accompaniment``) only that stem is played at each speed, the other
kept as it is, and the separation of that new mixture is scored against the moved stems as they
are: does the model depend on the voice being in tune with the grid, or on the accompaniment?

    python bench/bench_tuning.py --model models/savedModel_RNN_best.pt --data ../shared/data/mir1k/train \\
        --tracks 'amy_1_*' 'amy_8_*'
    python bench/bench_tuning.py --model models/drnn.pt --data ../shared/data/mir1k/train \\
        --tracks 'amy_1_*' --speeds 0.97 1 1.03 --out runs/tuning.json
    python bench/bench_tuning.py --model models/savedModel_RNN_best.pt --move vocals --speeds 0.97 1 1.03

Skips cleanly when the data folder is absent.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import Data  # noqa: E402
import bss_eval  # noqa: E402
import evaluate_sdr  # noqa: E402
import separate  # noqa: E402
import util  # noqa: E402


def default_speeds() -> list[float]:
    """0.90, 0.91, ..., 1.10 and the whole semitones between them, sorted."""
    grid = {round(0.9 + 0.01 * i, 2) for i in range(21)}
    return sorted(grid | {2 ** (k / 12) for k in (-1, 1)})


def vocals_at_speed(model, stft, mixture: np.ndarray, speed: float) -> np.ndarray:
    """mixture (N,) -> the raw model's vocals estimate (N,) of the mixture played ``speed`` times
    faster, played back at the original speed."""
    run = lambda x: separate.separate_array(model, stft, x)   # noqa: E731
    est = separate.transposed_mean(run, mixture[None], [speed])
    return est[list(model.sources).index("vocals"), 0]


def moved_sources(sources: np.ndarray, move: str, speed: float) -> np.ndarray:
    """sources (2, N) as (vocals, accompaniment) -> the same with the ``move`` stem played ``speed``
    times faster (:func:`Data.varispeed`, cropped or zero-padded to N)."""
    out = sources.copy()
    if speed != 1.0:
        i, n = Data.SOURCES.index(move), sources.shape[1]
        out[i] = Data.fit_length(Data.varispeed(sources[i], int(round(n / speed)), speed), n)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="checkpoint (any spectrogram or time-domain model)")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mir1k" / "train",
                   help="dataset folder (default ../shared/data/mir1k/train)")
    p.add_argument("--split", choices=["train", "test"], default="train", help="which split (default train)")
    p.add_argument("--tracks", nargs="+", default=["amy_1_*", "amy_8_*"], metavar="PATTERN",
                   help="tracks to score, glob patterns (default the shipped models' validation songs)")
    p.add_argument("--speeds", nargs="+", type=util.float_range(0.5, 2.0), default=None,
                   help="playback speeds, 0.5..2 (default 0.90..1.10 by 0.01 and the whole semitones)")
    p.add_argument("--move", choices=["song", "vocals", "accompaniment"], default="song",
                   help="what is played at each speed: the whole song (default; the estimate is played "
                        "back) or one stem, the other kept as it is")
    p.add_argument("--threads", type=util.threads_count, default=1, help="torch threads (default 1)")
    p.add_argument("--cache-dir", type=Path, default=Data.DEFAULT_CACHE,
                   help="decoded-audio cache (default .cache/audio)")
    p.add_argument("--out", type=Path, default=None, help="write the table as JSON here (must not exist)")
    args = p.parse_args(argv)
    if not args.data.is_dir():
        print(f"skipped: {args.data} not found")
        return 0
    if args.out is not None and args.out.exists():
        raise util.UserError(f"{args.out}: exists")
    import torch
    torch.set_num_threads(args.threads)
    speeds = sorted(set(args.speeds or default_speeds()))
    model, stft, sr, _ = util.load_model(args.model)
    tracks = evaluate_sdr.select_tracks(args.data, args.split, args.tracks)
    cache = Data.AudioCache(sr, args.cache_dir)
    t0 = time.time()
    nsdr = np.zeros((len(tracks), len(speeds)))
    lengths = np.zeros(len(tracks))
    for i, track in enumerate(tracks):
        sources = np.stack([cache.source(track, s) for s in Data.SOURCES]).astype(np.float32)
        lengths[i] = sources.shape[1]
        for j, speed in enumerate(speeds):
            if args.move != "song":             # a new song: its own stems and mixture baseline
                sources_j = moved_sources(sources, args.move, speed)
                mixture = sources_j.sum(0)
                vocals = vocals_at_speed(model, stft, mixture, 1.0)
            else:
                sources_j, mixture = sources, sources.sum(0)
                vocals = vocals_at_speed(model, stft, mixture, speed)
            refs = sources_j.astype(np.float64)
            if args.move != "song" or j == 0:
                base = bss_eval.evaluate(refs, np.stack([mixture, mixture]).astype(np.float64))[0][0]
            sdr = bss_eval.evaluate(refs, np.stack([vocals, mixture - vocals]).astype(np.float64))[0][0]
            nsdr[i, j] = sdr - base
    gnsdr = nsdr.T @ lengths / lengths.sum()
    what = "clips" if args.move == "song" else f"clips with the {args.move}"
    print(f"{args.model}: vocals GNSDR (dB) of {len(tracks)} {what} played at each speed, "
          f"BSS Eval v3 at {sr} Hz; {time.time() - t0:.0f} s")
    print(f"{'speed':>8s} {'semitones':>10s} {'GNSDR':>7s}")
    for speed, g in zip(speeds, gnsdr):
        print(f"{speed:8.4f} {12 * np.log2(speed):+10.2f} {g:7.2f}")
    if args.out is not None:
        util.write_json(args.out, {
            "command": "python bench/bench_tuning.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "metric": "vocals GNSDR (length-weighted SDR - SDR(mixture)), BSS Eval v3, model rate",
            "model": str(args.model), "move": args.move, "data": str(args.data), "tracks": [t.name for t in tracks],
            "speeds": speeds, "gnsdr": [float(g) for g in gnsdr]})
    return 0


if __name__ == "__main__":
    util.run_cli(main)
