#!/usr/bin/python3
"""Charts from longattn results files (what `longattn plot` runs).

    longattn plot --out DIR RESULTS.json [RESULTS.json ...]

The methods, their order and colours come from the program's tables (`longattn list --json`, through
harness/model/catalog.py); the PyTorch peers (harness/peers.py) are named here with the longattn
method each is held against.

Every input is validated against results/schema.json first; an invalid one stops the run with
exit status 2 and a message naming the file and the failing field. Only cases with status "ok"
are charted. Each chart is written as DIR/NAME.png and DIR/NAME.svg, and only when the inputs
hold data for it:

  speedup     median-time speedup over `vanilla` (same file, pattern, B, H, d, dtype, device) vs N
  runtime     median time vs N, log-log, with O(N) and O(N^2) guides (LongNet's figure)
  scaling     strong (same N) and weak (same N per rank) scaling of the distributed methods;
              needs results from runs with different world sizes (e.g. one file per `mpirun -np`)
  comm_share  share of iteration time spent in communication, per distributed method, N and world
  efficiency  each distributed case's rate as % of P x its single-device kernel's (same file), vs P
  vs_pytorch  longattn's speed over PyTorch's on the same machine and case (needs a peer file from
              scripts/peers.sh): flash against torch-sdpa, vanilla against torch-vanilla, dilated
              against torch-dilated; also written as DIR/vs_pytorch.md, the README's tables
  backward    the training step: each forward+backward case's rate (counted as 3.5 forwards) as a
              share of the same file's forward rate, longattn's and PyTorch's (torch.autograd);
              also written as DIR/backward.md, with longattn's speed over PyTorch's

Peer files (context.peer) overlay the other charts: their torch-* methods are drawn in the light
shade of their longattn counterpart's colour, and in `speedup` against longattn's vanilla of the
same shape from a non-peer file.

Each figure's caption names every results file with its machine (CPU, GPU, hosts), world size,
threads, communicator and date; titles carry the dtype and device.
"""

import argparse
import json
import os
import re
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import jsonschema  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from model import catalog  # noqa: E402  (harness/ on PYTHONPATH, as `longattn plot` sets it)
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator  # noqa: E402

SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "results", "schema.json")
DPI = 120
PANEL_W, PANEL_H = 4.8, 3.5  # inches per subplot
LEGEND_W = 2.9  # inches kept right of the panels for the legend
CAPTION_FONT = 7.5
PALETTE = plt.get_cmap("tab20").colors
# The PyTorch peers (harness/peers.py), each with the longattn method it is held against, the main
# one of each method first: vs_pytorch pairs a method with its first peer.
PEERS = {"torch-vanilla": "vanilla", "torch-sdpa": "flash", "torch-dilated": "dilated", "torch-sdpa-flash": "flash",
         "torch-sdpa-cudnn": "flash", "torch-sdpa-efficient": "flash", "torch-sdpa-math": "flash"}
COUNTERPART = {}
for _peer, _method in PEERS.items():
    COUNTERPART.setdefault(_method, _peer)
FILE_STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1, 1, 1)), "v"), ((0, (1, 1)), "P")]

plt.rcParams.update({
    "figure.dpi": DPI, "savefig.dpi": DPI, "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9,
    "legend.fontsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True, "grid.alpha": 0.3,
    "grid.linewidth": 0.6, "svg.hashsalt": "longattn",
})


def method_order():
    """The program's attention methods in table order, then the peers."""
    return list(catalog.attention()) + list(PEERS)


def color_index(name):
    """tab20 comes in (dark, light) pairs: the k-th method of the table takes pair k's dark shade and
    its main peer the light one; the other peers take the light shades no peer claims, then the rest."""
    methods = list(catalog.attention())
    if name in methods:
        return 2 * methods.index(name)
    if name in PEERS and COUNTERPART[PEERS[name]] == name:
        return 2 * methods.index(PEERS[name]) + 1
    spare = [2 * k + 1 for k, m in enumerate(methods) if m not in COUNTERPART] + list(range(2 * len(methods), len(PALETTE)))
    extras = [p for p in PEERS if COUNTERPART[PEERS[p]] != p]
    return spare[extras.index(name) % len(spare)] if name in extras else len(PALETTE) - 1


