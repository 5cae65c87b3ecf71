/* The reader/writer locks on qubes.xml: exclusion among our tools and with
 * the original's classic fcntl locks, the re-check after a rename, saving
 * under a held lock, failure paths, and helpers run under a parent's lock. */
#include <sys/resource.h>

#include "../testutil.h"

static char dir[4096], dbpath[4200];

static const char *counter_of(const struct qvm_collection *c)
{
    const char *v = qattrs_get(&c->root_attrs, "test_counter");
    return v ? v : "";
}

static int set_counter(struct qubes_db *db, const char *value, struct qerr *err)
{
    struct qvm_collection *c;
    if (qdb_load(db, &c, err) < 0)
        return -1;
    qattrs_set(&c->root_attrs, "test_counter", value);
    int rc = qdb_save(db, c, err);
    qvm_collection_free(c);
    return rc;
}

/* A child that takes a lock (ours or, with `classic`, the original's
 * F_SETLKW), says "locked" on `out`, and unlocks when it reads a line
 * from `in`. Before unlocking it may save `value` twice. */
static pid_t holder(short type, bool classic, const char *value, int *to_child, int *from_child)
{
    int a[2], b[2];
    if (pipe(a) < 0 || pipe(b) < 0)
        exit(99);
    pid_t pid = fork();
    if (pid == 0) {
        close(a[1]);
        close(b[0]);
        struct qerr err;
        struct qubes_db db;
        char line[64];
        int fd = -1;
        if (classic) {
            fd = open(dbpath, type == F_WRLCK ? O_RDWR : O_RDONLY);
            struct flock fl = { .l_type = type, .l_whence = SEEK_SET };
            if (fd < 0 || fcntl(fd, F_SETLKW, &fl) < 0)
                _exit(2);
        } else {
            qdb_init(&db, dbpath, &err);
            if ((type == F_WRLCK ? qdb_lock_for_writing(&db, 0, &err)
                                 : qdb_lock_for_reading(&db, &err)) < 0)
                _exit(2);
        }
        say(b[1], "locked\n");
        if (read_line(a[0], line, sizeof line, 30000) < 0)
            _exit(3);
        if (value && !classic) {
            if (set_counter(&db, "first", &err) < 0 || set_counter(&db, value, &err) < 0) {
                fprintf(stderr, "holder: %s\n", err.msg);
                _exit(4);
            }
        }
        if (classic)
            close(fd);
        else
            qdb_unlock(&db, &err);
        say(b[1], "unlocked\n");
        _exit(0);
    }
    close(a[0]);
    close(b[1]);
    *to_child = a[1];
    *from_child = b[0];
    return pid;
}

/* A child that takes our lock, then reports "COUNTER SAME-INODE RETRIES". */
static pid_t waiter(short type, int *from_child)
{
    int b[2];
    if (pipe(b) < 0)
        exit(99);
    pid_t pid = fork();
    if (pid == 0) {
        close(b[0]);
        struct qerr err;
        struct qubes_db db;
        struct qvm_collection *c;
        qdb_init(&db, dbpath, &err);
        if ((type == F_WRLCK ? qdb_lock_for_writing(&db, 0, &err) : qdb_lock_for_reading(&db, &err)) < 0 ||
            qdb_load(&db, &c, &err) < 0) {
            fprintf(stderr, "waiter: %s\n", err.msg);
            _exit(2);
        }
        struct stat fst, pst;
        fstat(db.fd, &fst);
        stat(dbpath, &pst);
        char msg[256];
        snprintf(msg, sizeof msg, "%s %d %u\n", counter_of(c),
                 fst.st_ino == pst.st_ino && fst.st_dev == pst.st_dev, db.replaced_while_waiting);
        say(b[1], msg);
        qvm_collection_free(c);
        qdb_close(&db);
        _exit(0);
    }
    close(b[1]);
    *from_child = b[0];
    return pid;
}

