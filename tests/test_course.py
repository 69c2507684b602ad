"""The assignment's own data layout (the course's DSD100 subset) and its Data.py/util.py interface."""
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch

import Data
import demo_data
import util
from conftest import ROOT, tone


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("course") / "DSD100Subset"
    return demo_data.make_demo_dataset(root, n_dev=4, n_test=2, seconds=3.0, sample_rate=8000,
                                       layout="course")


def test_course_layout_detected_and_split_as_given(course):
    assert Data.detect_layout(course) == "course"
    train, valid, test = (Data.find_tracks(course, s) for s in ("train", "valid", "test"))
    assert [len(train), len(valid), len(test)] == [3, 1, 2]
    assert {t.name for t in valid} == {p.name for p in (course / "Mixtures" / "Valid").iterdir()}
    assert not (course / "Sources" / "Train" / train[0].name / "bass.wav").exists()   # vocals only


def test_accompaniment_is_mixture_minus_vocals(course, tmp_path):
    track = Data.find_tracks(course, "test")[0]
    cache = Data.AudioCache(8000, tmp_path)
    mix, _ = sf.read(course / "Mixtures" / "Test" / track.name / "mixture.wav", dtype="float32")
    voc, _ = sf.read(course / "Sources" / "Test" / track.name / "vocals.wav", dtype="float32")
    assert np.allclose(cache.source(track, "accompaniment"), mix - voc, atol=1e-6)
    assert np.allclose(cache.source(track, "vocals") + cache.source(track, "accompaniment"), mix, atol=1e-6)


def test_dsd100_still_works(dsd100):
    assert Data.detect_layout(dsd100) == "dsd100"
    assert len(Data.find_tracks(dsd100, "train")) == 3 and Data.find_tracks(dsd100, "valid") == []


def test_mixtures_with_unknown_splits_named(tmp_path):
    (tmp_path / "Mixtures" / "Training").mkdir(parents=True)
    with pytest.raises(util.UserError, match="holds Training; expected Dev and Test .* Train, Valid and Test"):
        Data.detect_layout(tmp_path)


def _copy_course(course, tmp_path):
    import shutil
    dst = tmp_path / "c"
    shutil.copytree(course, dst)
    return dst


def test_course_bad_input_names_the_file(course, tmp_path):
    root = _copy_course(course, tmp_path)
    track = next((root / "Sources" / "Train").iterdir())
    (track / "vocals.wav").unlink()
    with pytest.raises(util.UserError, match="vocals.wav: missing stem"):
        Data.find_tracks(root, "train")
    root = _copy_course(course, tmp_path / "2")
    for p in (root / "Mixtures" / "Valid").iterdir():
        import shutil
        shutil.rmtree(p)
    with pytest.raises(util.UserError, match="Valid: split folder holds no track folders"):
        Data.find_tracks(root, "valid")
    root = _copy_course(course, tmp_path / "3")
    track = next((root / "Sources" / "Test").iterdir())
    sf.write(track / "vocals.wav", tone(1.0, 8000, 220), 8000)
    with pytest.raises(util.UserError, match="vocals.wav: length"):
        Data.find_tracks(root, "test")
    sf.write(track / "vocals.wav", tone(3.0, 16000, 220), 16000)
    with pytest.raises(util.UserError, match="vocals.wav: sample rate 16000"):
        Data.find_tracks(root, "test")


