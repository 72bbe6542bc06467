"""``report.html``: the run's report as one page that opens in any browser, offline.

The page is built from what a finished run leaves in ``<output.dir>``: the report dict
(``report.json``'s content), the recipe as run, and the previews the compose stage wrote
(``previews/<split>_<index>_<camera>.png`` contact sheets and ``.gif`` clips). It holds
the summary, per-split counts, the failures, mask coverage, time per stage, the recipe
and a gallery. Nothing is fetched from the network: styles and the one small script are
inline, and images are embedded as ``data:`` URIs (up to :data:`EMBED_LIMIT_BYTES`; past
that they are linked relatively, so the page still works beside its ``previews/``).

Masks on request: each contact sheet (see ``augment.previews.contact_sheet``) is cut
into its rows (original, masks, variants). The gallery shows the original row and, when
the "show masks" box is ticked (or the page is opened as ``report.html#masks``), the
mask-overlay row in its place.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import re
from typing import Any

from PIL import Image

from augment.previews import LABEL_COLOURS, OBJECT_COLOUR
from pipelines import filesystems
from segmentation.labels import ARM, BODY, GRIPPER

#: Past this many embedded image bytes, further previews are linked, not embedded: a
#: page of hundreds of megabytes makes browsers crawl.
EMBED_LIMIT_BYTES = 48 * 1024 * 1024

# Stages in the order an episode passes them (pipelines.stages); others follow, sorted.
_STAGE_ORDER = ("read", "decode", "segment", "background", "compose", "write")

# The whole robot first, then its parts, then what else the masks hold.
_COVERAGE_ORDER = ("robot", "arm", "gripper", "objects")

# Preview names are "<split>_<index:06d>_<camera>" (pipelines.stages); split names may
# hold underscores, so the six-digit index is the anchor.
_PREVIEW_NAME = re.compile(r"^(?P<split>.+?)_(?P<index>\d{6})_(?P<camera>.+)$")


@dataclasses.dataclass
class PreviewImage:
    """One picture of the gallery: embedded bytes or a path relative to ``report.html``."""

    mime: str
    data: bytes | None = None
    relative_path: str | None = None

    def src(self) -> str:
        if self.data is not None:
            return f"data:{self.mime};base64,{base64.b64encode(self.data).decode()}"
        return html.escape(self.relative_path or "", quote=True)


@dataclasses.dataclass
class PreviewEntry:
    """The previews of one (episode, camera)."""

    name: str  # the file stem, e.g. train_000003_image_0
    split: str
    episode: str  # <split>/<index>
    camera: str
    original: PreviewImage | None = None  # the sheet's first row
    masks: PreviewImage | None = None  # its mask-overlay row
    variants: list[PreviewImage] = dataclasses.field(default_factory=list)
    sheet: PreviewImage | None = None  # the whole sheet, when it could not be cut into rows
    gif: PreviewImage | None = None


def write_report_html(report: dict, recipe_yaml: str, output_dir: str) -> str:
    """Write ``<output_dir>/report.html`` (local or remote) and return its path.

    ``report`` is the content of ``report.json``; ``recipe_yaml`` the effective recipe
    (empty if unknown); previews are read from ``<output_dir>/previews/``.
    """
    previews = read_previews(output_dir)
    path = filesystems.join(output_dir, "report.html")
    filesystems.write_bytes(path, render_report_html(report, recipe_yaml, previews).encode("utf-8"))
    return path


def read_previews(output_dir: str, embed_limit_bytes: int = EMBED_LIMIT_BYTES) -> list[PreviewEntry]:
    """The gallery's entries, sorted by split, episode and camera."""
    folder = filesystems.join(output_dir, "previews")
    files: dict[str, dict[str, str]] = {}
    for path in filesystems.list_paths(filesystems.join(folder, "*")):
        filename = path.replace("\\", "/").rsplit("/", 1)[-1]
        stem, _, extension = filename.rpartition(".")
        if extension in ("png", "gif") and _PREVIEW_NAME.match(stem):
            files.setdefault(stem, {})[extension] = path

    budget = _EmbedBudget(embed_limit_bytes)
    entries = []
    for stem in sorted(files, key=_preview_sort_key):
        match = _PREVIEW_NAME.match(stem)
        entry = PreviewEntry(
            name=stem,
            split=match["split"],
            episode=f"{match['split']}/{match['index']}",
            camera=match["camera"],
        )
        sheet_bytes = filesystems.read_bytes(files[stem]["png"]) if "png" in files[stem] else None
        gif_bytes = filesystems.read_bytes(files[stem]["gif"]) if "gif" in files[stem] else None
        if gif_bytes is not None:
            entry.gif = budget.image("image/gif", gif_bytes, f"previews/{stem}.gif")
        if sheet_bytes is not None:
            rows = _sheet_rows(sheet_bytes, gif_bytes)
            if rows is None:
                entry.sheet = budget.image("image/png", sheet_bytes, f"previews/{stem}.png")
            else:
                # Rows past the budget fall back to the whole sheet, which is a real file.
                images = [budget.image("image/png", row, None) for row in rows]
                if any(image is None for image in images):
                    entry.sheet = PreviewImage("image/png", relative_path=f"previews/{stem}.png")
                else:
                    entry.original, entry.masks, *entry.variants = images
        entries.append(entry)
    return entries