def plural(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


class Invalid(Exception):
    pass


# ----------------------------------------------------------------------------------- loading


def field_path(path):
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def load(path, validator):
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise Invalid(f"{path}: cannot read: {e.strerror}")
    except json.JSONDecodeError as e:
        raise Invalid(f"{path}: not JSON: {e}")
    err = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if err is not None:
        raise Invalid(f"{path}: not a valid results file (results/schema.json): {describe_error(err, data)}")
    return data


def describe_error(err, data):
    """'field PATH: what is wrong', naming the case (index, name, status) for errors inside one."""
    where, what = list(err.absolute_path), err.message
    m = re.match(r"'(.+)' is a required property$", what)
    d = re.match(r"'(.+)' is a dependency of '(.+)'$", what)
    if err.validator == "required" and m:
        where, what = where + [m.group(1)], "missing (required)"
    elif err.validator == "dependentRequired" and d:
        where, what = where + [d.group(1)], f"missing (required where {d.group(2)} is present)"
    elif err.validator is None and what.startswith("False schema"):
        what = "not allowed here"
    if len(what) > 200:
        what = what[:200] + "..."
    text = f"field {field_path(where)}: {what}"
    if len(where) >= 2 and where[0] == "cases" and isinstance(where[1], int):
        c = data["cases"][where[1]]
        if isinstance(c, dict):
            text += f" (case {where[1]}: {c.get('name', '?')!r}, status {c.get('status', '?')!r})"
    return text


class Run:
    """One results file."""

    def __init__(self, index, path, data):
        self.index, self.path, self.data = index, path, data
        self.ctx = data["context"]
        self.tag = chr(ord("A") + index) if index < 26 else f"R{index + 1}"
        self.world = self.ctx["world_size"]
        self.threads = self.ctx["threads_per_rank"]
        self.peer = self.ctx.get("peer")  # set in PyTorch peer files

    @property
    def style(self):
        return FILE_STYLES[self.index % len(FILE_STYLES)]

    def short(self):
        """Legend label of the run: its tag, world size and threads."""
        if self.peer:
            return f"[{self.tag}] {self.peer['library']} {self.peer['version']}, {plural(self.threads, 'thread')}"
        return f"[{self.tag}] {plural(self.world, 'rank')} x {plural(self.threads, 'thread')}"

    def caption(self):
        c = self.ctx
        gpu = c["gpu"]
        if gpu is None:
            gpu = "none (built without CUDA)"
        elif isinstance(gpu, dict):
            gpu = f"unavailable ({gpu['reason']})"
        hosts = c["host_names"]
        host = ", ".join(hosts[:3]) + (f" +{len(hosts) - 3} more" if len(hosts) > 3 else "")
        if self.peer:
            p = self.peer
            return (f"[{self.tag}] {os.path.basename(self.path)} (PyTorch peer of suite {self.data['suite']}), {c['date']}: "
                    f"CPU {c['cpu_model']} ({c['cores']} cores), GPU {c['gpu'] or 'none'}; torch {p['version']}, "
                    f"{plural(self.threads, 'thread')}, {p.get('cpu_capability', '?')}, {p.get('blas', '?')}")
        return (f"[{self.tag}] {os.path.basename(self.path)} (suite {self.data['suite']}), {c['date']}: "
                f"CPU {c['cpu_model']} ({c['cores']} cores), GPU {gpu}, host{'s' if len(hosts) > 1 else ''} {host}; "
                f"world size {self.world} ({plural(c['ranks_per_node'], 'rank')}/node x {plural(self.threads, 'thread')}/rank"
                f"{', oversubscribed' if c['oversubscribed'] else ''}), {c['communicator']}: {c['mpi_library']}; "
                f"{c['build_type']}, git {c['git_commit']}")


def ok_cases(runs):
    """(run, case) for every case with status ok."""
    return [(r, c) for r in runs for c in r.data["cases"] if c["status"] == "ok" and c["time_ms"]["median"] > 0]


def shape_key(c):
    """Panels: one per shape, pattern and pass (sorted by shape first)."""
    return (c["B"], c["H"], c["d"], c["dtype"], c["device"], c["pattern_name"], c.get("pass", "forward"))


def shape_title(k):
    B, H, d, dtype, device, pattern, pass_ = k
    return f"{pattern}  (B={B}, H={H}, d={d}, {dtype}, {device}{'' if pass_ == 'forward' else ', ' + pass_})"


def is_distributed(c):
    return c["layout"] != "single"


# ----------------------------------------------------------------------------------- drawing helpers


def method_color(name, _cache={}):
    if name not in _cache:
        i = color_index(name)
        _cache[name] = PALETTE[i % len(PALETTE)]
    return _cache[name]


def method_sort(name):
    order = method_order()
    return (order.index(name) if name in order else len(order), name)


def human(n):
    for div, suffix in ((1 << 20, "M"), (1 << 10, "K")):
        if n >= div and n % (div // 4) == 0:
            v = n / div
            return f"{v:g}{suffix}"
    return str(n)


def n_axis(ax, values):
    ax.set_xscale("log", base=2)
    values = sorted(set(values))
    ax.xaxis.set_major_locator(FixedLocator(values))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: human(int(round(x)))))
    if len(values) == 1:
        ax.set_xlim(values[0] / 1.5, values[0] * 1.5)
    else:
        ax.set_xlim(values[0] / 1.25, values[-1] * 1.25)


def world_axis(ax, values):
    ax.set_xscale("log", base=2)
    values = sorted(set(values))
    ax.xaxis.set_major_locator(FixedLocator(values))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: str(int(round(x)))))
    ax.set_xlim(values[0] / 1.3, values[-1] * 1.3)


def log_y(ax, lo, hi, suffix=""):
    """Log y axis over [lo, hi] with plain-number labels (1, 2, 5, 10, ... or finer for narrow ranges)."""
    ax.set_yscale("log")
    ratio = hi / lo if lo > 0 else 10
    subs = ((1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9) if ratio < 3 else (1, 2, 3, 5, 7) if ratio < 12 else
            (1, 2, 5) if ratio < 60 else (1,))
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10))) if len(subs) < 9 else NullLocator())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}{suffix}"))
    ax.set_ylim(lo / 1.25, hi * 1.25)


def dtype_device(cases):
    dts = sorted({c["dtype"] for c in cases})
    devs = sorted({c["device"] for c in cases})
    return f"dtype {', '.join(dts)}, device {', '.join(devs)}"


