#!/usr/bin/env bash
# Run the test suite as it would run on hosts unlike this one, for real: each scenario is a
# private mount + PID namespace (unshare) in which /dev or /sys/fs/cgroup is rearranged, then
# `npx vitest run` inside it. Nothing outside the namespace changes: its mounts are private
# (propagation private), and when the scenario ends its PID namespace dies, taking every QEMU and
# qcvm a test left behind with it (the kernel SIGKILLs a PID namespace whose init exits).
#
#   scripts/test-hosts.sh SCENARIO [vitest args...]     e.g. scripts/test-hosts.sh no-kvm test/launch.test.ts
#
# Scenarios:
#   host       no change: the same namespaces only, to tell a scenario's failures from the wrapping's.
#   no-kvm     /dev is a tmpfs holding everything of the real /dev except kvm (the kvm module stays
#              loaded, /sys/module/kvm exists): a host whose /dev/kvm is absent. Every test that
#              starts QEMU must fall back to TCG and say so.
#   kvm-file   /dev/kvm is an empty regular file: exists and opens read-write, yet is no KVM.
#   kvm-dead   /dev/kvm is a character device no driver answers (major 240, "local/experimental
#              use" in devices.txt, unregistered here): open() fails with ENXIO, as on a host whose
#              udev left the node but whose kvm module is gone.
#   cgroup2    /sys/fs/cgroup is a cgroup2 mount and nothing else (the v1 hierarchies, their tmpfs
#              and the extra /sys/fs/cgroup/unified are unmounted in the namespace), and /proc/mounts
#              (per mount namespace) says so. The kernel binds a controller to one hierarchy at a
#              time: cpuset and memory stay bound to the host's v1 hierarchies, which live on in the
#              host's namespace, so this v2 root offers neither. That models a cgroup-v2-only host
#              that has not delegated cpuset/memory to qcvm (a container, a systemd user slice).
#   all        every scenario above in turn; exits non-zero if any failed.
#
# Needs root, Linux, util-linux unshare. Builds dist/ first (the CLI tests run the built bin).
set -euo pipefail

SCENARIOS=(host no-kvm kvm-file kvm-dead cgroup2)
here=$(cd "$(dirname "$0")/.." && pwd)

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Inside the namespace, /dev without kvm: a tmpfs whose entries are bind mounts of the real ones.
# Binding the nodes (not mknod) keeps every device exactly the host's, pts and shm included.
dev_without_kvm() {
  local stage
  stage=$(mktemp -d /tmp/qcvm-hosts-dev.XXXXXX)
  mount --rbind /dev "$stage"
  mount -t tmpfs -o mode=755,nosuid tmpfs /dev
  local e name
  for e in "$stage"/* "$stage"/.[!.]*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    name=${e##*/}
    [ "$name" = kvm ] && continue
    if [ -L "$e" ]; then
      ln -s "$(readlink "$e")" "/dev/$name"
    elif [ -d "$e" ]; then
      mkdir "/dev/$name" && mount --rbind "$e" "/dev/$name"
    else
      : >"/dev/$name" && mount --bind "$e" "/dev/$name"
    fi
  done
  umount -R "$stage" && rmdir "$stage"
}

# Runs inside the namespaces (PID 1 of the new PID namespace is unshare's child: this shell).
inner() {
  local scenario=$1
  shift
  case $scenario in
    host) ;;
    no-kvm)
      dev_without_kvm
      [ ! -e /dev/kvm ] || { echo "test-hosts: /dev/kvm still there" >&2; return 1; }
      ;;
    kvm-file)
      dev_without_kvm
      : >/dev/kvm
      ;;
    kvm-dead)
      dev_without_kvm
      mknod -m 600 /dev/kvm c 240 0
      if (exec 3<>/dev/kvm) 2>/dev/null; then echo "test-hosts: c 240:0 has a driver here; pick another major" >&2; return 1; fi
      ;;
    cgroup2)
      umount -R /sys/fs/cgroup
      # No mount options: the v2 hierarchy is one superblock shared with the host's
      # /sys/fs/cgroup/unified, and options given here would reconfigure it there too.
      mount -t cgroup2 cgroup2 /sys/fs/cgroup
      if grep -q ' cgroup ' /proc/mounts; then echo "test-hosts: a v1 hierarchy is still mounted" >&2; return 1; fi
      echo "test-hosts[cgroup2]: v2 root controllers: '$(cat /sys/fs/cgroup/cgroup.controllers)'" >&2
      ;;
    *) usage ;;
  esac
  echo "test-hosts[$scenario]: /dev/kvm: $(stat -c '%F %t:%T' /dev/kvm 2>&1 | sed 's/^stat: //')" >&2
  echo "test-hosts[$scenario]: cgroup mounts: $(awk '$3 ~ /^cgroup/ {printf "%s(%s) ", $2, $3}' /proc/mounts)" >&2
  cd "$here"
  npx vitest run "$@"
}

run_one() {
  local scenario=$1
  shift
  echo "=== test-hosts: $scenario ===" >&2
  # --mount-proc: the PID namespace's own /proc, so /proc/<pid> of QEMUs started here resolves.
  unshare --mount --propagation private --pid --fork --mount-proc -- "$0" --inner "$scenario" "$@"
}

[ $# -ge 1 ] || usage
if [ "$1" = --inner ]; then
  shift
  inner "$@"
  exit
fi
[ "$(id -u)" = 0 ] || { echo "test-hosts: needs root (mount namespaces, mounts, mknod)" >&2; exit 2; }
command -v unshare >/dev/null || { echo "test-hosts: needs unshare (util-linux)" >&2; exit 2; }

scenario=$1
shift
case $scenario in
  all)
    (cd "$here" && node scripts/build.mjs)
    failed=()
    for s in "${SCENARIOS[@]}"; do run_one "$s" "$@" || failed+=("$s"); done
    if [ ${#failed[@]} -gt 0 ]; then
      echo "test-hosts: failed: ${failed[*]}" >&2
      exit 1
    fi
    echo "test-hosts: all scenarios passed: ${SCENARIOS[*]}" >&2
    ;;
  host | no-kvm | kvm-file | kvm-dead | cgroup2)
    (cd "$here" && node scripts/build.mjs)
    run_one "$scenario" "$@"
    ;;
  *) usage ;;
esac
