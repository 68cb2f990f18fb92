#!/usr/bin/python3
"""LongNet's second claim as a chart: the layers until the last token depends on the first, against N.

    longattn reach-chart [--out plots/reach] [--max-log2n 14]

For N = 2^6 .. 2^max-log2n and four causal patterns (LongNet's dilated configuration with 8 heads,
a local window of 256, strided(128), full), runs `longattn reach PATTERN --n N --json` and draws the
layers until token N-1 depends on token 0 (residual paths kept; a token depends on another when
any head attends it). Writes DIR/reach.png, DIR/reach.svg and DIR/reach.md (the table).
"""

import argparse
import json
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PATTERNS = [
    ("dilated longnet, 8 heads", {"kind": "dilated", "levels": "longnet", "causal": True}, 8),
    ("local(256, 0)", {"kind": "local", "left": 256, "right": 0, "causal": True}, 1),
    ("strided(128)", {"kind": "strided", "stride": 128, "causal": True}, 1),
    ("full", {"kind": "full", "causal": True}, 1),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="plots/reach")
    ap.add_argument("--max-log2n", type=int, default=14, help="largest N as a power of two, 6..20 (default 14)")
    a = ap.parse_args(argv)
    if not 6 <= a.max_log2n <= 20:
        print("reach_chart.py: --max-log2n: give 6..20", file=sys.stderr)
        return 2
    program = os.environ.get("LONGATTN_PROGRAM", "longattn")
    os.makedirs(a.out, exist_ok=True)
    ns = [2 ** k for k in range(6, a.max_log2n + 1)]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    rows = []
    for label, pattern, heads in PATTERNS:
        ys = []
        for n in ns:
            r = subprocess.run([program, "reach", json.dumps(pattern), "--n", str(n), "--heads", str(heads),
                                "--layers", "4096", "--json"], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"reach_chart.py: {program} reach failed: {r.stderr.strip()}", file=sys.stderr)
                return 2
            j = json.loads(r.stdout)
            ys.append(j["layers_to_last"])
            rows.append((label, n, j["layers_to_last"], j["in_degree"]["mean"]))
        ax.plot(ns, ys, marker="o", markersize=4, linewidth=1.6, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("sequence length N (log scale)")
    ax.set_ylabel("layers until token N-1 depends on token 0")
    ax.set_title("How many stacked layers connect the first token to the last (causal)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(os.path.join(a.out, f"reach.{ext}"), dpi=120)
    with open(os.path.join(a.out, "reach.md"), "w") as f:
        f.write("| pattern | N | layers until token N-1 depends on token 0 | mean in-degree |\n|---|---:|---:|---:|\n")
        for label, n, layers, deg in rows:
            f.write(f"| {label} | {n} | {layers} | {deg:.1f} |\n")
    print(f"wrote {a.out}/reach.png, reach.svg, reach.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
