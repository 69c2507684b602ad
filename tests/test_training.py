"""Training loop: end to end on demo data, checkpoints, --init, --resume, NaN stop, kill -9, DDP."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import Data
import Model
import Model_RNN
import demo_data
import evaluate_sdr
import separate
import train_feedforward
import train_rnn
import training
import util
from conftest import ROOT
from util import UserError


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_data.make_demo_dataset(tmp_path_factory.mktemp("demo") / "demo", n_dev=3, n_test=1, seconds=3.0)


def tiny_args(data, run, cache, *extra):
    return ["--data", str(data), "--run-dir", str(run), "--cache-dir", str(cache), "--sample-rate", "8000",
            "--n-fft", "256", "--hop", "64", "--hidden", "32", "16", "--code", "8", "--epochs", "2",
            "--samples-per-epoch", "8", "--batch-size", "4", "--chunk-seconds", "0.5", "--valid-fraction",
            "0.34", "--quiet", "--threads", "1", *extra]


@pytest.fixture(scope="module")
def ff_run(demo, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ff")
    train_feedforward.main(tiny_args(demo, tmp / "run", tmp / "cache"))
    return tmp / "run"


def test_feedforward_run_writes_everything(ff_run):
    written = {p.name for p in ff_run.iterdir()}
    assert {"savedModel_feedforward_best.pt", "last.pt", "history.json", "loss.png"} <= written
    hist = json.loads((ff_run / "history.json").read_text())
    assert len(hist["valid"]) == 2 and hist["best_epoch"] in (1, 2)
    # one smoothed value per optimiser step: 8 excerpts / batch 4 = 2 steps per epoch, 2 epochs
    assert len(hist["smoothed"]) == hist["valid"][-1]["step"] == 4 and hist["valid"][0]["step"] == 2
    assert all(np.isfinite(v["gnsdr"]) for v in hist["valid"])     # validation SDR every epoch
    model, stft, sr, ckpt = util.load_model(ff_run / "savedModel_feedforward_best.pt")
    assert (stft.n_fft, stft.hop, sr) == (256, 64, 8000)
    assert ckpt["train_args"]["seed"] == 42 and ckpt["epoch"] == hist["best_epoch"]
    assert ckpt["valid_loss"] == pytest.approx(hist["best_valid"])
    assert ckpt["model_args"] == {"n_bins": 129, "hidden": [32, 16], "code": 8, "dropout": 0.1, "conv": None,
                                  "leaky": 0.0}
    assert model.input_std.min() > 0 and not torch.all(model.input_mean == 0)   # stats were set


def test_same_seed_same_weights(demo, ff_run, tmp_path):
    train_feedforward.main(tiny_args(demo, tmp_path / "again", tmp_path / "cache"))
    a = torch.load(ff_run / "last.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "again" / "last.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_run_dir_never_overwritten(demo, ff_run, tmp_path):
    with pytest.raises(UserError, match="exists and is not empty"):
        train_feedforward.main(tiny_args(demo, ff_run, tmp_path / "cache"))
    with pytest.raises(UserError, match="shipped-models folder"):
        train_feedforward.main(tiny_args(demo, training.SHIPPED_MODELS, tmp_path / "cache"))


def test_run_folder_is_claimed_once(demo, tmp_path, monkeypatch):
    """Two trainings started at once into one folder both pass the empty-folder check; the second to claim
    it (here: the claim made first, as by a twin started a moment earlier) stops instead of writing there,
    and a default, per-second name moves on to a free one. A folder left without last.pt says so."""
    run = tmp_path / "run"
    run.mkdir()
    real = training.claim_run_dir

    def twin_first(path, default_name):
        (path / training.RUN_CLAIM).touch()               # the twin claimed it while this one decoded the data
        return real(path, default_name)
    monkeypatch.setattr(training, "claim_run_dir", twin_first)
    with pytest.raises(UserError, match="another training started in this run folder meanwhile"):
        train_feedforward.main(tiny_args(demo, run, tmp_path / "cache"))
    assert [p.name for p in run.iterdir()] == [training.RUN_CLAIM]          # nothing of this run written
    default = tmp_path / "runs" / "feedforward-20261207-120000"
    default.mkdir(parents=True)
    (default / training.RUN_CLAIM).touch()
    assert real(default, default_name=True) == tmp_path / "runs" / "feedforward-20261207-120000-2"
    with pytest.raises(UserError, match="no last.pt to resume"):
        train_feedforward.main(tiny_args(demo, run, tmp_path / "cache"))


def test_resume_continues_history(demo, tmp_path):
    run, cache = tmp_path / "run", tmp_path / "cache"
    train_feedforward.main(tiny_args(demo, run, cache))
    steps = len(json.loads((run / "history.json").read_text())["smoothed"])
    args = tiny_args(demo, run, cache)
    args[args.index("--epochs") + 1] = "3"
    train_feedforward.main(args + ["--resume", str(run)])
    hist = json.loads((run / "history.json").read_text())
    assert [v["epoch"] for v in hist["valid"]] == [1, 2, 3] and len(hist["smoothed"]) == steps * 3 // 2
    # an uninterrupted 3-epoch run with the same seed ends with the same weights
    i = args.index("--run-dir")
    train_feedforward.main(args[:i + 1] + [str(tmp_path / "straight")] + args[i + 2:])
    a = torch.load(run / "last.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)["state_dict"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_mask_sdr_loss_is_minus_the_sdr_of_the_resynthesised_estimate():
    stft = util.make_stft(256, 64)
    rng = np.random.default_rng(3)
    stems = torch.from_numpy(rng.standard_normal((3, 2, 2000)).astype(np.float32)) * 0.1
    stems[1, 0] *= 0.05                                    # one excerpt with a quiet voice
    (mix_mag, mix_spec, got), = training.mask_sdr_examples(stft)(stems, None)
    assert mix_mag.shape == (3, stft.n_frames(2000), 129) and torch.equal(got, stems)
    ones = lambda mag: torch.ones(mag.shape[0], 1, *mag.shape[1:])         # vocals = the mixture
    vocals, mixture = stems[:, 0].numpy(), stems.sum(1).numpy()
    floor = training.SDR_FLOOR * 2000                       # -70 dB per sample, on both energies
    sdr = 10 * np.log10(((vocals ** 2).sum(-1) + floor) / (((mixture - vocals) ** 2).sum(-1) + floor))
    loss = training.mask_sdr_loss(ones, (mix_mag, mix_spec, stems), [0], stft=stft)
    assert loss.item() == pytest.approx(-sdr.mean(), abs=1e-3)             # mean over excerpts, in dB
    # the ideal ratio mask resynthesises close to the voice: a far lower loss, and gradients flow
    src = stft.stft(stems).abs().transpose(-1, -2)
    irm = (src[:, :1] / src.sum(1, keepdim=True).clamp_min(1e-8)).requires_grad_()
    better = training.mask_sdr_loss(lambda mag: irm, (mix_mag, mix_spec, stems), [0], stft=stft)
    better.backward()
    assert better.item() < loss.item() - 5 and irm.grad.abs().sum() > 0


def test_feedforward_trains_on_the_sdr_loss(demo, tmp_path):
    train_feedforward.main(tiny_args(demo, tmp_path / "run", tmp_path / "cache", "--loss", "sdr"))
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert hist["loss"] == "sdr" and len(hist["valid"]) == 2
    assert all(np.isfinite(v["loss"]) and v["loss"] < 30 for v in hist["valid"])   # minus dB, not magnitudes


def test_loss_plot_uses_a_log_axis_only_for_positive_losses(tmp_path, monkeypatch):
    import warnings

    import matplotlib.image
    import matplotlib.pyplot as plt
    closed = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig: closed.append(fig) or close(fig))
    for name, losses, scale in [("sdr", [-3.0, -5.0, -6.5], "linear"), ("kl", [40.0, 35.0, 33.0], "log")]:
        hist = {"smoothed": losses, "valid": [{"step": i, "loss": v} for i, v in enumerate(losses)], "loss": name}
        with warnings.catch_warnings():
            warnings.simplefilter("error")        # matplotlib warns when it log-scales negative values
            training.plot_history(hist, tmp_path / f"{name}.png")
        assert closed[-1].axes[0].get_yscale() == scale
        assert matplotlib.image.imread(tmp_path / f"{name}.png").shape[:2] == (400, 700)
    assert util.loss_axis_scale([]) == "linear" and util.loss_axis_scale([0.0, 1.0]) == "linear"


def test_training_keeps_freed_memory_flushes_denormals_and_takes_the_formant_and_speed_augmentations(
        demo, tmp_path, monkeypatch):
    calls, speeds = [], []
    monkeypatch.setattr(util, "keep_freed_memory", lambda: calls.append(True) or True)
    monkeypatch.setattr(util, "flush_denormals", lambda: calls.append("flush") or True)
    real_init = Data.SeparationDataset.__init__
    monkeypatch.setattr(Data.SeparationDataset, "__init__",
                        lambda self, *a, **k: speeds.append((k.get("accomp_speed"), k.get("vocal_bend"),
                                                             k.get("accomp_semitones"), k.get("vocal_stretch")))
                        or real_init(self, *a, **k))
    train_feedforward.main(tiny_args(demo, tmp_path / "run", tmp_path / "cache", "--vocal-formant", "0.2",
                                     "--accomp-speed", "0.15", "--vocal-bend", "0.5",
                                     "--accomp-semitones", "3", "--vocal-stretch", "0.1"))
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert hist["train_args"]["vocal_formant"] == 0.2 and len(hist["valid"]) == 2
    assert speeds[0] == (0.15, 0.5, 3, 0.1)                 # the training set's, not validation's
    assert calls == [True, "flush"]                         # once, before the model and the data


def test_warmup_scales_each_steps_rate_and_restores_it():
    """--warmup-steps N: step k (0-based) runs at lr * (k+1)/N, then the full lr; between steps the
    optimizer holds the full rate (what the plateau scheduler decays and last.pt saves)."""
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=0.8)
    moves = []
    for step in range(6):
        before = w.item()
        w.grad = torch.ones(1)
        with training.warmed_up(opt, step, 4):
            opt.step()
        assert opt.param_groups[0]["lr"] == 0.8
        moves.append(round(before - w.item(), 6))
    assert moves == [0.2, 0.4, 0.6, 0.8, 0.8, 0.8]


def test_warmup_steps_through_the_cli_moves_the_init_less(demo, tmp_path):
    """With --warmup-steps the first epoch's weights move less from an --init than without."""
    ff = Model.FrameMaskNet(129, (32, 16), 8)
    util.save_checkpoint(tmp_path / "ff.pt", ff, util.make_stft(256, 64), 8000)
    start = {k: v.clone() for k, v in ff.state_dict().items()}
    drift = {}
    for warm in ("0", "1000"):
        run = tmp_path / f"w{warm}"
        args = tiny_args(demo, run, tmp_path / "cache", "--init", str(tmp_path / "ff.pt"), "--warmup-steps", warm,
                         "--lr", "1e-3", "--no-valid-sdr")
        args[args.index("--epochs") + 1] = "1"
        train_feedforward.main(args)
        state = torch.load(run / "last.pt", weights_only=True)["state_dict"]
        drift[warm] = sum((state[k].float() - start[k]).abs().sum().item() for k in start if "weight" in k)
        assert torch.load(run / "last.pt", weights_only=True)["history"]["lr"] == [1e-3]
    assert 0 < drift["1000"] < 0.1 * drift["0"]


