#include "place.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "../orchestrator/hosts.h"
#include "../orchestrator/runtime.h"
#include "../orchestrator/util.h"

#define PLACED_DIR "dispvm-placed"
#define PLACE_LOCK "dispvm-place.lock"

struct candidate {
    const char *name;           /* QHOST_LOCAL for this one */
    const char *uri;
    long placed;                /* DispVMs placed there, alive */
    long long score_mib;
};

/* How many live placements each candidate has; dead records go. */
static void count_placed(const char *dir, struct candidate *c, size_t n)
{
    DIR *dh = opendir(dir);
    struct dirent *e;
    while (dh && (e = readdir(dh))) {
        char path[PATH_MAX];
        const char *dot = strrchr(e->d_name, '.');
        if (e->d_name[0] == '.' || !dot)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (!qrt_owner_alive(path)) {
            unlink(path);
            continue;
        }
        for (size_t i = 0; i < n; i++)
            if (strlen(c[i].name) == (size_t)(dot - e->d_name) &&
                strncmp(c[i].name, e->d_name, (size_t)(dot - e->d_name)) == 0)
                c[i].placed++;
    }
    if (dh)
        closedir(dh);
}

int dispvm_place(struct qubes *q, const char *template_name, char *host, size_t len,
                 char *record, size_t rlen, FILE *progress, struct qerr *err)
{
    struct dispvm_template t;
    struct qhosts reg;
    char path[PATH_MAX], dir[PATH_MAX];
    host[0] = record[0] = '\0';
    /* A template on another host: its DispVMs go there. */
    int dq = q->coll->globals[QG_DEFAULT_TEMPLATE];
    const struct qvm *tv = template_name ? qvm_collection_by_name(q->coll, template_name)
                           : dq >= 0 ? qvm_collection_by_qid(q->coll, dq) : NULL;
    if (tv && qvm_class_is_template(tv->cls) && qvm_host(tv)) {
        snprintf(host, len, "%s", qvm_host(tv));
        return 0;
    }
    if (dispvm_template_find(q, template_name, &t, err) < 0 ||
        qhosts_path(&q->cfg, path, sizeof path, err) < 0 || qhosts_load(path, &reg, err) < 0)
        return -1;
    if (reg.n == 0)
        return 0;       /* no other host: nothing to choose */
    struct candidate c[QHOSTS_MAX + 1];
    size_t n = 0;
    if (access(t.set.savefile, R_OK) == 0)
        c[n++] = (struct candidate){ QHOST_LOCAL, q->cfg.vmm_uri, 0, 0 };
    for (size_t i = 0; i < reg.n; i++) {
        struct dispvm_template there;
        if (dispvm_template_find_on(q, t.name, reg.host[i].name, &there, NULL) == 0 &&
            access(there.set.gen, R_OK) == 0)
            c[n++] = (struct candidate){ reg.host[i].name, reg.host[i].uri, 0, 0 };
    }
    if (n == 0)
        return 0;       /* no savefile anywhere: this host's request says so */
    struct qhost_state st[QHOSTS_MAX + 1];
    if (n > 1) {
        const char *uris[QHOSTS_MAX + 1];
        long timeout = qhosts_timeout_ms(err);
        if (timeout < 0)
            return -1;
        for (size_t i = 0; i < n; i++)
            uris[i] = c[i].uri;
        qhosts_probe(&q->cfg, NULL, uris, n, timeout, st);
    } else {
        memset(st, 0, sizeof st[0]);
        st[0].reachable = 1;
    }
    if (qrt_path(&q->cfg, PLACED_DIR, dir, sizeof dir, err) < 0 || qmkdirs(dir, err) < 0)
        return -1;
    cleanup_close int lock = qrt_lock(&q->cfg, PLACE_LOCK, err);
    if (lock < 0)
        return -1;
    count_placed(dir, c, n);
    int best = -1;
    for (size_t i = 0; i < n; i++) {
        if (!st[i].reachable) {
            qsay(progress, "--> Host %s skipped: %s", c[i].name, st[i].why);
            continue;
        }
        c[i].score_mib = n > 1 ? (long long)(st[i].free_kib / 1024) - c[i].placed * t.memory_mib
                               : 0;
        if (best < 0 || c[i].score_mib > c[best].score_mib)
            best = (int)i;
    }
    if (best < 0)
        return qerr_set(err, "no host with a savefile of '%s' answers (qvm-host list)", t.name);
    if (n > 1)
        qsay(progress, "--> Placing the DispVM on host %s (%lld MiB free less %ld DispVM(s) "
             "placed there)", c[best].name, c[best].score_mib + c[best].placed * t.memory_mib,
             c[best].placed);
    char rec[PATH_MAX + 64];
    snprintf(rec, sizeof rec, "%s/%s.%d", dir, c[best].name, (int)getpid());
    if (qrt_owner_write(rec, err) < 0)
        return -1;
    snprintf(record, rlen, "%s", rec);
    snprintf(host, len, "%s", strcmp(c[best].name, QHOST_LOCAL) == 0 ? "" : c[best].name);
    return 0;
}

void dispvm_place_release(const char *record)
{
    if (record && record[0])
        unlink(record);
}
