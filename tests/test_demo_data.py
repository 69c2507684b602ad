"""The embedded default: a deterministic synthetic demo set (DSD100 layout) that sounds like music.

Small, fast settings: 2 dev + 1 test track of 4 s at 16 kHz."""
import numpy as np
import pytest
import soundfile as sf

import Data
from demo_data import MARKER, STEMS, make_demo_dataset

SMALL = dict(n_dev=2, n_test=1, seconds=4.0, sample_rate=16000, seed=0)
NAMES = [("Dev", "001 - Demo Song 001"), ("Dev", "002 - Demo Song 002"), ("Test", "003 - Demo Song 003")]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "data", **SMALL)


def read(root, subset, name, stem):
    folder = "Mixtures" if stem == "mixture" else "Sources"
    x, sr = sf.read(str(root / folder / subset / name / f"{stem}.wav"), dtype="float64")
    return x, sr


def all_files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


def f0_lag_strength(frame, sr):
    """Peak of the normalised autocorrelation over lags 1.6-10 ms (100-625 Hz) and its lag (s)."""
    frame = frame - frame.mean()
    ac = np.correlate(frame, frame, "full")[len(frame) - 1:]
    lo, hi = int(0.0016 * sr), int(0.010 * sr)
    k = lo + int(np.argmax(ac[lo:hi]))
    return ac[k] / ac[0], k / sr


def voiced_frames(v, sr, hop=0.025):
    """50 ms frames of the vocal stem with at least half the maximal frame RMS."""
    n, h = int(0.05 * sr), int(hop * sr)
    frames = np.stack([v[i:i + n] for i in range(0, len(v) - n, h)])
    rms = np.sqrt((frames ** 2).mean(1))
    return frames[rms > 0.5 * rms.max()]


def test_layout(root):
    assert (root / MARKER).is_file()
    for subset, name in NAMES:
        assert (root / "Mixtures" / subset / name / "mixture.wav").is_file()
        assert sorted(p.name for p in (root / "Sources" / subset / name).iterdir()) == sorted(f"{s}.wav" for s in STEMS)
    assert not list(root.parent.glob(".*partial*")), "temporary folder left behind"


def test_data_module_reads_it_as_dsd100(root):
    assert Data.detect_layout(root) == "dsd100"
    assert len(Data.find_tracks(root, "train")) == 2 and len(Data.find_tracks(root, "test")) == 1


def test_format_and_lengths(root):
    for subset, name in NAMES:
        infos = [sf.info(str(root / "Mixtures" / subset / name / "mixture.wav"))]
        infos += [sf.info(str(root / "Sources" / subset / name / f"{s}.wav")) for s in STEMS]
        for info in infos:
            assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 64000)


def test_mixture_is_sum_of_stems_and_no_clipping(root):
    for subset, name in NAMES:
        mix, _ = read(root, subset, name, "mixture")
        stems = [read(root, subset, name, s)[0] for s in STEMS]
        assert np.max(np.abs(mix - sum(stems))) < 4 / 32768
        assert 0.85 < np.max(np.abs(mix)) <= 0.91
        assert max(np.max(np.abs(x)) for x in stems) <= 1.0
        assert all(np.sqrt(np.mean(x ** 2)) > 1e-3 for x in stems)        # every stem is audible


def test_deterministic(root, tmp_path):
    other = make_demo_dataset(tmp_path / "again", **SMALL)
    a, b = all_files(root), all_files(other)
    assert [p.relative_to(root) for p in a] == [p.relative_to(other) for p in b]
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(a, b))


def test_tracks_differ(root):
    mixes = [read(root, s, n, "mixture")[0] for s, n in NAMES]
    for i in range(len(mixes)):
        for j in range(i + 1, len(mixes)):
            corr = np.corrcoef(mixes[i], mixes[j])[0, 1]
            assert abs(corr) < 0.5


def test_vocals_have_silent_rests_and_voiced_parts(root):
    for subset, name in NAMES:
        v, sr = read(root, subset, name, "vocals")
        n, h = int(0.25 * sr), int(0.05 * sr)
        rms = np.array([np.sqrt(np.mean(v[i:i + n] ** 2)) for i in range(0, len(v) - n, h)])
        total = np.sqrt(np.mean(v ** 2))
        assert (rms < 1e-3 * total).sum() >= 2, "no silent rest in the vocal stem"
        assert (rms > 0.5 * total).sum() >= 4, "too little singing"


def test_vocals_are_harmonic(root):
    for subset, name in NAMES:
        v, sr = read(root, subset, name, "vocals")
        strengths = [f0_lag_strength(f, sr)[0] for f in voiced_frames(v, sr)]
        assert np.median(strengths) > 0.6


def test_low_and_high_voices(root):
    """Track 1 is a low ("male") voice, track 2 a high ("female") one."""
    f0 = []
    for subset, name in NAMES[:2]:
        v, sr = read(root, subset, name, "vocals")
        f0.append(np.median([1 / f0_lag_strength(f, sr)[1] for f in voiced_frames(v, sr)]))
    assert 90 < f0[0] < 260 and 190 < f0[1] < 620 and f0[0] < f0[1]


def test_second_call_does_not_rewrite(root):
    before = {p: p.stat().st_mtime_ns for p in all_files(root)}
    assert make_demo_dataset(root, **SMALL) == root
    assert {p: p.stat().st_mtime_ns for p in all_files(root)} == before


def test_foreign_folder_is_left_alone(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="mine"):
        make_demo_dataset(foreign, **SMALL)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    # different parameters on an existing demo dataset count as "other content" too
    with pytest.raises(FileExistsError):
        make_demo_dataset(foreign, **SMALL)
    make_demo_dataset(foreign, **{**SMALL, "n_dev": 1, "n_test": 0, "seconds": 1.0}, overwrite=True)
    assert not (foreign / "notes.txt").exists() and (foreign / MARKER).is_file()
    with pytest.raises(FileExistsError):
        make_demo_dataset(foreign, **{**SMALL, "seconds": 1.0})


def test_an_incomplete_demo_folder_is_a_one_line_error_naming_the_fix(tmp_path):
    """A demo set with a stem missing is neither reused nor silently replaced: a UserError (one line on the
    command lines, demo.py's included) that says how to rebuild it; demo.py's --run-dir must be a folder."""
    import demo
    import util
    root = make_demo_dataset(tmp_path / "demo", **SMALL)
    next(root.glob("Sources/*/*/bass.wav")).unlink()
    with pytest.raises(util.UserError, match=r"not a complete demo dataset .*demo_data.py --root .* --overwrite"):
        make_demo_dataset(root, **SMALL)
    (tmp_path / "file").write_text("x")
    with pytest.raises(util.UserError, match="exists and is not a folder"):
        demo.main(["--run-dir", str(tmp_path / "file")])
