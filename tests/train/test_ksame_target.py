"""`--target ksame` (learned k-Same): real UTKFace crops get ksame targets that replace only the inner face, the cache
round-trips, the sampler flips input and target together, the fid_eff reference is kept out, and training runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facedeid import ksame
from facedeid.paths import WEIGHTS_DIR, shared_faces_dir
from facedeid.train import inversion, targets
from facedeid.train.sampler import Sampler

pytestmark = pytest.mark.shared  # UTKFace crops of the developers' face collection
N_PHOTOS = 12  # 12 real UTKFace photos, 2 of them held apart (the fid_eff reference)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    train = shared_faces_dir() / "train" / "utkface"
    files = sorted(train.glob("*.jpg"))
    held = [f for f in files if ksame.held_apart(f.name)][:2]
    kept = [f for f in files if not ksame.held_apart(f.name)][: N_PHOTOS - len(held)]
    root = tmp_path_factory.mktemp("utk")
    for path in held + kept:
        (root / path.name).symlink_to(path)
    return root


def argv(photos, tmp_path, steps: int) -> list[str]:
    return ["--model", "mobileunet", "--dataset-dir", str(photos), "--target", "ksame", "--steps", str(steps),
            "--batch-size", "4", "--val-percent", "30", "--out-dir", str(tmp_path / "run"),
            "--weights-out", str(tmp_path / "m.pt"), "--val-every", "2", "--sample-every", "2", "--no-progress",
            "--init-generator", str(WEIGHTS_DIR / "mobileunet.pt")]


def inner_masks(crops: np.ndarray) -> np.ndarray:
    """ksame's own inner-face mask, placed on each crop as KSame.replace places it."""
    return ksame.KSame().masks(crops)


def test_ksame_targets_replace_the_inner_face_only_are_cached_and_flip_with_the_input(photos, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEDEID_CACHE", str(tmp_path / "cache"))
    trainer = inversion.InversionTrainer(inversion.build_parser().parse_args(argv(photos, tmp_path, 1)))
    data = trainer.data
    crops, tgts = np.array(data.crops), np.array(data.targets)
    assert tgts.shape == crops.shape and len(crops) >= N_PHOTOS - 1
    mask = inner_masks(crops)
    diff = np.abs(tgts.astype(int) - crops).max(axis=3)
    assert (diff[mask == 0] == 0).all()  # outside ksame's mask: the crop itself (context stays the original)
    assert all(d[m > 0.99].mean() > 8 for d, m in zip(diff, mask))  # inside: every face replaced
    cached = list((tmp_path / "cache").rglob("ksame_*.npy"))
    assert len(cached) == 1 and np.array_equal(np.load(cached[0]), tgts)  # built once, next to the crop cache
    again = targets.ksame_targets(data, progress=False)
    assert isinstance(again, np.memmap) and np.array_equal(again, tgts)

    held = targets.held_apart_mask(data)
    assert held.sum() >= 2
    used = np.concatenate([trainer.sampler.train_idx, trainer.sampler.val_idx])
    assert not held[used].any() and len(used) == (~held).sum()  # the fid_eff reference is in neither split

    sampler = Sampler(data, 8, seed=3, exclude=held)
    flipped = 0
    for x, t in [sampler.train_batch() for _ in range(4)]:
        for xi, ti in zip(x.numpy(), t.numpy()):
            i = int(np.argmin([min(np.abs(xi - c).sum(), np.abs(xi - c[..., ::-1]).sum())
                               for c in Sampler.to_batch(crops).numpy()]))
            as_is = np.array_equal(xi, Sampler.to_batch(crops[i : i + 1])[0].numpy())
            flipped += not as_is
            expected = Sampler.to_batch(tgts[i : i + 1] if as_is else tgts[i : i + 1, :, ::-1])[0].numpy()
            assert np.array_equal(ti, expected)  # the target of the same crop, flipped the same way
    assert flipped > 0


def test_ksame_target_trains_from_the_shipped_weights_and_says_so_in_the_card(photos, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEDEID_CACHE", str(tmp_path / "cache"))
    path = inversion.main(argv(photos, tmp_path, 3))
    start, out = torch.load(WEIGHTS_DIR / "mobileunet.pt", weights_only=True), torch.load(path, weights_only=True)
    assert not all(torch.equal(start[k], out[k]) for k in start)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["steps"] == 3 and "ksame" in card["objective"] and "ksame" in card["data"]["target"]
    assert "held_apart" in card["data"]["excluded"] and card["init_generator"]["record"] is not None
    assert all(np.isfinite(v) for v in card["final_val_losses"].values())
