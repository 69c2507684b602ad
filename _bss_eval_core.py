"""Private machinery behind :mod:`bss_eval`: input checks, the block FFT engine, the solvers.

Read :mod:`bss_eval` first (the public functions, conventions and references); this module is
how they are computed fast with the same numbers as mir_eval.

What is different from mir_eval (speed only, same numbers)
----------------------------------------------------------
mir_eval recomputes the FFTs of all references, the reference Gram matrix and
its LU factorisation for every (estimate, reference) pair, i.e. ``2 nsrc``
times (``2 nsrc^2`` times with ``compute_permutation=True``), with
power-of-two FFTs of the whole signal, and forms every decomposition signal
in the time domain.  Here (about 20-25x less CPU time on MIR-1K clips):

* Correlations by blocks (:class:`_Blocks`): signals are cut into blocks of
  ``L = 7681`` samples, zero-padded to 8192 and transformed with real FFTs
  (cache friendly, 2-4x cheaper than whole-signal FFTs); the correlations at
  lags 0..511 and the convolutions with 512-tap filters are *linear* ones,
  exactly as with mir_eval's zero-padded whole-signal FFTs.  The estimates
  are correlated with the references' block spectra (which an evaluation of
  several estimates computes once, see below) through segments reaching 511
  samples into the next block; the references' own correlations need only
  the blocks, plus the few sample pairs straddling a block boundary, added
  from small FFTs of the boundary regions.
* Everything that depends on the references only (:class:`_References`:
  block spectra, the Gram matrix ``G`` of the delayed references, the solver
  set-up) is computed once per call -- and once per *set of references*:
  the analysis of the last references is kept (per thread) and reused when
  the next call has equal references, as when an evaluation scores the
  mixture baseline, several models and oracles of the same track
  (:data:`CACHE_REFERENCES`).
* Linear systems by preconditioned conjugate gradients
  (:class:`_ToeplitzPCG`) instead of dense factorisations: every block of
  ``G`` is Toeplitz, so products with ``G`` cost a few 1024-point FFTs, and
  the inverse of each diagonal block (the projection on ONE reference) is
  applied exactly with the Gohberg-Semencul formula (one Levinson recursion
  per reference).  Those inverses are the preconditioner; for two references
  CG runs on the Schur complement (6-9 iterations on MIR-1K).  A solution is
  accepted only on its true residual, at a relative accuracy of ~1e-12 in the
  norm that matters (the energy of the error of the projected signal); any
  doubt (Levinson breakdown, slow convergence, a Ritz value of the
  preconditioned operator below 1e-8, i.e. nearly dependent references, or a
  Gram matrix singular by construction) sends the call to the direct solvers
  below, as before.
* Energies from the filters when that is accurate (:meth:`_Analysis.energies_quadratic`):
  ``||S c||^2 = c^T G c`` and ``||e - S c||^2 = ||e||^2 - 2 c^T d + c^T G c``
  (``G = S^T S``, ``d = S^T e`` for the convolution matrix ``S`` of the
  delayed references) need no signal at all.  The second form cancels when
  the error is small (high SAR/SDR), so each value carries an a-priori bound
  of its rounding error and is used only when it exceeds 1e8 times the bound
  (relative error < 1e-9, measured errors < 0.15 of the bound); otherwise
  -- e.g. the artifacts of the mixture baseline, or SAR above ~60-70 dB --
  the signal itself is formed block by block (overlap-add) and squared,
  never a difference of energies, keeping full relative accuracy at high
  SDR/SAR, as in mir_eval.

Agreement with mir_eval: ~1e-11 dB on MIR-1K (model-like estimates), well
under 1e-8 dB by construction wherever the figures are numerically meaningful.

Linear systems, direct path (short or ill-conditioned cases): mir_eval calls
``np.linalg.solve(G, D)`` and means to fall back
to ``np.linalg.lstsq(G, D)`` when that raises ``LinAlgError`` (exactly singular
``G``).  (With numpy >= 2 that fallback is broken in mir_eval 0.8.2: its
``except np.linalg.linalg.LinAlgError`` clause raises ``AttributeError``.)  We
first try a Cholesky factorisation (``G`` is a Gram matrix, hence symmetric
positive semi-definite), block by block (:func:`_block_cholesky`); when that
fails (``G`` not numerically positive
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
import threading
import warnings

import numpy as np
import scipy.fft as sfft
from scipy.linalg import LinAlgError
from scipy.linalg.blas import dsyrk as _dsyrk
from scipy.linalg.blas import dtrsm as _dtrsm
from scipy.linalg.lapack import dpotrf as _dpotrf


#: Length of the distortion filters (number of delays 0..FILTER_LEN-1), as in BSS Eval v3.
FILTER_LEN = 512
#: Same guard as ``mir_eval.separation.MAX_SOURCES``.
MAX_SOURCES = 100
#: BLAS threads used inside this module's functions (``None``: leave the BLAS
#: thread pools alone).  The factorisations are small (512-1536 square) and gain
#: little from threads, while on virtualised/oversubscribed CPUs multithreaded
#: OpenBLAS can be many times slower (observed on the project's 2-vCPU machine:
#: 2-20x).  Uses threadpoolctl; the previous setting is restored on exit.
#: (Process-wide while active.)
BLAS_THREADS = 1
_CONTROLLER = None  # threadpoolctl.ThreadpoolController, made on first use


def _blas_limit():
    """Context manager limiting BLAS threads to ``BLAS_THREADS`` (threadpoolctl, a requirement)."""
    global _CONTROLLER
    if BLAS_THREADS is None:
        return contextlib.nullcontext()
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
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
    energies = []  # one pass over each array: finite energies <=> finite samples
    for name, x in (("reference_sources", refs), ("estimated_sources", ests)):
        with np.errstate(over="ignore", invalid="ignore"):
            energy = np.einsum("ij,ij->i", x, x)
        # NaN/inf propagate; an energy overflowing from huge finite samples
        # falls through to the elementwise check
        if not np.all(np.isfinite(energy)) and not np.isfinite(x).all():
            kind = "NaN" if np.isnan(x).any() else "inf"
            raise ValueError(f"{name} contains {kind} values; BSS Eval needs finite signals")
        energies.append(energy)

    def silent(x, energy):  # all-zero rows (energy 0 may also be underflow: check exactly)
        zero = energy == 0
        return zero.any() and bool(np.any(np.all(x[zero] == 0, axis=1)))

    if silent(refs, energies[0]):
        raise ValueError(
            "All the reference sources should be non-silent (not all-zeros), but at least "
            "one reference source is all 0s (mir_eval raises the same error)"
        )
    if silent(ests, energies[1]):
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
def _distinct_rows(x):
    """Rows of x that are exact duplicates of earlier ones.

    Returns (uniq, rep): the indices of the distinct rows (first occurrences), and
    for every row the position of its representative in ``uniq``.
    """
    uniq, rep = [], []
    probe = x[:, ::997]  # cheap screen before a full comparison
    for i in range(len(x)):
        for k, u in enumerate(uniq):
            if np.array_equal(probe[i], probe[u]) and np.array_equal(x[i], x[u]):
                rep.append(k)
                break
        else:
            rep.append(len(uniq))
            uniq.append(i)
    return uniq, rep


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



def _selector(idx):
    """Index array -> equivalent slice when it is a contiguous range (views, no copies)."""
    idx = np.asarray(idx, dtype=int)
    if len(idx) == 0:
        return slice(0, 0)
    if np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx))):
        return slice(int(idx[0]), int(idx[0]) + len(idx))
    return idx


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


class _ToeplitzPCG:
    """Preconditioned conjugate gradients on the block-Toeplitz Gram system.

    Every block ``G_ij`` of the Gram matrix is Toeplitz (``G_ij[a, b] =
    x_ij[a - b]``, the correlation of ``s_i`` and ``s_j`` at lag ``a - b``), so

    * ``G v`` costs a few ``nfft``-point FFTs (``nfft >= 2 flen - 1``: the
      circular convolution with the lag sequence ``x_ij[-(flen-1)..flen-1]``
      is then exact on the ``flen`` samples kept), instead of a dense product;
    * the inverse of each diagonal block ``T = G_jj`` (symmetric positive
      definite Toeplitz) is given by the Gohberg-Semencul formula
      ``T^{-1} = (L(x) L(x)^T - L(z) L(z)^T) / x_0``, where ``x`` is the first
      column of ``T^{-1}`` (one Levinson solve, O(flen^2)), ``z = (0, x_{flen-1},
      ..., x_1)`` and ``L(v)`` is the lower triangular Toeplitz matrix with
      first column ``v``; it is applied with FFTs too.

    These inverses are the preconditioner: for the projection on ONE reference
    (system ``G_jj c = d``) it is exact up to rounding, so its result is
    normally accepted as it is; for the projection on ALL references (``G c =
    d``) the block-diagonal preconditioner leaves the coupling between the
    references, and CG converges at a rate set by the principal cosines
    between the subspaces of their delayed copies (0.2-0.55 on MIR-1K, with
    occasional isolated values near 1).  With two references CG runs on the
    Schur complement (:meth:`_solve_schur`, 6-9 iterations on MIR-1K), with
    more on the whole system (12-25).

    A solution is accepted only when the *true* residual ``r = d - G c``
    (recomputed at the end) satisfies ``r^T M^{-1} r <= (4 TOL)^2 d^T M^{-1} d``:
    ``r^T M^{-1} r`` estimates ``r^T G^{-1} r = ||S (c - c_exact)||^2``, the
    energy of the error of the projected SIGNAL (what the energy ratios see),
    and ``d^T M^{-1} d`` the energy of the projection itself.  An error of
    ``1e-12`` relative in that norm changes SDR/SIR by ~1e-11 dB (SIR at 40 dB:
    ~1e-9 dB) and SAR by less (second order).  The estimate is good within the
    factor ``1 / lambda_min(M^{-1} G)``; CG's coefficients give Ritz values that
    approximate ``lambda_min`` (``1 - cos^2`` of the largest principal angle
    for the Schur complement), and a value below ``RITZ_MIN`` (nearly
    dependent references) counts as a failure.  On failure -- Levinson
    breakdown on a numerically singular block, slow convergence, loss of
    positivity, a small Ritz value -- :meth:`solve_all` / :meth:`solve_own`
    return ``None`` and the caller falls back to the direct solvers.
    """

    TOL = 1e-12
    MAXITER = 60
    #: Smallest eigenvalue (Ritz estimate) of the preconditioned operator below
    #: which the system counts as ill-conditioned (left to the direct solvers).
    RITZ_MIN = 1e-8

    def __init__(self, lags, flen, workers=None):
        """lags: (nsrc, nsrc, flen), lags[i, j, k'] = x_ij[k' - (flen-1)] (lags -(flen-1)..0)."""
        from scipy.linalg import solve_toeplitz

        nsrc = lags.shape[0]
        self.nsrc, self.flen, self.workers = nsrc, flen, workers
        self.nfft = n = sfft.next_fast_len(2 * flen - 1, real=True)
        # h[i, j, k mod n] = x_ij[k], k = -(flen-1)..flen-1 (x_ij[k] = x_ji[-k])
        h = np.zeros((nsrc, nsrc, n))
        h[:, :, :flen] = lags.transpose(1, 0, 2)[:, :, ::-1]
        h[:, :, n - (flen - 1):] = lags[:, :, :flen - 1]
        self.H = self._rfft(h)  # (nsrc, nsrc, F)
        # Gohberg-Semencul generators of the inverses of the diagonal blocks
        x = np.empty((nsrc, flen))
        e0 = np.zeros(flen)
        e0[0] = 1.0
        for j in range(nsrc):
            x[j] = solve_toeplitz(h[j, j, :flen], e0, check_finite=False)
        if not (np.all(np.isfinite(x)) and np.all(x[:, 0] > 0)):
            raise LinAlgError("Levinson recursion broke down")
        z = np.zeros_like(x)
        z[:, 1:] = x[:, :0:-1]
        X = self._rfft(np.stack([x, z]))  # (2, nsrc, F): spectra of x and z
        # the arguments of _gs_apply, for all blocks (columns in axis 1) and each block
        self.gs_all = self.gs_spectra(X, 1.0 / x[:, 0], np.arange(nsrc))
        self.gs_block = [self.gs_spectra(X, 1.0 / x[:, 0], [j]) for j in range(nsrc)]
        self._gs = (X, 1.0 / x[:, 0])
        if nsrc == 2:  # (G_01, G_11): the column of blocks applied to c_1 in _solve_schur
            self._h_col1 = self.H[:, 1][:, None, None, :]
        self.iterations = 0

    def _rfft(self, x):
        return sfft.rfft(x, n=self.nfft, axis=-1, workers=self.workers)

    def _irfft(self, X):
        return sfft.irfft(X, n=self.nfft, axis=-1, workers=self.workers)[..., :self.flen]

    @staticmethod
    def gs_spectra(X, inv_x0, blocks):
        """(conj(X), X / x_0) of the given blocks, shaped (2, len(blocks), 1, F) for _gs_apply."""
        blocks = np.asarray(blocks)
        Xb = X[:, blocks, None, :]
        return np.conj(Xb), Xb * inv_x0[blocks][None, :, None, None]

    def _gs_apply(self, V, gs):
        """Gohberg-Semencul: V (k, m, flen) -> T_k^{-1} V; gs from :meth:`gs_spectra`."""
        Xc, Xs = gs
        W = self._rfft(self._irfft(Xc * self._rfft(V)))  # L(x)^T V, L(z)^T V, as spectra
        W *= Xs
        return self._irfft(W[0] - W[1])

    def matvec(self, V):
        """G V for V (nsrc, m, flen)."""
        return self._irfft(np.einsum("ijf,jmf->imf", self.H, self._rfft(V)))

    def _precondition_all(self, R):
        """Block-diagonal preconditioner (exact inverses of the diagonal blocks): R (nsrc, m, flen)."""
        return self._gs_apply(R, self.gs_all)

    def solve_all(self, D, Z=None):
        """G C = D for D (nsrc, m, flen) (the whole Gram matrix); None if not converged.

        Two references: CG on the Schur complement first (see :meth:`_solve_schur`),
        then, if its solution does not pass the acceptance test, PCG on the whole
        system from there.  More references: PCG on the whole system.
        Z: the preconditioner applied to D, if already known.
        """
        Z = self._precondition_all(D) if Z is None else Z
        rz_d = self._dot(D, Z)  # ~ ||P e||^2, the energy of the projection
        if not np.all(rz_d >= 0):  # preconditioner not positive definite
            return None
        goal = self.TOL**2 * rz_d
        X0 = None
        if self.nsrc == 2:
            X0 = self._solve_schur(D, Z[:1], goal)
            if X0 is not None and self._accept(D, X0, self.matvec, self._precondition_all, goal):
                return X0
        return self._pcg(D, self.matvec, self._precondition_all, goal, X0)

    def _solve_schur(self, D, a_inv_d0, goal):
        """Two references: CG on the Schur complement ``S = G_11 - G_10 G_00^{-1} G_01``.

        ``S c_1 = d_1 - G_10 G_00^{-1} d_0``, preconditioned by ``G_11^{-1}``, then
        ``c_0 = G_00^{-1} (d_0 - G_01 c_1)`` (block elimination).  The
        preconditioned Schur complement has eigenvalues ``1 - cos^2`` of the
        principal angles, against ``1 +- cos`` for the block-diagonal
        preconditioner on the whole system: about half the iterations for the
        same work per iteration.  ``G_00^{-1}`` is applied with the
        Gohberg-Semencul formula, whose rounding errors (~1e-13 relative) enter
        the operator, so the result is only a candidate: :meth:`solve_all`
        accepts it on the true residual of the whole system.
        a_inv_d0: ``G_00^{-1} d_0`` (1, m, flen).
        """
        rfft, irfft = self._rfft, self._irfft
        gs_a, gs_c = self.gs_block
        h10, h_col1 = self.H[1, 0], self._h_col1  # G_10; (G_01, G_11) stacked

        def schur(V):  # (1, m, flen)
            bv, cv = irfft(h_col1 * rfft(V))
            return cv - irfft(h10 * rfft(self._gs_apply(bv, gs_a)))

        f = D[1:] - irfft(h10 * rfft(a_inv_d0))
        c1 = self._cg(f, schur, lambda R: self._gs_apply(R, gs_c), goal, None)
        if c1 is None:
            return None
        c0 = self._gs_apply(D[:1] - irfft(self.H[0, 1] * rfft(c1)), gs_a)
        return np.concatenate([c0, c1])

    def solve_own(self, D, blocks, X0=None):
        """G_jj c = d for each column: D (m, flen), blocks (m,) = j; None if not converged.

        The preconditioner is the exact inverse up to rounding: its result is
        accepted as it is when it passes the acceptance test, refined by PCG
        otherwise.  X0: the preconditioner applied to D, if already known.
        """
        blocks = np.asarray(blocks)
        Hd = self.H[blocks, blocks][None]  # (1, m, F)
        Xc, Xs = self.gs_spectra(*self._gs, blocks)
        gs = (Xc.transpose(0, 2, 1, 3), Xs.transpose(0, 2, 1, 3))  # (2, 1, m, F): per column

        def matvec(P):
            return self._irfft(Hd * self._rfft(P))

        def precondition(R):
            return self._gs_apply(R, gs)

        B = D[None]
        X0 = precondition(B) if X0 is None else X0[None]
        rz_b = self._dot(B, X0)
        if not np.all(rz_b >= 0):
            return None
        C = self._pcg(B, matvec, precondition, self.TOL**2 * rz_b, X0)
        return None if C is None else C[0]

    @staticmethod
    def _dot(a, b):
        return np.einsum("imf,imf->m", a, b)

    def _accept(self, B, X, matvec, precondition, goal):
        """The acceptance test, on the TRUE residual (the recursively updated one drifts)."""
        if not np.all(np.isfinite(X)):
            return False
        R = B - matvec(X)
        return bool(np.all(self._dot(R, precondition(R)) <= 16.0 * goal))

    def _pcg(self, B, matvec, precondition, goal, X0=None):
        """PCG (from X0, default 0) then the acceptance test; the solution or None."""
        X = self._cg(B, matvec, precondition, goal, X0)
        if X is None:
            return None
        if X is X0:  # no iteration: its residual was the true one, and small enough
            return X if np.all(np.isfinite(X)) else None
        return X if self._accept(B, X, matvec, precondition, goal) else None

    def _cg(self, B, matvec, precondition, goal, X0):
        """Preconditioned CG for the m columns of B (k, m, flen) at once (own step sizes).

        Stops when ``r^T M^{-1} r <= goal`` for every column; returns X0 itself
        when it already satisfies that (with its true residual), None after
        MAXITER iterations or on loss of positive definiteness.
        """
        dot = self._dot
        if X0 is None:
            X, R = np.zeros_like(B), B.copy()
        else:
            X, R = X0, B - matvec(X0)
        Z = precondition(R)
        rz = dot(R, Z)
        if not np.all(rz >= 0):  # preconditioner not positive definite
            return None
        active = rz > goal
        if not active.any():
            return X
        if X0 is not None:
            X = X0.copy()
        P = Z
        it = 0
        alphas, betas = [], []  # CG coefficients -> Lanczos matrix -> Ritz values
        with np.errstate(divide="ignore", invalid="ignore"):
            while True:
                it += 1
                Q = matvec(P)
                pq = dot(P, Q)
                alpha = rz / pq
                alpha[~active] = 0.0
                X += alpha[:, None] * P
                R -= alpha[:, None] * Q
                Z = precondition(R)
                rz_new = dot(R, Z)
                # G (pq) and the preconditioner (rz) must stay positive definite
                if not (np.all(pq[active] > 0) and np.all(rz_new[active] >= 0)):
                    return None
                beta = rz_new / rz
                alphas.append(np.where(active, alpha, np.nan))
                betas.append(np.where(active, beta, np.nan))
                active &= rz_new > goal
                if not active.any() or it >= self.MAXITER:
                    break
                beta[~active] = 0.0
                P = Z + beta[:, None] * P
                rz = rz_new
        self.iterations += it
        if active.any() or self._smallest_ritz(alphas, betas) < self.RITZ_MIN:
            return None
        return X

    @staticmethod
    def _smallest_ritz(alphas, betas):
        """Smallest Ritz value of the preconditioned operator, from the CG coefficients.

        The Lanczos matrix of k CG steps is tridiagonal with diagonal
        ``1/a_j + b_{j-1}/a_{j-1}`` and off-diagonal ``sqrt(b_j)/a_j``; its
        eigenvalues approximate the extreme eigenvalues of ``M^{-1} G`` (upper
        bounds for the smallest).  +inf when there is nothing to estimate.
        """
        from scipy.linalg import eigvalsh_tridiagonal

        if not alphas:
            return np.inf
        a, b = np.array(alphas), np.array(betas)  # (k, m); NaN once a column stopped
        out = np.inf
        for c in range(a.shape[1]):
            k = int(np.sum(np.isfinite(a[:, c])))
            if k == 0:
                continue
            ac, bc = a[:k, c], b[:k, c]
            diag = 1.0 / ac
            diag[1:] += bc[:-1] / ac[:-1]
            off = np.sqrt(bc[:-1]) / ac[:-1]
            if not (np.all(np.isfinite(diag)) and np.all(np.isfinite(off))):
                return 0.0
            lo = diag[0] if k == 1 else eigvalsh_tridiagonal(
                diag, off, select="i", select_range=(0, 0))[0]
            out = min(out, lo)
        return out


# --------------------------------------------------------------------------- #
# Block FFT engine (correlations; overlap-add convolutions)
# --------------------------------------------------------------------------- #
class _Blocks:
    """Block geometry for signals of ``nsampl`` samples and ``flen``-tap filters.

    Signals are cut into *blocks* ``x[b*L : (b+1)*L]``, ``b < nblocks``
    (zeros past the end), zero-padded to ``M = L + flen - 1`` samples and
    transformed with ``M``-point real FFTs (``BLK_x[b]``); estimates also into
    *forward segments* ``x[b*L : b*L + M]`` (``FSEG_x[b]``).  With no circular
    wrap-around reaching the samples used, exactly:

    * ``irfft(conj(BLK_x[b]) * FSEG_y[b])[a]`` = ``sum_{m in block b} x[m] y[m + a]``
      for ``a = 0..flen-1`` (correlations at lags 0..flen-1);
    * ``irfft(conj(BLK_x[b]) * BLK_y[b])[k mod M]`` = the same sum over the pairs
      with both ``m`` and ``m + k`` in block ``b``, ``|k| < flen``; the pairs
      straddling the boundary of blocks ``b`` and ``b + 1`` are added from the
      *boundary windows* ``x[(b+1)*L - (flen-1) : (b+1)*L + flen-1]``
      (:meth:`fill_boundary_pieces`, small FFTs);
    * ``irfft(rfft(c, M) * BLK_y[b])`` = the full convolution of an ``flen``-tap
      filter with block ``b`` (``L + flen - 1 = M`` samples): the filtered signal
      is their overlap-add (each block's last ``flen - 1`` samples are added to
      the start of the next one).

    ``M``-point block FFTs (8192) are 2-4x faster than whole-signal FFTs.
    Blocks are processed in *chunks* of a few, copied into small work buffers
    that are reused, so that the working set stays in the CPU caches (on the
    project's machine memory traffic costs as much as the FFTs).
    """

    def __init__(self, nsampl, flen=FILTER_LEN, block_fft=8192, chunk_blocks=4):
        self.nsampl, self.flen = nsampl, flen
        self.out_len = nsampl + flen - 1
        if self.out_len + flen - 1 <= block_fft:  # short signal: one block
            self.M = sfft.next_fast_len(self.out_len + flen - 1, real=True)
        else:
            self.M = block_fft
        self.L = self.M - (flen - 1)
        # the output blocks [b*L, (b+1)*L) cover mir_eval's nsampl + flen - 1 samples
        self.nblocks = -(-self.out_len // self.L)
        self.nbins = self.M // 2 + 1
        self.chunk_blocks = max(1, int(chunk_blocks))
        cb = self.chunk_blocks
        self.chunks = [(b0, min(self.nblocks, b0 + cb)) for b0 in range(0, self.nblocks, cb)]
        # boundary windows: halves of flen-1 samples, correlated at lags 0..flen-1
        # without wrap-around
        self.nfft_boundary = sfft.next_fast_len(2 * (flen - 1), real=True)

    def _region(self, x, start, stop):
        """x[:, start:stop] with zeros outside [0, nsampl): a view when inside."""
        if start >= 0 and stop <= self.nsampl:
            return x[:, start:stop]
        out = np.zeros((len(x), stop - start))
        a, b = max(start, 0), min(stop, self.nsampl)
        if b > a:
            out[:, a - start:b - start] = x[:, a:b]
        return out

    def blocks(self, x, b0, b1):
        """(rows, nsampl) -> (rows, b1-b0, L): blocks b0..b1-1 (a view when possible)."""
        region = self._region(x, b0 * self.L, b1 * self.L)
        return region.reshape(len(x), b1 - b0, self.L)

    def fill_blocks(self, dst, x, b0, b1):
        """dst[:, :b1-b0, :L] = blocks b0..b1-1 of x (dst[..., L:] is left alone: zeros)."""
        dst[:, :b1 - b0, :self.L] = self.blocks(x, b0, b1)

    def forward_segments(self, x, b0, b1, buf):
        """x[:, b*L : b*L + M] for b = b0..b1-1, (rows, b1-b0, M), zeros past the end.

        A view of x when inside the signal, else copied into buf (rows, >= b1-b0, M).
        """
        k, L, M = b1 - b0, self.L, self.M
        if (b1 - 1) * L + M <= self.nsampl:
            region = x[:, b0 * L:(b1 - 1) * L + M]
            return np.lib.stride_tricks.sliding_window_view(region, M, axis=-1)[:, ::L]
        dst = buf[:, :k]
        dst[:, :, :L] = self.blocks(x, b0, b1)  # the blocks, then the next blocks' heads
        dst[:, :, L:] = self.blocks(x, b0 + 1, b1 + 1)[:, :, :M - L]
        return dst

    def fill_boundary_pieces(self, dst, x):
        """dst[0, :, b, :h] = last h samples of block b, dst[1, :, b, :h] = first h of block b+1.

        dst: (2, rows, nblocks - 1, >= h), h = flen - 1; zeros outside the signal.
        """
        h, L, n = self.flen - 1, self.L, self.nsampl
        nbd = self.nblocks - 1
        # boundaries p = (b+1) L whose window [p - h, p + h) lies inside the signal
        inside = max(0, min(nbd, (n - h) // L))
        if inside:
            win = np.lib.stride_tricks.sliding_window_view(
                x[:, L - h:inside * L + h], 2 * h, axis=-1)[:, ::L]
            dst[0, :, :inside, :h] = win[..., :h]
            dst[1, :, :inside, :h] = win[..., h:]
        for b in range(inside, nbd):
            win = self._region(x, (b + 1) * L - h, (b + 1) * L + h)
            dst[0, :, b, :h] = win[:, :h]
            dst[1, :, b, :h] = win[:, h:]


class _References:
    """Everything that depends on the references only: shared by all estimates.

    refs: (nsrc, nsampl) float64.  Holds the block geometry, the spectra of the
    reference blocks (up to ``_CACHE_BYTES``), the correlations of the references
    (the Gram matrix ``G`` of their delayed copies, which is block-Toeplitz) and,
    built on first use, the iterative solver (:class:`_ToeplitzPCG`) or the
    dense factorisations of the direct path.  :func:`_references` keeps the
    last one per thread, so that evaluating several estimates of the same
    references (as an evaluation does: baseline, models, oracles) does this
    work once.

    Attributes
    ----------
    lags : (nsrc, nsrc, flen); lags[i, j, k'] = x_ij[k' - (flen-1)] where
        x_ij[k] = sum_m s_i[m] s_j[m + k]; G_ij[a, b] = x_ij[a - b].
    gram_blocks : {(i, j): (flen, flen) float64} for i <= j, the upper blocks of
        the Gram matrix G (nsrc*flen square): G_ij[a, b] = <s_i delayed by a,
        s_j delayed by b> (dense; built on first use, direct path only).
    """

    _CACHE_BYTES = 2**27  # keep reference block spectra in memory up to 128 MB

    def __init__(self, refs, flen=FILTER_LEN, workers=None):
        self.refs = refs
        self.nsrc, nsampl = refs.shape
        self.flen, self.workers = flen, workers
        self.geo = geo = _Blocks(nsampl, flen)
        nsrc, cb, h = self.nsrc, geo.chunk_blocks, flen - 1
        cache = nsrc * geo.nblocks * geo.nbins * 16 <= self._CACHE_BYTES
        self._blk_cache = [] if cache else None
        # x_ij[k], k >= 0, from the pairs within blocks: sum_b conj(BLK_i[b]) BLK_j[b]
        # (|BLK_i|^2 for i = j: cheaper, and no pass to conjugate)
        pairs_ij = [(i, j) for i in range(nsrc) for j in range(i + 1, nsrc)]
        acc_auto = np.zeros((nsrc, geo.nbins))
        acc_cross = np.zeros((len(pairs_ij), geo.nbins), complex)
        buf = np.zeros((nsrc, cb, geo.M))  # the blocks' zero padding is never overwritten
        for b0, b1 in geo.chunks:
            k = b1 - b0
            geo.fill_blocks(buf, refs, b0, b1)
            blk = self._rfft(buf[:, :k])  # (nsrc, k, F)
            if cache:
                self._blk_cache.append(blk)
            sq = np.einsum("ibx,ibx->ix", *(blk.view(np.float64),) * 2)  # re^2, im^2
            acc_auto += sq[:, 0::2] + sq[:, 1::2]
            for p, (i, j) in enumerate(pairs_ij):
                for b in range(k):  # (faster than einsum)
                    acc_cross[p] += blk[i, b].conj() * blk[j, b]
        acc_g = np.empty((nsrc, nsrc, geo.nbins), complex)
        acc_g[np.arange(nsrc), np.arange(nsrc)] = acc_auto
        for p, (i, j) in enumerate(pairs_ij):
            acc_g[i, j] = acc_cross[p]
            acc_g[j, i] = np.conj(acc_cross[p])
        pos = self._irfft(acc_g)[..., :flen]  # pos[i, j, k] = x_ij[k] (within blocks)
        # ... plus the pairs straddling a block boundary (m in the last h samples of
        # block b, m + k in the first h of block b+1)
        if geo.nblocks > 1:
            nbf, nb = geo.nfft_boundary, geo.nblocks
            pieces = np.zeros((2, nsrc, nb - 1, nbf))
            geo.fill_boundary_pieces(pieces, refs)  # tails of blocks, heads of the next ones
            tail, head = sfft.rfft(pieces, axis=-1, workers=workers)
            # cross[i, j, (k - h) mod nbf] = sum_b sum_t tail_i[t] head_j[t + k - h]
            cross = sfft.irfft(np.einsum("ibf,jbf->ijf", np.conj(tail), head), n=nbf,
                               axis=-1, workers=workers)
            pos[:, :, 1:] += np.concatenate([cross[..., nbf - h + 1:], cross[..., :1]], axis=-1)
        self.lags = pos.transpose(1, 0, 2)[:, :, ::-1]  # lags[i, j, k'] = x_ij[k' - (flen-1)]
        # G certainly singular: more delayed copies than samples, or two references
        # that are (scaled, delayed by < flen) copies of each other (normalised
        # correlation 1 up to rounding).  Left to the direct solvers (and their
        # mir_eval-like fallbacks), as is anything PCG finds ill-conditioned.
        energy = np.diagonal(pos[:, :, 0]).copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            coherence = np.abs(pos).max(axis=-1) / np.sqrt(np.outer(energy, energy))
        coherence = np.maximum(coherence, coherence.T)  # pos has lags >= 0 only
        np.fill_diagonal(coherence, 0.0)
        self.singular = bool(nsampl + flen - 1 < nsrc * flen
                             or np.any(~(coherence < 1.0 - 1e-9)))
        self._gram_blocks = None
        self._pcg = None  # _ToeplitzPCG, or False when it cannot be built
        self._solver_all = None
        self._solver_own = [None] * self.nsrc

    def _rfft(self, x):
        return sfft.rfft(x, n=self.geo.M, axis=-1, workers=self.workers)

    def _irfft(self, X):
        return sfft.irfft(X, n=self.geo.M, axis=-1, workers=self.workers)

    def blk_spectra(self, k, b0, b1):
        """Spectra of the reference blocks of chunk number k (blocks b0..b1-1)."""
        if self._blk_cache is not None:
            return self._blk_cache[k]
        buf = np.zeros((self.nsrc, b1 - b0, self.geo.M))
        self.geo.fill_blocks(buf, self.refs, b0, b1)
        return self._rfft(buf)

    def pcg(self):
        """The :class:`_ToeplitzPCG` solver, or None when it cannot be built (Levinson breakdown)."""
        if self._pcg is None:
            try:
                self._pcg = _ToeplitzPCG(self.lags, self.flen, self.workers)
            except (LinAlgError, ValueError):
                self._pcg = False
        return self._pcg or None

    @property
    def gram_blocks(self):
        """{(i, j): G_ij} for i <= j (dense Toeplitz blocks, built on first use)."""
        if self._gram_blocks is None:
            self._gram_blocks = self._toeplitz_blocks(self.lags)
        return self._gram_blocks

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
        """Direct solver for the projection on all references (shared by all estimates)."""
        if self._solver_all is None:
            nsrc, f = self.nsrc, self.flen
            R, nvalid = _block_cholesky(self.gram_blocks, nsrc)
            self._solver_all = _Solver(self.gram, R if nvalid == nsrc else None, nsrc, f)
            if nvalid >= 1 and nsrc > 1:
                # the first diagonal block of the factor is the factor of G_00
                self._solver_own[0] = _Solver(lambda: self.gram([0]), {(0, 0): R[0, 0]}, 1, f)
        return self._solver_all

    def solver_own(self, j):
        """Direct solver for the projection on reference ``j`` alone (diagonal block G_jj)."""
        if self.nsrc == 1:
            return self.solver_all()
        if self._solver_own[j] is None:
            R, info = _dpotrf(self.gram_blocks[j, j], lower=0, clean=0)
            factor = {(0, 0): R} if info == 0 else None
            self._solver_own[j] = _Solver(lambda: self.gram([j]), factor, 1, self.flen)
        return self._solver_own[j]


#: Reuse the analysis of the references between calls with equal references
#: (per thread; compared sample by sample with a private copy).  Set to False
#: to disable.
CACHE_REFERENCES = True
_CACHE_MAX_BYTES = 2**25  # references larger than 32 MB are not kept (the spectra kept
# with them take about as much again)
_TLS = threading.local()


def _references(refs, flen=FILTER_LEN, workers=None):
    """The :class:`_References` of refs: the cached one if refs equal the last ones."""
    if not CACHE_REFERENCES or refs.nbytes > _CACHE_MAX_BYTES:
        return _References(refs, flen, workers)
    hit = getattr(_TLS, "refs", None)
    if hit is not None and hit.flen == flen and hit.refs.shape == refs.shape \
            and np.array_equal(hit.refs, refs):
        hit.workers = workers
        return hit
    _TLS.refs = None  # release the old one first
    out = _References(refs.copy(), flen, workers)
    _TLS.refs = out
    return out


class _Analysis:
    """Correlations of the estimates with the references, filters and energies.

    refs, ests: (nsrc, nsampl) float64.  Built once per call and shared by all
    estimates (and all permutations); the reference part (:class:`_References`)
    may come from the previous call.

    Attributes
    ----------
    D : (nest, nsrc, flen); D[e, i, a] = <s_i delayed by a, e>.
    """

    _ENERGY_BLOCKS = 4  # blocks per step in energies(): small steps stay in cache

    def __init__(self, refs, ests, flen=FILTER_LEN, workers=None):
        self.ref = ref = _references(refs, flen, workers)
        self.refs, self.ests = ref.refs, ests
        self.nsrc, self.nest = ref.nsrc, ests.shape[0]
        self.flen, self.workers = flen, workers
        self.geo = geo = ref.geo
        nsrc, nest, cb = self.nsrc, self.nest, geo.chunk_blocks
        # D from sum_b conj(BLK_si[b]) FSEG_e[b] = conj(sum_b BLK_si[b] conj(FSEG_e[b])):
        # the (cached) reference spectra are used as they are
        acc_d = np.zeros((nsrc, nest, geo.nbins), complex)
        buf = np.empty((nest, cb, geo.M))
        for k, (b0, b1) in enumerate(geo.chunks):
            fseg = self._rfft(geo.forward_segments(ests, b0, b1, buf))  # (nest, k, F)
            np.conjugate(fseg, out=fseg)
            blk = ref.blk_spectra(k, b0, b1)
            for b in range(b1 - b0):  # (2x faster than einsum)
                acc_d += blk[:, None, b] * fseg[None, :, b]
        np.conjugate(acc_d, out=acc_d)
        # D[e, i, a] = sum_m s_i[m] e[m + a] = <s_i delayed by a, e>
        self.D = np.ascontiguousarray(self._irfft(acc_d)[..., :flen].transpose(1, 0, 2))
        self.lags = ref.lags
        self.method = None  # "pcg" or "direct", set by filters()
        self.energy_method = None  # "quadratic", "signals" or "mixed", set by energies_auto()
        self.pcg = None

    def _rfft(self, x):
        return sfft.rfft(x, n=self.geo.M, axis=-1, workers=self.workers)

    def _irfft(self, X):
        return sfft.irfft(X, n=self.geo.M, axis=-1, workers=self.workers)

    def blk_spectra(self, k, b0, b1):
        return self.ref.blk_spectra(k, b0, b1)

    def filters(self, pairs):
        """Least-squares distortion filters.

        pairs: list of (e, j) for which the projection of estimate e on reference
        j alone is needed.  Returns c_all (nest, nsrc, flen) -- ``sum_i c_all[e, i]
        * s_i`` (convolution) is the projection of estimate e on all references --
        and c_own (len(pairs), flen) -- ``c_own[p] * s_j`` its projection on s_j.
        """
        nsrc, nest, flen = self.nsrc, self.nest, self.flen
        out = self._filters_pcg(pairs)
        if out is not None:
            self.method = "pcg"
            return out
        self.method = "direct"
        # projection on all references: one solve with nest right-hand sides
        rhs = self.D.reshape(nest, nsrc * flen).T
        c_all = self.ref.solver_all()(rhs).T.reshape(nest, nsrc, flen)
        if nsrc == 1:  # P_j == P_all: same filters (so e_interf is exactly 0)
            return c_all, c_all[[e for e, _ in pairs], 0]
        c_own = np.empty((len(pairs), flen))
        for j in range(nsrc):  # one solve per reference, all its estimates at once
            ps = [p for p, (_, jj) in enumerate(pairs) if jj == j]
            if ps:
                es = [pairs[p][0] for p in ps]
                c_own[ps] = self.ref.solver_own(j)(self.D[es, j, :].T).T
        return c_all, c_own

    def _filters_pcg(self, pairs):
        """Same as :meth:`filters` with :class:`_ToeplitzPCG`; None if it does not converge."""
        nsrc = self.nsrc
        if self.ref.singular:
            return None
        pcg = self.ref.pcg()
        if pcg is None:
            return None
        self.pcg = pcg
        D = self.D.transpose(1, 0, 2)  # (nsrc, nest, flen)
        Z = pcg._precondition_all(D)  # block-diagonal solves: also the own projections
        X = pcg.solve_all(D, Z)
        if X is None:
            return None
        c_all = X.transpose(1, 0, 2)  # (nest, nsrc, flen)
        if nsrc == 1:  # P_j == P_all: same filters (so e_interf is exactly 0)
            return c_all, c_all[[e for e, _ in pairs], 0]
        pe = [e for e, _ in pairs]
        pj = [j for _, j in pairs]
        c_own = pcg.solve_own(self.D[pe, pj], pj, Z[pj, pe])
        if c_own is None:
            return None
        return c_all, c_own

    #: Quadratic-form energies are used only where their rounding-error bound is
    #: below 1/QF_MARGIN of the energy (see :meth:`energies_quadratic`).
    QF_MARGIN = 1e8

    def energies_quadratic(self, c_all, c_own, pairs):
        """Energies from the filters, correlations and Gram matrix, without the signals.

        Exactly (in exact arithmetic) the energies of :meth:`energies`, since
        ``G = S^T S`` and ``D = S^T e`` for the convolution matrix ``S`` of the
        delayed references::

            ||S c||^2     = c^T G c
            ||e - S c||^2 = ||e||^2 - 2 c^T d + c^T G c

        (``G c`` is one FFT matrix-vector product; with the PCG solver only).
        The second form cancels when the error is small compared with ``e``
        (high SAR or SDR), and every form is first-order sensitive to the
        rounding errors of the FFT correlations, so each value comes with an
        a-priori bound of its rounding error (``eps`` times the magnitudes that
        cancel, plus ``eps * log2(M) * sqrt(nsrc*flen)`` times the size of the
        filtered references); measured errors on real and synthetic signals stay
        below 0.15 of it.  A value is *reliable* when it exceeds
        ``QF_MARGIN`` (1e8) times its bound, i.e. its relative error is below
        ~1e-9 (< 1e-8 dB).

        Returns (en, ok): en as :meth:`energies`; ok = {"all", "artif": (nest,)
        bool, reliable ``all`` / ``artif``; "pair": (npairs,) bool, reliable
        ``filt``, ``dist`` and ``interf``}.
        """
        pcg, nsrc, nest, flen = self.pcg, self.nsrc, self.nest, self.flen
        npairs = len(pairs)
        pe = np.array([e for e, _ in pairs], dtype=int)
        pj = np.array([j for _, j in pairs], dtype=int)
        u = np.finfo(np.float64).eps
        kf = np.log2(self.geo.M) * np.sqrt(nsrc * flen)
        s2 = float(np.trace(self.lags[:, :, -1]))  # sum_i ||s_i||^2
        energy = np.einsum("ij,ij->i", self.ests, self.ests)  # ||e||^2

        C = c_all.transpose(1, 0, 2)  # (nsrc, nest, flen)
        Co = np.zeros((nsrc, npairs, flen))  # own filters embedded in their block
        Co[pj, np.arange(npairs)] = c_own
        V = np.concatenate([C, Co, C[:, pe] - Co], axis=1)
        GV = pcg.matvec(V)
        g, go, gd = GV[:, :nest], GV[:, nest:nest + npairs], GV[:, nest + npairs:]
        go = go[pj, np.arange(npairs)][None]  # G_jj c_own, block j only
        co, dd = c_own[None], V[:, nest + npairs:]  # (1, npairs, flen); Delta = C - Co
        d_all = self.D.transpose(1, 0, 2)
        d_own = self.D[pe, pj][None]

        def dot(a, b):
            return np.einsum("imf,imf->m", a, b)

        def adot(a, b):
            return dot(np.abs(a), np.abs(b))

        cc, oo, ddd = dot(C, C), dot(co, co), dot(dd, dd)
        en, bound = {}, {}
        en["all"] = dot(C, g)
        bound["all"] = adot(C, g) + kf * cc * s2
        en["artif"] = energy - 2.0 * dot(C, d_all) + en["all"]
        bound["artif"] = (energy + 2.0 * adot(C, d_all) + adot(C, g)
                          + kf * (np.sqrt(cc * s2 * energy) + cc * s2))
        en["filt"] = dot(co, go)
        bound["filt"] = adot(co, go) + kf * oo * s2
        en["dist"] = energy[pe] - 2.0 * dot(co, d_own) + en["filt"]
        bound["dist"] = (energy[pe] + 2.0 * adot(co, d_own) + adot(co, go)
                         + kf * (np.sqrt(oo * s2 * energy[pe]) + oo * s2))
        if nsrc > 1:
            en["interf"] = dot(dd, gd)
            bound["interf"] = adot(dd, gd) + kf * ddd * s2
        else:  # exactly 0, as in mir_eval (SIR = +inf)
            en["interf"] = np.zeros(npairs)
            bound["interf"] = np.zeros(npairs)
        self.qf_bound = {k: u * bound[k] for k in bound}  # absolute error bounds
        with np.errstate(invalid="ignore", over="ignore"):
            good = {k: np.isfinite(en[k]) & (en[k] >= self.QF_MARGIN * self.qf_bound[k])
                    for k in en}
        good["interf"] |= (en["interf"] == 0) & (bound["interf"] == 0)
        ok = {"all": good["all"], "artif": good["artif"],
              "pair": good["filt"] & good["dist"] & good["interf"]}
        return en, ok

    def energies_auto(self, c_all, c_own, pairs):
        """Energies: quadratic forms where reliable, signals (:meth:`energies`) elsewhere.

        Sets ``self.energy_method`` to "quadratic", "signals" or "mixed".
        """
        if self.method != "pcg":  # rank-deficient or ill-conditioned: as mir_eval
            self.energy_method = "signals"
            return self.energies(c_all, c_own, pairs)
        en, ok = self.energies_quadratic(c_all, c_own, pairs)
        est_sel = np.flatnonzero(~(ok["all"] & ok["artif"]))
        pair_sel = np.flatnonzero(~ok["pair"])
        if len(est_sel) == 0 and len(pair_sel) == 0:
            self.energy_method = "quadratic"
            return en
        if len(est_sel) == self.nest and len(pair_sel) == len(pairs):
            self.energy_method = "signals"
            return self.energies(c_all, c_own, pairs)
        self.energy_method = "mixed"
        # typically the artifacts of an estimate very close to the span of the
        # references (the mixture): ||P_all e||^2 is still fine
        need_all = not np.all(ok["all"][est_sel])
        sub = self.energies(c_all, c_own, pairs, est_sel, pair_sel, need_all)
        for k in ("all", "artif") if need_all else ("artif",):
            en[k][est_sel] = sub[k]
        for k in ("filt", "dist", "interf"):
            en[k][pair_sel] = sub[k]
        return en

    def energies(self, c_all, c_own, pairs, est_sel=None, pair_sel=None, need_all=True):
        """Energies of mir_eval's decomposition signals, by blocks.

        Returns a dict of float arrays: per estimate (nest,) ``all`` = ||P_all e||^2
        and ``artif`` = ||e - P_all e||^2; per pair (len(pairs),) ``filt`` =
        ||P_j e||^2, ``dist`` = ||e - P_j e||^2, ``interf`` = ||P_all e - P_j e||^2.
        With ``est_sel`` / ``pair_sel`` (index arrays): only for those estimates
        and pairs (the arrays then have their lengths); need_all=False: ``all``
        is left at 0.
        """
        geo, flen, nest = self.geo, self.flen, self.nest
        pe_all = np.array([e for e, _ in pairs], dtype=int)
        pj_all = np.array([j for _, j in pairs], dtype=int)
        est_sel = np.arange(nest) if est_sel is None else np.asarray(est_sel, dtype=int)
        pair_sel = np.arange(len(pairs)) if pair_sel is None else np.asarray(pair_sel, dtype=int)
        pe, pj = pe_all[pair_sel], pj_all[pair_sel]
        interf = self.nsrc > 1  # otherwise exactly 0, as in mir_eval (SIR = +inf)
        # estimates whose P_all e is formed: the selected ones, and for e_interf
        # those of the selected pairs
        rows = np.union1d(est_sel, pe) if interf else est_sel
        ne, npairs = len(rows), len(pair_sel)
        pos = {int(e): k for k, e in enumerate(rows)}
        sel_rows = np.array([pos[int(e)] for e in est_sel], dtype=int)
        pe_rows = np.array([pos[int(e)] for e in pe], dtype=int) if interf else pe[:0]
        fc_all = self._rfft(c_all[rows])  # (ne, nsrc, F)
        fc_own = self._rfft(c_own[pair_sel])[:, None, :]  # (npairs, 1, F)
        # index arrays -> slices where possible (no gather copies in the loop)
        sel_rows, pe_rows, est_sel_s, pe_s, pj_s = (
            _selector(i) for i in (sel_rows, pe_rows, est_sel, pe, pj))
        en = {k: np.zeros(len(est_sel)) for k in ("all", "artif")}
        en.update({k: np.zeros(npairs) for k in ("filt", "dist", "interf")})
        do_est = len(est_sel) > 0
        step = self._ENERGY_BLOCKS
        spec = np.empty((ne + npairs, step, geo.nbins), complex)

        def sumsq(x):  # (rows, b, t) -> (rows,)
            return np.einsum("ebt,ebt->e", x, x)

        h, L = flen - 1, geo.L
        carry = np.zeros((ne + npairs, h))  # last h samples of the previous block's output
        for k, (b0, b1) in enumerate(geo.chunks):
            blk_chunk = self.blk_spectra(k, b0, b1)  # (nsrc, b1-b0, F)
            for c0 in range(b0, b1, step):
                c1 = min(b1, c0 + step)
                blk = blk_chunk[:, c0 - b0:c1 - b0]
                sp = spec[:, :c1 - c0]
                # sp[e] = sum_i fc_all[e, i] BLK_si; sp[ne + p] = fc_own[p] BLK_s(j_p)
                np.multiply(fc_all[:, 0, None], blk[0], out=sp[:ne])
                for i in range(1, self.nsrc):  # (2x faster than einsum)
                    sp[:ne] += fc_all[:, i, None] * blk[i]
                np.multiply(fc_own, blk[pj_s], out=sp[ne:])
                y = self._irfft(sp)  # (rows, c1-c0, M): full convolutions of the blocks
                p = y[..., :L]  # output samples [b*L, (b+1)*L), after the overlap-add:
                p[:, 0, :h] += carry
                p[:, 1:, :h] += y[:, :-1, L:]
                carry = y[:, -1, L:].copy()
                p_all, p_own = p[:ne], p[ne:]
                est = geo.blocks(self.ests, c0, c1)  # (nest, c1-c0, L)
                if do_est:
                    p_sel = p_all[sel_rows]
                    if need_all:
                        en["all"] += sumsq(p_sel)
                    en["artif"] += sumsq(est[est_sel_s] - p_sel)
                if npairs:
                    en["filt"] += sumsq(p_own)
                    en["dist"] += sumsq(est[pe_s] - p_own)  # estimate of each pair
                    if interf:
                        en["interf"] += sumsq(p_all[pe_rows] - p_own)
        return en


def _n_frames(nsampl, window, hop):
    """Number of frames, as museval's ``Framing.nwin``."""
    if window < nsampl:
        return int(np.floor((nsampl - window + hop) / hop))
    return 1
