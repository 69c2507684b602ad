"""Deep recurrent network with a joint soft-mask layer (Huang et al. 2014; seed 001).

Huang, Kim, Hasegawa-Johnson & Smaragdis, "Singing-voice separation from monaural recordings
using deep recurrent neural networks", ISMIR 2014:

* input: the mixture magnitude of a **context window** of neighbouring frames, concatenated
  (Huang: 3 frames, t-1, t, t+1; ``context_frames``, odd);
* ``layers`` fully connected ReLU layers of ``hidden`` units; the ones listed in
  ``recurrent_layers`` (1-based) also get a temporal connection, h_t = relu(W x_t + U h_{t-1} + b)
  (Huang's "DRNN-k" is ``recurrent_layers=(k,)``, their "sRNN" is every layer, and ``()`` is
  their DNN). Their best system, DRNN-2 with 3 x 1000 units, is the default;
* a linear output layer gives one non-negative estimate per source, y_i = |W_o h + b_o|, and the
  **joint soft-mask layer** turns them into masks m_i = |y_i| / sum_j |y_j| (Huang eq. 5): the
  masks sum to one in every bin, so the source estimates m_i * X sum to the mixture X;
* **discriminative objective** (Huang eq. 7): sum over sources of D(y_i || s_i-hat) minus
  gamma D(y_j || s_i-hat) for the other source j (gamma = 0.05 by default; for more than two
  sources the penalty averages over the other sources), with D one of
  ``Model.LOSSES`` (``mse`` as Huang, ``kl`` generalized KL as Huang, ``is`` Itakura-Saito as
  seed 001's extension); see :func:`discriminative_loss`.

Choices where the seed and paper leave room (recorded here on purpose):

* Features are the project's normalised ``log1p`` magnitudes (``Model.MaskModel.features``);
  Huang fed raw magnitudes. The context window is built on those features, with the first and
  last frame repeated at the edges of an excerpt.
* The recurrent layer is a unidirectional Elman RNN with ReLU, as Huang, but with the spectral
  norm of the recurrent matrix capped at ``max_gain`` (0.95; :class:`BoundedReLURNN`): the
  unconstrained ReLU recurrence reached a spectral radius of 1.19 after three epochs on MIR-1K
  and overflowed to NaN on the 12 s validation clips. Because the context window looks one
  frame ahead, the model is declared ``context = "window"`` (separation runs it on overlapping,
  cross-faded windows) rather than streamed with state.
* ``backward_units`` (default 0: Huang's causal recurrence) gives each recurrent layer a twin
  that runs backwards in time, g_t = relu(W' x_t + U' g_{t+1} + b'), whose units are
  concatenated with h_t: a bidirectional DRNN, which sees the rest of the excerpt as the
  assignment's bidirectional LSTM does. ``load_widened`` continues a causal DRNN with it.
* The joint mask adds ``eps`` to each |y_i| so that an all-zero output gives equal masks instead
  of 0/0; the masks still sum to one.
* Curriculum learning (seed 001, after Isik et al. 2016: 100- then 400-frame segments) lives in
  the training script: ``train_seed.py --curriculum-start`` grows the excerpt length over epochs.
"""
from __future__ import annotations

import torch
import torch.nn as nn

import Model