def test_weight_average_is_the_warmed_up_ema_and_swaps_back():
    model = torch.nn.Linear(3, 2)
    ema = training.WeightAverage(model, 0.9)
    want = {k: v.clone() for k, v in model.state_dict().items()}
    for n in range(1, 6):
        with torch.no_grad():
            model.weight.add_(1.0)
        d = min(0.9, (1 + n) / (10 + n))
        want = {k: d * want[k] + (1 - d) * v for k, v in model.state_dict().items()}
        ema.update()
    own = model.weight.clone()
    with ema.swapped():
        assert torch.allclose(model.weight, want["weight"]) and torch.allclose(model.bias, want["bias"])
    assert torch.equal(model.weight, own)                                 # its own weights are back


def test_weight_average_keeps_the_drnn_power_iteration_vectors_live():
    """The DRNN's recurrent gain bound rests on unit vectors u, v tracking the weights' top
    singular pair; an average of them is shorter and underestimated sigma (gain 1.44 after
    averaging, validation -3 dB). With unchanged weights the average must be the model itself."""
    import Model_DRNN
    torch.manual_seed(0)
    model = Model_DRNN.DRNN(9, hidden=16, layers=2, recurrent_layers=(2,), context_frames=1)
    rnn = model.layers[1]
    ema = training.WeightAverage(model, 0.99)
    x = torch.rand(2, 5, 9)
    model.train()
    for _ in range(20):                 # each training forward moves u and v by one power iteration
        model(x)
        ema.update()
    assert "layers.1.u" not in ema.avg and "layers.1.weight_hh" in ema.avg
    model.eval()
    own = model(x)
    with ema.swapped():
        assert torch.allclose(rnn.u.norm(), torch.tensor(1.0))
        assert torch.allclose(model(x), own, atol=1e-6)
        gain = torch.linalg.matrix_norm(rnn.recurrent_weight(), 2)
    assert gain <= rnn.max_gain * 1.01


