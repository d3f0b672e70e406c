// The one VM-name rule (schemas/profile.schema.json `name`): a VM name becomes a run-dir path
// segment, a cgroup name and a lock file name, so it is one safe segment, never `..`.
export const VM_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
