#!/usr/bin/python3
"""longattn's performance model: per-rank time, memory and bytes received of every method, calibrated
from measured results files and checked against them (what `longattn model ...` runs).

    model.py --machine M.json --method METHOD --pattern JSON --B 1 --H 8 --N 65536 --d 64 --world P
             [--threads T] [--dtype fp32|bf16|fp16] [--kernel flash|vanilla|dilated] [--json]
    model.py --validate RESULTS.json [RESULTS.json ...] --machine M.json
    model.py --calibrate --kernels RESULTS.json [...] --comm RESULTS.json --name NAME --out M.json

Exit status 0; 2 on bad input (the message names the file, the field or the option).

The model (all inputs come from files: a calibrated machine file, or a GPU file of public figures)
-------------------------------------------------------------------------------------------------
  time per rank     = compute + communication, the slowest rank's (every method ends in a collective)
  compute           = FLOPs of the rank's share / rate(kernel, pattern family, threads, N)
      FLOPs (SPEC §1) = 4 d B x (exact (query, key) pairs), counted per level; `vanilla` materialises
      every score, so its work is its dense count (results' flops_dense) whatever the pattern.
      Shares (SPEC §3): dist-heads / dist-ulysses: heads [p H/P, (p+1) H/P) over all N with the
      kernel the method picks (dilated for dilated patterns, else flash); dist-ring: one n x n block
      per step (n = N/P); dist-ring-zigzag: per step the blocks of its chunks p and 2P-1-p of N/(2P)
      against the visiting rank's; dist-dilated: the rank's kept queries x their segment's kept keys,
      per level.
      Measured machines: rate = GFLOP/s measured for that kernel, pattern family ("full+causal",
      "dilated+causal", ...) and threads per rank, interpolated linearly in (log N, log rate) between
      the measured N and held constant outside them. Small-N per-call overheads are inside those
      measured rates. A thread count that was not measured is scaled from the nearest measured one by
      the ratio of the sgemm rates the results files recorded for both (else linearly in threads).
      GPU machines: t = FLOPs / (peak x achieved fraction) + bytes moved / memory bandwidth + kernel
      launches x launch latency; vanilla moves every score element through memory several times.
  communication     = per logical exchange, alpha-beta: t = steps x alpha + bytes received / beta,
      steps = P-1 for collectives (ring / pairwise algorithms take P-1 steps; for dist-dilated the
      ranks sharing one segment), 1 for a send/receive. alpha and beta are fitted per operation
      (all_gather, all_to_all, send_recv) to the comm-* cases of a `suite/comm.json` results file by
      least squares in log time (every message size counts by its relative error) -- one line, or
      two split at a message-size knee where that cuts the error by a third (on one CPU node messages that
      stay in cache move several times faster than those that stream from memory; see fit_comm).
      GPU files give alpha and beta from public figures, per tier: within a node, between nodes.
      dist-ring overlaps: per step max(compute of the slowest rank, transfer of the K/V shard).
  bytes received    = SPEC §3 exactly: dist-heads (P-1) B N (H/P) (d+1); dist-ulysses B n H (4d+1) (P-1)/P;
      dist-ring(-zigzag) 2 (P-1) B n H d; dist-dilated 2 B d x sum over levels and heads of the kept rows of
      the rank's multi-rank segments held by other ranks (the heaviest rank's, as results report).
  peak memory       = base + element size x (the method's buffers: inputs, outputs, workspace, per
      suite/*.cpp); base = median over the calibration cases of measured peak - buffers (measured
      machines) or the runtime's reserve (GPU files).
"""

import argparse
import datetime
import json
import math
import os
import statistics
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_PATH = os.path.join(ROOT, "results", "schema.json")

SINGLE = ("vanilla", "flash", "dilated", "reference")
DIST = ("dist-heads", "dist-ulysses", "dist-ring", "dist-ring-zigzag", "dist-dilated")
RINGS = ("dist-ring", "dist-ring-zigzag")
METHODS = SINGLE + DIST
COMM_METHODS = {"comm-all-gather": "all_gather", "comm-all-to-all": "all_to_all", "comm-send-recv": "send_recv"}
ELEMENT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
LONGNET_BASE = [(2048, 1), (4096, 2), (8192, 4), (16384, 6), (32768, 12)]


class BadInput(Exception):
    """Input the model cannot use; the message names the file, field or option. Exit status 2."""


# ------------------------------------------------------------------------------------- patterns


def parse_pattern(p, where="pattern"):
    """SPEC §5 spelling -> dict with kind, causal and parameters (checked like kernels/pattern.cpp)."""
    if isinstance(p, str):
        try:
            p = json.loads(p)
        except json.JSONDecodeError as e:
            raise BadInput(f'{where}: not JSON ({e}); write it like {{"kind": "dilated", "levels": "longnet"}}')
    if not isinstance(p, dict) or not isinstance(p.get("kind"), str):
        raise BadInput(f'{where}: must be a JSON object with a "kind" (full, local, strided, fixed, dilated)')
    kind = p["kind"]
    need = {"full": [], "local": ["left", "right"], "strided": ["stride"], "fixed": ["block", "summary"],
            "dilated": ["levels"]}
    if kind not in need:
        raise BadInput(f'{where}.kind: unknown kind "{kind}"; use one of full, local, strided, fixed, dilated')
    for key in p:
        if key not in need[kind] + ["kind", "causal"]:
            raise BadInput(f'{where}.{key}: unknown field for kind "{kind}"')
    out = {"kind": kind, "causal": bool(p.get("causal", False))}
    if "causal" in p and not isinstance(p["causal"], bool):
        raise BadInput(f"{where}.causal: must be true or false")
    for key in need[kind]:
        if key not in p:
            raise BadInput(f"{where}.{key}: missing; kind {kind} needs it (SPEC §5)")
        if key == "levels":
            lv = p[key]
            if lv == "longnet":
                out["levels"] = "longnet"
            elif isinstance(lv, list) and lv and all(isinstance(x, list) and len(x) == 2 and all(
                    isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in x) for x in lv):
                out["levels"] = [tuple(x) for x in lv]
            else:
                raise BadInput(f'{where}.levels: must be "longnet" or a list of [w, r] pairs of positive integers')
        else:
            v = p[key]
            low = 1 if key in ("stride", "block", "summary") else 0
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise BadInput(f"{where}.{key}: must be an integer >= {low}, got {json.dumps(v)}")
            out[key] = v
    if kind == "fixed" and out["summary"] > out["block"]:
        raise BadInput(f"{where}.summary: must not exceed block")
    return out


