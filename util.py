"""Shared helpers: STFT/ISTFT, audio I/O, device and seeding, atomic checkpoints, CLI errors.

Conventions used across the project
-----------------------------------
* Waveforms are float32 arrays/tensors shaped ``(channels, samples)`` (numpy) or
  ``(..., samples)`` (torch).
* Spectrograms are complex tensors shaped ``(..., bins, frames)`` as returned by
  :func:`torch.stft`; models eat magnitudes transposed to ``(batch, frames, bins)``.
* Every user-facing failure is a :class:`UserError`; scripts wrap their ``main`` in
  :func:`run_cli`, which prints it as one line and exits with status 2.
"""
from __future__ import annotations

import importlib
import json
import os
import random
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


class UserError(Exception):
    """A problem with the user's input (file, folder, checkpoint): printed as one line."""


def _importing(frame) -> bool:
    """Whether ``frame`` runs inside an import (importlib's frames are on its stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _terminate(signum, frame):
    """SIGTERM and Ctrl-C under :func:`run_cli`: KeyboardInterrupt, so temporary files are cleaned. Not while
    a module is being imported: an exception raised in a native extension's module init (soxr's and onnx's
    nanobind bindings, imported when first needed) aborts the whole process, so the signal is sent again
    50 ms later, when the import is done."""
    if _importing(frame):
        import threading

        again = threading.Timer(0.05, os.kill, (os.getpid(), signum))
        again.daemon = True
        again.start()
        return
    raise KeyboardInterrupt


def run_cli(main, argv=None):
    """Run ``main(argv)``; turn a :class:`UserError`, Ctrl-C or SIGTERM into a one-line message.

    SIGTERM (``kill``) is handled like Ctrl-C, so temporary files are cleaned up either way (both wait for
    an import under way to finish: :func:`_terminate`).
    Exit status: 0 success, 1 partial failure (``main`` returned 1), 2 bad input, 130 interrupted.
    """
    import signal

    if threading_main():
        signal.signal(signal.SIGTERM, _terminate)
        signal.signal(signal.SIGINT, _terminate)
    try:
        code = main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code or 0)


def worker_default_signals():
    """Pool initializer: a forked worker drops the parent's :func:`run_cli` handlers. SIGTERM (how
    a pool ends its workers) kills it quietly instead of raising KeyboardInterrupt into its idle
    loop, which printed a traceback per worker at the end of every multi-process evaluation;
    Ctrl-C is left to the parent, which ends the pool."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# ----------------------------------------------------------------------------------------------
# Typed validators for argparse: a bad value is refused with one line naming the option's range
# ----------------------------------------------------------------------------------------------
def _number(kind, low=None, high=None, low_open=False, high_open=False, name=None):
    """argparse ``type=``: parse ``kind`` (int/float) and require low <(=) x <(=) high (finite)."""
    import argparse
    import math

    def check(text):
        try:
            x = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}")
        if kind is float and not math.isfinite(x):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if low is not None and (x < low or (low_open and x == low)) or \
                high is not None and (x > high or (high_open and x == high)):
            raise argparse.ArgumentTypeError(f"{text} is outside {check.range}")
        return x
    lo = "" if low is None else f"{low} {'<' if low_open else '<='} "
    hi = "" if high is None else f" {'<' if high_open else '<='} {high}"
    check.range = f"{lo}x{hi}"
    check.__name__ = name or kind.__name__          # argparse names the type in its messages
    return check


def int_range(low=None, high=None):
    """Integer option within [low, high]."""
    return _number(int, low, high, name="integer")


def positive_int(text):
    return int_range(1)(text)


def nonneg_int(text):
    return int_range(0)(text)


def float_range(low=None, high=None, low_open=False, high_open=False):
    """Finite float option within the given bounds (open where asked)."""
    return _number(float, low, high, low_open, high_open, name="number")


positive_float = float_range(0, low_open=True)
nonneg_float = float_range(0)
probability = float_range(0, 1)


def threads_count(text):
    """--threads: 1 .. 4 x the CPU count (more only oversubscribes; huge values crash torch)."""
    return int_range(1, 4 * (os.cpu_count() or 1))(text)


def device_name(text):
    """--device: cpu, cuda or cuda:N (availability is checked when the device is used)."""
    import argparse
    import re

    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device (cpu, cuda or cuda:N)")
    return text


