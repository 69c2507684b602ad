"""The README cannot drift from the code: every `python X.py ...` line of its bash blocks (and of
report/history.md's, the training notebook it links to) names an existing script and only options that
script's argparse accepts (parsed, never run)."""
import argparse
import importlib.util
import re
import shlex
import sys

import pytest

from conftest import ROOT


DOCS = ("README.md", "report/history.md")          # markdown files whose commands run from the repository root


def readme_commands(doc):
    """(line number, argv after 'python'/'torchrun ...') of each command in ``doc``'s bash blocks."""
    text = (ROOT / doc).read_text()
    commands = []
    for block in re.finditer(r"```bash\n(.*?)```", text, re.S):
        first_line = text[:block.start()].count("\n") + 2
        joined, start = "", None
        for i, line in enumerate(block.group(1).splitlines()):
            start = first_line + i if not joined else start
            joined += line.rstrip("\\").rstrip() + " " if line.rstrip().endswith("\\") else line
            if line.rstrip().endswith("\\"):
                continue
            parts, current = [], []
            for w in shlex.split(joined, comments=True):
                if w in ("&&", ";", "||"):
                    parts.append(current)
                    current = []
                else:
                    current.append(w)
            for words in parts + [current]:
                if "torchrun" in words:
                    words = words[words.index("torchrun") + 1:]
                    words = [w for j, w in enumerate(words) if w.endswith(".py") or j > 0 and
                             any(x.endswith(".py") for x in words[:j])]
                elif "python" in words:
                    words = words[words.index("python") + 1:]
                else:
                    continue
                if words and words[0] not in ("-m", "-c"):
                    commands.append((start, words))
            joined = ""
    return commands


DOC_COMMANDS = [(f"{doc}:{line}", words) for doc in DOCS for line, words in readme_commands(doc)]


class _Parsed(Exception):
    pass


def test_readme_has_commands():
    scripts = {words[0] for where, words in DOC_COMMANDS if where.startswith("README.md:")}
    assert {"demo.py", "train_feedforward.py", "train_rnn.py", "train_seed.py", "evaluate_sdr.py",
            "separate.py", "separate_RNN.py", "export_model.py", "report/build_report.py"} <= scripts


def test_history_has_commands():
    """The training notebook's commands are collected (and so checked below)."""
    assert any(where.startswith("report/history.md:") for where, _ in DOC_COMMANDS)


