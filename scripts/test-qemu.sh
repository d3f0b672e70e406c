#!/usr/bin/env bash
# One QEMU version of the test matrix: test/matrix/ (vitest.matrix.config.ts) against that binary.
#
#   scripts/test-qemu.sh VERSION [vitest args...]     VERSION: 7.2 (the system's), 10.0 or 11.1
#
# 10.0 and 11.1 come from scripts/qemu-versions.sh (cached; fetched from Debian's archive on the
# first run, which needs root). Where that cannot fetch one, the binary is absent and the suite
# skips, naming why: it never passes without running.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }
version=$1
shift
case $version in
  7.2) binary=$(command -v qemu-system-x86_64 || echo /usr/bin/qemu-system-x86_64) ;;
  10.0 | 11.1)
    binary=${QCVM_MATRIX_CACHE:-/var/cache/qcvm-matrix}/bin/qemu-system-x86_64-$version
    line=$("$here/scripts/qemu-versions.sh" "$version") || echo "test-qemu: QEMU $version is not available; its tests will say so and skip" >&2
    [ -z "$line" ] || binary=${line#* }
    ;;
  *) echo "test-qemu: unknown version $version (7.2, 10.0 or 11.1)" >&2; exit 2 ;;
esac
cd "$here"
QCVM_MATRIX_QEMU=$binary QCVM_MATRIX_VERSION=$version exec npx vitest run --config vitest.matrix.config.ts "$@"