static void lock_already_taken(void)
{
    struct qubes_db db;
    struct qerr err;
    qdb_init(&db, dbpath, &err);
    ok(qdb_lock_for_reading(&db, &err) == 0, "a read lock is granted");
    ok(qdb_lock_for_reading(&db, &err) < 0 && strstr(err.msg, "lock already taken"),
       "a second lock through one handle: 'lock already taken' (%s)", err.msg);
    ok(qdb_lock_for_writing(&db, 0, &err) < 0 && strstr(err.msg, "lock already taken"),
       "a write lock over a read lock through one handle is refused too");
    qdb_unlock(&db, &err);
    ok(qdb_unlock(&db, &err) < 0 && strstr(err.msg, "not locked"), "unlocking twice is an error");
    struct qvm_collection *c = NULL;
    ok(qdb_load(&db, &c, &err) < 0, "loading without a lock is refused");
    qdb_close(&db);
}

static void readers_share_writers_wait(void)
{
    int to, from;
    char line[256];
    pid_t r = holder(F_RDLCK, false, NULL, &to, &from);
    ok(read_line(from, line, sizeof line, 10000) >= 0, "reader 1 holds a read lock");

    struct qubes_db db;
    struct qerr err;
    qdb_init(&db, dbpath, &err);
    alarm(20);
    ok(qdb_lock_for_reading(&db, &err) == 0, "a second reader is let in at once");
    alarm(0);
    qdb_close(&db);

    int wfrom;
    pid_t w = waiter(F_WRLCK, &wfrom);
    ok(wait_for_waiter(inode_of(dbpath), 5000), "a writer blocks while a reader holds the lock");
    ok(read_line(wfrom, line, 64, 200) < 0, "the writer has not got in yet");
    say(to, "go\n");
    ok(read_line(wfrom, line, sizeof line, 10000) >= 0, "the writer gets in once the reader leaves");
    wait_child(r, 5000);
    wait_child(w, 5000);
    close(to), close(from), close(wfrom);
}

static void classic_locks_and_ours_exclude_each_other(void)
{
    int to, from, wfrom;
    char line[256];
    pid_t h = holder(F_WRLCK, true, NULL, &to, &from);
    ok(read_line(from, line, sizeof line, 10000) >= 0,
       "an old-style tool holds a classic fcntl write lock");
    pid_t w = waiter(F_RDLCK, &wfrom);
    ok(wait_for_waiter(inode_of(dbpath), 5000), "our reader waits for the classic write lock");
    ok(read_line(wfrom, line, 64, 200) < 0, "and does not read meanwhile");
    say(to, "go\n");
    ok(read_line(wfrom, line, sizeof line, 10000) >= 0, "it reads once the old tool unlocks");
    wait_child(h, 5000);
    wait_child(w, 5000);
    close(to), close(from), close(wfrom);

    /* And the other way round. */
    struct qubes_db db;
    struct qerr err;
    qdb_init(&db, dbpath, &err);
    qdb_lock_for_writing(&db, 0, &err);
    pid_t c = fork();
    if (c == 0) {
        int fd = open(dbpath, O_RDONLY);
        struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET };
        int r = fcntl(fd, F_SETLK, &fl);
        _exit(r < 0 && (errno == EAGAIN || errno == EACCES) ? 0 : 1);
    }
    int st = wait_child(c, 5000);
    ok(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
       "while we hold the write lock, a classic read lock is refused");
    qdb_close(&db);
}

