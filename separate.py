#!/usr/bin/env python3
"""Separate songs with any checkpoint of this project (the engine behind separate_*.py).

A song streams through in chunks, so memory stays bounded whatever its length, at its own
sample rate (never resampled):

  read block -> STFT frames as long in time as the model's (n_fft, hop scaled by the rate
  ratio) -> the mono downmix's magnitudes mapped onto the model's frequency grid -> mask ->
  mask mapped back to the input's bins (full band: above the model's Nyquist the mask is the
  power-weighted mean of its top quarter-band, --high-band) -> mask ** --mask-power x each
  channel's spectrum -> inverse STFT, overlap-add (mixture phase) -> vocals; accompaniment =
  mixture - vocals. Work happens on pieces of at most 2^17 samples (cache-sized; without --wiener).

The frame layout is exactly that of ``util.STFT`` (centred frames), so for a frame-wise model
the streamed output equals whole-file processing to float precision. A causal recurrent model
carries its state from chunk to chunk (again equal to whole-file processing); a bidirectional
one runs on overlapping windows whose masks are cross-faded. Time-domain models (Wave-U-Net)
are run on the whole file at the model rate and resampled back. With --semitones N (default 2; 4
for the RNN, the DRNN, the GRU-IRM and the hourglass) all of this runs 2N+1 times, on the song
transposed by -N..N whole semitones (a streaming resampler there and back), and the estimates are
averaged (--transposition-mean). The stacked hourglass's masks run on onnxruntime when it is installed
(--runtime auto: the same masks, a separation 1.5x faster on one CPU thread); everything else runs torch.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

import Data
import Model
import util
from util import UserError

ROOT = Path(__file__).resolve().parent
# Each mask is raised to this power before it is applied (--mask-power). 1 = the model's own
# mask: on produced songs any power above 1 lowered the vocals SDR, on MIR-1K's validation clips
# 1.5 raised it, on its test singers for some models only (README "Post-processing"), so it is
# an option, not a default.
DEFAULT_MASK_POWER = 1.0
# The U-Net's and the CNN's masks are averaged over this many time offsets of their input (--shifts;
# other models have no such part; Model.ShiftAveragedMaskModel.default_shifts): 4 raised the U-Net's
# validation GNSDR by 0.17 dB and its median vocals SDR on the produced excerpts by 0.36 dB, the CNN's
# by 0.05 and 0.04 dB, at 4x their separation time (README "Post-processing"). The stacked hourglass
# defaults to 1 (StackedHourglass.default_shifts): 4 gave it 0.03 dB.
DEFAULT_SHIFTS = Model.ShiftAveragedMaskModel.default_shifts
# How an ensemble (A.pt+B.pt) combines its members' masks (--ensemble-mean; README "Post-processing").
DEFAULT_ENSEMBLE_MEAN = Model.MaskEnsemble.DEFAULT_MEAN
# Test-time transposition (--semitones N): the estimates of the song transposed by -N..N whole
# semitones (played faster or slower, then back), averaged; 0 = off. The models separate songs in
# standard tuning far better than songs a quarter-tone off it, and whole-semitone transpositions keep
# the tuning. 2 was chosen on validation, on a voice the models never heard and on the produced
# excerpts (README "Post-processing"; forty-eighth session of report/history.md): it raised every
# model but the frame model on validation (the RNN 11.55 -> 11.92 dB) and every model's median on
# the excerpts, at up to 5x the separation time. A model class may set its own (``default_semitones``,
# :func:`model_semitones`): the RNN and the DRNN take 4 (fiftieth session: on a new voice three bench
# RNNs gained 0.25-0.29 dB over 2, and both models' excerpt medians rose; level on validation), the
# GRU-IRM and the stacked hourglass too (fifty-first: excerpts higher, validation level or higher; the
# bench hourglass +0.18 dB on the new voice).
DEFAULT_SEMITONES = 2


# ----------------------------------------------------------------------------------------------
# Masks over a stream of frames
# ----------------------------------------------------------------------------------------------
class MaskRunner:
    """Push magnitude frames ``(T, F)``; get masks ``(T', S, F)`` back in order (T' may lag).

    ``chunk_frames`` bounds the frames given to the model at once; ``overlap_frames`` is the
    cross-fade length for models that need past and future context (``model.context == "window"``).
    """

    def __init__(self, model, chunk_frames=1024, overlap_frames=128):
        self.model, self.context = model, getattr(model, "context", "frame")
        self.chunk = int(chunk_frames)
        self.overlap = min(int(overlap_frames), self.chunk // 2)
        self.state = None
        self.buffer = []            # window mode: frames waiting, (t, F) tensors
        self.tail = None            # window mode: masks of the previous window's overlap (O, S, F)

    @torch.no_grad()
    def _run(self, mag):
        """(T, F) -> (T, S, F)."""
        x = mag[None]                                                   # (1, T, F)
        if self.context == "causal":
            masks, self.state = self.model(x, self.state, return_state=True)
        else:
            masks = self.model(x)                                       # (1, S, T, F)
        return masks[0].transpose(0, 1)                                 # (T, S, F)

    def push(self, mag: torch.Tensor) -> torch.Tensor:
        if self.context != "window":
            if mag.shape[0] == 0:
                return mag.new_zeros(0, len(self.model.sources), mag.shape[1])
            return torch.cat([self._run(mag[i:i + self.chunk]) for i in range(0, mag.shape[0], self.chunk)])
        self.buffer.append(mag)
        return self._windows(final=False)

    def flush(self) -> torch.Tensor:
        if self.context != "window":
            return torch.zeros(0, len(self.model.sources), self.model.n_bins)
        return self._windows(final=True)

    def _windows(self, final):
        buf = torch.cat(self.buffer) if self.buffer else torch.zeros(0, self.model.n_bins)
        out = []
        step = self.chunk - self.overlap
        while buf.shape[0] >= self.chunk or (final and buf.shape[0] > 0):
            window = buf[:self.chunk]
            masks = self._run(window)                                   # (W, S, F)
            if self.tail is not None:                                   # cross-fade the join
                o = self.tail.shape[0]
                ramp = ((torch.arange(o) + 0.5) / o).view(o, 1, 1)
                masks[:o] = (1 - ramp) * self.tail + ramp * masks[:o]
            if final and buf.shape[0] <= self.chunk:
                out.append(masks)
                buf = buf[:0]
                self.tail = None
                break
            out.append(masks[:step])
            self.tail = masks[step:].clone()                            # copies: a view would keep
            buf = buf[step:]                                            # the whole window's storage
        self.buffer = [buf.clone()]
        return torch.cat(out) if out else torch.zeros(0, len(self.model.sources), self.model.n_bins)


# ----------------------------------------------------------------------------------------------
# Streaming STFT -> mask -> ISTFT
# ----------------------------------------------------------------------------------------------
def overlap_add(frames: torch.Tensor, window_sq: torch.Tensor, hop: int):
    """frames (B, k, n_fft) -> (B, span) overlap-added at ``hop``, and the (span,) sum of the
    squared windows, span = (k - 1) * hop + n_fft.

    When hop divides n_fft (the usual case) a frame is R = n_fft / hop blocks of ``hop`` samples
    and block r of frame j lands on output block j + r: R shifted adds, several times faster than
    ``torch.nn.functional.fold``, which is used otherwise."""
    b, k, n_fft = frames.shape
    span = (k - 1) * hop + n_fft
    if n_fft % hop:
        ola = torch.nn.functional.fold(frames.transpose(1, 2), output_size=(1, span),
                                       kernel_size=(1, n_fft), stride=(1, hop)).reshape(b, span)
        env = torch.nn.functional.fold(window_sq[None, :, None].expand(1, n_fft, k), output_size=(1, span),
                                       kernel_size=(1, n_fft), stride=(1, hop)).reshape(span)
        return ola, env
    r_blocks = n_fft // hop
    blocks = frames.reshape(b, k, r_blocks, hop)                    # (B, k, R, hop)
    w_blocks = window_sq.reshape(r_blocks, hop)                     # (R, hop)
    ola = frames.new_zeros(b, k + r_blocks - 1, hop)
    env = frames.new_zeros(k + r_blocks - 1, hop)
    for r in range(r_blocks):
        ola[:, r:r + k] += blocks[:, :, r]
        env[r:r + k] += w_blocks[r]
    return ola.reshape(b, span), env.reshape(span)


HIGH_BAND_RULES = ("top-mean", "zero")


def input_stft(stft: util.STFT, model_rate: int, input_rate: int) -> util.STFT:
    """The STFT at ``input_rate`` whose frames span the model's frames in time: hop and n_fft
    scaled by input_rate / model_rate, keeping the model's n_fft / hop ratio (so overlap-add
    takes its fast path) and rounding the hop up to the nearest one whose n_fft has only small
    prime factors (fast FFTs): at 44.1 kHz for 1024/256 at 16 kHz, 2880/720 instead of
    2822/706, 2 % longer frames (measured: -0.1 dB median on the music excerpts; 2822-point FFTs
    are about 3x slower); at 48 kHz exactly 3072/768. The frequency grid is mapped anyway."""
    if input_rate == model_rate:
        return stft
    import scipy.fft

    ratio = input_rate / model_rate
    per_hop = max(1, stft.n_fft // stft.hop)
    hop = max(1, int(round(stft.hop * ratio)))
    if stft.n_fft % stft.hop == 0:
        while scipy.fft.next_fast_len(per_hop * hop, real=True) != per_hop * hop or (per_hop * hop) % 2:
            hop += 1
        return util.make_stft(per_hop * hop, hop, stft.window_name)
    n_fft = max(16, scipy.fft.next_fast_len(int(round(stft.n_fft * ratio)), real=True))
    n_fft += n_fft % 2
    return util.make_stft(n_fft, min(hop, n_fft // 2), stft.window_name)


class FrequencyMap:
    """Between the model's STFT bins (``n_fft`` at ``model_rate``) and the input's (``n_fft_in``
    at ``input_rate``): magnitudes go to the model's grid by linear interpolation in frequency
    (zero above the input's Nyquist; scaled by the window-length ratio, so a model without level
    normalisation sees the magnitudes it was trained on), and masks come back the same way.
    Above the model's Nyquist the mask follows ``high_band``: ``"top-mean"`` is, per frame and
    source, the power-weighted mean mask of the model's top quarter-band (e.g. 6-8 kHz for a
    16 kHz model): the high band gets the vocal share of energy that the top band has, so vocals
    keep their sibilants and air; ``"zero"`` sends all of it to the accompaniment (what
    resampling to the model rate and back did).

    Only the input's first :attr:`n_need` bins (up to just past the model's Nyquist) are ever
    read, so callers compute magnitudes for those alone (at 44.1 kHz through a 16 kHz model,
    523 + 1 of 1441 bins)."""

    def __init__(self, n_fft: int, model_rate: int, n_fft_in: int, input_rate: int, high_band="top-mean"):
        if high_band not in HIGH_BAND_RULES:
            raise ValueError(f"high_band must be one of {HIGH_BAND_RULES}")
        self.identity = n_fft == n_fft_in and model_rate == input_rate
        self.high_band = high_band
        self.n_in = n_fft_in // 2 + 1
        f_model = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * model_rate / n_fft
        f_in = torch.arange(self.n_in, dtype=torch.float64) * input_rate / n_fft_in
        self.n_low = int((f_in <= f_model[-1] + 1e-9).sum())      # input bins up to the model's Nyquist
        self.n_need = min(self.n_low + 1, self.n_in)             # ... and the one above, for interpolation
        self.to_model = self._interp(f_in[:self.n_need], f_model)  # input bins -> model grid
        self.to_input = self._interp(f_model, f_in[:self.n_low])   # model bins -> input bins below its Nyquist
        # The models were trained on audio at their own rate, whose top band a resampler's (or the
        # recording's) anti-alias filter rolls off: taper the model-grid magnitudes the same way
        # (raised cosine from 0.93 to 0.985 of the model's Nyquist, about soxr's HQ response), so
        # a 44.1 kHz song does not feed the top bins energy the models never saw.
        nyq = model_rate / 2
        if input_rate > model_rate:
            pos = ((f_model / nyq - 0.93) / 0.055).clamp(0, 1)
            self.taper = (0.5 + 0.5 * torch.cos(np.pi * pos)).float()
        else:
            self.taper = torch.ones(len(f_model))
        self.scale = self.taper * (n_fft / n_fft_in)
        self.top_lo = int((f_in < 0.75 * f_model[-1]).sum())      # the model's top quarter-band: [top_lo, n_low)

    @staticmethod
    def _interp(f_from, f_to):
        """(index_lo, index_hi, weight_hi, inside) for linear interpolation of values on the
        ``f_from`` grid at the ``f_to`` frequencies."""
        pos = torch.searchsorted(f_from, f_to).clamp(1, len(f_from) - 1)
        lo, hi = pos - 1, pos
        w = ((f_to - f_from[lo]) / (f_from[hi] - f_from[lo])).clamp(0, 1)
        inside = f_to <= f_from[-1] + 1e-9
        return lo, hi, w.float(), inside.float()

    @staticmethod
    def _apply(x, spec):
        lo, hi, w, inside = spec
        a, b = x.index_select(-1, lo), x.index_select(-1, hi)
        return torch.lerp(a, b, w) * inside

    def magnitudes(self, mag_in: torch.Tensor) -> torch.Tensor:
        """(T, F_in) or (T, n_need) -> (T, F_model)."""
        return mag_in if self.identity else self._apply(mag_in[..., :self.n_need], self.to_model) * self.scale

    def masks(self, masks: torch.Tensor, mag_in: torch.Tensor | None = None) -> torch.Tensor:
        """(T, S, F_model) -> (T, S, F_in). ``mag_in`` (T, >= n_low bins), the mixture's
        magnitudes, weights the top-band mean (see the class docstring)."""
        if self.identity:
            return masks
        low = self._apply(masks, self.to_input)                          # (T, S, n_low)
        if self.n_low == self.n_in:
            return low
        out = masks.new_empty(*masks.shape[:-1], self.n_in)
        out[..., :self.n_low] = low
        if self.high_band == "top-mean":
            # the mask that gives the high band the same vocal energy share as the top band:
            # sqrt(sum m^2 |X|^2 / sum |X|^2) over the input bins of the model's top quarter-band
            top = low[..., self.top_lo:]
            if mag_in is None:
                fill = (top ** 2).mean(-1, keepdim=True).sqrt()
            else:
                power = (mag_in[:, self.top_lo:self.n_low] ** 2)[:, None, :]   # (T, 1, band)
                fill = ((top ** 2 * power).sum(-1, keepdim=True) / power.sum(-1, keepdim=True).clamp_min(1e-20)).sqrt()
            out[..., self.n_low:] = fill
        else:
            out[..., self.n_low:] = 0
        return out


def wiener_refine(masks: torch.Tensor, spec: torch.Tensor, iterations: int) -> torch.Tensor:
    """Multichannel Wiener filter (norbert, as in Open-Unmix) of a block of frames.

    masks (k, S, F) from the model, with "rest" = 1 - sum of the masks when the model's sources
    do not cover the mixture (e.g. vocals only); spec (C, k, F) complex mixture. The magnitude
    estimates mask x |X_c| start ``iterations`` EM updates of each source's spectral power and
    spatial covariance (over the block), then the Wiener filter gives complex estimates
    (S, C, k, F) of the model's sources, which sum with the rest to the mixture.
    """
    import norbert

    k, n_src, n_bins = masks.shape
    rest = (1 - masks.sum(1, keepdim=True)).clamp_min(0)                # (k, 1, F)
    all_masks = torch.cat([masks, rest], 1) if float(rest.max()) > 1e-6 else masks
    x = spec.permute(1, 2, 0).cpu().numpy().astype(np.complex128)      # (k, F, C)
    v = all_masks.permute(0, 2, 1).cpu().numpy()[:, :, None, :] * np.abs(x)[..., None]  # (k, F, C, J)
    y = norbert.wiener(v, x, iterations)                                # (k, F, C, J) complex
    est = torch.from_numpy(y[..., :n_src].astype(np.complex64))        # (k, F, C, S)
    return est.permute(3, 2, 0, 1).to(spec.device)                      # (S, C, k, F)


def push_in_pieces(push, block: np.ndarray) -> np.ndarray:
    """``push(piece)`` for each piece of at most :attr:`StreamSeparator.PIECE_SAMPLES` samples of ``block``
    (C, n), in order; their outputs concatenated."""
    piece = StreamSeparator.PIECE_SAMPLES
    return np.concatenate([push(block[:, i:i + piece]) for i in range(0, block.shape[1], piece)], -1)


class StreamSeparator:
    """Feed ``(C, n)`` blocks at the input rate; get ``(S, C, n')`` separated blocks back.

    The STFT runs at the input rate (:func:`input_stft`: frames as long in time as the model's);
    the mask is computed on the model's frequency grid and mapped back (:class:`FrequencyMap`),
    so nothing is resampled and the output keeps the input's full band. With ``input_rate`` None
    (or equal to ``model_rate``) the input is at the model rate. Output samples come out in order
    and, once all input is pushed and :meth:`finish` called, total exactly the input length.
    """

    def __init__(self, model, stft: util.STFT, device="cpu", chunk_frames=1024, overlap_frames=128,
                 input_rate=None, model_rate=None, high_band="top-mean", wiener=0, mask_power=1.0):
        self.model, self.device = model, torch.device(device)
        self.wiener = int(wiener)
        self.mask_power = float(mask_power)
        model_rate = model_rate or input_rate or 1
        input_rate = input_rate or model_rate
        self.stft = input_stft(stft, model_rate, input_rate)
        self.fmap = FrequencyMap(stft.n_fft, model_rate, self.stft.n_fft, input_rate, high_band)
        self.n_fft, self.hop = self.stft.n_fft, self.stft.hop
        self.window = self.stft.window(self.device)
        self.runner = MaskRunner(model, chunk_frames, overlap_frames)
        self.pending = None         # input samples not yet framed, padded coordinates from p0
        self.p0 = 0
        self.spec_queue = []        # spectra (C, t, F) waiting for their masks
        self.mag_queue = []         # their mono magnitudes (t, fmap.n_need), for the high-band rule
        self.next_frame = 0         # next frame index to be overlap-added
        self.out = None             # (S, C, L) overlap-add accumulator from padded position o0
        self.env = None             # (L,) sum of squared windows
        self.o0 = 0
        self.n_in = 0               # input samples seen
        self.n_out = 0              # output samples emitted

    def _frames(self):
        """Cut every complete frame out of the pending samples."""
        buf = self.pending
        n_avail = buf.shape[1]
        if n_avail < self.n_fft:
            return None
        k = (n_avail - self.n_fft) // self.hop + 1
        frames = buf[:, :(k - 1) * self.hop + self.n_fft].unfold(1, self.n_fft, self.hop)  # (C, k, n_fft)
        spec = torch.fft.rfft(frames * self.window, dim=-1)             # (C, k, F)
        self.pending = buf[:, k * self.hop:]
        self.p0 += k * self.hop
        return spec

    # Work on pieces of at most this many samples whatever the block size: the frame, FFT and
    # overlap-add arrays of a 3 s piece stay in cache; 30 s pieces made the 44.1 kHz file path
    # about 2x slower (memory-bound). The output does not depend on it, except with --wiener,
    # whose spatial covariances are estimated per block: then blocks are kept whole.
    PIECE_SAMPLES = 2 ** 17

    def push(self, block: np.ndarray) -> np.ndarray:
        """block: (C, n) float32 at the input rate -> separated (S, C, n') ready so far."""
        if block.shape[1] > self.PIECE_SAMPLES and not self.wiener:
            return push_in_pieces(self.push, block)
        x = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)).to(self.device)
        if self.pending is None:                                        # centre padding, left side
            x = torch.cat([x.new_zeros(x.shape[0], self.n_fft // 2), x], 1)
            self.pending = x[:, :0]
        self.n_in += block.shape[1]
        self.pending = torch.cat([self.pending, x], 1)
        return self._process(final=False)

    def finish(self) -> np.ndarray:
        if self.pending is None:
            raise UserError("no audio was given")
        self.pending = torch.cat([self.pending, self.pending.new_zeros(self.pending.shape[0], self.n_fft // 2)], 1)
        return self._process(final=True)

    def _process(self, final):
        """Frame what is pending, run the model, overlap-add; return the finished samples."""
        outs = []
        spec = self._frames()
        if spec is not None:
            low = spec[..., :self.fmap.n_need]                          # the bins the model sees
            mono = (low[0] if spec.shape[0] == 1 else low.mean(0)).abs()     # mask from the mono downmix
            self.spec_queue.append(spec)
            self.mag_queue.append(mono)
            outs.append(self._synthesise(self.runner.push(self.fmap.magnitudes(mono))))
        if final:
            outs.append(self._synthesise(self.runner.flush()))
            outs.append(self._emit(final=True))
        outs = [o for o in outs if o is not None and o.shape[-1]]
        if not outs:
            return np.zeros((len(self.model.sources), self.pending.shape[0], 0), np.float32)
        return np.concatenate(outs, -1)

    def _synthesise(self, masks):
        """Overlap-add the frames whose masks are ready; return finalised output samples."""
        k = masks.shape[0]
        if k == 0:
            return None
        if not torch.isfinite(masks).all():
            raise UserError("the model produced NaN or infinite masks (broken checkpoint?); nothing written")
        spec = torch.cat(self.spec_queue, 1) if len(self.spec_queue) > 1 else self.spec_queue[0]
        mags = torch.cat(self.mag_queue, 0) if len(self.mag_queue) > 1 else self.mag_queue[0]
        use, keep = spec[:, :k], spec[:, k:]
        masks = self.fmap.masks(masks, mags[:k])                        # (k, S, F_in)
        if self.mask_power != 1.0:
            masks = masks.clamp_min(0) ** self.mask_power
        # copies of what waits: views would keep every queued spectrum's storage alive (9 separators of
        # --semitones 4 held about 300 MB of spent spectra at 44.1 kHz)
        self.spec_queue = [keep.clone()] if keep.shape[1] else []
        self.mag_queue = [mags[k:].clone()] if keep.shape[1] else []
        if self.wiener:
            est = wiener_refine(masks, use, self.wiener)                # (S, C, k, F)
        else:
            est = masks.permute(1, 0, 2)[:, None] * use[None]           # (S, C, k, F)
        frames = torch.fft.irfft(est, n=self.n_fft, dim=-1) * self.window  # (S, C, k, n_fft)
        start = self.next_frame * self.hop                              # padded position of first frame
        end = (self.next_frame + k - 1) * self.hop + self.n_fft
        if self.out is None:
            self.out = frames.new_zeros(*frames.shape[:2], 0)
            self.env = frames.new_zeros(0)
        need = end - self.o0
        if need > self.out.shape[-1]:
            self.out = torch.cat([self.out, self.out.new_zeros(*self.out.shape[:2], need - self.out.shape[-1])], -1)
            self.env = torch.cat([self.env, self.env.new_zeros(need - self.env.shape[0])])
        s, c = frames.shape[:2]
        ola, env = overlap_add(frames.reshape(s * c, k, self.n_fft), self.window ** 2, self.hop)
        self.out[..., start - self.o0:end - self.o0] += ola.reshape(s, c, end - start)
        self.env[start - self.o0:end - self.o0] += env
        self.next_frame += k
        return self._emit(final=False)

    def _emit(self, final):
        """Samples before the next frame's start are complete: divide by the envelope, drop the
        centre padding, hand them out."""
        if self.out is None:
            return None
        done = self.out.shape[-1] if final else self.next_frame * self.hop - self.o0
        block = self.out[..., :done] / torch.where(self.env[:done] > 1e-11, self.env[:done], 1.0)
        self.out, self.env = self.out[..., done:].clone(), self.env[done:].clone()
        first = self.o0
        self.o0 += done
        # padded position p holds input sample p - n_fft//2
        lo = max(first, self.n_fft // 2) - first
        hi = min(self.o0, self.n_fft // 2 + self.n_in) - first
        if hi <= lo:
            return None
        self.n_out += hi - lo
        return block[..., lo:hi].cpu().numpy()


# ----------------------------------------------------------------------------------------------
# Test-time transposition (--semitones)
# ----------------------------------------------------------------------------------------------
def transposition_speeds(semitones: int) -> list[float]:
    """The playback speeds of ``--semitones N``: 2^(k/12) for k = -N..N (1.0 = the song as it is)."""
    return [2.0 ** (k / 12) for k in range(-int(semitones), int(semitones) + 1)]


def _play(stream, audio: np.ndarray, last: bool) -> np.ndarray:
    """(channels, n) through a soxr resampler stream -> (channels, n')."""
    return np.ascontiguousarray(stream.resample_chunk(np.ascontiguousarray(audio.T), last=last).T)


def _play_stems(stream, est: np.ndarray, last: bool) -> np.ndarray:
    """(S, C, n) estimates through a resampler stream of S*C channels -> (S, C, n')."""
    s, c, m = est.shape
    return _play(stream, est.reshape(s * c, m), last).reshape(s, c, -1)


def _speed_stream(speed: float, channels: int):
    """A streaming soxr resampler (high quality) that plays audio ``speed`` times faster: pitch and
    tempo together, 1/speed as many samples."""
    import soxr

    return soxr.ResampleStream(speed, 1.0, channels, dtype="float32", quality="HQ")


# How --semitones combines its 2N+1 estimates (--transposition-mean): "geometric" masks the mixture by each
# source's share of the geometric mean, over the estimates, of its magnitude spectrogram (GeometricCombiner);
# "arithmetic" averages the estimates' waveforms sample by sample.
TRANSPOSITION_MEANS = ("geometric", "arithmetic")
DEFAULT_TRANSPOSITION_MEAN = "arithmetic"


class GeometricCombiner(StreamSeparator):
    """Streams K estimates of a song's sources into one, frame by frame: push ``(C + K*S1, n)`` blocks,
    the mixture's C channels and then, for each estimate, the mono downmix of its S1 = S + 1 parts (the
    model's S sources and the rest, the mixture minus them), all aligned; get ``(S, C, n')`` back. Each
    frame's magnitudes are averaged in the log domain over the K estimates (G_j, the geometric mean the
    ensembles use) and the mixture's channels are masked by G_j / sum G (the rest's share is dropped, as
    a vocals-only model's rest is). ``stft`` is the separators' own (at the input rate), so the frames
    are theirs. Output samples total the input length, as :class:`StreamSeparator`'s do."""

    EPS = 1e-8                                          # the floor of the magnitudes under the log

    def __init__(self, stft: util.STFT, channels: int, n_estimates: int, n_sources: int):
        super().__init__(None, stft)
        self.channels, self.k, self.n_parts = int(channels), int(n_estimates), int(n_sources) + 1

    def _process(self, final):
        outs = []
        spec = self._frames()                                           # (C + K*S1, t, F)
        if spec is not None:
            c, t = self.channels, spec.shape[1]
            logs = torch.log(spec[c:].abs() + self.EPS).reshape(self.k, self.n_parts, t, -1)
            g = logs.mean(0).exp()                                      # (S1, t, F)
            masks = g / g.sum(0, keepdim=True)
            self.spec_queue.append(spec[:c])
            self.mag_queue.append(spec.new_zeros(t, 0).real)            # no frequency map: not used
            outs.append(self._synthesise(masks[:-1].transpose(0, 1)))   # (t, S, F)
        if final:
            outs.append(self._emit(final=True))
        outs = [o for o in outs if o is not None and o.shape[-1]]
        if not outs:
            return np.zeros((self.n_parts - 1, self.channels, 0), np.float32)
        return np.concatenate(outs, -1)


class TransposedSeparator:
    """:class:`StreamSeparator`'s interface (push ``(C, n)`` blocks, get ``(S, C, n')`` back, then
    :meth:`finish`) for the mean of several separations of one song: for each of ``speeds`` the
    song is played that many times faster (2^(k/12) transposes it by k semitones; a streaming
    resampler, so memory stays bounded), separated by its own separator from ``make()``, and the
    estimates are played back at the original speed and combined: averaged sample by sample
    (``mean`` "arithmetic"), or their magnitude spectrograms averaged in the log domain and the mixture
    masked by each source's share (``mean`` "geometric", :class:`GeometricCombiner`); ``mean`` None:
    the model's (:func:`transposition_mean`). Output samples
    come out in order and total exactly the input length, as a single separator's do."""

    def __init__(self, make, speeds, mean=None):
        self.speeds = [float(r) for r in speeds]
        self.seps = [make() for _ in self.speeds]
        self.mean = mean or transposition_mean(self.seps[0].model)
        if self.mean not in TRANSPOSITION_MEANS:
            raise ValueError(f"transposition mean must be one of {TRANSPOSITION_MEANS}, not {self.mean!r}")
        self.combiner = None                      # the GeometricCombiner, made when the channel count is known
        self.mixture = []                         # geometric: input blocks not yet combined
        self.n_fft = self.seps[0].n_fft
        self.n_sources = len(self.seps[0].model.sources)
        self.down = [None] * len(self.speeds)     # resamplers, made when the channel count is known
        self.up = [None] * len(self.speeds)
        self.ready = [[] for _ in self.speeds]    # estimates at the original speed, not yet emitted
        self.channels = None
        self.n_in = 0
        self.n_out = 0

    def _feed(self, i: int, block: np.ndarray, last: bool):
        r, sep = self.speeds[i], self.seps[i]
        if r != 1.0:
            if self.down[i] is None:
                self.down[i] = _speed_stream(r, self.channels)
            block = _play(self.down[i], block, last)
        parts = [sep.push(block)] if block.shape[1] else []
        if last:
            parts.append(sep.finish())
        if not parts:
            return
        est = np.concatenate(parts, -1)                                 # (S, C, m)
        if r != 1.0:
            if self.up[i] is None:
                self.up[i] = _speed_stream(1.0 / r, est.shape[0] * est.shape[1])
            est = _play_stems(self.up[i], est, last)
        if est.shape[-1]:
            self.ready[i].append(est)

    def _emit(self, last: bool) -> np.ndarray:
        empty = np.zeros((self.n_sources, self.channels, 0), np.float32)
        outs = [np.concatenate(r, -1) if r else empty for r in self.ready]
        k = self.n_in - self.n_out if last else min(o.shape[-1] for o in outs)
        for r, o in zip(self.ready, outs):
            r[:] = [o[..., k:]] if o.shape[-1] > k else []
        self.n_out += k
        ests = [Data.fit_length(o, k) for o in outs]
        if self.mean == "arithmetic":
            return np.mean(ests, 0, dtype=np.float32)
        mix = np.concatenate(self.mixture, -1)
        self.mixture = [mix[:, k:]]
        mix = mix[:, :k]
        mono = mix.mean(0)
        parts = [np.concatenate([e.mean(1), (mono - e.sum((0, 1)) / self.channels)[None]]) for e in ests]
        out = self.combiner.push(np.concatenate([mix, *parts]))
        return np.concatenate([out, self.combiner.finish()], -1) if last else out

    def push(self, block: np.ndarray) -> np.ndarray:
        if block.shape[1] > StreamSeparator.PIECE_SAMPLES and not self.seps[0].wiener:
            return push_in_pieces(self.push, block)     # one piece at a time: 2N+1 estimates of a piece, not a block
        self.channels = self.channels or block.shape[0]
        self.n_in += block.shape[1]
        block = np.asarray(block, np.float32)
        if self.mean == "geometric":
            if self.combiner is None:
                self.combiner = GeometricCombiner(self.seps[0].stft, self.channels, len(self.seps), self.n_sources)
            self.mixture.append(block)
        for i in range(len(self.seps)):
            self._feed(i, block, last=False)
        return self._emit(last=False)

    def finish(self) -> np.ndarray:
        if self.channels is None:
            raise UserError("no audio was given")
        for i in range(len(self.seps)):
            self._feed(i, np.zeros((self.channels, 0), np.float32), last=True)
        return self._emit(last=True)


def transposition_mean(model) -> str:
    """How ``--semitones`` combines ``model``'s estimates: the one set by :func:`apply_transposition_mean`,
    else :data:`DEFAULT_TRANSPOSITION_MEAN`."""
    return getattr(model, "transposition_mean", None) or DEFAULT_TRANSPOSITION_MEAN


def set_transposition_mean(model, mean: str | None) -> bool:
    """Set how ``model``'s transposed estimates are combined (``mean`` None: keep the default), unless it
    is a time-domain model, whose estimates are always averaged as waveforms; returns whether it took it
    (as :func:`Model.set_ensemble_mean` for ensembles)."""
    if getattr(model, "domain", None) == "time":
        return False
    if mean is not None:
        if mean not in TRANSPOSITION_MEANS:
            raise UserError(f"--transposition-mean must be one of {', '.join(TRANSPOSITION_MEANS)}, not {mean!r}")
        model.transposition_mean = mean
    return True


def apply_transposition_mean(model, mean: str | None, quiet: bool = False) -> str | None:
    """Set ``--transposition-mean`` on ``model`` (:func:`set_transposition_mean`); a note on stderr when
    the user asked for it and the model is a time-domain one, unless ``quiet``. Returns the mean the model's
    transpositions use, None for a time-domain model."""
    if not set_transposition_mean(model, mean):
        if mean is not None and not quiet:
            print(f"note: --transposition-mean has no effect on {util.class_name(model)}, a time-domain model "
                  "(its transposed estimates are averaged as waveforms)", file=sys.stderr)
        return None
    return transposition_mean(model)


def model_semitones(model, requested=None) -> int:
    """The ``--semitones`` N for ``model``: ``requested`` if given, else the model class's own
    ``default_semitones`` (an ONNX export: its exported class's), else :data:`DEFAULT_SEMITONES`
    (ensembles and every class without one)."""
    if requested is not None:
        return int(requested)
    if isinstance(getattr(model, "model_class", None), str):
        model = util.model_class(model.model_class)
    return int(getattr(model, "default_semitones", DEFAULT_SEMITONES))


def transposing(make, semitones: int):
    """``make()`` (a :class:`StreamSeparator`), or with ``semitones`` N > 0 a :class:`TransposedSeparator`
    of ``make()``s over the song transposed by -N..N semitones: what ``--semitones`` asks for."""
    return TransposedSeparator(make, transposition_speeds(semitones)) if semitones else make()


def transposed_mean(separate_fn, mixture: np.ndarray, speeds) -> np.ndarray:
    """The whole-song form of :class:`TransposedSeparator` (the time-domain models' path):
    mixture (C, N) -> the mean over ``speeds`` of ``separate_fn`` ((C, n) -> (S, C, n)) on the
    mixture played that many times faster, each estimate played back at the original speed: (S, C, N)."""
    n, total = mixture.shape[1], 0.0
    for r in speeds:
        if r == 1.0:
            est = separate_fn(mixture)
        else:
            est = separate_fn(_play(_speed_stream(r, mixture.shape[0]), mixture, last=True))
            est = _play_stems(_speed_stream(1.0 / r, est.shape[0] * est.shape[1]), est, last=True)
        total = total + Data.fit_length(est, n)
    return (total / len(speeds)).astype(np.float32)


def separate_array(model, stft, mixture: np.ndarray, device="cpu", chunk_frames=1024, wiener=0,
                   mask_power=1.0, semitones=0) -> np.ndarray:
    """mixture (C, N) at the model rate -> masked sources (S, C, N), S = len(model.sources).
    The defaults are the raw model (no post-processing, no transposition), as training's
    validation scores it; ``semitones`` N averages over the song transposed by -N..N semitones
    (:class:`TransposedSeparator`)."""
    if getattr(model, "domain", None) == "time":
        if not semitones:
            return separate_time_domain(model, mixture, device)
        return transposed_mean(lambda x: separate_time_domain(model, x, device), mixture,
                               transposition_speeds(semitones))
    if mixture.shape[1] < stft.n_fft:
        raise UserError(f"audio too short: {mixture.shape[1]} samples < one STFT frame ({stft.n_fft})")

    def make():
        return StreamSeparator(model, stft, device, chunk_frames, wiener=wiener, mask_power=mask_power)

    sep = transposing(make, semitones)
    parts = [sep.push(mixture), sep.finish()]
    return np.concatenate([p for p in parts if p.shape[-1]], -1)


# ----------------------------------------------------------------------------------------------
# Time-domain models (Wave-U-Net): model(x (B, 1, n_in)) -> (B, S, n_out) with valid context
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def separate_time_domain(model, mixture: np.ndarray, device="cpu", block_samples=2 ** 16) -> np.ndarray:
    """mixture (C, N) at the model rate -> sources (S, C, N), each channel on its own.

    The output is produced in blocks of about ``block_samples`` samples, each computed from its
    input with the model's full context on both sides (zeros beyond the song's ends), and the
    blocks are concatenated: no overlap or cross-fade is needed. A model with ``input_rms`` set
    hears the song scaled to that RMS (all channels together), and its estimates are scaled back."""
    n = mixture.shape[1]
    target = getattr(model, "input_rms", None)
    rms = float(np.sqrt(np.mean(np.square(mixture, dtype=np.float64)))) if target and mixture.size else 0.0
    gain = target / rms if rms > 1e-6 else 1.0
    out = model.valid_output_length(min(n, block_samples))
    ctx = model.context_samples()
    n_blocks = -(-n // out)
    x = torch.from_numpy(np.ascontiguousarray(mixture * gain, dtype=np.float32)).to(device)
    x = torch.nn.functional.pad(x, (ctx, ctx + n_blocks * out - n))                  # (C, n_pad)
    parts = [model(x[:, None, i * out:i * out + out + 2 * ctx]) for i in range(n_blocks)]  # (C, S, out)
    est = torch.cat(parts, -1)[..., :n].transpose(0, 1).cpu().numpy()                  # (S, C, N)
    return est / gain if gain != 1.0 else est


def separate_whole(model, stft, mixture: np.ndarray, device="cpu") -> np.ndarray:
    """Reference implementation without streaming: (C, N) -> (S, C, N)."""
    x = torch.from_numpy(mixture).to(device)
    spec = stft.stft(x)                                                 # (C, F, T)
    mono = spec.mean(0).abs().T[None]                                   # (1, T, F)
    with torch.no_grad():
        masks = model(mono)[0]                                          # (S, T, F)
    est = masks.transpose(-1, -2)[:, None] * spec[None]                 # (S, C, F, T)
    return stft.istft(est, mixture.shape[1]).cpu().numpy()


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------
def expand_inputs(items, exclude: Path | None = None) -> list[Path]:
    """Files, folders (their audio files, recursively) and glob patterns -> list of paths.
    An existing path is always a path (names may hold ``[``, ``*`` or ``?``); only a non-existing
    one is tried as a glob pattern. Files inside ``exclude`` (the output folder) are left out, so
    separating a folder into a sub-folder of itself never separates its own outputs."""
    out = []
    for item in items:
        if not str(item).strip():
            raise UserError("empty input name ''")
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in util.AUDIO_EXTENSIONS
                           and not p.name.startswith("."))
            if exclude is not None:
                ex = exclude.resolve()
                found = [p for p in found if ex not in p.resolve().parents]
            if not found:
                raise UserError(f"{item}: folder holds no audio files")
            out += found
        elif not path.exists() and any(ch in item for ch in "*?["):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise UserError(f"{item}: no such file, and as a pattern it matches no file")
            out += [Path(m) for m in matches if Path(m).is_file()]
        else:
            out.append(path)
    return out


def output_folders(inputs, outdir: Path) -> list[Path]:
    """One output folder per input path, all different: ``<outdir>/<track name>``, and for songs
    whose names collide (``CD1/01 Intro.wav``, ``CD2/01 Intro.wav``) their folders below the
    colliding songs' common parent (``<outdir>/CD1/01 Intro``)."""
    names = [track_name(p) for p in inputs]
    counts = {n: names.count(n) for n in names}
    folders = []
    for path, name in zip(inputs, names):
        if counts[name] == 1:
            folders.append(outdir / name)
            continue
        others = [p for p, n in zip(inputs, names) if n == name]
        common = Path(os.path.commonpath([str(p.resolve().parent) for p in others]))
        rel = path.resolve().parent.relative_to(common)
        if str(rel) == "." and track_name(path) != path.stem:   # <track>/mixture.wav: the track folder
            rel = Path()
        folders.append(outdir / rel / name)
    seen = {}
    for path, folder in zip(inputs, folders):
        if folder in seen and seen[folder] != path.resolve():
            raise UserError(f"{path} and {seen[folder]}: would both be written to {folder}/")
        seen[folder] = path.resolve()
    return folders


def prepare_outdir(out_dir: Path):
    """Create ``out_dir`` or say in one line why it cannot be written to."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{out_dir}: cannot create output folder ({err.strerror})") from None
    if not os.access(out_dir, os.W_OK):
        raise UserError(f"{out_dir}: output folder is not writable")


def track_name(path: Path) -> str:
    """Output folder name: the file's stem, or its folder's name for ``<track>/mixture.wav``."""
    return path.parent.name if path.stem.lower() in ("mixture", "mix") and path.parent.name else path.stem


# Integer PCM is read and written as integers and converted here: libsndfile's own float
# conversion is 3-4x slower (measured on 30 s of 44.1 kHz stereo: read 10 -> 3 ms, write of a
# 16-bit stem 29 -> 6 ms), which was half the file path's non-model time. subtype -> (container
# dtype, significant bits); the samples sit in the container's top bits, as libsndfile returns them.
INT_PCM = {"PCM_16": (np.int16, 16), "PCM_24": (np.int32, 24)}


def read_blocks(path, block_samples):
    """Yield the file's samples as contiguous float32 (C, n) blocks in [-1, 1), identical to
    libsndfile's float reading (integer PCM is scaled exactly by a power of two)."""
    with sf.SoundFile(str(path)) as f:
        dtype, _ = INT_PCM.get(f.subtype, (np.float32, 0))
        scale = np.float32(2.0 ** (1 - 8 * np.dtype(dtype).itemsize))
        while True:
            data = f.read(block_samples, dtype=dtype, always_2d=True)
            if not len(data):
                break
            if dtype is np.float32:
                yield np.ascontiguousarray(data.T)                        # (C, n)
            else:
                block = np.empty(data.shape[::-1], np.float32)
                np.multiply(data.T, scale, out=block)
                yield block


CANCELLING_DOWNMIX = 1e-3     # a mono downmix 30 dB below the channels' mean energy: they (nearly) cancel


class StemWriter:
    """The one writer of separated stems, for every model: ``out_dir/<name>.<fmt>`` for the
    model's sources, and ``accompaniment`` = mixture - vocals whether the model has an accompaniment
    output or not (so the two always sum to the input, and the file is what evaluate_sdr.py scores).

    Stems go to hidden temporary files in ``out_dir``; :meth:`commit` renames them into place,
    :meth:`abort` (or any exception inside ``with``) removes them, so a failure or a kill leaves
    no half-written output. Integer formats are clipped to [-1, 1] with one warning per song.
    """

    def __init__(self, model, out_dir: Path, sample_rate: int, channels: int, fmt="wav", subtype="PCM_16"):
        self.sources = list(model.sources)
        self.names = output_names(model)
        self.out_dir, self.fmt, self.subtype = out_dir, fmt, subtype
        self.targets = {n: out_dir / f"{n}.{fmt}" for n in self.names}
        self.tmp, self.files, self.clipped = {}, {}, False
        prepare_outdir(out_dir)
        sf_subtype = "VORBIS" if fmt == "ogg" else subtype
        try:
            for n in self.names:
                self.tmp[n] = util.temp_path(out_dir, f".{n}.", f".{fmt}")
                self.files[n] = sf.SoundFile(str(self.tmp[n]), "w", sample_rate, channels, subtype=sf_subtype,
                                             format=fmt.upper())
        except BaseException:
            self.abort()
            raise

    def write(self, separated: np.ndarray, mixture: np.ndarray):
        """separated (S, C, n) in the model's source order; mixture (C, n), the same samples."""
        for i, name in enumerate(self.sources):
            if name != "accompaniment":
                self._write(name, separated[i])
        self._write("accompaniment", mixture - separated[self.sources.index("vocals")])

    def _write(self, name, x):
        """x (C, n) float. Integer PCM (not OGG) is rounded to the nearest step here, clipped at
        full scale, and written as integers (see INT_PCM)."""
        if not x.size:
            return
        pcm = INT_PCM.get(self.subtype) if self.fmt != "ogg" else None
        if self.subtype.startswith("PCM") and np.abs(x).max() > 1:
            self.clipped = True
            if pcm is None:
                x = np.clip(x, -1, 1)
        if pcm is None:
            self.files[name].write(np.ascontiguousarray(x.T))
            return
        dtype, bits = pcm
        full = np.float32(2.0 ** (bits - 1))
        y = np.multiply(x, full, dtype=np.float32)                      # (C, n); scaling by 2^k is exact
        np.rint(y, out=y)
        np.clip(y, -full, full - 1, out=y)
        ints = y.astype(dtype)
        if 8 * ints.itemsize > bits:
            ints <<= 8 * ints.itemsize - bits
        frames = np.empty(ints.shape[::-1], dtype)                      # (n, C), interleaved for the file
        for c, channel in enumerate(ints):
            frames[:, c] = channel
        self.files[name].write(frames)

    def commit(self) -> list[Path]:
        for f in self.files.values():
            f.close()
        for n in self.names:
            os.replace(self.tmp[n], self.targets[n])
        return list(self.targets.values())

    def abort(self):
        for f in self.files.values():
            if not f.closed:
                f.close()
        for p in self.tmp.values():
            p.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if kind is not None:
            self.abort()
        return False


def separate_file(model, stft, model_sr, path: Path, out_dir: Path, fmt="wav", subtype="PCM_16",
                  device="cpu", block_seconds=30.0, progress=True, chunk_frames=1024, high_band="top-mean",
                  wiener=0, mask_power=DEFAULT_MASK_POWER, semitones=0):
    """Separate ``path`` into ``out_dir/{vocals,accompaniment,...}.<fmt>``; returns the written paths.

    The one entry point for every model, dispatching on ``model.domain``: spectrogram models
    stream the song in blocks at its own rate (never resampled, :class:`StreamSeparator`);
    time-domain models (Wave-U-Net) run on the whole song at the model rate, resampled there and
    back (memory grows with the song). Both write through :class:`StemWriter`. ``semitones`` N > 0
    averages the estimates of the song transposed by -N..N semitones (:class:`TransposedSeparator`).
    """
    info = util.audio_info(path)
    sr, channels, n_total = info.samplerate, info.channels, info.frames
    if getattr(model, "domain", "spectrogram") == "time":
        mixture, _ = util.load_audio(path)                                             # (C, N)
        est = separate_array(model, stft, util.resample(mixture, sr, model_sr), device, semitones=semitones)
        if not np.isfinite(est).all():
            raise UserError("the model produced NaN or infinite output (broken checkpoint?); nothing written")
        est = np.stack([util.resample(x, model_sr, sr) for x in est])                 # (S, C, N')
        est = np.pad(est, ((0, 0), (0, 0), (0, max(0, n_total - est.shape[-1]))))[..., :n_total]
        with StemWriter(model, out_dir, sr, channels, fmt, subtype) as writer:
            writer.write(est, mixture)
            return writer.commit()

    def make():
        return StreamSeparator(model, stft, device, chunk_frames, input_rate=sr, model_rate=model_sr,
                               high_band=high_band, wiener=wiener, mask_power=mask_power)

    sep = transposing(make, semitones)
    if n_total < sep.n_fft:
        raise UserError(f"{path}: too short ({n_total / sr:.3f} s; one STFT frame is "
                        f"{stft.n_fft / model_sr:.3f} s)")
    pending = []                                                        # mixture awaiting its estimates

    def write(separated):
        """separated (S, C, n): the estimates of the oldest n unwritten mixture samples."""
        n = separated.shape[-1]
        if n:
            mix = np.concatenate(pending, 1) if len(pending) > 1 else pending[0]
            pending[:] = [mix[:, n:]]
            writer.write(separated, mix[:, :n])

    energy = np.zeros(2)                                                # the downmix's, the channels' mean
    with StemWriter(model, out_dir, sr, channels, fmt, subtype) as writer:
        bar = tqdm(total=n_total, unit="sample", unit_scale=True, desc=path.name[:30], disable=not progress,
                   leave=False)
        for block in read_blocks(path, max(int(block_seconds * sr), 1)):
            if not np.isfinite(block).all():
                raise UserError(f"{path}: audio contains NaN or infinite samples")
            if channels > 1:
                energy += (float(np.square(block.mean(0, dtype=np.float64)).sum()),
                           float(np.square(block, dtype=np.float64).sum()) / channels)
            pending.append(block)
            write(sep.push(block))
            bar.update(block.shape[1])
        write(sep.finish())
        bar.close()
        written = writer.commit()
    if writer.clipped:
        print(f"warning: {path.name}: output exceeded full scale and was clipped", file=sys.stderr)
    if energy[1] > 0 and energy[0] < CANCELLING_DOWNMIX * energy[1]:
        print(f"warning: {path.name}: its channels cancel in the mono downmix the masks are computed from "
              f"({10 * np.log10(max(energy[0], 1e-30) / energy[1]):.0f} dB; one channel phase-inverted?), "
              "so the separation is unreliable", file=sys.stderr)
    return written


def build_parser(description, default_model):
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="audio files, folders or glob patterns (wav, flac, ogg, mp3, ...)")
    p.add_argument("-o", "--outdir", type=Path, default=None,
                   help="output folder; each song goes to <outdir>/<song>/ (default separated/<model name>/, "
                        "e.g. separated/RNN/, so two models never overwrite each other); songs with the same "
                        "name from different folders keep their sub-folders")
    p.add_argument("--model", type=Path, default=default_model,
                   help="checkpoint to use; A.pt+B.pt runs an ensemble (the mean of the masks of models "
                        "with the same STFT, --ensemble-mean) "
                        f"(default {default_model.relative_to(ROOT) if default_model else 'none'})")
    p.add_argument("--format", choices=["wav", "flac", "ogg"], default="wav", help="output format (default wav)")
    p.add_argument("--subtype", choices=["16", "24", "float"], default="16",
                   help="sample format: 16- or 24-bit integer, or 32-bit float (wav only) (default 16)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--device", type=util.device_name, default=None,
                   help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--threads", type=util.threads_count, default=None,
                   help="torch CPU threads, 1..4 x cores (default: all cores)")
    p.add_argument("--block-seconds", type=util.float_range(0.1, 3600), default=30.0,
                   help="audio read and processed per step, in seconds; bounds memory (default 30)")
    p.add_argument("--high-band", choices=HIGH_BAND_RULES, default="top-mean",
                   help="mask above the model's Nyquist (songs at a higher rate than the model's, e.g. 44.1 kHz "
                        "through a 16 kHz model): top-mean gives that band the vocal share of energy of the "
                        "model's top quarter-band (power-weighted mean mask; vocals keep sibilants and air); "
                        "zero gives all of it to the accompaniment (default top-mean)")
    p.add_argument("--wiener", type=util.int_range(0, 10), default=0,
                   help="EM iterations of a multichannel Wiener post-filter (norbert) on the masked estimates, "
                        "0..10; 0 = off (default 0: on the music excerpts it lowered the median vocals SDR, "
                        "1 iteration by 0.3-0.8 dB; see README)")
    add_mask_power_arg(p)
    add_shifts_arg(p)
    add_ensemble_mean_arg(p)
    add_semitones_arg(p)
    add_transposition_mean_arg(p)
    add_runtime_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def add_mask_power_arg(parser):
    """``--mask-power``, shared by separate.py and evaluate_sdr.py."""
    parser.add_argument("--mask-power", type=util.float_range(0.25, 8), default=DEFAULT_MASK_POWER,
                        help="raise each source's mask to this power before applying it, 0.25..8 "
                             "(spectrogram models; 1 = the model's own mask). Above 1 the vocals keep less "
                             "of the accompaniment; the accompaniment written is still mixture - vocals, so "
                             "the two sum to the mixture. Measured "
                             "(README 'Post-processing'): 1.5 raised the vocals SDR on MIR-1K's validation "
                             "clips, on its test singers only for some models, and lowered it on produced "
                             "songs (default %(default)g)")


def add_semitones_arg(parser):
    """``--semitones``, shared by separate.py, evaluate_sdr.py and the real-songs bench."""
    parser.add_argument("--semitones", type=util.int_range(0, 6), default=None,
                        help="test-time transposition, 0..6: also separate the song transposed by 1..N whole "
                             "semitones up and down (played faster or slower: pitch and tempo together), play "
                             "each estimate back at the original speed and average the 2N+1 of them (N costs "
                             "up to 2N+1 x the separation time; 0 = off, the raw model). Measured (README "
                             "'Post-processing'): 2 raised the vocals SDR of every model but the frame model on "
                             "MIR-1K's validation clips, on a singer the models never heard and on produced "
                             "songs; 4 raised the RNN's, the DRNN's, the GRU-IRM's and the hourglass's further "
                             "(default: the model's own, 4 for those four, "
                             f"{DEFAULT_SEMITONES} for the others and for ensembles)")


def add_transposition_mean_arg(parser):
    """``--transposition-mean``, shared by separate.py, evaluate_sdr.py and the real-songs bench."""
    parser.add_argument("--transposition-mean", choices=TRANSPOSITION_MEANS, default=None,
                        help="how --semitones combines its 2N+1 estimates: geometric masks the song by each "
                             "source's share of the geometric mean of their magnitude spectrograms (a bin "
                             "counts as voice only where every transposition hears voice there), arithmetic "
                             "averages their waveforms; a time-domain model (Wave-U-Net) always averages "
                             "waveforms. Measured (README 'Post-processing'): geometric raised MIR-1K on a voice "
                             "the models never heard (three RNNs +0.64 to +0.67 dB) but lowered six of eight "
                             "models' medians on produced songs (the RNN 5.80 vs 6.23 dB), as sharper masks "
                             f"(--mask-power) did (default {DEFAULT_TRANSPOSITION_MEAN})")


def add_shifts_arg(parser):
    """``--shifts``, shared by separate.py, evaluate_sdr.py and the real-songs bench."""
    parser.add_argument("--shifts", type=util.int_range(1, 64), default=None,
                        help="average the U-Net's, the CNN's and the stacked hourglass's masks over this "
                             "many time offsets of their input, 1..64 (their strided or pooling layers and the "
                             "CNN's patches make them depend on where a frame falls; 1 = the raw network, N "
                             "costs N x its time; other models have no such part). Measured (README "
                             "'Post-processing'): 4 raised the U-Net's and the CNN's vocals SDR on MIR-1K's "
                             "validation clips and on produced songs, the hourglass's by 0.03 dB only "
                             f"(default {DEFAULT_SHIFTS} for the U-Net and the CNN, 1 for the hourglass)")


def add_ensemble_mean_arg(parser):
    """``--ensemble-mean``, shared by separate.py, evaluate_sdr.py and the real-songs bench."""
    parser.add_argument("--ensemble-mean", choices=Model.MaskEnsemble.MEANS, default=None,
                        help="how an ensemble (--model A.pt+B.pt) combines its members' masks: geometric keeps "
                             "a bin only where they all keep it (sharper), arithmetic in proportion to how many "
                             "keep it (one member's mistake costs less). Measured (README 'Post-processing'): "
                             "geometric scored higher on MIR-1K (U-Net+RNN, validation 12.14 vs 11.64 dB), "
                             "arithmetic on produced songs (median 5.73 vs 4.79 dB on six excerpts) "
                             f"(default {DEFAULT_ENSEMBLE_MEAN})")


def apply_ensemble_mean(model, mean: str | None, quiet: bool = False) -> str | None:
    """Set ``--ensemble-mean`` on an ensemble (None = its default); a note on stderr when the user
    asked for it and the model is not an ensemble, unless ``quiet``. Returns the mean used, None for a
    single model."""
    if not Model.set_ensemble_mean(model, mean):
        if mean is not None and not quiet:
            print(f"note: --ensemble-mean has no effect on {util.class_name(model)} (not an ensemble)",
                  file=sys.stderr)
        return None
    return model.mean


RUNTIMES = ("auto", "torch")
DEFAULT_RUNTIME = "auto"


def add_runtime_arg(parser):
    """``--runtime``, shared by separate.py, evaluate_sdr.py and the real-songs bench."""
    parser.add_argument("--runtime", choices=RUNTIMES, default=DEFAULT_RUNTIME,
                        help="auto runs the stacked hourglass's masks with onnxruntime when onnx and onnxruntime are "
                             "installed (pip install -r requirements-onnx.txt; the same masks to 1e-5, a separation "
                             "1.5x faster on one CPU thread) and on a CPU; every other model, and everything else, "
                             f"runs torch. torch: torch only (default {DEFAULT_RUNTIME})")


def runtime_parts(model) -> list:
    """The parts of ``model`` (an ensemble's members too) whose class names a faster runtime (``fast_runtime``)."""
    return [m for m in model.modules() if getattr(m, "fast_runtime", None) == "onnxruntime"]


def apply_runtime(model, runtime: str | None, device="cpu", quiet: bool = False) -> str | None:
    """``--runtime``: with auto (None), the parts of :func:`runtime_parts` run their masks with onnxruntime
    (:func:`onnx_export.accelerate`) if it is installed and ``device`` is the CPU; otherwise, or if onnxruntime
    fails its check against torch, they stay on torch, with a one-line note unless ``quiet``. Returns the runtime
    those parts use, None for a model without such parts. Call it after ``torch.set_num_threads``."""
    parts = runtime_parts(model)
    if not parts:
        return None
    if (runtime or DEFAULT_RUNTIME) == "torch" or torch.device(device).type != "cpu":
        return "torch"
    import onnx_export
    if not onnx_export.available():
        if not quiet:
            print(f"note: {util.class_name(parts[0])} separates about 1.5x faster with onnxruntime: "
                  "pip install -r requirements-onnx.txt", file=sys.stderr)
        return "torch"
    try:
        for part in parts:
            onnx_export.accelerate(part)
    except UserError as err:
        release_runtime(model)
        if not quiet:
            print(f"note: {err}; running torch", file=sys.stderr)
        return "torch"
    return "onnxruntime"


def release_runtime(model) -> None:
    """Drop the onnxruntime sessions :func:`apply_runtime` attached: those parts run torch again."""
    for part in runtime_parts(model):
        part.__dict__.pop("_onnx_masks", None)


def requested_settings(shifts: int | None, ensemble_mean: str | None, semitones: int | None,
                       transposition: str | None = None) -> dict:
    """``--ensemble-mean``, ``--shifts``, ``--semitones`` and ``--transposition-mean`` as a run asked for
    them, the way evaluate_sdr.py's and the real-songs bench's JSON record them (what each model then
    used is in their ``systems``)."""
    own = "each model's default (systems)"
    return {"ensemble_mean": ensemble_mean or DEFAULT_ENSEMBLE_MEAN, "shifts": own if shifts is None else shifts,
            "semitones": own if semitones is None else semitones,
            "transposition_mean": transposition or DEFAULT_TRANSPOSITION_MEAN}


def apply_settings(model, shifts: int | None = None, ensemble_mean: str | None = None,
                   semitones: int | None = None, transposition_mean: str | None = None,
                   runtime: str | None = None, device="cpu", quiet: bool = False) -> dict:
    """Apply a run's per-model options to a loaded model, the one way separate.py, evaluate_sdr.py (its
    parent and each worker) and the real-songs bench do: ``--shifts``, ``--ensemble-mean``,
    ``--transposition-mean`` when the model transposes (``--semitones``, resolved by :func:`model_semitones`)
    and ``--runtime`` (call it after ``torch.set_num_threads``). Each option that does not apply to the model
    says so on stderr unless ``quiet``; a runtime that falls back to torch always says why. Returns what the
    model then uses, as the results files record it: ``shifts``, ``ensemble_mean`` and ``semitones``, with
    ``transposition_mean`` when it transposes and ``runtime`` when it has parts onnxruntime can run (None:
    the option does not apply to it)."""
    used = {"shifts": apply_shifts(model, shifts, quiet),
            "ensemble_mean": apply_ensemble_mean(model, ensemble_mean, quiet),
            "semitones": model_semitones(model, semitones)}
    if used["semitones"]:
        used["transposition_mean"] = apply_transposition_mean(model, transposition_mean, quiet)
    used_runtime = apply_runtime(model, runtime, device)
    if used_runtime:
        used["runtime"] = used_runtime
    return used


def apply_shifts(model, shifts: int | None, quiet: bool = False) -> int | list[int] | None:
    """Set ``--shifts`` (None = each part's own default) on the model's shift-averaging parts; a
    note on stderr when the user asked for shifts and the model has none, unless ``quiet``. Returns the
    shifts used (:func:`Model.shifts_of`)."""
    if not Model.set_shifts(model, shifts) and shifts not in (None, 1) and not quiet:
        print(f"note: --shifts has no effect on {util.class_name(model)} "
              "(only the U-Net, the CNN and the stacked hourglass average over shifts)", file=sys.stderr)
    return Model.shifts_of(model)


def output_names(model) -> list[str]:
    """The stems a separation writes: the model's sources, with accompaniment = mixture - vocals."""
    return list(model.sources) + ([] if "accompaniment" in model.sources else ["accompaniment"])


def remove_stale_temps(out_dir: Path, names, fmt: str):
    """Delete the temporary files (``.<stem>.*.<fmt>``, :class:`StemWriter`'s) that a killed
    earlier run left in ``out_dir``."""
    if out_dir.is_dir():
        for n in names:
            for p in out_dir.glob(f".{n}.*.{fmt}"):
                p.unlink(missing_ok=True)


def main(argv=None, default_model=None, expect=None, description=__doc__):
    args = build_parser(description, default_model).parse_args(argv)
    if args.model is None:
        raise UserError("no --model given")
    if args.threads:
        torch.set_num_threads(args.threads)
    util.keep_freed_memory()      # each block's large buffers are reused, not faulted in afresh (README, Benchmarks)
    if args.format == "flac" and args.subtype == "float":
        raise UserError("FLAC cannot store float samples: use --subtype 16 or 24")
    if args.format == "ogg" and args.subtype != "16":
        raise UserError(f"--subtype {args.subtype}: OGG Vorbis has no sample format to choose (omit --subtype)")
    device = util.get_device(args.device)
    model, stft, model_sr, _ = util.load_model(args.model, device, expect)
    if args.mask_power != 1 and getattr(model, "domain", None) == "time":
        print(f"note: --mask-power has no effect on {util.class_name(model)}, a time-domain model", file=sys.stderr)
    used = apply_settings(model, args.shifts, args.ensemble_mean, args.semitones, args.transposition_mean,
                          args.runtime, device)
    if args.transposition_mean and not used["semitones"]:
        print("note: --transposition-mean has no effect with --semitones 0 (one separation, nothing to combine)",
              file=sys.stderr)
    subtype = util.SUBTYPES[args.subtype]
    outdir = args.outdir if args.outdir is not None else Path("separated") / util.checkpoint_name(args.model)
    inputs = list({p.resolve(): p for p in expand_inputs(args.inputs, exclude=outdir)}.values())
    folders = output_folders(inputs, outdir)
    stems = output_names(model)
    batch = len(inputs) > 1
    ok, failed, skipped, seconds = 0, 0, 0, 0.0
    t0 = time.time()
    for path, out_dir in zip(tqdm(inputs, desc="songs", disable=args.quiet or not batch, unit="song"), folders):
        existing = [n for n in stems if (out_dir / f"{n}.{args.format}").exists()]
        if existing and not args.force:
            skipped += 1
            print(f"skipped: {out_dir}: outputs exist (use --force to overwrite)", file=sys.stderr)
            continue
        try:
            if path.exists() and path.resolve().parent == out_dir.resolve():
                raise UserError(f"{path}: output would overwrite the input")
            info = util.audio_info(path)
            remove_stale_temps(out_dir, stems, args.format)
            try:
                separate_file(model, stft, model_sr, path, out_dir, args.format, subtype, device,
                              args.block_seconds, progress=not args.quiet, high_band=args.high_band,
                              wiener=args.wiener, mask_power=args.mask_power,
                              semitones=model_semitones(model, args.semitones))
            except BaseException:
                # the writer removes its own temp files; this also catches one a signal (Ctrl-C, SIGTERM) left
                # between its creation and the writer's knowing of it
                remove_stale_temps(out_dir, stems, args.format)
                raise
            seconds += info.duration
            ok += 1
            if not args.quiet:
                print(f"{path} -> {out_dir}/", file=sys.stderr)
        except UserError as err:
            if not batch:
                raise
            failed += 1
            print(f"skipped: {err}", file=sys.stderr)
        except (OSError, RuntimeError, ValueError, sf.LibsndfileError) as err:   # disk full, codec limits...
            failed += 1
            msg = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            print(f"failed: {path}: {type(err).__name__}: {msg}", file=sys.stderr)
    elapsed = time.time() - t0
    print(f"separated {ok} of {len(inputs)} file(s), {seconds:.1f} s of audio in {elapsed:.1f} s"
          f" ({seconds / max(elapsed, 1e-9):.0f}x real time) -> {outdir}/"
          + (f"; {failed} failed" if failed else "") + (f"; {skipped} skipped" if skipped else ""), file=sys.stderr)
    return 1 if failed or skipped else 0


if __name__ == "__main__":
    util.run_cli(main)
