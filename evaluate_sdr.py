#!/usr/bin/env python3
"""BSS Eval v3 SDR/SIR/SAR of models, the unprocessed mixture and oracle masks over a test split.

  python evaluate_sdr.py --model models/savedModel_feedforward_best.pt models/savedModel_RNN_best.pt \\
      --data ../shared/data/mir1k/test_public --out results/mir1k

Metric: BSS Eval v3 (Vincent et al. 2006) as in ``mir_eval.separation.bss_eval_sources`` with
512-tap distortion filters, on whole tracks, two sources (vocals, accompaniment), no permutation
search, on the mono mixture at the evaluation sample rate. ``--backend fast`` (default) is this
project's vectorised reimplementation (``bss_eval.py``, equal to mir_eval within 0.01 dB),
``--backend mir_eval`` the reference. ``--framewise`` switches to museval-v4-style 1-second
windows (median over frames, then median over tracks).

Rows: every ``--model``; ``mixture`` (the unprocessed mixture as the estimate of every source:
the floor); the oracle masks from the true sources with the STFT of the first model at the
evaluation rate (the highest of the models' rates unless ``--sample-rate`` says; the ceiling of
any magnitude mask): ``irm`` (|V|/(|V|+|A|)), ``irm2`` (|V|^2/(|V|^2+|A|^2)), ``ibm`` (|V|>|A|),
``psm`` (phase-sensitive, Re(V/X) clipped to [0,1]).
Summary per row and source: GNSDR/GSIR/GSAR = means of NSDR (= SDR - SDR of the mixture),
SIR and SAR weighted by track length (Huang et al. 2014), and mean and median SDR over tracks.
Outputs: ``<out>/tracks.csv`` (one row per track, system and source) and ``<out>/summary.json``.
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import Data
import Model
import separate
import util
from util import UserError

ORACLES = ("irm", "irm2", "ibm", "psm")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, nargs="*", default=[],
                   help="checkpoints to evaluate (any model of this project; rebuilt from the file); "
                        "A.pt+B.pt is one system, the ensemble of A and B (geometric mean of their masks)")
    p.add_argument("--name", nargs="*", default=None, help="row names for the models (default: from the files)")
    p.add_argument("--data", type=Path, default=None,
                   help="dataset folder (default: the synthetic demo set, generated if missing)")
    p.add_argument("--split", choices=["train", "test"], default="test", help="which split (default test)")
    p.add_argument("--sample-rate", type=util.int_range(*util.SAMPLE_RATE_RANGE), default=None,
                   help="evaluation sample rate in Hz (default: the highest of the models' rates, else 16000)")
    p.add_argument("--oracle", nargs="*", choices=ORACLES, default=list(ORACLES),
                   help="oracle masks to include (default: all); give none to skip")
    p.add_argument("--n-fft", type=util.int_range(*util.N_FFT_RANGE), default=None,
                   help="STFT size for the oracles (default: the first model's at the evaluation rate, else 1024)")
    p.add_argument("--hop", type=util.positive_int, default=None,
                   help="STFT hop for the oracles (default: the first model's at the evaluation rate, else 256)")
    p.add_argument("--backend", choices=["fast", "mir_eval"], default="fast",
                   help="BSS Eval implementation: fast (vectorised, equal within 0.01 dB) or mir_eval (default fast)")
    p.add_argument("--framewise", action="store_true",
                   help="museval v4 convention: 1 s windows, median over frames then over tracks")
    p.add_argument("--jobs", type=util.int_range(1, 256), default=os.cpu_count(),
                   help="parallel worker processes (default: all cores)")
    p.add_argument("--tracks", nargs="+", default=None, metavar="PATTERN",
                   help="evaluate only the tracks whose names match one of these glob patterns, e.g. the "
                        "shipped models' validation songs: --split train --tracks 'amy_1_*' 'amy_8_*'")
    p.add_argument("--limit", type=util.positive_int, default=None, help="evaluate only the first N tracks")
    p.add_argument("--cache-dir", type=Path, default=Data.DEFAULT_CACHE,
                   help="decoded-audio cache (default .cache/audio)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for tracks.csv and summary.json (default: print only)")
    p.add_argument("--force", action="store_true", help="overwrite existing results in --out")
    p.add_argument("--compare", type=Path, default=None, metavar="SUMMARY_JSON",
                   help="compare the table with a committed summary.json (e.g. results/mir1k_test_public/"
                        "summary.json): prints 'same numbers' or every difference above 0.01 dB (exit 1); systems "
                        "not in this run are named and left out")
    p.add_argument("--html", action="store_true",
                   help="also write <out>/index.html, a listening page: the summary table (sortable), every "
                        "track worst first with its scores, audio players (mixture, true vocals, each system's "
                        "vocals and accompaniment) and spectrograms of an excerpt; opens from disk (needs --out)")
    p.add_argument("--html-seconds", type=util.float_range(1, 600), default=10.0,
                   help="length of each track's excerpt on the listening page, the part with the most vocal "
                        "energy (default 10)")
    separate.add_mask_power_arg(p)
    separate.add_ensemble_mean_arg(p)
    separate.add_shifts_arg(p)
    separate.add_runtime_arg(p)
    separate.add_semitones_arg(p)
    separate.add_transposition_mean_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--sources", nargs="*", choices=Data.FOUR_STEMS[1:], default=[],
                   help="also report these stems for models that output all four (vocals, drums, bass, "
                        "other), scored against the four reference stems, with the mixture as baseline; "
                        "tracks without these stems are left out of those rows (default: none)")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------
# Oracle masks. v, a: complex spectra (..., F, T) of vocals and accompaniment.
# ----------------------------------------------------------------------------------------------
def oracle_mask(kind: str, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    eps = 1e-10
    if kind == "irm":
        return v.abs() / (v.abs() + a.abs() + eps)
    if kind == "irm2":
        return v.abs() ** 2 / (v.abs() ** 2 + a.abs() ** 2 + eps)
    if kind == "ibm":
        return (v.abs() > a.abs()).float()
    if kind == "psm":
        x = v + a
        return (v.abs() / (x.abs() + eps) * torch.cos(torch.angle(v) - torch.angle(x))).clamp(0, 1)
    raise ValueError(kind)


# ----------------------------------------------------------------------------------------------
# Worker: everything for one track (decoding, separation, metrics)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalSettings:
    """Everything a worker needs to score a track; each default lives in parse_args."""
    models: tuple            # checkpoint paths (str)
    names: tuple             # their row names
    tracks: tuple            # Data.Track
    sample_rate: int         # evaluation rate (Hz)
    cache_dir: str
    oracle_stft: dict        # util.STFT.config() of the oracle masks
    oracles: tuple           # oracle kinds, ORACLES
    backend: str = "fast"    # "fast" (bss_eval.py) or "mir_eval"
    framewise: bool = False  # museval v4 1-s windows
    extra: tuple = ()        # 4-stem sources to report too (drums, bass, other)
    html_dir: str | None = None   # --html: where the listening page's media go (the --out folder)
    html_seconds: float = 10.0    # length of each track's excerpt on the page
    mask_power: float = 1.0       # --mask-power: masks ** p (spectrogram models)
    ensemble_mean: str | None = None   # --ensemble-mean: how ensembles combine masks (None: the default)
    shifts: int | None = None     # --shifts: U-Net/CNN/hourglass masks averaged over this many offsets (None:
                                  # each model's default_shifts)
    semitones: int | None = 0     # --semitones: estimates averaged over the song transposed by -N..N semitones
                                  # (None: each model's default, separate.model_semitones)
    transposition_mean: str | None = None   # --transposition-mean: how those estimates are combined (None: the
                                            # default)
    runtime: str | None = None    # --runtime: auto runs the hourglass's masks with onnxruntime when installed
                                  # (the parent sets "torch" when its own check found onnxruntime missing or unfit)


class _Worker:
    """Per-process state: the settings, the models loaded once, the audio cache."""

    def __init__(self, settings: EvalSettings, models=None):
        """``models``: the (name, model, stft, sr) the parent loaded and set up, when the work stays in its
        process (one job); else each is loaded here."""
        torch.set_num_threads(1)
        self.settings = settings
        if models is None:
            models = []
            for path, name in zip(settings.models, settings.names):
                model, stft, sr, _ = util.load_model(path)
                # as the parent did, its notes printed once there; runtime "torch" unless the parent's check passed
                separate.apply_settings(model, settings.shifts, settings.ensemble_mean, settings.semitones,
                                        settings.transposition_mean, settings.runtime, quiet=True)
                models.append((name, model, stft, sr))
        self.models = list(models)
        self.oracle_stft = util.make_stft(**settings.oracle_stft)
        self.cache = Data.AudioCache(settings.sample_rate, settings.cache_dir)


_worker: _Worker | None = None        # set in each worker process by _init_worker


def _init_worker(settings: EvalSettings, pool_worker: bool = False, models=None):
    global _worker
    if pool_worker:
        util.worker_default_signals()
    _worker = _Worker(settings, models)


def used_semitones(meta: dict) -> dict:
    """{system: the --semitones N it was separated with} from a results file's meta: each system's own
    entry, else the run's single value (0 in results from before --semitones: the raw models)."""
    run = meta.get("semitones", 0)
    return {name: info.get("semitones", run if isinstance(run, int) else 0)
            for name, info in meta.get("systems", {}).items()}


