"""The single-frame encoder-decoder mask model (assignment Fig. 1) and the losses.

Every mask model in this project follows one contract, so the training loop, the separation
scripts and the evaluation treat them alike:

* ``forward(mix_mag)`` takes mixture magnitudes ``(batch, frames, bins)`` and returns masks
  ``(batch, n_sources, frames, bins)`` in [0, 1] for the sources named in ``model.sources``.
  A model that only names ``("vocals",)`` leaves the accompaniment as mixture - vocals.
* ``model.model_args`` holds the constructor arguments (saved in checkpoints), recorded by the
  :func:`capture_init` decorator on every model's ``__init__``; ``model.sources`` is the class's
  default, or the ``sources`` argument where the constructor takes one.
* ``model.domain`` is ``"spectrogram"`` (the default: magnitudes in, masks out) or ``"time"``
  (waveform in, sources out: Wave-U-Net).
* :meth:`MaskModel.set_input_stats` sets the per-bin mean and standard deviation of the input
  features from training mixtures; they are buffers, saved with the weights.
* ``model.context`` says how a long song may be cut into chunks: ``"frame"`` (frames are
  independent), ``"causal"`` (carry a state from chunk to chunk) or ``"window"`` (needs past and
  future: overlapping windows with cross-faded joins).
"""
from __future__ import annotations

import functools
import inspect

import torch
import torch.nn as nn


def _plain(value):
    """Constructor arguments as checkpoint-safe plain values (tuples become lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def capture_init(init):
    """Decorator for a model's ``__init__``: records every constructor argument, defaults
    included, in ``self.model_args`` (what checkpoints store and :func:`util.build_model` passes
    back), and sets ``self.sources`` from a ``sources`` argument. Nothing is listed by hand, so
    no argument can be left out and reload silently wrong. On a subclass, the outermost
    ``__init__`` wins."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(list(bound.arguments.items())[1:])
        if "sources" in arguments:
            self.sources = tuple(arguments["sources"])
        init(self, *args, **kwargs)
        self.model_args = {k: _plain(v) for k, v in arguments.items()}
    return wrapper


LEVEL_NORMS = ("none", "frame")


class MaskModel(nn.Module):
    """Base class: input normalisation shared by all magnitude-mask models.

    Features are ``(log1p(mag') - input_mean) / input_std`` per bin, where ``mag'`` is the
    magnitude itself (``level_norm = "none"``, the models of the first release) or each frame's
    magnitudes divided by their mean over bins (``"frame"``): then a song at -40 dB gives the
    same features, hence the same masks, as at its own level, and frames stay independent (any
    chunking of a song gives the same result). The statistics are buffers, set once from
    training data by :meth:`set_input_stats` and saved with the weights; ``level_norm`` is saved
    in the checkpoint's ``features`` entry (see :func:`util.save_checkpoint`).
    """

    sources = ("vocals",)
    context = "frame"
    level_norm = "none"
    feature_masks = (0, 0)   # training only: (bands, max width in bins) hidden per example (--freq-mask); not saved

    def __init__(self, n_bins: int):
        super().__init__()
        self.n_bins = n_bins
        self.register_buffer("input_mean", torch.zeros(n_bins))
        self.register_buffer("input_std", torch.ones(n_bins))

    def set_level_norm(self, mode: str):
        if mode not in LEVEL_NORMS:
            raise ValueError(f"level_norm must be one of {LEVEL_NORMS}, not {mode!r}")
        self.level_norm = mode

    def log_magnitudes(self, mix_mag: torch.Tensor) -> torch.Tensor:
        """(B, T, F) magnitudes -> (B, T, F) ``log1p`` of the (level-normalised) magnitudes."""
        if self.level_norm == "frame":
            mix_mag = mix_mag / (mix_mag.mean(-1, keepdim=True) + 1e-12)
        return torch.log1p(mix_mag)

    @torch.no_grad()
    def set_input_stats(self, mix_mag: torch.Tensor):
        """mix_mag: (frames, bins) magnitudes of training mixtures."""
        log_mags = self.log_magnitudes(mix_mag[None])[0]
        self.input_mean.copy_(log_mags.mean(0))
        self.input_std.copy_(log_mags.std(0).clamp_min(1e-3))

    def features(self, mix_mag: torch.Tensor) -> torch.Tensor:
        """(B, T, F) magnitudes -> (B, T, F) normalised log-magnitudes; in training mode with
        ``feature_masks`` set, some bands of them hidden (:func:`mask_frequency_bands`)."""
        x = (self.log_magnitudes(mix_mag) - self.input_mean) / self.input_std
        bands, width = self.feature_masks
        if self.training and bands and width:
            x = mask_frequency_bands(x, bands, width)
        return x


