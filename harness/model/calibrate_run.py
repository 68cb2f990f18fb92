"""`longattn calibrate`: measure what the model needs on the machine at hand and write its machine file.

    longattn calibrate [--out results/machines/NAME.json] [--name NAME] [--threads 1,CORES]
                       [--launcher "mpirun -np 2"] [--no-comm] [--quick] [--keep DIR]

It runs, with this build of longattn:
  1. the kernels (vanilla, flash, dilated) over every pattern family -- dense, causal, local windows
     of three widths, strided and fixed pieces, LongNet's dilated levels -- in fp32 and bf16 (fp16
     too where the CPU has AVX512-FP16), at each thread count (default: 1 and all cores);
  2. the comm microbenchmarks (suite/comm.json) on 2 ranks, through the launcher (default
     `mpirun -np 2`, with --oversubscribe on a 1-core machine);
then fits the machine file from those results (model/calibrate.py) and records the CPU, its BLAS
core and what ran. Exit 0; 1 when a run fails; 2 on bad input.
"""

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

from . import catalog
from .calibrate import calibrate
from .errors import BadInput


def kernel_suite(quick, dtypes):
    """The calibration suite: every family the model keys rates by, at a few sizes each."""
    local = [{"kind": "local", "left": w, "right": 0, "causal": c} for w in ((31, 63) if quick else (127, 511, 2047))
             for c in (False, True)]
    dense = [{"kind": "full"}, {"kind": "full", "causal": True}]
    longnet = [{"kind": "dilated", "levels": "longnet"}, {"kind": "dilated", "levels": "longnet", "causal": True}]
    pieces = [{"kind": "strided", "stride": 128, "causal": True}, {"kind": "fixed", "block": 128, "summary": 8}]
    if quick:  # seconds, for the tests: tiny shapes, the same families
        sizes = {"dense": [256, 512], "local": [512], "pieces": [512], "dilated": [1024], "vanilla": [256], "d": [16]}
        top = {"B": 1, "H": 2, "d": 16}
    else:
        sizes = {"dense": [2048, 8192], "local": [8192], "pieces": [4096, 8192], "dilated": [8192, 32768, 131072],
                 "vanilla": [2048, 4096], "d": [64, 128]}
        top = {"B": 1, "H": 8, "d": 64}
    return dict(top, name="calibrate-kernels", warmup=1, iterations=2, verify=False, budget_s=120, dtype=dtypes,
                description="`longattn calibrate`: the kernels' rates per pattern family, dtype and threads", cases=[
                    {"methods": ["flash"], "patterns": dense, "N": sizes["dense"], "d": sizes["d"]},
                    {"methods": ["flash"], "patterns": local, "N": sizes["local"]},
                    {"methods": ["flash"], "patterns": pieces, "N": sizes["pieces"]},
                    {"methods": ["dilated"], "patterns": longnet, "N": sizes["dilated"]},
                    {"methods": ["vanilla"], "patterns": dense + longnet, "N": sizes["vanilla"]}])


def comm_suite(quick):
    """suite/comm.json's operations and message sizes (1 KiB to 64 MiB per rank); --quick: three sizes."""
    return {"name": "comm", "methods": ["comm-all-gather", "comm-all-to-all", "comm-send-recv"],
            "patterns": [{"kind": "full"}], "B": 1, "H": 1, "d": 256,
            "N_per_rank": [1, 64, 4096] if quick else [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536],
            "warmup": 2, "iterations": 10, "verify": False, "budget_s": 30}


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "machine"


