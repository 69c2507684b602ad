#!/usr/bin/env python3
"""Train the temporal model: frame encoder -> LSTM, fused with the frame code -> decoder (part 2).

Examples:
  python train_rnn.py --init runs/feedforward-.../savedModel_feedforward_best.pt
  python train_rnn.py --data MIR-1K --sample-rate 16000 --n-fft 1024 --hop 256 --unidirectional
  python train_rnn.py --init models/savedModel_RNN_best.pt --lr 3e-4 --seed 43   # continue the shipped RNN
  python train_rnn.py --init models/savedModel_RNN_best.pt --widen-rnn 512       # ... with a wider LSTM
  python train_rnn.py --init models/savedModel_RNN_best.pt --widen-context 5     # ... seeing t-2 .. t+2
  python train_rnn.py --init models/feedforward_conv.pt   # the convolutional variant's encoder/decoder

With --init, the encoder, decoder and input statistics start from a trained feedforward
checkpoint (whose layer sizes, STFT and sample rate are then used), or every weight from an RNN
checkpoint (its shape too), with a fresh optimizer; --widen-rnn then adds LSTM units that start
with zero outgoing weights, and --widen-context input frames that start with zero weights, so
training starts from exactly the checkpoint's masks. Frames of a song are never shuffled: the
model trains on excerpts of consecutive frames (--chunk-seconds).
The best-validation model is <run>/savedModel_RNN_best.pt, beside last.pt, history.json, loss.png.
"""
import argparse

import torch

import Model
import Model_RNN
import training
import util
from util import UserError


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    training.add_common_args(p, epochs=30, batch_size=16, chunk_seconds=4.0, lr=1e-3)
    g = p.add_argument_group("model")
    g.add_argument("--init", default=None,
                   help="feedforward checkpoint whose encoder/decoder initialise this model (recommended), "
                        "or an RNN checkpoint to continue (all its weights and shape)")
    g.add_argument("--hidden", type=util.positive_int, nargs="+", default=[1024, 512],
                   help="encoder layer widths, decoder mirrors them (default 1024 512; taken from --init)")
    g.add_argument("--code", type=util.positive_int, default=256,
                   help="width of the code h_t (default 256; taken from --init)")
    g.add_argument("--dropout", type=util.float_range(0, 1, high_open=True), default=None,
                   help="dropout after the first layer (default 0.1, or an RNN --init's; given with an RNN "
                        "--init, it replaces the checkpoint's: dropout adds no weights)")
    g.add_argument("--conv", type=util.positive_int, nargs=3, default=None, metavar=("CHANNELS", "KERNEL", "STRIDE"),
                   help="the assignment's optional variant: the biggest layers (bins <-> first hidden layer) as a "
                        "1-D convolution over frequency and its transpose, e.g. --conv 16 32 8 (default: off; "
                        "taken from --init, e.g. models/feedforward_conv.pt)")
    g.add_argument("--rnn-hidden", type=util.positive_int, default=256,
                   help="LSTM units per direction (default 256; taken from an RNN --init)")
    g.add_argument("--rnn-layers", type=util.int_range(1, 16), default=1,
                   help="stacked LSTM layers (default 1; taken from an RNN --init)")
    g.add_argument("--unidirectional", action="store_true",
                   help="causal LSTM (streamable, state carried across chunks) instead of bidirectional "
                        "(taken from an RNN --init)")
    g.add_argument("--widen-rnn", type=util.positive_int, default=None, metavar="UNITS",
                   help="with an RNN --init: grow its LSTM to this many units per direction; the new "
                        "units start with zero weights into the rest of the model, so the first "
                        "masks are the checkpoint's")
    g.add_argument("--leaky", type=util.float_range(0, 1, high_open=True), default=None, metavar="SLOPE",
                   help="leaky ReLUs of this negative slope in the hidden layers (default 0: ReLU, as the "
                        "assignment, or --init's; given with an --init, it replaces the checkpoint's: a ReLU "
                        "model's units that never fire then pass gradient again)")
    g.add_argument("--context-frames", type=util.positive_int, default=1, metavar="FRAMES",
                   help="frames the encoder sees per step, a centred window, odd (default 1: frame t "
                        "alone, as the assignment; bidirectional only; taken from an RNN --init)")
    g.add_argument("--widen-context", type=util.positive_int, default=None, metavar="FRAMES",
                   help="with an RNN --init: grow its input window to FRAMES (odd); the added frames "
                        "start with zero weights, so the first masks are the checkpoint's")
    return training.parse_resumable(p, argv)


RNN_CLASS = util.class_name_of(Model_RNN.RNNMaskNet)
INIT_CLASSES = ("Model.FrameMaskNet", RNN_CLASS)


