import random

import numpy as np
import pytest
import soundfile as sf
import torch

import Data
import util
from conftest import tone, write_stems
from util import UserError


def test_dsd100_layout(dsd100, tmp_path):
    train = Data.find_tracks(dsd100, "train")
    test = Data.find_tracks(dsd100, "test")
    assert Data.detect_layout(dsd100) == "dsd100"
    assert [t.name for t in train] == ["000 - Song Dev0", "001 - Song Dev1", "002 - Song Dev2"]
    assert len(test) == 2
    assert len(train[0].stems["accompaniment"]) == 3          # bass + drums + other
    cache = Data.AudioCache(8000, tmp_path / "cache")
    acc = cache.source(train[0], "accompaniment")
    parts = sum(cache.source(train[0], s) for s in ("bass", "drums", "other"))
    assert acc.shape == (8000,) and np.allclose(acc, parts, atol=1e-6)


def test_musdb_layout(musdb):
    assert Data.detect_layout(musdb) == "musdb"
    train = Data.find_tracks(musdb, "train")
    assert [t.name for t in train] == ["A", "B"]
    assert len(train[0].stems["accompaniment"]) == 1 and len(train[1].stems["accompaniment"]) == 3
    assert train[1].has(Data.FOUR_STEMS) and not train[0].has(Data.FOUR_STEMS)
    assert [t.name for t in Data.find_tracks(musdb, "test")] == ["C"]


def test_unsplit_track_folders(musdb):
    folder = musdb / "train"                                   # a folder of track folders
    assert Data.detect_layout(folder) == "folders"
    assert len(Data.find_tracks(folder, "test")) == 2


def test_mir1k_layout_and_split(mir1k, tmp_path):
    assert Data.detect_layout(mir1k) == "mir1k"
    train = Data.find_tracks(mir1k, "train")
    test = Data.find_tracks(mir1k, "test")
    assert sorted(t.name.split("_")[0] for t in train) == ["abjones", "abjones", "amy", "amy"]
    assert [t.name for t in test] == ["stool_1_01", "stool_2_01"]
    cache = Data.AudioCache(16000, tmp_path / "cache")
    voc, acc = cache.source(test[0], "vocals"), cache.source(test[0], "accompaniment")
    clip, _ = sf.read(mir1k / "Wavfile" / "stool_1_01.wav", dtype="float32")
    assert np.allclose(voc, clip[:, 1], atol=1e-6) and np.allclose(acc, clip[:, 0], atol=1e-6)
    # a plain folder of clips (no Wavfile/ level) reads the same
    assert len(Data.find_tracks(mir1k / "Wavfile", "test")) == 2


def test_mir1k_hidden_files_are_skipped_and_a_clip_twice_is_an_error(mir1k):
    wav = mir1k / "Wavfile"
    (wav / "._stool_1_01.wav").write_bytes(b"\x00\x05\x16\x07 AppleDouble")   # macOS metadata, not audio
    assert [t.name for t in Data.find_tracks(mir1k, "test")] == ["stool_1_01", "stool_2_01"]
    audio, sr = sf.read(wav / "stool_2_01.wav")
    sf.write(wav / "stool_2_01.flac", audio, sr)                # the same clip in a second format
    with pytest.raises(UserError, match=r"clip stool_2_01 is there twice \(stool_2_01.flac, stool_2_01.wav\)"):
        Data.find_tracks(mir1k, "test")


def test_course_dataset_keeps_mir1k_channels_apart_without_mono(mir1k, tmp_path):
    """The skeleton's DSD100Dataset with mono=False on MIR-1K: the voice is the right channel and the
    mixture left + right, one channel each (it used to take both channels of the file for each)."""
    ds = Data.DSD100Dataset(mir1k, "Test", mono=False, cache_dir=tmp_path / "cache")
    clip, _ = sf.read(mir1k / "Wavfile" / "stool_1_01.wav", dtype="float32")
    sample = ds[0]
    assert sample["vocal"].shape == sample["mixture"].shape == (len(clip), 1)
    assert np.allclose(sample["vocal"][:, 0], clip[:, 1], atol=1e-6)
    assert np.allclose(sample["mixture"][:, 0], clip.sum(1), atol=1e-6)