def run(cmd, env=None):
    print("calibrate: $ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    r = subprocess.run(cmd, env=env)
    if r.returncode == 2:
        raise BadInput(f"`{' '.join(cmd[:4])} ...` refused its input (exit 2); see its message above")
    if r.returncode != 0:
        print(f"longattn calibrate: error: `{' '.join(cmd[:4])} ...` failed (exit {r.returncode})", file=sys.stderr)
        sys.exit(1)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="longattn calibrate", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="machine file to write (default results/machines/NAME.json)")
    ap.add_argument("--name", help="the machine's name (default: from the CPU model and core count)")
    ap.add_argument("--threads", help="thread counts to measure the kernels at, comma-separated (default: 1 and all cores)")
    ap.add_argument("--launcher", help='how to start 2 ranks for the comm microbenchmarks (default "mpirun -np 2")')
    ap.add_argument("--no-comm", action="store_true", help="skip the comm microbenchmarks (the model then has no communication fit)")
    ap.add_argument("--quick", action="store_true", help="tiny shapes, seconds (for tests; the rates are not representative)")
    ap.add_argument("--keep", metavar="DIR", help="keep the suites and results files in DIR (default: a temporary folder)")
    try:
        a = ap.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code == 0 else 2
    try:
        exe = catalog.program()
        cores = len(os.sched_getaffinity(0))
        threads = [1, cores] if cores > 1 else [1]
        if a.threads:
            try:
                threads = sorted({int(t) for t in a.threads.split(",")})
            except ValueError:
                raise BadInput(f"--threads: {a.threads!r} is not a comma-separated list of whole numbers, e.g. 1,{cores}")
            if not threads or threads[0] < 1 or threads[-1] > 1024:
                raise BadInput("--threads: each count from 1 to 1024")
        launcher = shlex.split(a.launcher) if a.launcher else ["mpirun", "-np", "2"] + (["--oversubscribe"] if cores < 2 else [])
        if not a.no_comm and not shutil.which(launcher[0]):
            raise BadInput(f"--launcher: {launcher[0]} not found; give --launcher \"...\" that starts 2 ranks of "
                           "longattn, or --no-comm")
        dtypes = ["fp32", "bf16"] + (["fp16"] if "avx512_fp16" in cpu_flags() else [])
        work = a.keep or tempfile.mkdtemp(prefix="longattn-calibrate-")
        os.makedirs(work, exist_ok=True)
        out_dir = os.path.dirname(os.path.abspath(a.out)) if a.out else os.path.abspath(os.path.join("results", "machines"))
        if not os.path.isdir(out_dir):  # checked before minutes of measuring
            raise BadInput(f"--out: the folder {out_dir} does not exist" +
                           ("" if a.out else "; run from the source tree or give --out PATH/NAME.json"))

        kfile = os.path.join(work, "calibrate-kernels.json")
        with open(kfile, "w") as f:
            json.dump(kernel_suite(a.quick, dtypes), f, indent=1)
        started = datetime.datetime.now(datetime.timezone.utc)
        kernel_results = []
        steps = len(threads) + (0 if a.no_comm else 1)
        for i, t in enumerate(threads):
            print(f"calibrate: [{i + 1}/{steps}] the kernels at {t} thread(s), fp32 and {', '.join(dtypes[1:])}", flush=True)
            res = os.path.join(work, f"kernels.t{t}.json")
            run([exe, "run", kfile, "--threads", str(t), "--out", res])
            kernel_results.append(res)
        comm_results = []
        if not a.no_comm:
            cfile = os.path.join(work, "calibrate-comm.json")
            with open(cfile, "w") as f:
                json.dump(comm_suite(a.quick), f, indent=1)
            res = os.path.join(work, "comm.np2.json")
            print(f"calibrate: [{steps}/{steps}] the comm microbenchmarks on 2 ranks", flush=True)
            env = dict(os.environ)
            if os.geteuid() == 0:  # Open MPI refuses root otherwise; this is the user's own machine
                env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
            run(launcher + [exe, "run", cfile, "--out", res, "--quiet"], env)
            comm_results.append(res)

        with open(kernel_results[0]) as f:
            ctx = json.load(f)["context"]
        name = a.name or slug(f"{ctx['cpu_model']} {ctx['cores']}core")
        out = a.out or os.path.join("results", "machines", name + ".json")
        info = {"command": "longattn calibrate " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:])),
                "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "threads_measured": threads, "dtypes": dtypes,
                "launcher": None if a.no_comm else launcher, "quick": a.quick, "git_commit": ctx.get("git_commit"),
                "results": kernel_results + comm_results if a.keep else "not kept (--keep DIR keeps them)"}
        m = calibrate(kernel_results, comm_results, name, out, info)
        n = len(m["compute"]["rates"])
        print(f"calibrate: wrote {out}: {n} measured rate curves (kernel x family x dtype x d x threads) on "
              f"{m['cpu']['cpu_model']} ({m['cpu']['isa']}, {m['cpu']['cores']} cores, BLAS core {m.get('blas_core')}); "
              f"communication: {', '.join(m['communication']['ops']) or 'none'}")
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        return 0
    except BadInput as e:
        print(f"longattn calibrate: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
