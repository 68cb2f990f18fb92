"""The command line: predict, --validate, --calibrate (exit 2 on bad input)."""

import argparse
import json
import os
import statistics
import sys

import model

from . import catalog
from .calibrate import calibrate, cpu_identity
from .errors import BadInput
from .machine import Machine
from .predict import predict
from .results import load_results, ok_cases
from .spec import ELEMENT_BYTES, parse_pattern


def fmt_bytes(b):
    for unit, s in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= s:
            return f"{b / s:.3g} {unit}"
    return f"{b:.0f} B"


def check_same_cpu(machine, ctx, path):
    """A measured machine's rates hold for its own CPU only: results from another are refused."""
    if machine.kind != "measured":
        return
    want = machine.data.get("cpu") or {"cpu_model": machine.data.get("cpu_model")}
    got = cpu_identity(ctx)
    if any(want.get(k) is not None and want.get(k) != got.get(k) for k in ("cpu_model", "isa", "cores", "features")):
        def name(x):
            extra = ", ".join(str(v) for v in (x.get("isa"), x.get("cores") and f"{x['cores']} cores") if v)
            return f"{x.get('cpu_model')}" + (f" ({extra})" if extra else "")
        raise BadInput(f"{path}: ran on {name(got)}, but {machine.path} was calibrated on {name(want)}; run "
                       "`longattn calibrate` on this machine and validate against that machine file")


def validate(paths, machine):
    srcs = machine.data.get("sources", [])
    cal_keys = {(s.get("suite"), s.get("date")) for s in srcs if isinstance(s, dict)} if isinstance(srcs, list) else set()
    kinds = set()
    rows, errs, held = [], [], []
    for path in paths:
        data = load_results(path)
        ctx = data["context"]
        check_same_cpu(machine, ctx, path)
        in_cal = (data["suite"], ctx["date"]) in cal_keys
        for c in ok_cases(data):
            if c["method"] in catalog.comm_ops() or c["method"] not in catalog.attention():
                continue
            pat = parse_pattern(c["pattern"], f"{path}: case {c['name']}: pattern")
            try:
                pr = predict(machine, c["method"], pat, c["B"], c["H"], c["N"], c["d"], c["world"],
                             threads=c["threads_per_rank"], dtype=c["dtype"],
                             ranks_per_node=ctx.get("ranks_per_node"), H_kv=c.get("H_kv"), ulysses=c.get("ulysses", 0))
            except BadInput as e:
                raise BadInput(f"{path}: case {c['name']}: {e}")
            kinds.add(c["device"])
            meas = c["time_ms"]["median"]
            err = (pr["time_ms"] - meas) / meas * 100 if meas > 0 else float("inf")
            mb = c["comm"]["bytes_received_per_rank"]
            bytes_ok = abs(pr["bytes_received_per_rank"] - mb) <= 1e-6 * max(1.0, mb)
            rows.append((os.path.basename(path), c, pr, meas, err, bytes_ok, in_cal))
            errs.append(abs(err))
            if not in_cal or c["method"] in catalog.distributed():
                held.append(abs(err))
    if not rows:
        raise BadInput("--validate: no ok attention cases in " + ", ".join(paths))
    want = "cuda" if machine.kind == "gpu" else "cpu"
    if kinds - {want}:
        print(f"longattn model: warning: {machine.path} describes a {machine.kind} machine, but some cases ran on "
              f"{', '.join(sorted(kinds - {want}))}", file=sys.stderr)
    print(f"Model `{machine.name}` ({machine.path}) against {len(paths)} results file(s). "
          "error = (predicted - measured) / measured; cal: the case's file was used to calibrate "
          "(single-device cases there are fitted, not predicted); bytes: predicted = measured (SPEC §3).")
    print()
    print("| file | case | P | thr | predicted ms | compute ms | comm ms | measured ms | meas. comm ms | error % | bytes | peak mem pred / meas | cal |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|")
    for fname, c, pr, meas, err, bytes_ok, in_cal in rows:
        name = f"{c['method']} {c['pattern_name']} N={c['N']} B={c['B']} H={c['H']} d={c['d']}"
        print(f"| {fname} | {name} | {c['world']} | {c['threads_per_rank']} | {pr['time_ms']:.3f} | "
              f"{pr['compute_ms']:.3f} | {pr['comm_ms']:.3f} | {meas:.3f} | {c['comm']['time_ms']:.3f} | {err:+.1f} | "
              f"{('= ' if bytes_ok else '!= ') + fmt_bytes(pr['bytes_received_per_rank'])} | "
              f"{fmt_bytes(pr['peak_memory_bytes_per_rank'])} / {fmt_bytes(c['peak_memory_bytes_per_rank'])} | "
              f"{'yes' if in_cal else 'no'} |")
    print()
    # Bias by the classes a new machine gets wrong first: signed errors, so that a class the model
    # puts consistently high or low shows even when the overall median is small.
    classes = {"1-thread ranks": lambda c: c["threads_per_rank"] == 1,
               "local windows": lambda c: c["pattern"]["kind"] == "local",
               "dilated": lambda c: c["pattern"]["kind"] == "dilated",
               "bf16": lambda c: c["dtype"] == "bf16",
               "distributed": lambda c: c["method"] in catalog.distributed(),
               "single device": lambda c: c["method"] in catalog.single()}
    print("| class | cases | median signed error % | median abs error % |")
    print("|---|---:|---:|---:|")
    for cname, member in classes.items():
        es = [r[4] for r in rows if member(r[1]) and (not r[6] or r[1]["method"] in catalog.distributed())]
        if es:
            print(f"| {cname} | {len(es)} | {statistics.median(es):+.1f} | {statistics.median(abs(x) for x in es):.1f} |")
    print()
    bad_bytes = sum(1 for r in rows if not r[5])
    print(f"bytes received: {len(rows) - bad_bytes} of {len(rows)} cases equal the SPEC §3 formula")
    # The last line is the honest figure: cases the calibration did not fit. Single-device cases
    # of a calibration file reproduce their own rates (about 0% by construction), so counting them
    # would flatter the model.
    print(f"(with the {len(errs) - len(held)} fitted cases: median abs error {statistics.median(errs):.1f}% "
          f"over {len(errs)} cases)")
    final = held if held else errs
    print(f"median abs error {statistics.median(final):.1f}% over {len(final)} cases")


