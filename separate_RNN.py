#!/usr/bin/env python3
"""Separate vocals and accompaniment with the recurrent model (assignment part 2).

  python separate_RNN.py song.mp3                         # -> separated/RNN/song/{vocals,accompaniment}.wav
  python separate_RNN.py songs/*.flac -o out --force
  python separate_RNN.py song.wav --model runs/rnn-.../savedModel_RNN_best.pt

Songs of any length stream through in bounded memory: a unidirectional model carries its LSTM
state across chunks, a bidirectional one uses overlapping windows with cross-faded joins.
Outputs keep the input's rate and channels; accompaniment = mixture - vocals. Nothing is
overwritten without --force. Exit status: 0 all done, 1 some inputs failed, 2 bad input.
"""
import Model_RNN
import separate
import util

DEFAULT_MODEL = separate.ROOT / "models" / "savedModel_RNN_best.pt"


def main(argv=None):
    return separate.main(argv, DEFAULT_MODEL, Model_RNN.RNNMaskNet, __doc__)


if __name__ == "__main__":
    util.run_cli(main)