@pytest.mark.parametrize("line,words", DOC_COMMANDS, ids=[where for where, _ in DOC_COMMANDS])
def test_readme_command_parses(line, words, monkeypatch):
    script, argv = words[0], words[1:]
    assert "..." not in " ".join(words), f"{line}: placeholder '...' left in the command"
    path = ROOT / script
    assert path.is_file(), f"{line}: {script} does not exist"
    if "--resume" in argv and not (ROOT / argv[argv.index("--resume") + 1] / "last.pt").exists():
        # a resume reads its run folder (absent on a fresh clone): only the changeable options may follow
        import training
        allowed = {"--" + k.replace("_", "-") for k in training.RESUME_MAY_CHANGE}
        assert {w for w in argv if w.startswith("--")} <= allowed, f"{line}: {' '.join(words)}"
        return
    real_parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        ns = real_parse(self, args, namespace)
        raise _Parsed(ns)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.syspath_prepend(str(path.parent))
    spec = importlib.util.spec_from_file_location(f"readme_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)          # dataclasses look their module up
    monkeypatch.setattr(sys, "argv", [str(path), *argv])
    spec.loader.exec_module(module)
    with pytest.raises(_Parsed):
        try:
            module.main(argv)
        except SystemExit as e:            # argparse refused an option: name it
            pytest.fail(f"{line}: {' '.join(words)} -> argparse exit {e.code}")


@pytest.mark.parametrize("name", ["mir1k_test_public", "mir1k_test_public_p1.5", "music_excerpts"])
def test_readme_results_tables_equal_the_committed_json(name):
    """The README's results tables are the committed summary.json's rows (report/build_report.py
    --markdown prints them), so the README cannot show other numbers than results/."""
    sys.path.insert(0, str(ROOT / "report"))
    import build_report
    loaded = build_report.load_set(name)
    if loaded is None:
        pytest.skip(f"no results/{name}")
    text = (ROOT / "README.md").read_text()
    for row in build_report.table_rows(loaded[0], "vocals"):
        assert "| " + " | ".join(row) + " |" in text, f"README lacks the {name} row {row}"


def lever_table_and_readme(table_fn: str, folder: str):
    """(build_report.<table_fn>(), the README's text); skips when the lever's results are absent."""
    sys.path.insert(0, str(ROOT / "report"))
    import build_report
    table = getattr(build_report, table_fn)()
    if not table:
        pytest.skip(f"no {folder}")
    return table, (ROOT / "README.md").read_text()


def test_readme_mask_power_table_equals_the_committed_json():
    """The README's post-processing table shows results/mask_power's vocals GNSDR, no other numbers."""
    table, text = lever_table_and_readme("mask_power_table", "results/mask_power")
    label = {"valid": "valid", "cross_singer": "new singer"}
    for (name, system), by_power in table.items():
        if system == "Wave-U-Net":                     # no mask: the same number in every column
            continue
        row = f"| {label[name]} | {system} | " + " | ".join(f"{by_power[p][0]:.2f}" for p in sorted(by_power)) + " |"
        assert row in text, f"README lacks the mask-power row {row}"


def test_readme_shifts_table_equals_the_committed_json():
    """The README's shift-averaging table shows results/shifts' numbers, no other."""
    table, text = lever_table_and_readme("shifts_table", "results/shifts")
    systems = list(table)
    for n in sorted(table[systems[0]]):
        row = f"| {n} | " + " | ".join(f"{table[s][n][0]:.2f} / {table[s][n][1]:.2f}" for s in systems) + " |"
        assert row in text, f"README lacks the shifts row {row}"


def test_readme_semitones_table_equals_the_committed_json():
    """The README's transposition-averaging table shows results/transposition's numbers, no other."""
    table, text = lever_table_and_readme("semitones_table", "results/transposition")
    header, rows = __import__("build_report").count_rows(table)
    for row in rows:
        line = "| " + " | ".join(row) + " |"
        assert line in text, f"README lacks the transposition row {line}"


def test_readme_transposition_mean_row_quotes_the_committed_json():
    """The README's lever-table row for --transposition-mean quotes results/transposition_mean's pairs
    (geometric vs arithmetic) for every excerpt median and every validation score it names."""
    table, text = lever_table_and_readme("transposition_mean_table", "results/transposition_mean")
    row = next(line for line in text.splitlines() if line.startswith("| the geometric mean of the transposed"))
    named = ("RNN", "DRNN", "GRU-IRM", "Hourglass")
    pairs = [v for (name, system), v in table.items()
             if name == "excerpts median" or (name == "validation" and system.split(" (")[0] in named)]
    assert len(pairs) >= 12
    for v in pairs:
        assert f"{v['geometric']:.2f} vs {v['arithmetic']:.2f}" in row, v
    new = [v for (name, _), v in table.items() if name == "new voice"]
    assert (", ".join(f"{v['geometric']:.2f}" for v in new) + " vs "
            + ", ".join(f"{v['arithmetic']:.2f}" for v in new)) in row


def test_readme_input_rms_table_equals_the_committed_json():
    """The README's Wave-U-Net input-level table shows results/waveunet_input_rms' numbers, no other."""
    table, text = lever_table_and_readme("input_rms_table", "results/waveunet_input_rms")
    for rms, valid, excerpts, quiet in table:
        row = f"| {'off' if rms is None else f'{rms:g}'} | {valid:.2f} | {excerpts:.2f} | {quiet:.2f} |"
        assert row in text, f"README lacks the input-level row {row}"


def test_readme_ensemble_mean_table_equals_the_committed_json():
    """The README's --ensemble-mean table shows results/ensemble_mean's (and the cross-singer A/B's) numbers."""
    table, text = lever_table_and_readme("ensemble_mean_table", "results/ensemble_mean")
    text = text.replace("**", "")
    for (label, system), by_mean in table.items():
        row = f"| {label} | {system} | {by_mean.get('geometric', '-')} | {by_mean.get('arithmetic', '-')} |"
        assert row in text, f"README lacks the ensemble-mean row {row}"
