// The test matrix's own suites, run by .ci/run and never by `npm test`: test/matrix/ against one
// QEMU binary each (QCVM_MATRIX_QEMU, QCVM_MATRIX_VERSION; `npm run test:qemu -- VERSION`).
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/matrix/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    maxWorkers: 2,
  },
});
