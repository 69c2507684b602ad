import pytest
import torch

import Model
import Model_RNN


def test_kl_zero_iff_equal_and_nonnegative():
    torch.manual_seed(0)
    x = torch.rand(4, 10, 33)
    assert Model.generalized_kl(x, x).abs().item() < 1e-5
    for _ in range(5):
        y = torch.rand(4, 10, 33)
        assert Model.generalized_kl(x, y).item() > 0
        assert Model.generalized_kl_reverse(x, y).item() > 0


def test_kl_hand_computed():
    # one batch, one frame, two bins: x = (1, 2), y = (2, 1), eps -> 0
    x = torch.tensor([[[1.0, 2.0]]])
    y = torch.tensor([[[2.0, 1.0]]])
    import math
    expected = (1 * math.log(1 / 2) - 1 + 2) + (2 * math.log(2 / 1) - 2 + 1)
    assert Model.generalized_kl(x, y, eps=0).item() == pytest.approx(expected, rel=1e-6)
    # averaged over batch and time: duplicating frames does not change it
    assert Model.generalized_kl(x.repeat(3, 5, 1), y.repeat(3, 5, 1), eps=0).item() == pytest.approx(expected, rel=1e-6)
    # swapped direction is D(y||x)
    rev = (2 * math.log(2) - 2 + 1) + (1 * math.log(1 / 2) - 1 + 2)
    assert Model.generalized_kl_reverse(x, y, eps=0).item() == pytest.approx(rev, rel=1e-6)


def test_frame_model_shapes_and_independence():
    torch.manual_seed(0)
    m = Model.FrameMaskNet(129, (64, 32), 16).eval()
    x = torch.rand(3, 20, 129)
    mask = m(x)
    assert mask.shape == (3, 1, 20, 129)
    assert (mask >= 0).all() and (mask <= 1).all()
    assert m.encode(x).shape == (3, 20, 16)
    # single-frame: a frame's mask does not depend on its neighbours
    y = x.clone()
    y[:, 5] = 0
    assert torch.allclose(m(y)[:, :, 6:], mask[:, :, 6:])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_rnn_shapes(bidirectional):
    torch.manual_seed(0)
    m = Model_RNN.RNNMaskNet(129, (64, 32), 16, rnn_hidden=12, bidirectional=bidirectional).eval()
    x = torch.rand(2, 30, 129)
    mask, state = m(x, return_state=True)
    assert mask.shape == (2, 1, 30, 129)
    assert state[0].shape == (2 if bidirectional else 1, 2, 12)
    assert m.context == ("window" if bidirectional else "causal")


def test_causal_rnn_chunks_with_state_equal_whole():
    torch.manual_seed(0)
    m = Model_RNN.RNNMaskNet(129, (64, 32), 16, rnn_hidden=12, bidirectional=False).eval()
    x = torch.rand(1, 50, 129)
    whole = m(x)
    state, parts = None, []
    for i in range(0, 50, 7):
        out, state = m(x[:, i:i + 7], state, return_state=True)
        parts.append(out)
    assert torch.allclose(torch.cat(parts, 2), whole, atol=1e-6)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
def test_rnn_widened_computes_the_narrow_models_masks(bidirectional, layers):
    """load_widened: more LSTM units, same masks (the new units start with zero outgoing weights),
    and the new units are live (their incoming weights are not zero, so training can use them)."""
    torch.manual_seed(0)
    narrow = Model_RNN.RNNMaskNet(65, (32, 16), 8, 0.1, 6, layers, bidirectional=bidirectional).eval()
    with torch.no_grad():
        for p in narrow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    wide = Model_RNN.RNNMaskNet(65, (32, 16), 8, 0.1, 11, layers, bidirectional=bidirectional).eval()
    wide.load_widened(narrow.state_dict())
    x = torch.rand(2, 20, 65) * 3
    assert torch.allclose(wide(x), narrow(x), atol=1e-5)
    assert wide.rnn.weight_ih_l0[6:11].abs().sum() > 0          # new input-gate units: random rows
    assert wide.fuse_layers[0].weight[:, 8 + 6:8 + 11].abs().sum() == 0
    with pytest.raises(ValueError, match="cannot widen an LSTM of 11 units to 6"):
        narrow.load_widened(wide.state_dict())


def test_rnn_widened_context_computes_the_narrow_models_masks():
    """load_widened with a wider input window (and more LSTM units at once): same masks, since
    the added frames' first-layer weights start at zero; once they move, the neighbours count."""
    torch.manual_seed(0)
    narrow = Model_RNN.RNNMaskNet(65, (32, 16), 8, 0.1, 6, context_frames=3).eval()
    with torch.no_grad():
        for p in narrow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    wide = Model_RNN.RNNMaskNet(65, (32, 16), 8, 0.1, 9, context_frames=7).eval()
    wide.load_widened(narrow.state_dict())
    x = torch.rand(2, 20, 65) * 3
    assert torch.allclose(wide(x), narrow(x), atol=1e-5)
    first = wide.encoder[0].weight
    assert first.shape == (32, 7 * 65)
    assert torch.equal(first[:, 2 * 65:5 * 65], narrow.encoder[0].weight)        # centred, in time order
    assert first[:, :2 * 65].abs().sum() == 0 and first[:, 5 * 65:].abs().sum() == 0
    y = x.clone()
    y[:, 10] *= 2                                                                # changes frame 10 only
    moved = (wide.encode(y) - wide.encode(x)).abs().amax((0, 2)) > 1e-6          # per frame of the code
    assert moved.nonzero().flatten().tolist() == [9, 10, 11]                    # 3 live frames, not 7
    with torch.no_grad():
        first[:, :65] += 0.5                                                     # frame t-3 now counts
    moved = (wide.encode(y) - wide.encode(x)).abs().amax((0, 2)) > 1e-6
    assert moved.nonzero().flatten().tolist() == [9, 10, 11, 13]
    with pytest.raises(ValueError, match="cannot widen a context window of 7 frames to 3"):
        Model_RNN.RNNMaskNet(65, (32, 16), 8, 0.1, 9, context_frames=3).load_widened(wide.state_dict())


