"""OUT/report.html: what the data set is, the printed tables, one bar chart per metric by bin (all models side by
side, face counts on every bar, targets drawn), and before/after examples per bin with enlarged face crops.
Self-contained: figures and photos are embedded as data URIs; no script, nothing loaded from elsewhere."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from ..data.dna import BINS, atomic_write_bytes

METRICS = ("ssim", "psnr", "image sim", "reid", "det", "recall", "untouched")  # recall/untouched: --boxes detect
# table key each chart plots: psnr in dB, as printed
PLOTTED = {"ssim": "ssim", "psnr": "psnr_db", "image sim": "image sim", "reid": "reid", "det": "det",
           "recall": "recall", "untouched": "untouched"}
GOOD = {"ssim": "lower = face changed more", "psnr": "dB, lower = face changed more",
        "image sim": "higher = rest of the frame kept", "reid": "lower = better privacy",
        "det": "higher = still looks like a face", "recall": "higher = fewer faces missed by the detector",
        "untouched": "lower = fewer faces returned unchanged (0 = no leak)"}
# The project's targets (README "Training" / "Evaluation"): at most 10 % of faces re-identified, at least 80 % of
# de-identified faces still found by the detector.
TARGETS = {"reid": (0.10, "target: at most 0.10"), "det": (0.80, "target: at least 0.80")}
SECTIONS = (("dataset", "Data set"), ("tables", "Tables"), ("charts", "Metrics by bin"),
            ("examples", "Before / after"), ("definitions", "What the numbers mean"))
ZERO_BAR = 0.012  # share of the axis a zero bar is drawn with, so "0" is seen as a value, not as missing data


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _jpeg_uri(path: Path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()


def metric_charts(metrics: dict) -> list[tuple[str, str]]:
    """One chart per metric every model's table has (recall/untouched only in --boxes detect runs)."""
    tables = [r["table"] for r in metrics["results"].values()]
    return [(metric, _png(metric_figure(metrics, metric))) for metric in METRICS
            if all(PLOTTED[metric] in t for t in tables)]


def metric_figure(metrics: dict, metric: str):
    """Bars per bin for every model: value and face count on each bar, zero drawn thin, target line dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(metrics["results"])
    cols = list(BINS) + ["average"]
    key = PLOTTED[metric]
    fig, ax = plt.subplots(figsize=(10, 3.4))
    width = 0.8 / max(1, len(models))
    x = np.arange(len(cols))
    values = {m: [metrics["results"][m]["table"].get(key, {}).get(c) for c in cols] for m in models}
    finite = [v for vals in values.values() for v in vals if v is not None]
    top = 1.3 if key != "psnr_db" else max([10.0, *finite]) * 1.3
    for i, m in enumerate(models):
        faces = metrics["results"][m]["table"]["faces"]
        xs = x + (i - (len(models) - 1) / 2) * width
        heights = [np.nan if v is None else max(v, ZERO_BAR * top) for v in values[m]]
        bars = ax.bar(xs, heights, width, label=m, edgecolor="black", linewidth=0.4)
        for bar, v, c in zip(bars, values[m], cols):
            if v is None:
                text, y = "no faces", 0.0
            else:
                text, y = f"{v:.1f}" if key == "psnr_db" else f"{v:.2f}", bar.get_height()
                n = faces.get(c, 0) or 0
                text += f"\n{n} face" + ("" if n == 1 else "s")
            ax.text(bar.get_x() + bar.get_width() / 2, y + 0.01 * top, text, ha="center", va="bottom",
                    fontsize=6.5, rotation=0 if len(models) <= 2 else 90)
    if metric in TARGETS:
        value, text = TARGETS[metric]
        ax.axhline(value, color="crimson", linestyle="--", linewidth=1)
        ax.text(len(cols) - 0.5, value, f" {text}", color="crimson", fontsize=7, va="center", ha="left",
                clip_on=False)
    ax.set_xticks(x, [c if c in ("average", "70above") else f"{c}%" for c in cols])
    ax.set_xlim(-0.5, len(cols) - 0.5)
    ax.set_ylim(0, top)
    ax.set_xlabel("face-area bin (faces' share of the frame)", fontsize=8)
    ax.set_title(f"{metric} by face-area bin ({GOOD[metric]})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return fig


def example_rows(out: Path, models: list[str]) -> list[dict]:
    """Per bin with an example: the frame key and, per column (original + models), the frame and face crop."""
    folder = out / "examples"
    rows = []
    for b in BINS:
        if not (folder / f"{b}__original.jpg").exists():
            continue
        key = (folder / f"{b}.key").read_text().strip() if (folder / f"{b}.key").exists() else ""
        cells = []
        for name in ["original"] + models:
            frame, face = folder / f"{b}__{name}.jpg", folder / f"{b}__{name}__face.jpg"
            cells.append({"name": name, "frame": frame if frame.exists() else None,
                          "face": face if face.exists() else None})
        rows.append({"bin": b, "key": key, "cells": cells})
    return rows


def _examples_html(rows: list[dict]) -> list[str]:
    parts = ["<p>The first frame (by path) of each bin, as the server returned it; under each frame the largest "
             "labelled face, enlarged.</p>"]
    for row in rows:
        label = row["bin"] if row["bin"] == "70above" else f"{row['bin']}%"
        parts.append(f"<h3>bin {html.escape(label)}: <code>{html.escape(row['key'])}</code></h3><div class='row'>")
        for cell in row["cells"]:
            parts.append(f"<figure><figcaption>{html.escape(cell['name'])}</figcaption>")
            if cell["frame"] is not None:
                parts.append(f"<img class='frame' alt='{html.escape(cell['name'])} frame' "
                             f"src='{_jpeg_uri(cell['frame'])}'>")
            if cell["face"] is not None:
                parts.append(f"<img class='face' alt='{html.escape(cell['name'])} face' "
                             f"src='{_jpeg_uri(cell['face'])}'>")
            parts.append("</figure>")
        parts.append("</div>")
    return parts


def dataset_note(metrics: dict) -> str | None:
    """The data set's own description (its README.md, first paragraph), e.g. what the bundled sample is."""
    readme = Path(metrics.get("dataset_dir", "")) / "README.md"
    if not readme.is_file():
        return None
    text = readme.read_text(errors="replace").strip()
    paragraphs = [p for p in text.split("\n\n") if p.strip() and not p.lstrip().startswith("#")]
    return " ".join(paragraphs[0].split()) if paragraphs else None


