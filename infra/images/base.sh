#!/usr/bin/env bash
# A Debian 12 base image for registries that cannot be reached: debootstrap a minimal root with python3 3.11, venv,
# git and CA certificates, then `docker import` it. Usage: infra/images/base.sh ROOTFS IMAGE [MIRROR]
set -euo pipefail
root=${1:?usage: base.sh ROOTFS IMAGE [MIRROR]} image=${2:?usage: base.sh ROOTFS IMAGE [MIRROR]}
# The mirror apt uses here (its first URIs:/deb line ending in /debian), unless one is given.
mirror=${3:-$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
  | sed -n -E 's,^(URIs:|deb) *(https?://[^ ]+/debian)/? *.*$,\2,p' | head -1 || true)}
die() { echo "base: $*" >&2; exit 2; }
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install -y debootstrap)"
[ -n "$mirror" ] || die "no Debian mirror found in apt's sources: pass one as the third argument"
if [ ! -x "$root/usr/bin/python3" ]; then
  rm -rf "$root"
  debootstrap --variant=minbase --include=python3,python3-venv,git,ca-certificates bookworm "$root" "$mirror" \
    > "$root.log" 2>&1 || die "debootstrap failed: $(tail -1 "$root.log")"
fi
# No apt lists or caches in the image; the root keeps them for the wheelhouse's chroot.
tar -C "$root" --exclude=./var/cache/apt/archives/*.deb --exclude=./var/lib/apt/lists/* --exclude=./tmp/* -c . \
  | docker import -c 'CMD ["/bin/bash"]' - "$image" >/dev/null || die "docker import of $root as $image failed"
echo "base: $image from $root ($(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=si)B)"
