#!/usr/bin/env bash
# Which test files read what the scenarios of scripts/test-hosts.sh change: /dev/kvm (no-kvm,
# kvm-file, kvm-dead) and the cgroup filesystem (cgroup2: /sys/fs/cgroup, /proc/PID/cgroup, the
# mount table). Runs each file alone under strace (every process it starts, the built CLI and QEMU
# included) and prints one line per file, e.g. "cli-launch.test.ts kvm=27 cgroup=484", the counts of
# such file lookups. The lists in test-hosts.sh (`--files SCENARIO`) are the files with a non-zero
# count; re-run this after adding tests that start QEMU or the CLI on the real host.
#
#   scripts/host-touches.sh [test files...]      (default: test/*.test.ts; slow: one vitest per file)
#
# A file whose test leaves a daemon behind (libvirtd when its test fails) keeps strace waiting: the
# count is printed once that daemon is gone.
#
# What Node itself reads is left out: libuv's look at its own cgroup's CPU and memory limits
# (/proc/self/cgroup, cpu.cfs_*, memory/process_api/...), which every process does, qcvm or not.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v strace >/dev/null || { echo "host-touches: needs strace" >&2; exit 2; }
[ $# -gt 0 ] || set -- test/*.test.ts
# Built only when a source is newer (a rebuild deletes dist/, which other runs may be using).
if [ ! -e dist/cli.js ] || [ -n "$(find src schemas scripts/build.mjs package.json -newer dist/cli.js -print -quit)" ]; then
  node scripts/build.mjs
fi
out=$(mktemp -d /tmp/qcvm-host-touches.XXXXXX)
trap 'rm -rf "$out"' EXIT
for f in "$@"; do
  b=$(basename "$f")
  strace -f -qq -e trace=openat,open,stat,newfstatat,statx,access,faccessat,faccessat2 -o "$out/trace" \
    npx vitest run "$f" >"$out/log" 2>&1 || echo "host-touches: $b failed under strace (counts still taken)" >&2
  grep -E '"(/dev/kvm|/sys/fs/cgroup|/proc/[0-9a-z]+/cgroup|/proc/[0-9a-z]+/mountinfo|/proc/[0-9a-z]*/?mounts)' "$out/trace" >"$out/hits" || true
  k=$(grep -c '"/dev/kvm' "$out/hits" || true)
  c=$(grep -v '"/dev/kvm' "$out/hits" |
    grep -cvE '"/proc/self/cgroup"|"/sys/fs/cgroup/cpu/(cpu\.cfs_(quota|period)_us)?"|"/sys/fs/cgroup/memory/process_api/' || true)
  echo "$b kvm=$k cgroup=$c"
done
