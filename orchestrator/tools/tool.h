/* What every command shares: the error exit and the common options. */
#ifndef QUBES_TOOL_H
#define QUBES_TOOL_H

#include <stdio.h>
#include <stdlib.h>

#include "../qubes.h"

#define TOOL_OFFLINE_OPT 1000   /* getopt value of --offline-mode */

/* Prints "PROG: error: MESSAGE" once and exits 1. */
static inline __attribute__((noreturn)) void tool_fail(const char *prog, const struct qerr *err)
{
    fprintf(stderr, "%s: error: %s\n", prog, err->msg);
    exit(1);
}

static inline __attribute__((noreturn)) void tool_usage_error(const char *prog, const char *msg)
{
    fprintf(stderr, "%s: %s\nTry '%s --help' for more information.\n", prog, msg, prog);
    exit(2);
}

#endif
