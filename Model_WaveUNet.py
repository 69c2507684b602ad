"""Wave-U-Net: separation in the time domain with valid convolutions (Stoller et al. 2018; seed 004).

Stoller, Ewert & Dixon, "Wave-U-Net: a multi-scale neural network for end-to-end audio source
separation", ISMIR 2018 (the paper's M4/M5 "baseline" with the difference output layer):

* **L downsampling blocks**: 1-D convolution (kernel f_d = 15, ``features * i`` channels at level
  i, leaky ReLU), its output kept for the skip connection, then decimation by 2 (every other
  sample);
* a bottleneck convolution (kernel f_d, ``features * (L + 1)`` channels);
* **L upsampling blocks**: linear interpolation by 2 (new samples half-way between neighbours,
  no extrapolation: n -> 2n - 1), concatenation with the centre crop of the skip features of the
  same level, 1-D convolution (kernel f_u = 5, ``features * i`` channels, leaky ReLU);
* output: the mixture (centre-cropped) is concatenated to the last features and a 1x1
  convolution with tanh gives **K - 1 sources**; the last source is **mixture minus the others**
  (the "difference output layer"), so the estimates always sum to the mixture;
* every convolution is **valid** (no padding): the input carries context on both sides and the
  output is the centre part. :meth:`WaveUNet.input_length` gives the input length needed for an
  output length, :meth:`WaveUNet.output_length` the converse, and
  :meth:`WaveUNet.valid_output_length` rounds a wanted output length up to one the arithmetic
  admits (every decimated length must be odd so that no sample is dropped and crops are
  symmetric);
* loss: mean squared error over all K sources' samples.

Paper defaults: L = 12, ``features`` = 24, f_d = 15, f_u = 5, mono at 22050 Hz (input 147443
samples for 16389 output samples). ``train_seed.py`` keeps them as defaults; smaller ``levels``
and ``features`` and a lower sample rate make it trainable on a CPU.

Not a mask model: ``domain = "time"`` tells ``separate.py`` to use
:func:`separate.separate_time_domain`, which runs the network on consecutive output blocks with
their context (zero padding at the song's ends) and concatenates them (exact; no cross-fade
needed). ``set_input_stats`` is a no-op so the common training loop can treat it like the rest.

The network is not level invariant (the shipped one's median vocals SDR on the produced excerpts
fell from 3.74 to -8.55 dB with the songs 40 dB quieter). ``input_rms`` (saved with the weights as
the checkpoint's ``features``; ``None``: off, as trained) makes it so at inference:
:func:`separate.separate_time_domain` scales each song to that RMS before the network and scales
the estimates back (:meth:`WaveUNet.set_input_rms`).
"""
from __future__ import annotations

import torch
import torch.nn as nn

import Model
import torch.nn.functional as F