def test_rnn_context_window_needs_an_odd_window_and_a_bidirectional_model():
    with pytest.raises(ValueError, match="must be odd"):
        Model_RNN.RNNMaskNet(65, (32, 16), 8, context_frames=4)
    with pytest.raises(ValueError, match="causal"):
        Model_RNN.RNNMaskNet(65, (32, 16), 8, bidirectional=False, context_frames=3)


NON_DEFAULT = {
    "Model.FrameMaskNet": dict(n_bins=65, hidden=[24, 12], code=6, dropout=0.3, conv=[3, 9, 4], leaky=0.05),
    # causal, so one frame (a window is reloaded in test_training.py)
    "Model_RNN.RNNMaskNet": dict(n_bins=65, hidden=[24], code=6, dropout=0.2, rnn_hidden=5, rnn_layers=2,
                                 bidirectional=False, context_frames=1, conv=[3, 9, 4], leaky=0.2),
    "Model_DRNN.DRNN": dict(n_bins=65, hidden=16, layers=2, recurrent_layers=[1], context_frames=5, dropout=0.1,
                            sources=["vocals", "accompaniment"], eps=1e-3, max_gain=0.5,
                            backward_units=3),
    "Model_GRU.GRUMaskNet": dict(n_bins=65, hidden=8, layers=2, dense=12, dropout=0.1,
                                 sources=["vocals", "accompaniment"]),
    "Model_CNN.ChandnaCNN": dict(n_bins=65, sources=["vocals", "accompaniment"], time_context=11, vertical=[1, 0],
                                 horizontal=[5, 1], n_vertical=7, n_horizontal=5, bottleneck=9, eps=1e-4,
                                 dropout=0.3, activation="elu"),
    "Model_UNet.UNet": dict(n_bins=65, channels=[4, 8], kernel=3, dropout=0.2, dropout_layers=1,
                            sources=["vocals", "accompaniment"]),
    "Model_Hourglass.StackedHourglass": dict(n_bins=65, features=8, stacks=2, depth=2,
                                             sources=["vocals", "accompaniment"]),
    "Model_WaveUNet.WaveUNet": dict(n_bins=0, levels=3, features=4, down_kernel=5, up_kernel=3,
                                    sources=["vocals", "drums", "bass", "other"]),
}


def test_every_registered_model_records_and_reloads_non_default_arguments(tmp_path):
    """capture_init: every constructor argument (dropout, eps, max_gain, ...) is saved and comes
    back, so a reloaded model computes exactly what the saved one did."""
    import util
    assert set(NON_DEFAULT) == set(util.MODEL_CLASSES)
    for name, kwargs in NON_DEFAULT.items():
        torch.manual_seed(0)
        model = util.model_class(name)(**kwargs).eval()
        assert model.model_args == kwargs, name
        assert list(model.sources) == kwargs.get("sources", list(type(model).sources))
        if hasattr(model, "input_mean"):
            model.input_mean.uniform_(-1, 1)
            model.set_level_norm("frame")
        path = tmp_path / f"{name}.pt"
        util.save_checkpoint(path, model, util.make_stft(128, 32), 8000)
        again, _, _, _ = util.load_model(path)
        x = torch.rand(1, 1, model.input_length(model.valid_output_length(3000))) if name.endswith("WaveUNet") \
            else torch.rand(1, 40, 65)
        with torch.no_grad():
            assert torch.equal(model(x), again(x)), name
        assert getattr(again, "level_norm", None) == getattr(model, "level_norm", None)


def test_conv_variant_shapes_few_weights_and_reload(tmp_path):
    """The assignment's optional variant: the bins <-> hidden[0] layers as a 1-D convolution over
    frequency and its transpose; every bin comes back, and a checkpoint rebuilds it."""
    import util
    torch.manual_seed(0)
    dense = Model.FrameMaskNet(513, (1024, 512), 256)
    conv = Model.FrameMaskNet(513, (1024, 512), 256, conv=[16, 32, 8]).eval()
    assert Model.count_parameters(conv) < 0.6 * Model.count_parameters(dense)
    x = torch.rand(2, 5, 513)
    assert conv(x).shape == (2, 1, 5, 513) and ((conv(x) >= 0) & (conv(x) <= 1)).all()
    util.save_checkpoint(tmp_path / "c.pt", conv, util.make_stft(1024, 256), 16000)
    again, *_ = util.load_model(tmp_path / "c.pt")
    assert torch.equal(again(x), conv(x))
    with pytest.raises(ValueError):
        Model.FrameMaskNet(16, (8,), 4, conv=[2, 32, 4])
