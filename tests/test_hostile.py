"""Hostile but realistic use: checkpoints that try to run code, resumes with other options,
colliding outputs, odd names, kills, I/O failures, non-finite weights, bad option values."""
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch

import separate
import util
from conftest import ROOT, tone

STFT = util.make_stft(256, 64)


def run_cli(main, argv):
    with pytest.raises(SystemExit) as e:
        util.run_cli(main, argv)
    return e.value.code


def sep(argv):
    return run_cli(lambda a: separate.main(a, None, None), argv)


@pytest.fixture
def ckpt(tmp_path, tiny_ff):
    path = tmp_path / "ff.pt"
    util.save_checkpoint(path, tiny_ff, STFT, 8000)
    return path


@pytest.fixture
def song(tmp_path):
    path = tmp_path / "song.wav"
    sf.write(path, tone(1.0, 8000, 220), 8000)
    return path


# ---------------------------------------------------------------- 1. a checkpoint never runs code
class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _payload(marker):
    return {"model_class": "Model.FrameMaskNet", "model_args": {}, "state_dict": {}, "stft": {},
            "sample_rate": 8000, "evil": _RunsCode(marker)}


def _pickled_code(path, marker):
    torch.save(_payload(marker), path)


def _raw_pickle(path, marker):
    with open(path, "wb") as fh:
        pickle.dump(_payload(marker), fh)


def _popen_checkpoint(path, marker):
    torch.save({"model_class": "subprocess.Popen", "model_args": {"args": ["touch", str(marker)]},
                "state_dict": {}, "stft": {"n_fft": 256, "hop": 64}, "sample_rate": 8000}, path)


@pytest.mark.parametrize("make,message", [(_pickled_code, "never code"), (_raw_pickle, "evil.pt: "),
                                          (_popen_checkpoint, "not one of this project's models")])