def estimates_for_track(sources: np.ndarray, sr: int, models, oracle_stft, oracles, mask_power=1.0, semitones=0):
    """sources (2, N) vocals/accompaniment at ``sr`` -> (estimates, stems): estimates
    {system: ((2, N) vocals/accompaniment estimate, seconds)}; stems {system: (4, N) estimates of
    Data.FOUR_STEMS} for the models that output all four."""
    mixture = sources.sum(0, keepdims=True)                             # (1, N)
    out = {"mixture": (np.repeat(mixture, 2, 0), 0.0)}
    stems = {}
    for name, model, stft, model_sr in models:
        t0 = time.perf_counter()
        x = util.resample(mixture, sr, model_sr)
        est = separate.separate_array(model, stft, x, mask_power=mask_power,
                                      semitones=separate.model_semitones(model, semitones))    # (S, 1, N')
        vocals = util.resample(est[list(model.sources).index("vocals")], model_sr, sr)[0]
        vocals = Data.fit_length(vocals, mixture.shape[1])
        out[name] = (np.stack([vocals, mixture[0] - vocals]), time.perf_counter() - t0)
        if set(Data.FOUR_STEMS) <= set(model.sources):
            stems[name] = np.stack([Data.fit_length(util.resample(est[list(model.sources).index(s)], model_sr, sr)[0],
                                                    mixture.shape[1]) for s in Data.FOUR_STEMS])
    for kind in oracles:
        spec = oracle_stft.stft(torch.from_numpy(sources))              # (2, F, T)
        m = oracle_mask(kind, spec[0], spec[1])
        vocals = oracle_stft.istft(m * (spec[0] + spec[1]), sources.shape[1]).numpy()
        out[f"oracle {kind.upper()}"] = (np.stack([vocals, mixture[0] - vocals]), 0.0)
    return out, stems


