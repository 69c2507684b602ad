"""Chandna et al. 2017 convolutional encoder-decoder with normalised soft masks (seed 003).

Chandna, Miron, Janer & Gomez, "Monoaural audio source separation using deep convolutional
neural networks", LVA/ICA 2017 (code: MTG/DeepConvSep). On a patch of ``time_context`` frames
(T = 30) of the mixture magnitude (B, 1, T, F):

1. **vertical convolution** (across frequency): ``n_vertical`` (N1 = 50) filters of shape
   (t1, f1) = (1, 513), i.e. by default spanning every bin of one frame (timbre features);
2. **horizontal convolution** (across time): ``n_horizontal`` (N2 = 30) filters of shape
   (t2, f2) = (12, 1) (temporal evolution of those features);
3. **bottleneck**: a fully connected ReLU layer of ``bottleneck`` (NN = 128) units;
4. **decoder, per source**: a fully connected ReLU layer back to the size of the horizontal
   convolution's output, reshaped, then the mirrored deconvolutions (transposed horizontal,
   then transposed vertical) back to (T, F);
5. **soft masks**: m_n = |y_n| / sum_k |y_k| over the sources (:func:`Model_DRNN.joint_masks`),
   so the masks sum to one and the estimates m_n * X sum to the mixture.

The loss is the squared error between m_n * X and each source, summed over sources (seed
section 3.3; ``--loss mse`` in ``train_seed.py``). The (t1, f1, t2, f2, N1, N2, NN) values are
the ones seed 003 gives for the authors' configuration.

Choices where the seed and paper leave room:

* ``sources`` is a constructor argument: ``("vocals", "drums", "bass", "other")`` as in the paper
  (needs 4-stem data: DSD100, MUSDB, the demo set) or ``("vocals", "accompaniment")`` for
  MIR-1K. One decoder branch per source.
* The convolutions are linear (no non-linearity) as in DeepConvSep; the decoder's
  deconvolutions are separate layers per source (DeepConvSep ties them to the encoder's weights
  through Lasagne's InverseLayer). The input is the project's normalised log1p magnitude
  (DeepConvSep: the magnitude times 0.3).
* Songs of any length: the frames are cut into patches of T frames with a hop of T/2 (padded with
  silence at the end), and overlapping patch masks are averaged with triangular weights; an
  average of masks that each sum to one still sums to one. ``context = "window"``.
* ``f1 = 0`` means "all bins"; with a smaller f1 the vertical convolution slides over frequency.
* ``shifts`` (inference only, set by ``separate.py --shifts``): each frame's mask comes from the
  two patches it falls in, so in eval mode the masks can be averaged over ``shifts`` offsets of
  the patch grid (:func:`Model.shift_offsets` of the patch hop, as the U-Net's shifts).
* ``dropout`` (``train_seed.py --dropout``): dropout on the bottleneck's units during training, a
  regulariser the paper does not use (default 0).
* ``activation`` (``train_seed.py --conv-activation``): ``"none"`` keeps the convolutions linear, as
  the paper; ``"relu"`` or ``"elu"`` puts that non-linearity after the vertical and the horizontal
  convolution and after each decoder's transposed horizontal one (no new weights).
* The discriminative alpha/beta terms of DeepConvSep's code are not used (the paper's loss is the
  plain squared error).
"""
from __future__ import annotations

import torch
import torch.nn as nn

import Model
from Model_DRNN import joint_masks


# --conv-activation: what follows the convolutions ("none": linear, as the paper)
ACTIVATIONS = {"none": nn.Identity, "relu": nn.ReLU, "elu": nn.ELU}


