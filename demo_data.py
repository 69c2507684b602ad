"""Deterministic synthetic demo songs in the DSD100 layout, so the toolkit runs without a dataset.

Every track is a short pop-like excerpt in one key and tempo: a sung melody (``vocals``), a drum kit
(``drums``), a bass line on the chord roots (``bass``) and chords / arpeggios (``other``).
Written under ``root`` as mono 16-bit PCM WAV at ``sample_rate`` Hz::

    root/Mixtures/{Dev,Test}/NNN - Demo Song NNN/mixture.wav
    root/Sources/{Dev,Test}/NNN - Demo Song NNN/{vocals,bass,drums,other}.wav
    root/demo_dataset.json   # generation parameters; written last, marks the dataset complete

mixture = vocals + bass + drums + other (up to 16-bit rounding).  Same seed -> identical files.
Python: ``make_demo_dataset("data/demo")``; shell: ``python demo_data.py --root data/demo``.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

import util

STEMS = ("vocals", "bass", "drums", "other")
DEMO_ROOT = Path(__file__).resolve().parent / "data" / "demo"      # where the tools generate and find it
MARKER = "demo_dataset.json"
VERSION = 1
# Vowel formant frequencies F1..F5 and bandwidths (Hz) of an adult male singer (Csound "tenor"
# formant table); other voices scale the frequencies (shorter vocal tract -> higher formants).
VOWELS = {
    "a": ((650, 1080, 2650, 2900, 3250), (80, 90, 120, 130, 140)),
    "e": ((400, 1700, 2600, 3200, 3580), (70, 80, 100, 120, 120)),
    "i": ((290, 1870, 2800, 3250, 3540), (40, 90, 100, 120, 120)),
    "o": ((400, 800, 2600, 2800, 3000), (40, 80, 100, 120, 120)),
    "u": ((350, 600, 2700, 2900, 3300), (40, 60, 100, 120, 120)),
}
# Consonant noise bursts at syllable onsets: (band low Hz, band high Hz, duration s).
CONSONANTS = {"s": (4000, 8000, 0.09), "sh": (2000, 6000, 0.08), "t": (2500, 7000, 0.025), "k": (1200, 4000, 0.03)}
MAJOR, MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)
# Chord progressions as 0-based scale degrees, one chord per bar (e.g. I-V-vi-IV).
PROGRESSIONS = {MAJOR: ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 4, 3)),
                MINOR: ((0, 5, 2, 6), (0, 3, 6, 2), (0, 6, 5, 6))}


def _hz(midi):
    """MIDI note number(s) -> frequency in Hz (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=float) - 69.0) / 12.0)


def _rms(x):
    return float(np.sqrt(np.mean(np.square(x)))) + 1e-12


