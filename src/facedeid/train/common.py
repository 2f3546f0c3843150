"""Shared training loop: data sampling, budget (steps / minutes), validation, sample grids, checkpoints, export."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import shlex
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..models.bottleneck import face_mask
from ..models.registry import get_spec
from .data import CropSet, load_crops
from .sampler import Sampler, batch_to, inputs_of, save_grid

LICENSE_NOTE = (
    "Trained on UTKFace (https://susanqq.github.io/UTKFace/) crops: UTKFace is available for non-commercial "
    "research purposes only, so these weights are for non-commercial research use only."
)


DEFAULT_STEPS = 100000
DEFAULT_MINUTES = 30.0


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset-dir", required=True, nargs="+",
                   help="DNA-layout dir (images/ + labels/) or plain folder of face photos; several allowed")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--out-dir", default=None, help="run dir: last.pt, log.jsonl, samples/ (default runs/<model>)")
    p.add_argument("--weights-out", default=None,
                   help="final fp16 generator state dict (default src/facedeid/weights/<model>.pt; card next to it)")
    p.add_argument("--steps", type=int, default=None,
                   help="stop after this many optimizer steps in total, counting resumed ones "
                        f"(default {DEFAULT_STEPS})")
    p.add_argument("--minutes", type=float, default=None,
                   help="stop after this much wall time in this run. Both given: whichever limit comes first stops "
                        "the run. Only --steps given: no time limit. Neither: "
                        f"{DEFAULT_STEPS} steps or {DEFAULT_MINUTES:g} minutes, whichever comes first")
    p.add_argument("--batch-size", type=int, default=16, help="face crops per optimizer step")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch default)")
    p.add_argument("--val-percent", type=float, default=2.0, help="share of source files held out for validation")
    p.add_argument("--val-every", type=int, default=100, help="validate every N steps")
    p.add_argument("--val-batches", type=int, default=4, help="validation batches per validation")
    p.add_argument("--sample-every", type=int, default=100, help="write a before/after sample grid every N steps")
    p.add_argument("--save-every", type=int, default=100, help="write <out-dir>/last.pt every N steps")
    p.add_argument("--resume", action="store_true", help="continue from <out_dir>/last.pt")
    p.add_argument("--init-generator", type=Path, default=None,
                   help="start the generator from an exported checkpoint (e.g. the shipped weights) and fine-tune it; "
                        "discriminators and optimizers start fresh; ignored with --resume")
    p.add_argument("--no-cache", action="store_true", help="do not read/write the crop cache")
    p.add_argument("--max-images", type=int, default=None, help="use only the first N images of each dataset")
    p.add_argument("--seed", type=int, default=0, help="random seed (data split, sampling, initial weights)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def resolve_budget(steps: int | None, minutes: float | None) -> tuple[int, float]:
    """(steps, minutes) limits of a run; the first one reached stops it (see --minutes)."""
    if steps is None and minutes is None:
        return DEFAULT_STEPS, DEFAULT_MINUTES
    if minutes is None:
        return steps, math.inf  # an explicit --steps alone is not cut short by a default time limit
    return (DEFAULT_STEPS if steps is None else steps), minutes


def masked_l1(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean |a-b| over the pixels selected by `weight` ([1|B,1,S,S] in [0,1])."""
    weight = weight.expand(a.shape[0], 1, *a.shape[2:])
    return ((a - b).abs() * weight).sum() / (weight.sum() * a.shape[1] + 1e-6)


def coarse_l1(a: torch.Tensor, b: torch.Tensor, cells: int = 8) -> torch.Tensor:
    return (F.adaptive_avg_pool2d(a, cells) - F.adaptive_avg_pool2d(b, cells)).abs().mean()


