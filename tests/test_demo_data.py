"""The embedded default: a deterministic synthetic demo set that sounds like music."""
import numpy as np
import pytest
import soundfile as sf

import Data
import demo_data

STEMS = ("vocals", "bass", "drums", "other")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_data.make_demo_dataset(tmp_path_factory.mktemp("d") / "demo", n_dev=2, n_test=1, seconds=4.0)


def test_layout_is_dsd100_and_mixture_is_sum(demo):
    assert Data.detect_layout(demo) == "dsd100"
    assert len(Data.find_tracks(demo, "train")) == 2 and len(Data.find_tracks(demo, "test")) == 1
    for mix_path in (demo / "Mixtures").glob("*/*/mixture.wav"):
        mix, sr = sf.read(mix_path)
        stems = [sf.read(demo / "Sources" / mix_path.parent.parent.name / mix_path.parent.name / f"{s}.wav")
                 for s in STEMS]
        assert sr == 16000 and all(r == sr and len(x) == len(mix) for x, r in stems)
        assert np.abs(mix - sum(x for x, _ in stems)).max() < 4 / 32768
        assert np.abs(mix).max() <= 1.0


def test_deterministic_and_tracks_differ(demo, tmp_path):
    again = demo_data.make_demo_dataset(tmp_path / "again", n_dev=2, n_test=1, seconds=4.0)
    files = sorted(p.relative_to(demo) for p in demo.rglob("*.wav"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.wav"))
    assert all((demo / f).read_bytes() == (again / f).read_bytes() for f in files)
    v = [sf.read(p)[0] for p in sorted(demo.glob("Sources/*/*/vocals.wav"))]
    assert not np.allclose(v[0], v[1])


def test_vocals_have_rests_and_harmonic_voiced_frames(demo):
    vocals, sr = sf.read(next(demo.glob("Sources/Dev/*/vocals.wav")))
    win = sr // 4
    rms = np.sqrt([np.mean(vocals[i:i + win] ** 2) for i in range(0, len(vocals) - win, win)])
    overall = np.sqrt(np.mean(vocals ** 2))
    assert (rms < 1e-3 * overall).any() and (rms > 0.5 * overall).any()          # rests and singing
    frame = vocals[int(np.argmax(rms)) * win:][: int(0.05 * sr)]
    ac = np.correlate(frame, frame, "full")[len(frame) - 1:]
    lags = np.arange(len(ac)) / sr
    peak = ac[(lags > 0.0016) & (lags < 0.010)].max() / ac[0]
    assert peak > 0.5                                                             # periodic: a pitched voice


def test_reuse_and_refuse_foreign_folder(demo, tmp_path):
    stamp = (demo / demo_data.MARKER).stat().st_mtime_ns
    demo_data.make_demo_dataset(demo, n_dev=2, n_test=1, seconds=4.0)
    assert (demo / demo_data.MARKER).stat().st_mtime_ns == stamp
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        demo_data.make_demo_dataset(tmp_path / "mine", n_dev=1, n_test=1, seconds=2.0)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
