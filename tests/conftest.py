"""Shared fixtures: tiny generated datasets in every supported layout, tiny models."""
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED_DATA = ROOT.parent / "shared" / "data"

torch.set_num_threads(1)


def tone(seconds, sr, f0, seed=0, channels=1):
    """(samples, channels) float32: a harmonic tone plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * 0.1
    x = x + 0.01 * rng.standard_normal(len(t))
    return np.repeat(x[:, None], channels, 1).astype(np.float32)


def write_stems(folder, names, sr=16000, seconds=1.0, channels=2, seed=0, mixture=True):
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for i, n in enumerate(names):
        x = tone(seconds, sr, 110 * (i + 2), seed + i, channels)
        total = total + x
        sf.write(folder / f"{n}.wav", x, sr)
    if mixture:
        sf.write(folder / "mixture.wav", total, sr)


@pytest.fixture
def dsd100(tmp_path):
    root = tmp_path / "DSD100"
    for split, n in (("Dev", 3), ("Test", 2)):
        for i in range(n):
            name = f"{i:03d} - Song {split}{i}"
            write_stems(root / "Sources" / split / name, ("vocals", "bass", "drums", "other"),
                        mixture=False, seed=i)
            write_stems(root / "Mixtures" / split / name, (), mixture=False)
            sf.write(root / "Mixtures" / split / name / "mixture.wav", tone(1.0, 16000, 200, i, 2), 16000)
    return root


@pytest.fixture
def musdb(tmp_path):
    root = tmp_path / "musdb"
    write_stems(root / "train" / "A", ("vocals", "accompaniment"))
    write_stems(root / "train" / "B", ("vocals", "drums", "bass", "other"))
    write_stems(root / "test" / "C", ("vocals", "accompaniment"), sr=44100)
    return root


@pytest.fixture
def mir1k(tmp_path):
    root = tmp_path / "MIR-1K" / "Wavfile"
    root.mkdir(parents=True)
    for singer in ("abjones", "amy", "stool"):
        for clip in (1, 2):
            acc, voc = tone(1.0, 16000, 100, clip), tone(1.0, 16000, 300, clip + 5)
            ext = "flac" if singer == "amy" else "wav"
            sf.write(root / f"{singer}_{clip}_01.{ext}", np.concatenate([acc, voc], 1), 16000)
    return root.parent


@pytest.fixture
def tiny_ff():
    import Model
    torch.manual_seed(0)
    return Model.FrameMaskNet(129, (32, 16), 8, dropout=0.0).eval()