def make_figure(n_panels, ncols_max=3, panel_w=PANEL_W, panel_h=PANEL_H, cols=None):
    """A figure with n_panels panels in a grid, a legend column on the right and a caption row below.

    Returns (fig, axes, layout); pass layout to finish()."""
    ncols = cols or min(ncols_max, n_panels)
    nrows = (n_panels + ncols - 1) // ncols
    fig = plt.figure(figsize=(ncols * panel_w + LEGEND_W, nrows * panel_h + 0.6), layout="constrained")
    gs = fig.add_gridspec(nrows + 1, ncols + 1, width_ratios=[panel_w] * ncols + [LEGEND_W])
    axes = [fig.add_subplot(gs[i // ncols, i % ncols]) for i in range(n_panels)]
    return fig, axes, (gs, nrows, ncols)


def finish(fig, layout, runs, title, notes, handles, out, name):
    """Suptitle, caption (under the panels, in its own row), legend (right of the panels); save PNG and SVG."""
    fig.suptitle(title, fontsize=11, fontweight="bold")
    width_in = fig.get_figwidth()
    chars = max(60, int((width_in - 0.7) * 72 / (CAPTION_FONT * 0.6)))
    lines = []
    for r in runs:
        lines += textwrap.wrap(r.caption(), chars, subsequent_indent="     ")
    for n in notes:
        lines += textwrap.wrap(n, chars, subsequent_indent="  ")
    cap_h = (len(lines) * CAPTION_FONT * 1.35 + 8) / 72
    fig.set_figheight(fig.get_figheight() + cap_h)
    gs, nrows, ncols = layout
    gs.set_height_ratios([(fig.get_figheight() - cap_h - 0.6) / nrows] * nrows + [cap_h])
    cap_ax = fig.add_subplot(gs[nrows, :])
    cap_ax.axis("off")
    cap_ax.text(0, 1, "\n".join(lines), va="top", ha="left", fontsize=CAPTION_FONT, family="DejaVu Sans",
                transform=cap_ax.transAxes, linespacing=1.35)
    leg_ax = fig.add_subplot(gs[:nrows, ncols])
    leg_ax.axis("off")
    if handles:
        leg_ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, 1), borderaxespad=0, frameon=False,
                      handlelength=2.6)
    paths = []
    for ext in ("png", "svg"):
        p = os.path.join(out, f"{name}.{ext}")
        fig.savefig(p, metadata={"Date": None} if ext == "svg" else None)
        paths.append(p)
    plt.close(fig)
    return paths


def header(label):
    return Line2D([], [], linestyle="none", marker="none", label=label)


def legend_handles(methods, runs_used, all_runs, extra=()):
    """Method colours; the results files' line styles where there are several; extra handles."""
    h = [header("Method (colour)")]
    for m in sorted(methods, key=method_sort):
        h.append(Line2D([], [], color=method_color(m), linewidth=2, marker="o", markersize=4, label=m))
    if len(all_runs) > 1:
        h.append(header(" "))
        h.append(header("Results file (line, marker)"))
        for r in sorted(runs_used, key=lambda r: r.index):
            ls, mk = r.style
            h.append(Line2D([], [], color="0.25", linestyle=ls, marker=mk, markersize=4, label=r.short()))
    if extra:
        h.append(header(" "))
        h += list(extra)
    return h


def common_notes(runs, cases):
    notes = []
    singles = sorted({c["method"] for _, c in cases if not is_distributed(c)}, key=method_sort)
    if singles and any(r.world > 1 for r in runs):
        notes.append(f"Single-device methods ({', '.join(singles)}) run on one rank with that run's threads/rank; "
                     "distributed methods on all ranks of the run.")
    return notes


# ----------------------------------------------------------------------------------- charts


def series_by_method(cases):
    """{(shape_key, run, method): {N: median ms}} for the given (run, case) pairs."""
    out = {}
    for r, c in cases:
        s = out.setdefault((shape_key(c), r, c["method"]), {})
        s.setdefault(c["N"], c["time_ms"]["median"])  # a case repeated within one file: the first
    return out


def chart_speedup(runs, cases, out):
    series = series_by_method(cases)
    panels = {}
    for (k, r, m), pts in series.items():
        if m == "vanilla":
            continue
        base = series.get((k, r, "vanilla"))
        if not base and r.peer:  # a peer against longattn's vanilla of the same shape
            base = next((v for (kk, rr, mm), v in series.items() if kk == k and mm == "vanilla" and not rr.peer), None)
        if not base:
            continue
        sp = {n: base[n] / t for n, t in pts.items() if n in base and t > 0}
        if len(sp) >= 2:
            panels.setdefault(k, []).append((r, m, sp))
    if not panels:
        has_vanilla = any(m == "vanilla" for (_, _, m) in series)
        why = ("no `vanilla` cases to compare with" if not has_vanilla else
               "no method has `vanilla` in the same file and shape at two or more N")
        return None, why
    keys = sorted(panels)
    fig, axes, spec = make_figure(len(keys))
    methods, used, ns, plotted = set(), set(), [], []
    for ax, k in zip(axes, keys):
        lo, hi, kn = 1.0, 1.0, []
        for r, m, sp in sorted(panels[k], key=lambda t: (method_sort(t[1]), t[0].index)):
            x = sorted(sp)
            y = [sp[n] for n in x]
            ls, mk = r.style
            ax.plot(x, y, color=method_color(m), linestyle=ls, marker=mk, markersize=4.5, linewidth=1.6)
            methods.add(m), used.add(r)
            kn += x
            lo, hi = min(lo, *y), max(hi, *y)
        plotted += [c for rr, c in cases if shape_key(c) == k]
        ax.axhline(1.0, color="0.3", linewidth=1, linestyle=(0, (4, 3)), zorder=1)
        ns += kn
        n_axis(ax, kn)
        if hi / lo > 6:
            log_y(ax, lo, hi, "\u00d7")
            ax.set_ylabel("speedup over vanilla (\u00d7, log scale)")
        else:
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}\u00d7"))
            ax.set_ylim(0, hi * 1.15)
            ax.set_ylabel("speedup over vanilla (\u00d7)")
        ax.set_title(shape_title(k))
        ax.set_xlabel("sequence length N (tokens, log scale)")
    vline = Line2D([], [], color="0.3", linewidth=1, linestyle=(0, (4, 3)), label="1\u00d7 = vanilla")
    handles = legend_handles(methods, used, runs, [vline])
    title = f"Speedup over vanilla (median time of vanilla / median time of method) vs N - {dtype_device(plotted)}"
    notes = ["Speedup > 1: faster than vanilla measured in the same results file, shape and pattern (PyTorch peers:"
             " than longattn's vanilla of the same shape)."]
    notes += common_notes(runs, [(None, c) for c in plotted])
    return finish(fig, spec, sorted(used, key=lambda r: r.index), title, notes, handles, out, "speedup"), \
        f"{len(keys)} panel(s), {len(methods)} method(s)"


