"""The report PDF's tables equal the evaluation JSON."""
import json
import re
import shutil
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "report"))
import build_report  # noqa: E402


def _pdf_text(path):
    """Text drawn in an uncompressed fpdf2 PDF: the operands of its Tj operators."""
    raw = path.read_bytes().decode("latin-1")
    return [m.replace("\\(", "(").replace("\\)", ")") for m in re.findall(r"\((.*?)(?<!\\)\)\s*Tj", raw)]


def _fake_summary(systems):
    summary = {}
    for i, name in enumerate(systems):
        summary[name] = {src: {"tracks": 2, "GNSDR": 1.234 * i, "GSIR": 10 + i / 3, "GSAR": 5 - i / 7,
                               "mean_SDR": 2.5 + i, "median_SDR": 2.25 + i, "mean_SIR": 0, "mean_SAR": 0}
                         for src in ("vocals", "accompaniment")}
        summary[name]["speed_x_realtime"] = 123.4 if i else None
    meta = {"data": "/nonexistent", "split": "test", "tracks": 2, "audio_seconds": 60.0, "sample_rate": 16000,
            "convention": "BSS Eval v3 test", "systems": {"ff": {"parameters": 1234567, "train_seconds": 99.6,
                                                                 "checkpoint": "/nonexistent.pt"}}}
    return {"meta": meta, "summary": summary}


def test_tables_in_pdf_match_json(tmp_path, monkeypatch):
    results = tmp_path / "results"
    for name in ("mir1k_test_public", "music_excerpts"):
        (results / name).mkdir(parents=True)
        summary = _fake_summary(["mixture", "ff", "oracle IRM"])
        (results / name / "summary.json").write_text(json.dumps(summary))
        rows = "track,system,source,samples,sdr,sir,sar,seconds\n" + "".join(
            f"t{t},{s},vocals,100,{t + k * 0.5:.3f},0,0,0\n" for t in range(2) for k, s in
            enumerate(["mixture", "ff", "oracle IRM"]))
        (results / name / "tracks.csv").write_text(rows)
    monkeypatch.setattr(build_report, "RESULTS", results)
    monkeypatch.setattr(build_report, "MODELS", tmp_path / "models")
    pdf = build_report.build(tmp_path / "report.pdf")
    text = _pdf_text(pdf)
    summary = json.loads((results / "mir1k_test_public" / "summary.json").read_text())
    for row in build_report.table_rows(summary):
        start = text.index(row[0], text.index("GNSDR"))
        assert text[start:start + len(row)] == row           # the row's cells, in order
    assert "2.47" in text and "1,234,567" in text and "100" in text   # GNSDR of ff*2... , params, train s rounded
    header, per_track = build_report.per_track_rows(
        [dict(zip(["track", "system", "source", "samples", "sdr"], line.split(",")[:5]))
         for line in (results / "music_excerpts" / "tracks.csv").read_text().splitlines()[1:]])
    assert per_track[1] == ["t1", "1.00", "1.50", "2.00"]
    # deterministic: the same inputs give the same bytes; a new results folder gets its table too
    assert build_report.build(tmp_path / "again.pdf").read_bytes() == pdf.read_bytes()
    shutil.copytree(results / "music_excerpts", results / "dsd100")
    assert any("results/dsd100" in t for t in _pdf_text(build_report.build(tmp_path / "more.pdf")))


@pytest.mark.skipif(not (ROOT / "results" / "mir1k_test_public" / "summary.json").exists(),
                    reason="no committed MIR-1K results")
def test_committed_report_matches_committed_results(tmp_path):
    """The committed report/report.pdf shows exactly the committed results' numbers."""
    text = _pdf_text(ROOT / "report" / "report.pdf")
    for name, _ in build_report.SETS:
        path = ROOT / "results" / name / "summary.json"
        if path.exists():
            for row in build_report.table_rows(json.loads(path.read_text())):
                assert row[0] in text
                i = [k for k, t in enumerate(text) if t == row[0] and text[k:k + len(row)] == row]
                assert i, f"{name}: row {row} not in the PDF"


