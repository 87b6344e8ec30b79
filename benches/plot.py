#!/usr/bin/env python3
"""Latency percentiles per broker as an SVG, from benches/peers.sh's JSON lines.

    python3 benches/plot.py benches/results/latest.jsonl benches/results/latency.svg

One panel per workload (QoS 1 at 10k msg/s first, then QoS 0 fan-out
1->100), grouped bars: one group per percentile, one bar per broker, the
height the median of the rounds, each round a dot. Log-scale y axis in
microseconds. No plotting library: the SVG is written by hand.

`mqdb bench` reports p50, p99, p99.9 and max (no p90); a p90_us field would
be drawn if present.
"""

import json
import math
import statistics
import sys
from html import escape

BROKERS = [("mqdb", "#1f77b4"), ("mosquitto", "#ff7f0e"), ("rumqttd", "#2ca02c")]
PANELS = [
    ("latency-qos1", "QoS 1, 1 publisher -> 1 subscriber at 10,000 msg/s"),
    ("fanout-qos0", "QoS 0, 1 publisher -> 100 subscribers at 1,000 msg/s"),
]
PERCENTILES = [
    ("p50_us", "p50"),
    ("p90_us", "p90"),
    ("p99_us", "p99"),
    ("p999_us", "p99.9"),
    ("max_us", "max"),
]

W, H = 560, 400  # one panel
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 58, 60


def load(path):
    runs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                runs.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return runs


def fmt_us(v):
    if v >= 1_000_000:
        return f"{v / 1_000_000:.3g} s"
    if v >= 1000:
        return f"{v / 1000:.3g} ms"
    return f"{v:.0f} us"


def panel(runs, case, title, x0):
    """SVG elements of one panel whose left edge is at x0, or None."""
    data = {}  # (broker, field) -> [values by round]
    for r in runs:
        if r.get("case") != case:
            continue
        for field, _ in PERCENTILES:
            v = r.get(field)
            if isinstance(v, (int, float)) and v > 0:
                data.setdefault((r.get("peer"), field), []).append(v)
    fields = [(f, l) for f, l in PERCENTILES if any((b, f) in data for b, _ in BROKERS)]
    brokers = [(b, c) for b, c in BROKERS if any((b, f) in data for f, _ in fields)]
    if not fields or not brokers:
        return None
    values = [v for vs in data.values() for v in vs]
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values) * 1.5))
    if hi <= lo:
        hi = lo * 10
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    px0, py0 = x0 + LEFT, TOP

    def y(v):
        return py0 + ph - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * ph

    out = [f'<text x="{x0 + W / 2}" y="22" text-anchor="middle" font-size="14" font-weight="bold">'
           f"{escape(title)}</text>"]
    # Grid and y axis: a labelled line per decade, light lines at 2x and 5x.
    decade = lo
    while decade <= hi * 1.0001:
        yy = y(decade)
        out.append(f'<line x1="{px0}" y1="{yy:.1f}" x2="{px0 + pw}" y2="{yy:.1f}" stroke="#bbb"/>')
        out.append(f'<text x="{px0 - 6}" y="{yy + 4:.1f}" text-anchor="end" font-size="11">{fmt_us(decade)}</text>')
        for m in (2, 5):
            if decade * m < hi:
                ym = y(decade * m)
                out.append(f'<line x1="{px0}" y1="{ym:.1f}" x2="{px0 + pw}" y2="{ym:.1f}" '
                           f'stroke="#e4e4e4" stroke-dasharray="3,3"/>')
        decade *= 10
    out.append(f'<line x1="{px0}" y1="{py0}" x2="{px0}" y2="{py0 + ph}" stroke="#000"/>')
    out.append(f'<line x1="{px0}" y1="{py0 + ph}" x2="{px0 + pw}" y2="{py0 + ph}" stroke="#000"/>')
    out.append(f'<text x="{x0 + 16}" y="{py0 + ph / 2}" font-size="12" text-anchor="middle" '
               f'transform="rotate(-90 {x0 + 16} {py0 + ph / 2})">latency (log scale)</text>')
    # Bars: median height, every round as a dot, the median written above.
    group = pw / len(fields)
    bar = group * 0.8 / len(brokers)
    for i, (field, label) in enumerate(fields):
        gx = px0 + i * group + group * 0.1
        out.append(f'<text x="{px0 + (i + 0.5) * group:.1f}" y="{py0 + ph + 18}" '
                   f'text-anchor="middle" font-size="12">{label}</text>')
        for j, (b, color) in enumerate(brokers):
            vs = data.get((b, field))
            if not vs:
                continue
            med = statistics.median(vs)
            bx = gx + j * bar
            top = y(med)
            out.append(f'<rect x="{bx:.1f}" y="{top:.1f}" width="{bar * 0.9:.1f}" '
                       f'height="{py0 + ph - top:.1f}" fill="{color}" fill-opacity="0.85">'
                       f"<title>{b} {label}: median {fmt_us(med)}, rounds "
                       f"{', '.join(fmt_us(v) for v in vs)}</title></rect>")
            for v in vs:
                out.append(f'<circle cx="{bx + bar * 0.45:.1f}" cy="{y(v):.1f}" r="2.2" '
                           f'fill="#000" fill-opacity="0.6"/>')
            out.append(f'<text x="{bx + bar * 0.45:.1f}" y="{top - 4:.1f}" text-anchor="middle" '
                       f'font-size="9">{fmt_us(med)}</text>')
    # Legend.
    # Legend: one line between the title and the plot area.
    lx = px0 + pw / 2 - len(brokers) * 90 / 2
    for j, (b, color) in enumerate(brokers):
        ly = TOP - 20
        out.append(f'<rect x="{lx + j * 90:.1f}" y="{ly}" width="11" height="11" fill="{color}"/>')
        out.append(f'<text x="{lx + j * 90 + 16:.1f}" y="{ly + 10}" font-size="11">{b}</text>')
    rounds = max(len(vs) for vs in data.values())
    out.append(f'<text x="{x0 + W / 2}" y="{H - 14}" text-anchor="middle" font-size="11" fill="#444">'
               f"bars: median of {rounds} round(s); dots: each round; publish to delivery"
               f"{'' if any(f == 'p90_us' for f, _ in fields) else ' (no p90 reported)'}</text>")
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} RESULTS.jsonl OUT.svg")
    runs = load(sys.argv[1])
    panels = []
    for case, title in PANELS:
        p = panel(runs, case, title, len(panels) * W)
        if p is not None:
            panels.append(p)
    if not panels:
        sys.exit(f"no latency figures in {sys.argv[1]}")
    width = W * len(panels)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{H}" '
           f'viewBox="0 0 {width} {H}" font-family="sans-serif">',
           f'<rect width="{width}" height="{H}" fill="#fff"/>']
    for p in panels:
        svg.extend(p)
    svg.append("</svg>")
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
