#!/usr/bin/env bash
# Run the test suite as it would run on hosts unlike this one, for real: each scenario is a
# private mount + PID namespace (unshare) in which /dev or /sys/fs/cgroup is rearranged, then
# `npx vitest run` inside it. Nothing outside the namespace changes: its mounts are private
# (propagation private), and when the scenario ends its PID namespace dies, taking every QEMU and
# qcvm a test left behind with it (the kernel SIGKILLs a PID namespace whose init exits).
#
#   scripts/test-hosts.sh SCENARIO [vitest args...]     e.g. scripts/test-hosts.sh no-kvm test/launch.test.ts
#   scripts/test-hosts.sh --files SCENARIO              the test files whose code paths read what
#                                                       SCENARIO changes (what .ci/run runs there)
#
# Scenarios:
#   host       no change: the same namespaces only, to tell a scenario's failures from the wrapping's.
#   no-kvm     /dev is a tmpfs holding everything of the real /dev except kvm (the kvm module stays
#              loaded, /sys/module/kvm exists): a host whose /dev/kvm is absent. Every test that
#              starts QEMU must fall back to TCG and say so.
#   kvm-file   /dev/kvm is an empty regular file: exists and opens read-write, yet is no KVM.
#              (Both stand-ins are root:kvm 0660, as Debian's udev rule makes the real node.)
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
#   vm-cgroup2 (not in all: a VM boot, and Debian packages) cgroup v2 *with* cpuset and memory,
#              which no namespace can give here: a controller stays bound to the host's v1
#              hierarchy while that exists (`+cpuset` into the v2 root's subtree_control is ENOENT),
#              and unmounting the host's v1 hierarchies is not ours to do. So a real kernel boots
#              under this machine's QEMU with no v1 mount, this machine's / shared read-only
#              over virtio-9p (under a tmpfs overlay) and the repository read-write, and the suite
#              runs there as root on a cgroup2-only /sys/fs/cgroup. The kernel is Debian's
#              (linux-image-amd64 and busybox-static, fetched once with `apt-get download` into
#              $QCVM_TEST_HOSTS_CACHE, default /var/cache/qcvm-test-hosts). The guest runs under
#              TCG (QCVM_TEST_HOSTS_VM_ACCEL=kvm where nested KVM boots Linux, auto: kvm when
#              /dev/kvm opens), has no /dev/kvm, and its QEMU tests use TCG inside that: slow, so
#              name test files to run a subset.
#   vm-numa2   (not in all) the same guest with two NUMA nodes (QEMU -numa: 2 vCPUs and half the
#              memory each, node 1 at distance 20), cgroup v2 with cpuset and memory: the
#              placement machinery against a real two-node kernel. Runs vitest.numa2.config.ts
#              (test/**/*-numa.test.ts, which need two nodes, and the cgroup tests) with any
#              vitest arguments given (test files filter within it). What it cannot show: the guest's nodes are QEMU's (node 1's memory
#              is this machine's node 0 underneath: locality is not measured, only where the
#              guest kernel puts pages), and it has no KVM of its own, so no guest_memfd (a memfd
#              stands in) and no SEV/TDX.
#
# Needs root, Linux, util-linux unshare. Builds dist/ first when it is older than its sources (the
# CLI tests run the built bin).
set -euo pipefail

SCENARIOS=(host no-kvm kvm-file kvm-dead cgroup2)
here=$(cd "$(dirname "$0")/.." && pwd)

