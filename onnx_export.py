"""ONNX export of the mask networks, and an onnxruntime model that the streaming engine runs.

``export_model.py CKPT out.onnx`` calls :func:`export`; ``separate.py song.wav --model x.onnx``
(and ``util.load_model``) call :func:`load`. Needs ``pip install -r requirements-onnx.txt``
(onnx, onnxruntime: about 36 MB of wheels, so they are optional).

What is exported: the mask network only, magnitudes ``mag`` (1, frames, bins) -> masks ``mask``
(1, sources, frames, bins), any number of frames; the STFT, the streaming and the full-band
mapping stay in separate.py, as for torch models. A causal recurrent model (unidirectional RNN,
GRU) gets its state as inputs and outputs (``h0``/``c0`` -> ``h1``/``c1``), so the engine
carries it from chunk to chunk through the graph. The checkpoint's model class, constructor
arguments, STFT settings, sample rate, sources, context and input normalisation travel as
metadata. Classes that cannot be exported, and why:

* ``Model_DRNN.DRNN``: its bounded recurrent layer is a Python loop over frames, which tracing
  unrolls to one fixed length;
* ``Model_WaveUNet.WaveUNet``: a time-domain model; the engine's ONNX path runs mask models;
* ``Model_CNN.ChandnaCNN``: its patching (``unfold`` over a variable number of frames and a
  Python loop over patches) has no variable-length form in the exporter.

The feedforward, RNN (bi- and unidirectional; either with the convolutional variant's layers),
GRU, U-Net and stacked hourglass export (onnxruntime runs the hourglass about 4x faster than torch
on one CPU thread: a ``--teacher`` can be an export, and so can an ensemble's member); :func:`export` checks every
export against torch on three frame counts (not only the traced one) and refuses a mismatch.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

import util
from util import UserError

NOT_EXPORTABLE = {
    "Model_DRNN.DRNN": "its bounded recurrent layer is a Python loop over frames (tracing fixes the length)",
    "Model_CNN.ChandnaCNN": "its patching (unfold over a variable number of frames, a Python loop over patches "
                            "for the overlap-add) has no variable-length form in the ONNX exporter",
    "Model_WaveUNet.WaveUNet": "a time-domain model; the ONNX path of separate.py runs mask models",
}
TOLERANCE = 1e-4


def _first_line(err: Exception) -> str:
    """An exception's first line (at most 200 characters), or its type's name if it has no message."""
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def _trace(net, args, target, inputs, outputs) -> None:
    """Export ``net`` traced on ``args`` to ``target`` (a path or a file object), any number of frames: the
    exporter settings of both :func:`export` and :func:`accelerate`. Its warnings are silenced."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, args, target, dynamo=False, input_names=inputs, output_names=outputs,
                          dynamic_axes={"mag": {1: "frames"}, "mask": {2: "frames"}}, opset_version=17)


def _session(source):
    """An onnxruntime CPU session of ``source`` (a path or the graph's bytes) on as many threads as torch has
    (``--threads``)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _require():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise UserError("ONNX needs onnx and onnxruntime: pip install -r requirements-onnx.txt") from None


class _Causal(torch.nn.Module):
    """A causal recurrent mask model with its state as explicit inputs and outputs."""

    def __init__(self, model, lstm: bool):
        super().__init__()
        self.model, self.lstm = model, lstm

    def forward(self, mag, h0, c0=None):
        state = (h0, c0) if self.lstm else h0
        mask, state = self.model(mag, state, return_state=True)
        return (mask, *state) if self.lstm else (mask, state)


def _state_shape(model):
    """(layers, 1, hidden) of the recurrent state, and whether it is an LSTM's (h, c)."""
    rnn = getattr(model, "rnn", None) or getattr(model, "gru", None)
    return (rnn.num_layers, 1, rnn.hidden_size), isinstance(rnn, torch.nn.LSTM)


