"""The listening page of an evaluation (``evaluate_sdr.py --out DIR --html``): ``DIR/index.html``.

A self-contained folder that opens from disk (no server, no network: the style and the script
are inline, audio and pictures sit beside the page):

* the summary table (the numbers of ``summary.json``: every system, the mixture and oracle rows),
  sortable by clicking a column heading;
* one row per track, worst first (sorted by the first system's vocals SDR), with SDR/SIR/SAR per
  system, audio players for the mixture, the true vocals and each model's (and the first oracle
  mask's) vocals and accompaniment on the same excerpt (the ``seconds`` with the most vocal
  energy), encoded as small OGG Vorbis files (about 300 kB a track), and a spectrogram thumbnail
  of mixture / true vocals / each of those estimates.

Opened as ``index.html?selftest`` the page checks itself: it waits for every ``<audio>`` to load
its metadata and writes ``{"errors": [...], "audio": [durations]}`` into ``<pre id=selftest>``
(what the browser test of tests/test_listening_page.py reads from headless Chromium).

:func:`save_track_media` runs in the evaluation workers (it has the estimates in memory);
:func:`write_page` assembles the page from the rows and the summary afterwards.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import soundfile as sf

import util

VORBIS_QUALITY = 0.8          # soundfile's compression_level for OGG Vorbis (0 best .. 1 smallest): ~22 kbit/s


def slug(text: str) -> str:
    """A file-name-safe version of a track or system name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "x"


def loudest_excerpt(vocals: np.ndarray, sample_rate: int, seconds: float) -> tuple[int, int]:
    """(start, stop) of the ``seconds``-long window with the most vocal energy (whole signal if shorter)."""
    n = len(vocals)
    width = min(n, max(1, int(seconds * sample_rate)))
    energy = np.concatenate([[0.0], np.cumsum(vocals.astype(np.float64) ** 2)])
    sums = energy[width:] - energy[:-width]
    start = int(np.argmax(sums)) if len(sums) else 0
    return start, start + width


def _write_ogg(path: Path, x: np.ndarray, sample_rate: int):
    peak = float(np.abs(x).max()) if x.size else 0.0
    x = x / peak * 0.98 if peak > 0.98 else x            # Vorbis has no clipping of its own to rely on
    sf.write(str(path), x.astype(np.float32), sample_rate, format="OGG", subtype="VORBIS",
             compression_level=VORBIS_QUALITY)


def save_track_media(folder: Path, index: int, track: str, sources: np.ndarray, estimates: dict,
                     sample_rate: int, seconds: float) -> dict:
    """Write a track's excerpt audio and spectrogram thumbnail into ``folder/media``.

    sources (2, N) true vocals/accompaniment; estimates {system: (2, N)}. Returns
    {"excerpt": [start_s, stop_s], "audio": {label: relative path}, "image": relative path}."""
    media = folder / "media"
    media.mkdir(parents=True, exist_ok=True)
    start, stop = loudest_excerpt(sources[0], sample_rate, seconds)
    stem = f"{index:04d}-{slug(track)}"
    clips = {"mixture": sources.sum(0), "true vocals": sources[0]}
    shown = [s for s in estimates if s != "mixture" and not s.startswith("oracle")]
    shown += [s for s in estimates if s.startswith("oracle")][:1]     # the first oracle: the ceiling
    for system in shown:
        clips[f"{system} vocals"] = estimates[system][0]
        clips[f"{system} accompaniment"] = estimates[system][1]
    audio = {}
    for label, x in clips.items():
        name = f"{stem}-{slug(label)}.ogg"
        _write_ogg(media / name, x[start:stop], sample_rate)
        audio[label] = f"media/{name}"
    image = f"media/{stem}.png"
    _spectrograms(media / f"{stem}.png", [("mixture", clips["mixture"][start:stop]),
                                           ("true vocals", clips["true vocals"][start:stop])]
                  + [(f"{s} vocals", estimates[s][0][start:stop]) for s in shown],
                  sample_rate)
    return {"excerpt": [start / sample_rate, stop / sample_rate], "audio": audio, "image": image}


def _spectrograms(path: Path, signals, sample_rate: int):
    """A small PNG: one log-magnitude spectrogram per signal, side by side, same colour scale."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.signal import stft

    n = len(signals)
    fig, axes = plt.subplots(1, n, figsize=(1.25 * n, 1.2), squeeze=False)
    specs = [20 * np.log10(np.abs(stft(x, sample_rate, nperseg=512, noverlap=384)[2]) + 1e-6) for _, x in signals]
    top = max(float(s.max()) for s in specs)
    for ax, (label, _), spec in zip(axes[0], signals, specs):
        ax.imshow(spec, origin="lower", aspect="auto", vmin=top - 80, vmax=top, cmap="magma")
        ax.set_title(label, fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=64, metadata={"Software": None})
    plt.close(fig)


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; vertical-align: top; }
th { background: #f3f3f3; cursor: pointer; user-select: none; }
td:first-child, th:first-child { text-align: left; }
tr.floor td { color: #777; } tr.oracle td { color: #357; }
.track { border-top: 2px solid #888; margin-top: 1.2em; padding-top: 0.6em; }
.players { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 4px 12px; }
.players div { font-size: 12px; } audio { width: 250px; height: 28px; }
img { max-width: 100%; }
"""

