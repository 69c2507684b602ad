"""Separation engine and CLI: streaming equals whole-file, formats, bad input, no overwrite."""
import os

import numpy as np
import pytest
import soundfile as sf
import torch

import Model
import Model_RNN
import separate
import util
from conftest import tone

STFT = util.make_stft(256, 64)


def _stream(model, x, block, chunk_frames):
    sep = separate.StreamSeparator(model, STFT, chunk_frames=chunk_frames, overlap_frames=8)
    outs = [sep.push(x[:, i:i + block]) for i in range(0, x.shape[1], block)] + [sep.finish()]
    return np.concatenate(outs, -1)


@pytest.mark.parametrize("block,chunk", [(999, 7), (4096, 50), (100000, 1000)])
def test_frame_model_stream_equals_whole(tiny_ff, block, chunk):
    x = np.random.default_rng(0).standard_normal((2, 12345)).astype(np.float32) * 0.3
    whole = separate.separate_whole(tiny_ff, STFT, x)
    assert np.abs(_stream(tiny_ff, x, block, chunk) - whole).max() < 1e-5


def test_causal_rnn_stream_equals_whole():
    torch.manual_seed(0)
    m = Model_RNN.RNNMaskNet(129, (32, 16), 8, 0.0, rnn_hidden=8, bidirectional=False).eval()
    x = np.random.default_rng(1).standard_normal((1, 9000)).astype(np.float32)
    assert np.abs(_stream(m, x, 777, 5) - separate.separate_whole(m, STFT, x)).max() < 1e-5


def test_bidirectional_stream_close_to_whole():
    torch.manual_seed(0)
    m = Model_RNN.RNNMaskNet(129, (32, 16), 8, 0.0, rnn_hidden=8, bidirectional=True).eval()
    x = np.random.default_rng(1).standard_normal((1, 20000)).astype(np.float32)
    whole = separate.separate_whole(m, STFT, x)
    err = np.abs(_stream(m, x, 3000, 64) - whole).max()
    assert err < 0.05 * np.abs(whole).max()
    assert np.abs(_stream(m, x, 30000, 100000) - whole).max() < 1e-5   # one window: exact


def test_stream_separator_keeps_only_what_waits():
    """What a separator keeps between pushes (queued spectra and magnitudes, the output accumulator, the
    window's buffer and cross-fade tail) owns just its own memory: views of the spent arrays kept their
    whole storage alive (a 60 s song at --semitones 4 peaked at 1.67 GB, then 0.90 GB)."""
    torch.manual_seed(0)
    m = Model_RNN.RNNMaskNet(129, (32, 16), 8, 0.0, rnn_hidden=8, bidirectional=True).eval()
    sep = separate.StreamSeparator(m, STFT, chunk_frames=64, overlap_frames=8)
    x = np.random.default_rng(1).standard_normal((2, 30000)).astype(np.float32)
    with torch.no_grad():
        for i in range(0, x.shape[1], 7000):
            sep.push(x[:, i:i + 7000])
            kept = [*sep.spec_queue, *sep.mag_queue, sep.out, sep.env, *sep.runner.buffer, sep.runner.tail]
            for t in (t for t in kept if t is not None and t.numel()):
                assert t.untyped_storage().nbytes() == t.numel() * t.element_size()


def test_mask_runner_window_covers_every_frame():
    torch.manual_seed(0)
    m = Model_RNN.RNNMaskNet(129, (32, 16), 8, 0.0, rnn_hidden=8, bidirectional=True).eval()
    runner = separate.MaskRunner(m, chunk_frames=10, overlap_frames=3)
    mags = torch.rand(57, 129)
    got = [runner.push(mags[i:i + 4]) for i in range(0, 57, 4)] + [runner.flush()]
    assert sum(g.shape[0] for g in got) == 57


@pytest.fixture
def ckpt(tmp_path, tiny_ff):
    path = tmp_path / "ff.pt"
    tiny_ff.input_mean.fill_(-1.0)
    util.save_checkpoint(path, tiny_ff, STFT, 8000)
    return path


def run(argv):
    """Run the feedforward CLI; return the exit status."""
    import separate_feedforward  # noqa: F401  (the module must import)
    with pytest.raises(SystemExit) as e:
        util.run_cli(lambda a: separate.main(a, None, Model.FrameMaskNet), argv)
    return e.value.code