def load_init(path):
    """Read a feedforward checkpoint (to start an RNN from) or an RNN checkpoint (to continue one,
    e.g. the shipped model) for --init, refusing any other model class; returns its dict."""
    ckpt = util.read_checkpoint(path)
    if ckpt["model_class"] not in INIT_CLASSES:
        raise UserError(f"{path}: --init needs a feedforward (Model.FrameMaskNet) or RNN "
                        f"({RNN_CLASS}) checkpoint, got {ckpt['model_class']}")
    return ckpt


def init_from_feedforward(model, ckpt):
    """Copy every feedforward tensor (encoder, decoder, input stats) into ``model``, and start
    ``fuse_layers`` as the identity on h_t (weights [I, 0], bias 0; h_t >= 0 after its ReLU), so
    the untrained recurrent model computes exactly the feedforward model's masks (with
    ``--context-frames``, the frames around t start with zero weights; with ``--leaky`` the
    negative parts of h_t pass the fuse layer's leaky ReLU once more, scaled by its slope)."""
    state = dict(ckpt["state_dict"])
    if model.context_frames > 1 and "encoder.0.weight" in state:     # frame t's weights, zeros around
        try:
            state["encoder.0.weight"] = Model.widen_context_weight(
                state["encoder.0.weight"], model.n_bins, model.context_frames, "encoder.0.weight")
        except ValueError as err:
            raise UserError(f"--init checkpoint does not match the model's encoder ({err})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith(("rnn.", "fuse_layers.")) for k in missing):
        raise UserError("--init checkpoint does not match the model's encoder/decoder")
    fuse = model.fuse_layers[0]
    code = fuse.out_features
    with torch.no_grad():
        fuse.weight.zero_()
        fuse.weight[:, :code] += torch.eye(code)
        fuse.bias.zero_()


def main(argv=None):
    args = parse_args(argv)
    init = None
    if args.init and args.resume is None:       # a resumed run has its settings and weights in its folder
        init = load_init(args.init)
        a = init["model_args"]
        args.hidden, args.code, args.conv = a["hidden"], a["code"], a.get("conv")
        if args.leaky is None:
            args.leaky = a.get("leaky", 0.0)
        if init["model_class"] == RNN_CLASS:                    # continue an RNN: all of its shape
            args.rnn_hidden, args.rnn_layers = a["rnn_hidden"], a["rnn_layers"]
            if args.dropout is None:
                args.dropout = a["dropout"]
            args.unidirectional = not a["bidirectional"]
            args.context_frames = a.get("context_frames", 1)
            if args.widen_context is not None:
                if args.widen_context < args.context_frames:
                    raise UserError(f"--widen-context {args.widen_context}: the --init model already sees "
                                    f"{args.context_frames} frames")
                args.context_frames = args.widen_context
            if args.widen_rnn is not None:
                if args.widen_rnn < args.rnn_hidden:
                    raise UserError(f"--widen-rnn {args.widen_rnn}: the --init LSTM already has "
                                    f"{args.rnn_hidden} units per direction")
                args.rnn_hidden = args.widen_rnn
        args.n_fft, args.hop = init["stft"]["n_fft"], init["stft"]["hop"]
        args.window = init["stft"].get("window", "hann")
        args.sample_rate = init["sample_rate"]
        args.level_norm = (init.get("features") or {}).get("level_norm", "none")
    if args.dropout is None:
        args.dropout = 0.1
    if args.leaky is None:
        args.leaky = 0.0
    for flag, value in (("--widen-rnn", args.widen_rnn), ("--widen-context", args.widen_context)):
        if value is not None and args.resume is None and (init is None or init["model_class"] != RNN_CLASS):
            raise UserError(f"{flag} needs an RNN checkpoint as --init")
    training.check_odd_window(args.context_frames)
    if args.context_frames > 1 and args.conv:
        raise UserError(f"--context-frames {args.context_frames} needs the fully connected first layer, not --conv")
    if args.context_frames > 1 and args.unidirectional:
        raise UserError(f"--context-frames {args.context_frames} looks ahead: not with a unidirectional "
                        "(causal) model")

    def build(n_bins, a):
        return Model_RNN.RNNMaskNet(n_bins, a.hidden, a.code, a.dropout, a.rnn_hidden, a.rnn_layers,
                                    bidirectional=not a.unidirectional, context_frames=a.context_frames,
                                    conv=a.conv, leaky=a.leaky)

    def after_build(model, a):
        if init["model_class"] == RNN_CLASS:        # wider LSTM or window: the new weights start at zero
            widened = a.widen_rnn is not None or a.widen_context is not None
            training.init_from_checkpoint(model, a.init, load=model.load_widened if widened else None)
        else:
            init_from_feedforward(model, init)

    run = training.train(args, "rnn", "savedModel_RNN_best.pt", build, after_build=after_build if init else None)
    print(run / "savedModel_RNN_best.pt")


if __name__ == "__main__":
    util.run_cli(main)