def _band_noise(rng, n, sr, lo, hi, slope=0.0):
    """Noise band-limited to [lo, hi] Hz (FFT mask) rolling off 6*slope dB/octave above lo; (n,), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    spec *= (np.maximum(f, lo) / lo) ** -slope
    spec[(f < lo) | (f > min(hi, 0.95 * sr / 2))] = 0.0
    x = np.fft.irfft(spec, n)
    return x / _rms(x)


def _wander(rng, n, alpha):
    """Smoothed Gaussian noise (one-pole low-pass, pole ``alpha``), unit std; shape (n,)."""
    x = lfilter([1.0 - alpha], [1.0, -alpha], rng.standard_normal(n))
    return x / (x.std() + 1e-12)


def _add(buf, x, start):
    """Mix ``x`` into ``buf`` starting at sample index ``start`` (truncated at the buffer end)."""
    start = max(int(start), 0)
    seg = x[: max(len(buf) - start, 0)]
    buf[start:start + len(seg)] += seg


@functools.lru_cache(maxsize=128)      # notes repeat a lot: reuse rendered ones (read-only)
def _tone(f0, dur, sr, n_harm=8, tilt=1.0, tau=0.5, attack=0.005, release=0.03, inharm=0.0, detune=0.0):
    """One pitched note of ``dur`` s at ``f0`` Hz; returns shape (int(dur*sr),).

    Additive harmonics k*f0 (k = 1..n_harm, amplitude k**-tilt, stretched by ``inharm`` like a
    piano string); harmonics at or above 0.45*sr are dropped (no aliasing).  Harmonic k decays with
    time constant tau / k**0.7 s (pluck/piano; tau=np.inf gives a sustained pad).  Linear
    attack/release ramps in s; ``detune`` (cents) adds a second, detuned copy (chorus)."""
    n = max(int(dur * sr), 1)
    t = np.arange(n) / sr
    k = np.arange(1, n_harm + 1)[:, None].astype(float)
    out = np.zeros(n)
    for cents in ((0.0,) if detune == 0 else (-detune, detune)):
        fk = k * f0 * 2.0 ** (cents / 1200) * np.sqrt(1.0 + inharm * k ** 2)
        keep = fk[:, 0] < 0.45 * sr
        amp = k[keep] ** -tilt * np.exp(-t / (tau / k[keep] ** 0.7))
        out += (amp * np.sin(2 * np.pi * fk[keep] * t + k[keep])).sum(0)   # phase offset k: no spiky onset
    env = np.clip(np.minimum(t / attack, (n - np.arange(n)) / (release * sr)), 0.0, 1.0)
    out *= env
    out.flags.writeable = False                       # cached and shared between calls
    return out


def _melody(rng, deg_of, prog, n_bars, lo, hi):
    """Sung notes as (start_beat, dur_beats, midi, vowel, consonant, velocity, phrase_start).

    Two-bar phrases over the 4-bar progression, each ending in a 1.5-2.5 beat rest (breath); the
    first phrase waits 2-3 beats (intro).  Pitches: a random walk on the scale inside the voice
    range [lo, hi] (MIDI), snapped to chord tones on most beats; phrases repeat 4 bars later."""
    degs = [d for d in range(90) if lo <= deg_of(d) <= hi]
    d, phrases, notes = degs[len(degs) // 2], {}, []
    for p in range(n_bars // 2 + 1):
        if p >= 2 and p - 2 in phrases and rng.random() < 0.6:      # repeat the phrase of 4 bars ago
            phrases[p] = [(b + 8, *rest) for b, *rest in phrases[p - 2]]
        elif p >= 2 and rng.random() < 0.1:                         # instrumental break
            continue
        else:
            b = 8.0 * p + (rng.choice([2.0, 2.5, 3.0]) if p == 0 else rng.choice([0.0, 0.5, 1.0]))
            end, cur = 8.0 * p + 8.0 - rng.choice([1.5, 2.0, 2.5]), []
            while end - b >= 0.5:
                dur = min(float(rng.choice([0.5, 1.0, 1.5, 2.0], p=[0.35, 0.4, 0.15, 0.1])), end - b)
                d = int(np.clip(d + rng.choice([-2, -1, -1, 0, 1, 1, 2, -3, 3]), degs[0], degs[-1]))
                chord = prog[int(b // 4) % len(prog)]
                if b % 1 == 0 and rng.random() < 0.7:               # chord tone on the beat
                    d = min((x for x in degs if (x - chord) % 7 in (0, 2, 4)), key=lambda x: abs(x - d))
                cur.append((b, dur, deg_of(d), str(rng.choice(list("aaeioou"))),
                            str(rng.choice(["", "", "s", "t", "k", "sh"])), rng.uniform(0.75, 1.0), not cur))
                b += dur
            phrases[p] = cur
        notes += phrases[p]
    return notes


def _vocals(rng, notes, n, sr, beat, female):
    """Sing ``notes`` (see _melody) -> shape (n,) float; exactly 0 outside phrases (except inhales).

    Source-filter model at a 64-sample control rate: f0 contour = note targets + portamento
    (one-pole glide) + delayed vibrato + drift/jitter; glottal source = harmonics k*f0 with a
    k**-tilt spectral tilt, synthesised additively from one phase accumulator; vocal tract = the
    product of 5 formant resonances per vowel evaluated at each harmonic frequency (an exact
    spectral envelope, no filtering), vowels crossfading between syllables."""
    H = 64                                           # control hop (samples)
    T = n // H + 2
    tc = np.arange(T) * H / sr                       # control frame times (s)
    fscale = rng.uniform(1.12, 1.22) if female else rng.uniform(0.92, 1.05)
    tilt, vib_rate, vib_cents = rng.uniform(0.8, 1.3), rng.uniform(5.0, 7.0), rng.uniform(20, 50)
    vib_delay, glide, legato = rng.uniform(0.15, 0.35), rng.uniform(0.02, 0.06), rng.uniform(0.5, 0.9)
    target = np.full(T, float(notes[0][2]))          # MIDI pitch target, held through rests
    gate, since = np.zeros(T), np.zeros(T)           # note on/off level; time since note onset (s)
    F = np.tile(np.array(VOWELS[notes[0][3]][0], float) * fscale, (T, 1))   # (T, 5) formant Hz
    B = np.tile(np.array(VOWELS[notes[0][3]][1], float), (T, 1))            # (T, 5) bandwidths Hz
    for i, (b0, dur, midi, vowel, cons, vel, first) in enumerate(notes):
        a = int((b0 * beat + (0.6 * CONSONANTS[cons][2] if cons else 0.0)) * sr / H)
        if a >= T:                                    # note starts after the end of the clip
            break
        last = i + 1 == len(notes) or notes[i + 1][6] or rng.random() > legato
        e = int(((b0 + dur) * beat - (0.07 if last else 0.0)) * sr / H)     # detached: small gap
        target[a:], F[a:], B[a:] = midi, np.array(VOWELS[vowel][0]) * fscale, VOWELS[vowel][1]
        gate[a:e] = vel
        gate[a:a + int(0.04 * sr / H)] *= 0.5 if cons and not first else 1.0  # syllable dip
        since[a:e] = tc[a:e] - tc[a]
    pole = lambda tau: np.exp(-H / sr / tau)          # one-pole coefficient for a time constant (s)
    al = pole(glide)                                  # portamento: exponential glide in MIDI units
    midi = lfilter([1 - al], [1, -al], target, zi=[al * target[0]])[0]
    al = pole(0.04)                                   # smooth vowel (formant) transitions
    F = lfilter([1 - al], [1, -al], F, axis=0, zi=al * F[:1])[0]
    B = lfilter([1 - al], [1, -al], B, axis=0, zi=al * B[:1])[0]
    L = max(int(0.05 * sr / H), 1)                    # attack/release ramps: causal box smoothing
    env = np.convolve(gate, np.ones(L) / L)[:T]       # (exactly 0 where the gate has been 0 for L frames)
    vib_phase = 2 * np.pi * np.cumsum(vib_rate * (1 + 0.05 * _wander(rng, T, pole(0.5)))) * H / sr
    midi = (midi + vib_cents / 100 * np.clip((since - vib_delay) / 0.25, 0, 1) * np.sin(vib_phase)
            + 0.08 * _wander(rng, T, pole(0.3)) + 0.04 * rng.standard_normal(T))   # drift + jitter
    env *= 1 + 0.06 * _wander(rng, T, pole(0.01))    # shimmer
    f0 = _hz(midi)                                    # (T,) Hz
    K = int(0.47 * sr / f0.min())
    fk = np.arange(1, K + 1)[:, None] * f0            # (K, T) harmonic frequencies, Hz
    Fb, Bb = F.T[:, None, :], B.T[:, None, :]         # (5, 1, T)
    # all-pole vocal tract: |H(f)| = prod_j F_j^2 / sqrt((F_j^2 - f^2)^2 + (f B_j)^2)
    tract = np.prod(Fb ** 2 / np.sqrt((Fb ** 2 - fk ** 2) ** 2 + (fk * Bb) ** 2), axis=0)
    nyq_fade = np.clip((0.47 * sr - fk) / (0.04 * sr), 0, 1)   # drop harmonics near/above Nyquist
    amp = tract * np.arange(1, K + 1)[:, None] ** -tilt * nyq_fade * env           # (K, T)
    pos = np.arange(n) / H                            # sample -> fractional control frame
    phase = 2 * np.pi * np.cumsum(np.interp(pos, np.arange(T), f0)) / sr   # phase accumulator (rad)
    idx = np.flatnonzero(np.interp(pos, np.arange(T), env) > 0)           # voiced samples only
    if idx.size == 0:                                 # clip too short to reach the first phrase
        return np.zeros(n)
    i0 = (idx // H).astype(int)
    w, ph = (idx - i0 * H) / H, phase[idx]
    voiced = np.zeros(len(idx))
    for k in range(K):                                # vectorised over samples, loop over harmonics
        if amp[k].max() > 1e-5 * amp.max():
            voiced += (amp[k, i0] * (1 - w) + amp[k, i0 + 1] * w) * np.sin((k + 1) * ph)
    # breath: pitch-synchronous aspiration noise riding on the voice, about -28 dB
    asp = _band_noise(rng, n, sr, 1500, 7000, slope=1.0)[idx] * (0.6 + 0.4 * np.cos(ph))
    asp *= np.interp(idx / H, np.arange(T), env)
    out = np.zeros(n)
    out[idx] = voiced + 0.04 * _rms(voiced) / _rms(asp) * asp
    level = _rms(voiced)
    bursts = {c: _band_noise(rng, n, sr, lo, hi) for c, (lo, hi, _) in CONSONANTS.items()}
    inhale = _band_noise(rng, n, sr, 500, 3000)
    for b0, dur, midi_n, vowel, cons, vel, first in notes:
        s0 = int(b0 * beat * sr)
        if s0 >= n:
            break
        if cons:                                      # consonant: short band-limited noise burst
            m = int(CONSONANTS[cons][2] * sr)
            win = np.hanning(m) if cons in ("s", "sh") else np.exp(-np.arange(m) / (0.3 * m))
            seg = bursts[cons][s0:s0 + m]
            _add(out, rng.uniform(0.3, 0.6) * level * win[:len(seg)] * seg, s0)
        if first and s0 > 0.4 * sr:                   # audible inhale just before a phrase
            m, s = int(0.25 * sr), s0 - int(0.3 * sr)
            _add(out, 0.05 * level * np.hanning(m) * inhale[s:s + m], s)
    return out


def _drums(rng, n, sr, beat, n_bars):
    """Kick / snare / hi-hats / crash on a 16-step pattern with per-bar variation and fills; (n,)."""
    def t(d):
        return np.arange(int(d * sr)) / sr
    nyq, tk, ts, th = sr / 2, t(0.4), t(0.25), t(0.6)
    sweep = rng.uniform(40, 55) + rng.uniform(70, 130) * np.exp(-tk / 0.035)   # kick pitch drop (Hz)
    kick = np.sin(2 * np.pi * np.cumsum(sweep) / sr) * np.exp(-tk / rng.uniform(0.15, 0.3))
    kick += 0.3 * _band_noise(rng, len(tk), sr, 1000, 5000) * np.exp(-tk / 0.003)        # beater click
    snare = (0.6 * np.sin(2 * np.pi * rng.uniform(170, 230) * ts) * np.exp(-ts / 0.04)    # shell tone
             + 0.5 * _band_noise(rng, len(ts), sr, 1000, 7000, slope=0.7) * np.exp(-ts / rng.uniform(0.06, 0.12)))
    hat_noise = _band_noise(rng, len(th), sr, 0.6 * nyq, nyq, slope=1.0)                          # high-passed noise
    hat = 0.3 * hat_noise * np.exp(-th / rng.uniform(0.02, 0.04))
    open_hat = 0.25 * hat_noise * np.exp(-th / 0.15)
    crash = 0.3 * _band_noise(rng, int(1.5 * sr), sr, 3000, nyq, slope=1.0) * np.exp(-t(1.5) / 0.5)
    kicks = {0, 8} | set([[], [10], [6], [7, 10], [14]][rng.integers(5)])
    hat_steps = range(0, 16, 1 if rng.random() < 0.3 else 2)
    out, step = np.zeros(n), beat / 4                                     # 16th-note step (s)
    for bar in range(n_bars):
        fill = bar % 4 == 3 and rng.random() < 0.7
        snares = {4, 12} | ({13, 14, 15} if fill else set())
        snares |= {int(rng.choice([7, 9, 15]))} if rng.random() < 0.3 else set()   # ghost note
        bar_kicks = kicks | ({int(rng.choice([3, 11, 14]))} if rng.random() < 0.25 else set())
        for s in range(16):
            at = ((bar * 16 + s) * step + rng.normal(0, 0.003)) * sr        # slightly human timing
            accent = 1.0 if s % 4 == 0 else 0.75
            if s in bar_kicks:
                _add(out, accent * kick, at)
            if s in snares:
                _add(out, (1.0 if s in (4, 12) else 0.6) * snare, at)
            if s in hat_steps and not (fill and s >= 12):
                _add(out, accent * rng.uniform(0.7, 1.0) * (open_hat if s == 14 and bar % 2 else hat), at)
        if bar % 4 == 0:
            _add(out, crash, bar * 16 * step * sr)
    return out


def _bass(rng, n, sr, beat, roots):
    """Plucked bass on the chord roots (``roots``: MIDI per bar, ~E1-D#2), sub + harmonics; (n,)."""
    pattern = [[(0, 1.5, 0), (1.5, 0.5, 0), (2, 1.5, 0), (3.5, 0.5, 7)],
               [(i / 2, 0.45, 12 * (i % 4 == 3)) for i in range(8)],
               [(0, 2, 0), (2, 1, 7), (3, 1, 12)],
               [(0, 0.75, 0), (0.75, 0.75, 0), (1.5, 2.5, 0)]][rng.integers(4)]
    tau, out = rng.uniform(0.3, 0.7), np.zeros(n)
    for bar, root in enumerate(roots):
        for on, dur, interval in pattern:
            note = _tone(float(_hz(root + interval)), dur * beat, sr, n_harm=6, tilt=1.6, tau=tau, release=0.03)
            _add(out, note, (bar * 4 + on) * beat * sr)
    return out


def _other(rng, n, sr, beat, chords):
    """Chords (``chords``: MIDI triads per bar) as piano-like strikes, a pad, or pad + arpeggio; (n,)."""
    style, out = rng.choice(["piano", "pad", "arp"]), np.zeros(n)
    strikes = [(0,), (0, 2), (0, 1.5, 2.5, 3.5), (0, 1, 2, 3)][rng.integers(4)]
    strum = rng.uniform(0.0, 0.02)                    # s between chord notes (guitar-like strum)
    for bar, chord in enumerate(chords):
        t0 = bar * 4 * beat
        if style == "piano":
            for i, on in enumerate(strikes):
                dur = ((strikes + (4,))[i + 1] - on) * beat + 0.3
                for j, m in enumerate(chord):
                    note = _tone(float(_hz(m)), dur, sr, n_harm=10, tilt=1.2, tau=0.8, release=0.2, inharm=2e-4)
                    _add(out, 0.8 * note, (t0 + on * beat + j * strum) * sr)
            continue
        for m in chord:                               # pad: slow attack, sustained, detuned chorus
            note = _tone(float(_hz(m)), 4 * beat + 0.3, sr, n_harm=8, tilt=1.5, tau=np.inf,
                         attack=0.25, release=0.3, detune=7)
            _add(out, (0.5 if style == "arp" else 1.0) * note, t0 * sr)
        if style == "arp":                            # eighth-note arpeggio an octave up
            for i, j in enumerate([0, 1, 2, 1, 0, 1, 2, 1]):
                note = _tone(float(_hz(chord[j] + 12)), 0.5 * beat, sr, n_harm=6, tilt=1.3, tau=0.25)
                _add(out, 1.2 * note, (t0 + i * 0.5 * beat) * sr)
    return out


def _render_track(rng, n, sr, female):
    """Synthesise one song of n samples: dict stem -> float64 array (n,), mixed but not yet peak-scaled."""
    beat = 60.0 / rng.uniform(80, 130)                # s per beat (tempo 80-130 BPM)
    n_bars = int(n / sr / (4 * beat)) + 2
    scale = MAJOR if rng.random() < 0.65 else MINOR
    key, progs = int(rng.integers(12)), PROGRESSIONS[scale]
    prog = progs[rng.integers(len(progs))]
    deg_of = lambda d: key + scale[d % 7] + 12 * (d // 7)   # scale degree -> MIDI note
    bar_deg = [prog[b % len(prog)] for b in range(n_bars)]
    lo_chord = int(rng.integers(50, 56))              # chord voicing floor (MIDI)
    chords = [[lo_chord + (deg_of(c + i) - lo_chord) % 12 for i in (0, 2, 4)] for c in bar_deg]
    roots = [28 + (deg_of(c) - 28) % 12 for c in bar_deg]
    lo = int(rng.integers(55, 61)) if female else int(rng.integers(44, 48))   # voice range (MIDI):
    hi = min(lo + int(rng.integers(9, 13)), 72 if female else 59)            # ~200-520 / ~100-250 Hz
    notes = _melody(rng, deg_of, prog, n_bars, lo, hi)
    stems = {"vocals": _vocals(rng, notes, n, sr, beat, female), "bass": _bass(rng, n, sr, beat, roots),
             "drums": _drums(rng, n, sr, beat, n_bars), "other": _other(rng, n, sr, beat, chords)}
    for name, db in (("drums", 0.0), ("bass", rng.uniform(-4, 0)), ("other", rng.uniform(-6, -1))):
        stems[name] *= 10 ** (db / 20) / _rms(stems[name])          # accompaniment balance
    acc = stems["bass"] + stems["drums"] + stems["other"]
    stems["vocals"] *= _rms(acc) * 10 ** (rng.uniform(-5, 3) / 20) / _rms(stems["vocals"])  # VAR dB
    fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.01 * sr))
    return {k: v * fade for k, v in stems.items()}