def test_training_cli_bad_course_input_exit_2(course, tmp_path, capsys):
    import train_feedforward
    root = _copy_course(course, tmp_path)
    (next((root / "Sources" / "Valid").iterdir()) / "vocals.wav").unlink()
    with pytest.raises(SystemExit) as e:
        util.run_cli(train_feedforward.main, ["--data", str(root), "--run-dir", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "vocals.wav: missing stem" in err and len(err.splitlines()) == 1


def test_training_uses_the_valid_split_and_history_names_it(course, tmp_path):
    import train_feedforward
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        util.run_cli(train_feedforward.main, [
            "--data", str(course), "--sample-rate", "8000", "--n-fft", "256", "--hop", "128", "--window",
            "hamming", "--epochs", "1", "--batch-size", "2", "--samples-per-epoch", "2", "--hidden", "16",
            "--code", "8", "--quiet", "--threads", "1", "--run-dir", str(run), "--cache-dir", str(tmp_path / "cc")])
    assert e.value.code == 0
    history = json.loads((run / "history.json").read_text())
    assert history["valid_tracks"] == sorted(p.name for p in (course / "Mixtures" / "Valid").iterdir())
    ckpt = util.read_checkpoint(run / "savedModel_feedforward_best.pt")
    assert ckpt["stft"]["window"] == "hamming"
    model, stft, _, _ = util.load_model(run / "savedModel_feedforward_best.pt")
    assert stft.window_name == "hamming"                       # separation follows the checkpoint
    assert torch.allclose(stft.window("cpu"), torch.hamming_window(256))


def test_valid_tracks_over_a_valid_split_says_the_split_is_unused(course, tmp_path, capsys):
    import train_feedforward
    first = Data.find_tracks(course, "train")[0].name
    with pytest.raises(SystemExit) as e:
        util.run_cli(train_feedforward.main, [
            "--data", str(course), "--sample-rate", "8000", "--n-fft", "256", "--hop", "128", "--epochs", "1",
            "--batch-size", "2", "--samples-per-epoch", "2", "--hidden", "16", "--code", "8", "--quiet",
            "--threads", "1", "--valid-tracks", first, "--run-dir", str(tmp_path / "run"),
            "--cache-dir", str(tmp_path / "cc")])
    assert e.value.code == 0
    assert "validation split (1 tracks) is not used" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "history.json").read_text())["valid_tracks"] == [first]


def test_course_dataset_items_and_repetition(course):
    ds = Data.DSD100Dataset(str(course), split="Train", mono=True, repetition=3)
    assert len(ds) == 9
    item = ds[4]
    assert set(item) == {"mixture", "vocal"} and item["mixture"].dtype == np.float32
    assert item["mixture"].ndim == 1 and item["mixture"].shape == item["vocal"].shape
    name = ds.tracks[4 % 3].name
    mix, _ = sf.read(course / "Mixtures" / "Train" / name / "mixture.wav", dtype="float32")
    assert np.allclose(item["mixture"], mix, atol=1e-6)
    assert len(Data.DSD100Dataset(str(course), testSet=True)) == 2
    assert len(Data.DSD100Dataset(str(course), split="Valid")) == 1


def test_course_transforms_shapes_and_collate(course):
    np.random.seed(0)
    t = Data.Compose([Data.Transforms.Rescale(0.8, 1.2), Data.Transforms.RandomShift(100),
                      Data.Transforms.MakeMagnitudeSpectrum(blockSize=256, hopSize=128),
                      Data.Transforms.ShuffleFrameOrder()])
    ds = Data.DSD100Dataset(str(course), split="Train", transform=t)
    a, b = ds[0], ds[1]
    assert a["mixture"].shape[0] == 129 and a["mixture"].shape == a["vocal"].shape
    batch = Data.collate_fn([a, b])
    frames = max(a["mixture"].shape[1], b["mixture"].shape[1])
    assert batch["mixture"].shape == (2, 129, frames) and batch["mixture"].dtype == torch.float32
    shift = Data.Transforms.RandomShift(50)({"x": np.ones(10, np.float32)})["x"]
    assert shift[-10:].tolist() == [1] * 10 and (shift[:-10] == 0).all()
    x = {"mixture": np.arange(12.).reshape(2, 6), "vocal": np.arange(12.).reshape(2, 6) * 2}
    s = Data.Transforms.ShuffleFrameOrder()(x)
    assert np.array_equal(s["vocal"], 2 * s["mixture"])        # one order for every key


def test_util_course_helpers(tmp_path):
    sf.write(tmp_path / "a.wav", tone(0.5, 8000, 220, channels=2), 8000)
    x, fs = util.wavread(tmp_path / "a.wav")
    assert fs == 8000 and x.shape == (4000, 2)
    S = util.stft_real(x.mean(-1), blockSize=256, hopSize=128)
    assert S.shape[0] == 129 and np.iscomplexobj(S)
    y = util.istft_real(S, 256, 128, length=4000)
    assert np.abs(y - x.mean(-1)).max() < 1e-5
    util.wavwrite(tmp_path / "b.wav", y, fs)
    assert sf.info(str(tmp_path / "b.wav")).samplerate == 8000


