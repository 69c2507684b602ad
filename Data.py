"""Datasets: DSD100, MUSDB18(-HQ)-style folders, MIR-1K; lazy cached loading; augmentation; Transforms.

Layouts read as distributed (``find_tracks`` detects which one a folder holds):

* **The course's DSD100 subset** (the assignment's 50 mono 32 kHz tracks):
  ``Mixtures/{Train,Valid,Test}/<track>/mixture.wav`` and ``Sources/{Train,Valid,Test}/<track>/vocals.wav``
  (vocals only: accompaniment = mixture - vocals). Train, Valid and Test are used as given.
* **DSD100** (and the assignment's 32 kHz mono subset): ``Mixtures/{Dev,Test}/<track>/mixture.wav``
  and ``Sources/{Dev,Test}/<track>/{vocals,bass,drums,other}.wav``. Dev = train, Test = test.
* **MUSDB18-HQ style**: ``{train,test}/<track>/mixture.wav`` with ``vocals.wav`` and either
  ``accompaniment.wav`` or ``{bass,drums,other}.wav``. A folder of such track folders with no
  ``train``/``test`` level is one unsplit collection (every split lists all of it).
* **MIR-1K**: a ``Wavfile/`` folder (or any folder) of stereo clips ``<singer>_<song>_<clip>.{wav,flac}``,
  left channel = accompaniment, right channel = voice. Singers ``abjones`` and ``amy`` are the
  training split, everyone else the test split (Hsu & Jang 2010; Huang et al. 2014).

Every source is converted to mono at the model's sample rate (channel mean, then soxr
resampling) and cached as ``.npy`` the first time it is read; later reads are memory-mapped,
so the second epoch decodes nothing and no dataset has to fit in RAM. The mixture is always
the sum of the (mono) sources, so references and mixture agree exactly.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import util
from util import UserError

SOURCES = ("vocals", "accompaniment")          # the two-stem task of the assignment
FOUR_STEMS = ("vocals", "drums", "bass", "other")
SAMPLE_BY = ("clip", "second")                  # how training excerpts are drawn (SeparationDataset)
MIR1K_TRAIN_SINGERS = ("abjones", "amy")
DEFAULT_CACHE = Path(__file__).resolve().parent / ".cache" / "audio"


def dataset_sources(model_sources) -> tuple:
    """The stems a dataset must provide, in order, for a model naming ``model_sources``:
    the four stems when it names any beyond vocals/accompaniment, else the two-stem task."""
    return FOUR_STEMS if set(model_sources) - set(SOURCES) else SOURCES


@dataclass(frozen=True)
class StemRef:
    """One file (and optionally one channel of it) that contributes to a source."""
    path: Path
    channel: int | None = None   # None: average all channels
    scale: float = 1.0           # -1: subtracted (accompaniment = mixture - vocals)


@dataclass
class Track:
    """A song: for each source name the list of stems summed to make it."""
    name: str
    stems: dict = field(default_factory=dict)   # source name -> tuple[StemRef, ...]

    def has(self, sources) -> bool:
        return all(s in self.stems for s in sources)


# ----------------------------------------------------------------------------------------------
# Layout discovery
# ----------------------------------------------------------------------------------------------
def _is_audio(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in util.AUDIO_EXTENSIONS


def _find_stem(folder: Path, name: str) -> Path | None:
    for ext in (".wav", ".flac"):
        p = folder / f"{name}{ext}"
        if p.exists():
            return p
    return None


def _stem_folder_track(folder: Path, name: str, mixture: Path | None, vocals_only: bool = False) -> Track:
    """A folder with ``vocals`` and either ``accompaniment`` or ``bass/drums/other``; with
    ``vocals_only`` (the course subset, which ships vocals alone) and neither of those,
    accompaniment = mixture - vocals."""
    vocals = _find_stem(folder, "vocals")
    if vocals is None:
        raise UserError(f"{folder / 'vocals.wav'}: missing stem (track '{name}')")
    stems = {"vocals": (StemRef(vocals),)}
    others = {s: _find_stem(folder, s) for s in ("drums", "bass", "other")}
    acc = _find_stem(folder, "accompaniment")
    files = None                           # checked for equal rates and lengths, the first as reference
    if all(others.values()):
        for s, p in others.items():
            stems[s] = (StemRef(p),)
        stems["accompaniment"] = tuple(StemRef(p) for p in others.values())
    elif acc is not None:
        stems["accompaniment"] = (StemRef(acc),)
    elif vocals_only and mixture is not None:
        stems["accompaniment"] = (StemRef(mixture), StemRef(vocals, scale=-1.0))
        files = [mixture, vocals]          # the mixture is the reference, the vocals the stem checked
    else:
        missing = next(s for s, p in others.items() if p is None)
        raise UserError(f"{folder / (missing + '.wav')}: missing stem (track '{name}'; "
                        f"need accompaniment.wav or bass/drums/other)")
    track = Track(name, stems)
    files = files or [r.path for refs in stems.values() for r in refs] + ([mixture] if mixture else [])
    _check_consistent(files)
    return track


def _check_consistent(files):
    """All stems of a track must share sample rate and length: else name the odd file."""
    ref = None
    for p in dict.fromkeys(files):
        info = util.audio_info(p)
        if ref is None:
            ref = (p, info.samplerate, info.frames)
            continue
        if info.samplerate != ref[1]:
            raise UserError(f"{p}: sample rate {info.samplerate} Hz differs from {ref[0].name} ({ref[1]} Hz)")
        if info.frames != ref[2]:                            # name the shorter file: the likely culprit
            (short, n_short), (other, n_other) = sorted([(p, info.frames), (ref[0], ref[2])], key=lambda x: x[1])
            raise UserError(f"{short}: length {n_short} samples differs from {other.name} ({n_other}): "
                            f"stems of a track must have the same length")


DSD100_SPLITS = {"train": "Dev", "test": "Test"}
COURSE_SPLITS = {"train": "Train", "valid": "Valid", "test": "Test"}


def _dsd100(root: Path, split: str, layout: str) -> list[Track]:
    splits = COURSE_SPLITS if layout == "course" else DSD100_SPLITS
    if split not in splits:
        return []
    sub = splits[split]
    mix_dir, src_dir = root / "Mixtures" / sub, root / "Sources" / sub
    if not mix_dir.is_dir():
        raise UserError(f"{mix_dir}: missing folder (this layout needs Mixtures/{'/'.join(splits.values())})")
    tracks = []
    for tdir in sorted(p for p in mix_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        mixture = _find_stem(tdir, "mixture")
        if mixture is None:
            raise UserError(f"{tdir / 'mixture.wav'}: missing mixture")
        sdir = src_dir / tdir.name
        if not sdir.is_dir():
            raise UserError(f"{sdir}: missing sources folder for track '{tdir.name}'")
        tracks.append(_stem_folder_track(sdir, tdir.name, mixture, vocals_only=layout == "course"))
    if not tracks:
        raise UserError(f"{mix_dir}: split folder holds no track folders")
    return tracks


def _track_folders(folder: Path) -> list[Track]:
    tracks = []
    for tdir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        tracks.append(_stem_folder_track(tdir, tdir.name, _find_stem(tdir, "mixture")))
    return tracks


def _mir1k_clips(folder: Path) -> list[Path]:
    """The clips of a MIR-1K folder (``<singer>_<song>_<clip>.<ext>``; hidden files such as macOS's ``._*`` are
    not clips); a UserError when one clip is there in two formats, which would score it twice."""
    clips = sorted(p for p in folder.iterdir() if _is_audio(p) and "_" in p.stem and not p.name.startswith("."))
    seen = {}
    for p in clips:
        if p.stem in seen:
            raise UserError(f"{folder}: clip {p.stem} is there twice ({seen[p.stem].name}, {p.name}); keep one")
        seen[p.stem] = p
    return clips


def _mir1k(folder: Path, split: str) -> list[Track]:
    tracks = []
    for p in _mir1k_clips(folder):
        singer = p.stem.split("_")[0].lower()
        if (singer in MIR1K_TRAIN_SINGERS) != (split == "train"):
            continue
        info = util.audio_info(p)
        if info.channels != 2:
            raise UserError(f"{p}: MIR-1K clip must be stereo (left accompaniment, right voice), "
                            f"has {info.channels} channel(s)")
        tracks.append(Track(p.stem, {"vocals": (StemRef(p, 1),), "accompaniment": (StemRef(p, 0),)}))
    return tracks


def detect_layout(root) -> str:
    """'course' (the assignment's Train/Valid/Test subset), 'dsd100', 'musdb', 'folders'
    (unsplit track folders) or 'mir1k'; UserError otherwise."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root}: dataset folder not found")
    if not root.is_dir():
        raise UserError(f"{root}: expected a dataset folder, got a file")
    if (root / "Mixtures").is_dir() or (root / "Sources").is_dir():
        mixtures = root / "Mixtures"
        found = sorted(p.name for p in mixtures.iterdir() if p.is_dir()) if mixtures.is_dir() else []
        if all(s in found for s in COURSE_SPLITS.values()):
            return "course"
        if all(s in found for s in DSD100_SPLITS.values()):
            return "dsd100"
        raise UserError(f"{mixtures}: holds {', '.join(found) or 'no split folders'}; expected Dev and Test "
                        f"(DSD100) or Train, Valid and Test (the course's subset)")
    if (root / "train").is_dir() and any((root / "train").glob("*/mixture.*")) or \
            (root / "test").is_dir() and any((root / "test").glob("*/mixture.*")):
        return "musdb"
    if (root / "Wavfile").is_dir() or _mir1k_clips(root):
        return "mir1k"
    if any(root.glob("*/vocals.*")):
        return "folders"
    raise UserError(f"{root}: unrecognised dataset layout (expected DSD100 Mixtures/+Sources/, "
                    f"MUSDB train/+test/, MIR-1K Wavfile/ or track folders with vocals.wav)")


