"""Training of the feature-inversion U-Nets (`mobileunet`, `resnet50unet`).

Objective (per batch of crops x, output y = G(x); G sees x only through its identity bottleneck):
    L = w_face * L1(y, x | inner-face ellipse) + w_context * L1(y, x | outside the ellipse)
        + w_feat * (1 - cos(F(x), F(y)))
F is a frozen EfficientNet-Lite0 (real ImageNet weights), average-pooled at strides 4/8/16. Since the bottleneck
hides everything but an 8x8 average of the inner face, the face term can only teach "paint a plausible face with this
pose, skin tone and lighting", never the identity; the context term keeps hair/background for a seamless paste.

`--target ksame` (learned k-Same): the three terms pull y towards t = KSame(x) instead of x, the crop with its inner
face replaced by an aligned average of k >= 10 donors (facedeid.ksame; facedeid.train.targets builds and caches
t). The L1-optimal answer is then a sharp donor average rather than the smeared mean of the original faces; outside
ksame's inner mask t equals x, so the context term still keeps the crop's own hair and background. Crops of the
fid_eff real-face reference (facedeid.ksame.held_apart) are then kept out of training and validation.
"""

from __future__ import annotations

import torch

from .. import cli_args
from .common import Trainer, base_parser, masked_l1
from .data import CropSet
from .features import FeatureNet, feature_loss
from .sampler import Batch
from .targets import TARGETS, held_apart_mask, ksame_targets


class InversionTrainer(Trainer):
    script = "train/train_inversion.py"

    def __init__(self, args):
        super().__init__(args, args.model)
        self.models = {"generator": self.spec.build().to(self.device)}
        self.features = FeatureNet().to(self.device)
        self.optimizers = {"generator": torch.optim.Adam(self.generator.parameters(), lr=args.lr, betas=(0.5, 0.999))}

    @property
    def target(self) -> str:
        return getattr(self.args, "target", "original")

    def targets_for(self, data: CropSet):
        if self.target != "ksame":
            return None
        self.data_notes["target"] = "ksame: KSame().generate(crops) (facedeid.train.targets), shipped donor bank"
        return ksame_targets(data, progress=not self.args.no_progress)

    def excluded(self, data: CropSet):
        if self.target != "ksame":
            return None
        mask = held_apart_mask(data)
        self.data_notes["excluded"] = (f"{int(mask.sum())} crops whose source file is in the fid_eff real-face "
                                       "reference (facedeid.ksame.held_apart): in neither training nor validation")
        return mask

    def objective(self) -> str:
        a = self.args
        towards = "ksame target t = KSame(x)" if self.target == "ksame" else "original x"
        return (f"{a.w_face}*L1(face ellipse) + {a.w_context}*L1(outside ellipse) "
                f"+ {a.w_feat}*(1-cos) EfficientNet-Lite0 features; every term towards the {towards}")

    def losses(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        x, t = batch if isinstance(batch, tuple) else (batch, batch)
        y = self.generator(x)
        face = masked_l1(y, t, self.mask)
        context = masked_l1(y, t, 1 - self.mask)
        feat = feature_loss(self.features, t, y)
        a = self.args
        total = a.w_face * face + a.w_context * context + a.w_feat * feat
        return total, {"loss": total.item(), "face_l1": face.item(), "ctx_l1": context.item(), "feat": feat.item()}

    def train_step(self, x: Batch) -> dict[str, float]:
        total, logs = self.losses(x)
        opt = self.optimizers["generator"]
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return logs

    def val_losses(self, x: Batch) -> dict[str, float]:
        return self.losses(x)[1]


def build_parser():
    p = base_parser("Train a feature-inversion generator (mobileunet | resnet50unet) on face crops.")
    p.add_argument("--model", required=True, choices=["mobileunet", "resnet50unet"], help="generator to train")
    p.add_argument("--w-face", type=float, default=1.0, help="weight of the L1 loss on the face")
    p.add_argument("--w-context", type=float, default=2.0, help="weight of the L1 loss outside the face")
    p.add_argument("--w-feat", type=float, default=1.0, help="weight of the feature-inversion loss")
    p.add_argument("--target", default="original", choices=TARGETS,
                   help="what the losses pull the output towards: the original crop, or ksame's donor average of it "
                        "(learned k-Same; targets cached beside the crop cache; held-apart fid_eff crops excluded)")
    return cli_args.finish(p)


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.argv = argv
    return InversionTrainer(args).run()


if __name__ == "__main__":
    main()