def track_metrics(refs: np.ndarray, est: np.ndarray, settings: EvalSettings):
    """(SDR, SIR, SAR) arrays, one value per source: BSS Eval v3 on the whole track, or with
    ``framewise`` the median over 1-second windows."""
    import bss_eval

    if settings.framewise:
        win = settings.sample_rate
        sdr, sir, sar = bss_eval.bss_eval_framewise(refs, est, win, win)
        return [bss_eval.median_over_frames(m) for m in (sdr, sir, sar)]
    return bss_eval.evaluate(refs, est, backend=settings.backend)[:3]


def _rows(track, system, sources, n, sdr, sir, sar, seconds):
    return [{"track": track, "system": system, "source": src, "samples": n, "sdr": float(sdr[i]),
             "sir": float(sir[i]), "sar": float(sar[i]), "seconds": seconds} for i, src in enumerate(sources)]


def _evaluate_track(index):
    w = _worker
    track = w.settings.tracks[index]
    sources = np.stack([w.cache.source(track, s) for s in Data.SOURCES]).astype(np.float64)
    n = sources.shape[1]
    silent = [s for s, x in zip(Data.SOURCES, sources) if not np.any(x)]
    if silent:
        return {"track": track.name, "skipped": f"silent reference: {', '.join(silent)}"}
    if n < w.oracle_stft.n_fft:
        return {"track": track.name, "skipped": f"too short ({n} samples)"}
    ests, stems = estimates_for_track(sources.astype(np.float32), w.settings.sample_rate, w.models,
                                      w.oracle_stft, w.settings.oracles, w.settings.mask_power,
                                      w.settings.semitones)
    rows = []
    for system, (est, seconds) in ests.items():
        rows += _rows(track.name, system, Data.SOURCES, n, *track_metrics(sources, est.astype(np.float64), w.settings),
                      seconds)
    extra = w.settings.extra
    if extra and stems and track.has(Data.FOUR_STEMS):    # --sources: 4-stem models against the four references
        refs = np.stack([w.cache.source(track, s) for s in Data.FOUR_STEMS]).astype(np.float64)[:, :n]
        if all(np.any(x) for x in refs):
            stems = {"mixture": np.repeat(sources.sum(0, keepdims=True), 4, 0), **stems}
            for system, est in stems.items():
                new = _rows(track.name, system, Data.FOUR_STEMS, n,
                            *track_metrics(refs, est.astype(np.float64), w.settings), 0.0)
                rows += [r for r in new if r["source"] in extra]
    result = {"track": track.name, "rows": rows}
    if w.settings.html_dir:
        import listening_page
        result["media"] = listening_page.save_track_media(
            Path(w.settings.html_dir), index, track.name, sources, {k: est for k, (est, _) in ests.items()},
            w.settings.sample_rate, w.settings.html_seconds)
    return result