def test_ema_run_saves_the_average_and_resumes_it(demo, tmp_path):
    run, cache = tmp_path / "run", tmp_path / "cache"
    args = tiny_args(demo, run, cache, "--ema", "0.9")
    args[args.index("--epochs") + 1] = "1"
    train_feedforward.main(args)
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["ema"]["steps"] == 2 and last["train_args"]["ema"] == 0.9
    avg, raw = last["ema"]["avg"], last["state_dict"]
    assert not torch.allclose(avg["encoder.0.weight"], raw["encoder.0.weight"])  # the average is not the weights
    best = torch.load(run / "savedModel_feedforward_best.pt", weights_only=True)  # epoch 1: the first best
    assert all(torch.allclose(best["state_dict"][k].float(), avg[k]) for k in avg)  # ... holds the average
    args[args.index("--epochs") + 1] = "3"
    train_feedforward.main(args + ["--resume", str(run)])
    assert torch.load(run / "last.pt", weights_only=True)["ema"]["steps"] == 6
    assert len(json.loads((run / "history.json").read_text())["valid"]) == 3


def test_rnn_init_loads_feedforward_weights(demo, ff_run, tmp_path):
    ff = ff_run / "savedModel_feedforward_best.pt"
    rnn_run = tmp_path / "rnn"
    args = tiny_args(demo, rnn_run, tmp_path / "cache", "--init", str(ff), "--rnn-hidden", "8", "--lr", "0")
    args[args.index("--epochs") + 1] = "1"
    train_rnn.main(args)
    ff_state = torch.load(ff, weights_only=False)["state_dict"]
    rnn_ckpt = torch.load(rnn_run / "savedModel_RNN_best.pt", weights_only=False)
    for k, v in ff_state.items():                       # lr 0: the weights are the loaded ones
        assert torch.equal(rnn_ckpt["state_dict"][k], v), k
    # the untrained fuse layer starts as the identity: same masks as the feedforward model
    ffm, *_ = util.load_model(ff)
    rnn, *_ = util.load_model(rnn_run / "savedModel_RNN_best.pt")
    x = torch.rand(1, 40, 129) * 5
    assert torch.allclose(rnn(x), ffm(x), atol=1e-6)
    # reloading the RNN checkpoint gives identical outputs
    rnn.eval()
    again, *_ = util.load_model(rnn_run / "savedModel_RNN_best.pt")
    assert torch.equal(rnn(x), again(x))


def test_leaky_frame_model_passes_negative_inputs_and_the_rnn_takes_it_from_init(demo, tmp_path):
    """--leaky SLOPE: every hidden ReLU of the frame model (and the RNN's fuse layer) is leaky, saved in
    the checkpoint's model_args; train_rnn.py --init takes it from a frame model, like the layer sizes."""
    ff = Model.FrameMaskNet(129, (32, 16), 8, leaky=0.1)
    acts = [m for m in [*ff.encoder, *ff.decoder] if isinstance(m, (torch.nn.ReLU, torch.nn.LeakyReLU))]
    assert len(acts) == 5 and all(isinstance(m, torch.nn.LeakyReLU) and m.negative_slope == 0.1 for m in acts)
    assert all(not isinstance(m, torch.nn.LeakyReLU) for m in Model.FrameMaskNet(129, (32, 16), 8).modules())
    x = -torch.ones(3, 32)
    assert torch.allclose(ff.encoder[1](x), -0.1 * torch.ones(3, 32))         # a negative input passes, scaled
    train_feedforward.main(tiny_args(demo, tmp_path / "ff", tmp_path / "cache", "--leaky", "0.1", "--epochs", "1"))
    saved = torch.load(tmp_path / "ff" / "savedModel_feedforward_best.pt", weights_only=True)
    assert saved["model_args"]["leaky"] == 0.1
    rnn = rnn_one_epoch_at_lr0(demo, tmp_path, tmp_path / "ff" / "savedModel_feedforward_best.pt", "--rnn-hidden", "8")
    assert rnn.leaky == 0.1 and isinstance(rnn.fuse_layers[1], torch.nn.LeakyReLU)
    # given with an --init, it replaces the checkpoint's (here a ReLU RNN made leaky; same weights at lr 0)
    relu = Model_RNN.RNNMaskNet(129, (32, 16), 8, rnn_hidden=6)
    util.save_checkpoint(tmp_path / "relu.pt", relu, util.make_stft(256, 64), 8000)
    (tmp_path / "r").rename(tmp_path / "r-leaky")
    made = rnn_one_epoch_at_lr0(demo, tmp_path, tmp_path / "relu.pt", "--leaky", "0.05")
    assert made.leaky == 0.05 and isinstance(made.encoder[1], torch.nn.LeakyReLU)
    assert all(torch.equal(made.state_dict()[k], v) for k, v in relu.state_dict().items())


def test_rnn_init_rejects_wrong_checkpoint(demo, tmp_path):
    import Model_GRU
    gru = Model_GRU.GRUMaskNet(129)
    util.save_checkpoint(tmp_path / "gru.pt", gru, util.make_stft(256, 64), 8000)
    with pytest.raises(UserError, match="needs a feedforward .* or RNN .* checkpoint, got Model_GRU.GRUMaskNet"):
        train_rnn.main(tiny_args(demo, tmp_path / "r", tmp_path / "cache", "--init", str(tmp_path / "gru.pt")))


def test_rnn_init_continues_an_rnn_checkpoint_with_its_shape(demo, tmp_path):
    """--init with an RNN checkpoint (e.g. the shipped one) loads every weight and takes its shape
    (here 2 unidirectional layers of 6 units, none of which the command line gives)."""
    rnn = Model_RNN.RNNMaskNet(129, (32, 16), 8, rnn_hidden=6, rnn_layers=2, bidirectional=False)
    with torch.no_grad():
        for p in rnn.parameters():
            p.normal_()
    util.save_checkpoint(tmp_path / "rnn.pt", rnn, util.make_stft(256, 64), 8000)
    args = tiny_args(demo, tmp_path / "r", tmp_path / "cache", "--init", str(tmp_path / "rnn.pt"), "--lr", "0")
    args[args.index("--epochs") + 1] = "1"
    train_rnn.main(args)
    out = torch.load(tmp_path / "r" / "savedModel_RNN_best.pt", weights_only=True)
    assert out["model_args"]["rnn_hidden"] == 6 and out["model_args"]["rnn_layers"] == 2
    assert out["model_args"]["bidirectional"] is False and out["model_args"]["dropout"] == 0.1
    for k, v in rnn.state_dict().items():               # lr 0: the weights are the loaded ones
        assert torch.equal(out["state_dict"][k], v), k
    train_rnn.main([*args[:args.index("--run-dir") + 1], str(tmp_path / "r2"),
                    *args[args.index("--run-dir") + 2:], "--dropout", "0.3"])      # dropout: given, it wins
    assert torch.load(tmp_path / "r2" / "savedModel_RNN_best.pt", weights_only=True)["model_args"]["dropout"] == 0.3
    # a resume takes everything from its run folder, not from the --init file (changed or gone by then)
    (tmp_path / "rnn.pt").unlink()
    args[args.index("--epochs") + 1] = "2"
    train_rnn.main(args + ["--resume", str(tmp_path / "r")])
    last = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and last["model_args"]["rnn_hidden"] == 6 and last["stft"]["hop"] == 64