SKELETON = '''
import numpy as np, torch, torch.nn as nn
import Data
PATH = {path!r}
np.random.seed(0); torch.manual_seed(0)
fs, blockSize, hopSize = 8000, 256, 128
transformTrain = Data.Compose([
    Data.Transforms.Rescale(0.8, 1.2),
    Data.Transforms.RandomShift(fs * 1),
    Data.Transforms.MakeMagnitudeSpectrum(blockSize=blockSize, hopSize=hopSize),
    Data.Transforms.ShuffleFrameOrder()])
transformVal = Data.Compose([Data.Transforms.MakeMagnitudeSpectrum(blockSize=blockSize, hopSize=hopSize)])
datasetTrain = Data.DSD100Dataset(PATH, split='Train', mono=True, transform=transformTrain, repetition=2)
datasetValid = Data.DSD100Dataset(PATH, split='Valid', mono=True, transform=transformVal, repetition=1)
loaderTrain = torch.utils.data.DataLoader(datasetTrain, batch_size=2, shuffle=True, num_workers=0,
                                          collate_fn=Data.collate_fn)
loaderValid = torch.utils.data.DataLoader(datasetValid, batch_size=10, shuffle=False, collate_fn=Data.collate_fn)
class ModelSingleStep(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(129, 32), nn.Linear(32, 129)
    def forward(self, x):
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(x))))
model = ModelSingleStep()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
def kl(x, y, eps=1e-8):
    return (x * (torch.log(x + eps) - torch.log(y + eps)) - x + y).sum(-1).mean()
losses = []
for epoch in range(3):
    for sample in loaderTrain:
        mixture, target = sample['mixture'], sample['vocal']           # (batch, bins, frames)
        est = model(mixture.transpose(1, 2)) * mixture.transpose(1, 2)
        loss = kl(target.transpose(1, 2), est)
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
with torch.no_grad():
    for sample in loaderValid:
        m = sample['mixture'].transpose(1, 2)
        valid = kl(sample['vocal'].transpose(1, 2), model(m) * m).item()
print("steps", len(losses), "first", losses[0], "last", losses[-1], "valid", valid)
'''


@pytest.mark.slow
def test_skeleton_style_script_runs_with_this_data_module(course, tmp_path):
    script = tmp_path / "train_skeleton.py"
    script.write_text(textwrap.dedent(SKELETON.format(path=str(course))))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    words = out.stdout.split()
    steps, first, last, valid = int(words[1]), float(words[3]), float(words[5]), float(words[7])
    assert steps == 9 and np.isfinite(valid) and last < first


def test_valid_tracks_pattern_holds_out_a_singer(mir1k, tmp_path, capsys):
    import train_feedforward
    run = tmp_path / "run"
    base = ["--data", str(mir1k), "--sample-rate", "8000", "--n-fft", "256", "--hop", "128", "--epochs", "1",
            "--batch-size", "2", "--samples-per-epoch", "2", "--hidden", "16", "--code", "8", "--quiet",
            "--threads", "1", "--cache-dir", str(tmp_path / "cc")]
    with pytest.raises(SystemExit) as e:
        util.run_cli(train_feedforward.main, base + ["--run-dir", str(run), "--valid-tracks", "amy_*"])
    assert e.value.code == 0
    history = json.loads((run / "history.json").read_text())
    assert history["valid_tracks"] == ["amy_1_01", "amy_2_01"]
    assert "warning" not in capsys.readouterr().err                       # whole songs: no warning
    with pytest.raises(SystemExit) as e:
        util.run_cli(train_feedforward.main, base + ["--run-dir", str(tmp_path / "r2"), "--valid-tracks", "nobody_*"])
    assert e.value.code == 2 and "matches 0 of 4" in capsys.readouterr().err
    # a pattern that takes some clips of a song warns that validation is not on unseen songs
    shutil.copy(mir1k / "Wavfile" / "abjones_1_01.wav", mir1k / "Wavfile" / "abjones_1_02.wav")
    with pytest.raises(SystemExit) as e:
        util.run_cli(train_feedforward.main, base + ["--run-dir", str(tmp_path / "r3"), "--valid-tracks", "*_01"])
    err = capsys.readouterr().err
    assert e.value.code == 0 and "puts clips of 1 songs on both sides (abjones_1)" in err


def test_dsd100_missing_stem_is_not_taken_as_vocals_only(dsd100):
    """Only the course layout derives accompaniment = mixture - vocals; a DSD100 track missing
    a stem is still an error naming it."""
    next((dsd100 / "Sources" / "Dev").iterdir()).joinpath("bass.wav").unlink()
    with pytest.raises(util.UserError, match="bass.wav: missing stem"):
        Data.find_tracks(dsd100, "train")
