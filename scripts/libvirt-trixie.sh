#!/usr/bin/env bash
# A newer libvirt's schema checker beside the system's (Debian 12: libvirt 9.0, which predates
# launchSecurity sev-snp, 10.5, and tdx, 11.6): libvirt-clients and libxml2-utils from Debian
# trixie-backports (libvirt 12.x), installed in a copy of the trixie root scripts/qemu-versions.sh
# builds for QEMU 11.1 (that root is reused, never modified).
#
#   scripts/libvirt-trixie.sh          prints "VERSION ROOT", e.g. "12.9.0 /var/cache/qcvm-matrix/libvirt-trixie/root"
#
# Run the validator in it with a private mount namespace (nothing of the host is bound into the
# root; the namespace vanishes with the command), files passed under the root's /var/tmp:
#   unshare --mount --propagation private -- chroot ROOT virt-xml-validate /var/tmp/x.xml domain
# test/export-libvirt.test.ts does that when the root is ready, for every export.
#
# Cached in $QCVM_MATRIX_CACHE (default /var/cache/qcvm-matrix)/libvirt-trixie; a second run finds
# it. Exit status: 0 ready; 3 could not be fetched (archive unreachable); 2 not root.
set -euo pipefail
CACHE=${QCVM_MATRIX_CACHE:-/var/cache/qcvm-matrix}
here=$(cd "$(dirname "$0")/.." && pwd)
dir=$CACHE/libvirt-trixie
say() { echo "libvirt-trixie: $*" >&2; }
[ "$(id -u)" = 0 ] || { say "needs root (chroot, mount namespaces)"; exit 2; }

if [ -f "$dir/ready" ]; then
  echo "$(cat "$dir/ready") $dir/root"
  exit 0
fi
"$here/scripts/qemu-versions.sh" 11.1 >/dev/null || { say "no trixie root (scripts/qemu-versions.sh 11.1 failed)"; exit 3; }
base=$CACHE/qemu-11.1/root
# Refuse to delete through a mount (as qemu-versions.sh does).
if [ -d "$dir" ] && awk -v d="$dir/" 'index($2 "/", d) == 1 {found = 1} END {exit !found}' /proc/self/mounts; then
  say "something is mounted below $dir; unmount it first"
  exit 1
fi
rm -rf "$dir" && mkdir -p "$dir"
cp -a "$base" "$dir/root"
in_root() {
  unshare --mount --propagation private --fork -- /bin/sh -c '
    r=$1; shift
    mount -t proc proc "$r/proc" && mount -t tmpfs tmpfs "$r/tmp" || exit 1
    exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"
  ' sh "$dir/root" "$@"
}
in_root apt-get update -qq || { say "apt-get update in the root failed"; exit 3; }
in_root apt-get install -y -qq --no-install-recommends -t trixie-backports libvirt-clients libxml2-utils \
  >"$dir/install.log" 2>&1 || { say "install failed (see $dir/install.log)"; tail -5 "$dir/install.log" >&2; exit 3; }
in_root apt-get clean
version=$(in_root dpkg-query -W -f '${Version}' libvirt-clients | sed 's/[-~].*//')
echo "$version" >"$dir/ready"
echo "$version $dir/root"