def rnn_one_epoch_at_lr0(demo, tmp_path, init, *extra):
    """train_rnn.py --init INIT for one epoch at learning rate 0 into tmp_path/r; the saved model."""
    args = tiny_args(demo, tmp_path / "r", tmp_path / "cache", "--init", str(init), *extra, "--lr", "0")
    args[args.index("--epochs") + 1] = "1"
    train_rnn.main(args)
    return util.load_model(tmp_path / "r" / "savedModel_RNN_best.pt")[0]


def test_rnn_widen_starts_from_the_checkpoints_masks(demo, tmp_path):
    """--widen-rnn: an RNN --init with more LSTM units; at lr 0 the saved model gives the
    checkpoint's masks; refused without an RNN --init or to fewer units."""
    torch.manual_seed(0)
    rnn = Model_RNN.RNNMaskNet(129, (32, 16), 8, rnn_hidden=6, bidirectional=True)
    util.save_checkpoint(tmp_path / "rnn.pt", rnn, util.make_stft(256, 64), 8000)
    wide = rnn_one_epoch_at_lr0(demo, tmp_path, tmp_path / "rnn.pt", "--widen-rnn", "10")
    assert wide.rnn.hidden_size == 10
    x = torch.rand(1, 40, 129) * 5
    assert torch.allclose(wide(x), rnn.eval()(x), atol=1e-5)
    with pytest.raises(UserError, match="already has 6 units"):
        train_rnn.main(tiny_args(demo, tmp_path / "r2", tmp_path / "cache", "--init", str(tmp_path / "rnn.pt"),
                                 "--widen-rnn", "4"))
    with pytest.raises(UserError, match="--widen-rnn needs an RNN checkpoint"):
        train_rnn.main(tiny_args(demo, tmp_path / "r3", tmp_path / "cache", "--widen-rnn", "8"))


def test_rnn_widen_context_starts_from_the_checkpoints_masks(demo, tmp_path):
    """--widen-context: an RNN --init with a wider input window; at lr 0 the saved model gives
    the checkpoint's masks and keeps the window; refused when narrower, even, without an RNN
    --init, or (as --context-frames) for a causal model."""
    torch.manual_seed(0)
    rnn = Model_RNN.RNNMaskNet(129, (32, 16), 8, rnn_hidden=6, bidirectional=True)
    util.save_checkpoint(tmp_path / "rnn.pt", rnn, util.make_stft(256, 64), 8000)
    init = ("--init", str(tmp_path / "rnn.pt"))
    args = tiny_args(demo, tmp_path / "r", tmp_path / "cache", *init, "--widen-context", "5", "--lr", "0")
    args[args.index("--epochs") + 1] = "1"
    train_rnn.main(args)
    wide, *_ = util.load_model(tmp_path / "r" / "savedModel_RNN_best.pt")
    assert wide.context_frames == 5 and wide.encoder[0].in_features == 5 * 129
    x = torch.rand(1, 40, 129) * 5
    assert torch.allclose(wide(x), rnn.eval()(x), atol=1e-5)
    wide_ckpt = tmp_path / "r" / "savedModel_RNN_best.pt"
    with pytest.raises(UserError, match="already sees 5 frames"):
        train_rnn.main(tiny_args(demo, tmp_path / "r2", tmp_path / "cache", "--init", str(wide_ckpt),
                                 "--widen-context", "3"))
    with pytest.raises(UserError, match="the window must be odd"):
        train_rnn.main(tiny_args(demo, tmp_path / "r3", tmp_path / "cache", *init, "--widen-context", "4"))
    with pytest.raises(UserError, match="--widen-context needs an RNN checkpoint"):
        train_rnn.main(tiny_args(demo, tmp_path / "r4", tmp_path / "cache", "--widen-context", "3"))
    with pytest.raises(UserError, match="looks ahead"):
        train_rnn.main(tiny_args(demo, tmp_path / "r5", tmp_path / "cache", "--context-frames", "3",
                                 "--unidirectional"))


def test_rnn_with_context_from_feedforward_starts_from_its_masks(demo, ff_run, tmp_path):
    """--context-frames 3 with a feedforward --init: frame t keeps the frame model's weights, the
    neighbours start at zero, so the first masks are the feedforward model's."""
    ff = ff_run / "savedModel_feedforward_best.pt"
    args = tiny_args(demo, tmp_path / "r", tmp_path / "cache", "--init", str(ff), "--rnn-hidden", "8",
                     "--context-frames", "3", "--lr", "0")
    args[args.index("--epochs") + 1] = "1"
    train_rnn.main(args)
    ffm, *_ = util.load_model(ff)
    rnn, *_ = util.load_model(tmp_path / "r" / "savedModel_RNN_best.pt")
    assert rnn.context_frames == 3
    x = torch.rand(1, 40, 129) * 5
    assert torch.allclose(rnn(x), ffm(x), atol=1e-6)


def test_rnn_from_the_convolutional_frame_model_starts_from_its_masks(demo, tmp_path):
    """A convolutional feedforward --init (the assignment's optional variant): the RNN takes its
    --conv, starts from its masks, and reloads as a convolutional RNN; --conv refuses a window."""
    torch.manual_seed(0)
    ff = Model.FrameMaskNet(129, (32, 16), 8, conv=[4, 16, 8])
    ff.set_level_norm("frame")
    util.save_checkpoint(tmp_path / "ff.pt", ff, util.make_stft(256, 64), 8000)
    rnn = rnn_one_epoch_at_lr0(demo, tmp_path, tmp_path / "ff.pt", "--rnn-hidden", "8")
    assert rnn.model_args["conv"] == [4, 16, 8]
    x = torch.rand(1, 40, 129) * 5
    assert torch.allclose(rnn(x), ff.eval()(x), atol=1e-6)
    with pytest.raises(UserError, match="needs the fully connected first layer, not --conv"):
        train_rnn.main(tiny_args(demo, tmp_path / "r2", tmp_path / "cache", "--conv", "4", "16", "8",
                                 "--context-frames", "3"))


