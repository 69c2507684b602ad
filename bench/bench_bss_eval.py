#!/usr/bin/env python
"""Benchmark ``bss_eval.bss_eval_sources`` (fast backend) against mir_eval on MIR-1K.

For each clip of ``../shared/data/mir1k/test_public`` (stereo FLAC, 16 kHz,
left = accompaniment, right = voice) the references are (vocals,
accompaniment) and three "systems" are scored, as an evaluation scores the
mixture baseline, models and oracles of each track:

* ``mixture``: the estimate of BOTH sources is the mixture left + right (the
  MIR-1K NSDR baseline).  Its artifact energy is pure rounding noise: SAR ~
  260-280 dB, "numerically infinite", not reproducible even within mir_eval
  across BLAS thread counts -- reported separately, as such;
* ``crude``: vocals = 4th-order Butterworth high-pass of the mixture at 300
  Hz, accompaniment = low-pass at 1 kHz (a linear filtering of the mixture,
  so SAR is high: 30-70 dB);
* ``mask``: the oracle soft (ratio) mask of the vocals' STFT magnitude
  applied to the mixture, accompaniment = mixture - vocals: model-like figures
  (SDR ~10-20 dB, SAR ~13-21 dB).

Timings, all with one BLAS thread (``_bss_eval_core.BLAS_THREADS``) and one FFT
thread:

* mir_eval, serially;
* the fast implementation, serially, as an evaluation calls it (one clip
  after the other, its systems in a row: the analysis of the references is
  reused between them, ``_bss_eval_core.CACHE_REFERENCES``), and with that reuse
  disabled (every call from scratch);
* both on a multiprocessing pool (default: one process per CPU; one task per
  clip, as ``evaluate_sdr.py``; the forked workers inherit the inputs),
  "warm" = pool already started (for the fast backend also including its
  start-up): the whole-evaluation comparison.

The machine may be shared (training jobs): wall times then depend on the
load, so CPU times (``time.process_time``; for the pool, summed over the
workers) and their ratios are printed as well -- the CPU ratio is the fair
speed-up figure on a busy machine.  The accuracy part prints the largest
|difference| from mir_eval per system and criterion.

Usage::

    python bench/bench_bss_eval.py [--limit N] [--processes P] [--no-crude]

(``--no-crude``: the mixture baseline only.)  Exits 0 with "skipped: data
absent" when the data folder is missing.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "mir1k" / "test_public"
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

import _bss_eval_core as core  # noqa: E402
import bss_eval  # noqa: E402
import util  # noqa: E402

SAR_FINITE_DB = 100.0  # SAR above this is rounding noise for the mixture baseline
KINDS = ("mixture", "crude", "mask")


def load_clips(folder: Path, limit: int | None):
    """Return [(name, voice float32 (n,), accompaniment float32 (n,))]."""
    import soundfile as sf

    files = sorted(folder.glob("*.flac")) + sorted(folder.glob("*.wav"))
    files = sorted(files)[:limit] if limit else sorted(files)
    clips = []
    for f in files:
        x, _sr = sf.read(str(f), dtype="float32", always_2d=True)
        clips.append((f.stem, np.ascontiguousarray(x[:, 1]), np.ascontiguousarray(x[:, 0])))
    return clips


def make_inputs(voice, accomp, kind="mixture"):
    """references (2, n) = (vocals, accompaniment); estimates (2, n) float64."""
    voice = voice.astype(np.float64)
    accomp = accomp.astype(np.float64)
    refs = np.stack([voice, accomp])
    mix = voice + accomp
    if kind == "mixture":
        ests = np.stack([mix, mix])
    elif kind == "crude":  # crude filter-based separation
        from scipy.signal import butter, sosfilt

        hp = butter(4, 300, btype="highpass", fs=16000, output="sos")
        lp = butter(4, 1000, btype="lowpass", fs=16000, output="sos")
        ests = np.stack([sosfilt(hp, mix), sosfilt(lp, mix)])
    elif kind == "mask":  # oracle soft mask (model-like)
        from scipy.signal import istft, stft

        _, _, Z = stft(mix, nperseg=1024)
        _, _, V = stft(voice, nperseg=1024)
        _, _, A = stft(accomp, nperseg=1024)
        m = np.abs(V) / (np.abs(V) + np.abs(A) + 1e-12)
        vocals = istft(m * Z, nperseg=1024)[1][:len(mix)]
        ests = np.stack([vocals, mix - vocals])
    else:
        raise ValueError(kind)
    return refs, ests


_INPUTS = []  # [{kind: (refs, ests)}] per clip, set before the pool forks (as the workers
# of an evaluation read their tracks themselves, nothing big is sent to them)


def score_clip(args):
    """Score the systems of clip number i in a worker; returns ({kind: (3, 2)}, CPU s)."""
    i, kinds, backend, cache = args
    core.CACHE_REFERENCES = cache
    inputs = _INPUTS[i] if _INPUTS else None
    out = {}
    c = time.process_time()
    for k in kinds:
        out[k] = np.array(bss_eval.evaluate(*inputs[k], backend=backend)[:3])
    return out, time.process_time() - c


def run_serial(inputs, kinds, backend, cache=True):
    """Returns (results [{kind: (3, 2)}], wall s, CPU s, {kind: CPU s})."""
    saved = core.CACHE_REFERENCES
    core.CACHE_REFERENCES = cache
    res, per_kind = [], dict.fromkeys(kinds, 0.0)
    try:
        t, c = time.perf_counter(), time.process_time()
        for ins in inputs:
            out = {}
            for k in kinds:
                ck = time.process_time()
                out[k] = np.array(bss_eval.evaluate(*ins[k], backend=backend)[:3])
                per_kind[k] += time.process_time() - ck
            res.append(out)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
    finally:
        core.CACHE_REFERENCES = saved
    return res, wall, cpu, per_kind


def _noop(_):
    return os.getpid()


def make_pool(processes):
    """Worker processes (forked: they inherit _INPUTS); bss_eval limits BLAS threads itself."""
    pool = mp.get_context("fork").Pool(processes)
    pool.map(_noop, range(processes * 4))  # make sure every worker has started
    return pool


def max_abs_diffs(ref, fast, kind):
    """Largest |difference| per criterion over all clips and both sources."""
    r = np.stack([x[kind] for x in ref])  # (nclips, 3, 2)
    f = np.stack([x[kind] for x in fast])
    d = np.abs(r - f)
    finite_sar = r[:, 2] < SAR_FINITE_DB
    return {
        "SDR": d[:, 0].max(), "SIR": d[:, 1].max(), "SAR": d[:, 2].max(),
        "SAR finite": d[:, 2][finite_sar].max() if finite_sar.any() else float("nan"),
        "n_finite_sar": int(finite_sar.sum()),
        "range": [(r[:, m].min(), r[:, m].max()) for m in range(3)],
        "fast SAR range": (f[:, 2].min(), f[:, 2].max()),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="number of clips (default: all)")
    ap.add_argument("--processes", type=util.positive_int, default=os.cpu_count() or 1)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--no-crude", action="store_true",
                    help="the mixture baseline only (no crude / mask estimates)")
    args = ap.parse_args(argv)

    if not args.data.is_dir():
        print(f"skipped: data absent ({args.data})")
        return 0
    warnings.filterwarnings("ignore", message=r"mir_eval\.separation", category=FutureWarning)

    t0 = time.perf_counter()
    clips = load_clips(args.data, args.limit)
    if not clips:
        print(f"skipped: data absent (no audio files in {args.data})")
        return 0
    kinds = ("mixture",) if args.no_crude else KINDS
    n, ns = len(clips), len(clips) * len(kinds)
    seconds = sum(len(v) for _, v, _ in clips) / 16000
    print(f"{n} clips, {seconds:.1f} s of audio (loaded in {time.perf_counter() - t0:.1f} s); "
          f"systems per clip: {', '.join(kinds)} -> {ns} calls per backend; "
          f"{os.cpu_count()} CPUs, pool of {args.processes}, load average {os.getloadavg()[0]:.2f}")

    v, a = clips[0][1][:20000], clips[0][2][:20000]
    bss_eval.evaluate(*make_inputs(v, a), backend="fast")  # warm-up (imports, FFT plans)
    bss_eval.evaluate(*make_inputs(v, a), backend="mir_eval")

    _INPUTS[:] = [{k: make_inputs(v, a, k) for k in kinds} for _, v, a in clips]
    ref, t_mir, c_mir, k_mir = run_serial(_INPUTS, kinds, "mir_eval")
    fast, t_fast, c_fast, k_fast = run_serial(_INPUTS, kinds, "fast", cache=True)
    _, t_nc, c_nc, k_nc = run_serial(_INPUTS, kinds, "fast", cache=False)

    t = time.perf_counter()
    pool = make_pool(args.processes)
    t_start = time.perf_counter() - t
    t = time.perf_counter()
    par = pool.map(score_clip, [(i, kinds, "fast", True) for i in range(n)], chunksize=1)
    t_par = time.perf_counter() - t
    c_par = sum(p[1] for p in par)
    t = time.perf_counter()
    par_mir = pool.map(score_clip, [(i, kinds, "mir_eval", True) for i in range(n)], chunksize=1)
    t_par_mir = time.perf_counter() - t
    c_par_mir = sum(p[1] for p in par_mir)
    pool.close()
    pool.join()
    par_res = [p[0] for p in par]

    print()
    print("Timings (CPU = time.process_time(); for the pool summed over the workers; on a shared")
    print("machine the CPU ratio is the fair speed-up, wall times depend on the load):")
    hdr = (f"{'backend':<38}{'wall [s]':>9}{'ms/call':>9}{'x wall':>8}"
           f"{'CPU [s]':>9}{'ms/call':>9}{'x CPU':>7}")
    print(hdr)
    rows = [
        ("mir_eval (serial)", t_mir, c_mir),
        (f"mir_eval (pool x{args.processes}, warm)", t_par_mir, c_par_mir),
        ("fast (serial, refs reused)", t_fast, c_fast),
        ("fast (serial, every call from scratch)", t_nc, c_nc),
        (f"fast (pool x{args.processes}, warm)", t_par, c_par),
        (f"fast (pool x{args.processes}, incl. start-up)", t_par + t_start, c_par),
    ]
    for label, w, c in rows:
        print(f"{label:<38}{w:>9.2f}{1e3 * w / ns:>9.1f}{t_mir / w:>8.1f}"
              f"{c:>9.2f}{1e3 * c / ns:>9.1f}{c_mir / c:>7.1f}")
    print(f"Whole evaluation on the pool (as evaluate_sdr.py runs it): mir_eval {t_par_mir:.2f} s, "
          f"fast {t_par:.2f} s wall: x{t_par_mir / t_par:.1f} (CPU x{c_par_mir / c_par:.1f})")
    print("CPU ms per call by system:  " + "; ".join(
        f"{k}: mir_eval {1e3 * k_mir[k] / n:.0f}, fast {1e3 * k_fast[k] / n:.1f} "
        f"(x{k_mir[k] / k_fast[k]:.1f}), from scratch {1e3 * k_nc[k] / n:.1f} "
        f"(x{k_mir[k] / k_nc[k]:.1f})" for k in kinds))

    same = all(np.array_equal(p[k], f[k]) for p, f in zip(par_res, fast) for k in kinds)
    print()
    print(f"Accuracy, max |fast - mir_eval| over {n} clips x 2 sources "
          f"(pool results {'identical to' if same else 'DIFFERENT from'} serial ones):")
    for k in kinds:
        d = max_abs_diffs(ref, fast, k)
        rng = ", ".join(f"{m} {lo:.2f}..{hi:.2f}" for m, (lo, hi) in zip(("SDR", "SIR", "SAR"), d["range"]))
        if k == "mixture":
            print(f"  {k:<8} SDR {d['SDR']:.1e} dB, SIR {d['SIR']:.1e} dB   (mir_eval: {rng} dB)")
            print(f"  {'':<8} SAR is rounding noise (numerically infinite): mir_eval "
                  f"{d['range'][2][0]:.0f}..{d['range'][2][1]:.0f} dB, fast "
                  f"{d['fast SAR range'][0]:.0f}..{d['fast SAR range'][1]:.0f} dB"
                  + (f"; finite (<{SAR_FINITE_DB:.0f} dB) on {d['n_finite_sar']}: "
                     f"max |delta| {d['SAR finite']:.1e} dB" if d["n_finite_sar"] else ""))
        else:
            print(f"  {k:<8} SDR {d['SDR']:.1e} dB, SIR {d['SIR']:.1e} dB, SAR {d['SAR']:.1e} dB"
                  f"   (mir_eval: {rng} dB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
