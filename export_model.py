#!/usr/bin/env python3
"""Copy a trained checkpoint into a slim, shippable file (float16 weights, no optimizer state),
or export its mask network to ONNX (by the output's extension).

  python export_model.py runs/mir1k-rnn-bi-b/savedModel_RNN_best.pt models/savedModel_RNN_best.pt
  python export_model.py models/savedModel_RNN_best.pt rnn.onnx     # needs requirements-onnx.txt

The ONNX file is written only after onnxruntime's masks equal torch's within 1e-4 on a song
(--check-audio); onnx_export.py says which model classes cannot be exported and why.

The run's history.json is copied beside it as <name>_history.json (for the report's loss curves).
Refuses to overwrite an existing file unless --force.
"""
import argparse
import os
import shutil
from pathlib import Path

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
    args = p.parse_args(argv)
    if args.output.suffix.lower() == ".onnx":
        if args.output.exists() and not args.force:
            raise UserError(f"{args.output}: exists (use --force to overwrite)")
        import onnx_export
        args.output.parent.mkdir(parents=True, exist_ok=True)
        report = onnx_export.export(args.checkpoint, args.output, args.check_audio)
        print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB); onnxruntime vs torch masks: "
              f"max |difference| {report['max_abs_mask_difference']:.1e}")
        return 0
    hist = args.checkpoint.parent / "history.json"
    name = util.checkpoint_name(args.output)
    hist_out = args.output.parent / f"{name}_history.json"
    for target in (args.output, hist_out if hist.exists() else None):
        if target is not None and target.exists() and not args.force:
            raise UserError(f"{target}: exists (use --force to overwrite)")
    if args.output.resolve() == args.checkpoint.resolve():
        raise UserError(f"{args.output}: would overwrite the input checkpoint")
    util.load_model(args.checkpoint)                              # refuse a broken input before writing
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = util.temp_path(args.output.parent, ".export.", ".pt")
    try:
        util.export_checkpoint(args.checkpoint, tmp, half=not args.float32)
        util.load_model(tmp)                                      # it must rebuild from the file alone
        os.replace(tmp, args.output)
    finally:
        tmp.unlink(missing_ok=True)
    if hist.exists():
        util.atomic_write(hist_out, lambda t: shutil.copyfile(hist, t))
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    util.run_cli(main)
