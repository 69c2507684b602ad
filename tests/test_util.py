import json

import numpy as np
import pytest
import soundfile as sf
import torch

import Model
import util
from util import UserError


@pytest.mark.parametrize("n_fft,hop", [(4096, 2048), (1024, 256), (256, 64), (512, 128)])
def test_stft_round_trip(n_fft, hop):
    torch.manual_seed(0)
    x = torch.randn(2, 3 * n_fft + 17)
    stft = util.make_stft(n_fft, hop)
    spec = stft.stft(x)
    assert spec.shape == (2, n_fft // 2 + 1, stft.n_frames(x.shape[-1]))
    y = stft.istft(spec, x.shape[-1])
    assert torch.allclose(x, y, atol=1e-5)


def test_stft_rejects_bad_settings():
    with pytest.raises(ValueError):
        util.make_stft(1024, 1000)


def test_assignment_default_stft():
    stft = util.make_stft()
    assert (stft.n_fft, stft.hop, stft.n_bins) == (4096, 2048, 2049)


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg"])
def test_load_any_rate_and_channels(tmp_path, ext):
    sr = 22050
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)).astype(np.float32)
    path = tmp_path / f"a.{ext}"
    sf.write(path, np.stack([x, x * 0.5], 1), sr)
    audio, rate = util.load_audio(path)
    assert rate == sr and audio.shape[0] == 2
    mono, rate = util.load_audio(path, sample_rate=16000, mono=True)
    assert rate == 16000 and mono.shape[0] == 1
    assert abs(mono.shape[1] - 16000) <= 1


