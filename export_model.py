#!/usr/bin/env python3
"""Copy a trained checkpoint into a slim, shippable file (float16 weights, no optimizer state),
or export its mask network to ONNX (by the output's extension).

  python export_model.py runs/mir1k-rnn-bi-b/savedModel_RNN_best.pt models/savedModel_RNN_best.pt
  python export_model.py models/savedModel_RNN_best.pt rnn.onnx     # needs requirements-onnx.txt
  python export_model.py runs/a/savedModel_RNN_best.pt soup.pt --average runs/b/savedModel_RNN_best.pt

The ONNX file is written only after onnxruntime's masks equal torch's within 1e-4 on a song
(--check-audio); onnx_export.py says which model classes cannot be exported and why.

The run's history.json is copied beside it as <name>_history.json (for the report's loss curves).
A run that continued a shipped model (--init) gives --continues OLD_HISTORY.json: the exported
history is the old run's epochs up to its best, then this run's, and the training time to the best
checkpoint counts both. Refuses to overwrite an existing file unless --force.
"""
import argparse
import json
import os
import shutil
from pathlib import Path

import Model_WaveUNet
import util
from util import UserError


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="trained checkpoint (e.g. runs/.../savedModel_RNN_best.pt)")
    p.add_argument("output", type=Path, help="where to write the slim checkpoint")
    p.add_argument("--float32", action="store_true", help="keep float32 weights (default: float16, half the size)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--check-audio", type=Path, default=None,
                   help="for .onnx: the song on which onnxruntime's masks are checked against torch's "
                        "(default: a synthetic demo song)")
    p.add_argument("--continues", type=Path, default=None, metavar="OLD_HISTORY_JSON",
                   help="the history of the model this run continued with --init (e.g. the shipped "
                        "<name>_history.json of the earlier release): prepended to the exported history")
    p.add_argument("--average", type=Path, nargs="+", default=(), metavar="CKPT",
                   help="write the mean of the weights of the checkpoint and these (a model soup: fine-tunes of "
                        "one model with other seeds; same class and shapes); the history is the checkpoint's run's, "
                        "and their training time is added")
    p.add_argument("--input-rms", type=float, default=None, metavar="RMS",
                   help="time-domain models (Wave-U-Net): scale every song to this RMS before separating "
                        "and the estimates back (saved in the checkpoint; 0: off; default: keep the input's "
                        "setting)")
    args = p.parse_args(argv)
    if args.output.suffix.lower() == ".onnx":
        if args.average:
            raise UserError("--average writes a .pt checkpoint: export the average first, then that to ONNX")
        if args.output.exists() and not args.force:
            raise UserError(f"{args.output}: exists (use --force to overwrite)")
        import onnx_export
        args.output.parent.mkdir(parents=True, exist_ok=True)
        report = onnx_export.export(args.checkpoint, args.output, args.check_audio)
        print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB); onnxruntime vs torch masks: "
              f"max |difference| {report['max_abs_mask_difference']:.1e}")
        return 0
    hist = args.checkpoint.parent / "history.json"
    old = read_history(args.continues) if args.continues else None
    if old is not None and not hist.exists():
        raise UserError(f"--continues: {args.checkpoint.parent} has no history.json to continue")
    name = util.checkpoint_name(args.output)
    hist_out = args.output.parent / f"{name}_history.json"
    for target in (args.output, hist_out if hist.exists() else None):
        if target is not None and target.exists() and not args.force:
            raise UserError(f"{target}: exists (use --force to overwrite)")
    if args.output.resolve() in {Path(c).resolve() for c in (args.checkpoint, *args.average)}:
        raise UserError(f"{args.output}: would overwrite an input checkpoint")
    model = util.load_model(args.checkpoint)[0]                   # refuse a broken input before writing
    if args.input_rms is not None:
        if getattr(model, "domain", None) != "time":
            raise UserError(f"--input-rms: {util.class_name(model)} is a mask model (level invariant already)")
        if not 0.0 <= args.input_rms <= Model_WaveUNet.INPUT_RMS_MAX:
            raise UserError(f"--input-rms must be in [0, {Model_WaveUNet.INPUT_RMS_MAX:g}] (0: off), "
                            f"got {args.input_rms}")
    merged = None                                                 # made before anything is written
    if hist.exists() and old is not None:
        try:
            merged = continued_history(old, json.loads(hist.read_text()), str(args.continues))
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise UserError(f"--continues: {args.continues} and {hist} do not merge ({type(err).__name__}: "
                            f"{err}); nothing written") from None
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = util.temp_path(args.output.parent, ".export.", ".pt")
    try:
        util.export_checkpoint(args.checkpoint, tmp, half=not args.float32,
                               extra_seconds=old_seconds(old) if old is not None else 0.0, average=args.average,
                               features=None if args.input_rms is None else {"input_rms": args.input_rms or None})
        util.load_model(tmp)                                      # it must rebuild from the file alone
        os.replace(tmp, args.output)
    finally:
        tmp.unlink(missing_ok=True)
    if merged is not None:
        util.write_json(hist_out, merged)
    elif hist.exists():
        util.atomic_write(hist_out, lambda t: shutil.copyfile(hist, t))
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB)")
    return 0


