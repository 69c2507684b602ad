"""ONNX export (export_model.py x.pt x.onnx) and onnxruntime separation: the same audio as torch
within 1e-4; the classes that cannot be exported are refused in one line. Skipped without
onnx/onnxruntime (requirements-onnx.txt)."""
import numpy as np
import pytest
import torch

import util

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import export_model  # noqa: E402
import Model  # noqa: E402
import Model_CNN  # noqa: E402
import Model_DRNN  # noqa: E402
import Model_GRU  # noqa: E402
import Model_Hourglass  # noqa: E402
import Model_RNN  # noqa: E402
import Model_UNet  # noqa: E402
import separate  # noqa: E402
from conftest import tone  # noqa: E402

STFT = util.make_stft(256, 64)


def _models():
    torch.manual_seed(0)
    return {
        "ff": Model.FrameMaskNet(129, (32, 16), 8, dropout=0.0),
        "ff_conv": Model.FrameMaskNet(129, (32, 16), 8, dropout=0.0, conv=[4, 16, 8]),
        "rnn_bi": Model_RNN.RNNMaskNet(129, (32, 16), 8, 0.0, rnn_hidden=8, bidirectional=True),
        "rnn_ctx": Model_RNN.RNNMaskNet(129, (32, 16), 8, 0.0, rnn_hidden=8, context_frames=3),
        "rnn_uni": Model_RNN.RNNMaskNet(129, (32, 16), 8, 0.0, rnn_hidden=8, bidirectional=False),
        "rnn_conv": Model_RNN.RNNMaskNet(129, (32, 16), 8, 0.0, rnn_hidden=8, conv=[4, 16, 8]),
        "gru": Model_GRU.GRUMaskNet(129, 8, 2, 12),
        "unet": Model_UNet.UNet(129, [4, 8, 16], 5, 0.0),
        "hourglass": Model_Hourglass.StackedHourglass(129, features=8, stacks=2, depth=3),
    }


def _run(argv):
    with pytest.raises(SystemExit) as e:
        util.run_cli(export_model.main, argv)
    return e.value.code


@pytest.mark.parametrize("name", list(_models()))
def test_exported_model_separates_like_torch(tmp_path, name):
    model = _models()[name].eval()
    model.set_level_norm("frame")
    util.save_checkpoint(tmp_path / "m.pt", model, STFT, 8000)
    song = tmp_path / "song.wav"
    import soundfile as sf
    sf.write(song, tone(3.0, 8000, 196, seed=1) + tone(3.0, 8000, 55, seed=2), 8000)
    assert _run([str(tmp_path / "m.pt"), str(tmp_path / "m.onnx"), "--check-audio", str(song)]) == 0
    onnx_model, stft, sr, info = util.load_model(tmp_path / "m.onnx")
    assert sr == 8000 and stft.config() == STFT.config() and info["model_class"] == util.class_name(model)
    mix = np.random.default_rng(0).standard_normal((2, 9000)).astype(np.float32) * 0.1
    want = separate.separate_array(model, STFT, mix, chunk_frames=50)     # chunks: the state is carried
    got = separate.separate_array(onnx_model, stft, mix, chunk_frames=50)
    assert np.abs(want - got).max() < 1e-4


