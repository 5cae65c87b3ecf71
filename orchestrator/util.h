/* Small helpers the library's parts share. */
#ifndef QUBES_UTIL_H
#define QUBES_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "error.h"

/* One progress line on `f` ("--> ..."), nothing when f is NULL; printed
 * as qprint_text prints. */
void qsay(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A daemon's log line on stderr: "YYYY-MM-DD HH:MM:SS WHO: message", the
 * message printed as qprint_text prints. */
void qlog(const char *who, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void qlogv(const char *who, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* The program `name` beside this one (the same directory as
 * /proc/self/exe), or the one the environment variable `env` names. */
int qsibling_program(const char *name, const char *env, char *out, size_t len,
                     struct qerr *err);
/* The one printer for text that may come from a guest, a file or another
 * user: printable UTF-8 goes out as it is; C0 and C1 controls, DEL, bidi
 * and line-separator characters and bytes that are not UTF-8 go out
 * escaped (\xNN, a newline as \n), so nothing reaches a terminal as a
 * control sequence. */
void qprint_text(FILE *f, const char *text);
/* Makes sure descriptors 0, 1 and 2 are open (on /dev/null where one was
 * closed): else the next file opened would become standard output or
 * error, and progress text or a child's output would land in it. */
void qensure_std_fds(void);
/* Runs a program with an argument vector (never through a shell) and
 * waits: *status is its exit status (128 + the signal that ended it);
 * -1 only when it could not be run or waited for. */
int qrun_status(char *const argv[], int *status, struct qerr *err);
/* The same, failing unless it exits 0. */
int qrun_program(char *const argv[], struct qerr *err);
/* The user and group QEMU runs as: QUBES_EMULATOR_USER (default
 * libvirt-qemu, the user Debian's libvirt and `make vmm-up` run QEMU as),
 * or root's (0, 0) when there is no such user. */
void qemulator_ids(uid_t *uid, gid_t *gid);
/* The DAC label ("+UID:+GID") libvirt is told to give a backing file of a
 * VM's disk: root's, in QEMU's group, which reads it (the file is not
 * group-writable: storage_backing_readonly). No QEMU may write a file
 * that other VMs' disks are made of. */
void qemulator_backing_label(char *out, size_t len);
/* mkdir -p. A directory it makes has mode 0750 and, when we are root, the
 * emulator's group: QEMU can pass through to the files its VM uses (which
 * libvirt hands it by ownership for the run), no other user can enter.
 * Directories that exist are left as they are. */
int qmkdirs(const char *path, struct qerr *err);
/* One directory that must not exist yet (errno EEXIST), made so. */
int qmkdir(const char *path, struct qerr *err);
/* Whether QEMU's user (qemulator_ids, with its groups) may pass through
 * every directory above `path`: libvirt hands QEMU a VM's files, not the
 * way to them. Fails naming the first directory it may not enter. */
int qemulator_reaches(const char *path, struct qerr *err);
/* Opens (creating) DIR/NAME and takes an exclusive flock on it, waiting;
 * returns the descriptor that holds it (close() releases), or -1. */
int qflock(const char *dir, const char *name, struct qerr *err);
/* Writes all of buf, retrying short writes and EINTR; -1 with errno. */
int qwrite_all(int fd, const void *buf, size_t len);
/* The whole of an open file, NUL-terminated (malloc'ed); NULL with errno. */
char *qread_fd(int fd, size_t *len);
/* A small file's text: at most len - 1 bytes of `path`, NUL-terminated;
 * -1 with errno when it cannot be read. */
int qread_small(const char *path, char *out, size_t len);
/* Writes `path` atomically: a temporary file beside it, fsync'ed, renamed
 * over it, then the directory fsync'ed. A failure leaves the old file. */
int qwrite_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
                       struct qerr *err);
/* The same for a runtime file (under $QUBES_RUN_DIR, mode 0600): replaced
 * atomically, not fsync'ed, as it means nothing after the host restarts. */
/* qwrite_file_atomic, or without its fsyncs when !durable (a file of the
 * run directory, which a reboot empties anyway). */
int qwrite_file(const char *path, const void *data, size_t len, unsigned mode, bool durable,
                struct qerr *err);
/* qwrite_file, the new file given the extended attribute `tag` = `value`
 * before it takes the name: whoever sees the name sees the attribute of
 * that content. Best effort: a file system without extended attributes,
 * or a process that may not set `tag`, writes the file without it. */
int qwrite_file_tagged(const char *path, const void *data, size_t len, unsigned mode,
                       bool durable, const char *tag, const char *value, struct qerr *err);
int qwrite_runtime_file(const char *path, const char *text, struct qerr *err);
/* CLOCK_MONOTONIC in milliseconds. */
long qnow_ms(void);
/* Sets the nice value of every thread of process `pid` (a process's
 * priority is its threads' own; threads made later take their maker's).
 * Returns how many threads, 0 when the process is gone, -1 with errno. */
int qproc_set_nice(pid_t pid, int nice);
/* The CPU time (nanoseconds on a CPU, from each thread's schedstat) and
 * page faults (minor and major) of process `pid`'s live threads, summed in
 * three classes: its main thread; those whose name starts with "CPU "
 * (QEMU's vCPU threads, named so with -name debug-threads=on: "CPU 0/TCG",
 * "CPU 0/KVM"); and the rest. Threads that ended are not counted. 0, or
 * -1 with errno (ENOENT: the process is gone). */
enum { QPROC_MAIN, QPROC_VCPU, QPROC_OTHER, QPROC_CLASSES };
struct qproc_cpu {
    unsigned long long ns[QPROC_CLASSES];
    unsigned long faults[QPROC_CLASSES];
};
int qproc_threads_cpu(pid_t pid, struct qproc_cpu *out);
/* Whether two stats are of the same file, unchanged: device, inode, size
 * and modification time (a file replaced by rename, or written, differs). */
bool qstat_same(const struct stat *a, const struct stat *b);

#endif