def chart_runtime(runs, cases, out):
    series = series_by_method(cases)
    panels = {}
    for (k, r, m), pts in series.items():
        if len(pts) >= 2:
            panels.setdefault(k, []).append((r, m, pts))
    if not panels:
        return None, "every method was run at a single N; runtime vs N needs two or more"
    keys = sorted(panels)
    fig, axes, spec = make_figure(len(keys))
    methods, used, plotted = set(), set(), []
    for ax, k in zip(axes, keys):
        lines = sorted(panels[k], key=lambda t: (method_sort(t[1]), t[0].index))
        kn, ys = [], []
        for r, m, pts in lines:
            x = sorted(pts)
            y = [pts[n] for n in x]
            ls, mk = r.style
            ax.plot(x, y, color=method_color(m), linestyle=ls, marker=mk, markersize=4.5, linewidth=1.6)
            methods.add(m), used.add(r)
            kn += x
            ys += y
        plotted += [c for _, c in cases if shape_key(c) == k]
        # Guides anchored at the first point: of vanilla where there is one, else of the first line.
        anchor = next((l for l in lines if l[1] == "vanilla"), lines[0])
        n0 = min(anchor[2])
        t0 = anchor[2][n0]
        xs = sorted(set(kn))
        gx = [x for x in xs if x >= n0]
        ax.plot(gx, [t0 * x / n0 for x in gx], color="0.45", linestyle=(0, (1, 2)), linewidth=1.2, zorder=1)
        ax.plot(gx, [t0 * (x / n0) ** 2 for x in gx], color="0.45", linestyle=(0, (6, 3)), linewidth=1.2, zorder=1)
        log_y(ax, min(ys), max(ys))
        n_axis(ax, kn)
        ax.set_title(shape_title(k))
        ax.set_xlabel("sequence length N (tokens, log scale)")
        ax.set_ylabel("median time per iteration (ms, log scale)")
    guides = [Line2D([], [], color="0.45", linestyle=(0, (1, 2)), linewidth=1.2, label="O(N) guide"),
              Line2D([], [], color="0.45", linestyle=(0, (6, 3)), linewidth=1.2, label="O(N\u00b2) guide")]
    handles = legend_handles(methods, used, runs, guides)
    title = f"Runtime vs sequence length (log-log) - {dtype_device(plotted)}"
    notes = ["Guides start at the smallest-N point of vanilla (or of the first method where vanilla is absent)."]
    notes += common_notes(runs, [(None, c) for c in plotted])
    return finish(fig, spec, sorted(used, key=lambda r: r.index), title, notes, handles, out, "runtime"), \
        f"{len(keys)} panel(s), {len(methods)} method(s)"


