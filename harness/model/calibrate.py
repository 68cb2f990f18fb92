"""calibrate(): a machine file from measured results files."""

import datetime
import json
import os
import statistics

from . import catalog
from .errors import BadInput
from .fit import fit_comm
from .machine import Machine
from .results import load_results, ok_cases
from .spec import dist_dilated_ranks, family, parse_pattern, rate_axis


def case_elements(c, P):
    """fp32 elements the harness and method allocate for a measured case (for the memory base)."""
    if c["method"] in catalog.comm_ops():
        part = c["B"] * c["N"] * c["H"] * c["d"] / P
        return 4 * part + part * (P if c["method"] == "comm-all-gather" else 1)
    return None


def cpu_identity(ctx):
    """What names a CPU in a results context: its model string, ISA and features, and its cores (a
    virtual machine's model string alone can be a generic "Intel(R) Xeon(R) Processor")."""
    peak = ctx.get("cpu_peak", {})
    feats = peak.get("features", {})
    return {"cpu_model": ctx.get("cpu_model"), "isa": peak.get("isa"), "cores": ctx.get("cores"),
            "features": sorted(k for k, v in feats.items() if v)}


def calibrate(kernel_files, comm_files, name, out, run_info=None):
    sources, rates, sgemm, base = [], {}, {}, {}
    keyed = {}  # (kernel, family, dtype, d, threads, axis) -> {x: [GFLOP/s, ...]}
    cores, cpu, identity, blas = None, None, None, None
    # A machine with no memory base, to count the buffers of measured cases.
    probe = Machine({"name": name, "kind": "measured", "cores": 1, "compute": {"kernels": {"x": {"full": {"1": [[1, 1]]}}}},
                     "communication": {"ops": {}}, "memory": {}, "sources": []}, "calibration")
    files = [(p, "kernels") for p in kernel_files] + [(p, "comm") for p in comm_files]
    if not kernel_files:
        raise BadInput("--kernels: give at least one results file with vanilla/flash/dilated cases")
    comm_points = {}
    for path, role in files:
        data = load_results(path)
        ctx = data["context"]
        P = ctx["world_size"]
        cores = cores or ctx["cores"]
        cpu = cpu or ctx["cpu_model"]
        identity = identity or cpu_identity(ctx)
        blas = blas or ctx.get("blas", {}).get("core")
        if cpu_identity(ctx) != identity:
            raise BadInput(f"{path}: ran on another CPU ({cpu_identity(ctx)['cpu_model']}, "
                           f"{cpu_identity(ctx)['isa']}) than the other files ({identity['cpu_model']}, "
                           f"{identity['isa']}); calibrate one machine at a time")
        sgemm.setdefault(str(ctx["threads_per_rank"]), []).append(ctx["sgemm_gflops_per_rank"])
        used = 0
        for c in ok_cases(data):
            t = c["time_ms"]["median"] * 1e-3
            if t <= 0:
                continue
            if role == "kernels" and c["layout"] == "single" and c["device"] == "cpu" and c["method"] in catalog.single():
                pat = parse_pattern(c["pattern"], f"{path}: case {c['name']}: pattern")
                work = c["flops_dense"] if c["method"] == "vanilla" else c["flops"]
                if work <= 0:
                    continue
                if c["dtype"] == "fp32":  # the table older tools read
                    fam = rates.setdefault(c["method"], {}).setdefault(family(pat), {})
                    fam.setdefault(str(c["threads_per_rank"]), []).append([c["N"], work / t / 1e9, c["B"], c["H"], c["d"], path])
                axis, x = rate_axis(pat, c["N"])
                key = (c["method"], family(pat), c["dtype"], c["d"], c["threads_per_rank"], axis)
                keyed.setdefault(key, {}).setdefault(x, []).append(work / t / 1e9)
                used += 1
            if role == "comm" and c["method"] in catalog.comm_ops() and c["ranks"] > 1:
                op = catalog.comm_ops()[c["method"]]
                steps = 1 if op == "send_recv" else c["world"] - 1
                comm_points.setdefault(op, []).append((steps, c["comm"]["bytes_received_per_rank"], t))
                used += 1
            # memory base: measured peak less the buffers the model counts
            if c["device"] == "cpu" and c.get("peak_memory_bytes_per_rank", 0) > 0:
                if c["method"] in catalog.comm_ops():
                    el = case_elements(c, P)
                else:
                    try:
                        pat = parse_pattern(c["pattern"])
                        kern = c["method"] if c["method"] in catalog.single() else ("dilated" if pat["kind"] == "dilated" else "flash")
                        dd = dist_dilated_ranks(pat, c["B"], c["H"], c["N"], c["d"], c["world"], c.get("H_kv"))[2] \
                            if c["method"] == "dist-dilated" else None
                        el = (probe.memory(c["method"], kern, c["B"], c["H"], c["N"], c["d"], c["world"],
                                           c["threads_per_rank"], pat, dd)) / 4
                    except BadInput:
                        el = None
                if el is not None:
                    base.setdefault(str(P), []).append(c["peak_memory_bytes_per_rank"] - 4 * el)
        sources.append({"file": path, "role": role, "suite": data["suite"], "date": ctx["date"],
                        "git_commit": ctx["git_commit"], "world_size": P, "threads_per_rank": ctx["threads_per_rank"],
                        "cpu_model": ctx["cpu_model"], "hosts": ctx["host_names"], "cases_used": used})
    if not rates:
        raise BadInput("--kernels: no ok fp32 single-device cases (vanilla, flash, dilated) in " + ", ".join(kernel_files) +
                       "; run `longattn calibrate`, or `longattn run kernels` for such a file")
    kernels = {}
    for kern, fams in sorted(rates.items()):
        for fam, by_t in sorted(fams.items()):
            for t, pts in sorted(by_t.items()):
                byN = {}
                for p in pts:
                    byN.setdefault(p[0], []).append(p)
                kernels.setdefault(kern, {}).setdefault(fam, {})[t] = [
                    [N, round(statistics.median(p[1] for p in ps), 4)] for N, ps in sorted(byN.items())]
    ops = {}
    for op, pts in sorted(comm_points.items()):
        ops[op] = {"regimes": fit_comm(pts)}
    if comm_files and not ops:
        raise BadInput("--comm: no ok comm-* cases on more than one rank in " + ", ".join(comm_files))
    mem_total = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_total = int(line.split()[1]) * 1024
    except OSError:
        pass
    machine = {
        "name": name,
        "kind": "measured",
        "description": f"Calibrated by `longattn model --calibrate` from {len(sources)} results file(s); "
                       "a device is one rank with threads_per_rank threads of this machine.",
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu_model": cpu,
        "cores": cores,
        "memory_bytes_per_device": mem_total,
        "memory_source": "MemTotal of /proc/meminfo on the host that ran --calibrate",
        "sgemm_gflops_per_rank": {t: round(statistics.median(v), 3) for t, v in sorted(sgemm.items())},
        "cpu": identity,
        "blas_core": blas,
        "compute": {
            "rate": "GFLOP/s = flops / median time (vanilla: flops_dense / median time), per kernel, "
                    "pattern family and threads per rank, as [N, GFLOP/s] (median over files and shapes)",
            "kernels": kernels,
            "rates_keyed_by": "kernel, pattern family, dtype, head dim d, threads per rank; points [x, GFLOP/s] "
                              "with x = N, or the window width for local patterns (its block skipping sets the rate)",
            "rates": [{"kernel": k, "family": f, "dtype": dt, "d": dd, "threads": th, "x": ax,
                       "points": [[x, round(statistics.median(v), 4)] for x, v in sorted(pts.items())],
                       "measured": True}
                      for (k, f, dt, dd, th, ax), pts in sorted(keyed.items())],
            "derived": "Every rate listed is measured. Derived at prediction time, with a note in the prediction: "
                       "a thread count not listed (the nearest listed one scaled by the sgemm ratio of the two, "
                       "else linearly), a head dim not listed (the nearest), an N or window outside the listed "
                       "points (the end point's rate), a family not listed (the nearest family). A dtype not "
                       "listed is refused.",
        },
        "communication": {
            "model": "t = steps * alpha_s + bytes_received_per_rank / beta_Bps; steps = P-1 (collectives) or 1 "
                     "(send_recv); fitted by least squares in log time to the comm-* cases; a second regime "
                     "above max_bytes_per_step where the messages leave the caches (see fit_comm)",
            "ops": ops,
        },
        "memory": {
            "model": "peak = base + 4 bytes x the model's buffer elements; base = median residual per world size",
            "base_bytes_per_rank": {k: max(0.0, statistics.median(v)) for k, v in sorted(base.items())},
        },
        "sources": sources,
    }
    if run_info:
        machine["calibration_run"] = run_info
    try:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(machine, f, indent=1)
            f.write("\n")
        os.replace(tmp, out)
    except OSError as e:
        raise BadInput(f"--out {out}: cannot write: {e.strerror}")
    return machine
