// The two-NUMA-node guest's suite (scripts/test-hosts.sh vm-numa2): every test/**/*-numa.test.ts
// (the naming convention for tests that need a host with two nodes: on one node they skip,
// saying so), and the launch, placement and stats tests of the main suite, now against a real
// two-node kernel (node 0 = CPUs 0-1, node 1 = CPUs 2-3).
import { configDefaults, defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: [
      "test/**/*-numa.test.ts",
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