# The test files that read /dev/kvm (KVM_FILES) and the cgroup filesystem (CGROUP_FILES) on the
# real host, themselves or through the CLI, QEMU or libvirtd they start: found by
# scripts/host-touches.sh (strace per file). Every other file reads fixtures only, so it behaves on
# these scenarios exactly as on this host, where npm test runs it. Re-run host-touches.sh after
# adding a test that starts QEMU or the CLI against the real host.
KVM_FILES=(
  cgroup.test.ts claim.test.ts cli-console.test.ts cli-conventions.test.ts cli-doctor.test.ts
  cli-launch.test.ts cli-render.test.ts cli-user.test.ts export-libvirt.test.ts
  export-systemd.test.ts failures.test.ts gmem.test.ts kill-anytime.test.ts launch-prealloc.test.ts
  launch.test.ts libvirtd.test.ts observe.test.ts placement-numa.test.ts prealloc-eintr.test.ts
  prealloc-numa.test.ts prealloc.test.ts privsep-launch.test.ts probe-host.test.ts
  qemu-start.test.ts resource-errors.test.ts validate-formats.test.ts
)
CGROUP_FILES=(
  cgroup.test.ts claim.test.ts cli-console.test.ts cli-conventions.test.ts cli-doctor.test.ts
  cli-launch.test.ts cli-render.test.ts cli-user.test.ts export-libvirt.test.ts
  export-systemd.test.ts failures.test.ts gmem.test.ts kill-anytime.test.ts launch-prealloc.test.ts
  launch.test.ts libvirtd.test.ts lock.test.ts observe.test.ts placement-numa.test.ts
  prealloc-numa.test.ts prealloc.test.ts privsep-launch.test.ts probe-host.test.ts
  qemu-start.test.ts resource-errors.test.ts validate-formats.test.ts
)
scenario_files() {
  local f
  for f in "${KVM_FILES[@]}" "${CGROUP_FILES[@]}"; do
    [ -e "$here/test/$f" ] || { echo "test-hosts: test/$f is listed but gone: re-run scripts/host-touches.sh" >&2; exit 2; }
  done
  case $1 in
    no-kvm | kvm-file | kvm-dead) printf 'test/%s\n' "${KVM_FILES[@]}" ;;
    cgroup2) printf 'test/%s\n' "${CGROUP_FILES[@]}" ;;
    host) ;;
    *) usage ;;
  esac
}

# dist/ rebuilt only when a source is newer (as test/global-setup.ts decides): a rebuild deletes
# dist/ first, and is wasted when several scenarios run in turn.
build_if_stale() {
  if [ ! -e "$here/dist/cli.js" ] || [ -n "$(cd "$here" && find src schemas scripts/build.mjs package.json -newer dist/cli.js -print -quit)" ]; then
    (cd "$here" && node scripts/build.mjs)
  fi
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Inside the namespace, /dev without kvm: a tmpfs whose entries are bind mounts of the real ones.
# Binding the nodes (not mknod) keeps every device exactly the host's, shm included. Not ptys: the
# kernel finds the devpts instance of a /dev/ptmx open at `pts` beside that ptmx node, which for a
# bind-mounted node is not this /dev/pts, and the open fails (ENOENT: `script` says "failed to
# create pseudo-terminal"). So /dev/pts is a devpts instance of the namespace's own and /dev/ptmx
# its pts/ptmx, as in a container (devpts(5), Documentation/filesystems/devpts.rst).
dev_without_kvm() {
  local stage
  stage=$(mktemp -d /tmp/qcvm-hosts-dev.XXXXXX)
  mount --rbind /dev "$stage"
  mount -t tmpfs -o mode=755,nosuid tmpfs /dev
  local e name
  for e in "$stage"/* "$stage"/.[!.]*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    name=${e##*/}
    case $name in kvm | ptmx | pts) continue ;; esac
    if [ -L "$e" ]; then
      ln -s "$(readlink "$e")" "/dev/$name"
    elif [ -d "$e" ]; then
      mkdir "/dev/$name" && mount --rbind "$e" "/dev/$name"
    else
      : >"/dev/$name" && mount --bind "$e" "/dev/$name"
    fi
  done
  umount -R "$stage" && rmdir "$stage"
  mkdir /dev/pts && mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts
  ln -s pts/ptmx /dev/ptmx
}

# The stand-in /dev/kvm as Debian's udev rule makes the real one (root:kvm 0660, what .ci/run
# sets): what differs from a working host is what the node is, not who may open it, so the tests
# that run QEMU as the qcvm-qemu user (kvm group) run here too.
kvm_node_perms() {
  chown root:kvm /dev/kvm 2>/dev/null || echo "test-hosts: no kvm group: /dev/kvm stays root's" >&2
  chmod 0660 /dev/kvm
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
      kvm_node_perms
      ;;
    kvm-dead)
      dev_without_kvm
      mknod /dev/kvm c 240 0
      kvm_node_perms
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

