"""Results files: read, checked against results/schema.json."""

import json
import os

from .errors import BadInput


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA_PATH = os.path.join(ROOT, "results", "schema.json")


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
    """Timed forward passes: the model predicts the forward pass (backward rows, SPEC §6, are left out)."""
    return [c for c in data["cases"]
            if c.get("status") == "ok" and "time_ms" in c and c.get("pass", "forward") == "forward"]
