/* Listens on a unix socket and counts the connections made to it; on
 * SIGTERM prints the count and exits. The tests point QUBES_VMM_URI at it
 * to prove which tools contact the hypervisor. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static volatile sig_atomic_t done;

static void on_term(int sig)
{
    (void)sig;
    done = 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: sockwatch SOCKET-PATH\n");
        return 2;
    }
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (strlen(argv[1]) >= sizeof addr.sun_path)
        return 2;
    strcpy(addr.sun_path, argv[1]);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    unlink(argv[1]);
    if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(s, 16) < 0) {
        perror("sockwatch");
        return 1;
    }
    struct sigaction sa = { .sa_handler = on_term };
    sigaction(SIGTERM, &sa, NULL);
    printf("listening\n");
    fflush(stdout);
    long count = 0;
    while (!done) {
        struct pollfd p = { .fd = s, .events = POLLIN };
        if (poll(&p, 1, 100) > 0) {
            int c = accept(s, NULL, NULL);
            if (c >= 0) {
                count++;
                close(c);       /* the client sees its connection fail */
            }
        }
    }
    printf("%ld\n", count);
    unlink(argv[1]);
    return 0;
}
