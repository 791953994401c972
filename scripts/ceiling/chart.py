#!/usr/bin/env python3
"""The scale curve of scripts/bench-ceiling.sh as an SVG chart.

Reads the script's output (its markdown tables) on stdin, takes the table
whose first column is `connections` (cells `req/s, p99 ms`), and writes two
panels to the file named by the first argument: requests per second and p99
latency against the number of connections (both axes logarithmic where the
values span decades), one line per server. Standard library only.

Usage: scripts/bench-ceiling.sh 5 3 | tee run.md; scripts/ceiling/chart.py docs/perf/scale.svg < run.md
"""

import math
import sys

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]


def scale_table(lines):
    header, rows = None, []
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|"):
            if header and rows:
                break
            continue
        if cells[0] == "connections":
            header = [c.split(" req/s")[0] for c in cells[1:]]
        elif header and not cells[0].startswith("---"):
            rows.append(cells)
    if not header or not rows:
        sys.exit("chart.py: no `connections` table in the input")
    series = {name: [] for name in header}
    for cells in rows:
        conns = int(cells[0].replace(",", ""))
        for name, cell in zip(header, cells[1:]):
            rps, p99 = cell.split(", ")
            series[name].append((conns, float(rps.replace(",", "")), float(p99.split()[0])))
    return series


def panel(x0, y0, w, h, title, series, pick, unit, log_y):
    out = []
    xs = sorted({p[0] for pts in series.values() for p in pts})
    ys = [pick(p) for pts in series.values() for p in pts]
    lo_x, hi_x = math.log10(xs[0]), math.log10(xs[-1])
    if log_y:
        lo_y, hi_y = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
        fy = lambda v: (math.log10(v) - lo_y) / (hi_y - lo_y)
        ticks = [10 ** e for e in range(lo_y, hi_y + 1)]
    else:
        top = max(ys) * 1.1
        step = 10 ** math.floor(math.log10(top / 4))
        step *= 2 if top / step > 8 else 1
        fy = lambda v: v / top
        ticks = [i * step for i in range(int(top // step) + 1)]
    fx = lambda v: (math.log10(v) - lo_x) / (hi_x - lo_x)
    px = lambda v: x0 + fx(v) * w
    py = lambda v: y0 + h - fy(v) * h
    out.append(f'<text x="{x0 + w / 2}" y="{y0 - 12}" text-anchor="middle" font-weight="bold">{title}</text>')
    out.append(f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#999"/>')
    for t in ticks:
        label = f"{t:,.0f}" if t >= 1 else f"{t:g}"
        out.append(f'<line x1="{x0}" x2="{x0 + w}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{x0 - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{label}</text>')
    for v in xs:
        out.append(f'<text x="{px(v):.1f}" y="{y0 + h + 16}" text-anchor="middle">{v:,}</text>')
    out.append(f'<text x="{x0 + w / 2}" y="{y0 + h + 34}" text-anchor="middle">connections ({unit})</text>')
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        path = " ".join(f"{px(p[0]):.1f},{py(pick(p)):.1f}" for p in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for p in pts:
            out.append(f'<circle cx="{px(p[0]):.1f}" cy="{py(pick(p)):.1f}" r="3" fill="{color}"/>')
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: chart.py OUT.svg < bench-ceiling output")
    series = scale_table(sys.stdin.read().splitlines())
    width, height = 900, 400
    body = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
    ]
    body += panel(80, 40, 330, 280, "throughput", series, lambda p: p[1], "req/s", False)
    body += panel(540, 40, 330, 280, "p99 latency", series, lambda p: p[2], "ms, log", True)
    for i, name in enumerate(series):
        x = 80 + i * 200
        body.append(f'<rect x="{x}" y="{height - 22}" width="14" height="4" fill="{COLORS[i % len(COLORS)]}"/>')
        body.append(f'<text x="{x + 20}" y="{height - 16}">{name}</text>')
    body.append("</svg>")
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        f.write("\n".join(body) + "\n")


if __name__ == "__main__":
    main()
