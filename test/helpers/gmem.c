/*
 * gmem: allocate guest_memfd memory the way a confidential VM's private memory is allocated,
 * so a test can check where the kernel accounts it (memory cgroup, per node) without a CoCo host.
 *
 *   gmem <MiB>
 *
 * Opens /dev/kvm (and checks it is KVM's device, 10:232), creates a default VM (type 0), checks KVM_CAP_GUEST_MEMFD on the VM, creates a
 * guest_memfd of <MiB> and prints "created". It then waits for a line on stdin (the test moves it
 * into a cgroup meanwhile), fallocate()s the whole file (FALLOC_FL_KEEP_SIZE) and prints "ready <bytes>", and waits
 * for a second line (or EOF) before exiting. Failures print one word and the errno name, and
 * exit non-zero: "no-kvm", "create-vm", "no-guest-memfd", "create-guest-memfd", "fallocate".
 *
 * The constants are defined here because distribution linux-libc-dev headers may predate them
 * (Linux 6.8, include/uapi/linux/kvm.h): KVM_CAP_GUEST_MEMFD 234,
 * KVM_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define KVMIO 0xAE
#define KVM_CREATE_VM _IO(KVMIO, 0x01)
#define KVM_CHECK_EXTENSION _IO(KVMIO, 0x03)
#define KVM_CAP_GUEST_MEMFD_ 234

struct kvm_create_guest_memfd_ {
	uint64_t size;
	uint64_t flags;
	uint64_t reserved[6];
};
#define KVM_CREATE_GUEST_MEMFD_ _IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd_)

static int fail(const char *what)
{
	printf("%s %s\n", what, strerrorname_np(errno) ? strerrorname_np(errno) : "EUNKNOWN");
	fflush(stdout);
	return 1;
}

static void wait_line(void)
{
	char buf[64];
	if (!fgets(buf, sizeof buf, stdin)) return;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gmem <MiB>\n");
		return 2;
	}
	uint64_t size = strtoull(argv[1], NULL, 10) << 20;

	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) return fail("no-kvm");
	/* KVM is misc device 10:232 (KVM_MINOR); an empty file bound over /dev/kvm opens as well, so
	 * "no-kvm ENODEV" says what qcvm's probeKvm says for it. */
	struct stat st;
	if (fstat(kvm, &st) < 0) return fail("no-kvm");
	if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != 10 || minor(st.st_rdev) != 232) {
		errno = ENODEV;
		return fail("no-kvm");
	}
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) return fail("create-vm");
	int cap = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_);
	if (cap <= 0) {
		errno = cap < 0 ? errno : EOPNOTSUPP;
		return fail("no-guest-memfd");
	}
	struct kvm_create_guest_memfd_ req = { .size = size };
	int gmem = ioctl(vm, KVM_CREATE_GUEST_MEMFD_, &req);
	if (gmem < 0) return fail("create-guest-memfd");
	printf("created\n");
	fflush(stdout);

	wait_line();
	/* guest_memfd has a fixed size: kvm_gmem_fallocate() accepts only FALLOC_FL_KEEP_SIZE. */
	if (fallocate(gmem, FALLOC_FL_KEEP_SIZE, 0, (off_t)size) < 0) return fail("fallocate");
	printf("ready %llu\n", (unsigned long long)size);
	fflush(stdout);

	wait_line();
	return 0;
}
