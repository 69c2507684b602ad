"""The benchmark scripts run on any checkpoint the project makes (here tiny ones on a tiny folder)."""
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import Model
import Model_WaveUNet
import separate
import util

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_real_songs  # noqa: E402


def noise_song(folder: Path, seed: int, frames: int = 9000, channels: int = 1, rate: int = 8000):
    """``folder/song/{vocals,mixture}.wav``: two noise stems and their sum; returns the data folder."""
    rng = np.random.default_rng(seed)
    track = folder / "song"
    track.mkdir(parents=True)
    vocals = rng.standard_normal((frames, channels)).astype(np.float32) * 0.05
    sf.write(track / "vocals.wav", vocals, rate)
    sf.write(track / "mixture.wav", vocals + rng.standard_normal((frames, channels)).astype(np.float32) * 0.05, rate)
    return folder


def frame_model(path: Path, seed: int, stft):
    """A tiny untrained frame-model checkpoint at ``path``."""
    torch.manual_seed(seed)
    util.save_checkpoint(path, Model.FrameMaskNet(stft.n_bins, (16,), 8, dropout=0.0), stft, 8000)


def test_bench_real_songs_scores_a_mask_model_and_a_time_domain_model(tmp_path):
    noise_song(tmp_path / "data", 0, frames=12000, channels=2, rate=11025)
    stft = util.make_stft(128, 32)
    frame_model(tmp_path / "ff.pt", 0, stft)
    util.save_checkpoint(tmp_path / "wun.pt", Model_WaveUNet.WaveUNet(levels=3, features=4, down_kernel=5,
                                                                      up_kernel=3), stft, 8000)
    out = tmp_path / "out"
    assert bench_real_songs.main(["--model", str(tmp_path / "ff.pt"), str(tmp_path / "wun.pt"),
                                  "--data", str(tmp_path / "data"), "--settings", "resampled", "top-mean",
                                  "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    assert [(r["model"], r["track"]) for r in result["rows"]] == [("ff.pt", "song"), ("wun.pt", "song")]
    for r in result["rows"]:
        assert np.isfinite([r["mixture"], r["resampled"], r["top-mean"]]).all()
    ff, wun = result["rows"]
    assert ff["top-mean"] != ff["resampled"]                  # two paths for a mask model
    assert result["ensemble_mean"] == "geometric" and "default" in result["shifts"]
    st = separate.DEFAULT_SEMITONES
    mean = separate.DEFAULT_TRANSPOSITION_MEAN                # the time-domain model averages waveforms: None
    assert result["systems"] == {"ff.pt": {"shifts": None, "ensemble_mean": None, "semitones": st,   # neither has
                                           "transposition_mean": mean},                           # such a part
                                 "wun.pt": {"shifts": None, "ensemble_mean": None, "semitones": st,
                                            "transposition_mean": None}}
    assert result["transposition_mean"] == mean
    assert wun["top-mean"] == wun["resampled"]                # one for the time-domain model


def test_bench_real_songs_scores_the_vocals_output_whatever_its_place(tmp_path):
    """A model whose vocals are its second output is scored on its vocals (it took output 0); an empty
    data folder and an --out that is a file are one-line errors before any work."""
    import Model_CNN
    noise_song(tmp_path / "data", 0, frames=12000, channels=1, rate=8000)
    stft = util.make_stft(128, 32)
    torch.manual_seed(0)
    cnn = Model_CNN.ChandnaCNN(stft.n_bins, ("accompaniment", "vocals"), time_context=10, horizontal=(4, 1),
                               n_vertical=6, n_horizontal=5, bottleneck=8).eval()
    util.save_checkpoint(tmp_path / "cnn.pt", cnn, stft, 8000)
    assert bench_real_songs.main(["--model", str(tmp_path / "cnn.pt"), "--data", str(tmp_path / "data"),
                                  "--settings", "resampled", "--semitones", "0", "--shifts", "1",
                                  "--out", str(tmp_path / "out")]) == 0
    row = json.loads((tmp_path / "out" / "results.json").read_text())["rows"][0]
    mix, _ = util.load_audio(tmp_path / "data" / "song" / "mixture.wav")
    voc, _ = util.load_audio(tmp_path / "data" / "song" / "vocals.wav")
    separate.apply_settings(cnn, 1, None, 0, None, "torch")
    est = separate.separate_array(cnn, stft, mix)[1]
    assert row["resampled"] == pytest.approx(bench_real_songs.score(voc, mix - voc, est, mix - est)["vocals_sdr"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(util.UserError, match="no track folders"):
        bench_real_songs.main(["--model", str(tmp_path / "cnn.pt"), "--data", str(tmp_path / "empty")])
    (tmp_path / "afile").write_text("")
    with pytest.raises(util.UserError, match="is a file"):
        bench_real_songs.main(["--model", str(tmp_path / "cnn.pt"), "--data", str(tmp_path / "data"),
                               "--out", str(tmp_path / "afile")])


def test_bench_real_songs_keeps_two_checkpoints_of_one_name_apart(tmp_path):
    """Two files both named m.pt (a run's best beside the shipped one) get a row each, not one merged median."""
    noise_song(tmp_path / "data", 1)
    stft = util.make_stft(128, 32)
    for seed, folder in enumerate(("a", "b")):
        (tmp_path / folder).mkdir()
        frame_model(tmp_path / folder / "m.pt", seed, stft)
    out = tmp_path / "out"
    assert bench_real_songs.main(["--model", str(tmp_path / "a" / "m.pt"), str(tmp_path / "b" / "m.pt"),
                                  "--data", str(tmp_path / "data"), "--settings", "top-mean", "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    assert list(result["median"]) == [str(tmp_path / "a" / "m.pt"), str(tmp_path / "b" / "m.pt")]
    a, b = result["rows"]
    assert result["median"][a["model"]]["top-mean"] == a["top-mean"] != b["top-mean"]


def test_bench_real_songs_records_each_models_settings(tmp_path):
    """results.json names the ensemble mean and shifts each model ran with, the default included."""
    noise_song(tmp_path / "data", 2)
    stft = util.make_stft(128, 32)
    for seed, name in enumerate(("a.pt", "b.pt")):
        frame_model(tmp_path / name, seed, stft)
    pair = f"{tmp_path / 'a.pt'}+{tmp_path / 'b.pt'}"
    for mean in (None, "arithmetic"):
        out = tmp_path / f"out-{mean}"
        argv = ["--model", pair, "--data", str(tmp_path / "data"), "--settings", "top-mean", "--out", str(out)]
        assert bench_real_songs.main(argv + ([] if mean is None else ["--ensemble-mean", mean])) == 0
        result = json.loads((out / "results.json").read_text())
        (label, used), = result["systems"].items()
        assert used["ensemble_mean"] == result["ensemble_mean"] == (mean or "geometric")
        assert label == result["rows"][0]["model"]


def test_bench_tuning_scores_each_speed(tmp_path, mir1k):
    """Speed 1 is the raw model's own score on the clip; other speeds give other, finite scores."""
    import bench_tuning
    import bss_eval
    import Data
    stft = util.make_stft(256, 64)
    frame_model(tmp_path / "ff.pt", 0, stft)
    out = tmp_path / "tuning.json"
    assert bench_tuning.main(["--model", str(tmp_path / "ff.pt"), "--data", str(mir1k), "--tracks", "amy_1_*",
                              "--speeds", "1", "0.95", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    result = json.loads(out.read_text())
    assert result["speeds"] == [0.95, 1.0] and result["tracks"] == ["amy_1_01"]
    model, stft, sr, _ = util.load_model(tmp_path / "ff.pt")
    track, = [t for t in Data.find_tracks(mir1k, "train") if t.name == "amy_1_01"]
    src = np.stack([Data.AudioCache(sr, tmp_path / "cache").source(track, s) for s in Data.SOURCES])
    mix = src.sum(0).astype(np.float32)
    vocals = separate.separate_array(model, stft, mix[None])[0, 0]
    refs = src.astype(np.float64)
    want = bss_eval.evaluate(refs, np.stack([vocals, mix - vocals]).astype(np.float64))[0][0] - \
        bss_eval.evaluate(refs, np.stack([mix, mix]).astype(np.float64))[0][0]
    assert abs(result["gnsdr"][1] - want) < 1e-6
    assert np.isfinite(result["gnsdr"]).all() and result["gnsdr"][0] != result["gnsdr"][1]
    with pytest.raises(util.UserError, match="exists"):
        bench_tuning.main(["--model", str(tmp_path / "ff.pt"), "--data", str(mir1k), "--out", str(out)])


def test_bench_tuning_moves_one_stem(tmp_path, mir1k):
    """--move vocals plays only the vocals at each speed: the accompaniment stays sample for sample,
    the vocals become the varispeed of the original; speed 1 is the raw model's score as with the song."""
    import bench_tuning
    import Data
    src = np.random.default_rng(0).standard_normal((2, 8000)).astype(np.float32)
    moved = bench_tuning.moved_sources(src, "vocals", 1.05)
    assert moved.shape == src.shape and np.array_equal(moved[1], src[1])
    assert np.allclose(moved[0], Data.fit_length(Data.varispeed(src[0], round(8000 / 1.05), 1.05), 8000))
    assert np.array_equal(bench_tuning.moved_sources(src, "accompaniment", 1.0), src)
    stft = util.make_stft(256, 64)
    frame_model(tmp_path / "ff.pt", 0, stft)
    runs = {}
    for move in ("song", "vocals", "accompaniment"):
        out = tmp_path / f"{move}.json"
        assert bench_tuning.main(["--model", str(tmp_path / "ff.pt"), "--data", str(mir1k), "--tracks", "amy_1_*",
                                  "--speeds", "1", "0.95", "--move", move, "--out", str(out),
                                  "--cache-dir", str(tmp_path / "cache")]) == 0
        runs[move] = json.loads(out.read_text())
        assert runs[move]["move"] == move
    assert runs["vocals"]["gnsdr"][1] == pytest.approx(runs["song"]["gnsdr"][1], abs=1e-9)
    assert len({runs[m]["gnsdr"][0] for m in runs}) == 3


def test_bench_transposition_weights_matches_the_separators_own_averaging(tmp_path, mir1k):
    """Equal weights over -N..N are what --semitones N gives, the estimate at k = 0 is the raw model's, and the
    geometric row is --transposition-mean geometric's, each scored as evaluate_sdr.py scores."""
    import bench_transposition_weights as btw
    import bss_eval
    import Data
    stft = util.make_stft(256, 64)
    torch.manual_seed(0)
    net = Model.FrameMaskNet(stft.n_bins, (16,), 8, dropout=0.0)
    with torch.no_grad():                       # sharper, more input-dependent masks than an untrained model's
        for p in net.parameters():
            p.mul_(4)
    util.save_checkpoint(tmp_path / "ff.pt", net, stft, 8000)
    out = tmp_path / "tw"
    args = ["--model", str(tmp_path / "ff.pt"), "--data", str(mir1k), "--tracks", "amy_1_*", "--semitones", "2",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    assert btw.main(args) == 0
    result = json.loads((out / "results.json").read_text())
    model, stft, sr, _ = util.load_model(tmp_path / "ff.pt")
    track, = [t for t in Data.find_tracks(mir1k, "train") if t.name == "amy_1_01"]
    refs = np.stack([Data.AudioCache(sr, tmp_path / "cache").source(track, s) for s in Data.SOURCES]).astype(np.float64)
    mix = refs.sum(0)

    def nsdr(vocals):
        return bss_eval.evaluate(refs, np.stack([vocals, mix - vocals]))[0][0] - \
            bss_eval.evaluate(refs, np.stack([mix, mix]))[0][0]

    def separated(semitones, mean=None):
        if mean:
            separate.set_transposition_mean(model, mean)
        try:
            return separate.separate_array(model, stft, mix[None].astype(np.float32), semitones=semitones)[0, 0]
        finally:
            model.__dict__.pop("transposition_mean", None)

    gnsdr = {combo: values["ff"] for combo, values in result["gnsdr"].items()}
    assert abs(gnsdr["none (k=0)"] - nsdr(separated(0))) < 1e-3
    assert abs(gnsdr["uniform 2"] - nsdr(separated(2))) < 1e-3             # whole clip here, streamed there
    assert abs(gnsdr["uniform 1"] - nsdr(separated(1))) < 1e-3
    assert abs(gnsdr["geometric"] - nsdr(separated(2, "geometric"))) < 1e-3
    assert {"triangle", "gauss2", "median"} <= set(gnsdr)
    assert min(abs(a - b) for a, b in itertools.combinations(gnsdr.values(), 2)) > 0.01     # each row its own
    assert len(result["rows"]) == len(gnsdr) and result["meta"]["semitones"] == 2
    with pytest.raises(util.UserError, match="exists"):
        btw.main(args)
