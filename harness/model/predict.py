"""Prediction: per-rank time, memory and bytes of one method on one machine."""

import numpy as np

from . import catalog
from .errors import BadInput
from .spec import (ELEMENT_BYTES, block_pairs, dense_pairs, dilated_levels, dist_dilated_ranks, family,
                   kv_heads_per_member, pairs_heads, spec_bytes, ulysses_elements, usp_degree)


def auto_kernel(pat):
    return "dilated" if pat["kind"] == "dilated" else "flash"


def ulysses_comm_time(machine, B, H, Hk, d, u, m, e, P, notes):
    """The Ulysses exchange in a group of u ranks holding m rows each: two all-to-alls, Q, K, V in
    (H/u query heads, kvp KV heads), then O and LSE out (SPEC §3)."""
    if u == 1:
        return 0.0
    hp, kvp = H // u, kv_heads_per_member(Hk, u)
    total = ulysses_elements(B, H, Hk, d, u, m) * e
    into = (hp * d + 2 * kvp * d) / (hp * (2 * d + 1) + 2 * kvp * d)
    return (machine.comm_time("all_to_all", total * into, u - 1, P, notes) +
            machine.comm_time("all_to_all", total * (1 - into), u - 1, P, notes))


def predict(machine, method, pat, B, H, N, d, P, threads=None, kernel=None, dtype=None, ranks_per_node=None,
            H_kv=None, ulysses=0):
    """Per-rank prediction for one case. Returns a dict (times in ms). ranks_per_node: ranks sharing
    a node's cores (default P on a measured machine); more ranks x threads than cores share them, so
    the compute of a distributed method stretches by that factor (an oversubscribed run). H_kv: K and
    V heads (GQA; None: H); ulysses: dist-usp's Ulysses degree (0: its default)."""
    Hk = H_kv or H
    if H % Hk:
        raise BadInput(f"--H_kv: H_kv = {Hk} does not divide H = {H}")
    for name, v in (("B", B), ("H", H), ("N", N), ("d", d), ("world", P)):
        if not isinstance(v, int) or v < 1:
            raise BadInput(f"--{name}: must be a positive integer, got {v}")
    if method not in catalog.attention():
        raise BadInput(f"--method: unknown method {method!r}; one of {', '.join(catalog.attention())}")
    if method in catalog.single():
        P = 1
    if method in catalog.distributed():
        if N % P:
            raise BadInput(f"--N: N = {N} is not divisible by the world size {P}")
        if method in ("dist-heads", "dist-ulysses") and H % P:
            raise BadInput(f"--H: H = {H} is not divisible by the world size {P}")
        if method in ("dist-heads", "dist-ulysses") and Hk % P and P % Hk:
            raise BadInput(f"--H_kv: H_kv = {Hk} and the world size {P} do not divide one another (KV heads are "
                           "split or replicated evenly)")
        if method == "dist-usp":
            u = usp_degree(P, Hk, ulysses)
            if P % u or H % u or (Hk % u and u % Hk) or N % (2 * P):
                raise BadInput(f"--ulysses: degree {u} does not split P = {P}, H = {H}, H_kv = {Hk}, N = {N} "
                               "(u divides P and H; u and H_kv divide one another; 2P divides N)")
        if method in catalog.rings() | {"dist-usp"} and pat["kind"] == "dilated":
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
    dt = dtype or machine.dtype
    notes = []
    fam = family(pat)
    n = N // P
    flops_total = 4.0 * d * B * pairs_heads(pat, N, range(H))
    flops_dense = 4.0 * d * B * H * dense_pairs(pat, N)
    comm_s = 0.0
    dd_levels = None
    detail = {}

    if method in catalog.single():
        kern = method
        calls = 3 if kern == "vanilla" else (len(dilated_levels(pat, N)) if kern == "dilated" else 1)
        comp_s = machine.kernel_time(kern, fam, flops_total, flops_dense, B * H * N * N, N,
                                     4 * B * N * H * d * (calls if kern == "dilated" else 1), d, threads, calls, notes, dtype=dt, pat=pat)
        flops_rank = flops_dense if kern == "vanilla" else flops_total
    elif method in ("dist-heads", "dist-ulysses"):
        kern = kernel or auto_kernel(pat)
        hp = H // P
        per_rank = [4.0 * d * B * pairs_heads(pat, N, range(p * hp, (p + 1) * hp)) for p in range(P)] \
            if pat["kind"] == "dilated" else [flops_total / P] * P
        flops_rank = max(per_rank)
        calls = len(dilated_levels(pat, N)) if kern == "dilated" else (3 if kern == "vanilla" else 1)
        comp_s = machine.kernel_time(kern, fam, flops_rank, flops_dense / P, B * hp * N * N, N,
                                     4 * B * N * hp * d * (calls if kern == "dilated" else 1), d, threads, calls, notes, dtype=dt, pat=pat)
        nbytes = spec_bytes(method, B, H, N, d, P, pat, e, H_kv)
        if method == "dist-heads":
            comm_s = machine.comm_time("all_gather", nbytes, P - 1, P, notes) if P > 1 else 0.0
        else:
            comm_s = ulysses_comm_time(machine, B, H, Hk, d, P, n, e, P, notes)
    elif method == "dist-allgather":
        # All-gather context parallelism (suite/dist_allgather.cpp): one all-gather of every rank's
        # K/V shard, then each rank's n queries against all N keys in one pass; nothing overlaps.
        kern = kernel or "flash"
        rank_pairs = [block_pairs(pat, p * n, (p + 1) * n, 0, N, N) for p in range(P)]
        flops_rank = 4.0 * d * B * H * max(rank_pairs)
        calls = 3 if kern == "vanilla" else 1
        comp_s = machine.kernel_time(kern, fam, flops_rank, 4.0 * d * B * H * n * N, B * H * n * N, N,
                                     4 * B * N * H * d, d, threads, calls, notes, dtype=dt, pat=pat)
        nbytes = spec_bytes(method, B, H, N, d, P, pat, e, H_kv)
        comm_s = machine.comm_time("all_gather", nbytes, P - 1, P, notes) if P > 1 else 0.0
    elif method in catalog.rings():
        # Ring attention (suite/dist_ring.cpp): P steps; at step s rank p attends its query ranges
        # to the K/V ranges of rank (p - s) mod P, one kernel call per (query range, key range,
        # batch) the pattern does not leave empty, while the next K/V is in flight. Plain shards:
        # one range of n per rank; zig-zag: chunks p and 2P-1-p of c = N/(2P).
        kern = kernel or "flash"
        zig = method == "dist-ring-zigzag"
        msg = 2.0 * B * n * Hk * d * e
        xfer = machine.comm_time("send_recv", msg, 1, P, notes) if P > 1 else 0.0
        full_fam = "full" if pat["kind"] == "full" else fam
        total_s = comm_total = comp_total = 0.0
        calls = 3 if kern == "vanilla" else 1
        c = n // 2 if zig else n  # rows of one range

        def block_time(pairs, fam_, dense):
            f = 4.0 * d * B * H * pairs
            return machine.kernel_time(kern, fam_, f, 4.0 * d * B * H * dense, B * H * c * c, c, 4 * B * c * H * d, d,
                                       threads, calls * B, notes, dtype=dt, pat=pat)

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
    elif method == "dist-usp":
        # Ulysses in groups of u (two all-to-alls) around a zig-zag ring of R = P / u over the groups,
        # each member on H / u heads (suite/dist_usp.cpp): the ring's prediction on that problem,
        # at this rank's threads, plus the group's exchange.
        u = usp_degree(P, Hk, ulysses)
        inner = predict(machine, "dist-ring-zigzag", pat, B, H // u, N, d, P // u, threads, kernel, dtype,
                        ranks_per_node=1, H_kv=kv_heads_per_member(Hk, u))
        kern, flops_rank = inner["kernel"], inner["flops_per_rank"]
        comp_s = inner["compute_ms"] * 1e-3
        comm_s = inner["comm_ms"] * 1e-3 + ulysses_comm_time(machine, B, H, Hk, d, u, n, e, P, notes)
        notes.extend(inner["notes"])
        detail["ulysses"], detail["ring"] = u, P // u
    elif method == "dist-dilated":
        kern = "dilated"
        pairs, _, dd_levels = dist_dilated_ranks(pat, B, H, N, d, P, H_kv)
        flops_rank = 4.0 * d * float(pairs.max())
        comp_s = machine.kernel_time(kern, fam, flops_rank, flops_rank, 0, N, 4 * B * n * H * d * len(dd_levels), d,
                                     threads, len(dd_levels), notes, dtype=dt, pat=pat)
        if P > 1:
            for lv in dd_levels:
                if lv["shared"]:
                    comm_s += machine.comm_time("all_to_all", 2.0 * d * lv["recv_rows_max"] * e, lv["group"] - 1, P, notes)
        detail["levels"] = [{"w": lv["w"], "r": lv["r"], "shared": lv["shared"], "ranks_per_segment": lv["group"],
                             "bytes_received_max": 2.0 * d * lv["recv_rows_max"] * e} for lv in dd_levels]
    else:
        raise BadInput(f"--method: the model has no time formula for {method} yet (harness/model/predict.py)")
    if method in catalog.distributed() and machine.kind == "measured":
        busy = (ranks_per_node or P) * threads
        if busy > machine.cores:
            comp_s *= busy / machine.cores
            notes.append(f"oversubscribed: {busy} threads on {machine.cores} cores, compute x{busy / machine.cores:.2f}")
    nbytes = spec_bytes(method, B, H, N, d, P, pat, e, H_kv, ulysses) if method != "dist-dilated" else \
        (2.0 * d * e * float(dist_dilated_ranks(pat, B, H, N, d, P, H_kv)[1].max()) if P > 1 else 0.0)
    mem = machine.memory(method, kern, B, H, N, d, P, threads, pat, dd_levels)
    cap = machine.memory_bytes_per_device()
    out = {
        "machine": machine.name, "method": method, "kernel": kern, "pattern": fam, "B": B, "H": H, "H_kv": Hk, "N": N, "d": d,
        "world": P, "threads_per_rank": threads, "element_bytes": e,
        "time_ms": (comp_s + comm_s) * 1e3, "compute_ms": comp_s * 1e3, "comm_ms": comm_s * 1e3,
        "flops": flops_total, "flops_dense": flops_dense, "flops_per_rank": flops_rank,
        "bytes_received_per_rank": nbytes, "peak_memory_bytes_per_rank": mem,
        "memory_bytes_per_device": cap, "fits_memory": (mem <= cap) if cap > 0 else None,
        "notes": sorted(set(notes)),
    }
    out.update(detail)
    return out
