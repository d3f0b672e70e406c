#!/usr/bin/env bash
# QEMU versions side by side for the test matrix: Debian's QEMU 10.0 (bookworm-backports) and
# 11.1 (trixie-backports) next to the system's (Debian 12: 7.2), none of them replacing it.
#
#   scripts/qemu-versions.sh [VERSION...]      VERSION: 10.0, 11.1 (default: both)
#
# Prints one line per version on stdout, "VERSION WRAPPER", e.g.
#   10.0 /var/cache/qcvm-matrix/bin/qemu-system-x86_64-10.0
# A wrapper runs that QEMU with the arguments it is given, in its own process (exec: the wrapper's
# PID is QEMU's, so qcvm's cgroups, numactl prefix, QMP and /proc/PID reads see QEMU itself), and
# is what `qemu.binary` or `qcvm doctor --qemu` take.
#
# How each is provided (cached in $QCVM_MATRIX_CACHE, default /var/cache/qcvm-matrix, outside any
# checkout, one directory per version; a second run finds it and touches no network):
#   10.0  `apt-get download` of qemu-system-x86 from bookworm-backports and whatever else apt would
#         install or upgrade with it on this host (resolved by a simulated install against this
#         host's dpkg status, with a private apt state: the system's sources and lists are not
#         changed), unpacked with `dpkg-deb -x` into qemu-10.0/root. The wrapper runs its binary
#         with that tree's libraries first (LD_LIBRARY_PATH), its module dir (QEMU_MODULE_DIR) and
#         its data and firmware dirs first (-L: Debian's build looks in /usr/share/qemu and
#         /usr/share/seabios, which hold this host's 7.2 files, not relative to the binary).
#   11.1  Built against trixie's libc, so it needs trixie's userland: a minimal trixie root made by
#         debootstrap (qemu-11.1/root) with qemu-system-x86 (and ovmf, for profiles' -bios) from
#         trixie-backports installed in it. The wrapper runs QEMU in a private mount namespace
#         (`unshare --mount --propagation private`) in which the root's /usr is bound over /usr
#         (and its ld.so.cache over /etc/ld.so.cache): QEMU sees this host's /tmp, /run, /dev,
#         /proc, /sys and checkouts unchanged, and the namespace ends with QEMU, so nothing is
#         mounted on the host and no host directory is ever bound *into* the cached root (deleting
#         the cache can never reach host files). As root that needs nothing more; as another user
#         the wrapper makes a user namespace too (`--map-root-user`, where the kernel allows
#         unprivileged user namespaces: root inside it only, so mount works).
#
# Exit status: 0 every version asked for is ready; 3 some could not be fetched (the archive or
# the network unreachable: the lines printed are the ones that are ready, and stderr says why the
# rest are not); 2 usage or not root. Needs Debian (apt-get, dpkg-deb), root, util-linux unshare.
set -euo pipefail

