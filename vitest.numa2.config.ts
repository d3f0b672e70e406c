// The two-NUMA-node guest's suite (scripts/test-hosts.sh vm-numa2): every test/**/*-numa.test.ts
// (the naming convention for tests that need a host with two nodes: on one node they skip,
// saying so: placement-numa.test.ts launches, places and reads stats), against a real two-node
// kernel (node 0 = CPUs 0-1, node 1 = CPUs 2-3).
import { configDefaults, defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // With the cgroup layer's tests: cgroup v2 with cpuset and memory, on two nodes. The main
    // suite's launch tests wait 30-60 s for steps that take minutes in this guest (TCG in TCG):
    // placement-numa.test.ts launches, places and reads stats here with its own patience.
    include: ["test/**/*-numa.test.ts", "test/cgroup.test.ts"],
    exclude: [...configDefaults.exclude, "test/matrix/**"],
    globalSetup: ["test/global-setup.ts"],
    // The guest runs under TCG (nested KVM does not boot it on this machine kind) and its QEMUs
    // under TCG again: a launch took three minutes on a busy 2-core host.
    testTimeout: 600_000,
    hookTimeout: 600_000,
    // One file at a time: two vitest workers starting at once in the TCG guest missed vitest's
    // fixed 60 s worker start timeout on a busy host.
    maxWorkers: 1,
  },
});