def _write(path, x, sr):
    """Write float samples in [-1, 1) as mono 16-bit PCM WAV (rounded to the nearest code)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16), sr, subtype="PCM_16")


def _tracks(n_dev, n_test, layout="dsd100"):
    """(split folder, track name) per track. The course layout splits the n_dev training tracks
    into Train and Valid (a quarter, at least one)."""
    n_valid = max(1, n_dev // 4) if layout == "course" else 0
    def split(i):
        if i >= n_dev:
            return "Test"
        if layout != "course":
            return "Dev"
        return "Train" if i < n_dev - n_valid else "Valid"
    return [(split(i), f"{i + 1:03d} - Demo Song {i + 1:03d}") for i in range(n_dev + n_test)]


def _stems_written(layout):
    """The course's subset ships vocals only (accompaniment = mixture - vocals)."""
    return ("vocals",) if layout == "course" else STEMS


def _is_complete(root, params):
    """True if ``root`` holds a finished demo dataset generated with exactly ``params``."""
    try:
        marker = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return False
    layout = params.get("layout", "dsd100")
    tracks = _tracks(params["n_dev"], params["n_test"], layout)
    files = [root / "Mixtures" / s / t / "mixture.wav" for s, t in tracks]
    files += [root / "Sources" / s / t / f"{stem}.wav" for s, t in tracks for stem in _stems_written(layout)]
    return {k: marker.get(k) for k in params} == params and all(f.is_file() for f in files)