# ---------------------------------------------------------------------------------------------
# vm-cgroup2: a guest kernel whose only cgroup hierarchy is v2, holding every controller.
# ---------------------------------------------------------------------------------------------
CACHE=${QCVM_TEST_HOSTS_CACHE:-/var/cache/qcvm-test-hosts}
# Modules the initramfs loads, dependencies first: virtio PCI transport, 9p over virtio, overlay.
VM_MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p overlay)

# The Debian kernel, the modules the initramfs loads and static busybox, unpacked from the .debs
# into the cache (not installed: nothing else on this machine changes); the rest is dropped.
vm_fetch() {
  [ -e "$CACHE/ready" ] && return 0
  command -v apt-get >/dev/null || { echo "test-hosts: vm-cgroup2 fetches Debian's kernel with apt-get; elsewhere put vmlinuz, busybox and modules/*.ko in $CACHE" >&2; return 1; }
  local image tmp kver m f
  image=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
  [ -n "$image" ] || { echo "test-hosts: no linux-image-amd64 in apt's lists (run apt-get update)" >&2; return 1; }
  tmp=$(mktemp -d /tmp/qcvm-hosts-debs.XXXXXX)
  (cd "$tmp" && apt-get download "$image" busybox-static) || { rm -rf "$tmp"; return 1; }
  for f in "$tmp"/*.deb; do dpkg-deb -x "$f" "$tmp/root"; done
  rm -rf "$CACHE" && mkdir -p "$CACHE/modules"
  cp "$tmp"/root/boot/vmlinuz-* "$CACHE/vmlinuz"
  cp "$tmp/root/bin/busybox" "$CACHE/busybox"
  kver=$(ls "$tmp/root/lib/modules")
  for m in "${VM_MODULES[@]}"; do
    f=$(find "$tmp/root/lib/modules/$kver" -name "$m.ko" -o -name "$m.ko.xz" | head -1)
    [ -n "$f" ] || { echo "test-hosts: module $m not in $kver" >&2; rm -rf "$tmp"; return 1; }
    case $f in *.xz) xz -dc "$f" >"$CACHE/modules/$m.ko" ;; *) cp "$f" "$CACHE/modules/$m.ko" ;; esac
  done
  echo "$kver" >"$CACHE/ready"
  rm -rf "$tmp"
}

vm_initramfs() {
  local out=$1 work
  work=$(mktemp -d /tmp/qcvm-hosts-initrd.XXXXXX)
  mkdir -p "$work"/{bin,lib,proc,sys,dev,host,newroot,ovl}
  cp "$CACHE/busybox" "$work/bin/busybox"
  cp "$CACHE"/modules/*.ko "$work/lib/"
  cat >"$work/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc && mount -t sysfs sysfs /sys && mount -t devtmpfs devtmpfs /dev
for m in MODULES; do insmod /lib/$m.ko || echo "init: insmod $m failed"; done
# cache=loose: the guest keeps what it read (node_modules is read by every vitest worker; without
# a page cache each read is a 9p round trip, and under TCG a worker took over vitest's fixed 60 s
# start timeout). Nothing changes these trees on the host while the guest runs; the guest's own
# writes to the repository are flushed by the sync before power-off.
mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576,cache=loose,ro hostroot /host || exec poweroff -f
# The host's / read-only under a tmpfs: the guest writes /tmp, /run and caches without touching it.
mount -t tmpfs -o size=75% tmpfs /ovl && mkdir /ovl/upper /ovl/work
mount -t overlay -o lowerdir=/host,upperdir=/ovl/upper,workdir=/ovl/work overlay /newroot || exec poweroff -f
mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576,cache=loose repo "/newroot$qcvm_repo" || exec poweroff -f
mount --move /proc /newroot/proc && mount --move /sys /newroot/sys && mount --move /dev /newroot/dev
exec chroot /newroot /bin/bash "$qcvm_repo/scripts/test-hosts.sh" --vm-inner
INIT
  sed -i "s/MODULES/${VM_MODULES[*]}/" "$work/init"
  chmod +x "$work/init"
  (cd "$work" && find . | "$CACHE/busybox" cpio -o -H newc | gzip -1) >"$out"
  rm -rf "$work"
}

# The guest's userland half: runs as root in the chroot of the overlay, then powers off.
vm_inner() {
  local state="$here/.test-hosts-vm"
  mkdir -p /dev/pts /dev/shm
  mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
  # /tmp is already the overlay's (the repository may live under it); /run starts empty, as
  # after a boot, not with this machine's locks and sockets.
  mount -t tmpfs tmpfs /run
  # Whatever the host had at /sys/fs/cgroup is not here: /sys is the guest's own sysfs.
  mount -t cgroup2 cgroup2 /sys/fs/cgroup
  export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
  # However this ends, power off: the host reads the exit code from $state/rc.
  trap 'sync; echo o >/proc/sysrq-trigger; sleep 10' EXIT
  mapfile -t args <"$state/args"
  local tag
  tag="test-hosts[$(cat "$state/scenario")]"
  {
    echo "$tag: guest $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print $2" kB"}' /proc/meminfo)"
    echo "$tag: NUMA nodes: $(ls -d /sys/devices/system/node/node* | sed 's,.*/node,,' | tr '\n' ' ')"
    echo "$tag: /dev/kvm: $(stat -c '%F %t:%T' /dev/kvm 2>&1 | sed 's/^stat: //')"
    echo "$tag: cgroup mounts: $(awk '$3 ~ /^cgroup/ {printf "%s(%s) ", $2, $3}' /proc/mounts)"
    echo "$tag: v2 root controllers: '$(cat /sys/fs/cgroup/cgroup.controllers)'"
  } >&2
  local rc=0
  # Through cat: the serial console is a tty, on which vitest would redraw its progress.
  cd "$here"
  set +e
  npx vitest run "${args[@]}" 2>&1 | cat
  rc=${PIPESTATUS[0]}
  set -e
  echo "$rc" >"$state/rc"
}

