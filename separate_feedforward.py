#!/usr/bin/env python3
"""Separate vocals and accompaniment with the single-frame model (assignment part 1).

  python separate_feedforward.py song.mp3                 # -> separated/feedforward/song/{vocals,accompaniment}.wav
  python separate_feedforward.py songs/ -o out --format flac
  python separate_feedforward.py song.wav --model runs/feedforward-.../savedModel_feedforward_best.pt

Outputs keep the input's sample rate and channel count; accompaniment = mixture - vocals.
Nothing is overwritten without --force. Exit status: 0 all done, 1 some inputs failed, 2 bad input.
"""
import Model
import separate
import util

DEFAULT_MODEL = separate.ROOT / "models" / "savedModel_feedforward_best.pt"


def main(argv=None):
    return separate.main(argv, DEFAULT_MODEL, Model.FrameMaskNet, __doc__)


if __name__ == "__main__":
    util.run_cli(main)
