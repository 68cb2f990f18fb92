"""PyTorch as a peer: the cases of a longattn suite, timed in PyTorch the way longattn times them.

    scripts/peers.sh SUITE [--out FILE]      (makes the virtual environment, then runs this)

Reads the expanded cases from `longattn run SUITE --plan`, and for every distinct attention shape
(pattern, B, N, H, d, dtype, device) times what PyTorch users would run:

  torch-sdpa      F.scaled_dot_product_attention: is_causal for full+causal, the pattern as a boolean
                  mask otherwise (dilated levels, where a key in two levels counts twice, as the
                  additive mask log(multiplicity)). On CUDA one entry per backend:
                  torch-sdpa-flash, -cudnn, -efficient, -math.
  torch-vanilla   matmul, mask, softmax, matmul (heads in chunks that fit in memory).
  torch-dilated   dilated patterns: LongNet's recipe as torchscale writes it: per level, gather each
                  segment's kept rows, SDPA with its log-sum-exp, scatter back, merge the levels by
                  their LSE.

A suite's "pass" is honoured as longattn's run does: "backward" times torch.autograd.grad of the
output (dQ, dK, dV for a random dO) after one untimed forward, "forward+backward" times both.
torch-dilated then takes the differentiable scores-logsumexp path (the CPU flash kernel's LSE has no
gradient, and the level merge needs one).

Same warm-up and iteration counts as the suite, median of per-iteration times, a budget check after
the first iteration. Every output is verified by `longattn verify` (the float64 oracle, SPEC §4) on
the rows longattn itself checks. The file it writes validates against results/schema.json. Masks
are built here from SPEC §2; the oracle's verdict is what says they are right.
"""

import argparse
import json
import math
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PASS_FACTOR = {"forward": 1.0, "backward": 2.5, "forward+backward": 3.5}  # SPEC §6: FLOPs of a pass
KERNEL_METHODS = {"vanilla", "flash", "dilated", "reference"}


def pass_of(c):
    return c.get("pass", "forward")


