"""OUT/report.html: the printed tables, one bar chart per metric by bin (all models side by side), and a grid of
before/after examples (one frame per bin). Self-contained: the figures are embedded as PNG data URIs."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from ..data.dna import BINS, atomic_write_bytes

METRICS = ("ssim", "psnr", "image sim", "reid", "det", "recall", "untouched")  # recall/untouched: --boxes detect
GOOD = {"ssim": "lower = face changed more", "psnr": "lower = face changed more",
        "image sim": "higher = rest of the frame kept", "reid": "lower = better privacy",
        "det": "higher = still looks like a face", "recall": "higher = fewer faces missed by the detector",
        "untouched": "lower = fewer faces returned unchanged (0 = no leak)"}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def metric_charts(metrics: dict) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(metrics["results"])
    cols = list(BINS) + ["average"]
    charts = []
    for metric in METRICS:
        if not all(metric in metrics["results"][m]["table"] for m in models):
            continue
        fig, ax = plt.subplots(figsize=(6.4, 2.8))
        width = 0.8 / max(1, len(models))
        x = np.arange(len(cols))
        for i, m in enumerate(models):
            vals = [metrics["results"][m]["table"][metric][c] for c in cols]
            ax.bar(x + (i - (len(models) - 1) / 2) * width, [np.nan if v is None else v for v in vals], width,
                   label=m)
        ax.set_xticks(x, [c if c in ("average", "70above") else f"{c}%" for c in cols])
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{metric} by face-area bin ({GOOD[metric]})", fontsize=9)
        ax.legend(fontsize=7, ncol=min(4, len(models)))
        ax.grid(axis="y", alpha=0.3)
        charts.append((metric, _png(fig)))
    return charts


def example_grid(out: Path, models: list[str]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..data.dna import read_image

    folder = out / "examples"
    rows = [b for b in BINS if (folder / f"{b}__original.jpg").exists()]
    if not rows:
        return None
    cols = ["original"] + models
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(2.2 * len(cols), 2.0 * len(rows)), squeeze=False)
    for r, b in enumerate(rows):
        key = (folder / f"{b}.key").read_text().strip() if (folder / f"{b}.key").exists() else ""
        for c, name in enumerate(cols):
            ax = axes[r][c]
            ax.axis("off")
            path = folder / f"{b}__{name}.jpg"
            if path.exists():
                ax.imshow(read_image(path))
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.text(0, -0.06, f"{b}: {key}"[:40], transform=ax.transAxes, fontsize=6, va="top")
    fig.tight_layout()
    return _png(fig)


def write_report(out, metrics: dict, text: str) -> Path:
    out = Path(out)
    charts = metric_charts(metrics)
    grid = example_grid(out, list(metrics["results"]))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>face de-identification evaluation</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}pre{background:#f4f4f4;padding:8px;"
        "tab-size:8}img{max-width:100%}</style></head><body>",
        "<h1>Face de-identification evaluation</h1>",
        f"<p><code>{html.escape(metrics.get('command', ''))}</code><br>data set {html.escape(metrics['dataset_dir'])}"
        f" ({metrics['frames_in_dataset']} frames), boxes: {metrics['boxes']}, finished {metrics['finished']}</p>",
        "<h2>Tables</h2>", f"<pre>{html.escape(text)}</pre>",
        "<h2>Metrics by bin</h2>",
    ]
    parts += [f"<img alt='{html.escape(m)}' src='{uri}'>" for m, uri in charts]
    if grid:
        parts += ["<h2>Before / after (first frame of each bin)</h2>", f"<img alt='examples' src='{grid}'>"]
    parts += ["<h2>Definitions</h2><ul>"]
    parts += [f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in metrics["definitions"].items()]
    parts += ["</ul></body></html>"]
    path = out / "report.html"
    atomic_write_bytes(path, "\n".join(parts).encode())
    return path