def find_tracks(root, split: str) -> list[Track]:
    """Tracks of ``split`` ('train', 'valid' or 'test') in the dataset at ``root``. Only the
    course layout has a 'valid' split of its own; for the others it is empty (validation is
    then carved from 'train', see :func:`split_train_valid`)."""
    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', not {split!r}")
    root = Path(root)
    layout = detect_layout(root)
    if layout in ("dsd100", "course"):
        return _dsd100(root, split, layout)
    if split == "valid":
        return []
    if layout == "musdb":
        folder = root / split
        if not folder.is_dir():
            raise UserError(f"{folder}: missing split folder")
        return _track_folders(folder)
    if layout == "mir1k":
        return _mir1k(root / "Wavfile" if (root / "Wavfile").is_dir() else root, split)
    return _track_folders(root)


def split_train_valid(tracks: list[Track], valid_fraction: float = 0.1, seed: int = 42,
                      group=None) -> tuple[list[Track], list[Track]]:
    """Carve a validation set from the training tracks by track (or by ``group(track)``, e.g.
    MIR-1K's song, so clips of one song never straddle the split), with a fixed seed."""
    group = group or (lambda t: t.name)
    keys = sorted({group(t) for t in tracks})
    if len(keys) < 2:
        raise UserError(f"need at least 2 training tracks to carve a validation set, found {len(keys)}")
    rng = random.Random(seed)
    rng.shuffle(keys)
    n_valid = min(len(keys) - 1, max(1, round(valid_fraction * len(keys))))
    valid_keys = set(keys[:n_valid])
    return ([t for t in tracks if group(t) not in valid_keys],
            [t for t in tracks if group(t) in valid_keys])


