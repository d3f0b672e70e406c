import { configDefaults, defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // test/matrix/ runs once per QEMU version in its own legs of .ci/run (vitest.matrix.config.ts).
    // test/**/*-numa.test.ts need two host NUMA nodes: here they skip, saying so, and the
    // two-node guest runs them (scripts/test-hosts.sh vm-numa2, vitest.numa2.config.ts).
    exclude: [...configDefaults.exclude, "test/matrix/**"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Tests that start QEMU and touch cgroups share the machine: keep files from trampling each other.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
