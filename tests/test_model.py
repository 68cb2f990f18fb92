#!/usr/bin/python3
"""harness/model (the package) and plots/model_chart.py: the model's byte counts equal SPEC §3 and its FLOPs
SPEC §1, checked against a real `longattn run` of a tiny suite of every distributed method on 2 and
3 ranks; calibrate -> validate -> predict run end to end on such files; the GPU machine files are
complete; bad input exits 2 naming the problem.

Usage: test_model.py [BUILD/longattn]   (default build/longattn)
Prints one line per check and 'N passed, M failed'; exits 1 if any failed."""
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "plots", "model_chart.py")
EXE = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "longattn"))
# What `longattn model` gives the model: the program (its methods come from `list --json`) and harness/
# on PYTHONPATH (`python3 -m model`, and model_chart.py's `import model`).
os.environ["LONGATTN_PROGRAM"] = EXE
os.environ["PYTHONPATH"] = os.path.join(ROOT, "harness")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
PY = sys.executable
MODEL = ["-m", "model"]
sys.path.insert(0, os.path.join(ROOT, "harness"))
sys.dont_write_bytecode = True
import model  # noqa: E402

results = {"passed": 0, "failed": 0}
CAUSAL_FULL = {"kind": "full", "causal": True}


def check(name, ok, detail=""):
    results["passed" if ok else "failed"] += 1
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok else "\n      " + str(detail).replace("\n", "\n      ")))
    return ok


def run(args, timeout=240):
    p = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def longattn(np_, suite, out):
    cmd = ["mpirun", "-np", str(np_), "--oversubscribe", EXE] if np_ > 1 else [EXE]
    return run(cmd + ["run", suite, "--out", out, "--quiet"])


DIST_SUITE = {
    "name": "model-test",
    "description": "tests/test_model.py: every method on tiny shapes, shard boundaries inside dilated segments",
    # Every attention method of the program's table but the (slow) oracle: a new one is covered here
    # without touching this file.
    "methods": [m for m in model.catalog.attention() if m != "reference"],
    "patterns": [
        {"kind": "full"},
        {"kind": "full", "causal": True},
        {"kind": "local", "left": 40, "right": 3},
        {"kind": "strided", "stride": 24, "causal": True},
        {"kind": "fixed", "block": 48, "summary": 5},
        {"kind": "dilated", "levels": [[64, 1], [256, 2], [384, 4]], "causal": True},
        {"kind": "dilated", "levels": [[100, 3], [500, 5]]},
        {"kind": "dilated", "levels": "longnet", "causal": True},
    ],
    "B": 2, "H": 6, "d": 16, "N": [384, 768],
    "warmup": 0, "iterations": 2, "verify": False, "budget_s": 30,
}
COMM_SUITE = {
    "name": "model-test-comm",
    "description": "tests/test_model.py: the communication microbenchmark, a few sizes",
    "methods": ["comm-all-gather", "comm-all-to-all", "comm-send-recv"],
    "patterns": [{"kind": "full"}],
    "B": 1, "H": 1, "d": 256, "N_per_rank": [2, 16, 128, 1024, 4096, 16384],
    "warmup": 1, "iterations": 3, "verify": False, "budget_s": 30,
}


