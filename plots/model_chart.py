#!/usr/bin/python3
"""Charts of the model's (harness/model) predictions, with measured points where results files have them.

    longattn model-chart --out DIR [--machine M.json ...] [RESULTS.json ...]
        [--per-device 32768] [--B 1] [--H 8] [--d 64] [--gpus 4] [--gpu-machine rtx4090-pcie.json]

Default machines: every results/machines/*.json. Writes, as DIR/NAME.png and DIR/NAME.svg:

  model_longnet      LongNet's figure to a billion tokens: time per iteration against N (8K .. 1B) for
                     vanilla, flash and dilated attention (the longnet configuration, causal), the number
                     of devices growing with N (N / per-device tokens, at least one): one device runs
                     vanilla / flash / dilated; more run dist-ring with vanilla or flash blocks, and
                     dist-dilated. One panel per machine file (a calibrated CPU machine counts a rank as a
                     device). Lines and hollow markers: predicted; a cross: the first N that does not fit
                     in device memory (the line stops). Filled markers: measured (results files of the
                     calibrated machine's CPU), labelled with their rank count where it differs from
                     the curve's.
  model_distributed  He & Kabic's comparison: vanilla on one device against dist-heads and dist-ulysses
                     on several, full (non-causal) pattern: this machine with 1 and 2 ranks (measured
                     points from distributed-mha results files filled) and --gpus RTX 4090s.

Exit status 2 on bad input (a file that is not a machine or results file), naming it.
"""

import argparse
import glob
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

import model  # noqa: E402  (harness/ on PYTHONPATH, as `longattn model-chart` sets it)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

DPI = 120
plt.rcParams.update({
    "figure.dpi": DPI, "savefig.dpi": DPI, "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9,
    "legend.fontsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True, "grid.alpha": 0.3,
    "grid.linewidth": 0.6, "svg.hashsalt": "longattn",
})
COLORS = {"vanilla": "#d62728", "flash": "#1f77b4", "dilated": "#2ca02c", "dist-heads": "#9467bd",
          "dist-ulysses": "#ff7f0e", "dist-ring": "#17becf", "dist-ring-zigzag": "#7f7f7f", "dist-dilated": "#8c564b"}
MARKERS = {1: "o", 2: "s", 3: "^", 4: "D"}
LONGNET = {"kind": "dilated", "levels": "longnet", "causal": True}
CAUSAL = {"kind": "full", "causal": True}


def tokens(n):
    for unit, s in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= s and n % s == 0:
            return f"{n // s}{unit}"
    return str(n)


def seconds(t):
    if t >= 3600:
        return f"{t / 3600:.3g} h"
    if t >= 60:
        return f"{t / 60:.3g} min"
    if t >= 1:
        return f"{t:.3g} s"
    return f"{t * 1e3:.3g} ms"


def machine_title(m):
    if m.kind == "gpu":
        ic = m.data["interconnect"]
        return f"{m.name}: {m.data['device']}, {m.data['dtype']}\n{ic['intra_node']['name']} " \
               f"({ic['devices_per_node']} per node)"
    return f"{m.name}: {m.data.get('cpu_model', 'CPU')}, fp32\na device = 1 rank, MPI between ranks as measured"


def device_threads(m, args):
    return args.threads or (m.cores if m.kind == "measured" else 1)


def plan(label, N, P):
    """(method, kernel) that runs `label` on P devices."""
    if label == "vanilla":
        return ("vanilla", None) if P == 1 else ("dist-ring", "vanilla")
    if label == "flash":
        return ("flash", None) if P == 1 else ("dist-ring", "flash")
    return ("dilated", None) if P == 1 else ("dist-dilated", None)


def measured_cases(results, machine, methods, keep):
    """ok CPU cases of results files measured on `machine`'s CPU (all files, if it names none)."""
    cpu = machine.data.get("cpu_model")
    out = []
    for path, data in results:
        if cpu and data["context"]["cpu_model"] != cpu:
            continue
        for c in model.ok_cases(data):
            if c["device"] == "cpu" and c["method"] in methods and keep(c):
                out.append((path, c))
    return out