def test_mask_power_lever_table(tmp_path, monkeypatch):
    results = tmp_path / "results"
    (results / "mir1k_test_public").mkdir(parents=True)
    (results / "mir1k_test_public" / "summary.json").write_text(json.dumps(_fake_summary(["mixture", "ff"])))
    (results / "mir1k_test_public" / "tracks.csv").write_text("track,system,source,samples,sdr,sir,sar,seconds\n")
    for power, scale in (("1", 1.0), ("1.5", 2.0)):
        summary = _fake_summary(["mixture", "ff", "oracle IRM"])
        summary["summary"]["ff"]["vocals"]["GNSDR"] *= scale
        (results / "mask_power" / f"cross_singer_p{power}").mkdir(parents=True)
        (results / "mask_power" / f"cross_singer_p{power}" / "summary.json").write_text(json.dumps(summary))
    monkeypatch.setattr(build_report, "RESULTS", results)
    monkeypatch.setattr(build_report, "MODELS", tmp_path / "models")
    assert build_report.mask_power_table() == {("cross_singer", "ff"): {1.0: (1.234, 1.234), 1.5: (2.468, 1.234)}}
    text = _pdf_text(build_report.build(tmp_path / "report.pdf"))
    i = text.index("vocals p=1.5")
    assert ["cross_singer", "ff", "1.23", "2.47", "1.23", "1.23"] == text[i + 3:i + 9]


def test_training_levers_table(tmp_path, monkeypatch):
    results = tmp_path / "results"
    (results / "mir1k_test_public").mkdir(parents=True)
    (results / "mir1k_test_public" / "summary.json").write_text(json.dumps(_fake_summary(["mixture", "ff"])))
    (results / "mir1k_test_public" / "tracks.csv").write_text("track,system,source,samples,sdr,sir,sar,seconds\n")
    (results / "training_levers" / "excerpts").mkdir(parents=True)
    hist = {"train_args": {"samples_per_epoch": 1920, "eq_db": 6.0, "vocal_reverb": 0.5, "ema": 0.998},
            "best_epoch": 2,
            "valid": [{"epoch": 1, "loss": 50.0, "gnsdr": 8.0}, {"epoch": 2, "loss": 41.04, "gnsdr": 9.687},
                      {"epoch": 3, "loss": 44.0, "gnsdr": 9.9}]}
    (results / "training_levers" / "rnn-eq6_history.json").write_text(json.dumps(hist))
    (results / "training_levers" / "excerpts" / "results.json").write_text(
        json.dumps({"median": {"rnn-eq6.pt": {"mixture": -4.6, "top-mean": 5.204}}}))
    (results / "training_levers" / "drnn-eq6_history.json").write_text(json.dumps(hist))
    (results / "training_levers" / "excerpts-later").mkdir()          # a later bench run: its rows join in
    (results / "training_levers" / "excerpts-later" / "results.json").write_text(
        json.dumps({"median": {"drnn-eq6.pt": {"mixture": -4.6, "top-mean": 3.456}}}))
    monkeypatch.setattr(build_report, "RESULTS", results)
    monkeypatch.setattr(build_report, "MODELS", tmp_path / "models")
    text = _pdf_text(build_report.build(tmp_path / "report.pdf"))
    assert text[text.index("drnn-eq6") + 10] == "3.46"
    i = text.index("rnn-eq6")
    assert text[i:i + 11] == ["rnn-eq6", "1920", "6", "0.5", "0", "0.998", "3", "2", "41.0", "9.69", "5.20"]


def test_excerpt_records_of_later_sessions_override_earlier_ones():
    names = ["excerpts-session9b", "excerpts", "excerpts-session14", "excerpts-session10", "excerpts-session9"]
    paths = sorted((build_report.RESULTS / "training_levers" / n / "results.json" for n in names),
                   key=build_report.session_order)
    assert [p.parent.name for p in paths] == ["excerpts", "excerpts-session9", "excerpts-session9b",
                                              "excerpts-session10", "excerpts-session14"]


