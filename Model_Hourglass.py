"""Stacked hourglass network on spectrogram images (Park et al. 2018; the issue's stretch target).

Park, Kim, Lee & Kwak, "Music source separation using stacked hourglass networks", ISMIR 2018,
after Newell, Yang & Deng's pose-estimation network (ECCV 2016). On the mixture magnitude as an
image (B, 1, F, T):

* **stem**: a 7x7 convolution to ``features // 4`` channels, batch norm and ReLU, then two
  residual blocks to ``features // 2`` and ``features`` channels, all at full resolution (the
  masks are per bin and frame, so nothing is strided away as in the pose network);
* **hourglass** of ``depth`` levels: at each level a residual block on the skip branch, and on the
  main branch 2x2 max pooling, a residual block, the next level (a residual block at the bottom),
  a residual block and nearest-neighbour upsampling; the two branches are added;
* **residual block** (Newell's bottleneck, pre-activation): BN-ReLU-1x1 conv to half the channels,
  BN-ReLU-3x3 conv, BN-ReLU-1x1 conv back, plus the input (through a 1x1 conv if the channel
  count changes);
* after each of ``stacks`` hourglasses, a residual block and a 1x1 conv-BN-ReLU give the stack's
  features; a 1x1 conv gives one mask logit per source (sigmoid: the stack's masks). Between
  stacks, the next stack's input is the previous input plus 1x1 convs of the stack's features
  and of its mask logits: each stack refines the previous estimate.

Choices where the paper leaves room (or that a CPU forces):

* ``features`` (Park: 256) and ``stacks`` (Park: 4) are options so that a CPU can train it;
  ``depth`` 4 as in the paper. Bins and frames not divisible by 2^depth are zero-padded (zero = the
  training mean after normalisation) and the masks cropped back, as in Model_UNet.
* Park supervise every stack's masks separately (intermediate supervision) and separate with the
  last stack's. The training loop here scores one output, so the model's masks are the **mean of
  the stacks' masks**, in training and at separation alike: the loss reaches every stack directly,
  as intermediate supervision intends, and training and separation compute the same function.
* ``shifts`` (inference only, as in Model_UNet): ``depth`` poolings make the masks depend on where
  a frame falls in the 2^depth-frame grid, so eval mode can average them over time offsets. Unlike
  the U-Net's, its default is 1: 4 shifts raised a 32-feature, 2-stack model's validation GNSDR
  by 0.03 dB only (11.20 vs 11.17 dB) at 4x the time.
* Input: the project's normalised log1p magnitude (Park: magnitude).
* Runtime: separation runs the masks through onnxruntime when it is installed (``separate.py --runtime auto``,
  the default; ``fast_runtime`` below), which computes the same masks 2.4x faster on one CPU thread (a whole
  separation 1.5x).
* Memory layout: the weights and every activation after the first convolution are channels-last
  (NHWC), which the CPU's convolution kernels run faster at these full-resolution 3x3 and 1x1
  layers: a 32-feature, 2-stack training step (batch 8 x 128 frames) 1.27x and separation 1.2x
  faster on one thread (medians of 5 and 3, interleaved, the machine shared with two trainings;
  the same masks to 2e-6). The U-Net gained 1.14x at separation but lost 6 % per training step,
  so it keeps the default layout. The first convolution's 1-channel input is left as it is:
  NCHW and NHWC are the same for one channel, so it would not switch the layout.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

import Model


class Residual(nn.Module):
    """Pre-activation bottleneck block: (B, cin, H, W) -> (B, cout, H, W)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = max(1, cout // 2)
        # In place where nothing needs the overwritten tensor (a batch norm's output; the last convolution's
        # output, which its backward does not use): the same values and gradients, fewer tensors alive and
        # fewer passes over memory. The shipped 96-feature model over 1024 frames, one thread, medians of 3:
        # 10.9 s against 13.9, the masks identical to the bit; peak memory 1.33-1.46 GB against 1.38-1.48
        # (the allocator's noise is larger than the gain); a 30-s 44.1 kHz song at --semitones 0 (medians
        # of 5, two trainings beside it) 16.6 s against 17.0 and 2.18 GB against 2.47.
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, mid, 1),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 1))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.body(x).add_(self.skip(x))


class Hourglass(nn.Module):
    """One hourglass of ``depth`` levels at ``channels`` channels; keeps the input's shape
    (height and width divisible by 2^depth)."""

    def __init__(self, depth: int, channels: int):
        super().__init__()
        self.skip = Residual(channels, channels)
        self.down = Residual(channels, channels)
        self.inner = Hourglass(depth - 1, channels) if depth > 1 else Residual(channels, channels)
        self.up = Residual(channels, channels)

    def forward(self, x):
        up = F.interpolate(self.up(self.inner(self.down(F.max_pool2d(x, 2)))), scale_factor=2, mode="nearest")
        return up.add_(self.skip(x))                 # in place, as in Residual (the half-size branch freed first)