static void waiter_follows_rename(short type, const char *what)
{
    int to, from, wfrom;
    char line[256], expect[64];
    static int round;
    snprintf(expect, sizeof expect, "gen-%d", ++round);
    pid_t h = holder(F_WRLCK, false, expect, &to, &from);
    read_line(from, line, sizeof line, 10000);
    ino_t old = inode_of(dbpath);
    pid_t w = waiter(type, &wfrom);
    ok(wait_for_waiter(old, 5000), "%s: blocked on the write lock of the old file", what);
    say(to, "save and unlock\n");
    ok(read_line(from, line, sizeof line, 10000) >= 0 && strcmp(line, "unlocked") == 0,
       "%s: the holder saved twice under one lock and unlocked", what);
    int n = read_line(wfrom, line, sizeof line, 10000);
    char counter[64] = "";
    int same = 0;
    unsigned retries = 0;
    if (n > 0)
        sscanf(line, "%63s %d %u", counter, &same, &retries);
    ok(strcmp(counter, expect) == 0, "%s: reads the new content (%s, want %s)", what, counter,
       expect);
    ok(same == 1, "%s: holds its lock on the file now at the path", what);
    ok(retries >= 1, "%s: saw the file replaced while waiting and retried (%u)", what, retries);
    wait_child(h, 5000);
    wait_child(w, 5000);
    close(to), close(from), close(wfrom);
}

static void write_lock_held_across_saves(void)
{
    struct qubes_db db;
    struct qerr err;
    qdb_init(&db, dbpath, &err);
    qdb_lock_for_writing(&db, 0, &err);
    bool held = true, moved = true;
    for (int i = 0; i < 3; i++) {
        ino_t before = inode_of(dbpath);
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        if (set_counter(&db, v, &err) < 0)
            held = false;
        moved = moved && inode_of(dbpath) != before;
        held = held && lock_held_on(dbpath) == F_WRLCK;
    }
    ok(moved, "every save puts a new file in place");
    ok(held, "the write lock stays held, on the new file, across three saves");
    struct stat st;
    stat(dbpath, &st);
    ok((st.st_mode & 0777) == 0660, "a saved qubes.xml has mode 0660 (%o)", st.st_mode & 0777);
    qdb_unlock(&db, &err);
    ok(lock_held_on(dbpath) == F_UNLCK, "unlock releases it");
    qdb_close(&db);
}

static int count_temps(void)
{
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -c '^\\.qubes\\.xml\\.tmp-' > /dev/null", dir);
    return system(cmd) == 0;
}

static void failed_save_keeps_old_file_and_lock(void)
{
    struct qubes_db db;
    struct qerr err;
    size_t before_len, after_len;
    qdb_init(&db, dbpath, &err);
    qdb_lock_for_writing(&db, 0, &err);
    char *before = slurp(dbpath, &before_len);
    struct rlimit old, lim = { .rlim_cur = 512, .rlim_max = RLIM_INFINITY };
    getrlimit(RLIMIT_FSIZE, &old);
    lim.rlim_max = old.rlim_max;
    signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    int rc = set_counter(&db, "too-big-to-write", &err);
    setrlimit(RLIMIT_FSIZE, &old);
    ok(rc < 0 && strstr(err.msg, "cannot write"), "a save whose write fails reports it (%s)",
       err.msg);
    char *after = slurp(dbpath, &after_len);
    ok(before && after && before_len == after_len && memcmp(before, after, before_len) == 0,
       "the old qubes.xml is intact");
    ok(lock_held_on(dbpath) == F_WRLCK, "the write lock is still held");
    ok(!count_temps(), "no temporary file is left behind");
    ok(set_counter(&db, "after-failure", &err) == 0, "the same handle saves once space is back");
    free(before);
    free(after);
    qdb_close(&db);
}

static void stale_temp_files_are_removed(void)
{
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s/.qubes.xml.tmp-dead01", dir);
    spit(tmp, "<QubesVmColl");
    struct qubes_db db;
    struct qerr err;
    qdb_init(&db, dbpath, &err);
    qdb_lock_for_reading(&db, &err);
    qdb_unlock(&db, &err);
    ok(access(tmp, F_OK) == 0, "a reader leaves a dead writer's temporary file alone");
    qdb_lock_for_writing(&db, 0, &err);
    ok(access(tmp, F_OK) < 0, "the next writer removes it");
    qdb_close(&db);
}

