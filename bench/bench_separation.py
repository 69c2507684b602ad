#!/usr/bin/env python3
"""Benchmark separation speed, peak memory and training throughput; PRINTS a table (not a test).

Everything runs in ONE process on ONE machine so that the ratios are comparable:

1. Speed, as a multiple of real time (song seconds / wall seconds, median of ``--repeats``), on a
   3-minute 44.1 kHz stereo song (a real excerpt of ``../shared/data/music_excerpts`` tiled to
   3 minutes when that folder exists, else a deterministic synthetic song: harmonic notes, bass
   and noise), with ``torch.set_num_threads(--threads)`` (default 2):

   * floors: bare ``torch.stft`` + ``torch.istft`` (``util.STFT``) of the model-rate signal, mono
     and stereo; and an *identity-mask* model (forward returns ones) through the same engine paths
     as the real models, which is the exact non-model work of the pipeline;
   * the feedforward model (``Model.FrameMaskNet``) and the RNN (``Model_RNN.RNNMaskNet``,
     bidirectional and unidirectional), each through
       (i)  the in-memory path ``separate.separate_array`` on the model-rate mono mixture, and
       (ii) the file-to-file path ``separate.separate_file`` (decode the 44.1 kHz WAV, STFT at
            44.1 kHz, mask computed on the model's grid and mapped back (full band, never
            resampled), ISTFT, write vocals + accompaniment as 16-bit WAV);
   * Open-Unmix (``openunmix`` package, umxhq sizes, RANDOM weights) on the 44.1 kHz stereo song:
     ``openunmix.umxhq(targets=["vocals"], niter=0, pretrained=False)``, i.e. its ``Separator``
     (torch STFT 4096/1024, one OpenUnmix model, mixture-phase reconstruction, ISTFT) for ONE
     target, whole song in one call under ``torch.no_grad()``.
   Measurements are interleaved (repeat r runs every configuration once) so that load drifts
   from other jobs hit all configurations alike; the median is reported with min..max.

2. Peak memory of the CLI on a 60-minute 44.1 kHz stereo 16-bit WAV (written in blocks to a temp
   folder): ``separate_feedforward.py`` / ``separate_RNN.py --model <ckpt> --threads N`` run in a
   subprocess as a user runs them (the model's default ``--semitones``: 5 or 9 separations averaged),
   and the bidirectional RNN once more with ``--semitones 0`` (one separation); peak RSS from
   ``os.wait4`` (that child's own ``ru_maxrss``), plus wall time.

3. Training throughput in frames/s of one optimisation step (forward, generalized-KL loss as in
   ``training.mask_loss``, backward, gradient clipping at 5 as in ``training.train``, Adam step)
   at the training batch shapes: feedforward 1 x 1024 frames, RNN 16 x 250 frames. Data loading
   and the STFT of the batch are NOT included.

4. ``--only hourglass`` (not in the default run: one step at Park's size takes minutes): the cost
   of one training step (forward, L1 on the masked magnitude, backward, clipping, Adam) of the
   stacked hourglass (``Model_Hourglass``) at Park et al.'s size (256 features, 4 stacks,
   4 x 64 frames, 513 bins) and at the CPU sizes trained here (16 and 32 features, 2 stacks), beside
   the shipped U-Net's architecture at its training shape (8 x 128 frames): seconds per step,
   frames per second, hours per 10,000 steps (at ``--threads``), and the cost per frame relative to the U-Net's.

Models: ``models/savedModel_feedforward_best.pt`` and ``models/savedModel_RNN_best.pt`` when they
exist, else (and for the RNN direction the shipped checkpoint lacks) models with the shipped
configuration and random weights: ``FrameMaskNet(513, (1024, 512), 256)`` and
``RNNMaskNet(513, (1024, 512), 256, rnn_hidden=256)``, STFT 1024/256 at 16 kHz, saved to temp
checkpoints for the CLI runs.

Usage (from the repository root)::

    python bench/bench_separation.py            # full run (~3 min on 2 idle cores; 35+ min on busy ones)
    python bench/bench_separation.py --quick    # 30 s song, 5-minute memory test, 1 repeat
    python bench/bench_separation.py --only speed --repeats 3 --no-umx
    python bench/bench_separation.py --only hourglass --repeats 2 --threads 1   # ~8 min
    python bench/bench_separation.py --omp-passive   # OMP_WAIT_POLICY=PASSIVE (see below)

Shared CPU: the run starts and ends with a "contention probe" (a bidirectional LSTM over 1024
frames at 1 thread and at --threads threads) and the load average. When other busy processes
share the cores, OpenMP's default spin-waiting makes multi-threaded small ops (the LSTM time
steps above all) many times slower and very erratic; ``--omp-passive`` sets
OMP_WAIT_POLICY=PASSIVE (threads sleep at barriers) for this process and the CLI children. It is a
diagnostic, not a fix: measured on this project's 2-vCPU machine, PASSIVE made the 2-thread
probe ~6x faster under load (383 -> 68 ms) but ~10x slower when idle (23 -> 262 ms).

Open-Unmix: ``pip install openunmix --no-deps`` (its only other missing dependency, torchaudio,
must NOT be installed next to this CPU torch build); this script puts a stub ``torchaudio``
module into ``sys.modules`` before importing it (only its file I/O uses torchaudio).
"""
from __future__ import annotations

