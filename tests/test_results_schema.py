#!/usr/bin/python3
"""results/schema.json and plots/plot.py: the committed results files and inline fixtures are valid;
broken copies (a required field missing, a wrong type, fields that contradict the status) are
rejected; plot.py draws the charts the data allows and refuses an invalid file with exit code 2,
naming the file and the field; a real `longattn run` on a tiny suite validates and plots (also
through `longattn plot`). Usage: test_results_schema.py [BUILD/longattn]   (default build/longattn)
Prints one line per check and 'N passed, M failed'; exits 1 if any failed."""
import copy
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

import jsonschema

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_PATH = os.path.join(ROOT, "results", "schema.json")
PLOT = os.path.join(ROOT, "plots", "plot.py")
EXE = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "longattn"))
# What `longattn plot` gives plot.py: the program (its methods come from `list --json`) and harness/ on
# PYTHONPATH (the model package's catalog).
os.environ["LONGATTN_PROGRAM"] = EXE
os.environ["PYTHONPATH"] = os.path.join(ROOT, "harness")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
CHARTS = ("speedup", "runtime", "scaling", "comm_share")
results = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    results["passed" if ok else "failed"] += 1
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok else "\n      " + str(detail).replace("\n", "\n      ")))


# ----------------------------------------------------------------------------------- fixtures


def context(world, threads=1, gpu=None):
    return {
        "date": "2026-01-02T03:04:05Z", "host_names": ["node0"], "cpu_model": "Test CPU 9000", "cores": 2,
        "gpu": gpu, "compiler": "g++ 12.2.0", "compiler_flags": " -O3 -DNDEBUG", "build_type": "Release",
        "communicator": "mpi" if world > 1 else "self", "mpi_library": "Open MPI v4.1.4", "world_size": world,
        "ranks_per_node": world, "threads_per_rank": threads, "oversubscribed": False, "git_commit": "abc1234",
        "command_line": "longattn run fixture.json", "sgemm_gflops_per_rank": 100.0,
        "sgemm_shape": "1024x1024x1024, fp32, OpenBLAS, threads_per_rank threads",
        "suite_file": {"name": "fixture", "methods": ["vanilla", "flash", "dist-ring"], "patterns": [{"kind": "full"}],
                       "B": 1, "H": 2, "N": [128, 256], "d": 16},
    }


LAYOUT = {"vanilla": "single", "flash": "single", "dilated": "single", "reference": "single",
          "dist-heads": "replicated", "dist-ulysses": "sharded", "dist-ring": "sharded", "dist-dilated": "sharded"}


def case(method, n, ranks, ms, pattern=None, status="ok", share=0.1, device="cpu", dtype="fp32", threads=1):
    pattern = pattern or {"kind": "full"}
    world = 1 if LAYOUT[method] == "single" else ranks
    name = pattern["kind"] + ("+causal" if pattern.get("causal") else "")
    flops = 4.0 * 16 * n * n * 2
    c = {"name": f"{method} {name} B=1 N={n} H=2 d=16 {dtype} {device} P={world}", "method": method,
         "layout": LAYOUT[method], "device": device, "dtype": dtype, "B": 1, "H": 2, "N": n, "d": 16,
         "pattern": pattern, "pattern_name": name, "world": world, "ranks": ranks, "threads_per_rank": threads,
         "warmup": 1, "iterations": 3, "flops": flops, "flops_dense": flops, "status": status}
    if device == "cuda":
        c["l2"] = "flush"
    if status == "skipped":
        c["reason"] = "budget: estimated 99 s exceeds budget_s 60"
        return c
    samples = [ms * 0.99, ms, ms * 1.02]
    comm_ms = share * ms if world > 1 else 0.0
    c.update({
        "time_ms": {"min": min(samples), "median": ms, "mean": sum(samples) / 3, "max": max(samples), "stddev": 0.01},
        "samples_ms": samples, "gflops": flops / (ms * 1e-3) / 1e9,
        "comm": {"bytes_received_per_rank": 4096.0 * (world > 1), "bytes_sent_per_rank": 4096.0 * (world > 1),
                 "received_by_op": {"send_recv": 4096.0} if world > 1 else {}, "time_ms": comm_ms,
                 "samples_ms": [comm_ms] * 3, "share": share if world > 1 else 0.0},
        "peak_memory_bytes_per_rank": 2.5e7,
        "error": {"o_max_abs": 1e-7, "lse_max_abs": 2e-7, "o_tolerance": 1e-4, "lse_tolerance": 1e-4,
                  "rows_checked": 256.0, "passed": True},
    })
    if status == "failed":
        c["reason"] = "verification: error exceeds the SPEC §4 tolerance"
        c["error"].update({"o_max_abs": None, "lse_max_abs": None, "passed": False})
    return c


