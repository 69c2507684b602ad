"""Stacked GRUs predicting a ratio mask, trained on the mask itself (seed 002).

Seed 002 (a course report built on Huang et al. 2014) trains Keras GRUs (3 x 16 units, then
dense layers 513 -> 100 -> 513) to predict a mask whose training target is the parametric ratio
mask

    M_j = ( |S_j|^p / sum_k |S_k|^p )^v,

with p and v "modified to change the shape of the mask". Here:

* **architecture**: ``layers`` stacked unidirectional GRUs of ``hidden`` units over the
  normalised log-magnitude frames, then a per-frame dense head
  ``Linear(hidden, dense) -> ReLU -> Linear(dense, S * F) -> sigmoid``, one mask per source in
  ``sources`` (default ``("vocals",)``; the accompaniment is then mixture - vocals, as everywhere
  in this project). The seed's two dense layers (to 513 and to 100 units) are folded into one
  bottleneck layer of ``dense`` units; the seed's 16 GRU units are far too few for 513 bins, so
  the defaults are 3 x 256 GRU units and a 256-unit dense layer;
* **target**: :func:`ratio_mask` with p and v configurable; default p = 2, v = 0.5, the ideal
  ratio mask of Wang et al. (square root of the power ratio); p = 1, v = 1 is the amplitude
  ratio mask; the sum runs over all sources of the dataset (vocals and accompaniment);
* **loss on the mask**: the training script applies the chosen ``--loss`` (default ``mse``) to
  (target mask, predicted mask): squared error summed over bins, averaged over frames, excerpts
  and sources, the same reduction as every magnitude loss of ``Model.LOSSES``;
* unidirectional GRUs make the model causal (``context = "causal"``): separation streams it
  chunk by chunk carrying the GRU state, exactly equal to whole-song processing.
"""
from __future__ import annotations

import torch
import torch.nn as nn

import Model


def ratio_mask(src_mag: torch.Tensor, p: float = 2.0, v: float = 0.5, eps: float = 1e-8) -> torch.Tensor:
    """(B, S, T, F) source magnitudes -> (B, S, T, F) masks (|S_j|^p / sum_k |S_k|^p)^v in [0, 1].
    Bins where every source is silent get 1/S^v."""
    pw = src_mag.clamp_min(0) ** p + eps
    return (pw / pw.sum(1, keepdim=True)) ** v


class GRUMaskNet(Model.MaskModel):
    """Shapes: mix_mag (B, T, F) -> GRU stack (B, T, H) -> dense (B, T, D) -> masks (B, S, T, F).

    ``forward(x, state)`` carries the GRU state, so chunk after chunk equals the whole sequence.
    """

    sources = ("vocals",)
    context = "causal"
    # separate.py's --semitones when none is given (separate.model_semitones): 4, as the RNN's (fifty-first
    # session): on the produced excerpts 6.02 vs 5.63 dB at 2, level on validation (10.56 vs 10.58).
    default_semitones = 4

    @Model.capture_init
    def __init__(self, n_bins: int, hidden: int = 256, layers: int = 3, dense: int = 256,
                 dropout: float = 0.0, sources=("vocals",)):
        super().__init__(n_bins)
        self.gru = nn.GRU(n_bins, hidden, num_layers=layers, batch_first=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Sequential(nn.Linear(hidden, dense), nn.ReLU(),
                                  nn.Linear(dense, len(self.sources) * n_bins), nn.Sigmoid())

    def forward(self, mix_mag: torch.Tensor, state=None, return_state: bool = False):
        b, t, f = mix_mag.shape
        h, state = self.gru(self.features(mix_mag), state)                    # (B, T, H)
        masks = self.head(h).view(b, t, len(self.sources), f).transpose(1, 2)  # (B, S, T, F)
        return (masks, state) if return_state else masks