class StackedHourglass(Model.GridImageMaskModel):
    """Shapes: mix_mag (B, T, F) -> image (B, 1, F', T') padded to multiples of 2^depth -> stem
    (B, C, F', T') -> ``stacks`` hourglasses, each giving mask logits (B, S, F', T') -> the mean
    of the stacks' sigmoid masks, cropped -> (B, S, T, F)."""

    sources = ("vocals",)
    context = "window"
    default_shifts = 1      # 4 gave +0.03 dB on validation at 4x the time (module docstring)
    # separate.py's --semitones when none is given (separate.model_semitones): 4 (fifty-first session): on a
    # new voice the bench hourglass gained 0.18 dB over 2, the produced excerpts' median 3.79 vs 3.38 dB,
    # validation 13.29 vs 13.21; 9 separations: 0.38x real time on one thread for 44.1 kHz stereo (2: 0.7x).
    default_semitones = 4
    # The runtime separate.py's --runtime auto runs its masks with when it is installed (onnx_export.accelerate):
    # onnxruntime computes the same masks (to 1e-5) 2.4x faster on one thread (fifty-second session, 640 frames,
    # medians of 3: 1.66 s against 4.0 s); a whole separation, 60 s of 44.1 kHz stereo at the default
    # --semitones 4, 1.5x (103 s against 156 s). torch spends most of its time in elementwise passes over the
    # full-resolution activations (batch norm, ReLU, additions) and copies around its 1x1 convolutions. Since its
    # blocks add and rectify in place (fifty-eighth session), 2.2x (640 frames, medians of 3, two trainings beside
    # it: 3.1 s against 6.7 s).
    fast_runtime = "onnxruntime"

    @Model.capture_init
    def __init__(self, n_bins: int, features: int = 64, stacks: int = 2, depth: int = 4,
                 sources=("vocals",)):
        super().__init__(n_bins)
        c, s = int(features), len(self.sources)
        if c < 4 or stacks < 1 or depth < 1:
            raise ValueError(f"need features >= 4, stacks >= 1, depth >= 1 (got {c}, {stacks}, {depth})")
        self.multiple = 2 ** int(depth)
        self.stem = nn.Sequential(nn.Conv2d(1, c // 4, 7, padding=3), nn.BatchNorm2d(c // 4), nn.ReLU(),
                                  Residual(c // 4, c // 2), Residual(c // 2, c))
        self.hourglasses = nn.ModuleList(Hourglass(int(depth), c) for _ in range(stacks))
        self.heads = nn.ModuleList(
            nn.Sequential(Residual(c, c), nn.Conv2d(c, c, 1), nn.BatchNorm2d(c), nn.ReLU())
            for _ in range(stacks))
        self.logits = nn.ModuleList(nn.Conv2d(c, s, 1) for _ in range(stacks))
        self.merge_features = nn.ModuleList(nn.Conv2d(c, c, 1) for _ in range(stacks - 1))
        self.merge_logits = nn.ModuleList(nn.Conv2d(s, c, 1) for _ in range(stacks - 1))
        self.to(memory_format=torch.channels_last)          # faster on CPU (module docstring)

    def load_widened(self, state_dict: dict) -> None:
        """Load a hourglass of the same stacks and depth with fewer ``features`` so that this wider one
        computes exactly the same masks (``train_seed.py --widen-features``): every tensor holds the
        checkpoint's in its leading channels; an added channel keeps its fresh weights into it (and batch
        norm's defaults), and the weights from it into the checkpoint's channels start at zero, so the
        checkpoint's channels, the logits and the masks see nothing of it until training grows them.
        Every layer here is a convolution or a per-channel operation, so channels are never reordered."""
        own = self.state_dict()
        unknown = sorted(set(state_dict) - set(own))
        missing = sorted(set(own) - set(state_dict))
        if unknown or missing:
            raise ValueError(f"not a hourglass of these stacks and depth ({(unknown or missing)[0]})")
        grown = {}
        for key, new in own.items():
            old = state_dict[key].to(new.dtype)
            fixed = [i for i in range(new.dim()) if i >= 2 or "." not in key            # kernels, input statistics
                     or (key.startswith("logits.") and i == 0)                          # the sources
                     or (key.startswith("merge_logits.") and i == 1)]
            if old.dim() != new.dim() or any(o > n for o, n in zip(old.shape, new.shape)) \
                    or any(old.shape[i] != new.shape[i] for i in fixed):
                raise ValueError(f"{key}: shape {tuple(old.shape)} does not grow into {tuple(new.shape)}")
            value = new.detach().clone()
            if old.dim() >= 2:                       # convolution (out, in, kh, kw): old outputs see only old inputs
                value[:old.shape[0], old.shape[1]:] = 0
            value[tuple(slice(0, n) for n in old.shape)] = old
            grown[key] = value
        self.load_state_dict(grown)

    def _masks(self, mix_mag: torch.Tensor) -> torch.Tensor:
        """The raw masks: through onnxruntime once ``separate.apply_runtime`` has attached a session, in eval mode
        without gradients while the weights are those it was built from; else (training, gradients, weights
        changed since, e.g. a validation after a training step) torch."""
        onnx_masks = self.__dict__.get("_onnx_masks")
        if onnx_masks is not None and not self.training and not torch.is_grad_enabled():
            if onnx_masks.fresh(self):
                return onnx_masks(mix_mag)
            del self.__dict__["_onnx_masks"]                   # stale: the weights changed
        return self._torch_masks(mix_mag)

    def _torch_masks(self, mix_mag: torch.Tensor) -> torch.Tensor:
        _, t, f = mix_mag.shape
        x = self._image(mix_mag)                                               # (B, 1, F', T')
        x = self.stem[0](x).contiguous(memory_format=torch.channels_last)      # NHWC from here on
        x = self.stem[1:](x)
        masks = []
        for i, (hg, head, out) in enumerate(zip(self.hourglasses, self.heads, self.logits)):
            y = head(hg(x))
            logit = out(y)
            masks.append(torch.sigmoid(logit)[:, :, :f, :t].transpose(2, 3))   # (B, S, T, F)
            if i < len(self.merge_features):
                x = x + self.merge_features[i](y) + self.merge_logits[i](logit)
        return torch.stack(masks).mean(0)