def test_malicious_checkpoint_runs_nothing(tmp_path, song, capsys, make, message):
    evil, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    make(evil, marker)
    with open(evil, "rb") as fh:                     # the file really holds the os.system call
        assert b"system" in fh.read() or make is _popen_checkpoint
    assert sep([str(song), "--model", str(evil), "-o", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert not marker.exists()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and message in err


@pytest.mark.parametrize("make", [_pickled_code, _popen_checkpoint])
def test_malicious_checkpoint_every_entry_point(tmp_path, make):
    """evaluate_sdr, export_model, train_rnn --init: the same one-line refusal, no side effect."""
    evil, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    make(evil, marker)
    import evaluate_sdr
    import export_model
    import train_rnn
    assert run_cli(export_model.main, [str(evil), str(tmp_path / "x.pt")]) == 2
    assert run_cli(evaluate_sdr.main, ["--model", str(evil), "--data", str(tmp_path / "nowhere")]) == 2
    assert run_cli(train_rnn.main, ["--init", str(evil), "--data", str(tmp_path)]) == 2
    assert not marker.exists() and not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("change,message", [
    (dict(stft={"n_fft": 2 ** 31, "hop": 1}), "bad STFT settings or sample rate"),
    (dict(stft={"n_fft": 256, "hop": 64, "window": "kaiser"}), "bad STFT settings or sample rate"),
    (dict(sample_rate="abc"), "bad STFT settings or sample rate"),
    (dict(sample_rate=0), "bad STFT settings or sample rate"),
    (dict(model_args={"n_bins": 129, "hidden": [10 ** 6, 10 ** 4], "code": 8}), "weights (more than"),
])
def test_checkpoint_sizes_are_checked_before_anything_is_built(tmp_path, tiny_ff, song, capsys, change, message):
    """A checkpoint's STFT, rate and model sizes are data from elsewhere: out of range, one line and exit 2,
    before any memory goes to them (a 2^31-point STFT or a 10-billion-weight layer filled the machine)."""
    util.save_checkpoint(tmp_path / "ff.pt", tiny_ff, STFT, 8000)
    ckpt = torch.load(tmp_path / "ff.pt", weights_only=True)
    ckpt.update(change)
    torch.save(ckpt, tmp_path / "odd.pt")
    assert sep([str(song), "--model", str(tmp_path / "odd.pt"), "-o", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_registry_is_shared_with_train_seed():
    import train_seed
    assert set(train_seed.SYSTEM_CLASSES.values()) <= set(util.MODEL_CLASSES)
    for name in util.MODEL_CLASSES:
        assert util.class_name(util.model_class(name).__new__(util.model_class(name))) == name


def test_last_checkpoint_loads_weights_only(tmp_path, tiny_ff):
    """last.pt's RNG state is tensors and plain values, and restores the generators exactly."""
    import random
    util.seed_everything(3)
    state = util.rng_state()
    util.save_checkpoint(tmp_path / "last.pt", tiny_ff, STFT, 8000, rng=state)
    expect = (random.random(), np.random.rand(), torch.rand(1).item())
    loaded = torch.load(tmp_path / "last.pt", weights_only=True)["rng"]
    util.set_rng_state(loaded)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expect


def test_nonfinite_weights_refused(tmp_path, tiny_ff, song, capsys):
    with torch.no_grad():
        tiny_ff.decoder[-2].bias.fill_(float("nan"))
    util.save_checkpoint(tmp_path / "nan.pt", tiny_ff, STFT, 8000)
    assert sep([str(song), "--model", str(tmp_path / "nan.pt"), "-o", str(tmp_path / "o"), "--quiet"]) == 2
    assert "NaN or infinite" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_nonfinite_masks_refused(tmp_path, tiny_ff, song, capsys):
    """Finite weights can still overflow to inf - inf = NaN: no output is written."""
    with torch.no_grad():
        tiny_ff.encoder[0].weight.fill_(3e38)         # finite, but every first-layer sum overflows
    util.save_checkpoint(tmp_path / "inf.pt", tiny_ff, STFT, 8000)
    code = sep([str(song), "--model", str(tmp_path / "inf.pt"), "-o", str(tmp_path / "o"), "--quiet"])
    assert code == 2 and "NaN or infinite masks" in capsys.readouterr().err
    assert not any((tmp_path / "o").rglob("*.wav"))


# ---------------------------------------------------------------- 2. --resume keeps the run's recipe
def _train_ff(argv):
    import train_feedforward
    return run_cli(train_feedforward.main, argv)


def test_resume_refuses_other_options_and_keeps_own(tmp_path, capsys):
    import demo_data
    data = demo_data.make_demo_dataset(tmp_path / "demo", n_dev=3, n_test=1, seconds=2.0, sample_rate=8000)
    run = tmp_path / "run"
    base = ["--data", str(data), "--sample-rate", "8000", "--n-fft", "256", "--hop", "128", "--epochs", "1",
            "--batch-size", "2", "--samples-per-epoch", "4", "--hidden", "16", "--code", "8",
            "--cache-dir", str(tmp_path / "cache"), "--quiet", "--threads", "1", "--valid-seconds", "1"]
    assert _train_ff(base + ["--run-dir", str(run)]) == 0
    best = (run / "savedModel_feedforward_best.pt").read_bytes()
    capsys.readouterr()
    assert _train_ff(["--resume", str(run), "--loss", "mse", "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "--loss mse" in err and "differs" in err and len(err.strip().splitlines()) == 1
    assert _train_ff(["--resume", str(run), "--sample-rate", "16000", "--epochs", "2"]) == 2
    assert (run / "savedModel_feedforward_best.pt").read_bytes() == best
    # the same options typed again, or none at all, continue the run with its own recipe
    assert _train_ff(["--resume", str(run), "--epochs", "2", "--loss", "kl", "--quiet"]) == 0
    ckpt = util.read_checkpoint(run / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["sample_rate"] == 8000 and ckpt["train_args"]["loss"] == "kl"
    assert ckpt["model_args"]["hidden"] == [16]


# ---------------------------------------------------------------- 3.-6. separation outputs
def test_colliding_names_get_their_own_folders(tmp_path, ckpt, capsys):
    album = tmp_path / "album"
    for cd, f0 in (("CD1", 200), ("CD2", 330)):
        (album / cd).mkdir(parents=True)
        sf.write(album / cd / "01 Intro.wav", tone(1.0, 8000, f0), 8000)
    out = tmp_path / "out"
    assert sep([str(album), "--model", str(ckpt), "-o", str(out), "--quiet", "--force"]) == 0
    a, b = out / "CD1" / "01 Intro" / "vocals.wav", out / "CD2" / "01 Intro" / "vocals.wav"
    assert a.exists() and b.exists()
    assert not np.allclose(sf.read(a)[0], sf.read(b)[0])
    assert "separated 2 of 2" in capsys.readouterr().err


def test_bracket_names_are_paths_not_globs(tmp_path, ckpt):
    name = tmp_path / "Song [Remastered 2011].wav"
    sf.write(name, tone(1.0, 8000, 220), 8000)
    assert sep([str(name), "--model", str(ckpt), "-o", str(tmp_path / "o"), "--quiet"]) == 0
    assert (tmp_path / "o" / "Song [Remastered 2011]" / "vocals.wav").exists()


def test_empty_input_name_refused(tmp_path, ckpt, capsys):
    assert sep(["", "--model", str(ckpt), "-o", str(tmp_path / "o"), "--quiet"]) == 2
    assert "empty input" in capsys.readouterr().err


def test_output_folder_inside_input_folder_is_not_separated(tmp_path, ckpt, capsys):
    songs = tmp_path / "songs"
    songs.mkdir()
    sf.write(songs / "a.wav", tone(1.0, 8000, 220), 8000)
    out = songs / "sep"
    assert sep([str(songs), "--model", str(ckpt), "-o", str(out), "--quiet"]) == 0
    assert sep([str(songs), "--model", str(ckpt), "-o", str(out), "--quiet", "--force"]) == 0
    assert "separated 1 of 1" in capsys.readouterr().err.splitlines()[-1]
    assert not (out / "vocals").exists() and not (out / "sep").exists()


def test_default_output_folder_names_the_model(tmp_path, ckpt, song, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sep([str(song), "--model", str(ckpt), "--quiet"]) == 0
    assert (tmp_path / "separated" / "ff" / "song" / "vocals.wav").exists()


def test_stale_hidden_temp_files_do_not_block_a_rerun(tmp_path, ckpt, song):
    out = tmp_path / "o" / "song"
    out.mkdir(parents=True)
    (out / ".vocals.abc123.wav").write_bytes(b"\0" * 1000)        # what kill -9 leaves behind
    assert sep([str(song), "--model", str(ckpt), "-o", str(tmp_path / "o"), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["accompaniment.wav", "vocals.wav"]


@pytest.mark.slow
def test_sigterm_cleans_temp_files(tmp_path, ckpt):
    """SIGTERM during separation is handled like Ctrl-C: exit 130, no temp or half file left."""
    long_song = tmp_path / "long.wav"
    sf.write(long_song, np.tile(tone(2.0, 8000, 220), (300, 1)), 8000)     # 10 minutes
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, str(ROOT / "separate.py"), str(long_song), "--model", str(ckpt),
                             "-o", str(out), "--quiet", "--threads", "1", "--block-seconds", "1"],
                            stderr=subprocess.PIPE, cwd=tmp_path)
    deadline = time.time() + 60
    while time.time() < deadline and not any((out / "long").glob(".*")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"interrupted" in err and b"Traceback" not in err
    assert not any((out / "long").iterdir())


IMPORT_SCRIPT = """
import os, signal, sys, time
sys.path.insert(0, {root!r}); sys.path.insert(0, {here!r})
import util

def main(argv):
    import slow_module            # signals this process in the middle of its import
    print("imported", slow_module.DONE, flush=True)
    time.sleep(10)                # the signal, sent again, lands here
    return 0

util.run_cli(main)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_an_import_waits_for_it(tmp_path, signum):
    """A signal that lands while a module is being imported (soxr and onnx are imported when first needed,
    and their native module init aborts the process on an exception: exit -6, nothing cleaned) is sent again
    once the import is done, and the run still ends as interrupted (130)."""
    (tmp_path / "slow_module.py").write_text(
        f"import os, time\nos.kill(os.getpid(), {int(signum)})\ntime.sleep(0.3)\nDONE = True\n")
    script = tmp_path / "run.py"
    script.write_text(IMPORT_SCRIPT.format(root=str(ROOT), here=str(tmp_path)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 130, proc.stderr
    assert proc.stdout.decode().strip() == "imported True"
    assert b"interrupted" in proc.stderr and b"Traceback" not in proc.stderr


def test_interrupt_between_a_temp_file_and_its_writer_leaves_nothing(tmp_path, ckpt, monkeypatch):
    """A signal that lands after a temp file is made but before the stem writer has its name (the race
    test_sigterm_cleans_temp_files can hit): the run still exits 130 and leaves no temp file."""
    song = tmp_path / "song.wav"
    sf.write(song, tone(1.0, 8000, 220), 8000)
    made = []
    real = util.temp_path

    def interrupted(folder, prefix, suffix):
        made.append(real(folder, prefix, suffix))
        if len(made) == 2:                              # the second stem's file exists; the writer never learns it
            raise KeyboardInterrupt
        return made[-1]

    monkeypatch.setattr(util, "temp_path", interrupted)
    assert sep([str(song), "--model", str(ckpt), "-o", str(tmp_path / "o"), "--quiet"]) == 130
    assert len(made) == 2 and not any(p.exists() for p in made)
    assert not any((tmp_path / "o" / "song").iterdir())


POOL_SCRIPT = """
import multiprocessing as mp, sys, time
sys.path.insert(0, {root!r})
import util

def main(argv):
    with mp.get_context("fork").Pool(2, initializer={init}) as pool:
        assert pool.map(abs, [-1, -2, -3]) == [1, 2, 3]
        pool.map_async(time.sleep, [30, 30])
        time.sleep(1.0)                 # both workers busy when the pool ends them (its __exit__)
    return 0

util.run_cli(main)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="fork pools")
def test_pool_workers_end_quietly(tmp_path):
    """A process pool under run_cli (evaluate_sdr.py --jobs N) ends its workers with SIGTERM: with
    util.worker_default_signals as initializer they die quietly instead of each printing a
    KeyboardInterrupt traceback (the inherited run_cli handler), at once rather than after their
    task; without it they print it."""
    def run(init):
        script = tmp_path / f"pool_{init}.py"
        script.write_text(POOL_SCRIPT.format(root=str(ROOT), init=init))
        return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)

    quiet = run("util.worker_default_signals")
    assert quiet.returncode == 0 and "Traceback" not in quiet.stderr, quiet.stderr
    noisy = run("None")                 # the failure this guards against, so the check can fail
    assert noisy.returncode == 0 and "KeyboardInterrupt" in noisy.stderr


def test_io_failure_is_one_line_and_batch_goes_on(tmp_path, ckpt, capsys):
    """A 10-channel input cannot be written as FLAC (libsndfile allows 8): that file fails in one
    line, leaves no temp file, and the next one is still separated."""
    songs = tmp_path / "songs"
    songs.mkdir()
    sf.write(songs / "a_wide.wav", tone(1.0, 8000, 220, channels=10), 8000)
    sf.write(songs / "b_ok.wav", tone(1.0, 8000, 220), 8000)
    out = tmp_path / "o"
    assert sep([str(songs), "--model", str(ckpt), "-o", str(out), "--format", "flac", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "failed: " in err and "a_wide.wav" in err and "Traceback" not in err
    assert (out / "b_ok" / "vocals.flac").exists()
    assert not list((out / "a_wide").iterdir())


def test_ogg_refuses_a_subtype(tmp_path, ckpt, song, capsys):
    assert sep([str(song), "--model", str(ckpt), "--format", "ogg", "--subtype", "24", "-o", str(tmp_path)]) == 2
    assert "OGG" in capsys.readouterr().err


# ---------------------------------------------------------------- 7. evaluate --out, export
def test_evaluate_checks_out_before_work(tmp_path, ckpt, capsys):
    import evaluate_sdr
    blocker = tmp_path / "out"
    blocker.write_text("a file")
    assert run_cli(evaluate_sdr.main, ["--model", str(ckpt), "--out", str(blocker), "--data", str(tmp_path / "x")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_export_keeps_history_without_force_and_leaves_nothing_broken(tmp_path, ckpt, capsys):
    import export_model
    (tmp_path / "history.json").write_text("{}")
    ship = tmp_path / "ship"
    ship.mkdir()
    (ship / "ff_history.json").write_text("mine")
    assert run_cli(export_model.main, [str(ckpt), str(ship / "savedModel_ff_best.pt")]) == 2
    assert "ff_history.json: exists" in capsys.readouterr().err
    assert (ship / "ff_history.json").read_text() == "mine" and not (ship / "savedModel_ff_best.pt").exists()
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert run_cli(export_model.main, [str(tmp_path / "junk.pt"), str(ship / "j.pt")]) == 2
    assert sorted(p.name for p in ship.iterdir()) == ["ff_history.json"]


# ---------------------------------------------------------------- 9. option values
@pytest.mark.parametrize("script,argv", [
    ("train_feedforward", ["--batch-size", "0"]), ("train_feedforward", ["--lr", "-1"]),
    ("train_feedforward", ["--lr", "nan"]), ("train_feedforward", ["--n-fft", "0"]),
    ("train_feedforward", ["--hop", "0"]), ("train_feedforward", ["--sample-rate", "0"]),
    ("train_feedforward", ["--chunk-seconds", "0"]), ("train_feedforward", ["--dropout", "2"]),
    ("train_feedforward", ["--threads", "-1"]), ("train_feedforward", ["--threads", "100000"]),
    ("train_feedforward", ["--device", "bogus"]), ("train_feedforward", ["--valid-fraction", "1.5"]),
    ("train_feedforward", ["--hidden", "0"]), ("train_feedforward", ["--epochs", "0"]),
    ("train_rnn", ["--rnn-layers", "0"]), ("evaluate_sdr", ["--limit", "-1"]),
    ("separate", ["x.wav", "--block-seconds", "0"]), ("separate", ["x.wav", "--block-seconds", "nan"]),
    ("separate", ["x.wav", "--block-seconds", "inf"]), ("separate", ["x.wav", "--threads", "0"]),
    ("separate", ["x.wav", "--mask-power", "0"]), ("evaluate_sdr", ["--mask-power", "nan"]),
    ("separate", ["x.wav", "--shifts", "0"]), ("evaluate_sdr", ["--shifts", "65"]),
    ("separate", ["x.wav", "--semitones", "-1"]), ("evaluate_sdr", ["--semitones", "7"]),
])
def test_bad_option_values_refused_by_argparse(script, argv, capsys):
    module = __import__(script)
    main = module.main if script != "separate" else (lambda a: separate.main(a, None, None))
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err
    assert "error: argument" in err and "Traceback" not in err


def test_hop_larger_than_half_fft_refused(tmp_path, capsys):
    assert _train_ff(["--n-fft", "256", "--hop", "200", "--run-dir", str(tmp_path / "r")]) == 2
    assert "--hop 200" in capsys.readouterr().err


@pytest.mark.slow
def test_help_states_ranges():
    out = subprocess.run([sys.executable, str(ROOT / "train_feedforward.py"), "--help"], capture_output=True,
                         text=True, cwd=ROOT).stdout
    assert ">= 1" in out and "1..4 x cores" in out


def test_framewise_mean_is_a_mean():
    """--framewise: the column called mean SDR is the mean over tracks, the median is the median."""
    import evaluate_sdr
    rows = [{"track": t, "system": s, "source": "vocals", "samples": 100, "sdr": v, "sir": 1.0, "sar": 1.0}
            for t, (m, v) in enumerate([(0.0, 1.0), (0.0, 2.0), (0.0, 9.0)]) for s, v in (("mixture", m), ("x", v))]
    out = evaluate_sdr.summarise(rows, framewise=True)["x"]["vocals"]
    assert out["mean_SDR"] == 4.0 and out["median_SDR"] == 2.0


def test_compare_summaries_names_differences():
    import evaluate_sdr
    old = {"x": {"vocals": {"GNSDR": 5.0, "median_SDR": 4.0}}}
    assert evaluate_sdr.compare_summaries({"x": {"vocals": {"GNSDR": 5.004, "median_SDR": 4.0}}}, old) == []
    diffs = evaluate_sdr.compare_summaries({"x": {"vocals": {"GNSDR": 5.2, "median_SDR": 4.0}}}, old)
    assert diffs == ["x vocals GNSDR: 5.20 now, 5.00 committed"]
    # a rerun of some of the systems compares those; a source missing from a system it has is a difference
    assert evaluate_sdr.compare_summaries({}, old) == []
    assert evaluate_sdr.compare_summaries({"x": {}}, old) == ["x vocals: missing"]


def test_the_table_says_what_each_system_averages_over():
    import evaluate_sdr
    systems = {"RNN": {"semitones": 4}, "raw": {"semitones": 0, "shifts": 1}, "E": {"semitones": 2, "shifts": [4, 1]}}
    assert evaluate_sdr.settings_line(systems) == "RNN 4 semitones; E 2 semitones, 4 shifts"
    assert evaluate_sdr.settings_line({"raw": {"semitones": 0}}) == ""


def test_summarise_weights_by_length_and_skips_nan():
    """GNSDR is the length-weighted mean of SDR - SDR(mixture); a NaN track is left out of the G*
    means (mean/median SDR keep every track)."""
    import evaluate_sdr
    rows = []
    for track, n, mix, sdr in (("a", 100, 1.0, 4.0), ("b", 300, 0.0, 10.0), ("c", 50, 0.0, float("nan"))):
        rows += [{"track": track, "system": "mixture", "source": "vocals", "samples": n, "sdr": mix, "sir": 0.0,
                  "sar": 0.0},
                 {"track": track, "system": "x", "source": "vocals", "samples": n, "sdr": sdr, "sir": 1.0,
                  "sar": 2.0}]
    out = evaluate_sdr.summarise(rows)["x"]["vocals"]
    assert out["GNSDR"] == pytest.approx((100 * 3.0 + 300 * 10.0) / 400)
    assert out["tracks"] == 3 and out["GSIR"] == 1.0


def test_oracle_masks():
    import evaluate_sdr
    v = torch.tensor([3 + 0j, 0j, 1 + 1j])
    a = torch.tensor([1 + 0j, 2 + 0j, -1 - 1j])
    assert torch.allclose(evaluate_sdr.oracle_mask("irm", v, a), torch.tensor([0.75, 0.0, 0.5]))
    assert torch.allclose(evaluate_sdr.oracle_mask("irm2", v, a), torch.tensor([0.9, 0.0, 0.5]))
    assert evaluate_sdr.oracle_mask("ibm", v, a).tolist() == [1.0, 0.0, 0.0]
    psm = evaluate_sdr.oracle_mask("psm", v, a)                    # |V|/|X| cos(angle V - angle X), in [0, 1]
    assert psm[0] == pytest.approx(0.75) and psm[1] == 0 and 0 <= psm[2] <= 1   # X = 0 there: clipped
    with pytest.raises(ValueError):
        evaluate_sdr.oracle_mask("nope", v, a)
