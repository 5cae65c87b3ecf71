#include "policy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../orchestrator/util.h"

const char *qpol_action_name(enum qpol_action a)
{
    return a == QPOL_ALLOW ? "allow" : a == QPOL_ASK ? "ask" : "deny";
}

const char *qpol_dir(void)
{
    const char *d = getenv("QUBES_RPC_POLICY_DIR");
    return d && *d ? d : QPOL_DEFAULT_DIR;
}

static bool name_chars(const char *s, size_t max, const char *extra)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr(extra, *p)))
            return false;
    return true;
}

int qpol_check_service(const char *service, struct qerr *err)
{
    if (!name_chars(service, QPOL_SERVICE_MAX, "_.+-") || strcmp(service, ".") == 0 ||
        strcmp(service, "..") == 0)
        return qerr_set(err, "bad service name (1 to %d of A-Z a-z 0-9 _ . + -)", QPOL_SERVICE_MAX);
    return 0;
}

int qpol_check_target(const char *name, struct qerr *err)
{
    if (strcmp(name, "$dispvm") == 0)
        return 0;
    if (!name_chars(name, QUBES_NAME_MAX, "_.-") || name[0] == '.' || name[0] == '-')
        return qerr_set(err, "bad VM name (1 to %d of A-Z a-z 0-9 _ . -, not starting with . or -)",
                        QUBES_NAME_MAX);
    return 0;
}

/* SRC or DST of a line against a name of the call. */
static bool matches(const char *term, const char *name)
{
    if (strcmp(term, "$anyvm") == 0)
        return strcmp(name, "dom0") != 0;
    return strcmp(term, name) == 0;
}

static bool user_ok(const char *u)
{
    if (!name_chars(u, QPOL_USER_MAX, "_-") || u[0] == '-')
        return false;
    return true;
}

/* ACTION[,target=VM][,user=USER] of the line that matched. */
static int read_action(char *field, struct qpol_decision *out, struct qerr *err)
{
    char *save = NULL, *opt = strtok_r(field, ",", &save);
    if (!opt)
        return qerr_set(err, "no action");
    if (strcmp(opt, "allow") == 0)
        out->action = QPOL_ALLOW;
    else if (strcmp(opt, "deny") == 0)
        out->action = QPOL_DENY;
    else if (strcmp(opt, "ask") == 0)
        out->action = QPOL_ASK;
    else
        return qerr_set(err, "unknown action '%s' (allow, deny or ask)", opt);
    while ((opt = strtok_r(NULL, ",", &save))) {
        struct qerr e;
        if (strncmp(opt, "target=", 7) == 0) {
            if (qpol_check_target(opt + 7, &e) < 0)
                return qerr_set(err, "target=%s: %s", opt + 7, e.msg);
            snprintf(out->target, sizeof out->target, "%s", opt + 7);
        } else if (strncmp(opt, "user=", 5) == 0) {
            if (!user_ok(opt + 5))
                return qerr_set(err, "user=%s: not a user name", opt + 5);
            snprintf(out->user, sizeof out->user, "%s", opt + 5);
        } else {
            return qerr_set(err, "unknown option '%s' (target= or user=)", opt);
        }
    }
    return 0;
}

/* The policy file's text, or NULL (errno ENOENT: no file, deny). */
static char *read_policy(const char *path, struct qerr *err)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0) {
        if (errno != ENOENT)
            qerr_errno(err, errno, "policy %s", path);
        return NULL;
    }
    char *text = NULL;
    if (fstat(fd, &st) < 0)
        qerr_errno(err, errno, "policy %s", path);
    else if (!S_ISREG(st.st_mode))
        qerr_set(err, "policy %s is not a regular file", path);
    else if (st.st_size > QPOL_FILE_MAX)
        qerr_set(err, "policy %s is larger than %d bytes", path, QPOL_FILE_MAX);
    else if (!(text = qread_fd(fd, NULL)))
        qerr_errno(err, errno, "policy %s", path);
    close(fd);
    return text;
}

int qpol_evaluate(const char *dir, const char *service, const char *source, const char *target,
                  struct qpol_decision *out, struct qerr *err)
{
    memset(out, 0, sizeof *out);
    out->action = QPOL_DENY;
    struct qerr e;
    if (qpol_check_service(service, &e) < 0)
        return qerr_set(err, "service '%s': %s", service, e.msg);
    if (qpol_check_target(source, &e) < 0 || strcmp(source, "$dispvm") == 0)
        return qerr_set(err, "source '%s': %s", source, e.msg);
    if (qpol_check_target(target, &e) < 0)
        return qerr_set(err, "target '%s': %s", target, e.msg);
    snprintf(out->target, sizeof out->target, "%s", target);
    if (snprintf(out->file, sizeof out->file, "%s/%s", dir, service) >= (int)sizeof out->file)
        return qerr_set(err, "policy directory path too long: %s", dir);

    struct qerr perr = { 0 };
    char *text = read_policy(out->file, &perr);
    if (!text) {
        if (!perr.msg[0])
            return 0;                           /* no file: deny */
        if (err)
            *err = perr;
        return -1;
    }
    int rc = 0, lineno = 0;
    for (char *line = text, *next; line && *line; line = next) {
        lineno++;
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (strlen(line) > QPOL_LINE_MAX) {
            rc = qerr_set(err, "%s:%d: longer than %d bytes", out->file, lineno, QPOL_LINE_MAX);
            break;
        }
        char *f[3], *fsave = NULL;
        int n = 0;
        for (char *t = strtok_r(line, " \t\r", &fsave); t && n < 3; t = strtok_r(NULL, " \t\r", &fsave))
            f[n++] = t;
        if (n < 3 || f[0][0] == '#' || !matches(f[0], source) || !matches(f[1], target))
            continue;
        out->line = lineno;
        if (read_action(f[2], out, &e) < 0) {
            out->action = QPOL_DENY;
            rc = qerr_set(err, "%s:%d: %s", out->file, lineno, e.msg);
        }
        break;
    }
    free(text);
    return rc;
}