import argparse
import glob
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# --omp-passive: OpenMP's wait policy is read when torch loads, so set it and restart first.
if "--omp-passive" in sys.argv[1:] and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

import child_usage  # noqa: E402
import Model  # noqa: E402
import Model_Hourglass  # noqa: E402
import Model_RNN  # noqa: E402
import Model_UNet  # noqa: E402
import onnx_export  # noqa: E402
import separate  # noqa: E402
import util  # noqa: E402

EXCERPTS = REPO.parent / "shared" / "data" / "music_excerpts"
SHIPPED_FF = REPO / "models" / "savedModel_feedforward_best.pt"
SHIPPED_RNN = REPO / "models" / "savedModel_RNN_best.pt"
SR = 44100
MB = 1e6

# targets
FF_SPEED, RNN_SPEED = 300.0, 100.0      # x real time on --threads threads
VS_UMX = 2.0                            # times faster than Open-Unmix
FLOOR_RATIO = 3.0                       # model-path time / floor time <=
MEMORY_LIMIT_MB = 1000.0                # peak RSS < 1 GB


def loadavg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def log(msg=""):
    print(msg, flush=True)


# ----------------------------------------------------------------------------------------------
# Test audio
# ----------------------------------------------------------------------------------------------
class Song:
    """A deterministic 44.1 kHz stereo signal of any length: ``block(start, n)`` -> (2, n) float32.

    A real excerpt (the longest ``mixture.wav`` of ``music_excerpts``) tiled end to end when the
    folder exists, else a synthetic song (harmonic notes with decays, a bass line, noise)."""

    NOTES = [0, 3, 5, 7, 10, 12, 10, 7, 5, 3, 0, -2, 0, 5, 7, 3]
    BASS = [0, 0, 5, 7]

    def __init__(self, synthetic=False):
        self.excerpt, self.source = None, "synthetic (harmonic notes + bass + noise)"
        files = sorted(glob.glob(str(EXCERPTS / "*" / "mixture.wav"))) if not synthetic else []
        if files:
            best = max(files, key=lambda f: (sf.info(f).frames, f))
            data, sr = sf.read(best, dtype="float32", always_2d=True)
            if sr == SR and data.shape[1] == 2:
                self.excerpt = np.ascontiguousarray(data.T)
                self.source = (f"real excerpt tiled: {Path(best).parent.name}/mixture.wav "
                               f"({data.shape[0] / sr:.1f} s)")

    def block(self, start: int, n: int) -> np.ndarray:
        if self.excerpt is not None:
            idx = (start + np.arange(n)) % self.excerpt.shape[1]
            return self.excerpt[:, idx]
        t = (start + np.arange(n)) / SR
        note = np.floor(t / 0.5).astype(np.int64)
        tn = t - note * 0.5
        f0 = 220.0 * 2.0 ** (np.take(self.NOTES, note % len(self.NOTES)) / 12)
        phase = 2 * np.pi * f0 * tn
        voice = sum(np.sin(h * phase) / h for h in range(1, 7)) * np.exp(-2.0 * tn)
        fb = 55.0 * 2.0 ** (np.take(self.BASS, (note // 4) % len(self.BASS)) / 12)
        bass = np.sin(2 * np.pi * fb * t)
        noise = np.random.default_rng(1234 + start).standard_normal((2, n)) * 0.02
        out = np.stack([0.25 * voice + 0.3 * bass, 0.3 * voice + 0.25 * bass]) + noise
        return out.astype(np.float32)

    def write_wav(self, path: Path, seconds: float, block_seconds=10.0):
        """16-bit stereo WAV written in blocks (the generator itself stays small)."""
        n_total, block = int(round(seconds * SR)), int(block_seconds * SR)
        with sf.SoundFile(str(path), "w", SR, 2, subtype="PCM_16", format="WAV") as f:
            for start in range(0, n_total, block):
                f.write(np.clip(self.block(start, min(block, n_total - start)).T, -1, 1))
        return n_total


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------
class IdentityMask(Model.MaskModel):
    """Forward returns an all-ones mask of the right shape: the pipeline's non-model floor."""

    context = "frame"

    def __init__(self, n_bins):
        super().__init__(n_bins)
        self.model_args = {"n_bins": n_bins}

    def forward(self, mix_mag):
        b, t, f = mix_mag.shape
        return mix_mag.new_ones(()).expand(b, 1, t, f)


def build_models(tmp: Path):
    """name -> dict(model, stft, sr, ckpt, origin). Shipped checkpoints when present."""
    out = {}

    def fresh(name, model, origin):
        torch.manual_seed(0)
        model = model().eval()
        stft, sr = util.make_stft(1024, 256), 16000
        ckpt = tmp / f"{name}.pt"
        util.save_checkpoint(ckpt, model, stft, sr)
        out[name] = dict(model=model, stft=stft, sr=sr, ckpt=ckpt, origin=origin)

    def shipped(name, path):
        model, stft, sr, _ = util.load_model(path)
        out[name] = dict(model=model.eval(), stft=stft, sr=sr, ckpt=path,
                         origin=f"shipped {path.relative_to(REPO)}")

    cfg = "random weights, shipped configuration"
    if SHIPPED_FF.exists():
        shipped("feedforward", SHIPPED_FF)
    else:
        fresh("feedforward", lambda: Model.FrameMaskNet(513, (1024, 512), 256), cfg)
    have = None
    if SHIPPED_RNN.exists():
        m, *_ = util.load_model(SHIPPED_RNN)
        have = "rnn_bi" if m.model_args.get("bidirectional", True) else "rnn_uni"
        shipped(have, SHIPPED_RNN)
    for name, bi in (("rnn_bi", True), ("rnn_uni", False)):
        if name != have:
            fresh(name, lambda bi=bi: Model_RNN.RNNMaskNet(513, (1024, 512), 256, rnn_hidden=256,
                                                          bidirectional=bi), cfg)
    try:                                         # the same networks under onnxruntime (requirements-onnx.txt)
        for name in list(out):
            path = tmp / f"{name}.onnx"
            onnx_export.export(out[name]["ckpt"], path, check_audio=None)
            model, stft, sr, _ = onnx_export.load(path)
            out[f"{name}-onnxruntime"] = dict(model=model, stft=stft, sr=sr, ckpt=path,
                                              origin=f"onnxruntime, export of {name}")
    except (ImportError, util.UserError) as err:
        log(f"onnxruntime rows skipped: {err}")
    return out


def import_openunmix():
    """Import openunmix with a stub torchaudio (the real one cannot load beside this torch)."""
    try:
        import torchaudio  # noqa: F401
    except Exception:
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    import openunmix
    from openunmix import utils as _  # noqa: F401  (imports model, transforms, filtering)
    return openunmix


# ----------------------------------------------------------------------------------------------
# Timing helpers
# ----------------------------------------------------------------------------------------------
def interleaved(configs: dict, repeats: int):
    """configs: name -> (fn, warm_fn). Warm each up once, then ``repeats`` rounds of every fn.
    Returns name -> list of seconds."""
    for name, (fn, warm) in configs.items():
        warm()
    times = {name: [] for name in configs}
    for r in range(repeats):
        for name, (fn, _) in configs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        log(f"  round {r + 1}/{repeats} done (load {loadavg()})")
    return times


def med(ts):
    return statistics.median(ts)


def fx(x: float) -> str:
    """A speed factor: one decimal below 10."""
    return f"{x:.1f}" if x < 10 else f"{x:.0f}"


def spread(seconds, ts):
    """'x real time' spread string from min..max of times."""
    return f"{fx(seconds / max(ts))}..{fx(seconds / min(ts))}"


# ----------------------------------------------------------------------------------------------
# 1. Speed
# ----------------------------------------------------------------------------------------------
def bench_speed(args, song: Song, models: dict, tmp: Path, results: list):
    seconds = args.song_seconds
    wav = tmp / "song.wav"
    song.write_wav(wav, seconds)
    mix, _ = util.load_audio(wav)                                   # (2, N) float32 at 44.1 kHz
    log(f"song: {seconds:.0f} s, 44.1 kHz stereo 16-bit WAV; source: {song.source}")
    warm_wav = tmp / "warm.wav"
    song.write_wav(warm_wav, 10.0)
    warm_mix, _ = util.load_audio(warm_wav)

    configs, labels, kinds = {}, {}, {}
    floors = {}                                                     # (sr, n_fft, hop) -> identity entry
    entries = dict(models)
    for name, e in models.items():
        key = (e["sr"], e["stft"].n_fft, e["stft"].hop)
        if key not in floors:
            ident = IdentityMask(e["stft"].n_bins).eval()
            floors[key] = f"identity@{key[0]}/{key[1]}/{key[2]}"
            entries[floors[key]] = dict(model=ident, stft=e["stft"], sr=e["sr"], origin="identity mask (floor)")
        e["floor"] = floors[key]

    prepared = {}
    for key, ident_name in floors.items():
        sr, n_fft, hop = key
        stft = util.make_stft(n_fft, hop)
        stereo = util.resample(mix, SR, sr)
        mono = util.resample(mix.mean(0, keepdims=True), SR, sr)
        w_mono = util.resample(warm_mix.mean(0, keepdims=True), SR, sr)
        w_stereo = util.resample(warm_mix, SR, sr)
        prepared[key] = (mono, w_mono)

        def bare(x, stft=stft):
            t = torch.from_numpy(x)
            stft.istft(stft.stft(t), t.shape[-1])
        tag = f"{sr // 1000} kHz {n_fft}/{hop}"
        for ch, x, wx in (("mono", mono, w_mono), ("stereo", stereo, w_stereo)):
            name = f"bare_{ch}@{key}"
            configs[name] = (lambda x=x: bare(x), lambda wx=wx: bare(wx))
            labels[name] = f"bare torch.stft+istft, {ch} {tag}"
            kinds[name] = ("bare", key, ch)

    # non-model file work, for attribution: decode + 2 writes; soxr down + up (stereo)
    io_dir = tmp / "io"
    io_dir.mkdir()

    def io_only(path=wav):
        x, _ = sf.read(str(path), dtype="float32", always_2d=True)
        for n in ("vocals", "accompaniment"):
            sf.write(str(io_dir / f"{n}.wav"), x, SR, subtype="PCM_16")
    configs["io"] = (io_only, lambda: io_only(warm_wav))
    labels["io"] = "WAV decode + 2 x 16-bit WAV write (no DSP)"
    kinds["io"] = ("aux",)
    sr0 = next(iter(floors))[0]

    def resample_only(x=mix):
        util.resample(util.resample(x, SR, sr0), sr0, SR)
    configs["resample"] = (resample_only, lambda: resample_only(warm_mix))
    labels["resample"] = f"soxr HQ 44.1k->{sr0 // 1000}k->44.1k, stereo, whole song"
    kinds["resample"] = ("aux",)

    for name, e in entries.items():
        key = (e["sr"], e["stft"].n_fft, e["stft"].hop)
        mono, w_mono = prepared[key]
        out_dir = tmp / "out" / name

        def arr(e=e, x=mono):
            separate.separate_array(e["model"], e["stft"], x)

        def warr(e=e, x=w_mono):
            separate.separate_array(e["model"], e["stft"], x)

        def fil(e=e, path=wav, out_dir=out_dir):
            separate.separate_file(e["model"], e["stft"], e["sr"], path, out_dir, progress=False)

        def wfil(e=e, out_dir=out_dir):
            separate.separate_file(e["model"], e["stft"], e["sr"], warm_wav, out_dir, progress=False)
        mag_key = (key, "mag")
        if mag_key not in prepared:                                 # the engine's mask input
            st = e["stft"]
            prepared[mag_key] = tuple(st.stft(torch.from_numpy(x)).mean(0).abs().T.contiguous()
                                      for x in (mono, w_mono))      # (T, F)
        mag, w_mag = prepared[mag_key]

        def model_only(e=e, mag=mag):
            runner = separate.MaskRunner(e["model"])
            runner.push(mag)
            runner.flush()
        configs[f"{name}/model"] = (model_only, lambda e=e, m=w_mag: model_only(e, m))
        configs[f"{name}/array"] = (arr, warr)
        configs[f"{name}/file"] = (fil, wfil)
        kinds[f"{name}/array"] = ("model", name, "array")
        kinds[f"{name}/file"] = ("model", name, "file")

    umx_desc = None
    if not args.no_umx:
        try:
            openunmix = import_openunmix()
            torch.manual_seed(0)
            umx = openunmix.umxhq(targets=["vocals"], niter=0, residual=False, pretrained=False,
                                  device="cpu").eval()
            m = umx.target_models["vocals"]
            from importlib.metadata import version
            umx_desc = (f"openunmix {version('openunmix')}, umxhq sizes, random weights: "
                        f"OpenUnmix(nb_bins={m.nb_output_bins}, max_bin={m.nb_bins}, nb_channels=2, "
                        f"hidden={m.hidden_size}, {m.lstm.num_layers}-layer BLSTM), "
                        f"{sum(p.numel() for p in m.parameters()) / 1e6:.2f} M parameters; "
                        "Separator(n_fft=4096, hop=1024, niter=0) = torch STFT + model + mixture phase "
                        "+ ISTFT, ONE target (vocals), 44.1 kHz stereo, whole song in one call")
            x_umx, w_umx = torch.from_numpy(mix)[None], torch.from_numpy(warm_mix)[None]

            @torch.no_grad()
            def run_umx(x=x_umx):
                umx(x)
            configs["umx"] = (run_umx, lambda: run_umx(w_umx))
            kinds["umx"] = ("umx",)
        except Exception as err:  # noqa: BLE001
            umx_desc = f"UNAVAILABLE ({type(err).__name__}: {err})"
    log(f"Open-Unmix: {umx_desc or 'skipped (--no-umx)'}")
    log(f"timing {len(configs)} configurations x {args.repeats} repeat(s), interleaved ...")
    times = interleaved(configs, args.repeats)

    # ---- print the speed table
    xrt = {k: seconds / med(v) for k, v in times.items()}
    log()
    log(f"SPEED on a {seconds:.0f} s song, {torch.get_num_threads()} threads "
        f"(x real time = song seconds / wall seconds; median, min..max over {args.repeats})")
    log(f"{'configuration':58s} {'in-memory':>19s} {'file-to-file':>19s} {'model only':>19s}")

    def cell(k):
        return f"{fx(xrt[k]):>6s}x ({spread(seconds, times[k]):>10s})" if k in xrt else f"{'-':>19s}"
    for k, (kind, *rest) in kinds.items():
        if kind in ("bare", "aux"):
            log(f"{labels[k]:58s} {cell(k)}")
    for name, e in entries.items():
        label = f"{name}: {e['origin']}"
        log(f"{label[:58]:58s} {cell(name + '/array')} {cell(name + '/file')} {cell(name + '/model')}")
    if "umx" in xrt:
        log(f"{'Open-Unmix umxhq-size (random), 44.1 kHz stereo':58s} {cell('umx')} {'-':>19s}")
    log("in-memory = separate.separate_array(model-rate MONO mixture); for Open-Unmix, Separator on the "
        "44.1 kHz stereo tensor")
    log("file-to-file = separate.separate_file(44.1 kHz stereo WAV -> vocals.wav + accompaniment.wav)")
    log("model only = separate.MaskRunner push+flush on the song's mono magnitudes (the engine's model calls, "
        "chunks of 1024 frames, windows + cross-fade for the bidirectional RNN)")

    # ---- targets
    for name in ("feedforward", "rnn_bi", "rnn_uni"):
        e = models[name]
        key = (e["sr"], e["stft"].n_fft, e["stft"].hop)
        target = FF_SPEED if name == "feedforward" else RNN_SPEED
        for path in ("array", "file"):
            k = f"{name}/{path}"
            where = "in-memory" if path == "array" else "file-to-file"
            results.append((f"{name} speed, {where}", f"{fx(xrt[k])}x RT", f">= {target:.0f}x",
                            xrt[k] >= target))
        for path in ("array", "file"):
            k = f"{name}/{path}"
            where = "in-memory" if path == "array" else "file-to-file"
            if "umx" in xrt:
                r = xrt[k] / xrt["umx"]
                results.append((f"{name} {where} vs Open-Unmix in-memory", f"{r:.1f}x faster",
                                f">= {VS_UMX:.0f}x", r >= VS_UMX))
        r = med(times[f"{name}/array"]) / med(times[f"bare_mono@{key}"])
        results.append((f"{name} in-memory / bare stft+istft (mono)", f"{r:.2f}", f"<= {FLOOR_RATIO:.0f}",
                        r <= FLOOR_RATIO))
        r = med(times[f"{name}/array"]) / med(times[f"{e['floor']}/array"])
        results.append((f"{name} in-memory / identity in-memory", f"{r:.2f}", f"<= {FLOOR_RATIO:.0f}",
                        r <= FLOOR_RATIO))
        r = med(times[f"{name}/file"]) / med(times[f"{e['floor']}/file"])
        results.append((f"{name} file / identity file", f"{r:.2f}", f"<= {FLOOR_RATIO:.0f}",
                        r <= FLOOR_RATIO))
    for key, ident in floors.items():
        r = med(times[f"{ident}/array"]) / med(times[f"bare_mono@{key}"])
        results.append(("identity in-memory / bare stft+istft (engine overhead)", f"{r:.2f}", "info", None))
        results.append(("identity file-to-file (pipeline floor)", f"{fx(xrt[ident + '/file'])}x RT", "info", None))
    if "umx" in xrt:
        results.append(("Open-Unmix (umxhq sizes, random) in-memory", f"{xrt['umx']:.1f}x RT", "info", None))
    shutil.rmtree(tmp / "out", ignore_errors=True)
    shutil.rmtree(io_dir, ignore_errors=True)
    for p in (wav, warm_wav):
        p.unlink(missing_ok=True)
    return umx_desc


# ----------------------------------------------------------------------------------------------
# 2. Peak memory of the CLI on a long file
# ----------------------------------------------------------------------------------------------
# Each CLI runs in a child whose own peak RSS is measured (bench/child_usage.py: through a small
# launcher, since a direct child of this large process would report this process's peak too).
def run_child(cmd):
    """Run ``cmd`` from the repo root; return (exit code, wall seconds, peak RSS bytes, stderr)."""
    code, wall, usage, err = child_usage.run(cmd, REPO)
    return code, wall, usage.get("rss_bytes", -1), err


def bench_memory(args, song: Song, models: dict, tmp: Path, results: list):
    minutes = args.memory_minutes
    folder = tmp / "memory"
    folder.mkdir()
    wav = folder / "long_song.wav"
    t0 = time.perf_counter()
    n = song.write_wav(wav, minutes * 60)
    log(f"wrote {minutes:g}-minute 44.1 kHz stereo 16-bit WAV ({wav.stat().st_size / MB:.0f} MB) "
        f"in {time.perf_counter() - t0:.0f} s")
    py = sys.executable
    code, wall, base, err = run_child([py, "-c", "import sys; sys.path.insert(0, '.'); import separate, util, "
                                       f"Model_RNN; util.load_model({str(models['rnn_bi']['ckpt'])!r})"])
    log(f"baseline child (imports + model load, no audio): peak RSS {base / MB:.0f} MB")
    rows = []
    # each CLI as a user runs it (its model's default --semitones: 2N+1 separations averaged), and the
    # bidirectional RNN once more as one plain separation (--semitones 0)
    runs = [("feedforward", "separate_feedforward.py", None), ("rnn_bi", "separate_RNN.py", None),
            ("rnn_uni", "separate_RNN.py", None), ("rnn_bi", "separate_RNN.py", 0)]
    for name, script, semitones in runs:
        out = folder / "out"
        cmd = [py, script, str(wav), "--model", str(models[name]["ckpt"]), "-o", str(out),
               "--threads", str(args.threads), "--quiet", "--force"]
        if semitones is not None:
            cmd += ["--semitones", str(semitones)]
        semitones = separate.model_semitones(models[name]["model"], semitones)
        label = f"{name} --semitones {semitones}"
        code, wall, peak, err = run_child(cmd)
        ok = code == 0
        check = ""
        if ok:
            lens = {p.name: sf.info(str(p)).frames for p in (out / wav.stem).glob("*.wav")}
            ok = sorted(lens) == ["accompaniment.wav", "vocals.wav"] and all(v == n for v in lens.values())
            check = "outputs complete" if ok else f"outputs WRONG: {lens} vs {n}"
        else:
            check = f"exit {code}: {err.strip().splitlines()[-1] if err.strip() else ''}"
        shutil.rmtree(out, ignore_errors=True)
        rows.append((label, script, peak, wall, check))
        log(f"  {script} ({label}): peak RSS {peak / MB:.0f} MB, wall {wall:.1f} s "
            f"({minutes * 60 / wall:.0f}x RT), {check}  (load {loadavg()})")
        results.append((f"{label} CLI peak RSS, {minutes:g}-min song", f"{peak / MB:.0f} MB",
                        f"< {MEMORY_LIMIT_MB:.0f} MB", ok and peak < MEMORY_LIMIT_MB * MB))
        results.append((f"{label} CLI wall time, {minutes:g}-min song",
                        f"{wall:.0f} s ({minutes * 60 / wall:.0f}x RT)", "info", None))
    results.append(("baseline child RSS (imports + model load)", f"{base / MB:.0f} MB", "info", None))
    shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# 3. Training throughput
# ----------------------------------------------------------------------------------------------
def training_setup(build, b: int, t: int, lr: float):
    """A seeded model from ``build()`` in train mode, its Adam at ``lr``, and a seeded random
    batch: mixture magnitudes (b, t, 513) and sources (b, 1, t, 513) below them."""
    torch.manual_seed(0)
    model = build().train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(1)
    mix = torch.rand(b, t, 513, generator=g) * 2
    src = mix[:, None] * torch.rand(b, 1, t, 513, generator=g)
    return model, opt, mix, src


def bench_training(args, results: list):
    cases = [
        ("feedforward", lambda: Model.FrameMaskNet(513, (1024, 512), 256), (1, 1024)),
        ("rnn_bi", lambda: Model_RNN.RNNMaskNet(513, (1024, 512), 256, rnn_hidden=256, bidirectional=True),
         (16, 250)),
        ("rnn_uni", lambda: Model_RNN.RNNMaskNet(513, (1024, 512), 256, rnn_hidden=256, bidirectional=False),
         (16, 250)),
    ]
    configs, frames = {}, {}
    for name, build, (b, t) in cases:
        model, opt, mix, src = training_setup(build, b, t, lr=1e-3)
        steps = max(1, (args.train_frames // (b * t)))

        def step(model=model, opt=opt, mix=mix, src=src):
            masks = model(mix)
            loss = Model.generalized_kl(src, masks * mix.unsqueeze(1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()

        def run(step=step, steps=steps):
            for _ in range(steps):
                step()
        configs[name] = (run, lambda step=step: (step(), step()))
        frames[name] = (b * t * steps, b, t, steps)
    times = interleaved(configs, args.repeats)
    log()
    log(f"TRAINING THROUGHPUT, {torch.get_num_threads()} threads (forward + KL loss + backward + clip + Adam; "
        "no data loading / STFT)")
    for name, ts in times.items():
        n, b, t, steps = frames[name]
        fps = [n / x for x in ts]
        log(f"  {name:12s} batch {b} x {t} frames, {steps} step(s) per repeat: "
            f"{statistics.median(fps):8.0f} frames/s  (min..max {min(fps):.0f}..{max(fps):.0f}; "
            f"{med(ts) / steps * 1000:.0f} ms/step)")
        results.append((f"{name} training ({b}x{t} frames/step)", f"{statistics.median(fps):.0f} frames/s",
                        "info", None))


def bench_hourglass(args, results: list):
    """Section 4: a training step of the stacked hourglass (Park's size and CPU sizes) against the
    shipped U-Net's architecture, interleaved in one run so the ratios compare."""
    cases = [
        ("U-Net (shipped size)", lambda: Model_UNet.UNet(513), (8, 128)),
        ("hourglass 16 features x 2 stacks", lambda: Model_Hourglass.StackedHourglass(513, 16, 2), (8, 128)),
        ("hourglass 32 features x 2 stacks", lambda: Model_Hourglass.StackedHourglass(513, 32, 2), (8, 128)),
        ("hourglass 256 x 4 (Park et al.)", lambda: Model_Hourglass.StackedHourglass(513, 256, 4), (4, 64)),
    ]
    configs, shapes = {}, {}
    for name, build, (b, t) in cases:
        model, opt, mix, src = training_setup(build, b, t, lr=1e-4)

        def step(model=model, opt=opt, mix=mix, src=src):
            loss = Model.l1(src, model(mix) * mix.unsqueeze(1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
        configs[name] = (step, step)
        shapes[name] = (b, t, Model.count_parameters(model))
    times = interleaved(configs, args.repeats)
    log()
    log(f"STACKED HOURGLASS TRAINING COST, {torch.get_num_threads()} threads (forward + L1 + backward + clip + Adam; "
        "no data loading / STFT; 513 bins)")
    unet_per_frame = None
    for name, ts in times.items():
        b, t, n = shapes[name]
        sec = med(ts)
        per_frame = sec / (b * t)
        unet_per_frame = unet_per_frame or per_frame
        log(f"  {name:34s} {n / 1e6:6.2f} M weights, batch {b} x {t}: {sec:7.2f} s/step (min..max "
            f"{min(ts):.2f}..{max(ts):.2f}), {b * t / sec:6.0f} frames/s, {sec * 10000 / 3600:6.1f} h per "
            f"10,000 steps, {per_frame / unet_per_frame:5.1f}x the U-Net's time per frame")
        results.append((f"{name} training ({b}x{t} frames/step)", f"{sec:.2f} s/step", "info", None))


# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def contention_probe(threads: int, repeats=7) -> str:
    """Median time of a small, sync-heavy op (bidirectional LSTM 256 -> 256 over 1024 frames, batch
    1, as inside the RNN model) at 1 thread and at ``threads``: on a CPU shared with other busy
    processes, multi-threaded small ops slow down far more than single-threaded ones."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(256, 256, batch_first=True, bidirectional=True).eval()
    x = torch.randn(1, 1024, 256)
    out = []
    for n in sorted({1, threads}):
        torch.set_num_threads(n)
        lstm(x)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            lstm(x)
            ts.append(time.perf_counter() - t0)
        out.append(f"{n} thread(s) {med(ts) * 1000:.0f} ms (max {max(ts) * 1000:.0f})")
    torch.set_num_threads(threads)
    return "contention probe, BLSTM 256 over 1024 frames: " + ", ".join(out)


def machine_info(args) -> list[str]:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    versions = [f"torch {torch.__version__}", f"numpy {np.__version__}"]
    try:
        import soxr
        versions.append(f"soxr {soxr.__version__}")
    except Exception:  # noqa: BLE001
        pass
    try:
        from importlib.metadata import version
        versions.append(f"openunmix {version('openunmix')}")
    except Exception:  # noqa: BLE001
        pass
    return [f"CPU: {cpu}; {os.cpu_count()} logical cores ({affinity} usable)",
            f"python {platform.python_version()}; " + ", ".join(versions),
            f"torch threads: {torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op; "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="fast check: 30 s song, 5-minute memory test, 1 repeat")
    p.add_argument("--repeats", type=util.positive_int, default=None, help="timed repeats per figure, median reported "
                   "(default 5; 1 with --quick)")
    p.add_argument("--threads", type=int, default=2, help="torch threads, also for the CLI child (default 2)")
    p.add_argument("--song-seconds", type=util.positive_float, default=None,
                   help="speed-test song length (default 180; 30 with --quick)")
    p.add_argument("--memory-minutes", type=util.positive_float, default=None,
                   help="memory-test song length in minutes (default 60; 5 with --quick)")
    p.add_argument("--train-frames", type=int, default=None,
                   help="frames per timed training repeat (default 8000; 4000 with --quick)")
    p.add_argument("--only", nargs="+", choices=["speed", "memory", "training", "hourglass"], default=None,
                   help="run only these sections (hourglass: only when named here; minutes per repeat)")
    p.add_argument("--no-umx", action="store_true", help="skip Open-Unmix")
    p.add_argument("--omp-passive", action="store_true",
                   help="run with OMP_WAIT_POLICY=PASSIVE (also for the CLI children): OpenMP threads sleep "
                        "instead of spinning at barriers, which matters a lot when other jobs share the CPU")
    p.add_argument("--synthetic", action="store_true", help="use the synthetic song even if real excerpts exist")
    p.add_argument("--tmpdir", type=Path, default=None, help="where temp audio goes (default: system temp)")
    a = p.parse_args(argv)
    a.repeats = a.repeats or (1 if a.quick else 5)
    a.song_seconds = a.song_seconds or (30.0 if a.quick else 180.0)
    a.memory_minutes = a.memory_minutes or (5.0 if a.quick else 60.0)
    a.train_frames = a.train_frames or (4000 if a.quick else 8000)
    return a


def main(argv=None):
    args = parse_args(argv)
    if args.tmpdir is not None and not args.tmpdir.is_dir():
        raise util.UserError(f"{args.tmpdir}: --tmpdir must be an existing folder")
    torch.set_num_threads(args.threads)
    sections = args.only or ["speed", "training", "memory"]
    t_start = time.time()
    load_start = loadavg()
    log("=" * 100)
    log(f"bench_separation  {time.strftime('%Y-%m-%d %H:%M:%S')}  {'QUICK' if args.quick else 'FULL'} mode, "
        f"{args.repeats} repeat(s)")
    for line in machine_info(args):
        log(line)
    log(f"load average at start (1/5/15 min): {load_start}")
    probe_start = contention_probe(args.threads)
    log(probe_start)
    log("=" * 100)
    song = Song(args.synthetic)
    results, umx_desc = [], None
    with tempfile.TemporaryDirectory(prefix="bench_sep_", dir=args.tmpdir) as tmp:
        tmp = Path(tmp)
        models = build_models(tmp)
        for name, e in models.items():
            if isinstance(e["model"], onnx_export.OnnxMaskModel):      # run by onnxruntime: no weights here
                log(f"model {name}: {e['origin']}")
                continue
            log(f"model {name}: {type(e['model']).__name__}({e['model'].model_args}), "
                f"{Model.count_parameters(e['model']) / 1e6:.2f} M parameters, STFT {e['stft'].n_fft}/"
                f"{e['stft'].hop} at {e['sr']} Hz, context={getattr(e['model'], 'context', '?')}; {e['origin']}")
        if "speed" in sections:
            log(f"\n--- 1. speed (load {loadavg()})")
            umx_desc = bench_speed(args, song, models, tmp, results)
        if "training" in sections:
            log(f"\n--- 3. training throughput (load {loadavg()})")
            bench_training(args, results)
        if "hourglass" in sections:
            log(f"\n--- 4. stacked hourglass training cost (load {loadavg()})")
            bench_hourglass(args, results)
        if "memory" in sections:
            log(f"\n--- 2. peak memory, CLI in a subprocess, {args.memory_minutes:g}-minute song (load {loadavg()})")
            bench_memory(args, song, models, tmp, results)

    probe_end = contention_probe(args.threads)
    log()
    log("=" * 100)
    log("SUMMARY")
    for line in machine_info(args):
        log(line)
    log(f"audio: {song.source}; speed song {args.song_seconds:.0f} s; memory song {args.memory_minutes:g} min; "
        f"{args.repeats} repeat(s), median")
    if umx_desc:
        log(f"Open-Unmix: {umx_desc}")
    log(f"load average: start {load_start}, end {loadavg()} (other jobs share the CPU: figures are noisy)")
    log(f"start: {probe_start}")
    log(f"end:   {probe_end}")
    log(f"{'what':58s} {'figure':>20s} {'target':>10s}  result")
    log("-" * 100)
    for what, fig, target, ok in results:
        verdict = "" if ok is None else ("meets target" if ok else "below target")
        log(f"{what:58s} {fig:>20s} {target:>10s}  {verdict}")
    log("-" * 100)
    n_pass = sum(1 for r in results if r[3] is True)
    n_fail = sum(1 for r in results if r[3] is False)
    log(f"{n_pass} meet their target, {n_fail} below target (figures, not a test); "
        f"total bench time {time.time() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    util.run_cli(main)