# ----------------------------------------------------------------------------------------------
# STFT
# ----------------------------------------------------------------------------------------------
WINDOWS = ("hann", "hamming")
N_FFT_RANGE = (16, 65536)              # every STFT size taken, from the command line or from a file
SAMPLE_RATE_RANGE = (1000, 384000)     # every model and evaluation sample rate (Hz) taken


class STFT:
    """Analysis/synthesis pair with a periodic window (Hann, or the course's Hamming) and
    centred frames.

    With ``hop <= n_fft / 2`` both windows satisfy the overlap-add constraint, so
    ``istft(stft(x), length=len(x)) == x`` up to float error.
    """

    def __init__(self, n_fft: int = 4096, hop: int = 2048, window: str = "hann"):
        if n_fft < 16 or hop < 1 or hop > n_fft // 2:
            raise ValueError(f"bad STFT settings n_fft={n_fft}, hop={hop} (need hop <= n_fft/2)")
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}, not {window!r}")
        self.n_fft = int(n_fft)
        self.hop = int(hop)
        self.window_name = window
        self._windows = {}

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    def config(self) -> dict:
        return {"n_fft": self.n_fft, "hop": self.hop, "window": self.window_name}

    def window(self, device) -> torch.Tensor:
        key = str(device)
        if key not in self._windows:
            make = torch.hann_window if self.window_name == "hann" else torch.hamming_window
            self._windows[key] = make(self.n_fft, device=device)
        return self._windows[key]

    def n_frames(self, n_samples: int) -> int:
        """Number of frames :meth:`stft` returns for ``n_samples`` samples."""
        return n_samples // self.hop + 1

    def stft(self, x: torch.Tensor) -> torch.Tensor:
        """(..., samples) real -> (..., bins, frames) complex."""
        shape = x.shape
        flat = x.reshape(-1, shape[-1])  # (B, samples)
        spec = torch.stft(flat, self.n_fft, self.hop, window=self.window(x.device),
                          center=True, pad_mode="constant", return_complex=True)
        return spec.reshape(*shape[:-1], *spec.shape[-2:])

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """(..., bins, frames) complex -> (..., length) real."""
        shape = spec.shape
        flat = spec.reshape(-1, *shape[-2:])  # (B, bins, frames)
        wav = torch.istft(flat, self.n_fft, self.hop, window=self.window(spec.device),
                          center=True, length=length)
        return wav.reshape(*shape[:-2], length)


def make_stft(n_fft: int = 4096, hop: int = 2048, window: str = "hann") -> STFT:
    """The one place an analysis/synthesis pair is made (checkpoints store its ``config()``;
    those from before the window option have none and used Hann)."""
    return STFT(n_fft, hop, window)


# The course skeleton's helpers (assignment's util.py interface), on this project's I/O and STFT.
def wavread(path) -> tuple[np.ndarray, int]:
    """Audio file -> ``(audio (samples, channels) float32 in [-1, 1], sample rate)``."""
    audio, sr = load_audio(path)
    return np.ascontiguousarray(audio.T), sr


def wavwrite(path, x, fs):
    """``(samples,)`` or ``(samples, channels)`` float audio -> file (32-bit float WAV)."""
    x = np.asarray(x, dtype=np.float32)
    save_audio(path, x.T if x.ndim == 2 else x, int(fs), subtype="FLOAT")


def stft_real(x, blockSize, hopSize, window="hamming") -> np.ndarray:
    """``(samples,)`` real -> ``(blockSize // 2 + 1, frames)`` complex spectrum (numpy)."""
    spec = make_stft(blockSize, hopSize, window).stft(torch.as_tensor(np.asarray(x, dtype=np.float32)))
    return spec.numpy()


def istft_real(S, blockSize, hopSize, window="hamming", length=None) -> np.ndarray:
    """Inverse of :func:`stft_real`: ``(bins, frames)`` complex -> ``(samples,)`` real; ``length``
    defaults to ``(frames - 1) * hopSize``."""
    S = torch.as_tensor(np.asarray(S, dtype=np.complex64))
    n = length if length is not None else (S.shape[-1] - 1) * hopSize
    return make_stft(blockSize, hopSize, window).istft(S, n).numpy()


# ----------------------------------------------------------------------------------------------
# Audio I/O
# ----------------------------------------------------------------------------------------------
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff")