def test_nan_loss_stops_and_keeps_best(demo, tmp_path, monkeypatch):
    import Model
    calls = {"n": 0}
    kl = Model.LOSSES["kl"]

    def loss_going_nan(target, estimate):        # fine during epoch 1 (and its validation), NaN after
        calls["n"] += 1
        value = kl(target, estimate)
        return value * float("nan") if calls["n"] > 3 else value
    monkeypatch.setitem(Model.LOSSES, "kl", loss_going_nan)
    args = tiny_args(demo, tmp_path / "run", tmp_path / "cache", "--frame-batch", "100000")
    args[args.index("--samples-per-epoch") + 1] = "8"
    with pytest.raises(UserError, match="loss became nan at epoch 2.*Best checkpoint kept"):
        train_feedforward.main(args)
    model, *_ = util.load_model(tmp_path / "run" / "savedModel_feedforward_best.pt")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_train_separate_evaluate_end_to_end(demo, ff_run, tmp_path, capsys):
    ckpt = ff_run / "savedModel_feedforward_best.pt"
    song = sorted((demo / "Mixtures" / "Test").iterdir())[0] / "mixture.wav"
    assert separate.main([str(song), "--model", str(ckpt), "-o", str(tmp_path / "sep"), "--quiet"]) == 0
    assert (tmp_path / "sep" / song.parent.name / "vocals.wav").exists()
    evaluate_sdr.main(["--model", str(ckpt), "--name", "ff", "--data", str(demo), "--jobs", "1", "--quiet",
                       "--out", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert "mixture" in out and "ff" in out and "oracle IRM" in out
    headers = [ln for ln in out.splitlines() if ln.startswith("system (")]      # each table names its source
    assert [h.split(")")[0] for h in headers] == ["system (vocals", "system (accompaniment"]
    summary = json.loads((tmp_path / "res" / "summary.json").read_text())["summary"]
    assert summary["mixture"]["vocals"]["GNSDR"] == 0
    assert summary["oracle IRM"]["vocals"]["GNSDR"] > 5        # the ceiling is far above the floor
    assert (tmp_path / "res" / "tracks.csv").read_text().count("\n") == 1 + 6 * 2
    # --tracks picks songs by name, --mask-power is applied and recorded
    evaluate_sdr.main(["--model", str(ckpt), "--name", "ff", "--data", str(demo), "--jobs", "1", "--quiet",
                       "--tracks", song.parent.name, "--mask-power", "2", "--oracle",
                       "--out", str(tmp_path / "one"), "--cache-dir", str(tmp_path / "cache")])
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert one["meta"]["tracks"] == 1 and one["meta"]["mask_power"] == 2
    assert one["summary"]["ff"]["vocals"]["GNSDR"] != summary["ff"]["vocals"]["GNSDR"]
    # --semitones is applied and recorded (the run above with it added)
    evaluate_sdr.main(["--model", str(ckpt), "--name", "ff", "--data", str(demo), "--jobs", "1", "--quiet",
                       "--tracks", song.parent.name, "--mask-power", "2", "--semitones", "1", "--oracle",
                       "--out", str(tmp_path / "st1"), "--cache-dir", str(tmp_path / "cache")])
    st1 = json.loads((tmp_path / "st1" / "summary.json").read_text())
    assert st1["meta"]["semitones"] == 1 and st1["meta"]["mask_power"] == 2
    assert st1["meta"]["systems"]["ff"]["semitones"] == 1 and one["meta"]["systems"]["ff"]["semitones"] == 2
    assert one["meta"]["semitones"] == "each model's default (systems)"
    assert st1["summary"]["ff"]["vocals"]["GNSDR"] != one["summary"]["ff"]["vocals"]["GNSDR"]
    # --transposition-mean is applied (in the workers too) and recorded
    evaluate_sdr.main(["--model", str(ckpt), "--name", "ff", "--data", str(demo), "--jobs", "1", "--quiet",
                       "--tracks", song.parent.name, "--mask-power", "2", "--semitones", "1",
                       "--transposition-mean", "geometric", "--out", str(tmp_path / "geo"),
                       "--cache-dir", str(tmp_path / "cache")])
    geo = json.loads((tmp_path / "geo" / "summary.json").read_text())
    assert geo["meta"]["transposition_mean"] == geo["meta"]["systems"]["ff"]["transposition_mean"] == "geometric"
    assert st1["meta"]["systems"]["ff"]["transposition_mean"] == separate.DEFAULT_TRANSPOSITION_MEAN
    assert geo["summary"]["ff"]["vocals"]["GNSDR"] != st1["summary"]["ff"]["vocals"]["GNSDR"]
    capsys.readouterr()
    # compared with the results it then writes over (--out on the compared folder): the ones from before the run
    assert evaluate_sdr.main(["--model", str(ckpt), "--name", "ff", "--data", str(demo), "--jobs", "1", "--quiet",
                              "--tracks", song.parent.name, "--mask-power", "2", "--semitones", "0", "--oracle",
                              "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "st1"), "--force",
                              "--compare", str(tmp_path / "st1" / "summary.json")]) == 1
    assert "--semitones differs from the committed results' for ff (1 then, 0 now)" in capsys.readouterr().out
    with pytest.raises(UserError, match="no track of the test split matches nothing-like-this"):
        evaluate_sdr.main(["--model", str(ckpt), "--data", str(demo), "--tracks", "nothing-like-this"])


def test_speed_cell_shows_systems_slower_than_real_time():
    assert [evaluate_sdr.speed_cell(x) for x in (None, 0.0, 0.43, 2.4, 171.2)] == ["-", "-", "0.4", "2", "171"]


KILL_SCRIPT = """
import sys, train_feedforward, util
util.run_cli(train_feedforward.main, sys.argv[1:])
"""


@pytest.mark.slow
def test_kill_9_never_corrupts_checkpoints(demo, tmp_path):
    """SIGKILL a real training process at several moments; every checkpoint present must load."""
    run, cache = tmp_path / "run", tmp_path / "cache"
    args = tiny_args(demo, run, cache)
    args[args.index("--epochs") + 1] = "1000"
    args[args.index("--samples-per-epoch") + 1] = "4"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    checked = 0
    for delay in (0.0, 0.013, 0.029, 0.051):
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL) if proc.poll() is None else None
        proc.wait()
        for name in ("last.pt", "savedModel_feedforward_best.pt"):
            if (run / name).exists():
                util.load_model(run / name)
                checked += 1
        if (run / "history.json").exists():              # written after last.pt: may not be there yet
            json.loads((run / "history.json").read_text())
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, *args, "--resume", str(run)], cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
    proc.kill()
    proc.wait()
    assert checked >= 8
    util.load_model(run / "last.pt")


