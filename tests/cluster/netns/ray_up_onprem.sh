#!/usr/bin/env bash
# `ray up cluster/onprem.yaml` for real, on one machine: two SSH "hosts" in network namespaces on a
# private bridge (10.213.0.0/24, nothing else on any network is contacted), each with its own pid
# namespace (so the configs' `ray stop` only sees that host's processes), /tmp, /run and /dev/shm,
# and its own home directory (a bind-mounted passwd); the "laptop" side runs in a mount namespace
# with its own /tmp and HOME. It follows cluster/README.md: up.sh -> worker joins -> ray dashboard
# tunnel (401 without token, 200 with) -> submit.sh --follow (a job whose two model actors must
# sit on different nodes) -> ray down. Not part of the pytest suite: it needs root, `ip netns`,
# `unshare`, an sshd and rsync, and takes 2-7 min.
#
#   sudo FT_SSHD=/path/to/sshd FT_RSYNC=/path/to/rsync bash tests/cluster/netns/ray_up_onprem.sh
#
# FT_SSHD / FT_RSYNC default to the system's; FT_LD_PATH is added to their library path (for
# binaries unpacked from .debs with `apt-get download openssh-server rsync libwrap0 libpopt0` and
# `dpkg-deb -x`, which is how this was run: no package was installed and no service started).
# Everything is torn down on exit (killing each pid namespace's init ends all its processes).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
B=${FTNS_DIR:-/var/tmp/ftns-run}       # not under /tmp: the hosts get a private /tmp
SSHD=${FT_SSHD:-$(command -v sshd || echo /usr/sbin/sshd)}
RSYNC=${FT_RSYNC:-$(command -v rsync || true)}
LDP=${FT_LD_PATH:-}
VENV=${FT_VENV:-$REPO/.venv}
[[ $(id -u) == 0 ]] || { echo "needs root (network and mount namespaces)" >&2; exit 2; }
[[ -x "$SSHD" && -x "$RSYNC" ]] || { echo "needs sshd and rsync (FT_SSHD, FT_RSYNC)" >&2; exit 2; }
SSH=(ssh -i "$B/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)

hosts_down() {
  for name in A B; do
    if [[ -f $B/sshd_$name.pid ]]; then
      kill -KILL -- "-$(cat "$B/sshd_$name.pid")" 2>/dev/null || true
      rm -f "$B/sshd_$name.pid"
    fi
    ip netns del "ft$name" 2>/dev/null || true
    ip link del "ft$name-h" 2>/dev/null || true
  done
  ip link del ftbr0 2>/dev/null || true
}

hosts_up() {
  mkdir -p "$B/bin" "$B/shared"
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$LDP" "$RSYNC" > "$B/bin/rsync"
  chmod +x "$B/bin/rsync"
  [[ -f $B/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -f "$B/id_ed25519"
  ip link add ftbr0 type bridge
  ip addr add 10.213.0.1/24 dev ftbr0
  ip link set ftbr0 up
  for spec in A:2 B:3; do
    local name=${spec%%:*} ip=10.213.0.${spec##*:}
    mkdir -p "$B/home$name/.ssh"
    cp "$B/id_ed25519.pub" "$B/home$name/.ssh/authorized_keys"
    chmod 700 "$B/home$name" "$B/home$name/.ssh"
    # Inside the namespace only: root's home is $B/home$name; sshd's privsep user exists.
    sed "s#^root:\([^:]*\):0:0:\([^:]*\):/root:#root:\1:0:0:\2:$B/home$name:#" /etc/passwd > "$B/passwd_$name"
    grep -q '^sshd:' "$B/passwd_$name" || echo 'sshd:x:65534:65534::/run/sshd:/usr/sbin/nologin' >> "$B/passwd_$name"
    [[ -f $B/host_$name ]] || ssh-keygen -q -t ed25519 -N '' -f "$B/host_$name"
    cat > "$B/sshd_$name.conf" <<EOF
ListenAddress $ip
HostKey $B/host_$name
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile /run/sshd.pid
SetEnv PATH=$B/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOF
    ip netns add "ft$name"
    ip link add "ft$name-h" type veth peer name eth0 netns "ft$name"
    ip link set "ft$name-h" master ftbr0 up
    ip -n "ft$name" addr add "$ip/24" dev eth0
    ip -n "ft$name" link set lo up
    ip -n "ft$name" link set eth0 up
    ip -n "ft$name" route add default via 10.213.0.1   # for Ray's IP detection; no forwarding
    setsid ip netns exec "ft$name" unshare --mount --pid --fork --mount-proc bash -c "
      mount --make-rprivate /
      mount -t tmpfs tmpfs /tmp; mount -t tmpfs tmpfs /run; mount -t tmpfs -o size=4g tmpfs /dev/shm
      mkdir -p /run/sshd; mount --bind $B/passwd_$name /etc/passwd
      exec env LD_LIBRARY_PATH=$LDP $SSHD -D -e -f $B/sshd_$name.conf" > "$B/sshd_$name.log" 2>&1 &
    echo $! > "$B/sshd_$name.pid"
    disown
  done
  sleep 2
}

cluster_config() {
  # cluster/onprem.yaml with this test's hosts and key; instead of uv + PyPI (no internet here) the
  # nodes use this machine's venv and its rsync.
  "$VENV/bin/python" - "$REPO/cluster/onprem.yaml" "$B" "$VENV" <<'EOF'
import sys, yaml
src, b, venv = sys.argv[1:]
c = yaml.safe_load(open(src))
c["cluster_name"] = "ftns-onprem"
c["provider"].update(head_ip="10.213.0.2", worker_ips=["10.213.0.3"])
c["auth"] = {"ssh_user": "root", "ssh_private_key": f"{b}/id_ed25519"}
keep = [s for s in c["setup_commands"] if s.startswith(("chmod", "grep -q ft-venv"))]
c["setup_commands"] = [f"grep -q ftns ~/.bashrc || echo 'export PATH={b}/bin:$PATH  # ftns' >> ~/.bashrc",
                       f"ln -sfn {venv} ~/ft-venv", *keep]
yaml.safe_dump(c, open(f"{b}/onprem-ns.yaml", "w"), sort_keys=False)
EOF
}

laptop() {
  # The user's side, in its own mount namespace (/tmp) with its own HOME and a copy of the repo.
  rm -rf "$B/repo" && mkdir -p "$B/repo" "$B/laptop-home"
  (cd "$REPO" && tar --exclude=./.venv --exclude=./.git --exclude='./results/*' \
     --exclude='*/__pycache__' --exclude=./cluster/.secrets -cf - .) | tar -C "$B/repo" -xf -
  cat > "$B/exp.yaml" <<'EOF'
name: onprem
symbols: [AAPL, MSFT]
families: [bootstrap_returns]
trials: 4
resources:
  bootstrap_returns: {actors: 2, num_cpus: 1.5}   # 2 CPUs per node: one actor per node
EOF
  unshare --mount bash -euo pipefail -c "
    mount --make-rprivate /; mount -t tmpfs tmpfs /tmp
    export HOME=$B/laptop-home PATH=$B/bin:$VENV/bin:\$PATH RAY_USAGE_STATS_ENABLED=0 HF_TOKEN=
    unset RAY_AUTH_TOKEN RAY_AUTH_TOKEN_PATH RAY_ADDRESS
    cd $B/repo
    echo '== up'; bash cluster/up.sh $B/onprem-ns.yaml --no-config-cache > $B/up.log 2>&1
    echo '== waiting for the worker'
    for i in \$(seq 60); do
      ray exec $B/onprem-ns.yaml 'ray status' 2>/dev/null | grep -q '^ 2 local.cluster.node' && break
      sleep 5
    done
    ray exec $B/onprem-ns.yaml 'ray status' 2>/dev/null | sed -n '/^Active:/,/^Pending:/p'
    ray dashboard -p 18265 $B/onprem-ns.yaml > $B/dashboard.log 2>&1 & tunnel=\$!
    sleep 5
    source cluster/env.sh; export RAY_API_SERVER_ADDRESS=http://127.0.0.1:18265
    curl -s -o /dev/null -w 'dashboard without token: %{http_code}\n' \$RAY_API_SERVER_ADDRESS/api/jobs/
    curl -s -o /dev/null -w 'dashboard with token: %{http_code}\n' \
      -H \"Authorization: Bearer \$(cat \$RAY_AUTH_TOKEN_PATH)\" \$RAY_API_SERVER_ADDRESS/api/jobs/
    echo '== submit'
    job=\$(bash cluster/submit.sh $B/exp.yaml --storage $B/shared/results --follow 2> $B/job.log)
    echo \"job \$job: \$(tail -n 2 $B/job.log | tr -d '\n')\"
    python -c \"import json; s = json.load(open('$B/shared/results/onprem/summary.json')); \
print('summary: complete', s['complete'], s['trials'], 'actors on', sorted(a['node'] for a in s['actors']))\"
    kill \$tunnel
    echo '== down'; ray down -y $B/onprem-ns.yaml > $B/down.log 2>&1; tail -n 1 $B/down.log
  "
  for ip in 10.213.0.2 10.213.0.3; do
    "${SSH[@]}" "root@$ip" 'echo "$(hostname -I): $(pgrep -c raylet || true) raylet(s) after ray down"'
  done
}

trap hosts_down EXIT
hosts_down
hosts_up
cluster_config
laptop