CACHE=${QCVM_MATRIX_CACHE:-/var/cache/qcvm-matrix}
MIRROR=${QCVM_MATRIX_MIRROR:-http://deb.debian.org/debian}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
BIN=$CACHE/bin

say() { echo "qemu-versions: $*" >&2; }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# apt-get update once per run, before the first package this script installs or fetches.
updated=
apt_update_once() {
  [ -n "$updated" ] && return 0
  say "apt-get update"
  apt-get update -qq || return 1
  updated=1
}

# A private apt configuration (sources, lists, archives under $1): the system's sources.list and
# lists stay exactly as they were, the host's dpkg status is read (to know what is installed).
private_apt_opts() {
  local dir=$1
  echo "-o Dir::Etc::SourceList=$dir/sources.list -o Dir::Etc::SourceParts=$dir/sources.list.d" \
    "-o Dir::State::Lists=$dir/lists -o Dir::Cache=$dir/cache -o Debug::NoLocking=1" \
    "-o APT::Get::AllowUnauthenticated=false -o APT::Sandbox::User=root"
}

# What a cached version was made by: this script's function for it (and the package list), so a
# changed recipe rebuilds the cache instead of trusting an old one.
recipe() { { declare -f "$1" in_root; echo "${QEMU_10_0_PACKAGES[*]}"; } | sha256sum | cut -c1-16; }

# Ready: made by the current recipe, and the wrapper runs and says the version.
cached() {
  local dir=$1 fn=$2 wrapper=$3 want=$4
  [ "$(head -1 "$dir/ready" 2>/dev/null)" = "recipe $(recipe "$fn")" ] && wrapper_ok "$wrapper" "$want"
}

wrapper_ok() {
  local w=$1 want=$2
  [ -x "$w" ] && "$w" --version 2>/dev/null | grep -q "QEMU emulator version $want"
}

# ---------------------------------------------------------------------------------------------
# 10.0: bookworm-backports, unpacked next to the system's QEMU.
# ---------------------------------------------------------------------------------------------
# Every package holding QEMU 10.0 modules, not only qemu-system-x86: QEMU looks for a module in
# QEMU_MODULE_DIR first and then in its built-in dir, /usr/lib/x86_64-linux-gnu/qemu, where this
# host's 7.2 keeps its own; qom-list-types loads every module QEMU knows, and one found only there
# makes 10.0 abort ("Only modules from the same build can be loaded", then an assertion).
QEMU_10_0_PACKAGES=(qemu-system-x86 qemu-system-gui qemu-system-modules-spice qemu-system-modules-opengl qemu-block-extra)

provide_10_0() {
  local dir=$CACHE/qemu-10.0 wrapper=$BIN/qemu-system-x86_64-10.0
  if cached "$dir" provide_10_0 "$wrapper" 10.0; then
    echo "10.0 $wrapper"
    return 0
  fi
  say "10.0: fetching qemu-system-x86 from bookworm-backports into $dir"
  local apt=$dir/apt tmp opts pkgs
  rm -rf "$dir" && mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/sources.list.d"
  {
    echo "deb [signed-by=$KEYRING] $MIRROR bookworm main"
    echo "deb [signed-by=$KEYRING] $MIRROR bookworm-updates main"
    echo "deb [signed-by=$KEYRING] $MIRROR bookworm-backports main"
    echo "deb [signed-by=$KEYRING] ${MIRROR%/debian}/debian-security bookworm-security main"
  } >"$apt/sources.list"
  opts=$(private_apt_opts "$apt")
  # shellcheck disable=SC2086 # opts is a list of -o words
  apt-get $opts update -qq || { say "10.0: cannot reach $MIRROR (apt-get update failed)"; return 3; }
  # What installing it would add or upgrade on this host: exactly the packages to unpack.
  # shellcheck disable=SC2086
  pkgs=$(apt-get $opts -s -qq --no-install-recommends -t bookworm-backports install "${QEMU_10_0_PACKAGES[@]}" |
    awk '/^Inst / {v = $0; sub(/^[^(]*\(/, "", v); sub(/ .*/, "", v); print $2 "=" v}')
  [ -n "$pkgs" ] || { say "10.0: apt resolved no packages for qemu-system-x86 (bookworm-backports)"; return 3; }
  tmp=$(mktemp -d /tmp/qcvm-matrix-debs.XXXXXX)
  # shellcheck disable=SC2086
  if ! (cd "$tmp" && apt-get $opts download -qq $pkgs); then
    rm -rf "$tmp"
    say "10.0: apt-get download failed"
    return 3
  fi
  mkdir -p "$dir/root"
  local f
  for f in "$tmp"/*.deb; do dpkg-deb -x "$f" "$dir/root"; done
  rm -rf "$tmp" "$apt"
  mkdir -p "$BIN"
  cat >"$wrapper.new" <<EOF
#!/bin/sh
# QEMU 10.0 from Debian bookworm-backports, unpacked (not installed) in $dir/root by
# scripts/qemu-versions.sh (the packages unpacked are listed in $dir/ready).
R=$dir/root
LD_LIBRARY_PATH="\$R/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
QEMU_MODULE_DIR="\$R/usr/lib/x86_64-linux-gnu/qemu"
export LD_LIBRARY_PATH QEMU_MODULE_DIR
exec "\$R/usr/bin/qemu-system-x86_64" -L "\$R/usr/share/qemu" -L "\$R/usr/share/seabios" "\$@"
EOF
  chmod 755 "$wrapper.new" && mv "$wrapper.new" "$wrapper"
  wrapper_ok "$wrapper" 10.0 || { say "10.0: the unpacked QEMU does not run: $("$wrapper" --version 2>&1 | head -3)"; return 1; }
  { echo "recipe $(recipe provide_10_0)"; echo "$pkgs"; } >"$dir/ready"
  echo "10.0 $wrapper"
}

# ---------------------------------------------------------------------------------------------
# 11.1: trixie-backports, in a debootstrap'ed trixie root, run in a private mount namespace.
# ---------------------------------------------------------------------------------------------

# Run a command chrooted into the root, in a private mount namespace that has the root's own
# /proc, /dev/pts and a tmpfs /tmp mounted inside it (and nothing of the host's): it all vanishes
# with the namespace, so the root never has host directories bound into it.
in_root() {
  local root=$1
  shift
  unshare --mount --propagation private --fork -- /bin/sh -c '
    r=$1; shift
    mount -t proc proc "$r/proc" && mount -t tmpfs tmpfs "$r/tmp" || exit 1
    exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"
  ' sh "$root" "$@"
}

provide_11_1() {
  local dir=$CACHE/qemu-11.1 wrapper=$BIN/qemu-system-x86_64-11.1
  if cached "$dir" provide_11_1 "$wrapper" 11.1; then
    echo "11.1 $wrapper"
    return 0
  fi
  if ! command -v debootstrap >/dev/null; then
    apt_update_once || { say "11.1: apt-get update failed"; return 3; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null ||
      { say "11.1: cannot install debootstrap"; return 3; }
  fi
  # Nothing is ever bound into the root (see in_root), so removing an old one is safe; refuse if a
  # mount below it exists all the same (someone else's doing), rather than delete through it.
  if [ -d "$dir" ] && awk -v d="$dir/" 'index($2 "/", d) == 1 {found = 1} END {exit !found}' /proc/self/mounts; then
    say "11.1: something is mounted below $dir; unmount it first (not deleting through a mount)"
    return 1
  fi
  say "11.1: debootstrap trixie into $dir/root (a few minutes, once)"
  rm -rf "$dir" && mkdir -p "$dir"
  if ! debootstrap --variant=minbase --keyring="$KEYRING" trixie "$dir/root" "$MIRROR" >"$dir/debootstrap.log" 2>&1; then
    say "11.1: debootstrap trixie failed (last lines of $dir/debootstrap.log):"
    tail -5 "$dir/debootstrap.log" >&2
    return 3
  fi
  echo "deb $MIRROR trixie-backports main" >"$dir/root/etc/apt/sources.list.d/backports.list"
  in_root "$dir/root" apt-get update -qq || { say "11.1: apt-get update in the trixie root failed"; return 3; }
  in_root "$dir/root" apt-get install -y -qq --no-install-recommends -t trixie-backports qemu-system-x86 ovmf >"$dir/install.log" 2>&1 || {
    say "11.1: installing qemu-system-x86 from trixie-backports failed (last lines of $dir/install.log):"
    tail -5 "$dir/install.log" >&2
    return 3
  }
  in_root "$dir/root" apt-get clean
  mkdir -p "$BIN"
  cat >"$wrapper.new" <<EOF
#!/bin/sh
# QEMU 11.1 from Debian trixie-backports, installed in the trixie root $dir/root by
# scripts/qemu-versions.sh. It needs trixie's libc, so it runs in a private mount namespace in
# which that root's /usr is bound over /usr (and its ld.so.cache over /etc/ld.so.cache); every
# other path is this host's. The namespace ends with QEMU; nothing is mounted on the host, and
# nothing of the host is bound into the root. unshare, sh and mount exec in turn, so QEMU keeps
# this wrapper's PID.
R=$dir/root
ns="--mount --propagation private"
# Not root (launch and qcvm's probe run QEMU as the QEMU user, privileges dropped): a user
# namespace owning the mount namespace (kernel permitting), in which this user is root, so that
# mount keeps its capabilities across exec; outside, QEMU is still this user.
[ "\$(id -u)" = 0 ] || ns="--user --map-root-user \$ns"
# shellcheck disable=SC2086
exec unshare \$ns -- /bin/sh -c '
  mount --bind "\$0/usr" /usr && mount --bind "\$0/etc/ld.so.cache" /etc/ld.so.cache || exit 127
  exec /usr/bin/qemu-system-x86_64 "\$@"' "\$R" "\$@"
EOF
  chmod 755 "$wrapper.new" && mv "$wrapper.new" "$wrapper"
  wrapper_ok "$wrapper" 11.1 || { say "11.1: the trixie root's QEMU does not run: $("$wrapper" --version 2>&1 | head -3)"; return 1; }
  { echo "recipe $(recipe provide_11_1)"; in_root "$dir/root" dpkg-query -W qemu-system-x86 ovmf; } >"$dir/ready.new"
  mv "$dir/ready.new" "$dir/ready"
  echo "11.1 $wrapper"
}

[ "$(id -u)" = 0 ] || { say "needs root (writes $CACHE, debootstrap, mount namespaces)"; exit 2; }
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || { say "needs Debian's apt-get and dpkg-deb"; exit 2; }
[ $# -gt 0 ] || set -- 10.0 11.1
mkdir -p "$CACHE"
status=0
for v in "$@"; do
  rc=0
  case $v in
    10.0) provide_10_0 || rc=$? ;;
    11.1) provide_11_1 || rc=$? ;;
    -h | --help) usage ;;
    *) say "unknown version $v (10.0 or 11.1)"; exit 2 ;;
  esac
  if [ "$rc" -ne 0 ]; then
    say "$v: not available"
    [ "$status" -ne 0 ] || status=$rc
  fi
done
exit "$status"
