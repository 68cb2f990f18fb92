"""Communication fits: alpha-beta lines per operation, split at a message-size knee where that pays."""

import math

import numpy as np


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
