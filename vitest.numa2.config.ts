// The two-NUMA-node guest's suite (scripts/test-hosts.sh vm-numa2): every test/**/*.numa2.test.ts
// (tests that need a host with two nodes, node 1 with CPUs 2-3), and the launch, placement and
// stats tests of the main suite, now against a real two-node kernel. Never part of `npm test`.
import { configDefaults, defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: [
      "test/**/*.numa2.test.ts",
      "test/launch.test.ts",
      "test/cli-launch.test.ts",
      "test/cgroup.test.ts",
      "test/startup.test.ts",
      "test/gmem.test.ts",
    ],
    exclude: [...configDefaults.exclude, "test/matrix/**"],
    globalSetup: ["test/global-setup.ts"],
    // QEMU under TCG inside the guest: slower than on the host.
    testTimeout: 180_000,
    hookTimeout: 180_000,
    maxWorkers: 2,
  },
});