def family(pat):
    """The pattern family rates are measured per: kind, plus +causal."""
    return pat["kind"] + ("+causal" if pat["causal"] else "")


def dilated_levels(pat, N):
    """SPEC §2: explicit levels as given; `longnet` = LongNet §4.2's list continued by doubling, cut
    at the first w >= N, whose w becomes N."""
    if pat["levels"] != "longnet":
        return list(pat["levels"])
    out, k, cur = [], 0, None
    while True:
        cur = LONGNET_BASE[k] if k < len(LONGNET_BASE) else (cur[0] * 2, cur[1] * 2)
        if cur[0] >= N:
            out.append((N, cur[1]))
            return out
        out.append(cur)
        k += 1


def _tri(m, causal):
    """Pairs among m kept positions attending to each other (causal: each to itself and before)."""
    return m * (m + 1) // 2 if causal else m * m


def _kept(length, o, r):
    """Kept positions o, o+r, ... in a segment of `length` positions."""
    return (length - o + r - 1) // r if length > o else 0


def dilated_pairs_head(pat, N, h):
    """Exact pairs of head h over all levels (kernels/pattern.cpp Pattern::pairs), closed form."""
    total = 0
    for w, r in dilated_levels(pat, N):
        o = h % r
        q, rem = divmod(N, w)
        total += q * _tri(_kept(w, o, r), pat["causal"]) + (_tri(_kept(rem, o, r), pat["causal"]) if rem else 0)
    return total