DDP_SCRIPT = """
import os, sys
import torch, torch.distributed as dist
import Model, train_feedforward
created = []                                   # record the model each rank builds
_init = Model.FrameMaskNet.__init__
def init(self, *a, **k):
    _init(self, *a, **k)
    created.append(self)
Model.FrameMaskNet.__init__ = init
_destroy = dist.destroy_process_group
def save_then_destroy(*a, **k):                # after the last step, before the group goes away
    torch.save(created[-1].state_dict(), os.path.join(sys.argv[-1], f"rank{dist.get_rank()}.pt"))
    _destroy(*a, **k)
dist.destroy_process_group = save_then_destroy
train_feedforward.main(sys.argv[1:-1])
"""


@pytest.mark.slow
def test_ddp_two_cpu_ranks_identical_weights(demo, tmp_path):
    args = tiny_args(demo, tmp_path / "run", tmp_path / "cache")
    args[args.index("--epochs") + 1] = "1"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(script), *args, str(tmp_path)]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "run" / "savedModel_feedforward_best.pt").exists()


def test_lr_decays_on_plateau_and_resumes(demo, tmp_path, monkeypatch):
    losses = iter([1.0, 2.0, 3.0, 4.0])
    monkeypatch.setattr(training, "valid", lambda *a, **k: next(losses))   # never improves after epoch 1
    run = tmp_path / "run"
    args = tiny_args(demo, run, tmp_path / "cache", "--lr-decay-patience", "1", "--lr-decay-factor", "0.5")
    args[args.index("--epochs") + 1] = "3"
    train_feedforward.main(args)
    hist = json.loads((run / "history.json").read_text())
    assert hist["lr"] == pytest.approx([1e-3, 1e-3, 5e-4])
    args[args.index("--epochs") + 1] = "4"
    train_feedforward.main(args + ["--resume", str(run)])
    assert json.loads((run / "history.json").read_text())["lr"] == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4])


def test_lr_decay_counts_improvement_as_the_best_checkpoint_does(demo, tmp_path, monkeypatch):
    """The scheduler's improvement is the loop's (a strictly lower loss): a slightly worse negative loss
    (the sdr loss) counted as better under its default relative threshold, so the rate never decayed."""
    losses = iter([-7.8, -7.7995, -7.7994])
    monkeypatch.setattr(training, "valid", lambda *a, **k: next(losses))
    run = tmp_path / "run"
    args = tiny_args(demo, run, tmp_path / "cache", "--lr-decay-patience", "1", "--lr-decay-factor", "0.5")
    args[args.index("--epochs") + 1] = "3"
    train_feedforward.main(args)
    hist = json.loads((run / "history.json").read_text())
    assert hist["best_epoch"] == 1 and hist["lr"] == pytest.approx([1e-3, 1e-3, 5e-4])   # as for [1, 2, 3]


def test_clip_grad_option_bounds_the_step(demo, tmp_path, monkeypatch):
    norms = []
    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda p, n: norms.append(n) or real(p, n))
    train_feedforward.main(tiny_args(demo, tmp_path / "a", tmp_path / "cache"))
    assert norms and set(norms) == {5.0}                                  # the default
    norms.clear()
    train_feedforward.main(tiny_args(demo, tmp_path / "b", tmp_path / "cache", "--clip-grad", "0"))
    assert norms == []                                                    # off


def test_resume_keeps_counting_toward_patience(demo, tmp_path, monkeypatch):
    """Early stopping counts the epochs since the best across a resume: with --patience 2 and no
    improvement after epoch 1, a run resumed after epoch 2 stops after epoch 3, as it would have
    uninterrupted (it used to start counting again and run on)."""
    losses = iter([1.0, 2.0, 3.0, 4.0, 5.0])
    monkeypatch.setattr(training, "valid", lambda *a, **k: next(losses))
    run = tmp_path / "run"
    args = tiny_args(demo, run, tmp_path / "cache", "--patience", "2")
    train_feedforward.main(args)                                        # epochs 1-2 (tiny_args: --epochs 2)
    args[args.index("--epochs") + 1] = "5"
    train_feedforward.main(args + ["--resume", str(run)])
    assert [v["epoch"] for v in json.loads((run / "history.json").read_text())["valid"]] == [1, 2, 3]


def test_init_continues_from_a_shipped_style_checkpoint(ff_run, demo, tmp_path, capsys):
    """--init starts a training from a checkpoint's weights (the way to continue a shipped model
    whose run folder is gone): with lr 0 the new best checkpoint keeps them exactly."""
    import export_model
    slim = tmp_path / "shipped.pt"
    with pytest.raises(SystemExit):
        util.run_cli(export_model.main, [str(ff_run / "savedModel_feedforward_best.pt"), str(slim)])
    run = tmp_path / "cont"
    train_feedforward.main(tiny_args(demo, run, tmp_path / "cache", "--init", str(slim), "--lr", "0", "--epochs", "1"))
    a = util.read_checkpoint(slim)["state_dict"]
    b = util.read_checkpoint(run / "savedModel_feedforward_best.pt")["state_dict"]
    assert all(torch.equal(a[k].float(), b[k].float()) for k in a)
    import train_seed
    with pytest.raises(SystemExit) as e:
        util.run_cli(train_seed.main, ["--system", "gru", "--init", str(slim), "--data", str(demo), "--run-dir",
                                       str(tmp_path / "g"), "--epochs", "1", "--quiet", "--sample-rate", "8000",
                                       "--n-fft", "256", "--hop", "64", "--samples-per-epoch", "4", "--batch-size", "2",
                                       "--cache-dir", str(tmp_path / "cache"), "--valid-fraction", "0.34"])
    assert e.value.code == 2 and "needs a Model_GRU.GRUMaskNet checkpoint" in capsys.readouterr().err