def joint_masks(y: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Soft masks |y_i| / sum_j |y_j| along ``dim`` (Huang eq. 5; Chandna et al. 2017 too).
    Every entry is in (0, 1) and the masks sum to one along ``dim``."""
    a = y.abs() + eps
    return a / a.sum(dim, keepdim=True)


def discriminative_loss(target: torch.Tensor, estimate: torch.Tensor, loss_fn, gamma: float = 0.05):
    """Huang eq. 7, summed over sources: sum_i [D(s_i, est_i) - gamma * D(s_j, est_i)].

    target, estimate: (B, S, T, F) magnitudes. ``loss_fn(target, estimate)`` is one of
    ``Model.LOSSES`` (sum over bins, mean over the rest), so ``S * loss_fn(...)`` is the sum over
    sources. For S > 2 the penalty term averages D over the S - 1 other sources.
    """
    n = target.shape[1]
    own = loss_fn(target, estimate)
    if n < 2 or gamma == 0:
        return n * own
    other = sum(loss_fn(target.roll(k, 1), estimate) for k in range(1, n)) / (n - 1)
    return n * (own - gamma * other)


class BoundedReLURNN(nn.Module):
    """Elman layer h_t = relu(W x_t + b + U h_{t-1}) with the spectral norm of U kept <= ``max_gain``.

    A ReLU recurrence with ||U||_2 > 1 can blow up on sequences longer than those it was trained
    on (it did: NaN on 12 s validation clips after training on 1-4 s excerpts). Scaling U by
    min(1, max_gain / sigma_max(U)) makes the step a contraction, so h stays bounded by
    max ||W x_t + b|| / (1 - max_gain) on any length. sigma_max is estimated by one power
    iteration per training forward on persistent vectors (as ``torch.nn.utils.spectral_norm``);
    in eval mode the stored vectors are used as they are, so outputs are deterministic.
    """

    # A weight average (training.WeightAverage, --ema) copies these from the trained model instead
    # of averaging them: they are unit directions for the current weights, and an average of
    # directions is shorter than one, which underestimates sigma (an averaged DRNN reached a
    # recurrent gain of 1.44 and lost 3 dB on validation).
    unaveraged_buffers = ("u", "v")

    def __init__(self, input_size: int, hidden: int, max_gain: float = 0.95):
        super().__init__()
        self.input = nn.Linear(input_size, hidden)
        self.weight_hh = nn.Parameter(torch.empty(hidden, hidden).uniform_(-hidden ** -0.5, hidden ** -0.5))
        self.max_gain = max_gain
        g = torch.Generator().manual_seed(0)
        self.register_buffer("u", nn.functional.normalize(torch.randn(hidden, generator=g), dim=0))
        self.register_buffer("v", nn.functional.normalize(torch.randn(hidden, generator=g), dim=0))

    @torch.no_grad()
    def _power_step(self) -> None:
        """One power iteration of u, v towards the top singular vectors of the recurrent weight."""
        self.v.copy_(nn.functional.normalize(self.weight_hh.t() @ self.u, dim=0))
        self.u.copy_(nn.functional.normalize(self.weight_hh @ self.v, dim=0))

    def recurrent_weight(self) -> torch.Tensor:
        w = self.weight_hh
        if self.training:
            self._power_step()
        sigma = self.u @ w @ self.v
        return w * torch.clamp(self.max_gain / sigma.abs().clamp_min(1e-12), max=1.0)

    def settle(self, iterations: int = 200) -> None:
        """Run the power iteration until u, v belong to the current weights (after they were
        replaced, e.g. by an average of several models' weights: ``export_model.py --average``)."""
        for _ in range(iterations):
            self._power_step()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, in) -> (B, T, hidden)."""
        a = self.input(x)
        ut = self.recurrent_weight().t()
        h = a.new_zeros(a.shape[0], a.shape[2])
        out = []
        for t in range(a.shape[1]):
            h = torch.relu(torch.addmm(a[:, t], h, ut))
            out.append(h)
        return torch.stack(out, 1)


class DRNN(Model.MaskModel):
    """Shapes: mix_mag (B, T, F) -> context window (B, T, C*F) -> hidden layers (B, T, H)
    -> outputs (B, S, T, F) -> joint masks (B, S, T, F), summing to one over S."""

    sources = ("vocals", "accompaniment")
    context = "window"
    # separate.py's --semitones when none is given (separate.model_semitones): 4, as the RNN's (fiftieth
    # session): on the produced excerpts 5.13 vs 4.93 dB at 2, level on validation (10.07 vs 10.11).
    default_semitones = 4

    @Model.capture_init
    def __init__(self, n_bins: int, hidden: int = 1000, layers: int = 3, recurrent_layers=(2,),
                 context_frames: int = 3, dropout: float = 0.0, sources=("vocals", "accompaniment"),
                 eps: float = 1e-8, max_gain: float = 0.95, backward_units: int = 0):
        super().__init__(n_bins)
        recurrent_layers = sorted({int(k) for k in recurrent_layers})
        if any(k < 1 or k > layers for k in recurrent_layers):
            raise ValueError(f"recurrent_layers {recurrent_layers} must be within 1..{layers}")
        Model.check_context_frames(context_frames)
        if len(sources) < 2:
            raise ValueError("the joint mask needs at least two sources")
        if backward_units < 0:
            raise ValueError(f"backward_units must be >= 0, got {backward_units}")
        self.context_frames, self.eps = context_frames, eps
        self.recurrent_layers = recurrent_layers
        self.layers = nn.ModuleList()
        self.backward = nn.ModuleDict()    # index of a recurrent layer -> its time-reversed twin
        size = context_frames * n_bins
        for k in range(1, layers + 1):
            if k in recurrent_layers:      # h_t = relu(W h^{l-1}_t + U h_{t-1} + b)
                self.layers.append(BoundedReLURNN(size, hidden, max_gain))
                if backward_units:         # g_t = relu(W' h^{l-1}_t + U' g_{t+1} + b'), beside h_t
                    self.backward[str(k - 1)] = BoundedReLURNN(size, backward_units, max_gain)
            else:                          # h_t = relu(W h^{l-1}_t + b)
                self.layers.append(nn.Linear(size, hidden))
            size = hidden + (backward_units if k in recurrent_layers else 0)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(size, len(self.sources) * n_bins)

    def load_widened(self, state_dict: dict) -> None:
        """Load the weights of a DRNN of the same shape except for a narrower context window and/or
        fewer (or no) backward units, so that this model computes exactly the same masks
        (``train_seed.py --widen-context``, ``--backward-units``): the checkpoint's frames keep
        their first-layer weights and the frames added on each side start at zero; new backward
        units keep their fresh random weights, but the layer above sees them through weights that
        start at zero. Either way nothing changes until training grows those weights."""
        first = "layers.0.input.weight" if isinstance(self.layers[0], BoundedReLURNN) else "layers.0.weight"
        if first not in state_dict:
            raise ValueError(f"no {first} in the checkpoint: not a DRNN of this layout")
        state = dict(state_dict)
        for key in (first, "backward.0.input.weight"):     # a window on the first layer: frames added
            if key in state:
                state[key] = Model.widen_context_weight(state[key], self.n_bins, self.context_frames, key)
        own = {k: v.clone() for k, v in self.state_dict().items()}
        for key, old in state.items():
            if key not in own:
                raise ValueError(f"unexpected weight {key}")
            new = own[key]
            if old.shape == new.shape:
                new.copy_(old)
            elif old.dim() == 2 and key.endswith("weight") and old.shape[0] == new.shape[0] \
                    and old.shape[1] < new.shape[1]:       # the layer above a recurrent one: new inputs
                new.zero_()                                # are backward units, which start unseen
                new[:, :old.shape[1]] = old
            else:
                raise ValueError(f"{key}: shape {tuple(old.shape)} does not match {tuple(new.shape)}")
        missing = {k for k in set(own) - set(state) if not k.startswith("backward.")}
        if missing:
            raise ValueError(f"missing weights {sorted(missing)[:3]}")
        self.load_state_dict(own)

    def forward(self, mix_mag: torch.Tensor) -> torch.Tensor:
        b, t, f = mix_mag.shape
        h = Model.context_window(self.features(mix_mag), self.context_frames)     # (B, T, C*F)
        for i, layer in enumerate(self.layers):
            if isinstance(layer, BoundedReLURNN):
                forward = layer(h)                                             # (B, T, H)
                if str(i) in self.backward:                                    # (B, T, H + H')
                    forward = torch.cat([forward, self.backward[str(i)](h.flip(1)).flip(1)], -1)
                h = forward
            else:
                h = torch.relu(layer(h))                                       # (B, T, H)
            h = self.dropout(h)
        y = self.output(h).view(b, t, len(self.sources), f).transpose(1, 2)  # (B, S, T, F)
        return joint_masks(y, 1, self.eps)