def fixture(world, threads=1, gpu=None):
    """A results file from a `world`-rank run: vanilla, flash and dist-ring over N = 128..512, full and
    causal; a skipped, a failed and a CUDA case besides."""
    cases = []
    for pattern in ({"kind": "full"}, {"kind": "full", "causal": True}):
        for n in (128, 256, 512):
            t = (n / 128) ** 2 * (0.5 if pattern.get("causal") else 1.0)
            cases.append(case("vanilla", n, world, 4.0 * t, pattern))
            cases.append(case("flash", n, world, 1.5 * t, pattern))
            cases.append(case("dist-ring", n, world, 1.6 * t / world, pattern, share=0.05 * world))
    cases.append(case("dist-dilated", 512, world, 1.0, status="skipped"))
    cases.append(case("flash", 1024, world, 30.0, status="failed"))
    cases.append(case("flash", 256, world, 0.2, device="cuda", dtype="bf16"))
    return {"schema_version": 1, "suite": "fixture", "context": context(world, threads, gpu), "cases": cases}


def write(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
    return path


# ----------------------------------------------------------------------------------- checks


def errors(validator, data):
    return sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))


def check_valid(validator, name, data):
    errs = errors(validator, data)
    check(f"valid: {name}", not errs,
          "; ".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errs[:3]))


def broken_copies(base):
    """(what, mutate) pairs, each making one deliberate error."""
    def first(status):
        return lambda d: next(c for c in d["cases"] if c["status"] == status)

    ok, skipped, failed = first("ok"), first("skipped"), first("failed")
    gpu = lambda d: next(c for c in d["cases"] if c["device"] == "cuda")  # noqa: E731

    def delete(get, key):
        return lambda d: get(d).pop(key)

    def setv(get, key, value):
        return lambda d: get(d).__setitem__(key, value)

    top = lambda d: d  # noqa: E731
    ctx = lambda d: d["context"]  # noqa: E731
    return [
        ("missing schema_version", delete(top, "schema_version")),
        ("schema_version 2", setv(top, "schema_version", 2)),
        ("missing context", delete(top, "context")),
        ("missing context.date", delete(ctx, "date")),
        ("missing context.suite_file", delete(ctx, "suite_file")),
        ("context.world_size a string", setv(ctx, "world_size", "2")),
        ("context.gpu a number", setv(ctx, "gpu", 1)),
        ("context.gpu object without reason", setv(ctx, "gpu", {"available": False})),
        ("context.date not ISO 8601", setv(ctx, "date", "yesterday")),
        ("unknown top-level field", setv(top, "extra", 1)),
        ("cases not a list", setv(top, "cases", {})),
        ("ok case without time_ms", delete(ok, "time_ms")),
        ("ok case without comm", delete(ok, "comm")),
        ("ok case with a reason", setv(ok, "reason", "why")),
        ("ok case with error.passed false", lambda d: ok(d)["error"].__setitem__("passed", False)),
        ("case N a string", setv(ok, "N", "128")),
        ("case N zero", setv(ok, "N", 0)),
        ("case N fractional", setv(ok, "N", 128.5)),
        ("case status unknown", setv(ok, "status", "maybe")),
        ("case method missing", delete(ok, "method")),
        ("case time_ms.median a string", lambda d: ok(d)["time_ms"].__setitem__("median", "1.0")),
        ("case time_ms.median missing", lambda d: ok(d)["time_ms"].pop("median")),
        ("case samples_ms empty", setv(ok, "samples_ms", [])),
        ("case comm.share negative", lambda d: ok(d)["comm"].__setitem__("share", -0.1)),
        ("received_by_op value a string", lambda d: ok(d)["comm"]["received_by_op"].__setitem__("x", "1")),
        ("pattern kind unknown", setv(ok, "pattern", {"kind": "banded"})),
        ("local pattern without right", setv(ok, "pattern", {"kind": "local", "left": 4})),
        ("dilated levels malformed", setv(ok, "pattern", {"kind": "dilated", "levels": [[64]]})),
        ("single-layout case with world 2", setv(ok, "world", 2)),
        ("dtype unknown", setv(ok, "dtype", "fp64")),
        ("skipped case without reason", delete(skipped, "reason")),
        ("skipped case with time_ms", setv(skipped, "time_ms", {"min": 1, "median": 1, "mean": 1, "max": 1,
                                                                 "stddev": 0})),
        ("failed case without reason", delete(failed, "reason")),
        ("timed case missing gflops", delete(failed, "gflops")),
        ("GPU case with l2 cold", setv(gpu, "l2", "cold")),
    ]


