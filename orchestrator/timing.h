/* Step timings of one request, across the processes that serve it (the
 * tool, the DispVM service, its worker): each step's wall time, and the CPU
 * time and page faults of this process (and the children it waited for)
 * in it, one line per step on a descriptor all of them share. Off unless
 * started; then a mark costs two clock reads, two getrusage calls and a
 * write of one short line, which is atomic on a pipe or terminal (under
 * PIPE_BUF), so lines of several processes never mix. */
#ifndef QUBES_TIMING_H
#define QUBES_TIMING_H

#include <stdbool.h>

/* The environment variable that hands the descriptor to a program we
 * start (qtime_from_env reads it). */
#define QTIME_ENV "QUBES_TIMINGS_FD"

/* Timings go to `fd` (a duplicate is kept, close-on-exec); `who` names
 * this process in each line. The clock starts now. fd < 0: off. */
void qtime_start(int fd, const char *who);
/* Started from QTIME_ENV when it names an open descriptor, else off (a
 * process that serves one request after another reads it again). */
void qtime_from_env(const char *who);
/* Off, its duplicate closed, the environment left as it is: a backend's
 * copy once its timed work is done (a worker that then waits for the next
 * request must not keep the last one's stderr open). */
void qtime_release(void);
/* Renames this process in later lines; after a fork, the child calls it
 * (its children's CPU time starts again at 0). */
void qtime_who(const char *who);
bool qtime_on(void);
/* The descriptor lines go to, -1 when off (to hand to another process). */
int qtime_fd(void);
/* Ends the step `step`: one line with the wall and CPU time since the
 * previous mark of this process (or its start). */
void qtime_mark(const char *step);
/* A step timed on its own, apart from the marks (inside another step, or
 * in code that does not know the marks around it). */
struct qtime_step {
    double wall, cpu;
    long faults;
};
void qtime_begin(struct qtime_step *s);
void qtime_end(const struct qtime_step *s, const char *step);
/* A line about another process (`who`), with figures read from it: a
 * step of this process's line format, keyed like any other by step and
 * who. */
void qtime_report(const char *step, double wall_ms, double cpu_ms, long faults, const char *who);

#endif
