"""Draw fan-out latency against the number of open pages, as an SVG with no dependencies, and
print the results as a Markdown table (as in docs/results/*/README.md).

    python -m bench.plot RESULTS/fanout.json RESULTS/fanout-latency.svg   # `make bench` does
"""

import json
import math
import sys
from pathlib import Path

WIDTH, HEIGHT = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 180, 30, 60
SERIES = [
    ("socket_p50_ms", "per-socket p50", "#2f5bd3"),
    ("socket_p99_ms", "per-socket p99", "#7f9be6"),
    ("last_socket_median_ms", "last socket, median", "#b3261e"),
    ("last_socket_p99_ms", "last socket, p99", "#c95a52"),
    ("last_socket_max_ms", "last socket, max", "#e08a84"),
]


def svg(results: list[dict], machine: dict) -> str:
    sizes = [r["members"] for r in results]
    values = [r[key] for r in results for key, _, _ in SERIES]
    y_low = 10 ** math.floor(math.log10(max(min(values), 1)))
    y_high = 10 ** math.ceil(math.log10(max(values)))
    x_min, x_max = math.log10(min(sizes)), math.log10(max(sizes))
    span = max(x_max - x_min, 1e-9)

    def x(n: float) -> float:
        return LEFT + (math.log10(n) - x_min) / span * (WIDTH - LEFT - RIGHT)

    def y(ms: float) -> float:  # logarithmic: 10 ms and 1 s both stay readable
        share = (math.log10(ms) - math.log10(y_low)) / (math.log10(y_high) - math.log10(y_low))
        return HEIGHT - BOTTOM - share * (HEIGHT - TOP - BOTTOM)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        'font-family="system-ui, sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
        f'<text x="{LEFT}" y="18" font-size="14" font-weight="600">Time for a change to reach '
        "open pages</text>",
    ]
    ticks = [m * 10**e for e in range(round(math.log10(y_low)), round(math.log10(y_high)) + 1)
             for m in (1, 2, 5) if y_low <= m * 10**e <= y_high]  # fmt: skip
    for ms in ticks:
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(ms):.1f}" y2="{y(ms):.1f}" '
            'stroke="#e3e6ee"/>'
            f'<text x="{LEFT - 8}" y="{y(ms) + 4:.1f}" text-anchor="end">{ms:g} ms</text>'
        )
    for n, servers in sorted({(r["members"], r["servers"]) for r in results}):
        parts.append(
            f'<text x="{x(n):.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle">{n:,}</text>'
        )
        if servers > 1:
            parts.append(
                f'<text x="{x(n):.1f}" y="{HEIGHT - BOTTOM + 32}" text-anchor="middle" '
                f'fill="#566173">{servers} servers</text>'
            )
    parts.append(
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 12}" text-anchor="middle">'
        "open pages (N), one socket each; both axes logarithmic</text>"
    )
    for row, (key, label, colour) in enumerate(SERIES):
        points = " ".join(f"{x(r['members']):.1f},{y(r[key]):.1f}" for r in results)
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        parts += [
            f'<circle cx="{x(r["members"]):.1f}" cy="{y(r[key]):.1f}" r="3" fill="{colour}"/>'
            for r in results
        ]
        legend_y = TOP + 20 + row * 20
        parts.append(
            f'<line x1="{WIDTH - RIGHT + 15}" x2="{WIDTH - RIGHT + 35}" y1="{legend_y - 4}" '
            f'y2="{legend_y - 4}" stroke="{colour}" stroke-width="2"/>'
            f'<text x="{WIDTH - RIGHT + 40}" y="{legend_y}">{label}</text>'
        )
    parts.append(
        f'<text x="{WIDTH - RIGHT + 15}" y="{TOP + 110}" fill="#566173">{machine["cores"]} cores; '
        "client on the</text>"
        f'<text x="{WIDTH - RIGHT + 15}" y="{TOP + 126}" fill="#566173">same machine</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def markdown(results: list[dict]) -> str:
    lines = [
        "| configuration | N | processes | per-socket p50 / p99 | last socket median / p99 / max "
        "| lost | POST p50 / p99 / max | bytes / socket / change | server KiB / socket "
        "| connect all N |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        memory = "-" if r["server_kib_per_socket"] is None else f"{r['server_kib_per_socket']:.1f}"
        lines.append(
            f"| {r['config']} | {r['members']:,} | {r['servers']} "
            f"| {r['socket_p50_ms']:.1f} / {r['socket_p99_ms']:.1f} ms "
            f"| {r['last_socket_median_ms']:.1f} / {r['last_socket_p99_ms']:.1f} / "
            f"{r['last_socket_max_ms']:.1f} ms | {r['lost']} "
            f"| {r['post_p50_ms']:.1f} / {r['post_p99_ms']:.1f} / {r['post_max_ms']:.1f} ms "
            f"| {r['bytes_per_socket_per_event']:.0f} | {memory} | {r['connect_all_s']:.1f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    data = json.loads(source.read_text())
    results = [r for r in data["results"] if r["config"] == data["results"][0]["config"]]
    target.write_text(svg(results, data["machine"]))
    print(markdown(data["results"]))


if __name__ == "__main__":
    main()
