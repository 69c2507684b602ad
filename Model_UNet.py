"""U-Net on spectrogram patches (Jansson et al. 2017; seed 004).

Jansson, Humphrey, Montecchio, Bittner, Kumar & Weyde, "Singing voice separation with deep
U-Net convolutional networks", ISMIR 2017. On the mixture magnitude as an image (B, 1, F, T):

* **encoder**: six 5x5 convolutions with stride 2 and 16, 32, 64, 128, 256, 512 channels, each
  followed by batch normalisation and leaky ReLU (slope 0.2);
* **decoder**: six 5x5 transposed convolutions with stride 2 and 256, 128, 64, 32, 16, 1
  channels; each but the last followed by batch normalisation and plain ReLU, the first three
  also by 50 % dropout; from the second on, each takes the concatenation of the previous
  decoder output and the encoder output of the same resolution (skip connections);
* the last layer's output goes through a **sigmoid**: the soft mask, applied to the mixture;
* loss: **L1** between mask x mixture magnitude and the target source (``--loss l1``).

Choices where the seed and paper leave room:

* Bins and frames not divisible by 2^6 = 64 are handled inside ``forward``: the features are
  zero-padded (zero = the training mean after normalisation) up to the next multiple of 64 and
  the mask is cropped back. Jansson instead dropped the highest bin (512 of 513) and cut songs into
  128-frame patches (at 8192 Hz, FFT 1024, hop 768: ``train_seed.py`` uses those as defaults).
* The input is the project's normalised log1p magnitude (Jansson: magnitude scaled to [0, 1]).
* ``sources`` (default ``("vocals",)``) sets the number of output masks; the accompaniment is
  mixture - vocals, as everywhere in this project. ``channels`` and ``kernel`` are configurable so
  smaller variants can be trained on a CPU.
* ``context = "window"``: separation runs the network on long overlapping windows (it is fully
  convolutional, so any window length works); batch-norm uses its running statistics there.
* ``shifts`` (inference only, set by ``separate.py --shifts``): six stride-2 layers make the
  network depend on where a frame falls in its 64-frame grid, so in eval mode the masks can be
  averaged over ``shifts`` time offsets of the input (:func:`Model.shift_offsets`), as Demucs's
  "shift trick" does with waveforms. Training and training's validation use the raw network.
"""
from __future__ import annotations

import torch
import torch.nn as nn

import Model


class UNet(Model.GridImageMaskModel):
    """Shapes: mix_mag (B, T, F) -> image (B, 1, F', T') padded to multiples of 2^depth
    -> encoder (B, C_i, F'/2^i, T'/2^i) -> decoder with skips -> sigmoid (B, S, F', T')
    -> cropped masks (B, S, T, F)."""

    sources = ("vocals",)
    context = "window"

    @Model.capture_init
    def __init__(self, n_bins: int, channels=(16, 32, 64, 128, 256, 512), kernel: int = 5,
                 dropout: float = 0.5, dropout_layers: int = 3, sources=("vocals",)):
        super().__init__(n_bins)
        channels = [int(c) for c in channels]
        self.multiple = 2 ** len(channels)
        pad = kernel // 2
        self.encoder = nn.ModuleList()
        prev = 1
        for c in channels:
            self.encoder.append(nn.Sequential(nn.Conv2d(prev, c, kernel, stride=2, padding=pad),
                                              nn.BatchNorm2d(c), nn.LeakyReLU(0.2)))
            prev = c
        outs = channels[-2::-1] + [len(self.sources)]           # 256, 128, 64, 32, 16, S
        self.decoder = nn.ModuleList()
        for i, c in enumerate(outs):
            # the deepest decoder layer sees only the bottleneck, the others [previous, skip]
            cin = channels[-1] if i == 0 else outs[i - 1] + channels[-1 - i]
            deconv = nn.ConvTranspose2d(cin, c, kernel, stride=2, padding=pad, output_padding=1)
            if i == len(outs) - 1:
                self.decoder.append(deconv)
                continue
            layers = [deconv, nn.BatchNorm2d(c), nn.ReLU()]
            if i < dropout_layers and dropout:
                layers.append(nn.Dropout(dropout))
            self.decoder.append(nn.Sequential(*layers))

    def _masks(self, mix_mag: torch.Tensor) -> torch.Tensor:
        _, t, f = mix_mag.shape
        x = self._image(mix_mag)                                               # (B, 1, F', T')
        skips = []
        for enc in self.encoder:
            x = enc(x)
            skips.append(x)
        for i, dec in enumerate(self.decoder):
            x = dec(x if i == 0 else torch.cat([x, skips[-1 - i]], 1))
        masks = torch.sigmoid(x)[:, :, :f, :t]                                # (B, S, F, T)
        return masks.transpose(2, 3)                                           # (B, S, T, F)