def read_history(path: Path) -> dict:
    try:
        h = json.loads(Path(path).read_text())
        if not (h["best_epoch"] >= 1 and len(h["epoch_time"]) >= h["best_epoch"] and len(h["valid"]) >= h["best_epoch"]
                and "step" in h["valid"][h["best_epoch"] - 1]):
            raise ValueError
        return h
    except FileNotFoundError:
        raise UserError(f"{path}: not found") from None
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path}: not a training history (history.json)") from None


def old_seconds(old: dict) -> float:
    """Training time of the continued run up to its best epoch (where this run started)."""
    return float(sum(old["epoch_time"][:old["best_epoch"]]))


def continued_history(old: dict, new: dict, source: str) -> dict:
    """The old run's epochs up to its best (the weights this run started from), then the new
    run's: per-step and per-epoch lists concatenated, epochs and steps of the new run offset.
    When the old history was itself continued from a run on another loss, and the new run keeps
    the old one's loss, ``continued_from["earlier_loss"]`` carries where that other loss ended."""
    e0 = old["best_epoch"]
    s0 = old["valid"][e0 - 1]["step"]
    out = dict(new)
    for key in ("train", "epoch_time", "lr"):
        out[key] = list(old.get(key, [])[:e0]) + list(new.get(key, []))
    out["smoothed"] = list(old.get("smoothed", [])[:s0]) + list(new.get("smoothed", []))
    out["valid"] = list(old["valid"][:e0]) + [dict(v, epoch=v["epoch"] + e0, step=v["step"] + s0)
                                              for v in new["valid"]]
    out["best_epoch"] = new["best_epoch"] + e0
    out["continued_from"] = {"history": source, "epochs": e0, "steps": s0, "loss": old.get("loss", new.get("loss"))}
    earlier = earlier_loss(old)
    if earlier is not None and old.get("loss") == new.get("loss"):
        out["continued_from"]["earlier_loss"] = dict(zip(("loss", "epochs", "steps"), earlier))
    return out


def earlier_loss(history: dict) -> tuple[str, int, int] | None:
    """(loss, epochs, steps) of the start of ``history`` trained on another loss than its own
    (whose values are in other units), or None when it was all trained on one loss."""
    cont = history.get("continued_from") or {}
    if "earlier_loss" in cont:
        e = cont["earlier_loss"]
        return e["loss"], e["epochs"], e["steps"]
    if cont.get("loss", history.get("loss")) != history.get("loss"):
        return cont["loss"], cont["epochs"], cont["steps"]
    return None


def current_loss_span(history: dict) -> tuple[int, int]:
    """(epochs, steps) before the part of ``history`` trained on its own ``loss``: (0, 0) unless it
    continued a run that had another loss (see :func:`earlier_loss`)."""
    earlier = earlier_loss(history)
    return (earlier[1], earlier[2]) if earlier else (0, 0)


if __name__ == "__main__":
    util.run_cli(main)