class _EmbedBudget:
    """Embeds images until ``limit`` bytes, then links the file instead (or gives ``None``)."""

    def __init__(self, limit: int):
        self.left = limit

    def image(self, mime: str, data: bytes, relative_path: str | None) -> PreviewImage | None:
        if len(data) <= self.left:
            self.left -= len(data)
            return PreviewImage(mime, data=data)
        return PreviewImage(mime, relative_path=relative_path) if relative_path else None


def _preview_sort_key(stem: str) -> tuple[str, int, str]:
    match = _PREVIEW_NAME.match(stem)
    return match["split"], int(match["index"]), match["camera"]


def _sheet_rows(sheet_png: bytes, gif: bytes | None) -> list[bytes] | None:
    """The contact sheet cut into its rows (PNG each), or ``None`` if its layout is unclear.

    A sheet has no header saying how tall a frame is; the GIF written beside it does
    (one frame of the clip per cell height, the original and each variant side by side).
    """
    if gif is None:
        return None
    try:
        with Image.open(io.BytesIO(gif)) as clip:
            clip_width, frame_height = clip.size
        with Image.open(io.BytesIO(sheet_png)) as opened:
            sheet = opened.convert("RGB")
    except (OSError, ValueError):
        return None
    width, height = sheet.size
    if frame_height <= 0 or height % frame_height:
        return None
    n_rows = height // frame_height
    n_clips = n_rows - 1  # rows: original, masks, variants; clips: original, variants
    if n_rows < 2 or clip_width % n_clips or width % (clip_width // n_clips):
        return None
    rows = []
    for row in range(n_rows):
        buffer = io.BytesIO()
        # zlib level 1: several times faster than Pillow's default 6, for a few percent more bytes.
        sheet.crop((0, row * frame_height, width, (row + 1) * frame_height)).save(buffer, format="PNG", compress_level=1)
        rows.append(buffer.getvalue())
    return rows


# ---------------------------------------------------------------------------------------
# The page


def render_report_html(report: dict, recipe_yaml: str, previews: list[PreviewEntry]) -> str:
    """The whole page as a string (no file access)."""
    title = f"oxe-augment report: {report.get('recipe', 'recipe')}"
    sections = [
        _warnings_section(report.get("warnings", [])),
        _summary_section(report),
        _splits_section(report.get("splits", {})),
        _failures_section(report.get("failures", [])),
        _gallery_section(previews),
        _coverage_section(report.get("mask_coverage", {})),
        _stages_section(report.get("seconds_per_stage", {})),
        _recipe_section(recipe_yaml, report.get("recipe_sha256", "")),
    ]
    return _PAGE.format(
        title=_e(title),
        style=_STYLE,
        script=_SCRIPT,
        heading=_e(title),
        sections="\n".join(sections),
    )


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return _e(value)


def _summary_section(report: dict) -> str:
    cards = [
        ("episodes_in", "episodes in"),
        ("episodes_written", "written"),
        ("episodes_failed", "failed"),
        ("output_episodes", "output episodes"),
        ("frames", "frames"),
        ("wall_seconds", "wall seconds"),
        ("frames_per_second", "frames / s"),
        ("episodes_per_second", "episodes / s"),
    ]
    items = []
    for key, label in cards:
        if key not in report:
            continue
        bad = " bad" if key == "episodes_failed" and report[key] else ""
        items.append(
            f'<div class="card{bad}"><div class="value" data-key="{key}">{_number(report[key])}</div>'
            f'<div class="label">{_e(label)}</div></div>'
        )
    facts = [
        ("recipe", report.get("recipe", "")),
        ("recipe sha256", report.get("recipe_sha256", "")),
        ("input", report.get("input_dir", "")),
        ("output dataset", report.get("output_dataset", "")),
    ]
    rows = "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(v)}</code></td></tr>" for k, v in facts if v)
    return (
        '<section id="summary"><h2>Summary</h2>'
        f'<div class="cards">{"".join(items)}</div>'
        f'<table class="facts">{rows}</table></section>'
    )


