"""OUT/report.html: face counts on every bar, visible zero bars, target lines, large examples with face crops,
the sample's description; and the page as headless Chromium renders it (loads, no console errors, every section
shown, every image decoded)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from eval_helpers import eval_argv

from facedeid.evaluation import report as R
from facedeid.evaluation.cli import build_parser
from facedeid.evaluation.runner import Evaluation

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
CHECK = """<script>
window.addEventListener('load', () => {
  const parts = [];
  for (const id of %s) {
    const el = document.getElementById(id);
    const box = el ? el.getBoundingClientRect() : null;
    parts.push(id + '=' + (box ? Math.round(box.height) : -1));
  }
  const images = [...document.images];
  const broken = images.filter(i => !i.complete || i.naturalWidth === 0).length;
  document.body.setAttribute('data-check', parts.join(',') + ';images=' + images.length + ';broken=' + broken);
});
</script>"""


def chromium() -> str:
    """Debian's chromium, installed with apt-get where missing (root); the reason why not, otherwise."""
    found = shutil.which("chromium")
    if found:
        return found
    if not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and there is no apt-get to install it")
    if os.geteuid() != 0:
        pytest.skip("chromium is not installed and installing it with apt-get needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], capture_output=True,
                          text=True, timeout=900, env=env)
    if proc.returncode != 0:
        update = subprocess.run(["apt-get", "update"], capture_output=True, text=True, timeout=600, env=env)
        proc = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
                              capture_output=True, text=True, timeout=900, env=env)
        if proc.returncode != 0:
            tail = (proc.stderr or update.stderr).strip().splitlines()[-1:] or ["?"]
            pytest.skip(f"chromium could not be installed with apt-get: {tail[0][:200]}")
    return shutil.which("chromium") or pytest.skip("apt-get installed chromium but it is not on PATH")


def render(page: Path, profile: Path) -> tuple[str, str]:
    """(DOM after load, Chromium's log): the page with the checker script, in a fresh profile."""
    checked = page.with_name(f"checked_{page.name}")
    ids = "[" + ",".join(f"'{sid}'" for sid, _ in R.SECTIONS) + "]"
    checked.write_text(page.read_text().replace("</body>", CHECK % ids + "</body>"))
    proc = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr",
                           "--v=0", "--window-size=1280,2000", "--virtual-time-budget=10000", "--dump-dom",
                           checked.as_uri()], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def console_problems(log: str) -> list[str]:
    return [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def evaluated(small_dir, sample_dir, tmp_path_factory):
    """blur and mosaic (no server needed) over the small sample, with the sample's README next to its frames."""
    data = tmp_path_factory.mktemp("data") / "set"
    shutil.copytree(small_dir, data)
    shutil.copy2(sample_dir / "README.md", data / "README.md")
    out = tmp_path_factory.mktemp("report")
    argv = eval_argv(data, out, "blur,mosaic")
    args = build_parser().parse_args(argv)
    args.argv = argv
    return out, Evaluation(args).run()


def test_every_bar_has_its_face_count_and_zero_bars_show(evaluated):
    _, metrics = evaluated
    blur = metrics["results"]["blur"]["table"]
    assert blur["det"]["average"] == 0.0  # blur leaves no face for the detector: the zero bars under test
    fig = R.metric_figure(metrics, "det")
    ax = fig.axes[0]
    bars = [p for p in ax.patches if p.get_height() == p.get_height()]  # NaN height: empty bin (no bar)
    assert bars and all(p.get_height() > 0 for p in bars), "a zero value must still draw a visible bar"
    counts = [t.get_text() for t in ax.texts if re.search(r"\n\d+ faces?$", t.get_text())]
    assert len(counts) == len(bars)  # a label on every bar
    assert any(t.endswith(f"\n{blur['faces']['average']} faces") for t in counts)
    assert any(t.get_text() == "no faces" for t in ax.texts)  # the empty 50% bin says so
    assert any(list(line.get_ydata()) == [0.8, 0.8] for line in ax.lines), "det target line missing"
    reid = R.metric_figure(metrics, "reid").axes[0]
    assert any(list(line.get_ydata()) == [0.1, 0.1] for line in reid.lines), "reid target line missing"


def test_report_sections_examples_and_sample_note(evaluated):
    out, metrics = evaluated
    page = (out / "report.html").read_text()
    for sid, title in R.SECTIONS:
        assert f"<section id='{sid}'><h2>{title}</h2>" in page
    assert "one person (the astronaut photo that scikit-image ships) pasted at several sizes" in page
    bins_with_faces = sum(1 for b, n in metrics["results"]["blur"]["table"]["frames"].items()
                          if b != "average" and n)
    assert page.count("class='frame'") == 3 * bins_with_faces  # original, blur, mosaic per bin
    assert page.count("class='face'") == 3 * bins_with_faces
    face = out / "examples" / "10__original__face.jpg"
    from facedeid.data import read_image

    assert read_image(face).shape == (192, 192, 3)
    assert read_image(out / "examples" / "10__original.jpg").shape == (360, 480, 3)  # under 600 px: full size
    assert "psnr dB" in page and "src='http" not in page and "<script" not in page


def test_page_in_headless_chromium(evaluated, tmp_path):
    out, _ = evaluated
    dom, log = render(out / "report.html", tmp_path / "profile")
    assert console_problems(log) == [], console_problems(log)
    check = re.search(r'data-check="([^"]+)"', dom)
    assert check, "the page's load event never fired"
    sections, images = check.group(1).split(";", 1)
    heights = dict(item.split("=") for item in sections.split(","))
    assert set(heights) == {sid for sid, _ in R.SECTIONS}
    assert all(int(h) > 50 for h in heights.values()), heights
    counts = dict(item.split("=") for item in images.split(";"))
    assert int(counts["images"]) >= 5 + 12 and counts["broken"] == "0", counts


def test_the_chromium_check_sees_console_errors_and_broken_images(tmp_path):
    """The check above can fail: a page with a script error and a missing image is caught."""
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><html><body><section id='dataset'>x</section>"
                    "<img src='missing.png'><script>undefinedFunction();</script></body></html>")
    dom, log = render(page, tmp_path / "profile")
    assert any("undefinedFunction" in line for line in console_problems(log)), log[-2000:]
    assert "broken=1" in dom