def log(msg):
    print(f"peers: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ machine


def proc_value(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def available_bytes(device="cpu"):
    """Free memory where the peer's tensors live: the GPU's on cuda, the host's otherwise."""
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.mem_get_info()[0]
    v = proc_value("/proc/meminfo", "MemAvailable")
    return int(v.split()[0]) * 1024 if v else 8 << 30


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_bytes():
    v = proc_value("/proc/self/status", "VmHWM")
    return int(v.split()[0]) * 1024 if v else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def torch_config():
    show = torch.__config__.show()
    blas = next((line.strip(" -") for line in show.splitlines() if "Math Kernel Library" in line or "OpenBLAS" in line), "")
    onednn = next((line.strip(" -") for line in show.splitlines() if "MKL-DNN" in line or "oneDNN" in line), "")
    return {
        "library": "torch",
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": blas,
        "onednn": onednn,
        "config": " ".join(show.split())[:2000],
    }


def sgemm_gflops(device):
    n = 2048
    a = torch.full((n, n), 0.5, device=device)
    b = torch.full((n, n), 0.25, device=device)
    best = math.inf
    for _ in range(3):
        sync(device)
        t0 = time.perf_counter()
        torch.matmul(a, b)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------- patterns


def refusal(peer, error, device):
    """Why a peer did not run: a pinned SDPA backend that does not take the case (flash with a
    mask, cuDNN on an older GPU), or out of memory; PyTorch's first line of the reason."""
    if device == "cuda":
        torch.cuda.empty_cache()
    return f"{peer}: " + (str(error).strip().splitlines() or ["error"])[0][:300]


def l2_flush_buffer(device):
    """cuda: a buffer twice the L2 cache, zeroed before each timed run as longattn (and Triton's do_bench) do."""
    if device != "cuda":
        return None
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 64 << 20) or 64 << 20
    return torch.empty(2 * l2, dtype=torch.uint8, device=device)


def timed(device, flush, body):
    """body()'s result and the seconds it took: CUDA events around it on the GPU (the L2 cache
    overwritten first when flush is a buffer), the host clock between two syncs on the CPU."""
    if device == "cuda":
        if flush is not None:
            flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = body()
        end.record()
        end.synchronize()
        return out, start.elapsed_time(end) / 1e3
    sync(device)
    t0 = time.perf_counter()
    out = body()
    sync(device)
    return out, time.perf_counter() - t0


def pattern_mask(pattern, levels, N, H, device):
    """None (no mask), a bool [N, N] mask, or for dilated a float [H, N, N] additive mask log(m)."""
    kind, causal = pattern["kind"], pattern.get("causal", False)
    i = torch.arange(N, device=device).unsqueeze(1)
    j = torch.arange(N, device=device).unsqueeze(0)
    if kind == "full":
        return None if not causal else j <= i
    if kind == "dilated":
        logm = torch.empty((H, N, N), device=device)
        for h in range(H):
            m = torch.zeros((N, N), dtype=torch.int16, device=device)
            for w, r in levels:
                o = h % r
                same = (i // w) == (j // w)
                kept_i = ((i - (i // w) * w - o) % r == 0) & (i - (i // w) * w >= o)
                kept_j = ((j - (j // w) * w - o) % r == 0) & (j - (j // w) * w >= o)
                m += (same & kept_i & kept_j).to(torch.int16)
            if causal:
                m = m * (j <= i)
            logm[h] = torch.log(m.float())  # log 0 = -inf: not attended
        return logm
    if kind == "local":
        mask = (j >= i - pattern["left"]) & (j <= i + pattern["right"])
    elif kind == "strided":
        l = pattern["stride"]
        mask = ((i - j).abs() < l) | ((i - j) % l == 0)
    elif kind == "fixed":
        l, c = pattern["block"], pattern["summary"]
        mask = ((j // l) == (i // l)) | ((j % l) >= l - c)
    else:
        raise ValueError(kind)
    return mask & (j <= i) if causal else mask


def mask_bytes(pattern, N, H):
    if pattern["kind"] == "full":
        return N * N if pattern.get("causal") else 0
    return (4 * H + 16) * N * N if pattern["kind"] == "dilated" else 4 * N * N


# ------------------------------------------------------------------------------------- peers
# Each takes q, k, v as [B, N, H, d] (the suite's layout; transposes below are views) and returns
# (o [B, N, H, d], lse [B, H, N] or None).


def run_sdpa(q, k, v, scale, mask, causal_only, backend=None):
    qh, kh, vh = (x.transpose(1, 2) for x in (q, k, v))
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(q.dtype).unsqueeze(0)
    kwargs = dict(attn_mask=None if causal_only else mask, is_causal=causal_only, scale=scale)
    if k.shape[2] != q.shape[2]:
        # GQA: SDPA's default dispatch reads the KV heads itself (PyTorch >= 2.5); a pinned backend
        # (or an older PyTorch) gets K and V repeated per group, as its math path would do.
        if backend is None and "enable_gqa" in F.scaled_dot_product_attention.__doc__:
            kwargs["enable_gqa"] = True
        else:
            g = q.shape[2] // k.shape[2]
            kh, vh = kh.repeat_interleave(g, dim=1), vh.repeat_interleave(g, dim=1)
    if backend is None:
        o = F.scaled_dot_product_attention(qh, kh, vh, **kwargs)
    else:
        from torch.nn.attention import sdpa_kernel

        with sdpa_kernel(backend):
            o = F.scaled_dot_product_attention(qh, kh, vh, **kwargs)
    return o.transpose(1, 2), None


def run_vanilla(q, k, v, scale, mask, heads_per_chunk):
    B, N, H, d = q.shape
    out = torch.empty_like(q)
    for h0 in range(0, H, heads_per_chunk):
        h1 = min(H, h0 + heads_per_chunk)
        qh, kh, vh = (x[:, :, h0:h1].transpose(1, 2) for x in (q, k, v))
        s = torch.matmul(qh, kh.transpose(-1, -2)) * scale
        if mask is not None:
            if mask.dtype == torch.bool:
                s = s.masked_fill(~mask, float("-inf"))
            else:
                s = s + mask[h0:h1].to(s.dtype)
        p = torch.softmax(s, dim=-1)
        out[:, :, h0:h1] = torch.matmul(p, vh).transpose(1, 2)
    return out, None


def attention_with_lse(q, k, v, causal, scale):
    """[b, h, m, d] -> (o, lse): SDPA's flash kernel with its log-sum-exp, as LongNet's code takes it."""
    if q.requires_grad:
        pass  # the flash kernels' LSE output has no gradient: the path below
    elif q.device.type == "cpu" and hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
        o, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal, scale=scale)
        return o, lse
    elif q.device.type == "cuda" and q.dtype != torch.float32:
        r = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, False, scale=scale)
        return r[0], r[1]
    # torchscale's path without flash-attn: scores, logsumexp, softmax, matmul.
    s = torch.matmul(q, k.transpose(-1, -2)).float() * scale
    if causal:
        m = q.shape[-2]
        s = s.masked_fill(torch.ones(m, m, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    return torch.matmul(torch.softmax(s, dim=-1).to(v.dtype), v), lse


def run_dilated(q, k, v, scale, levels, causal):
    B, N, H, d = q.shape
    dev = q.device
    out = torch.zeros((B, N, H, d), dtype=torch.float32, device=dev)
    lse = torch.full((B, H, N), float("-inf"), dtype=torch.float32, device=dev)
    for w, r in levels:
        full_segments, tail = N // w, N % w
        for o in range(min(r, H)):
            heads = torch.arange(o, H, r, device=dev)
            for start, length, count in ((0, w, full_segments), (full_segments * w, tail, 1 if tail else 0)):
                if count == 0 or o >= length:
                    continue
                m = (length - o + r - 1) // r  # kept rows per segment
                pos = (start + torch.arange(count, device=dev).unsqueeze(1) * length + o
                       + torch.arange(m, device=dev).unsqueeze(0) * r).reshape(-1)
                g = len(heads)

                def gather(x):  # [B, N, H, d] -> [B*count, g, m, d]
                    return (x[:, pos][:, :, heads].reshape(B, count, m, g, d).permute(0, 1, 3, 2, 4)
                            .reshape(B * count, g, m, d))

                os_, ls_ = attention_with_lse(gather(q), gather(k), gather(v), causal, scale)
                os_ = os_.float().reshape(B, count, g, m, d).permute(0, 1, 3, 2, 4).reshape(B, count * m, g, d)
                ls_ = ls_.float().reshape(B, count, g, m).permute(0, 2, 1, 3).reshape(B, g, count * m)
                # Merge into the running (o, lse) of those rows and heads (SPEC §1, stable form).
                idx_rows, idx_heads = pos.unsqueeze(1), heads.unsqueeze(0)
                cur_o = out[:, idx_rows, idx_heads]  # [B, L, g, d]
                cur_l = lse[:, heads][:, :, pos]  # [B, g, L]
                new_l = torch.logaddexp(cur_l, ls_)
                new_l_safe = torch.where(torch.isinf(new_l), torch.zeros_like(new_l), new_l)
                a = torch.exp(cur_l - new_l_safe).transpose(1, 2).unsqueeze(-1)
                b = torch.exp(ls_ - new_l_safe).transpose(1, 2).unsqueeze(-1)
                out[:, idx_rows, idx_heads] = cur_o * a + os_ * b
                lse[:, heads.unsqueeze(1), pos.unsqueeze(0)] = new_l
    return out.to(q.dtype), lse


# ----------------------------------------------------------------------------------- runner


class Runner:
    def __init__(self, args, plan):
        self.args, self.plan = args, plan
        self.rates = {}  # (peer, pattern family) -> FLOP/s measured earlier in this run
        self.work = tempfile.mkdtemp(prefix="longattn-peers-")

    def close(self):
        shutil.rmtree(self.work, ignore_errors=True)

    def peers_for(self, c, device):
        pattern = c["pattern"]
        names = []
        if device == "cuda":
            names += ["torch-sdpa-flash", "torch-sdpa-cudnn", "torch-sdpa-efficient", "torch-sdpa-math"]
        else:
            names.append("torch-sdpa")
        names.append("torch-vanilla")
        if pattern["kind"] == "dilated":
            names.append("torch-dilated")
        return names

    def describe(self, peer, c):
        hkv = c.get("H_kv", c["H"])
        name = f"{peer} {c['pattern_name']} B={c['B']} N={c['N']} H={c['H']}" + (f" H_kv={hkv}" if hkv != c["H"] else "") + \
            f" d={c['d']} {c['dtype']} {c['device']} P=1"
        if pass_of(c) != "forward":
            name += " " + pass_of(c)
        return {
            "name": name, "method": peer, "layout": "single", "device": c["device"], "dtype": c["dtype"],
            "B": c["B"], "H": c["H"], "H_kv": hkv, "N": c["N"], "d": c["d"], "pattern": c["pattern"],
            "pattern_name": c["pattern_name"], "world": 1, "ranks": 1, "threads_per_rank": self.args.threads,
            "warmup": c["warmup"], "iterations": c["iterations"], "flops": c["flops"],
            "flops_dense": c["flops_dense"], "pass": pass_of(c), "status": "ok",
            **({"l2": c.get("l2", "flush")} if c["device"] == "cuda" else {}),
        }

    def cost_flops(self, peer, c):
        dense = PASS_FACTOR[pass_of(c)] * 4.0 * c["d"] * c["N"] * c["N"] * c["H"] * c["B"]
        if peer == "torch-vanilla" or (peer.startswith("torch-sdpa") and c["pattern"]["kind"] != "full"):
            return dense  # a mask costs the dense product
        return c["flops"]

    def memory_need(self, peer, c):
        B, N, H, d = c["B"], c["N"], c["H"], c["d"]
        backward = pass_of(c) != "forward"
        tensors = (12.0 if backward else 6.0) * B * N * H * d * 4  # q, k, v, o, copies (and gradients)
        if peer == "torch-vanilla":  # the backward keeps every chunk's probabilities (H heads)
            return tensors + (4.0 * H if backward else 3.0) * B * N * N * 4 + mask_bytes(c["pattern"], N, H)
        if peer == "torch-dilated":
            return tensors + 6.0 * B * N * H * d * 4
        return tensors + mask_bytes(c["pattern"], N, H) * (2 if c["pattern"]["kind"] != "full" else 1)

    def run_shape(self, c, device):
        """Every peer on one shape; returns their result records."""
        B, N, H, d = c["B"], c["N"], c["H"], c["d"]
        dtype = DTYPES[c["dtype"]]
        records = []
        peers = self.peers_for(c, device)
        if device == "cuda" and not torch.cuda.is_available():
            for p in peers:
                records.append(dict(self.describe(p, c), status="skipped", reason="no GPU: torch.cuda.is_available() is False"))
            return records
        gen = torch.Generator().manual_seed(int(c["seed"]))
        Hkv = c.get("H_kv", H)  # GQA: K and V have H_kv heads (SPEC §1)
        q, k, v = (torch.randn((B, N, heads, d), generator=gen).to(dtype).to(device) for heads in (H, Hkv, Hkv))
        backward = pass_of(c) != "forward"
        dout = torch.randn((B, N, H, d), generator=gen).to(dtype).to(device) if backward else None
        for x in (q, k, v):
            x.requires_grad_(backward)
        mask, have_mask = None, False  # built once, when a peer first needs it (SDPA on full+causal does not)
        outputs = {}  # peer -> saved .npy paths
        for peer in peers:
            j = self.describe(peer, c)
            need = self.memory_need(peer, c)
            if need > 0.8 * available_bytes(device):
                records.append(dict(j, status="skipped", reason=f"memory: needs about {need / 1e9:.1f} GB, "
                                    f"{available_bytes(device) / 1e9:.1f} GB available"))
                continue
            key = (peer, c["pattern"]["kind"], c["pattern"].get("causal", False), c["d"], c["dtype"], device, pass_of(c))
            runs = c["warmup"] + c["iterations"]
            # As longattn does: skip before starting only at twice the budget; the first iteration decides the rest.
            if key in self.rates and self.cost_flops(peer, c) / self.rates[key] * runs > 2 * c["budget_s"]:
                est = self.cost_flops(peer, c) / self.rates[key] * runs
                records.append(dict(j, status="skipped", reason=f"budget: estimated {est:.3g} s for {runs} iterations "
                                    f"from this run's rate; exceeds twice budget_s {c['budget_s']:.3g}"))
                continue
            causal_only = c["pattern"] == {"kind": "full", "causal": True}
            if not have_mask and (peer == "torch-vanilla" or (peer.startswith("torch-sdpa") and not causal_only)):
                mask, have_mask = pattern_mask(c["pattern"], c.get("levels"), N, H, device), True
            fn = self.peer_function(peer, c, q, k, v, mask)
            reset_peak_rss()
            samples, skipped, grads = [], None, None
            fwd = None  # the backward pass alone: one untimed forward, then each iteration is its backward
            if pass_of(c) == "backward":
                try:
                    o, lse = fn()
                except (RuntimeError, NotImplementedError) as e:
                    records.append(dict(j, status="skipped", reason=refusal(peer, e, device)))
                    continue
                fwd = (o, None if lse is None else lse.detach())

            def step():
                o, lse = fn() if fwd is None else fwd
                g = torch.autograd.grad(o, (q, k, v), dout, retain_graph=fwd is not None) if backward else None
                return o, lse, g

            flush = l2_flush_buffer(device) if c.get("l2", "flush") == "flush" else None
            for it in range(runs):
                try:
                    (o, lse, grads), t = timed(device, flush, step)
                except (RuntimeError, NotImplementedError) as e:
                    skipped, o, lse, grads = refusal(peer, e, device), None, None, None
                    break
                if it == 0:
                    self.rates[key] = max(self.rates.get(key, 0.0), self.cost_flops(peer, c) / max(t, 1e-9))
                    if t * runs > c["budget_s"]:
                        skipped = f"budget: one iteration took {t:.3g} s; {runs} exceed budget_s {c['budget_s']:.3g}"
                        break
                if it >= c["warmup"]:
                    samples.append(t * 1e3)
                if it < runs - 1 and pass_of(c) != "backward":
                    del o, lse
            if skipped:
                records.append(dict(j, status="skipped", reason=skipped))
                continue
            med = float(np.median(samples))
            j.update({
                "time_ms": {"min": min(samples), "median": med, "mean": float(np.mean(samples)), "max": max(samples),
                            "stddev": float(np.std(samples, ddof=1)) if len(samples) > 1 else 0.0},
                "samples_ms": samples,
                "gflops": c["flops"] / (med * 1e-3) / 1e9,
                "comm": {"bytes_received_per_rank": 0, "bytes_sent_per_rank": 0, "received_by_op": {}, "time_ms": 0,
                         "samples_ms": [0.0] * len(samples), "share": 0},
                "peak_memory_bytes_per_rank": float(peak_rss_bytes() if device == "cpu"
                                                    else torch.cuda.max_memory_allocated()),
            })
            if c["verify"]:
                saved = {"o": o, "lse": lse}
                if grads is not None:
                    saved.update(zip(("dq", "dk", "dv"), grads))
                paths = {}
                for name, x in saved.items():
                    if x is not None:
                        paths[name] = os.path.join(self.work, f"{len(outputs)}.{name}.npy")
                        np.save(paths[name], x.detach().float().cpu().numpy())
                outputs[len(records)] = paths
            del o, lse, grads
            records.append(j)
            log(f"{j['name']}: {med:.3f} ms, {j['gflops']:.2f} GFLOP/s")
        if outputs:
            # Verification after timing, on the inputs as the peers saw them (rounded to the dtype).
            inputs = {}
            for name, x in (("q", q), ("k", k), ("v", v), ("dout", dout)):
                if x is not None:
                    inputs[name] = os.path.join(self.work, f"{name}.npy")
                    np.save(inputs[name], x.detach().float().cpu().numpy())
            del q, k, v, dout, mask
            for at, paths in outputs.items():
                records[at]["error"] = self.verify(c, inputs, paths)
                if not records[at]["error"]["passed"]:
                    records[at]["status"] = "failed"
                    records[at]["reason"] = "verification: error exceeds the SPEC §4 (§6) tolerance"
                for p in paths.values():
                    os.remove(p)
            for p in inputs.values():
                os.remove(p)
        return records

    def peer_function(self, peer, c, q, k, v, mask):
        scale = c["scale"]
        causal_only = c["pattern"] == {"kind": "full", "causal": True}
        if peer == "torch-sdpa":
            return lambda: run_sdpa(q, k, v, scale, mask, causal_only)
        if peer.startswith("torch-sdpa-"):
            from torch.nn.attention import SDPBackend

            backend = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                       "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}[peer.split("-")[-1]]
            return lambda: run_sdpa(q, k, v, scale, mask, causal_only, backend)
        # The unfused peers take K and V repeated per group (inside the timed call, as PyTorch's math
        # path does); their gradients sum back over each group through autograd.
        group = c["H"] // c.get("H_kv", c["H"])

        def kv():
            return (k, v) if group == 1 else (k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2))
        if peer == "torch-vanilla":
            N, H = c["N"], c["H"]
            chunk = max(1, min(H, int(0.25 * available_bytes(q.device.type) // (3 * c["B"] * N * N * 4))))
            return lambda: run_vanilla(q, *kv(), scale, mask, chunk)
        if peer == "torch-dilated":
            return lambda: run_dilated(q, *kv(), scale, c["levels"], c["pattern"].get("causal", False))
        raise ValueError(peer)

    def verify(self, c, inputs, paths):
        cmd = [self.args.longattn, "verify", "--q", inputs["q"], "--k", inputs["k"], "--v", inputs["v"],
               "--o", paths["o"], "--pattern", json.dumps(c["pattern"]), "--scale", repr(c["scale"]),
               "--dtype", c["dtype"], "--seed", str(c["seed"])]
        if "lse" in paths:
            cmd += ["--lse", paths["lse"]]
        if "dq" in paths:
            cmd += ["--dout", inputs["dout"], "--dq", paths["dq"], "--dk", paths["dk"], "--dv", paths["dv"]]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode not in (0, 1):
            raise SystemExit(f"peers: longattn verify failed ({r.returncode}): {r.stderr.strip()}")
        return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan", required=True, help="output of `longattn run SUITE --plan`")
    ap.add_argument("--longattn", required=True, help="the longattn program (for `longattn verify`)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--command-line", default=" ".join(sys.argv))
    ap.add_argument("--git-commit", default="unknown")
    args = ap.parse_args()
    if args.threads < 1:
        raise SystemExit("peers: --threads: must be at least 1")
    torch.set_num_threads(args.threads)
    with open(args.plan) as f:
        plan = json.load(f)

    # One peer run per distinct attention shape among the suite's cases.
    shapes, seen = [], set()
    for c in plan["cases"]:
        if c["method"].startswith("comm-"):
            continue
        key = (json.dumps(c["pattern"], sort_keys=True), c["B"], c["N"], c["H"], c.get("H_kv"), c["d"], c["dtype"],
               c["device"], pass_of(c))
        if key not in seen:
            seen.add(key)
            shapes.append(c)
    device = "cuda" if any(c["device"] == "cuda" for c in shapes) and torch.cuda.is_available() else "cpu"
    cpu_model = proc_value("/proc/cpuinfo", "model name") or "unknown"
    ctx = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host_names": [socket.gethostname()],
        "cpu_model": cpu_model,
        "cores": os.cpu_count() or 0,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "compiler": f"torch {torch.__version__} (PyPI wheel)",
        "compiler_flags": "",
        "build_type": "Release",
        "communicator": "self",
        "mpi_library": "none (one process)",
        "world_size": 1,
        "ranks_per_node": 1,
        "threads_per_rank": args.threads,
        "cores_per_rank": len(os.sched_getaffinity(0)),
        "oversubscribed": False,
        "git_commit": args.git_commit,
        "command_line": args.command_line,
        "sgemm_gflops_per_rank": sgemm_gflops(device),
        "sgemm_shape": f"2048x2048x2048, fp32, torch.matmul on {device}, {args.threads} threads, best of 3",
        "suite_file": plan["suite_file"],
        "peer": torch_config(),
    }
    log(f"torch {torch.__version__}, {args.threads} threads, {ctx['peer']['cpu_capability']}; "
        f"matmul 2048^3 {ctx['sgemm_gflops_per_rank']:.1f} GFLOP/s; {len(shapes)} shapes")
    runner = Runner(args, plan)
    cases = []
    try:
        for c in shapes:
            cases += runner.run_shape(c, "cuda" if c["device"] == "cuda" else "cpu")
    finally:
        runner.close()
    results = {"schema_version": 1, "suite": plan["suite"], "context": ctx, "cases": cases}
    tmp = f"{args.out}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    os.replace(tmp, args.out)
    failed = sum(c["status"] == "failed" for c in cases)
    log(f"wrote {args.out} ({len(cases)} cases, {failed} failed verification)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