def test_cache_decodes_once(mir1k, tmp_path, monkeypatch):
    track = Data.find_tracks(mir1k, "test")[0]
    Data.AudioCache(8000, tmp_path / "c").source(track, "vocals")
    calls = []
    monkeypatch.setattr(util, "load_audio", lambda *a, **k: calls.append(a) or (_ for _ in ()).throw(AssertionError))
    again = Data.AudioCache(8000, tmp_path / "c").source(track, "vocals")  # a new epoch / process
    assert calls == [] and again.shape == (8000,)
    assert len(list((tmp_path / "c").glob("*.npy"))) == 1


def test_missing_stem_names_file(musdb):
    (musdb / "train" / "A" / "vocals.wav").unlink()
    with pytest.raises(UserError, match=r"A/vocals.wav: missing stem"):
        Data.find_tracks(musdb, "train")


def test_missing_accompaniment_names_file(musdb):
    (musdb / "train" / "B" / "drums.wav").unlink()
    with pytest.raises(UserError, match=r"drums.wav: missing stem"):
        Data.find_tracks(musdb, "train")


def test_mismatched_length_and_rate_name_file(tmp_path):
    folder = tmp_path / "ds" / "train" / "T"
    write_stems(folder, ("vocals", "accompaniment"))
    sf.write(folder / "accompaniment.wav", tone(0.5, 16000, 100), 16000)
    with pytest.raises(UserError, match="accompaniment.wav: length"):
        Data.find_tracks(tmp_path / "ds", "train")
    write_stems(folder, ("vocals", "accompaniment"))
    sf.write(folder / "vocals.wav", tone(0.5, 16000, 100), 16000)       # the short one comes first
    with pytest.raises(UserError, match="vocals.wav: length 8000"):
        Data.find_tracks(tmp_path / "ds", "train")
    write_stems(folder, ("vocals", "accompaniment"))
    sf.write(folder / "accompaniment.wav", tone(1.0, 22050, 100), 22050)
    with pytest.raises(UserError, match="accompaniment.wav: sample rate 22050"):
        Data.find_tracks(tmp_path / "ds", "train")