def summarise(rows, framewise=False):
    """Per system and source: GNSDR/GSIR/GSAR (length-weighted) and mean/median SDR over tracks.
    With ``framewise`` each track's SDR is already its median over 1-second frames (museval v4);
    the headline number of that convention is then ``median_SDR`` (median over tracks)."""
    mix = {(r["track"], r["source"]): r["sdr"] for r in rows if r["system"] == "mixture"}
    out = {}
    for system in dict.fromkeys(r["system"] for r in rows):
        out[system] = {}
        for src in dict.fromkeys(r["source"] for r in rows):
            rs = [r for r in rows if r["system"] == system and r["source"] == src]
            if not rs:
                continue
            w = np.array([r["samples"] for r in rs], float)
            sdr = np.array([r["sdr"] for r in rs])
            nsdr = sdr - np.array([mix[(r["track"], src)] for r in rs])
            sir, sar = np.array([r["sir"] for r in rs]), np.array([r["sar"] for r in rs])
            ok = np.isfinite(nsdr) & np.isfinite(sir) & np.isfinite(sar)
            out[system][src] = {
                "tracks": int(len(rs)),
                "GNSDR": float(np.average(nsdr[ok], weights=w[ok])) if ok.any() else float("nan"),
                "GSIR": float(np.average(sir[ok], weights=w[ok])) if ok.any() else float("nan"),
                "GSAR": float(np.average(sar[ok], weights=w[ok])) if ok.any() else float("nan"),
                "mean_SDR": float(np.mean(sdr)), "median_SDR": float(np.median(sdr)),
                "mean_SIR": float(np.mean(sir)), "mean_SAR": float(np.mean(sar)),
            }
    return out


COLUMNS = ("system", "GNSDR", "GSIR", "GSAR", "mean SDR", "median SDR", "params", "train s", "x realtime")


def row_cells(system: str, summary_entry: dict, info: dict, source: str = "vocals") -> list[str]:
    """One table row as strings (2 decimals; '-' where unknown): the one formatter behind the
    printed tables and the report's."""
    r = summary_entry[source]
    return [system, f"{r['GNSDR']:.2f}", f"{r['GSIR']:.2f}", f"{r['GSAR']:.2f}", f"{r['mean_SDR']:.2f}",
            f"{r['median_SDR']:.2f}",
            f"{info['parameters']:,}" if info.get("parameters") else "-",
            f"{info['train_seconds']:.0f}" if info.get("train_seconds") else "-",
            speed_cell(summary_entry.get("speed_x_realtime"))]


def speed_cell(x: float | None) -> str:
    """Separation speed, x real time: whole numbers, one decimal below 1 (a slower-than-real-time system
    is not 0x), '-' where unknown."""
    if not x:
        return "-"
    return f"{x:.1f}" if x < 0.95 else f"{x:.0f}"