def unit_checks():
    # SPEC §2's examples of the longnet configuration.
    p = model.parse_pattern({"kind": "dilated", "levels": "longnet"})
    check("longnet levels for N = 5000 (SPEC §2)", model.dilated_levels(p, 5000) == [(2048, 1), (4096, 2), (5000, 4)],
          model.dilated_levels(p, 5000))
    check("longnet levels for N = 1000 (SPEC §2)", model.dilated_levels(p, 1000) == [(1000, 1)])
    lv = model.dilated_levels(p, 1 << 20)
    check("longnet continues by doubling (65536, 24), (131072, 48), ...",
          lv[5:7] == [(65536, 24), (131072, 48)] and lv[-1][0] == 1 << 20, lv)
    # Byte formulas, literally as SPEC §3 writes them (B = 2, H = 4, N = 16, d = 8, P = 4, n = 4).
    full = model.parse_pattern({"kind": "full"})
    B, H, N, d, P = 2, 4, 16, 8, 4
    n = N // P
    for method, elements in (("dist-heads", (P - 1) * N * (H // P) * (d + 1) * B),
                             ("dist-ulysses", (4 * d + 1) * n * H * (P - 1) / P * B),
                             ("dist-ring", 2 * (P - 1) * n * H * d * B),
                             ("dist-ring-zigzag", 2 * (P - 1) * n * H * d * B)):
        got = model.spec_bytes(method, B, H, N, d, P, full, 4)
        check(f"{method} bytes = SPEC §3 formula x 4 bytes", got == 4 * elements, (got, 4 * elements))
    # dist-dilated: one level w = N with r = 1 on P ranks: each rank gathers the other ranks' rows.
    one = model.parse_pattern({"kind": "dilated", "levels": [[N, 1]]})
    got = model.spec_bytes("dist-dilated", B, H, N, d, P, one, 4)
    check("dist-dilated bytes, one level spanning all ranks = 2 d H B (N - n) x 4", got == 4 * 2 * d * H * B * (N - n),
          (got, 4 * 2 * d * H * B * (N - n)))
    inside = model.parse_pattern({"kind": "dilated", "levels": [[n, 1], [2 * n, 2]]})
    got = model.spec_bytes("dist-dilated", B, H, N, d, P, inside, 4)
    # level (n, 1): every segment inside a shard, nothing moves; level (2n, 2): pairs of ranks,
    # each receives the other's kept rows: n/2 per head.
    check("dist-dilated bytes, aligned segments: only multi-rank segments move", got == 4 * 2 * d * B * H * (n // 2), got)
    # SPEC §3: for LongNet's geometric configuration a rank receives about 2 (w/r) H d elements per
    # level, independent of N and P: per shared level, between half and all of that, and the same
    # for N = 2^20 on 32 ranks as for N = 2^21 on 64.
    ln = model.parse_pattern({"kind": "dilated", "levels": "longnet", "causal": True})
    per_level = {}
    for N_, P_ in ((1 << 20, 32), (1 << 21, 64)):
        for lv in model.dist_dilated_ranks(ln, 1, 8, N_, 64, P_)[2]:
            if lv["shared"] and lv["w"] < N_:
                per_level.setdefault((lv["w"], lv["r"]), []).append(lv["recv_rows_max"] / 8)  # rows per head
    ok = bool(per_level) and all(0.5 * w / r <= v <= w / r + 1 and max(vs) == min(vs)
                                 for (w, r), vs in per_level.items() for v in vs)
    check("dist-dilated: kept rows received per level ~ w/r per head, independent of N and P (SPEC §3)", ok, per_level)
    # FLOPs: closed forms and row counts against brute force on a small case.
    import itertools
    for pat in ({"kind": "local", "left": 5, "right": 2, "causal": True}, {"kind": "strided", "stride": 4},
                {"kind": "fixed", "block": 6, "summary": 2, "causal": True}, {"kind": "full", "causal": True}):
        pp = model.parse_pattern(pat)
        n_ = 29

        def has(i, j):
            if pp["causal"] and j > i:
                return False
            k = pp["kind"]
            if k == "full":
                return True
            if k == "local":
                return i - pp["left"] <= j <= i + pp["right"]
            if k == "strided":
                return abs(i - j) < pp["stride"] or (i - j) % pp["stride"] == 0
            return j // pp["block"] == i // pp["block"] or j % pp["block"] >= pp["block"] - pp["summary"]

        brute = sum(has(i, j) for i, j in itertools.product(range(n_), range(n_)))
        blocks = sum(model.block_pairs(pp, i0, i0 + 7, j0, min(n_, j0 + 11), n_) for i0 in range(0, n_, 7)
                     for j0 in range(0, n_, 11) if i0 + 7 <= n_) + \
            sum(model.block_pairs(pp, 28, 29, j0, min(n_, j0 + 11), n_) for j0 in range(0, n_, 11))
        check(f"pairs of {model.family(pp)} by blocks = brute force", blocks == brute and
              model.pairs_heads(pp, n_, range(1)) == brute, (blocks, model.pairs_heads(pp, n_, range(1)), brute))
    # alpha-beta fit recovers a synthetic line.
    xs = [2 ** k for k in range(8, 26, 2)]
    pts = [(1, x, 3e-6 + x / 8e9) for x in xs]
    regs = model.fit_comm(pts)
    r = regs[0]
    check("alpha-beta fit recovers alpha = 3 us, beta = 8 GB/s", len(regs) == 1 and abs(r["alpha_s"] / 3e-6 - 1) < 0.05
          and abs(r["beta_Bps"] / 8e9 - 1) < 0.05, regs)
    knee = [(1, x, 1e-6 + x / (20e9 if x <= 1 << 20 else 3e9)) for x in [2 ** k for k in range(8, 28)]]
    regs = model.fit_comm(knee)
    check("fit finds a cache knee: two regimes, 20 and 3 GB/s", len(regs) == 2 and abs(regs[0]["beta_Bps"] / 20e9 - 1) < 0.1
          and abs(regs[1]["beta_Bps"] / 3e9 - 1) < 0.1, regs)


def gpu_file_checks():
    for name in ("h100-nvlink", "rtx4090-pcie"):
        path = os.path.join(ROOT, "results", "machines", name + ".json")
        try:
            m = model.Machine.load(path)
        except model.BadInput as e:
            check(f"{name}.json loads", False, e)
            continue
        src = m.data["sources"]
        figures = ["peak_tflops_dense", "memory_bytes", "memory_bandwidth_Bps", "kernel_launch_s", "runtime_reserve_bytes"] + \
            [f"achieved_fraction.{k}" for k in m.data["achieved_fraction"]] + \
            [f"interconnect.{t}.{k}" for t in ("intra_node", "inter_node") if t in m.data["interconnect"]
             for k in ("alpha_s", "beta_Bps")] + ["interconnect.devices_per_node", "vanilla"]
        missing = [f for f in figures if not src.get(f)]
        check(f"{name}.json: every figure has a source", not missing, missing)
        ln = model.parse_pattern({"kind": "dilated", "levels": "longnet", "causal": True})
        pr = model.predict(m, "dist-dilated", ln, 1, 8, 1 << 30, 64, 1 << 15)
        check(f"{name}: 1B-token dist-dilated prediction is finite and fits", 0 < pr["time_ms"] < 1e9 and pr["fits_memory"], pr)
    m = model.Machine.load(os.path.join(ROOT, "results", "machines", "h100-nvlink.json"))
    # The rings' closed forms for the full pattern equal counting every block (a local window that
    # covers the whole sequence is the full pattern, but takes the block-by-block path).
    same = []
    for meth in sorted(model.catalog.rings()):
        for causal in (False, True):
            for P in (1, 2, 3, 4):
                N = 1024 * P
                a = model.predict(m, meth, model.parse_pattern({"kind": "full", "causal": causal}), 2, 4, N, 64, P)
                b = model.predict(m, meth, model.parse_pattern({"kind": "local", "left": N, "right": N, "causal": causal}),
                                  2, 4, N, 64, P)
                same.append(abs(a["time_ms"] / b["time_ms"] - 1) < 1e-9 and a["flops_per_rank"] == b["flops_per_rank"])
    check("ring / zig-zag ring: closed forms = block-by-block count", all(same), same)
    zz = model.predict(m, "dist-ring-zigzag", model.parse_pattern(CAUSAL_FULL), 1, 8, 1 << 16, 64, 8)
    rr = model.predict(m, "dist-ring", model.parse_pattern(CAUSAL_FULL), 1, 8, 1 << 16, 64, 8)
    # zig-zag: every rank ~ P n^2 / 2 pairs; plain: the last rank (P - 1/2) n^2.
    check("causal zig-zag ring balances: busiest rank (P/2) / (P - 1/2) of plain ring's", abs(zz["flops_per_rank"] /
          rr["flops_per_rank"] - 4 / 7.5) < 0.01, (zz["flops_per_rank"], rr["flops_per_rank"]))
    m = model.Machine.load(os.path.join(ROOT, "results", "machines", "rtx4090-pcie.json"))
    pr = model.predict(m, "vanilla", model.parse_pattern({"kind": "full"}), 4, 16, 4096, 64, 1)
    tflops = pr["flops"] / (pr["time_ms"] * 1e-3) / 1e12
    check("rtx4090 vanilla roofline within the cited 20-28 TFLOP/s", 18 <= tflops <= 30, tflops)


def calibrate_command_checks(tmp, results_here):
    """`longattn calibrate` end to end (--quick: tiny shapes, seconds), the machine file it writes, and
    the model refusing what that file cannot answer."""
    out = os.path.join(tmp, "machines", "here.json")
    rc, o, e = run([EXE, "calibrate", "--quick", "--no-comm", "--out", out, "--name", "here"], timeout=600)
    check("longattn calibrate --quick writes a machine file (exit 0)", rc == 0 and os.path.exists(out), (rc, e[-600:]))
    if rc != 0:
        return
    with open(out) as f:
        m = json.load(f)
    rates = m["compute"]["rates"]
    cores = len(os.sched_getaffinity(0))
    keys = {(r["kernel"], r["family"], r["dtype"], r["threads"]) for r in rates}
    check("machine file: measured rates per kernel, family, dtype and threads (1 and all cores); local windows by width",
          all(r["measured"] for r in rates) and
          {("flash", "full+causal", dt, t) for dt in ("fp32", "bf16") for t in {1, cores}} <= keys and
          {("dilated", "dilated+causal", "bf16", 1), ("vanilla", "full", "fp32", cores)} <= keys and
          all(r["x"] == "window" for r in rates if r["family"].startswith("local")) and
          "derived" in m["compute"] and m["cpu"]["cpu_model"] and m["calibration_run"]["threads_measured"] == sorted({1, cores}),
          json.dumps(m)[:400])
    pred = ["--machine", out, "--method", "flash", "--pattern", '{"kind": "local", "left": 47, "right": 0}',
            "--H", "2", "--N", "512", "--d", "16", "--threads", "1", "--json"]
    rc, o, e = run([PY] + MODEL + pred + ["--dtype", "bf16"])
    pr = json.loads(o) if rc == 0 else {}
    check("predict bf16 local with the calibrated file: a measured rate, no derived-rate note",
          rc == 0 and pr["time_ms"] > 0 and not any("not measured" in n or "no rates" in n for n in pr["notes"]), (e, o[:300]))
    # Bad input: a machine file without the dtype asked; results from another CPU.
    no_bf16 = json.loads(json.dumps(m))
    no_bf16["compute"]["rates"] = [r for r in rates if r["dtype"] != "bf16"]
    p1 = os.path.join(tmp, "no-bf16.json")
    with open(p1, "w") as f:
        json.dump(no_bf16, f)
    rc, o, e = run([PY] + MODEL + ["--machine", p1] + pred[2:] + ["--dtype", "bf16"])
    check("bad input exits 2: a dtype the machine file has no rates for names what to run",
          rc == 2 and "no bf16 rates" in e and "longattn calibrate" in e, (rc, e[-300:]))
    other = json.loads(json.dumps(m))
    other["cpu"]["cpu_model"] = "AMD EPYC 9R14 96-Core Processor"
    p2 = os.path.join(tmp, "other-cpu.json")
    with open(p2, "w") as f:
        json.dump(other, f)
    rc, o, e = run([PY] + MODEL + ["--validate", results_here, "--machine", p2])
    check("bad input exits 2: results from another CPU than the machine file's, both named",
          rc == 2 and "AMD EPYC 9R14" in e and m["cpu"]["cpu_model"] in e and "longattn calibrate" in e, (rc, e[-300:]))
    for name, args, word in (("--threads not numbers", ["--threads", "one"], "--threads"),
                             ("--out in a missing folder", ["--out", os.path.join(tmp, "no", "m.json")], "--out"),
                             ("a launcher that does not exist", ["--launcher", "no-such-mpirun -np 2"], "--launcher")):
        rc, o, e = run([EXE, "calibrate", "--quick"] + args)
        check(f"calibrate bad input exits 2: {name}", rc == 2 and word in e, (rc, e[-300:]))


def bad_input_checks(tmp, machine, good_results):
    def expect2(name, args, word):
        rc, out, err = run([PY] + MODEL + args)
        check(f"bad input exits 2: {name}", rc == 2 and word.lower() in err.lower(), f"rc={rc} err={err[-400:]}")

    notjson = os.path.join(tmp, "notjson.json")
    with open(notjson, "w") as f:
        f.write("{ nope")
    with open(good_results) as f:
        data = json.load(f)
    broken = json.loads(json.dumps(data))
    ok = next(c for c in broken["cases"] if c["status"] == "ok")
    del ok["time_ms"]
    broken_path = os.path.join(tmp, "broken.json")
    with open(broken_path, "w") as f:
        json.dump(broken, f)
    bad_machine = os.path.join(tmp, "bad-machine.json")
    with open(bad_machine, "w") as f:
        json.dump({"name": "x", "kind": "measured"}, f)
    with open(machine) as f:
        malformed = json.load(f)
    malformed["compute"]["kernels"]["flash"] = {"full": {"1": "fast"}}
    malformed_path = os.path.join(tmp, "malformed-machine.json")
    with open(malformed_path, "w") as f:
        json.dump(malformed, f)
    pred = ["--method", "dist-ring", "--pattern", '{"kind": "full"}', "--H", "8", "--N", "4096", "--d", "64"]
    expect2("machine file missing", ["--machine", os.path.join(tmp, "nope.json")] + pred, "nope.json")
    expect2("machine file not JSON", ["--machine", notjson] + pred, "not JSON")
    expect2("machine file incomplete", ["--machine", bad_machine] + pred, "missing field")
    expect2("machine file with malformed rates", ["--machine", malformed_path] + pred, "compute.kernels.flash.full.1")
    expect2("no --machine", pred, "--machine")
    expect2("unknown method", ["--machine", machine, "--method", "dist-magic", "--H", "8", "--N", "64", "--d", "8"], "dist-magic")
    expect2("world does not divide N", ["--machine", machine, "--world", "3"] + pred, "divisible")
    expect2("unknown pattern kind", ["--machine", machine, "--method", "flash", "--pattern", '{"kind": "diagonal"}',
                                     "--H", "8", "--N", "64", "--d", "8"], "diagonal")
    expect2("pattern not JSON", ["--machine", machine, "--method", "flash", "--pattern", "{kind",
                                 "--H", "8", "--N", "64", "--d", "8"], "--pattern")
    expect2("predict without --N", ["--machine", machine, "--method", "flash", "--H", "8", "--d", "8"], "--N")
    expect2("validate: results file not JSON", ["--validate", notjson, "--machine", machine], "notjson.json")
    expect2("validate: invalid results file", ["--validate", broken_path, "--machine", machine], "broken.json")
    expect2("calibrate without --kernels", ["--calibrate", "--name", "x", "--out", os.path.join(tmp, "x.json")], "--kernels")
    expect2("calibrate without --out", ["--calibrate", "--kernels", good_results, "--name", "x"], "--out")
    expect2("bad option", ["--frobnicate"], "unrecognized")


def main():
    if not os.path.exists(EXE):
        print(f"{EXE}: not built")
        print("0 passed, 1 failed")
        return 1
    unit_checks()
    gpu_file_checks()
    with tempfile.TemporaryDirectory(prefix="longattn-model-") as tmp:
        suite, comm_suite = os.path.join(tmp, "dist.json"), os.path.join(tmp, "comm.json")
        with open(suite, "w") as f:
            json.dump(DIST_SUITE, f)
        with open(comm_suite, "w") as f:
            json.dump(COMM_SUITE, f)
        files = {}
        for np_ in (2, 3):
            out = os.path.join(tmp, f"dist.np{np_}.json")
            rc, o, e = longattn(np_, suite, out)
            if check(f"longattn run tiny suite on {np_} ranks", rc == 0 and os.path.exists(out), e[-800:]):
                files[np_] = out
        out = os.path.join(tmp, "comm.np2.json")
        rc, o, e = longattn(2, comm_suite, out)
        check("longattn run comm suite on 2 ranks", rc == 0, e[-800:])
        comm = out if rc == 0 else None
        # Bytes and FLOPs of every case against the model.
        for np_, path in files.items():
            data = model.load_results(path)
            mism_b, mism_f, seen = [], [], set()
            for c in model.ok_cases(data):
                pat = model.parse_pattern(c["pattern"])
                e = model.ELEMENT_BYTES[c["dtype"]]
                want = model.spec_bytes(c["method"], c["B"], c["H"], c["N"], c["d"], c["world"], pat, e,
                                        c.get("H_kv"), c.get("ulysses", 0))
                if abs(want - c["comm"]["bytes_received_per_rank"]) > 1e-6 * max(1, want):
                    mism_b.append((c["name"], want, c["comm"]["bytes_received_per_rank"]))
                fl = 4.0 * c["d"] * c["B"] * model.pairs_heads(pat, c["N"], range(c["H"]))
                fd = 4.0 * c["d"] * c["B"] * c["H"] * model.dense_pairs(pat, c["N"])
                if fl != c["flops"] or fd != c["flops_dense"]:
                    mism_f.append((c["name"], fl, c["flops"], fd, c["flops_dense"]))
                if c["method"] in model.catalog.distributed():
                    seen.add(c["method"])
            check(f"np{np_}: every distributed method ran", seen == set(model.catalog.distributed()), seen)
            check(f"np{np_}: model bytes received = measured (SPEC §3) for every case", not mism_b, mism_b[:5])
            check(f"np{np_}: model FLOPs and dense FLOPs = results' (SPEC §1) for every case", not mism_f, mism_f[:5])
            dd = [c for c in model.ok_cases(data) if c["method"] == "dist-dilated" and c["comm"]["bytes_received_per_rank"] > 0]
            check(f"np{np_}: dist-dilated cases moved bytes (segments straddle shards)", len(dd) >= 4, len(dd))
        if 2 not in files or comm is None:
            check("calibrate/validate need the runs above", False)
            return
        machine = os.path.join(tmp, "machines", "tiny.json")
        rc, o, e = run([PY] + MODEL + ["--calibrate", "--kernels", files[2], "--comm", comm, "--name", "tiny", "--out", machine])
        check("calibrate writes a machine file", rc == 0 and os.path.exists(machine), e + o)
        if rc != 0:
            return
        with open(machine) as f:
            m = json.load(f)
        check("machine file: rates for vanilla, flash, dilated; alpha-beta for all three operations; sources",
              set(m["compute"]["kernels"]) == {"vanilla", "flash", "dilated"} and
              set(m["communication"]["ops"]) == {"all_gather", "all_to_all", "send_recv"} and
              len(m["sources"]) == 2 and all(s.get("date") for s in m["sources"]), json.dumps(m)[:600])
        vfiles = [files[k] for k in sorted(files)]
        rc, o, e = run([PY] + MODEL + ["--validate"] + vfiles + ["--machine", machine])
        last = o.strip().splitlines()[-1] if o.strip() else ""
        mm = re.fullmatch(r"median abs error ([0-9.]+)% over ([0-9]+) cases", last)
        want = sum(1 for p in vfiles for c in model.ok_cases(model.load_results(p)) if c["method"] in model.catalog.attention())
        check("validate exits 0 and ends with 'median abs error X% over N cases'", rc == 0 and mm is not None, f"rc={rc} {e} {last!r}")
        # The last line counts the cases the calibration did not fit; the line before it, all of them.
        every = re.search(r"\(with the ([0-9]+) fitted cases: median abs error [0-9.]+% over ([0-9]+) cases\)", o)
        check("validate covers every ok attention case, and the last line only the unfitted ones",
              mm is not None and every is not None and int(every.group(2)) == want and
              int(mm.group(2)) == want - int(every.group(1)), (last, want))
        check("validate: table rows, all bytes equal", "| file | case |" in o and
              f"bytes received: {want} of {want} cases equal" in o, o[-600:])
        rc, o, e = run([PY] + MODEL + ["--machine", machine, "--method", "dist-ulysses", "--pattern",
                        '{"kind": "dilated", "levels": "longnet", "causal": true}', "--H", "6", "--N", "768", "--d", "16",
                        "--world", "3", "--json"])
        ok = rc == 0
        pr = json.loads(o) if ok else {}
        check("predict --json: time = compute + comm, SPEC bytes, memory", ok and
              abs(pr["time_ms"] - pr["compute_ms"] - pr["comm_ms"]) < 1e-9 * max(1, pr["time_ms"]) and
              pr["bytes_received_per_rank"] == 4 * (4 * 16 + 1) * 256 * 6 * 2 / 3 and pr["peak_memory_bytes_per_rank"] > 0,
              e + o[:400])
        args = ["--machine", machine, "--method", "dist-ring", "--pattern", '{"kind": "full", "causal": true}',
                "--H", "8", "--N", "65536", "--d", "64", "--world", "2"]
        rc, o, e = run([PY] + MODEL + args)
        check("predict prints time, compute, communication, bytes, memory", rc == 0 and all(
            w in o for w in ("time per rank", "compute", "communication", "bytes received", "peak memory")), e + o)
        rc2, o2, e2 = run([EXE, "model"] + args)
        check("`longattn model ...` runs model.py with the same arguments", rc2 == 0 and o2 == o, (rc2, e2, o2[:300]))
        rc2, o2, e2 = run([EXE, "model", "--validate", files[2], "--machine", machine])
        check("`longattn model --validate ...` exits 0", rc2 == 0 and o2.strip().splitlines()[-1].startswith("median abs"), e2)
        rc2, o2, e2 = run([PY] + MODEL + ["--validate", files[2], "--machine",
                           os.path.join(ROOT, "results", "machines", "rtx4090-pcie.json")])
        check("validate against a GPU machine file runs (and warns that the cases ran on the CPU)",
              rc2 == 0 and "warning" in e2, (rc2, e2[-300:]))
        charts = os.path.join(tmp, "charts")
        rc, o, e = run([PY, CHART, "--out", charts, "--machine", machine, "--machine",
                        os.path.join(ROOT, "results", "machines", "rtx4090-pcie.json")] + vfiles)
        made = sorted(os.listdir(charts)) if os.path.isdir(charts) else []
        check("model_chart.py draws both charts (PNG + SVG)", rc == 0 and made == [
            "model_distributed.png", "model_distributed.svg", "model_longnet.png", "model_longnet.svg"], (rc, e[-600:], made))
        rc, o, e = run([PY, CHART, "--out", charts, "--machine", files[2]])
        check("model_chart.py refuses a results file as machine file (exit 2)", rc == 2 and "dist.np2.json" in e, (rc, e))
        bad_input_checks(tmp, machine, files[2])
        calibrate_command_checks(tmp, files[2])


if __name__ == "__main__":
    try:
        main()
    except Exception:  # a crash is a failure, reported like one
        import traceback
        check("test ran to the end", False, traceback.format_exc())
    print(f"{results['passed']} passed, {results['failed']} failed")
    sys.exit(1 if results["failed"] else 0)
