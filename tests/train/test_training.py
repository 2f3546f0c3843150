"""A few training steps on the astronaut datasets: losses go down, checkpoints load strictly, resume continues."""

from __future__ import annotations

import json

import torch

from facedeid.models.registry import GENERATORS
from facedeid.train import d2gan as d2gan_train
from facedeid.train import inversion


def _common(dna_dir, plain_dir, tmp_path, name, steps):
    return ["--dataset_dir", str(dna_dir), str(plain_dir), "--steps", str(steps), "--batch_size", "2",
            "--out_dir", str(tmp_path / name), "--weights_out", str(tmp_path / f"{name}.pt"),
            "--val_every", "2", "--sample_every", "2", "--save_every", "2", "--no_progress", "--no_cache"]


def test_inversion_loss_decreases(dna_dir, plain_dir, tmp_path):
    argv = ["--model", "mobileunet"] + _common(dna_dir, plain_dir, tmp_path, "m", 1)
    args = inversion.build_parser().parse_args(argv)
    trainer = inversion.InversionTrainer(args)
    x = trainer.sampler.train_batch()
    first = trainer.train_step(x)["loss"]
    for _ in range(7):
        last = trainer.train_step(x)["loss"]
    assert last < first


def test_inversion_writes_loadable_checkpoint_and_resumes(dna_dir, plain_dir, tmp_path):
    common = _common(dna_dir, plain_dir, tmp_path, "m", 2)
    path = inversion.main(["--model", "mobileunet"] + common)
    state = torch.load(path, weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert set(state) == set(GENERATORS["mobileunet"].build().state_dict())
    GENERATORS["mobileunet"].load(path)  # strict
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["steps"] == 2 and "non-commercial" in card["license"]
    assert (tmp_path / "m" / "last.pt").exists() and list((tmp_path / "m" / "samples").glob("*.png"))
    GENERATORS["mobileunet"].load(tmp_path / "m" / "last.pt")  # a run's last.pt loads through the same loader

    common[common.index("--steps") + 1] = "3"
    inversion.main(["--model", "mobileunet", "--resume"] + common)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["steps"] == 3  # continued from step 2, not restarted
    assert torch.load(tmp_path / "m" / "last.pt", weights_only=False)["step"] == 3


def test_d2gan_runs_and_exports_generator_only(dna_dir, plain_dir, tmp_path):
    path = d2gan_train.main(_common(dna_dir, plain_dir, tmp_path, "d", 2))
    state = torch.load(path, weights_only=True)
    assert set(state) == set(GENERATORS["d2gan"].build().state_dict())  # no discriminator weights
    GENERATORS["d2gan"].load(path)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["final_train_losses"] and card["final_val_losses"]


def test_init_generator_fine_tunes_from_shipped_weights_and_keeps_lineage(dna_dir, plain_dir, tmp_path):
    shipped = GENERATORS["mobileunet"].checkpoint
    common = _common(dna_dir, plain_dir, tmp_path, "f", 0) + ["--init_generator", str(shipped)]
    path = inversion.main(["--model", "mobileunet"] + common)
    start, out = torch.load(shipped, weights_only=True), torch.load(path, weights_only=True)
    assert all(torch.equal(start[k], out[k]) for k in start)  # 0 steps: exactly the starting weights
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["init_generator"]["path"] == str(shipped)
    assert card["init_generator"]["record"]["steps"] == json.loads(shipped.with_suffix(".json").read_text())["steps"]

    common[common.index("--steps") + 1] = "1"
    path = inversion.main(["--model", "mobileunet", "--resume"] + common)
    out = torch.load(path, weights_only=True)
    assert not all(torch.equal(start[k], out[k]) for k in start)  # trained on from the shipped weights
    assert json.loads(path.with_suffix(".json").read_text())["init_generator"]["path"] == str(shipped)
