/* One error idiom for the whole project: a fallible function takes a
 * `struct qerr *` out-parameter, fills it where the failure happens (what,
 * on which VM or path, and why) and returns -1. The tool prints it once. */
#ifndef QUBES_ERROR_H
#define QUBES_ERROR_H

#include <stdarg.h>

#define QERR_MSG_MAX 1024

struct qerr {
    int code;                   /* errno of the cause, 0 when none */
    char msg[QERR_MSG_MAX];
};

/* Both return -1 so that callers can write `return qerr_set(err, ...);`. */
int qerr_set(struct qerr *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends ": strerror(errnum)". */
int qerr_errno(struct qerr *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes an existing message with more context ("while loading X: ..."). */
int qerr_prefix(struct qerr *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void qerr_clear(struct qerr *err);

/* Cleanup helpers in the manner of __attribute__((cleanup)). */
void qcleanup_free(void *p);
void qcleanup_close(int *fd);
#define cleanup_free __attribute__((cleanup(qcleanup_free), unused))
/* unused: a descriptor held only for its lock is never read (clang says so). */
#define cleanup_close __attribute__((cleanup(qcleanup_close), unused))
/* Closes *fd now (releasing a lock it holds) and marks it closed, for a
 * cleanup_close descriptor that must go before the end of its scope. */
void qclose(int *fd);

#endif