def main():
    tmp = tempfile.mkdtemp(prefix="longattn-schema-")
    try:
        with open(SCHEMA_PATH) as f:
            schema = json.load(f)
        jsonschema.Draft202012Validator.check_schema(schema)
        check("schema: results/schema.json is a valid draft 2020-12 schema", True)
    except Exception as e:  # noqa: BLE001
        check("schema: results/schema.json is a valid draft 2020-12 schema", False, e)
        return finish(tmp)
    validator = jsonschema.Draft202012Validator(schema)

    # Committed results files.
    committed = sorted(p for p in glob.glob(os.path.join(ROOT, "results", "*.json"))
                       if os.path.basename(p) != "schema.json")
    for p in committed:
        with open(p) as f:
            check_valid(validator, os.path.relpath(p, ROOT), json.load(f))
    if not committed:
        print("note  no results/*.json committed yet")

    # Inline fixtures.
    one, two = fixture(1, threads=2), fixture(2, gpu={"available": False, "reason": "no CUDA device"})
    four = fixture(4, gpu="NVIDIA H100 80GB HBM3, 132 SMs, 79 GiB, CC 9.0")
    check_valid(validator, "fixture, 1 rank, gpu null", one)
    check_valid(validator, "fixture, 2 ranks, gpu unavailable", two)
    check_valid(validator, "fixture, 4 ranks, gpu a string", four)

    # Broken copies.
    for what, mutate in broken_copies(two):
        bad = copy.deepcopy(two)
        mutate(bad)
        check(f"rejected: {what}", bool(errors(validator, bad)), "the schema accepted it")

    # plot.py on the fixtures: every chart.
    paths = [write(os.path.join(tmp, f"fixture-p{w}.json"), d) for w, d in ((1, one), (2, two), (4, four))]
    out = os.path.join(tmp, "plots")
    r = subprocess.run([sys.executable, PLOT, "--out", out] + paths, capture_output=True, text=True, timeout=300)
    check("plot.py on fixtures: exit 0", r.returncode == 0, r.stdout + r.stderr)
    for chart in CHARTS:
        for ext in ("png", "svg"):
            p = os.path.join(out, f"{chart}.{ext}")
            check(f"plot.py on fixtures: {chart}.{ext} drawn", os.path.isfile(p) and os.path.getsize(p) > 1000,
                  r.stdout + r.stderr)
    with open(os.path.join(out, "runtime.svg")) as f:
        svg = f.read()
    check("plot.py: caption names the machine and date", "Test CPU 9000" in svg and "2026-01-02" in svg,
          "CPU model or date not found in runtime.svg")

    # plot.py with one file: the charts that need several world sizes are skipped, with a reason.
    out1 = os.path.join(tmp, "plots-one")
    r = subprocess.run([sys.executable, PLOT, "--out", out1, paths[1]], capture_output=True, text=True, timeout=300)
    check("plot.py on one file: exit 0, scaling skipped with a reason",
          r.returncode == 0 and "skipped scaling" in r.stdout and not os.path.exists(os.path.join(out1, "scaling.png"))
          and os.path.exists(os.path.join(out1, "runtime.png")), r.stdout + r.stderr)

    # plot.py refuses an invalid file, naming it and the field.
    bad = copy.deepcopy(two)
    del bad["cases"][0]["time_ms"]["median"]
    bad_path = write(os.path.join(tmp, "broken-results.json"), bad)
    out2 = os.path.join(tmp, "plots-bad")
    r = subprocess.run([sys.executable, PLOT, "--out", out2, paths[0], bad_path], capture_output=True, text=True,
                       timeout=120)
    check("plot.py on an invalid file: exit 2, names the file and the field",
          r.returncode == 2 and "broken-results.json" in r.stderr and "cases[0].time_ms" in r.stderr
          and "median" in r.stderr, f"rc {r.returncode}: {r.stderr}")
    check("plot.py on an invalid file: draws nothing", not glob.glob(os.path.join(out2, "*.png")))
    notjson = os.path.join(tmp, "notjson.json")
    with open(notjson, "w") as f:
        f.write("{ nope")
    r = subprocess.run([sys.executable, PLOT, "--out", out2, notjson], capture_output=True, text=True, timeout=120)
    check("plot.py on a non-JSON file: exit 2, names the file", r.returncode == 2 and "notjson.json" in r.stderr,
          f"rc {r.returncode}: {r.stderr}")

    # A real run on a tiny suite: valid, and plotted through `longattn plot`.
    if not os.access(EXE, os.X_OK):
        check("longattn run: binary present", False, f"{EXE} not found; build first or pass its path as argv[1]")
        return finish(tmp)
    suite = write(os.path.join(tmp, "tiny.json"), {
        "name": "tiny", "methods": ["vanilla", "flash", "dist-ring"], "patterns": [{"kind": "full"}],
        "B": 1, "H": 2, "N": [128, 256], "d": 16, "iterations": 3, "pass": ["forward", "forward+backward"],
        # GPU cases, recorded (skipped here without a GPU) with their l2 setting
        "cases": [{"methods": ["flash", "dist-ring"], "device": "cuda", "dtype": "bf16", "d": 64, "N": 128,
                   "pass": "forward", "l2": "warm"}]})
    res = os.path.join(tmp, "tiny-results.json")
    r = subprocess.run([EXE, "run", suite, "--out", res, "--quiet"], capture_output=True, text=True, timeout=300,
                       env=ENV)
    check("longattn run tiny suite: exit 0", r.returncode == 0 and os.path.isfile(res), r.stdout + r.stderr)
    if os.path.isfile(res):
        with open(res) as f:
            data = json.load(f)
        check_valid(validator, "longattn run tiny suite", data)
        out3 = os.path.join(tmp, "plots-run")
        r = subprocess.run([EXE, "plot", "--out", out3, res], capture_output=True, text=True, timeout=300, env=ENV)
        check("longattn plot: exit 0", r.returncode == 0, r.stdout + r.stderr)
        for chart in ("speedup", "runtime", "backward"):
            for ext in ("png", "svg"):
                check(f"longattn plot: {chart}.{ext} drawn", os.path.isfile(os.path.join(out3, f"{chart}.{ext}")),
                      r.stdout + r.stderr)
        # efficiency: a distributed case's rate over world x the same file's single-device flash rate.
        ring = next(c for c in data["cases"] if c["method"] == "dist-ring" and c["N"] == 256 and c.get("pass") == "forward")
        flash = next(c for c in data["cases"] if c["method"] == "flash" and c["N"] == 256 and c.get("pass") == "forward")
        eff = ring.get("efficiency", {})
        check("longattn run: dist-ring's efficiency is its rate over world x flash's, same case",
              eff.get("single_device_case") == flash["name"] and
              abs(eff.get("pct", -1) - 100 * ring["gflops"] / (ring["world"] * flash["gflops"])) < 1e-9 * eff.get("pct", 1)
              and not any("efficiency" in c for c in data["cases"] if c["layout"] == "single"), json.dumps(eff))
        gpu = [c for c in data["cases"] if c["device"] == "cuda"]
        check("longattn run: GPU cases carry their l2 setting", len(gpu) == 2 and all(c.get("l2") == "warm" for c in gpu),
              json.dumps([(c["name"], c.get("l2")) for c in gpu]))
        # backward.md: each forward+backward case's rate as a share of its forward's (3.5 forwards).
        med = {(c["method"], c["N"], c.get("pass")): c["time_ms"]["median"] for c in data["cases"] if "time_ms" in c}
        want = 100 * 3.5 * med[("flash", 256, "forward")] / med[("flash", 256, "forward+backward")]
        table = open(os.path.join(out3, "backward.md")).read() if os.path.isfile(os.path.join(out3, "backward.md")) else ""
        row = next((line for line in table.splitlines() if "| 256 | flash |" in line), "")
        check("longattn plot: backward.md gives flash's forward+backward share of its forward rate",
              f"| {want:.0f}% |" in row, f"want {want:.0f}% in {row!r}")
    return finish(tmp)


def finish(tmp):
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
