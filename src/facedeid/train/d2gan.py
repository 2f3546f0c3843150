"""Training of the dual-discriminator GAN (`d2gan`): ResnetGenerator + two PatchGAN discriminators (LSGAN).

* d_real_fake (3 ch): real crops -> 1, generated crops -> 0. The generator wants its crops scored 1 (realistic).
* d_orig_deid (6 ch, input = original ++ candidate): a "same face?" critic. "Same" (1) = (x, aug(x)) where aug is a
  flip + small shift + brightness change of the same crop (so it cannot be a pixel-equality test); "changed" (0) =
  (x, G(x)) and (x, another person's crop from the batch). The generator is trained so that (x, G(x)) is scored
  "changed" (0): it is pushed away from whatever the critic recognises as the same face. The opposite direction
  (make the pair look "same", as in pix2pix-style conditional GANs) would pull the output back toward the
  original identity, which is what a de-identifier must not learn.
* Generator: 1*adv_real_fake + w_id*adv_orig_deid + w_context*L1(outside ellipse) + w_coarse*L1(8x8 averages)
  + w_face*L1(face ellipse) + w_feat*(1-cos) EfficientNet-Lite0 features.
"""

from __future__ import annotations

import torch

from .. import cli_args
from ..models.d2gan import D2GAN
from .common import Trainer, base_parser, coarse_l1, masked_l1
from .features import FeatureNet, feature_loss


def same_face_view(x: torch.Tensor) -> torch.Tensor:
    """The same face, not the same pixels: horizontal flip, shift by a few pixels, brightness/contrast jitter."""
    b = x.shape[0]
    y = torch.flip(x, dims=[3])
    shift = int(torch.randint(-4, 5, (1,)))
    y = torch.roll(y, shifts=(shift, -shift), dims=(2, 3))
    gain = 1 + 0.2 * (torch.rand(b, 1, 1, 1, device=x.device) - 0.5)
    bias = 0.2 * (torch.rand(b, 1, 1, 1, device=x.device) - 0.5)
    return (y * gain + bias).clamp(-1, 1)


def mse_to(pred: torch.Tensor, target: float) -> torch.Tensor:
    return ((pred - target) ** 2).mean()


class D2GANTrainer(Trainer):
    script = "train/train_d2gan.py"

    def __init__(self, args):
        super().__init__(args, "d2gan")
        gan = D2GAN(self.spec.size).to(self.device)
        # the generator must match the registry's build() exactly (same keys, same sizes)
        self.models = {"generator": gan.generator, "d_real_fake": gan.d_real_fake, "d_orig_deid": gan.d_orig_deid}
        self.features = FeatureNet().to(self.device)
        betas = (0.5, 0.999)
        self.optimizers = {
            "generator": torch.optim.Adam(gan.generator.parameters(), lr=args.lr, betas=betas),
            "discriminators": torch.optim.Adam(
                list(gan.d_real_fake.parameters()) + list(gan.d_orig_deid.parameters()), lr=args.lr, betas=betas),
        }

    def objective(self) -> str:
        a = self.args
        return (f"G: LSGAN(d_real_fake->real) + {a.w_id}*LSGAN(d_orig_deid->'changed') + {a.w_context}*L1(outside) "
                f"+ {a.w_coarse}*L1(8x8 coarse) + {a.w_face}*L1(face) + {a.w_feat}*(1-cos features); "
                "D: real/fake and same(x,aug x)/changed((x,G x),(x,other x)) LSGAN")

    def g_losses(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        a = self.args
        adv = mse_to(self.models["d_real_fake"](y), 1.0)
        adv_id = mse_to(self.models["d_orig_deid"](torch.cat([x, y], 1)), 0.0)
        context = masked_l1(y, x, 1 - self.mask)
        coarse = coarse_l1(y, x)
        face = masked_l1(y, x, self.mask)
        feat = feature_loss(self.features, x, y)
        total = adv + a.w_id * adv_id + a.w_context * context + a.w_coarse * coarse + a.w_face * face + a.w_feat * feat
        return total, {"g": total.item(), "adv": adv.item(), "adv_id": adv_id.item(), "ctx_l1": context.item(),
                       "face_l1": face.item(), "coarse": coarse.item(), "feat": feat.item()}

    def d_losses(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        d_rf, d_od = self.models["d_real_fake"], self.models["d_orig_deid"]
        y = y.detach()
        rf = 0.5 * (mse_to(d_rf(x), 1.0) + mse_to(d_rf(y), 0.0))
        other = torch.roll(x, 1, dims=0) if x.shape[0] > 1 else torch.flip(x, dims=[2])
        od = 0.5 * mse_to(d_od(torch.cat([x, same_face_view(x)], 1)), 1.0) + 0.25 * (
            mse_to(d_od(torch.cat([x, y], 1)), 0.0) + mse_to(d_od(torch.cat([x, other], 1)), 0.0))
        return rf + od, {"d_rf": rf.item(), "d_od": od.item()}

    def set_d_grad(self, flag: bool) -> None:
        for k in ("d_real_fake", "d_orig_deid"):
            for p in self.models[k].parameters():
                p.requires_grad_(flag)

    def train_step(self, x: torch.Tensor) -> dict[str, float]:
        y = self.generator(x)
        self.set_d_grad(False)
        g_total, g_logs = self.g_losses(x, y)
        self._update("generator", g_total)
        self.set_d_grad(True)
        d_total, d_logs = self.d_losses(x, y)
        self._update("discriminators", d_total)
        return {**g_logs, **d_logs}

    def _update(self, optimizer: str, loss: torch.Tensor) -> None:
        opt = self.optimizers[optimizer]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def val_losses(self, x: torch.Tensor) -> dict[str, float]:
        y = self.generator(x)
        _, g_logs = self.g_losses(x, y)
        _, d_logs = self.d_losses(x, y)
        return {**g_logs, **d_logs}


def build_parser():
    p = base_parser("Train the d2gan generator with its two discriminators on face crops.")
    p.add_argument("--w-id", type=float, default=0.5, help="weight of the orig-vs-deid adversarial term")
    p.add_argument("--w-context", type=float, default=10.0, help="weight of the L1 loss outside the face")
    p.add_argument("--w-coarse", type=float, default=5.0, help="weight of the low-resolution L1 loss on the face")
    p.add_argument("--w-face", type=float, default=2.0, help="weight of the realism adversarial term")
    p.add_argument("--w-feat", type=float, default=1.0, help="weight of the feature-matching loss")
    return cli_args.finish(p)


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.argv = argv
    return D2GANTrainer(args).run()


if __name__ == "__main__":
    main()