def test_init_refuses_another_front_end_and_records_the_level_norm(ff_run, demo, tmp_path):
    """--init weights were learnt for one sample rate and STFT: another is a one-line error naming both;
    the checkpoint's level normalisation is the one the run records (so a --resume keeps it)."""
    ckpt = ff_run / "savedModel_feedforward_best.pt"                   # 8000 Hz, n_fft 256, hop 64
    for option, value, message in [("--sample-rate", "16000", "--sample-rate 8000, this run has --sample-rate 16000"),
                                   ("--hop", "128", "--hop 64, this run has --hop 128")]:
        args = tiny_args(demo, tmp_path / f"r{value}", tmp_path / "cache", "--init", str(ckpt))
        args[args.index(option) + 1] = value
        with pytest.raises(UserError, match=f"trained with {message}"):
            train_feedforward.main(args)
    plain = tmp_path / "plain"
    train_feedforward.main(tiny_args(demo, plain, tmp_path / "cache", "--level-norm", "none", "--epochs", "1"))
    cont = tmp_path / "cont"
    train_feedforward.main(tiny_args(demo, cont, tmp_path / "cache", "--init",
                                     str(plain / "savedModel_feedforward_best.pt"), "--epochs", "1"))
    assert json.loads((cont / "history.json").read_text())["train_args"]["level_norm"] == "none"
    assert util.read_checkpoint(cont / "last.pt")["features"]["level_norm"] == "none"


def test_feedforward_init_continues_and_export_merges_history(demo, ff_run, tmp_path):
    """--init from a shipped model, then export_model.py --continues OLD_HISTORY: the exported
    history is the old run up to its best epoch followed by the new run, and the training time
    counts both."""
    import export_model
    ship = tmp_path / "models"
    export_model.main([str(ff_run / "savedModel_feedforward_best.pt"), str(ship / "ff.pt")])
    old = json.loads((ship / "ff_history.json").read_text())
    run = tmp_path / "cont"
    train_feedforward.main(tiny_args(demo, run, tmp_path / "cache", "--init", str(ship / "ff.pt")))
    new = json.loads((run / "history.json").read_text())
    export_model.main([str(run / "savedModel_feedforward_best.pt"), str(ship / "ff.pt"), "--continues",
                       str(ship / "ff_history.json"), "--force"])
    merged = json.loads((ship / "ff_history.json").read_text())
    e0 = old["best_epoch"]
    assert merged["best_epoch"] == e0 + new["best_epoch"] and len(merged["valid"]) == e0 + len(new["valid"])
    assert len(merged["smoothed"]) == old["valid"][e0 - 1]["step"] + len(new["smoothed"])
    assert merged["valid"][e0]["epoch"] == e0 + 1 and merged["continued_from"]["epochs"] == e0
    ckpt = util.read_checkpoint(ship / "ff.pt")
    want = sum(old["epoch_time"][:e0]) + sum(new["epoch_time"][:new["best_epoch"]])
    assert abs(ckpt["train_seconds"] - want) < 1e-6
    with pytest.raises(UserError, match="not a training history"):
        export_model.main([str(run / "savedModel_feedforward_best.pt"), str(tmp_path / "x.pt"), "--continues",
                           str(run / "savedModel_feedforward_best.pt")])


@pytest.mark.parametrize("frames", [0, -1, 2, 4])
def test_check_odd_window_refuses_even_and_non_positive_windows_in_one_line(frames):
    with pytest.raises(UserError, match=f"{frames}: the window must be odd and at least 1"):
        training.check_odd_window(frames)
    for ok in (1, 3, 5, 11):
        training.check_odd_window(ok)


def test_teacher_blends_the_targets_and_keeps_the_mixture(tmp_path):
    """--teacher: each stem but the last becomes (1-w) x the true one + w x the teacher's estimate
    (the same as separation's reference path gives), the last the mixture minus them."""
    torch.manual_seed(0)
    stft = util.make_stft(256, 64)
    net = Model.FrameMaskNet(129, (32, 16), 8, dropout=0.0)
    util.save_checkpoint(tmp_path / "t.pt", net, stft, 8000)
    stems = torch.randn(2, 2, 4000)
    teacher = training.Teacher(str(tmp_path / "t.pt"), 0.25, ("vocals", "accompaniment"), 8000, "cpu")
    out = teacher(stems)
    mix = stems.sum(1)
    assert torch.allclose(out.sum(1), mix, atol=1e-5)
    for b in range(2):
        est = separate.separate_whole(net.eval(), stft, mix[b:b + 1].numpy())[0, 0]     # the vocals estimate
        want = 0.75 * stems[b, 0] + 0.25 * torch.from_numpy(est)
        assert torch.allclose(out[b, 0], want, atol=1e-5)
        assert not torch.allclose(out[b, 0], stems[b, 0], atol=1e-2)
    same = training.Teacher(str(tmp_path / "t.pt"), 0.0, ("vocals", "accompaniment"), 8000, "cpu")(stems)
    assert torch.allclose(same, stems, atol=1e-5)
    assert not any(p.requires_grad for p in teacher.model.parameters())


def test_teacher_semitones_average_like_separation(tmp_path):
    """--teacher-semitones N: the teacher's estimate of each training mixture is what separation's
    --semitones N gives for that mixture as a song (the batch rides through the resamplers as
    channels), which is not the plain estimate; the targets still sum to the mixture."""
    torch.manual_seed(0)
    stft = util.make_stft(256, 64)
    net = Model.FrameMaskNet(129, (32, 16), 8, dropout=0.0)
    util.save_checkpoint(tmp_path / "t.pt", net, stft, 8000)
    stems = torch.randn(3, 2, 6000) * torch.tensor([1.0, 0.3]).view(1, 2, 1)
    out = training.Teacher(str(tmp_path / "t.pt"), 1.0, ("vocals", "accompaniment"), 8000, "cpu", semitones=1)(stems)
    plain = training.Teacher(str(tmp_path / "t.pt"), 1.0, ("vocals", "accompaniment"), 8000, "cpu")(stems)
    mix = stems.sum(1)
    assert torch.allclose(out.sum(1), mix, atol=1e-5)
    for b in range(3):
        want = separate.separate_array(net.eval(), stft, mix[b:b + 1].numpy(), semitones=1)[0, 0]
        assert np.abs(out[b, 0].numpy() - want).max() < 1e-4 * np.abs(want).max()
        assert not torch.allclose(out[b, 0], plain[b, 0], atol=1e-2)


def test_teacher_semitones_need_a_teacher(demo, tmp_path):
    with pytest.raises(UserError, match="--teacher-semitones: .*give the teacher with --teacher"):
        train_feedforward.main(tiny_args(demo, tmp_path / "run", tmp_path / "cache", "--teacher-semitones", "2"))
    assert not (tmp_path / "run").exists()


def test_teacher_refusals_name_the_problem(tmp_path):
    import Model_WaveUNet
    stft = util.make_stft(256, 64)
    util.save_checkpoint(tmp_path / "t.pt", Model.FrameMaskNet(129, (32, 16), 8), stft, 8000)
    with pytest.raises(UserError, match="teacher works at 8000 Hz, the training at 16000 Hz"):
        training.Teacher(str(tmp_path / "t.pt"), 0.5, ("vocals", "accompaniment"), 16000, "cpu")
    with pytest.raises(UserError, match="does not estimate drums, bass"):
        training.Teacher(str(tmp_path / "t.pt"), 0.5, ("vocals", "drums", "bass", "other"), 8000, "cpu")
    util.save_checkpoint(tmp_path / "w.pt", Model_WaveUNet.WaveUNet(levels=2, features=4), stft, 8000)
    with pytest.raises(UserError, match="takes a mask model"):
        training.Teacher(str(tmp_path / "w.pt"), 0.5, ("vocals", "accompaniment"), 8000, "cpu")