def _splits_section(splits: dict[str, dict[str, int]]) -> str:
    if not splits:
        return '<section id="splits"><h2>Splits</h2><p class="empty">No episodes were read.</p></section>'
    rows = "".join(
        f'<tr data-split="{_e(split)}"><td>{_e(split)}</td>'
        f'<td class="num">{_number(c.get("episodes_in", 0))}</td>'
        f'<td class="num">{_number(c.get("episodes_written", 0))}</td>'
        f'<td class="num{" bad" if c.get("episodes_failed") else ""}">{_number(c.get("episodes_failed", 0))}</td></tr>'
        for split, c in splits.items()
    )
    return (
        '<section id="splits"><h2>Splits</h2><table class="grid">'
        "<thead><tr><th>split</th><th>episodes in</th><th>written</th><th>failed</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _warnings_section(warnings: list[str]) -> str:
    """What the run did that the recipe may not have meant (printed before the run too); nothing if none."""
    if not warnings:
        return ""
    items = "".join(f'<li class="reason">{_e(w)}</li>' for w in warnings)
    return f'<section id="warnings"><h2>Warnings ({len(warnings)})</h2><ul>{items}</ul></section>'


def _failures_section(failures: list[dict[str, Any]]) -> str:
    if not failures:
        return '<section id="failures"><h2>Failures</h2><p class="empty">No episode failed.</p></section>'
    rows = "".join(
        f"<tr><td><code>{_e(f.get('key', ''))}</code></td><td>{_e(f.get('split', ''))}</td>"
        f'<td>{_e(f.get("stage", ""))}</td><td class="reason">{_e(f.get("reason", ""))}</td>'
        f"<td><code>{_e(f.get('source', ''))}</code></td></tr>"
        for f in failures
    )
    return (
        f'<section id="failures"><h2>Failures ({len(failures)})</h2><table class="grid">'
        "<thead><tr><th>episode</th><th>split</th><th>stage</th><th>reason</th><th>source file</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _bar_rows(values: dict[str, float], scale: float, fmt) -> str:
    rows = []
    for name, value in values.items():
        width = 0.0 if scale <= 0 else max(0.0, min(100.0, 100.0 * value / scale))
        rows.append(
            f'<tr><td>{_e(name)}</td><td class="num">{fmt(value)}</td>'
            f'<td class="barcell"><div class="bar" style="width:{width:.1f}%"></div></td></tr>'
        )
    return "".join(rows)


def _ordered(values: dict[str, float], first: tuple[str, ...]) -> dict[str, float]:
    """``values`` with the keys of ``first`` leading in that order, the rest sorted."""
    order = {key: i for i, key in enumerate(first)}
    return dict(sorted(values.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))


def _coverage_section(coverage: dict[str, float]) -> str:
    if not coverage:
        return (
            '<section id="coverage"><h2>Mask coverage</h2>'
            '<p class="empty">No masks in this run (segmentation.source: none).</p></section>'
        )
    rows = _bar_rows(_ordered(coverage, _COVERAGE_ORDER), 1.0, lambda v: f"{100 * v:.1f} %")
    return (
        '<section id="coverage"><h2>Mask coverage</h2>'
        "<p>Mean fraction of the pixels of the written episodes that each target covers.</p>"
        f'<table class="grid bars"><tbody>{rows}</tbody></table></section>'
    )


def _stages_section(stages: dict[str, float]) -> str:
    if not stages:
        return '<section id="stages"><h2>Time per stage</h2><p class="empty">No stage times recorded.</p></section>'
    total = sum(stages.values())
    rows = _bar_rows(
        _ordered(stages, _STAGE_ORDER), total, lambda v: f"{v:,.2f} s ({100 * v / total:.0f} %)" if total else f"{v:.2f} s"
    )
    return (
        '<section id="stages"><h2>Time per stage</h2>'
        "<p>Worker seconds summed over episodes (workers run in parallel, so the sum can exceed the wall time).</p>"
        f'<table class="grid bars"><tbody>{rows}</tbody></table></section>'
    )


def _recipe_section(recipe_yaml: str, sha256: str) -> str:
    digest = f" <small>sha256 <code>{_e(sha256)}</code></small>" if sha256 else ""
    if not recipe_yaml.strip():
        body = '<p class="empty">The recipe text was not recorded with this report.</p>'
    else:
        body = f"<pre>{_e(recipe_yaml)}</pre>"
    return f'<section id="recipe"><h2>Recipe as run{digest}</h2>{body}</section>'


def _img(image: PreviewImage | None, alt: str, css: str) -> str:
    if image is None:
        return ""
    return f'<img class="{css}" src="{image.src()}" alt="{_e(alt)}" loading="eager">'


def _gallery_section(previews: list[PreviewEntry]) -> str:
    if not previews:
        return (
            '<section id="gallery"><h2>Previews</h2>'
            '<p class="empty">No previews were written (output.previews: 0, or every episode failed).</p></section>'
        )
    figures = []
    for p in previews:
        label = f"{p.episode} · {p.camera}"
        if p.sheet is not None:
            sheet = _img(p.sheet, f"{label}: contact sheet", "sheet")
            rows = f'<div class="rowlabel">original, masks, variants</div>{sheet}'
        else:
            variants = "".join(
                f'<div class="rowlabel">variant {i}</div>{_img(v, f"{label}: variant {i}", "row")}'
                for i, v in enumerate(p.variants)
            )
            rows = (
                '<div class="rowlabel">original <span class="with-masks">with masks</span></div>'
                '<div class="stack">'
                f"{_img(p.original, f'{label}: original', 'row original')}"
                f"{_img(p.masks, f'{label}: masks', 'row mask-row')}"
                f"</div>{variants}"
            )
        gif = f'<div class="rowlabel">clip (original | variants)</div>{_img(p.gif, f"{label}: clip", "clip")}' if p.gif else ""
        figures.append(
            f'<figure class="preview" data-split="{_e(p.split)}"><figcaption>{_e(label)}</figcaption>{rows}{gif}</figure>'
        )
    return (
        f'<section id="gallery"><h2>Previews ({len(previews)})</h2>'
        '<label class="toggle"><input type="checkbox" id="show-masks"> show masks '
        f'<span class="legend">{_legend()}</span></label>'
        f'<div class="gallery">{"".join(figures)}</div></section>'
    )


def _legend() -> str:
    """The overlay colours, as ``augment.previews`` paints them."""
    names = {BODY: "body", ARM: "arm", GRIPPER: "gripper"}
    entries = [(names[label], colour) for label, colour in LABEL_COLOURS.items()] + [("objects", OBJECT_COLOUR)]
    return " ".join(f'<i style="background:rgb{tuple(colour)}"></i>{name}' for name, colour in entries)


# The checkbox toggles a class on <body>; CSS swaps the original row for the mask row.
# The render check below writes into the page how many images the browser decoded, so
# a broken preview shows on the page itself (and tests read it from the DOM).
_SCRIPT = """
(function () {
  var box = document.getElementById('show-masks');
  function apply() { document.body.classList.toggle('masks', !!(box && box.checked)); }
  if (box) {
    if (location.hash === '#masks') { box.checked = true; }
    box.addEventListener('change', apply);
    apply();
  }
  window.addEventListener('load', function () {
    var images = Array.prototype.slice.call(document.images);
    var ok = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
    var shown = images.filter(function (i) { return i.offsetWidth > 0 && i.offsetHeight > 0; }).length;
    var masks = Array.prototype.slice.call(document.querySelectorAll('img.mask-row'))
      .filter(function (i) { return i.offsetWidth > 0 && i.offsetHeight > 0; }).length;
    var check = document.getElementById('render-check');
    check.setAttribute('data-images-total', images.length);
    check.setAttribute('data-images-ok', ok);
    check.setAttribute('data-images-shown', shown);
    check.setAttribute('data-masks-shown', masks);
    check.textContent = ok === images.length
      ? 'All ' + images.length + ' images rendered.'
      : (images.length - ok) + ' of ' + images.length + ' images could not be shown (moved previews/ folder?).';
    check.className = ok === images.length ? 'ok' : 'bad';
  });
})();
"""

_STYLE = """
:root { --fg: #1d2430; --muted: #5d6776; --line: #d9dee6; --accent: #2f6fdb; --bad: #c0392b; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { background: #1d2430; color: #fff; padding: 16px 28px; }
header h1 { margin: 0; font-size: 20px; font-weight: 600; }
main { padding: 8px 28px 40px; max-width: 1400px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 18px 16px; margin: 16px 0; }
h2 { font-size: 16px; margin: 4px 0 10px; }
h2 small { font-weight: normal; color: var(--muted); font-size: 12px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin-bottom: 12px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card .value { font-size: 22px; font-weight: 600; }
.card .label { color: var(--muted); font-size: 12px; }
.card.bad .value, td.bad { color: var(--bad); }
table { border-collapse: collapse; }
.facts th { text-align: left; color: var(--muted); font-weight: normal; padding: 2px 14px 2px 0; }
.grid th, .grid td { border-bottom: 1px solid var(--line); padding: 4px 12px 4px 0; text-align: left; vertical-align: top; }
.grid td.num { text-align: right; font-variant-numeric: tabular-nums; }
.grid td.reason { max-width: 520px; }
.bars td:first-child { min-width: 120px; }
.barcell { width: 320px; }
.bar { height: 12px; background: var(--accent); border-radius: 3px; min-width: 1px; }
pre { background: #f0f2f5; padding: 10px; border-radius: 6px; overflow: auto; max-height: 420px; font-size: 12px; }
.empty { color: var(--muted); }
.toggle { display: inline-block; margin-bottom: 10px; cursor: pointer; user-select: none; }
.legend { margin-left: 14px; color: var(--muted); font-size: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin: 0 3px 0 8px; border-radius: 2px; }
.gallery { display: flex; flex-wrap: wrap; gap: 14px; }
figure.preview { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 8px; background: #fafbfc; }
figcaption { font-weight: 600; margin-bottom: 4px; }
.rowlabel { color: var(--muted); font-size: 11px; margin-top: 4px; }
figure img { display: block; image-rendering: pixelated; max-width: 640px; min-width: 320px; height: auto; }
.stack { position: relative; }
.stack img.mask-row { display: none; }
body.masks .stack img.original { display: none; }
body.masks .stack img.mask-row { display: block; }
.with-masks { display: none; }
body.masks .with-masks { display: inline; }
#render-check { color: var(--muted); font-size: 12px; }
#render-check.bad { color: var(--bad); }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<header><h1>{heading}</h1></header>
<main>
{sections}
<p id="render-check">Images not checked (scripts are off).</p>
</main>
<script>{script}</script>
</body>
</html>
"""