class DemoFolderTaken(util.UserError, FileExistsError):
    """The demo folder holds something else (or an incomplete set): a one-line error for the command lines."""


def make_demo_dataset(root, n_dev=8, n_test=3, seconds=12.0, sample_rate=16000, seed=0, overwrite=False,
                      layout="dsd100") -> Path:
    """Create (or reuse) the demo dataset under ``root`` and return ``root`` as a Path.

    n_dev / n_test: number of Dev (train) / Test tracks; seconds: track length (s); sample_rate (Hz);
    seed: track i uses ``np.random.default_rng((seed, i))``.  Returns at once if ``root`` already
    holds a complete dataset with these parameters.  Raises FileExistsError if ``root`` holds
    anything else, unless overwrite=True (then it is replaced).  Files are written to a temporary
    sibling folder that is renamed into place only when complete.  ``layout="course"`` writes the
    course's subset layout instead: ``{Mixtures,Sources}/{Train,Valid,Test}``, vocals only."""
    if layout not in ("dsd100", "course"):
        raise ValueError(f"layout must be 'dsd100' or 'course', not {layout!r}")
    root = Path(root)
    params = dict(format="DSD100-demo", version=VERSION, n_dev=int(n_dev), n_test=int(n_test),
                  seconds=float(seconds), sample_rate=int(sample_rate), seed=int(seed))
    if layout != "dsd100":                 # the DSD100 markers of earlier versions stay valid
        params["layout"] = layout
    if _is_complete(root, params):
        return root
    if root.exists() and (not root.is_dir() or any(root.iterdir())) and not overwrite:
        raise DemoFolderTaken(f"{root}: exists and is not a complete demo dataset with these parameters (a file "
                              f"missing?); pick another folder or rebuild it: python demo_data.py --root {root} "
                              f"--overwrite")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    n = int(round(seconds * sample_rate))
    try:
        for i, (subset, name) in enumerate(_tracks(n_dev, n_test, layout)):
            stems = _render_track(np.random.default_rng((seed, i)), n, sample_rate, female=i % 2 == 1)
            mix = stems["vocals"] + stems["bass"] + stems["drums"] + stems["other"]
            gain = 0.9 / max(np.abs(x).max() for x in (mix, *stems.values()))  # mix peaks at 0.9
            _write(tmp / "Mixtures" / subset / name / "mixture.wav", mix * gain, sample_rate)
            for stem in _stems_written(layout):
                _write(tmp / "Sources" / subset / name / f"{stem}.wav", stems[stem] * gain, sample_rate)
        info = {**params, "tracks": [f"{s}/{t}" for s, t in _tracks(n_dev, n_test, layout)]}
        (tmp / MARKER).write_text(json.dumps(info, indent=2) + "\n")
        if root.exists() or root.is_symlink():        # empty folder, or overwrite=True: move it aside
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent)) / "old"
            os.rename(root, old)
            os.rename(tmp, root)
            shutil.rmtree(old.parent, ignore_errors=True)
        else:
            os.rename(tmp, root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if _is_complete(root, params):                # a concurrent run finished first
            return root
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def main(argv=None):
    p = argparse.ArgumentParser(description="Synthesise a small deterministic demo dataset (DSD100 layout) "
                                            "of songs with vocals, bass, drums and other stems.")
    p.add_argument("--root", default="data/demo", help="output folder (default: %(default)s)")
    p.add_argument("--tracks-dev", type=util.int_range(2, 1000), default=8,
                   help="number of Dev (training) tracks (default: %(default)s)")
    p.add_argument("--tracks-test", type=util.int_range(1, 1000), default=3,
                   help="number of Test tracks (default: %(default)s)")
    p.add_argument("--seconds", type=util.float_range(1, 600), default=12.0,
                   help="length of each track in seconds (default: %(default)s)")
    p.add_argument("--sr", type=util.int_range(8000, 192000), default=16000,
                   help="sample rate in Hz (default: %(default)s)")
    p.add_argument("--seed", type=util.nonneg_int, default=0,
                   help="random seed; same seed -> identical files (default: %(default)s)")
    p.add_argument("--course-layout", action="store_true",
                   help="write the course's DSD100-subset layout: Mixtures/ and Sources/ with Train, Valid "
                        "(a quarter of the training tracks) and Test, vocals.wav only (default: DSD100's Dev/Test, "
                        "four stems)")
    p.add_argument("--overwrite", action="store_true", help="replace --root if it holds something else (default: off)")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        root = make_demo_dataset(a.root, a.tracks_dev, a.tracks_test, a.seconds, a.sr, a.seed, a.overwrite,
                                 layout="course" if a.course_layout else "dsd100")
    except FileExistsError as e:
        p.exit(2, f"demo_data.py: error: {e}\n")
    print(f"demo dataset: {a.tracks_dev} dev + {a.tracks_test} test tracks x {a.seconds:g} s at {a.sr} Hz "
          f"in {Path(root).resolve()} ({time.perf_counter() - t0:.2f} s)")


if __name__ == "__main__":
    main()