def audio_info(path) -> sf._SoundFileInfo:
    """Header of an audio file, or a :class:`UserError` naming what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected an audio file")
    if not os.access(path, os.R_OK):
        raise UserError(f"{path}: not readable (permission denied)")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file (0 bytes)")
    try:
        info = sf.info(str(path))
    except Exception as err:  # libsndfile's messages are long; keep their last line
        msg = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: not a readable audio file ({msg})") from None
    if info.frames <= 0:
        raise UserError(f"{path}: audio has zero samples")
    return info


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """(channels, samples) at sr_in -> (channels, samples') at sr_out (soxr, high quality)."""
    if sr_in == sr_out:
        return audio
    import soxr

    out = soxr.resample(np.ascontiguousarray(audio.T), sr_in, sr_out, quality="HQ")
    return np.ascontiguousarray(out.T, dtype=np.float32)


def load_audio(path, sample_rate: int | None = None, mono: bool = False,
               start: int = 0, frames: int = -1) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 ``(channels, samples)``.

    ``sample_rate`` resamples (None keeps the file's rate); ``mono`` averages channels;
    ``start``/``frames`` read a segment (in the file's own samples).
    Raises :class:`UserError` for missing, unreadable, non-audio, empty or non-finite input.
    """
    info = audio_info(path)
    try:
        data, sr = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except Exception as err:
        raise UserError(f"{path}: could not decode audio ({str(err).strip().splitlines()[-1]})") from None
    audio = data.T  # (channels, samples)
    if audio.shape[1] == 0:
        raise UserError(f"{path}: audio has zero samples")
    if not np.isfinite(audio).all():
        raise UserError(f"{path}: audio contains NaN or infinite samples")
    if mono and audio.shape[0] > 1:
        audio = audio.mean(axis=0, keepdims=True)
    if sample_rate is not None and sr != sample_rate:
        audio = resample(audio, sr, sample_rate)
        sr = sample_rate
    del info
    return np.ascontiguousarray(audio, dtype=np.float32), int(sr)


def loss_axis_scale(losses) -> str:
    """Y scale for a loss curve: 'log' when every loss is positive, else 'linear' (minus an SDR,
    --loss sdr, and the DRNN's discriminative loss go negative, where a log axis shows nothing)."""
    losses = list(losses)
    return "log" if losses and min(losses) > 0 else "linear"


def temp_path(folder, prefix: str, suffix: str) -> Path:
    """A new empty file in ``folder`` with the permissions a plain ``open()`` would give."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


def atomic_write(path, write_fn):
    """Call ``write_fn(tmp_path)`` then rename the temp file onto ``path`` (same folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(temp_path(path.parent, f".{path.name}.", ".tmp"))
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}


def save_audio(path, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16"):
    """Write float ``(channels, samples)`` audio atomically; format from the extension.

    Integer subtypes are clipped to [-1, 1] (a warning says so if clipping happened).
    """
    path = Path(path)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if subtype.startswith("PCM"):
        peak = float(np.abs(audio).max()) if audio.size else 0.0
        if peak > 1.0:
            warnings.warn(f"{path.name}: peak {peak:.2f} > 1, clipped for {subtype}")
            audio = np.clip(audio, -1.0, 1.0)
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{path}: unsupported output extension (use .wav, .flac or .ogg)")
    if fmt == "OGG":
        subtype = "VORBIS"
    if fmt == "FLAC" and subtype == "FLOAT":
        raise UserError("FLAC cannot store float samples: use --subtype 16 or 24")
    atomic_write(path, lambda tmp: sf.write(tmp, audio.T, sample_rate, subtype=subtype, format=fmt))


# ----------------------------------------------------------------------------------------------
# Device and seeding
# ----------------------------------------------------------------------------------------------
def get_device(name: str | None = None) -> torch.device:
    """``name`` if given ("cpu", "cuda", "cuda:1"), else CUDA when available, else CPU."""
    if name:
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"device {name!r} requested but CUDA is not available")
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


MALLOC_MMAP_THRESHOLD = 32 << 20     # bytes: glibc's largest mmap threshold on 64-bit
MALLOC_TRIM_THRESHOLD = 1 << 30
MALLOC_TOP_PAD = 256 << 20          # address space reserved at each heap growth (pages touched only when used)


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep the memory torch frees and reuse it, instead of handing each
    large buffer back to the kernel (``munmap``) and faulting fresh zeroed pages in at the next
    step: every block comes from the heap (no ``mmap``, not even past glibc's largest mmap
    threshold of :data:`MALLOC_MMAP_THRESHOLD`: the stacked hourglass's 100 MB activations were
    mapped and unmapped at every step, and its training spent 69 % of its CPU time in the
    kernel), a heap grows by :data:`MALLOC_TOP_PAD` more than asked and is trimmed only past
    :data:`MALLOC_TRIM_THRESHOLD` (without the padding the threads' heaps still shrank and regrew
    at every step). Measured with ``bench/bench_malloc.py`` (README, Benchmarks), at the cost of
    a peak RSS held for the process's life. Returns whether it was applied: not on other C
    libraries or systems, nor with ``SVS_KEEP_FREED_MEMORY=0`` in the environment.
    Call it once, before the first large allocation."""
    if os.environ.get("SVS_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold, m_mmap_max = -1, -2, -3, -4   # mallopt parameters, malloc.h
    return all([mallopt(m_mmap_threshold, MALLOC_MMAP_THRESHOLD), mallopt(m_trim_threshold, MALLOC_TRIM_THRESHOLD),
                mallopt(m_top_pad, MALLOC_TOP_PAD), mallopt(m_mmap_max, 0)])


def flush_denormals() -> bool:
    """Make the CPU treat denormal floats (magnitudes below 1.2e-38) as zero, in inputs and results.
    Arithmetic on denormals takes a slow path on x86 CPUs: with ``--weight-decay 1e-4`` the weights
    of dead ReLU units, whose only gradient is the decay, shrank into that range (0.4 % of an RNN's
    weights and 3 % of Adam's averages after 1,600 steps), and its training steps grew 5x slower
    (3.6 s against 0.7 s a step from that run's checkpoint; ``bench/bench_denormal.py`` reproduces
    it on random weights). Values that small change no mask.
    Returns whether it was applied: not on CPUs without the flag (``torch.set_flush_denormal``),
    nor with ``SVS_FLUSH_DENORMALS=0`` in the environment. Process-wide; call it once."""
    if os.environ.get("SVS_FLUSH_DENORMALS", "1") == "0":
        return False
    return bool(torch.set_flush_denormal(True))


def seed_everything(seed: int):
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The global generators' states as tensors and plain types (loadable with weights_only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state()}


def set_rng_state(state: dict):
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------
CHECKPOINT_FORMAT = 1


# The only classes a checkpoint may name: "module.Class" -> module to import. A checkpoint is
# data, never code: it is read with ``torch.load(weights_only=True)`` (tensors and plain types
# only) and its ``model_class`` must be one of these.
MODEL_CLASSES = {
    "Model.FrameMaskNet": "Model",
    "Model_RNN.RNNMaskNet": "Model_RNN",
    "Model_DRNN.DRNN": "Model_DRNN",
    "Model_GRU.GRUMaskNet": "Model_GRU",
    "Model_CNN.ChandnaCNN": "Model_CNN",
    "Model_UNet.UNet": "Model_UNet",
    "Model_Hourglass.StackedHourglass": "Model_Hourglass",
    "Model_WaveUNet.WaveUNet": "Model_WaveUNet",
}


def model_class(name: str):
    """The registered model class called ``name`` ("module.Class"); UserError for any other."""
    if not isinstance(name, str) or name not in MODEL_CLASSES:
        raise UserError(f"model class {str(name)[:80]!r} is not one of this project's models "
                        f"({', '.join(MODEL_CLASSES)})")
    return getattr(importlib.import_module(MODEL_CLASSES[name]), name.rpartition(".")[2])


def ensemble_parts(path) -> list[Path] | None:
    """``a.pt+b.pt`` (a path that does not exist, joined by ``+``) -> [a.pt, b.pt]; else None."""
    text = str(path)
    if "+" not in text or Path(text).exists():
        return None
    parts = text.split("+")
    if any(not p.strip() for p in parts):
        raise UserError(f"{text}: an ensemble is two or more checkpoints joined by '+', e.g. a.pt+b.pt")
    return [Path(p) for p in parts]


def checkpoint_label(path) -> str:
    """How the real-songs bench names a checkpoint in its results: the file name, or an ensemble's
    :func:`checkpoint_name` (``unet+RNN``)."""
    return checkpoint_name(path) if ensemble_parts(path) else Path(path).name


def checkpoint_name(path) -> str:
    """A checkpoint's short name, for row names, history files and output folders:
    ``savedModel_RNN_best.pt`` -> ``RNN``, ``models/unet.pt`` -> ``unet``,
    ``models/unet.pt+models/savedModel_RNN_best.pt`` -> ``unet+RNN``."""
    parts = ensemble_parts(path)
    if parts:
        return "+".join(checkpoint_name(p) for p in parts)
    stem = Path(path).stem
    stem = stem[len("savedModel_"):] if stem.startswith("savedModel_") else stem
    return stem[:-len("_best")] if stem.endswith("_best") else stem


def class_name_of(cls: type) -> str:
    """"module.Class", the name checkpoints and the registry use."""
    return f"{cls.__module__}.{cls.__name__}"


def class_name(model: torch.nn.Module) -> str:
    return class_name_of(type(model))


def save_checkpoint(path, model: torch.nn.Module, stft: STFT, sample_rate: int, **extra):
    """Write ``path`` atomically (temp file in the same folder, then rename).

    The file carries everything needed to rebuild the model alone: ``model_class``
    ("module.Class", one of :data:`MODEL_CLASSES`), ``model_args`` (constructor kwargs),
    ``state_dict``, ``features`` (input level normalisation), ``stft`` settings and
    ``sample_rate``; ``extra`` adds e.g. ``train_args``, ``epoch``, ``valid_loss``,
    ``optimizer``, ``rng``, ``history``. Everything is tensors and plain types, so the file
    loads with ``weights_only=True``.
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_class": class_name(model),
        "model_args": dict(model.model_args),
        "features": model_features(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "stft": stft.config(),
        "sample_rate": int(sample_rate),
        **extra,
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def model_features(model) -> dict:
    """The input settings saved beside the weights: a mask model's ``level_norm``, a time-domain
    model's ``input_rms`` (when set)."""
    if hasattr(model, "set_level_norm"):
        return {"level_norm": model.level_norm}
    if getattr(model, "input_rms", None) is not None:
        return {"input_rms": float(model.input_rms)}
    return {}


def read_checkpoint(path) -> dict:
    """Load a checkpoint dict, with a one-line :class:`UserError` if it is missing or corrupt."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: checkpoint not found")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        # weights_only refuses pickled code ("Unsupported global"), so nothing in the file runs.
        kind = ("holds Python objects other than tensors and plain values (refused: a checkpoint is "
                "data, never code)" if "GLOBAL" in str(err)
                else f"corrupt or truncated checkpoint ({type(err).__name__})")
        raise UserError(f"{path}: {kind}") from None
    required = ("model_class", "model_args", "state_dict", "stft", "sample_rate")
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in required):
        raise UserError(f"{path}: not a checkpoint of this project (missing model configuration)")
    return ckpt


MAX_WEIGHTS = 200_000_000       # 0.8 GB of float32 weights; the largest model here has 9.8 million


def build_model(ckpt: dict, path="checkpoint") -> torch.nn.Module:
    """Rebuild the model a checkpoint describes and load its weights. Only the classes of
    :data:`MODEL_CLASSES` are built; weights must be finite."""
    try:
        cls = model_class(ckpt["model_class"])
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
    if not isinstance(ckpt["model_args"], dict) or not all(isinstance(k, str) for k in ckpt["model_args"]):
        raise UserError(f"{path}: model_args is not a dict of named arguments")
    try:
        with torch.device("meta"):                  # its size first, without memory: model_args are data
            weights = sum(p.numel() for p in cls(**ckpt["model_args"]).parameters())
        if weights > MAX_WEIGHTS:
            raise UserError(f"{path}: model_args describe {weights:,} weights (more than {MAX_WEIGHTS:,}): refused")
        model = cls(**ckpt["model_args"])
    except UserError:
        raise
    except Exception as err:
        raise UserError(f"{path}: cannot build model {ckpt['model_class']} ({err})") from None
    features = ckpt.get("features") or {}
    try:
        if "level_norm" in features and (hasattr(model, "set_level_norm") or features["level_norm"] != "none"):
            model.set_level_norm(features["level_norm"])
        if "input_rms" in features:
            model.set_input_rms(features["input_rms"])
    except (AttributeError, TypeError, ValueError) as err:
        raise UserError(f"{path}: bad input features {features!r} ({err})") from None
    state = ckpt["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"{path}: state_dict is not a dict of tensors")
    bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise UserError(f"{path}: weights contain NaN or infinite values ({bad})")
    try:
        model.load_state_dict(state)       # float16 shipped weights are cast to float32
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"{path}: weights do not match {ckpt['model_class']} ({first})") from None
    model.eval()
    return model


def load_model(path, device="cpu", expect: type | tuple | None = None):
    """(model, stft, sample_rate, ckpt) rebuilt from the file alone.

    ``expect`` (a class or tuple of classes) rejects checkpoints of any other model class.
    A ``.onnx`` file is loaded as an onnxruntime model with the same interface (onnx_export.py).
    ``a.pt+b.pt`` loads an ensemble (:class:`Model.MaskEnsemble`) of checkpoints (or ``.onnx``
    exports) with the same STFT and sample rate; its info dict names the members.
    """
    expect = (expect,) if isinstance(expect, type) else expect
    expected = "/".join(c.__name__ for c in expect or ())       # for the refusals below
    parts = ensemble_parts(path)
    if parts:
        return _load_ensemble(path, parts, device, expect, expected)
    if Path(path).suffix.lower() == ".onnx":                   # an export (onnx_export.py), run by onnxruntime
        import onnx_export
        model, stft, sample_rate, info = onnx_export.load(path, device)
        if expect is not None and model.model_class not in {class_name_of(c) for c in expect}:
            raise UserError(f"{path}: holds a {model.model_class}, expected a {expected} export")
        return model, stft, sample_rate, info
    ckpt = read_checkpoint(path)
    stft, sample_rate = checked_front_end(ckpt["stft"], ckpt["sample_rate"], path)
    model = build_model(ckpt, path)
    if expect is not None and type(model) not in expect:
        raise UserError(f"{path}: holds a {type(model).__name__}, expected a {expected} checkpoint")
    return model.to(device), stft, sample_rate, ckpt


def checked_front_end(stft_config, sample_rate, path="checkpoint"):
    """(STFT, sample rate) from a checkpoint's (or export's) settings, within the ranges the command lines
    take (:data:`N_FFT_RANGE`, 1 <= hop <= n_fft, :data:`SAMPLE_RATE_RANGE`, :data:`WINDOWS`); a one-line
    UserError otherwise: a file made elsewhere is data, and a 2^31-point STFT would fill the memory before
    anything else failed."""
    try:
        cfg = dict(stft_config)
        n_fft, hop, window = cfg.pop("n_fft"), cfg.pop("hop"), cfg.pop("window", "hann")
        ok = (not cfg and all(type(v) is int for v in (n_fft, hop, sample_rate))
              and N_FFT_RANGE[0] <= n_fft <= N_FFT_RANGE[1] and 1 <= hop <= n_fft
              and SAMPLE_RATE_RANGE[0] <= sample_rate <= SAMPLE_RATE_RANGE[1] and window in WINDOWS)
    except (TypeError, ValueError, KeyError):
        ok = False
    if not ok:
        raise UserError(f"{path}: bad STFT settings or sample rate ({stft_config!r:.120}, {sample_rate!r:.40})")
    return make_stft(n_fft, hop, window), sample_rate


def train_seconds(ckpt: dict) -> float | None:
    """CPU seconds a checkpoint's training took (recorded, else summed from its history)."""
    return ckpt.get("train_seconds") or (sum((ckpt.get("history") or {}).get("epoch_time", [])) or None)


def _load_ensemble(path, parts, device, expect, expected):
    import Model
    loaded = [load_model(p, device) for p in parts]              # .pt checkpoints or .onnx exports
    _, stft0, sr0, _ = loaded[0]
    for p, (_, stft, sr, _) in zip(parts[1:], loaded[1:]):
        if sr != sr0 or stft.config() != stft0.config():
            raise UserError(f"{path}: {p} uses {sr} Hz, STFT {stft.config()}; {parts[0]} uses {sr0} Hz, "
                            f"STFT {stft0.config()} (an ensemble needs the same)")
    if any(getattr(m, "domain", "spectrogram") != "spectrogram" for m, *_ in loaded):
        raise UserError(f"{path}: time-domain models (Wave-U-Net) cannot be ensembled")
    try:
        model = Model.MaskEnsemble([m for m, *_ in loaded])
    except ValueError as err:
        raise UserError(f"{path}: {err}") from None
    if expect is not None and type(model) not in expect:
        raise UserError(f"{path}: is an ensemble, expected a {expected} checkpoint")
    seconds = [train_seconds(c) for *_, c in loaded]
    info = {"model_class": class_name(model), "members": [str(p) for p in parts], "stft": stft0.config(),
            "sample_rate": sr0, "train_seconds": sum(seconds) if all(seconds) else None}
    return model.eval(), stft0, sr0, info


def average_weights(ckpt: dict, src, others: dict) -> dict:
    """The state dict of checkpoint ``ckpt`` (read from ``src``) with every floating-point tensor
    replaced by its mean over it and the checkpoints ``others`` ({path: read checkpoint}; a "model
    soup": fine-tunes of one model with different seeds, Wortsman et al. 2022). Each must hold the
    same model class, constructor arguments, STFT, sample rate and tensor shapes, else a one-line
    UserError. Modules that keep estimates derived from their weights (the DRNN's spectral-norm
    power iteration) recompute them for the mean weights (their ``settle()``)."""
    model = build_model(ckpt, src)
    total = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    for other, o in others.items():
        if Path(other).resolve() == Path(src).resolve():
            raise UserError(f"{other}: is {src} itself; average other fine-tunes with it")
        for key in ("model_class", "stft", "sample_rate", "features"):
            if (o.get(key) or None) != (ckpt.get(key) or None):
                raise UserError(f"{other}: its {key} differs from {src}'s; only fine-tunes of one model average")
        if build_model(o, other).model_args != model.model_args:      # defaults filled in (older files)
            raise UserError(f"{other}: its model_args differs from {src}'s; only fine-tunes of one model average")
        sd = o["state_dict"]
        if set(sd) != set(total) or any(sd[k].shape != total[k].shape for k in total):
            raise UserError(f"{other}: its weights do not have {src}'s names and shapes")
        for k, v in sd.items():
            if v.is_floating_point():
                total[k] = total[k] + v.float()
    n = 1 + len(others)
    mean = {k: v / n if v.is_floating_point() else v for k, v in total.items()}
    model.load_state_dict(mean)
    for module in model.modules():
        if hasattr(module, "settle"):
            module.settle()                                   # (no_grad: its power step is)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def export_checkpoint(src, dst, half: bool = True, extra_seconds: float = 0.0, features: dict | None = None,
                      average=()) -> dict:
    """Write a slim copy of checkpoint ``src`` for shipping: weights (float16 when ``half``; they
    load back into float32 models), model and STFT configuration, training arguments, epoch,
    validation loss and training time (plus ``extra_seconds``, the training of the run it
    continued); no optimizer or RNG state. ``features`` updates the input settings (e.g.
    ``{"input_rms": 0.1}``; a value None removes that setting). ``average``: more checkpoints
    whose weights are averaged with ``src``'s (:func:`average_weights`); their training time
    counts too, and the file names them. Returns the slim dict."""
    ckpt = read_checkpoint(src)
    if average:
        others = {p: read_checkpoint(p) for p in average}
        ckpt["state_dict"] = average_weights(ckpt, src, others)
        extra_seconds = float(extra_seconds) + sum(train_seconds(o) or 0.0 for o in others.values())
    keep = ("format", "model_class", "model_args", "features", "stft", "sample_rate", "train_args", "epoch",
            "valid_loss", "train_seconds", "history_summary")
    slim = {k: ckpt[k] for k in keep if k in ckpt}
    if features:
        merged = {**(slim.get("features") or {}), **features}
        slim["features"] = {k: v for k, v in merged.items() if v is not None}
    slim["state_dict"] = {k: (v.half() if half and v.is_floating_point() else v)
                          for k, v in ckpt["state_dict"].items()}
    if extra_seconds:
        slim["train_seconds"] = float(slim.get("train_seconds") or 0.0) + float(extra_seconds)
    slim["weights_dtype"] = "float16" if half else "float32"
    slim["exported_from"] = str(src)
    if average:
        slim["averaged_with"] = [str(p) for p in average]
    atomic_write(dst, lambda tmp: torch.save(slim, tmp))
    return slim


def write_json(path, obj):
    """Atomic JSON write (indent 2)."""
    def write(tmp):
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, default=_json_default)
            fh.write("\n")
    atomic_write(path, write)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