def test_teacher_takes_an_onnx_export(tmp_path):
    """An ONNX export teaches like its checkpoint (onnxruntime runs the slow convolutional models
    several times faster than torch on a CPU)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import onnx_export
    torch.manual_seed(0)
    util.save_checkpoint(tmp_path / "t.pt", Model.FrameMaskNet(129, (32, 16), 8), util.make_stft(256, 64), 8000)
    onnx_export.export(tmp_path / "t.pt", tmp_path / "t.onnx")
    stems = torch.randn(3, 2, 4000)
    want = training.Teacher(str(tmp_path / "t.pt"), 0.5, ("vocals", "accompaniment"), 8000, "cpu")(stems)
    got = training.Teacher(str(tmp_path / "t.onnx"), 0.5, ("vocals", "accompaniment"), 8000, "cpu")(stems)
    assert (got - want).abs().max() < 1e-4 and not torch.allclose(got, stems, atol=1e-2)


def one_epoch_at_lr0_with_and_without(demo, init, tmp_path, name, *extra):
    """The histories of two one-epoch frame-model runs from ``init`` at lr 0: "plain", and ``name``
    with the options ``extra``."""
    runs = {}
    for run, options in (("plain", ()), (name, extra)):
        args = tiny_args(demo, tmp_path / run, tmp_path / "cache", "--init", str(init), "--lr", "0", *options)
        args[args.index("--epochs") + 1] = "1"
        train_feedforward.main(args)
        runs[run] = json.loads((tmp_path / run / "history.json").read_text())
    return runs


def test_teacher_changes_the_training_targets_but_not_validation(demo, ff_run, tmp_path):
    """At lr 0 a run with --teacher validates exactly as one without (validation keeps the true
    stems) while its training loss, against the blended targets, differs; the option is recorded."""
    ff = ff_run / "savedModel_feedforward_best.pt"
    runs = one_epoch_at_lr0_with_and_without(demo, ff, tmp_path, "kd", "--teacher", str(ff), "--teacher-weight", "1")
    # equal to float32 rounding (one ulp of the summed loss can differ between two runs of the same
    # weights on a CPU); a teacher in validation would move it by far more than the 1e-3 asserted below
    assert runs["kd"]["valid"][0]["loss"] == pytest.approx(runs["plain"]["valid"][0]["loss"], rel=1e-6)
    assert runs["kd"]["train"][0] != pytest.approx(runs["plain"]["train"][0], rel=1e-3)
    ckpt = util.read_checkpoint(tmp_path / "kd" / "savedModel_feedforward_best.pt")
    assert ckpt["train_args"]["teacher"] == str(ff) and ckpt["train_args"]["teacher_weight"] == 1.0


def test_frequency_masks_hide_whole_bands_of_at_most_width_bins():
    x = torch.randn(64, 5, 100) + 10.0                      # no feature is 0 before masking
    torch.manual_seed(0)
    out = Model.mask_frequency_bands(x, 2, 7)
    hidden = out == 0
    assert torch.equal(hidden, hidden[:, :1].expand_as(hidden))          # the same bins in every frame
    assert torch.equal(out[~hidden], x[~hidden])                         # the rest untouched
    per_example = hidden[:, 0].sum(-1)
    assert per_example.max() <= 14 and per_example.float().mean() > 2    # two bands of 0..7 bins
    for row in hidden[:, 0]:                                             # at most two runs of hidden bins
        edges = torch.diff(row.int(), prepend=torch.zeros(1, dtype=torch.int32))
        assert int((edges == 1).sum()) <= 2
    torch.manual_seed(0)
    assert torch.equal(Model.mask_frequency_bands(x, 2, 7), out)         # seeded: the same draw


def test_frequency_masks_apply_in_training_mode_only():
    model = Model.FrameMaskNet(40, hidden=(8,), code=4)
    mag = torch.rand(2, 6, 40) + 0.1
    model.feature_masks = (3, 10)
    model.eval()
    clean = model.features(mag)
    assert torch.equal(model.features(mag), clean)
    model.train()
    torch.manual_seed(1)
    masked = model.features(mag)
    assert (masked == 0).any() and not torch.equal(masked, clean)
    model.feature_masks = (0, 0)
    assert torch.equal(model.features(mag), clean)


def test_freq_mask_changes_training_but_not_validation(demo, ff_run, tmp_path):
    """At lr 0 a run with --freq-mask validates exactly as one without (the masks hide input bins
    in training mode only) while its training loss differs; the option is recorded."""
    runs = one_epoch_at_lr0_with_and_without(demo, ff_run / "savedModel_feedforward_best.pt", tmp_path, "fm",
                                             "--freq-mask", "4", "60")
    assert runs["fm"]["valid"][0]["loss"] == pytest.approx(runs["plain"]["valid"][0]["loss"], rel=1e-6)
    # the tiny demo model moves little with its input: the hidden bands change its training loss by
    # about 1e-4 of it, a hundred times the rounding that validation is held to above
    assert runs["fm"]["train"][0] != pytest.approx(runs["plain"]["train"][0], rel=2e-5)
    assert runs["fm"]["train_args"]["freq_mask"] == [4, 60]


def test_feedforward_validation_loss_is_each_tracks_frame_mean():
    """Validation takes a track's frames in order, all at once: the same loss whatever the torch RNG, equal
    to the loss over the whole track (shuffled batches of --frame-batch let a short last batch count as
    much as a full one, and which frames it held was random)."""
    import functools
    tf = Data.Transforms(util.make_stft(256, 64))
    torch.manual_seed(0)
    model = Model.FrameMaskNet(129, (32,), 16, 0.0).eval()
    valid_set = [torch.rand(2, 64 * 300) - 0.5]                     # 301 frames: batches of 50 leave 1
    loss = functools.partial(training.mask_loss, source_index=[0], loss_fn=Model.LOSSES["kl"])
    seen = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        seen.append(training.valid(model, valid_set, train_feedforward.shuffled_frames(tf, 50), loss, "cpu"))
    whole = training.valid(model, valid_set, training.mask_examples(tf), loss, "cpu")
    assert seen[0] == seen[1] == seen[2] and seen[0] == pytest.approx(whole, rel=1e-6)