_ERRORS = """
window.__errors = [];
window.addEventListener('error', function (e) {
  __errors.push(e.message || ('failed to load ' + (e.target && (e.target.src || e.target.currentSrc))));
}, true);
(function () { var orig = console.error; console.error = function () {
  __errors.push(Array.from(arguments).join(' ')); orig.apply(console, arguments); }; })();
"""

_SELFTEST = """
if (location.search.indexOf('selftest') >= 0) {
  window.addEventListener('load', function () {
    var audios = Array.from(document.querySelectorAll('audio'));
    Promise.all(audios.map(function (a) {
      return new Promise(function (done) {
        if (a.readyState >= 1) { done(a.duration); return; }
        a.addEventListener('loadedmetadata', function () { done(a.duration); });
        a.addEventListener('error', function () { __errors.push('audio error ' + a.src); done(0); });
        a.load();
      });
    })).then(function (durations) {
      var pre = document.createElement('pre'); pre.id = 'selftest';
      pre.textContent = JSON.stringify({errors: __errors, audio: durations});
      document.body.appendChild(pre);
    });
  });
}
"""

_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0], col = th.cellIndex;
    var asc = th.dataset.order !== 'asc';
    table.querySelectorAll('th').forEach(function (h) { delete h.dataset.order; });
    th.dataset.order = asc ? 'asc' : 'desc';
    var rows = Array.from(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v || a.cells[col].textContent;
      var y = b.cells[col].dataset.v || b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def _num(v, nd=2):
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{nd}f}"


def write_page(folder: Path, result: dict, media: dict, row_cells, columns) -> Path:
    """``folder/index.html`` from the evaluation ``result`` (meta, summary, rows) and the
    per-track ``media`` of :func:`save_track_media`; ``row_cells``/``columns`` are evaluate_sdr's
    table formatter, so the page shows exactly the printed numbers."""
    meta, summary, rows = result["meta"], result["summary"], result["rows"]
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Separation results: {e(meta['data'])}</title>",
             f"<style>{_STYLE}</style><script>{_ERRORS}</script></head><body>",
             f"<h1>Separation results</h1><p>{e(meta['data'])} [{e(meta['split'])}]: {meta['tracks']} tracks, "
             f"{meta['audio_seconds'] / 60:.1f} min, evaluated at {meta['sample_rate']} Hz. {e(meta['convention'])}."
             "</p>"]
    for source in ("vocals", "accompaniment"):
        parts.append(f"<h2>Summary: {source}</h2><table class='sortable summary' data-source='{source}'><thead><tr>"
                     + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr></thead><tbody>")
        for system, s in summary.items():
            if source not in s:
                continue
            kind = "floor" if system == "mixture" else "oracle" if system.startswith("oracle") else "model"
            cells = row_cells(system, s, meta["systems"].get(system, {}), source)
            parts.append(f"<tr class='{kind}'>" + "".join(
                f"<td data-v='{e(c.replace(',', ''))}'>{e(c)}</td>" for c in cells) + "</tr>")
        parts.append("</tbody></table>")
    oracles = [s for s in summary if s.startswith("oracle")]
    models = [s for s in summary if s != "mixture" and not s.startswith("oracle")]
    systems = models + oracles[:1]                     # per track: the models and the first oracle
    models = models or systems
    by_track = {}
    for r in rows:
        if r["source"] == "vocals":
            by_track.setdefault(r["track"], {})[r["system"]] = r
    order = sorted(by_track, key=lambda t: by_track[t].get(models[0], {}).get("sdr", np.inf))
    parts.append(f"<h2>Tracks, worst first (by {e(models[0])} vocals SDR)</h2>"
                 "<table class='sortable tracks'><thead><tr><th>track</th>"
                 + "".join(f"<th>{e(s)} SDR</th><th>SIR</th><th>SAR</th>" for s in ["mixture", *systems])
                 + "</tr></thead><tbody>")
    anchor = {t: f"t{i}-{slug(t)}" for i, t in enumerate(order)}    # unique even when two names slug alike
    for t in order:
        parts.append(f"<tr><td><a href='#{anchor[t]}'>{e(t)}</a></td>" + "".join(
            f"<td>{_num(by_track[t].get(s, {}).get(k))}</td>" for s in ["mixture", *systems]
            for k in ("sdr", "sir", "sar")) + "</tr>")
    parts.append("</tbody></table>")
    for t in order:
        m = media.get(t)
        if not m:
            continue
        a, b = m["excerpt"]
        parts.append(f"<div class='track' id='{anchor[t]}'><h3>{e(t)}</h3><p>excerpt {a:.1f}-{b:.1f} s (the "
                     f"{b - a:.0f} s with the most vocal energy); vocals SDR: "
                     + ", ".join(f"{e(s)} {_num(by_track[t].get(s, {}).get('sdr'))} dB" for s in ["mixture", *systems])
                     + "</p><div class='players'>")
        for label, src in m["audio"].items():
            parts.append(f"<div>{e(label)}<br><audio controls preload='metadata' src='{e(src)}'></audio></div>")
        parts.append(f"</div><img loading='lazy' src='{e(m['image'])}' alt='spectrograms of {e(t)}'></div>")
    parts.append(f"<script>{_SCRIPT}{_SELFTEST}</script></body></html>\n")
    page = folder / "index.html"
    text = "".join(parts)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    util.atomic_write(page, write)
    return page
