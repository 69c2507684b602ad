"""BSS Eval v3 source-separation criteria (SDR, SIR, SAR), fast, with mir_eval's numbers.

Conventions
-----------
* Sources are rows: ``reference_sources`` and ``estimated_sources`` are arrays of shape
  (nsrc, nsampl) (or (nsampl,) for one source), float64 after conversion.
* Every estimate ``e`` of reference ``s_j`` is decomposed as ``e = s_filt + e_interf + e_artif``
  with time-invariant distortion filters of ``FILTER_LEN`` = 512 taps (BSS Eval v3);
  ``SDR = 10 log10 ||s_filt||^2 / ||e_interf + e_artif||^2``, ``SIR = ... / ||e_interf||^2``,
  ``SAR = 10 log10 ||s_filt + e_interf||^2 / ||e_artif||^2``, in dB.
* :func:`bss_eval_sources` has mir_eval's name, signature and defaults (``compute_permutation=True``);
  evaluate_sdr.py passes False (estimate j is matched to reference j).
* :func:`bss_eval_framewise` is museval's "v4" convention: the same whole-signal filters, the
  criteria per window; :func:`median_over_frames` aggregates as museval.

Method
------
``s_filt`` is the least-squares projection of ``e`` on the 512 delayed copies of ``s_j``;
``s_filt + e_interf`` the projection on the delayed copies of all references. The projections
solve Gram systems whose blocks are Toeplitz; :mod:`_bss_eval_core` computes the correlations by
blocks of real FFTs, solves the systems by Levinson-preconditioned conjugate gradients (accepted
only at a 1e-12 residual, else mir_eval's direct solve / lstsq), reuses the references' analysis
across calls with equal references, and forms error signals where energy differences would
cancel. Agreement with mir_eval 0.8.2: ~1e-11 dB on MIR-1K clips (tests/test_bss_eval.py); about
20x less CPU time (bench/bench_bss_eval.py). ``evaluate(..., backend="mir_eval")`` runs mir_eval
itself.

References
----------
E. Vincent, R. Gribonval, C. Fevotte, "Performance measurement in blind audio source
separation", IEEE TASLP 14(4):1462-1469, 2006.
A. Liutkus, F.-R. Stoter, N. Ito, "The 2018 Signal Separation Evaluation Campaign", LVA/ICA 2018
(the framewise "v4" convention).
C. Raffel et al., "mir_eval: A transparent implementation of common MIR metrics", ISMIR 2014.
"""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import scipy.fft as sfft

from _bss_eval_core import (FILTER_LEN, MAX_SOURCES, _Analysis, _blas_limit, _distinct_rows, _energy,
                            _n_frames, _parseval_weights, _prepare, _safe_db)

__all__ = ["FILTER_LEN", "MAX_SOURCES", "bss_eval_sources", "bss_eval_framewise", "median_over_frames", "evaluate"]