static int run_tool(const char *tool, char *const args[], char *out, size_t outlen,
                    long timeout_ms)
{
    int p[2];
    if (pipe(p) < 0)
        return -2;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", getenv("QUBES_TEST_BIN"), tool);
        execv(path, args);
        _exit(127);
    }
    close(p[1]);
    int st = wait_child(pid, timeout_ms);
    ssize_t n = read(p[0], out, outlen - 1);
    out[n > 0 ? n : 0] = '\0';
    close(p[0]);
    return st < 0 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void helpers_read_under_parent_lock(void)
{
    if (!getenv("QUBES_TEST_BIN")) {
        ok(0, "QUBES_TEST_BIN names the tools' directory");
        return;
    }
    setenv("QUBES_BASE_DIR", dir, 1);
    setenv("QUBES_OFFLINE", "1", 1);
    char out[8192];
    char *ls[] = { "qvm-ls", "--raw-list", NULL };
    char *prefs[] = { "qvm-prefs", "-s", "test-work", "memory", "500", NULL };
    struct qubes_db db;
    struct qerr err;

    qdb_init(&db, dbpath, &err);
    qdb_lock_for_writing(&db, 0, &err);
    int rc = run_tool("qvm-ls", ls, out, sizeof out, 1500);
    ok(rc == -1, "control: without sharing, a helper blocks on its parent's write lock");

    qdb_share_with_children(&db, &err);
    rc = run_tool("qvm-ls", ls, out, sizeof out, 20000);
    ok(rc == 0 && strstr(out, "test-work"), "with the lock shared, the helper reads the database (rc %d)", rc);
    set_counter(&db, "saved-while-shared", &err);
    rc = run_tool("qvm-ls", ls, out, sizeof out, 20000);
    ok(rc == 0, "and still does after the parent saved (the new file is shared)");
    rc = run_tool("qvm-prefs", prefs, out, sizeof out, 20000);
    ok(rc == 1 && strstr(out, "may only read"),
       "a helper that tries to write is told so instead of deadlocking");
    qdb_close(&db);
    ok(getenv(QDB_LOCK_FD_ENV) == NULL, "unlocking withdraws the shared lock");

    /* A descriptor of qubes.xml that holds no lock gives no right to read. */
    int to, from;
    char line[64];
    pid_t h = holder(F_WRLCK, false, NULL, &to, &from);
    read_line(from, line, sizeof line, 10000);
    int fd = open(dbpath, O_RDONLY);
    char num[16];
    snprintf(num, sizeof num, "%d", fd);
    setenv(QDB_LOCK_FD_ENV, num, 1);
    rc = run_tool("qvm-ls", ls, out, sizeof out, 1500);
    ok(rc == -1, "a forged %s (an unlocked descriptor of qubes.xml) is not honoured",
       QDB_LOCK_FD_ENV);
    say(to, "go\n");
    wait_child(h, 5000);
    setenv(QDB_LOCK_FD_ENV, "0", 1);
    rc = run_tool("qvm-ls", ls, out, sizeof out, 20000);
    ok(rc == 0, "a %s naming some other file is ignored", QDB_LOCK_FD_ENV);
    unsetenv(QDB_LOCK_FD_ENV);
    close(fd);
    close(to), close(from);
}

int main(void)
{
    scratch_db(dir, sizeof dir, dbpath, sizeof dbpath);
    lock_already_taken();
    readers_share_writers_wait();
    classic_locks_and_ours_exclude_each_other();
    waiter_follows_rename(F_WRLCK, "writer");
    waiter_follows_rename(F_RDLCK, "reader");
    write_lock_held_across_saves();
    failed_save_keeps_old_file_and_lock();
    stale_temp_files_are_removed();
    helpers_read_under_parent_lock();
    rm_scratch(dir);
    return done_testing();
}