def mask_frequency_bands(x: torch.Tensor, bands: int, width: int) -> torch.Tensor:
    """Frequency masking (SpecAugment, Park et al. 2019) of normalised features (B, T, F): in each
    example, ``bands`` bands of 0..``width`` bins (uniform), each at a uniform position, set to
    0, the training mean, in every frame. Draws from torch's global generator."""
    b, _, f = x.shape
    width = min(int(width), f)
    bins = torch.arange(f, device=x.device)
    hidden = torch.zeros(b, 1, f, dtype=torch.bool, device=x.device)
    for _ in range(int(bands)):
        w = torch.randint(0, width + 1, (b, 1, 1), device=x.device)
        start = (torch.rand(b, 1, 1, device=x.device) * (f - w + 1)).floor().long()
        hidden |= (bins >= start) & (bins < start + w)
    return x.masked_fill(hidden, 0.0)


def context_window(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, T, F) -> (B, T, frames * F): each frame with its (frames - 1) / 2 neighbours on each
    side, in time order, edges repeated."""
    if frames == 1:
        return x
    c = frames // 2
    padded = torch.cat([x[:, :1].expand(-1, c, -1), x, x[:, -1:].expand(-1, c, -1)], 1)  # (B, T+2c, F)
    last = frames - 1                   # shifted slices with constant ends: exports to ONNX for any T
    return torch.cat([padded[:, i:i - last] for i in range(last)] + [padded[:, last:]], -1)


def check_context_frames(frames: int) -> None:
    if frames < 1 or frames % 2 == 0:
        raise ValueError(f"context_frames must be odd and >= 1, got {frames}")


def widen_context_weight(old: torch.Tensor, n_bins: int, frames: int, name: str) -> torch.Tensor:
    """The first-layer weight (out, k * n_bins) of a model fed a centred window of k frames,
    for a window of ``frames`` >= k: the k frames keep their weights, the frames added on each
    side get zeros, so the widened layer computes the same outputs until training moves them."""
    old_frames, rest = divmod(old.shape[1], n_bins)
    if rest or old_frames % 2 == 0:
        raise ValueError(f"{name} has {old.shape[1]} inputs, not an odd number of {n_bins}-bin frames")
    if old_frames > frames:
        raise ValueError(f"cannot widen a context window of {old_frames} frames to {frames}")
    weight = old.new_zeros(old.shape[0], frames * n_bins)
    start = (frames - old_frames) // 2 * n_bins                    # frames are in time order
    weight[:, start:start + old.shape[1]] = old
    return weight


class FrequencyConv(nn.Module):
    """(B, T, F) -> (B, T, channels * positions): a 1-D convolution over the bins of each frame.

    Run as a 2-D convolution with a kernel one frame tall, so that no shape is computed from the
    input: an ONNX export then takes any number of frames (a reshape traced with the export's
    frame count did not). The weight keeps Conv1d's shape (channels, 1, kernel)."""

    def __init__(self, channels: int, kernel: int, stride: int):
        super().__init__()
        self.conv = nn.Conv1d(1, channels, kernel, stride)

    def forward(self, x):
        y = nn.functional.conv2d(x.unsqueeze(1), self.conv.weight.unsqueeze(2), self.conv.bias,
                                 stride=(1, self.conv.stride[0]))                 # (B, C, T, P)
        return y.transpose(1, 2).flatten(2)                                       # (B, T, C * P)


