#!/usr/bin/env bash
# A wheelhouse resolved for the image's own Python: pip runs inside ROOTFS (the Debian root the base image is made
# from) through chroot, so environment markers are those of Debian 12's python3 (3.11.2), not the host's.
# Usage: infra/images/wheelhouse.sh ROOTFS OUT   (the host's pip configuration, CA bundle and local indexes are lent
# to the chroot read-only; nothing is written to the repository).
set -euo pipefail
root=${1:?usage: wheelhouse.sh ROOTFS OUT} out=${2:?usage: wheelhouse.sh ROOTFS OUT}
repo=$(cd "$(dirname "$0")/../.." && pwd)
die() { echo "wheelhouse: $*" >&2; exit 2; }
[ -x "$root/usr/bin/python3" ] || die "$root has no /usr/bin/python3 (make it with infra/images/base.sh)"
mounts=()
cleanup() { for ((i=${#mounts[@]}-1; i>=0; i--)); do umount "${mounts[i]}" 2>/dev/null || true; done; }
trap cleanup EXIT
bind() {  # bind HOSTPATH: the same path inside the chroot, read-only
  [ -e "$1" ] || return 0
  if [ -d "$1" ]; then mkdir -p "$root$1"; else mkdir -p "$(dirname "$root$1")"; touch "$root$1"; fi
  mount --bind "$1" "$root$1" && mount -o remount,bind,ro "$root$1" && mounts+=("$root$1")
}
for p in /etc/pip.conf /etc/resolv.conf /etc/ssl/certs/ca-certificates.crt /opt/wheels /opt/pypi /opt/pypi-more; do bind "$p"; done
work=/tmp/ganops-wheelhouse; rm -rf "$root$work"; mkdir -p "$root$work/wheels"
cp "$repo/requirements.lock" "$root$work/"
# The project's own requirements (dependencies and the server extra), the S3 server of the compose override, and
# setuptools, which builds the project itself in the image.
"$repo/.venv/bin/python" - "$repo/pyproject.toml" > "$root$work/requirements.txt" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["server"] + ["moto[server]", "setuptools>=68"]))
PY
pip=(chroot "$root" env PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_FIND_LINKS=/opt/wheels PIP_DISABLE_PIP_VERSION_CHECK=1
     "$work/venv/bin/pip")
chroot "$root" /usr/bin/python3 -m venv "$work/venv"
"${pip[@]}" install --quiet --upgrade pip wheel || die "could not install pip and wheel inside $root"
"${pip[@]}" wheel --quiet -w "$work/wheels" -c "$work/requirements.lock" -r "$work/requirements.txt" \
  || die "pip wheel failed inside $root (see above)"
rm -rf "$out"; mkdir -p "$(dirname "$out")"; mv "$root$work/wheels" "$out"; rm -rf "${root:?}$work"
echo "wheelhouse: $(ls "$out" | wc -l) wheels, $(du -sh "$out" | cut -f1) in $out"