@pytest.mark.parametrize("sr,channels,ext", [(8000, 1, "wav"), (44100, 2, "flac"), (22050, 3, "ogg")])
def test_cli_keeps_rate_and_channels(tmp_path, ckpt, sr, channels, ext):
    song = tmp_path / f"song.{ext}"
    sf.write(song, tone(1.5, sr, 220, channels=channels), sr)
    assert run([str(song), "--model", str(ckpt), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    mix, _ = sf.read(song, always_2d=True)
    voc, vsr = sf.read(tmp_path / "out" / "song" / "vocals.wav", always_2d=True)
    acc, _ = sf.read(tmp_path / "out" / "song" / "accompaniment.wav", always_2d=True)
    assert vsr == sr and voc.shape == mix.shape == acc.shape
    assert np.abs(voc + acc - mix).max() < 2e-4                    # accompaniment = mixture - vocals
    assert np.abs(voc).max() > 0                                    # not all silence
    assert oct(os.stat(tmp_path / "out" / "song" / "vocals.wav").st_mode)[-3:] != "600"


def test_cli_formats_and_subtypes(tmp_path, ckpt):
    song = tmp_path / "s.wav"
    sf.write(song, tone(1.0, 8000, 220), 8000)
    assert run([str(song), "--model", str(ckpt), "-o", str(tmp_path / "o"), "--format", "flac",
                "--subtype", "24", "--quiet"]) == 0
    assert sf.info(str(tmp_path / "o" / "s" / "vocals.flac")).subtype == "PCM_24"
    assert run([str(song), "--model", str(ckpt), "-o", str(tmp_path / "f"), "--subtype", "float", "--quiet"]) == 0
    assert sf.info(str(tmp_path / "f" / "s" / "vocals.wav")).subtype == "FLOAT"


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("WAV", "PCM_24"),
                                         ("FLAC", "PCM_24"), ("WAV", "FLOAT")])
def test_read_blocks_equals_libsndfile_float_reading(tmp_path, fmt, subtype):
    """Integer PCM is read as integers and scaled here: the same floats as libsndfile's own."""
    x = np.random.default_rng(0).uniform(-1, 1, (5000, 3)).astype(np.float32)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, x, 8000, subtype=subtype, format=fmt)
    ref, _ = sf.read(path, dtype="float32", always_2d=True)
    blocks = list(separate.read_blocks(path, 1234))
    assert [b.shape[1] for b in blocks] == [1234] * 4 + [64]
    got = np.concatenate(blocks, 1)
    assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == (3, 5000)
    np.testing.assert_array_equal(got, ref.T)


@pytest.mark.parametrize("fmt,subtype,bits", [("wav", "PCM_16", 16), ("flac", "PCM_16", 16), ("wav", "PCM_24", 24)])
def test_stem_writer_rounds_to_nearest_and_clips(tmp_path, tiny_ff, fmt, subtype, bits):
    """Integer stems hold round(x * 2^(bits-1)) clipped to the integer range, channels interleaved."""
    rng = np.random.default_rng(1)
    sep = np.concatenate([rng.uniform(-1.1, 1.1, (1, 2, 3000)), np.full((1, 2, 2), 0.5 / 2 ** (bits - 1))], -1)
    sep = sep.astype(np.float32)
    mix = np.zeros_like(sep[0])
    with separate.StemWriter(tiny_ff, tmp_path, 8000, 2, fmt, subtype) as writer:
        writer.write(sep, mix)
        paths = writer.commit()
    assert writer.clipped
    full = 2 ** (bits - 1)
    dtype = "int16" if bits == 16 else "int32"
    shift = 32 - bits if bits > 16 else 0                           # 24-bit samples sit in int32's top bits
    for name, x in (("vocals", sep[0]), ("accompaniment", mix - sep[0])):
        got, _ = sf.read(tmp_path / f"{name}.{fmt}", dtype=dtype, always_2d=True)
        want = np.clip(np.rint(x.astype(np.float64) * full), -full, full - 1).T
        np.testing.assert_array_equal(got.astype(np.int64) >> shift, want)
    assert sorted(p.name for p in paths) == sorted([f"vocals.{fmt}", f"accompaniment.{fmt}"])


def test_cli_silent_input_gives_silent_output(tmp_path, ckpt):
    song = tmp_path / "quiet.wav"
    sf.write(song, np.zeros((8000, 2), np.float32), 8000)
    assert run([str(song), "--model", str(ckpt), "-o", str(tmp_path / "o"), "--quiet"]) == 0
    voc, _ = sf.read(tmp_path / "o" / "quiet" / "vocals.wav")
    assert np.all(np.isfinite(voc)) and np.all(voc == 0)


