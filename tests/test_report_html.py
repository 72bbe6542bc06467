"""``report.html``: its content from a report and previews, and a real run's page in headless Chromium.

The browser test needs Chromium; ``tests/setup_browser.sh`` (run by ``make test``)
installs it from the system's packages where it can. Without one the test skips and
says why; ``OXE_AUGMENT_CHROMIUM`` may name another Chromium/Chrome binary.
"""

from __future__ import annotations

import base64
import html
import io
import os
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from augment.previews import contact_sheet, write_gif, write_png
from pipelines.report_html import read_previews, write_report_html
from tests.conftest import IN_PROCESS, REPO, read_report, run_cli

FRAME = 32  # preview frame size of the hand-made previews


def make_previews(output_dir: pathlib.Path, keys: list[str], variants: int = 2, steps: int = 5) -> None:
    """Contact sheets and GIFs as the compose stage writes them, from random frames."""
    rng = np.random.default_rng(0)
    for key in keys:
        for camera in ("image_0", "wrist_image"):
            original = rng.integers(0, 256, (steps, FRAME, FRAME, 3), dtype=np.uint8)
            labels = np.zeros((steps, FRAME, FRAME), np.uint8)
            labels[:, 8:24, 4:12] = 1
            clips = [rng.integers(0, 256, original.shape, dtype=np.uint8) for _ in range(variants)]
            stem = output_dir / "previews" / f"{key.replace('/', '_')}_{camera}"
            write_png(f"{stem}.png", contact_sheet(original, labels, clips))
            write_gif(f"{stem}.gif", [original, *clips])


REPORT = {
    "recipe": "textures",
    "recipe_sha256": "f" * 64,
    "input_dir": "/data/bridge/1.0.0",
    "output_dataset": "/out/bridge/1.0.0",
    "splits": {
        "train": {"episodes_in": 7, "episodes_written": 6, "episodes_failed": 1},
        "val_set": {"episodes_in": 2, "episodes_written": 2, "episodes_failed": 0},
    },
    "episodes_in": 9,
    "episodes_written": 8,
    "episodes_failed": 1,
    "output_episodes": 16,
    "frames": 160,
    "wall_seconds": 41.5,
    "frames_per_second": 3.86,
    "episodes_per_second": 0.193,
    "seconds_per_stage": {"read": 2.5, "segment": 10.0, "compose": 7.5},
    "mask_coverage": {"robot": 0.25, "arm": 0.125},
    "failures": [
        {
            "key": "train/000004",
            "split": "train",
            "stage": "read",
            "reason": "truncated record <b>&</b>",
            "source": "/data/bridge/1.0.0/bridge-train.tfrecord-00001",
        }
    ],
}


def img_sources(page: str) -> list[str]:
    return re.findall(r'<img [^>]*src="([^"]*)"', page)


def test_page_holds_the_report_recipe_and_previews_cut_into_rows(tmp_path):
    make_previews(tmp_path, ["train/000000", "val_set/000001"])
    recipe = "name: textures\nbackground:\n  source: procedural  # <kinds>\n"

    path = write_report_html(REPORT, recipe, str(tmp_path))
    page = pathlib.Path(path).read_text(encoding="utf-8")

    assert path == str(tmp_path / "report.html")
    for key in ("episodes_in", "episodes_written", "episodes_failed", "output_episodes", "frames"):
        assert f'data-key="{key}">{REPORT[key]}<' in page
    assert '<tr data-split="val_set"><td>val_set</td><td class="num">2</td>' in page
    assert "truncated record &lt;b&gt;&amp;&lt;/b&gt;" in page and "<b>&</b>" not in page  # escaped
    assert html.escape(recipe) in page
    assert "25.0 %" in page and "12.5 %" in page  # mask coverage
    assert "10.00 s (50 %)" in page  # time per stage
    # Self-contained: every image is embedded, nothing is fetched.
    sources = img_sources(page)
    assert sources and all(s.startswith("data:image/") for s in sources)
    assert "http://" not in page and "https://" not in page
    # Per (episode, camera): original, masks, 2 variants, and the clip.
    assert len(sources) == 4 * 5
    assert page.count('class="row mask-row"') == 4
    rows = [Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))) for s in sources if s.startswith("data:image/png")]
    assert {row.size for row in rows} == {(4 * FRAME, FRAME)}  # each row of a 4-column sheet
    # Gallery order: split, then episode, then camera.
    assert page.index("train/000000 · image_0") < page.index("train/000000 · wrist_image") < page.index("val_set/000001")