class ChandnaCNN(Model.ShiftAveragedMaskModel):
    """Shapes: mix_mag (B, T, F) -> patches (B*P, 1, Tc, F) -> vertical conv (N1, Tc-t1+1, F-f1+1)
    -> horizontal conv (N2, T2, F2) -> FC (NN) -> per source FC + deconvs (1, Tc, F)
    -> masks (B, S, T, F) summing to one over S."""

    sources = ("vocals", "drums", "bass", "other")
    context = "window"

    @Model.capture_init
    def __init__(self, n_bins: int, sources=("vocals", "drums", "bass", "other"), time_context: int = 30,
                 vertical=(1, 0), horizontal=(12, 1), n_vertical: int = 50, n_horizontal: int = 30,
                 bottleneck: int = 128, eps: float = 1e-8, dropout: float = 0.0, activation: str = "none"):
        super().__init__(n_bins)
        t1, f1 = int(vertical[0]), int(vertical[1]) or n_bins
        t2, f2 = int(horizontal[0]), int(horizontal[1])
        if len(sources) < 2:
            raise ValueError("normalised soft masks need at least two sources")
        if f1 > n_bins or t1 + t2 - 1 > time_context or f2 > n_bins - f1 + 1:
            raise ValueError(f"filters (t1, f1) = ({t1}, {f1}), (t2, f2) = ({t2}, {f2}) do not fit a "
                             f"{time_context} x {n_bins} patch")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.time_context, self.eps, self.activation = time_context, eps, ACTIVATIONS[activation]()
        self.vertical = nn.Conv2d(1, n_vertical, (t1, f1))
        self.horizontal = nn.Conv2d(n_vertical, n_horizontal, (t2, f2))
        self.code_shape = (n_horizontal, time_context - t1 - t2 + 2, n_bins - f1 - f2 + 2)
        code = self.code_shape[0] * self.code_shape[1] * self.code_shape[2]
        # dropout on the bottleneck's units (training only; 0 = the paper's model, no dropout)
        self.bottleneck = nn.Sequential(nn.Flatten(), nn.Linear(code, bottleneck), nn.ReLU(), nn.Dropout(dropout))
        self.decoders = nn.ModuleList(nn.Sequential(
            nn.Linear(bottleneck, code), nn.ReLU(), nn.Unflatten(1, self.code_shape),
            nn.ConvTranspose2d(n_horizontal, n_vertical, (t2, f2)),
            nn.ConvTranspose2d(n_vertical, 1, (t1, f1))) for _ in self.sources)

    def forward_patches(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, Tc, F) features -> (N, S, Tc, F) masks."""
        act = self.activation
        code = self.bottleneck(act(self.horizontal(act(self.vertical(feats[:, None])))))   # (N, NN)
        # each decoder: FC, ReLU, unflatten, transposed horizontal conv | activation | transposed vertical
        y = torch.cat([dec[4](act(dec[:4](code))) for dec in self.decoders], 1)          # (N, S, Tc, F)
        return joint_masks(y, 1, self.eps)

    @property
    def patch_hop(self) -> int:
        """Frames between the starts of consecutive patches: half a patch."""
        return max(1, self.time_context // 2)

    shift_period = patch_hop

    def _masks(self, mix_mag: torch.Tensor) -> torch.Tensor:
        b, t, f = mix_mag.shape
        tc = self.time_context
        hop = self.patch_hop
        n_patches = 1 if t <= tc else -(-(t - tc) // hop) + 1
        total = (n_patches - 1) * hop + tc
        x = torch.cat([mix_mag, mix_mag.new_zeros(b, total - t, f)], 1)          # silence at the end
        patches = self.features(x).unfold(1, tc, hop)                            # (B, P, F, Tc)
        patches = patches.permute(0, 1, 3, 2).reshape(b * n_patches, tc, f)
        masks = self.forward_patches(patches).view(b, n_patches, len(self.sources), tc, f)
        # overlap-add with triangular weights (> 0 at the patch edges), then normalise
        k = torch.arange(tc, device=x.device, dtype=x.dtype)
        w = torch.minimum(k + 1, tc - k)                                         # (Tc,)
        out = x.new_zeros(b, len(self.sources), total, f)
        norm = x.new_zeros(total)
        for i in range(n_patches):
            out[:, :, i * hop:i * hop + tc] += masks[:, i] * w[:, None]
            norm[i * hop:i * hop + tc] += w
        return (out / norm[:, None])[:, :, :t]
