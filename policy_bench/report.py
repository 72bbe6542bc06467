"""summary.md (the table) and results.png (success per condition per arm, with intervals)."""

from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image, ImageDraw

from policy_bench.scenes import AXES_AUGMENTATION_TARGETS
from policy_bench.stats import paired_bootstrap, wilson


def _cell(records: list[dict]) -> tuple[int, int, float, float]:
    wins, n = sum(r["success"] for r in records), len(records)
    low, high = wilson(wins, n)
    return wins, n, low, high


def _select(records: list[dict], arm: str, conditions: list[str]) -> list[dict]:
    return [r for r in records if r["arm"] == arm and r["condition"] in conditions]


def write_summary(results: dict, path: pathlib.Path) -> str:
    """Write the Markdown summary and return its text (printed at the end of a run)."""
    records, arms, conditions = results["rollouts"], results["arms"], results["conditions"]
    unseen = [c for c in conditions if c != "train"]
    size = results["size"]
    lines = [
        f"# policy-bench ({size['name']})",
        "",
        f"Success rate (Wilson 95 % interval) per test condition; {size['seeds']} training seed(s) per arm, "
        f"{size['rollouts']} rollouts per (arm, seed, condition), tasks {', '.join(results['tasks'])}. "
        f"`train` is the scene the demonstrations were recorded in; the others change one axis (or `all`). "
        f"Augmentation is expected to help on {', '.join(AXES_AUGMENTATION_TARGETS)}, not on light, camera or noise.",
        "",
        "| condition | " + " | ".join(arms) + " |",
        "|---|" + "---|" * len(arms),
    ]
    for condition in [*conditions, *(["unseen (pooled)"] if unseen else [])]:
        chosen = unseen if condition == "unseen (pooled)" else [condition]
        cells = []
        for arm in arms:
            wins, n, low, high = _cell(_select(records, arm, chosen))
            cells.append(f"{100 * wins / max(n, 1):.0f}% [{100 * low:.0f}, {100 * high:.0f}] ({wins}/{n})")
        lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    if unseen and len(arms) > 1:
        lines += [
            "",
            "Difference in success rate on the unseen conditions (pooled), paired bootstrap 95 % interval over "
            "training seeds and rollouts (percentage points):",
            "",
            "| arm | vs none | vs baseline |",
            "|---|---|---|",
        ]
        for arm in arms:
            if arm in ("none",):
                continue
            cells = []
            for reference in ("none", "baseline"):
                if reference == arm or reference not in arms:
                    cells.append("")
                    continue
                diff, low, high = paired_bootstrap(_select(records, arm, unseen), _select(records, reference, unseen))
                cells.append(f"{100 * diff:+.0f} [{100 * low:+.0f}, {100 * high:+.0f}]")
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    timings = results["timings"]
    lines += [
        "",
        f"Time: {timings['total_s']:.0f} s (demos {timings['demos_s']:.0f} s, oxe-augment {timings['augment_s']:.0f} s, "
        f"training + rollouts {timings['policies_s']:.0f} s).",
    ]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


_COLOURS = [(90, 90, 90), (31, 119, 180), (44, 160, 44), (214, 39, 40), (255, 127, 14), (148, 103, 189), (140, 86, 75)]


def write_plot(results: dict, path: pathlib.Path) -> None:
    """Grouped bars: success per condition (groups) per arm (bars), Wilson intervals as whiskers."""
    records, arms, conditions = results["rollouts"], results["arms"], results["conditions"]
    bar, gap, left, top, height = 14, 18, 50, 30, 240
    group = bar * len(arms) + gap
    width = left + group * len(conditions) + 10
    legend_h = 18 * len(arms) + 10
    image = Image.new("RGB", (max(width, 360), top + height + 40 + legend_h), "white")
    draw = ImageDraw.Draw(image)
    draw.text((left, 8), f"policy-bench {results['size']['name']}: success rate, Wilson 95% interval", fill="black")
    y0 = top + height
    for tick in np.linspace(0, 1, 6):
        y = y0 - tick * height
        draw.line([(left - 4, y), (width - 10, y)], fill=(225, 225, 225))
        draw.text((8, y - 6), f"{100 * tick:.0f}%", fill="black")
    for g, condition in enumerate(conditions):
        x_group = left + g * group + gap // 2
        for a, arm in enumerate(arms):
            wins, n, low, high = _cell(_select(records, arm, [condition]))
            rate = wins / max(n, 1)
            x = x_group + a * bar
            colour = _COLOURS[a % len(_COLOURS)]
            draw.rectangle([x, y0 - rate * height, x + bar - 3, y0], fill=colour)
            centre = x + (bar - 3) / 2
            draw.line([(centre, y0 - low * height), (centre, y0 - high * height)], fill="black", width=1)
            for v in (low, high):
                draw.line([(centre - 3, y0 - v * height), (centre + 3, y0 - v * height)], fill="black")
        draw.text((x_group, y0 + 6), condition[:10], fill="black")
    draw.line([(left - 4, y0), (width - 10, y0)], fill="black")
    for a, arm in enumerate(arms):
        y = y0 + 30 + 18 * a
        draw.rectangle([left, y, left + 12, y + 12], fill=_COLOURS[a % len(_COLOURS)])
        draw.text((left + 18, y), arm, fill="black")
    image.save(path)
