#!/usr/bin/python3
"""The longattn program as a user meets it: `attend` against NumPy, distributed `attend` against
single-rank, and bad input / faults -> a message naming the problem, exit code 2 (3 for a failing
rank), and no output file. Usage: test_cli.py BUILD/longattn"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

EXE = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/longattn")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
MPIRUN = shutil.which("mpirun")
results = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    results["passed" if ok else "failed"] += 1
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok else "\n      " + detail))


def run(args, np_=None, timeout=120, env=None):
    cmd = ([MPIRUN, "-np", str(np_), "--oversubscribe"] if np_ else []) + [EXE] + args
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env or ENV)


def numpy_keep(n, causal=False, left=None, right=None):
    """The [n, n] mask of a full or local pattern, causal or not (SPEC §2)."""
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    keep = np.ones((n, n), bool)
    if causal:
        keep &= j <= i
    if left is not None:
        keep &= (j >= i - left) & (j <= i + right)
    return keep


def numpy_attention(q, k, v, causal=False, left=None, right=None):
    """[B, N, H, d] attention in float64, the textbook way; returns O and LSE [B, H, N]."""
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    n, d = q.shape[1], q.shape[3]
    s = np.einsum("bihd,bjhd->bhij", q, k) / np.sqrt(d)
    s = np.where(numpy_keep(n, causal, left, right), s, -np.inf)
    m = s.max(-1, keepdims=True)
    p = np.exp(s - m)
    z = p.sum(-1, keepdims=True)
    o = np.einsum("bhij,bjhd->bihd", p / z, v)
    return o, (m + np.log(z))[..., 0]


def numpy_gradients(q, k, v, dout, causal=False, left=None, right=None):
    """dQ, dK, dV of numpy_attention's O for the upstream gradient dO (SPEC §6), in float64."""
    q, k, v, dout = (x.astype(np.float64) for x in (q, k, v, dout))
    n, d = q.shape[1], q.shape[3]
    o, lse = numpy_attention(q, k, v, causal, left, right)
    s = np.einsum("bihd,bjhd->bhij", q, k) / np.sqrt(d)
    p = np.where(numpy_keep(n, causal, left, right), np.exp(s - lse[..., None]), 0.0)
    dv = np.einsum("bhij,bihd->bjhd", p, dout)
    dp = np.einsum("bihd,bjhd->bhij", dout, v)
    delta = np.einsum("bihd,bihd->bhi", dout, o)
    ds = p * (dp - delta[..., None])
    dq = np.einsum("bhij,bjhd->bihd", ds, k) / np.sqrt(d)
    dk = np.einsum("bhij,bihd->bjhd", ds, q) / np.sqrt(d)
    return dq, dk, dv


