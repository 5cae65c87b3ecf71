/* A daemon that takes connections and never answers, for the deadline of
 * qvm-host list: listens on ADDR:PORT (a loopback address), prints
 * "listening", accepts whatever comes and holds it open without a byte
 * back, for SECONDS at most, then exits.
 * Usage: silent-listener ADDR PORT SECONDS */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: silent-listener ADDR PORT SECONDS\n");
        return 2;
    }
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
    if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1 || (ntohl(a.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "silent-listener: %s is not a loopback address\n", argv[1]);
        return 2;
    }
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 16) < 0) {
        perror("silent-listener");
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    time_t end = time(NULL) + atoi(argv[3]);
    while (time(NULL) < end) {
        struct pollfd p = { .fd = s, .events = POLLIN };
        if (poll(&p, 1, 200) > 0)
            (void)accept4(s, NULL, NULL, SOCK_CLOEXEC);   /* held, never read or written */
    }
    return 0;
}
