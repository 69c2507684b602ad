#!/usr/bin/env python3
"""Build report/report.pdf from the committed evaluation outputs. Every table and figure is computed from
them; numbers quoted in the prose come from the training notebook (report/history.md).

  python report/build_report.py                         # -> runs/report/report.pdf (untracked)
  python report/build_report.py -o report/report.pdf    # the committed report (figures in report/build/)

The build is deterministic (fixed creation date, core fonts): from the same inputs it writes the
same bytes. The spectrogram figure needs the evaluated audio, so a machine without it builds a
different PDF: hence the untracked default. Every ``results/*/summary.json``
gets a table (the known sets first, with their captions).

Inputs: ``results/<set>/summary.json`` and ``tracks.csv`` written by ``evaluate_sdr.py``, the
training histories ``models/*_history.json`` and the shipped checkpoints. The spectrogram figure
needs the evaluated audio (e.g. ../shared/data); without it the figure is left out with a note.
Every table is rendered by :func:`table_rows` from the JSON, and ``tests/test_report.py`` checks
that the PDF's tables equal the JSON's numbers.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import evaluate_sdr  # noqa: E402
import export_model  # noqa: E402
import util  # noqa: E402

RESULTS = ROOT / "results"
MODELS = ROOT / "models"

# result folders, in report order, with a caption each
SETS = [
    ("mir1k_test_public", "MIR-1K, public test singers (stool, titon, tammy): the shipped feedforward and "
                          "RNN models and the seed systems, all trained on MIR-1K's training singers"),
    ("mir1k_test_public_p1.5", "The same clips and systems with every mask raised to the power 1.5 "
                               "(--mask-power 1.5; the Wave-U-Net has no mask)"),
    ("rnn_variants", "Recurrent-model variants on the same MIR-1K test clips (bidirectional vs unidirectional, "
                     "constant vs decayed learning rate, one vs two LSTM layers)"),
    ("music_excerpts", "Professionally produced excerpts (6 tracks, 44.1 kHz, evaluated at the models' 16 kHz)"),
]
COLUMNS = list(evaluate_sdr.COLUMNS)


def load_set(name):
    folder = RESULTS / name
    if not (folder / "summary.json").exists():
        return None
    summary = json.loads((folder / "summary.json").read_text())
    with open(folder / "tracks.csv") as fh:
        rows = list(csv.DictReader(fh))
    return summary, rows


def table_rows(summary: dict, source: str = "vocals") -> list[list[str]]:
    """The rows of a results table, as strings (2 decimals), from a summary.json dict: the same
    cells evaluate_sdr.py prints (:func:`evaluate_sdr.row_cells`)."""
    systems = summary["meta"]["systems"]
    return [evaluate_sdr.row_cells(system, s, systems.get(system, {}), source)
            for system, s in summary["summary"].items() if source in s]


def per_track_rows(rows, source="vocals"):
    """Per-track SDR table: one row per track, one column per system."""
    systems = list(dict.fromkeys(r["system"] for r in rows))
    tracks = list(dict.fromkeys(r["track"] for r in rows))
    val = {(r["track"], r["system"]): float(r["sdr"]) for r in rows if r["source"] == source}
    return ["track", *systems], [[t, *[f"{val[(t, s)]:.2f}" for s in systems]] for t in tracks]


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------
def plot_losses(out: Path) -> Path | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hists = sorted(MODELS.glob("*_history.json"))
    if not hists:
        return None
    cols = min(4, len(hists))
    rows = -(-len(hists) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(hists):]:
        ax.axis("off")
    for ax, path in zip(axes.flat, hists):
        h = json.loads(path.read_text())
        e0, s0 = export_model.current_loss_span(h)      # a run continued on another loss: its part only
        ax.plot(range(s0, len(h["smoothed"])), h["smoothed"][s0:], lw=1, label="training, smoothed (eta=0.99)")
        valid = h["valid"][e0:]
        ax.plot([v["step"] for v in valid], [v["loss"] for v in valid], "o-", ms=3, label="validation")
        if h.get("best_epoch"):
            best = h["valid"][h["best_epoch"] - 1]
            ax.axvline(best["step"], color="gray", ls=":", label=f"best (epoch {h['best_epoch']})")
        title = path.stem.replace("_history", "")
        if s0:
            title += f" (steps 0-{s0} on {export_model.earlier_loss(h)[0]}, not shown)"
        ax.set_title(title, fontsize=9 if s0 else None)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(f"loss ({h.get('loss', 'kl')})")
        ax.set_yscale(util.loss_axis_scale(h["smoothed"][s0:] + [v["loss"] for v in valid]))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "losses.png"
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


# history file stem (models/<stem>_history.json) -> the row name of that system in the results tables
SYSTEM_NAMES = {"feedforward": "feedforward", "feedforward_conv": "feedforward-conv", "RNN": "RNN", "drnn": "DRNN",
                "gru": "GRU-IRM", "cnn": "CNN", "unet": "U-Net", "hourglass": "Hourglass",
                "waveunet": "Wave-U-Net"}


def histories() -> dict:
    """{system row name: history dict} of the shipped models, in SYSTEM_NAMES order."""
    out = {}
    for stem, name in SYSTEM_NAMES.items():
        path = MODELS / f"{stem}_history.json"
        if path.exists():
            out[name] = json.loads(path.read_text())
    return out


def training_rows(hists: dict, summary: dict | None) -> list[list[str]]:
    """Per shipped system: optimiser steps, training minutes (wall clock; to the best epoch / in all), best epoch
    of epochs run, and its test GNSDR/GSIR/GSAR from ``summary`` (a summary.json dict)."""
    rows = []
    for name, h in hists.items():
        times = h.get("epoch_time", [])
        best = h.get("best_epoch") or 0
        r = (summary or {}).get("summary", {}).get(name, {}).get("vocals")
        rows.append([name, f"{len(h.get('smoothed', [])):,}", f"{sum(times[:best]) / 60:.0f}",
                     f"{sum(times) / 60:.0f}", f"{best} of {len(times)}",
                     *([f"{r['GNSDR']:.2f}", f"{r['GSIR']:.2f}", f"{r['GSAR']:.2f}"] if r else ["-"] * 3)])
    return rows


def plot_learning_curves(out: Path, hists: dict) -> Path | None:
    """Validation loss and validation GNSDR against training minutes (wall clock), every shipped system
    and every stage in one figure. The losses differ per system and may be negative (minus the SDR), so
    each stretch of epochs on one loss is shown as its relative improvement (L_1 - L) / |L_1| since its
    first epoch; a stretch on an earlier loss (before a run continued on another) is dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not hists:
        return None
    fig, (ax_loss, ax_sdr) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (name, h) in enumerate(hists.items()):
        color = f"C{i % 10}"
        minutes = np.cumsum(h.get("epoch_time", [])) / 60
        valid = h["valid"][:len(minutes)]
        e0, _ = export_model.current_loss_span(h)
        loss = np.array([v["loss"] for v in valid], dtype=float)
        for a, b, style in ((0, e0, "--"), (e0, len(loss), "-")):
            if b - a and loss[a] != 0:
                rel = (loss[a] - loss[a:b]) / abs(loss[a])
                ax_loss.plot(minutes[a:b], rel, style, marker="o", ms=2, lw=1, color=color,
                             label=name if style == "-" else None)
        sdr = [(m, v["gnsdr"]) for m, v in zip(minutes, valid) if "gnsdr" in v]
        if sdr:
            ax_sdr.plot(*zip(*sdr), "o-", ms=2, color=color, label=name)
    for ax in (ax_loss, ax_sdr):
        ax.set_xlabel("training minutes (wall clock)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    ax_loss.set_ylabel("validation loss improvement, (L_1 - L) / |L_1|")
    ax_sdr.set_ylabel("validation GNSDR (dB)")
    fig.tight_layout()
    path = out / "learning_curves.png"
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def plot_spectrograms(out: Path, summary: dict, rows, system: str):
    """Mixture, true and estimated vocals for the best and worst clip of ``system`` by NSDR."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    import Data
    import separate

    meta = summary["meta"]
    info = meta["systems"].get(system)
    data = ROOT / meta["data"]                      # relative paths are the repository's (evaluate_sdr.py ran there)
    if info is None or not data.exists() or not (ROOT / info["checkpoint"]).exists():
        return None, None
    mix = {r["track"]: float(r["sdr"]) for r in rows if r["system"] == "mixture" and r["source"] == "vocals"}
    nsdr = {r["track"]: float(r["sdr"]) - mix[r["track"]] for r in rows
            if r["system"] == system and r["source"] == "vocals"}
    best, worst = max(nsdr, key=nsdr.get), min(nsdr, key=nsdr.get)
    tracks = {t.name: t for t in Data.find_tracks(data, meta["split"])}
    model, stft, sr, _ = util.load_model(ROOT / info["checkpoint"])
    cache = Data.AudioCache(sr)
    fig, axes = plt.subplots(2, 3, figsize=(12, 6), sharey=True)
    for row, name in enumerate((best, worst)):
        t = tracks[name]
        voc, acc = cache.source(t, "vocals"), cache.source(t, "accompaniment")
        mixture = (voc + acc)[None]
        est = separate.separate_array(model, stft, mixture)[list(model.sources).index("vocals"), 0]
        for col, (title, x) in enumerate((("mixture", mixture[0]), ("true vocals", voc), (f"{system} vocals", est))):
            mag = stft.stft(torch.from_numpy(np.ascontiguousarray(x))).abs().numpy()
            ax = axes[row, col]
            ax.imshow(20 * np.log10(mag + 1e-3), origin="lower", aspect="auto", vmin=-40, vmax=40, cmap="magma",
                      extent=[0, len(x) / sr, 0, sr / 2000])
            ax.set_title(f"{name}: {title}" + (f" (NSDR {nsdr[name]:.2f} dB)" if col == 2 else ""), fontsize=8)
            ax.set_xlabel("time (s)")
            if col == 0:
                ax.set_ylabel("frequency (kHz)")
    fig.tight_layout()
    path = out / "spectrograms.jpg"                 # JPEG keeps the PDF small; spectrograms are noisy images
    fig.savefig(path, dpi=90, pil_kwargs={"quality": 80})
    plt.close(fig)
    return path, (best, nsdr[best], worst, nsdr[worst])


# ----------------------------------------------------------------------------------------------
# PDF
# ----------------------------------------------------------------------------------------------
class Report:
    def __init__(self):
        from fpdf import FPDF

        import datetime

        self.pdf = FPDF(format="A4")
        self.pdf.set_compression(False)       # keeps the text searchable for tests/test_report.py
        # a fixed creation date and core fonts: the same JSON gives the same bytes, so rebuilding
        # the committed report leaves git status clean
        self.pdf.set_creation_date(datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
        self.pdf.set_auto_page_break(True, margin=15)
        self.pdf.add_page()

    def h1(self, text):
        self.pdf.set_font("Helvetica", "B", 16)
        self.pdf.multi_cell(0, 9, text, new_x="LMARGIN", new_y="NEXT")

    def h2(self, text):
        self.pdf.ln(2)
        self.pdf.set_font("Helvetica", "B", 12)
        self.pdf.multi_cell(0, 7, text, new_x="LMARGIN", new_y="NEXT")

    def p(self, text, size=9.5):
        self.pdf.set_font("Helvetica", "", size)
        self.pdf.multi_cell(0, 4.8, text, new_x="LMARGIN", new_y="NEXT")
        self.pdf.ln(1)

    def table(self, header, rows, widths=None, size=7.5):
        self.pdf.set_font("Helvetica", "", size)
        with self.pdf.table(col_widths=widths, text_align="RIGHT", line_height=4.2,
                            first_row_as_headings=True) as t:
            r = t.row()
            for h in header:
                r.cell(h)
            for row in rows:
                r = t.row()
                for c in row:
                    r.cell(c)
        self.pdf.ln(2)

    def image(self, path, w=180):
        self.pdf.image(str(path), w=w)
        self.pdf.ln(2)

    def save(self, path):
        util.atomic_write(path, lambda tmp: self.pdf.output(tmp))


def fmt(x, nd=2):
    return f"{x:.{nd}f}"


def build(out_pdf: Path):
    fig_dir = out_pdf.parent / "build"
    fig_dir.mkdir(parents=True, exist_ok=True)
    captions = dict(SETS)
    for folder in sorted(RESULTS.glob("*/summary.json")):        # every results folder, known ones first
        captions.setdefault(folder.parent.name, f"results/{folder.parent.name} (evaluate_sdr.py output)")
    sets = {name: load_set(name) for name in captions}
    if not any(sets.values()):
        raise util.UserError(f"{RESULTS}: no evaluation results (run evaluate_sdr.py --out results/<set>)")
    rep = Report()
    rep.h1("Singing-voice separation with neural networks: a frame model and a recurrent model")
    rep.p("ECE 277/477 HW5, built as an open toolkit. This report is generated by report/build_report.py from "
          "the evaluation outputs in results/ and the training histories in models/; every table and figure in "
          "it is computed from those files (numbers quoted in the prose come from the training notebook, "
          "report/history.md).")

    rep.h2("1. Method")
    rep.p("The mixture is transformed with an STFT (periodic Hann window, centred frames). A network predicts a "
          "magnitude mask m_t in [0,1] for every frame of the mixture's magnitude spectrum s_t; the vocal "
          "estimate is v_t = m_t * s_t, resynthesised with the mixture's phase by inverse STFT and overlap-add. "
          "The accompaniment is mixture - vocals. Inputs are log(1+|X|/mean_f|X|): each frame's magnitudes "
          "divided by their mean over bins (so the masks do not depend on the song's level), then normalised "
          "per bin with statistics from the training set. Songs at other rates are processed at their own "
          "rate: the STFT frames span the model's in time, magnitudes are mapped onto the model's frequency "
          "grid and the mask back, and above the model's Nyquist the mask is the power-weighted mean of its "
          "top quarter-band (full-band vocals, nothing resampled). "
          "The default loss is the generalized Kullback-Leibler divergence "
          "D(v || m*s) of the assignment's eq. (3), summed over bins and averaged over batch and time steps; "
          "the swapped direction, MSE, L1 and Itakura-Saito are options (--loss). Adam, gradient-norm "
          "clipping at 5, the best-validation checkpoint kept.")
    rep.p("Single-frame model (Model.py, Fig. 1): fully connected encoder F -> 1024 -> 512 -> 256 (ReLU, "
          "dropout after the first layer) and a mirrored decoder to a sigmoid mask over all F bins. "
          "Recurrent model (Model_RNN.py, Fig. 2): the 256-d frame code h_t feeds an LSTM; [h_t, h_t^rnn] "
          "goes through fuse_layers (linear + ReLU back to 256) into the same decoder. The encoder, decoder "
          "and input statistics start from the trained frame model (--init) and fuse_layers starts as the "
          "identity on h_t, so training starts exactly at the frame model. Frames of a song are never "
          "shuffled for it: it trains on excerpts of consecutive frames.")

    rep.p("Seed systems, built on the same data module, training loop, checkpoint format and scripts "
          "(train_seed.py --system ...): Huang et al.'s DRNN (3 x 1000 ReLU units, recurrent at layer 2, "
          "3-frame context, joint soft masks that sum to one, discriminative MSE loss with gamma = 0.05, "
          "curriculum from 1 s to 4 s excerpts; its last stage widens the context to 7 frames, the added "
          "frames' weights starting at zero); stacked GRUs (3 x 256) regressing the ideal ratio mask "
          "(|V|^2/sum|S|^2)^0.5; Chandna et al.'s CNN (vertical and horizontal convolutions, 128 and 64 filters, "
          "512-unit bottleneck, mirrored deconvolutions, masks normalised to sum to one; 2-source variant for "
          "MIR-1K); Jansson et al.'s U-Net (six strided 5x5 convolutions and six transposed ones, skip "
          "connections, L1 loss on 128-frame patches); Stoller et al.'s Wave-U-Net (time domain, 8 levels, "
          "valid convolutions, 8 kHz; trained from scratch on minus the SDR of each excerpt, with averaged "
          "weights, and each song scaled to RMS 0.05 before it). Section 4 lists the training of every shipped "
          "system; the README gives the exact commands.")

    rep.h2("2. Data, split and metric")
    main_meta = (sets.get("mir1k_test_public") or [{"meta": {}}])[0]["meta"]
    excerpts_meta = (sets.get("music_excerpts") or [{"meta": {}}])[0]["meta"]
    rep.p("Training: MIR-1K's clips of singers abjones and amy (Huang et al.'s training set), validation "
          "carved from them by song with a fixed seed (clips of one song never straddle the split). "
          "Augmentation: random 2-4 s excerpts, a random gain in [0.25, 1.25] per source, with "
          "probability 0.5 the accompaniment of another song under the vocals, and the vocals played at a "
          "random speed within +-12 % (new voices). "
          f"Test: {main_meta.get('tracks', '?')} clips of three unseen singers (stool, titon, tammy) and "
          f"{excerpts_meta.get('tracks', '?')} professionally produced excerpts. Metric: BSS Eval v3 "
          "(mir_eval's bss_eval_sources decomposition with 512-tap filters, two sources, whole clips, mono, "
          "at the model's 16 kHz). NSDR = SDR(estimate) - SDR(mixture); GNSDR, GSIR and GSAR are means "
          "weighted by clip length, as in Huang et al. (2014). The mixture row is the floor; the oracle "
          "rows apply masks computed from the true sources with the same STFT (IRM = |V|/(|V|+|A|), "
          "IRM2 its power version, IBM binary, PSM phase-sensitive) and bound any magnitude mask.")

    rep.h2("3. Results")
    for name, caption in captions.items():
        if not sets[name]:
            continue
        summary, rows = sets[name]
        meta = summary["meta"]
        rep.p(f"Table: {caption}. {meta['tracks']} tracks, {meta['audio_seconds'] / 60:.1f} min, "
              f"{meta['sample_rate']} Hz. Convention: {meta['convention']}. Vocals:", size=8.5)
        rep.table(COLUMNS, table_rows(summary, "vocals"), widths=(26, 11, 11, 11, 12, 12, 16, 11, 13))
        if name == "music_excerpts":
            header, prow = per_track_rows(rows)
            rep.p("Per-track vocal SDR (dB) on the excerpts:", size=8.5)
            rep.table(header, prow, size=6.5)

    hists = histories()
    if hists:
        rep.h2("4. Training")
        main = sets.get("mir1k_test_public")
        rep.p("Every shipped system: optimiser steps, training minutes (wall clock, on one thread of the 2-core "
              "machine, to the best-validation epoch / in all, while another training shared the machine), best "
              "epoch, and its "
              "MIR-1K test_public scores (vocals, dB; '-' where the system was not evaluated there). The "
              "hourglass's epochs 36-57 and 32 of the Wave-U-Net's 92 ran on two threads: their minutes are wall "
              "minutes (about 4.5 an epoch there against 9 on one thread for the hourglass, 2.1 against 4.2 for "
              "the Wave-U-Net).", size=8.5)
        rep.table(["system", "steps", "min to best", "min in all", "best epoch", "GNSDR", "GSIR", "GSAR"],
                  training_rows(hists, main[0] if main else None), widths=(28, 16, 20, 16, 20, 15, 15, 15))
        fig = plot_learning_curves(fig_dir, hists)
        rep.p("Validation loss and validation GNSDR against training minutes (wall clock), all shipped systems "
              "and every stage of their training. The systems' losses differ (generalized KL, MSE, minus the SDR), "
              "so the loss is shown as its improvement since the first epoch on that loss, relative to that "
              "first value: (L_1 - L) / |L_1|, 0 at the start, higher is better; a stage on an earlier loss is "
              "dashed. GNSDR where the run measured it.", size=8.5)
        rep.image(fig)
        fig = plot_losses(fig_dir)
        rep.p("Smoothed training loss (eq. 4, eta = 0.99) per optimiser step and validation loss per epoch; "
              "the dotted line marks the best-validation epoch.", size=8.5)
        rep.image(fig)

    levers(rep)

    rep.h2("6. When the models work and when they fail")
    discussion(rep, sets, fig_dir)
    rep.save(out_pdf)
    return out_pdf


def levers(rep):
    """What the levers gave, from the committed measurements (results/ab_varispeed, results/real_songs_levers)."""
    ab = run_histories(RESULTS / "ab_varispeed")
    cnn_ab = run_histories(RESULTS / "ab_cnn_size")
    songs = RESULTS / "real_songs_levers" / "results.json"
    sections = [(training_levers_section, training_levers()), (mask_power_section, mask_power_table()),
                (shifts_section, shifts_table()), (semitones_section, semitones_table()),
                (transposition_mean_section, transposition_mean_table()),
                (transposition_weights_section, transposition_weights_table()),
                (input_rms_section, input_rms_table()),
                (ensemble_mean_section, ensemble_mean_table())]
    if not ab and not cnn_ab and not songs.exists() and not any(table for _, table in sections):
        return
    rep.h2("5. What each lever gave")
    for section, table in sections:          # each loaded once; a section without records is left out
        if table:
            section(rep, table)
    if ab:
        parts = []
        for name, h in ab.items():
            g = [v["gnsdr"] for v in h["valid"] if "gnsdr" in v]
            parts.append(f"{name.replace('-', ' ')}: {fmt(g[-1])} dB after {len(g)} epochs (best {fmt(max(g))} dB)")
        rep.p("Vocal varispeed (new voices), judged on a singer the model never heard: frame models (24 epochs) and "
              "RNNs (12 epochs, initialised from those frame models' last epoch) trained on abjones only and "
              "validated on amy's songs (--valid-tracks 'amy_*'), validation GNSDR " + "; ".join(parts)
              + ". Varispeed 0.12 is kept for every shipped model; 0.25 won this A/B too, but the frame model and "
              "two-layer RNN retrained with it on both singers lost 0.3-1.9 dB median vocals SDR on the produced "
              "excerpts, so they were not shipped.", size=8.5)
    if cnn_ab:
        parts = []
        for h in cnn_ab.values():
            a, g = h["train_args"], [v["gnsdr"] for v in h["valid"] if "gnsdr" in v]
            at_best = best_epoch_entry(h)
            parts.append(f"{a['filters'][0]}/{a['filters'][1]} filters and a {a['bottleneck']}-unit bottleneck: "
                         f"{fmt(at_best['gnsdr'])} dB at its best-loss epoch {h['best_epoch']} of {len(g)} "
                         f"(mean of its last 10 epochs {fmt(sum(g[-10:]) / len(g[-10:]))} dB)")
        rep.p("CNN size on a new voice (sixteenth session): the CNN trained from scratch on the SDR loss (seed 47, "
              "the shipped CNN's data options) on abjones only and validated on amy's 132 clips (--valid-tracks "
              "'amy_*'), vocals GNSDR: " + "; ".join(parts) + ". The wider CNN carries 0.1-0.2 dB better to the new "
              "voice, but trained on both singers it was level with the shipped CNN on the validation songs (8.48 "
              "vs 8.55 dB with 4 shifts; continued as cnn-big-ft, 8.58) and not above it on the produced excerpts "
              "(2.98 and 2.64 vs 2.92), so the shipped CNN stays.", size=8.5)
    formant = run_histories(RESULTS / "ab_formant")
    control = cnn_ab.get("cnn-50-30-128")
    if formant and control:
        formant_section(rep, formant, control)
    if songs.exists():
        med = json.loads(songs.read_text())["median"]
        cols = [c for c in next(iter(med.values())) if c != "mixture"]
        rep.p("Full band, level and Wiener on the six produced excerpts at 44.1 kHz (bench/bench_real_songs.py; median "
              "vocals SDR in dB, BSS Eval v3 at the input rate): resampled = the first release's path; zero / "
              "top-mean = full band with the high band given to the accompaniment / to the vocals by the top "
              "quarter-band's share; -40dB = the same song 40 dB quieter; wiener1/2 = norbert's multichannel "
              "Wiener filter after top-mean.", size=8.5)
        rep.table(["model", "mixture", *cols],
                  [[m.replace(".pt", "").replace("savedModel_", ""), fmt(v["mixture"]), *[fmt(v[c]) for c in cols]]
                   for m, v in med.items()], widths=(26, *[12] * (len(cols) + 1)), size=7)


def formant_section(rep, runs, control):
    """The cross-singer A/B of --vocal-formant (results/ab_formant) against the CNN trained the same way
    without it (results/ab_cnn_size/cnn-50-30-128), compared over the epochs both ran."""
    base = [v["gnsdr"] for v in control["valid"] if "gnsdr" in v]
    parts = []
    for h in runs.values():
        g = [v["gnsdr"] for v in h["valid"] if "gnsdr" in v]
        n = min(len(g), len(base))
        k = max(0, n - 5)                                   # the last (up to) five epochs both ran
        mean, mean_base = sum(g[k:n]) / (n - k), sum(base[k:n]) / (n - k)
        parts.append(f"--vocal-formant {h['train_args']['vocal_formant']:g}: {fmt(max(g[:n]))} dB best over its "
                     f"{n} epochs against {fmt(max(base[:n]))} without; mean of epochs {k + 1}-{n} {fmt(mean)} "
                     f"against {fmt(mean_base)}")
    rep.p("Formant shift on a new voice (eighteenth session): the shipped-size CNN trained from scratch on abjones "
          "only and validated on amy's 132 clips as above (seed 47, SDR loss, varispeed 0.12, EQ +-6 dB), with each "
          "training vocal's formants moved by a random factor, its pitch kept (train_seed.py --vocal-formant), "
          "against the same run without it (its first three epochs rerun in this session gave the same numbers "
          "to the last digit), vocals GNSDR: " + "; ".join(parts) + ". It did not carry the CNN better to the "
          "new voice, so the option stays off and no shipped model uses it (rnn-fmt in the table above: the "
          "shipped RNN continued with it on both singers).", size=8.5)


def run_histories(folder: Path) -> dict:
    """{run: history} of the <run>_history.json files in ``folder`` (none when it is missing)."""
    return {p.name.replace("_history.json", ""): json.loads(p.read_text())
            for p in sorted(folder.glob("*_history.json"))}


def best_epoch_entry(history: dict) -> dict:
    """The validation entry (loss, GNSDR, ...) of a history's best epoch."""
    return next(v for v in history["valid"] if v["epoch"] == history["best_epoch"])


def training_levers() -> dict:
    """{run: history} of the training-lever runs (results/training_levers/<run>_history.json)."""
    return run_histories(RESULTS / "training_levers")


def session_order(path: Path) -> tuple[int, str]:
    """Sort key of an excerpts record folder: excerpts/ first, then excerpts-session<N><suffix>/ by N
    (so session 14 comes after session 9), a re-run of a model in a later session overriding."""
    name = path.parent.name
    digits = "".join(c for c in name.removeprefix("excerpts-session") if c.isdigit())
    return (int(digits) if name != "excerpts" and digits else 0, name)


def training_levers_section(rep, runs):
    med = {}                        # every bench run's medians: excerpts/, then later sessions' (excerpts-*/)
    for songs in sorted((RESULTS / "training_levers").glob("excerpts*/results.json"), key=session_order):
        med.update(json.loads(songs.read_text())["median"])
    rows = []
    for name, h in runs.items():
        a, best = h["train_args"], h["best_epoch"]
        at_best = best_epoch_entry(h)
        excerpt = med.get(f"{name}.pt", {}).get("top-mean")
        gnsdr = fmt(at_best["gnsdr"]) if "gnsdr" in at_best else "-"
        rows.append([name, f"{a.get('samples_per_epoch') or '-'}", fmt(a.get("eq_db", 0), 0),
                     f"{a.get('vocal_reverb', 0):g}", f"{a.get('vocal_atten_db', 0):g}", f"{a.get('ema', 0):g}",
                     str(len(h["valid"])), str(best), fmt(at_best["loss"], 1), gnsdr,
                     fmt(excerpt) if excerpt is not None else "-"])
    rep.p("Training levers (one thread each, MIR-1K training singers, validation = the 15 held-out clips): "
          "samples per epoch (x4 = 120 RNN or 480 frame-model steps an epoch, so early stopping and the "
          "learning-rate decay act on longer stretches than the shipped recipes' 30-120 steps), random EQ per "
          "stem (--eq-db, +-dB), a random room on the vocal with probability P (--vocal-reverb), the vocal "
          "lowered by up to A dB (--vocal-atten-db), weight averaging (--ema). Best validation loss and the "
          "vocals GNSDR at that epoch; 'excerpts' = the median vocals SDR of that checkpoint on the six "
          "produced excerpts at 44.1 kHz (bench/bench_real_songs.py, top-mean). cnn-eq6-alpha adds Chandna et "
          "al.'s interference terms (train_seed.py --interference 0.05), cnn-eq6-wide has 64/48 filters and a "
          "256-unit bottleneck (--filters 64 48 --bottleneck 256), unet-eq6 (from scratch) was stopped by hand "
          "for time; drnn-eq6-ft, rnn-eq6-ft, cnn-eq6-ft and gru-eq6-ft continue the shipped DRNN, RNN, CNN and "
          "GRU-IRM (--init) at 0.3x the learning rate with another seed (the first three shipped; drnn-eq6-ft "
          "stopped by hand at 12 for time), unet-ft2 the shipped U-Net at 0.3x its last rate and rnn-eq6-ft2 the "
          "continued RNN once more at 1e-4, ff-conv-eq6-ft the convolutional frame model at 0.3x (none shipped; "
          "all three stopped by hand for time); gru512-eq6 is the GRU-IRM's recipe with 512 units per GRU layer "
          "(not shipped: ahead on validation, 0.51 dB lower on the excerpts; stopped by hand at 13 for time), "
          "waveunet-sdr continues the Wave-U-Net with minus the SDR per excerpt as its loss (--loss sdr; its "
          "validation loss is that, in dB) and the random EQ, at 0.3x the learning rate (shipped at its epoch 17 "
          "in the tenth session; resumed in the eleventh to 22, whose best is not shipped: excerpts 3.00 vs 3.62); "
          "unet-sdr, rnn-sdr, cnn-sdr, drnn-sdr and gru-sdr continue the shipped U-Net, RNN, CNN, DRNN and GRU-IRM "
          "on minus the SDR per excerpt of the sources resynthesised from their masks with the mixture's phase "
          "(--loss sdr; the DRNN with --gamma 0), at 0.3x the first learning rate, seed 44 (all shipped but "
          "the CNN: its excerpts median 0.501 dB lower; drnn-sdr and gru-sdr stopped by hand for time); ff-sdr "
          "and ff-conv-sdr do the same for the two frame models on whole excerpts (the convolutional one shipped; "
          "the frame model not: excerpts 3.90 vs 4.74; best at epoch 5 for both, the convolutional one early-stopped "
          "at 13, the other stopped by hand at 12 for time); in the twelfth session unet-sdr2, rnn-sdr2 and "
          "drnn-sdr2 continued the shipped SDR-loss checkpoints once more at 0.1x the first learning rate and "
          "cnn-sdr2 the shipped CNN on the SDR loss at 0.3x, seed 45 (rnn-sdr2 and cnn-sdr2 shipped; unet-sdr2 and "
          "drnn-sdr2 stayed below the shipped checkpoints' validation and were stopped by hand at 8 and 12; their "
          "excerpts are the raw U-Net, --shifts 1, as in the earlier rows); in the thirteenth session waveunet-sdr "
          "was resumed once more (--resume) and shipped at its epoch 29 (validation 9.07 dB, excerpts 4.05; its row "
          "is the run's last best-loss epoch, 41, whose excerpts fell; stopped by hand for time), "
          "gru-sdr was resumed at its 0.3x rate (stopped by hand, its best still the shipped epoch 6), and "
          "unet-sdr-scratch trained the U-Net from scratch on the SDR loss (--loss sdr, seed 46; stopped by hand "
          "at 25 with its learning rate decayed twice, below the shipped U-Net); in the fourteenth session "
          "waveunet-sdr went on to epoch 41 (best loss at 38 and 41: 9.48 and 9.56 dB, but their excerpts fell again; "
          "not shipped), and "
          "four CNNs larger than the shipped one were trained from scratch, none above the shipped CNN's 8.50 dB: "
          "cnn-big-sdr (--filters 128 64 --bottleneck 512, 1.0M weights, on the SDR loss, seed 47; early-stopped "
          "at 29), cnn-big-mse (the same on the squared error, seed 48; stopped by hand at 15), cnn-huge-sdr "
          "(--filters 256 96 --bottleneck 1024, 2.8M weights, SDR loss, seed 49; stopped by hand at 7, level "
          "with cnn-big-sdr over those epochs) and cnn-t32-sdr (cnn-big-sdr's sizes with 32-frame patches, "
          "--time-context 32, seed 50; stopped by hand at 6, 6.08 against 7.46 dB for cnn-big-sdr at epoch 6); "
          "in the fifteenth session waveunet-rev continued waveunet-sdr's epoch 41 with a random room on half the "
          "training vocals (--vocal-reverb 0.5) at 1e-4, seed 51 (shipped at its epoch 10: validation 9.51 dB at "
          "8 kHz, excerpts 3.64 against 4.05, inside the 0.5 dB the ship rule allows; stopped by hand at 13; resumed "
          "in the sixteenth session and shipped at its epoch 20, its row: 9.85 dB, excerpts 3.74; stopped by hand "
          "after 23), and rnn-wide512 continued the shipped RNN with its LSTM widened from 256 to 512 units per "
          "direction (train_rnn.py --widen-rnn 512, new units starting with zero outgoing weights; 1e-4, seed 52; "
          "stopped by hand at 12, its best 10.83 dB below the shipped RNN's 10.87; not shipped); in the sixteenth "
          "session cnn-big-ft continued cnn-big-sdr at 3e-4, seed 53 (best 8.58 dB against the shipped CNN's "
          "8.55, both with 4 shifts: not a measurable win, and 2.64 against 2.92 on the excerpts with 4 shifts; "
          "not shipped; stopped by hand at 12); in the seventeenth session wun-lvl continued the shipped "
          "Wave-U-Net (waveunet-rev's epoch 20) with every training excerpt scaled to RMS 0.1 +-6 dB and validated "
          "at 0.1 (train_seed.py --input-rms 0.1) at 1e-4, seed 52, wun-ctl the same without it (its control; "
          "0.08-0.23 dB behind wun-lvl at every epoch, about what the level alone gives at inference), and "
          "wun-lvl-slow as wun-lvl at 3e-5, seed 53; none beat the shipped checkpoint with --input-rms 0.1 "
          "(9.96 dB at 16 kHz: wun-lvl's best 9.90, wun-lvl-slow's 9.93, its excerpts 3.65 against 3.75; all "
          "stopped by hand for time, wun-lvl-slow at a new best loss); in the eighteenth session rnn-fmt and "
          "cnn-fmt continued the shipped RNN (1e-4, seed 55) and CNN (3e-4, seed 54) with each training vocal's "
          "formants moved by up to +-15 %, its pitch kept (--vocal-formant 0.15): rnn-fmt's best 10.81 dB against "
          "the shipped 10.87 (excerpts 5.33 against 5.18; stopped by hand at 7 for time), cnn-fmt's best its first "
          "epoch, level with the shipped CNN (stopped by hand at 5 to free the core); neither shipped; in the "
          "nineteenth session rnn-ema, drnn-ema and unet-eq-ema continued the shipped RNN, DRNN and U-Net at a "
          "constant 1e-4 with weight averaging (--ema 0.998; seeds 56, 57 and 59; the U-Net with the random EQ "
          "its recipe never had, --eq-db 6) and drnn-drop the shipped DRNN with dropout 0.2 (seed 58): none "
          "above its shipped checkpoint (evaluate_sdr.py on the 15 clips: rnn-ema 10.81, drnn-ema 8.73, "
          "drnn-drop 8.66, unet-eq-ema 10.98 dB against 10.87, 8.74, 8.74 and 11.18; rnn-ema stopped by "
          "hand at 7, drnn-ema early-stopped at 13, drnn-drop and unet-eq-ema stopped by hand at 6 and 17); "
          "an earlier drnn-ema that also averaged the recurrent layer's power-iteration vectors fell to "
          "5.72 dB at its epoch 3 (fixed; not in the table); in the twentieth session hg16x2 and hg32x2 "
          "trained the stacked hourglass (train_seed.py --system hourglass, 16 or 32 features, 2 stacks) from "
          "scratch on the SDR loss, seeds 61 and 60 (validation 10.52 and 11.20 dB by evaluate_sdr.py; hg16x2 "
          "early-stopped, hg32x2 stopped by hand; as a third ensemble member hg32x2 raised U-Net+RNN's "
          "validation to 12.49 dB but its excerpts median fell from 4.73 to 3.32; their checkpoints were lost "
          "before shipping; a shorter rerun of hg32x2's recipe was shipped in the twenty-second session "
          "(10.74 dB), and in the twenty-fifth and twenty-sixth the shipped hourglass was hg32x2's recipe "
          "rerun on one thread to its epoch 24 and continued at 0.3x the rate, seed 61: 11.20 dB, "
          "results/hourglass_long/); in the "
          "twenty-fifth session drnn-sdr3 continued the shipped DRNN on its last recipe at 1e-4, seed 72 (best "
          "at its first epoch, validation loss -8.78 against the shipped checkpoint's -8.95; stopped by hand "
          "at 6; not shipped); in the twenty-sixth session hg-eq6 trained the hourglass's first-stage recipe "
          "with the random EQ (--eq-db 6, seed 60, 32 features): below the recipe without it (loss -10.44 vs "
          "-10.92; not kept); hg48x2, the same recipe with 48 features (seed 63, best at epoch 23), was continued "
          "at 3e-4 and 1e-4 (seeds 64 and 65): hg48x2b (validation 11.40 dB, excerpts 3.69 against the 32-feature "
          "hourglass's 11.20 and 3.24) was the shipped hourglass in the twenty-seventh and twenty-eighth "
          "sessions, hg48x2c 11.30 and 4.13 (results/hourglass_wide/); in the twenty-seventh rnn2-sdr trained "
          "an RNN with two LSTM "
          "layers (--rnn-layers 2) from the shipped frame model directly on the SDR loss (seed 80): best at "
          "epoch 7 (9.99 dB), early-stopped at 15, below the shipped RNN's 10.87 (not kept); hg64x2, the "
          "hourglass's recipe with 64 features (seed 66 to its epoch 9, then continued at the same rate with "
          "seed 67, the rate falling to 3e-4: best at epoch 24 of the two runs), validation 12.14 dB and "
          "excerpts 3.34 against hg48x2b's 11.40 and 3.69, is the shipped hourglass since the twenty-ninth "
          "session (results/hourglass_wide/session29/) to the thirty-first; hg64x2-eq6 continued it at 3e-4 "
          "with the random EQ (--eq-db 6, seed 74), which had carried best to a new voice (a 48-feature "
          "hourglass trained on abjones only reached 8.07 dB on amy with it, 7.33 without in 18 epochs): "
          "best at its epoch 14, validation 12.51 dB and excerpts 3.01 against 12.14 and 3.34 (inside the 0.5 dB "
          "the ship rule allows), the shipped hourglass from the thirty-first session to the thirty-fifth "
          "(results/hourglass_eq/session31/); in the thirty-fourth session drnn-ctx7 continued the shipped "
          "DRNN with its input window widened from 3 to 7 frames (train_seed.py --widen-context 7: the added "
          "frames' weights start at zero, so training starts from its masks; 3e-4, seed 81): best at its epoch "
          "8, validation 8.89 dB and excerpts 4.19 against 8.74 and 4.08, shipped to session 41; drnn-ctx11 "
          "widened it further to 11 frames (seed 82): 8.88 dB at its epoch 12, stopped by hand at 13, not "
          "shipped (results/drnn_context/); hg80x2-eq6-ema trained an 80-feature hourglass from scratch with "
          "the random EQ and averaged weights (--features 80 --eq-db 6 --ema 0.998, seed 79; 645,682 weights): "
          "best at its epoch 64 (488 minutes), validation 12.67 dB and excerpts 2.97 against 12.51 and 3.01, "
          "the shipped hourglass since the thirty-sixth session (results/hourglass_wide/valid_hg80_ep64/); in "
          "the thirty-fifth and thirty-sixth sessions the RNN's encoder was given a 5-frame window, continuing "
          "the shipped RNN (10.79 and 10.80 dB) or from the frame model on the SDR loss (10.13), all below "
          "the shipped RNN's 10.87, and from the frame model on the shipped RNN's first, KL stage (9.27 "
          "against that stage's 9.66; not continued) (results/rnn_context/); in the thirty-seventh session the "
          "hourglass's one-stage recipe (from scratch on the SDR loss with the random EQ and --ema 0.998) was "
          "given to the CNN (cnn-scratch-sdr, seed 90: 8.52 dB at its epoch 50 against the shipped CNN's 8.55, "
          "both with 4 shifts; stopped by hand at 55) and to the DRNN with its 7-frame window (drnn-scratch-sdr, "
          "seed 91, its excerpts growing only from 1 to 2.3 s: 8.59 dB at its epoch 25 against 8.89; stopped by hand "
          "at 32), neither shipped "
          "(results/cnn_scratch/, results/drnn_scratch/); the Wave-U-Net trained that way, with the reverberant "
          "vocals too (wun-scratch, seed 88, its folder lost after epoch 10; wun-scratch2, seed 89, from that "
          "epoch until its training diverged at 1e-3 in its epoch 52; wun-scratch3, seed 93, from wun-scratch2's "
          "epoch 51 at 3e-4 with a 240-step warmup, best at its epoch 16), was shipped in the thirty-eighth "
          "session: validation 10.61 dB against 9.96 for the one it replaced, both at input RMS 0.1, excerpts "
          "4.08 against 3.75, then 10.84 at the input RMS 0.05 chosen on validation (the input-level table below); "
          "wun-scratch3 went on (9e-5 from its epoch 29) and its epoch 31 replaced it in the thirty-ninth session: "
          "11.26 against 10.84 at RMS 0.05, excerpts 4.20 against 4.01 (results/waveunet_scratch/). The wider CNN "
          "of the fourteenth session (128 and 64 filters, a 512-unit bottleneck: 1.0M weights) on the same "
          "recipe (cnn-big-scratch, seed 94, at 1e-3 with a 5-epoch decay patience, down to 2.7e-5 from its "
          "epoch 67; best at 73, stopped by hand at 74) replaced the shipped CNN in the thirty-ninth session: "
          "8.91 dB against 8.55, both with 4 shifts, excerpts 3.35 against 2.92 (results/cnn_scratch/); continued "
          "at 3e-4 with the reverberant vocals (cnn-big-rev, seed 96) it reached 8.71 on its own validation, "
          "without them (cnn-big-restart, seed 97) 8.84, against the 8.81 it started from; the RNN on that recipe "
          "with the reverberant vocals (rnn-scratch-sdr, seed 95) reached 10.18 at its epoch 34 and then overfit, "
          "against the shipped RNN's 10.87 (results/rnn_scratch/). In the fortieth session an ELU after the "
          "CNN's convolutions (train_seed.py --conv-activation elu; the paper's convolutions are linear), with the "
          "same sizes and recipe (cnn-elu-scratch, seed 100: 3e-4 from its epoch 46, best at 65, stopped by hand "
          "at 77), replaced the shipped CNN: 9.36 dB against 8.91, both with 4 shifts, excerpts 4.74 against 3.35 "
          "(results/cnn_scratch/); with ReLU instead (seed 101) it was ahead of the linear CNN from epoch 6 and "
          "behind the ELU (stopped at 11), and dropout 0.2 on the linear CNN's bottleneck (cnn-drop-scratch, seed "
          "99) gave -0.27 to +0.14 dB against the linear run at the same epochs (stopped at 33); the 2.8M-weight "
          "linear CNN (cnn-huge-scratch) kept 0.10-0.18 dB behind the 1.0M one (best 8.60 at epoch 47), and so "
          "did the ELU one (cnn-elu-huge, seed 103: 8.94 at its epoch 29 against 9.02; stopped at 35); the ELU "
          "CNN with 15-frame patches (cnn-elu-t15, seed 104) had 8.05 against 8.53 at epoch 10 (stopped there). "
          "In the forty-first session a model soup replaced the shipped RNN: the mean of the weights of two "
          "continuations of it at 3e-4 with other seeds, each at its best epoch (export_model.py --average; seeds "
          "94 and 93, alone 11.11 and 11.07 dB), 11.19 dB against 10.87, excerpts 5.36 against 5.18, public test "
          "9.11 against 8.92; a third run made it worse (11.03 and 11.12 with seed 95's or 96's), and the mean of "
          "the runs' last epochs scored 10.75. Not kept: the RNN with the convolutional frame model's layers "
          "(train_rnn.py --conv, 0.1-0.5 dB behind the shipped recipe's stages at the same epochs, and on a new "
          "voice in the forty-fifth session 6.43 and 6.71 dB against 6.69 with two seeds; results/rnn_conv/, "
          "results/ab_cross_singer_rnn_conv/), a bidirectional DRNN (train_seed.py --backward-units 1000: "
          "8.89 and 8.82 at best against 8.89), dropout 0.3 on the RNN (10.84) and a soup of two DRNN "
          "continuations (8.83; "
          "results/drnn_bidirectional/, results/rnn_continuations/). In the forty-second session distillation "
          "(--teacher: the training targets (1-W) x the true stems + W x the U-Net+RNN ensemble's estimates) "
          "replaced both: the RNN soup continued 6 epochs with it (seeds 100 and 98, W 1 and 0.5, their best "
          "epochs averaged) 11.55 dB against 11.19, excerpts 5.41 against 5.36, public test 9.25 against 9.11; "
          "the DRNN (seed 98, W 1) 9.48 against 8.89, excerpts 4.13 against 4.19, public test 7.73 against 7.75. "
          "The same seeds' continuations without a teacher had reached 10.79 and 11.08 (RNN), 8.82 and 8.80 "
          "(DRNN) against 11.26 and 11.48, 9.04 and 9.04 with one at W 0.5 (results/distillation/). In the "
          "forty-third session the teacher became the U-Net+RNN+Hourglass ensemble (its hourglass an ONNX "
          "export, which onnxruntime runs about 4x faster than torch): the RNN reached 11.48 at best, the DRNN "
          "9.23, neither above the shipped models. With the hourglass alone as teacher the RNN fell to 10.97 on "
          "validation but rose on the produced excerpts (median 5.79 against 5.41, higher on five of six; GSAR "
          "6.68 against 5.61 at 16 kHz). The forty-fourth session tested that lead on a voice neither model had "
          "heard, by a rule written down first: an RNN trained on abjones alone, continued 5 epochs with the "
          "abjones-only hourglass as teacher, scored 6.53 dB on all of amy's clips against 6.70 for the same seed "
          "without a teacher (6.68 with another seed), with the same softer masks (GSIR 8.84 against 10.70), so "
          "the lead was closed (results/distillation/third/, results/ab_cross_singer_kd/). The forty-fifth "
          "session measured one more regulariser on that bench: SpecAugment's frequency masks on the RNN's input "
          "(train_rnn.py --freq-mask 2 40) gave 6.57 and 6.72 dB with two seeds against 6.69 and 6.58 without "
          "(results/ab_cross_singer_freq_mask/); not kept. Weight decay (--weight-decay 1e-4), finished in the "
          "forty-sixth session, gave 6.72 and 6.77 against 6.69 and 6.58 (+0.11 on the mean, below the +0.20 the "
          "rule asked; results/ab_cross_singer_weight_decay/); not kept. Its runs had slowed five-fold as dead "
          "units' weights decayed into denormal floats; every training now flushes those to zero. Leaky ReLUs "
          "(--leaky 0.01; with plain ReLUs a third to a half of the units after the first layer never fire) gave "
          "6.80 and 6.89 against 6.69 and 6.58, +0.21 on the mean, meeting the rule by 0.01 dB "
          "(results/ab_cross_singer_leaky/). Trained on both voices and judged on validation, the leaky RNN "
          "scored 10.38 and 10.30 against 10.62 and 10.48 for the same recipe with ReLUs (seeds 42 and 43; level "
          "at equal epochs), "
          "so it was not carried into the shipped recipe (results/leaky_validation/). A third seed (72, forty-ninth "
          "session) reversed the first two (6.54 against 6.79); with the transposition averaging the three pairs "
          "differ by +0.25, +0.19 and -0.28 dB (mean +0.05), so the lever is within the bench's seed noise and "
          "closed. The forty-seventh session "
          "changed the accompaniment instead, on the same bench: at a random speed (--accomp-speed 0.12, other "
          "keys and tempos) the RNN's own validation stood at 4.20 and 4.32 dB at the seventh epoch against 5.89 "
          "and 5.94; with half the excerpts as recorded (--aligned-prob 0.5, the voice in time and in tune with "
          "its own accompaniment) at 4.86 and 4.82 at the sixth (both stopped there); with every accompaniment "
          "through the resampler but at most 0.1 % off speed 6.13 and 6.41 against 6.69 and 6.58 "
          "(results/ab_cross_singer_accomp_speed/, results/ab_cross_singer_aligned/). The vocals' own varispeed, "
          "chosen in the fourth session on early epochs, was checked at full budget: without it 5.25 and 5.14 "
          "against 6.69 and 6.58 (results/ab_cross_singer_varispeed/). A wider range (--vocal-speed 0.25, "
          "fifty-ninth session) lifted the raw RNN to 7.05 and 7.18 against 6.69 and 6.73, but at its default "
          "averaging over -4..4 semitones it scored 7.90 and 8.11 against 8.04 and 8.07: no gain where users "
          "run it, so it was not adopted. A time-stretch of the vocals with their pitch kept (--vocal-stretch 0.1, "
          "WSOLA, the issue's +-10 %) was level or below: 6.61 and 6.68 raw, 7.95 and 8.00 averaged "
          "(results/ab_cross_singer_stretch/), and dropout 0.3 instead of 0.1 lost: 6.59 and 6.36 raw, 8.07 and "
          "7.72 averaged (results/ab_cross_singer_dropout/). A formant shift of the vocals with their pitch kept "
          "(--vocal-formant 0.15, sixtieth session), the one change of singer a transposition cannot make, "
          "gained raw (6.77 and 6.95) and not averaged (8.00 and 8.06; results/ab_cross_singer_formant/), and "
          "the two plain runs as one ensemble gave 8.11 averaged (results/ab_cross_singer_ensemble/): the "
          "averaging already takes what they add; a five-frame window for the encoder lost (6.31 and 6.47 raw, "
          "7.61 and 7.84 averaged; results/ab_cross_singer_context/). New voices come from changing the voice; "
          "no change of the accompaniment has helped. A slow random pitch curve on the vocals (--vocal-bend "
          "0.5: other melodies and vibratos) was level: 6.52 and 6.67 (results/ab_cross_singer_vocal_bend/). "
          "The forty-eighth session found the models tied to standard tuning (the transposition averaging "
          "below) and moved the accompaniment by whole semitones instead (--accomp-semitones 2, other keys in "
          "tune): 6.98 and 6.69, +0.19 dB on the mean where the rule asked +0.20, and with the transposition "
          "averaging at separation no better than the plain run (7.74 and 7.74 for seed 71) "
          "(results/ab_cross_singer_accomp_semitones/). The fiftieth session made the averaging a teacher "
          "(--teacher-semitones 2: each bench RNN continued 8 epochs with its own averaged estimates as the "
          "targets): raw the students rose by about 0.4 dB (7.08 and 7.06 against 6.67 and 6.69 for the same "
          "continuations without a teacher), but averaged again at separation they lost (7.43 and 7.53 against "
          "7.75 and 7.79; GSIR 9.67 and 9.57 against 10.55 and 10.59), so the averaging stays a separation step "
          "(results/ab_cross_singer_td/). Drawing the training audio more evenly (--sample-by second, "
          "fifty-eighth session: tracks in proportion to their length, offsets up to half an excerpt past their "
          "ends) gave 6.72 and 6.28 against 6.69 and 6.73 (results/ab_cross_singer_sample_by/), and 6-s "
          "instead of 4-s excerpts for the same audio per epoch 6.23 and 6.23 (results/ab_cross_singer_chunk/). "
          "In the fifty-third session the shipped 80-feature hourglass was grown "
          "to 96 features (train_seed.py --widen-features: the added channels start with zero weights out of "
          "them, so the grown model starts from exactly its masks; 925,922 weights) and trained on with a fresh "
          "optimizer: at 9e-5 (hg96-widen, seed 102) it reached 13.36 dB on validation at the hourglass's "
          "default 4 semitones against 13.29, short of the 0.15 dB a swap needs; at 3e-4 (hg96-restart, seed "
          "103) its epoch 2 scored 13.51, excerpts 3.60 against 3.79 (0.5 dB allowed), and is the shipped "
          "hourglass since the fifty-fourth session; the run's best-loss epoch, 7, scored 13.35 (excerpts 4.00) "
          "and was not shipped (results/hourglass_wide/).",
          size=8.5)
    rep.table(["run", "samples/epoch", "EQ dB", "reverb", "atten. dB", "EMA", "epochs", "best", "valid loss",
               "valid GNSDR", "excerpts"],
              rows, widths=(24, 13, 8, 8, 9, 8, 8, 7, 10, 11, 10), size=7)


def model_systems(summary: dict) -> list[str]:
    """The systems of a summary.json's ``summary`` that are models: not the mixture, not an oracle."""
    return [k for k in summary if k != "mixture" and not k.startswith("oracle")]


def bench_results(folder) -> dict:
    """{label: (median vocals SDR, top-mean; the settings the model ran with)} from every results*.json of a
    real-songs bench folder (results.json, and results_*.json of other bench runs there), by the bench's
    name for a checkpoint (:func:`util.checkpoint_label`)."""
    out = {}
    for path in sorted(Path(folder).glob("results*.json")):
        result = json.loads(path.read_text())
        out.update({label: (m["top-mean"], result.get("systems", {}).get(label, {}))
                    for label, m in result["median"].items()})
    return out


def mask_power_table():
    """{(set, system): {power: (vocals GNSDR, accompaniment GNSDR)}} from results/mask_power/<set>_p<P>/."""
    table = {}
    for path in sorted((RESULTS / "mask_power").glob("*_p*/summary.json")):
        name, _, power = path.parent.name.rpartition("_p")
        summary = json.loads(path.read_text())["summary"]
        for system in model_systems(summary):
            entry = summary[system]
            table.setdefault((name, system), {})[float(power)] = (entry["vocals"]["GNSDR"],
                                                                  entry["accompaniment"]["GNSDR"])
    return table


MASK_POWER_SETS = {"valid": "shipped model, its 15 validation clips (held-out songs of the training singers)",
                   "cross_singer": "trained on abjones only, scored on amy's 132 clips (a new voice)"}


def mask_power_section(rep, table):
    powers = sorted({p for v in table.values() for p in v})
    rep.p("Mask power (separate.py / evaluate_sdr.py --mask-power P: every mask raised to P before it is applied; "
          "accompaniment = mixture - vocals), chosen on validation, never on the test singers: GNSDR in dB "
          "of the vocals and of the accompaniment, MIR-1K. "
          + "; ".join(f"{k}: {v}" for k, v in MASK_POWER_SETS.items())
          + ". On the produced excerpts a power above 1 lowered the median vocals SDR (bench/bench_real_songs.py "
          "power settings), so the default stays 1 and the MIR-1K tables give both. A softer mask for the RNN "
          "(0.8, at its default averaging over -4..4 semitones; sixty-first session, results/mask_power_soft/) "
          "raised the excerpts' median to 6.71 from 6.55 at 16 kHz but lost 0.29 dB on validation (11.64 against "
          "11.93) and 0.25 on the new-voice bench (7.81 and 7.81 against 8.04 and 8.07): not adopted.", size=8.5)
    rep.table(["set", "system", *[f"vocals p={p:g}" for p in powers], *[f"accomp. p={p:g}" for p in powers]],
              [[name, system, *[fmt(v[p][0]) if p in v else "-" for p in powers],
                *[fmt(v[p][1]) if p in v else "-" for p in powers]] for (name, system), v in table.items()],
              size=6.5)


def count_table(folder: str, valid_prefix: str, excerpts_prefix: str) -> dict:
    """{system: {N: (validation GNSDR, produced-excerpts median vocals SDR or None)}} for a lever with a
    count N, from results/<folder>/<valid_prefix><N>/summary.json (evaluate_sdr.py; and summary_*.json,
    other runs at that N) and <excerpts_prefix><N>/results.json (the bench; and results_*.json), matched
    by checkpoint (:func:`util.checkpoint_label`, the bench's name for it); a system the bench did not run
    gets None."""
    table = {}
    found = {}
    for path in (RESULTS / folder).glob(f"{valid_prefix}*/summary.json"):
        count = path.parent.name[len(valid_prefix):]
        if count.isdigit():
            found[int(count)] = path.parent
    for n, valid in sorted(found.items()):
        medians = bench_results(valid.parent / f"{excerpts_prefix}{n}")
        for path in sorted(valid.glob("summary*.json")):
            result = json.loads(path.read_text())
            summary, info = result["summary"], result["meta"].get("systems", {})
            for system in model_systems(summary):
                label = util.checkpoint_label(info[system]["checkpoint"]) if system in info else None
                median = medians[label][0] if label in medians else None
                table.setdefault(system, {})[n] = (summary[system]["vocals"]["GNSDR"], median)
    return table


def shifts_table():
    """--shifts N: :func:`count_table` of results/shifts/valid_s<N>, excerpts_s<N>."""
    return count_table("shifts", "valid_s", "excerpts_s")


def semitones_table():
    """--semitones N: :func:`count_table` of results/transposition/valid_st<N>, excerpts_st<N>."""
    return count_table("transposition", "valid_st", "excerpts_st")


def count_rows(table) -> tuple[list, list]:
    """The header and rows of a :func:`count_table`: 'validation / excerpts' per N."""
    counts = sorted({n for v in table.values() for n in v})
    return (["system", *[f"N = {n}" for n in counts]],
            [[system, *[f"{fmt(v[n][0])} / {'-' if v[n][1] is None else fmt(v[n][1])}" if n in v else "-"
                         for n in counts]] for system, v in table.items()])


def shifts_section(rep, table):
    rep.p("Shift averaging (separate.py / evaluate_sdr.py --shifts N): the U-Net's six stride-2 layers make its "
          "masks depend on where a frame falls in its 64-frame grid, so its masks are averaged over N time offsets "
          "of the input (0, 17, 34, 51 frames for N = 4); the CNN's 11-frame patches hop by 5 frames, so its masks "
          "are averaged over offsets of that patch grid (0-3 frames for N = 4, all five for N = 8). Validation GNSDR "
          "(15 held-out clips) / median vocals SDR on the six produced excerpts at 44.1 kHz "
          "(bench/bench_real_songs.py, top-mean), in dB; chosen there, the default is 4 (every U-Net and CNN "
          "number in this report uses it).", size=8.5)
    rep.table(*count_rows(table), size=7.5)


def semitones_section(rep, table):
    folder = RESULTS / "transposition"
    swing = ""
    tuning = folder / "tuning_rnn.json"
    if tuning.exists():
        t = json.loads(tuning.read_text())
        at = dict(zip(t["speeds"], t["gnsdr"]))
        marks = (2 ** (-1 / 12), 0.97, 1.0, 1.03, 2 ** (1 / 12))    # whole semitones and about half-way between
        picks = [(s, at[s]) for s in sorted(at) if any(abs(s - x) < 1e-4 for x in marks)]
        swing = (" (the shipped RNN on the validation clips played at " +
                 ", ".join(f"x{s:.4f}: {fmt(g)}" for s, g in picks) + " dB; bench/bench_tuning.py)")
    voice = []
    for n in range(10):
        path = folder / f"new_voice_st{n}" / "summary.json"
        if path.exists():
            summary = json.loads(path.read_text())["summary"]
            voice.append(summary[model_systems(summary)[0]])
    new_voice = ("; on a voice the models never heard (the RNN trained on abjones only, all 132 of amy's clips) "
                 + ", ".join(fmt(v["vocals"]["GNSDR"]) for v in voice)
                 + f" dB for N = 0..{len(voice) - 1}") if voice else ""
    rep.p("Transposition averaging (separate.py / evaluate_sdr.py --semitones N, forty-eighth session): the song is "
          "also separated transposed by 1..N whole semitones up and down (played faster or slower, pitch and tempo "
          "together), each estimate is played back at the original speed, and the 2N+1 estimates are averaged. "
          "The models separate a song in standard tuning much better than the same song a quarter-tone off it"
          + swing + ", so only whole semitones are used. Validation GNSDR (15 held-out clips) / median vocals SDR "
          "on the six produced excerpts at 44.1 kHz (bench/bench_real_songs.py, top-mean; the ensembles were not "
          "run there), in dB" + new_voice + ". Chosen there, the default is 2, and 4 for the "
          "RNN and the DRNN since the fiftieth session: on the new voice three bench RNNs (seeds 70-72) scored "
          "7.64, 7.74, 7.84 dB at 2 and 7.93, 8.02, 8.09 at 4 (results/transposition/new_voice_s70_s72_st<N>), "
          "their excerpt medians rose (above) and validation stayed level, at 9 separations instead of 5; and for "
          "the GRU-IRM and the stacked hourglass since the fifty-first (excerpts higher, validation level or "
          "higher; a bench hourglass trained on abjones only 6.96 dB at 2 and 7.14 at 4 on amy's clips). 5 and 6 "
          "gain nothing more for the RNN. The first results table of section 2 uses these defaults. The hourglass "
          "rows (and the three-model ensemble's) are the shipped 96-feature hourglass since the fifty-fifth "
          "session; the 80-feature one shipped from the thirty-sixth to the fifty-third session, on which the "
          "hourglass's N = 4 was chosen, scored 12.67, 13.08, 13.21 / 3.38, 13.25 / 3.71 and 13.29 / 3.79 for N = "
          "0..4 (README, Post-processing).", size=8.5)
    rep.table(*count_rows(table), size=7.5)


def transposition_mean_table() -> dict:
    """{(set, system): {mean: GNSDR or excerpts median}} for --transposition-mean, each system at its default
    --semitones: the geometric mean from results/transposition_mean/{valid,new_voice}_geometric/summary.json
    (evaluate_sdr.py) and excerpts_geometric/results*.json (the bench), the arithmetic one (the default) from
    the same runs' counterparts of the --semitones table (results/transposition/valid_st<N>, excerpts_st<N>,
    new_voice*_st<N>), matched by system name or checkpoint."""
    folder, table = RESULTS / "transposition_mean", {}
    if not folder.is_dir():
        return table
    arithmetic = semitones_table()

    def models(path):
        result = json.loads(path.read_text()) if path.exists() else {"summary": {}, "meta": {}}
        info = result["meta"].get("systems", {})
        return {k: (result["summary"][k]["vocals"]["GNSDR"], info.get(k, {}))
                for k in model_systems(result["summary"])}

    valid = models(folder / "valid_geometric" / "summary.json")
    for system, (gnsdr, info) in valid.items():
        n = info.get("semitones")
        table[("validation", f"{system} (N = {n})")] = {"geometric": gnsdr,
                                                        "arithmetic": arithmetic.get(system, {}).get(n, (None,))[0]}
    medians = bench_results(folder / "excerpts_geometric")
    for system, (_, info) in valid.items():              # the bench names systems by their checkpoint
        label = util.checkpoint_label(info["checkpoint"]) if "checkpoint" in info else None
        if label in medians:
            median, n = medians[label][0], medians[label][1]["semitones"]
            table[("excerpts median", f"{system} (N = {n})")] = {
                "geometric": median, "arithmetic": arithmetic.get(system, {}).get(n, (None, None))[1]}
    new = models(folder / "new_voice_geometric" / "summary.json")
    if new:
        n = next(iter(new.values()))[1].get("semitones")
        plain = {}
        for path in sorted((RESULTS / "transposition").glob(f"new_voice*_st{n}/summary.json")):
            plain.update({k: g for k, (g, _) in models(path).items()})
        for system, (gnsdr, _) in new.items():
            table[("new voice", f"{system} (N = {n})")] = {"geometric": gnsdr, "arithmetic": plain.get(system)}
    return table


def transposition_mean_section(rep, table):
    rep.p("How --semitones combines its 2N+1 estimates (separate.py / evaluate_sdr.py --transposition-mean, "
          "fifty-first session): the arithmetic mean of their waveforms (default), or the geometric mean of their "
          "magnitude spectrograms, each source's share of it masking the mixture. Vocals, dB: validation GNSDR "
          "(15 held-out clips), the median vocals SDR on the six produced excerpts at 44.1 kHz "
          "(bench/bench_real_songs.py, top-mean), and GNSDR on a new voice (the bench RNNs trained on abjones only, "
          "amy's 132 clips); each model at its default N. The geometric mean gains 0.6-0.7 dB on the new voice but "
          "lowers six of eight models' medians on the produced excerpts, as sharper masks (--mask-power) did, so it "
          "stays an option. The hourglass here is the shipped 96-feature one (the 80-feature one before it: 12.96 "
          "vs 13.29 on validation, 3.43 vs 3.79 on the excerpts).", size=8.5)
    rep.table(["set", "system", "arithmetic", "geometric"],
              [[name, system, fmt(v["arithmetic"]) if v["arithmetic"] is not None else "-", fmt(v["geometric"])]
               for (name, system), v in table.items()], size=7.5)


TRANSPOSITION_WEIGHT_SETS = (("new_voice", "new voice"), ("valid", "validation"), ("excerpts16", "excerpts"))


def transposition_weights_table() -> dict:
    """{combination: {set: value}} from results/transposition_weights/<set>/results.json
    (bench/bench_transposition_weights.py): the new voice's and validation's GNSDR (the mean over the set's
    models) and the excerpts' median vocals SDR (its one model)."""
    folder, table = RESULTS / "transposition_weights", {}
    for name, label in TRANSPOSITION_WEIGHT_SETS:
        path = folder / name / "results.json"
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        values = result["median_sdr"] if name == "excerpts16" else result["gnsdr"]
        for combo, per_model in values.items():
            table.setdefault(combo, {})[label] = sum(per_model.values()) / len(per_model)
    return table


def transposition_weights_section(rep, table):
    rep.p("Other weights for the 2N+1 transposed estimates (bench/bench_transposition_weights.py, fifty-eighth "
          "session; N = 4): each clip separated once per transposition and the combinations scored on the same "
          "separations. Vocals, dB: GNSDR on the new voice (the mean of the four bench RNNs of the fifty-seventh "
          "session, amy's 132 clips) and on validation (the shipped RNN, 15 clips), and the median vocals SDR of "
          "the shipped RNN on the six produced excerpts at 16 kHz. 'uniform N' is today's equal weights over "
          "-N..N; 'triangle' weighs k by N+1-|k|, 'gauss2' by exp(-k^2/8); 'geometric' and 'median' mask the "
          "mixture by the vocals' share of the geometric mean or the median of the magnitude spectrograms. No "
          "combination gains on all three: the weights lose on the new voice, the median and the geometric mean on "
          "the excerpts, so the equal weights stay.", size=8.5)
    labels = [label for _, label in TRANSPOSITION_WEIGHT_SETS]
    rep.table(["combination", *labels],
              [[combo, *(fmt(v[label]) if label in v else "-" for label in labels)] for combo, v in table.items()],
              size=7.5)


def input_rms_table() -> list:
    """[(input RMS or None, validation GNSDR, excerpts median, excerpts median at -40 dB)] from
    results/waveunet_input_rms/valid/summary.json (evaluate_sdr.py) and excerpts/results.json (the
    bench), matched by position: both commands list the same checkpoints in the same order, named
    by their input RMS ("off" for none)."""
    folder = RESULTS / "waveunet_input_rms"
    valid, excerpts = folder / "valid" / "summary.json", folder / "excerpts" / "results.json"
    if not valid.exists() or not excerpts.exists():
        return []
    summary = json.loads(valid.read_text())["summary"]
    systems = model_systems(summary)
    medians = list(json.loads(excerpts.read_text())["median"].values())
    return [(None if name == "off" else float(name), summary[name]["vocals"]["GNSDR"], m["top-mean"],
             m["top-mean -40dB"]) for name, m in zip(systems, medians)]


def input_rms_section(rep, table):
    rep.p("Input level of the Wave-U-Net (export_model.py --input-rms R, seventeenth session): the time-domain "
          "network sees the waveform itself, so its separation depended on the song's level; with R set, every song "
          "is scaled to RMS R before the network and the estimates back. The shipped checkpoint (the thirty-ninth "
          "session's, trained from scratch) with each R: validation GNSDR (15 held-out clips, 16 kHz) / median "
          "vocals SDR on the six produced excerpts at 44.1 kHz (bench/bench_real_songs.py, top-mean) / the same "
          "with the songs 40 dB quieter, in dB. Validation peaks at 0.04-0.05; 0.04 loses 1.35 dB on the "
          "excerpts against the best level, 0.05 stays within 0.22 dB (4.20 against 4.42 at 0.06), so 0.05 is "
          "shipped (11.26 against 10.96 at 0.1), as for the same run's epoch 16 in the thirty-eighth session. For "
          "the Wave-U-Net shipped before (seventeenth session), 0.04-0.05 lost 0.7-1.6 dB on the excerpts and 0.1 "
          "was shipped.", size=8.5)
    rep.table(["input RMS", "validation GNSDR", "excerpts median", "at -40 dB"],
              [["off" if r is None else f"{r:g}", fmt(v), fmt(e), fmt(q)] for r, v, e, q in table], size=7.5)


ENSEMBLE_MEANS = evaluate_sdr.Model.MaskEnsemble.MEANS


def ensemble_mean_table() -> dict:
    """{(set and score, ensemble): {mean: cell}} for --ensemble-mean: validation and 16 kHz excerpts from
    results/ensemble_mean/{valid,excerpts}_<mean>/summary.json (evaluate_sdr.py), the 44.1 kHz excerpts from
    real_songs_<mean>/results.json (the bench; matched by position: the commands list the same ensembles in
    the same order) and a new voice from results/ab_cross_singer_hourglass/ensemble_<mean>/summary.json.
    Only ensembles (names with '+') are rows."""
    table, folder = {}, RESULTS / "ensemble_mean"

    def ensembles(path):
        summary = json.loads(path.read_text())["summary"] if path.exists() else {}
        return {k: v for k, v in summary.items() if "+" in k}

    for mean in ENSEMBLE_MEANS:
        valid = ensembles(folder / f"valid_{mean}" / "summary.json")
        sets = [("valid, GNSDR", valid, False),
                ("new singer, GNSDR",
                 ensembles(RESULTS / "ab_cross_singer_hourglass" / f"ensemble_{mean}" / "summary.json"), False),
                ("excerpts 16 kHz, GNSDR / median SDR", ensembles(folder / f"excerpts_{mean}" / "summary.json"), True)]
        for label, systems, with_median in sets:
            for system, entry in systems.items():
                cell = fmt(entry["vocals"]["GNSDR"])
                if with_median:
                    cell += f" / {fmt(entry['vocals']['median_SDR'])}"
                table.setdefault((label, system), {})[mean] = cell
        songs = folder / f"real_songs_{mean}" / "results.json"
        if songs.exists():
            medians = list(json.loads(songs.read_text())["median"].values())
            for system, m in zip(valid, medians):
                table.setdefault(("excerpts 44.1 kHz, median SDR", system), {})[mean] = fmt(m["top-mean"])
    return table


def ensemble_mean_section(rep, table):
    rep.p("How an ensemble combines its members' masks (separate.py / evaluate_sdr.py --ensemble-mean): the "
          "geometric mean (default; a bin is kept only where every member keeps it) or the arithmetic mean (a bin is "
          "kept in proportion to how many members keep it). Vocals, dB: validation = the 15 held-out clips; new "
          "singer = the U-Net and the stacked hourglass of the cross-singer A/B (trained on abjones only) on amy's "
          "132 clips; excerpts = the six produced excerpts, at 16 kHz (evaluate_sdr.py) and at 44.1 kHz full band "
          "(bench/bench_real_songs.py, top-mean); the hourglass member is the shipped 96-feature one (since the "
          "fifty-fifth session; the README gives the 80-feature one's numbers beside). The geometric "
          "mean wins on MIR-1K and stays the default; the arithmetic mean wins on every produced excerpt at 44.1 "
          "kHz and is the README's choice for songs.", size=8.5)
    rep.table(["set, score", "ensemble", *ENSEMBLE_MEANS],
              [[label, system, *[v.get(m, "-") for m in ENSEMBLE_MEANS]] for (label, system), v in table.items()],
              size=7.5)


# The first release's RNN and feedforward scored on the 14 MIR-1K test singers that are not public (the quality
# issue's table): (public test singers, the other 14), vocals GNSDR in dB; and the gap the project's brief gives
# for every model measured there, in dB.
FIRST_RELEASE_GAP = {"RNN": (8.11, 6.42), "feedforward": (6.93, 5.47)}
GAP_DB = (1.5, 1.9)


def hidden_singers_estimate(s, best_model):
    """What the public test singers' scores say of the 14 singers that are not public, read two ways: the
    gap as a difference (dB) and as the first release's ratio; the two fit its two models equally well."""
    ratio = sum(h / p for p, h in FIRST_RELEASE_GAP.values()) / len(FIRST_RELEASE_GAP)
    measured = ", ".join(f"{m} {fmt(p)} and {fmt(h)}" for m, (p, h) in FIRST_RELEASE_GAP.items())
    parts = []
    for m in dict.fromkeys([best_model, "RNN", "DRNN"]):
        if m in s:
            g = s[m]["vocals"]["GNSDR"]
            parts.append(f"{m} {fmt(g - GAP_DB[1])} to {fmt(g - GAP_DB[0])} dB as a difference, "
                         f"{fmt(g * ratio)} as a ratio")
    return ("These three singers flatter every model, by about "
            f"{GAP_DB[0]:g}-{GAP_DB[1]:g} dB against the other 14 test singers (not public); the first release's "
            f"two models measured there kept {ratio:.2f} of their GNSDR ({measured} dB). Read either way, the 14 "
            "singers would give " + "; ".join(parts) + ". Only those singers can tell the two readings apart.")


def discussion(rep, sets, fig_dir):
    main = sets.get("mir1k_test_public")
    if not main:
        rep.p("(No MIR-1K results to discuss.)")
        return
    summary, rows = main
    s = summary["summary"]
    models = model_systems(s)
    irm = s.get("oracle IRM", {}).get("vocals", {}).get("GNSDR")
    best_model = max(models, key=lambda k: s[k]["vocals"]["GNSDR"])
    lines = [f"On the unseen MIR-1K singers the best model, {best_model}, reaches GNSDR "
             f"{fmt(s[best_model]['vocals']['GNSDR'])} dB (GSIR {fmt(s[best_model]['vocals']['GSIR'])}, GSAR "
             f"{fmt(s[best_model]['vocals']['GSAR'])})"
             + (f", against {fmt(irm)} dB for the ideal ratio mask" if irm else "")
             + f"; Huang et al.'s best DRNN reported 7.45 dB on all 825 test clips (a published figure), of "
             f"which these are {summary['meta']['tracks']}."]
    for m in models:
        v = s[m]["vocals"]
        lines.append(f"{m}: GNSDR {fmt(v['GNSDR'])} dB, median SDR {fmt(v['median_SDR'])} dB.")
    rep.p(" ".join(lines))
    rep.p(hidden_singers_estimate(s, best_model))
    variants = sets.get("rnn_variants")
    if variants:
        v = variants[0]["summary"]
        g = {k: v[k]["vocals"]["GNSDR"] for k in v if k != "mixture"}
        bi = {k: x for k, x in g.items() if k.startswith("bi")}
        uni = {k: x for k, x in g.items() if k.startswith("uni")}
        if bi and uni:
            rep.p(f"Recurrent variants: the best bidirectional run reaches {fmt(max(bi.values()))} dB and the best "
                  f"unidirectional (causal, streamable) run {fmt(max(uni.values()))} dB, so the bidirectional LSTM "
                  "is the default (train_rnn.py --unidirectional gives the causal model). Decaying the learning "
                  "rate on validation plateaus helped both; a second LSTM layer did not help within the time "
                  "we could give it.")
    fig, info = plot_spectrograms(fig_dir, summary, rows, best_model)
    if fig:
        best, nb, worst, nw = info
        rep.p(f"Best and worst clip for {best_model} by NSDR: {best} ({fmt(nb)} dB) and {worst} ({fmt(nw)} dB). "
              "Rows: best clip, worst clip; columns: mixture, true vocals, estimated vocals (log magnitude). The "
              "estimate shown is the raw model's (one separation); the NSDR quoted is the table's, with its "
              "test-time averaging.")
        rep.image(fig)
    else:
        rep.p("(Spectrogram figure left out: the evaluated audio or checkpoint is not on this machine.)")
    rep.p(DISCUSSION)


DISCUSSION = (
    "Where they work: sustained, voiced singing whose harmonics stand above the accompaniment. The masks "
    "follow the vocal harmonics and vibrato, and the recurrent model, which sees whole phrases, keeps "
    "notes continuous where the frame model flickers. Where they fail: (1) quiet or breathy singing "
    "and unvoiced consonants, whose noise-like energy looks like hi-hats and strummed guitar to a frame "
    "model; (2) accompaniment that imitates a voice (a lead instrument or backing vocals in the same "
    "register), which the models partly keep; (3) low-energy clips where the vocals are far below the "
    "accompaniment, where the mask leaks accompaniment into the vocals (low SIR); (4) professionally "
    "produced songs, whose mixing, reverb and wide band differ from MIR-1K's dry karaoke recordings: "
    "the excerpts table shows the domain gap. Likely reasons: a single 64 ms frame carries little "
    "evidence about whether energy is sung; 175 training clips of two amateur singers cover few "
    "voices; the mixture phase is reused. Improvements: more and more varied training data (DSD100/MUSDB), "
    "context windows or convolutional front-ends, a time-frequency loss on the resynthesised signal, "
    "phase-aware masks (the phase-sensitive oracle row shows the head-room). Ensembling (the U-Net+RNN and "
    "U-Net+RNN+Hourglass rows: geometric mean of the models' masks) raised the U-Net and the RNN on MIR-1K; the "
    "stacked hourglass alone now leads the three-model ensemble on validation (13.51 vs 13.45 dB at their default "
    "transposition averaging) and on the test singers; on produced "
    "songs the arithmetic mean of the masks does better (--ensemble-mean, section 5); sharpening the masks "
    "(--mask-power) paid on the validation songs but not reliably on new singers or produced songs.")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--out", type=Path, default=ROOT / "runs" / "report" / "report.pdf",
                   help="output PDF (default runs/report/report.pdf, untracked; the committed report is "
                        "rebuilt with -o report/report.pdf)")
    p.add_argument("--markdown", metavar="SET", default=None,
                   help="print the vocals table of results/SET as Markdown (for the README) instead of building")
    args = p.parse_args(argv)
    if args.markdown:
        loaded = load_set(args.markdown)
        if loaded is None:
            raise util.UserError(f"{RESULTS / args.markdown}: no summary.json")
        print("| " + " | ".join(COLUMNS) + " |")
        print("|" + "---|" * len(COLUMNS))
        for row in table_rows(loaded[0], "vocals"):
            print("| " + " | ".join(row) + " |")
        return 0
    path = build(args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    util.run_cli(main)