class FrequencyConvTranspose(nn.Module):
    """(B, T, channels, positions) -> (B, T, F): the mirrored transposed convolution (a 2-D one
    with a kernel one frame tall, as :class:`FrequencyConv`)."""

    def __init__(self, channels: int, kernel: int, stride: int, pad: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(channels, 1, kernel, stride, output_padding=pad)

    def forward(self, x):
        c = self.conv
        y = nn.functional.conv_transpose2d(x.transpose(1, 2), c.weight.unsqueeze(2), c.bias, stride=(1, c.stride[0]),
                                           output_padding=(0, c.output_padding[0]))  # (B, 1, T, F)
        return y.squeeze(1)


class FrameMaskNet(MaskModel):
    """Single-frame encoder-decoder (assignment Fig. 1): FC layers down to a code h_t, back up
    to a sigmoid mask over all bins. Each frame is processed on its own.

    Sizes: the default ``hidden=(1024, 512), code=256`` narrows 2049 bins (FFT 4096) or 513 bins
    (FFT 1024) by about 2x per layer, a common autoencoder taper; the 256-d code is what the
    recurrent model of part 2 summarises over time. Dropout regularises the wide first layer,
    which holds most parameters.

    The assignment's optional variant (``conv=(channels, kernel, stride)``): the biggest layers,
    bins -> hidden[0] and back, become a 1-D convolution over frequency (``channels`` filters of
    ``kernel`` bins every ``stride`` bins, ReLU; its flattened output, channels x positions, takes
    the place of hidden[0]) and the mirrored transposed convolution, with thousands instead of
    hundreds of thousands of weights.

    ``leaky`` > 0: every hidden ReLU becomes a leaky ReLU of that negative slope, so no unit can
    die (stop passing any gradient); with plain ReLUs a third to a half of the trained models' second
    encoder and decoder layers never fire.

    Shapes: (B, T, F) -> encode -> (B, T, code) -> decode -> (B, 1, T, F).
    """

    @capture_init
    def __init__(self, n_bins: int, hidden=(1024, 512), code: int = 256, dropout: float = 0.1, conv=None,
                 leaky: float = 0.0):
        super().__init__(n_bins)
        self.leaky = float(leaky)
        sizes = [n_bins, *hidden, code]
        enc, dec_out = [], []
        if conv:
            channels, kernel, stride = (int(v) for v in conv)
            positions = (n_bins - kernel) // stride + 1
            if positions < 1:
                raise ValueError(f"conv kernel {kernel} is longer than the {n_bins} bins")
            sizes[1] = channels * positions
            enc += [FrequencyConv(channels, kernel, stride), self.activation()]
            pad = n_bins - ((positions - 1) * stride + kernel)           # < stride: restores every bin
            dec_out = [nn.Unflatten(-1, (channels, positions)), FrequencyConvTranspose(channels, kernel, stride, pad)]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            if not (conv and i == 0):
                enc += [nn.Linear(a, b), self.activation()]
            if i == 0 and dropout:
                enc.append(nn.Dropout(dropout))
        self.encoder = nn.Sequential(*enc)
        rev = sizes[::-1]
        dec = []
        for a, b in zip(rev[:-2], rev[1:-1]):
            dec += [nn.Linear(a, b), self.activation()]
        dec += (dec_out if conv else [nn.Linear(rev[-2], rev[-1])]) + [nn.Sigmoid()]
        self.decoder = nn.Sequential(*dec)

    def activation(self) -> nn.Module:
        """A hidden layer's nonlinearity: ReLU, or leaky ReLU with ``leaky`` > 0."""
        return nn.LeakyReLU(self.leaky) if self.leaky else nn.ReLU()

    def encode(self, mix_mag: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> h: (B, T, code)."""
        return self.encoder(self.features(mix_mag))

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T, code) -> mask (B, 1, T, F)."""
        return self.decoder(h).unsqueeze(1)

    def forward(self, mix_mag: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(mix_mag))


class MaskEnsemble(nn.Module):
    """Several trained mask models with the same STFT, run as one: each source's mask is the
    mean of the members' masks for it. ``mean`` (set after loading, see :func:`set_ensemble_mean`):
    "geometric" (exp of the mean log mask, masks floored at 1e-6: a bin is kept only where the
    members agree; the sharper mask, the default) or "arithmetic" (a bin is kept in proportion to
    how many members keep it: one member's mistake costs less). Built by :func:`util.load_model`
    from ``a.pt+b.pt``; it is never saved (the members' checkpoints are the files).

    ``sources``: those every member outputs, in the first member's order. ``context``: "frame"
    if every member is frame-wise, "causal" if every member is causal (the state is the list
    of the members' states), else "window" (causal members then see whole windows).
    """

    domain = "spectrogram"
    MEANS = ("geometric", "arithmetic")
    DEFAULT_MEAN = "geometric"
    _mean = DEFAULT_MEAN    # how the members' masks are combined (not saved: ensembles never are)

    @property
    def mean(self) -> str:
        return self._mean

    @mean.setter
    def mean(self, value: str):
        if value not in self.MEANS:
            raise ValueError(f"unknown ensemble mean {value!r} (one of {', '.join(self.MEANS)})")
        self._mean = value

    def __init__(self, members):
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two models")
        self.members = nn.ModuleList(members)
        self.sources = tuple(s for s in members[0].sources if all(s in m.sources for m in members[1:]))
        if not self.sources:
            raise ValueError("the models have no source in common")
        self.n_bins = members[0].n_bins
        self.order = [[list(m.sources).index(s) for s in self.sources] for m in members]
        contexts = {getattr(m, "context", "frame") for m in members}
        self.context = contexts.pop() if len(contexts) == 1 else "window"

    def forward(self, mix_mag: torch.Tensor, state=None, return_state: bool = False):
        geometric = self.mean == "geometric"
        total, states = 0.0, []
        for i, (m, order) in enumerate(zip(self.members, self.order)):
            if self.context == "causal":
                mask, st = m(mix_mag, None if state is None else state[i], return_state=True)
                states.append(st)
            else:
                mask = m(mix_mag)
            mask = mask[:, order]
            total = total + (torch.log(mask.clamp_min(1e-6)) if geometric else mask)
        masks = total / len(self.members)
        masks = torch.exp(masks) if geometric else masks
        return (masks, states) if return_state else masks


def set_ensemble_mean(model: nn.Module, mean: str | None) -> bool:
    """Set how ``model``'s masks are combined if it is a :class:`MaskEnsemble` (``mean`` None:
    keep its default); returns whether it is one."""
    if not isinstance(model, MaskEnsemble):
        return False
    if mean is not None:
        model.mean = mean                     # checked by the property
    return True


def shift_offsets(n: int, period: int) -> list[int]:
    """``n`` time offsets (frames) spread over about ``period`` in an odd step, so that they fall
    on different positions of a model's time grid (the U-Net's 64-frame stride grid, the CNN's
    patch hop): n = 4 of 64 gives 0, 17, 34, 51; 4 of 5 gives 0, 1, 2, 3."""
    n = max(1, min(int(n), period))
    step = (period // n) | 1
    return [i * step for i in range(n)]


def average_over_shifts(masks_fn, mix_mag: torch.Tensor, offsets) -> torch.Tensor:
    """The mean of ``masks_fn`` (B, T, F) -> (B, S, T, F) over time offsets of its input: for each
    s in ``offsets``, s frames mirrored in before the song (repeated if the song is shorter),
    the masks computed, those s frames cropped. Masks that each sum to one still do."""
    t = mix_mag.shape[1]
    total = 0.0
    for s in offsets:
        x = mix_mag.transpose(1, 2)
        x = torch.nn.functional.pad(x, (s, 0), mode="reflect" if s < t else "replicate") if s else x
        total = total + masks_fn(x.transpose(1, 2))[:, :, s:]
    return total / len(offsets)


class ShiftAveragedMaskModel(MaskModel):
    """A mask model whose masks depend on where a frame falls in a time grid of ``shift_period``
    frames (the U-Net's stride grid, the CNN's patch hop). Subclasses compute the raw masks in
    ``_masks``; in eval mode ``forward`` averages them over ``shifts`` offsets of that grid
    (:func:`shift_offsets`, :func:`average_over_shifts`). Training uses the raw masks."""

    shifts = 1          # eval mode: average the masks over this many time offsets (not saved)
    default_shifts = 4  # what separation sets when no --shifts is given (measured per model, README)

    @property
    def shift_period(self) -> int:
        raise NotImplementedError

    def _masks(self, mix_mag: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, mix_mag: torch.Tensor) -> torch.Tensor:
        if self.training or self.shifts <= 1:
            return self._masks(mix_mag)
        return average_over_shifts(self._masks, mix_mag, shift_offsets(self.shifts, self.shift_period))


class GridImageMaskModel(ShiftAveragedMaskModel):
    """A shift-averaged mask model that sees the spectrogram as an image padded to a grid of
    ``multiple`` frames and bins (the U-Net's strides, the stacked hourglass's poolings); the
    grid is its shift period. Subclasses set ``self.multiple`` and ``self.features``."""

    multiple = 1

    @property
    def shift_period(self) -> int:
        """The grid: ``multiple`` frames."""
        return self.multiple

    def _image(self, mix_mag: torch.Tensor) -> torch.Tensor:
        """mix_mag (B, T, F) -> the normalised features as an image (B, 1, F', T'), zero-padded
        (zero = the training mean) up to multiples of ``multiple``; crop the masks back to F, T."""
        _, t, f = mix_mag.shape
        x = self.features(mix_mag).transpose(1, 2)[:, None]
        return nn.functional.pad(x, (0, -t % self.multiple, 0, -f % self.multiple))


def shift_parts(model) -> list:
    """The parts of ``model`` that average over shifts (an ensemble's members too; an ONNX graph
    has none): Model_UNet, Model_CNN, Model_Hourglass."""
    return [m for m in model.modules() if isinstance(m, ShiftAveragedMaskModel)]


def set_shifts(model: nn.Module, n: int | None) -> int:
    """Set the inference-time shift averaging (``shifts``) of every part of ``model`` that has one
    to ``n``, or with ``n`` None to that part's own ``default_shifts``; returns how many parts
    took it."""
    parts = shift_parts(model)
    for m in parts:
        m.shifts = m.default_shifts if n is None else int(n)
    return len(parts)


def shifts_of(model) -> int | list[int] | None:
    """The shifts the model's parts use: one number, a list for an ensemble whose parts differ,
    None for a model without such parts."""
    used = [m.shifts for m in shift_parts(model)]
    return None if not used else used[0] if len(set(used)) == 1 else used


# ----------------------------------------------------------------------------------------------
# Losses on magnitudes. target, estimate: (..., frames, bins). Sum over bins; mean over
# everything else (batch, sources, time steps), as the assignment asks.
# ----------------------------------------------------------------------------------------------
def generalized_kl(target: torch.Tensor, estimate: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Eq. (3): D(X||Y) = sum x (log(x+eps) - log(y+eps)) - x + y, X the target, Y the estimate.
    Non-negative, zero iff X == Y."""
    d = target * (torch.log(target + eps) - torch.log(estimate + eps)) - target + estimate
    return d.sum(-1).mean()


def generalized_kl_reverse(target, estimate, eps: float = 1e-8):
    """The swapped direction D(Y||X)."""
    return generalized_kl(estimate, target, eps)


def mse(target, estimate, eps=None):
    return ((target - estimate) ** 2).sum(-1).mean()


def l1(target, estimate, eps=None):
    return (target - estimate).abs().sum(-1).mean()


def itakura_saito(target, estimate, eps: float = 1e-8):
    """D_IS(X||Y) on power spectra: sum x/y - log(x/y) - 1 (scale invariant)."""
    p, q = target ** 2 + eps, estimate ** 2 + eps
    return (p / q - torch.log(p / q) - 1).sum(-1).mean()


LOSSES = {"kl": generalized_kl, "kl_reverse": generalized_kl_reverse, "mse": mse, "l1": l1,
          "is": itakura_saito}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