def test_a_history_continued_on_another_loss_plots_each_loss_in_its_own_units(tmp_path, monkeypatch):
    """The Wave-U-Net was trained on MSE, then continued on minus the SDR (negative, in dB): the
    merged history says where the loss changed, and the figures plot only what has a meaning."""
    import export_model
    old = {"loss": "mse", "best_epoch": 2, "smoothed": [0.02, 0.01, 0.008, 0.007], "epoch_time": [120, 120, 120],
           "valid": [{"epoch": 1, "step": 2, "loss": 0.01, "gnsdr": 3.0},
                     {"epoch": 2, "step": 4, "loss": 0.008, "gnsdr": 4.0},
                     {"epoch": 3, "step": 6, "loss": 0.009, "gnsdr": 3.5}]}
    new = {"loss": "sdr", "best_epoch": 2, "smoothed": [-3.0, -4.0, -5.0, -6.0], "epoch_time": [120, 120],
           "valid": [{"epoch": 1, "step": 2, "loss": -5.0, "gnsdr": 5.0},
                     {"epoch": 2, "step": 4, "loss": -6.0, "gnsdr": 6.0}]}
    merged = export_model.continued_history(old, new, "old.json")
    assert merged["loss"] == "sdr" and merged["continued_from"]["loss"] == "mse"
    assert export_model.current_loss_span(merged) == (2, 4)
    assert export_model.current_loss_span(export_model.continued_history(old, dict(new, loss="mse"), "o")) == (0, 0)
    # continued again on the same loss (the RNN: KL, then SDR, then SDR): the KL part stays marked
    again = export_model.continued_history(merged, dict(new, best_epoch=1), "merged.json")
    assert again["continued_from"]["epochs"] == 4 and again["continued_from"]["earlier_loss"]["loss"] == "mse"
    assert export_model.current_loss_span(again) == (2, 4)
    assert export_model.earlier_loss(again) == ("mse", 2, 4)
    models = tmp_path / "models"
    models.mkdir()
    (models / "waveunet_history.json").write_text(json.dumps(merged))
    monkeypatch.setattr(build_report, "MODELS", models)
    import matplotlib.pyplot as plt
    plotted = []
    real_plot = plt.Axes.plot
    monkeypatch.setattr(plt.Axes, "plot", lambda ax, *a, **k: plotted.append(
        (ax.get_ylabel(), list(a[0]), list(a[1]))) or real_plot(ax, *a, **k))
    assert build_report.plot_losses(tmp_path).exists()
    assert ("", [4, 5, 6, 7], [-3.0, -4.0, -5.0, -6.0]) in plotted          # training, sdr part only
    assert ("", [6, 8], [-5.0, -6.0]) in plotted                             # validation, sdr part only
    plotted.clear()
    assert build_report.plot_learning_curves(tmp_path, build_report.histories()).exists()
    mse_line, sdr_loss_line, sdr_line = plotted         # each loss's stretch as its improvement (L_1 - L) / |L_1|
    assert mse_line[1] == [2.0, 4.0] and mse_line[2] == pytest.approx([0.0, 0.2])       # minutes: 2-min epochs
    assert sdr_loss_line[1] == [6.0, 8.0] and sdr_loss_line[2] == pytest.approx([0.0, 0.2])   # negative: still up
    assert sdr_line[1] == [2.0, 4.0, 6.0, 8.0] and sdr_line[2] == [3.0, 4.0, 5.0, 6.0]