def format_table(summary, meta, source="vocals") -> str:
    widths = (22, 7, 7, 7, 9, 10, 10, 9, 10)

    def line(cells):
        return " ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(cells, widths)))
    # the source in the column header too, so that a table cut from the output (e.g. by tail) still says whose it is
    lines = [f"{source}: {meta['convention']}", line((f"system ({source})"[:widths[0]], *COLUMNS[1:]))]
    for system, s in summary.items():
        if source in s:
            lines.append(line(row_cells(system, s, meta["systems"].get(system, {}), source)))
    return "\n".join(lines)


def select_tracks(data, split: str, patterns) -> list:
    """The tracks of ``split`` in ``data`` (``Data.find_tracks``) whose names match one of the glob
    ``patterns`` (``--tracks``; None or empty: all of them); a UserError when patterns match none."""
    tracks = Data.find_tracks(data, split)
    if patterns:
        tracks = [t for t in tracks if any(fnmatch.fnmatchcase(t.name, pat) for pat in patterns)]
        if not tracks:
            raise UserError(f"{data}: no track of the {split} split matches {' '.join(patterns)}")
    return tracks


def evaluation_rate(requested, rated):
    """The evaluation sample rate and the STFT of the oracle masks, from ``rated`` = [(stft, rate)] of the models.

    ``--sample-rate`` if given, else the highest of the models' rates (every model resamples its input, so none
    is handed a mixture band-limited below its own rate), else 16000; the oracles take the STFT of the first
    model at that rate (the first model's when none runs at it; None without models). A note when the models'
    rates differ and ``--sample-rate`` does not say."""
    rates = [sr for _, sr in rated]
    sample_rate = requested or (max(rates) if rates else 16000)
    if requested is None and len(set(rates)) > 1:
        print(f"note: the models run at {', '.join(str(r) for r in sorted(set(rates)))} Hz; every one is scored "
              f"at {sample_rate} Hz (--sample-rate to choose)", file=sys.stderr)
    first = next((stft for stft, sr in rated if sr == sample_rate), rated[0][0] if rated else None)
    return sample_rate, first


