/*
 * gmem-vm: a stand-in for a paused confidential QEMU, as far as qcvm's pre-allocation sees one:
 * a KVM VM holding one guest_memfd per memory backend (and per firmware RAMBlock), created in
 * command-line order, none of them allocated, waiting for `cont`.
 *
 *   gmem-vm [--reverse-fds] [--memfd] MiB...
 *
 * Opens /dev/kvm, creates a default VM (type 0: Linux 6.18 offers KVM_CREATE_GUEST_MEMFD there),
 * then one guest_memfd of each size, in argument order. --reverse-fds then moves them to new fd
 * numbers in reverse (the last created gets the lowest fd), so fd order and creation (inode)
 * order disagree, as after QEMU reuses a closed fd. --memfd makes memfds instead of guest_memfds
 * (for hosts without KVM: same fallocate and mempolicy path, but /proc shows /memfd:...).
 * Prints one line per file, "file <fd> <ino> <bytes>", then "created", then waits for EOF on
 * stdin and exits 0. Failures print one word and the errno name and exit 1: "no-kvm",
 * "create-vm", "no-guest-memfd", "create-guest-memfd", "memfd", "dup".
 *
 * Constants as in gmem.c (Linux 6.8 uapi): KVM_CAP_GUEST_MEMFD 234, KVM_CREATE_GUEST_MEMFD 0xd4.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
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

#define MAX_FILES 64

static int fail(const char *what)
{
	printf("%s %s\n", what, strerrorname_np(errno) ? strerrorname_np(errno) : "EUNKNOWN");
	fflush(stdout);
	return 1;
}

static int open_vm(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) return -1;
	struct stat st;
	if (fstat(kvm, &st) < 0) return -1;
	if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != 10 || minor(st.st_rdev) != 232) {
		errno = ENODEV;
		return -1;
	}
	return kvm;
}

int main(int argc, char **argv)
{
	int reverse = 0, memfd = 0, n = 0, fds[MAX_FILES];
	uint64_t sizes[MAX_FILES];
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--reverse-fds")) reverse = 1;
		else if (!strcmp(argv[i], "--memfd")) memfd = 1;
		else if (n < MAX_FILES) sizes[n++] = strtoull(argv[i], NULL, 10) << 20;
	}
	if (n == 0) {
		fprintf(stderr, "usage: gmem-vm [--reverse-fds] [--memfd] MiB...\n");
		return 2;
	}
	int vm = -1;
	if (!memfd) {
		int kvm = open_vm();
		if (kvm < 0) return fail("no-kvm");
		vm = ioctl(kvm, KVM_CREATE_VM, 0);
		if (vm < 0) return fail("create-vm");
		int cap = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_);
		if (cap <= 0) {
			errno = cap < 0 ? errno : EOPNOTSUPP;
			return fail("no-guest-memfd");
		}
	}
	for (int i = 0; i < n; i++) {
		if (memfd) {
			fds[i] = memfd_create("gmem-vm", MFD_CLOEXEC);
			if (fds[i] < 0 || ftruncate(fds[i], (off_t)sizes[i]) < 0) return fail("memfd");
		} else {
			struct kvm_create_guest_memfd_ req = { .size = sizes[i] };
			fds[i] = ioctl(vm, KVM_CREATE_GUEST_MEMFD_, &req);
			if (fds[i] < 0) return fail("create-guest-memfd");
		}
	}
	if (reverse) {
		/* Park every file above 200 first, then bring them back down last-created first, so
		 * the lowest fds go to the newest files. */
		for (int i = 0; i < n; i++) {
			int hi = fcntl(fds[i], F_DUPFD_CLOEXEC, 200);
			if (hi < 0) return fail("dup");
			close(fds[i]);
			fds[i] = hi;
		}
		for (int i = n - 1; i >= 0; i--) {
			int lo = fcntl(fds[i], F_DUPFD_CLOEXEC, 100);
			if (lo < 0) return fail("dup");
			close(fds[i]);
			fds[i] = lo;
		}
	}
	for (int i = 0; i < n; i++) {
		struct stat st;
		if (fstat(fds[i], &st) < 0) return fail("fstat");
		printf("file %d %llu %llu\n", fds[i], (unsigned long long)st.st_ino, (unsigned long long)sizes[i]);
	}
	printf("created\n");
	fflush(stdout);
	char buf[64];
	while (fgets(buf, sizeof buf, stdin))
		;
	return 0;
}
