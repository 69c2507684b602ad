"""Seed systems (issue 6): DRNN, GRU-IRM, Chandna CNN, U-Net, Wave-U-Net on the common harness."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F_

import Data
import Model
import Model_CNN
import Model_DRNN
import Model_GRU
import Model_Hourglass
import Model_UNet
import Model_WaveUNet
import demo_data
import evaluate_sdr
import separate
import train_seed
import training
import util
from util import UserError

F = 65   # bins of a 128-point STFT: tiny but not a multiple of 64


def tiny_models():
    """One tiny instance of every seed system (name -> model)."""
    torch.manual_seed(0)
    return {
        "drnn": Model_DRNN.DRNN(F, hidden=24, layers=3, recurrent_layers=(2,), context_frames=3),
        "gru": Model_GRU.GRUMaskNet(F, hidden=12, layers=2, dense=16),
        "cnn4": Model_CNN.ChandnaCNN(F, Data.FOUR_STEMS, time_context=10, horizontal=(4, 1),
                                     n_vertical=6, n_horizontal=5, bottleneck=8),
        "cnn2": Model_CNN.ChandnaCNN(F, Data.SOURCES, time_context=10, horizontal=(4, 1),
                                     n_vertical=6, n_horizontal=5, bottleneck=8),
        "unet": Model_UNet.UNet(F, channels=(4, 4, 8, 8, 8, 8)),
        "hourglass": Model_Hourglass.StackedHourglass(F, features=8, stacks=2, depth=3),
        "waveunet": Model_WaveUNet.WaveUNet(levels=3, features=4, down_kernel=5, up_kernel=3),
    }


def mags(b=2, t=37, f=F, s=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.rand(b, s, t, f, generator=g) ** 2
    return src.sum(1), src


# ----------------------------------------------------------------------------------------------
# DRNN
# ----------------------------------------------------------------------------------------------
def test_drnn_joint_masks_sum_to_one_and_estimates_to_mixture():
    m = tiny_models()["drnn"].eval()
    mix, _ = mags()
    masks = m(mix)
    assert masks.shape == (2, 2, 37, F) and m.sources == ("vocals", "accompaniment")
    assert (masks > 0).all() and (masks < 1).all()
    assert torch.allclose(masks.sum(1), torch.ones(2, 37, F), atol=1e-6)
    est = masks * mix[:, None]
    assert torch.allclose(est.sum(1), mix, atol=1e-5)


def test_drnn_context_window_and_recurrence_are_configurable():
    x = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    w = Model.context_window(x, 3)
    assert w.shape == (2, 4, 9)
    assert torch.equal(w[:, 1], torch.cat([x[:, 0], x[:, 1], x[:, 2]], -1))   # t-1, t, t+1
    assert torch.equal(w[:, 0, :3], x[:, 0]) and torch.equal(w[:, -1, 6:], x[:, -1])   # edges repeated
    torch.manual_seed(0)
    dnn = Model_DRNN.DRNN(F, hidden=16, layers=2, recurrent_layers=(), context_frames=3).eval()
    drnn = Model_DRNN.DRNN(F, hidden=16, layers=2, recurrent_layers=(1,), context_frames=5).eval()
    assert not any(isinstance(layer, Model_DRNN.BoundedReLURNN) for layer in dnn.layers)
    assert isinstance(drnn.layers[0], Model_DRNN.BoundedReLURNN) and drnn.layers[0].input.in_features == 5 * F
    mix, _ = mags(t=20)
    changed = mix.clone()
    changed[:, 10] += 1
    # without recurrence a frame sees only its +-1 neighbours; with it, every later frame changes
    diff = (dnn(changed) - dnn(mix)).abs().amax((0, 1, 3))
    assert diff[:9].max() == 0 and diff[9:12].min() > 0 and diff[12:].max() == 0
    diff = (drnn(changed) - drnn(mix)).abs().amax((0, 1, 3))
    assert diff[:8].max() == 0 and diff[8:].min() > 0
    with pytest.raises(ValueError):
        Model_DRNN.DRNN(F, layers=2, recurrent_layers=(3,))
    with pytest.raises(ValueError):
        Model_DRNN.DRNN(F, context_frames=2)


@pytest.mark.parametrize("recurrent_first", [False, True])
def test_drnn_widened_context_computes_the_narrow_models_masks(recurrent_first):
    """load_widened: a wider window, same masks (the added frames' weights start at zero),
    and those frames are live once their weights move; a narrower window is refused."""
    torch.manual_seed(0)
    rec = (1,) if recurrent_first else (2,)
    narrow = Model_DRNN.DRNN(F, hidden=16, layers=2, recurrent_layers=rec, context_frames=3).eval()
    with torch.no_grad():
        narrow.input_mean.uniform_(-1, 1)                     # input statistics travel too
        for p in narrow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    wide = Model_DRNN.DRNN(F, hidden=16, layers=2, recurrent_layers=rec, context_frames=7).eval()
    wide.load_widened(narrow.state_dict())
    mix, _ = mags(t=20)
    assert torch.allclose(wide(mix), narrow(mix), atol=1e-5)
    first = wide.layers[0].input if recurrent_first else wide.layers[0]
    assert first.weight[:, :2 * F].abs().sum() == 0 and first.weight[:, 5 * F:].abs().sum() == 0
    with torch.no_grad():
        first.weight[:, :F] += 0.1                            # the frame t-3 now counts
    assert not torch.allclose(wide(mix), narrow(mix), atol=1e-3)
    with pytest.raises(ValueError, match="cannot widen a context window of 7 frames to 3"):
        narrow.load_widened(wide.state_dict())


@pytest.mark.parametrize("recurrent_last", [False, True])
def test_drnn_backward_units_see_the_future_and_continue_a_causal_drnn(recurrent_last):
    """backward_units: a time-reversed twin of the recurrent layer makes frame t depend on frames
    far ahead (beyond the window), which the causal DRNN never sees; load_widened adds the twin
    to a causal checkpoint with the same masks until the layer above learns to read it."""
    torch.manual_seed(0)
    rec = (2,) if recurrent_last else (1,)
    causal = Model_DRNN.DRNN(F, hidden=16, layers=2, recurrent_layers=rec).eval()
    with torch.no_grad():
        for p in causal.parameters():
            p.add_(0.3 * torch.randn_like(p))
    both = Model_DRNN.DRNN(F, hidden=16, layers=2, recurrent_layers=rec, backward_units=8).eval()
    assert list(both.backward) == [str(rec[0] - 1)]
    both.load_widened(causal.state_dict())
    mix, _ = mags(t=20)
    later = mix.clone()
    later[:, 10:] *= 3.0                                      # only frames from 10 on change
    assert torch.allclose(both(mix), causal(mix), atol=1e-6)
    assert torch.allclose(causal(later)[:, :, :9], causal(mix)[:, :, :9], atol=1e-6)  # window: t+1
    above = both.output if recurrent_last else both.layers[1]
    with torch.no_grad():
        assert above.weight[:, 16:].abs().sum() == 0
        above.weight[:, 16:] += 0.1                           # the layer above now reads the twin
    assert not torch.allclose(both(later)[:, :, :9], both(mix)[:, :, :9], atol=1e-4)
    with pytest.raises(ValueError, match="unexpected weight backward|does not match"):
        causal.load_widened(both.state_dict())


def test_discriminative_loss_matches_huang_eq7():
    _, src = mags(seed=1)
    est = torch.rand_like(src)
    mse = Model.LOSSES["mse"]
    y1, y2, e1, e2 = src[:, :1], src[:, 1:], est[:, :1], est[:, 1:]
    expected = mse(y1, e1) - 0.05 * mse(y2, e1) + mse(y2, e2) - 0.05 * mse(y1, e2)
    got = Model_DRNN.discriminative_loss(src, est, mse, 0.05)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert Model_DRNN.discriminative_loss(src, est, mse, 0).item() == pytest.approx(
        (mse(y1, e1) + mse(y2, e2)).item(), rel=1e-5)


@pytest.mark.parametrize("loss", ["mse", "kl", "is"])
def test_drnn_one_training_step_each_loss(loss):
    m = tiny_models()["drnn"]
    mix, src = mags()
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    value = train_seed.discriminative_mask_loss(m, (mix, src), [0, 1], Model.LOSSES[loss], 0.05)
    assert torch.isfinite(value)
    opt.zero_grad()
    value.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    opt.step()


# ----------------------------------------------------------------------------------------------
# GRU with ratio-mask target
# ----------------------------------------------------------------------------------------------
def test_ratio_mask_target():
    v, a = torch.tensor([3.0, 0.0, 1.0]), torch.tensor([4.0, 2.0, 1.0])
    src = torch.stack([v, a])[None, :, None]                                   # (1, 2, 1, 3)
    m = Model_GRU.ratio_mask(src, p=1, v=1, eps=0)[0, :, 0]
    assert torch.allclose(m[0], torch.tensor([3 / 7, 0, 0.5]))
    m = Model_GRU.ratio_mask(src, p=2, v=0.5, eps=0)[0, :, 0]                  # Wang's IRM
    assert torch.allclose(m[0], torch.tensor([3 / 5, 0, 0.5 ** 0.5]))
    assert torch.allclose((m ** 2).sum(0), torch.ones(3))


def test_gru_streams_with_state_and_trains_on_mask():
    m = tiny_models()["gru"].eval()
    mix, src = mags(t=30)
    whole = m(mix)
    assert whole.shape == (2, 1, 30, F) and m.context == "causal"
    state, parts = None, []
    for i in range(0, 30, 7):
        out, state = m(mix[:, i:i + 7], state, return_state=True)
        parts.append(out)
    assert torch.allclose(torch.cat(parts, 2), whole, atol=1e-6)
    m.train()
    loss = train_seed.mask_target_loss(m, (mix, src), [0], Model.LOSSES["mse"], 2.0, 0.5)
    target = Model_GRU.ratio_mask(src, 2, 0.5)[:, :1]
    assert loss.item() == pytest.approx(((m(mix) - target) ** 2).sum(-1).mean().item(), rel=1e-5)
    loss.backward()


# ----------------------------------------------------------------------------------------------
# Chandna CNN
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [3, 10, 23])
def test_cnn_masks_sum_to_one_any_length(t):
    models = tiny_models()
    for name, n in (("cnn4", 4), ("cnn2", 2)):
        m = models[name].eval()
        mix, _ = mags(t=t)
        masks = m(mix)
        assert masks.shape == (2, n, t, F)
        assert torch.allclose(masks.sum(1), torch.ones(2, t, F), atol=1e-5)
        assert (masks >= 0).all()


def test_cnn_filter_shapes_follow_chandna():
    m = Model_CNN.ChandnaCNN(513)          # paper: (t1, f1, t2, f2, N1, N2, NN) = (1, 513, 12, 1, 50, 30, 128)
    assert m.vertical.weight.shape == (50, 1, 1, 513) and m.horizontal.weight.shape == (30, 50, 12, 1)
    assert m.code_shape == (30, 19, 1) and m.bottleneck[1].out_features == 128
    assert m.sources == Data.FOUR_STEMS and len(m.decoders) == 4


def test_cnn_dropout_acts_in_training_only_and_keeps_old_checkpoints_loadable():
    torch.manual_seed(0)
    kw = dict(time_context=10, horizontal=(4, 1), n_vertical=6, n_horizontal=5, bottleneck=32)
    m = Model_CNN.ChandnaCNN(F, Data.SOURCES, dropout=0.5, **kw)
    mix, _ = mags()
    m.train()
    assert not torch.allclose(m(mix), m(mix))                 # random units dropped per call
    m.eval()
    assert torch.equal(m(mix), m(mix))
    # dropout adds no weights: a checkpoint without it (the shipped CNN's) loads into a model with it
    plain = Model_CNN.ChandnaCNN(F, Data.SOURCES, **kw).eval()
    m.load_state_dict(plain.state_dict())
    assert torch.equal(m(mix), plain(mix))


def test_cnn_conv_activation_makes_the_convolutions_non_linear():
    torch.manual_seed(0)
    kw = dict(time_context=10, horizontal=(4, 1), n_vertical=6, n_horizontal=5, bottleneck=32)
    linear = Model_CNN.ChandnaCNN(F, Data.SOURCES, **kw).eval()
    x = torch.randn(3, 10, F)
    # linear convolutions: the bottleneck's input is an affine function of the patch
    code = lambda m, x: m.horizontal(m.activation(m.vertical(x[:, None])))  # noqa: E731
    zero = code(linear, torch.zeros_like(x))
    assert torch.allclose(code(linear, 2 * x) - zero, 2 * (code(linear, x) - zero), atol=1e-4)
    for name in ("relu", "elu"):
        m = Model_CNN.ChandnaCNN(F, Data.SOURCES, activation=name, **kw).eval()
        m.load_state_dict(linear.state_dict())                # same weights, no new ones
        assert not torch.allclose(m(x.abs()), linear(x.abs()), atol=1e-4)
        masks = m(x.abs())
        assert torch.allclose(masks.sum(1), torch.ones_like(masks[:, 0]), atol=1e-5)
    with pytest.raises(ValueError, match="activation"):
        Model_CNN.ChandnaCNN(F, Data.SOURCES, activation="tanh", **kw)


def test_cnn_one_training_step():
    m = tiny_models()["cnn4"]
    mix, src = mags(s=4)
    loss = training_step(m, (mix, src), "mse", [0, 1, 2, 3])
    assert np.isfinite(loss)


def test_cnn_interference_terms_penalise_the_other_source(demo, tmp_path, monkeypatch):
    m = tiny_models()["cnn2"]
    mix, src = mags()
    mse = Model.LOSSES["mse"]
    est = m(mix) * mix.unsqueeze(1)
    own, other = mse(src, est), mse(src.flip(1), est)
    got = train_seed.discriminative_mask_loss(m, (mix, src), [0, 1], mse, 0.1)
    assert got.item() == pytest.approx((2 * (own - 0.1 * other)).item(), rel=1e-5)
    # main() trains the CNN on that loss only when asked: --interference 0 keeps the plain mask loss
    seen = []
    original = train_seed.discriminative_mask_loss
    monkeypatch.setattr(train_seed, "discriminative_mask_loss",
                        lambda *a, **k: seen.append(k["gamma"]) or original(*a, **k))
    cnn = ("--sources", "vocals", "accompaniment", "--filters", "6", "5", "--bottleneck", "8", "--time-context", "10",
           "--horizontal", "4", "1", "--epochs", "1")
    train_seed.main(seed_args("cnn", demo, tmp_path / "plain", tmp_path / "cache", *cnn))
    assert seen == []
    train_seed.main(seed_args("cnn", demo, tmp_path / "alpha", tmp_path / "cache", *cnn, "--interference", "0.05"))
    assert seen and set(seen) == {0.05}
    ckpt = util.read_checkpoint(tmp_path / "alpha" / "savedModel_cnn_best.pt")
    assert ckpt["train_args"]["interference"] == 0.05


def training_step(model, example, loss, index):
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    import training
    value = training.mask_loss(model, example, index, Model.LOSSES[loss])
    opt.zero_grad()
    value.backward()
    opt.step()
    return value.item()


# ----------------------------------------------------------------------------------------------
# U-Net
# ----------------------------------------------------------------------------------------------
def test_unet_pads_and_crops_any_size():
    m = tiny_models()["unet"].eval()
    for t in (1, 37, 64, 130):
        mix, _ = mags(t=t)
        masks = m(mix)
        assert masks.shape == (2, 1, t, F)
        assert (masks >= 0).all() and (masks <= 1).all()


def test_unet_follows_jansson():
    m = Model_UNet.UNet(513)
    convs = [e[0] for e in m.encoder]
    assert [c.out_channels for c in convs] == [16, 32, 64, 128, 256, 512]
    assert all(c.kernel_size == (5, 5) and c.stride == (2, 2) for c in convs)
    assert all(isinstance(e[2], torch.nn.LeakyReLU) and e[2].negative_slope == 0.2 for e in m.encoder)
    assert [d[0].out_channels for d in m.decoder[:-1]] + [m.decoder[-1].out_channels] == [256, 128, 64, 32, 16, 1]
    assert [any(isinstance(x, torch.nn.Dropout) for x in d) for d in m.decoder[:-1]] == [True] * 3 + [False] * 2
    assert m.decoder[1][0].in_channels == 256 + 256          # skip concatenation


def test_unet_one_training_step_l1():
    m = tiny_models()["unet"]
    mix, src = mags(t=20)
    assert np.isfinite(training_step(m, (mix, src[:, :1]), "l1", [0]))


# ----------------------------------------------------------------------------------------------
# Stacked hourglass
# ----------------------------------------------------------------------------------------------
def test_hourglass_pads_and_crops_any_size_and_averages_its_stacks():
    m = tiny_models()["hourglass"].eval()
    for t in (1, 37, 64):
        mix, _ = mags(t=t)
        masks = m(mix)
        assert masks.shape == (2, 1, t, F)
        assert (masks >= 0).all() and (masks <= 1).all()
    # the output is the mean of the stacks' masks: with the second stack's logits forced to 0
    # (mask 0.5) it is (first stack's mask + 0.5) / 2
    mix, _ = mags(t=16)
    with torch.no_grad():
        first = Model_Hourglass.StackedHourglass(F, features=8, stacks=1, depth=3).eval()
        first.load_state_dict({k: v for k, v in m.state_dict().items()
                               if k in first.state_dict()})
        m.logits[1].weight.zero_()
        m.logits[1].bias.zero_()
        assert torch.allclose(m(mix), (first(mix) + 0.5) / 2, atol=1e-6)


def _out_of_place(module, x):
    """The hourglass's blocks as written in the paper, every operation on a new tensor: the reference for the
    in-place forward."""
    if isinstance(module, Model_Hourglass.Residual):
        y = x
        for m in module.body:
            y = torch.relu(y) if isinstance(m, torch.nn.ReLU) else m(y)
        return y + (x if isinstance(module.skip, torch.nn.Identity) else module.skip(x))
    low = _out_of_place(module.up, _out_of_place(module.inner, _out_of_place(module.down, F_.max_pool2d(x, 2))))
    return _out_of_place(module.skip, x) + F_.interpolate(low, scale_factor=2, mode="nearest")


def test_hourglass_blocks_in_place_compute_what_they_would_out_of_place():
    """Residual and Hourglass add and rectify in place: the same values and the same gradients as the
    out-of-place operations, in training and in inference, and the input is left as it was."""
    torch.manual_seed(0)
    block = Model_Hourglass.Residual(6, 8)
    hourglass = Model_Hourglass.Hourglass(2, 8)
    for module, cin in ((block, 6), (hourglass, 8)):
        module.train()
        x = torch.randn(2, cin, 8, 12, requires_grad=True)
        kept = x.detach().clone()
        out = module(x)
        (g,) = torch.autograd.grad(out.square().sum(), x)
        assert torch.equal(x.detach(), kept)
        module.eval()
        with torch.no_grad():
            assert torch.equal(module(x.detach()), _out_of_place(module, x.detach()))
            assert torch.equal(x.detach(), kept)
        module.train()
        x3 = x.detach().clone().requires_grad_(True)
        (g_train_ref,) = torch.autograd.grad(_out_of_place(module, x3).square().sum(), x3)
        assert torch.equal(g, g_train_ref)


def test_hourglass_follows_park():
    m = Model_Hourglass.StackedHourglass(513, features=256, stacks=4)
    assert len(m.hourglasses) == 4 and m.multiple == 16 and m.stem[0].kernel_size == (7, 7)
    hg, depth = m.hourglasses[0], 0
    while isinstance(hg, Model_Hourglass.Hourglass):               # 4 poolings per hourglass
        hg, depth = hg.inner, depth + 1
    assert depth == 4
    block = m.hourglasses[0].skip.body                             # bottleneck 256 -> 128 -> 128 -> 256
    convs = [c for c in block if isinstance(c, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (256, 128, (1, 1)), (128, 128, (3, 3)), (128, 256, (1, 1))]
    args = train_seed.parse_args(["--system", "hourglass", "--data", "x"])
    assert (args.features, args.stacks, args.depth, args.batch_size, args.lr, args.loss) == (256, 4, 4, 4, 1e-4, "l1")
    assert round(args.chunk_seconds * args.sample_rate / args.hop) == 63                      # 64 frames
    assert train_seed.parse_args(["--system", "waveunet", "--data", "x"]).features == 24


def test_hourglass_widened_features_compute_the_narrow_models_masks():
    """load_widened: more features, same masks in eval and in training mode (batch norm per channel; the
    added channels' weights into the checkpoint's start at zero); the added channels count once those
    weights move; fewer features, or other stacks, are refused."""
    torch.manual_seed(0)
    narrow = Model_Hourglass.StackedHourglass(F, features=8, stacks=2, depth=3)
    with torch.no_grad():
        for p in narrow.parameters():
            p.add_(0.3 * torch.randn_like(p))
        for name, buf in narrow.named_buffers():
            if name.endswith("running_mean"):
                buf.uniform_(-0.5, 0.5)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
    wide = Model_Hourglass.StackedHourglass(F, features=12, stacks=2, depth=3)
    wide.load_widened(narrow.state_dict())
    mix, _ = mags(t=20)
    for train in (False, True):
        narrow.train(train), wide.train(train)
        assert torch.allclose(wide(mix), narrow(mix), atol=1e-5)
    head = wide.heads[0][1]                                   # 1x1 conv: 12 -> 12, the old 8 see only the old 8
    assert head.weight[:8, 8:].abs().sum() == 0 and head.weight[8:].abs().sum() > 0
    assert torch.equal(head.weight[:8, :8], narrow.heads[0][1].weight)
    wide.eval(), narrow.eval()
    with torch.no_grad():
        wide.logits[1].weight[:, 8:] += 0.5                   # the last logits now read the added channels
    assert not torch.allclose(wide(mix), narrow(mix), atol=1e-3)
    with pytest.raises(ValueError, match="does not grow into"):
        narrow.load_widened(wide.state_dict())
    with pytest.raises(ValueError, match="not a hourglass of these stacks and depth"):
        Model_Hourglass.StackedHourglass(F, features=12, stacks=3, depth=3).load_widened(narrow.state_dict())
    with pytest.raises(ValueError, match="input_mean: shape .* does not grow into"):       # another STFT
        Model_Hourglass.StackedHourglass(2 * F - 1, features=12, stacks=2, depth=3).load_widened(narrow.state_dict())
    two = Model_Hourglass.StackedHourglass(F, features=12, stacks=2, depth=3, sources=("vocals", "drums"))
    with pytest.raises(ValueError, match="logits.0.weight: shape .* does not grow into"):   # other sources
        two.load_widened(narrow.state_dict())


def test_train_seed_hourglass_widen_features_grows_the_checkpoint(demo, tmp_path):
    """--widen-features: a hourglass --init grown to --features (the saved model's convolutions hold the
    checkpoint's weights where lr is 0); refused without a hourglass --init, or to fewer features."""
    torch.manual_seed(0)
    narrow = Model_Hourglass.StackedHourglass(65, features=8, stacks=1, depth=2)
    util.save_checkpoint(tmp_path / "hg.pt", narrow, util.make_stft(128, 32), 8000)
    common = ("--stacks", "1", "--depth", "2", "--curriculum-start", "0", "--init", str(tmp_path / "hg.pt"))
    train_seed.main(seed_args("hourglass", demo, tmp_path / "r", tmp_path / "cache", *common, "--features", "12",
                              "--widen-features", "--lr", "0", "--epochs", "1"))
    wide, *_ = util.load_model(tmp_path / "r" / "savedModel_hourglass_best.pt")
    assert wide.model_args["features"] == 12
    assert torch.equal(wide.logits[0].weight[:, :8], narrow.logits[0].weight)
    assert wide.logits[0].weight[:, 8:].abs().sum() == 0
    with pytest.raises(UserError, match="does not match this model's shapes"):
        train_seed.main(seed_args("hourglass", demo, tmp_path / "r2", tmp_path / "cache", *common, "--features", "4",
                                  "--widen-features"))
    with pytest.raises(UserError, match="--widen-features needs --system hourglass and a hourglass checkpoint"):
        train_seed.main(seed_args("hourglass", demo, tmp_path / "r3", tmp_path / "cache", "--widen-features"))
    with pytest.raises(UserError, match="--widen-features needs --system hourglass"):
        train_seed.main(seed_args("unet", demo, tmp_path / "r4", tmp_path / "cache", "--init",
                                  str(tmp_path / "hg.pt"), "--widen-features"))


def test_hourglass_one_training_step_l1():
    m = tiny_models()["hourglass"]
    mix, src = mags(t=20)
    assert np.isfinite(training_step(m, (mix, src[:, :1]), "l1", [0]))


def test_unet_shift_offsets_cover_every_stride_grid():
    assert Model.shift_offsets(4, 64) == [0, 17, 34, 51]
    assert Model.shift_offsets(1, 64) == [0]
    assert Model.shift_offsets(64, 64) == list(range(64))
    assert Model.shift_offsets(100, 8) == list(range(8))
    for n in (2, 3, 4, 5, 8):        # different positions on the first two stride-2 layers' grids
        offsets = Model.shift_offsets(n, 64)
        assert len({o % 4 for o in offsets}) == min(n, 4) and offsets[-1] < 64


def _shifted_and_reference(m, mix, offsets):
    """The eval-mode masks with shifts = 1 and 3, and the mean by hand of the raw masks of the
    input with s frames mirrored in front (cropped after), s in ``offsets``."""
    with torch.no_grad():
        raw = m(mix)
        m.shifts = 3
        got = m(mix)
        want = torch.stack([m._masks(torch.nn.functional.pad(mix.transpose(1, 2), (s, 0), mode="reflect")
                                     .transpose(1, 2) if s else mix)[:, :, s:] for s in offsets]).mean(0)
    return raw, got, want


def test_unet_shifts_average_the_masks_over_time_offsets():
    """shifts = n in eval mode: the mean of the raw masks of the input with s frames mirrored in
    front (cropped after), s in shift_offsets(n, 64); training mode and shifts = 1: the raw masks."""
    m = tiny_models()["unet"].eval()
    mix, _ = mags(b=1, t=50)
    raw, got, want = _shifted_and_reference(m, mix, Model.shift_offsets(3, 64))
    assert got.shape == raw.shape == (1, 1, 50, F)
    assert torch.allclose(got, want, atol=1e-6)
    assert (got - raw).abs().max() > 1e-3                   # the offsets do change the masks
    assert torch.equal(m._masks(mix), raw)
    short, _ = mags(b=1, t=5)                               # offsets longer than the input
    with torch.no_grad():
        assert m(short).shape == (1, 1, 5, F)
    m.train()
    torch.manual_seed(0)
    a = m(mix)
    torch.manual_seed(0)
    assert torch.equal(a, m._masks(mix))                    # training ignores shifts


def test_cnn_shifts_average_the_masks_over_offsets_of_its_patch_grid():
    """The CNN's patches hop by time_context // 2 = 5 frames: shifts = n in eval mode averages the
    masks of the input with s frames mirrored in front, s in shift_offsets(n, 5); still summing to one."""
    m = tiny_models()["cnn2"].eval()
    mix, _ = mags(b=1, t=37)
    raw, got, want = _shifted_and_reference(m, mix, Model.shift_offsets(3, 5))
    assert Model.shift_offsets(3, 5) == [0, 1, 2]
    assert got.shape == raw.shape == (1, 2, 37, F)
    assert torch.allclose(got, want, atol=1e-6)
    assert (got - raw).abs().max() > 1e-4
    assert torch.allclose(got.sum(1), torch.ones(1, 37, F), atol=1e-5)
    m.train()
    assert torch.equal(m(mix), m._masks(mix))                # training ignores shifts


def test_set_shifts_reaches_ensemble_members_and_is_not_saved(tmp_path):
    unet, gru = tiny_models()["unet"], tiny_models()["gru"]
    ens = Model.MaskEnsemble([unet, gru])
    assert Model.set_shifts(ens, 4) == 1 and unet.shifts == 4 and not hasattr(gru, "shifts")
    assert Model.set_shifts(gru, 4) == 0
    util.save_checkpoint(tmp_path / "u.pt", unet, util.make_stft(128, 32), 8000)
    assert util.load_model(tmp_path / "u.pt")[0].shifts == 1


def test_default_shifts_are_per_model():
    """No --shifts: the U-Net (and CNN) average over 4 offsets, the hourglass over 1 (measured:
    4 gave it 0.03 dB); an explicit number reaches every part alike."""
    models = tiny_models()
    unet, hourglass, gru = models["unet"], models["hourglass"], models["gru"]
    ens = Model.MaskEnsemble([unet, gru, hourglass])
    assert Model.set_shifts(ens, None) == 2
    assert (unet.shifts, hourglass.shifts) == (4, 1) and Model.shifts_of(ens) == [4, 1]
    assert Model.set_shifts(ens, 3) == 2 and Model.shifts_of(ens) == 3
    assert Model.shifts_of(gru) is None
    assert separate.apply_shifts(hourglass, None) == 1 and separate.apply_shifts(unet, None) == 4


def test_separate_and_evaluate_take_shifts(demo, tmp_path, capsys):
    util.save_checkpoint(tmp_path / "u.pt", tiny_models()["unet"], util.make_stft(128, 32), 8000)
    util.save_checkpoint(tmp_path / "g.pt", tiny_models()["gru"], util.make_stft(128, 32), 8000)
    song = next((demo / "Mixtures" / "Test").iterdir()) / "mixture.wav"
    vocals = {}
    for n in ("1", "4"):
        assert separate.main([str(song), "--model", str(tmp_path / "u.pt"), "-o", str(tmp_path / n), "--quiet",
                              "--shifts", n]) in (0, None)
        vocals[n], _ = sf.read(next((tmp_path / n).rglob("vocals.wav")))
    assert np.abs(vocals["1"] - vocals["4"]).max() > 1e-4
    capsys.readouterr()
    separate.main([str(song), "--model", str(tmp_path / "g.pt"), "-o", str(tmp_path / "g"), "--quiet", "--shifts", "2"])
    assert "--shifts has no effect" in capsys.readouterr().err
    out = tmp_path / "eval"
    assert evaluate_sdr.main(["--model", str(tmp_path / "u.pt"), "--data", str(demo), "--split", "test",
                              "--out", str(out), "--quiet", "--shifts", "2"]) in (0, None)
    assert json.loads((out / "summary.json").read_text())["meta"]["shifts"] == 2
    assert evaluate_sdr.main(["--model", str(tmp_path / "u.pt"), "--data", str(demo), "--split", "test",
                              "--out", str(out), "--quiet", "--force"]) in (0, None)
    meta = json.loads((out / "summary.json").read_text())["meta"]
    assert meta["systems"]["u"]["shifts"] == 4 and "default" in meta["shifts"]


def test_evaluate_takes_the_ensemble_mean(demo, tmp_path):
    util.save_checkpoint(tmp_path / "u.pt", tiny_models()["unet"], util.make_stft(128, 32), 8000)
    util.save_checkpoint(tmp_path / "g.pt", tiny_models()["gru"], util.make_stft(128, 32), 8000)
    sdr = {}
    for mean in ("geometric", "arithmetic"):
        out = tmp_path / mean
        assert evaluate_sdr.main(["--model", f"{tmp_path / 'u.pt'}+{tmp_path / 'g.pt'}", str(tmp_path / "u.pt"),
                                  "--name", "ens", "u", "--data", str(demo), "--split", "test", "--out", str(out),
                                  "--quiet", "--ensemble-mean", mean, "--oracle"]) in (0, None)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["meta"]["ensemble_mean"] == mean and summary["meta"]["systems"]["ens"]["ensemble_mean"] == mean
        assert "ensemble_mean" not in summary["meta"]["systems"]["u"]
        sdr[mean] = summary["summary"]["ens"]["vocals"]["mean_SDR"], summary["summary"]["u"]["vocals"]["mean_SDR"]
    assert sdr["geometric"][1] == sdr["arithmetic"][1]          # a single model is unchanged
    assert abs(sdr["geometric"][0] - sdr["arithmetic"][0]) > 1e-3


def test_evaluate_workers_apply_the_parents_settings(demo, tmp_path, capsys):
    """With a pool (--jobs 2) each worker loads the models itself: it must apply every option as the parent
    did with the models it kept (--jobs 1), and the notes of options that do not apply come once, from the
    parent."""
    util.save_checkpoint(tmp_path / "u.pt", tiny_models()["unet"], util.make_stft(128, 32), 8000)
    util.save_checkpoint(tmp_path / "g.pt", tiny_models()["gru"], util.make_stft(128, 32), 8000)
    runs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        capsys.readouterr()
        assert evaluate_sdr.main(["--model", f"{tmp_path / 'u.pt'}+{tmp_path / 'g.pt'}", str(tmp_path / "g.pt"),
                                  "--name", "ens", "g", "--data", str(demo), "--split", "train", "--limit", "2",
                                  "--out", str(out), "--quiet", "--jobs", jobs, "--ensemble-mean", "arithmetic",
                                  "--shifts", "2", "--semitones", "1", "--transposition-mean", "geometric"]) == 0
        err = capsys.readouterr().err
        assert err.count("--ensemble-mean has no effect") == 1 and err.count("--shifts has no effect") == 1
        runs[jobs] = json.loads((out / "summary.json").read_text())
    one, two = runs["1"], runs["2"]
    assert one["meta"]["systems"] == two["meta"]["systems"]
    assert one["meta"]["systems"]["ens"]["ensemble_mean"] == "arithmetic"
    assert one["meta"]["systems"]["ens"]["shifts"] == 2 and "shifts" not in one["meta"]["systems"]["g"]
    assert one["meta"]["systems"]["g"]["transposition_mean"] == "geometric"
    assert one["meta"]["tracks"] >= 2                    # both workers had a track
    for name in ("ens", "g"):
        for key in ("GNSDR", "GSIR", "GSAR", "median_SDR"):
            assert one["summary"][name]["vocals"][key] == pytest.approx(two["summary"][name]["vocals"][key],
                                                                        abs=1e-9), (name, key)
    # and the same run with the default options differs, so the comparison above can fail
    out = tmp_path / "defaults"
    assert evaluate_sdr.main(["--model", f"{tmp_path / 'u.pt'}+{tmp_path / 'g.pt'}", str(tmp_path / "g.pt"),
                              "--name", "ens", "g", "--data", str(demo), "--split", "train", "--limit", "2",
                              "--out", str(out), "--quiet", "--jobs", "2", "--semitones", "1"]) in (0, None)
    defaults = json.loads((out / "summary.json").read_text())["summary"]
    for name in ("ens", "g"):
        assert abs(defaults[name]["vocals"]["GNSDR"] - one["summary"][name]["vocals"]["GNSDR"]) > 1e-4


@pytest.mark.parametrize("name, sr", [("drnn", 16000), ("cnn2", 16000), ("waveunet", 8000)])
def test_separate_writes_accompaniment_as_mixture_minus_vocals(name, sr, tmp_path):
    """A model with its own accompaniment output still gets accompaniment = mixture - vocals written (what
    evaluate_sdr.py scores, and the README's promise that the two sum to the input): its own estimate drops
    the band above an 8 kHz Wave-U-Net's Nyquist and leaves a residual for the mask models."""
    model = tiny_models()[name]
    assert "accompaniment" in model.sources
    util.save_checkpoint(tmp_path / "m.pt", model, util.make_stft(128, 32), sr)
    rng = np.random.default_rng(0)
    song = rng.standard_normal((22050, 2)).astype(np.float32) * 0.1        # 0.5 s of full-band stereo noise
    sf.write(tmp_path / "song.wav", song, 44100, subtype="FLOAT")
    separate.main([str(tmp_path / "song.wav"), "--model", str(tmp_path / "m.pt"), "-o", str(tmp_path / "out"),
                   "--subtype", "float", "--semitones", "0", "--quiet"])
    vocals, _ = sf.read(tmp_path / "out" / "song" / "vocals.wav", dtype="float32")
    accompaniment, _ = sf.read(tmp_path / "out" / "song" / "accompaniment.wav", dtype="float32")
    assert np.abs(vocals).max() > 1e-3                                    # the model did take something
    assert np.abs(vocals + accompaniment - song).max() < 1e-5


@pytest.mark.parametrize("system", train_seed.SYSTEMS)
def test_every_system_takes_its_own_defaults(system):
    """`train_seed.py --system S` with nothing else passes the option checks (the U-Net's paper hop, 768 of
    1024, did not: the inverse STFT takes at most n_fft / 2)."""
    args = train_seed.parse_args(["--system", system])
    assert args.hop <= args.n_fft // 2 and args.sample_rate == train_seed.DEFAULTS[system]["sample_rate"]


def test_evaluate_scores_models_of_different_rates_at_the_highest(demo, tmp_path, capsys):
    """A model at a lower rate listed first must not band-limit the mixture every other model is given: the
    default evaluation rate is the highest of the models' rates, with a note, and a model scores the same
    beside a slower-rate model as alone."""
    gru = tiny_models()["gru"]
    util.save_checkpoint(tmp_path / "g8.pt", gru, util.make_stft(128, 32), 8000)
    util.save_checkpoint(tmp_path / "g16.pt", gru, util.make_stft(128, 64), 16000)
    common = ["--data", str(demo), "--split", "train", "--limit", "2", "--quiet", "--jobs", "1", "--oracle", "irm"]
    capsys.readouterr()
    assert evaluate_sdr.main(["--model", str(tmp_path / "g8.pt"), str(tmp_path / "g16.pt"), "--name", "g8", "g16",
                              "--out", str(tmp_path / "both"), *common]) == 0
    assert "the models run at 8000, 16000 Hz; every one is scored at 16000 Hz" in capsys.readouterr().err
    assert evaluate_sdr.main(["--model", str(tmp_path / "g16.pt"), "--name", "g16", "--out", str(tmp_path / "alone"),
                              *common]) == 0
    assert "the models run at" not in capsys.readouterr().err
    both = json.loads((tmp_path / "both" / "summary.json").read_text())
    alone = json.loads((tmp_path / "alone" / "summary.json").read_text())
    assert both["meta"]["sample_rate"] == alone["meta"]["sample_rate"] == 16000
    assert both["meta"]["oracle_stft"] == alone["meta"]["oracle_stft"]        # the 16 kHz model's STFT
    for key in ("GNSDR", "GSIR", "GSAR"):
        assert both["summary"]["g16"]["vocals"][key] == pytest.approx(alone["summary"]["g16"]["vocals"][key], abs=1e-9)
    # --sample-rate still decides, without the note
    assert evaluate_sdr.main(["--model", str(tmp_path / "g8.pt"), str(tmp_path / "g16.pt"), "--sample-rate", "8000",
                              "--out", str(tmp_path / "at8"), *common]) == 0
    assert "the models run at" not in capsys.readouterr().err
    assert json.loads((tmp_path / "at8" / "summary.json").read_text())["meta"]["sample_rate"] == 8000


# ----------------------------------------------------------------------------------------------
# Wave-U-Net
# ----------------------------------------------------------------------------------------------
def test_waveunet_context_arithmetic():
    m = tiny_models()["waveunet"].eval()
    o0, step, ctx = m._progression()
    assert step == 2 ** 3
    admissible = []
    for o in range(1, 1000):
        try:
            m.input_length(o)
            admissible.append(o)
        except ValueError:
            pass
    assert admissible == list(range(o0, 1000, step))
    for o in admissible[:6]:
        n_in = m.input_length(o)
        assert n_in == o + 2 * ctx and m.output_length(n_in) == o
        with torch.no_grad():
            assert m(torch.randn(1, 1, n_in)).shape == (1, 2, o)
        assert m.output_length(n_in + 1) is None or m.output_length(n_in + 1) != o
    for wanted in (1, 50, 100):
        v = m.valid_output_length(wanted)
        assert v >= wanted and v in admissible and v - step < max(wanted, o0)
    for avail in (2 * ctx + o0 - 1, 2 * ctx + o0, 500):
        o = m.output_for_input(avail)
        best = max((o for o in admissible if m.input_length(o) <= avail), default=None)
        assert o == best
    # the paper's configuration: 147443 input samples for 16389 output samples
    paper = Model_WaveUNet.WaveUNet()
    assert paper.input_length(16389) == 147443 and paper.output_length(147443) == 16389


def test_waveunet_difference_output_sums_to_mixture():
    m = tiny_models()["waveunet"].eval()
    o = m.valid_output_length(40)
    x = torch.randn(3, 1, m.input_length(o))
    with torch.no_grad():
        y = m(x)
    assert y.shape == (3, 2, o)
    assert torch.allclose(y.sum(1), Model_WaveUNet.centre_crop(x, o)[:, 0], atol=1e-6)
    assert Model_WaveUNet.upsample_linear(torch.tensor([[[0.0, 2.0, 4.0]]])).tolist() == [[[0, 1, 2, 3, 4]]]


def test_waveunet_sdr_loss_is_minus_the_mean_sdr_of_each_excerpt_and_source():
    rng = np.random.default_rng(1)
    target = torch.from_numpy(rng.standard_normal((3, 2, 500)).astype(np.float32)) * 0.1
    error = torch.from_numpy(rng.standard_normal((3, 2, 500)).astype(np.float32)) * 0.03
    error[2] *= 10                                         # one excerpt far worse than the others
    estimate = target + error
    fixed = lambda mixture: estimate                        # a "model" returning that estimate
    loss = train_seed.waveform_loss(fixed, (None, target), [0, 1], "sdr")
    sdr = 10 * np.log10((target.numpy() ** 2).sum(-1) / (error.numpy() ** 2).sum(-1))
    assert loss.item() == pytest.approx(-sdr.mean(), abs=1e-3)
    # every excerpt counts the same whatever its level (unlike mse, where the loud one dominates)
    scale = torch.tensor([100.0, 1.0, 0.1])[:, None, None]
    loud = lambda mixture: estimate * scale
    assert train_seed.waveform_loss(loud, (None, target * scale), [0, 1], "sdr").item() == \
        pytest.approx(loss.item(), abs=0.01)
    assert train_seed.waveform_loss(loud, (None, target * scale), [0, 1], "mse").item() > \
        100 * train_seed.waveform_loss(fixed, (None, target), [0, 1], "mse").item()
    # a silent source: finite loss, and a gradient that asks for a smaller estimate
    silent = torch.zeros(1, 1, 500)
    guess = torch.full((1, 1, 500), 0.01, requires_grad=True)
    quiet = train_seed.waveform_loss(lambda m: guess, (None, silent), [0], "sdr")
    quiet.backward()
    assert np.isfinite(quiet.item()) and (guess.grad > 0).all()


def test_sdr_loss_for_every_system_without_magnitude_terms():
    args = train_seed.parse_args(["--system", "waveunet", "--loss", "sdr", "--levels", "3"])
    assert args.loss == "sdr"
    stft = ["--n-fft", "1024", "--hop", "256"]
    for system in ("gru", "cnn", "unet", "hourglass"):       # masks applied to the mixture: resynthesised, then SDR
        assert train_seed.parse_args(["--system", system, "--loss", "sdr", *stft]).loss == "sdr"
    assert train_seed.parse_args(["--system", "drnn", "--loss", "sdr", "--gamma", "0"]).loss == "sdr"
    # terms that weigh magnitude distances have no meaning beside it: a clear error, not a silent drop
    with pytest.raises(util.UserError, match="--interference"):
        train_seed.parse_args(["--system", "cnn", "--loss", "sdr", "--interference", "0.05"])
    with pytest.raises(util.UserError, match="--gamma 0"):
        train_seed.parse_args(["--system", "drnn", "--loss", "sdr"])
    with pytest.raises(util.UserError, match="--mask-weight"):
        train_seed.parse_args(["--system", "gru", "--loss", "sdr", "--mask-weight", "magnitude"])


def test_waveunet_validation_clip_shorter_than_its_input_is_padded():
    """A validation clip shorter than the smallest input is zero-padded (MIR-1K's 3-s clips under the
    paper's 12 levels at 22.05 kHz stopped the run after its first epoch); a training excerpt is refused."""
    m = tiny_models()["waveunet"]
    need = m.input_length(m.valid_output_length(1))
    stems = torch.randn(1, 2, need - 7) * 0.1
    (mixture, target), = list(train_seed.waveform_examples(stems, m.eval()))
    assert mixture.shape[-1] == need and target.shape[-1] == m.valid_output_length(1)
    assert torch.allclose(mixture[0, 0, 3:need - 4], stems.sum(1)[0]) and mixture[..., :3].abs().max() == 0
    with pytest.raises(util.UserError, match="shorter than the Wave-U-Net's smallest input"):
        list(train_seed.waveform_examples(stems, m.train()))


def test_waveunet_one_training_step_and_time_domain_separation():
    m = tiny_models()["waveunet"]
    stems = torch.randn(2, 2, 300) * 0.1
    (mixture, target), = list(train_seed.waveform_examples(stems, m))
    o = m.output_for_input(300)
    assert mixture.shape == (2, 1, o + 2 * m.context_samples()) and target.shape == (2, 2, o)
    loss = train_seed.waveform_loss(m, (mixture, target), [0, 1], "mse")
    loss.backward()
    m.eval()
    song = np.random.default_rng(0).standard_normal((2, 1000)).astype(np.float32) * 0.1
    est = separate.separate_time_domain(m, song, block_samples=100)            # blocks of ~100
    assert est.shape == (2, 2, 1000)
    assert np.allclose(est.sum(0), song, atol=1e-5)
    # each block is the network on its output span plus the context (zeros beyond the song)
    ctx, out = m.context_samples(), m.valid_output_length(100)
    padded = torch.nn.functional.pad(torch.from_numpy(song), (ctx, ctx + 10 * out))
    with torch.no_grad():
        for i in (0, 1, 1000 // out):
            block = m(padded[:, None, i * out:(i + 1) * out + 2 * ctx]).transpose(0, 1).numpy()
            n = min(out, 1000 - i * out)
            assert np.allclose(est[..., i * out:i * out + n], block[..., :n], atol=1e-6)
    assert np.array_equal(separate.separate_array(m, util.make_stft(128, 32), song),
                          separate.separate_time_domain(m, song))


def test_waveunet_input_rms_scales_each_song_to_that_level_and_back():
    m = tiny_models()["waveunet"].eval()
    song = np.random.default_rng(1).standard_normal((1, 900)).astype(np.float32) * 0.3
    raw = separate.separate_time_domain(m, song)
    m.set_input_rms(0.05)
    est = separate.separate_time_domain(m, song)
    gain = 0.05 / np.sqrt(np.mean(song.astype(np.float64) ** 2))
    m.set_input_rms(None)
    assert np.allclose(est, separate.separate_time_domain(m, song * gain) / gain, atol=1e-5)
    assert not np.allclose(est, raw, atol=1e-3)         # the tiny network is not level invariant
    assert np.allclose(est.sum(0), song, atol=1e-5)     # the estimates still sum to the mixture
    m.set_input_rms(0.05)
    for g in (1e-3, 10.0):                              # any input level gives the same separation, scaled
        assert np.allclose(separate.separate_time_domain(m, song * g), est * g, atol=1e-5 * max(g, 1.0))
    silent = np.zeros((1, 900), np.float32)             # nothing to scale: left as it is, no 0/0
    quiet = separate.separate_time_domain(m, silent)
    assert np.isfinite(quiet).all() and np.allclose(quiet.sum(0), 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="input_rms"):
        m.set_input_rms(0.0)


def test_waveunet_input_rms_travels_in_the_checkpoint_and_export(tmp_path):
    import export_model
    m = tiny_models()["waveunet"].eval()
    stft = util.make_stft(128, 32)
    util.save_checkpoint(tmp_path / "w.pt", m, stft, 8000, epoch=1)
    assert util.load_model(tmp_path / "w.pt")[0].input_rms is None
    assert util.read_checkpoint(tmp_path / "w.pt")["features"] == {}
    assert export_model.main([str(tmp_path / "w.pt"), str(tmp_path / "ship.pt"), "--input-rms", "0.05"]) == 0
    loaded, _, _, ckpt = util.load_model(tmp_path / "ship.pt")
    assert loaded.input_rms == 0.05 and ckpt["features"] == {"input_rms": 0.05}
    util.save_checkpoint(tmp_path / "again.pt", loaded, stft, 8000)            # kept when saved again
    assert util.load_model(tmp_path / "again.pt")[0].input_rms == 0.05
    assert export_model.main([str(tmp_path / "ship.pt"), str(tmp_path / "off.pt"), "--input-rms", "0"]) == 0
    assert util.load_model(tmp_path / "off.pt")[0].input_rms is None                # 0: off
    assert util.read_checkpoint(tmp_path / "off.pt")["features"] == {}
    bad = util.read_checkpoint(tmp_path / "ship.pt")
    bad["features"] = {"input_rms": -1.0}
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(util.UserError, match="bad input features"):
        util.load_model(tmp_path / "bad.pt")
    with pytest.raises(util.UserError, match=r"must be in \[0, 1\]"):
        export_model.main([str(tmp_path / "w.pt"), str(tmp_path / "x.pt"), "--input-rms", "2"])
    ff = tiny_models()["drnn"]
    util.save_checkpoint(tmp_path / "d.pt", ff, stft, 8000)
    with pytest.raises(util.UserError, match="mask model"):
        export_model.main([str(tmp_path / "d.pt"), str(tmp_path / "y.pt"), "--input-rms", "0.05"])
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "y.pt").exists()


def test_train_seed_input_rms_sets_the_training_level_and_the_model():
    args = train_seed.parse_args(["--system", "waveunet", "--data", "x", "--levels", "3", "--features", "4",
                                  "--down-kernel", "5", "--up-kernel", "3", "--input-rms", "0.1"])
    m = train_seed.build(0, args)
    assert m.input_rms == 0.1 and util.model_features(m) == {"input_rms": 0.1}
    stems = torch.randn(8, 2, 400) * torch.tensor([0.01, 0.5, 2.0, 0.1] * 2)[:, None, None]
    torch.manual_seed(0)
    (mixture, target), = list(train_seed.waveform_examples(stems, m.train()))
    rms = mixture[:, 0].pow(2).mean(-1).sqrt()
    assert ((rms > 0.05 - 1e-6) & (rms < 0.2 + 1e-6)).all() and rms.std() > 0.005   # 0.1, +-6 dB at random
    ctx = m.context_samples()
    assert torch.allclose(target.sum(1), mixture[:, 0, ctx:mixture.shape[-1] - ctx], atol=1e-6)  # stems scaled alike
    (mixture, _), = list(train_seed.waveform_examples(stems, m.eval()))
    assert torch.allclose(mixture[:, 0].pow(2).mean(-1).sqrt(), torch.full((8,), 0.1), atol=1e-5)  # validation: 0.1
    m.set_input_rms(None)                                                   # off: the excerpt as it is
    (mixture, _), = list(train_seed.waveform_examples(stems, m.train()))
    start = (400 - mixture.shape[-1]) // 2
    assert torch.equal(mixture[:, 0], stems.sum(1)[:, start:start + mixture.shape[-1]])
    with pytest.raises(util.UserError, match="level invariant"):
        train_seed.parse_args(["--system", "drnn", "--data", "x", "--input-rms", "0.1"])
    for bad in ("0", "1.5"):                                   # the model's range, (0, 1]
        with pytest.raises(SystemExit):
            train_seed.parse_args(["--system", "waveunet", "--data", "x", "--input-rms", bad])


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["drnn", "gru", "cnn4", "cnn2", "unet", "hourglass", "waveunet"])
def test_checkpoint_roundtrip_identical_outputs(tmp_path, name):
    model = tiny_models()[name]
    for p in model.buffers():                      # non-trivial buffers (stats, BN running stats)
        if p.dtype.is_floating_point:
            p.add_(torch.rand_like(p) * 0.1)
    model.eval()
    x = torch.randn(2, 1, model.input_length(model.valid_output_length(30))) if name == "waveunet" else mags(t=25)[0]
    util.save_checkpoint(tmp_path / "m.pt", model, util.make_stft(128, 32), 8000)
    loaded, stft, sr, ckpt = util.load_model(tmp_path / "m.pt")
    assert type(loaded) is type(model) and loaded.sources == model.sources and sr == 8000
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


# ----------------------------------------------------------------------------------------------
# The training CLI on demo data, then separation and evaluation of what it wrote
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_data.make_demo_dataset(tmp_path_factory.mktemp("demo") / "demo", n_dev=3, n_test=1, seconds=3.0)


def seed_args(system, data, run, cache, *extra):
    return ["--system", system, "--data", str(data), "--run-dir", str(run), "--cache-dir", str(cache),
            "--sample-rate", "8000", "--n-fft", "128", "--hop", "32", "--epochs", "2", "--samples-per-epoch", "8",
            "--batch-size", "4", "--chunk-seconds", "0.5", "--valid-fraction", "0.34", "--valid-seconds", "1",
            "--quiet", "--threads", "1", *extra]


def test_train_seed_drnn_with_curriculum(demo, tmp_path, monkeypatch):
    seen = []
    original = train_seed.curriculum

    def spy(args):
        hook = original(args)

        def on_epoch(epoch, train_set):
            hook(epoch, train_set)
            seen.append((epoch, train_set.chunk, train_set[0].shape[-1]))
        return on_epoch
    monkeypatch.setattr(train_seed, "curriculum", spy)
    run = tmp_path / "run"
    train_seed.main(seed_args("drnn", demo, run, tmp_path / "cache", "--hidden", "16", "--layers", "2",
                              "--recurrent-layers", "2", "--curriculum-start", "0.25", "--curriculum-epochs", "2",
                              "--loss", "kl"))
    assert seen == [(1, 2000, 2000), (2, 4000, 4000)]                 # 0.25 s then 0.5 s at 8 kHz
    model, stft, sr, ckpt = util.load_model(run / "savedModel_drnn_best.pt")
    assert isinstance(model, Model_DRNN.DRNN) and ckpt["train_args"]["gamma"] == 0.05
    assert ckpt["model_args"]["hidden"] == 16 and ckpt["model_args"]["recurrent_layers"] == [2]
    assert len(json.loads((run / "history.json").read_text())["valid"]) == 2


def test_curriculum_length_is_recorded_for_resume(demo, tmp_path):
    """Without --curriculum-epochs the curriculum's length (half of --epochs) is recorded with the run, so a
    --resume with another --epochs does not reshape it halfway."""
    train_seed.main(seed_args("drnn", demo, tmp_path / "run", tmp_path / "cache", "--hidden", "16", "--layers", "2",
                              "--recurrent-layers", "2", "--curriculum-start", "0.25", "--loss", "kl"))
    ckpt = util.read_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["train_args"]["curriculum_epochs"] == 1                  # --epochs 2
    args = train_seed.parse_args(["--system", "drnn", "--resume", str(tmp_path / "run"), "--epochs", "8"])
    assert args.curriculum_epochs == 1 and args.epochs == 8


def test_train_seed_drnn_widen_context_starts_from_the_checkpoints_masks(demo, tmp_path):
    """--widen-context: a DRNN --init with a wider window; at lr 0 the saved model gives the
    checkpoint's masks; refused without a DRNN --init, or to a narrower window."""
    torch.manual_seed(0)
    narrow = Model_DRNN.DRNN(65, hidden=16, layers=2, recurrent_layers=(2,), context_frames=3)
    util.save_checkpoint(tmp_path / "drnn.pt", narrow, util.make_stft(128, 32), 8000)
    common = ("--hidden", "16", "--layers", "2", "--recurrent-layers", "2", "--curriculum-start", "0",
              "--init", str(tmp_path / "drnn.pt"))
    train_seed.main(seed_args("drnn", demo, tmp_path / "r", tmp_path / "cache", *common, "--widen-context", "5",
                              "--lr", "0", "--epochs", "1"))
    wide, *_ = util.load_model(tmp_path / "r" / "savedModel_drnn_best.pt")
    assert wide.context_frames == 5
    mix, _ = mags(t=30, f=65)
    assert torch.allclose(wide(mix), narrow.eval()(mix), atol=1e-5)
    with pytest.raises(UserError, match="cannot widen a context window of 3 frames to 1"):
        train_seed.main(seed_args("drnn", demo, tmp_path / "r2", tmp_path / "cache", *common,
                                  "--widen-context", "1"))
    with pytest.raises(UserError, match="the window must be odd"):
        train_seed.main(seed_args("drnn", demo, tmp_path / "r4", tmp_path / "cache", *common, "--widen-context", "6"))
    with pytest.raises(UserError, match="--widen-context needs --system drnn and a DRNN checkpoint"):
        train_seed.main(seed_args("drnn", demo, tmp_path / "r3", tmp_path / "cache", "--widen-context", "5"))


def test_train_seed_drnn_backward_units_continue_a_causal_drnn(demo, tmp_path):
    """--backward-units with a causal DRNN --init: at lr 0 the saved bidirectional model gives the
    checkpoint's masks; the bidirectional checkpoint continues as it is; other systems refuse it."""
    torch.manual_seed(0)
    causal = Model_DRNN.DRNN(65, hidden=16, layers=2, recurrent_layers=(2,), context_frames=3)
    util.save_checkpoint(tmp_path / "drnn.pt", causal, util.make_stft(128, 32), 8000)
    common = ("--hidden", "16", "--layers", "2", "--recurrent-layers", "2", "--curriculum-start", "0",
              "--backward-units", "6", "--lr", "0", "--epochs", "1")
    train_seed.main(seed_args("drnn", demo, tmp_path / "r", tmp_path / "cache", *common,
                              "--init", str(tmp_path / "drnn.pt")))
    both, *_ = util.load_model(tmp_path / "r" / "savedModel_drnn_best.pt")
    assert both.model_args["backward_units"] == 6 and both.output.in_features == 22
    mix, _ = mags(t=30, f=65)
    assert torch.allclose(both(mix), causal.eval()(mix), atol=1e-5)
    train_seed.main(seed_args("drnn", demo, tmp_path / "r2", tmp_path / "cache", *common,
                              "--init", str(tmp_path / "r" / "savedModel_drnn_best.pt")))
    again, *_ = util.load_model(tmp_path / "r2" / "savedModel_drnn_best.pt")
    for name, p in both.named_parameters():            # lr 0: the same weights (only the power
        assert torch.equal(dict(again.named_parameters())[name], p), name    # iteration's u, v move)
    with pytest.raises(UserError, match="--backward-units is an option of --system drnn"):
        train_seed.main(seed_args("gru", demo, tmp_path / "r3", tmp_path / "cache", "--backward-units", "6"))


def test_train_seed_gru_on_the_sdr_loss_uses_resynthesised_masks(demo, tmp_path, monkeypatch):
    calls = []
    original = training.mask_sdr_loss

    def spy(model, example, source_index, stft):
        calls.append(len(example))
        return original(model, example, source_index, stft)
    monkeypatch.setattr(training, "mask_sdr_loss", spy)
    monkeypatch.setattr(train_seed, "mask_target_loss", None)      # the GRU's usual loss must not run
    run = tmp_path / "run"
    train_seed.main(seed_args("gru", demo, run, tmp_path / "cache", "--hidden", "16", "--layers", "1",
                              "--dense", "16", "--loss", "sdr"))
    assert calls and set(calls) == {3}                     # (mix_mag, mixture STFT, stems) every step
    hist = json.loads((run / "history.json").read_text())
    assert hist["loss"] == "sdr" and all(np.isfinite(v["loss"]) for v in hist["valid"])


def test_train_seed_hourglass_then_separate_a_song(demo, tmp_path):
    run = tmp_path / "run"
    train_seed.main(seed_args("hourglass", demo, run, tmp_path / "cache", "--features", "8", "--stacks", "2",
                              "--depth", "2", "--loss", "sdr"))
    model, stft, sr, ckpt = util.load_model(run / "savedModel_hourglass_best.pt")
    assert isinstance(model, Model_Hourglass.StackedHourglass) and sr == 8000
    assert ckpt["model_args"]["features"] == 8 and ckpt["model_args"]["stacks"] == 2
    song = next((demo / "Mixtures" / "Test").iterdir()) / "mixture.wav"
    assert separate.main([str(song), "--model", str(run / "savedModel_hourglass_best.pt"), "-o", str(tmp_path / "out"),
                          "--quiet", "--shifts", "2"]) in (0, None)
    mixture, _ = sf.read(song)
    vocals, _ = sf.read(next((tmp_path / "out").rglob("vocals.wav")))
    assert vocals.shape == mixture.shape and np.abs(vocals).max() > 0


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*clipped")
def test_train_seed_waveunet_and_cnn4_then_separate_and_evaluate(demo, tmp_path, capsys):
    cache = tmp_path / "cache"
    train_seed.main(seed_args("waveunet", demo, tmp_path / "wun", cache, "--levels", "3", "--features", "4"))
    train_seed.main(seed_args("cnn", demo, tmp_path / "cnn", cache, "--filters", "6", "5", "--bottleneck", "8",
                              "--time-context", "10", "--horizontal", "4", "1"))
    wun, cnn = tmp_path / "wun" / "savedModel_waveunet_best.pt", tmp_path / "cnn" / "savedModel_cnn_best.pt"
    model, _, sr, _ = util.load_model(cnn)
    assert model.sources == Data.FOUR_STEMS
    # separate.py CLI: the time-domain branch writes every source at the input's rate and channels
    song = next((demo / "Mixtures" / "Test").iterdir()) / "mixture.wav"
    stereo = tmp_path / "song.wav"
    audio, file_sr = sf.read(song)
    sf.write(stereo, np.stack([audio, 0.5 * audio], 1), file_sr)
    separate.main([str(stereo), "--model", str(wun), "-o", str(tmp_path / "out"), "--quiet"])
    out = {p.name: sf.read(p) for p in (tmp_path / "out" / "song").iterdir()}
    assert set(out) == {"vocals.wav", "accompaniment.wav"}
    assert all(x.shape == (len(audio), 2) and r == file_sr for x, r in out.values())
    # evaluation: both models, plus per-stem rows for the 4-source CNN
    capsys.readouterr()
    evaluate_sdr.main(["--model", str(wun), str(cnn), "--name", "WUN", "CNN4", "--data", str(demo), "--jobs", "1",
                       "--cache-dir", str(cache), "--oracle", "irm", "--quiet", "--sources", "drums", "bass"])
    text = capsys.readouterr().out
    assert "WUN" in text and "CNN4" in text and text.count("\ndrums:") + text.startswith("drums:") == 1
    drums = text.split("drums:")[1].split("bass:")[0]
    assert "CNN4" in drums and "WUN" not in drums and "mixture" in drums


def test_drnn_recurrence_stays_bounded_on_long_sequences():
    torch.manual_seed(0)
    layer = Model_DRNN.BoundedReLURNN(4, 32, max_gain=0.9)
    with torch.no_grad():
        layer.weight_hh.copy_(torch.eye(32) * 3)          # unconstrained, relu(3h + a) explodes
        layer.input.bias.fill_(1.0)
    layer.train()
    for _ in range(20):                                    # power iterations converge in training
        layer.recurrent_weight()
    layer.eval()
    assert torch.linalg.matrix_norm(layer.recurrent_weight(), 2).item() == pytest.approx(0.9, rel=1e-4)
    h = layer(torch.zeros(1, 2000, 4))
    assert torch.isfinite(h).all() and h.max() <= 1.0 / (1 - 0.9) + 1e-3


def test_freq_mask_is_refused_for_the_waveform_model(demo, tmp_path):
    args = seed_args("waveunet", demo, tmp_path / "run", tmp_path / "cache", "--levels", "3", "--features", "4",
                     "--freq-mask", "2", "10")
    with pytest.raises(UserError, match="--freq-mask"):
        train_seed.main(args)
    assert not (tmp_path / "run").exists()