def chart_scaling(runs, cases, out):
    dist = [(r, c) for r, c in cases if is_distributed(c)]
    if not dist:
        return None, "no distributed (dist-*) cases ran"
    worlds = sorted({c["world"] for _, c in dist})
    if len(worlds) < 2:
        return None, (f"every distributed case ran at world size {worlds[0]}; pass results files from runs with "
                      "different world sizes (e.g. one per `mpirun -np`)")
    # {(shape_key, method): {(world, N): (median, run)}}
    data = {}
    for r, c in dist:
        data.setdefault((shape_key(c), c["method"]), {}).setdefault((c["world"], c["N"]), (c["time_ms"]["median"], r))
    strong, weak = {}, {}
    for (k, m), pts in data.items():
        by_n, by_np = {}, {}
        for (w, n), v in pts.items():
            by_n.setdefault(n, {})[w] = v
            if n % w == 0:
                by_np.setdefault(n // w, {})[w] = v
        # The N (N per rank) run at the most world sizes; of those, the largest.
        ok_n = [n for n, ws in by_n.items() if len(ws) >= 2]
        if ok_n:
            n = max(ok_n, key=lambda n: (len(by_n[n]), n))
            strong.setdefault(k, []).append((m, n, by_n[n]))
        ok_np = [n for n, ws in by_np.items() if len(ws) >= 2]
        if ok_np:
            n = max(ok_np, key=lambda n: (len(by_np[n]), n))
            weak.setdefault(k, []).append((m, n, by_np[n]))
    keys = sorted(set(strong) | set(weak))
    if not keys:
        return None, "no distributed method has the same N (or the same N per rank) at two or more world sizes"
    fig, axes, spec = make_figure(2 * len(keys), cols=2)
    axes = iter(axes)
    methods, used, plotted = set(), set(), []
    for row, k in enumerate(keys):
        for col, (kind, rows) in enumerate((("strong", strong.get(k, [])), ("weak", weak.get(k, [])))):
            ax = next(axes)
            ws_all = []
            for m, n, byw in sorted(rows, key=lambda t: method_sort(t[0])):
                w = sorted(byw)
                t = [byw[x][0] for x in w]
                color = method_color(m)
                ax.plot(w, t, color=color, marker="o", markersize=5, linewidth=1.8,
                        label=f"{m}, {'N' if kind == 'strong' else 'N/P'}={human(n)}")
                ideal = [t[0] * w[0] / x for x in w] if kind == "strong" else [t[0]] * len(w)
                ax.plot(w, ideal, color=color, linestyle=(0, (2, 2)), linewidth=1.1, alpha=0.8)
                methods.add(m)
                for x in w:
                    used.add(byw[x][1])
                ws_all += w
            plotted += [c for _, c in dist if shape_key(c) == k]
            if ws_all:
                world_axis(ax, ws_all)
                lo, hi = ax.dataLim.y0, ax.dataLim.y1
                log_y(ax, lo, hi)
                ax.legend(loc="best", fontsize=7, framealpha=0.85)
            else:
                ax.text(0.5, 0.5, "no method at two or more world sizes\n" +
                        ("with the same N" if kind == "strong" else "with the same N per rank"),
                        ha="center", va="center", transform=ax.transAxes, fontsize=8, color="0.4")
                ax.set_xticks([]), ax.set_yticks([])
            what = "Strong scaling (fixed N)" if kind == "strong" else "Weak scaling (fixed N per rank)"
            ax.set_title(f"{what}\n{shape_title(k)}")
            ax.set_xlabel("world size P (ranks, log scale)")
            ax.set_ylabel("median time per iteration (ms, log scale)")
    ideal_h = Line2D([], [], color="0.3", linestyle=(0, (2, 2)), linewidth=1.1,
                     label="ideal (same colour):\nstrong t(P0)\u00b7P0/P,\nweak flat at t(P0)")
    handles = legend_handles(methods, used, [], [ideal_h])
    title = f"Scaling of the distributed methods - {dtype_device(plotted)}"
    notes = ["Each line: the N (strong) or N per rank (weak) that the method ran at the most world sizes (the largest"
             " such); P0 = its smallest world size. World sizes come from different results files."]
    return finish(fig, spec, sorted(used, key=lambda r: r.index), title, notes, handles, out,
                  "scaling"), f"{len(keys)} pattern/shape row(s), {len(methods)} method(s), world sizes {worlds}"


def chart_efficiency(runs, cases, out):
    """Per shape (pattern, B, N, ...): each distributed method's efficiency against world size."""
    eff = [(r, c) for r, c in cases if "efficiency" in c]
    if not eff:
        return None, "no distributed case with an efficiency (it needs the single-device kernel's case in the same file)"
    panels = {}
    for r, c in eff:
        panels.setdefault((shape_key(c), c["N"]), {}).setdefault(c["method"], {})[c["world"]] = (c["efficiency"]["pct"], r)
    keys = sorted(panels)
    fig, axes, spec = make_figure(len(keys))
    methods, used = set(), set()
    for ax, k in zip(axes, keys):
        ws_all = []
        for m, byw in sorted(panels[k].items(), key=lambda t: method_sort(t[0])):
            w = sorted(byw)
            ax.plot(w, [byw[x][0] for x in w], color=method_color(m), marker="o", markersize=5, linewidth=1.8)
            methods.add(m)
            used.update(byw[x][1] for x in w)
            ws_all += w
        ax.axhline(100.0, color="0.3", linewidth=1, linestyle=(0, (4, 3)), zorder=1)
        world_axis(ax, ws_all)
        ax.set_ylim(0, max(110.0, ax.dataLim.y1 * 1.1))
        ax.set_title(f"{shape_title(k[0])}, N={human(k[1])}")
        ax.set_xlabel("world size P (ranks)")
        ax.set_ylabel("efficiency: rate / (P x single-device rate), %")
    guide = [Line2D([], [], color="0.3", linewidth=1, linestyle=(0, (4, 3)), label="100% = P x the kernel alone")]
    handles = legend_handles(methods, used, [], guide)
    title = f"Distributed efficiency against the single-device kernel - {dtype_device([c for _, c in eff])}"
    notes = ["Each case's rate over P x the rate of the kernel it computes with (flash, or dilated for dilated "
             "patterns) on the same case in the same results file (ring-flash-attention's per-device figure)."]
    return finish(fig, spec, sorted(used, key=lambda r: r.index), title, notes, handles, out, "efficiency"), \
        f"{len(keys)} panel(s), {len(methods)} method(s)"


def chart_comm_share(runs, cases, out):
    dist = [(r, c) for r, c in cases if is_distributed(c) and c["world"] > 1]
    if not dist:
        return None, "no distributed case ran on more than one rank (comm share is 0 on one rank)"
    # One panel per shape (B, H, d, dtype, device); a group of bars per pattern, world size, N and file.
    panels = {}
    for r, c in dist:
        k = shape_key(c)
        panels.setdefault(k[:5], {}).setdefault((k[5], r.world, c["N"], r.index), {}).setdefault(c["method"], c)
    keys = sorted(panels)
    worlds_files = {}
    for r in runs:
        worlds_files.setdefault(r.world, set()).add(r.index)
    all_methods = sorted({c["method"] for _, c in dist}, key=method_sort)
    max_groups = max(len(panels[k]) for k in keys)
    group_w = max(0.75, 0.2 * len(all_methods) + 0.15)  # inches per group of bars
    panel_w = min(16.0, max(PANEL_W, group_w * max_groups + 1.0))

    def labels_of(groups):
        out = []
        for pattern, w, n, idx in groups:
            lab = f"{pattern}\nN={human(n)}, P={w}"
            if len(worlds_files[w]) > 1:
                lab += f" [{runs[idx].tag}]"
            out.append(lab)
        return out

    labels = {k: labels_of(sorted(panels[k])) for k in keys}
    longest = max(len(line) for k in keys for lab in labels[k] for line in lab.split("\n"))
    rotate = longest * 7.5 * 0.6 / 72 > group_w * 0.95
    panel_h = PANEL_H + (longest * 7.5 * 0.6 / 72 * 0.5 if rotate else 0)
    fig, axes, spec = make_figure(len(keys), panel_w=panel_w, panel_h=panel_h,
                                  cols=1 if panel_w > 6 else min(2, len(keys)))
    used = set()
    width = 0.8 / len(all_methods)
    for ax, k in zip(axes, keys):
        groups = sorted(panels[k])
        top = 0.0
        for gi, g in enumerate(groups):
            for mi, m in enumerate(all_methods):
                c = panels[k][g].get(m)
                x = gi - 0.4 + width * (mi + 0.5)
                if not c:
                    ax.text(x, 0, " n/a", rotation=90, ha="center", va="bottom", fontsize=6.5, color="0.45")
                    continue
                ax.bar(x, 100 * c["comm"]["share"], width * 0.92, color=method_color(m), edgecolor="white",
                       linewidth=0.4)
                top = max(top, 100 * c["comm"]["share"])
            used.add(runs[g[3]])
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(labels[k], rotation=30 if rotate else 0, ha="right" if rotate else "center",
                           rotation_mode="anchor" if rotate else "default", fontsize=7.5)
        pad = max(0.1, (2 - len(groups)) / 2 + 0.1)
        ax.set_xlim(-0.5 - pad, len(groups) - 0.5 + pad)
        ax.set_ylim(0, min(105, max(5, top * 1.15)))
        ax.grid(axis="x", visible=False)
        B, H, d, dtype, device = k
        ax.set_title(f"B={B}, H={H}, d={d}, {dtype}, {device}")
        ax.set_xlabel("pattern, sequence length N and world size P")
        ax.set_ylabel("communication share of iteration time (%)")
    handles = [header("Method (colour)")] + [Patch(color=method_color(m), label=m) for m in all_methods]
    title = f"Communication share of the distributed methods - {dtype_device([c for _, c in dist])}"
    notes = ["Share = median time in communicator calls / median iteration time (slowest rank), runs with P > 1 only; "
             "n/a: the method does not run that pattern, or the case was skipped or failed."]
    return finish(fig, spec, sorted(used, key=lambda r: r.index), title, notes, handles, out, "comm_share"), \
        f"{len(keys)} panel(s), {sum(len(panels[k]) for k in keys)} group(s) of bars, {len(all_methods)} method(s)"


def vs_pytorch_pairs(cases):
    """{(shape_key, method): {N: (longattn ms, PyTorch ms)}} for longattn kernels with a peer case."""
    ours, theirs = {}, {}
    for r, c in cases:
        key = (shape_key(c), c["N"])
        (theirs if r.peer else ours).setdefault((key, c["method"]), c["time_ms"]["median"])
    pairs = {}
    for ((k, n), m), t in ours.items():
        peer = COUNTERPART.get(m)
        if peer and ((k, n), peer) in theirs:
            pairs.setdefault((k, m), {})[n] = (t, theirs[((k, n), peer)])
    return pairs


def chart_vs_pytorch(runs, cases, out):
    if not any(r.peer for r in runs):
        return None, "no PyTorch peer file among the inputs (scripts/peers.sh SUITE writes one)"
    pairs = vs_pytorch_pairs(cases)
    if not pairs:
        return None, "no longattn kernel case has a PyTorch counterpart of the same shape and N"
    write_vs_pytorch_table(pairs, os.path.join(out, "vs_pytorch.md"))
    keys = sorted({k for k, _ in pairs})
    fig, axes, spec = make_figure(len(keys))
    methods, plotted = set(), []
    for ax, k in zip(axes, keys):
        kn, ys = [], []
        for (kk, m), pts in sorted(pairs.items(), key=lambda t: method_sort(t[0][1])):
            if kk != k:
                continue
            x = sorted(pts)
            y = [pts[n][1] / pts[n][0] for n in x]
            ax.plot(x, y, color=method_color(m), marker="o", markersize=4.5, linewidth=1.6)
            methods.add(m)
            kn += x
            ys += y
        plotted += [c for _, c in cases if shape_key(c) == k]
        ax.axhline(1.0, color="0.3", linewidth=1, linestyle=(0, (4, 3)), zorder=1)
        n_axis(ax, kn)
        log_y(ax, min(ys + [1.0]), max(ys + [1.0]), "\u00d7")
        ax.set_title(shape_title(k))
        ax.set_xlabel("sequence length N (tokens, log scale)")
        ax.set_ylabel("PyTorch time / longattn time (\u00d7)")
    h = [header("longattn kernel (colour) vs its peer")]
    h += [Line2D([], [], color=method_color(m), linewidth=2, marker="o", markersize=4, label=f"{m} vs {COUNTERPART[m]}")
          for m in sorted(methods, key=method_sort)]
    h += [header(" "), Line2D([], [], color="0.3", linewidth=1, linestyle=(0, (4, 3)), label="1\u00d7 = as fast")]
    title = f"longattn against PyTorch on the same machine - {dtype_device(plotted)}"
    notes = ["Above 1: longattn faster. Median times of the same case (pattern, B, N, H, d, dtype) in a longattn file "
             "and a PyTorch peer file; both verified against the oracle."]
    used = sorted({r for r, c in cases if shape_key(c) in keys}, key=lambda r: r.index)
    return finish(fig, spec, used, title, notes, h, out, "vs_pytorch"), f"{len(keys)} panel(s), {len(methods)} pair(s)"


def write_vs_pytorch_table(pairs, path):
    lines = ["| pattern (B, H, d, dtype) | N | longattn kernel | ms | PyTorch peer | ms | longattn ÷ PyTorch speed |",
             "|---|---:|---|---:|---|---:|---:|"]
    for (k, m), pts in sorted(pairs.items(), key=lambda t: (t[0][0], method_sort(t[0][1]))):
        B, H, d, dtype, device, pattern, pass_ = k
        for n in sorted(pts):
            ours, theirs = pts[n]
            lines.append(f"| {pattern} ({B}, {H}, {d}, {dtype}{'' if pass_ == 'forward' else ', ' + pass_}) | {human(n)} | {m} | {ours:.1f} | {COUNTERPART[m]} | "
                         f"{theirs:.1f} | {theirs / ours:.2f}x |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def backward_shares(cases):
    """{(shape key without pass, run, method): {N: (forward ms, forward+backward ms)}}: the
    forward+backward cases of every file (peers' too) with the same file's forward case beside them."""
    fwd, both = {}, {}
    for r, c in cases:
        if is_distributed(c) or c.get("pass", "forward") not in ("forward", "forward+backward"):
            continue
        key = (shape_key(c)[:-1], r, c["method"])
        (fwd if c.get("pass", "forward") == "forward" else both).setdefault(key, {})[c["N"]] = c["time_ms"]["median"]
    return {k: {n: (fwd[k][n], t) for n, t in pts.items() if n in fwd[k]} for k, pts in both.items() if k in fwd}


def chart_backward(runs, cases, out):
    shares = {k: v for k, v in backward_shares(cases).items() if v}
    if not shares:
        return None, "no forward+backward case with the same file's forward case beside it"
    write_backward_table(shares, os.path.join(out, "backward.md"))
    keys = sorted({k for k, _, _ in shares})
    fig, axes, spec = make_figure(len(keys))
    methods, used = set(), set()
    for ax, k in zip(axes, keys):
        ys = [100.0]
        for (kk, r, m), pts in sorted(shares.items(), key=lambda t: (method_sort(t[0][2]), t[0][1].index)):
            if kk != k:
                continue
            x = sorted(pts)
            y = [100.0 * 3.5 * pts[n][0] / pts[n][1] for n in x]
            ls, mk = r.style
            ax.plot(x, y, color=method_color(m), linestyle=ls, marker=mk, markersize=4.5, linewidth=1.6)
            methods.add(m), used.add(r)
            ys += y
        ax.axhline(100.0, color="0.3", linewidth=1, linestyle=(0, (4, 3)), zorder=1)
        n_axis(ax, [n for (kk, _, _), pts in shares.items() if kk == k for n in pts])
        ax.set_ylim(0, max(ys) * 1.1)
        B, H, d, dtype, device, pattern = k
        ax.set_title(f"{pattern}  (B={B}, H={H}, d={d}, {dtype}, {device})")
        ax.set_xlabel("sequence length N (tokens, log scale)")
        ax.set_ylabel("forward+backward rate, % of forward rate")
    guide = [Line2D([], [], color="0.3", linewidth=1, linestyle=(0, (4, 3)),
                    label="100% = the backward at the forward's rate")]
    handles = legend_handles(methods, used, runs, guide)
    title = "Training step: forward+backward rate against the forward's (FLOPs: backward = 2.5 forwards)"
    notes = ["Rate = FLOPs / median time, forward+backward counted as 3.5 forwards (SPEC §6), so the share is "
             "3.5 x forward time / (forward+backward time); FlashAttention-2's backward runs at ~2.5-3.5x its forward "
             "time. Each file against its own forward cases: PyTorch's (torch.autograd) beside longattn's."]
    return finish(fig, spec, sorted(used, key=lambda r: r.index), title, notes, handles, out, "backward"), \
        f"{len(keys)} panel(s), {len(methods)} method(s)"


def write_backward_table(shares, path):
    lines = ["| pattern (B, H, d, dtype) | N | method | forward ms | forward+backward ms | share of forward rate | "
             "PyTorch peer | its forward+backward ms | longattn ÷ PyTorch speed |",
             "|---|---:|---|---:|---:|---:|---|---:|---:|"]
    peers = {(k, m, n): t for (k, r, m), pts in shares.items() if r.peer for n, (_, t) in pts.items()}
    for (k, r, m), pts in sorted(shares.items(), key=lambda t: (t[0][0], method_sort(t[0][2]), t[0][1].index)):
        if r.peer:
            continue
        B, H, d, dtype, _, pattern = k
        for n in sorted(pts):
            f, fb = pts[n]
            peer = COUNTERPART.get(m)
            theirs = peers.get((k, peer, n))
            tail = f"{peer} | {theirs:.1f} | {theirs / fb:.2f}x" if theirs else "- | - | -"
            lines.append(f"| {pattern} ({B}, {H}, {d}, {dtype}) | {human(n)} | {m} | {f:.1f} | {fb:.1f} | "
                         f"{100 * 3.5 * f / fb:.0f}% | {tail} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


ERROR_QUANTITIES = [("O", lambda e: e.get("o_max_abs")), ("dQ", lambda e: e.get("grad", {}).get("dq_max_abs")),
                    ("dK", lambda e: e.get("grad", {}).get("dk_max_abs")),
                    ("dV", lambda e: e.get("grad", {}).get("dv_max_abs"))]


def chart_error_vs_ranks(runs, cases, out):
    """Max |error| against the float64 oracle of O, dQ, dK, dV against the rank count (issue 14)."""
    dist = [(r, c) for r, c in cases if is_distributed(c) and c.get("error")]
    if len({c["world"] for _, c in dist}) < 2:
        return None, "needs verified distributed cases from at least two world sizes (suite error-vs-ranks, -np 1..8)"
    # One panel per (pattern, dtype) and quantity; a line per method, the error at each world size.
    keys = sorted({(c["pattern_name"], c["dtype"], c.get("pass", "forward")) for _, c in dist})
    quantities = [(q, f) for q, f in ERROR_QUANTITIES if any(f(c["error"]) is not None for _, c in dist)]
    fig, axes, spec = make_figure(len(keys) * len(quantities), ncols_max=len(quantities))
    methods, used = set(), set()
    for i, k in enumerate(keys):
        for j, (q, f) in enumerate(quantities):
            ax = axes[i * len(quantities) + j]
            for m in sorted({c["method"] for _, c in dist}, key=method_sort):
                pts = sorted((c["world"], f(c["error"])) for r, c in dist
                             if (c["pattern_name"], c["dtype"], c.get("pass", "forward")) == k and c["method"] == m and
                             f(c["error"]) is not None and used.add(r) is None)
                if not pts:
                    continue
                methods.add(m)
                ax.plot([p for p, _ in pts], [max(e, 1e-12) for _, e in pts], marker="o", markersize=4,
                        color=method_color(m), linewidth=1.6)
            # The tolerance (SPEC §4 for O, §6 for the gradients), dashed; a fixed decade range, so
            # that rounding noise reads as the flat line it is.
            tols = [c["error"]["o_tolerance"] if q == "O" else c["error"].get("grad", {}).get("tolerance")
                    for _, c in dist if (c["pattern_name"], c["dtype"], c.get("pass", "forward")) == k]
            tols = [t for t in tols if t]
            if tols:
                ax.axhline(max(tols), color="0.5", linestyle="--", linewidth=1)
            ax.set_yscale("log")
            ax.set_ylim(1e-8, 1e-1)
            worlds = sorted({c["world"] for _, c in dist})
            ax.set_xticks(worlds)
            ax.set_xlabel("ranks P")
            ax.set_ylabel(f"max |{q} - {q}_ref|")
            ax.set_title(f"{q}: {k[0]}, {k[1]}" + ("" if k[2] == "forward" else f", {k[2]}"))
    handles = [header("Method (colour)")] + [Line2D([], [], color=method_color(m), linewidth=2, marker="o", markersize=4,
                                                    label=m) for m in sorted(methods, key=method_sort)]
    handles += [header(" "), Line2D([], [], color="0.5", linestyle="--", linewidth=1, label="tolerance (SPEC §4, §6)")]
    title = f"Error against the float64 oracle as the rank count grows - {dtype_device([c for _, c in dist])}"
    notes = ["Max |error| over the checked rows (every row for small cases, else 256 sampled; dK, dV summed over every "
             "query of the sequence in float64), reduced over ranks; SPEC §4 and §6 give the tolerances."]
    runs_used = sorted(used, key=lambda r: r.index)
    return finish(fig, spec, runs_used, title, notes, handles, out, "error_vs_ranks"), \
        f"{len(keys)} pattern/dtype row(s), {len(methods)} method(s), world sizes {sorted({c['world'] for _, c in dist})}"


CHARTS = [("speedup", chart_speedup), ("runtime", chart_runtime), ("scaling", chart_scaling),
          ("comm_share", chart_comm_share), ("efficiency", chart_efficiency), ("vs_pytorch", chart_vs_pytorch),
          ("backward", chart_backward),
          ("error_vs_ranks", chart_error_vs_ranks)]


def main(argv=None):
    ap = argparse.ArgumentParser(description="Charts (PNG and SVG) from longattn results files.")
    ap.add_argument("--out", default="plots", help="output directory (created if missing)")
    ap.add_argument("results", nargs="+", help="results JSON files (longattn run --out)")
    a = ap.parse_args(argv)
    try:
        with open(SCHEMA) as f:
            schema = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        print(f"plot.py: error: cannot load the schema {os.path.normpath(SCHEMA)}: {e}", file=sys.stderr)
        return 2
    validator = jsonschema.Draft202012Validator(schema)
    runs = []
    try:
        for i, p in enumerate(a.results):
            runs.append(Run(i, p, load(p, validator)))
    except Invalid as e:
        print(f"plot.py: error: {e}", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    cases = ok_cases(runs)
    for status in ("failed", "skipped"):
        n = sum(c["status"] == status for r in runs for c in r.data["cases"])
        if n:
            print(f"note: {n} {status} case(s) left out of the charts")
    drawn = 0
    for name, fn in CHARTS:
        if not cases:
            print(f"skipped {name}: no case with status ok in the inputs")
            continue
        paths, why = fn(runs, cases, a.out)
        if paths:
            drawn += 1
            print(f"drew    {name}: {', '.join(paths)} ({why})")
        else:
            print(f"skipped {name}: {why}")
    print(f"{drawn} chart(s) drawn into {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