def bss_eval_sources(reference_sources, estimated_sources, compute_permutation=True,
                     *, workers=None):
    """BSS Eval v3 ``bss_eval_sources``: same numbers as mir_eval, computed faster.

    Parameters
    ----------
    reference_sources : array, shape (nsrc, nsampl) or (nsampl,)
        True sources.
    estimated_sources : array, same shape as ``reference_sources``
        Estimated sources.
    compute_permutation : bool
        If True, evaluate every (estimate, reference) pair and return the
        ordering of estimates maximising the mean SIR, exactly as mir_eval
        (ties resolved in ``itertools.permutations`` order); the default is
        mir_eval's, True.
    workers : int, optional (keyword only)
        Threads for ``scipy.fft`` (default: 1).

    Returns
    -------
    sdr, sir, sar : float64 arrays, shape (nsrc,)
        In dB; ``+inf`` where the corresponding error energy is exactly 0 (e.g.
        the SIR of a single source), as mir_eval.
    perm : int array, shape (nsrc,)
        Estimate ``perm[j]`` is matched to reference ``j`` (``arange(nsrc)``
        when ``compute_permutation`` is False).

    Edge cases (all following mir_eval unless noted)
    ------------------------------------------------
    * 1-D inputs are treated as one source, shape (1, nsampl).
    * Shapes differing after that -> ``ValueError``.
    * More than 2 dimensions -> ``ValueError`` (mir_eval's validate lets 3-D
      input through and then raises an unrelated ``ValueError`` from numpy).
    * Empty inputs -> ``UserWarning`` and four empty arrays.
    * A reference or an estimate that is all zeros -> ``ValueError``.  A source
      that is silent for only part of the signal is fine.
    * NaN or inf anywhere -> ``ValueError`` naming the problem (deliberate
      difference: mir_eval does not check and silently returns NaN figures).
    * Complex or non-numeric input -> ``ValueError``.
    * More than ``MAX_SOURCES`` (100) sources -> ``ValueError``.
    * Any length >= 1 is accepted, as by mir_eval.  Signals shorter than
      ``(nsrc - 1) * 512 + 1`` samples make the Gram matrix rank deficient;
      then mir_eval's figures depend on rounding (see the module docstring).
    """
    prepared = _prepare(reference_sources, estimated_sources)
    if prepared is None:
        return np.array([]), np.array([]), np.array([]), np.array([])
    refs, ests = prepared
    nsrc = refs.shape[0]
    if compute_permutation:
        pairs = [(e, j) for e in range(nsrc) for j in range(nsrc)]
    else:
        pairs = [(e, e) for e in range(nsrc)]
    # identical estimates (e.g. the mixture as the estimate of every source, the
    # usual baseline) have identical figures: analyse each distinct one once
    uniq, rep = _distinct_rows(ests)
    upairs = list(dict.fromkeys((rep[e], j) for e, j in pairs))
    with _blas_limit():
        ana = _Analysis(refs, ests[uniq] if len(uniq) < nsrc else ests, workers=workers)
        c_all, c_own = ana.filters(upairs)
        en = ana.energies_auto(c_all, c_own, upairs)
    where = {pair: p for p, pair in enumerate(upairs)}

    # criteria; rows = estimate, columns = reference (mir_eval's layout)
    sdr = np.full((nsrc, nsrc), np.nan)
    sir = np.full((nsrc, nsrc), np.nan)
    sar = np.full((nsrc, nsrc), np.nan)
    for e, j in pairs:
        p, u = where[rep[e], j], rep[e]
        sdr[e, j] = _safe_db(en["filt"][p], en["dist"][p])  # s_filt vs e_interf + e_artif
        sir[e, j] = _safe_db(en["filt"][p], en["interf"][p])  # s_filt vs e_interf
        sar[e, j] = _safe_db(en["all"][u], en["artif"][u])  # s_filt + e_interf vs e_artif

    dum = np.arange(nsrc)
    if compute_permutation:
        perms = list(itertools.permutations(range(nsrc)))
        mean_sir = np.array([np.mean(sir[list(p), dum]) for p in perms])
        popt = np.asarray(perms[int(np.argmax(mean_sir))])
    else:
        popt = dum
    return sdr[popt, dum], sir[popt, dum], sar[popt, dum], popt