def evaluate(args) -> dict:
    data = args.data
    if data is None:
        import demo_data
        data = demo_data.make_demo_dataset(demo_data.DEMO_ROOT)
    tracks = select_tracks(data, args.split, args.tracks)
    if args.limit:
        tracks = tracks[:args.limit]
    if not tracks:
        raise UserError(f"{data}: no tracks in the {args.split} split")
    names = args.name or []
    if len(names) not in (0, len(args.model)):
        raise UserError(f"--name gives {len(names)} names for {len(args.model)} models")
    jobs = max(1, min(args.jobs or 1, len(tracks)))
    if jobs == 1:             # the work stays in this process, on one thread, with the models loaded here
        torch.set_num_threads(1)
    systems, rated, loaded = {}, [], []
    for i, path in enumerate(args.model):
        model, stft, sr, ckpt = util.load_model(path)                  # validates before forking
        name = names[i] if names else util.checkpoint_name(path)
        if name in systems:
            name = f"{name}#{i + 1}"
        systems[name] = {"checkpoint": str(path), "class": ckpt["model_class"],
                         "parameters": Model.count_parameters(model),
                         "sample_rate": sr, "stft": ckpt["stft"],
                         "train_seconds": util.train_seconds(ckpt),
                         "epoch": ckpt.get("epoch"), "semitones": separate.model_semitones(model, args.semitones)}
        used = separate.apply_settings(model, args.shifts, args.ensemble_mean, args.semitones,
                                       args.transposition_mean, args.runtime)
        systems[name].update((key, value) for key, value in used.items() if value is not None)
        if jobs == 1:
            loaded.append((name, model, stft, sr))
        else:
            separate.release_runtime(model)      # each worker makes its own session; none crosses a fork
        rated.append((stft, sr))
    model_names = list(systems)
    # the workers try onnxruntime only if the parent's check passed (a failure of their own prints its note)
    worker_runtime = args.runtime if any(s.get("runtime") == "onnxruntime" for s in systems.values()) else "torch"
    sample_rate, first = evaluation_rate(args.sample_rate, rated)
    oracle_stft = util.make_stft(args.n_fft or (first.n_fft if first else 1024),
                                 args.hop or (first.hop if first else 256),
                                 first.window_name if first else "hann")
    settings = EvalSettings(models=tuple(str(p) for p in args.model), names=tuple(model_names),
                            tracks=tuple(tracks), sample_rate=sample_rate, cache_dir=str(args.cache_dir),
                            oracle_stft=oracle_stft.config(), oracles=tuple(args.oracle), backend=args.backend,
                            framewise=args.framewise, extra=tuple(args.sources),
                            html_dir=str(args.out) if args.html else None, html_seconds=args.html_seconds,
                            mask_power=args.mask_power, ensemble_mean=args.ensemble_mean,
                            shifts=args.shifts, semitones=args.semitones,
                            transposition_mean=args.transposition_mean, runtime=worker_runtime)
    # decode once in the parent so workers never race on the cache
    cache = Data.AudioCache(sample_rate, args.cache_dir)
    for t in tqdm(tracks, desc="decoding", disable=args.quiet, leave=False):
        cache.length(t)
    t0 = time.time()
    results = []
    if jobs == 1:
        _init_worker(settings, models=loaded)
        it = map(_evaluate_track, range(len(tracks)))
        results = list(tqdm(it, total=len(tracks), desc="evaluating", disable=args.quiet))
    else:
        ctx = mp.get_context("fork" if sys.platform != "win32" else "spawn")
        with ctx.Pool(jobs, initializer=_init_worker, initargs=(settings, True)) as pool:
            it = pool.imap(_evaluate_track, range(len(tracks)))
            results = list(tqdm(it, total=len(tracks), desc="evaluating", disable=args.quiet))
    wall = time.time() - t0
    rows = [r for res in results for r in res.get("rows", [])]
    skipped = [(res["track"], res["skipped"]) for res in results if "skipped" in res]
    for name, why in skipped:
        print(f"skipped {name}: {why}", file=sys.stderr)
    if not rows:
        raise UserError("every track was skipped; nothing to evaluate")
    summary = summarise(rows, args.framewise)
    audio_seconds = sum(r["samples"] for r in rows
                        if r["system"] == "mixture" and r["source"] == "vocals") / sample_rate
    for system in summary:
        secs = sum(r["seconds"] for r in rows if r["system"] == system and r["source"] == "vocals")
        summary[system]["speed_x_realtime"] = audio_seconds / secs if secs else None
    convention = ("museval v4 framewise (1 s windows), median over frames, median over tracks"
                  if args.framewise else
                  f"BSS Eval v3 ({'mir_eval' if args.backend == 'mir_eval' else 'bss_eval.py, = mir_eval'}), "
                  "whole tracks; G* = length-weighted means, NSDR = SDR - SDR(mixture)")
    meta = {"data": str(data), "split": args.split, "track_patterns": args.tracks, "tracks": len(tracks) - len(skipped),
            "skipped": skipped, "sample_rate": sample_rate, "oracle_stft": oracle_stft.config(),
            "backend": args.backend, "framewise": args.framewise, "convention": convention,
            "mask_power": args.mask_power,
            **separate.requested_settings(settings.shifts, args.ensemble_mean, args.semitones,
                                          args.transposition_mean),
            "audio_seconds": audio_seconds, "wall_seconds": wall, "systems": systems,
            "speed_note": "separation speed measured single-threaded per worker, excluding decoding"}
    media = {res["track"]: res["media"] for res in results if "media" in res}
    return {"meta": meta, "summary": summary, "rows": rows, "media": media}


