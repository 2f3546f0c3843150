"""Training of the feature-inversion U-Nets (`mobileunet`, `resnet50unet`).

Objective (per batch of crops x, output y = G(x); G sees x only through its identity bottleneck):
    L = w_face * L1(y, x | inner-face ellipse) + w_context * L1(y, x | outside the ellipse)
        + w_feat * (1 - cos(F(x), F(y)))
F is a frozen EfficientNet-Lite0 (real ImageNet weights), average-pooled at strides 4/8/16. Since the bottleneck
hides everything but an 8x8 average of the inner face, the face term can only teach "paint a plausible face with this
pose, skin tone and lighting", never the identity; the context term keeps hair/background for a seamless paste.
"""

from __future__ import annotations

import torch

from .. import cli_args
from .common import Trainer, base_parser, masked_l1
from .features import FeatureNet, feature_loss


class InversionTrainer(Trainer):
    script = "train/train_inversion.py"

    def __init__(self, args):
        super().__init__(args, args.model)
        self.models = {"generator": self.spec.build().to(self.device)}
        self.features = FeatureNet().to(self.device)
        self.optimizers = {"generator": torch.optim.Adam(self.generator.parameters(), lr=args.lr, betas=(0.5, 0.999))}

    def objective(self) -> str:
        a = self.args
        return (f"{a.w_face}*L1(face ellipse) + {a.w_context}*L1(outside ellipse) "
                f"+ {a.w_feat}*(1-cos) EfficientNet-Lite0 features")

    def losses(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        y = self.generator(x)
        face = masked_l1(y, x, self.mask)
        context = masked_l1(y, x, 1 - self.mask)
        feat = feature_loss(self.features, x, y)
        a = self.args
        total = a.w_face * face + a.w_context * context + a.w_feat * feat
        return total, {"loss": total.item(), "face_l1": face.item(), "ctx_l1": context.item(), "feat": feat.item()}

    def train_step(self, x: torch.Tensor) -> dict[str, float]:
        total, logs = self.losses(x)
        opt = self.optimizers["generator"]
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return logs

    def val_losses(self, x: torch.Tensor) -> dict[str, float]:
        return self.losses(x)[1]


def build_parser():
    p = base_parser("Train a feature-inversion generator (mobileunet | resnet50unet) on face crops.")
    p.add_argument("--model", required=True, choices=["mobileunet", "resnet50unet"], help="generator to train")
    p.add_argument("--w-face", type=float, default=1.0, help="weight of the L1 loss on the face")
    p.add_argument("--w-context", type=float, default=2.0, help="weight of the L1 loss outside the face")
    p.add_argument("--w-feat", type=float, default=1.0, help="weight of the feature-inversion loss")
    return cli_args.finish(p)


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.argv = argv
    return InversionTrainer(args).run()


if __name__ == "__main__":
    main()