def test_load_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        util.load_audio(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(UserError, match="empty file"):
        util.load_audio(tmp_path / "empty.wav")
    (tmp_path / "text.wav").write_text("this is not audio at all" * 10)
    with pytest.raises(UserError, match="not a readable audio file"):
        util.load_audio(tmp_path / "text.wav")
    with pytest.raises(UserError, match="is a directory"):
        util.load_audio(tmp_path)
    bad = np.zeros((100, 1), np.float32)
    bad[5] = np.nan
    sf.write(tmp_path / "nan.wav", bad, 8000, subtype="FLOAT")
    with pytest.raises(UserError, match="NaN"):
        util.load_audio(tmp_path / "nan.wav")


def test_checkpoint_round_trip(tmp_path, tiny_ff):
    stft = util.make_stft(256, 64)
    tiny_ff.input_mean.fill_(0.5)
    util.save_checkpoint(tmp_path / "m.pt", tiny_ff, stft, 16000, epoch=3, valid_loss=1.5, train_args={"lr": 1})
    model, stft2, sr, ckpt = util.load_model(tmp_path / "m.pt")
    assert type(model) is type(tiny_ff) and sr == 16000 and stft2.config() == stft.config()
    assert ckpt["epoch"] == 3 and ckpt["valid_loss"] == 1.5 and ckpt["train_args"] == {"lr": 1}
    x = torch.rand(2, 7, 129)
    assert torch.allclose(model(x), tiny_ff(x))
    assert not list(tmp_path.glob(".*.tmp"))          # no temp file left behind


def test_checkpoint_errors(tmp_path, tiny_ff):
    import Model_RNN
    (tmp_path / "corrupt.pt").write_bytes(b"\x80garbage")
    with pytest.raises(UserError, match="corrupt"):
        util.load_model(tmp_path / "corrupt.pt")
    with pytest.raises(UserError, match="not found"):
        util.load_model(tmp_path / "none.pt")
    util.save_checkpoint(tmp_path / "ff.pt", tiny_ff, util.make_stft(256, 64), 16000)
    with pytest.raises(UserError, match="expected a RNNMaskNet"):
        util.load_model(tmp_path / "ff.pt", expect=Model_RNN.RNNMaskNet)
    data = (tmp_path / "ff.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt or truncated"):
        util.load_model(tmp_path / "trunc.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a checkpoint of this project"):
        util.load_model(tmp_path / "other.pt")
    ckpt = torch.load(tmp_path / "ff.pt", weights_only=False)
    ckpt["model_args"]["code"] = 9                      # weights no longer fit
    torch.save(ckpt, tmp_path / "mismatch.pt")
    with pytest.raises(UserError, match="do not match"):
        util.load_model(tmp_path / "mismatch.pt")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "x.json"
    util.write_json(target, {"a": 1})

    def boom(tmp):
        open(tmp, "w").write("partial")
        raise RuntimeError("killed")
    with pytest.raises(RuntimeError):
        util.atomic_write(target, boom)
    assert target.read_text().strip().startswith("{") and '"a": 1' in target.read_text()
    assert not list(tmp_path.glob(".*.tmp"))


def test_seed_everything_repeats():
    util.seed_everything(3)
    a = (np.random.rand(), torch.rand(1).item())
    util.seed_everything(3)
    assert a == (np.random.rand(), torch.rand(1).item())


def test_export_checkpoint_half_weights(tmp_path, tiny_ff):
    import export_model
    stft = util.make_stft(256, 64)
    util.save_checkpoint(tmp_path / "full.pt", tiny_ff, stft, 16000, epoch=2, optimizer={"big": torch.zeros(1000)})
    (tmp_path / "history.json").write_text("{}")
    with pytest.raises(SystemExit) as e:
        util.run_cli(export_model.main, [str(tmp_path / "full.pt"), str(tmp_path / "ship" / "savedModel_x_best.pt")])
    assert e.value.code == 0
    slim = torch.load(tmp_path / "ship" / "savedModel_x_best.pt", weights_only=False)
    assert "optimizer" not in slim and slim["epoch"] == 2 and slim["weights_dtype"] == "float16"
    assert (tmp_path / "ship" / "x_history.json").exists()
    model, *_ = util.load_model(tmp_path / "ship" / "savedModel_x_best.pt")
    x = torch.rand(1, 9, 129)
    assert next(model.parameters()).dtype == torch.float32
    assert torch.allclose(model(x), tiny_ff(x), atol=2e-3)
    with pytest.raises(SystemExit) as e:                      # no silent overwrite
        util.run_cli(export_model.main, [str(tmp_path / "full.pt"), str(tmp_path / "ship" / "savedModel_x_best.pt")])
    assert e.value.code == 2


def test_export_continues_refuses_a_history_it_cannot_merge_before_writing(tmp_path, capsys):
    """--continues OLD with fewer validation entries than its best epoch (or without steps): refused in one
    line, and no checkpoint written beside a stale history (the merge used to fail after the write)."""
    import export_model
    run = tmp_path / "run"
    run.mkdir()
    util.save_checkpoint(run / "best.pt", Model.FrameMaskNet(129, (32, 16), 8), util.make_stft(256, 64), 8000)
    entry = {"epoch": 1, "step": 2, "loss": 1.0}
    (run / "history.json").write_text(json.dumps({"best_epoch": 1, "epoch_time": [1.0], "valid": [entry],
                                                  "train": [1.0], "smoothed": [1.0, 1.0]}))
    for name, old in [("short", {"best_epoch": 3, "epoch_time": [1.0] * 3, "valid": [entry]}),
                      ("nostep", {"best_epoch": 1, "epoch_time": [1.0], "valid": [{"epoch": 1, "loss": 1.0}]})]:
        (tmp_path / f"{name}.json").write_text(json.dumps(old))
        assert _run(export_model, [str(run / "best.pt"), str(tmp_path / f"{name}.pt"), "--continues",
                                   str(tmp_path / f"{name}.json")]) == 2
        assert "not a training history" in capsys.readouterr().err
        assert not (tmp_path / f"{name}.pt").exists()


def test_export_average_writes_the_mean_of_the_weights(tmp_path, capsys):
    """--average: a model soup. The written weights are the mean of the checkpoints', the training
    times add up, the file names its ingredients; another shape or class is refused in one line,
    and so is an output that is one of the inputs."""
    import export_model
    import Model_DRNN
    import Model_RNN
    stft = util.make_stft(256, 64)
    paths, models = [], []
    for seed in range(3):
        torch.manual_seed(seed)
        m = Model_RNN.RNNMaskNet(129, (32, 16), 8, rnn_hidden=6).eval()
        paths.append(tmp_path / f"r{seed}.pt")
        util.save_checkpoint(paths[-1], m, stft, 8000, train_seconds=10.0 * (seed + 1))
        models.append(m)
    out = tmp_path / "soup.pt"
    args = [str(paths[0]), str(out), "--float32", "--average", str(paths[1]), str(paths[2])]
    assert _run(export_model, args) == 0
    soup = torch.load(out, weights_only=True)
    for k, v in models[0].state_dict().items():
        want = sum(m.state_dict()[k] for m in models) / 3
        assert torch.allclose(soup["state_dict"][k], want, atol=1e-6), k
    assert soup["train_seconds"] == 60.0 and soup["averaged_with"] == [str(paths[1]), str(paths[2])]
    other = Model_RNN.RNNMaskNet(129, (32, 16), 8, rnn_hidden=7)
    util.save_checkpoint(tmp_path / "wide.pt", other, stft, 8000)
    assert _run(export_model, [str(paths[0]), str(tmp_path / "x.pt"), "--average", str(tmp_path / "wide.pt")]) == 2
    assert "its model_args differs" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()
    assert _run(export_model, [str(paths[0]), str(paths[1]), "--average", str(paths[1]), "--force"]) == 2
    assert "would overwrite an input checkpoint" in capsys.readouterr().err
    # the same file twice, or another input level normalisation: not fine-tunes of one model
    assert _run(export_model, [str(paths[0]), str(tmp_path / "x.pt"), "--average", str(paths[0])]) == 2
    assert "is " + str(paths[0]) + " itself" in capsys.readouterr().err
    models[1].set_level_norm("frame" if models[0].level_norm != "frame" else "none")
    util.save_checkpoint(tmp_path / "raw.pt", models[1], stft, 8000)
    assert _run(export_model, [str(paths[0]), str(tmp_path / "x.pt"), "--average", str(tmp_path / "raw.pt")]) == 2
    assert "its features differs" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()
    # a DRNN's power-iteration vectors are recomputed for the mean weights: its gain stays bounded
    drnns = []
    for seed in range(2):
        torch.manual_seed(seed)
        d = Model_DRNN.DRNN(129, hidden=16, layers=2, recurrent_layers=(2,), context_frames=1, max_gain=0.5)
        with torch.no_grad():
            d.layers[1].weight_hh.mul_(20)
        d.train()
        for _ in range(5):
            d(torch.rand(1, 4, 129))
        util.save_checkpoint(tmp_path / f"d{seed}.pt", d.eval(), stft, 8000)
        drnns.append(d)
    old = torch.load(tmp_path / "d1.pt", weights_only=True)     # a file from before backward_units existed
    del old["model_args"]["backward_units"]
    torch.save(old, tmp_path / "d1.pt")
    assert _run(export_model, [str(tmp_path / "d0.pt"), str(tmp_path / "dsoup.pt"), "--float32", "--average",
                               str(tmp_path / "d1.pt")]) == 0
    dsoup, *_ = util.load_model(tmp_path / "dsoup.pt")
    rnn = dsoup.layers[1]
    assert torch.allclose(rnn.weight_hh, (drnns[0].layers[1].weight_hh + drnns[1].layers[1].weight_hh) / 2)
    assert torch.linalg.matrix_norm(rnn.recurrent_weight(), 2) <= 0.5 * 1.001


def _run(module, argv):
    with pytest.raises(SystemExit) as e:
        util.run_cli(module.main, argv)
    return e.value.code


def test_flush_denormals_zeroes_denormal_arithmetic_and_can_be_turned_off():
    import os
    import subprocess
    import sys
    from pathlib import Path

    # in a child process (the flag lasts a process's life): 3e-39 is a denormal float32
    code = """if 1:
        import torch, util
        print(util.flush_denormals(), float(torch.tensor([3e-39]) * 1.0), float(torch.tensor([1e-37]) * 1.0))
    """
    root = Path(__file__).resolve().parent.parent
    out = {}
    for flush in ("0", "1"):
        out[flush] = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                                    env=dict(os.environ, SVS_FLUSH_DENORMALS=flush), check=True).stdout.split()
    assert out["0"][0] == "False" and float(out["0"][1]) == pytest.approx(3e-39, rel=1e-3)
    if out["1"][0] != "True":
        pytest.skip("this CPU has no flush-to-zero flag for torch")
    assert float(out["1"][1]) == 0.0 and float(out["1"][2]) == pytest.approx(1e-37, rel=1e-6)   # normals kept


