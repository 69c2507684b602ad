"""Fast, exact BSS Eval v3 (``bss_eval_sources``) and museval-v4-style framewise metrics.

Method
------
BSS Eval decomposes each estimate ``e`` of a reference source ``s_j`` as::

    e = s_filt + e_interf + e_artif

where ``s_filt = P_j e`` is the least-squares projection of ``e`` on the span
of the 512 delayed copies (delays 0..511) of ``s_j`` alone, ``P_all e`` is the
projection on the delayed copies of *all* references, ``e_interf = P_all e -
P_j e`` and ``e_artif = e - P_all e``.  The criteria are the energy ratios::

    SDR = 10 log10 ||s_filt||^2          / ||e_interf + e_artif||^2
    SIR = 10 log10 ||s_filt||^2          / ||e_interf||^2
    SAR = 10 log10 ||s_filt + e_interf||^2 / ||e_artif||^2

Reference: E. Vincent, R. Gribonval, C. Fevotte, "Performance measurement in
blind audio source separation", IEEE Trans. on Audio, Speech and Language
Processing 14(4):1462-1469, 2006 (BSS Eval v3, 512-tap time-invariant
distortion filters).  The reference implementation we reproduce numerically
is ``mir_eval.separation.bss_eval_sources`` (mir_eval 0.8.2), which is kept
available as a backend through :func:`evaluate`.

What is different from mir_eval (speed only, same numbers)
----------------------------------------------------------
mir_eval recomputes the FFTs of all references, the reference Gram matrix and
its LU factorisation for every (estimate, reference) pair, i.e. ``2 nsrc``
times (``2 nsrc^2`` times with ``compute_permutation=True``), with
power-of-two FFTs of the whole signal.  Here, once per call:

* all signals are cut into overlapping blocks and transformed with 4096-point
  real FFTs (overlap-save; see :class:`_Blocks`).  Correlations at lags
  0..511 and convolutions with 512-tap filters are *linear* ones either way,
  so this is exactly equivalent to mir_eval's zero-padded whole-signal FFTs
  (which N mir_eval pads to does not matter as long as nothing wraps around),
  but cache friendly and 2-4x cheaper;
* the Gram matrix ``G`` (``nsrc*512`` square, Toeplitz blocks from the
  auto/cross-correlations of the references at lags -511..511) is built ONCE
  and Cholesky-factorised ONCE, block by block (:func:`_block_cholesky`), so
  that the factor of its first diagonal block ``G_00`` comes for free; the
  other diagonal blocks ``G_jj`` (projection on a single reference) are
  factorised once each and shared by all estimates and permutations;
* the correlations of every estimate with every reference are accumulated in
  one pass, and all right-hand sides sharing a factorisation are solved
  together;
* the energies are those of exactly the signals mir_eval builds in the time
  domain (length ``nsampl + 511``), computed block by block.  Residuals such
  as ``e - P e`` are formed as signals and then squared -- never as a
  difference of energies -- so they keep full relative accuracy at high
  SDR/SAR, as in mir_eval.

Linear systems: mir_eval calls ``np.linalg.solve(G, D)`` and means to fall back
to ``np.linalg.lstsq(G, D)`` when that raises ``LinAlgError`` (exactly singular
``G``).  (With numpy >= 2 that fallback is broken in mir_eval 0.8.2: its
``except np.linalg.linalg.LinAlgError`` clause raises ``AttributeError``.)  We
first try a Cholesky factorisation (``G`` is a Gram matrix, hence symmetric
positive semi-definite); when that fails (``G`` not numerically positive
definite: rank-deficient references, extremely short signals, ...) we run
mir_eval's intended chain ``np.linalg.solve`` -> ``np.linalg.lstsq`` on the
same matrix.  When ``G`` is numerically singular mir_eval's figures depend on
rounding, and no implementation can reproduce them to 0.01 dB; the
numerically meaningful ones (e.g. the SDR of a source whose own block is
regular) still agree.  Likewise, an error energy that is zero up to rounding
(e.g. SAR when the estimate lies in the span of the delayed references, such
as the mixture) gives "numerically infinite" ratios of ~250-300 dB whose exact
value is rounding noise, in mir_eval as here.

All computations are in float64 (inputs are converted), numpy/scipy only.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings

import numpy as np
import scipy.fft as sfft
from scipy.linalg import LinAlgError
from scipy.linalg.blas import dsyrk as _dsyrk
from scipy.linalg.blas import dtrsm as _dtrsm
from scipy.linalg.lapack import dpotrf as _dpotrf

__all__ = [
    "FILTER_LEN",
    "MAX_SOURCES",
    "bss_eval_sources",
    "bss_eval_framewise",
    "median_over_frames",
    "evaluate",
]

#: Length of the distortion filters (number of delays 0..FILTER_LEN-1), as in BSS Eval v3.
FILTER_LEN = 512
#: Same guard as ``mir_eval.separation.MAX_SOURCES``.
MAX_SOURCES = 100
#: BLAS threads used inside this module's functions (``None``: leave the BLAS
#: thread pools alone).  The factorisations are small (512-1536 square) and gain
#: little from threads, while on virtualised/oversubscribed CPUs multithreaded
#: OpenBLAS can be many times slower (observed on the project's 2-vCPU machine:
#: 2-20x).  Uses threadpoolctl when installed, otherwise the thread setters of
#: the OpenBLAS libraries bundled with the numpy/scipy wheels; the previous
#: setting is restored on exit.  (Process-wide while active.)
BLAS_THREADS = 1
_CONTROLLER = None  # threadpoolctl.ThreadpoolController, a list of OpenBLAS setters, or False


class _OpenBLASLimit:
    """Context manager: set the thread count of bundled OpenBLAS libraries, then restore it."""

    def __init__(self, libs, n):
        self.libs, self.n, self.saved = libs, n, []

    def __enter__(self):
        self.saved = [get() for get, _ in self.libs]
        for _, set_ in self.libs:
            set_(self.n)
        return self

    def __exit__(self, *exc):
        for (_, set_), n in zip(self.libs, self.saved):
            set_(n)
        return False


def _bundled_openblas():
    """[(get_num_threads, set_num_threads)] of the OpenBLAS shipped in numpy/scipy wheels."""
    import ctypes
    import glob
    import os

    import scipy

    found = []
    for pkg in (np, scipy):
        site = os.path.dirname(os.path.dirname(pkg.__file__))
        libdir = os.path.join(site, pkg.__name__ + ".libs")
        for path in sorted(glob.glob(os.path.join(libdir, "*openblas*"))):
            try:
                lib = ctypes.CDLL(path)  # already loaded: same handle
            except OSError:
                continue
            for suffix in ("64_", ""):
                get = getattr(lib, "scipy_openblas_get_num_threads" + suffix, None)
                set_ = getattr(lib, "scipy_openblas_set_num_threads" + suffix, None)
                if get is not None and set_ is not None:
                    get.restype, get.argtypes = ctypes.c_int, []
                    set_.restype, set_.argtypes = None, [ctypes.c_int]
                    found.append((get, set_))
                    break
    return found


def _blas_limit():
    """Context manager limiting BLAS threads to ``BLAS_THREADS`` (best effort, else no-op)."""
    global _CONTROLLER
    if BLAS_THREADS is None:
        return contextlib.nullcontext()
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER = ThreadpoolController()
        except ImportError:
            try:
                _CONTROLLER = _bundled_openblas() or False
            except Exception:  # pragma: no cover - exotic builds
                _CONTROLLER = False
    if _CONTROLLER is False:
        return contextlib.nullcontext()
    if isinstance(_CONTROLLER, list):
        return _OpenBLASLimit(_CONTROLLER, BLAS_THREADS)
    return _CONTROLLER.limit(limits=BLAS_THREADS, user_api="blas")


# --------------------------------------------------------------------------- #
# Input validation
# --------------------------------------------------------------------------- #
def _prepare(reference_sources, estimated_sources):
    """Validate inputs like ``mir_eval.separation.validate`` and return float64 arrays.

    Returns ``(refs, ests)`` each of shape (nsrc, nsampl), or ``None`` when the
    inputs are empty (mir_eval warns and returns empty arrays in that case).
    """
    refs = np.asarray(reference_sources)
    ests = np.asarray(estimated_sources)
    # mir_eval promotes 1-D inputs to a single source before comparing shapes
    if refs.ndim == 1:
        refs = refs[np.newaxis, :]
    if ests.ndim == 1:
        ests = ests[np.newaxis, :]
    if refs.shape != ests.shape:
        raise ValueError(
            "reference_sources and estimated_sources must have the same shape "
            f"(nsrc, nsampl); got {refs.shape} and {ests.shape}"
        )
    if refs.ndim != 2:
        raise ValueError(
            f"expected arrays of shape (nsrc, nsampl) or (nsampl,); got ndim={refs.ndim} "
            "(multichannel images are not supported by bss_eval_sources)"
        )
    for name, x in (("reference_sources", refs), ("estimated_sources", ests)):
        if np.iscomplexobj(x):
            raise ValueError(f"{name} must be real-valued, got dtype {x.dtype}")
        if not np.issubdtype(x.dtype, np.number) and x.dtype != np.bool_:
            raise ValueError(f"{name} must be numeric, got dtype {x.dtype}")
    if refs.size == 0:
        warnings.warn(
            "reference_sources is empty, should be of size (nsrc, nsample); "
            "sdr, sir, sar and perm will all be empty np.ndarrays",
            stacklevel=3,
        )
        return None
    refs = np.ascontiguousarray(refs, dtype=np.float64)
    ests = np.ascontiguousarray(ests, dtype=np.float64)
    for name, x in (("reference_sources", refs), ("estimated_sources", ests)):
        # a finite sum implies finite samples (NaN/inf propagate); an overflowing
        # sum of huge finite samples falls through to the elementwise check
        with np.errstate(over="ignore", invalid="ignore"):
            total = x.sum()
        if not np.isfinite(total) and not np.isfinite(x).all():
            kind = "NaN" if np.isnan(x).any() else "inf"
            raise ValueError(f"{name} contains {kind} values; BSS Eval needs finite signals")
    if np.any(np.all(refs == 0, axis=1)):
        raise ValueError(
            "All the reference sources should be non-silent (not all-zeros), but at least "
            "one reference source is all 0s (mir_eval raises the same error)"
        )
    if np.any(np.all(ests == 0, axis=1)):
        raise ValueError(
            "All the estimated sources should be non-silent (not all-zeros), but at least "
            "one estimated source is all 0s (mir_eval raises the same error)"
        )
    if refs.shape[0] > MAX_SOURCES:
        raise ValueError(
            f"too many sources: {refs.shape[0]} > MAX_SOURCES = {MAX_SOURCES}"
        )
    return refs, ests


# --------------------------------------------------------------------------- #
# Numerical helpers
# --------------------------------------------------------------------------- #
def _safe_db(num, den):
    """``10 log10(num / den)`` elementwise, ``+inf`` where ``den == 0`` (as mir_eval)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10.0 * np.log10(num / den)
    return np.where(den == 0, np.inf, out)


