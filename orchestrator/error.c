#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int qerr_set(struct qerr *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = 0;
    }
    return -1;
}

int qerr_errno(struct qerr *err, int errnum, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < sizeof err->msg)
            snprintf(err->msg + n, sizeof err->msg - n, ": %s", strerror(errnum));
        err->code = errnum;
    }
    return -1;
}

int qerr_prefix(struct qerr *err, const char *fmt, ...)
{
    if (err) {
        char prefix[QERR_MSG_MAX], old[QERR_MSG_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
    }
    return -1;
}

void qerr_clear(struct qerr *err)
{
    err->code = 0;
    err->msg[0] = '\0';
}

void qcleanup_free(void *p)
{
    free(*(void **)p);
}

void qcleanup_close(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}

void qclose(int *fd)
{
    qcleanup_close(fd);
    *fd = -1;
}
