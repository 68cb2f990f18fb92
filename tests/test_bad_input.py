#!/usr/bin/python3
"""The README's promise as a table: every class of hostile input -> exit 2, a short message naming
the field, nothing written (or, where the input is valid if extreme, the right answer, fast).
Each row is the shortest input that showed a bug. Usage: test_bad_input.py BUILD/longattn"""
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

EXE = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/longattn")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
results = {"passed": 0, "failed": 0}
T = tempfile.mkdtemp(prefix="longattn-bad-")


def check(name, ok, detail=""):
    results["passed" if ok else "failed"] += 1
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok else "\n      " + detail))


def run(args, env=None, timeout=60):
    t0 = time.monotonic()
    r = subprocess.run([EXE] + args, capture_output=True, text=True, timeout=timeout, env=env or ENV)
    r.seconds = time.monotonic() - t0
    return r


def path(name):
    return os.path.join(T, name)


def write(name, text):
    with open(path(name), "w") as f:
        f.write(text)
    return path(name)


def npy_raw(name, header, payload=b""):
    """A .npy file with exactly this header text and payload (version 2 where the header needs it)."""
    h = header.encode()
    v2 = len(h) > 60000
    pad = (64 - ((12 if v2 else 10) + len(h) + 1) % 64) % 64
    h += b" " * pad + b"\n"
    with open(path(name), "wb") as f:
        f.write((b"\x93NUMPY\x02\x00" + struct.pack("<I", len(h)) if v2 else
                 b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h))) + h + payload)
    return path(name)


def expect_refused(name, args, needle, outputs=(), env=None):
    """exit 2, `needle` in a message of at most a few hundred characters, none of `outputs` written."""
    for o in outputs:
        if os.path.exists(o) and os.path.isfile(o):
            os.remove(o)
    try:
        r = run(args, env=env)
    except subprocess.TimeoutExpired:
        check(name, False, "hung for 60 s")
        return
    written = [o for o in outputs if os.path.exists(o) and os.path.isfile(o)]
    ok = r.returncode == 2 and needle in r.stderr and len(r.stderr) < 1200 and not written
    check(f"{name}: exit 2, names it, nothing written", ok,
          f"rc={r.returncode} written={written} stderr[{len(r.stderr)}]={r.stderr[-300:]}")


def reference(args_pattern, q, k, v):
    """The oracle's O for a pattern (attend --method reference)."""
    out = path("ref_o.npy")
    r = run(["attend", "--q", q, "--k", k, "--v", v, "--pattern", args_pattern, "--method", "reference", "--out", out])
    return np.load(out) if r.returncode == 0 else None


