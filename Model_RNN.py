"""The temporal model (assignment Fig. 2): frame code h_t -> LSTM -> [h_t, h_t^rnn] -> fuse -> decoder.

``h_t`` skips the recurrent layer and is concatenated with its output, so the model can fall
back to the single-frame model and gradients have a short path. Encoder and decoder are those of
:class:`Model.FrameMaskNet` (same parameter names), so a trained feedforward checkpoint
initialises them (``train_rnn.py --init``).
"""
from __future__ import annotations

import torch
import torch.nn as nn

import Model


class RNNMaskNet(Model.FrameMaskNet):
    """Shapes: mix_mag (B, T, F) -> h (B, T, code) -> LSTM (B, T, H*dirs) -> fuse (B, T, code)
    -> mask (B, 1, T, F).

    ``bidirectional=False`` gives a causal model that can stream: ``forward(x, state)`` carries
    the LSTM state, so chunk after chunk equals the whole sequence at once.
    """

    @Model.capture_init
    def __init__(self, n_bins: int, hidden=(1024, 512), code: int = 256, dropout: float = 0.1,
                 rnn_hidden: int = 256, rnn_layers: int = 1, bidirectional: bool = True):
        super().__init__(n_bins, hidden, code, dropout)
        self.context = "window" if bidirectional else "causal"
        self.rnn = nn.LSTM(code, rnn_hidden, num_layers=rnn_layers, batch_first=True,
                           bidirectional=bidirectional)
        rnn_out = rnn_hidden * (2 if bidirectional else 1)
        self.fuse_layers = nn.Sequential(nn.Linear(code + rnn_out, code), nn.ReLU())

    def forward(self, mix_mag: torch.Tensor, state=None, return_state: bool = False):
        h = self.encode(mix_mag)                              # (B, T, code)
        h_rnn, state = self.rnn(h, state)                     # (B, T, H * dirs)
        fused = self.fuse_layers(torch.cat([h, h_rnn], -1))   # (B, T, code)
        mask = self.decode(fused)                             # (B, 1, T, F)
        return (mask, state) if return_state else mask
