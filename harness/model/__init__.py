"""longattn's performance model: per-rank time, memory and bytes received of every method, calibrated
from measured results files and checked against them (what `longattn model ...` runs).

    longattn model --machine M.json --method METHOD --pattern JSON --B 1 --H 8 --N 65536 --d 64 --world P
             [--threads T] [--dtype fp32|bf16|fp16] [--kernel flash|vanilla|dilated] [--json]
    longattn model --validate RESULTS.json [RESULTS.json ...] --machine M.json
    longattn model --calibrate --kernels RESULTS.json [...] --comm RESULTS.json --name NAME --out M.json

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
from .calibrate import calibrate  # noqa: F401
from .catalog import attention as methods  # noqa: F401
from .errors import BadInput  # noqa: F401
from .fit import comm_regime, fit_alpha_beta, fit_comm  # noqa: F401
from .machine import Machine  # noqa: F401
from .predict import auto_kernel, predict  # noqa: F401
from .results import load_json, load_results, ok_cases  # noqa: F401
from .spec import (ELEMENT_BYTES, LONGNET_BASE, block_pairs, dense_pairs, dilated_levels,  # noqa: F401
                   dilated_pairs_head, dist_dilated_ranks, family, pairs_heads, parse_pattern, row_counts,
                   spec_bytes)