STYLE = ("body{font-family:sans-serif;max-width:1250px;margin:auto;padding:0 12px}pre{background:#f4f4f4;"
         "padding:8px;tab-size:8;overflow-x:auto}img{max-width:100%}.row{display:flex;flex-wrap:wrap;gap:10px}"
         "figure{margin:0}figcaption{font-weight:bold;font-size:90%}img.frame{display:block;width:300px}"
         "img.face{display:block;width:160px;height:160px;margin-top:4px;image-rendering:auto}"
         ".note{background:#fff6d5;border-left:4px solid #e0b000;padding:6px 10px}")


def write_report(out, metrics: dict, text: str) -> Path:
    out = Path(out)
    models = list(metrics["results"])
    charts = metric_charts(metrics)
    rows = example_rows(out, models)
    first = metrics["results"][models[0]] if models else {}
    faces = (first.get("table", {}).get("faces", {}) or {}).get("average", 0)
    note = dataset_note(metrics)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>face de-identification evaluation"
        f"</title><style>{STYLE}</style></head><body>",
        "<h1>Face de-identification evaluation</h1>",
        "<nav>" + " · ".join(f"<a href='#{sid}'>{title}</a>" for sid, title in SECTIONS) + "</nav>",
        f"<section id='dataset'><h2>{SECTIONS[0][1]}</h2>",
        f"<p><code>{html.escape(metrics.get('command', ''))}</code></p>",
        f"<p>{html.escape(metrics['dataset_dir'])}: {metrics['frames_in_dataset']} frames, {faces} labelled faces "
        f"in frames with faces; boxes: {html.escape(str(metrics['boxes']))}; finished "
        f"{html.escape(str(metrics['finished']))}.</p>",
        "<p class='note'><b>What the sample is:</b> " + html.escape(
            note or "no description found (the data set has no README.md); the numbers hold for these frames "
                    "only.") + "</p></section>",
        f"<section id='tables'><h2>{SECTIONS[1][1]}</h2><pre>{html.escape(text)}</pre></section>",
        f"<section id='charts'><h2>{SECTIONS[2][1]}</h2><p>Each bar is labelled with its value and the number of "
        "faces behind it; a zero is drawn as a thin bar, an empty bin says “no faces”; dashed red lines are the "
        "targets.</p>",
    ]
    parts += [f"<img alt='{html.escape(m)} chart' src='{uri}'>" for m, uri in charts]
    parts += ["</section>", f"<section id='examples'><h2>{SECTIONS[3][1]}</h2>"]
    parts += _examples_html(rows) if rows else ["<p>No examples (no frame with faces was evaluated).</p>"]
    parts += ["</section>", f"<section id='definitions'><h2>{SECTIONS[4][1]}</h2><ul>"]
    parts += [f"<li><b>{html.escape(m)}</b>: {html.escape(GOOD[m])}</li>" for m in METRICS]
    parts += [f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in metrics["definitions"].items()]
    parts += ["</ul></section></body></html>"]
    path = out / "report.html"
    atomic_write_bytes(path, "\n".join(parts).encode())
    return path