@pytest.mark.parametrize("model,why", [
    (lambda: Model_DRNN.DRNN(129, 16, 2, [1]), "Python loop over frames"),
    (lambda: Model_CNN.ChandnaCNN(129, ["vocals", "accompaniment"], 11, (1, 0), (5, 1), 7, 5, 9), "patching"),
])
def test_unexportable_classes_refused_in_one_line(tmp_path, capsys, model, why):
    util.save_checkpoint(tmp_path / "m.pt", model().eval(), STFT, 8000)
    assert _run([str(tmp_path / "m.pt"), str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert why in err and len(err.splitlines()) == 1 and not (tmp_path / "m.onnx").exists()


def test_separate_cli_runs_an_onnx_file(tmp_path):
    import soundfile as sf
    model = _models()["ff"].eval()
    util.save_checkpoint(tmp_path / "m.pt", model, STFT, 8000)
    sf.write(tmp_path / "song.wav", tone(2.0, 8000, 220, channels=2), 8000)
    assert _run([str(tmp_path / "m.pt"), str(tmp_path / "m.onnx"), "--check-audio", str(tmp_path / "song.wav")]) == 0
    with pytest.raises(SystemExit) as e:
        util.run_cli(lambda a: separate.main(a, None, None), [str(tmp_path / "song.wav"), "--model",
                                                              str(tmp_path / "m.onnx"), "-o", str(tmp_path / "o"),
                                                              "--quiet"])
    assert e.value.code == 0
    vocals, _ = sf.read(tmp_path / "o" / "song" / "vocals.wav")
    assert vocals.shape == (16000, 2) and np.abs(vocals).max() > 0


def test_an_onnx_file_without_or_with_odd_metadata_is_refused_in_one_line(tmp_path, capsys):
    """An .onnx that is not one of ours (no metadata) or whose STFT is out of range: one line, exit 2."""
    import onnx
    import soundfile as sf
    sf.write(tmp_path / "song.wav", tone(1.0, 8000, 220), 8000)
    model = _models()["ff"].eval()
    util.save_checkpoint(tmp_path / "m.pt", model, STFT, 8000)
    assert _run([str(tmp_path / "m.pt"), str(tmp_path / "m.onnx")]) == 0
    for name, meta in [("bare", {}), ("huge", {"stft": '{"n_fft": 2147483648, "hop": 1}'})]:
        graph = onnx.load(str(tmp_path / "m.onnx"))
        kept = {p.key: p.value for p in graph.metadata_props}
        del graph.metadata_props[:]
        for key, value in ({**kept, **meta} if meta else {}).items():
            graph.metadata_props.add(key=key, value=value)
        onnx.save(graph, str(tmp_path / f"{name}.onnx"))
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            util.run_cli(lambda a: separate.main(a, None, None), [str(tmp_path / "song.wav"), "--model",
                                                                  str(tmp_path / f"{name}.onnx"), "--quiet"])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1, err
        assert ("not an ONNX export of this project" if name == "bare" else "bad STFT settings") in err, err


def test_an_onnx_graph_that_returns_no_mask_is_refused(tmp_path, capsys):
    """Our metadata on a graph that returns 10 x the magnitudes (not a mask in [0, 1]): refused at load, in
    one line, instead of scaling the song by whatever it outputs."""
    import onnx
    from onnx import TensorProto, helper
    model = _models()["ff"].eval()
    util.save_checkpoint(tmp_path / "m.pt", model, STFT, 8000)
    assert _run([str(tmp_path / "m.pt"), str(tmp_path / "m.onnx")]) == 0
    assert util.load_model(tmp_path / "m.onnx")[0] is not None          # the real export passes the check
    ten = helper.make_tensor("ten", TensorProto.FLOAT, [], [10.0])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["mag", "ten"], ["scaled"]),
         helper.make_node("Unsqueeze", ["scaled", "axes"], ["mask"])],
        "not-a-mask", [helper.make_tensor_value_info("mag", TensorProto.FLOAT, [1, "T", 129])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, "T", 129])], [ten, axes])
    fake = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for prop in onnx.load(str(tmp_path / "m.onnx")).metadata_props:
        fake.metadata_props.add(key=prop.key, value=prop.value)
    onnx.save(fake, str(tmp_path / "fake.onnx"))
    with pytest.raises(util.UserError, match=r"does not return masks in \[0, 1\]"):
        util.load_model(tmp_path / "fake.onnx")


def test_an_ensemble_takes_onnx_members_and_a_batch(tmp_path):
    """``a.pt+b.onnx``: the same masks as the two torch models' ensemble; an ONNX model (whose graph
    takes one excerpt) runs a batch item by item and refuses a state for more than one."""
    models = _models()
    for name in ("unet", "rnn_bi"):
        util.save_checkpoint(tmp_path / f"{name}.pt", models[name].eval(), STFT, 8000)
    assert _run([str(tmp_path / "rnn_bi.pt"), str(tmp_path / "rnn_bi.onnx")]) == 0
    mixed, *_ = util.load_model(f"{tmp_path / 'unet.pt'}+{tmp_path / 'rnn_bi.onnx'}")
    torch_only, *_ = util.load_model(f"{tmp_path / 'unet.pt'}+{tmp_path / 'rnn_bi.pt'}")
    mag = torch.rand(3, 40, 129)
    with torch.no_grad():
        want, got = torch_only(mag), mixed(mag)
    assert got.shape == want.shape == (3, 1, 40, 129) and (got - want).abs().max() < 1e-4
    onnx_model, *_ = util.load_model(tmp_path / "rnn_bi.onnx")
    assert list(onnx_model.parameters()) == [] and onnx_model.eval() is onnx_model
    with pytest.raises(ValueError, match="one excerpt at a time"):
        onnx_model(mag, return_state=True)