def test_mask_row_is_the_sheets_overlay_row(tmp_path):
    make_previews(tmp_path, ["train/000000"], variants=1)
    entry = read_previews(str(tmp_path))[0]
    sheet = np.asarray(Image.open(tmp_path / "previews" / "train_000000_image_0.png").convert("RGB"))
    masks = np.asarray(Image.open(io.BytesIO(entry.masks.data)).convert("RGB"))
    original = np.asarray(Image.open(io.BytesIO(entry.original.data)).convert("RGB"))
    np.testing.assert_array_equal(original, sheet[:FRAME])
    np.testing.assert_array_equal(masks, sheet[FRAME : 2 * FRAME])
    assert len(entry.variants) == 1 and entry.sheet is None


def test_previews_past_the_embedding_budget_are_linked_relatively(tmp_path):
    make_previews(tmp_path, ["train/000000", "train/000001"])
    entries = read_previews(str(tmp_path), embed_limit_bytes=0)
    assert all(e.gif.relative_path == f"previews/{e.name}.gif" and e.gif.data is None for e in entries)
    assert all(e.sheet.relative_path == f"previews/{e.name}.png" for e in entries)


def test_page_without_previews_or_failures_says_so(tmp_path):
    report = dict(REPORT, failures=[], episodes_failed=0, mask_coverage={}, seconds_per_stage={})
    page = pathlib.Path(write_report_html(report, "", str(tmp_path))).read_text(encoding="utf-8")
    assert "No episode failed." in page
    assert "No previews were written" in page
    assert "The recipe text was not recorded" in page
    assert "<img " not in page


# ---------------------------------------------------------------------------------------
# A real run, opened in headless Chromium


def chromium_binary() -> str:
    named = os.environ.get("OXE_AUGMENT_CHROMIUM")
    if named:
        return named
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "no Chromium on this machine and none could be installed: tests/setup_browser.sh (run by `make test`) "
        "installs the Debian package `chromium` when run as root with apt-get available; "
        "or set OXE_AUGMENT_CHROMIUM to a Chromium/Chrome binary"
    )


def run_chromium(binary: str, profile: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        # Virtual time lets the page load and run its script before the DOM is dumped.
        "--virtual-time-budget=10000",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def demo_output(sample_dir, tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("report_html") / "out"
    status = run_cli(
        "run",
        REPO / "configs" / "demo.yaml",
        "--set",
        f"input.dir={sample_dir}",
        "--set",
        f"output.dir={out}",
        "--set",
        "input.max_episodes=2",
        "--set",
        "output.previews=2",
        *IN_PROCESS,
    )
    assert status == 0
    return out


def render_check(dom: str) -> dict[str, int]:
    match = re.search(r'<p id="render-check"([^>]*)>', dom)
    assert match, "the page's render check did not run"
    return {k: int(v) for k, v in re.findall(r'data-([a-z-]+)="(\d+)"', match.group(1))}


def test_report_html_of_a_real_run_renders_in_chromium(demo_output, tmp_path):
    binary = chromium_binary()
    page = demo_output / "report.html"
    assert page.exists(), "the run wrote no report.html"
    report = read_report(demo_output)
    url = page.resolve().as_uri()
    previews = len(list((demo_output / "previews").glob("*.png")))
    assert previews > 0

    dom = run_chromium(binary, tmp_path / "profile", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    check = render_check(dom.stdout)
    # Per preview: original, masks, two variants (demo.yaml), the clip.
    assert check["images-total"] == 5 * previews
    assert check["images-ok"] == check["images-total"], "some images did not decode"
    assert check["masks-shown"] == 0  # the overlays wait for the toggle
    for key in ("episodes_in", "episodes_written", "output_episodes", "frames"):
        assert f'data-key="{key}">{report[key]:,}<' in dom.stdout

    # report.html#masks ticks the toggle: each original row gives way to its mask overlay.
    shot = tmp_path / "report.png"
    masked = run_chromium(
        binary, tmp_path / "profile", "--dump-dom", f"--screenshot={shot}", "--window-size=1280,1800", url + "#masks"
    )
    assert masked.returncode == 0 and shot.exists(), masked.stderr[-2000:]
    assert render_check(masked.stdout)["masks-shown"] == previews
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (1800, 1280, 3)
    assert pixels.std() > 20, "the screenshot is blank"
    # The gallery's frames bring far more colours than the page's own few.
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 2000
