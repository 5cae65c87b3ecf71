/* Many writers and readers at once, and writers killed in the middle of a
 * save: no update is lost, and qubes.xml is always a whole, valid document
 * holding either the old or the new content. */
#include <sys/mman.h>

#include "../testutil.h"

#define WRITERS 8
#define CYCLES 100
#define READERS 2
#define KILLS 200

static char dir[4096], dbpath[4200];

static long counter_of(const struct qvm_collection *c)
{
    const char *v = qattrs_get(&c->root_attrs, "test_counter");
    return v ? atol(v) : 0;
}

/* lock, load, counter + 1, save, unlock; returns the value written or -1. */
static long bump(struct qubes_db *db, struct qerr *err)
{
    struct qvm_collection *c;
    if (qdb_lock_for_writing(db, 0, err) < 0)
        return -1;
    if (qdb_load(db, &c, err) < 0) {
        qdb_unlock(db, NULL);
        return -1;
    }
    long v = counter_of(c) + 1;
    char num[32];
    snprintf(num, sizeof num, "%ld", v);
    qattrs_set(&c->root_attrs, "test_counter", num);
    /* A VM attribute changes too, so the whole document really differs. */
    struct qvm *vm = qvm_collection_by_name(c, "test-work");
    snprintf(num, sizeof num, "%ld", 300 + v % 500);
    if (vm)
        qvm_set_attr(vm, "memory", num, err);
    int rc = qdb_save(db, c, err);
    qvm_collection_free(c);
    qdb_unlock(db, NULL);
    return rc < 0 ? -1 : v;
}

static long read_counter(struct qerr *err)
{
    struct qubes_db db;
    struct qvm_collection *c;
    qdb_init(&db, dbpath, err);
    long v = -1;
    if (qdb_lock_for_reading(&db, err) == 0 && qdb_load(&db, &c, err) == 0) {
        v = counter_of(c);
        qvm_collection_free(c);
    }
    qdb_close(&db);
    return v;
}

static void no_update_is_lost(void)
{
    /* Readers count, in shared memory, what they saw. */
    long *stats = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(stats, 0, 4096);
    volatile long *stop = &stats[0], *locked_ok = &stats[1], *locked_bad = &stats[2];
    volatile long *raw_ok = &stats[3], *raw_bad = &stats[4], *backwards = &stats[5];
    pid_t readers[READERS], writers[WRITERS];

    for (int r = 0; r < READERS; r++) {
        if ((readers[r] = fork()) == 0) {
            long last = -1;
            while (!*stop) {
                struct qerr err;
                /* Under a read lock ... */
                long v = read_counter(&err);
                if (v < 0) {
                    __sync_fetch_and_add(locked_bad, 1);
                    fprintf(stderr, "locked reader: %s\n", err.msg);
                } else {
                    __sync_fetch_and_add(locked_ok, 1);
                    if (v < last)
                        __sync_fetch_and_add(backwards, 1);
                    last = v;
                }
                /* ... and with no lock at all: rename makes this safe too. */
                size_t len;
                char *text = slurp(dbpath, &len);
                struct qvm_collection *c;
                if (text && qvm_collection_parse(text, len, "raw", &c, &err) == 0) {
                    __sync_fetch_and_add(raw_ok, 1);
                    qvm_collection_free(c);
                } else {
                    __sync_fetch_and_add(raw_bad, 1);
                }
                free(text);
            }
            _exit(0);
        }
    }
    long t0 = now_ms();
    for (int w = 0; w < WRITERS; w++) {
        if ((writers[w] = fork()) == 0) {
            struct qubes_db db;
            struct qerr err;
            qdb_init(&db, dbpath, &err);
            for (int i = 0; i < CYCLES; i++)
                if (bump(&db, &err) < 0) {
                    fprintf(stderr, "writer: %s\n", err.msg);
                    _exit(1);
                }
            qdb_close(&db);
            _exit(0);
        }
    }
    int failed = 0;
    for (int w = 0; w < WRITERS; w++) {
        int st = wait_child(writers[w], 300000);
        if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            failed++;
    }
    long elapsed = now_ms() - t0;
    *stop = 1;
    for (int r = 0; r < READERS; r++)
        wait_child(readers[r], 30000);

    struct qerr err;
    long final = read_counter(&err);
    ok(failed == 0, "%d writers x %d lock-load-modify-save cycles all succeed", WRITERS, CYCLES);
    ok(final == WRITERS * CYCLES, "no update is lost: counter is %ld, want %d", final,
       WRITERS * CYCLES);
    diag("%d saves in %ld ms (%.0f cycles/s with %d writers and %d readers)", WRITERS * CYCLES,
         elapsed, elapsed ? WRITERS * CYCLES * 1000.0 / elapsed : 0.0, WRITERS, READERS);
    ok(*locked_ok > 0 && *locked_bad == 0, "readers under the read lock always load a valid "
       "document (%ld loads, %ld failures)", *locked_ok, *locked_bad);
    ok(*raw_ok > 0 && *raw_bad == 0, "readers without any lock always see a complete document "
       "(%ld reads, %ld bad)", *raw_ok, *raw_bad);
    ok(*backwards == 0, "a reader never sees the counter go backwards");
    munmap(stats, 4096);
}