def test_formant_ab_compares_over_the_epochs_both_ran(tmp_path, monkeypatch):
    results = tmp_path / "results"
    (results / "mir1k_test_public").mkdir(parents=True)
    (results / "mir1k_test_public" / "summary.json").write_text(json.dumps(_fake_summary(["mixture", "ff"])))
    (results / "mir1k_test_public" / "tracks.csv").write_text("track,system,source,samples,sdr,sir,sar,seconds\n")

    def history(gnsdr, **args):
        valid = [{"epoch": i + 1, "loss": -g, "gnsdr": g} for i, g in enumerate(gnsdr)]
        return json.dumps({"train_args": {"filters": [50, 30], "bottleneck": 128, **args},
                           "best_epoch": 1 + gnsdr.index(max(gnsdr)), "valid": valid})

    (results / "ab_cnn_size").mkdir(parents=True)
    (results / "ab_cnn_size" / "cnn-50-30-128_history.json").write_text(history([4.0, 4.5, 5.0, 5.1, 5.9, 6.0]))
    (results / "ab_formant").mkdir(parents=True)
    (results / "ab_formant" / "cnn-formant-0.15_history.json").write_text(
        history([4.2, 4.4, 5.1, 5.3], vocal_formant=0.15))
    monkeypatch.setattr(build_report, "RESULTS", results)
    monkeypatch.setattr(build_report, "MODELS", tmp_path / "models")
    text = " ".join(_pdf_text(build_report.build(tmp_path / "report.pdf")))
    assert ("--vocal-formant 0.15: 5.30 dB best over its 4 epochs against 5.10 without; mean of epochs 1-4 4.75 "
            "against 4.65") in " ".join(text.split())


def test_training_rows_count_minutes_to_the_best_epoch_and_in_all():
    hist = {"RNN": {"smoothed": [0.0] * 1234, "epoch_time": [90, 150, 60], "best_epoch": 2, "valid": []}}
    summary = {"summary": {"RNN": {"vocals": {"GNSDR": 9.314, "GSIR": 15.5, "GSAR": 11.2}}}}
    assert build_report.training_rows(hist, summary) == [["RNN", "1,234", "4", "5", "2 of 3", "9.31", "15.50", "11.20"]]
    assert build_report.training_rows(hist, None)[0][-3:] == ["-", "-", "-"]


def test_transposition_weights_table(tmp_path, monkeypatch):
    """The bench's results: GNSDR averaged over a set's models, the excerpts' median SDR, a missing set as '-'."""
    results = tmp_path / "results"
    (results / "mir1k_test_public").mkdir(parents=True)
    (results / "mir1k_test_public" / "summary.json").write_text(json.dumps(_fake_summary(["mixture", "ff"])))
    (results / "mir1k_test_public" / "tracks.csv").write_text("track,system,source,samples,sdr,sir,sar,seconds\n")
    folder = results / "transposition_weights"
    for name, gnsdr, median in (("new_voice", {"uniform 4": {"a": 8.0, "b": 9.0}, "median": {"a": 8.5, "b": 9.1}},
                                 {"uniform 4": {"a": 1.0, "b": 1.0}, "median": {"a": 1.0, "b": 1.0}}),
                                ("excerpts16", {"uniform 4": {"m": 10.0}, "median": {"m": 9.0}},
                                 {"uniform 4": {"m": 6.55}, "median": {"m": 6.26}})):
        (folder / name).mkdir(parents=True)
        (folder / name / "results.json").write_text(json.dumps({"gnsdr": gnsdr, "median_sdr": median, "rows": []}))
    monkeypatch.setattr(build_report, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(build_report, "MODELS", tmp_path / "models")
    assert build_report.transposition_weights_table() == {"uniform 4": {"new voice": 8.5, "excerpts": 6.55},
                                                          "median": {"new voice": 8.8, "excerpts": 6.26}}
    text = _pdf_text(build_report.build(tmp_path / "report.pdf"))
    i = text.index("uniform 4")
    assert text[i:i + 8] == ["uniform 4", "8.50", "-", "6.55", "median", "8.80", "-", "6.26"]


def test_hidden_singers_estimate_reads_the_gap_as_a_difference_and_as_a_ratio():
    s = {"Hourglass": {"vocals": {"GNSDR": 11.17}}, "RNN": {"vocals": {"GNSDR": 9.31}}}
    text = build_report.hidden_singers_estimate(s, "Hourglass")
    # 9.31 - 1.9 and 9.31 - 1.5; 9.31 x the mean of 6.42 / 8.11 and 5.47 / 6.93
    assert "RNN 7.41 to 7.81 dB as a difference, 7.36 as a ratio" in text
    assert "Hourglass 9.27 to 9.67 dB as a difference, 8.83 as a ratio" in text
    assert "DRNN" not in text and text.count("Hourglass") == 1
