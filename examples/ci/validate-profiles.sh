#!/bin/sh
# Validate a repository of qcvm profiles in CI: every problem of every file at once, warnings
# included (--strict), then render each profile so a feature the target QEMU version lacks fails
# too. Under GitHub Actions problems are qcvm's own annotations (`validate --format github`: they
# show up on the pull request's diff); elsewhere `file:line:col: severity: message` lines. Set
# QCVM_JUNIT=FILE and/or QCVM_SARIF=FILE for qcvm's JUnit XML (GitLab, Jenkins) or SARIF reports.
#
#   examples/ci/validate-profiles.sh [PROFILES...]     (default: every *.yaml under profiles/)
#
# Environment: QCVM, the command to run (default: qcvm); QCVM_CAPABILITIES, a capabilities file
# saved with `qcvm doctor --save` on the target host, to render for that QEMU instead of each
# profile's qemu.version.
set -eu

QCVM=${QCVM:-qcvm}
[ "$#" -gt 0 ] || set -- profiles/
report=$(mktemp)
trap 'rm -f "$report"' EXIT

status=0
# Under GitHub Actions, qcvm's own annotations (they show up on the pull request's diff).
if [ "${GITHUB_ACTIONS:-}" = "true" ]; then
  # shellcheck disable=SC2086 # QCVM may be a command with arguments (node bin/qcvm.js)
  $QCVM validate "$@" --strict --format github || status=$?
fi
# Reports for other CI systems, when asked for: JUnit XML (GitLab, Jenkins) and SARIF (code scanning).
# shellcheck disable=SC2086
[ -z "${QCVM_JUNIT:-}" ] || $QCVM validate "$@" --strict --format junit >"$QCVM_JUNIT" 2>/dev/null || true
# shellcheck disable=SC2086
[ -z "${QCVM_SARIF:-}" ] || $QCVM validate "$@" --strict --format sarif >"$QCVM_SARIF" 2>/dev/null || true
# shellcheck disable=SC2086
$QCVM validate "$@" --format json --strict >"$report" || status=$?
if [ "$status" -ge 2 ]; then
  echo "qcvm validate could not run (exit $status)" >&2
  exit "$status"
fi

# Elsewhere, one `file:line:col: severity: message` line per problem (the form compilers use, which
# most CI logs link), and the summary.
if [ "${GITHUB_ACTIONS:-}" != "true" ]; then
  node - "$report" <<'JS'
const report = JSON.parse(require("node:fs").readFileSync(process.argv[2], "utf8"));
for (const f of report.files) {
  for (const d of [...f.errors, ...f.warnings]) {
    const where = `${d.file ?? f.file}${d.line ? `:${d.line}:${d.col ?? 1}` : ""}`;
    const text = `${d.path ? `${d.path}: ` : ""}${d.message}${d.got !== undefined ? `, got ${JSON.stringify(d.got)}` : ""}${d.hint ? ` (${d.hint})` : ""}`;
    console.log(`${where}: ${d.severity}: ${text}`);
  }
}
const s = report.summary;
const n = (count, word) => `${count} ${word}${count === 1 ? "" : "s"}`;
console.log(`${n(s.profiles, "profile")}: ${s.valid} valid, ${s.invalid} invalid (${n(s.errors, "error")}, ${n(s.warnings, "warning")})`);
JS
fi

# Render every file validate accepted: catches what only the renderer knows (a feature the target
# QEMU lacks). Host placement problems are not failures here: the CI runner is not the VM host, so
# --literal renders each profile as written, without planning it for this machine.
for file in $(node -e 'for (const f of JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8")).files) if (f.valid) console.log(f.file)' "$report"); do
  # shellcheck disable=SC2086
  if ! $QCVM render "$file" --literal --format json ${QCVM_CAPABILITIES:+--capabilities "$QCVM_CAPABILITIES"} >/dev/null; then
    status=1
  fi
done
exit "$status"