def _trained_hourglass():
    """The tiny hourglass with batch-norm statistics that a training-mode forward would change."""
    model = _models()["hourglass"]
    model.set_level_norm("frame")
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(2, 40, 129))          # training mode: the running statistics move off 0/1
    return model.eval()


def test_runtime_auto_runs_the_hourglass_on_onnxruntime_with_the_same_masks():
    model = _trained_hourglass()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mag = torch.rand(1, 75, 129)
    with torch.no_grad():
        want = model(mag)
    assert separate.apply_runtime(model, None) == "onnxruntime"
    # the export and its check leave the weights and the batch-norm statistics as they were
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and not model.training
    session = model.__dict__["_onnx_masks"]
    calls = []

    class Spy:                                     # counts the session's calls
        def fresh(self, part):
            return session.fresh(part)

        def __call__(self, m):
            calls.append(m.shape)
            return session(m)
    model.__dict__["_onnx_masks"] = Spy()
    with torch.no_grad():
        got = model(mag)
    assert calls == [(1, 75, 129)] and (got - want).abs().max() < 1e-4
    Model.set_shifts(model, 3)                     # shift averaging wraps the session's raw masks
    with torch.no_grad():
        model(mag)
    assert len(calls) == 4
    Model.set_shifts(model, 1)
    model(mag).mean().backward()                   # eval mode with gradients: torch
    assert len(calls) == 4 and model.stem[0].weight.grad is not None
    model.train()
    with torch.no_grad():
        model(mag)                  # training mode without gradients: torch, whose batch-norm update makes it stale
    assert len(calls) == 4
    model.eval()
    with torch.no_grad():
        got = model(mag)
    assert len(calls) == 4 and "_onnx_masks" not in model.__dict__ and torch.equal(got, model._torch_masks(mag))
    assert separate.apply_runtime(model, None) == "onnxruntime"
    with torch.no_grad():
        model(mag)
        assert "_onnx_masks" in model.__dict__
        model.stem[0].bias.add_(0.5)               # the weights change (an optimizer step, a load): torch again
        got = model(mag)
        assert "_onnx_masks" not in model.__dict__
        assert torch.equal(got, model._torch_masks(mag)) and (got - want).abs().max() > 1e-3
    assert separate.apply_runtime(model, None) == "onnxruntime"
    separate.release_runtime(model)
    assert "_onnx_masks" not in model.__dict__


def test_accelerating_a_model_in_training_mode_changes_nothing_of_it():
    model = _trained_hourglass().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert separate.apply_runtime(model, None) == "onnxruntime" and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    import copy
    twin = copy.deepcopy(model).eval()             # shares the session, but its weights are its own: torch
    with torch.no_grad():
        twin(torch.rand(1, 30, 129))
    assert "_onnx_masks" not in twin.__dict__ and "_onnx_masks" in model.__dict__


def test_onnxruntime_errors_come_out_as_runtime_errors():
    model = _trained_hourglass()
    assert separate.apply_runtime(model, None) == "onnxruntime"
    with pytest.raises(RuntimeError, match="^onnxruntime: "), torch.no_grad():
        model(torch.rand(1, 30, 77))               # the wrong number of bins


def test_runtime_torch_and_models_without_a_faster_runtime_keep_torch():
    model = _trained_hourglass()
    assert separate.apply_runtime(model, "torch") == "torch" and "_onnx_masks" not in model.__dict__
    assert separate.apply_runtime(_models()["unet"].eval(), None) is None
    ensemble = Model.MaskEnsemble([_models()["unet"].eval(), model])
    assert separate.apply_runtime(ensemble, None) == "onnxruntime" and "_onnx_masks" in model.__dict__


def test_runtime_auto_falls_back_to_torch_with_a_note(monkeypatch, capsys):
    import onnx_export
    model = _trained_hourglass()
    monkeypatch.setattr(onnx_export, "TOLERANCE", -1.0)          # every check fails
    assert separate.apply_runtime(model, None) == "torch" and "_onnx_masks" not in model.__dict__
    err = capsys.readouterr().err.strip()
    assert err.startswith("note: onnxruntime's masks for Model_Hourglass.StackedHourglass differ") \
        and err.endswith("(> -1.0); running torch") and len(err.splitlines()) == 1
    monkeypatch.setattr(onnx_export, "TOLERANCE", 1e-4)
    monkeypatch.setattr(onnx_export, "max_difference", lambda a, b: float("inf"))   # what a NaN mask gives
    assert separate.apply_runtime(model, None, quiet=True) == "torch" and "_onnx_masks" not in model.__dict__
    assert onnx_export.max_difference(torch.zeros(3), torch.tensor([0.0, float("nan"), 0.0])) == float("inf")
    monkeypatch.setattr(onnx_export, "available", lambda: False)  # not installed
    assert separate.apply_runtime(model, None) == "torch"
    assert "pip install -r requirements-onnx.txt" in capsys.readouterr().err
    assert separate.apply_runtime(model, None, quiet=True) == "torch" and capsys.readouterr().err == ""