# The accelerator for the guest: QCVM_TEST_HOSTS_VM_ACCEL=kvm|tcg|auto. auto: kvm when the guest
# kernel gets through its boot under KVM here, tested by booting it with no root, which must end
# in a panic (and, with panic=-1 and -no-reboot, QEMU's exit) within 30 s; else tcg. On the
# machine kind this was written on (itself a VM) /dev/kvm starts QEMU fine, yet a nested guest
# kernel stops after "Probing EDD" for good, so opening /dev/kvm is not enough to go by.
# The verdict is cached per host kernel and guest kernel in $CACHE/kvm-boots.
vm_accel() {
  local want=${QCVM_TEST_HOSTS_VM_ACCEL:-tcg} key
  key="$(uname -r) $(cat "$CACHE/ready")"
  if [ "$want" = auto ] && [ "$(sed -n 1p "$CACHE/kvm-boots" 2>/dev/null)" = "$key" ]; then
    want=$(sed -n 2p "$CACHE/kvm-boots")
    echo "test-hosts: QCVM_TEST_HOSTS_VM_ACCEL=auto: $want (cached in $CACHE/kvm-boots)" >&2
  elif [ "$want" = auto ]; then
    want=tcg
    if (exec 3<>/dev/kvm) 2>/dev/null &&
      timeout 30 qemu-system-x86_64 -machine q35,accel=kvm -cpu host,-arch-capabilities -m 256M -nodefaults \
        -display none -no-reboot -serial stdio -kernel "$CACHE/vmlinuz" -append "console=ttyS0 panic=-1" \
        </dev/null 2>&1 | grep -q "Kernel panic"; then
      want=kvm
    fi
    echo "test-hosts: QCVM_TEST_HOSTS_VM_ACCEL=auto: $want (nested KVM $([ $want = kvm ] && echo boots || echo "does not boot") the guest kernel)" >&2
    printf '%s\n%s\n' "$key" "$want" >"$CACHE/kvm-boots"
  fi
  echo "$want"
}