def test_cli_warns_when_the_channels_cancel_in_the_downmix(tmp_path, ckpt, capsys):
    """The masks come from the mono downmix: a phase-inverted channel (L = -R) leaves it silent, which is
    worth a warning; an ordinary stereo song (and a silent one) gets none."""
    x = tone(1.0, 8000, 220)[:, 0]
    for name, left, right in [("inverted", x, -x), ("stereo", x, 0.5 * x), ("silent", 0 * x, 0 * x)]:
        sf.write(tmp_path / f"{name}.wav", np.stack([left, right], 1), 8000, subtype="FLOAT")
        capsys.readouterr()
        assert run([str(tmp_path / f"{name}.wav"), "--model", str(ckpt), "-o", str(tmp_path / "o"), "--quiet"]) == 0
        warned = "channels cancel in the mono downmix" in capsys.readouterr().err
        assert warned == (name == "inverted"), name


def test_cli_no_overwrite_without_force(tmp_path, ckpt, capsys):
    song = tmp_path / "s.wav"
    sf.write(song, tone(1.0, 8000, 220), 8000)
    out = tmp_path / "o"
    assert run([str(song), "--model", str(ckpt), "-o", str(out), "--quiet"]) == 0
    before = (out / "s" / "vocals.wav").stat().st_mtime_ns
    assert run([str(song), "--model", str(ckpt), "-o", str(out), "--quiet"]) == 1   # as for several inputs
    assert "skipped" in capsys.readouterr().err
    assert (out / "s" / "vocals.wav").stat().st_mtime_ns == before
    assert run([str(song), "--model", str(ckpt), "-o", str(out), "--quiet", "--force"]) == 0


