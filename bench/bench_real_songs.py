#!/usr/bin/env python3
"""Real songs at their own rate: what each separation lever gives, per track (vocals SDR).

  python bench/bench_real_songs.py --model models/savedModel_RNN_best.pt
  python bench/bench_real_songs.py --model models/savedModel_RNN_best.pt --out results/real_songs_levers

Reads MUSDB-style track folders (default ../shared/data/music_excerpts: 44.1 kHz stereo,
mixture = vocals + accompaniment), separates each mixture in memory with the streaming engine
of separate.py under several settings, and scores the vocals and accompaniment with BSS Eval v3
(bss_eval.py, = mir_eval.separation.bss_eval_sources, 512-tap filters, no permutation) on the
whole excerpt, channels averaged to mono, **at the input rate** (so energy above the model's
Nyquist counts). Settings:

  resampled      the first release's path: resample to the model rate, mask, resample back
  zero           full band at the input rate, mask 0 above the model's Nyquist
  top-mean       full band, mask above the model's Nyquist = mean mask of its top quarter-band
  top-mean -40dB the same song 40 dB quieter (scored against equally scaled references)
  wiener1/2      top-mean, then 1 or 2 EM iterations of norbert's multichannel Wiener filter
  power1.5/2/3   top-mean with each mask raised to this power (separate.py --mask-power)

Every setting but the power ones uses the raw mask (--mask-power 1). A time-domain model
(Wave-U-Net) has no mask and one path, separate.py's: every setting runs it as "resampled"
(the -40dB one on the quieter song).

The unprocessed mixture (as the vocals estimate) is the floor. Prints a table; --out writes
results.json. Skips cleanly when the data folder is absent.
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
import separate  # noqa: E402
import util  # noqa: E402

SETTINGS = ("resampled", "zero", "top-mean", "top-mean -40dB", "wiener1", "wiener2", "power1.5", "power2", "power3")


def separate_vocals(model, stft, model_sr, mixture, sr, setting, semitones=0):
    """mixture (C, N) at ``sr`` -> vocals estimate (C, N) at ``sr`` (``semitones``: separate.py's
    --semitones)."""
    vocal = list(model.sources).index("vocals")
    if setting == "resampled" or getattr(model, "domain", None) == "time":
        x = util.resample(mixture, sr, model_sr)
        est = separate.separate_array(model, stft, x, semitones=semitones)[vocal]
        est = util.resample(est, model_sr, sr)
        return Data.fit_length(est, mixture.shape[1])
    rule = "zero" if setting == "zero" else "top-mean"
    wiener = int(setting[-1]) if setting.startswith("wiener") else 0
    power = float(setting[len("power"):]) if setting.startswith("power") else 1.0

    def make():
        return separate.StreamSeparator(model, stft, input_rate=sr, model_rate=model_sr, high_band=rule,
                                        wiener=wiener, mask_power=power)

    sep = separate.transposing(make, semitones)
    parts = [sep.push(mixture), sep.finish()]
    return np.concatenate([p for p in parts if p.shape[-1]], -1)[vocal]


def score(vocals, accompaniment, est_vocals, est_accompaniment):
    """Mono BSS Eval v3 SDR of vocals and accompaniment."""
    ref = np.stack([vocals.mean(0), accompaniment.mean(0)]).astype(np.float64)
    est = np.stack([est_vocals.mean(0), est_accompaniment.mean(0)]).astype(np.float64)
    sdr, sir, sar, _ = bss_eval.bss_eval_sources(ref, est, compute_permutation=False)
    return {"vocals_sdr": float(sdr[0]), "vocals_sir": float(sir[0]), "vocals_sar": float(sar[0]),
            "accompaniment_sdr": float(sdr[1])}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, nargs="+", required=True, help="checkpoints to compare")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "music_excerpts",
                   help="folder of <track>/{mixture,vocals,accompaniment}.wav (default ../shared/data/music_excerpts)")
    p.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS), help="which settings")
    p.add_argument("--out", type=Path, default=None, help="folder for results.json (must not hold one)")
    p.add_argument("--threads", type=util.threads_count, default=1, help="torch threads (default 1)")
    separate.add_shifts_arg(p)
    separate.add_runtime_arg(p)
    separate.add_ensemble_mean_arg(p)
    separate.add_semitones_arg(p)
    separate.add_transposition_mean_arg(p)
    args = p.parse_args(argv)
    if not args.data.is_dir():
        print(f"skipped: {args.data} not found")
        return 0
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise util.UserError(f"--out {args.out}: is a file, not a folder")
    if args.out is not None and (args.out / "results.json").exists():
        raise util.UserError(f"{args.out / 'results.json'}: exists")
    tracks = sorted(d for d in args.data.iterdir() if (d / "vocals.wav").exists() and (d / "mixture.wav").exists())
    if not tracks:
        raise util.UserError(f"{args.data}: no track folders with mixture.wav and vocals.wav")
    import torch
    torch.set_num_threads(args.threads)
    rows = []
    t0 = time.time()
    label = {p: util.checkpoint_label(p) for p in args.model}
    if len(set(label.values())) < len(label):          # two files of one name: their paths tell them apart
        label = {p: str(p) for p in args.model}
    systems = {}                                       # the settings each model was run with
    for path in args.model:
        model, stft, model_sr, _ = util.load_model(path)
        systems[label[path]] = separate.apply_settings(model, args.shifts, args.ensemble_mean, args.semitones,
                                                       args.transposition_mean, args.runtime)
        semitones = systems[label[path]]["semitones"]
        for d in tracks:
            mixture, sr = util.load_audio(d / "mixture.wav")
            vocals, _ = util.load_audio(d / "vocals.wav")
            acc = mixture - vocals
            base = score(vocals, acc, mixture, mixture)["vocals_sdr"]        # the unprocessed mixture
            row = {"model": label[path], "track": d.name, "rate": sr, "mixture": base}
            for setting in args.settings:
                gain = 10 ** (-40 / 20) if setting.endswith("-40dB") else 1.0
                est = separate_vocals(model, stft, model_sr, mixture * gain, sr, setting, semitones)
                row[setting] = score(vocals * gain, acc * gain, est, mixture * gain - est)["vocals_sdr"]
            rows.append(row)
    cols = ["mixture", *args.settings]
    print(f"vocals SDR (dB), BSS Eval v3 on the whole excerpt, mono, at the input rate; {len(tracks)} tracks; "
          f"{time.time() - t0:.0f} s")
    print(f"{'model':28s} {'track':34s} " + " ".join(f"{c:>15s}" for c in cols))
    for r in rows:
        print(f"{r['model'][:28]:28s} {r['track'][:34]:34s} " + " ".join(f"{r[c]:15.2f}" for c in cols))
    summary = {}
    for path in args.model:
        mine = [r for r in rows if r["model"] == label[path]]
        summary[label[path]] = {c: float(np.median([r[c] for r in mine])) for c in cols}
        print(f"{label[path][:28]:28s} {'median':34s} " + " ".join(f"{summary[label[path]][c]:15.2f}" for c in cols))
    if args.out is not None:
        util.write_json(args.out / "results.json", {
            "command": "python bench/bench_real_songs.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "metric": "vocals SDR, BSS Eval v3 (bss_eval.py = mir_eval), whole excerpt, mono, input rate",
            "data": str(args.data), **separate.requested_settings(args.shifts, args.ensemble_mean, args.semitones,
                                                                        args.transposition_mean),
            "systems": systems, "median": summary, "rows": rows})
    return 0


if __name__ == "__main__":
    util.run_cli(main)
