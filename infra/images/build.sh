#!/usr/bin/env bash
# `make images`: build ganops:cpu and ganops:serve (and, with --override, the compose override's PostgreSQL and S3
# images). BASE (default the public Python image) is pulled; where no registry answers, a Debian 12 base is made with
# debootstrap and the images install from a wheelhouse resolved for its Python. Build outputs live in
# GANOPS_BUILD_DIR (default /var/lib/ganops-build), never in the repository.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${GANOPS_BUILD_DIR:-/var/lib/ganops-build}
base=${BASE:-python:3.11.10-slim-bookworm}
here=$(dirname "$0")
die() { echo "images: $*" >&2; exit 2; }
docker info >/dev/null 2>&1 || die "no docker daemon answers at ${DOCKER_HOST:-the default socket}: start dockerd (docs/containers.md)"
mkdir -p "$work"
wheels_arg=()
if ! docker image inspect "$base" >/dev/null 2>&1 && ! docker pull -q "$base" >/dev/null 2>&1; then
  echo "images: $base cannot be pulled; building on a Debian 12 base made with debootstrap"
  base=ganops-base:bookworm
  docker image inspect "$base" >/dev/null 2>&1 || "$here/base.sh" "$work/rootfs" "$base"
  if [ ! -f "$work/wheels/.lock" ] || ! cmp -s "$work/wheels/.lock" "$repo/requirements.lock"; then
    "$here/wheelhouse.sh" "$work/rootfs" "$work/wheels"
    cp "$repo/requirements.lock" "$work/wheels/.lock"
  fi
  wheels_arg=(--build-arg WHEELS=wheels)
fi

# The build context, taken once so that every image sees the same source: the repository's files that git would
# commit (no .venv, no .ganops) plus the wheelhouse.
(cd "$repo" && git ls-files -co --exclude-standard | while IFS= read -r f; do [ -f "$f" ] && printf '%s\n' "$f"; done) > "$work/context.txt"
if [ ${#wheels_arg[@]} -gt 0 ]; then
  tar -cf "$work/context.tar" -C "$repo" -T "$work/context.txt" -C "$work" --exclude=.lock wheels
else
  tar -cf "$work/context.tar" -C "$repo" -T "$work/context.txt"
fi
context() { cat "$work/context.tar"; }
# The commit the images are built from (and whether tracked files differ from it), recorded in ganops:cpu.
commit=$(git -C "$repo" rev-parse HEAD 2>/dev/null || true)
dirty=$([ -n "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null)" ] && echo true || echo false)
build() {  # build IMAGE DOCKERFILE [ARG...]: one line and the last log lines when it fails
  local log="$work/build-${1//[:\/]/-}.log" start=$SECONDS
  if ! context | docker build --network host -q -f "$2" --build-arg BASE="$base" "${wheels_arg[@]}" "${@:3}" -t "$1" - > "$log" 2>&1; then
    die "building $1 from $2 failed: $(tail -5 "$log" | tr '\n' ' ')"
  fi
  echo "images: $1 built in $((SECONDS - start)) s, $(docker image inspect -f '{{.Size}}' "$1" | numfmt --to=si)B"
}
# Each image's build stage, tagged so that pruning dangling images keeps it as the cache.
build ganops-build:stage infra/Dockerfile --target build
build ganops:cpu infra/Dockerfile --build-arg GANOPS_COMMIT="$commit" --build-arg GANOPS_DIRTY="$dirty"
build ganops-build:serve infra/Dockerfile.serve --target build
build ganops:serve infra/Dockerfile.serve
if [ "${1:-}" = "--override" ]; then
  build ganops-postgres:15 infra/compose/Dockerfile.postgres
  build ganops-s3:moto infra/compose/Dockerfile.s3
fi
rm -f "$work/context.tar"
docker image prune -f >/dev/null  # replaced images and other stages' layers: vfs keeps a full copy of each