def test_cli_folder_and_glob_and_batch_skip(tmp_path, ckpt, capsys):
    songs = tmp_path / "songs"
    songs.mkdir()
    for i in range(2):
        sf.write(songs / f"s{i}.wav", tone(1.0, 8000, 200 + 50 * i), 8000)
    (songs / "broken.wav").write_bytes(b"RIFF....not really")
    code = run([str(songs), "--model", str(ckpt), "-o", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "skipped" in err and "broken.wav" in err and "separated 2 of 3" in err
    assert run([str(songs / "s*.wav"), "--model", str(ckpt), "-o", str(tmp_path / "g"), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["s0", "s1"]


@pytest.mark.parametrize("make,message", [
    (lambda p: None, "no such file"),
    (lambda p: p.mkdir(), "folder holds no audio files"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_text("hello, I am text" * 20), "not a readable audio file"),
    (lambda p: sf.write(p, np.zeros((100, 1), np.float32), 8000), "too short"),
    (lambda p: sf.write(p, np.full((9000, 1), np.nan, np.float32), 8000, subtype="FLOAT"), "NaN"),
])
def test_cli_bad_input_one_line_error(tmp_path, ckpt, capsys, make, message):
    bad = tmp_path / "bad.wav"
    make(bad)
    assert run([str(bad), "--model", str(ckpt), "-o", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o" / "bad" / "vocals.wav").exists()


def test_cli_bad_checkpoints(tmp_path, capsys):
    song = tmp_path / "s.wav"
    sf.write(song, tone(1.0, 8000, 220), 8000)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert run([str(song), "--model", str(tmp_path / "bad.pt"), "--quiet"]) == 2
    assert "corrupt" in capsys.readouterr().err
    rnn = Model_RNN.RNNMaskNet(129, (32, 16), 8, rnn_hidden=8)
    util.save_checkpoint(tmp_path / "rnn.pt", rnn, STFT, 8000)
    assert run([str(song), "--model", str(tmp_path / "rnn.pt"), "--quiet"]) == 2
    assert "expected a FrameMaskNet" in capsys.readouterr().err
    assert run([str(song), "--model", str(tmp_path), "--quiet"]) == 2
    assert "is a directory, expected a checkpoint" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_cli_unwritable_outdir(tmp_path, ckpt, capsys):
    song = tmp_path / "s.wav"
    sf.write(song, tone(1.0, 8000, 220), 8000)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    assert run([str(song), "--model", str(ckpt), "-o", str(ro), "--quiet"]) == 2
    assert "not writable" in capsys.readouterr().err


def test_cli_unwritable_outdir_is_a_file(tmp_path, ckpt, capsys):
    song = tmp_path / "s.wav"
    sf.write(song, tone(1.0, 8000, 220), 8000)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should go")
    assert run([str(song), "--model", str(ckpt), "-o", str(blocker), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "not writable" in err or "cannot create" in err
    assert blocker.read_text().startswith("a file")


# ---------------------------------------------------------------- full band at the input rate
def test_frequency_map_identity_and_grid():
    fm = separate.FrequencyMap(1024, 16000, 1024, 16000)
    x = torch.rand(5, 513)
    assert fm.identity and fm.magnitudes(x) is x and fm.masks(x[:, None]) is not None
    st = separate.input_stft(util.make_stft(1024, 256), 16000, 48000)
    assert (st.n_fft, st.hop) == (3072, 768)
    fm = separate.FrequencyMap(1024, 16000, 3072, 48000)
    mags = torch.rand(4, 1537)
    assert torch.allclose(fm.magnitudes(mags)[:, :400], mags[:, :400] / 3)   # same bins, window-length scale
    masks = torch.rand(4, 2, 513)
    back = fm.masks(masks)
    assert back.shape == (4, 2, 1537) and torch.allclose(back[:, :, :513], masks)
    top = (masks[..., 384:] ** 2).mean(-1, keepdim=True).sqrt()   # 6-8 kHz, flat spectrum
    assert torch.allclose(back[:, :, 600:], top.expand(4, 2, 937), atol=1e-6)


class _PeakMask(Model.MaskModel):
    """A stand-in for a trained model: mask 1 on bins that stand out of their +-10-bin
    neighbourhood (the voice's harmonics here), 0 elsewhere; shows what the engine does with a
    model's mask, whatever the model."""

    def forward(self, mix_mag):
        local = torch.nn.functional.avg_pool1d(mix_mag, 21, stride=1, padding=10, count_include_pad=False)
        return (mix_mag > 2 * local).float()[:, None]                 # (B, 1, T, F)


def test_full_band_vocals_keep_energy_above_model_nyquist():
    """44.1 kHz song, a voice with harmonics to 15 kHz over a bass line, through a 16 kHz model:
    the vocals output's energy above 8.5 kHz is within 3 dB of the true vocals' (the first
    release's resampling path, like --high-band zero, gave all of it to the accompaniment)."""
    import scipy.signal
    model, stft, model_sr = _PeakMask(513).eval(), util.make_stft(1024, 256), 16000
    sr, n = 44100, 44100 * 3
    t = np.arange(n) / sr
    phase = 2 * np.pi * np.cumsum(330 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))) / sr   # vibrato
    voice = sum(np.sin(k * phase) / k ** 0.7 for k in range(1, 46)) * 0.05              # to ~15 kHz
    bass = 0.3 * np.sin(2 * np.pi * 55 * t) + 0.2 * np.sin(2 * np.pi * 110 * t) + \
        0.002 * np.random.default_rng(0).standard_normal(n)                           # and a little hiss
    mix = (voice + bass).astype(np.float32)[None]
    sos = scipy.signal.butter(8, 8500, "highpass", fs=sr, output="sos")
    high = lambda x: float(np.sum(scipy.signal.sosfilt(sos, x) ** 2))  # noqa: E731
    for rule in ("top-mean", "zero"):
        sep = separate.StreamSeparator(model, stft, input_rate=sr, model_rate=model_sr, high_band=rule)
        vocals = np.concatenate([sep.push(mix), sep.finish()], -1)[0, 0]
        ratio_db = 10 * np.log10(high(vocals) / high(voice) + 1e-12)
        if rule == "top-mean":
            assert abs(ratio_db) < 3, ratio_db
        else:
            assert ratio_db < -10                                     # the old behaviour loses it


def test_wiener_refine_keeps_the_sum():
    torch.manual_seed(0)
    spec = torch.randn(2, 6, 33, dtype=torch.complex64)
    m = torch.rand(6, 1, 33)
    est = separate.wiener_refine(torch.cat([m, 1 - m], 1), spec, 1)   # (S, C, k, F)
    assert est.shape == (2, 2, 6, 33)
    assert torch.allclose(est.sum(0), spec, atol=1e-4)              # the Wiener gains sum to identity
    assert separate.wiener_refine(m, spec, 1).shape == (1, 2, 6, 33)   # vocals only: the rest is implied


def test_shipped_model_is_level_invariant():
    """The same song at -40 dB and at its own level: vocals SDR within 0.3 dB (shipped RNN; its
    features divide each frame by its mean magnitude, so the masks do not depend on the level)."""
    import bss_eval
    import demo_data
    model, stft, sr, _ = util.load_model(separate.ROOT / "models" / "savedModel_RNN_best.pt")
    stems = demo_data._render_track(np.random.default_rng(7), 6 * sr, sr, female=True)
    vocals = stems["vocals"].astype(np.float32)
    acc = (stems["bass"] + stems["drums"] + stems["other"]).astype(np.float32)
    sdr = []
    for gain in (1.0, 0.01):
        mix = ((vocals + acc) * gain)[None]
        est = separate.separate_array(model, stft, mix)[0, 0] / gain
        refs = np.stack([vocals, acc]).astype(np.float64)
        sdr.append(bss_eval.bss_eval_sources(refs, np.stack([est, vocals + acc - est]).astype(np.float64),
                                             compute_permutation=False)[0][0])
    assert abs(sdr[0] - sdr[1]) < 0.3, sdr


def test_mask_power_raises_each_mask(tiny_ff):
    """--mask-power p: vocals = ISTFT(mask ** p x mixture spectrum), streamed like the raw mask."""
    x = np.random.default_rng(3).standard_normal((2, 9000)).astype(np.float32) * 0.3
    spec = STFT.stft(torch.from_numpy(x))                               # (C, F, T)
    with torch.no_grad():
        m = tiny_ff(spec.mean(0).abs().T[None])[0, 0].T                 # (F, T)
    assert 0.05 < float(m.mean()) < 0.95                                # a mask that a power changes
    for p in (1.0, 2.5):
        want = STFT.istft(m ** p * spec, x.shape[1]).numpy()
        got = separate.separate_array(tiny_ff, STFT, x, chunk_frames=7, mask_power=p)[0]
        assert np.abs(got - want).max() < 1e-5
    raw = separate.separate_array(tiny_ff, STFT, x)[0]
    assert np.abs(separate.separate_array(tiny_ff, STFT, x, mask_power=2.5)[0]).sum() < np.abs(raw).sum()


def _cli_vocals(tmp_path, ckpt, option, values, sr=8000):
    """Separate a 1.5 s stereo tone with ``option`` set to each of ``values``; {value: vocals}, after
    checking that each run's outputs have the song's shape and sum to it."""
    song = tmp_path / "song.wav"
    sf.write(song, tone(1.5, sr, 220, channels=2), sr)
    mix, _ = sf.read(song, always_2d=True)
    voc = {}
    for v in values:
        assert run([str(song), "--model", str(ckpt), "-o", str(tmp_path / v), option, v, "--quiet"]) == 0
        voc[v], _ = sf.read(tmp_path / v / "song" / "vocals.wav", always_2d=True)
        acc, _ = sf.read(tmp_path / v / "song" / "accompaniment.wav", always_2d=True)
        assert voc[v].shape == mix.shape and np.abs(voc[v] + acc - mix).max() < 2e-4
    return voc


def test_cli_mask_power_outputs_still_sum_to_mixture(tmp_path, ckpt):
    voc = _cli_vocals(tmp_path, ckpt, "--mask-power", ("1", "3"))
    assert np.abs(voc["3"]).sum() < np.abs(voc["1"]).sum()


def _two_checkpoints(tmp_path, bidirectional=False):
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = Model_RNN.RNNMaskNet(129, (32, 16), 8, 0.0, rnn_hidden=8, bidirectional=bidirectional).eval()
        paths.append(tmp_path / f"m{seed}.pt")
        util.save_checkpoint(paths[-1], m, STFT, 8000)
    return paths


def test_ensemble_is_the_geometric_mean_of_its_members(tmp_path):
    a, b = _two_checkpoints(tmp_path)
    ens, stft, sr, info = util.load_model(f"{a}+{b}")
    assert isinstance(ens, Model.MaskEnsemble) and ens.context == "causal" and info["members"] == [str(a), str(b)]
    assert util.checkpoint_name(f"{a}+{b}") == "m0+m1"
    mag = torch.rand(1, 40, 129)
    with torch.no_grad():
        ma, mb = util.load_model(a)[0](mag), util.load_model(b)[0](mag)
        assert torch.allclose(ens(mag), (ma * mb).sqrt(), atol=1e-5)
    x = np.random.default_rng(1).standard_normal((1, 9000)).astype(np.float32)
    assert np.abs(_stream(ens, x, 777, 5) - separate.separate_whole(ens, STFT, x)).max() < 1e-5   # state carried


def test_ensemble_arithmetic_mean(tmp_path, capsys):
    a, b = _two_checkpoints(tmp_path)
    ens = util.load_model(f"{a}+{b}")[0]
    assert ens.mean == "geometric" and separate.apply_ensemble_mean(ens, None) == "geometric"
    assert separate.apply_ensemble_mean(ens, "arithmetic") == "arithmetic"
    mag = torch.rand(1, 40, 129)
    with torch.no_grad():
        ma, mb = util.load_model(a)[0](mag), util.load_model(b)[0](mag)
        mixed = ens(mag)
        assert torch.allclose(mixed, (ma + mb) / 2, atol=1e-6)
        assert not torch.allclose(mixed, (ma * mb).sqrt(), atol=1e-4)    # the two means differ here
    x = np.random.default_rng(2).standard_normal((1, 9000)).astype(np.float32)
    assert np.abs(_stream(ens, x, 777, 5) - separate.separate_whole(ens, STFT, x)).max() < 1e-5   # state carried
    single = util.load_model(a)[0]
    assert separate.apply_ensemble_mean(single, "arithmetic") is None
    assert "--ensemble-mean has no effect" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown ensemble mean"):
        Model.set_ensemble_mean(ens, "median")


def test_ensemble_mean_cli(tmp_path, capsys):
    a, b = _two_checkpoints(tmp_path)
    song = tmp_path / "song.wav"
    sf.write(song, 0.3 * np.random.default_rng(3).standard_normal(8000).astype(np.float32), 8000)
    out = {}
    for mean in ("geometric", "arithmetic"):
        assert separate.main([str(song), "--model", f"{a}+{b}", "-o", str(tmp_path / mean), "--ensemble-mean",
                              mean, "--quiet"]) == 0
        out[mean], _ = sf.read(tmp_path / mean / "song" / "vocals.wav")
    # per bin, the arithmetic mean of two masks is never below their geometric mean
    assert np.abs(out["arithmetic"]).sum() > np.abs(out["geometric"]).sum()
    with pytest.raises(SystemExit):
        separate.main([str(song), "--model", f"{a}+{b}", "--ensemble-mean", "median"])
    assert "invalid choice: 'median'" in capsys.readouterr().err


def test_ensemble_cli_and_bad_ensembles(tmp_path, ckpt, capsys):
    a, b = _two_checkpoints(tmp_path, bidirectional=True)
    song = tmp_path / "song.wav"
    sf.write(song, tone(1.0, 8000, 220), 8000)
    with pytest.raises(SystemExit) as e:
        util.run_cli(lambda argv: separate.main(argv), [str(song), "--model", f"{a}+{b}", "-o", str(tmp_path / "o"),
                                                        "--quiet"])
    assert e.value.code == 0 and (tmp_path / "o" / "song" / "vocals.wav").exists()
    capsys.readouterr()
    other = tmp_path / "other.pt"
    torch.manual_seed(0)
    util.save_checkpoint(other, Model.FrameMaskNet(257, (32, 16), 8, dropout=0.0), util.make_stft(512, 128), 8000)
    for model, message in [(f"{a}+{other}", "an ensemble needs the same"), (f"{a}+", "joined by '+'"),
                           (f"{a}+{tmp_path / 'missing.pt'}", "missing.pt: checkpoint not found")]:
        with pytest.raises(SystemExit) as e:
            util.run_cli(lambda argv: separate.main(argv), [str(song), "--model", model, "-o", str(tmp_path / "x")])
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------------------------
# --semitones: the mean of the estimates of the song transposed by -N..N semitones
# ----------------------------------------------------------------------------------------------
class _PassThrough(Model.MaskModel):
    """Mask 1 everywhere (vocals = the input), keeping the magnitudes it was given."""

    def __init__(self, n_bins):
        super().__init__(n_bins)
        self.seen = []

    def forward(self, mix_mag):
        self.seen.append(mix_mag[0])
        return torch.ones_like(mix_mag)[:, None]


def _band_limited(n, sr, seed=0, channels=2):
    """A sum of random tones below a quarter of the rate (every speed of --semitones 6 keeps them)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    return np.stack([sum(rng.uniform(0.02, 0.1) * np.sin(2 * np.pi * rng.uniform(50, sr / 4) * t + rng.uniform(0, 6))
                         for _ in range(12)) for _ in range(channels)]).astype(np.float32)


def test_transposition_speeds_are_whole_semitones():
    assert separate.transposition_speeds(0) == [1.0]
    speeds = separate.transposition_speeds(2)
    assert speeds[2] == 1.0 and len(speeds) == 5
    assert np.allclose(np.log2(speeds) * 12, [-2, -1, 0, 1, 2])


def test_transposed_separator_streams_every_sample_back_in_place():
    """Pass-through masks: each transposed pipe gives the song back (resampled there and back), so the
    mean is the input, with exactly its length, streamed in any blocks as in one push."""
    x = _band_limited(20011, 8000)

    def run(block):
        sep = separate.TransposedSeparator(lambda: separate.StreamSeparator(_PassThrough(129).eval(), STFT),
                                           separate.transposition_speeds(2))
        outs = [sep.push(x[:, i:i + block]) for i in range(0, x.shape[1], block)] + [sep.finish()]
        assert all(o.shape[:2] == (1, 2) for o in outs)
        return np.concatenate(outs, -1)[0]

    whole = run(10 ** 6)
    assert whole.shape == x.shape
    inner = slice(500, -500)                        # the resamplers' edges aside
    assert np.abs(whole[:, inner] - x[:, inner]).max() < 1e-3 * np.abs(x).max()
    assert np.abs(run(777) - whole).max() < 1e-5


def test_transposed_separator_plays_the_song_in_each_key():
    """Each pipe's model hears a 1 kHz tone at 1000 x 2^(k/12) Hz."""
    sr = 8000
    x = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(2 * sr) / sr)).astype(np.float32)[None]
    sep = separate.TransposedSeparator(lambda: separate.StreamSeparator(_PassThrough(129).eval(), STFT),
                                       separate.transposition_speeds(2))
    sep.push(x)
    sep.finish()
    for k, pipe in zip(range(-2, 3), sep.seps):
        spectrum = torch.cat(pipe.model.seen)[5:-5].mean(0).numpy()       # (F,) away from the edges
        peak = int(np.argmax(spectrum))
        around = np.arange(peak - 2, peak + 3)
        hz = float(np.sum(around * spectrum[around]) / np.sum(spectrum[around])) * sr / STFT.n_fft
        assert abs(hz - 1000 * 2 ** (k / 12)) < 10, (k, hz)


def test_geometric_combiner_masks_by_the_share_of_the_geometric_means():
    """Estimates that put shares a_k of the mixture in the vocals and 1 - a_k in the rest: the mixture
    comes back scaled by gm(a) / (gm(a) + gm(1 - a)) (0.2 and 0.5: 1/3, where the arithmetic mean of
    the estimates would give 0.35), in every channel, with the input's length, in any blocks."""
    x = _band_limited(9001, 8000, seed=3)                                  # (2, n) stereo
    mono = x.mean(0)
    parts = [a * mono for a in (0.2, 1 - 0.2, 0.5, 1 - 0.5)]              # estimate 1: vocals, rest; estimate 2
    block = np.concatenate([x, np.stack(parts)])

    def run(size):
        comb = separate.GeometricCombiner(STFT, channels=2, n_estimates=2, n_sources=1)
        outs = [comb.push(block[:, i:i + size]) for i in range(0, block.shape[1], size)] + [comb.finish()]
        assert all(o.shape[:2] == (1, 2) for o in outs)
        return np.concatenate(outs, -1)[0]

    out = run(10 ** 6)
    assert out.shape == x.shape
    assert np.abs(out - x / 3).max() < 1e-4 * np.abs(x).max()
    assert np.abs(run(333) - out).max() < 1e-6


def test_transposed_separator_geometric_streams_and_differs_from_arithmetic(tiny_ff):
    """--transposition-mean geometric: the same length and block independence as the arithmetic mean,
    a different estimate, and the mixture split as before (vocals-only model: the rest is the mixture
    minus the vocals); an unknown mean is refused."""
    x = _band_limited(12000, 8000, seed=2)

    def run(mean, size):
        sep = separate.TransposedSeparator(lambda: separate.StreamSeparator(tiny_ff, STFT),
                                           separate.transposition_speeds(1), mean)
        outs = [sep.push(x[:, i:i + size]) for i in range(0, x.shape[1], size)] + [sep.finish()]
        return np.concatenate(outs, -1)

    geo, arith = run("geometric", 10 ** 6), run("arithmetic", 10 ** 6)
    assert geo.shape == arith.shape == (1, 2, 12000)
    assert np.abs(run("geometric", 1000) - geo).max() < 1e-6
    assert np.abs(geo - arith).max() > 1e-3
    assert np.abs(geo).max() <= np.abs(x).max() * 1.01                   # a mask of the mixture, not a gain
    tiny_ff.transposition_mean = "geometric"                              # the model's own, when none is given
    try:
        assert np.abs(run(None, 10 ** 6) - geo).max() < 1e-6
    finally:
        del tiny_ff.transposition_mean
    with pytest.raises(ValueError, match="transposition mean"):
        run("median", 1000)


def test_cli_transposition_mean(tmp_path, ckpt, capsys):
    """separate.py --transposition-mean: geometric and arithmetic write different vocals, each summing
    with the accompaniment to the song; with --semitones 0 a note says it does nothing."""
    voc = _cli_vocals(tmp_path, ckpt, "--transposition-mean", ("geometric", "arithmetic"), sr=22050)
    assert np.abs(voc["geometric"] - voc["arithmetic"]).max() > 1e-4
    capsys.readouterr()
    song = tmp_path / "song.wav"
    assert run([str(song), "--model", str(ckpt), "-o", str(tmp_path / "st0"), "--semitones", "0",
                "--transposition-mean", "geometric", "--quiet"]) == 0
    assert "--transposition-mean has no effect with --semitones 0" in capsys.readouterr().err


def test_semitones_give_the_same_estimates_streamed_and_whole(tiny_ff):
    """separate_array's streaming path and the whole-song path (time-domain models) agree."""
    x = _band_limited(9000, 8000, seed=1, channels=1)
    streamed = separate.separate_array(tiny_ff, STFT, x, chunk_frames=7, semitones=1)
    whole = separate.transposed_mean(lambda y: separate.separate_array(tiny_ff, STFT, y), x,
                                     separate.transposition_speeds(1))
    assert streamed.shape == whole.shape == (1, 1, 9000)
    assert np.abs(streamed - whole).max() < 1e-5
    plain = separate.separate_array(tiny_ff, STFT, x)
    assert np.abs(streamed - plain).max() > 1e-3                      # the transposed pipes count


def test_each_model_class_has_its_semitones_default():
    """--semitones defaults to the model's own: 4 for the RNN, the DRNN, the GRU-IRM and the hourglass
    (chosen on a new voice, validation and the produced excerpts), 2 for the other models and for
    ensembles; an N given always wins."""
    import Model_DRNN
    import Model_GRU
    import Model_Hourglass
    rnn = Model_RNN.RNNMaskNet(129, (32, 16), 8, rnn_hidden=8)
    drnn = Model_DRNN.DRNN(129, hidden=16, layers=2, recurrent_layers=(1,))
    gru = Model_GRU.GRUMaskNet(129, hidden=8, layers=1, dense=8)
    ff = Model.FrameMaskNet(129, (32, 16), 8)
    assert [separate.model_semitones(m) for m in (rnn, drnn, gru, Model_Hourglass.StackedHourglass)] == [4] * 4
    assert separate.model_semitones(ff) == separate.DEFAULT_SEMITONES == 2
    assert separate.model_semitones(Model.MaskEnsemble([ff, rnn])) == 2
    assert separate.model_semitones(rnn, 0) == 0 and separate.model_semitones(ff, 3) == 3

    class Export:                       # an ONNX export (onnx_export.OnnxMaskModel) names its class
        model_class = "Model_RNN.RNNMaskNet"
    assert separate.model_semitones(Export()) == 4


def test_cli_separates_the_rnn_at_its_own_semitones(tmp_path):
    """separate_RNN.py without --semitones writes what --semitones 4 writes, not what 2 does."""
    import separate_RNN
    torch.manual_seed(0)
    path = tmp_path / "rnn.pt"
    util.save_checkpoint(path, Model_RNN.RNNMaskNet(129, (32, 16), 8, 0.0, rnn_hidden=8), STFT, 8000)
    song = tmp_path / "song.wav"
    sf.write(song, tone(1.5, 8000, 220, channels=1), 8000)
    voc = {}
    for name, extra in (("default", []), ("4", ["--semitones", "4"]), ("2", ["--semitones", "2"])):
        with pytest.raises(SystemExit) as e:
            util.run_cli(separate_RNN.main, [str(song), "--model", str(path), "-o", str(tmp_path / name),
                                             "--quiet", *extra])
        assert e.value.code == 0
        voc[name], _ = sf.read(tmp_path / name / "song" / "vocals.wav")
    assert np.array_equal(voc["default"], voc["4"])
    assert np.abs(voc["default"] - voc["2"]).max() > 1e-4


def test_cli_semitones(tmp_path, ckpt):
    voc = _cli_vocals(tmp_path, ckpt, "--semitones", ("0", "2"), sr=22050)
    assert np.abs(voc["2"] - voc["0"]).max() > 1e-3