static int temp_files(void)
{
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -c '^\\.qubes\\.xml\\.tmp-'", dir);
    FILE *p = popen(cmd, "r");
    int n = 0;
    if (p && fscanf(p, "%d", &n) != 1)
        n = 0;
    if (p)
        pclose(p);
    return n;
}

/* A writer saving in a loop, killed with SIGKILL at a random moment. Each
 * completed save is reported on a pipe; the file must then hold the last
 * reported value or the one after it (saved, killed before reporting). */
static void killed_writers_never_corrupt(void)
{
    srand((unsigned)getpid() ^ (unsigned)now_ms());
    int bad_parse = 0, bad_value = 0, with_temp = 0, after_rename = 0;
    long first = -1, last_seen = 0;
    for (int k = 0; k < KILLS; k++) {
        int p[2];
        if (pipe(p) < 0)
            exit(99);
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            struct qubes_db db;
            struct qerr err;
            qdb_init(&db, dbpath, &err);
            for (;;) {
                long v = bump(&db, &err);
                if (v < 0)
                    _exit(1);
                char msg[32];
                snprintf(msg, sizeof msg, "%ld\n", v);
                say(p[1], msg);
            }
        }
        close(p[1]);
        /* Wait for one save so the writer is past start-up, then a random delay. */
        char line[64];
        long reported = -1;
        if (read_line(p[0], line, sizeof line, 20000) >= 0)
            reported = atol(line);
        usleep((useconds_t)(rand() % 6000));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        while (read_line(p[0], line, sizeof line, 50) >= 0)
            reported = atol(line);
        close(p[0]);
        if (first < 0)
            first = reported;

        if (temp_files() > 0)
            with_temp++;
        struct qerr err;
        long v = read_counter(&err);
        if (v < 0) {
            bad_parse++;
            diag("kill %d: %s", k, err.msg);
        } else if (v != reported && v != reported + 1) {
            bad_value++;
            diag("kill %d: file holds %ld, last reported %ld", k, v, reported);
        } else if (v == reported + 1) {
            after_rename++;
        }
        last_seen = v;
    }
    ok(bad_parse == 0, "after %d SIGKILLs mid-save, qubes.xml always parses", KILLS);
    ok(bad_value == 0, "and always holds the old or the new content");
    diag("kills with a temporary file left: %d; after the rename but before the report: %d; "
         "counter went from %ld to %ld", with_temp, after_rename, first, last_seen);
    ok(with_temp > 0, "some kills landed while the new file was being written (%d)", with_temp);
    struct qubes_db db;
    struct qerr err;
    qdb_init(&db, dbpath, &err);
    qdb_lock_for_writing(&db, 0, &err);
    qdb_close(&db);
    ok(temp_files() == 0, "the next writer clears the dead writers' temporary files");
}

int main(void)
{
    scratch_db(dir, sizeof dir, dbpath, sizeof dbpath);
    no_update_is_lost();
    killed_writers_never_corrupt();
    rm_scratch(dir);
    return done_testing();
}
