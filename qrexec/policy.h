/* qrexec policy: whether VM SOURCE may call SERVICE on TARGET, in the
 * original's format. One file per service in the policy directory
 * (QUBES_RPC_POLICY_DIR, default /etc/qubes-rpc/policy), lines
 *
 *     SRC DST ACTION[,target=VM][,user=USER]
 *
 * whitespace separated; blank lines, lines whose first non-blank character
 * is `#`, and lines of fewer than three fields are ignored. The first line
 * whose SRC and DST match decides; no such line, or no file, is deny.
 * `$anyvm` matches every name but dom0 (as in the original, a request for
 * `$dispvm` too); anything else matches exactly. ACTION is allow, deny or
 * ask; `target=` sends the call elsewhere, `user=` runs it as that user.
 *
 * Everything here is input from a VM or a file: names are checked before
 * they are used (qpol_check_service, qpol_check_target), and a line that
 * matches but cannot be read (an unknown action or option, a bad name) is
 * an error naming the file and line, never an allow. A policy file must be
 * a regular file (a link to one is followed: the directory is root's) of
 * at most QPOL_FILE_MAX bytes and lines of at most QPOL_LINE_MAX. */
#ifndef QUBES_QREXEC_POLICY_H
#define QUBES_QREXEC_POLICY_H

#include <limits.h>

#include "../orchestrator/error.h"
#include "../orchestrator/vm.h"

#define QPOL_DEFAULT_DIR "/etc/qubes-rpc/policy"
#define QPOL_SERVICE_MAX 64     /* the original's trigger field */
#define QPOL_USER_MAX 32
#define QPOL_FILE_MAX (1 << 20) /* a larger policy file is an error */
#define QPOL_LINE_MAX 4096

enum qpol_action { QPOL_DENY, QPOL_ALLOW, QPOL_ASK };

struct qpol_decision {
    enum qpol_action action;
    char target[QUBES_NAME_MAX + 1];    /* where the call goes: target= or the asked one */
    char user[QPOL_USER_MAX + 1];       /* "" unless user= gave one */
    char file[PATH_MAX];                /* the policy file read */
    int line;                           /* the line that decided, 0 when none */
};

const char *qpol_action_name(enum qpol_action a);
/* The policy directory: $QUBES_RPC_POLICY_DIR, else QPOL_DEFAULT_DIR. */
const char *qpol_dir(void);
/* A service name: 1..QPOL_SERVICE_MAX of [A-Za-z0-9_.+-], not "." or
 * "..". */
int qpol_check_service(const char *service, struct qerr *err);
/* A call's source or target: a VM name (1..QUBES_NAME_MAX of
 * [A-Za-z0-9_.-], not starting with '.' or '-'), "dom0", or, for a
 * target, "$dispvm". */
int qpol_check_target(const char *name, struct qerr *err);
/* Decides the call; 0 with *out filled (deny when nothing matches), or -1
 * with err when a name is bad or the file cannot be read as policy (the
 * caller denies). */
int qpol_evaluate(const char *dir, const char *service, const char *source, const char *target,
                  struct qpol_decision *out, struct qerr *err);

#endif
