/* The receiving end of sd_notify, as PID 1 has it: binds a unix datagram socket at argv[1] and
 * prints every datagram it receives on its own line (newlines inside become ';'), flushing each.
 * Passed file descriptors (sd_notify_barrier's BARRIER=1 sends one) are not accepted: with no
 * control buffer the kernel closes them, which releases the sender's barrier as PID 1 would.
 * Ends on SIGTERM. Used by test/export-systemd.test.ts as NOTIFY_SOCKET for `qcvm launch`. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 2 || strlen(argv[1]) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    fprintf(stderr, "usage: notify-recv SOCKET_PATH\n");
    return 2;
  }
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  strcpy(addr.sun_path, argv[1]);
  unlink(argv[1]);
  if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    perror("notify-recv: bind");
    return 1;
  }
  /* Credentials, so the sender's pid is known, as PID 1 asks for with SO_PASSCRED. */
  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
  printf("listening\n");
  fflush(stdout);
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    if (n < 0) continue;
    buf[n] = 0;
    for (ssize_t i = 0; i < n; i++)
      if (buf[i] == '\n') buf[i] = ';';
    printf("%s\n", buf);
    fflush(stdout);
  }
}