class Trainer:
    """Subclasses define `models`, `optimizers` (dicts), `generator`, `train_step(x)` and `val_losses(x)`."""

    name: str = ""
    script: str = ""  # the CLI that runs this trainer, for the training record
    models: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]

    def __init__(self, args: argparse.Namespace, model_name: str):
        self.args = args
        self.name = model_name
        self.spec = get_spec(model_name)
        if args.threads:
            torch.set_num_threads(args.threads)
        torch.manual_seed(args.seed)
        self.device = torch.device(args.device)
        self.out_dir = Path(args.out_dir or Path("runs") / model_name)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.weights_out = Path(args.weights_out) if args.weights_out else self.spec.checkpoint
        self.mask = face_mask(self.spec.size).to(self.device)
        self.step = 0
        self.wall_before = 0.0  # seconds spent in earlier (resumed) runs
        self.history: list[dict] = []
        self.commands: list[str] = []  # one per run (first run, then each --resume)
        self.last_train: dict[str, float] = {}
        self.last_val: dict[str, float] = {}
        self.init_record: dict | None = None  # set by init_generator(), kept across --resume in the checkpoint
        self.data_notes: dict = {}  # what a subclass did to the data (targets, exclusions), for the training card
        self.data = self._load_data()
        self.sampler = Sampler(self.data, args.batch_size, args.seed, self.excluded(self.data))

    # -- data ---------------------------------------------------------------------------------------------------
    def _load_data(self) -> CropSet:
        sets = [load_crops(d, self.spec.size, self.args.val_percent, use_cache=not self.args.no_cache,
                           progress=not self.args.no_progress, max_images=self.args.max_images)
                for d in self.args.dataset_dir]
        for s in sets:
            s.targets = self.targets_for(s)
        if len(sets) == 1:
            return sets[0]
        targets = None if sets[0].targets is None else np.concatenate([np.asarray(s.targets) for s in sets])
        return CropSet(np.concatenate([np.asarray(s.crops) for s in sets]), sum((s.sources for s in sets), []),
                       np.concatenate([s.is_val for s in sets]), targets=targets)

    # -- hooks --------------------------------------------------------------------------------------------------
    def targets_for(self, data: CropSet) -> np.ndarray | None:
        """Training targets of one crop set (same order), or None: the crops are their own targets."""
        return None

    def excluded(self, data: CropSet) -> np.ndarray | None:
        """[N] bool: crops kept out of training and validation, or None."""
        return None

    def train_step(self, x: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError

    def val_losses(self, x: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError

    @property
    def generator(self) -> torch.nn.Module:
        return self.models["generator"]

    # -- checkpoints --------------------------------------------------------------------------------------------
    def checkpoint_path(self) -> Path:
        return self.out_dir / "last.pt"

    def save_checkpoint(self, wall_now: float) -> None:
        state = {
            "step": self.step,
            "wall_s": self.wall_before + wall_now,
            "models": {k: m.state_dict() for k, m in self.models.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "history": self.history,
            "commands": self.commands + [self.command()],
            "rng": self.sampler.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "init_record": json.dumps(self.init_record),
        }
        tmp = self.checkpoint_path().with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint_path())

    def load_checkpoint(self) -> None:
        path = self.checkpoint_path()
        if not path.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {path}")
        state = torch.load(path, map_location=self.device, weights_only=True)
        for k, m in self.models.items():
            m.load_state_dict(state["models"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.step = int(state["step"])
        self.wall_before = float(state.get("wall_s", 0.0))
        self.history = state.get("history", [])
        self.commands = state.get("commands", [])
        if "rng" in state:
            self.sampler.rng.bit_generator.state = state["rng"]
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        self.init_record = json.loads(state.get("init_record", "null"))

    def init_generator(self, path: Path) -> None:
        """Fine-tuning start: the generator from an exported checkpoint (or a run's last.pt), loaded strictly."""
        self.generator.load_state_dict(self.spec.load(path).state_dict())
        card = path.with_suffix(".json")
        # the starting point's own training record, so the lineage of the final weights stays on record
        self.init_record = {"path": str(path), "record": json.loads(card.read_text()) if card.exists() else None}

    def export(self, wall_now: float, stopped_by: str) -> Path:
        """fp16 generator state dict (keys exactly those of spec.build()) + JSON training record; verified by load."""
        gen_state = {k: v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu()
                     for k, v in self.generator.state_dict().items()}
        expected = set(self.spec.build().state_dict().keys())
        if set(gen_state) != expected:
            raise RuntimeError(f"generator keys differ from {self.name} spec: {sorted(set(gen_state) ^ expected)[:5]}")
        self.weights_out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(gen_state, self.weights_out)
        self.spec.load(self.weights_out)  # strict load check
        record = {
            "model": self.name,
            "command": self.command(),
            "commands_all_runs": self.commands + [self.command()],
            "data": {
                "dataset_dir": [str(Path(d).resolve()) for d in self.args.dataset_dir],
                "train_crops": int(len(self.sampler.train_idx)),
                "val_crops": int(len(self.sampler.val_idx)),
                "split": f"by source file, crc32(path) -> {self.args.val_percent}% validation",
                "crop_size": self.spec.size,
                **self.data_notes,
            },
            "steps": self.step,
            "batch_size": self.args.batch_size,
            "lr": self.args.lr,
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "wall_time_s": round(self.wall_before + wall_now, 1),
            "stopped_by": stopped_by,
            "final_train_losses": self.last_train,
            "final_val_losses": self.last_val,
            "objective": self.objective(),
            "torch_version": torch.__version__,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "license": LICENSE_NOTE,
            "checkpoint_bytes": self.weights_out.stat().st_size,
            "run_dir": str(self.out_dir),
        }
        if self.init_record is not None:
            record["init_generator"] = self.init_record
        self.weights_out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
        return self.weights_out

    def objective(self) -> str:
        return ""

    def command(self) -> str:
        argv = getattr(self.args, "argv", None)
        if argv is None:
            argv = sys.argv[1:]
        return " ".join(shlex.quote(a) for a in ["python", self.script] + list(argv))

    # -- validation / samples -----------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        for m in self.models.values():
            m.eval()
        totals: dict[str, float] = {}
        batches = self.sampler.val_batches(self.args.val_batches)
        for batch in batches:
            for k, v in self.val_losses(batch_to(batch, self.device)).items():
                totals[k] = totals.get(k, 0.0) + v / len(batches)
        for m in self.models.values():
            m.train()
        return {k: round(v, 5) for k, v in totals.items()}

    @torch.no_grad()
    def write_samples(self) -> None:
        g = self.generator.eval()
        batch = self.sampler.val_batches(1)[0]
        x = inputs_of(batch)[:6].to(self.device)
        view = g.bottleneck(x)[:, :3]
        out = g(x)
        g.train()
        target = batch[1][:6] if isinstance(batch, tuple) else None
        save_grid(self.out_dir / "samples" / f"step{self.step:06d}.png", x.cpu(), view.cpu(), out.cpu(), target)

    def log(self, entry: dict) -> None:
        with open(self.out_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")

    # -- loop ---------------------------------------------------------------------------------------------------
    def run(self) -> Path:
        args = self.args
        if args.resume:
            self.load_checkpoint()
        elif args.init_generator is not None:
            self.init_generator(args.init_generator)
        for m in self.models.values():
            m.to(self.device).train()
        start = time.time()
        steps, minutes = resolve_budget(args.steps, args.minutes)
        print(f"{self.name}: stops at step {steps}" + (f" or after {minutes:g} minutes, whichever comes first"
                                                          if math.isfinite(minutes) else " (no time limit)"))
        stopped_by = "steps"
        interrupted = {"flag": False}

        def on_term(signum, frame):  # SIGTERM: stop cleanly like Ctrl-C
            interrupted["flag"] = True

        old = signal.signal(signal.SIGTERM, on_term)
        bar = None
        if not args.no_progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, initial=self.step, desc=self.name, unit="step", mininterval=2)
        ema: dict[str, float] = {}
        try:
            while self.step < steps:
                if (time.time() - start) / 60 >= minutes:
                    stopped_by = "minutes"
                    break
                if interrupted["flag"]:
                    stopped_by = "signal"
                    break
                losses = self.train_step(batch_to(self.sampler.train_batch(), self.device))
                self.step += 1
                for k, v in losses.items():
                    ema[k] = v if k not in ema else 0.95 * ema[k] + 0.05 * v
                self.last_train = {k: round(v, 5) for k, v in ema.items()}
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.3f}" for k, v in list(ema.items())[:5]}, refresh=False)
                if self.step % 10 == 0:
                    self.log({"step": self.step, "t": round(time.time() - start, 1), "train": self.last_train})
                if self.step % args.val_every == 0 and len(self.sampler.val_idx):
                    self.last_val = self.validate()
                    self.history.append({"step": self.step, "train": self.last_train, "val": self.last_val})
                    self.log({"step": self.step, "val": self.last_val})
                    if bar is not None:
                        bar.write(f"step {self.step} val {self.last_val}")
                if self.step % args.sample_every == 0 and len(self.sampler.val_idx):
                    self.write_samples()
                if self.step % args.save_every == 0:
                    self.save_checkpoint(time.time() - start)
        except KeyboardInterrupt:
            stopped_by = "interrupt"
        finally:
            signal.signal(signal.SIGTERM, old)
            if bar is not None:
                bar.close()
        if len(self.sampler.val_idx):
            self.last_val = self.validate()
            self.log({"step": self.step, "val": self.last_val, "final": True})
            self.write_samples()
        wall = time.time() - start
        self.save_checkpoint(wall)
        path = self.export(wall, stopped_by)
        print(f"{self.name}: step {self.step}, stopped by {stopped_by}, train {self.last_train}, "
              f"val {self.last_val}, wrote {path}")
        return path
