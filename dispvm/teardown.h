/* Private to dispvm/: the end of a DispVM, and the sweep of what crashed
 * ones left (dispvm_cleanup, in dispvm.h). */
#ifndef QUBES_DISPVM_TEARDOWN_H
#define QUBES_DISPVM_TEARDOWN_H

#include "state.h"

/* A DispVM's end, in two steps, each doing whatever d says exists (no
 * lock held before either). The first destroys the domain and removes the
 * run directory (releasing the memory file it mapped); a record that must
 * stay (its host did not answer) is no longer d's. The second removes the
 * record, under the qubes.xml write lock. */
int dispvm_teardown_domain(struct qubes *q, struct dispvm_state *d, struct qerr *err);
int dispvm_teardown_record(struct qubes *q, struct dispvm_state *d, struct qerr *err);

/* The sweeps of qvm-cleanup-dispvms, with q->coll loaded for writing:
 * records of DispVMs whose owner (the service's worker) is gone, their
 * domains destroyed (removed from q->coll; *changed tells); a DispVM whose
 * owner lives is left alone, even before its domain exists; domains and files of DispVMs without a record
 * (ours are the ones with a run directory here); memory files no savefile
 * and no DispVM uses, and those of a preparation that died (its dvm VM is
 * not running). *removed counts what went. */
int dispvm_sweep_records(struct qubes *q, int *removed, bool *changed, FILE *progress,
                         struct qerr *err);
void dispvm_sweep_run_dirs(struct qubes *q, int *removed, FILE *progress);
void dispvm_sweep_memory_files(struct qubes *q, FILE *progress);

#endif
