#!/usr/bin/env python3
"""Train one of the seed systems on the project's training loop.

Systems (module; what the loss compares):
  drnn      Model_DRNN.DRNN, Huang et al. 2014: context window, recurrent hidden layer, joint
            masks; discriminative loss  sum_i D(s_i, est_i) - gamma D(s_other, est_i)
            (D = --loss: mse, kl or is); curriculum from short to long excerpts
  gru       Model_GRU.GRUMaskNet: stacked GRUs; --loss between the predicted mask and the ratio
            mask target (|S_j|^p / sum_k |S_k|^p)^v
  cnn       Model_CNN.ChandnaCNN, Chandna et al. 2017: vertical/horizontal convs, bottleneck,
            deconvs, masks summing to one over --sources (4 stems need DSD100/MUSDB/demo data);
            --loss on the masked magnitudes, minus --interference times D(other source, estimate)
  unet      Model_UNet.UNet, Jansson et al. 2017: 6+6 strided 5x5 (de)convs, skips, sigmoid mask;
            L1 on the masked magnitude
  hourglass Model_Hourglass.StackedHourglass, Park et al. 2018: stacked hourglasses of residual
            blocks at full resolution, each refining the masks; L1 on the masked magnitude.
            Park's size (--features 256 --stacks 4, the defaults) needs a GPU: on a CPU a step
            takes minutes (bench/bench_separation.py --only hourglass)
            (drnn, gru, cnn, unet and hourglass: or --loss sdr, minus the SDR per excerpt of each source's
            waveform resynthesised with the mixture's phase, as separation does)
  waveunet  Model_WaveUNet.WaveUNet, Stoller et al. 2018: time domain, valid convolutions,
            K-1 sources + difference output; MSE on the waveforms (or L1, or minus their
            SDR per excerpt: --loss sdr)

Defaults follow the papers and differ per system (sample rate, STFT, excerpt length, loss,
learning rate, batch size): `train_seed.py --system X --help` shows system X's defaults.

Examples:
  python train_seed.py --system drnn --data MIR-1K --sample-rate 16000 --n-fft 1024 --hop 256
  python train_seed.py --system cnn                     # 4 sources on the synthetic demo set
  python train_seed.py --system cnn --sources vocals accompaniment --data MIR-1K
  python train_seed.py --system waveunet --levels 8 --features 16 --sample-rate 8000

The best-validation model is <run>/savedModel_<system>_best.pt, beside last.pt, history.json
and loss.png (default run folder runs/seed-<system>-<date-time>).
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

import torch

import Data
import Model
import Model_CNN
import Model_DRNN
import Model_GRU
import Model_WaveUNet
import training
import util
from util import UserError

SYSTEMS = ("drnn", "gru", "cnn", "unet", "hourglass", "waveunet")       # SYSTEM_MODELS below builds each
# Per-system defaults: training settings (training.add_common_args) and model settings.
DEFAULTS = {
    # Huang et al. 2014: 16 kHz, 1024-point STFT with 50 % overlap, 3 x 1000 units, DRNN-2,
    # 3-frame context, gamma 0.05; curriculum 1 s -> 4 s excerpts (Isik: 100 -> 400 frames).
    "drnn": dict(epochs=30, batch_size=16, chunk_seconds=4.0, lr=1e-3, sample_rate=16000, n_fft=1024,
                 hop=512, loss="mse", sources=["vocals", "accompaniment"], hidden=1000, layers=3,
                 dropout=0.0, curriculum_start=1.0),
    # Seed 002: STFT 1024 / hop 512; the sample rate (DSD100 at 44.1 kHz there) is ours.
    "gru": dict(epochs=30, batch_size=16, chunk_seconds=4.0, lr=1e-3, sample_rate=16000, n_fft=1024,
                hop=512, loss="mse", sources=["vocals"], hidden=256, layers=3, dropout=0.0,
                curriculum_start=0.0),
    # Chandna et al. 2017: 44.1 kHz, STFT 1024 / hop 256, 30-frame patches.
    "cnn": dict(epochs=30, batch_size=16, chunk_seconds=2.0, lr=1e-3, sample_rate=44100, n_fft=1024,
                hop=256, loss="mse", sources=list(Data.FOUR_STEMS), hidden=None, layers=None,
                dropout=0.0, curriculum_start=0.0),
    # Jansson et al. 2017: 8192 Hz, STFT 1024 / hop 768, 128-frame patches. Hop 512 here: the largest the
    # inverse STFT takes (at most n_fft / 2, for the overlap-add), 128 frames then span 127 hops = 7.94 s.
    "unet": dict(epochs=30, batch_size=8, chunk_seconds=127 * 512 / 8192, lr=1e-3, sample_rate=8192,
                 n_fft=1024, hop=512, loss="l1", sources=["vocals"], hidden=None, layers=None,
                 dropout=0.5, curriculum_start=0.0),
    # Park et al. 2018 on MIR-1K: 16 kHz, STFT 1024 / hop 256, 64-frame patches (63 hops), L1, Adam 1e-4,
    # batch 4, 256 features, 4 stacks.
    "hourglass": dict(epochs=30, batch_size=4, chunk_seconds=63 * 256 / 16000, lr=1e-4, sample_rate=16000,
                      n_fft=1024, hop=256, loss="l1", sources=["vocals"], hidden=None, layers=None,
                      dropout=0.0, curriculum_start=0.0, features=256),
    # Stoller et al. 2018: 22050 Hz mono, input 147443 samples (6.69 s) -> output 16389, Adam 1e-4.
    "waveunet": dict(epochs=30, batch_size=16, chunk_seconds=147443 / 22050, lr=1e-4, sample_rate=22050,
                     n_fft=1024, hop=256, loss="mse", sources=["vocals", "accompaniment"], hidden=None,
                     layers=None, dropout=0.0, curriculum_start=0.0),
}
WAVEFORM_LOSSES = ("mse", "l1", "sdr")
# --loss choices where they differ from training.MASK_LOSSES (magnitude losses and sdr)
LOSS_CHOICES = {"waveunet": WAVEFORM_LOSSES}
TRAINING_KEYS = ("epochs", "batch_size", "chunk_seconds", "lr", "sample_rate", "n_fft", "hop")


def build_parser(system: str | None) -> argparse.ArgumentParser:
    d = DEFAULTS[system or "drnn"]
    desc = __doc__ + ("" if system else "\n(option defaults below are those of --system drnn)")
    p = argparse.ArgumentParser(description=desc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--system", choices=SYSTEMS, required=True, help="which seed system to train")
    training.add_common_args(p, **{k: d[k] for k in TRAINING_KEYS}, loss=d["loss"], loss_help=(
        "drnn: D of the discriminative loss on magnitudes; gru: loss between predicted and target masks; "
        "cnn, unet: loss on masked magnitudes; drnn, gru, cnn, unet: or sdr = minus the SDR in dB per excerpt "
        "of each source's waveform resynthesised with the mixture's phase (no discriminative or interference "
        "term, no mask target); waveunet: mse or l1 on waveforms, or sdr = minus the "
        "SDR in dB of each source's waveform per excerpt (default %(default)s)"),
        loss_choices=LOSS_CHOICES.get(system))
    g = p.add_argument_group("all systems")
    g.add_argument("--sources", nargs="+", choices=Data.SOURCES + Data.FOUR_STEMS[1:], default=d["sources"],
                   help="sources the model outputs, in order (default %(default)s); drums/bass/other need "
                        "4-stem data (DSD100, MUSDB, the demo set)")
    g.add_argument("--curriculum-start", type=util.nonneg_float, default=d["curriculum_start"], metavar="SECONDS",
                   help="curriculum learning: the training excerpt grows linearly from this length in seconds "
                        "at epoch 1 to --chunk-seconds at --curriculum-epochs (0: off; default %(default)s)")
    g.add_argument("--curriculum-epochs", type=util.positive_int, default=None, metavar="N",
                   help="epoch at which the excerpt reaches --chunk-seconds (default: half of --epochs)")
    g.add_argument("--dropout", type=util.float_range(0, 1, high_open=True), default=d["dropout"],
                   help="dropout probability (drnn: after each hidden layer; gru: between GRU layers; "
                        "cnn: on the bottleneck's units; unet: in the first three decoder layers) "
                        "(default %(default)s)")
    g.add_argument("--init", default=None, metavar="CKPT",
                   help="start from the weights of a checkpoint of this system with the same options (e.g. the "
                        "shipped models/<system>.pt), with a fresh optimizer (default: random weights)")
    g = p.add_argument_group("drnn and gru")
    g.add_argument("--hidden", type=util.positive_int, default=d["hidden"] or 1000,
                   help="units per hidden layer (drnn) or per GRU layer (gru) (default %(default)s)")
    g.add_argument("--layers", type=util.int_range(1, 16), default=d["layers"] or 3,
                   help="hidden layers (drnn) or stacked GRU layers (gru) (default %(default)s)")
    g = p.add_argument_group("drnn")
    g.add_argument("--recurrent-layers", type=util.positive_int, nargs="*", default=[2],
                   help="1-based hidden layers with a recurrent connection; none = DNN (default 2: DRNN-2)")
    g.add_argument("--context-frames", type=util.positive_int, default=3,
                   help="frames in the input context window, odd (default 3: t-1, t, t+1)")
    g.add_argument("--widen-context", type=util.positive_int, default=None, metavar="FRAMES",
                   help="continue a DRNN --init with a wider context window of FRAMES (odd; sets "
                        "--context-frames): the added frames' input weights start at zero, so training starts "
                        "from exactly the checkpoint's masks")
    g.add_argument("--backward-units", type=util.nonneg_int, default=0, metavar="UNITS",
                   help="units of a twin of each recurrent layer that runs backwards in time, beside it "
                        "(a bidirectional DRNN; default 0: Huang's causal one). With a causal DRNN as --init "
                        "they are added to it, seen through weights that start at zero")
    g.add_argument("--gamma", type=util.nonneg_float, default=0.05,
                   help="weight of the discriminative term D(other source || estimate) (default 0.05; 0: off)")
    g = p.add_argument_group("gru")
    g.add_argument("--dense", type=util.positive_int, default=256,
                   help="units of the dense layer after the GRUs (default 256)")
    g.add_argument("--irm-p", type=util.positive_float, default=2.0, help="mask target exponent p (default 2)")
    g.add_argument("--irm-v", type=util.positive_float, default=0.5, help="mask target exponent v (default 0.5)")
    g.add_argument("--mask-weight", choices=["none", "magnitude"], default="none",
                   help="weight each bin's squared mask error by the mixture magnitude (needs --loss mse) "
                        "(default none: the seed's plain MSE on the mask)")
    g = p.add_argument_group("cnn")
    g.add_argument("--time-context", type=util.positive_int, default=30, help="frames per patch T (default 30)")
    g.add_argument("--vertical", type=util.nonneg_int, nargs=2, default=[1, 0], metavar=("T1", "F1"),
                   help="vertical filter shape in frames x bins; F1 = 0: all bins (default 1 0)")
    g.add_argument("--horizontal", type=util.positive_int, nargs=2, default=[12, 1], metavar=("T2", "F2"),
                   help="horizontal filter shape in frames x bins (default 12 1)")
    g.add_argument("--filters", type=util.positive_int, nargs=2, default=[50, 30], metavar=("N1", "N2"),
                   help="filters of the vertical and horizontal convolutions (default 50 30)")
    g.add_argument("--bottleneck", type=util.positive_int, default=128, help="bottleneck units NN (default 128)")
    g.add_argument("--conv-activation", choices=tuple(Model_CNN.ACTIVATIONS), default="none",
                   help="non-linearity after the vertical and horizontal convolutions and the decoders' transposed "
                        "horizontal one (default %(default)s: linear, as the paper)")
    g.add_argument("--interference", type=util.nonneg_float, default=0.0, metavar="ALPHA",
                   help="Chandna et al.'s interference terms: subtract ALPHA x D(other source, estimate) "
                        "from the loss, as the DRNN's --gamma does (default 0: off)")
    g = p.add_argument_group("unet")
    g.add_argument("--channels", type=util.positive_int, nargs="+", default=[16, 32, 64, 128, 256, 512],
                   help="encoder channels, one per strided layer (default 16 32 64 128 256 512)")
    g.add_argument("--kernel", type=util.positive_int, default=5, help="square kernel size (default 5)")
    g = p.add_argument_group("hourglass")
    g.add_argument("--stacks", type=util.int_range(1, 16), default=4, help="stacked hourglasses (default 4)")
    g.add_argument("--depth", type=util.int_range(1, 8), default=4,
                   help="poolings per hourglass; bins and frames are padded to multiples of 2^depth (default 4)")
    g = p.add_argument_group("waveunet and hourglass")
    g.add_argument("--features", type=util.positive_int, default=d.get("features", 24),
                   help="waveunet: extra channels per level F_c; hourglass: channels of every residual block, "
                        ">= 4 (default %(default)s)")
    g.add_argument("--widen-features", action="store_true",
                   help="hourglass: grow a hourglass --init with fewer features to --features; the added channels "
                        "are seen through weights that start at zero, so training starts from exactly the "
                        "checkpoint's masks")
    g = p.add_argument_group("waveunet")
    g.add_argument("--levels", type=util.int_range(1, 16), default=12, help="down/up levels L (default 12)")
    g.add_argument("--down-kernel", type=util.positive_int, default=15,
                   help="downsampling conv kernel in samples (default 15)")
    g.add_argument("--up-kernel", type=util.positive_int, default=5,
                   help="upsampling conv kernel in samples (default 5)")
    g.add_argument("--input-rms", type=util.float_range(0, Model_WaveUNet.INPUT_RMS_MAX, low_open=True),
                   default=None, metavar="RMS",
                   help="scale each training excerpt's mixture to this RMS (times a random +-6 dB) and save it "
                        "in the checkpoint, so separation scales each song to it (default: off)")
    return p


def parse_args(argv=None):
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--system", choices=SYSTEMS)
    pre.add_argument("--resume", type=Path)
    known, _ = pre.parse_known_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    if known.resume is not None and known.system is None:      # the run knows its system
        known.system = training.run_train_args(known.resume).get("system")
        if known.system in SYSTEMS:
            argv += ["--system", known.system]
    args = training.parse_resumable(build_parser(known.system), argv)
    if args.system == "gru" and args.mask_weight == "magnitude" and args.loss != "mse":
        raise UserError(f"--mask-weight magnitude weights a squared error: use --loss mse, not {args.loss}")
    if args.system == "cnn" and args.interference > 0 and args.loss == "sdr":
        raise UserError("--interference subtracts a magnitude distance: use it with a magnitude --loss, not sdr")
    if args.system == "drnn" and args.gamma > 0 and args.loss == "sdr":
        raise UserError("--gamma weighs a magnitude distance: with --loss sdr give --gamma 0")
    if args.input_rms and args.system != "waveunet":
        raise UserError(f"--input-rms sets the Wave-U-Net's input level; {args.system} is level invariant already")
    if args.widen_context is not None:
        if args.system != "drnn" or not args.init:
            raise UserError("--widen-context needs --system drnn and a DRNN checkpoint as --init")
        args.context_frames = args.widen_context
    if args.widen_features and (args.system != "hourglass" or not args.init):
        raise UserError("--widen-features needs --system hourglass and a hourglass checkpoint as --init")
    if args.backward_units and args.system != "drnn":
        raise UserError("--backward-units is an option of --system drnn")
    if args.system == "drnn":
        training.check_odd_window(args.context_frames)
    if args.curriculum_start and not 0 < args.curriculum_start <= args.chunk_seconds:
        raise UserError(f"--curriculum-start {args.curriculum_start} must be in (0, --chunk-seconds]")
    return args


# The systems: each one's class (by its name in the one registry that checkpoint loading uses,
# util.MODEL_CLASSES) and its constructor arguments from the parsed options.
SYSTEM_MODELS = {
    "drnn": ("Model_DRNN.DRNN", lambda a: dict(hidden=a.hidden, layers=a.layers, recurrent_layers=a.recurrent_layers,
                                               context_frames=a.context_frames, dropout=a.dropout,
                                               sources=a.sources, backward_units=a.backward_units)),
    "gru": ("Model_GRU.GRUMaskNet", lambda a: dict(hidden=a.hidden, layers=a.layers, dense=a.dense,
                                                   dropout=a.dropout, sources=a.sources)),
    "cnn": ("Model_CNN.ChandnaCNN", lambda a: dict(sources=a.sources, time_context=a.time_context,
                                                   vertical=a.vertical, horizontal=a.horizontal,
                                                   n_vertical=a.filters[0], n_horizontal=a.filters[1],
                                                   bottleneck=a.bottleneck, dropout=a.dropout,
                                                   activation=a.conv_activation)),
    "unet": ("Model_UNet.UNet", lambda a: dict(channels=a.channels, kernel=a.kernel, dropout=a.dropout,
                                               sources=a.sources)),
    "hourglass": ("Model_Hourglass.StackedHourglass", lambda a: dict(features=a.features, stacks=a.stacks,
                                                                   depth=a.depth, sources=a.sources)),
    "waveunet": ("Model_WaveUNet.WaveUNet", lambda a: dict(levels=a.levels, features=a.features,
                                                           down_kernel=a.down_kernel, up_kernel=a.up_kernel,
                                                           sources=a.sources)),
}
SYSTEM_CLASSES = {system: name for system, (name, _) in SYSTEM_MODELS.items()}


def build(n_bins, a):
    """The model of ``--system`` with the parsed options."""
    name, kwargs = SYSTEM_MODELS[a.system]
    model = util.model_class(name)(n_bins, **kwargs(a))
    if getattr(a, "input_rms", None):
        model.set_input_rms(a.input_rms)
    return model


def init_from(model, a):
    """--init: the checkpoint's weights; with --widen-context or --backward-units, a DRNN's narrower
    window widened or backward units added (their weights into the layer above start at zero); with
    --widen-features, a narrower hourglass grown (the added channels start unseen)."""
    widened = (a.system == "drnn" and (a.widen_context or a.backward_units)) or a.widen_features
    training.init_from_checkpoint(model, a.init, load=model.load_widened if widened else None, args=a)


# ----------------------------------------------------------------------------------------------
# Per-system batch -> loss
# ----------------------------------------------------------------------------------------------
def discriminative_mask_loss(model, example, source_index, loss_fn, gamma):
    """Discriminative loss (Huang eq. 7) on the masked estimates: the DRNN's joint masks, or the
    CNN's masks with Chandna et al.'s interference terms (``--interference``)."""
    mix_mag, src_mag = example
    estimate = model(mix_mag) * mix_mag.unsqueeze(1)                  # (B, S, T, F)
    return Model_DRNN.discriminative_loss(src_mag[:, source_index], estimate, loss_fn, gamma)


def mask_target_loss(model, example, source_index, loss_fn, p, v, weight="none"):
    """``loss_fn(target mask, predicted mask)``; target (|S_j|^p / sum_k |S_k|^p)^v. With
    ``weight="magnitude"`` the squared error of each bin is weighted by the mixture's magnitude
    there (normalised to mean 1 per excerpt), so bins with almost no energy stop taking most of
    the gradient (mse only)."""
    mix_mag, src_mag = example
    target = Model_GRU.ratio_mask(src_mag, p, v)[:, source_index]            # (B, S', T, F)
    pred = model(mix_mag)
    if weight == "magnitude":
        w = mix_mag / mix_mag.mean((1, 2), keepdim=True).clamp_min(1e-12)   # (B, T, F)
        return ((target - pred) ** 2 * w.unsqueeze(1)).sum(-1).mean()
    return loss_fn(target, pred)


def waveform_examples(stems, net):
    """(B, S, N) stems -> (mixture (B, 1, n_in), targets (B, S, n_out)): the longest admissible
    input inside the excerpt for the Wave-U-Net ``net`` and the centre part it predicts. A validation
    clip (eval mode) shorter than the smallest input is zero-padded on both sides to it, as separation
    pads a song; a training excerpt that short is an error."""
    n = stems.shape[-1]
    out = net.output_for_input(n)
    if out is None:
        need = net.input_length(net.valid_output_length(1))
        if net.training:
            raise UserError(f"excerpt of {n} samples is shorter than the Wave-U-Net's smallest input "
                            f"({need} samples): raise --chunk-seconds (and --curriculum-start)")
        stems = torch.nn.functional.pad(stems, ((need - n) // 2, need - n - (need - n) // 2))
        n, out = need, net.output_for_input(need)
    ctx = net.context_samples()
    off = (n - out - 2 * ctx) // 2
    x = stems[..., off:off + out + 2 * ctx]
    if net.input_rms:    # the level separation gives it (--input-rms); training: +-6 dB around it per excerpt
        rms = x.sum(1).pow(2).mean(-1).sqrt().clamp_min(1e-6)                          # (B,)
        spread = 2.0 ** (2 * torch.rand(x.shape[0], device=x.device) - 1) if net.training else 1.0
        x = x * (net.input_rms * spread / rms)[:, None, None]
    yield x.sum(1, keepdim=True), x[..., ctx:ctx + out]


def waveform_loss(model, example, source_index, kind):
    """Mean squared (``kind="mse"``) or absolute error of the predicted waveforms, or (``"sdr"``)
    :func:`training.sdr_loss`: minus the mean SDR in dB over excerpts and sources."""
    mixture, targets = example
    target = targets[:, source_index]
    estimate = model(mixture)
    if kind == "sdr":
        return training.sdr_loss(estimate, target)
    diff = estimate - target
    return (diff ** 2).mean() if kind == "mse" else diff.abs().mean()


def curriculum(args):
    """on_epoch hook: the excerpt length grows linearly from --curriculum-start to
    --chunk-seconds over --curriculum-epochs epochs (then stays)."""
    last = args.curriculum_epochs or max(1, args.epochs // 2)

    def on_epoch(epoch, train_set):
        frac = 1.0 if last <= 1 else min(1.0, (epoch - 1) / (last - 1))
        seconds = args.curriculum_start + frac * (args.chunk_seconds - args.curriculum_start)
        train_set.chunk = int(round(seconds * args.sample_rate))
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"curriculum: epoch {epoch} trains on {seconds:.2f} s excerpts", file=sys.stderr)
    return on_epoch


def main(argv=None):
    args = parse_args(argv)
    loss_fn = Model.LOSSES.get(args.loss)
    examples, compute_loss = None, None                    # the training loop's defaults: masked magnitudes
    if args.loss == "sdr" and args.system != "waveunet":
        pass                                               # the training loop's sdr on resynthesised masks
    elif args.system == "drnn":
        compute_loss = functools.partial(discriminative_mask_loss, loss_fn=loss_fn, gamma=args.gamma)
    elif args.system == "gru":
        compute_loss = functools.partial(mask_target_loss, loss_fn=loss_fn, p=args.irm_p, v=args.irm_v,
                                         weight=args.mask_weight)
    elif args.system == "cnn" and args.interference > 0:
        compute_loss = functools.partial(discriminative_mask_loss, loss_fn=loss_fn, gamma=args.interference)
    elif args.system == "waveunet":
        examples = waveform_examples
        compute_loss = functools.partial(waveform_loss, kind=args.loss)
    if args.curriculum_start and args.curriculum_epochs is None:
        args.curriculum_epochs = max(1, args.epochs // 2)  # recorded, so a --resume with other --epochs keeps it
    best = f"savedModel_{args.system}_best.pt"
    run = training.train(args, f"seed-{args.system}", best, build, examples=examples,
                         compute_loss=compute_loss,
                         after_build=init_from if args.init else None,
                         on_epoch=curriculum(args) if args.curriculum_start else None)
    print(run / best)


if __name__ == "__main__":
    util.run_cli(main)