def _parseval_weights(n_fft):
    """Weights ``w``, shape (n_fft//2 + 1,), with ``sum(x**2) == sum(w * |rfft(x, n_fft)|**2)``."""
    w = np.full(n_fft // 2 + 1, 2.0 / n_fft)
    w[0] = 1.0 / n_fft
    if n_fft % 2 == 0:
        w[-1] = 1.0 / n_fft
    return w


def _energy(spec, w):
    """Energy of real signals from their rfft spectra: (..., F) complex, w (F,) -> (...)."""
    return (spec.real**2 + spec.imag**2) @ w


def _sumsq(x):
    """Sum of squares over the last two axes: (..., a, b) real -> (...)."""
    return np.einsum("...ij,...ij->...", x, x)


# --------------------------------------------------------------------------- #
# Linear algebra: Cholesky by source blocks, mir_eval-compatible fallback
# --------------------------------------------------------------------------- #
def _block_cholesky(blocks, nblk):
    """Upper Cholesky factor of a symmetric block matrix, one source block at a time.

    blocks: dict {(k, l): (f, f) array} for k <= l, the upper blocks of G (not
    modified).  Right-looking blocked algorithm: LAPACK ``dpotrf`` on the
    diagonal blocks, BLAS ``dtrsm`` for the off-diagonal blocks and ``dsyrk`` /
    matrix products for the Schur-complement updates.  The first diagonal block
    of the factor is exactly ``dpotrf(G_00)``, the factor needed for the
    single-reference projection on source 0.

    Returns (R, nvalid): R is a dict {(k, l): (f, f)} of the upper blocks of the
    factor (``G = R^T R``; only the upper triangles of the diagonal blocks are
    meaningful).  ``nvalid < nblk`` when the factorisation broke down (``G`` not
    numerically positive definite) at diagonal block ``nvalid``.
    """
    S = dict(blocks)  # Schur-complemented blocks; copied before any update
    R = {}
    for k in range(nblk):
        Rkk, info = _dpotrf(S[k, k], lower=0, clean=0)
        if info != 0:
            return R, k
        R[k, k] = Rkk
        for l in range(k + 1, nblk):
            # R_kl solves R_kk^T X = S_kl
            R[k, l] = _dtrsm(1.0, Rkk, S[k, l], side=0, lower=0, trans_a=1)
        for l in range(k + 1, nblk):
            # S_lm -= R_kl^T R_km (m >= l; upper triangle only on the diagonal)
            S[l, l] = _dsyrk(-1.0, R[k, l], beta=1.0, c=np.array(S[l, l], order="F"),
                             trans=1, lower=0, overwrite_c=1)
            for m in range(l + 1, nblk):
                S[l, m] = S[l, m] - R[k, l].T @ R[k, m]
    return R, nblk


class _Solver:
    """Solve ``G X = B`` for a symmetric PSD Gram matrix, mir_eval-compatibly.

    With the upper block-Cholesky factor ``R`` (``G`` numerically positive
    definite, see :func:`_block_cholesky`): block forward/back substitution.
    Without (``R is None``): exactly mir_eval's chain ``np.linalg.solve(G, B)``,
    then ``np.linalg.lstsq(G, B)`` if that raises ``LinAlgError`` (exactly
    singular ``G``).  ``G`` is a callable returning the dense matrix (only built
    when needed).  ``method`` records the path taken.
    """

    def __init__(self, G, R, nblk, flen):
        self.G, self.R, self.nblk, self.flen = G, R, nblk, flen
        self.method = "cholesky" if R is not None else "solve"

    def __call__(self, B):
        """B: (nblk*flen, m) -> (nblk*flen, m)."""
        if self.R is None:
            G = self.G()
            try:
                return np.linalg.solve(G, B)
            except LinAlgError:
                self.method = "lstsq"
                return np.linalg.lstsq(G, B, rcond=None)[0]
        nb, f, R = self.nblk, self.flen, self.R
        y = [np.asfortranarray(B[k * f:(k + 1) * f]) for k in range(nb)]
        for k in range(nb):  # R^T y = B
            y[k] = _dtrsm(1.0, R[k, k], y[k], side=0, lower=0, trans_a=1)
            for l in range(k + 1, nb):
                y[l] = y[l] - R[k, l].T @ y[k]
        for k in reversed(range(nb)):  # R x = y
            rhs = y[k]
            for l in range(k + 1, nb):
                rhs = rhs - R[k, l] @ y[l]
            y[k] = _dtrsm(1.0, R[k, k], np.asfortranarray(rhs), side=0, lower=0, trans_a=0)
        return np.concatenate(y, axis=0)


# --------------------------------------------------------------------------- #
# Block (overlap-save) FFT engine
# --------------------------------------------------------------------------- #
class _Blocks:
    """Overlap-save geometry for signals of ``nsampl`` samples and ``flen``-tap filters.

    Output block ``b`` covers samples ``[b*L, (b+1)*L)`` of the
    ``nsampl + flen - 1``-long decomposition signals (mir_eval's length).
    Signals are cut into *segments* ``x[b*L - (flen-1) : (b+1)*L]`` (length
    ``M = L + flen - 1``; zeros outside the signal; used for the references)
    and *blocks* ``x[b*L : (b+1)*L]`` (zero-padded to ``M``), and transformed
    with ``M``-point real FFTs.  Then, with no circular wrap-around reaching the
    samples used, exactly:

    * ``irfft(sum_b conj(BLOCK_x[b]) * SEG_y[b])[k']`` =
      ``sum_m x[m] y[m + k' - (flen-1)]`` for ``k' = 0..flen-1`` (correlations);
    * ``irfft(rfft(c, M) * SEG_y[b])[flen-1:]`` = samples ``[b*L, (b+1)*L)`` of
      the full convolution ``c * y`` of an ``flen``-tap filter (overlap-save).

    4096-point FFTs are 2-4x faster than whole-signal FFTs (cache friendly).
    """

    def __init__(self, nsampl, flen=FILTER_LEN, block_fft=4096):
        self.nsampl, self.flen = nsampl, flen
        self.out_len = nsampl + flen - 1
        if self.out_len + flen - 1 <= block_fft:  # short signal: one block
            self.M = sfft.next_fast_len(self.out_len + flen - 1, real=True)
        else:
            self.M = block_fft
        self.L = self.M - (flen - 1)
        self.nblocks = -(-self.out_len // self.L)
        self.nbins = self.M // 2 + 1

    def _take(self, x, start, stop, *more):
        """x[:, start:stop] with zeros outside [0, nsampl): (rows, stop - start).

        x: (rows, nsampl); arrays in ``more`` (same length) are stacked below x.
        """
        xs = (x,) + more
        out = np.zeros((sum(len(a) for a in xs), stop - start))
        a, b = max(start, 0), min(stop, self.nsampl)
        if b > a:
            row = 0
            for arr in xs:
                out[row:row + len(arr), a - start:b - start] = arr[:, a:b]
                row += len(arr)
        return out

    def segments(self, x, b0, b1):
        """(rows, nsampl) -> (rows, b1-b0, M): segments of blocks b0..b1-1."""
        region = self._take(x, b0 * self.L - (self.flen - 1), b1 * self.L)
        return np.lib.stride_tricks.sliding_window_view(region, self.M, axis=-1)[:, ::self.L, :]

    def blocks(self, x, b0, b1, *more):
        """(rows, nsampl) -> (rows, b1-b0, L): blocks b0..b1-1 (zero-padded at the end).

        Arrays in ``more`` (same length) are stacked below x.
        """
        region = self._take(x, b0 * self.L, b1 * self.L, *more)
        return region.reshape(len(region), b1 - b0, self.L)

    def chunks(self, nsignals, budget=2**22):
        """Ranges of blocks processed together so that ~``budget`` bins per signal-array."""
        step = max(1, budget // (self.M * max(1, nsignals)))
        return [(b0, min(self.nblocks, b0 + step)) for b0 in range(0, self.nblocks, step)]


class _Analysis:
    """Correlations, Gram matrix, factorisations and filters for one set of inputs.

    refs, ests: (nsrc, nsampl) float64.  Built once per call and shared by all
    estimates (and all permutations).

    Attributes
    ----------
    gram_blocks : {(i, j): (flen, flen) float64} for i <= j, the upper blocks of
        the Gram matrix G (nsrc*flen square) of the delayed references:
        G_ij[a, b] = <s_i delayed by a, s_j delayed by b>.
    D : (nest, nsrc, flen); D[e, i, a] = <s_i delayed by a, e>.
    """

    _CACHE_BYTES = 2**27  # keep reference segment spectra in memory up to 128 MB

    def __init__(self, refs, ests, flen=FILTER_LEN, workers=None):
        self.refs, self.ests = refs, ests
        self.nsrc, nsampl = refs.shape
        self.nest = ests.shape[0]
        self.flen, self.workers = flen, workers
        self.geo = _Blocks(nsampl, flen)
        geo = self.geo
        cache = self.nsrc * geo.nblocks * geo.nbins * 16 <= self._CACHE_BYTES
        self._seg_cache = [] if cache else None
        acc = np.zeros((self.nsrc + self.nest, self.nsrc, geo.nbins), complex)
        for b0, b1 in geo.chunks(2 * self.nsrc + self.nest):
            seg = self._rfft(geo.segments(refs, b0, b1))  # (nsrc, nbc, F)
            if cache:
                self._seg_cache.append(seg)
            # blocks of references and estimates together: (nsrc + nest, nbc, F)
            blk = np.conj(self._rfft(geo.blocks(refs, b0, b1, ests)))
            acc += np.einsum("ibf,jbf->ijf", blk, seg)
        # irfft(acc)[x, j, k'] = sum_m x[m] s_j[m + k' - (flen-1)] for k' = 0..flen-1
        y = self._irfft(acc)[..., :flen]
        self.D = y[self.nsrc:, :, ::-1]  # D[e, i, a] = sum_m e[m] s_i[m - a]
        y = y[:self.nsrc]  # y[i, j, k'] = x_ij[k' - (flen-1)]
        self.gram_blocks = self._toeplitz_blocks(y)  # {(i, j): G_ij}, i <= j
        self._solver_all = None
        self._solver_own = [None] * self.nsrc

    def _rfft(self, x):
        return sfft.rfft(x, n=self.geo.M, axis=-1, workers=self.workers)

    def _irfft(self, X):
        return sfft.irfft(X, n=self.geo.M, axis=-1, workers=self.workers)

    def seg_spectra(self, k, b0, b1):
        """Spectra of the reference segments of chunk number k (blocks b0..b1-1)."""
        if self._seg_cache is not None:
            return self._seg_cache[k]
        return self._rfft(self.geo.segments(self.refs, b0, b1))

    def _toeplitz_blocks(self, y):
        """y: (nsrc, nsrc, flen), y[i, j, k'] = x_ij[k' - (flen-1)] -> upper Gram blocks.

        Returns {(i, j): (flen, flen) Fortran-ordered array} for i <= j with
        G_ij[a, b] = x_ij[a - b] = <s_i delayed by a, s_j delayed by b>.
        """
        flen = self.flen
        blocks = {}
        for i in range(self.nsrc):
            for j in range(i, self.nsrc):
                # lags[k + flen-1] = x_ij[k] for k = -(flen-1)..(flen-1); x_ij[k] = x_ji[-k]
                lags = np.concatenate([y[i, j], y[j, i, flen - 2::-1]])
                st = lags.strides[0]
                # Toeplitz view: block[a, b] = lags[flen-1 + a - b] = x_ij[a - b]
                view = np.lib.stride_tricks.as_strided(
                    lags[flen - 1:], shape=(flen, flen), strides=(st, -st), writeable=False)
                blocks[i, j] = np.array(view, order="F")
        return blocks

    def gram(self, sources=None):
        """Dense Gram matrix of the delayed ``sources`` (default: all), (k*flen, k*flen)."""
        idx = range(self.nsrc) if sources is None else sources
        return np.block([[self.gram_blocks[i, j] if i <= j else self.gram_blocks[j, i].T
                          for j in idx] for i in idx])

    def solver_all(self):
        """Solver for the projection on all references (shared by all estimates)."""
        if self._solver_all is None:
            nsrc, f = self.nsrc, self.flen
            R, nvalid = _block_cholesky(self.gram_blocks, nsrc)
            self._solver_all = _Solver(self.gram, R if nvalid == nsrc else None, nsrc, f)
            if nvalid >= 1 and nsrc > 1:
                # the first diagonal block of the factor is the factor of G_00
                self._solver_own[0] = _Solver(lambda: self.gram([0]), {(0, 0): R[0, 0]}, 1, f)
        return self._solver_all

    def solver_own(self, j):
        """Solver for the projection on reference ``j`` alone (diagonal block G_jj)."""
        if self.nsrc == 1:
            return self.solver_all()
        if self._solver_own[j] is None:
            R, info = _dpotrf(self.gram_blocks[j, j], lower=0, clean=0)
            factor = {(0, 0): R} if info == 0 else None
            self._solver_own[j] = _Solver(lambda: self.gram([j]), factor, 1, self.flen)
        return self._solver_own[j]

    def filters(self, pairs):
        """Least-squares distortion filters.

        pairs: list of (e, j) for which the projection of estimate e on reference
        j alone is needed.  Returns c_all (nest, nsrc, flen) -- ``sum_i c_all[e, i]
        * s_i`` (convolution) is the projection of estimate e on all references --
        and c_own (len(pairs), flen) -- ``c_own[p] * s_j`` its projection on s_j.
        """
        nsrc, nest, flen = self.nsrc, self.nest, self.flen
        # projection on all references: one solve with nest right-hand sides
        rhs = self.D.reshape(nest, nsrc * flen).T
        c_all = self.solver_all()(rhs).T.reshape(nest, nsrc, flen)
        if nsrc == 1:  # P_j == P_all: same filters (so e_interf is exactly 0)
            return c_all, c_all[[e for e, _ in pairs], 0]
        c_own = np.empty((len(pairs), flen))
        for j in range(nsrc):  # one solve per reference, all its estimates at once
            ps = [p for p, (_, jj) in enumerate(pairs) if jj == j]
            if ps:
                es = [pairs[p][0] for p in ps]
                c_own[ps] = self.solver_own(j)(self.D[es, j, :].T).T
        return c_all, c_own

    def energies(self, c_all, c_own, pairs):
        """Energies of mir_eval's decomposition signals, by blocks.

        Returns a dict of float arrays: per estimate (nest,) ``all`` = ||P_all e||^2
        and ``artif`` = ||e - P_all e||^2; per pair (len(pairs),) ``filt`` =
        ||P_j e||^2, ``dist`` = ||e - P_j e||^2, ``interf`` = ||P_all e - P_j e||^2.
        """
        geo, flen = self.geo, self.flen
        fc_all = self._rfft(c_all)  # (nest, nsrc, F)
        fc_own = self._rfft(c_own)  # (npairs, F)
        pe = np.array([e for e, _ in pairs], dtype=int)
        pj = np.array([j for _, j in pairs], dtype=int)
        # no permutation search: pair p is (p, p), plain slices avoid gather copies
        diagonal = len(pairs) == self.nest == self.nsrc and np.all(pe == pj) and \
            np.all(pe == np.arange(self.nest))
        en = {k: np.zeros(self.nest) for k in ("all", "artif")}
        en.update({k: np.zeros(len(pairs)) for k in ("filt", "dist", "interf")})
        nsig = self.nsrc + 2 * self.nest + 2 * len(pairs)
        chunks = geo.chunks(nsig) if self._seg_cache is None else \
            geo.chunks(2 * self.nsrc + self.nest)  # same chunks as the cache
        for k, (b0, b1) in enumerate(chunks):
            seg = self.seg_spectra(k, b0, b1)  # (nsrc, nbc, F)
            est = geo.blocks(self.ests, b0, b1)  # (nest, nbc, L) time blocks
            # valid output samples of each block are [flen-1, M)
            p_all = self._irfft(np.einsum("eif,ibf->ebf", fc_all, seg))[..., flen - 1:]
            p_own = self._irfft(fc_own[:, None, :] * (seg if diagonal else seg[pj]))[..., flen - 1:]
            est_p = est if diagonal else est[pe]  # estimate of each pair
            en["all"] += _sumsq(p_all)
            en["artif"] += _sumsq(est - p_all)
            en["filt"] += _sumsq(p_own)
            en["dist"] += _sumsq(est_p - p_own)
            if self.nsrc > 1:  # otherwise exactly 0, as in mir_eval (SIR = +inf)
                en["interf"] += _sumsq((p_all if diagonal else p_all[pe]) - p_own)
        return en


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #
def bss_eval_sources(reference_sources, estimated_sources, compute_permutation=False,
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
        (ties resolved in ``itertools.permutations`` order).  NB: the default
        here is False (mir_eval's default is True).
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
    with _blas_limit():
        ana = _Analysis(refs, ests, workers=workers)
        c_all, c_own = ana.filters(pairs)
        en = ana.energies(c_all, c_own, pairs)

    # criteria; rows = estimate, columns = reference (mir_eval's layout)
    sdr = np.full((nsrc, nsrc), np.nan)
    sir = np.full((nsrc, nsrc), np.nan)
    sar = np.full((nsrc, nsrc), np.nan)
    for p, (e, j) in enumerate(pairs):
        sdr[e, j] = _safe_db(en["filt"][p], en["dist"][p])  # s_filt vs e_interf + e_artif
        sir[e, j] = _safe_db(en["filt"][p], en["interf"][p])  # s_filt vs e_interf
        sar[e, j] = _safe_db(en["all"][e], en["artif"][e])  # s_filt + e_interf vs e_artif

    dum = np.arange(nsrc)
    if compute_permutation:
        perms = list(itertools.permutations(range(nsrc)))
        mean_sir = np.array([np.mean(sir[list(p), dum]) for p in perms])
        popt = np.asarray(perms[int(np.argmax(mean_sir))])
    else:
        popt = dum
    return sdr[popt, dum], sir[popt, dum], sar[popt, dum], popt


def _n_frames(nsampl, window, hop):
    """Number of frames, as museval's ``Framing.nwin``."""
    if window < nsampl:
        return int(np.floor((nsampl - window + hop) / hop))
    return 1


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