def bss_eval_framewise(reference_sources, estimated_sources, window, hop, *,
                       criteria="sources", workers=None, max_chunk_elems=2**20):
    """Framewise BSS Eval with whole-signal distortion filters (the museval "v4" convention).

    Convention (museval ``bss_eval(..., framewise_filters=False)``, i.e. BSS Eval v4,
    Liutkus, Stoter & Ito, "The 2018 Signal Separation Evaluation Campaign", LVA/ICA 2018):

    1. The 512-tap distortion filters (projection of estimate ``j`` on delayed
       copies of reference ``j``, and on delayed copies of all references) are
       computed ONCE on the whole signals -- exactly the filters of
       :func:`bss_eval_sources`.
    2. Frame ``t`` covers samples ``[t*hop, t*hop + window)``; there are
       ``floor((nsampl - window + hop) / hop)`` frames (a trailing partial frame
       is dropped), or a single frame covering everything when
       ``window >= nsampl``.
    3. In each frame, the frame's segment of each reference (zero outside the
       frame) is filtered by the global filters, giving ``s_filt``, ``P_all e``
       of length ``window + 511``; the estimate's segment is zero-padded to that
       length; the energy ratios are computed on these frame signals.
    4. If ANY reference or ANY estimate is all-zero within a frame, the frame is
       NaN for all sources (museval's rule).

    With ``criteria="sources"`` (default) the ratios are BSS Eval v3's
    ``bss_eval_sources`` ones (museval ``bsseval_sources_version=True``), so a
    single frame covering the whole signal equals :func:`bss_eval_sources`.
    With ``criteria="images"`` the SDR is museval's default (SiSEC 2018) one,
    ``||s_true||^2 / ||e - s_true||^2`` -- for mono sources the other two
    ratios are identical in both versions.  museval additionally adds
    ``eps * I`` to the Gram matrix before solving; this is negligible and omitted.
    No permutation search is done: estimate ``j`` is matched to reference ``j``.

    Parameters
    ----------
    reference_sources, estimated_sources : arrays, shape (nsrc, nsampl) or (nsampl,)
        Validated as in :func:`bss_eval_sources` (whole-signal silence -> ValueError).
    window, hop : int
        Frame length and hop in samples (e.g. ``window = hop = sr`` for museval's
        1-second frames).  ``window`` may be ``np.inf`` (one frame).
    criteria : {"sources", "images"}
    workers : int, optional
        Threads for ``scipy.fft``.
    max_chunk_elems : int
        Frames are processed in chunks of about this many spectrum bins per
        array, to bound memory on long signals.

    Returns
    -------
    sdr, sir, sar : float64 arrays, shape (nsrc, nframes)
        NaN in silent frames (see 4.); aggregate with :func:`median_over_frames`.
    """
    if criteria not in ("sources", "images"):
        raise ValueError(f"criteria must be 'sources' or 'images', got {criteria!r}")
    prepared = _prepare(reference_sources, estimated_sources)
    if prepared is None:
        return np.empty((0, 0)), np.empty((0, 0)), np.empty((0, 0))
    refs, ests = prepared
    nsrc, nsampl = refs.shape
    if not hop > 0 or not window > 0 or (window < nsampl and not np.isfinite(hop)):
        raise ValueError(f"window and hop must be positive (hop finite when window < nsampl), "
                         f"got window={window}, hop={hop}")

    with _blas_limit():
        ana = _Analysis(refs, ests, workers=workers)
        # c_all: (nest, nsrc, flen), c_own: (nest, flen)
        c_all, c_own = ana.filters([(e, e) for e in range(nsrc)])
    del ana

    nwin = _n_frames(nsampl, window, hop)
    if window >= nsampl:
        win_len, hop = nsampl, nsampl
    else:
        win_len, hop = int(window), int(hop)
    # frame signals (window + flen - 1 samples) fit in n_fft: products of spectra
    # are exact linear convolutions, energies follow from Parseval
    n_fft = sfft.next_fast_len(win_len + FILTER_LEN - 1, real=True)
    w = _parseval_weights(n_fft)
    fc_all = sfft.rfft(c_all, n=n_fft, axis=-1, workers=workers)  # (nest, nsrc, F)
    fc_own = sfft.rfft(c_own, n=n_fft, axis=-1, workers=workers)  # (nest, F)

    out = np.full((3, nsrc, nwin), np.nan)
    n_bins = n_fft // 2 + 1
    chunk = max(1, int(max_chunk_elems // (n_bins * nsrc)))
    for t0 in range(0, nwin, chunk):
        t1 = min(nwin, t0 + chunk)
        starts = np.arange(t0, t1) * hop
        idx = starts[:, None] + np.arange(win_len)[None, :]  # (nf, win_len)
        ref_fr = refs[:, idx].transpose(1, 0, 2)  # (nf, nsrc, win_len)
        est_fr = ests[:, idx].transpose(1, 0, 2)
        silent = np.all(ref_fr == 0, axis=2).any(axis=1) | np.all(est_fr == 0, axis=2).any(axis=1)
        R = sfft.rfft(ref_fr, n=n_fft, axis=-1, workers=workers)  # (nf, nsrc, F)
        E = sfft.rfft(est_fr, n=n_fft, axis=-1, workers=workers)  # (nf, nest, F)
        del ref_fr, est_fr
        P_all = np.einsum("eif,tif->tef", fc_all, R)  # (nf, nest, F)
        S = fc_own[None] * R  # (nf, nest, F): s_filt (reference e filtered, for estimate e)
        en_filt = _energy(S, w)
        en_all = _energy(P_all, w)
        en_dist = _energy(E - S, w)
        en_interf = np.zeros_like(en_filt) if nsrc == 1 else _energy(P_all - S, w)
        en_artif = _energy(E - P_all, w)
        if criteria == "sources":
            sdr = _safe_db(en_filt, en_dist)
        else:
            sdr = _safe_db(_energy(R, w), _energy(E - R, w))
        sir = _safe_db(en_filt, en_interf)
        sar = _safe_db(en_all, en_artif)
        block = np.stack([sdr, sir, sar])  # (3, nf, nsrc)
        block[:, silent, :] = np.nan
        out[:, :, t0:t1] = block.transpose(0, 2, 1)
    return out[0], out[1], out[2]


def median_over_frames(x):
    """Median over frames ignoring NaN (silent) frames, as museval's aggregation.

    x : array (..., nframes) -> (...); NaN where every frame is NaN (no warning).
    """
    x = np.asarray(x, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(x, axis=-1)


def evaluate(reference_sources, estimated_sources, backend="fast", compute_permutation=False):
    """Dispatch ``bss_eval_sources`` to this implementation or to mir_eval's.

    backend : "fast" (this module) or "mir_eval" (the reference implementation;
        its deprecation FutureWarning is silenced and, like this module, it runs
        with ``BLAS_THREADS`` BLAS threads -- the same figures, up to rounding).
    Returns (sdr, sir, sar, perm) as :func:`bss_eval_sources`.
    """
    if backend == "fast":
        return bss_eval_sources(reference_sources, estimated_sources, compute_permutation)
    if backend == "mir_eval":
        with warnings.catch_warnings():
            # mir_eval 0.8 marks the separation module deprecated (FutureWarning whose
            # message starts with the function's qualified name)
            warnings.filterwarnings("ignore", message=r"mir_eval\.separation",
                                    category=FutureWarning)
            import mir_eval.separation

            with _blas_limit():  # same numbers, avoids pathological BLAS threading
                return mir_eval.separation.bss_eval_sources(
                    np.asarray(reference_sources), np.asarray(estimated_sources),
                    compute_permutation=compute_permutation,
                )
    raise ValueError(f"unknown backend {backend!r}; use 'fast' or 'mir_eval'")
