import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Tests that start QEMU and touch cgroups share the machine: keep files from trampling each other.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