def test_wrong_layout(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.txt").write_text("hi")
    with pytest.raises(UserError, match="unrecognised dataset layout"):
        Data.find_tracks(tmp_path / "junk", "train")
    with pytest.raises(UserError, match="not found"):
        Data.find_tracks(tmp_path / "nothing", "train")
    (tmp_path / "dsd" / "Mixtures").mkdir(parents=True)
    with pytest.raises(UserError, match="Mixtures: holds no split folders; expected Dev and Test"):
        Data.find_tracks(tmp_path / "dsd", "train")


def test_split_by_song_is_fixed_and_disjoint(mir1k):
    tracks = Data.find_tracks(mir1k, "train")
    a = Data.split_train_valid(tracks, 0.5, seed=1, group=Data.song_key)
    b = Data.split_train_valid(tracks, 0.5, seed=1, group=Data.song_key)
    assert [t.name for t in a[1]] == [t.name for t in b[1]]
    train_songs = {Data.song_key(t) for t in a[0]}
    assert a[1] and not train_songs & {Data.song_key(t) for t in a[1]}


def test_augment_gain_shape_and_range():
    x = np.ones(100, np.float32)
    rng = random.Random(0)
    for _ in range(20):
        y = Data.augment_gain(x, rng, 0.5, 1.5)
        assert y.shape == x.shape and 0.5 <= y[0] <= 1.5 and np.all(y == y[0])


def test_random_eq_is_smooth_bounded_and_repeatable():
    x = np.random.default_rng(0).normal(size=16000).astype(np.float32)
    y = Data.random_eq(x, random.Random(5), 6.0)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(y, Data.random_eq(x, random.Random(5), 6.0))
    ratio_db = 20 * np.log10(np.abs(np.fft.rfft(y)[1:]) / np.abs(np.fft.rfft(x)[1:]))
    assert np.abs(ratio_db).max() <= 6.0 + 1e-3 and np.abs(ratio_db).max() > 1.0   # within +-6 dB, not flat
    assert np.abs(np.diff(ratio_db)).max() < 0.05                                 # smooth over frequency
    np.testing.assert_allclose(Data.random_eq(x, random.Random(5), 0.0), x, atol=1e-5)   # 0 dB: unchanged


def test_random_reverb_is_causal_level_kept_and_repeatable():
    x = np.zeros(16000, np.float32)
    x[1000] = 1.0                                                       # an impulse: the output is the room
    y = Data.random_reverb(x, random.Random(3), 16000)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(y, Data.random_reverb(x, random.Random(3), 16000))
    assert np.abs(y[:1000]).max() < 1e-6                                # causal (FFT rounding only)
    assert np.isclose(np.sqrt(np.mean(y.astype(np.float64) ** 2)), np.sqrt(np.mean(x ** 2.0)), rtol=1e-4)
    tail = y[1000 + int(0.005 * 16000):]
    assert np.sum(tail ** 2) > 0.04 * np.sum(y ** 2)                    # a reverberant tail (DRR <= 12 dB)
    assert np.sum(tail[int(0.2 * 16000):] ** 2) > 0                     # lasting at least RT60's lower bound
    rt = [Data.random_reverb(x, random.Random(k), 16000) for k in range(20)]
    assert len({float(np.abs(r[1000])) for r in rt}) > 10               # rooms differ
    lasts = [np.nonzero(np.abs(r) > 1e-6)[0].max() - 1000 for r in rt]
    assert max(lasts) <= 0.030 * 16000 + Data.REVERB_RT60[1] * 16000     # no tail beyond pre-delay + RT60


def _vowel(f0, formant, sr=16000, seconds=1.0):
    """A harmonic tone at f0 whose harmonics follow one formant (Gaussian, 300 Hz wide) at ``formant``."""
    t = np.arange(int(sr * seconds)) / sr
    x = sum((np.exp(-((h * f0 - formant) / 300.0) ** 2) + 0.05) * np.sin(2 * np.pi * h * f0 * t)
            for h in range(1, int(sr / 2 / f0)))
    return (x + 0.01 * np.random.default_rng(0).normal(size=len(t))).astype(np.float32)


def _formant_peak(y, f0, sr=16000):
    """The harmonic of f0 (below 2.5 kHz) with the most energy, and the share of energy on harmonics."""
    spec = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / sr)
    harm = [int(round(h * f0 * len(y) / sr)) for h in range(1, int(2500 / f0))]
    peak = f0 * (1 + int(np.argmax(spec[harm])))
    on_harmonics = np.isclose(freqs / f0, np.round(freqs / f0), atol=2 / (len(y) / sr) / f0)
    return peak, spec[on_harmonics & (freqs > f0 / 2)].sum() / spec.sum()


def test_formant_shift_moves_the_envelope_and_keeps_the_pitch():
    x = _vowel(200.0, 1000.0)
    assert _formant_peak(x, 200.0)[0] == 1000
    for ratio, expected in ((1.2, 1200), (0.8, 800)):
        y = Data.formant_shift(x, ratio, 16000)
        assert y.dtype == np.float32 and y.shape == x.shape
        peak, share = _formant_peak(y, 200.0)
        assert peak == expected                                    # the formant moved by the ratio
        assert share > 0.95                                        # the energy stays on the 200 Hz harmonics
        assert np.isclose(np.sqrt(np.mean(y.astype(np.float64) ** 2)), np.sqrt(np.mean(x.astype(np.float64) ** 2)),
                          rtol=1e-4)
    np.testing.assert_array_equal(Data.formant_shift(x, 1.0, 16000), x)
    near = Data.formant_shift(x[:1001], 1.0001, 16000)               # the analysis/resynthesis is transparent
    assert near.shape == (1001,) and np.sum((near - x[:1001]) ** 2) < 1e-5 * np.sum(x[:1001] ** 2)
    x44 = _vowel(300.0, 1500.0, sr=44100, seconds=0.5)               # any rate: the frame is 64 ms
    assert _formant_peak(Data.formant_shift(x44, 1.2, 44100), 300.0, 44100)[0] == 1800


def _local_freqs(x, sr, win):
    """Frequency (Hz) of a sine in consecutive windows, from its upward zero crossings."""
    out = []
    for a in range(0, len(x) - win, win):
        seg = x[a:a + win]
        up = np.flatnonzero((seg[:-1] < 0) & (seg[1:] >= 0))
        out.append((len(up) - 1) * sr / (up[-1] - up[0]))
    return np.array(out)