run_vm() {
  local scenario=$1
  shift
  vm_fetch
  local state="$here/.test-hosts-vm" kernel
  rm -rf "$state" && mkdir -p "$state"
  trap 'rm -rf "$here/.test-hosts-vm"' EXIT
  # vm-numa2 runs its own vitest config (named files filter within it).
  [ "$scenario" != vm-numa2 ] || set -- --config vitest.numa2.config.ts "$@"
  printf '%s\n' "$@" >"$state/args"
  echo "$scenario" >"$state/scenario"
  vm_initramfs "$state/initrd.gz"
  kernel=$CACHE/vmlinuz
  local accel
  accel=$(vm_accel)
  echo "=== test-hosts: $scenario (Debian kernel $(cat "$CACHE/ready"), $accel) ===" >&2
  local mem_kb
  mem_kb=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
  # Half of what is free, at most 8 GiB: the guest starts QEMUs of its own.
  local mem_mb=$(( mem_kb / 2048 < 8192 ? mem_kb / 2048 : 8192 ))
  # TCG by default: on the machine this was written on (itself a VM) a nested KVM guest kernel did
  # not get past its decompressor in minutes, while TCG boots it in two seconds.
  # QCVM_TEST_HOSTS_VM_ACCEL=kvm where nested KVM works (-arch-capabilities: nested, KVM may
  # refuse that MSR and QEMU aborts).
  local cpu=max
  [ "$accel" = kvm ] && cpu=host,-arch-capabilities
  local topo=(-smp "$(nproc)" -m "${mem_mb}M")
  if [ "$scenario" = vm-numa2 ]; then
    # Two guest NUMA nodes of 2 vCPUs and half the memory each (sizes in MiB, even).
    local half=$(( mem_mb / 4 * 2 ))
    topo=(-smp 4,sockets=2,cores=2,threads=1 -m "$(( half * 2 ))M"
      -object "memory-backend-ram,id=vm-node0,size=${half}M" -object "memory-backend-ram,id=vm-node1,size=${half}M"
      -numa node,nodeid=0,cpus=0-1,memdev=vm-node0 -numa node,nodeid=1,cpus=2-3,memdev=vm-node1
      -numa dist,src=0,dst=1,val=20)
  fi
  # In a PID namespace of its own, killed with this script (--kill-child) if that is interrupted.
  unshare --pid --fork --kill-child -- qemu-system-x86_64 -machine "q35,accel=$accel" -cpu "$cpu" "${topo[@]}" \
    -nodefaults -display none -no-reboot -serial stdio \
    -kernel "$kernel" -initrd "$state/initrd.gz" \
    -append "console=ttyS0 panic=-1 quiet loglevel=3 qcvm_repo=$here" \
    -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
    -fsdev local,id=repo,path="$here",security_model=passthrough -device virtio-9p-pci,fsdev=repo,mount_tag=repo \
    </dev/null
  local rc
  rc=$(cat "$state/rc" 2>/dev/null || echo "boot failed")
  rm -rf "$state"
  echo "test-hosts[$scenario]: vitest exit $rc" >&2
  [ "$rc" = 0 ]
}

run_one() {
  local scenario=$1
  shift
  echo "=== test-hosts: $scenario ===" >&2
  # --mount-proc: the PID namespace's own /proc, so /proc/<pid> of QEMUs started here resolves.
  # --kill-child: if this script is interrupted, the namespace's init dies and everything in it.
  unshare --mount --propagation private --pid --fork --mount-proc --kill-child -- "$0" --inner "$scenario" "$@"
}

[ $# -ge 1 ] || usage
if [ "$1" = --vm-inner ]; then
  vm_inner
  exit
fi
if [ "$1" = --files ]; then
  [ $# -eq 2 ] || usage
  scenario_files "$2"
  exit
fi
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
    build_if_stale
    failed=()
    for s in "${SCENARIOS[@]}"; do run_one "$s" "$@" || failed+=("$s"); done
    if [ ${#failed[@]} -gt 0 ]; then
      echo "test-hosts: failed: ${failed[*]}" >&2
      exit 1
    fi
    echo "test-hosts: all scenarios passed: ${SCENARIOS[*]}" >&2
    ;;
  vm-cgroup2 | vm-numa2)
    build_if_stale
    run_vm "$scenario" "$@"
    ;;
  host | no-kvm | kvm-file | kvm-dead | cgroup2)
    build_if_stale
    run_one "$scenario" "$@"
    ;;
  *) usage ;;
esac