def test_keep_freed_memory_applies_on_glibc_and_can_be_turned_off(monkeypatch):
    import ctypes
    import os
    import subprocess
    import sys
    from pathlib import Path

    monkeypatch.setenv("SVS_KEEP_FREED_MEMORY", "0")
    assert util.keep_freed_memory() is False
    monkeypatch.delenv("SVS_KEEP_FREED_MEMORY")
    glibc = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")
    if not glibc:
        pytest.skip("mallopt settings are glibc's")
    # in a child process (the setting lasts a process's life): a 128 MB buffer freed and asked for
    # again comes back from the heap without faulting its 32,768 pages in again
    code = """if 1:
        import resource, sys, torch, util
        assert util.keep_freed_memory() is (sys.argv[1] == "1")
        def faults():
            x = torch.ones(32 << 20)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            del x
            y = torch.ones(32 << 20)
            after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            assert float(y.sum()) == 32 << 20
            return after - before
        print(min([faults() for _ in range(24)][12:]))   # glibc settles its free lists in 3-5 rounds here
    """
    root = Path(__file__).resolve().parent.parent
    counts = {}
    for keep in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", code, keep], cwd=root, capture_output=True, text=True,
                             env=dict(os.environ, SVS_KEEP_FREED_MEMORY=keep), check=True)
        counts[keep] = int(out.stdout.split()[-1])
    assert counts["0"] > 30000 and counts["1"] < 1000, counts