def export(ckpt_path, out_path, check_audio=None) -> dict:
    """Export the checkpoint's mask network to ``out_path`` (.onnx), after checking that
    onnxruntime's masks equal torch's within :data:`TOLERANCE` on an excerpt of ``check_audio``
    (default: a synthetic demo song) and on other frame counts. Returns a report dict."""
    _require()
    import onnx
    import onnxruntime as ort

    model, stft, sample_rate, ckpt = util.load_model(ckpt_path)
    name = ckpt["model_class"]
    if name in NOT_EXPORTABLE:
        raise UserError(f"{ckpt_path}: {name} cannot be exported to ONNX: {NOT_EXPORTABLE[name]}")
    causal = getattr(model, "context", "frame") == "causal"
    n_bins = stft.n_bins
    example = torch.rand(1, 64, n_bins)
    if causal:
        shape, lstm = _state_shape(model)
        net = _Causal(model, lstm).eval()
        zeros = torch.zeros(shape)
        args = (example, zeros, zeros) if lstm else (example, zeros)
        inputs = ["mag", "h0", "c0"] if lstm else ["mag", "h0"]
        outputs = ["mask", "h1", "c1"] if lstm else ["mask", "h1"]
    else:
        net, args, inputs, outputs = model, (example,), ["mag"], ["mask"]
    out_path = Path(out_path)
    tmp = util.temp_path(out_path.parent, f".{out_path.name}.", ".onnx")
    try:
        try:
            _trace(net, args, str(tmp), inputs, outputs)
        except Exception as err:
            raise UserError(f"{ckpt_path}: the ONNX exporter failed on {name} ({_first_line(err)})") from None
        proto = onnx.load(str(tmp))
        meta = {"model_class": name, "model_args": json.dumps(ckpt["model_args"]), "stft": json.dumps(stft.config()),
                "sample_rate": str(sample_rate), "sources": json.dumps(list(model.sources)),
                "context": getattr(model, "context", "frame"),
                "level_norm": getattr(model, "level_norm", "none"), "exported_from": str(ckpt_path)}
        for k, v in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(proto, str(tmp))
        exported = OnnxMaskModel(ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"]))
        worst = 0.0
        for mags in _check_inputs(check_audio, stft, sample_rate):
            with torch.no_grad():
                worst = max(worst, max_difference(model(mags), exported(mags)))
        if not worst <= TOLERANCE:
            raise UserError(f"{ckpt_path}: onnxruntime's masks differ from torch's by {worst:.2e} "
                            f"(> {TOLERANCE}); not written")
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return {"max_abs_mask_difference": worst, "model_class": name, "causal": causal}


def _check_inputs(check_audio, stft, sample_rate):
    """Magnitudes (1, T, F) of an excerpt (10 s) and two shorter cuts of it (other frame counts)."""
    if check_audio is not None:
        audio, _ = util.load_audio(check_audio, sample_rate, mono=True)
    else:
        import demo_data
        root = demo_data.make_demo_dataset(demo_data.DEMO_ROOT)
        song = sorted((root / "Mixtures" / "Test").iterdir())[0] / "mixture.wav"
        audio, _ = util.load_audio(song, sample_rate, mono=True)
    x = torch.from_numpy(audio[0, :10 * sample_rate])
    mags = stft.stft(x).abs().T[None]                              # (1, T, F)
    return [mags, mags[:, :37], mags[:, 5:5 + 211]]


class OnnxMaskModel(torch.nn.Module):
    """An exported mask network run by onnxruntime, with the torch models' interface that the
    streaming engine uses: ``sources``, ``context``, ``n_bins``, ``model(mag, state,
    return_state)`` on torch tensors. A module without weights, so it can be an ensemble's member
    (``a.pt+b.onnx``) or a ``--teacher``. The graph takes one excerpt: a batch (B > 1, no state)
    runs item by item."""

    domain = "spectrogram"

    def __init__(self, session):
        super().__init__()
        self.session = session
        meta = session.get_modelmeta().custom_metadata_map
        self.meta = meta
        self.sources = tuple(json.loads(meta["sources"]))
        self.context = meta["context"]
        self.n_bins = int(json.loads(meta["stft"])["n_fft"]) // 2 + 1
        self.model_class = meta["model_class"]
        self._inputs = [i.name for i in session.get_inputs()]
        self._state_shapes = {i.name: i.shape for i in session.get_inputs() if i.name != "mag"}

    def forward(self, mag: torch.Tensor, state=None, return_state: bool = False):
        if mag.shape[0] != 1:
            if state is not None or return_state:
                raise ValueError("an ONNX model carries the state of one excerpt at a time")
            return torch.cat([self(m.unsqueeze(0)) for m in mag])
        feeds = {"mag": mag.detach().cpu().numpy().astype(np.float32)}
        if self.context == "causal":
            if state is None:
                state = tuple(np.zeros(self._state_shapes[k], np.float32) for k in self._inputs[1:])
            feeds.update({k: np.asarray(v, np.float32) for k, v in zip(self._inputs[1:], state)})
        out = self.session.run(None, feeds)
        mask = torch.from_numpy(out[0]).to(mag.device)
        return (mask, tuple(out[1:])) if return_state else mask


def available() -> bool:
    """Whether onnx and onnxruntime are installed (what :func:`accelerate` needs)."""
    import importlib.util
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


class _RawMasks(torch.nn.Module):
    """A part's own masks (``_torch_masks``: the network without shift averaging), as a graph to export."""

    def __init__(self, part):
        super().__init__()
        self.part = part

    def forward(self, mag):
        return self.part._torch_masks(mag)


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b|, infinite if either holds a NaN (so that no tolerance passes it)."""
    d = float((a - b).abs().max())
    return d if d == d else float("inf")


def weights_state(part) -> tuple:
    """What a part's masks depend on besides its input: the version counters of its weights and buffers (every
    in-place change, an optimizer step, a ``load_state_dict``, a batch-norm update, bumps them) and its level
    normalisation. A session built at one state is stale at another."""
    return (getattr(part, "level_norm", None),
            tuple(t._version for t in (*part.parameters(), *part.buffers())))


class _SessionMasks:
    """An onnxruntime session of a part's raw masks, called like ``part._torch_masks``: (B, T, F) -> (B, S, T, F)
    on torch tensors; a batch runs item by item (the graph takes one excerpt). ``state`` is the part's
    :func:`weights_state` when the session was built. onnxruntime's own errors come out as RuntimeError (what
    separate.py reports and skips a song for, as torch's); a deep copy shares the session (the copy's weights
    have their own state, so it runs torch)."""

    def __init__(self, session, state: tuple):
        self.session, self.state = session, state

    def fresh(self, part) -> bool:
        return weights_state(part) == self.state

    def __deepcopy__(self, memo):
        return self

    def __call__(self, mag: torch.Tensor) -> torch.Tensor:
        try:
            outs = [self.session.run(None, {"mag": m[None].detach().cpu().numpy().astype(np.float32)})[0]
                    for m in mag]
        except Exception as err:
            raise RuntimeError(f"onnxruntime: {str(err).strip() or type(err).__name__}") from None
        return torch.from_numpy(np.concatenate(outs)).to(mag.device)


def accelerate(part) -> None:
    """Run ``part``'s raw masks (its ``_torch_masks``) through onnxruntime from now on, in eval mode without
    gradients and while its weights stay as they are (training, gradients, and any change of the weights after
    this call run torch; see the part's ``_masks``): the part is exported in memory,
    with its current weights, to a session on as many threads as torch has (set ``--threads`` first), after
    checking that its masks equal torch's within :data:`TOLERANCE` on two frame counts; otherwise UserError and
    the part is left as it was. ``separate.apply_runtime`` calls it for the parts whose class names onnxruntime
    as its faster runtime (the stacked hourglass: its masks 2.2x faster on one thread, a separation 1.5x
    before its blocks went in place)."""
    _require()
    import io

    part.__dict__.pop("_onnx_masks", None)
    was_training = part.training
    net, buf = _RawMasks(part).eval(), io.BytesIO()    # eval before export: the exporter restores the mode it found
    try:
        with torch.no_grad():
            _trace(net, (torch.rand(1, 64, part.n_bins),), buf, ["mag"], ["mask"])
        masks = _SessionMasks(_session(buf.getvalue()), weights_state(part))
        gen = torch.Generator().manual_seed(0)
        worst = 0.0
        for frames in (37, 80):
            mag = torch.rand(1, frames, part.n_bins, generator=gen) * 0.1
            with torch.no_grad():
                worst = max(worst, max_difference(part._torch_masks(mag), masks(mag)))
    except Exception as err:
        raise UserError(f"onnxruntime could not run {util.class_name(part)} ({_first_line(err)})") from None
    finally:
        part.train(was_training)
    if not worst <= TOLERANCE:
        raise UserError(f"onnxruntime's masks for {util.class_name(part)} differ from torch's by {worst:.2e} "
                        f"(> {TOLERANCE})")
    part.__dict__["_onnx_masks"] = masks       # a plain attribute: not a submodule, never in a state_dict


def _check_masks(model, path, frames: int = 24):
    """One run on random magnitudes: the graph must return one mask in [0, 1] per source, frame and bin, as
    every export of this project does; a graph that copies our metadata but returns something else (say,
    the magnitudes) would otherwise scale the song by whatever it outputs."""
    mag = torch.rand(1, frames, model.n_bins, generator=torch.Generator().manual_seed(0))
    try:
        mask = model(mag)
        ok = (tuple(mask.shape) == (1, len(model.sources), frames, model.n_bins) and bool(torch.isfinite(mask).all())
              and float(mask.min()) >= -1e-4 and float(mask.max()) <= 1 + 1e-4)
    except Exception:                 # onnxruntime's errors: wrong inputs, shapes, types
        ok = False
    if not ok:
        raise UserError(f"{path}: its graph does not return masks in [0, 1] of shape (1, {len(model.sources)}, "
                        f"frames, {model.n_bins}): not an export of this project")


def load(path, device="cpu"):
    """(model, stft, sample_rate, info) for an exported .onnx file, like util.load_model."""
    _require()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such ONNX model")
    try:
        session = _session(str(path))
    except Exception as err:
        raise UserError(f"{path}: not a readable ONNX model ({type(err).__name__})") from None
    try:                                  # the metadata our exports carry, read once
        model = OnnxMaskModel(session)
        stft_config, rate = json.loads(model.meta["stft"]), int(model.meta["sample_rate"])
    except (KeyError, ValueError, TypeError):
        raise UserError(f"{path}: not an ONNX export of this project (no valid STFT, sample-rate and "
                        "sources metadata)") from None
    stft, rate = util.checked_front_end(stft_config, rate, path)
    _check_masks(model, path)
    return model, stft, rate, {"model_class": model.model_class, "onnx": str(path), "stft": stft.config(),
                               "sample_rate": rate}