def main():
    tmp = tempfile.mkdtemp(prefix="longattn-cli-")
    rng = np.random.default_rng(3)
    B, N, H, d = 2, 75, 3, 24
    paths = {}
    for name in "qkv":
        paths[name] = os.path.join(tmp, name + ".npy")
        np.save(paths[name], rng.standard_normal((B, N, H, d)).astype(np.float32))
    q, k, v = (np.load(paths[x]) for x in "qkv")
    np.save(os.path.join(tmp, "q64.npy"), q.astype(np.float64))
    out, lse = os.path.join(tmp, "o.npy"), os.path.join(tmp, "lse.npy")
    base = ["attend", "--q", paths["q"], "--k", paths["k"], "--v", paths["v"], "--out", out, "--lse", lse]

    # list --json: the same methods, kernels and suites as the text listing, for scripts.
    r, rj = run(["list"]), run(["list", "--json"])
    try:
        lj = json.loads(rj.stdout)
        names = [m["name"] for m in lj["methods"]]
        ok = (rj.returncode == 0 and all(f"  {n} " in r.stdout for n in names) and
              {"vanilla", "flash", "dilated", "reference"} <= {k["name"] for k in lj["kernels"] if k["device"] == "cpu"} and
              {"dist-ring-zigzag", "comm-send-recv"} <= set(names) and "smoke" in lj["suites"] and
              all(m["microbenchmark"] == m["name"].startswith("comm-") for m in lj["methods"]) and
              all(m["distributed"] == (m["layout"] != "single") for m in lj["methods"]))
    except (ValueError, KeyError) as e:
        ok, rj = False, e
    check("list --json lists every method and kernel of the text listing, with their traits", ok, str(rj)[-300:])
    try:
        cuda_built = "cuda" in (r.stdout.split("Kernels")[1] if "Kernels" in r.stdout else "")
        ok = all(f"  {k['name']}" in r.stdout for k in lj["kernels"]) and \
            any(k["device"] == "cuda" for k in lj["kernels"]) == cuda_built and \
            [k["name"] for k in lj["kernels"] if k["oracle"]] == ["reference"] and \
            {m["name"]: m["exchange"] for m in lj["methods"]}["dist-ring"] == "send_recv"
    except (ValueError, KeyError, IndexError):
        ok = False
    check("list --json: every kernel on every device built in (CUDA rows in a CUDA build), the oracle flagged, "
          "each method's exchange", ok, str(lj.get("kernels") if isinstance(lj, dict) else rj)[-300:])

    # attend against NumPy (SPEC §4 fp32 bounds: O 1e-4 max(1, max|V|), LSE 1e-4).
    tol = 1e-4 * max(1.0, float(np.abs(v).max()))
    for spec, kw in [({"kind": "full"}, {}), ({"kind": "full", "causal": True}, {"causal": True}),
                     ({"kind": "local", "left": 9, "right": 4}, {"left": 9, "right": 4})]:
        want_o, want_lse = numpy_attention(q, k, v, **kw)
        for method in ["auto", "vanilla", "flash", "reference"]:
            r = run(base + ["--pattern", json.dumps(spec), "--method", method])
            ok = r.returncode == 0
            if ok:
                eo = np.abs(np.load(out) - want_o).max()
                el = np.abs(np.load(lse) - want_lse).max()
                ok = eo <= tol and el <= 1e-4
            check(f"attend {method} {spec} matches NumPy", ok, r.stderr + (f" err {eo} {el}" if r.returncode == 0 else ""))
    # The backward pass against NumPy's gradients (SPEC §6: 1e-3 max(1, max |dX_ref|) in fp32).
    dout_path = os.path.join(tmp, "dout.npy")
    dout = rng.standard_normal((B, N, H, d)).astype(np.float32)
    np.save(dout_path, dout)
    grads = {x: os.path.join(tmp, f"d{x}.npy") for x in "qkv"}
    back = ["--dout", dout_path, "--dq", grads["q"], "--dk", grads["k"], "--dv", grads["v"]]
    for spec, kw in [({"kind": "full", "causal": True}, {"causal": True}),
                     ({"kind": "local", "left": 9, "right": 4}, {"left": 9, "right": 4})]:
        want = numpy_gradients(q, k, v, dout, **kw)
        gtol = 1e-3 * max(1.0, max(float(np.abs(w).max()) for w in want))
        for method in ["vanilla", "flash", "reference"]:
            r = run(base + ["--pattern", json.dumps(spec), "--method", method] + back)
            errs = [float(np.abs(np.load(grads[x]) - w).max()) for x, w in zip("qkv", want)] if r.returncode == 0 else []
            check(f"attend {method} {spec} --dout: dQ, dK, dV match NumPy", r.returncode == 0 and max(errs) <= gtol,
                  r.stderr + f" errors {errs} bound {gtol}")
    # Backward bad input: exit 2, the flag named, nothing written.
    cuda_rows = any(k["device"] == "cuda" for k in json.loads(run(["list", "--json"]).stdout)["kernels"])
    for name, args, needle in [
            ("a dO of another shape", ["--dout", paths["q"].replace("q.npy", "small.npy"), "--dq", grads["q"]], "--dout: shape"),
            ("--dq without --dout", ["--dq", grads["q"]], "--dq: the backward pass needs --dout"),
            ("--dout without a gradient to write", ["--dout", dout_path], "--dout: give --dq"),
            ("--dq and --out the same file", ["--dout", dout_path, "--dq", out], "--dq: names the same file as --out"),
            ("--dout with a CUDA kernel without a backward", ["--dout", dout_path, "--dq", grads["q"],
                                                               "--device", "cuda", "--method", "vanilla"],
             "vanilla on cuda has no backward pass yet" if cuda_rows else 'unknown method "vanilla"')]:
        np.save(paths["q"].replace("q.npy", "small.npy"), np.zeros((B, N - 1, H, d), np.float32))
        for f in list(grads.values()) + [out, lse]:
            if os.path.exists(f):
                os.remove(f)
        r = run(base + ["--pattern", '{"kind": "full"}'] + args)
        written = [f for f in list(grads.values()) + [out, lse] if os.path.exists(f)]
        check(f"attend backward, {name}: exit 2, named, nothing written",
              r.returncode == 2 and needle in r.stderr and not written, f"rc={r.returncode} {r.stderr[-300:]} wrote {written}")
    # float64 input is accepted (converted).
    r = run(["attend", "--q", os.path.join(tmp, "q64.npy"), "--k", paths["k"], "--v", paths["v"], "--out", out,
             "--pattern", '{"kind": "full"}'])
    check("attend reads float64 .npy", r.returncode == 0 and np.abs(np.load(out) - numpy_attention(q, k, v)[0]).max() <= tol, r.stderr)
    # Pattern from a file.
    pfile = os.path.join(tmp, "pattern.json")
    json.dump({"kind": "dilated", "levels": [[16, 1], [40, 2]], "causal": True}, open(pfile, "w"))
    r1 = run(base + ["--pattern", pfile, "--method", "dilated"])
    o_dil = np.load(out) if r1.returncode == 0 else None
    r2 = run(base + ["--pattern", pfile, "--method", "reference"])
    check("attend dilated (pattern file) matches the oracle",
          r1.returncode == 0 and r2.returncode == 0 and np.abs(o_dil - np.load(out)).max() <= tol, r1.stderr + r2.stderr)

    # Distributed attend: rank 0 writes the whole output, equal to single rank within 1e-5.
    if MPIRUN:
        for method, spec in [("dist-ring", {"kind": "full", "causal": True}),
                             ("dist-dilated", {"kind": "dilated", "levels": [[16, 1], [75, 3]], "causal": True}),
                             ("dist-ulysses", {"kind": "local", "left": 20, "right": 0}),
                             ("dist-heads", {"kind": "full"})]:
            single = run(base + ["--pattern", json.dumps(spec), "--method", "auto"])
            want = np.load(out) if single.returncode == 0 else None
            extra = [] if method in ("dist-ring", "dist-dilated") else ["--lse", ""]
            args = base if not extra else base[:-2]
            r = run(args + ["--pattern", json.dumps(spec), "--method", method], np_=3)
            ok = r.returncode == 0 and single.returncode == 0 and np.abs(np.load(out) - want).max() <= 1e-5
            check(f"mpirun -np 3 attend {method} equals single rank", ok, r.stderr[-600:])

        # Zig-zag shards (chunks p and 2P-1-p) are put back in place by rank 0: N = 24 cuts in 6.
        zz = {}
        for name in "qkv":
            zz[name] = os.path.join(tmp, "zz_" + name + ".npy")
            np.save(zz[name], rng.standard_normal((1, 24, 2, 8)).astype(np.float32))
        zargs = ["attend", "--q", zz["q"], "--k", zz["k"], "--v", zz["v"], "--out", out, "--lse", lse,
                 "--pattern", '{"kind": "full", "causal": true}']
        single = run(zargs + ["--method", "flash"])
        want_o, want_l = (np.load(out), np.load(lse)) if single.returncode == 0 else (None, None)
        r = run(zargs + ["--method", "dist-ring-zigzag"], np_=3)
        ok = r.returncode == 0 and single.returncode == 0 and np.abs(np.load(out) - want_o).max() <= 1e-5 \
            and np.abs(np.load(lse) - want_l).max() <= 1e-5
        check("mpirun -np 3 attend dist-ring-zigzag (O and LSE) equals single rank", ok, r.stderr[-600:])

        # Distributed backward through attend: rank 0 writes dQ, dK, dV, equal to the single-rank
        # kernel's (SPEC §6: 1e-5 relative); zig-zag's shards put back in place.
        def grads_of(result):
            return [np.load(grads[x]) for x in "qkv"] if result.returncode == 0 else None
        for method, spec in [("dist-ring", {"kind": "full", "causal": True}),
                             ("dist-dilated", {"kind": "dilated", "levels": [[16, 1], [75, 3]], "causal": True}),
                             ("dist-ulysses", {"kind": "local", "left": 20, "right": 0}),
                             ("dist-heads", {"kind": "full"}), ("dist-allgather", {"kind": "full", "causal": True})]:
            want = grads_of(run(base + ["--pattern", json.dumps(spec), "--method", "auto"] + back))
            got = grads_of(run(base + ["--pattern", json.dumps(spec), "--method", method] + back, np_=3))
            ok = want is not None and got is not None and max(
                float(np.abs(a - b).max()) / max(1.0, float(np.abs(b).max())) for a, b in zip(got, want)) <= 1e-5
            check(f"mpirun -np 3 attend {method} --dout: dQ, dK, dV equal single rank", ok, str(got is None))
        zdout = os.path.join(tmp, "zz_dout.npy")
        np.save(zdout, rng.standard_normal((1, 24, 2, 8)).astype(np.float32))
        zback = ["--dout", zdout, "--dq", grads["q"], "--dk", grads["k"], "--dv", grads["v"]]
        want = grads_of(run(zargs + ["--method", "flash"] + zback))
        got = grads_of(run(zargs + ["--method", "dist-ring-zigzag"] + zback, np_=3))
        ok = want is not None and got is not None and max(
            float(np.abs(a - b).max()) / max(1.0, float(np.abs(b).max())) for a, b in zip(got, want)) <= 1e-5
        check("mpirun -np 3 attend dist-ring-zigzag --dout: gradients put back in place, equal single rank", ok)

    # Grouped-query attention (SPEC §1): K and V [B, N, H_kv, d]; NumPy's answer repeats each KV head
    # for its group (and sums dK, dV over the group). Kernels, then dist-* methods, dist-usp on every
    # factorisation of 2 ranks.
    G_H, G_KV, G_N = 8, 2, 40
    gq = {x: os.path.join(tmp, f"g{x}.npy") for x in ("q", "k", "v", "dout")}
    np.save(gq["q"], rng.standard_normal((1, G_N, G_H, 8)).astype(np.float32))
    np.save(gq["dout"], rng.standard_normal((1, G_N, G_H, 8)).astype(np.float32))
    for x in "kv":
        np.save(gq[x], rng.standard_normal((1, G_N, G_KV, 8)).astype(np.float32))
    qg, kg, vg, dg = (np.load(gq[x]) for x in ("q", "k", "v", "dout"))
    rep = G_H // G_KV
    og, lg = numpy_attention(qg, np.repeat(kg, rep, axis=2), np.repeat(vg, rep, axis=2), causal=True)
    dqg, dkg, dvg = numpy_gradients(qg, np.repeat(kg, rep, axis=2), np.repeat(vg, rep, axis=2), dg, causal=True)
    dkg, dvg = (x.reshape(1, G_N, G_KV, rep, 8).sum(3) for x in (dkg, dvg))
    gargs = ["attend", "--q", gq["q"], "--k", gq["k"], "--v", gq["v"], "--out", out, "--lse", lse, "--pattern",
             '{"kind": "full", "causal": true}', "--dout", gq["dout"], "--dq", grads["q"], "--dk", grads["k"],
             "--dv", grads["v"]]
    def gqa_ok(r):
        if r.returncode != 0:
            return False
        dk_shape = np.load(grads["k"]).shape == (1, G_N, G_KV, 8)
        errs = [np.abs(np.load(out) - og).max(), np.abs(np.load(lse) - lg).max()] + \
            [np.abs(np.load(grads[x]) - w).max() / max(1.0, np.abs(w).max()) for x, w in zip("qkv", (dqg, dkg, dvg))]
        return dk_shape and max(errs) <= 1e-4
    for method in ("flash", "vanilla", "reference"):
        r = run(gargs + ["--method", method])
        check(f"attend {method} with H = 8, H_kv = 2 (GQA): O, LSE, dQ, dK, dV match NumPy", gqa_ok(r), r.stderr[-300:])
    if MPIRUN:
        for method, extra in (("dist-usp", ["--ulysses", "2"]), ("dist-usp", ["--ulysses", "1"]), ("dist-usp", []),
                              ("dist-ulysses", []), ("dist-ring-zigzag", []), ("dist-heads", []), ("dist-allgather", [])):
            r = run(gargs + ["--method", method] + extra, np_=2)
            check(f"mpirun -np 2 attend {method} {' '.join(extra)} with GQA: O, LSE, dQ, dK, dV match NumPy", gqa_ok(r),
                  r.stderr[-300:])
        bad_o = os.path.join(tmp, "never.npy")
        k3 = os.path.join(tmp, "gk3.npy")
        np.save(k3, np.zeros((1, G_N, 3, 8), np.float32))
        for name, kv, extra, needle in (
                ("a --ulysses not dividing P", gq["k"], ["--method", "dist-usp", "--ulysses", "3"], "ulysses = 3 does not divide"),
                ("--ulysses with another method", gq["k"], ["--method", "dist-ring", "--ulysses", "2"], "--ulysses: sets dist-usp"),
                ("K heads not dividing Q's", k3, ["--method", "dist-usp"], "3 heads do not divide --q's H = 8")):
            r = run(["attend", "--q", gq["q"], "--k", kv, "--v", kv, "--pattern", '{"kind": "full"}', "--out", bad_o] + extra,
                    np_=2)
            check(f"attend rejects {name}: exit 2, named, nothing written",
                  r.returncode == 2 and needle in r.stderr and not os.path.exists(bad_o), r.stderr[-300:])

    # Bad input: exit code 2, a message naming the problem, no output written.
    bad_dir = os.path.join(tmp, "bad")
    os.makedirs(bad_dir)
    def bad_npy(name, writer):
        path = os.path.join(bad_dir, name)
        writer(path)
        return path
    garbage = bad_npy("garbage.npy", lambda p: open(p, "wb").write(b"not numpy at all"))
    good_bytes = open(paths["q"], "rb").read()
    truncated = bad_npy("truncated.npy", lambda p: open(p, "wb").write(good_bytes[: len(good_bytes) // 2]))
    ints = bad_npy("ints.npy", lambda p: np.save(p, np.zeros((B, N, H, d), np.int32)))
    rank3 = bad_npy("rank3.npy", lambda p: np.save(p, np.zeros((N, H, d), np.float32)))
    other = bad_npy("other.npy", lambda p: np.save(p, np.zeros((B, N + 1, H, d), np.float32)))
    fortran = bad_npy("fortran.npy", lambda p: np.save(p, np.asfortranarray(q)))
    bad_out = os.path.join(bad_dir, "o.npy")
    cases = [
        ("malformed .npy", ["--q", garbage], "bad magic"),
        ("truncated .npy", ["--q", truncated], "truncated"),
        ("wrong dtype", ["--q", ints], "dtype <i4"),
        ("wrong rank", ["--q", rank3], "expected a 4-d array"),
        ("mismatched shapes", ["--k", other], "--k: N = "),
        ("Fortran order", ["--q", fortran], "Fortran order"),
        ("missing file", ["--q", os.path.join(bad_dir, "nope.npy")], "cannot open"),
        ("unknown pattern kind", ["--pattern", '{"kind": "banded"}'], 'unknown kind "banded"'),
        ("unknown pattern field", ["--pattern", '{"kind": "full", "window": 3}'], "--pattern.window: unknown field"),
        ("non-positive size", ["--pattern", '{"kind": "strided", "stride": 0}'], "--pattern.stride: must be positive"),
        ("malformed pattern JSON", ["--pattern", '{"kind": '], "malformed JSON"),
        ("unknown method", ["--method", "fastest"], 'unknown method "fastest"'),
        ("kernel that cannot run the pattern", ["--method", "flash", "--pattern", '{"kind": "dilated", "levels": "longnet"}'], "flash cannot run"),
        ("output directory missing", ["--out", os.path.join(bad_dir, "no", "o.npy")], "does not exist"),
    ]
    for name, override, needle in cases:
        args = {"--q": paths["q"], "--k": paths["k"], "--v": paths["v"], "--out": bad_out,
                "--pattern": '{"kind": "full"}', "--method": "auto"}
        for i in range(0, len(override), 2):
            args[override[i]] = override[i + 1]
        r = run(["attend"] + [x for kv in args.items() for x in kv])
        ok = r.returncode == 2 and needle in r.stderr and not os.path.exists(bad_out)
        check(f"attend rejects {name}", ok, f"rc={r.returncode} stderr={r.stderr.strip()[-300:]}")
    r = run(["attend", "--q", paths["q"]])
    check("attend with missing options exits 2", r.returncode == 2, r.stderr[-200:])

    # A check that fails on one rank only (here: rank 1 is given a missing --q, as a node without
    # the file would be) fails every rank together: exit 2 with rank 1's message, no hang.
    if MPIRUN:
        good = ["attend", "--q", paths["q"], "--k", paths["k"], "--v", paths["v"], "--out", bad_out,
                "--pattern", '{"kind": "full"}', "--method", "dist-ring"]
        bad = list(good)
        bad[2] = os.path.join(bad_dir, "only-on-rank-0.npy")
        cmd = [MPIRUN, "--oversubscribe", "-np", "1", EXE] + good[0:] + [":", "-np", "1", EXE] + bad
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=ENV)
            ok = r.returncode == 2 and "rank 1: error" in r.stderr and "cannot open" in r.stderr and \
                not os.path.exists(bad_out)
            detail = f"rc={r.returncode} stderr={r.stderr[-400:]}"
        except subprocess.TimeoutExpired:
            ok, detail = False, "hung for 60 s"
        check("a bad input on one rank only fails every rank with its message", ok, detail)

    # Bad suites: exit 2 before anything runs, no results file.
    def suite(name, body):
        path = os.path.join(bad_dir, name + ".json")
        open(path, "w").write(body if isinstance(body, str) else json.dumps(body))
        return path
    ok_suite = {"methods": ["flash"], "patterns": [{"kind": "full"}], "B": 1, "H": 2, "N": 64, "d": 16}
    res = os.path.join(bad_dir, "results.json")
    suites = [
        ("malformed JSON", suite("malformed", "{\"methods\": ["), 1, "malformed JSON"),
        ("unknown method", suite("m", dict(ok_suite, methods=["warp"])), 1, 'unknown method "warp"'),
        ("unknown field", suite("f", dict(ok_suite, repeats=3)), 1, "repeats: unknown field"),
        ("unknown pattern", suite("p", dict(ok_suite, patterns=[{"kind": "banded"}])), 1, "patterns[0].kind"),
        ("non-positive N", suite("n", dict(ok_suite, N=[64, 0])), 1, "N[1]: must be a positive integer"),
        ("unsupported d", suite("d", dict(ok_suite, d=512)), 1, "d: head dim 512 is not supported"),
        ("an unknown dtype", suite("t", dict(ok_suite, dtype="fp8")), 1, 'dtype: unknown dtype "fp8"'),
        ("memory over the machine's", suite("mem", dict(ok_suite, methods=["vanilla"], N=1 << 20)), 1, "memory: needs about"),
        ("an unknown pass", suite("pass", dict(ok_suite, **{"pass": "sideways"})), 1, 'pass: unknown pass "sideways"'),
        ("a backward pass of a microbenchmark", suite("cb", dict(ok_suite, methods=["comm-send-recv"], **{"pass": "backward"})), 1,
         "comm-send-recv times communication only; it has no backward pass"),
        ("missing suite", os.path.join(bad_dir, "none.json"), 1, "no such suite file"),
    ]
    # fp16 on the CPU needs AVX512-FP16: refused where the CPU lacks it, run (and verified) where it has it.
    has_fp16 = "avx512_fp16" in open("/proc/cpuinfo").read().split()
    if not has_fp16:
        suites.append(("fp16 on a CPU without AVX512-FP16", suite("h16", dict(ok_suite, dtype="fp16")), 1,
                       "dtype: fp16 on device cpu needs AVX512-FP16"))
    else:
        r = run(["run", suite("h16", dict(ok_suite, dtype="fp16")), "--out", res, "--quiet"])
        check("run computes fp16 on a CPU with AVX512-FP16", r.returncode == 0, r.stderr[-300:])
        os.path.exists(res) and os.remove(res)
    if MPIRUN:
        suites.append(("H not divisible by the world size", suite("h", dict(ok_suite, methods=["dist-heads"], H=4)), 3,
                       "H = 4 is not divisible by the world size 3"))
        suites.append(("N not divisible by the world size", suite("nn", dict(ok_suite, methods=["dist-ring"], N=100)), 3,
                       "N = 100 is not divisible by the world size 3"))
    for name, path, np_, needle in suites:
        r = run(["run", path, "--out", res, "--quiet"], np_=np_ if np_ > 1 else None)
        ok = r.returncode == 2 and needle in r.stderr and not os.path.exists(res)
        check(f"run rejects {name}", ok, f"rc={r.returncode} stderr={r.stderr.strip()[-300:]}")
    # A forced tile path this CPU cannot run, or one that does not exist: exit 2, nothing written.
    bad_paths = [("nope", "unknown tile path")]
    if "amx_bf16" not in open("/proc/cpuinfo").read().split():
        bad_paths.append(("bf16-amx", "needs amx_bf16"))
    for value, needle in bad_paths:
        r = run(["run", suite("tp", ok_suite), "--out", res, "--quiet"], env=dict(ENV, LONGATTN_TILE_PATH=value))
        ok = r.returncode == 2 and "LONGATTN_TILE_PATH" in r.stderr and needle in r.stderr and not os.path.exists(res)
        check(f"run rejects LONGATTN_TILE_PATH={value}", ok, f"rc={r.returncode} stderr={r.stderr.strip()[-300:]}")

    # Timing discipline on several ranks: fixed counts, the same on every rank, so every ok case has
    # exactly `iterations` samples of time and of communication, and the slowest rank's time is at
    # least the time it spent communicating.
    if MPIRUN:
        tsuite = suite("timing", {"methods": ["dist-ring", "dist-ulysses", "flash"], "patterns": [{"kind": "full"}],
                                  "B": 1, "H": 3, "N": 96, "d": 16, "warmup": 2, "iterations": 4})
        r = run(["run", tsuite, "--out", res, "--quiet"], np_=3)
        ok = r.returncode == 0
        if ok:
            cs = json.load(open(res))["cases"]
            ok = len(cs) == 3 and all(c["status"] == "ok" and len(c["samples_ms"]) == 4 and
                                      len(c["comm"]["samples_ms"]) == 4 and c["iterations"] == 4 and
                                      all(t >= m * 0.999 for t, m in zip(c["samples_ms"], c["comm"]["samples_ms"]))
                                      for c in cs)
            ok = ok and cs[0]["world"] == 3 and cs[2]["world"] == 1 and cs[0]["ranks"] == 3
        check("ranks agree on fixed iteration counts (3 ranks)", ok, r.stderr[-300:])
        if os.path.exists(res):
            os.remove(res)
        # Backward passes of the distributed methods, verified in `run` on 3 ranks: every layout's
        # token ranges (sharded, zig-zag, replicated) put back in place for the gradient check.
        bsuite = suite("backward", {"methods": ["dist-ring", "dist-ring-zigzag", "dist-ulysses", "dist-allgather",
                                                "dist-heads", "flash"],
                                    "patterns": [{"kind": "full", "causal": True}], "B": 2, "H": 3, "N": 126, "d": 8,
                                    "pass": ["backward", "forward+backward"], "warmup": 0, "iterations": 1})
        r = run(["run", bsuite, "--out", res, "--quiet"], np_=3)
        cs = json.load(open(res))["cases"] if r.returncode == 0 else []
        check("backward passes of every layout pass verification in run (3 ranks)", len(cs) == 12 and all(
            c["status"] == "ok" and c["error"]["passed"] and "grad" in c["error"] for c in cs),
            r.stderr[-300:] + str([(c["name"], c["status"]) for c in cs if c["status"] != "ok"]))
        if os.path.exists(res):
            os.remove(res)

    # Budget: a case that cannot fit its budget is skipped, and the sweep goes on.
    r = run(["run", suite("budget", dict(ok_suite, methods=["reference", "flash"], N=2048, budget_s=0.05)), "--out", res, "--quiet"])
    ok = r.returncode == 0 and os.path.exists(res)
    if ok:
        cs = json.load(open(res))["cases"]
        ok = cs[0]["status"] == "skipped" and cs[0]["reason"].startswith("budget") and cs[1]["status"] in ("ok", "skipped")
    check("a case over its budget is skipped: budget", ok, r.stderr[-300:])

    # A failing rank aborts the whole job with its message; no hang, no results file.
    if MPIRUN:
        if os.path.exists(res):
            os.remove(res)
        env = dict(ENV, LONGATTN_FAULT_RANK="1")
        try:
            r = run(["run", suite("fault", dict(ok_suite, methods=["dist-ring"])), "--out", res, "--quiet"], np_=2,
                    timeout=60, env=env)
            ok = r.returncode != 0 and "injected fault" in r.stderr and not os.path.exists(res)
            detail = f"rc={r.returncode} stderr={r.stderr[-300:]}"
        except subprocess.TimeoutExpired:
            ok, detail = False, "hung for 60 s"
        check("a failing rank aborts the job with its message", ok, detail)

    baselines(tmp, suite, ok_suite, res)
    installed(tmp)
    shutil.rmtree(tmp)
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


def installed(tmp):
    """`cmake --install`, then the installed program: its suites, plot and model come from the prefix
    (share/longattn), not from the source tree it was built from."""
    build = os.path.dirname(EXE)
    prefix = os.path.join(tmp, "prefix")
    if not os.path.exists(os.path.join(build, "cmake_install.cmake")) or not shutil.which("cmake"):
        print("skip  installed program: no CMake build folder beside the program")
        return
    r = subprocess.run(["cmake", "--install", build, "--prefix", prefix], capture_output=True, text=True, timeout=120)
    exe = os.path.join(prefix, "bin", "longattn")
    check("cmake --install puts the program in bin/ and its data in share/longattn/", r.returncode == 0 and
          os.path.exists(exe) and os.path.isdir(os.path.join(prefix, "share", "longattn", "harness", "model")),
          r.stdout[-300:] + r.stderr[-300:])
    if not os.path.exists(exe):
        return
    share = os.path.join(prefix, "share", "longattn")
    env = dict(ENV, PYTHONPATH="")
    lst = subprocess.run([exe, "list"], capture_output=True, text=True, env=env, timeout=60)
    check("installed: suites come from share/longattn/suite", lst.returncode == 0 and
          f"Suites ({os.path.join(share, 'suite')})" in lst.stdout, lst.stdout[-300:])
    model = subprocess.run([exe, "model", "--help"], capture_output=True, text=True, env=env, timeout=60)
    check("installed: longattn model runs the installed model package", model.returncode == 0 and
          "usage: longattn model" in model.stdout, model.stdout[-200:] + model.stderr[-300:])
    charts = os.path.join(tmp, "installed-charts")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    plot = subprocess.run([exe, "plot", "--out", charts, os.path.join(root, "results", "kernels.json")],
                          capture_output=True, text=True, env=env, timeout=300)
    check("installed: longattn plot draws from the installed plot.py and schema", plot.returncode == 0 and
          any(f.endswith(".png") for f in os.listdir(charts)) if os.path.isdir(charts) else False,
          plot.stdout[-200:] + plot.stderr[-300:])


def cpu_flags():
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def baselines(tmp, suite, ok_suite, res):
    """Numbers that hold on any machine: the BLAS core, the plan, the slowdown hook, compare's
    machine check, verify, the gate's and the peers' bad input."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
    tiny = suite("tiny", dict(ok_suite, methods=["vanilla", "flash"], iterations=2, warmup=0))
    # The BLAS on its proper core: a generic core forced from outside is replaced before OpenBLAS
    # starts, and the context says so; LONGATTN_BLAS_CORE=keep keeps it.
    r = run(["run", tiny, "--out", res, "--quiet"], env=dict(ENV, OPENBLAS_CORETYPE="Prescott"))
    ok = r.returncode == 0
    if ok:
        ctx = json.load(open(res))["context"]
        blas, peak = ctx["blas"], ctx["cpu_peak"]
        if "avx2" in cpu_flags():
            ok = (blas["core"] != "Prescott" and blas["core_chosen_by"] == "longattn" and
                  blas["core_replaced"] == "Prescott")
        ok = ok and ctx["sgemm_shape"].startswith("2048x2048x2048") and peak["fp32_gflops_measured_clock"] > 0
    check("a generic BLAS core (OPENBLAS_CORETYPE=Prescott) is replaced and recorded", ok, r.stderr[-300:])
    r = run(["run", tiny, "--out", res, "--quiet"],
            env=dict(ENV, OPENBLAS_CORETYPE="Prescott", LONGATTN_BLAS_CORE="keep"))
    ok = r.returncode == 0 and json.load(open(res))["context"]["blas"] == \
        dict(json.load(open(res))["context"]["blas"], core="Prescott", core_chosen_by="environment")
    check("LONGATTN_BLAS_CORE=keep keeps the core the environment set", ok, r.stderr[-300:])
    run_a = os.path.join(tmp, "a.json")
    r = run(["run", tiny, "--out", run_a, "--quiet"])

    # --plan: the expanded cases as JSON, nothing run, nothing written.
    os.remove(res)
    r = run(["run", suite("plan", dict(ok_suite, methods=["flash", "dilated"],
                                       patterns=[{"kind": "full"}, {"kind": "dilated", "levels": "longnet"}],
                                       N=[64, 5000])), "--plan", "--out", res])
    ok = r.returncode == 0 and not os.path.exists(res)
    if ok:
        plan = json.loads(r.stdout)
        cs = plan["cases"]
        ok = len(cs) == 8 and cs[0]["name"] == "flash full B=1 N=64 H=2 d=16 fp32 cpu P=1" and cs[0]["flops"] == 4 * 16 * 64 * 64 * 2
        ok = ok and [c["levels"] for c in cs if c["pattern"]["kind"] == "dilated" and c["N"] == 5000][0] == \
            [[2048, 1], [4096, 2], [5000, 4]]
    check("run --plan prints the expanded cases (longnet levels resolved) and runs nothing", ok, r.stderr[-300:])

    # The slowdown hook: flash:3 makes flash three times the work; malformed values exit 2.
    r = run(["run", tiny, "--out", res, "--quiet"], env=dict(ENV, LONGATTN_INJECT_SLOWDOWN="flash:3"))
    ok = r.returncode == 0 and [c.get("injected_slowdown") for c in json.load(open(res))["cases"]] == [None, 3]
    check("LONGATTN_INJECT_SLOWDOWN=flash:3 repeats flash only, and says so", ok, r.stderr[-300:])
    for bad in ["flash", "warp:2", "flash:0", "flash:2x", "flash:1000", ":2"]:
        os.remove(res) if os.path.exists(res) else None
        r = run(["run", tiny, "--out", res, "--quiet"], env=dict(ENV, LONGATTN_INJECT_SLOWDOWN=bad))
        ok = r.returncode == 2 and "LONGATTN_INJECT_SLOWDOWN" in r.stderr and not os.path.exists(res)
        check(f"LONGATTN_INJECT_SLOWDOWN={bad} is refused (exit 2)", ok, f"rc={r.returncode} {r.stderr[-200:]}")

    # compare: same machine compares (and pools comma-separated runs); another machine is refused.
    r = run(["run", tiny, "--out", res, "--quiet"])
    r2 = run(["compare", run_a, f"{res},{run_a}"])
    check("compare pools comma-separated runs of one machine", r.returncode == 0 and r2.returncode in (0, 1) and
          "| flash full B=1 N=64" in r2.stdout, r2.stderr[-300:])
    other = json.load(open(res))
    other["context"]["cpu_model"] = "Imaginary CPU 9000"
    other["context"]["blas"]["core"] = "Prescott"
    other_path = os.path.join(tmp, "other.json")
    json.dump(other, open(other_path, "w"))
    r = run(["compare", run_a, other_path])
    ok = r.returncode == 2 and "Imaginary CPU 9000" in r.stderr and "BLAS core Prescott" in r.stderr and \
        "--cross-machine" in r.stderr and r.stdout == ""
    check("compare refuses files from different machines, naming both", ok, f"rc={r.returncode} {r.stderr[-300:]}")
    r = run(["compare", run_a, other_path, "--cross-machine"])
    check("compare --cross-machine compares them anyway", r.returncode in (0, 1) and "| flash" in r.stdout, r.stderr[-300:])

    # The budget estimate comes from this run's rate of the same method and pattern family.
    r = run(["run", suite("rates", dict(ok_suite, methods=["flash"], N=[256, 131072], budget_s=0.5, warmup=0, iterations=3)),
             "--out", res, "--quiet"])
    ok = r.returncode == 0
    if ok:
        cs = json.load(open(res))["cases"]
        ok = cs[0]["status"] == "ok" and cs[1]["status"] == "skipped" and "this run's rate" in cs[1]["reason"]
    check("budget estimates use the rate measured earlier in the run", ok,
          r.stderr[-300:] + (json.dumps(json.load(open(res))["cases"][1])[:300] if os.path.exists(res) else ""))

    # verify: another program's output against the oracle.
    q = os.path.join(tmp, "q.npy")
    k, v = os.path.join(tmp, "k.npy"), os.path.join(tmp, "v.npy")
    o, lse = os.path.join(tmp, "vo.npy"), os.path.join(tmp, "vlse.npy")
    pat = '{"kind": "strided", "stride": 7, "causal": true}'
    r = run(["attend", "--q", q, "--k", k, "--v", v, "--pattern", pat, "--method", "vanilla", "--out", o, "--lse", lse])
    args = ["verify", "--q", q, "--k", k, "--v", v, "--o", o, "--lse", lse, "--pattern", pat]
    r = run(args)
    ok = r.returncode == 0 and json.loads(r.stdout)["passed"] and json.loads(r.stdout)["rows_checked"] == 2 * 75 * 3
    check("verify passes a correct output", ok, r.stderr[-300:])
    bad_o = np.load(o)
    bad_o[1, 70, 2, 5] += 1e-3
    np.save(o, bad_o)
    r = run(args)
    check("verify fails an output off by 1e-3 in one element (exit 1)", r.returncode == 1 and
          not json.loads(r.stdout)["passed"], r.stdout + r.stderr[-300:])
    r = run(["verify", "--q", q, "--k", k, "--v", v, "--o", lse, "--pattern", pat])
    check("verify rejects an output of the wrong shape (exit 2)", r.returncode == 2 and "--o:" in r.stderr, r.stderr[-300:])
    # verify --dout: another program's gradients (NumPy's here) against float64 sums (SPEC §6).
    qa, ka, va = np.load(q), np.load(k), np.load(v)
    dout = np.random.default_rng(5).standard_normal(qa.shape).astype(np.float32)
    dout_path = os.path.join(tmp, "vdout.npy")
    np.save(dout_path, dout)
    grads = {x: os.path.join(tmp, f"vd{x}.npy") for x in "qkv"}
    lpat, lkw = '{"kind": "local", "left": 9, "right": 4}', {"left": 9, "right": 4}
    np.save(o, numpy_attention(qa, ka, va, **lkw)[0].astype(np.float32))
    for x, g in zip("qkv", numpy_gradients(qa, ka, va, dout, **lkw)):
        np.save(grads[x], g.astype(np.float32))
    gargs = ["verify", "--q", q, "--k", k, "--v", v, "--o", o, "--pattern", lpat, "--dout", dout_path,
             "--dq", grads["q"], "--dk", grads["k"], "--dv", grads["v"]]
    r = run(gargs)
    rep = json.loads(r.stdout) if r.returncode in (0, 1) else {}
    check("verify --dout passes NumPy's gradients", r.returncode == 0 and rep["passed"] and
          max(rep["grad"][f"d{x}_max_abs"] for x in "qkv") < 1e-5, r.stdout + r.stderr[-300:])
    bad = np.load(grads["k"])
    bad[1, 40, 2, 7] += 0.05
    np.save(grads["k"], bad)
    r = run(gargs)
    rep = json.loads(r.stdout) if r.returncode in (0, 1) else {}
    check("verify --dout fails a dK off by 0.05 in one element (exit 1)", r.returncode == 1 and not rep["passed"] and
          rep["grad"]["dk_max_abs"] > 0.049 and rep["grad"]["dq_max_abs"] < 1e-5, r.stdout + r.stderr[-300:])
    r = run(gargs[:-2])
    check("verify --dout without --dv is refused (exit 2)", r.returncode == 2 and "--dv:" in r.stderr, r.stderr[-300:])

    # gate.sh and peers.sh: bad input exits 2 with a message.
    g = subprocess.run(["bash", os.path.join(root, "scripts", "gate.sh"), EXE, os.path.join(tmp, "no-such-longattn")],
                       capture_output=True, text=True, env=ENV)
    check("gate.sh with a missing program exits 2, naming it", g.returncode == 2 and "no-such-longattn: no such program"
          in g.stderr, g.stderr[-300:])
    p = subprocess.run(["bash", os.path.join(root, "scripts", "peers.sh"), "smoke"], capture_output=True, text=True,
                       env=dict(ENV, LONGATTN_PROGRAM=EXE, LONGATTN_PEERS_VENV="/proc/no-venv-here"))
    ok = p.returncode == 2 and "could not be installed" in p.stderr and "pip install" in p.stderr
    check("peers.sh where PyTorch cannot be installed exits 2 and says how to install it", ok, p.stderr[-400:])


if __name__ == "__main__":
    sys.exit(main())