def row_counts(pat, i, j0, j1, N):
    """Single-level patterns: for each query i (int64 array), the number of its keys in [j0, j1)."""
    i = np.asarray(i, dtype=np.int64)
    causal = pat["causal"]
    hi_cap = np.minimum(j1, i + 1) if causal else np.full_like(i, j1)  # keys < hi_cap
    kind = pat["kind"]

    def span(lo, hi):  # |[lo, hi)|
        return np.maximum(0, hi - lo)

    if kind == "full":
        return span(np.full_like(i, j0), hi_cap)
    if kind == "local":
        lo = np.maximum(j0, i - pat["left"])
        hi = np.minimum(hi_cap, i + pat["right"] + 1)
        return span(lo, hi)
    if kind == "strided":
        l = pat["stride"]
        band_lo, band_hi = np.maximum(j0, i - l + 1), np.minimum(hi_cap, i + l)
        band = span(band_lo, band_hi)

        def congruent(a, b):  # j in [a, b) with j = i (mod l)
            a = np.asarray(a)
            b = np.asarray(b)
            c = (b - 1 - i) // l - (a - 1 - i) // l
            return np.where(b > a, c, 0)

        below = congruent(np.full_like(i, j0), np.minimum(hi_cap, i - l + 1))  # j <= i - l
        above = congruent(np.maximum(j0, i + l), hi_cap)  # j >= i + l
        return band + below + above
    if kind == "fixed":
        l, c = pat["block"], pat["summary"]

        def summ(x):  # summary columns below x
            x = np.asarray(x)
            return (x // l) * c + np.maximum(0, x % l - (l - c))

        b0 = (i // l) * l
        b1 = np.minimum(b0 + l, N)
        lo, hi = np.full_like(i, j0), hi_cap
        own_lo, own_hi = np.maximum(lo, b0), np.minimum(hi, b1)
        own = span(own_lo, own_hi)
        all_summary = np.where(hi > lo, summ(hi) - summ(lo), 0)
        own_summary = np.where(own_hi > own_lo, summ(own_hi) - summ(own_lo), 0)
        return own + all_summary - own_summary
    raise BadInput("row_counts: dilated patterns are counted per level")


def block_pairs(pat, i0, i1, j0, j1, N, chunk=1 << 20):
    """Pairs of queries [i0, i1) x keys [j0, j1) of a single-level pattern, per head."""
    if pat["kind"] == "full":
        if not pat["causal"]:
            return (i1 - i0) * (j1 - j0)
    total = 0
    for a in range(i0, i1, chunk):
        total += int(row_counts(pat, np.arange(a, min(i1, a + chunk), dtype=np.int64), j0, j1, N).sum())
    return total


def pairs_heads(pat, N, heads):
    """Exact pairs summed over the given heads (SPEC §1)."""
    if pat["kind"] == "dilated":
        return sum(dilated_pairs_head(pat, N, h) for h in heads)
    if pat["kind"] == "full":
        per = N * (N + 1) // 2 if pat["causal"] else N * N
    else:
        per = block_pairs(pat, 0, N, 0, N, N)
    return per * len(list(heads))


def dense_pairs(pat, N):
    return N * (N + 1) // 2 if pat["causal"] else N * N


def dist_dilated_ranks(pat, B, H, N, d, P):
    """Per rank (arrays of P): pairs it computes, K/V rows it receives, and per level the rows the
    heaviest rank receives and the most ranks sharing one segment. Vectorised over the pieces where
    a level's segments and the ranks' shards intersect (suite/dist_dilated.cpp, SPEC §3)."""
    n = N // P
    pairs = np.zeros(P, dtype=np.float64)
    recv = np.zeros(P, dtype=np.float64)
    levels = []
    for w, r in dilated_levels(pat, N):
        starts = np.union1d(np.arange(0, N, w, dtype=np.int64), np.arange(0, N, n, dtype=np.int64))
        ends = np.append(starts[1:], N)
        s0 = (starts // w) * w
        s1 = np.minimum(s0 + w, N)
        rank = starts // n
        multi = (s0 // n) != ((s1 - 1) // n)
        lvl_recv = np.zeros(P, dtype=np.float64)
        mult = np.bincount(np.arange(H) % r, minlength=min(r, H))  # heads per offset o = h mod r
        for o in range(min(r, H)):
            if mult[o] == 0:
                continue
            first = s0 + o
            count = np.where(s1 > first, (s1 - first + r - 1) // r, 0)

            def kept_below(x):
                return np.clip((x - first + r - 1) // r, 0, count)

            t0 = np.where(starts <= first, 0, kept_below(starts))
            t1 = np.where(ends <= first, 0, kept_below(ends))
            t0 = np.minimum(t0, t1)
            q = t1 - t0
            if pat["causal"]:
                pp = (t1 * (t1 + 1) - t0 * (t0 + 1)) // 2
            else:
                pp = q * count
            pairs += mult[o] * np.bincount(rank, weights=pp.astype(np.float64), minlength=P)
            rows = np.where(multi, count - q, 0)
            lvl_recv += mult[o] * np.bincount(rank, weights=rows.astype(np.float64), minlength=P)
        group = int(((s1 - 1) // n - s0 // n + 1).max())
        recv += lvl_recv
        levels.append({"w": w, "r": r, "recv_rows_max": float(lvl_recv.max()) * B, "group": group,
                       "shared": bool(multi.any())})
    return pairs * B, recv * B, levels


# ------------------------------------------------------------------------------ communication


def spec_bytes(method, B, H, N, d, P, pat, element_bytes):
    """Bytes received per rank (the heaviest rank's), SPEC §3."""
    if P == 1 or method in SINGLE:
        return 0.0
    n = N // P
    if method == "dist-heads":  # O and LSE gathered
        el = (P - 1) * B * N * (H // P) * (d + 1)
    elif method == "dist-ulysses":  # Q, K, V in; O and LSE out
        el = B * n * H * (4 * d + 1) * (P - 1) / P
    elif method in RINGS:
        el = 2 * (P - 1) * B * n * H * d
    elif method == "dist-dilated":
        _, recv, _ = dist_dilated_ranks(pat, B, H, N, d, P)
        el = 2 * d * recv.max()
    else:
        raise BadInput(f"--method: unknown method {method}")
    return float(el) * element_bytes


def fit_alpha_beta(steps, x, t):
    """alpha (s per step), beta (bytes/s) minimising sum (log(steps alpha + x / beta) - log t)^2:
    a log-spaced grid, refined three times around the best point."""
    steps, x, t = (np.asarray(v, dtype=np.float64) for v in (steps, x, t))
    la, lb = (-9.0, -1.0), (5.0, 13.0)  # 1 ns .. 0.1 s; 100 kB/s .. 10 TB/s
    best = None
    for _ in range(4):
        A = np.linspace(*la, 81)
        Bv = np.linspace(*lb, 81)
        pred = steps[None, None, :] * (10 ** A)[:, None, None] + x[None, None, :] / (10 ** Bv)[None, :, None]
        err = ((np.log(pred) - np.log(t)[None, None, :]) ** 2).sum(axis=2)
        ia, ib = np.unravel_index(np.argmin(err), err.shape)
        best = (A[ia], Bv[ib], err[ia, ib])
        da, db = (la[1] - la[0]) / 8, (lb[1] - lb[0]) / 8
        la, lb = (A[ia] - da, A[ia] + da), (Bv[ib] - db, Bv[ib] + db)
    alpha, beta = 10 ** best[0], 10 ** best[1]
    resid = np.log(steps * alpha + x / beta) - np.log(t)
    return alpha, beta, float(np.sqrt(np.mean(resid ** 2))), float(np.exp(np.abs(resid).max()))


def fit_comm(points):
    """Alpha-beta regimes for one operation from (steps, bytes received, seconds) points.

    One alpha-beta line over all points; or, where the per-step message size has a knee (on a CPU
    node, messages that stay in cache move several times faster than those streamed from memory),
    one line below and one above the knee, if that cuts the rms log error by a third or more. The knee is
    the measured size that fits best; below it 3 points at least, above it 2. Regimes are selected by bytes per
    step."""
    pts = sorted(points, key=lambda p: p[1] / max(1, p[0]))
    steps, x, t = (np.array(v, dtype=np.float64) for v in zip(*pts))

    def regime(lo, hi, max_bytes):
        a, b, rms, worst = fit_alpha_beta(steps[lo:hi], x[lo:hi], t[lo:hi])
        return {"max_bytes_per_step": max_bytes, "alpha_s": a, "beta_Bps": b, "points": hi - lo,
                "rms_log_error": round(rms, 4), "worst_ratio": round(worst, 3),
                "bytes_range": [float(x[lo]), float(x[hi - 1])]}

    one = [regime(0, len(pts), None)]
    best, best_rms = one, one[0]["rms_log_error"]
    for k in range(3, len(pts) - 1):
        lo_r, hi_r = regime(0, k, float(x[k - 1] / steps[k - 1])), regime(k, len(pts), None)
        rms = math.sqrt((lo_r["rms_log_error"] ** 2 * k + hi_r["rms_log_error"] ** 2 * (len(pts) - k)) / len(pts))
        if rms < best_rms:
            best, best_rms = [lo_r, hi_r], rms
    return best if len(best) == 1 or best_rms <= (2 / 3) * one[0]["rms_log_error"] else one


def comm_regime(regimes, bytes_per_step):
    for r in regimes:
        if r.get("max_bytes_per_step") is None or bytes_per_step <= r["max_bytes_per_step"]:
            return r
    return regimes[-1]


# ------------------------------------------------------------------------------------- machines


def _positive(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 and math.isfinite(v)


def _require(d, keys, where):
    for k in keys:
        if k not in d:
            raise BadInput(f"{where}: missing field {k}")


class Machine:
    """A machine file: `kind` "measured" (from --calibrate) or "gpu" (public figures)."""

    def __init__(self, data, path="machine"):
        if not isinstance(data, dict):
            raise BadInput(f"{path}: a machine file is a JSON object")
        _require(data, ["name", "kind"], path)
        self.path, self.data, self.name, self.kind = path, data, data["name"], data["kind"]
        if self.kind == "measured":
            _require(data, ["cores", "compute", "communication", "memory", "sources"], path)
            if not isinstance(data["compute"].get("kernels"), dict) or not data["compute"]["kernels"]:
                raise BadInput(f"{path}: compute.kernels: missing or empty; calibrate from results with vanilla/flash/dilated cases")
            for k, fams in data["compute"]["kernels"].items():
                for fam, by_t in (fams.items() if isinstance(fams, dict) and fams else [(None, None)]):
                    for t, pts in (by_t.items() if isinstance(by_t, dict) and by_t else [(None, None)]):
                        if not (isinstance(pts, list) and pts and all(
                                isinstance(x, list) and len(x) == 2 and all(_positive(v) for v in x) for x in pts)):
                            raise BadInput(f"{path}: compute.kernels.{k}.{fam}.{t}: must be a list of [N, GFLOP/s] pairs")
            ops = data["communication"].get("ops", {}) if isinstance(data["communication"], dict) else None
            if not isinstance(ops, dict):
                raise BadInput(f"{path}: communication.ops: must be an object")
            for op, v in ops.items():
                regs = v.get("regimes") if isinstance(v, dict) else None
                if not (isinstance(regs, list) and regs and all(
                        isinstance(r, dict) and _positive(r.get("alpha_s")) and _positive(r.get("beta_Bps")) for r in regs)):
                    raise BadInput(f"{path}: communication.ops.{op}.regimes: a list of {{alpha_s, beta_Bps}} (positive)")
            if not isinstance(data["memory"], dict):
                raise BadInput(f"{path}: memory: must be an object")
            if not _positive(data["cores"]):
                raise BadInput(f"{path}: cores: must be a positive number")
            self.cores = int(data["cores"])
            self.element_bytes = 4
            self.dtype = "fp32"
        elif self.kind == "gpu":
            _require(data, ["device", "dtype", "peak_tflops_dense", "achieved_fraction", "memory_bytes",
                            "memory_bandwidth_Bps", "interconnect", "sources"], path)
            _require(data["interconnect"], ["devices_per_node", "intra_node"], path + ": interconnect")
            for key in ("peak_tflops_dense", "memory_bytes", "memory_bandwidth_Bps"):
                if not _positive(data[key]):
                    raise BadInput(f"{path}: {key}: must be a positive number")
            if not isinstance(data["achieved_fraction"], dict) or not _positive(data["achieved_fraction"].get("flash")):
                raise BadInput(f"{path}: achieved_fraction.flash: must be a positive number")
            for tier in ("intra_node", "inter_node"):
                t = data["interconnect"].get(tier)
                if t is not None and not (isinstance(t, dict) and _positive(t.get("alpha_s")) and _positive(t.get("beta_Bps"))):
                    raise BadInput(f"{path}: interconnect.{tier}: needs positive alpha_s and beta_Bps")
            self.cores = 1
            self.dtype = data["dtype"]
            if self.dtype not in ELEMENT_BYTES:
                raise BadInput(f"{path}: dtype: one of {', '.join(ELEMENT_BYTES)}")
            self.element_bytes = ELEMENT_BYTES[self.dtype]
        else:
            raise BadInput(f'{path}: kind: "measured" or "gpu", got {json.dumps(self.kind)}')

    @staticmethod
    def load(path):
        return Machine(load_json(path), path)

    def default_threads(self, P):
        return max(1, self.cores // max(1, P)) if self.kind == "measured" else 1

    def memory_bytes_per_device(self):
        return float(self.data.get("memory_bytes_per_device", self.data.get("memory_bytes", 0)) or 0)

    # ---- compute

    def _rate(self, kernel, fam, threads, N, notes):
        """Measured GFLOP/s for kernel / family / threads at sequence length N."""
        kernels = self.data["compute"]["kernels"]
        if kernel not in kernels:
            raise BadInput(f"{self.path}: no measured rates for kernel {kernel}; calibrate with results that hold {kernel} cases")
        fams = kernels[kernel]
        use = fam
        if use not in fams:
            causal = fam.endswith("+causal")
            kind = fam.split("+")[0]
            cands = [f for f in fams if f.split("+")[0] == kind] + \
                    [f for f in fams if f.split("+")[0] == "full" and f.endswith("+causal") == causal] + \
                    [f for f in fams if f.split("+")[0] == "full"] + sorted(fams)
            use = cands[0]
            notes.append(f"{kernel}: no rates for {fam}, used {use}")
        by_threads = fams[use]
        if str(threads) in by_threads:
            pts, scale = by_threads[str(threads)], 1.0
        else:
            have = sorted(int(t) for t in by_threads)
            t0 = min(have, key=lambda t: (abs(math.log(t / threads)), -t))
            pts = by_threads[str(t0)]
            sg = self.data.get("sgemm_gflops_per_rank", {})
            if str(threads) in sg and str(t0) in sg:
                scale = sg[str(threads)] / sg[str(t0)]
                how = "sgemm ratio"
            else:
                scale = threads / t0
                how = "linear in threads"
            notes.append(f"{kernel} {use}: {threads} threads not measured, scaled from {t0} ({how}, x{scale:.2f})")
        Ns = np.array([p[0] for p in pts], dtype=np.float64)
        rs = np.array([p[1] for p in pts], dtype=np.float64)
        if len(Ns) == 1:
            r = rs[0]
        else:
            r = float(np.exp(np.interp(math.log(N), np.log(Ns), np.log(rs))))
        return r * scale * 1e9

    def kernel_time(self, kernel, fam, flops, dense_flops, scores, N, io_elems, d, threads, calls, notes):
        """Seconds for one rank to run `kernel` on work of `flops` exact FLOPs (vanilla: dense_flops
        as the results count them; GPU vanilla: every one of `scores` score elements computed, 4 d
        FLOPs each, and moved). N: the sequence length the kernel runs over (selects the measured
        rate). io_elems: elements of Q, K, V, O the kernel reads and writes (GPU memory traffic)."""
        if flops <= 0 and dense_flops <= 0:
            return 0.0
        if self.kind == "measured":
            work = dense_flops if kernel == "vanilla" else flops
            return work / self._rate(kernel, fam, threads, N, notes)
        g = self.data
        peak = g["peak_tflops_dense"] * 1e12
        frac = g["achieved_fraction"]
        launch = g.get("kernel_launch_s", 0.0) * calls
        e = self.element_bytes
        io = io_elems * e
        if kernel == "vanilla":
            v = g.get("vanilla", {})
            traffic = v.get("score_traffic_bytes_per_element", 8) * scores
            return 4 * d * scores / (peak * frac.get("vanilla_gemm", frac["flash"])) + (traffic + io) / g["memory_bandwidth_Bps"] + launch
        f = frac.get(kernel, frac["flash"])
        return flops / (peak * f) + io / g["memory_bandwidth_Bps"] + launch

    # ---- communication

    def comm_time(self, op, nbytes, steps, P, notes):
        if nbytes <= 0 and steps <= 0:
            return 0.0
        if self.kind == "measured":
            ops = self.data["communication"].get("ops", {})
            use = op if op in ops else next((o for o in ("all_to_all", "all_gather", "send_recv") if o in ops), None)
            if use is None:
                raise BadInput(f"{self.path}: communication.ops is empty; calibrate with a comm results file (suite/comm.json at -np >= 2)")
            if use != op:
                notes.append(f"no fit for {op}, used {use}")
            reg = comm_regime(ops[use]["regimes"], nbytes / max(1, steps))
            a, b = reg["alpha_s"], reg["beta_Bps"]
        else:
            ic = self.data["interconnect"]
            tier = ic["intra_node"] if P <= ic["devices_per_node"] or "inter_node" not in ic else ic["inter_node"]
            a, b = tier["alpha_s"], tier["beta_Bps"]
        return steps * a + nbytes / b

    # ---- memory

    def memory(self, method, kernel, B, H, N, d, P, threads, pat, dd_levels=None):
        """Peak bytes per rank: base + buffers (suite/*.cpp, harness/run.cpp)."""
        F = B * N * H * d
        part = F / P
        lse = B * H * N
        gpu = self.kind == "gpu"
        e = self.element_bytes
        if gpu:
            base = self.data.get("runtime_reserve_bytes", 0.0)
            threads = 0  # no per-thread packed copies
        else:
            bases = self.data["memory"].get("base_bytes_per_rank", {})
            key = str(P) if str(P) in bases else (min(bases, key=lambda k: abs(int(k) - P)) if bases else None)
            base = bases[key] if key else 0.0

        def kernel_extra(kern, rows, heads):
            if kern == "vanilla":
                if gpu:
                    return B * heads * rows * rows * self.data.get("vanilla", {}).get("score_resident_bytes_per_element", 4) / e
                return rows * rows  # one N x N score buffer, heads in turn
            if kern == "flash":
                return 2 * rows * d * threads  # K/V packed per thread
            return B * heads * rows  # dilated: its own lse

        if method in SINGLE:
            el = 4 * F + lse + kernel_extra(kernel, N, H)
        elif method == "dist-heads":
            el = 4 * F + 4 * part + F + kernel_extra(kernel, N, H // P)
        elif method == "dist-ulysses":
            el = 4 * part + 10 * part + kernel_extra(kernel, N, H // P)
        elif method in RINGS:
            n = N // P
            el = 4 * part + 5 * part + 2 * lse / P + kernel_extra(kernel, n, H)
        else:  # dist-dilated: send, receive and gathered rows of the largest level
            gathered = max((lv["recv_rows_max"] for lv in (dd_levels or [])), default=0.0) * 2 * d
            el = 4 * part + lse / P + 3 * gathered
        return base + e * el


# ------------------------------------------------------------------------------------ prediction


def auto_kernel(pat):
    return "dilated" if pat["kind"] == "dilated" else "flash"


def predict(machine, method, pat, B, H, N, d, P, threads=None, kernel=None, dtype=None, ranks_per_node=None):
    """Per-rank prediction for one case. Returns a dict (times in ms). ranks_per_node: ranks sharing
    a node's cores (default P on a measured machine); more ranks x threads than cores share them, so
    the compute of a distributed method stretches by that factor (an oversubscribed run)."""
    for name, v in (("B", B), ("H", H), ("N", N), ("d", d), ("world", P)):
        if not isinstance(v, int) or v < 1:
            raise BadInput(f"--{name}: must be a positive integer, got {v}")
    if method not in METHODS:
        raise BadInput(f"--method: unknown method {method!r}; one of {', '.join(METHODS)}")
    if method in SINGLE:
        P = 1
    if method in DIST:
        if N % P:
            raise BadInput(f"--N: N = {N} is not divisible by the world size {P}")
        if method in ("dist-heads", "dist-ulysses") and H % P:
            raise BadInput(f"--H: H = {H} is not divisible by the world size {P}")
        if method in RINGS and pat["kind"] == "dilated":
            raise BadInput(f"--method: {method} passes whole K/V shards; dilated patterns run on dist-dilated")
        if method == "dist-ring-zigzag" and N % (2 * P):
            raise BadInput(f"--N: N = {N} is not divisible by 2 x the world size {2 * P} (zig-zag cuts 2P chunks)")
        if method == "dist-dilated" and pat["kind"] != "dilated":
            raise BadInput("--method: dist-dilated runs dilated patterns only")
    if method in ("flash",) and pat["kind"] == "dilated":
        raise BadInput("--method: flash runs single-level patterns; dilated runs on the dilated kernel")
    if method == "dilated" and pat["kind"] != "dilated":
        raise BadInput("--method: the dilated kernel runs dilated patterns only")
    threads = threads or machine.default_threads(P)
    e = ELEMENT_BYTES[dtype] if dtype else machine.element_bytes
    notes = []
    fam = family(pat)
    n = N // P
    flops_total = 4.0 * d * B * pairs_heads(pat, N, range(H))
    flops_dense = 4.0 * d * B * H * dense_pairs(pat, N)
    comm_s = 0.0
    dd_levels = None
    detail = {}

    if method in SINGLE:
        kern = method
        calls = 3 if kern == "vanilla" else (len(dilated_levels(pat, N)) if kern == "dilated" else 1)
        comp_s = machine.kernel_time(kern, fam, flops_total, flops_dense, B * H * N * N, N,
                                     4 * B * N * H * d * (calls if kern == "dilated" else 1), d, threads, calls, notes)
        flops_rank = flops_dense if kern == "vanilla" else flops_total
    elif method in ("dist-heads", "dist-ulysses"):
        kern = kernel or auto_kernel(pat)
        hp = H // P
        per_rank = [4.0 * d * B * pairs_heads(pat, N, range(p * hp, (p + 1) * hp)) for p in range(P)] \
            if pat["kind"] == "dilated" else [flops_total / P] * P
        flops_rank = max(per_rank)
        calls = len(dilated_levels(pat, N)) if kern == "dilated" else (3 if kern == "vanilla" else 1)
        comp_s = machine.kernel_time(kern, fam, flops_rank, flops_dense / P, B * hp * N * N, N,
                                     4 * B * N * hp * d * (calls if kern == "dilated" else 1), d, threads, calls, notes)
        nbytes = spec_bytes(method, B, H, N, d, P, pat, e)
        if method == "dist-heads":
            comm_s = machine.comm_time("all_gather", nbytes, P - 1, P, notes) if P > 1 else 0.0
        else:  # two all-to-alls: Q, K, V in (3d of the 4d + 1 elements per row), O and LSE out
            into = 3 * d / (4 * d + 1)
            comm_s = (machine.comm_time("all_to_all", nbytes * into, P - 1, P, notes) +
                      machine.comm_time("all_to_all", nbytes * (1 - into), P - 1, P, notes)) if P > 1 else 0.0
    elif method in RINGS:
        # Ring attention (suite/dist_ring.cpp): P steps; at step s rank p attends its query ranges
        # to the K/V ranges of rank (p - s) mod P, one kernel call per (query range, key range,
        # batch) the pattern does not leave empty, while the next K/V is in flight. Plain shards:
        # one range of n per rank; zig-zag: chunks p and 2P-1-p of c = N/(2P).
        kern = kernel or "flash"
        zig = method == "dist-ring-zigzag"
        msg = 2.0 * B * n * H * d * e
        xfer = machine.comm_time("send_recv", msg, 1, P, notes) if P > 1 else 0.0
        full_fam = "full" if pat["kind"] == "full" else fam
        total_s = comm_total = comp_total = 0.0
        calls = 3 if kern == "vanilla" else 1
        c = n // 2 if zig else n  # rows of one range

        def block_time(pairs, fam_, dense):
            f = 4.0 * d * B * H * pairs
            return machine.kernel_time(kern, fam_, f, 4.0 * d * B * H * dense, B * H * c * c, c, 4 * B * c * H * d, d,
                                       threads, calls * B, notes)

        if pat["kind"] == "full":
            # Closed form, per step: (number of full c x c blocks, of diagonal blocks) on the
            # busiest rank. Plain: step 0 the diagonal block, later steps one full block (causal:
            # on the ranks whose source is in their past; rank P-1 has them all). Zig-zag: step 0
            # two diagonal blocks and one full (causal; else four full), later steps two full
            # blocks (causal) or four, on every rank alike.
            tri = dense_pairs(pat, c)
            if zig:
                first = (1, 2) if pat["causal"] else (4, 0)
                later = 2 if pat["causal"] else 4
            else:
                first = (0, 1) if pat["causal"] else (1, 0)
                later = 1
            t_full = block_time(c * c, full_fam, c * c)
            t_diag = block_time(tri, fam, tri)
            t0 = first[0] * t_full + first[1] * t_diag
            t_later = later * t_full
            segs = [(1, t0, xfer if P > 1 else 0.0)]  # step 0
            if P > 2:
                segs.append((P - 2, t_later, xfer))  # steps 1 .. P-2
            if P > 1:
                segs.append((1, t_later, 0.0))  # step P-1: nothing left to pass on
            for w, comp, x in segs:
                total_s += w * max(comp, x)
                comp_total += w * comp
                comm_total += w * x
            rank_flops = np.array([4.0 * d * B * H * (first[0] * c * c + first[1] * tri + (P - 1) * later * c * c)])
        else:
            if P * P * n > 5e8:
                raise BadInput(f"{method} with pattern {fam} at P = {P}, N = {N} is too large to count block by block")

            def ranges(q):
                return [(q * c, c), ((2 * P - 1 - q) * c, c)] if zig else [(q * n, n)]

            rank_flops = np.zeros(P)
            for step in range(P):
                step_max = 0.0
                for p in range(P):
                    src = (p - step) % P
                    t = 0.0
                    for q0, qn in ranges(p):
                        for k0, kn in ranges(src):
                            bp = block_pairs(pat, q0, q0 + qn, k0, k0 + kn, N)
                            if bp:
                                rank_flops[p] += 4.0 * d * B * H * bp
                                t += block_time(bp, fam, bp)
                    step_max = max(step_max, t)
                x = xfer if step + 1 < P else 0.0
                total_s += max(step_max, x)
                comp_total += step_max
                comm_total += x
        flops_rank = float(rank_flops.max())
        # report the part of the time the transfer is not hidden as communication
        comp_s = comp_total
        comm_s = total_s - comp_total
        detail["transfer_ms_per_step"] = xfer * 1e3
        detail["transfer_total_ms"] = comm_total * 1e3
    else:  # dist-dilated
        kern = "dilated"
        pairs, _, dd_levels = dist_dilated_ranks(pat, B, H, N, d, P)
        flops_rank = 4.0 * d * float(pairs.max())
        comp_s = machine.kernel_time(kern, fam, flops_rank, flops_rank, 0, N, 4 * B * n * H * d * len(dd_levels), d,
                                     threads, len(dd_levels), notes)
        if P > 1:
            for lv in dd_levels:
                if lv["shared"]:
                    comm_s += machine.comm_time("all_to_all", 2.0 * d * lv["recv_rows_max"] * e, lv["group"] - 1, P, notes)
        detail["levels"] = [{"w": lv["w"], "r": lv["r"], "shared": lv["shared"], "ranks_per_segment": lv["group"],
                             "bytes_received_max": 2.0 * d * lv["recv_rows_max"] * e} for lv in dd_levels]

    if method in DIST and machine.kind == "measured":
        busy = (ranks_per_node or P) * threads
        if busy > machine.cores:
            comp_s *= busy / machine.cores
            notes.append(f"oversubscribed: {busy} threads on {machine.cores} cores, compute x{busy / machine.cores:.2f}")
    nbytes = spec_bytes(method, B, H, N, d, P, pat, e) if method != "dist-dilated" else \
        (2.0 * d * e * float(dist_dilated_ranks(pat, B, H, N, d, P)[1].max()) if P > 1 else 0.0)
    mem = machine.memory(method, kern, B, H, N, d, P, threads, pat, dd_levels)
    cap = machine.memory_bytes_per_device()
    out = {
        "machine": machine.name, "method": method, "kernel": kern, "pattern": fam, "B": B, "H": H, "N": N, "d": d,
        "world": P, "threads_per_rank": threads, "element_bytes": e,
        "time_ms": (comp_s + comm_s) * 1e3, "compute_ms": comp_s * 1e3, "comm_ms": comm_s * 1e3,
        "flops": flops_total, "flops_dense": flops_dense, "flops_per_rank": flops_rank,
        "bytes_received_per_rank": nbytes, "peak_memory_bytes_per_rank": mem,
        "memory_bytes_per_device": cap, "fits_memory": (mem <= cap) if cap > 0 else None,
        "notes": sorted(set(notes)),
    }
    out.update(detail)
    return out


# ------------------------------------------------------------------------------------- results files


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise BadInput(f"{path}: cannot read: {e.strerror}")
    except json.JSONDecodeError as e:
        raise BadInput(f"{path}: not JSON: {e}")


_validator = None


def load_results(path):
    """A results file, checked against results/schema.json (first failing field named)."""
    global _validator
    data = load_json(path)
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - Debian's python3-jsonschema is expected
        jsonschema = None
    if jsonschema is not None and os.path.exists(SCHEMA_PATH):
        if _validator is None:
            with open(SCHEMA_PATH) as f:
                schema = json.load(f)
            _validator = jsonschema.Draft202012Validator(schema)
        # Fields harness/run.cpp writes that a schema predating them may not know are checked here:
        # comm_bench (the comm-* microbenchmarks' nccl-tests figures) and the zigzag layout
        # (dist-ring-zigzag; checked against the schema as "sharded").
        probe = data
        if isinstance(data, dict) and isinstance(data.get("cases"), list):
            def lenient(c):
                if not isinstance(c, dict):
                    return c
                c = {k: v for k, v in c.items() if k != "comm_bench"}
                if c.get("layout") == "zigzag":
                    c["layout"] = "sharded"
                return c
            probe = dict(data, cases=[lenient(c) for c in data["cases"]])
            for i, c in enumerate(data["cases"]):
                cb = c.get("comm_bench") if isinstance(c, dict) else None
                if cb is not None and not (isinstance(cb, dict) and all(
                        isinstance(cb.get(k), (int, float)) for k in ("message_bytes", "algbw_GBps", "busbw_GBps"))):
                    raise BadInput(f"{path}: not a longattn results file: cases[{i}].comm_bench: needs numeric "
                                   "message_bytes, algbw_GBps, busbw_GBps")
        err = jsonschema.exceptions.best_match(_validator.iter_errors(probe))
        if err is not None:
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path) or "(top level)"
            raise BadInput(f"{path}: not a longattn results file: {where.lstrip('.')}: {err.message[:300]}")
    elif not isinstance(data, dict) or "cases" not in data or "context" not in data:
        raise BadInput(f"{path}: not a longattn results file (no context/cases)")
    return data


def ok_cases(data):
    return [c for c in data["cases"] if c.get("status") == "ok" and "time_ms" in c]


# ------------------------------------------------------------------------------------- calibration


def case_elements(c, P):
    """fp32 elements the harness and method allocate for a measured case (for the memory base)."""
    if c["method"] in COMM_METHODS:
        part = c["B"] * c["N"] * c["H"] * c["d"] / P
        return 4 * part + part * (P if c["method"] == "comm-all-gather" else 1)
    return None


def calibrate(kernel_files, comm_files, name, out):
    sources, rates, sgemm, base = [], {}, {}, {}
    cores, cpu = None, None
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
        sgemm.setdefault(str(ctx["threads_per_rank"]), []).append(ctx["sgemm_gflops_per_rank"])
        used = 0
        for c in ok_cases(data):
            t = c["time_ms"]["median"] * 1e-3
            if t <= 0:
                continue
            if role == "kernels" and c["layout"] == "single" and c["device"] == "cpu" and c["method"] in SINGLE:
                pat = parse_pattern(c["pattern"], f"{path}: case {c['name']}: pattern")
                work = c["flops_dense"] if c["method"] == "vanilla" else c["flops"]
                if work <= 0:
                    continue
                fam = rates.setdefault(c["method"], {}).setdefault(family(pat), {})
                fam.setdefault(str(c["threads_per_rank"]), []).append([c["N"], work / t / 1e9, c["B"], c["H"], c["d"], path])
                used += 1
            if role == "comm" and c["method"] in COMM_METHODS and c["ranks"] > 1:
                op = COMM_METHODS[c["method"]]
                steps = 1 if op == "send_recv" else c["world"] - 1
                comm_points.setdefault(op, []).append((steps, c["comm"]["bytes_received_per_rank"], t))
                used += 1
            # memory base: measured peak less the buffers the model counts
            if c["device"] == "cpu" and c.get("peak_memory_bytes_per_rank", 0) > 0:
                if c["method"] in COMM_METHODS:
                    el = case_elements(c, P)
                else:
                    try:
                        pat = parse_pattern(c["pattern"])
                        kern = c["method"] if c["method"] in SINGLE else ("dilated" if pat["kind"] == "dilated" else "flash")
                        dd = dist_dilated_ranks(pat, c["B"], c["H"], c["N"], c["d"], c["world"])[2] \
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
        raise BadInput("--kernels: no ok single-device cases (vanilla, flash, dilated) in " + ", ".join(kernel_files))
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
        "description": f"Calibrated by harness/model.py --calibrate from {len(sources)} results file(s); "
                       "a device is one rank with threads_per_rank threads of this machine.",
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu_model": cpu,
        "cores": cores,
        "memory_bytes_per_device": mem_total,
        "memory_source": "MemTotal of /proc/meminfo on the host that ran --calibrate",
        "sgemm_gflops_per_rank": {t: round(statistics.median(v), 3) for t, v in sorted(sgemm.items())},
        "compute": {
            "rate": "GFLOP/s = flops / median time (vanilla: flops_dense / median time), per kernel, "
                    "pattern family and threads per rank, as [N, GFLOP/s] (median over files and shapes)",
            "kernels": kernels,
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


# -------------------------------------------------------------------------------------- validation


def fmt_bytes(b):
    for unit, s in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= s:
            return f"{b / s:.3g} {unit}"
    return f"{b:.0f} B"


def validate(paths, machine):
    srcs = machine.data.get("sources", [])
    cal_keys = {(s.get("suite"), s.get("date")) for s in srcs if isinstance(s, dict)} if isinstance(srcs, list) else set()
    kinds = set()
    rows, errs, held = [], [], []
    for path in paths:
        data = load_results(path)
        ctx = data["context"]
        in_cal = (data["suite"], ctx["date"]) in cal_keys
        for c in ok_cases(data):
            if c["method"] in COMM_METHODS or c["method"] not in METHODS:
                continue
            pat = parse_pattern(c["pattern"], f"{path}: case {c['name']}: pattern")
            try:
                pr = predict(machine, c["method"], pat, c["B"], c["H"], c["N"], c["d"], c["world"],
                             threads=c["threads_per_rank"], dtype=c["dtype"],
                             ranks_per_node=ctx.get("ranks_per_node"))
            except BadInput as e:
                raise BadInput(f"{path}: case {c['name']}: {e}")
            kinds.add(c["device"])
            meas = c["time_ms"]["median"]
            err = (pr["time_ms"] - meas) / meas * 100 if meas > 0 else float("inf")
            mb = c["comm"]["bytes_received_per_rank"]
            bytes_ok = abs(pr["bytes_received_per_rank"] - mb) <= 1e-6 * max(1.0, mb)
            rows.append((os.path.basename(path), c, pr, meas, err, bytes_ok, in_cal))
            errs.append(abs(err))
            if not in_cal or c["method"] in DIST:
                held.append(abs(err))
    if not rows:
        raise BadInput("--validate: no ok attention cases in " + ", ".join(paths))
    want = "cuda" if machine.kind == "gpu" else "cpu"
    if kinds - {want}:
        print(f"model.py: warning: {machine.path} describes a {machine.kind} machine, but some cases ran on "
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
        print(f"model.py: error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv=None):
    ap = Parser(prog="model.py", description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--validate", nargs="+", metavar="RESULTS.json", help="predict every ok attention case and compare")
    ap.add_argument("--calibrate", action="store_true", help="write a machine file from measured results")
    ap.add_argument("--kernels", nargs="+", default=[], metavar="RESULTS.json", help="--calibrate: results with single-device cases")
    ap.add_argument("--comm", nargs="+", default=[], metavar="RESULTS.json", help="--calibrate: suite/comm.json results (-np >= 2)")
    ap.add_argument("--name", help="--calibrate: the machine's name")
    ap.add_argument("--out", help="--calibrate: machine file to write (results/machines/NAME.json)")
    ap.add_argument("--machine", metavar="M.json", help="machine file (results/machines/*.json)")
    ap.add_argument("--method", help="predict: " + ", ".join(METHODS))
    ap.add_argument("--pattern", default='{"kind": "full"}', help='predict: SPEC §5 JSON, e.g. \'{"kind": "dilated", "levels": "longnet", "causal": true}\'')
    ap.add_argument("--B", type=int, default=1)
    ap.add_argument("--H", type=int)
    ap.add_argument("--N", type=int)
    ap.add_argument("--d", type=int)
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
        pr = predict(machine, a.method, pat, a.B, a.H, a.N, a.d, a.world, a.threads, a.kernel, a.dtype)
        if a.json:
            print(json.dumps(pr, indent=1))
        else:
            print_prediction(pr)
        return 0
    except BadInput as e:
        print(f"model.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # output piped into head and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
