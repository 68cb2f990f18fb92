"""Machine files: a calibrated CPU machine or a GPU file of public figures, and the rates they give."""

import json
import math

import numpy as np

from . import catalog
from .errors import BadInput
from .fit import comm_regime
from .results import load_json
from .spec import ELEMENT_BYTES, rate_axis


def _positive(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 and math.isfinite(v)


def _require(d, keys, where):
    for k in keys:
        if k not in d:
            raise BadInput(f"{where}: missing field {k}")


def _nearest_family(kernel, fam, have, notes):
    """`fam` if measured, else the nearest measured one (same kind, then full with the same
    causality, then full, then any), noted."""
    if fam in have:
        return fam
    causal, kind = fam.endswith("+causal"), fam.split("+")[0]
    cands = [f for f in sorted(have) if f.split("+")[0] == kind] + \
            [f for f in sorted(have) if f.split("+")[0] == "full" and f.endswith("+causal") == causal] + \
            [f for f in sorted(have) if f.split("+")[0] == "full"] + sorted(have)
    notes.append(f"{kernel}: no rates for {fam}, used {cands[0]}")
    return cands[0]


def _interp(points, x):
    """GFLOP/s at x from [x, GFLOP/s] points: linear in (log x, log rate), the end points' outside."""
    xs = np.array([p[0] for p in points], dtype=np.float64)
    rs = np.array([p[1] for p in points], dtype=np.float64)
    return float(rs[0]) if len(xs) == 1 else float(np.exp(np.interp(math.log(x), np.log(xs), np.log(rs))))


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

    def _rate(self, kernel, fam, threads, N, notes, dtype="fp32", d=None, pat=None):
        """Measured GFLOP/s for kernel / family / dtype / threads at sequence length N (a local
        window: at its width), from the fine-grained `compute.rates` of `longattn calibrate`, else
        from the fp32 table `compute.kernels` of older machine files."""
        if "rates" in self.data["compute"]:
            return self._rate_keyed(kernel, fam, threads, N, notes, dtype or "fp32", d, pat)
        kernels = self.data["compute"]["kernels"]
        if kernel not in kernels:
            raise BadInput(f"{self.path}: no measured rates for kernel {kernel}; calibrate with results that hold {kernel} cases")
        fams = kernels[kernel]
        use = _nearest_family(kernel, fam, fams, notes)
        t0, scale = self._nearest_threads(f"{kernel} {use}", threads, [int(t) for t in fams[use]], notes)
        return _interp(fams[use][str(t0)], N) * scale * 1e9

    def _nearest_threads(self, what, threads, have, notes):
        """The thread count to read rates at, and the factor to scale them by: `threads` itself, else
        the nearest measured count scaled by the two counts' sgemm ratio (else linearly), noted."""
        if threads in have:
            return threads, 1.0
        t0 = min(have, key=lambda t: (abs(math.log(t / threads)), -t))
        sg = self.data.get("sgemm_gflops_per_rank", {})
        if str(threads) in sg and str(t0) in sg:
            scale, how = sg[str(threads)] / sg[str(t0)], "sgemm ratio"
        else:
            scale, how = threads / t0, "linear in threads"
        notes.append(f"{what}: {threads} threads not measured, scaled from {t0} ({how}, x{scale:.2f})")
        return t0, scale

    def _rate_keyed(self, kernel, fam, threads, N, notes, dtype, d, pat):
        entries = [e for e in self.data["compute"]["rates"] if e["kernel"] == kernel]
        if not entries:
            raise BadInput(f"{self.path}: no measured rates for kernel {kernel}; run `longattn calibrate` on this "
                           "machine (it measures vanilla, flash and dilated)")
        use = _nearest_family(kernel, fam, {e["family"] for e in entries}, notes)
        entries = [e for e in entries if e["family"] == use]
        if not any(e["dtype"] == dtype for e in entries):
            raise BadInput(f"{self.path}: no {dtype} rates for {kernel} {use}; run `longattn calibrate` on this "
                           f"machine (it measures fp32 and bf16{' and fp16 where the CPU has AVX512-FP16' if dtype == 'fp16' else ''})")
        entries = [e for e in entries if e["dtype"] == dtype]
        if d is not None:  # the nearest head dim measured
            near = min({e["d"] for e in entries}, key=lambda x: (abs(math.log(x / d)), x))
            if near != d:
                notes.append(f"{kernel} {use} {dtype}: d = {d} not measured, used d = {near}")
            entries = [e for e in entries if e["d"] == near]
        by_t = {e["threads"]: e for e in entries}
        t0, scale = self._nearest_threads(f"{kernel} {use} {dtype}", threads, list(by_t), notes)
        e = by_t[t0]
        x = rate_axis(pat, N)[1] if e.get("x") == "window" and pat is not None else N
        return _interp(e["points"], x) * scale * 1e9

    def kernel_time(self, kernel, fam, flops, dense_flops, scores, N, io_elems, d, threads, calls, notes,
                    dtype=None, pat=None):
        """Seconds for one rank to run `kernel` on work of `flops` exact FLOPs (vanilla: dense_flops
        as the results count them; GPU vanilla: every one of `scores` score elements computed, 4 d
        FLOPs each, and moved). N: the sequence length the kernel runs over (selects the measured
        rate). io_elems: elements of Q, K, V, O the kernel reads and writes (GPU memory traffic)."""
        if flops <= 0 and dense_flops <= 0:
            return 0.0
        if self.kind == "measured":
            work = dense_flops if kernel == "vanilla" else flops
            return work / self._rate(kernel, fam, threads, N, notes, dtype, d, pat)
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

        if method in catalog.single():
            el = 4 * F + lse + kernel_extra(kernel, N, H)
        elif method == "dist-heads":
            el = 4 * F + 4 * part + F + kernel_extra(kernel, N, H // P)
        elif method == "dist-ulysses":
            el = 4 * part + 10 * part + kernel_extra(kernel, N, H // P)
        elif method in catalog.rings():
            n = N // P
            el = 4 * part + 5 * part + 2 * lse / P + kernel_extra(kernel, n, H)
        elif method == "dist-usp":  # the ring's buffers and the Ulysses exchange's (send, receive, head shard)
            n = N // P
            el = 4 * part + 5 * part + 2 * lse / P + 10 * part + kernel_extra(kernel, n, H)
        elif method == "dist-allgather":  # Q, K, V, O shards, the K/V sent, gathered and laid out whole
            el = 4 * part + 2 * part + 4 * F + lse / P + kernel_extra(kernel, N, H)
        else:  # dist-dilated: send, receive and gathered rows of the largest level
            gathered = max((lv["recv_rows_max"] for lv in (dd_levels or [])), default=0.0) * 2 * d
            el = 4 * part + lse / P + 3 * gathered
        return base + e * el