def test_separate_and_evaluate_run_and_record_the_runtime(tmp_path):
    import json

    import soundfile as sf

    import evaluate_sdr
    util.save_checkpoint(tmp_path / "hg.pt", _trained_hourglass(), STFT, 8000)
    sf.write(tmp_path / "song.wav", tone(2.0, 8000, 220, channels=2), 8000)
    for runtime in ("auto", "torch"):
        with pytest.raises(SystemExit) as e:
            util.run_cli(lambda a: separate.main(a, None, None),
                         [str(tmp_path / "song.wav"), "--model", str(tmp_path / "hg.pt"), "-o", str(tmp_path / runtime),
                          "--quiet", "--semitones", "1", "--runtime", runtime])
        assert e.value.code == 0
        with pytest.raises(SystemExit) as e:
            util.run_cli(evaluate_sdr.main, ["--model", str(tmp_path / "hg.pt"), "--limit", "1", "--quiet",
                                             "--semitones", "0", "--runtime", runtime, "--cache-dir",
                                             str(tmp_path / "cache"), "--out", str(tmp_path / f"ev_{runtime}")])
        assert e.value.code == 0
    a, _ = sf.read(tmp_path / "auto" / "song" / "vocals.wav", dtype="int16")
    b, _ = sf.read(tmp_path / "torch" / "song" / "vocals.wav", dtype="int16")
    assert a.shape == b.shape == (16000, 2) and np.abs(a).max() > 0 and np.abs(a.astype(int) - b).max() <= 1
    auto, torch_ = (json.loads((tmp_path / f"ev_{r}" / "summary.json").read_text()) for r in ("auto", "torch"))
    assert auto["meta"]["systems"]["hg"]["runtime"] == "onnxruntime"
    assert torch_["meta"]["systems"]["hg"]["runtime"] == "torch"
    assert abs(auto["summary"]["hg"]["vocals"]["GNSDR"] - torch_["summary"]["hg"]["vocals"]["GNSDR"]) < 0.01


def test_evaluation_workers_take_the_runtime_the_parent_settled(tmp_path):
    import evaluate_sdr
    util.save_checkpoint(tmp_path / "hg.pt", _trained_hourglass(), STFT, 8000)
    for runtime, attached in (("auto", True), ("torch", False)):
        settings = evaluate_sdr.EvalSettings(models=(str(tmp_path / "hg.pt"),), names=("hg",), tracks=(),
                                             sample_rate=8000, cache_dir=str(tmp_path / "cache"),
                                             oracle_stft=STFT.config(), oracles=(), runtime=runtime)
        worker = evaluate_sdr._Worker(settings)
        assert ("_onnx_masks" in worker.models[0][1].__dict__) is attached


def test_one_evaluation_job_exports_the_hourglass_once_and_separates_with_it(tmp_path, monkeypatch):
    """With one job the work stays in the parent's process, which uses the models it loaded and checked:
    the hourglass is exported once, and its masks come from that session."""
    import evaluate_sdr
    import onnx_export
    util.save_checkpoint(tmp_path / "hg.pt", _trained_hourglass(), STFT, 8000)
    exports, runs = [], []
    accelerate = onnx_export.accelerate

    class Counting:
        def __init__(self, session):
            self.session = session

        def run(self, *a):
            runs.append(1)
            return self.session.run(*a)

    def spy(part):
        exports.append(part)
        accelerate(part)
        masks = part.__dict__["_onnx_masks"]
        masks.session = Counting(masks.session)
    monkeypatch.setattr(onnx_export, "accelerate", spy)
    result = evaluate_sdr.evaluate(evaluate_sdr.parse_args(
        ["--model", str(tmp_path / "hg.pt"), "--limit", "2", "--jobs", "1", "--quiet", "--semitones", "0",
         "--cache-dir", str(tmp_path / "cache")]))
    assert len(exports) == 1 and result["meta"]["systems"]["hg"]["runtime"] == "onnxruntime"
    assert result["meta"]["tracks"] == 2 and len(runs) >= 2
