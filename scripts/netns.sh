#!/usr/bin/env bash
# Two "nodes" on one machine, joined by a real network stack: two Linux network namespaces and a
# veth pair between them, with addresses that exist only inside those namespaces. mpirun runs in
# the first and reaches the second through `ip netns exec` as its remote agent (no ssh); ranks talk
# over TCP across the veth, never through shared memory.
#
#   scripts/netns.sh [--out-dir DIR] [SUITE ...]     (root; default suites: comm distributed-mha)
#   scripts/netns.sh --check                          exit 0 if namespaces can be made here, else 3 and why
#
# Each SUITE runs with one rank per namespace (-np 2) and is written to DIR/SUITE.netns.json
# (default results/). Everything it makes (namespaces, veth, the agent script) is removed on
# exit, failure included. Exit: 0 ok, 1 a run failed, 2 bad input, 3 namespaces unavailable.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
longattn=${LONGATTN_PROGRAM:-$root/build/longattn}
out_dir=$root/results
suites=()
check_only=0
while [ $# -gt 0 ]; do
  case $1 in
    --out-dir) [ -d "${2:-}" ] || { echo "netns: --out-dir: give an existing directory" >&2; exit 2; }; out_dir=$2; shift 2 ;;
    --check) check_only=1; shift ;;
    -h|--help) sed -n 2,14p "$0"; exit 0 ;;
    -*) echo "netns: unknown option $1" >&2; exit 2 ;;
    *) suites+=("$1"); shift ;;
  esac
done
[ ${#suites[@]} -gt 0 ] || suites=(comm distributed-mha)

tag=la$$  # names unique to this run: concurrent runs do not collide
ns0=${tag}a ns1=${tag}b veth0=${tag}v0 veth1=${tag}v1 addr0=10.213.$(($$ % 250)).1 addr1=10.213.$(($$ % 250)).2
agent=$(mktemp /tmp/longattn-netns-agent.XXXXXX)
cleanup() {
  ip netns del "$ns0" 2>/dev/null || true  # deleting a namespace removes its end of the veth, and the pair
  ip netns del "$ns1" 2>/dev/null || true
  rm -f "$agent"
}
trap cleanup EXIT

unavailable() { echo "netns: network namespaces are not available here: $1" >&2; exit 3; }
[ "$(id -u)" = 0 ] || unavailable "needs root (ip netns add)"
command -v ip >/dev/null || unavailable "the ip command (iproute2) is missing"
why=$(ip netns add "$ns0" 2>&1) || unavailable "ip netns add: $why"
ip netns add "$ns1"
ip link add "$veth0" type veth peer name "$veth1" || unavailable "ip link add type veth failed"
ip link set "$veth0" netns "$ns0"
ip link set "$veth1" netns "$ns1"
for side in "$ns0 $veth0 $addr0" "$ns1 $veth1 $addr1"; do
  set -- $side
  ip -n "$1" link set lo up
  ip -n "$1" addr add "$3/24" dev "$2"
  ip -n "$1" link set "$2" up
done
# One TCP connection across the veth before anything else (no ping on a minimal Debian).
ip netns exec "$ns1" python3 -c "import socket; s = socket.create_server(('$addr1', 7099)); s.settimeout(10); s.accept()" &
listener=$!
reached=0
for _ in 1 2 3 4 5 6 7 8 9 10; do
  if ip netns exec "$ns0" python3 -c "import socket; socket.create_connection(('$addr1', 7099), timeout=2)" 2>/dev/null; then
    reached=1; break
  fi
  sleep 0.2
done
wait $listener 2>/dev/null || true
[ $reached = 1 ] || { echo "netns: $addr0 cannot reach $addr1 over the veth (TCP)" >&2; exit 1; }
if [ $check_only = 1 ]; then echo "netns: namespaces and a veth pair work here"; exit 0; fi
[ -x "$longattn" ] || { echo "netns: $longattn not found; build it first" >&2; exit 2; }

# Open MPI's remote agent: called as AGENT HOST COMMAND...; runs COMMAND in HOST's namespace.
cat > "$agent" <<EOF
#!/bin/sh
host=\$1; shift
case \$host in
  $addr0) ns=$ns0 ;;
  $addr1) ns=$ns1 ;;
  *) echo "netns agent: unknown host \$host" >&2; exit 1 ;;
esac
exec ip netns exec "\$ns" /bin/sh -c "\$*"
EOF
chmod +x "$agent"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
forward_env=()  # the program's own settings (LONGATTN_MPI_PROGRESS, ...) reach both ranks
for v in $(compgen -e | grep '^LONGATTN_' || true); do forward_env+=(-x "$v"); done
status=0
for suite in "${suites[@]}"; do
  out=$out_dir/$(basename "$suite" .json).netns.json
  echo "netns: $suite on 2 ranks, one per namespace ($addr0, $addr1), TCP over a veth pair -> $out" >&2
  # TCP only, on the veth's subnet: no shared memory between the ranks, no other interface.
  # --bind-to none: both "nodes" are this machine; bound, each rank would take core 0 of its node.
  ip netns exec "$ns0" mpirun -np 2 --host "$addr0:1,$addr1:1" --bind-to none \
    --mca plm_rsh_agent "$agent" --mca btl tcp,self \
    --mca btl_tcp_if_include "${addr0%.1}.0/24" --mca oob_tcp_if_include "${addr0%.1}.0/24" \
    -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM "${forward_env[@]}" \
    "$longattn" run "$suite" --out "$out" --quiet || status=1
done
exit $status
