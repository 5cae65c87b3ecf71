#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent_client.h"
#include "util.h"

int qmonitor_check(const char *text, char *out, size_t len, struct qerr *err)
{
    size_t used = 0;
    int lines = 0, lineno = 0;
    const char *p = text;
    out[0] = '\0';
    while (*p) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char line[128];
        lineno++;
        if (n >= sizeof line)
            return qerr_set(err, "monitor layout line %d: too long", lineno);
        memcpy(line, p, n);
        line[n] = '\0';
        p += n + (end ? 1 : 0);
        char *q = line;
        while (*q == ' ' || *q == '\t')
            q++;
        if (!*q)
            continue;
        long v[4];
        char extra;
        if (sscanf(q, "%ld %ld %ld %ld %c", &v[0], &v[1], &v[2], &v[3], &extra) != 4 ||
            strspn(q, "0123456789 \t") != strlen(q))
            return qerr_set(err, "monitor layout line %d: \"%s\" is not W H X Y", lineno, q);
        if (v[0] <= 0 || v[1] <= 0 || v[0] > 65535 || v[1] > 65535 || v[2] > 65535 ||
            v[3] > 65535)
            return qerr_set(err, "monitor layout line %d: sizes 1..65535, positions 0..65535",
                            lineno);
        if (++lines > QMONITOR_MAX)
            return qerr_set(err, "monitor layout: more than %d monitors", QMONITOR_MAX);
        int w = snprintf(out + used, len - used, "%ld %ld %ld %ld\n", v[0], v[1], v[2], v[3]);
        if (w < 0 || (size_t)w >= len - used)
            return qerr_set(err, "monitor layout: too long");
        used += (size_t)w;
    }
    return lines ? 0 : qerr_set(err, "monitor layout: no monitor");
}

int qmonitor_from_xrandr(const char *text, char *out, size_t len)
{
    /* "NAME connected [primary] WxH+X+Y (...)": a connected output that
     * has a mode set. */
    size_t used = 0;
    out[0] = '\0';
    for (const char *p = text; p && *p;) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), p);
        p = end ? end + 1 : NULL;
        if (line[0] == ' ' || line[0] == '\t' || !strstr(line, " connected"))
            continue;
        for (char *tok = strtok(line, " "); tok; tok = strtok(NULL, " ")) {
            unsigned w, h;
            int x, y;
            char rest;
            if (sscanf(tok, "%ux%u+%d+%d%c", &w, &h, &x, &y, &rest) == 4 && x >= 0 && y >= 0) {
                int k = snprintf(out + used, len - used, "%u %u %d %d\n", w, h, x, y);
                if (k > 0 && (size_t)k < len - used)
                    used += (size_t)k;
                break;
            }
        }
    }
    return used ? 0 : -1;
}

/* xrandr's output, or NULL. */
static char *run_xrandr(void)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return NULL;
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return NULL;
    }
    if (pid == 0) {
        dup2(pipefd[1], 1);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, 2);
        execlp("xrandr", "xrandr", "-q", (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    char *text = qread_fd(pipefd[0], NULL);
    close(pipefd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

int qmonitor_layout(const struct qubes_config *cfg, char *out, size_t len, const char **source,
                    struct qerr *err)
{
    out[0] = '\0';
    const char *display = getenv("DISPLAY");
    if (display && *display) {
        char *text = run_xrandr();
        int rc = text ? qmonitor_from_xrandr(text, out, len) : -1;
        free(text);
        if (rc == 0) {
            if (source)
                *source = "xrandr -q";
            return 0;
        }
    }
    char path[PATH_MAX];
    const char *env = getenv("QUBES_MONITOR_LAYOUT");
    if (env && *env)
        snprintf(path, sizeof path, "%s", env);
    else
        snprintf(path, sizeof path, "%s/monitor-layout", cfg->base_dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT && !(env && *env))
            return 0;
        return qerr_errno(err, errno, "monitor layout %s", path);
    }
    char *text = qread_fd(fd, NULL);
    close(fd);
    if (!text)
        return qerr_errno(err, errno, "monitor layout %s", path);
    int rc = qmonitor_check(text, out, len, err);
    free(text);
    if (rc < 0) {
        out[0] = '\0';
        return qerr_prefix(err, "%s", path);
    }
    if (source)
        *source = env && *env ? "QUBES_MONITOR_LAYOUT" : "monitor-layout";
    return 0;
}

int qmonitor_send_on(struct agent_conn *c, const char *layout, struct qerr *err)
{
    int in[2];
    if (pipe2(in, O_CLOEXEC) < 0)
        return qerr_errno(err, errno, "pipe");
    /* A few lines: they fit in the pipe, no writer process needed. */
    if (qwrite_all(in[1], layout, strlen(layout)) < 0) {
        close(in[0]);
        close(in[1]);
        return qerr_errno(err, errno, "monitor layout");
    }
    close(in[1]);
    int status = 0;
    agent_deadline(c, AGENT_REQUEST_MS);
    int rc = agent_service(c, "root", QMONITOR_SERVICE, "dom0", in[0], -1, -1, &status, err);
    agent_deadline(c, 0);
    close(in[0]);
    if (rc == 0 && status != 0)
        rc = qerr_set(err, "%s exited with status %d", QMONITOR_SERVICE, status);
    return rc < 0 ? qerr_prefix(err, "cannot send the monitor layout") : 0;
}

int qmonitor_send(const char *sock, const char *layout, struct qerr *err)
{
    struct agent_conn c;
    if (agent_connect(sock, 10000, &c, err) < 0)
        return qerr_prefix(err, "cannot send the monitor layout");
    int rc = qmonitor_send_on(&c, layout, err);
    agent_close(&c);
    return rc;
}
