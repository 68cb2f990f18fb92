"""SPEC formulas: patterns (§2), pairs and FLOPs (§1), bytes received per method (§3)."""

import json

import math

import numpy as np

from . import catalog
from .errors import BadInput


ELEMENT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
LONGNET_BASE = [(2048, 1), (4096, 2), (8192, 4), (16384, 6), (32768, 12)]


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


def rate_axis(pat, N):
    """What a measured rate varies with: a local window's width (block skipping makes the band's
    rate depend on it, not on N), else the sequence length. Returns (name, value)."""
    if pat["kind"] == "local":
        return "window", min(N, pat["left"] + (0 if pat["causal"] else pat["right"]) + 1)
    return "N", N


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


def dist_dilated_ranks(pat, B, H, N, d, P, H_kv=None):
    """Per rank (arrays of P): pairs it computes, K/V rows it receives, and per level the rows the
    heaviest rank receives and the most ranks sharing one segment. Vectorised over the pieces where
    a level's segments and the ranks' shards intersect (suite/dist_dilated.cpp, SPEC §3). With GQA
    the rows travel once per unit, a KV head with one offset (kv_units in suite/dist_dilated.cpp)."""
    G = H // (H_kv or H)
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
        units = sorted({(h // G, h % r) for h in range(H)})
        umult = np.bincount([o for _, o in units], minlength=min(r, H))  # units per offset
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
            lvl_recv += umult[o] * np.bincount(rank, weights=rows.astype(np.float64), minlength=P)
        group = int(((s1 - 1) // n - s0 // n + 1).max())
        recv += lvl_recv
        levels.append({"w": w, "r": r, "recv_rows_max": float(lvl_recv.max()) * B, "group": group,
                       "shared": bool(multi.any())})
    return pairs * B, recv * B, levels


# ------------------------------------------------------------------------------ communication


def usp_degree(P, H_kv, ulysses=0):
    """dist-usp's Ulysses degree: as asked, else the largest dividing both P and H_kv."""
    return ulysses or math.gcd(P, H_kv)


def kv_heads_per_member(H_kv, u):
    """KV heads a member of a Ulysses group of u holds: H_kv / u, or one replicated (split_heads)."""
    return H_kv // u if H_kv % u == 0 else 1


def ulysses_elements(B, H, H_kv, d, u, m):
    """One Ulysses exchange in a group of u, m rows per member: Q (H/u heads), K and V (kvp heads) in
    from each other member, O and LSE out."""
    return (u - 1) * B * m * ((H // u) * (2 * d + 1) + 2 * kv_heads_per_member(H_kv, u) * d)


def spec_bytes(method, B, H, N, d, P, pat, element_bytes, H_kv=None, ulysses=0):
    """Bytes received per rank (the heaviest rank's), SPEC §3. H_kv: K and V heads (GQA; None: H);
    ulysses: dist-usp's degree (0: its default)."""
    if P == 1 or method in catalog.single():
        return 0.0
    n, Hk = N // P, H_kv or H
    if method == "dist-heads":  # O and LSE gathered
        el = (P - 1) * B * N * (H // P) * (d + 1)
    elif method == "dist-ulysses":  # Q, K, V in; O and LSE out
        el = ulysses_elements(B, H, Hk, d, P, n)
    elif method == "dist-usp":  # Ulysses in groups of u, then the ring of R = P / u over the groups
        u = usp_degree(P, Hk, ulysses)
        R = P // u
        el = ulysses_elements(B, H, Hk, d, u, n) + 2 * (R - 1) * B * (N // R) * kv_heads_per_member(Hk, u) * d
    elif method in catalog.rings() or method == "dist-allgather":  # K and V of every other rank
        el = 2 * (P - 1) * B * n * Hk * d
    elif method == "dist-dilated":
        _, recv, _ = dist_dilated_ranks(pat, B, H, N, d, P, H_kv)
        el = 2 * d * recv.max()
    else:
        raise BadInput(f"--method: unknown method {method}")
    return float(el) * element_bytes