def caption(fig, machines, results, extra):
    lines = ["Predicted by harness/model from " + ", ".join(os.path.relpath(m.path, ROOT) if os.path.isabs(m.path)
                                                                else m.path for m in machines) + "."]
    if results:
        lines.append("Measured: " + "; ".join(
            f"{os.path.basename(p)} ({d['context']['cpu_model']}, {d['context']['world_size']} rank(s) x "
            f"{d['context']['threads_per_rank']} thread(s), {d['context']['date'][:10]})" for p, d in results) + ".")
    lines.append(extra)
    import textwrap
    text = "\n".join(textwrap.fill(l, 150) for l in lines)
    fig.text(0.01, 0.01, text, fontsize=7, va="bottom", ha="left", color="#333333")
    return text.count("\n") + 1


def save(fig, out, name):
    paths = []
    for ext in ("png", "svg"):
        p = os.path.join(out, f"{name}.{ext}")
        fig.savefig(p, bbox_inches="tight")
        paths.append(p)
    plt.close(fig)
    return paths


# ---------------------------------------------------------------------------------- chart (a)


def longnet_chart(machines, results, args):
    per = args.per_device
    Ns = [1 << k for k in range(13, 31)]  # 8K .. 1G tokens
    labels = ["vanilla", "flash", "dilated"]
    pats = {"vanilla": model.parse_pattern(CAUSAL), "flash": model.parse_pattern(CAUSAL),
            "dilated": model.parse_pattern(LONGNET)}
    cols = len(machines)
    fig, axes = plt.subplots(1, cols, figsize=(5.0 * cols, 4.6), squeeze=False)
    summary = []
    keepers = {"vanilla": "vanilla", "flash": "flash", "dilated": "dilated", "dist-ring": "flash",
               "dist-ring-zigzag": "flash", "dist-dilated": "dilated"}

    def keep(c):
        pat = model.parse_pattern(c["pattern"])
        want = LONGNET if pat["kind"] == "dilated" else CAUSAL
        return model.parse_pattern(want) == pat and (c["B"], c["H"], c["d"]) == (args.B, args.H, args.d)

    for ax, m in zip(axes[0], machines):
        thr = device_threads(m, args)
        meas = measured_cases(results, m, keepers, keep) if m.kind == "measured" else []
        lo = min([c["N"] for _, c in meas] + [Ns[0]])
        grid = [1 << k for k in range(max(0, lo - 1).bit_length(), 13)] + Ns if lo < Ns[0] else Ns
        for label in labels:
            xs, ys, oom = [], [], None
            for N in grid:
                P = max(1, N // per)
                method, kern = plan(label, N, P)
                try:
                    pr = model.predict(m, method, pats[label], args.B, args.H, N, args.d, P, threads=thr, kernel=kern)
                except model.BadInput as e:
                    raise model.BadInput(f"{m.path}: {label} at N={N}: {e}")
                if pr["fits_memory"] is False:
                    oom = (N, pr["time_ms"] / 1e3)
                    break
                xs.append(N)
                ys.append(pr["time_ms"] / 1e3)
            ax.plot(xs, ys, "-", color=COLORS[label], lw=1.6, marker="o", ms=4, mfc="white", mec=COLORS[label],
                    zorder=2)
            if oom:
                ax.plot([oom[0]], [oom[1]], "x", color=COLORS[label], ms=8, mew=2, zorder=3)
                ax.annotate(f"{label}: out of memory\nfrom N = {tokens(oom[0])}", (oom[0], oom[1]), textcoords="offset points",
                            xytext=(0, 9), fontsize=7, color=COLORS[label], ha="center", va="bottom")
            if xs:
                summary.append(f"{m.name} {label}: {tokens(xs[-1])} tokens in {seconds(ys[-1])} on "
                               f"{max(1, xs[-1] // per)} device(s)" + (f" (out of memory from {tokens(oom[0])})" if oom else ""))
        for path, c in meas:
            label = keepers[c["method"]]
            ax.plot([c["N"]], [c["time_ms"]["median"] / 1e3], marker=MARKERS.get(c["world"], "P"), color=COLORS[label],
                    ms=6, mec="black", mew=0.6, ls="none", zorder=4, alpha=0.9)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        lo_y, hi_y = ax.get_ylim()
        ax.set_ylim(lo_y, hi_y * 30)  # room above the curves for the out-of-memory notes
        ax.set_xlabel(f"sequence length N (tokens); devices = max(1, N / {tokens(per)})")
        ax.set_ylabel("time per forward pass (s)")
        ax.set_title(machine_title(m), fontsize=8.5)
        ticks = [1 << k for k in range(30, grid[0].bit_length() - 2, -3)][::-1]
        ax.set_xticks(ticks)
        ax.set_xticklabels([tokens(t) for t in ticks])
        sec = ax.secondary_xaxis("top", functions=(lambda x: x / per, lambda p: p * per))
        ticks = [p for p in (1, 8, 64, 512, 4096, 32768) if p * per <= Ns[-1]]
        sec.set_xticks(ticks)
        sec.set_xticklabels([str(p) for p in ticks])
        sec.set_xlabel("devices", fontsize=8)
    handles = [Line2D([], [], color=COLORS[l], lw=1.6, marker="o", mfc="white", ms=4,
                      label={"vanilla": "vanilla (causal; dist-ring with dense blocks on >1 device)",
                             "flash": "flash (causal; dist-ring on >1 device)",
                             "dilated": "dilated, longnet levels (causal; dist-dilated on >1 device)"}[l]) for l in labels]
    handles += [Line2D([], [], color="gray", marker="o", mfc="white", ls="none", label="predicted"),
                Line2D([], [], color="gray", marker="o", mec="black", ls="none",
                       label="measured on this CPU (filled; circle 1 rank, square 2, triangle 3, diamond 4)"),
                Line2D([], [], color="gray", marker="x", ls="none", mew=2, label="first N over device memory")]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, frameon=False)
    fig.suptitle("Toward a billion tokens: predicted time per forward pass, B=%d H=%d d=%d, %s tokens per device\n%s"
                 % (args.B, args.H, args.d, tokens(per), " | ".join(m.name for m in machines)), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.subplots_adjust(bottom=0.26)
    caption(fig, machines, results, "GPU panels use public figures (results/machines/*.json lists each source); "
            "dilated's all-gathers span every device at the top levels, so its latency term grows with P.")
    return fig, summary


# ---------------------------------------------------------------------------------- chart (b)


def distributed_chart(cpu_machines, gpu, results, args):
    pat = model.parse_pattern({"kind": "full"})
    panels = [(m, [1 << k for k in range(10, 18)]) for m in cpu_machines]
    if gpu is not None:
        panels.append((gpu, [1 << k for k in range(11, 21)]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.3 * len(panels), 5.2), squeeze=False)
    summary = []
    for ax, (m, Ns) in zip(axes[0], panels):
        if m.kind == "measured":
            P2 = 2
            combos = {("vanilla", 1), ("flash", 1), ("dist-heads", P2), ("dist-ulysses", P2)}

            def keep(c):
                return model.parse_pattern(c["pattern"]) == pat and (c["B"], c["H"], c["d"]) == (args.B, args.H, args.d)

            meas = measured_cases(results, m, {"vanilla", "flash", "dist-heads", "dist-ulysses"}, keep)
            combos |= {(c["method"], c["world"]) for _, c in meas}
        else:
            combos = {("vanilla", 1), ("flash", 1), ("dist-heads", args.gpus), ("dist-ulysses", args.gpus)}
            meas = []
        for method, P in sorted(combos, key=lambda x: (x[1], x[0])):
            if args.H % P:
                continue
            thr = args.threads or (max(1, m.cores // P) if m.kind == "measured" else 1)
            xs, ys, oom = [], [], None
            for N in Ns:
                pr = model.predict(m, method, pat, args.B, args.H, N, args.d, P, threads=thr)
                if pr["fits_memory"] is False:
                    oom = (N, pr["time_ms"] / 1e3)
                    break
                xs.append(N)
                ys.append(pr["time_ms"] / 1e3)
            style = {"dist-ulysses": "--", "flash": ":"}.get(method, "-") if P > 1 or not method.startswith("dist") else ":"
            lw = 1.2 if method == "flash" or (P == 1 and method.startswith("dist")) else 1.8
            ax.plot(xs, ys, style, color=COLORS[method], lw=lw, marker=MARKERS.get(P, "P"), ms=4, mfc="white",
                    mec=COLORS[method], label=f"{method}, {P} {'GPU' if m.kind == 'gpu' else 'rank'}{'s' if P > 1 else ''}")
            if oom:
                ax.plot([oom[0]], [oom[1]], "x", color=COLORS[method], ms=8, mew=2)
                ax.annotate(f"{method}: out of memory\nfrom N = {tokens(oom[0])}", (oom[0], oom[1]),
                            textcoords="offset points", xytext=(0, 9), fontsize=7, color=COLORS[method], ha="center",
                            va="bottom")
            if xs:
                summary.append(f"{m.name} {method} on {P}: N={tokens(xs[-1])} {seconds(ys[-1])}" +
                               (f", out of memory from {tokens(oom[0])}" if oom else ""))
        for _, c in meas:
            ax.plot([c["N"]], [c["time_ms"]["median"] / 1e3], marker=MARKERS.get(c["world"], "P"), color=COLORS[c["method"]],
                    ms=7, mec="black", mew=0.6, ls="none", zorder=4)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        lo_y, hi_y = ax.get_ylim()
        ax.set_ylim(lo_y, hi_y * 30)  # room above the curves for the out-of-memory notes
        ax.set_xticks(Ns[::1 if len(Ns) <= 8 else 2])
        ax.set_xticklabels([tokens(n) for n in Ns[::1 if len(Ns) <= 8 else 2]])
        ax.set_xlabel("sequence length N (tokens)")
        ax.set_ylabel("time per forward pass (s)")
        title = machine_title(m)
        if m.kind == "gpu":
            title = f"{args.gpus} x " + title
        ax.set_title(title, fontsize=8.5)
        h, l = ax.get_legend_handles_labels()
        if meas:
            h.append(Line2D([], [], color="gray", marker="o", mec="black", ls="none"))
            l.append("measured (filled; circle P=1, square P=2)")
        ax.legend(h, l, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=7, frameon=False)
    fig.suptitle("Distributed multi-head attention, full pattern, B=%d H=%d d=%d: vanilla on one device vs "
                 "dist-heads / dist-ulysses on several\n%s" % (args.B, args.H, args.d, " | ".join(m.name for m, _ in panels)),
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    caption(fig, [m for m, _ in panels], results, "Lines and hollow markers: predicted; filled: measured. "
            "Threads per rank on the CPU: cores / ranks, as the harness runs.")
    return fig, summary


def main(argv=None):
    ap = argparse.ArgumentParser(prog="longattn model-chart", description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="*", help="results files with measured points (kernels, longnet-scaling, distributed-mha)")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--machine", action="append", help="machine file (repeatable; default results/machines/*.json)")
    ap.add_argument("--gpu-machine", default=os.path.join(ROOT, "results", "machines", "rtx4090-pcie.json"),
                    help="GPU machine file for the distributed-mha extrapolation")
    ap.add_argument("--gpus", type=int, default=4)
    ap.add_argument("--per-device", type=int, default=32768, help="tokens per device in the LongNet chart")
    ap.add_argument("--B", type=int, default=1)
    ap.add_argument("--H", type=int, default=8)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--threads", type=int, help="threads per device on measured machines (default: all cores)")
    a = ap.parse_args(argv)
    try:
        paths = a.machine or sorted(glob.glob(os.path.join(ROOT, "results", "machines", "*.json")))
        if not paths:
            raise model.BadInput("no machine files: pass --machine or write results/machines/NAME.json with `longattn model --calibrate`")
        machines = [model.Machine.load(p) for p in paths]
        machines.sort(key=lambda m: (m.kind != "measured", m.name))
        results = [(p, model.load_results(p)) for p in a.results]
        gpu = model.Machine.load(a.gpu_machine) if a.gpu_machine and os.path.exists(a.gpu_machine) else None
        if gpu is not None and gpu.kind != "gpu":
            raise model.BadInput(f"{a.gpu_machine}: --gpu-machine must be a GPU machine file")
        os.makedirs(a.out, exist_ok=True)
        written = []
        fig, summary = longnet_chart(machines, results, a)
        written += save(fig, a.out, "model_longnet")
        cpus = [m for m in machines if m.kind == "measured"]
        fig, summary2 = distributed_chart(cpus, gpu, results, a)
        written += save(fig, a.out, "model_distributed")
    except model.BadInput as e:
        print(f"model_chart.py: error: {e}", file=sys.stderr)
        return 2
    for s in summary + summary2:
        print(s)
    for p in written:
        print("wrote", p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
