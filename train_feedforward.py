#!/usr/bin/env python3
"""Train the single-frame encoder-decoder mask model (assignment part 1).

Examples:
  python train_feedforward.py                       # synthetic demo set, assignment STFT (4096/2048 @ 32 kHz)
  python train_feedforward.py --data DSD100          # the assignment's data (DSD100 or its 32 kHz subset)
  python train_feedforward.py --data MIR-1K --sample-rate 16000 --n-fft 1024 --hop 256

The best-validation model is written as <run>/savedModel_feedforward_best.pt, beside last.pt
(for --resume), history.json and loss.png.
"""
import argparse

import torch

import Model
import training
import util


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    training.add_common_args(p, epochs=30, batch_size=16, chunk_seconds=2.0, lr=1e-3)
    g = p.add_argument_group("model")
    g.add_argument("--hidden", type=util.positive_int, nargs="+", default=[1024, 512],
                   help="encoder layer widths; the decoder mirrors them (default 1024 512)")
    g.add_argument("--code", type=util.positive_int, default=256, help="width of the code h_t (default 256)")
    g.add_argument("--dropout", type=util.float_range(0, 1, high_open=True), default=0.1,
                   help="dropout after the first layer (default 0.1)")
    g.add_argument("--conv", type=util.positive_int, nargs=3, default=None, metavar=("CHANNELS", "KERNEL", "STRIDE"),
                   help="the assignment's optional variant: the biggest layers (bins <-> first hidden layer) as a "
                        "1-D convolution over frequency and its transpose, e.g. --conv 16 32 8 (default: off)")
    g.add_argument("--leaky", type=util.float_range(0, 1, high_open=True), default=0.0, metavar="SLOPE",
                   help="leaky ReLUs of this negative slope in the hidden layers, so no unit dies "
                        "(default 0: ReLU, as the assignment)")
    g.add_argument("--init", default=None, metavar="CKPT",
                   help="start from the weights of a frame-model checkpoint with the same options (e.g. the shipped "
                        "models/savedModel_feedforward_best.pt), with a fresh optimizer (default: random weights)")
    g.add_argument("--frame-batch", type=util.positive_int, default=1024,
                   help="frames per optimisation step: each batch of excerpts is cut into frames, "
                        "shuffled and split into steps of this many frames (default 1024; with --loss sdr "
                        "each step is one batch of whole excerpts instead)")
    return training.parse_resumable(p, argv)


def shuffled_frames(transforms, frame_batch):
    """Batch of stems -> minibatches of shuffled frames (1, frame_batch, F) and (1, S, frame_batch, F).
    In eval mode (validation) every frame at once, in order: the loss is the track's mean over its frames,
    whatever the torch RNG (a shuffled short last batch counted as much as a full one)."""
    def examples(stems, model):
        mix_mag, src_mag = transforms(stems)                     # (B, T, F), (B, S, T, F)
        n_bins = mix_mag.shape[-1]
        mix = mix_mag.reshape(-1, n_bins)                        # (B*T, F)
        src = src_mag.transpose(0, 1).reshape(src_mag.shape[1], -1, n_bins)  # (S, B*T, F)
        if not model.training:
            yield mix[None], src[None]
            return
        order = torch.randperm(mix.shape[0], device=mix.device)
        for i in range(0, len(order), frame_batch):
            idx = order[i:i + frame_batch]
            yield mix[idx][None], src[:, idx][None]
    return examples


def main(argv=None):
    args = parse_args(argv)
    import Data
    transforms = Data.Transforms(util.make_stft(args.n_fft, args.hop, args.window))
    run = training.train(
        args, "feedforward", "savedModel_feedforward_best.pt",
        lambda n_bins, a: Model.FrameMaskNet(n_bins, a.hidden, a.code, a.dropout, conv=a.conv, leaky=a.leaky),
        # --loss sdr resynthesises waveforms, so it trains on whole excerpts, frames in order
        examples=None if args.loss == "sdr" else shuffled_frames(transforms, args.frame_batch),
        after_build=(lambda m, a: training.init_from_checkpoint(m, a.init, args=a)) if args.init else None)
    print(run / "savedModel_feedforward_best.pt")


if __name__ == "__main__":
    util.run_cli(main)
