#!/usr/bin/env bash
# scripts/netns.sh as a test: two network namespaces joined by a veth pair, one rank in each, over
# TCP. A tiny suite (a comm microbenchmark and two verified distributed methods) must run with
# every case ok; the namespaces must be gone afterwards, and also after a run that fails. Where
# namespaces cannot be made (not root, no iproute2, a container without the privilege) the test
# is skipped (exit 77) with the script's reason.
#   tests/test_netns.sh PATH/TO/longattn
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export LONGATTN_PROGRAM=${1:?usage: test_netns.sh PATH/TO/longattn}
tmp=$(mktemp -d /tmp/longattn-netns-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if [ "$2" = 0 ]; then echo "ok    $1"; else echo "FAIL  $1"; fail=1; fi; }

if ! why=$(bash "$root/scripts/netns.sh" --check 2>&1); then
  echo "SKIP  $why"
  exit 77
fi
namespaces() { ip netns list 2>/dev/null | grep -c '^la[0-9]' || true; }
before=$(namespaces)

cat > "$tmp/tiny.json" <<'JSON'
{"name": "tiny", "cases": [
  {"methods": ["comm-send-recv"], "patterns": [{"kind": "full"}], "B": 1, "H": 4, "N": 4096, "d": 64, "verify": false},
  {"methods": ["dist-ring-zigzag", "dist-usp"], "patterns": [{"kind": "full", "causal": true}], "B": 1, "H": 4,
   "H_kv": 2, "N": 512, "d": 32}],
 "warmup": 1, "iterations": 2}
JSON
bash "$root/scripts/netns.sh" --out-dir "$tmp" "$tmp/tiny.json" >"$tmp/log" 2>&1
check "netns.sh runs a suite across two namespaces (exit 0)" $?
python3 - "$tmp/tiny.netns.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
cases = r["cases"]
ok = len(cases) == 3 and all(c["status"] == "ok" for c in cases) and r["context"]["world_size"] == 2 and \
    all(c["comm"]["bytes_received_per_rank"] > 0 for c in cases) and \
    all(c["error"]["passed"] for c in cases if c["method"] != "comm-send-recv")
sys.exit(0 if ok else 1)
PY
check "every case ok and verified, bytes moved between the namespaces" $?
[ "$(namespaces)" = "$before" ]
check "no namespace left behind" $?

# A failing run (a suite that does not exist) still removes everything it made.
bash "$root/scripts/netns.sh" --out-dir "$tmp" "$tmp/missing.json" >"$tmp/log2" 2>&1
rc=$?
[ $rc = 1 ]
check "a failing run exits 1" $?
[ "$(namespaces)" = "$before" ]
check "no namespace left behind after a failure" $?
[ $fail = 0 ] || { echo "--- netns.sh output:"; cat "$tmp/log" "$tmp/log2"; }
exit $fail