def check_out(out: Path, force=False):
    """Before any work: the results folder must be new (or --force) and writable."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    if (out / "summary.json").exists() and not force:
        raise UserError(f"{out}: results exist (use --force to overwrite)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        util.temp_path(out, ".write-test.", ".tmp").unlink()
    except OSError as err:
        raise UserError(f"{out}: cannot write results there ({err.strerror or type(err).__name__})") from None


def write_results(result, out: Path, force=False):
    if out.exists() and (out / "summary.json").exists() and not force:
        raise UserError(f"{out}: results exist (use --force to overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    util.write_json(out / "summary.json", {"meta": result["meta"], "summary": result["summary"]})

    def write_csv(tmp):
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(result["rows"][0]))
            w.writeheader()
            w.writerows(result["rows"])
    util.atomic_write(out / "tracks.csv", write_csv)


def main(argv=None):
    args = parse_args(argv)
    if args.html and args.out is None:
        raise UserError("--html writes the page into the results folder: give --out")
    if args.out is not None:
        check_out(args.out, args.force)
    if args.compare is not None and not args.compare.is_file():
        raise UserError(f"{args.compare}: no such summary.json to compare with")
    # read before the run: --out may write over the very file compared with
    committed = json.loads(args.compare.read_text()) if args.compare is not None else None
    util.keep_freed_memory()      # each clip's large buffers are reused, not faulted in afresh (README, Benchmarks)
    result = evaluate(args)
    meta = result["meta"]
    print(f"{meta['data']} [{meta['split']}]: {meta['tracks']} tracks, {meta['audio_seconds'] / 60:.1f} min of audio, "
          f"evaluated at {meta['sample_rate']} Hz in {meta['wall_seconds']:.1f} s")
    averaged = settings_line(meta.get("systems", {}))
    if averaged:
        print(f"test-time averaging: {averaged} (--semitones 0 --shifts 1: the raw models)")
    print(format_table(result["summary"], meta, "vocals"))
    print()
    print(format_table(result["summary"], meta, "accompaniment"))
    for src in args.sources:
        print()
        print(format_table(result["summary"], meta, src))
    if args.out is not None:
        write_results(result, args.out, args.force)
        print(f"\nwrote {args.out / 'tracks.csv'} and {args.out / 'summary.json'}")
    if args.html:
        import listening_page
        page = listening_page.write_page(args.out, result, result["media"], row_cells, COLUMNS)
        print(f"listening page: {page} (open it in a browser; it needs no server)")
    if committed is not None:
        diffs = compare_summaries(result["summary"], committed["summary"])
        absent = [name for name in committed["summary"] if name not in result["summary"]]
        print(f"\n{args.compare}: " + ("same numbers (every system, source and metric within 0.01 dB)"
                                      if not diffs else f"{len(diffs)} difference(s):\n  " + "\n  ".join(diffs)))
        if absent:
            print(f"not in this run, so not compared: {', '.join(absent)}")
        then, now = used_semitones(committed.get("meta", {})), used_semitones(result["meta"])
        changed = {name: (then[name], n) for name, n in now.items() if name in then and then[name] != n}
        if diffs and changed:
            print("note: --semitones differs from the committed results' for "
                  + ", ".join(f"{name} ({a} then, {b} now)" for name, (a, b) in changed.items()))
        return 1 if diffs else 0
    return 0


def settings_line(systems: dict) -> str:
    """What each system averages over at test time, e.g. ``RNN 4 semitones; U-Net 2 semitones, 4 shifts``."""
    parts = []
    for name, info in systems.items():
        shifts = info.get("shifts")
        shifts = max(shifts) if isinstance(shifts, list) else shifts
        done = [f"{info['semitones']} semitones"] if info.get("semitones") else []
        done += [f"{shifts} shifts"] if shifts and shifts > 1 else []
        if done:
            parts.append(f"{name} {', '.join(done)}")
    return "; ".join(parts)


def compare_summaries(new: dict, old: dict, tol: float = 0.01) -> list[str]:
    """Differences above ``tol`` dB between two summary dicts (the sources and metrics of ``old``'s systems
    that ``new`` has: a rerun of a few of the systems compares those; a source it lacks is a difference)."""
    diffs = []
    for system, sources in old.items():
        if system not in new:
            continue
        for src, metrics in sources.items():
            if not isinstance(metrics, dict):
                continue
            for key in ("GNSDR", "GSIR", "GSAR", "mean_SDR", "median_SDR"):
                a, b = metrics.get(key), new.get(system, {}).get(src, {}).get(key)
                if a is None:
                    continue
                if b is None:
                    diffs.append(f"{system} {src}: missing")
                    break
                if not (abs(a - b) <= tol or (np.isinf(a) and a == b) or a > 100 and b > 100):
                    diffs.append(f"{system} {src} {key}: {b:.2f} now, {a:.2f} committed")
    return diffs


if __name__ == "__main__":
    util.run_cli(main)
