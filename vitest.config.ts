import { configDefaults, defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The test matrix's suites run in their own legs of .ci/run, not in `npm test`:
    // test/matrix/ once per QEMU version (vitest.matrix.config.ts), *.numa2.test.ts inside the
    // two-NUMA-node guest (scripts/test-hosts.sh vm-numa2).
    exclude: [...configDefaults.exclude, "test/matrix/**", "test/**/*.numa2.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Tests that start QEMU and touch cgroups share the machine: keep files from trampling each other.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
