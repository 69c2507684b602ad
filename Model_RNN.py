"""The temporal model (assignment Fig. 2): frame code h_t -> LSTM -> [h_t, h_t^rnn] -> fuse -> decoder.

``h_t`` skips the recurrent layer and is concatenated with its output, so the model can fall
back to the single-frame model and gradients have a short path. Encoder and decoder are those of
:class:`Model.FrameMaskNet` (same parameter names), so a trained feedforward checkpoint
initialises them (``train_rnn.py --init``).

``context_frames`` (odd, default 1: the assignment's model) feeds the encoder a centred window of
that many frames instead of frame t alone (edges repeated, as the DRNN's input), so h_t sees the
fine spectro-temporal detail around t that the LSTM only receives summarised in the codes. It
looks ahead, so it needs the bidirectional model.

``conv=(channels, kernel, stride)`` gives the encoder and decoder of the assignment's optional
variant (:class:`Model.FrameMaskNet`): the biggest layers become a 1-D convolution over frequency
and its transpose, so a trained convolutional frame model initialises them.
"""
from __future__ import annotations

import torch
import torch.nn as nn

import Model


class RNNMaskNet(Model.FrameMaskNet):
    """Shapes: mix_mag (B, T, F) -> h (B, T, code) -> LSTM (B, T, H*dirs) -> fuse (B, T, code)
    -> mask (B, 1, T, F); with ``context_frames`` C > 1 the encoder's input is (B, T, C*F).

    ``bidirectional=False`` gives a causal model that can stream: ``forward(x, state)`` carries
    the LSTM state, so chunk after chunk equals the whole sequence at once.
    """
    # separate.py's --semitones when none is given (separate.model_semitones): 4, chosen in the fiftieth
    # session on a new voice (+0.25 to +0.29 dB over 2 for three bench RNNs) and the produced excerpts.
    default_semitones = 4

    @Model.capture_init
    def __init__(self, n_bins: int, hidden=(1024, 512), code: int = 256, dropout: float = 0.1,
                 rnn_hidden: int = 256, rnn_layers: int = 1, bidirectional: bool = True,
                 context_frames: int = 1, conv=None, leaky: float = 0.0):
        super().__init__(n_bins, hidden, code, dropout, conv, leaky)
        Model.check_context_frames(context_frames)
        if context_frames > 1 and conv:
            raise ValueError("context_frames > 1 needs the fully connected first layer, not conv")
        if context_frames > 1 and not bidirectional:
            raise ValueError("context_frames > 1 looks ahead: a causal (unidirectional) model cannot")
        self.context = "window" if bidirectional else "causal"
        self.context_frames = context_frames
        if context_frames > 1:
            self.encoder[0] = nn.Linear(context_frames * n_bins, self.encoder[0].out_features)
        self.rnn = nn.LSTM(code, rnn_hidden, num_layers=rnn_layers, batch_first=True,
                           bidirectional=bidirectional)
        rnn_out = rnn_hidden * (2 if bidirectional else 1)
        self.fuse_layers = nn.Sequential(nn.Linear(code + rnn_out, code), self.activation())

    def encode(self, mix_mag: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> h: (B, T, code), from a window of ``context_frames`` frames around t."""
        return self.encoder(Model.context_window(self.features(mix_mag), self.context_frames))

    def forward(self, mix_mag: torch.Tensor, state=None, return_state: bool = False):
        h = self.encode(mix_mag)                              # (B, T, code)
        h_rnn, state = self.rnn(h, state)                     # (B, T, H * dirs)
        fused = self.fuse_layers(torch.cat([h, h_rnn], -1))   # (B, T, code)
        mask = self.decode(fused)                             # (B, 1, T, F)
        return (mask, state) if return_state else mask

    def load_widened(self, state_dict: dict) -> None:
        """Load the weights of an RNNMaskNet of the same shape except for fewer LSTM units per
        direction and/or a narrower input window (``context_frames``), so that this model computes
        exactly the same masks (``train_rnn.py --widen-rnn``, ``--widen-context``). Frames added to
        the window get zero weights in the encoder's first layer (:func:`Model.widen_context_weight`).

        Each old unit keeps its weights and sees only old units; each new unit keeps its fresh
        random weights, sees the code and every unit, and feeds the fuse layer (and the next LSTM
        layer) through weights that start at zero: the new units change nothing until training
        grows those weights. Gate blocks (i, f, g, o) and directions are mapped one by one.
        """
        new_h, dirs = self.rnn.hidden_size, 2 if self.rnn.bidirectional else 1
        old_h = state_dict["rnn.weight_hh_l0"].shape[1]
        if old_h > new_h:
            raise ValueError(f"cannot widen an LSTM of {old_h} units to {new_h}")
        gate_rows = torch.cat([torch.arange(old_h) + g * new_h for g in range(4)])
        unit_cols = torch.cat([torch.arange(old_h) + d * new_h for d in range(dirs)])
        code = self.fuse_layers[0].out_features
        own = {k: v.clone() for k, v in self.state_dict().items()}   # fresh weights, new shapes
        for key, old in state_dict.items():
            if key not in own:
                raise ValueError(f"unexpected weight {key}")
            new = own[key]
            old = old.to(new.dtype)
            if key == "fuse_layers.0.weight":
                new.zero_()
                new[:, :code] = old[:, :code]
                new[:, code + unit_cols] = old[:, code:]
            elif key.startswith("rnn."):
                if key.startswith("rnn.weight_hh"):
                    cols = torch.arange(old_h)               # old units see only old units
                elif key.startswith("rnn.weight_ih") and not key.startswith("rnn.weight_ih_l0"):
                    cols = unit_cols                         # a layer above: its input is units
                else:
                    cols = None                              # biases, the first layer's input
                if cols is not None:                         # zero weights from the new units
                    padded = old.new_zeros(len(gate_rows), new.shape[1])
                    padded[:, cols] = old
                    old = padded
                new[gate_rows] = old
            elif key == "encoder.0.weight":
                new.copy_(Model.widen_context_weight(old, self.n_bins, self.context_frames, key))
            else:
                if old.shape != new.shape:
                    raise ValueError(f"{key}: shape {tuple(old.shape)} does not match {tuple(new.shape)}")
                new.copy_(old)
        missing = set(own) - set(state_dict)
        if missing:
            raise ValueError(f"missing weights {sorted(missing)[:3]}")
        self.load_state_dict(own)
