"""Accuracy versus budget, one line per schedule generator, as a hand-written SVG (no
plotting library is a dependency): budgets on the x axis in the benchmark's order, mean
top-1 over tasks and seeds on the y axis, +-1 sample standard deviation over seeds as
error bars, the mean schedule-generation time per choice in the legend."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
WIDTH, HEIGHT = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 60, 200, 30, 50


def accuracy_svg(summary: dict[str, Any]) -> str:
    """The SVG text for a benchmark summary (`benchmark.py`'s summary.json)."""
    budgets: list[str] = summary["budgets"]
    series = []
    for name, block in summary["generators"].items():
        means = [block["mean"][f"accuracy@{b}"] for b in budgets]
        stds = [block["std"].get(f"accuracy@{b}", 0.0) for b in budgets]
        series.append((name, means, stds, block["mean"].get("choose_seconds", 0.0)))
    low = min([m - s for _, ms, ss, _ in series for m, s in zip(ms, ss)] + [100.0])
    high = max([m + s for _, ms, ss, _ in series for m, s in zip(ms, ss)] + [0.0])
    low, high = max(0.0, low - 5), min(100.0, high + 5)
    if high - low < 1:
        low, high = max(0.0, low - 1), min(100.0, high + 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * (i + 0.5) / max(1, len(budgets)))

    def y(v: float) -> float:
        return TOP + plot_h * (1 - (v - low) / (high - low))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
             f'<text x="{LEFT}" y="18" font-size="14">{escape(summary["benchmark"])}: '
             f'accuracy at budget ({len(summary["seeds"])} seeds, mean +- std)</text>',
             f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" '
             f'stroke="black"/>',
             f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="black"/>']
    for k in range(6):
        value = low + (high - low) * k / 5
        parts.append(f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">'
                     f'{value:.0f}</text>')
        parts.append(f'<line x1="{LEFT}" y1="{y(value):.1f}" x2="{LEFT + plot_w}" '
                     f'y2="{y(value):.1f}" stroke="#eee"/>')
    for i, label in enumerate(budgets):
        parts.append(f'<text x="{x(i):.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">'
                     f'{escape(label)}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 10}" text-anchor="middle">'
                 f'budget</text>')
    parts.append(f'<text x="14" y="{TOP + plot_h / 2:.1f}" transform="rotate(-90 14 '
                 f'{TOP + plot_h / 2:.1f})" text-anchor="middle">top-1 accuracy (%)</text>')
    for k, (name, means, stds, choose) in enumerate(series):
        colour = COLOURS[k % len(COLOURS)]
        points = " ".join(f"{x(i):.1f},{y(m):.1f}" for i, m in enumerate(means))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" '
                     f'stroke-width="2"/>')
        for i, (m, s) in enumerate(zip(means, stds)):
            parts.append(f'<line x1="{x(i):.1f}" y1="{y(m - s):.1f}" x2="{x(i):.1f}" '
                         f'y2="{y(m + s):.1f}" stroke="{colour}"/>')
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(m):.1f}" r="3" fill="{colour}"/>')
        ly = TOP + 16 + 34 * k
        parts.append(f'<line x1="{WIDTH - RIGHT + 15}" y1="{ly}" x2="{WIDTH - RIGHT + 35}" '
                     f'y2="{ly}" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{WIDTH - RIGHT + 40}" y="{ly + 4}">{escape(name)}</text>')
        parts.append(f'<text x="{WIDTH - RIGHT + 40}" y="{ly + 18}" fill="#555">choose '
                     f'{choose:.2f} s</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