def test_time_stretch_changes_the_tempo_and_keeps_the_pitch():
    sr = 16000
    t = np.arange(int(4.4 * sr)) / sr
    gate = np.sin(2 * np.pi * 2 * t) > 0                                      # a 440 Hz tone, on and off at 2 Hz
    x = (np.sin(2 * np.pi * 440 * t) * (0.1 + gate)).astype(np.float32)
    for rate in (0.8, 1.25):
        n = min(int(round(len(x) / rate)), 4 * sr)
        y = Data.time_stretch(x, n, rate, sr)
        assert y.shape == (n,) and y.dtype == np.float32
        np.testing.assert_allclose(np.median(_local_freqs(y, sr, sr // 20)), 440, atol=2)   # the pitch kept
        env = np.abs(y).reshape(-1, 160).mean(1)                               # 10 ms envelope
        e = env - env.mean()
        ac = np.correlate(e, e, "full")[len(e) - 1:]
        period = (np.argmax(ac[20:]) + 20) * 160 / sr
        assert abs(period - 0.5 / rate) < 0.02                                 # the gate now runs at 2 * rate Hz
        assert np.isclose(np.sqrt(np.mean(y[sr:-sr] ** 2)), np.sqrt(np.mean(x ** 2)), rtol=0.1)   # no fades
        chord = (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 587 * t)).astype(np.float32)
        z = Data.time_stretch(chord, n, rate, sr)[sr:-sr]
        hf = np.abs(np.fft.rfft(z * np.hanning(len(z))))
        assert np.sum(hf[np.fft.rfftfreq(len(z), 1 / sr) > 2000] ** 2) < 1e-10 * np.sum(hf ** 2)   # no clicks at joins
    for rate in (0.5, 1.1, 2.0):                                              # no fade at either end
        y = Data.time_stretch(np.ones(int(3 * sr * rate), np.float32), 3 * sr, rate, sr)
        np.testing.assert_allclose(y, 1.0, atol=1e-5)
    assert Data.time_stretch(x, len(x), 1.0, sr) is x                          # 1: untouched
    slow = Data.time_stretch(x[:8000], 9000, 8000 / 9000, sr)                  # past the input's end: zeros, no error
    assert slow.shape == (9000,)


def test_pitch_bend_moves_the_pitch_within_its_bound():
    sr = 16000
    x = np.sin(2 * np.pi * 440 * np.arange(4 * sr) / sr).astype(np.float32)
    assert Data.pitch_bend(x, 0.0, sr, random.Random(0)) is x                 # 0: off
    y = Data.pitch_bend(x, 1.0, sr, random.Random(0))
    assert y.shape == x.shape and y.dtype == np.float32 and np.max(np.abs(y)) <= 1.0 + 1e-6
    f = _local_freqs(y, sr, sr // 20)                                         # 50 ms windows
    lo, hi = 440 * 2 ** (-1 / 12), 440 * 2 ** (1 / 12)
    assert np.all((f > lo - 3) & (f < hi + 3))                               # within +-1 semitone
    assert f.max() - f.min() > 20                                             # and it does move
    np.testing.assert_allclose(_local_freqs(x, sr, sr // 20), 440, atol=1)
    assert np.array_equal(y, Data.pitch_bend(x, 1.0, sr, random.Random(0)))   # the rng decides


def test_random_offset_and_fit_length():
    rng = random.Random(0)
    offs = {Data.random_offset(100, 10, rng) for _ in range(200)}
    assert min(offs) >= 0 and max(offs) <= 90 and len(offs) > 20
    assert Data.random_offset(5, 10, rng) == 0
    assert Data.fit_length(np.ones(5, np.float32), 8).tolist() == [1] * 5 + [0] * 3


def test_random_offset_padded_and_read_padded(tmp_path):
    rng = random.Random(0)
    offs = [Data.random_offset_padded(100, 10, rng) for _ in range(2000)]
    assert min(offs) == -5 and max(offs) == 95                  # up to half a chunk past either end
    assert {Data.random_offset_padded(4, 10, rng) for _ in range(200)} == set(range(-5, 0))   # a track under a chunk
    folder = tmp_path / "t" / "A"
    folder.mkdir(parents=True)
    ramp = np.arange(1, 11, dtype=np.float32) / 10
    sf.write(folder / "vocals.wav", ramp, 8000, subtype="FLOAT")
    sf.write(folder / "accompaniment.wav", ramp, 8000, subtype="FLOAT")
    track = Data.find_tracks(tmp_path / "t", "train")[0]
    cache = Data.AudioCache(8000, tmp_path / "c")
    assert np.allclose(Data.read_padded(cache, track, "vocals", -3, 6), [0, 0, 0, 0.1, 0.2, 0.3])
    assert np.allclose(Data.read_padded(cache, track, "vocals", 7, 6), [0.8, 0.9, 1.0, 0, 0, 0])
    assert np.allclose(Data.read_padded(cache, track, "vocals", 2, 3), [0.3, 0.4, 0.5])


def test_sample_by_second_weighs_tracks_by_length(tmp_path):
    """--sample-by second: a track 5x longer gives about 5/6 of the excerpts (clip: about half), and its
    edges are heard too (excerpts that start or end in zeros, never more than half a chunk of them)."""
    root = tmp_path / "folders"
    for name, seconds, sign in (("short", 0.5, 1.0), ("long", 2.5, -1.0)):
        (root / name).mkdir(parents=True)
        sf.write(root / name / "vocals.wav", np.full(int(seconds * 8000), 0.3 * sign, np.float32), 8000)
        sf.write(root / name / "accompaniment.wav", np.full(int(seconds * 8000), 0.2, np.float32), 8000)
    tracks = Data.find_tracks(root, "train")
    cache = Data.AudioCache(8000, tmp_path / "c")
    kw = dict(train=True, chunk_samples=2000, samples_per_epoch=600, remix_prob=0.0, seed=1)
    shares = {}
    for how in Data.SAMPLE_BY:
        ds = Data.SeparationDataset(tracks, cache, sample_by=how, **kw)
        items = [ds[i] for i in range(len(ds))]
        long = [float(x[0][x[0] != 0].mean()) < 0 for x in items]
        shares[how] = np.mean(long)
        zeros = [int((x[0] == 0).sum()) for x in items]
        if how == "second":
            assert max(zeros) <= 1000 and sum(z > 0 for z in zeros) > 60      # about 1 in 6 here
            assert any(x[0][0] == 0 for x in items) and any(x[0][-1] == 0 for x in items)   # both edges
            assert all(torch.equal(x, y) for x, y in zip(items[:20], [ds[i] for i in range(20)]))   # repeatable
        else:                                    # clip: zeros only where a track is shorter than a chunk
            assert all(z == 0 for z, is_long in zip(zeros, long) if is_long)
    assert abs(shares["second"] - 5 / 6) < 0.05 and abs(shares["clip"] - 0.5) < 0.07
    with pytest.raises(ValueError, match="sample_by"):
        Data.SeparationDataset(tracks, cache, sample_by="minute", **kw)


def test_training_items_random_remix_repeatable(dsd100, tmp_path):
    tracks = Data.find_tracks(dsd100, "train")
    cache = Data.AudioCache(8000, tmp_path / "c")
    ds = Data.SeparationDataset(tracks, cache, train=True, chunk_samples=2000, samples_per_epoch=10,
                                remix_prob=1.0, seed=3)
    state = random.getstate()
    a = [ds[i] for i in range(10)]
    assert random.getstate() == state                           # global RNG untouched
    assert all(x.shape == (2, 2000) for x in a)
    assert all(torch.equal(x, y) for x, y in zip(a, [ds[i] for i in range(10)]))
    ds.epoch = 1
    assert not all(torch.equal(x, y) for x, y in zip(a, [ds[i] for i in range(10)]))
    eq = Data.SeparationDataset(tracks, cache, train=True, chunk_samples=2000, samples_per_epoch=10,
                                remix_prob=1.0, seed=3, eq_db=6.0)
    b = [eq[i] for i in range(10)]
    assert all(x.shape == (2, 2000) for x in b)
    assert all(torch.equal(x, y) for x, y in zip(b, [eq[i] for i in range(10)]))
    assert not any(torch.allclose(x, y) for x, y in zip(a, b))                  # every stem re-equalised
    rv = Data.SeparationDataset(tracks, cache, train=True, chunk_samples=2000, samples_per_epoch=10,
                                remix_prob=1.0, seed=3, vocal_reverb=1.0)
    c = [rv[i] for i in range(10)]
    assert all(torch.equal(x, y) for x, y in zip(c, [rv[i] for i in range(10)]))
    assert not any(torch.allclose(x[0], y[0]) for x, y in zip(a, c))            # every vocal through a room
    lo = Data.SeparationDataset(tracks, cache, train=True, chunk_samples=2000, samples_per_epoch=10,
                                remix_prob=1.0, seed=3, vocal_atten_db=12.0)
    d = [lo[i] for i in range(10)]
    ratio = [float(y[0].norm() / x[0].norm()) for x, y in zip(a, d) if x[0].norm() > 0]
    assert ratio and all(10 ** (-12 / 20) - 1e-6 <= r <= 1 + 1e-6 for r in ratio)   # vocals only lowered
    assert min(ratio) < 0.8
    fm = Data.SeparationDataset(tracks, cache, train=True, chunk_samples=2000, samples_per_epoch=10,
                                remix_prob=1.0, seed=3, vocal_formant=0.2)
    e = [fm[i] for i in range(10)]
    assert all(torch.equal(x, y) for x, y in zip(e, [fm[i] for i in range(10)]))
    assert not any(torch.allclose(x[0], y[0]) for x, y in zip(a, e) if x[0].norm() > 0)   # every vocal reshaped
    assert all(torch.equal(x[1:], y[1:]) for x, y in zip(a, e))                 # its own stream: the rest as before
    off = Data.SeparationDataset(tracks, cache, train=True, chunk_samples=2000, samples_per_epoch=10,
                                 remix_prob=1.0, seed=3, vocal_formant=0.0)
    assert all(torch.equal(x, off[i]) for i, x in enumerate(a))        # 0: off, the same random stream
    sp = Data.SeparationDataset(tracks, cache, train=True, chunk_samples=2000, samples_per_epoch=10,
                                remix_prob=1.0, seed=3, accomp_speed=0.2)
    f = [sp[i] for i in range(10)]
    assert all(x.shape == (2, 2000) and torch.equal(x, y) for x, y in zip(f, [sp[i] for i in range(10)]))
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a, f))                   # the vocals untouched
    assert not any(torch.allclose(x[1], y[1]) for x, y in zip(a, f))             # every accompaniment resampled
    st = Data.SeparationDataset(tracks, cache, train=True, chunk_samples=2000, samples_per_epoch=40,
                                remix_prob=1.0, seed=3, accomp_semitones=2)
    a40 = Data.SeparationDataset(tracks, cache, train=True, chunk_samples=2000, samples_per_epoch=40,
                                 remix_prob=1.0, seed=3)
    rates, real_varispeed = [], Data.varispeed
    Data.varispeed = lambda audio, n, rate: rates.append(rate) or real_varispeed(audio, n, rate)
    try:
        h = [st[i] for i in range(40)]
    finally:
        Data.varispeed = real_varispeed
    assert all(torch.equal(x[0], a40[i][0]) for i, x in enumerate(h))            # the vocals untouched
    steps = np.log2(rates) * 12                     # only the accompaniments are resampled here
    assert np.allclose(steps, np.round(steps)) and set(np.round(steps)) == {-2, -1, 1, 2}   # whole semitones
    assert len(rates) < 40                          # j = 0 leaves some as they were
    bd = Data.SeparationDataset(tracks, cache, train=True, chunk_samples=2000, samples_per_epoch=10,
                                remix_prob=1.0, seed=3, vocal_bend=1.0)
    g = [bd[i] for i in range(10)]
    assert all(torch.equal(x, y) for x, y in zip(g, [bd[i] for i in range(10)]))
    assert not any(torch.allclose(x[0], y[0]) for x, y in zip(a, g) if x[0].norm() > 0)   # every vocal bent
    kw = dict(train=True, chunk_samples=2000, samples_per_epoch=40, remix_prob=1.0, seed=3, vocal_speed=0.12)
    plain = Data.SeparationDataset(tracks, cache, **kw)
    sd = Data.SeparationDataset(tracks, cache, vocal_stretch=0.2, **kw)
    p, k = [plain[i] for i in range(40)], [sd[i] for i in range(40)]
    assert all(torch.equal(x, y) for x, y in zip(k, [sd[i] for i in range(40)]))
    assert all(torch.equal(x[1:], y[1:]) for x, y in zip(p, k))               # its own stream: the rest as before
    assert not any(torch.allclose(x[0], y[0]) for x, y in zip(p, k) if x[0].norm() > 0)   # every vocal stretched
    assert all(y.shape == x.shape for x, y in zip(p, k))


def _locate(x, cache, tracks, source):
    """(track index, offset) whose ``source`` excerpt ``x`` is a scaled copy of (least residual)."""
    best = None
    for i, t in enumerate(tracks):
        src = cache.source(t, source, 0, cache.length(t)).astype(np.float64)
        win = np.lib.stride_tricks.sliding_window_view(src, len(x))
        dots, energy = win @ x, np.einsum("ij,ij->i", win, win)
        resid = float(x @ x) - dots ** 2 / energy
        o = int(np.argmin(resid))
        if best is None or resid[o] < best[0]:
            best = (resid[o], i, o)
    assert best[0] < 1e-6 * float(x @ x)                      # an exact scaled copy was found
    return best[1:]


def test_aligned_items_are_the_song_as_recorded(dsd100, tmp_path):
    tracks = Data.find_tracks(dsd100, "train")
    cache = Data.AudioCache(8000, tmp_path / "c")
    kw = dict(train=True, chunk_samples=2000, samples_per_epoch=6, remix_prob=1.0, seed=3)
    aligned = Data.SeparationDataset(tracks, cache, aligned_prob=1.0, **kw)
    remixed = Data.SeparationDataset(tracks, cache, **kw)
    bent = Data.SeparationDataset(tracks, cache, aligned_prob=1.0, vocal_bend=1.0, **kw)
    for x in [aligned[i] for i in range(6)] + [bent[i] for i in range(6)]:
        v, a = (_locate(x[k].double().numpy(), cache, tracks, s) for k, s in enumerate(Data.SOURCES))
        assert v == a                                           # one track, one offset (no bend: in tune)
    pairs = [tuple(_locate(x[k].double().numpy(), cache, tracks, s) for k, s in enumerate(Data.SOURCES))
             for x in (remixed[i] for i in range(6))]
    assert all(v != a for v, a in pairs)                        # remixed: other tracks or offsets
    off = Data.SeparationDataset(tracks, cache, aligned_prob=0.0, **kw)
    assert all(torch.equal(remixed[i], off[i]) for i in range(6))     # 0: off, the same random stream


def test_eval_items_whole_tracks(dsd100, tmp_path):
    tracks = Data.find_tracks(dsd100, "test")
    ds = Data.SeparationDataset(tracks, Data.AudioCache(8000, tmp_path / "c"))
    assert len(ds) == 2 and ds[0].shape == (2, 8000)
    assert torch.equal(ds[1], ds[1])
    four = Data.SeparationDataset(tracks, Data.AudioCache(8000, tmp_path / "c"), sources=Data.FOUR_STEMS)
    assert four[0].shape == (4, 8000)


def test_transforms_shapes():
    t = Data.Transforms(util.make_stft(256, 64))
    mix, src = t(torch.randn(3, 2, 1000))
    assert mix.shape == (3, 1000 // 64 + 1, 129) and src.shape == (3, 2, 1000 // 64 + 1, 129)


def test_pitch_bend_bends_up_as_often_as_down():
    """The curve is centred: no net drift of the pitch over many draws (it was always down or level:
    read positions past the excerpt's end were scaled back, cancelling every net upward bend)."""
    sr = 16000
    x = np.sin(2 * np.pi * 440 * np.arange(2 * sr) / sr).astype(np.float32)
    net, peaks = [], []
    for seed in range(40):
        f = _local_freqs(Data.pitch_bend(x, 2.0, sr, random.Random(seed)), sr, sr // 20)
        st = 12 * np.log2(f / 440)
        net.append(st.mean())
        peaks.append(st.max())
    assert abs(np.mean(net)) < 0.05                      # the old scaling: about -0.17 semitones
    assert np.mean(np.array(peaks) > 1.0) > 0.5          # most draws rise more than a semitone somewhere