def main():
    rng = np.random.default_rng(11)
    q, k, v = path("q.npy"), path("k.npy"), path("v.npy")
    for p in (q, k, v):
        np.save(p, rng.standard_normal((1, 16, 2, 8)).astype(np.float32))
    out, lse = path("o.npy"), path("lse.npy")
    att = ["attend", "--q", q, "--k", k, "--v", v]
    full = '{"kind": "full"}'

    # 1. Device files are written through, never replaced.
    for dev in ("/dev/null", "/dev/full"):
        if not os.path.exists(dev):
            continue
        r = run(att + ["--pattern", full, "--out", dev])
        still = stat.S_ISCHR(os.stat(dev).st_mode)
        want = 0 if dev == "/dev/null" else 2
        check(f"attend --out {dev}: exit {want}, {dev} stays a character device", r.returncode == want and still,
              f"rc={r.returncode} chr={still} {r.stderr[-200:]}")
    tiny = write("tiny.json", json.dumps({"methods": ["flash"], "patterns": [{"kind": "full"}], "B": 1, "H": 1, "N": 16,
                                          "d": 8, "iterations": 1, "warmup": 0}))
    r = run(["run", tiny, "--out", "/dev/null", "--quiet"])
    check("run --out /dev/null: exit 0, /dev/null stays a character device",
          r.returncode == 0 and stat.S_ISCHR(os.stat("/dev/null").st_mode), r.stderr[-200:])

    # 2. Shapes whose products overflow.
    big = npy_raw("big.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4294967296, 4294967296, 1), }")
    for method in ("vanilla", "dilated", "reference"):
        expect_refused(f"a .npy of shape (1, 2^32, 2^32, 1) with {method}",
                       ["attend", "--q", big, "--k", big, "--v", big, "--pattern", full, "--method", method, "--out", out],
                       "shape", [out])
    expect_refused("a suite with B = N = 2^32", ["run", write("bn.json", json.dumps(
        {"methods": ["flash"], "patterns": [{"kind": "full"}], "B": 2**32, "H": 1, "N": 2**32, "d": 8})), "--out", out],
        "B x N", [out])
    expect_refused("a .npy dimension beyond int64",
                   ["attend", "--q", npy_raw("dim.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999, ), }"),
                    "--k", k, "--v", v, "--pattern", full, "--out", out], "too large", [out])

    # 3. and 4. Extreme pattern values: the answer the pattern means, fast.
    qa, ka, va = (np.load(x).astype(np.float64) for x in (q, k, v))
    s = np.einsum("bihd,bjhd->bhij", qa, ka) / np.sqrt(8)

    def softmax_o(keep):
        z = np.where(keep, s, -np.inf)
        m = z.max(-1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        p = np.exp(z - m)
        den = p.sum(-1, keepdims=True)
        return np.einsum("bhij,bjhd->bihd", np.divide(p, den, out=np.zeros_like(p), where=den > 0), va)

    i, j = np.arange(16)[:, None], np.arange(16)[None, :]
    dil_keep = np.zeros((1, 2, 16, 16), bool)
    for h in range(2):
        dil_keep[0, h, h, h] = True  # offset h mod r = h: one kept row, itself
    cases = [
        ('{"kind": "strided", "stride": 4294967296}', np.ones((16, 16), bool)),
        ('{"kind": "strided", "stride": 9223372036854775807}', np.ones((16, 16), bool)),
        ('{"kind": "local", "left": 0, "right": 9223372036854775807}', j >= i),
        ('{"kind": "dilated", "levels": [[16, 9223372036854775807]]}', dil_keep),
    ]
    for pat, keep in cases:
        want = softmax_o(keep)
        for method in ("auto", "vanilla", "reference"):
            r = run(att + ["--pattern", pat, "--method", method, "--out", out])
            ok = r.returncode == 0 and r.seconds < 5 and np.abs(np.load(out) - want).max() < 1e-4
            check(f"{pat} ({method}) equals what it means, in {r.seconds:.1f} s", ok, f"rc={r.returncode} {r.stderr[-200:]}")

    # 5. Deep JSON.
    deep = "[" * 100000 + "]" * 100000
    expect_refused("a pattern file nested 100k deep", att + ["--pattern", write("deep_p.json", deep), "--out", out],
                   "nested deeper", [out])
    expect_refused("an inline pattern nested 20k deep", att + ["--pattern", '{"a":' * 20000 + "1" + "}" * 20000, "--out", out],
                   "nested deeper", [out])
    expect_refused("a suite nested 100k deep", ["run", write("deep.json", '{"methods": ' + deep + "}"), "--out", out],
                   "nested deeper", [out])

    # 6. A long .npy header.
    expect_refused("a .npy with a 900 KB descr", att[:2] + [npy_raw("hdr.npy", "{'descr': '" + "<" * 900000 + "'}")] + att[3:] +
                   ["--pattern", full, "--out", out], "header of", [out])

    # 7. Thread counts.
    for t in ("100000", "0", "-1"):
        expect_refused(f"--threads {t}", att + ["--pattern", full, "--out", out, "--threads", t], "--threads", [out])

    # 8. Half-written outputs.
    expect_refused("an unwritable --lse", att + ["--pattern", full, "--out", out, "--lse", path("no/dir/lse.npy")],
                   "--lse", [out])
    expect_refused("--out X --lse X", att + ["--pattern", full, "--out", out, "--lse", out], "same file", [out])

    # 9. and 10. Suite numbers out of range, wrong types.
    base = {"methods": ["flash"], "patterns": [{"kind": "full"}], "B": 1, "H": 1, "N": 16, "d": 8}
    res = path("res.json")
    for name, body, needle in [
        ("iterations 2^32", dict(base, iterations=2**32), "iterations"),
        ("warmup 2^32 - 1", dict(base, warmup=2**32 - 1), "warmup"),
        ("iterations 2^31", dict(base, iterations=2**31), "iterations"),
        ("name 5", dict(base, name=5), "name"),
        ("description {}", dict(base, description={}), "description"),
        ("N_per_rank overflowing", {k2: v2 for k2, v2 in dict(base, N_per_rank=2**62).items() if k2 != "N"}, "N_per_rank"),
        ("a case holding cases", dict(base, cases=[{"N": 32, "cases": [{"N": 8}]}]), "cannot hold cases"),
        ("H_kv not dividing H", dict(base, H=8, H_kv=3), "H_kv: 3 does not divide H = 8"),
    ]:
        expect_refused(f"a suite with {name}", ["run", write("s.json", json.dumps(body)), "--out", res], needle, [res])
    expect_refused("1e400 in a suite", ["run", write("e.json", '{"methods": ["flash"], "patterns": [{"kind": "full"}], '
                                        '"B": 1, "H": 1, "N": 16, "d": 8, "budget_s": 1e400}'), "--out", res], "malformed JSON", [res])
    expect_refused("duplicate keys in a suite", ["run", write("dup.json", '{"methods": ["flash"], "patterns": [{"kind": "full"}],'
                                                 ' "B": 1, "H": 1, "N": 16, "N": 32, "d": 8}'), "--out", res], "duplicate key", [res])
    expect_refused("1e400 in a pattern", att + ["--pattern", '{"kind": "strided", "stride": 1e400}', "--out", out], "--pattern", [out])

    # 11. .npy shapes and scales.
    payload = np.zeros(256, np.float32).tobytes()
    for name, header, data, needle in [
        ("a negative dimension", "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 16, 2, 8), }", payload, "shape"),
        ("junk in the shape", "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 16x, 2, 8), }", payload, "shape"),
        ("trailing bytes", "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 16, 2, 8), }", payload + b"junk", "after the data"),
    ]:
        bad = npy_raw("bad.npy", header, data)
        expect_refused(f"a .npy with {name}", ["attend", "--q", bad, "--k", k, "--v", v, "--pattern", full, "--out", out],
                       needle, [out])
    for sc in ("0", "nan", "inf", "-1"):
        expect_refused(f"--scale {sc}", att + ["--pattern", full, "--out", out, "--scale", sc], "--scale", [out])

    # Non-finite inputs: refused by default; with --allow-nonfinite NaN reaches the rows it touches.
    qn = np.load(q)
    qn[0, 3, 1, 2] = np.nan
    kn = np.load(k)
    kn[0, 9, 0, 5] = np.nan
    vn = np.load(v)
    vn[0, 12, 0, 4] = np.inf
    np.save(path("qn.npy"), qn)
    np.save(path("kn.npy"), kn)
    np.save(path("vn.npy"), vn)
    nanargs = ["attend", "--q", path("qn.npy"), "--k", path("kn.npy"), "--v", path("vn.npy")]
    expect_refused("NaN in Q", nanargs + ["--pattern", full, "--out", out], "--q: element [0, 3, 1, 2] is NaN", [out])
    for pat in ('{"kind": "full", "causal": true}', '{"kind": "local", "left": 2, "right": 1}',
                '{"kind": "dilated", "levels": [[8, 1], [16, 2]]}', '{"kind": "strided", "stride": 3}'):
        want = None
        for method in ("reference", "vanilla", "auto"):
            r = run(nanargs + ["--pattern", pat, "--method", method, "--out", out, "--lse", lse, "--allow-nonfinite"])
            if r.returncode != 0:
                check(f"--allow-nonfinite {pat} {method}", False, r.stderr[-200:])
                continue
            got = (~np.isfinite(np.load(out)).all(-1), np.isnan(np.load(lse)))
            if method == "reference":
                want = got
                ok = got[0][0, 3, 1] and got[1][0, 1, 3]  # the NaN query row itself
            else:
                ok = want is not None and (got[0] == want[0]).all() and (got[1] == want[1]).all()
            check(f"--allow-nonfinite {pat} {method}: NaN in exactly the oracle's rows", ok,
                  f"{r.stderr[-200:]}")

    # 12. run checks where its results go before the first case.
    r = run(["run", write("slow.json", json.dumps(dict(base, methods=["reference"], N=4096, H=4, d=64, iterations=3))),
             "--out", path("missing/dir/r.json")])
    check("run --out into a missing folder fails before any case runs", r.returncode == 2 and "--out" in r.stderr and
          r.seconds < 10, f"rc={r.returncode} {r.seconds:.1f} s {r.stderr[-200:]}")

    # 13. Messages quote at most ~100 characters of a value.
    huge = "x" * 1_000_000
    expect_refused("a 1 MB method name", ["run", write("m.json", json.dumps(dict(base, methods=[huge]))), "--out", res],
                   "unknown method", [res])
    expect_refused("a 1 MB pattern kind", att + ["--pattern", write("hk.json", json.dumps({"kind": huge})), "--out", out],
                   "unknown kind", [out])

    shutil.rmtree(T)
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
