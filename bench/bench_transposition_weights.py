#!/usr/bin/env python3
"""How the transposition averaging (separate.py --semitones N) should weigh its 2N+1 estimates.

  python bench/bench_transposition_weights.py --model models/savedModel_RNN_best.pt
  python bench/bench_transposition_weights.py --model runs/a/savedModel_RNN_best.pt runs/b/savedModel_RNN_best.pt \\
      --data ../shared/data/mir1k/train --split train --tracks 'amy_*' --out results/transposition_weights/amy

For every track, the mixture (mono, at the model rate) is separated once at each transposition
k = -N..N semitones (played 2^(k/12) times faster, separated by the raw model, the vocals estimate
played back at the original speed: what :class:`separate.TransposedSeparator` does with each of its
separators), and the 2N+1 estimates are combined in several ways:

  uniform N     the mean of the waveforms, equal weights over -N..N (separate.py's default way)
  triangle      waveform mean with weights N+1-|k|
  gauss2        waveform mean with weights exp(-k^2/8) (a Gaussian of 2 semitones)
  geometric     the mixture masked by the vocals' share of the geometric mean, over k, of the vocals'
                and the rest's magnitude spectrograms (separate.py --transposition-mean geometric)
  median        the same with the median over k instead of the geometric mean

Each is scored with BSS Eval v3 (bss_eval.py: vocals and accompaniment = mixture - vocals against
the references, 512-tap filters) on the whole track at the model rate; the table gives the vocals
GNSDR (NSDR weighted by track length; the unprocessed mixture scores 0) per model, and the median
over tracks of the vocals SDR. The estimates are
computed once per track and model, so every combination is compared on the same separations.
--out writes results.json (per-track rows too). Skips cleanly when the data folder is absent.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import Data  # noqa: E402
import bss_eval  # noqa: E402
import evaluate_sdr  # noqa: E402
import separate  # noqa: E402
import util  # noqa: E402


def transposed_estimates(model, stft, mixture: np.ndarray, semitones: int) -> np.ndarray:
    """mixture (1, n) at the model rate -> (2N+1, n) vocals estimates, one per transposition k = -N..N."""
    vocal = list(model.sources).index("vocals")
    out = []
    for r in separate.transposition_speeds(semitones):
        est = separate.transposed_mean(lambda x: separate.separate_array(model, stft, x), mixture, [r])
        out.append(est[vocal, 0])
    return np.stack(out)


def spectral_combine(stft: util.STFT, mixture: np.ndarray, ests: np.ndarray, how: str) -> np.ndarray:
    """The mixture (n,) masked by the vocals' share of the geometric mean or the median, over the
    estimates (K, n), of the vocals' and the rest's magnitude spectrograms."""
    n = mixture.shape[-1]
    mix = torch.from_numpy(np.ascontiguousarray(mixture, dtype=np.float32))
    v = stft.stft(torch.from_numpy(ests.astype(np.float32))).abs()                # (K, F, T)
    a = stft.stft(mix[None] - torch.from_numpy(ests.astype(np.float32))).abs()
    if how == "geometric":
        eps = separate.GeometricCombiner.EPS
        gv, ga = torch.log(v + eps).mean(0).exp(), torch.log(a + eps).mean(0).exp()
    else:
        gv, ga = v.median(0).values, a.median(0).values
    mask = gv / (gv + ga).clamp_min(1e-12)
    return stft.istft(mask * stft.stft(mix), n).numpy()


def combinations(stft, mixture: np.ndarray, ests: np.ndarray, semitones: int) -> dict:
    """{name: vocals estimate (n,)} for every combination of the module docstring."""
    k = np.arange(-semitones, semitones + 1)

    def weighted(w):
        w = np.asarray(w, np.float64)
        return (w[:, None] * ests).sum(0) / w.sum()

    out = {f"uniform {semitones}": weighted(np.ones(len(k)))}
    for inner in range(1, semitones):
        out[f"uniform {inner}"] = weighted(np.abs(k) <= inner)
    out["none (k=0)"] = ests[semitones]
    out["triangle"] = weighted(semitones + 1 - np.abs(k))
    out["gauss2"] = weighted(np.exp(-k ** 2 / 8.0))
    out["geometric"] = spectral_combine(stft, mixture, ests, "geometric")
    out["median"] = spectral_combine(stft, mixture, ests, "median")
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", nargs="+", required=True, help="checkpoints of mask models (vocals output)")
    p.add_argument("--name", nargs="+", help="a name per model (default: the file names)")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mir1k" / "train",
                   help="dataset folder (default ../shared/data/mir1k/train)")
    p.add_argument("--split", default="train", help="train, valid or test (default train)")
    p.add_argument("--tracks", help="only the tracks whose names match this glob pattern")
    p.add_argument("--semitones", type=util.int_range(1, 6), default=4, help="N, 1..6 (default 4)")
    p.add_argument("--threads", type=util.positive_int, default=1, help="torch threads (default 1)")
    p.add_argument("--cache-dir", type=Path, default=Data.DEFAULT_CACHE,
                   help="decoded-audio cache (default .cache/audio)")
    p.add_argument("--out", type=Path, help="write results.json into this folder (a new one, or without results.json)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.data.is_dir():
        print(f"skipped: {args.data} is absent")
        return 0
    if args.name and len(args.name) != len(args.model):
        raise util.UserError("--name needs one name per --model")
    if args.out is not None and (args.out / "results.json").exists():
        raise util.UserError(f"{args.out / 'results.json'}: exists")
    torch.set_num_threads(args.threads)
    tracks = evaluate_sdr.select_tracks(args.data, args.split, [args.tracks] if args.tracks else None)
    if not tracks:
        raise util.UserError(f"{args.data}: no {args.split} tracks")
    names = args.name or [Path(m).parent.name if Path(m).name.endswith("_best.pt") and Path(m).parent.name != "models"
                          else Path(m).stem for m in args.model]
    rows, t0 = [], time.perf_counter()
    for path, name in zip(args.model, names):
        model, stft, sr, _ = util.load_model(path)
        cache = Data.AudioCache(sr, args.cache_dir)
        for track in tracks:
            refs = np.stack([cache.source(track, s) for s in Data.SOURCES]).astype(np.float64)
            if not all(np.any(x) for x in refs) or refs.shape[1] < stft.n_fft:
                continue
            mixture = refs.sum(0)
            ests = transposed_estimates(model, stft, mixture[None].astype(np.float32), args.semitones)
            base = bss_eval.evaluate(refs, np.stack([mixture, mixture]))[0][0]
            for combo, v in combinations(stft, mixture, ests, args.semitones).items():
                v = Data.fit_length(np.asarray(v, np.float64), mixture.shape[0])
                sdr = bss_eval.evaluate(refs, np.stack([v, mixture - v]))[0][0]
                rows.append({"model": name, "track": track.name, "combo": combo, "samples": int(mixture.shape[0]),
                             "sdr": round(float(sdr), 4), "nsdr": round(float(sdr - base), 4)})
        print(f"{name}: {len(tracks)} tracks, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    combos = list(dict.fromkeys(r["combo"] for r in rows))
    table, medians = {}, {}
    for name in names:
        for combo in combos:
            sel = [r for r in rows if r["model"] == name and r["combo"] == combo]
            table.setdefault(combo, {})[name] = float(np.average([r["nsdr"] for r in sel],
                                                                 weights=[r["samples"] for r in sel]))
            medians.setdefault(combo, {})[name] = float(np.median([r["sdr"] for r in sel]))
    print(f"vocals GNSDR (dB, length-weighted; mixture 0.00), {args.split} {args.tracks or ''}, "
          f"{len(tracks)} tracks, transpositions -{args.semitones}..{args.semitones}")
    print("| combination | " + " | ".join(names) + " | mean | median SDR per track: " + " | ".join(names) + " |")
    print("|---|" + "---|" * (2 * len(names) + 1))
    for combo in combos:
        vals = [table[combo][n] for n in names]
        print(f"| {combo} | " + " | ".join(f"{v:.2f}" for v in vals) + f" | {np.mean(vals):.2f} | "
              + " | ".join(f"{medians[combo][n]:.2f}" for n in names) + " |")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        meta = {"models": dict(zip(names, args.model)), "data": str(args.data), "split": args.split,
                "tracks": args.tracks, "semitones": args.semitones}
        summary = json.dumps({"meta": meta, "gnsdr": table, "median_sdr": medians}, indent=1)
        rows_text = ",\n".join(json.dumps(r) for r in rows)
        (args.out / "results.json").write_text(summary[:-2] + ',\n "rows": [\n' + rows_text + "\n ]\n}\n")
    return 0


if __name__ == "__main__":
    util.run_cli(main)
