"""evaluate_sdr.py --html: the listening page's numbers equal summary.json, its media exist, and a
real browser (headless Chromium, skipped when absent) loads it without errors."""
import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
import soundfile as sf

import evaluate_sdr
import listening_page
import util
from conftest import write_stems


class _Tables(HTMLParser):
    """Rows of the summary tables: {source: [[cell, ...], ...]}, and every audio/img src."""

    def __init__(self):
        super().__init__()
        self.tables, self.sources, self._source, self._row, self._cell = {}, [], None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "summary" in (attrs.get("class") or ""):
            self._source = attrs["data-source"]
            self.tables[self._source] = []
        elif tag == "tr" and self._source:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = ""
        elif tag in ("audio", "img"):
            self.sources.append(attrs["src"])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row:
            self.tables[self._source].append(self._row)
            self._row = None
        elif tag == "table":
            self._source = None


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    import torch

    import Model
    tmp = tmp_path_factory.mktemp("html")
    for i in range(3):
        write_stems(tmp / "songs" / f"track {i}", ("vocals", "accompaniment"), sr=8000, seconds=2.0, seed=i)
    torch.manual_seed(0)
    model = Model.FrameMaskNet(129, (16,), 8, dropout=0.0).eval()
    util.save_checkpoint(tmp / "ff.pt", model, util.make_stft(256, 64), 8000)
    out = tmp / "eval"
    code = evaluate_sdr.main(["--model", str(tmp / "ff.pt"), "--name", "tiny", "--data", str(tmp / "songs"),
                              "--out", str(out), "--html", "--html-seconds", "1", "--jobs", "1", "--quiet",
                              "--cache-dir", str(tmp / "cache")])
    assert code == 0
    return out


def test_page_numbers_equal_summary_json(page):
    parsed = _Tables()
    parsed.feed((page / "index.html").read_text())
    summary = json.loads((page / "summary.json").read_text())
    for source in ("vocals", "accompaniment"):
        want = [evaluate_sdr.row_cells(system, s, summary["meta"]["systems"].get(system, {}), source)
                for system, s in summary["summary"].items()]
        assert parsed.tables[source] == want
    assert {"mixture", "tiny", "oracle IRM", "oracle PSM"} <= {row[0] for row in parsed.tables["vocals"]}


def test_page_media_exist_and_are_short_ogg(page):
    parsed = _Tables()
    parsed.feed((page / "index.html").read_text())
    audio = [s for s in parsed.sources if s.endswith(".ogg")]
    assert len(audio) == 3 * 6                      # mixture, true vocals, tiny and IRM vocals/accomp.
    for src in audio:
        info = sf.info(str(page / src))
        assert info.format == "OGG" and 0.9 < info.duration < 1.1
    assert all((page / s).is_file() for s in parsed.sources if s.endswith(".png"))


def test_html_needs_out(capsys):
    with pytest.raises(SystemExit) as e:
        util.run_cli(evaluate_sdr.main, ["--html"])
    assert e.value.code == 2 and "--out" in capsys.readouterr().err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium)")
def test_page_in_a_real_browser(page, tmp_path):
    """Headless Chromium opens the page from disk: no console or load errors, every <audio>
    loads (duration > 0), and a screenshot is taken."""
    url = (page / "index.html").as_uri()
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'p1'}", "--virtual-time-budget=20000",
                          "--dump-dom", url + "?selftest"], capture_output=True, text=True, timeout=120).stdout
    start = dom.index('<pre id="selftest">') + len('<pre id="selftest">')
    result = json.loads(dom[start:dom.index("</pre>", start)].replace("&quot;", '"'))
    assert result["errors"] == []
    assert len(result["audio"]) == 18 and all(d > 0.5 for d in result["audio"])
    shot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'p2'}", "--window-size=1000,900",
                    f"--screenshot={shot}", url], capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_track_anchors_are_unique_when_names_slug_alike(tmp_path):
    """Two tracks whose names make the same slug (``a<b>&c`` and ``a_b_c``) get their own anchors, and
    every link of the tracks table lands on exactly one section."""
    import re

    import torch

    import Model
    for i, name in enumerate(["a<b>&c", "a_b_c"]):
        write_stems(tmp_path / "songs" / name, ("vocals", "accompaniment"), sr=8000, seconds=2.0, seed=i)
    torch.manual_seed(0)
    util.save_checkpoint(tmp_path / "ff.pt", Model.FrameMaskNet(129, (16,), 8, dropout=0.0).eval(),
                         util.make_stft(256, 64), 8000)
    assert evaluate_sdr.main(["--model", str(tmp_path / "ff.pt"), "--data", str(tmp_path / "songs"), "--out",
                              str(tmp_path / "eval"), "--html", "--html-seconds", "1", "--jobs", "1", "--quiet",
                              "--oracle", "--cache-dir", str(tmp_path / "cache")]) == 0
    text = (tmp_path / "eval" / "index.html").read_text()
    links = re.findall(r"href='#([^']+)'", text)
    ids = re.findall(r"class='track' id='([^']+)'", text)
    assert len(links) == 2 and sorted(links) == sorted(ids) and len(set(ids)) == 2


NODE = shutil.which("node")

_FAKE_DOM = """
function table(rows) {            // rows of numbers; the header row's cells know their own column
  var ths = rows[0].map(function (_, i) { return {cellIndex: i, dataset: {}, on: null,
    addEventListener: function (e, f) { this.on = f; }, closest: function () { return t; }}; });
  var body = {rows: rows.map(function (r) { return {cells: r.map(function (v) {
    return {dataset: {v: String(v)}, textContent: String(v)}; })}; }),
    appendChild: function (r) { this.rows.splice(this.rows.indexOf(r), 1); this.rows.push(r); }};
  var t = {tBodies: [body], ths: ths, querySelectorAll: function () { return ths; }};
  return t;
}
var tables = [table([[1, 9], [2, 8]]), table([[5, 3, 7], [6, 2, 1], [4, 1, 8]])];
var document = {querySelectorAll: function () { return tables[0].ths.concat(tables[1].ths); }};
"""


@pytest.mark.skipif(NODE is None, reason="node not installed")
def test_every_tables_headings_sort_their_own_column(tmp_path):
    """Click-to-sort works in every table of the page (headings were numbered across the page, so every
    table after the first sorted on a column it does not have and failed)."""
    script = tmp_path / "sort.js"
    script.write_text(_FAKE_DOM + listening_page._SCRIPT + """
tables[1].ths[2].on();
console.log(JSON.stringify(tables[1].tBodies[0].rows.map(function (r) { return r.cells[2].textContent; })));
tables[1].ths[2].on();
console.log(JSON.stringify(tables[1].tBodies[0].rows.map(function (r) { return r.cells[2].textContent; })));
""")
    out = subprocess.run([NODE, str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['["1","7","8"]', '["8","7","1"]']       # ascending, then descending