def song_key(track: Track) -> str:
    """Group key: MIR-1K's ``<singer>_<song>`` for clip names, else the track name."""
    parts = track.name.split("_")
    return "_".join(parts[:2]) if len(parts) >= 3 else track.name


# ----------------------------------------------------------------------------------------------
# Cached decoding
# ----------------------------------------------------------------------------------------------
def _save_npy(path, array):
    with open(path, "wb") as fh:          # np.save(path) would append ".npy" to the temp name
        np.save(fh, array)


class AudioCache:
    """Decode each stem once to mono float32 at ``sample_rate``; memory-map it afterwards."""

    def __init__(self, sample_rate: int, cache_dir=DEFAULT_CACHE):
        self.sample_rate = int(sample_rate)
        self.cache_dir = Path(cache_dir)
        self._open = {}

    def _key(self, ref: StemRef) -> Path:
        st = ref.path.stat()
        ident = f"{ref.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{ref.channel}|{self.sample_rate}"
        digest = hashlib.sha1(ident.encode()).hexdigest()[:20]
        return self.cache_dir / f"{ref.path.stem[:40]}-{digest}.npy"

    def stem(self, ref: StemRef) -> np.ndarray:
        """(samples,) float32, memory-mapped."""
        if ref in self._open:
            return self._open[ref]
        path = self._key(ref)
        if not path.exists():
            audio, _ = util.load_audio(ref.path)
            audio = audio[ref.channel:ref.channel + 1] if ref.channel is not None else audio.mean(0, keepdims=True)
            audio = util.resample(audio, sf.info(str(ref.path)).samplerate, self.sample_rate)[0]
            util.atomic_write(path, lambda tmp: _save_npy(tmp, audio.astype(np.float32)))
        arr = np.load(path, mmap_mode="r")
        self._open[ref] = arr
        return arr

    def source(self, track: Track, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Sum of the stems of source ``name``, samples [start, stop): (samples,) float32."""
        refs = track.stems[name]
        out = np.array(self.stem(refs[0])[start:stop], dtype=np.float32) * np.float32(refs[0].scale)
        for ref in refs[1:]:
            out += np.float32(ref.scale) * self.stem(ref)[start:stop]
        return out

    def length(self, track: Track) -> int:
        return min(len(self.stem(refs[0])) for refs in track.stems.values())


# ----------------------------------------------------------------------------------------------
# Augmentations: each a tiny function of (numpy array, random.Random)
# ----------------------------------------------------------------------------------------------
def random_gain(rng, low: float, high: float) -> np.float32:
    """A uniform gain in [low, high] from ``rng`` (``random.Random`` or ``numpy.random``)."""
    return np.float32(rng.uniform(low, high))


def augment_gain(audio: np.ndarray, rng: random.Random, low: float = 0.25, high: float = 1.25) -> np.ndarray:
    """(samples,) -> (samples,) scaled by a uniform random gain in [low, high]."""
    return audio * random_gain(rng, low, high)


def random_offset(length: int, chunk: int, rng: random.Random) -> int:
    """Start of a random chunk of ``chunk`` samples inside ``length`` (0 if it does not fit)."""
    return rng.randint(0, length - chunk) if length > chunk else 0


def random_offset_padded(length: int, chunk: int, rng: random.Random) -> int:
    """Start of a random chunk of ``chunk`` samples that may run up to half a chunk past either end of a
    track of ``length`` samples (a negative start: zeros before the track), so the track's first and last
    samples are covered at least half as often as its middle ones."""
    half = chunk // 2
    return rng.randint(-half, max(length - chunk + half, -half))


def read_padded(cache, track, name: str, start: int, n: int) -> np.ndarray:
    """``n`` samples of source ``name`` from ``start`` (which may be negative or run past the end: zeros there)."""
    audio = cache.source(track, name, max(start, 0), max(start + n, 0))
    if start < 0:
        audio = np.pad(audio, (min(-start, n), 0))
    return fit_length(audio, n)


def varispeed(audio: np.ndarray, n: int, rate: float) -> np.ndarray:
    """Play ``audio`` ``rate`` times faster (pitch and tempo together, like a tape) and return
    (n,) samples: ``round(n * rate)`` input samples are resampled to ``n``."""
    import soxr

    out = soxr.resample(np.ascontiguousarray(audio, dtype=np.float32), len(audio), n, quality="MQ") \
        if len(audio) != n else audio
    return fit_length(np.asarray(out, dtype=np.float32), n)


def random_factor(rng: random.Random, spread: float) -> float:
    """A factor drawn log-uniformly in [1/(1+spread), 1+spread] (a speed, a formant ratio)."""
    return float(np.exp(rng.uniform(-1, 1) * np.log1p(spread)))


def match_rms(out: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``out`` scaled to the RMS of ``like``, as float32 (silence when ``out`` is silent)."""
    rms_like = np.sqrt(np.mean(np.square(like, dtype=np.float64)))
    rms_out = np.sqrt(np.mean(np.square(out, dtype=np.float64)))
    return (out * (rms_like / rms_out if rms_out > 0 else 0.0)).astype(np.float32)


EQ_KNOTS = np.geomspace(1 / 128, 1.0, 6)       # EQ control frequencies, fractions of Nyquist


def random_eq(audio: np.ndarray, rng: random.Random, max_db: float) -> np.ndarray:
    """(samples,) -> (samples,) through a random smooth zero-phase EQ: a gain drawn uniformly in
    [-max_db, max_db] dB at each of :data:`EQ_KNOTS` (6 frequencies evenly spaced on a log scale,
    1/128 of Nyquist to Nyquist; 62 Hz to 8 kHz at 16 kHz), interpolated linearly in dB over
    log-frequency, flat below the first. Applied by FFT over the whole excerpt: the response is
    smooth, so its impulse response is short and the circular wrap is negligible."""
    gains = [rng.uniform(-max_db, max_db) for _ in EQ_KNOTS]
    spec = np.fft.rfft(audio)
    freqs = np.linspace(0.0, 1.0, len(spec))
    db = np.interp(np.log(np.maximum(freqs, EQ_KNOTS[0])), np.log(EQ_KNOTS), gains)
    return np.fft.irfft(spec * 10.0 ** (db / 20.0), len(audio)).astype(np.float32)


BEND_KNOT_SECONDS = 0.25                          # spacing of pitch_bend's random pitch curve


def pitch_bend(audio: np.ndarray, semitones: float, sample_rate: int, rng: random.Random) -> np.ndarray:
    """(samples,) -> (samples,) played along a slow random pitch curve (pitch and tempo together, as
    :func:`varispeed` but varying in time): a value uniform in [-semitones, semitones] every
    :data:`BEND_KNOT_SECONDS`, linear between, so the voice sings other melodies and vibratos.
    The curve is centred so that its mean rate is 1: the excerpt is read from start to end, bent up
    as often as down around its own pitch (the key is the varispeed's). Linear interpolation."""
    n = len(audio)
    if not semitones or n < 2:
        return audio
    step = max(1, int(BEND_KNOT_SECONDS * sample_rate))
    knots = np.arange(0, n + step, step)
    curve = np.interp(np.arange(n - 1), knots, [rng.uniform(-semitones, semitones) for _ in knots])
    rates = 2.0 ** (curve / 12.0)
    pos = np.concatenate([[0.0], np.cumsum(rates / rates.mean())])   # ends at n - 1
    pos = np.minimum(pos, n - 1)                                     # rounding
    return np.interp(pos, np.arange(n), audio).astype(np.float32)


STRETCH_WINDOW_SECONDS = 0.032                   # time_stretch's grain: a few pitch periods of a voice


def time_stretch(audio: np.ndarray, n: int, rate: float, sample_rate: int) -> np.ndarray:
    """(samples,) -> (n,) played ``rate`` times faster with its pitch kept (WSOLA: waveform-similarity
    overlap-add). Grains of :data:`STRETCH_WINDOW_SECONDS` (a power of two in samples) under a
    periodic Hann window are laid down every half grain; the grain for output time t is read near
    input time ``t * rate``, within +-a quarter grain, at the offset whose waveform best continues the
    grain laid before it (the largest cross-correlation), so the periods of a voice line up and its
    pitch and timbre stay while its tempo changes. ``audio`` should hold about ``n * rate`` samples;
    reading past its ends gives zeros."""
    audio = np.asarray(audio, dtype=np.float32)
    if rate == 1.0 and len(audio) == n:
        return audio
    win = 1 << int(round(np.log2(STRETCH_WINDOW_SECONDS * sample_rate)))
    hop, tol = win // 2, win // 4
    frames = -(-n // hop) + 2                     # frame k covers output [(k - 1) hop, (k + 1) hop)
    pad = win + tol + int(np.ceil(hop * rate))
    x = np.concatenate([np.zeros(pad, np.float32), audio,
                        np.zeros(pad + int(np.ceil(frames * hop * rate)), np.float32)])
    window = np.hanning(win + 1)[:win].astype(np.float32)          # periodic: halves overlap-add to 1
    out = np.zeros((frames + 1) * hop, np.float32)
    prev = None
    for k in range(frames):
        nominal = pad + int(round(k * hop * rate)) - hop          # the grain's centre at k hop x rate
        if prev is None:
            pos = nominal
        else:
            ref = x[prev + hop:prev + hop + win]                   # the previous grain's natural continuation
            corr = np.correlate(x[nominal - tol:nominal + tol + win], ref, mode="valid")
            pos = nominal - tol + int(np.argmax(corr)) if np.any(ref) else nominal
        out[k * hop:k * hop + win] += x[pos:pos + win] * window
        prev = pos
    return out[hop:hop + n].copy()


ENVELOPE_ITERATIONS = 8


def formant_shift(audio: np.ndarray, ratio: float, sample_rate: int) -> np.ndarray:
    """(samples,) -> (samples,) with its spectral envelope stretched along frequency by ``ratio``
    (> 1 moves the formants up, as a shorter vocal tract would) and its harmonics, so its pitch,
    kept: each frame of a 64 ms Hann STFT (:func:`util.make_stft`, hop a quarter of it) is
    multiplied by the ratio of the warped to the original envelope (the "true envelope": the log
    magnitude smoothed to its first 1.25 ms of cepstrum, lifted back to the peaks it cut and
    smoothed again, :data:`ENVELOPE_ITERATIONS` times, so it runs through the harmonics' peaks,
    not the valleys between them; gain within +-20 dB), then resynthesised with the frame's own
    phase. The output's RMS equals the input's. With :func:`varispeed`, which moves pitch and
    formants together, pitch and timbre vary independently: other voices than the training
    singers'."""
    audio = np.asarray(audio, dtype=np.float32)
    if ratio == 1.0 or len(audio) == 0:
        return audio
    n_fft = 1 << int(round(np.log2(0.064 * sample_rate)))
    stft = util.make_stft(n_fft, n_fft // 4, "hann")
    spec = stft.stft(torch.from_numpy(audio)).numpy().T.astype(np.complex128)   # (frames, bins)
    mag = np.abs(spec)
    log_mag = np.log(mag + 1e-4 * mag.max() + 1e-12)                         # valleys floored 80 dB down
    q = max(2, int(0.00125 * sample_rate))
    envelope = log_mag
    for _ in range(ENVELOPE_ITERATIONS):      # the "true envelope": smooth, then lift to the peaks again
        cep = np.fft.irfft(envelope, n_fft, axis=1)
        cep[:, q:n_fft - q + 1] = 0.0
        smooth = np.fft.rfft(cep, axis=1).real
        envelope = np.maximum(log_mag, smooth)
    envelope = smooth                                                         # through the harmonics' peaks
    pos = np.minimum(np.arange(envelope.shape[1]) / ratio, envelope.shape[1] - 1)   # formants at ratio x f
    lo = pos.astype(int)
    hi, frac = np.minimum(lo + 1, envelope.shape[1] - 1), pos - lo
    warped = envelope[:, lo] * (1.0 - frac) + envelope[:, hi] * frac
    spec *= np.exp(np.clip(warped - envelope, -np.log(10.0), np.log(10.0)))
    out = stft.istft(torch.from_numpy(spec.T.astype(np.complex64)), len(audio)).numpy().astype(np.float64)
    return match_rms(out, audio)


REVERB_RT60 = (0.2, 1.2)       # seconds, range of the synthetic rooms' decay times
REVERB_DRR_DB = (-3.0, 12.0)   # direct-to-reverberant energy ratio range, dB


def random_reverb(audio: np.ndarray, rng: random.Random, sample_rate: int) -> np.ndarray:
    """(samples,) -> (samples,) through a random synthetic room: the direct sound plus, after a
    pre-delay of 5-30 ms, Gaussian noise under an exponential decay (RT60 uniform in
    :data:`REVERB_RT60`), scaled to a direct-to-reverberant ratio uniform in :data:`REVERB_DRR_DB`.
    Causal (the tail past the excerpt's end is dropped); the output's RMS equals the input's, so
    the gain augmentation alone sets the level. Produced songs' vocal stems carry their reverb,
    MIR-1K's are dry: a model trained on this keeps reverb tails with the voice."""
    from scipy.signal import fftconvolve

    rt60 = rng.uniform(*REVERB_RT60)
    drr = 10.0 ** (rng.uniform(*REVERB_DRR_DB) / 10.0)
    delay = int(rng.uniform(0.005, 0.030) * sample_rate)
    n_tail = int(rt60 * sample_rate)
    noise = np.random.default_rng(rng.getrandbits(32)).standard_normal(n_tail)
    tail = noise * np.exp(-6.91 * np.arange(n_tail) / n_tail)        # -60 dB at rt60
    tail *= np.sqrt(1.0 / (drr * np.sum(tail ** 2)))                 # tail energy = direct / drr
    ir = np.zeros(delay + n_tail)
    ir[0] = 1.0
    ir[delay:] += tail
    out = fftconvolve(audio.astype(np.float64), ir)[:len(audio)]
    return match_rms(out, audio)


def fit_length(audio: np.ndarray, n: int) -> np.ndarray:
    """(..., samples) cropped, or zero-padded at the end, to (..., n)."""
    if audio.shape[-1] >= n:
        return audio[..., :n]
    return np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(0, n - audio.shape[-1])])


class SeparationDataset(torch.utils.data.Dataset):
    """Items are source stacks ``(n_sources, samples)`` float32; their sum is the mixture.

    Training (``train=True``): ``samples_per_epoch`` random chunks of ``chunk_samples``; each
    source comes from a random chunk of a random track (with probability ``remix_prob`` the
    non-vocal sources come from another track than the vocals), scaled by a random gain; with
    probability ``aligned_prob`` an excerpt is instead the song as recorded: every source from the
    same track at the same offset and, with ``vocal_speed``, at the same speed (in time and in tune
    with each other, as a song to separate is).
    With ``vocal_speed`` v > 0 the vocal stem is played at a random speed in [1/(1+v), 1+v]
    (:func:`varispeed`: pitch shifted by up to 12*log2(1+v) semitones, tempo alike), so the
    model hears voices it was not given; with ``accomp_speed`` a > 0 the other stems are played at
    one random speed in [1/(1+a), 1+a] (one for all of them): songs in other keys and tempos; with
    ``accomp_semitones`` k > 0 instead at 2^(j/12) for a random whole j in [-k, k]: other keys that
    stay in standard tuning.
    With ``eq_db`` d > 0 every stem goes through its own :func:`random_eq` (gains within +-d dB),
    so the model hears other microphones, voices and mixes. With ``vocal_reverb`` p > 0 the vocal
    stem goes, with probability p, through :func:`random_reverb` (the target keeps the reverb, as
    produced songs' vocal stems do).
    With ``vocal_bend`` b > 0 the vocal stem follows a slow random pitch curve within +-b semitones
    (:func:`pitch_bend`: other melodies and vibratos), except in aligned excerpts.
    With ``vocal_stretch`` t > 0 the vocal stem is played at a random tempo in [1/(1+t), 1+t] with its
    pitch kept (:func:`time_stretch`; drawn from its own random stream, so every other draw of the
    excerpt stays as without it), except in aligned excerpts: singers who hold and hurry other notes.
    With ``vocal_formant`` f > 0 the vocal stem's formants move by a random factor in [1/(1+f), 1+f]
    (:func:`formant_shift`, pitch kept): with the varispeed, voices of other timbres and ranges.
    With ``vocal_atten_db`` a > 0 the vocal stem is further lowered by a uniform 0..a dB (MIR-1K
    mixes its voices at 0 dB; produced songs put them a few dB below the accompaniment).
    With ``sample_by`` "second" each track is drawn in proportion to its length and each offset by
    :func:`random_offset_padded`, so the training audio is heard far more evenly than with "clip" (the
    default: tracks uniformly, offsets inside the track): a track's first and last samples about half as
    often as its middle, and a track shorter than an excerpt less per second.
    Randomness uses a ``random.Random`` seeded from (``seed``, epoch, index), so an epoch is
    repeatable and never touches the global RNG.
    Evaluation (``train=False``): whole tracks (cropped to ``chunk_samples`` from the start when
    given), in a fixed order.
    """

    def __init__(self, tracks, cache: AudioCache, sources=SOURCES, train=False, chunk_samples=None,
                 samples_per_epoch=1000, remix_prob=0.5, gain=(0.25, 1.25), seed=0, vocal_speed=0.0,
                 eq_db=0.0, vocal_reverb=0.0, vocal_atten_db=0.0, vocal_formant=0.0, accomp_speed=0.0,
                 aligned_prob=0.0, vocal_bend=0.0, accomp_semitones=0, sample_by="clip",
                 vocal_stretch=0.0):
        tracks = [t for t in tracks if t.has(sources)]
        if not tracks:
            raise UserError(f"no tracks with sources {', '.join(sources)}")
        if train and not chunk_samples:
            raise ValueError("training needs chunk_samples")
        self.tracks, self.cache, self.sources = tracks, cache, tuple(sources)
        self.train, self.chunk = train, chunk_samples
        self.samples_per_epoch, self.remix_prob, self.gain, self.seed = samples_per_epoch, remix_prob, gain, seed
        self.vocal_speed, self.eq_db, self.vocal_reverb = vocal_speed, eq_db, vocal_reverb
        self.vocal_atten_db, self.vocal_formant, self.accomp_speed = vocal_atten_db, vocal_formant, accomp_speed
        self.aligned_prob, self.vocal_bend, self.accomp_semitones = aligned_prob, vocal_bend, int(accomp_semitones)
        self.vocal_stretch = vocal_stretch
        if sample_by not in SAMPLE_BY:
            raise ValueError(f"sample_by must be one of {SAMPLE_BY}, not {sample_by!r}")
        self.weights = [cache.length(t) for t in tracks] if train and sample_by == "second" else None
        self.epoch = 0

    STRETCH_STREAM, FORMANT_STREAM = 7919, 7927    # side streams of an item (see _stream)

    def _stream(self, index, *side) -> random.Random:
        """Item ``index``'s random stream this epoch, or with ``side`` one of its side streams: an
        augmentation drawn from its own side stream leaves every draw of the main one as without it."""
        return random.Random(hash((self.seed, self.epoch, index, *side)))

    def _draw_track(self, rng: random.Random):
        if self.weights is None:
            return rng.choice(self.tracks)
        return rng.choices(self.tracks, weights=self.weights)[0]

    def __len__(self):
        return self.samples_per_epoch if self.train else len(self.tracks)

    def __getitem__(self, index):
        if not self.train:
            track = self.tracks[index]
            stop = min(self.cache.length(track), self.chunk) if self.chunk else self.cache.length(track)
            return torch.from_numpy(np.stack([self.cache.source(track, s, 0, stop) for s in self.sources]))
        rng = self._stream(index)
        aligned = bool(self.aligned_prob) and rng.random() < self.aligned_prob
        vocal_track = self._draw_track(rng)
        if aligned:                             # the song as recorded: one track, one offset, one speed
            other_track = vocal_track
            shared_rate = random_factor(rng, self.vocal_speed) if self.vocal_speed else 1.0
        else:
            other_track = self._draw_track(rng) if rng.random() < self.remix_prob else vocal_track
        other_rate = None                       # drawn at the first other stem: the vocals' draws stay as without it
        shared_start = None                     # aligned: the first stem's offset, kept for the others
        stems = []
        for s in self.sources:
            track = vocal_track if s == "vocals" else other_track
            if aligned:
                rate = shared_rate
            elif s == "vocals":
                rate = random_factor(rng, self.vocal_speed) if self.vocal_speed else 1.0
            else:
                if other_rate is None:
                    if self.accomp_semitones:
                        other_rate = 2.0 ** (rng.randint(-self.accomp_semitones, self.accomp_semitones) / 12)
                    else:
                        other_rate = random_factor(rng, self.accomp_speed) if self.accomp_speed else 1.0
                rate = other_rate
            stretched = s == "vocals" and not aligned and self.vocal_stretch
            if stretched:
                tempo = random_factor(self._stream(index, self.STRETCH_STREAM), self.vocal_stretch)
            span = max(1, int(round(self.chunk * rate)))
            if shared_start is not None:
                start = shared_start
            elif self.weights is not None:
                start = random_offset_padded(self.cache.length(track), span, rng)
            else:
                start = random_offset(self.cache.length(track), span, rng)
            if aligned:
                shared_start = start
            if stretched:       # the offset drawn for the unstretched span (the main stream's draws as without
                long = max(1, int(round(span * tempo)))               # it), the stretched span centred on it
                audio = read_padded(self.cache, track, s, start + (span - long) // 2, long)
                audio = time_stretch(audio, span, tempo, self.cache.sample_rate)
            else:
                audio = read_padded(self.cache, track, s, start, span)
            if span != self.chunk:
                audio = varispeed(audio, self.chunk, rate)
            if s == "vocals" and self.vocal_bend and not aligned:     # an aligned excerpt stays in tune
                audio = pitch_bend(audio, self.vocal_bend, self.cache.sample_rate, rng)
            if s == "vocals" and self.vocal_formant:
                ratio = random_factor(self._stream(index, self.FORMANT_STREAM), self.vocal_formant)
                audio = formant_shift(audio, ratio, self.cache.sample_rate)
            if self.eq_db:
                audio = random_eq(audio, rng, self.eq_db)
            if s == "vocals" and self.vocal_reverb and rng.random() < self.vocal_reverb:
                audio = random_reverb(audio, rng, self.cache.sample_rate)
            audio = augment_gain(audio, rng, *self.gain)
            if s == "vocals" and self.vocal_atten_db:
                audio = audio * np.float32(10.0 ** (-rng.uniform(0.0, self.vocal_atten_db) / 20.0))
            stems.append(audio)
        return torch.from_numpy(np.stack(stems))


class Transforms:
    """Waveforms -> magnitudes for training: the STFT lives here, not in the model.

    ``__call__(sources)`` with sources ``(batch, n_sources, samples)`` returns
    ``mix_mag (batch, frames, bins)`` and ``source_mags (batch, n_sources, frames, bins)``,
    the mixture being the sum of the sources.
    """

    def __init__(self, stft: util.STFT):
        self.stft = stft

    def __call__(self, sources: torch.Tensor):
        mixture = sources.sum(dim=1)                                    # (B, samples)
        mix_mag = self.stft.stft(mixture).abs().transpose(-1, -2)       # (B, frames, bins)
        src_mag = self.stft.stft(sources).abs().transpose(-1, -2)       # (B, S, frames, bins)
        return mix_mag, src_mag

    # The course skeleton's transforms (``Data.Transforms.Rescale(...)`` etc.) on sample dicts
    # {'mixture': ..., 'vocal': ...}, composable with Compose below or torchvision's. Randomness
    # comes from numpy's global generator, as in the skeleton, so a student's
    # ``np.random.seed`` makes runs repeatable.
    class Rescale:
        """Scale every entry by one random factor in [minFactor, maxFactor]."""

        def __init__(self, minFactor, maxFactor):
            self.minFactor, self.maxFactor = minFactor, maxFactor

        def __call__(self, sample):
            gain = random_gain(np.random, self.minFactor, self.maxFactor)
            return {k: v * gain for k, v in sample.items()}

    class RandomShift:
        """Zero-pad the start of every entry by one random number of samples in [0, maxShift)."""

        def __init__(self, maxShift):
            self.maxShift = int(maxShift)

        def __call__(self, sample):
            shift = np.random.randint(self.maxShift) if self.maxShift > 0 else 0
            return {k: np.pad(v, [(shift, 0)] + [(0, 0)] * (v.ndim - 1)) for k, v in sample.items()}

    class MakeMagnitudeSpectrum:
        """Waveform (samples,) -> magnitudes (blockSize // 2 + 1, frames) float32 (util.STFT)."""

        def __init__(self, blockSize, hopSize, window="hamming"):
            self.stft = util.make_stft(blockSize, hopSize, window)

        def __call__(self, sample):
            return {k: self.stft.stft(torch.as_tensor(np.asarray(v, np.float32))).abs().numpy()
                    for k, v in sample.items()}

    class ShuffleFrameOrder:
        """One random permutation of the frames (last axis) of every entry."""

        def __call__(self, sample):
            order = np.random.permutation(next(iter(sample.values())).shape[-1])
            return {k: v[..., order] for k, v in sample.items()}


# ----------------------------------------------------------------------------------------------
# The course skeleton's interface (assignment HW5 Data.py), as an adapter over the above: a
# student's script written against the skeleton runs unchanged. Tracks come from find_tracks,
# audio from AudioCache (cached mono at the files' own rate), spectra from util.STFT.
# ----------------------------------------------------------------------------------------------
class DSD100Dataset(torch.utils.data.Dataset):
    """Whole songs as ``{'mixture': (samples,) float32, 'vocal': (samples,) float32}`` (mono; with
    ``mono=False`` ``(samples, channels)``), then ``transform(sample)`` if given.

    ``split``: 'Train', 'Valid' or 'Test' (the course layout), 'Dev' = 'Train' for the full
    DSD100; the older skeleton's ``testSet=True/False`` is accepted too. ``len()`` is the number
    of tracks x ``repetition``. Any layout of :func:`find_tracks` works (MUSDB, MIR-1K, ...).
    """

    def __init__(self, path, split="Train", mono=True, transform=None, repetition=1, testSet=None,
                 cache_dir=DEFAULT_CACHE):
        if testSet is not None:
            split = "Test" if testSet else "Train"
        key = {"train": "train", "dev": "train", "valid": "valid", "test": "test"}.get(str(split).lower())
        if key is None:
            raise UserError(f"split {split!r}: expected Train, Valid or Test")
        self.tracks = find_tracks(path, key)
        if not self.tracks:
            raise UserError(f"{path}: no tracks in the {split} split (only the course layout has Valid)")
        if repetition < 1:
            raise ValueError("repetition must be >= 1")
        first = self.tracks[0].stems["vocals"][0].path
        self.sample_rate = util.audio_info(first).samplerate
        self.cache = AudioCache(self.sample_rate, cache_dir)
        self.mono, self.transform, self.repetition = mono, transform, int(repetition)

    def __len__(self):
        return len(self.tracks) * self.repetition

    def __getitem__(self, idx):
        if not 0 <= idx < len(self):
            raise IndexError(idx)
        track = self.tracks[idx % len(self.tracks)]
        if self.mono:
            vocal = self.cache.source(track, "vocals")
            mixture = vocal + self.cache.source(track, "accompaniment")
        else:
            def load(refs):          # (samples, channels); a stem on one channel of its file (MIR-1K) keeps only it
                return sum(np.float32(r.scale) * (x if r.channel is None else x[r.channel:r.channel + 1]).T
                           for r in refs for x in [util.load_audio(r.path, self.sample_rate)[0]])
            vocal = load(track.stems["vocals"])
            mixture = vocal + load(track.stems["accompaniment"])
        sample = {"mixture": np.asarray(mixture, np.float32), "vocal": np.asarray(vocal, np.float32)}
        return self.transform(sample) if self.transform is not None else sample


class Compose:
    """``Compose([t1, t2, ...])(sample)`` = ``t2(t1(sample))``: torchvision's Compose, without torchvision."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, sample):
        for t in self.transforms:
            sample = t(sample)
        return sample


def collate_fn(batch):
    """List of sample dicts -> dict of float tensors ``(batch, ..., max_length)``, zero-padded
    along the last axis (frames for spectra, samples for waveforms)."""
    out = {}
    for key in batch[0]:
        arrays = [np.asarray(item[key], np.float32) for item in batch]
        longest = max(a.shape[-1] for a in arrays)
        stacked = torch.zeros(len(arrays), *arrays[0].shape[:-1], longest)
        for i, a in enumerate(arrays):
            stacked[i, ..., :a.shape[-1]] = torch.from_numpy(a)
        out[key] = stacked
    return out
