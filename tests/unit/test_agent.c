/* The host side of the agent protocol (orchestrator/agent_client.h)
 * against a hostile agent (tests/helpers/hostile-agent.c) in its place on
 * the socket, which answers the handshake and then lies, goes silent,
 * stops mid-frame or sends control characters. Every request must end
 * within its deadline with an error that says what happened.
 * Usage: test_agent HOSTILE-AGENT */
#include "../../guest/protocol.h"
#include "../../orchestrator/agent_client.h"
#include "../../orchestrator/monitor.h"
#include "../../orchestrator/util.h"
#include "../testutil.h"

#include <sys/socket.h>

static char sock[256];
static const char *helper;

/* The hostile agent (tests/helpers/hostile-agent.c) on `sock`, in a
 * process group of its own; returns once it listens. */
static pid_t hostile_agent(const char *mode)
{
    int out[2];
    if (pipe(out) < 0)
        exit(99);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        dup2(out[1], 1);
        execl(helper, helper, sock, mode, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char line[64];
    if (read_line(out[0], line, sizeof line, 5000) < 0 || strcmp(line, "listening") != 0) {
        fprintf(stderr, "test_agent: %s did not start\n", helper);
        exit(99);
    }
    close(out[0]);
    return pid;
}

static void stop(pid_t pid)
{
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_agent HOSTILE-AGENT\n");
        return 2;
    }
    helper = argv[1];
    char dir[] = "/tmp/qubes-agent.XXXXXX";
    if (!mkdtemp(dir))
        return 99;
    snprintf(sock, sizeof sock, "%s/agent.sock", dir);
    signal(SIGPIPE, SIG_IGN);
    struct agent_conn c;
    struct qerr err;
    int status;
    long t0;

    pid_t a = hostile_agent("short-exit");
    ok(agent_connect(sock, 5000, &c, &err) == 0, "the handshake with the agent");
    status = 12345;
    int rc = agent_exec(&c, "user", "true", -1, -1, -1, &status, &err);
    ok(rc < 0 && strstr(err.msg, "EXIT") && status == 12345,
       "an EXIT frame shorter than a status is an error, not status 0: %s", rc < 0 ? err.msg : "");
    agent_close(&c);
    stop(a);

    a = hostile_agent("error");
    agent_connect(sock, 5000, &c, &err);
    rc = agent_exec(&c, "user", "true", -1, -1, -1, &status, &err);
    ok(rc < 0 && strstr(err.msg, "refused the command"), "an ERROR frame fails the request");
    char *shown = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&shown, &len);
    qprint_text(f, err.msg);
    fclose(f);
    ok(!strpbrk(shown, "\x1b\x07\r") && !strstr(shown, "\xc2\x9b") &&
       strstr(shown, "\\x1b]0;owned\\x07\\x1b[2J\\xc2\\x9b6n\\x0ddone"),
       "and its text prints escaped: %s", shown);
    free(shown);
    agent_close(&c);
    stop(a);

    /* Requests of the host's own have a deadline. */
    a = hostile_agent("silent");
    agent_connect(sock, 5000, &c, &err);
    t0 = qnow_ms();
    rc = agent_identity(&c, "disp1", "", "", "", &err);
    long took = qnow_ms() - t0;
    ok(rc < 0 && strstr(err.msg, "did not answer within"),
       "a guest that never answers the identity: %s", rc < 0 ? err.msg : "");
    ok(took >= AGENT_REQUEST_MS - 100 && took < AGENT_REQUEST_MS + 3000,
       "after the deadline (%ld ms of %d)", took, AGENT_REQUEST_MS);
    agent_close(&c);
    stop(a);

    a = hostile_agent("silent");
    agent_connect(sock, 5000, &c, &err);
    t0 = qnow_ms();
    rc = qmonitor_send_on(&c, "1920 1080 0 0\n", &err);
    took = qnow_ms() - t0;
    ok(rc < 0 && strstr(err.msg, "did not answer within") && took < AGENT_REQUEST_MS + 3000,
       "nor the monitor layout (%ld ms): %s", took, rc < 0 ? err.msg : "");
    agent_close(&c);
    stop(a);

    /* A frame stopped half-way ends the session, even for a command that
     * may run for ever. */
    a = hostile_agent("half-frame");
    agent_connect(sock, 5000, &c, &err);
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    t0 = qnow_ms();
    rc = agent_exec(&c, "user", "sleep 1000", -1, devnull, devnull, &status, &err);
    took = qnow_ms() - t0;
    ok(rc < 0 && strstr(err.msg, "mid-frame") && took < AGENT_FRAME_MS + 3000,
       "a frame left half-written: an error after %ld ms: %s", took, rc < 0 ? err.msg : "");
    agent_close(&c);
    stop(a);

    /* The caller goes away: its end of the output, a socket, is closed. */
    a = hostile_agent("output");
    agent_connect(sock, 5000, &c, &err);
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
    close(sv[1]);
    t0 = qnow_ms();
    rc = agent_exec(&c, "user", "cat big", -1, sv[0], devnull, &status, &err);
    took = qnow_ms() - t0;
    ok(rc < 0 && strstr(err.msg, "caller went away") && took < 3000,
       "output to a caller gone (a closed socket) ends the relay in %ld ms: %s", took,
       rc < 0 ? err.msg : "");
    close(sv[0]);
    agent_close(&c);
    stop(a);

    /* The same while the command is silent: the relay sees the hang-up at
     * once (it used to poll a POLLHUP it ignored, at 100% CPU, for ever). */
    a = hostile_agent("silent");
    agent_connect(sock, 5000, &c, &err);
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
    close(sv[1]);
    pid_t relay = fork();
    if (relay == 0) {
        struct qerr e;
        _exit(agent_exec(&c, "user", "sleep 60", -1, sv[0], devnull, &status, &e) < 0 &&
                      strstr(e.msg, "caller went away") ? 0 : 1);
    }
    int ws = wait_child(relay, 5000);
    ok(ws != -1 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0,
       "a silent command whose caller is gone: the relay ends with an error (%s)",
       ws == -1 ? "still running after 5 s" : "ended");
    close(sv[0]);
    agent_close(&c);
    stop(a);
    close(devnull);

    rm_scratch(dir);
    return done_testing();
}
