/* libFuzzer target for the host's side of the agent protocol: the input is
 * what a (hostile) guest agent sends once the session is open, answering
 * a command. The relay must end (the input ends in end-of-stream) without
 * a crash, and report a status only from a whole EXIT frame.
 *
 *   make fuzz FUZZ_SECONDS=300
 */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../orchestrator/agent_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int devnull = -1;
    if (devnull < 0) {
        devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
        signal(SIGPIPE, SIG_IGN);
    }
    int sv[2];
    if (size > 65536 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return 0;
    int buf = 1 << 20;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    if (write(sv[1], data, size) != (ssize_t)size)
        abort();
    shutdown(sv[1], SHUT_WR);
    struct agent_conn c = { .fd = sv[0] };
    struct qerr err;
    int status = -12345;
    int rc = agent_exec(&c, "user", "true", -1, devnull, devnull, &status, &err);
    if (rc == 0 && status == -12345)
        abort();        /* a status that no EXIT frame gave */
    close(sv[0]);
    close(sv[1]);
    return 0;
}
