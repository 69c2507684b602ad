"""The one training loop every model uses: train() / valid() per epoch, best and last checkpoints.

``train_feedforward.py``, ``train_rnn.py`` and the seed systems' scripts only build a model and,
where needed, say how a batch becomes a loss; everything else is here:

* data: a dataset folder (or the generated demo set when none is given), validation carved
  from the training split by song with a fixed seed, random remixed chunks for training;
* Adam, a tqdm bar, the smoothed loss of the assignment's eq. (4) (eta = 0.99), a PNG of the
  loss curves and a JSON history, rewritten every epoch;
* ``<run>/last.pt`` every epoch (optimizer and RNG state, for ``--resume``) and the best
  validation model as ``<run>/<best_name>``, all written atomically (temp file + rename);
* a NaN loss stops the run with a message, keeping the best checkpoint;
* DistributedDataParallel under ``torchrun`` (gloo on CPU, NCCL on GPUs); rank 0 writes files.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

import Data
import Model
import demo_data
import util
from util import UserError

ROOT = Path(__file__).resolve().parent
SHIPPED_MODELS = ROOT / "models"


def add_common_args(parser: argparse.ArgumentParser, *, epochs=30, batch_size=16, chunk_seconds=2.0,
                    lr=1e-3, sample_rate=32000, n_fft=4096, hop=2048, loss="kl", loss_help=None,
                    loss_choices=None):
    """Arguments shared by every training script; defaults (and the --loss help and choices) per
    script (``loss_choices`` default: :data:`MASK_LOSSES`)."""
    g = parser.add_argument_group("data")
    g.add_argument("--data", type=Path, default=None,
                   help="dataset folder: DSD100, MUSDB18-HQ style or MIR-1K (default: generate and use "
                        f"the synthetic demo set in {demo_data.DEMO_ROOT.relative_to(ROOT)}/)")
    g.add_argument("--sample-rate", type=util.int_range(*util.SAMPLE_RATE_RANGE), default=sample_rate,
                   help="model sample rate in Hz, {}..{}; audio is resampled to it (default {})".format(
                       *util.SAMPLE_RATE_RANGE, sample_rate))
    g.add_argument("--n-fft", type=util.int_range(*util.N_FFT_RANGE), default=n_fft,
                   help="STFT size in samples, {}..{} (default {})".format(*util.N_FFT_RANGE, n_fft))
    g.add_argument("--hop", type=util.positive_int, default=hop,
                   help=f"STFT hop in samples, 1..n_fft/2 (default {hop})")
    g.add_argument("--window", choices=util.WINDOWS, default="hann",
                   help="STFT window: hann, or hamming as in the course's STFT (saved in the checkpoint; "
                        "separation follows it) (default hann)")
    g.add_argument("--chunk-seconds", type=util.positive_float, default=chunk_seconds,
                   help=f"length of each training excerpt in seconds, > 0 (default {chunk_seconds})")
    g.add_argument("--samples-per-epoch", type=util.positive_int, default=None,
                   help="training excerpts per epoch (default: about 1.5x the training audio's length "
                        "in excerpts)")
    g.add_argument("--valid-fraction", type=util.float_range(0, 1, True, True), default=0.1,
                   help="share of training songs held out for validation, by song, 0 < x < 1 (default 0.1; "
                        "ignored where the dataset has its own validation split)")
    g.add_argument("--valid-tracks", default=None, metavar="PATTERN",
                   help="validate on the training tracks whose names match this glob pattern and train on the "
                        "others, e.g. 'amy_*' to see how a recipe carries to a singer it never heard (MIR-1K; "
                        "a warning names any song it splits); default: the dataset's own validation split, else "
                        "--valid-fraction of the songs")
    g.add_argument("--valid-seconds", type=util.positive_float, default=30.0,
                   help="validate on the first N seconds of each validation track (default 30)")
    g.add_argument("--remix-prob", type=util.probability, default=0.5,
                   help="probability that an excerpt's accompaniment comes from another song (default 0.5)")
    g.add_argument("--sample-by", choices=Data.SAMPLE_BY, default="clip",
                   help="how training excerpts are drawn: clip = a track uniformly, then an offset inside it (short "
                        "tracks count more per second, and each track's first and last seconds less); second = a "
                        "track in proportion to its length and an offset that may run up to half an excerpt past "
                        "either end (zeros there), so the audio counts far more evenly, a track's ends about half as "
                        "often as its middle (default clip)")
    g.add_argument("--aligned-prob", type=util.probability, default=0.0,
                   help="probability that a training excerpt is the song as recorded: every stem from the same "
                        "track at the same offset (and --vocal-speed's speed for all), in time and in tune as "
                        "songs to separate are (default 0: each stem from its own random offset)")
    g.add_argument("--vocal-speed", type=util.float_range(0, 1), default=0.0,
                   help="augmentation: play each training vocal at a random speed in [1/(1+v), 1+v] "
                        "(pitch and tempo together; 0.1 = up to 1.65 semitones; default 0: off)")
    g.add_argument("--accomp-speed", type=util.float_range(0, 1), default=0.0,
                   help="augmentation: play each training excerpt's other stems at one random speed in "
                        "[1/(1+a), 1+a] (songs in other keys and tempos; default 0: off)")
    g.add_argument("--accomp-semitones", type=util.int_range(0, 12), default=0, metavar="K",
                   help="augmentation: transpose each training excerpt's other stems by a random whole number of "
                        "semitones in [-K, K] (one speed for all of them, pitch and tempo together: other keys "
                        "that stay in standard tuning; replaces --accomp-speed; default 0: off)")
    g.add_argument("--vocal-bend", type=util.float_range(0, 12), default=0.0, metavar="SEMITONES",
                   help="augmentation: each training vocal follows a slow random pitch curve (a new value every "
                        "0.25 s, pitch and tempo together) within +-SEMITONES, centred on the vocal's own pitch: "
                        "other melodies and vibratos (default 0: off)")
    g.add_argument("--vocal-stretch", type=util.float_range(0, 1), default=0.0,
                   help="augmentation: play each training vocal at a random tempo in [1/(1+t), 1+t], its pitch "
                        "kept (WSOLA; not in --aligned-prob's excerpts; 0.1 = +-10%%; default 0: off)")
    g.add_argument("--vocal-formant", type=util.float_range(0, 1), default=0.0,
                   help="augmentation: move each training vocal's formants by a random factor in [1/(1+f), 1+f], "
                        "its pitch kept (another vocal tract; 0.15 = +-15%%; default 0: off)")
    g.add_argument("--eq-db", type=util.float_range(0, 24), default=0.0,
                   help="augmentation: every training stem through its own random smooth EQ, gains within "
                        "+-D dB at 6 log-spaced frequencies (other microphones, voices and mixes; default 0: off)")
    g.add_argument("--vocal-reverb", type=util.probability, default=0.0,
                   help="augmentation: with this probability a training vocal goes through a random synthetic "
                        "room (RT60 0.2-1.2 s), the target keeping the reverb as produced vocal stems do "
                        "(default 0: off)")
    g.add_argument("--vocal-atten-db", type=util.float_range(0, 30), default=0.0,
                   help="augmentation: lower each training vocal by a random 0..A dB, so the model hears "
                        "voices below the accompaniment as in produced songs (MIR-1K mixes at 0 dB; default 0: off)")
    g.add_argument("--freq-mask", type=util.nonneg_int, nargs=2, default=(0, 0), metavar=("BANDS", "WIDTH"),
                   help="augmentation of a mask model's input (SpecAugment's frequency masking): in each training "
                        "excerpt BANDS bands of up to WIDTH bins of the normalised log-magnitudes are set to the "
                        "training mean in every frame; the masks and targets keep every bin (default 0 0: off)")
    g.add_argument("--level-norm", choices=Model.LEVEL_NORMS, default="frame",
                   help="input features: 'frame' divides each frame's magnitudes by their mean, so any "
                        "input level gives the same masks; 'none' is the first release's raw log1p "
                        "magnitude (default frame)")
    g.add_argument("--cache-dir", type=Path, default=Data.DEFAULT_CACHE,
                   help="where decoded audio is cached as .npy (default .cache/audio)")
    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", type=util.positive_int, default=epochs,
                   help=f"number of epochs, >= 1 (default {epochs})")
    g.add_argument("--batch-size", type=util.positive_int, default=batch_size,
                   help=f"excerpts per batch, >= 1 (default {batch_size})")
    g.add_argument("--lr", type=util.nonneg_float, default=lr, help=f"Adam learning rate, >= 0 (default {lr})")
    g.add_argument("--weight-decay", type=util.nonneg_float, default=0.0, help="Adam weight decay (default 0)")
    g.add_argument("--clip-grad", type=util.nonneg_float, default=5.0, metavar="NORM",
                   help="scale each step's gradients down to a total norm of at most NORM (0: off; default 5; "
                        "the DRNN's, U-Net's and frame model's are above it at almost every step, so each of their "
                        "gradients enters Adam at that norm; the RNN's and GRU's are below it)")
    g.add_argument("--loss", choices=sorted(loss_choices or MASK_LOSSES), default=loss,
                   help=loss_help or "training loss on magnitudes: kl = generalized KL D(target||estimate) of eq. (3), "
                                     "kl_reverse the swapped direction; or sdr = minus the SDR in dB, per excerpt, "
                                     "of the waveform resynthesised with the mixture's phase (default %(default)s)")
    g.add_argument("--lr-decay-patience", type=util.nonneg_int, default=0,
                   help="multiply the learning rate by --lr-decay-factor after this many epochs without "
                        "validation improvement (0: constant rate; default 0)")
    g.add_argument("--ema", type=util.float_range(0, 1, False, True), default=0.0, metavar="DECAY",
                   help="validate and save an exponential moving average of the weights (Polyak averaging; "
                        "decay per step, e.g. 0.998, warmed up as min(DECAY, (1+n)/(10+n)) after n steps; "
                        "default 0: off, the raw weights)")
    g.add_argument("--warmup-steps", type=util.nonneg_int, default=0, metavar="STEPS",
                   help="raise the learning rate linearly from lr/STEPS to lr over the first STEPS optimizer "
                        "steps (a fresh Adam's first steps move every weight by about lr, which knocks a "
                        "trained --init off its optimum; default 0: off)")
    g.add_argument("--lr-decay-factor", type=util.float_range(0, 1, True, True), default=0.3,
                   help="learning-rate decay factor (default 0.3)")
    g.add_argument("--valid-sdr", action=argparse.BooleanOptionalAction, default=True,
                   help="also measure the validation tracks' vocals GNSDR (BSS Eval v3) every epoch, saved in "
                        "history.json beside the loss (default on; the best checkpoint is still chosen by loss)")
    g.add_argument("--teacher", default=None, metavar="MODEL",
                   help="distillation: a trained mask model at the same sample rate (a checkpoint, its .onnx "
                        "export, or A.pt+B.pt for an ensemble) that estimates every stem but the last from each "
                        "training mixture; each of those stems becomes (1 - --teacher-weight) x the true stem + "
                        "--teacher-weight x the teacher's estimate, the last stem the mixture minus them (the "
                        "mixture stays the same). Validation stays against the true stems (default: no teacher)")
    g.add_argument("--teacher-weight", type=util.probability, default=0.5, metavar="W",
                   help="share of the teacher's estimate in the training targets, 0..1 (default 0.5)")
    g.add_argument("--teacher-semitones", type=util.nonneg_int, default=0, metavar="N",
                   help="the teacher's estimates averaged over each training mixture transposed by -N..N whole "
                        "semitones, as separate.py --semitones N does for a song (default 0: the mixture as it is)")
    g.add_argument("--patience", type=util.nonneg_int, default=0,
                   help="stop after this many epochs without validation improvement (0: never; default 0)")
    g.add_argument("--seed", type=util.nonneg_int, default=42, help="seed for torch, numpy and random (default 42)")
    g = parser.add_argument_group("run")
    g.add_argument("--run-dir", type=Path, default=None,
                   help="output folder (default runs/<model>-<date-time>, always a new folder)")
    g.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last.pt (weights, optimizer, RNG, history)")
    g.add_argument("--device", type=util.device_name, default=None,
                   help="cpu, cuda or cuda:N (default: cuda if available)")
    g.add_argument("--threads", type=util.threads_count, default=None,
                   help="torch CPU threads, 1..4 x cores (default: all cores)")
    g.add_argument("--workers", type=util.int_range(0, 64), default=0, help="DataLoader worker processes (default 0)")
    g.add_argument("--amp", action="store_true", help="mixed precision on CUDA")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


# Options that may differ when a run is continued with --resume; every other option is the run's own.
RESUME_MAY_CHANGE = ("epochs", "patience", "threads", "device", "resume", "quiet", "workers")
_PATH_OPTIONS = ("data", "run_dir", "cache_dir", "resume")


def run_train_args(run) -> dict:
    """The options a run was started with (from its last.pt)."""
    last = Path(run) / "last.pt"
    if not last.exists():
        raise UserError(f"{last}: nothing to resume (no last checkpoint)")
    return util.read_checkpoint(last).get("train_args") or {}


def parse_resumable(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """``parser.parse_args(argv)``; with ``--resume RUN`` the run's own options replace the
    defaults, and an option typed now that differs from the run's is refused in one line
    (except :data:`RESUME_MAY_CHANGE`), so a continued run never mixes two recipes."""
    args = parser.parse_args(argv)
    if args.hop > args.n_fft // 2:
        raise UserError(f"--hop {args.hop}: must be at most --n-fft / 2 ({args.n_fft // 2})")
    if getattr(args, "resume", None) is None:
        return args
    stored = run_train_args(args.resume)
    unset = object()
    parser.set_defaults(**{k: unset for k in vars(args)})
    typed = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not unset}  # given on the command line

    def same(key, a, b):
        if key in _PATH_OPTIONS:
            return a is None and b is None or a is not None and b is not None and \
                Path(a).resolve() == Path(b).resolve()
        norm = (lambda v: list(v) if isinstance(v, (list, tuple)) else v)
        return norm(a) == norm(b)

    for key, value in typed.items():
        if key in RESUME_MAY_CHANGE or key not in stored:
            continue
        if not same(key, value, stored[key]):
            flag = "--" + key.replace("_", "-")
            raise UserError(f"{flag} {value}: differs from the resumed run's {stored[key]!r}; --resume continues "
                            f"a run with its own options (only {', '.join('--' + k for k in RESUME_MAY_CHANGE[:4])} "
                            f"may change)")
    for key, value in stored.items():
        if key in vars(args) and not (key in RESUME_MAY_CHANGE and key in typed):
            setattr(args, key, Path(value) if key in _PATH_OPTIONS and value is not None else value)
    return args


def check_odd_window(frames: int) -> None:
    """One-line UserError unless ``frames`` (--context-frames / --widen-context) is a window the models
    take (:func:`Model.check_context_frames`, whose ValueError this turns into the CLI's message)."""
    try:
        Model.check_context_frames(frames)
    except ValueError:
        raise UserError(f"--context-frames / --widen-context {frames}: the window must be odd and at least 1 "
                        "(frame t and the same number of frames on each side)") from None


def init_from_checkpoint(model, path, load=None, args=None):
    """Start ``model`` from the weights (and input statistics) of a checkpoint of the same class
    and shape, e.g. a shipped ``models/<name>.pt`` whose run folder is gone. The optimizer starts
    fresh. ``load(state_dict)`` replaces ``model.load_state_dict`` where shapes may grow (e.g. a
    DRNN's ``load_widened``). One-line UserError when the checkpoint holds another class, shapes
    that do not fit or (given the run's ``args``) another sample rate or STFT: its weights were learnt
    for that front end. The checkpoint's input level normalisation is kept, and written into ``args``
    so that the run's records (and a --resume) say what the model does."""
    ckpt = util.read_checkpoint(path)
    if ckpt["model_class"] != util.class_name(model):
        raise UserError(f"{path}: --init needs a {util.class_name(model)} checkpoint, got {ckpt['model_class']}")
    if args is not None:
        stft = ckpt.get("stft") or {}
        have = {"--sample-rate": ckpt.get("sample_rate"), "--n-fft": stft.get("n_fft"), "--hop": stft.get("hop"),
                "--window": stft.get("window", "hann")}
        want = {"--sample-rate": args.sample_rate, "--n-fft": args.n_fft, "--hop": args.hop,
                "--window": getattr(args, "window", "hann")}
        differ = [k for k in have if have[k] is not None and have[k] != want[k]]
        if differ:
            raise UserError(f"{path}: --init checkpoint was trained with {' '.join(f'{k} {have[k]}' for k in differ)}, "
                            f"this run has {' '.join(f'{k} {want[k]}' for k in differ)}: give the checkpoint's")
    try:
        (load or model.load_state_dict)(ckpt["state_dict"])     # float16 shipped weights load into float32
    except (RuntimeError, ValueError) as err:
        lines = [x.strip() for x in str(err).strip().splitlines() if x.strip()]
        detail = next((x for x in lines if x.startswith(("size mismatch", "Missing", "Unexpected"))), lines[0])
        raise UserError(f"{path}: --init checkpoint does not match this model's shapes "
                        f"({detail[:160]}); give the same model options") from None
    if "level_norm" in (ckpt.get("features") or {}):
        model.set_level_norm(ckpt["features"]["level_norm"])
        if args is not None and hasattr(args, "level_norm"):
            args.level_norm = ckpt["features"]["level_norm"]


# ----------------------------------------------------------------------------------------------
# Default batch -> loss for mask models
# ----------------------------------------------------------------------------------------------
def mask_examples(transforms: Data.Transforms):
    """``examples(stems, model)``: (B, S, samples) -> one example (mix_mag (B, T, F),
    source_mags (B, S, T, F))."""
    def examples(stems, model):
        yield transforms(stems)
    return examples


def mask_loss(model, example, source_index, loss_fn):
    """Magnitude loss between each named source and mask * mixture. ``source_index``: where the
    model's sources are among the dataset's stems."""
    mix_mag, src_mag = example
    masks = model(mix_mag)                                   # (B, S', T, F)
    estimate = masks * mix_mag.unsqueeze(1)                  # (B, S', T, F)
    target = src_mag[:, source_index]                        # (B, S', T, F)
    return loss_fn(target, estimate)


SDR_FLOOR = 1e-7       # per-sample power added to signal and error in the sdr loss (-70 dB re full scale)
MASK_LOSSES = (*Model.LOSSES, "sdr")


def sdr_loss(estimate, target):
    """Minus the mean over every leading index (excerpt, source) of 10 log10(|s|^2 / |s - est|^2)
    in dB over the last axis (samples): every excerpt counts the same whatever its level, as in
    the evaluation's per-clip SDR. Both energies get a floor of ``SDR_FLOOR`` per sample, so a
    silent source asks for a small error instead of a division by zero."""
    floor = SDR_FLOOR * target.shape[-1]
    ratio = (target.pow(2).sum(-1) + floor) / ((estimate - target).pow(2).sum(-1) + floor)
    return -10 * torch.log10(ratio).mean()


def mask_sdr_examples(stft: util.STFT):
    """``examples(stems, model)`` for ``--loss sdr``: (B, S, samples) -> one example (mix_mag
    (B, T, F), the mixture's complex STFT (B, F, T), the stems)."""
    def examples(stems, model):
        spec = stft.stft(stems.sum(1))
        yield spec.abs().transpose(-1, -2), spec, stems
    return examples


def masked_sources(model, mix_mag, mix_spec, stft: util.STFT, length: int) -> torch.Tensor:
    """(B, S', length): each of ``model``'s masks on ``mix_mag`` (B, T, F) times the mixture's
    STFT ``mix_spec`` (B, F, T), resynthesised (the mixture's phase, inverse STFT and overlap-add,
    as separation does)."""
    masks = model(mix_mag).transpose(-1, -2)                 # (B, S', F, T)
    return stft.istft(masks * mix_spec.unsqueeze(1), length)


def mask_sdr_loss(model, example, source_index, stft: util.STFT):
    """:func:`sdr_loss` of each named source against :func:`masked_sources`."""
    mix_mag, mix_spec, stems = example
    return sdr_loss(masked_sources(model, mix_mag, mix_spec, stft, stems.shape[-1]), stems[:, source_index])


# ----------------------------------------------------------------------------------------------
def _distributed():
    """(rank, world_size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


def resolve_run_dir(args, name) -> Path:
    if args.resume is not None:
        run = Path(args.resume)
        if not (run / "last.pt").exists():
            raise UserError(f"{run / 'last.pt'}: nothing to resume (no last checkpoint)")
        return run
    run = args.run_dir or ROOT / "runs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = Path(run)
    if run.resolve() == SHIPPED_MODELS.resolve() or SHIPPED_MODELS.resolve() in run.resolve().parents:
        raise UserError(f"{run}: is the shipped-models folder; training never writes there")
    if run.exists() and any(run.iterdir()):
        if not (run / "last.pt").exists():
            raise UserError(f"{run}: run folder exists and is not empty, with no last.pt to resume (a run stopped in "
                            "its first epoch?): delete it or give another --run-dir")
        raise UserError(f"{run}: run folder exists and is not empty (use --resume {run} or another --run-dir)")
    return run


RUN_CLAIM = ".claimed"       # a fresh run's marker: created exclusively, so two trainings never share a folder


def claim_run_dir(run: Path, default_name: bool) -> Path:
    """Create a fresh run's folder and claim it with an exclusively created marker: a second training that
    started at the same time into the same folder stops with a one-line error (one with a default,
    per-second name moves on to ``-2``, ``-3``, ...) instead of writing over the first one's files."""
    base = run
    for n in range(2, 1000):
        if not (default_name and run.exists() and any(run.iterdir())):
            run.mkdir(parents=True, exist_ok=True)
            try:
                os.close(os.open(run / RUN_CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                return run
            except FileExistsError:
                if not default_name:
                    raise UserError(f"{run}: another training started in this run folder meanwhile "
                                    "(give each its own --run-dir)") from None
        run = base.with_name(f"{base.name}-{n}")
    raise UserError(f"{base}: no free run folder name")


def prepare_data(args, sources):
    """Training/validation datasets for ``sources`` from ``args.data`` (or the demo set)."""
    root = args.data
    if root is None:
        root = demo_data.make_demo_dataset(demo_data.DEMO_ROOT)
    tracks = Data.find_tracks(root, "train")
    if not tracks:
        raise UserError(f"{root}: no training tracks found")
    valid_tracks = Data.find_tracks(root, "valid")           # the dataset's own split, if it has one
    if args.valid_tracks:
        import fnmatch
        chosen = {t.name for t in tracks if fnmatch.fnmatchcase(t.name, args.valid_tracks)}
        if not chosen or len(chosen) == len(tracks):
            raise UserError(f"--valid-tracks {args.valid_tracks!r} matches {len(chosen)} of {len(tracks)} "
                            f"training tracks: it must match some, not all")
        if valid_tracks:
            print(f"note: --valid-tracks validates on {len(chosen)} training tracks; the dataset's own "
                  f"validation split ({len(valid_tracks)} tracks) is not used", file=sys.stderr)
        train_tracks = [t for t in tracks if t.name not in chosen]
        valid_tracks = [t for t in tracks if t.name in chosen]
        split = sorted({Data.song_key(t) for t in train_tracks} & {Data.song_key(t) for t in valid_tracks})
        if split:
            print(f"warning: --valid-tracks {args.valid_tracks!r} puts clips of {len(split)} songs on both sides "
                  f"({', '.join(split[:3])}{', ...' if len(split) > 3 else ''}): validation is not on unseen "
                  f"songs (e.g. 'amy_1_*' takes one whole song)", file=sys.stderr)
    elif valid_tracks:
        train_tracks = tracks
    else:
        train_tracks, valid_tracks = Data.split_train_valid(tracks, args.valid_fraction, seed=42,
                                                            group=Data.song_key)
    cache = Data.AudioCache(args.sample_rate, args.cache_dir)
    chunk = int(args.chunk_seconds * args.sample_rate)
    total = sum(cache.length(t) for t in tqdm(train_tracks, desc="decoding", disable=args.quiet, leave=False))
    spe = args.samples_per_epoch or max(args.batch_size, int(1.5 * total / chunk))
    train_set = Data.SeparationDataset(train_tracks, cache, sources, train=True, chunk_samples=chunk,
                                       samples_per_epoch=spe, remix_prob=args.remix_prob, seed=args.seed,
                                       vocal_speed=args.vocal_speed, eq_db=args.eq_db,
                                       vocal_reverb=args.vocal_reverb, vocal_atten_db=args.vocal_atten_db,
                                       vocal_formant=args.vocal_formant, accomp_speed=args.accomp_speed,
                                       aligned_prob=args.aligned_prob, vocal_bend=args.vocal_bend,
                                       accomp_semitones=args.accomp_semitones, sample_by=args.sample_by,
                                       vocal_stretch=args.vocal_stretch)
    valid_set = Data.SeparationDataset(valid_tracks, cache, sources, train=False,
                                       chunk_samples=int(args.valid_seconds * args.sample_rate))
    return root, train_set, valid_set


def set_input_stats(model, train_set, transforms, n=64):
    """Per-bin mean/std of the model's log-magnitude features over ``n`` training excerpts."""
    mags = [transforms(train_set[i][None])[0][0] for i in range(min(n, len(train_set)))]
    model.set_input_stats(torch.cat(mags))


def plot_history(history, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if history["smoothed"]:
        ax.plot(history["smoothed"], label="training (smoothed, eta=0.99)")
    if history["valid"]:
        steps = [e["step"] for e in history["valid"]]
        ax.plot(steps, [e["loss"] for e in history["valid"]], "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel(f"loss ({history.get('loss', 'kl')})")
    ax.set_yscale(util.loss_axis_scale(list(history["smoothed"]) + [e["loss"] for e in history["valid"]]))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    util.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


class Teacher:
    """``--teacher``: a trained mask model whose estimates, blended with the true stems, become the
    training targets (knowledge distillation). Called on a batch of stems (B, S, samples) of the
    dataset's order, it returns stems that still sum to the same mixture: each stem but the last is
    ``(1 - weight) x`` the true one ``+ weight x`` the teacher's estimate (its masks on the mixture's
    magnitude, with the mixture's phase, resynthesised by its own STFT), the last the mixture minus
    them. With ``semitones`` N the estimates are the mean over the mixture played 2^(k/12) times
    faster, k = -N..N, each played back (:func:`separate.transposed_mean`, the batch as channels).
    Only this project's checkpoints load (:func:`util.load_model`)."""

    def __init__(self, path: str, weight: float, stems: tuple, sample_rate: int, device, semitones: int = 0):
        model, self.stft, rate, _ = util.load_model(path, device)
        if getattr(model, "domain", "spectrogram") != "spectrogram":
            raise UserError(f"{path}: --teacher takes a mask model (this one predicts waveforms)")
        if rate != sample_rate:
            raise UserError(f"{path}: the teacher works at {rate} Hz, the training at {sample_rate} Hz "
                            "(--sample-rate): they must be the same")
        missing = [s for s in stems[:-1] if s not in model.sources]
        if missing:
            raise UserError(f"{path}: the teacher does not estimate {', '.join(missing)} (it estimates "
                            f"{', '.join(model.sources)}; it must estimate every stem but {stems[-1]})")
        self.model = model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        import separate
        separate.apply_runtime(model, None, device)     # a stacked hourglass's masks on onnxruntime when installed
        self.weight = weight
        self.order = [list(model.sources).index(s) for s in stems[:-1]]
        self.semitones = semitones

    def _estimate(self, mix: torch.Tensor) -> torch.Tensor:
        spec = self.stft.stft(mix)                                               # (B, F, T)
        return masked_sources(self.model, spec.abs().transpose(-1, -2), spec, self.stft, mix.shape[-1])

    @torch.no_grad()
    def __call__(self, stems: torch.Tensor) -> torch.Tensor:
        mix = stems.sum(1)
        if not self.semitones:
            estimate = self._estimate(mix)                                       # (B, S', n)
        else:
            import separate

            def run(x: np.ndarray) -> np.ndarray:                                # (B, n') -> (S', B, n')
                return self._estimate(torch.from_numpy(x).to(mix.device)).transpose(0, 1).cpu().numpy()

            mean = separate.transposed_mean(run, mix.cpu().numpy(), separate.transposition_speeds(self.semitones))
            estimate = torch.from_numpy(mean).transpose(0, 1).to(mix.device)
        head = (1 - self.weight) * stems[:, :-1] + self.weight * estimate[:, self.order]
        return torch.cat([head, (mix - head.sum(1)).unsqueeze(1)], 1)


def train(args, name: str, best_name: str, build_model, *, examples=None, compute_loss=None,
          after_build=None, on_epoch=None):
    """Run a whole training. ``build_model(n_bins, args)`` -> model; ``examples(stems, model)``
    turns a batch of stems into minibatch examples; ``compute_loss(model, example, source_index)``
    -> scalar tensor, ``source_index`` being the positions of the model's sources among the
    dataset's stems (default: :func:`mask_examples` and :func:`mask_loss` with ``--loss``, or
    :func:`mask_sdr_examples` and :func:`mask_sdr_loss` with ``--loss sdr``).
    ``after_build(model, args)`` runs once on a fresh model (e.g. ``--init`` weights).
    ``on_epoch(epoch, train_set)`` runs before each epoch (e.g. a curriculum changing
    ``train_set.chunk``). Returns the run folder."""
    rank, world = _distributed()
    util.keep_freed_memory()
    util.flush_denormals()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = util.get_device(args.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    run = resolve_run_dir(args, name)
    util.seed_everything(args.seed)
    stft = util.make_stft(args.n_fft, args.hop, args.window)
    transforms = Data.Transforms(stft)

    model = build_model(stft.n_bins, args)
    if isinstance(model, Model.MaskModel):
        model.set_level_norm(args.level_norm)
        model.feature_masks = tuple(args.freq_mask)
    elif any(args.freq_mask):
        raise UserError(f"--freq-mask: the {name} model takes a waveform, not magnitudes to mask")
    all_sources = Data.dataset_sources(model.sources)
    source_index = [all_sources.index(s) for s in model.sources]
    if compute_loss is None and args.loss == "sdr":
        assert examples is None, "--loss sdr makes its own examples (whole excerpts with the mixture's STFT)"
        examples = mask_sdr_examples(stft)
        compute_loss = functools.partial(mask_sdr_loss, stft=stft)
    examples = examples or mask_examples(transforms)
    compute_loss = compute_loss or functools.partial(mask_loss, loss_fn=Model.LOSSES[args.loss])
    # (a script that passes compute_loss may define losses of its own, e.g. the Wave-U-Net's sdr)

    if args.teacher_semitones and not args.teacher:
        raise UserError("--teacher-semitones: it averages a teacher's estimates; give the teacher with --teacher")
    teacher = Teacher(args.teacher, args.teacher_weight, all_sources, args.sample_rate, device,
                      args.teacher_semitones) if args.teacher else None   # before the data: a bad teacher fails at once
    data_root, train_set, valid_set = prepare_data(args, all_sources)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=args.lr_decay_factor, patience=max(args.lr_decay_patience - 1, 0),
        threshold=0.0, threshold_mode="abs") if args.lr_decay_patience else None   # improvement = the loop's best
    history = {"name": name, "loss": args.loss, "train": [], "smoothed": [], "valid": [], "epoch_time": [],
               "best_epoch": None, "best_valid": math.inf,
               "valid_tracks": [t.name for t in valid_set.tracks]}
    start_epoch = 1
    if args.resume is not None:
        ckpt = util.read_checkpoint(run / "last.pt")
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler"):
            scheduler.load_state_dict(ckpt["scheduler"])
        history = ckpt["history"]
        start_epoch = ckpt["epoch"] + 1
        util.set_rng_state(ckpt["rng"])
    else:
        set_input_stats(model, train_set, transforms)
        if after_build is not None:
            after_build(model, args)
    model.to(device)
    train_model = model
    sampler = None
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
        sampler = torch.utils.data.distributed.DistributedSampler(train_set, shuffle=False)
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, sampler=sampler,
                                         num_workers=args.workers, drop_last=True)
    scaler = torch.amp.GradScaler("cuda", enabled=args.amp and device.type == "cuda")
    train_args = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    train_args["data"] = str(data_root)
    if rank == 0:
        if args.resume is None:
            run = claim_run_dir(run, default_name=args.run_dir is None)
        print(f"run folder: {run}  |  {type(model).__name__}: {Model.count_parameters(model):,} parameters  |  "
              f"{len(train_set.tracks)} train / {len(valid_set.tracks)} valid tracks  |  device {device}",
              file=sys.stderr)

    ema = WeightAverage(model, args.ema, ckpt.get("ema") if args.resume is not None else None) \
        if args.ema else None
    averaged = ema.swapped if ema is not None else contextlib.nullcontext   # the model as validated and saved

    def save(path, epoch, valid_loss, full):
        extra = {"epoch": epoch, "valid_loss": valid_loss, "train_args": train_args,
                 "train_seconds": float(sum(history["epoch_time"])),
                 "history_summary": {"best_epoch": history["best_epoch"], "best_valid": history["best_valid"]}}
        if full:
            extra.update(optimizer=optimizer.state_dict(), rng=util.rng_state(), history=history,
                         scheduler=scheduler.state_dict() if scheduler is not None else None)
            if ema is not None:                 # last.pt: the raw weights to train on, the average beside
                extra["ema"] = ema.state()
        with contextlib.nullcontext() if full else averaged():
            util.save_checkpoint(path, model, stft, args.sample_rate, **extra)

    # epochs since the best (a resumed run keeps counting toward --patience where it stopped)
    stale = history["valid"][-1]["epoch"] - history["best_epoch"] if history["best_epoch"] is not None else 0
    smoothed = history["smoothed"][-1] if history["smoothed"] else None
    for epoch in range(start_epoch, args.epochs + 1):
        t0 = time.time()
        train_set.epoch = epoch
        if on_epoch is not None:
            on_epoch(epoch, train_set)
        # ---- train
        train_model.train()
        losses = []
        bar = tqdm(loader, desc=f"epoch {epoch}/{args.epochs}", disable=args.quiet or rank != 0, leave=False)
        for stems in bar:
            stems = stems.to(device)
            if teacher is not None:
                stems = teacher(stems)
            for example in examples(stems, model):
                with torch.autocast(device.type, enabled=scaler.is_enabled()):
                    loss = compute_loss(train_model, example, source_index)
                if not torch.isfinite(loss):
                    best = run / best_name
                    raise UserError(f"loss became {loss.item()} at epoch {epoch}; stopped. "
                                    f"Best checkpoint kept: {best if best.exists() else 'none yet'}")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                if args.clip_grad:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
                with warmed_up(optimizer, len(history["smoothed"]), args.warmup_steps):
                    scaler.step(optimizer)
                scaler.update()
                if ema is not None:
                    ema.update()
                value = loss.item()
                losses.append(value)
                smoothed = value if smoothed is None else 0.99 * smoothed + 0.01 * value  # eq. (4)
                history["smoothed"].append(smoothed)
                bar.set_postfix(loss=f"{smoothed:.4g}")
        # ---- validate (the weight average, with --ema)
        with averaged():
            valid_loss = valid(model, valid_set, examples,
                               functools.partial(compute_loss, source_index=source_index), device)
            entry = {"epoch": epoch, "step": len(history["smoothed"]), "loss": valid_loss}
            if args.valid_sdr and "vocals" in getattr(model, "sources", ()):
                entry["gnsdr"] = valid_sdr(model, valid_set, stft, device)
        history["train"].append(float(np.mean(losses)))
        history["valid"].append(entry)
        history["epoch_time"].append(time.time() - t0)
        history.setdefault("lr", []).append(optimizer.param_groups[0]["lr"])
        if scheduler is not None:
            scheduler.step(valid_loss)
        improved = valid_loss < history["best_valid"]
        if improved:
            history["best_valid"], history["best_epoch"] = valid_loss, epoch
            stale = 0
        else:
            stale += 1
        if rank == 0:
            if improved:
                save(run / best_name, epoch, valid_loss, full=False)
            save(run / "last.pt", epoch, valid_loss, full=True)
            util.write_json(run / "history.json", {"train_args": train_args, **history})
            plot_history(history, run / "loss.png")
            sdr_text = f"  valid GNSDR {entry['gnsdr']:.2f} dB" if "gnsdr" in entry else ""
            print(f"epoch {epoch:3d}  train {history['train'][-1]:.4f}  valid {valid_loss:.4f}{sdr_text}"
                  f"{'  *best*' if improved else ''}  ({history['epoch_time'][-1]:.1f} s)", file=sys.stderr)
        if args.patience and stale >= args.patience:
            if rank == 0:
                print(f"no improvement for {stale} epochs: stopping", file=sys.stderr)
            break
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return run


@contextlib.contextmanager
def warmed_up(optimizer, step: int, warmup_steps: int):
    """Around one optimizer step (``step`` = steps taken before it): learning rates scaled by
    (step + 1) / warmup_steps while step < warmup_steps, restored afterwards, so the plateau
    scheduler and checkpoints only ever see the full rates."""
    if step >= warmup_steps:
        yield
        return
    peaks = [g["lr"] for g in optimizer.param_groups]
    for g in optimizer.param_groups:
        g["lr"] *= (step + 1) / warmup_steps
    try:
        yield
    finally:
        for g, lr in zip(optimizer.param_groups, peaks):
            g["lr"] = lr


class WeightAverage:
    """Exponential moving average of a model's floating-point weights and buffers (``--ema``).
    :meth:`update` after each optimizer step; ``with swapped():`` the model holds the average
    (to validate or save it) and gets its own weights back afterwards. ``live`` holds the model's
    averaged tensors; buffers that a module lists in ``unaveraged_buffers`` (e.g. the DRNN's
    power-iteration vectors, which must stay unit directions) are left out: the average uses the
    trained model's."""

    def __init__(self, model, decay: float, state: dict | None = None):
        self.decay = decay
        # the model's own parameters and buffers, held once (their names are the state_dict's), so
        # the per-step update builds no state dict
        not_averaged = {f"{prefix}.{b}" if prefix else b
                        for prefix, m in model.named_modules() for b in getattr(m, "unaveraged_buffers", ())}
        self.live = {k: v for k, v in [*model.named_parameters(), *model.named_buffers()]
                     if v.is_floating_point() and k not in not_averaged}
        self.avg = {k: v.detach().clone() for k, v in self.live.items()}
        self.steps = 0
        if state is not None:
            self.steps = int(state["steps"])
            for k, v in state["avg"].items():
                if k in self.avg:               # (an earlier run's average also held live buffers)
                    self.avg[k].copy_(v)

    @torch.no_grad()
    def update(self):
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for k, v in self.live.items():
            self.avg[k].lerp_(v, 1 - d)

    def state(self) -> dict:
        return {"steps": self.steps, "avg": {k: v.clone() for k, v in self.avg.items()}}

    @contextlib.contextmanager
    @torch.no_grad()
    def swapped(self):
        own = {k: v.clone() for k, v in self.live.items()}
        for k, v in self.live.items():
            v.copy_(self.avg[k])
        try:
            yield
        finally:
            for k, v in self.live.items():
                v.copy_(own[k])


@torch.no_grad()
def valid_sdr(model, valid_set, stft, device) -> float:
    """GNSDR of the vocals on the validation tracks: BSS Eval v3 (bss_eval.py = mir_eval), two
    sources, whole tracks (as cropped by --valid-seconds), length-weighted mean of SDR - SDR(mixture)."""
    import bss_eval
    import separate

    model.eval()
    vocal = list(valid_set.sources).index("vocals")
    nsdr, weights = [], []
    for i in range(len(valid_set)):
        stems = valid_set[i].numpy().astype(np.float64)                     # (S, N)
        refs = np.stack([stems[vocal], stems.sum(0) - stems[vocal]])         # vocals, the rest
        if (np.abs(refs).max(1) == 0).any() or refs.shape[1] < stft.n_fft:
            continue
        mixture = stems.sum(0, keepdims=True).astype(np.float32)             # (1, N)
        est_v = separate.separate_array(model, stft, mixture, device)[list(model.sources).index("vocals"), 0]
        est = np.stack([est_v, mixture[0] - est_v]).astype(np.float64)
        if (np.abs(est).max(1) == 0).any():
            continue
        sdr = bss_eval.bss_eval_sources(refs, est, compute_permutation=False)[0][0]
        base = bss_eval.bss_eval_sources(refs, np.stack([mixture[0], mixture[0]]).astype(np.float64),
                                         compute_permutation=False)[0][0]
        nsdr.append(sdr - base)
        weights.append(refs.shape[1])
    return float(np.average(nsdr, weights=weights)) if nsdr else float("nan")


@torch.no_grad()
def valid(model, valid_set, examples, compute_loss, device) -> float:
    """Mean validation loss over tracks (whole tracks, batch of one, deterministic)."""
    model.eval()
    losses = []
    for i in range(len(valid_set)):
        stems = valid_set[i][None].to(device)
        losses += [compute_loss(model, ex).item() for ex in examples(stems, model)]
    return float(np.mean(losses))