def centre_crop(x: torch.Tensor, length: int) -> torch.Tensor:
    """(..., n) -> (..., length), the centre part; n - length must be even."""
    diff = x.shape[-1] - length
    if diff < 0 or diff % 2:
        raise ValueError(f"cannot centre-crop {x.shape[-1]} samples to {length}")
    return x[..., diff // 2:x.shape[-1] - diff // 2]


def upsample_linear(x: torch.Tensor) -> torch.Tensor:
    """(B, C, n) -> (B, C, 2n - 1): the originals with their midpoints in between."""
    mid = 0.5 * (x[..., :-1] + x[..., 1:])
    out = torch.stack([x[..., :-1], mid], -1).flatten(-2)
    return torch.cat([out, x[..., -1:]], -1)


# The RMS range of ``input_rms`` (0 excluded; 1 = a full-scale square wave), for the model and
# for the --input-rms options of train_seed.py and export_model.py (where 0 means off)
INPUT_RMS_MAX = 1.0


class WaveUNet(nn.Module):
    """Shapes: mixture (B, 1, n_in) -> sources (B, K, n_out), n_out = output_length(n_in)."""

    domain = "time"
    context = "time"
    sources = ("vocals", "accompaniment")
    input_rms = None     # inference: scale each song to this RMS first (None: as given); saved in "features"

    @Model.capture_init
    def __init__(self, n_bins: int = 0, levels: int = 12, features: int = 24, down_kernel: int = 15,
                 up_kernel: int = 5, sources=("vocals", "accompaniment")):
        super().__init__()
        if down_kernel % 2 == 0 or up_kernel % 2 == 0:
            raise ValueError("kernel sizes must be odd (symmetric valid convolutions)")
        if len(sources) < 2:
            raise ValueError("Wave-U-Net predicts K - 1 sources and the last as the difference: K >= 2")
        self.n_bins = n_bins     # unused; kept so tools that read model.n_bins do not fail
        self.levels, self.fd, self.fu = levels, down_kernel, up_kernel
        ch = [1] + [features * i for i in range(1, levels + 2)]   # 1, Fc, 2Fc, ..., (L+1)Fc
        self.down = nn.ModuleList(nn.Conv1d(ch[i], ch[i + 1], down_kernel) for i in range(levels))
        self.bottleneck = nn.Conv1d(ch[levels], ch[levels + 1], down_kernel)
        # up block at level i (1-based): input = upsampled (ch[i+1]) + skip (ch[i]) -> ch[i]
        self.up = nn.ModuleList(nn.Conv1d(ch[i + 1] + ch[i], ch[i], up_kernel) for i in range(levels, 0, -1))
        self.out = nn.Conv1d(ch[1] + 1, len(self.sources) - 1, 1)

    # ------------------------------------------------------------------ context arithmetic
    def output_length(self, input_length: int) -> int | None:
        """Output samples for ``input_length`` input samples, or None if that input length is not
        admissible (a decimated length would be even, or the signal vanishes)."""
        n = input_length
        skips = []
        for _ in range(self.levels):
            n -= self.fd - 1
            if n < 1 or n % 2 == 0:
                return None
            skips.append(n)
            n = (n + 1) // 2
        n -= self.fd - 1                                  # bottleneck
        if n < 1:
            return None
        for skip in reversed(skips):
            n = 2 * n - 1                                 # upsampling
            if n > skip:
                return None
            n -= self.fu - 1
            if n < 1:
                return None
        return n

    def input_length(self, output_length: int) -> int:
        """Input samples needed for exactly ``output_length`` output samples (which must be
        admissible: use :meth:`valid_output_length` first)."""
        n = output_length
        for _ in range(self.levels):
            n += self.fu - 1                              # before the up-convolution
            if n % 2 == 0:
                raise ValueError(f"output length {output_length} is not admissible "
                                 f"(try valid_output_length({output_length}))")
            n = (n + 1) // 2                              # before upsampling
        n += self.fd - 1                                  # before the bottleneck
        for _ in range(self.levels):
            n = 2 * n - 1 + self.fd - 1                   # before decimation, before the down-conv
        if self.output_length(n) != output_length:        # e.g. a skip shorter than the path
            raise ValueError(f"output length {output_length} is not admissible")
        return n

    def _progression(self):
        """(o0, step, context): admissible output lengths are o0 + k * step (k >= 0), step =
        2^L (each level fixes one more bit of the length), and input = output + 2 * context."""
        if not hasattr(self, "_prog"):
            o0 = 1
            while True:
                try:
                    n_in = self.input_length(o0)
                    break
                except ValueError:
                    o0 += 1
            self._prog = (o0, 2 ** self.levels, (n_in - o0) // 2)
        return self._prog

    def valid_output_length(self, wanted: int) -> int:
        """The smallest admissible output length >= ``wanted``."""
        o0, step, _ = self._progression()
        return o0 + max(0, -(-(int(wanted) - o0) // step)) * step

    def output_for_input(self, available: int) -> int | None:
        """The largest admissible output length whose input fits in ``available`` samples
        (None if even the shortest does not fit)."""
        o0, step, ctx = self._progression()
        if available < o0 + 2 * ctx:
            return None
        return o0 + (available - 2 * ctx - o0) // step * step

    def context_samples(self) -> int:
        """Extra input samples on each side of the output (the same for every output length)."""
        return self._progression()[2]

    # ------------------------------------------------------------------ network
    def set_input_stats(self, log_mags):
        """No input normalisation: the network sees the waveform in [-1, 1]."""

    def set_input_rms(self, rms):
        """The RMS every song is scaled to before separation (``None``: off)."""
        if rms is not None:
            rms = float(rms)
            if not 0.0 < rms <= INPUT_RMS_MAX:
                raise ValueError(f"input_rms must be in (0, {INPUT_RMS_MAX:g}], got {rms}")
        self.input_rms = rms

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """mixture (B, 1, n_in) or (B, n_in) -> (B, K, n_out), the K sources summing to the
        centre crop of the mixture."""
        if mixture.dim() == 2:
            mixture = mixture[:, None]
        x = mixture
        skips = []
        for conv in self.down:
            x = F.leaky_relu(conv(x), 0.2)
            skips.append(x)
            x = x[..., ::2]
        x = F.leaky_relu(self.bottleneck(x), 0.2)
        for conv, skip in zip(self.up, reversed(skips)):
            x = upsample_linear(x)
            x = F.leaky_relu(conv(torch.cat([x, centre_crop(skip, x.shape[-1])], 1)), 0.2)
        mix = centre_crop(mixture, x.shape[-1])
        est = torch.tanh(self.out(torch.cat([x, mix], 1)))                     # (B, K-1, n_out)
        return torch.cat([est, mix - est.sum(1, keepdim=True)], 1)             # (B, K, n_out)
