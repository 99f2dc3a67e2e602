#!/usr/bin/env bash
# The project's own docker daemon for `make images` and `make containers-test` where none runs (CI, this machine):
# overlay2 storage where the kernel and the data root's filesystem allow it (measured here on ext4), else vfs (works on
# any filesystem, but copies every layer in full: builds several times slower); DOCKER_STORAGE picks one. No iptables,
# no default bridge (compose's networks still give DNS by name), data in DOCKER_ROOT (default /var/lib/ganops-docker),
# never in the repository.
# Usage: infra/images/dockerd.sh start|stop|status; start exits 3 with one line when no daemon can start.
set -euo pipefail
root=${DOCKER_ROOT:-/var/lib/ganops-docker}
sock=unix://$root/docker.sock pidfile=/run/ganops-dockerd.pid log=$root.log
die() { echo "dockerd: $*" >&2; exit 3; }
answers() { DOCKER_HOST=$sock timeout 10 docker info >/dev/null 2>&1; }
case "${1:-}" in
  start)
    if answers; then echo "dockerd: already running at $sock"; exit 0; fi
    command -v dockerd >/dev/null || die "dockerd is not installed (apt-get install -y docker.io debootstrap)"
    command -v docker >/dev/null || die "the docker client is not installed (apt-get install -y docker.io)"
    [ "$(id -u)" = 0 ] || die "dockerd needs root"
    mkdir -p "$root"
    storage=${DOCKER_STORAGE:-}
    if [ -z "$storage" ]; then  # a data root made with vfs stays vfs, so its images stay visible
      if [ -d "$root/vfs/dir" ] && [ -n "$(ls -A "$root/vfs/dir")" ]; then storage=vfs
      elif grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null; then storage=overlay2
      else storage=vfs; fi
    fi
    nohup dockerd --storage-driver="$storage" --iptables=false --bridge=none --data-root "$root" --exec-root /run/ganops-docker \
      --pidfile "$pidfile" --host "$sock" > "$log" 2>&1 &
    for _ in $(seq 60); do answers && { echo "dockerd: started at $sock with $storage storage (pid $(cat "$pidfile"))"; exit 0; }; sleep 1; done
    die "did not answer at $sock in 60 s: $(tail -1 "$log")" ;;
  stop)
    [ -f "$pidfile" ] || { echo "dockerd: not running (no $pidfile)"; exit 0; }
    pid=$(cat "$pidfile"); kill "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || { echo "dockerd: stopped (pid $pid)"; exit 0; }; sleep 1; done
    die "pid $pid did not stop in 30 s" ;;
  status) answers && echo "dockerd: running at $sock" || { echo "dockerd: not running at $sock"; exit 3; } ;;
  *) echo "usage: infra/images/dockerd.sh start|stop|status" >&2; exit 2 ;;
esac