# ------------------------------------------------------------------------------------------- CLI


def print_prediction(pr):
    print(f"machine {pr['machine']}: {pr['method']} (kernel {pr['kernel']}) {pr['pattern']} "
          f"B={pr['B']} H={pr['H']} N={pr['N']} d={pr['d']} on {pr['world']} rank(s), {pr['threads_per_rank']} thread(s) per rank")
    print(f"  time per rank      {pr['time_ms']:.4g} ms")
    print(f"    compute          {pr['compute_ms']:.4g} ms  ({pr['flops_per_rank']:.4g} FLOP on the busiest rank; "
          f"{pr['flops']:.4g} FLOP in all, dense {pr['flops_dense']:.4g})")
    print(f"    communication    {pr['comm_ms']:.4g} ms" +
          ("  (not hidden behind compute; transfers total %.4g ms)" % pr["transfer_total_ms"] if "transfer_total_ms" in pr else ""))
    print(f"  bytes received     {pr['bytes_received_per_rank']:.6g} per rank ({fmt_bytes(pr['bytes_received_per_rank'])})")
    fits = {True: "fits", False: "DOES NOT FIT", None: "capacity unknown"}[pr["fits_memory"]]
    print(f"  peak memory        {fmt_bytes(pr['peak_memory_bytes_per_rank'])} per rank "
          f"({fits}: {fmt_bytes(pr['memory_bytes_per_device'])} per device)")
    for n in pr["notes"]:
        print(f"  note: {n}")


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"longattn model: error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv=None):
    ap = Parser(prog="longattn model", description=model.__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--validate", nargs="+", metavar="RESULTS.json", help="predict every ok attention case and compare")
    ap.add_argument("--calibrate", action="store_true", help="write a machine file from measured results")
    ap.add_argument("--kernels", nargs="+", default=[], metavar="RESULTS.json", help="--calibrate: results with single-device cases")
    ap.add_argument("--comm", nargs="+", default=[], metavar="RESULTS.json", help="--calibrate: suite/comm.json results (-np >= 2)")
    ap.add_argument("--name", help="--calibrate: the machine's name")
    ap.add_argument("--out", help="--calibrate: machine file to write (results/machines/NAME.json)")
    ap.add_argument("--machine", metavar="M.json", help="machine file (results/machines/*.json)")
    ap.add_argument("--method", help="predict: an attention method of `longattn list` (vanilla, flash, dist-ring, ...)")
    ap.add_argument("--pattern", default='{"kind": "full"}', help='predict: SPEC §5 JSON, e.g. \'{"kind": "dilated", "levels": "longnet", "causal": true}\'')
    ap.add_argument("--B", type=int, default=1)
    ap.add_argument("--H", type=int)
    ap.add_argument("--N", type=int)
    ap.add_argument("--d", type=int)
    ap.add_argument("--H_kv", type=int, help="predict: K and V heads (GQA; default H)")
    ap.add_argument("--ulysses", type=int, default=0, help="predict: dist-usp's Ulysses degree (default: the largest dividing P and H_kv)")
    ap.add_argument("--world", type=int, default=1, help="ranks (devices)")
    ap.add_argument("--threads", type=int, help="threads per rank (default: cores / world, as the harness does)")
    ap.add_argument("--dtype", choices=sorted(ELEMENT_BYTES), help="element type (default: the machine's)")
    ap.add_argument("--kernel", choices=["flash", "vanilla", "dilated"], help="dist-heads/ulysses/ring: the per-rank kernel (default: as the method picks)")
    ap.add_argument("--json", action="store_true", help="predict: print the prediction as JSON")
    a = ap.parse_args(argv)
    try:
        if a.calibrate:
            if a.validate:
                raise BadInput("--calibrate and --validate: one at a time")
            if not a.name or not a.out:
                raise BadInput("--calibrate needs --name NAME and --out results/machines/NAME.json")
            m = calibrate(a.kernels, a.comm, a.name, a.out)
            ops = "; ".join(op + " " + ", ".join(
                f"alpha {r['alpha_s'] * 1e6:.3g} us beta {r['beta_Bps'] / 1e9:.3g} GB/s" +
                (f" up to {fmt_bytes(r['max_bytes_per_step'])}" if r["max_bytes_per_step"] else "")
                for r in v["regimes"]) for op, v in m["communication"]["ops"].items()) or "none (no --comm)"
            print(f"wrote {a.out}: kernels {', '.join(m['compute']['kernels'])}; communication {ops}")
            return 0
        if not a.machine:
            raise BadInput("--machine M.json is required (results/machines/*.json, or write one with --calibrate)")
        machine = Machine.load(a.machine)
        if a.validate:
            validate(a.validate, machine)
            return 0
        missing = [o for o in ("method", "H", "N", "d") if getattr(a, o) is None]
        if missing:
            raise BadInput("predict needs " + ", ".join("--" + m for m in missing) +
                           " (or use --validate / --calibrate)")
        pat = parse_pattern(a.pattern, "--pattern")
        if a.threads is not None and a.threads < 1:
            raise BadInput("--threads: must be positive")
        if a.H_kv is not None and (a.H_kv < 1 or a.H % a.H_kv):
            raise BadInput(f"--H_kv: {a.H_kv} does not divide H = {a.H}")
        pr = predict(machine, a.method, pat, a.B, a.H, a.N, a.d, a.world, a.threads, a.kernel, a.dtype,
                     H_kv=a.H_kv, ulysses=a.ulysses)
        if a.json:
            print(json.dumps(pr, indent=1))
        else:
            print_prediction(pr)
        return 0
    except BadInput as e:
        print(f"longattn model: error: {e}", file=sys.stderr)
        return 2
