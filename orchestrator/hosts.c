#include "hosts.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlwriter.h>

#include "collection.h"
#include "db.h"
#include "power.h"
#include "util.h"
#include "vm.h"
#include "vmm.h"
#include "xmlfile.h"

/* The registry of 64 hosts is a few KB; anything much larger is not ours. */
#define QHOSTS_MAX_SIZE (256 * 1024)

int qhost_check_name(const char *name, struct qerr *err)
{
    struct qerr e;
    if (strcmp(name, QHOST_LOCAL) == 0)
        return qerr_set(err, "host name '%s': the local host's, which is never registered",
                        QHOST_LOCAL);
    if (qvm_check_name(name, &e) < 0) {
        /* "invalid VM name 'x': why" -> "invalid host name 'x': why" */
        const char *why = strstr(e.msg, "name ");
        return qerr_set(err, "invalid host %s", why ? why : e.msg);
    }
    return 0;
}

int qhost_check_uri(const char *uri, struct qerr *err)
{
    size_t n = strlen(uri);
    if (n == 0)
        return qerr_set(err, "a host's URI cannot be empty");
    if (n >= QHOST_URI_MAX)
        return qerr_set(err, "URI '%.40s...': longer than %d characters", uri, QHOST_URI_MAX - 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)uri[i];
        if (c <= ' ' || c >= 0x7f || c == '"' || c == '\'' || c == '\\' || c == '<' || c == '>')
            return qerr_set(err, "URI '%s': character %zu is not allowed (printable ASCII "
                            "without spaces, quotes, '\\', '<' or '>')", uri, i + 1);
    }
    const char *sep = strstr(uri, "://");
    if (!sep || sep == uri)
        return qerr_set(err, "URI '%s': not SCHEME://HOST/PATH (e.g. qemu+tls://host.example/system)",
                        uri);
    for (const char *p = uri; p < sep; p++)
        if (!(((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '+' || *p == '-' || *p == '.'))
            return qerr_set(err, "URI '%s': the scheme '%.*s' is not a URI scheme", uri,
                            (int)(sep - uri), uri);
    if (strncasecmp(uri, "libxl:", 6) == 0 || strncasecmp(uri, "test:", 5) == 0)
        return qerr_set(err, "URI '%s': a local driver; a host is a libvirt daemon reached "
                        "over the network", uri);
    const char *host = sep + 3;
    /* A user part (user@host) is the URI's business; the host follows it. */
    const char *at = strchr(host, '@'), *slash = strchr(host, '/');
    if (at && (!slash || at < slash))
        host = at + 1;
    if (*host == '/' || *host == ':' || *host == '\0' || *host == '?')
        return qerr_set(err, "URI '%s': it names no host (qemu:///system is this machine's "
                        "daemon, the local host)", uri);
    return 0;
}

int qhosts_path(const struct qubes_config *cfg, char *out, size_t len, struct qerr *err)
{
    if ((size_t)snprintf(out, len, "%s/%s", cfg->base_dir, QHOSTS_FILE) >= len)
        return qerr_set(err, "%s/%s: path too long", cfg->base_dir, QHOSTS_FILE);
    return 0;
}

const char *const qhost_volume_kinds[] = { "root.img", "private.img", "vmlinuz", "initramfs",
                                           "volatile.img", NULL };

const char *qvm_host(const struct qvm *vm)
{
    const char *h = qvm_get_attr(vm, "host");
    return h && *h && strcmp(h, QHOST_LOCAL) != 0 ? h : NULL;
}

int qhosts_in_use(const struct qvm_collection *coll, const char *name, const char **who)
{
    for (struct qvm *vm = coll->by_qid; vm; vm = vm->hh_qid.next) {
        const char *h = qvm_host(vm);
        if (h && strcmp(h, name) == 0) {
            *who = vm->name;
            return 1;
        }
    }
    return 0;
}

long qhosts_timeout_ms(struct qerr *err)
{
    long t = QHOST_TIMEOUT_S;
    const char *env = getenv("QUBES_HOST_TIMEOUT");
    if (env && *env && qparse_int(env, 1, 3600, &t) < 0)
        return qerr_set(err, "QUBES_HOST_TIMEOUT=\"%s\": not a number of seconds (1-3600)", env);
    return t * 1000;
}

int qhosts_vmm(const struct qubes_config *cfg, const char *name, struct vmm *out,
               struct qerr *err)
{
    char path[PATH_MAX];
    struct qhosts h;
    if (qhost_check_name(name, err) < 0 || qhosts_path(cfg, path, sizeof path, err) < 0 ||
        qhosts_load(path, &h, err) < 0)
        return -1;
    const struct qhost *e = qhosts_find(&h, name);
    if (!e)
        return qerr_set(err, "no host '%s' in %s (qvm-host list shows them)", name, path);
    /* libvirt's connection and calls have no deadline of their own: a host
     * that takes the connection and never answers would hold the command
     * for ever. It is asked first, by a child within the deadline. */
    if (!cfg->offline) {
        long t = qhosts_timeout_ms(err);
        if (t < 0)
            return -1;
        const char *uris[] = { e->uri };
        struct qhost_state st;
        qhosts_probe(cfg, NULL, uris, 1, t, &st);
        if (!st.reachable)
            return qerr_set(err, "host '%s' (%s) does not answer: %s", name, e->uri, st.why);
    }
    struct qubes_config c = *cfg;
    snprintf(c.vmm_uri, sizeof c.vmm_uri, "%s", e->uri);
    vmm_init(out, &c);
    return 0;
}

int qhost_volume_name(const char *vm_name, const char *kind, char *out, size_t len,
                      struct qerr *err)
{
    if ((size_t)snprintf(out, len, "%s.%s", vm_name, kind) >= len)
        return qerr_set(err, "the volume name of '%s' is too long", vm_name);
    return 0;
}

int qhost_volume_path(struct vmm *vmm, const char *vm_name, const char *kind, char *out,
                      size_t len, struct qerr *err)
{
    char vol[QHOST_VOLUME_NAME_MAX];
    if (qhost_volume_name(vm_name, kind, vol, sizeof vol, err) < 0)
        return -1;
    int rc = vmm_volume_path(vmm, QHOST_POOL, vol, out, len, err);
    if (rc == 0)
        out[0] = '\0';
    return rc;
}

int qhost_volume_delete(struct vmm *vmm, const char *vm_name, const char *kind, struct qerr *err)
{
    char vol[QHOST_VOLUME_NAME_MAX];
    if (qhost_volume_name(vm_name, kind, vol, sizeof vol, err) < 0)
        return -1;
    return vmm_volume_delete(vmm, QHOST_POOL, vol, err);
}

int qhost_volumes_delete(struct vmm *vmm, const char *vm_name, struct qerr *err)
{
    char **names;
    size_t n, len = strlen(vm_name);
    if (vmm_volume_names(vmm, QHOST_POOL, &names, &n, err) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (strncmp(names[i], vm_name, len) == 0 && names[i][len] == '.')
            rc = vmm_volume_delete(vmm, QHOST_POOL, names[i], err);
    vmm_names_free(names, n);
    return rc;
}

int qhost_volume_copy(struct vmm *vmm, const char *vm_name, const char *from, const char *kind,
                      struct qerr *err)
{
    char vol[QHOST_VOLUME_NAME_MAX], src[QHOST_VOLUME_NAME_MAX];
    if (qhost_volume_name(vm_name, kind, vol, sizeof vol, err) < 0 ||
        qhost_volume_name(from, kind, src, sizeof src, err) < 0)
        return -1;
    return vmm_volume_clone(vmm, QHOST_POOL, vol, src, "raw", err);
}

const struct qhost *qhosts_find(const struct qhosts *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->host[i].name, name) == 0)
            return &h->host[i];
    return NULL;
}

int qhosts_add(struct qhosts *h, const char *name, const char *uri, struct qerr *err)
{
    if (qhost_check_name(name, err) < 0 || qhost_check_uri(uri, err) < 0)
        return -1;
    if (qhosts_find(h, name))
        return qerr_set(err, "a host named '%s' is registered already", name);
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->host[i].uri, uri) == 0)
            return qerr_set(err, "URI %s is host '%s' already", uri, h->host[i].name);
    if (h->n >= QHOSTS_MAX)
        return qerr_set(err, "%d hosts are registered: no more", QHOSTS_MAX);
    snprintf(h->host[h->n].name, sizeof h->host[h->n].name, "%s", name);
    snprintf(h->host[h->n].uri, sizeof h->host[h->n].uri, "%s", uri);
    h->n++;
    return 0;
}

int qhosts_remove(struct qhosts *h, const char *name, struct qerr *err)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->host[i].name, name) == 0) {
            memmove(&h->host[i], &h->host[i + 1], (h->n - i - 1) * sizeof *h->host);
            h->n--;
            return 0;
        }
    return qerr_set(err, "no host named '%s'", name);
}

int qhosts_load(const char *path, struct qhosts *out, struct qerr *err)
{
    memset(out, 0, sizeof *out);
    xmlDocPtr doc;
    if (qxml_read_file(path, QHOSTS_MAX_SIZE, "QubesHosts", &doc, err) < 0)
        return -1;
    if (!doc)
        return 0;       /* no registry: no hosts */
    xmlNode *root = xmlDocGetRootElement(doc);
    int rc = 0;
    for (xmlNode *e = root->children; rc == 0 && e; e = e->next) {
        if (e->type != XML_ELEMENT_NODE)
            continue;
        if (strcmp((const char *)e->name, "host") != 0) {
            rc = qerr_set(err, "%s:%d: unknown element <%s>", path, (int)e->line,
                          (const char *)e->name);
            break;
        }
        xmlChar *name = xmlGetProp(e, (const xmlChar *)"name");
        xmlChar *uri = xmlGetProp(e, (const xmlChar *)"uri");
        if (!name || !uri)
            rc = qerr_set(err, "%s:%d: a host without a %s", path, (int)e->line,
                          name ? "uri" : "name");
        else if (qhosts_add(out, (const char *)name, (const char *)uri, err) < 0)
            rc = qerr_prefix(err, "%s:%d", path, (int)e->line);
        xmlFree(name);
        xmlFree(uri);
    }
    xmlFreeDoc(doc);
    if (rc < 0)
        memset(out, 0, sizeof *out);
    return rc;
}

static int body(xmlTextWriterPtr w, const void *ctx)
{
    const struct qhosts *h = ctx;
    if (xmlTextWriterStartElement(w, (const xmlChar *)"QubesHosts") < 0)
        return -1;
    for (size_t i = 0; i < h->n; i++)
        if (xmlTextWriterStartElement(w, (const xmlChar *)"host") < 0 ||
            xmlTextWriterWriteAttribute(w, (const xmlChar *)"name", (const xmlChar *)h->host[i].name) < 0 ||
            xmlTextWriterWriteAttribute(w, (const xmlChar *)"uri", (const xmlChar *)h->host[i].uri) < 0 ||
            xmlTextWriterEndElement(w) < 0)
            return -1;
    return xmlTextWriterEndElement(w);
}

int qhosts_write(const struct qubes_db *db, const char *path, const struct qhosts *h,
                 struct qerr *err)
{
    if (db->lock != QDB_WRITE)
        return qerr_set(err, "%s: the host registry is written under the qubes.xml write lock, "
                        "and it is not held", path);
    return qxml_write_file(path, 0640, true, body, h, NULL, NULL, err);
}

/* The child's side of a probe: one line on `fd`, "ok FREE TOTAL RUNNING"
 * or "err WHY". */
static void probe_one(const struct qubes_config *base, const struct qvm_collection *coll,
                      const char *uri, int fd)
{
    struct qubes_config cfg = *base;
    snprintf(cfg.vmm_uri, sizeof cfg.vmm_uri, "%s", uri);
    cfg.offline = false;
    struct vmm vmm;
    vmm_init(&vmm, &cfg);
    struct vmm_host h;
    struct vmm_domain *d = NULL;
    size_t nd = 0;
    struct qerr e;
    char line[512];
    if (vmm_host_info(&vmm, &h, &e) < 0 || vmm_list_domains(&vmm, &d, &nd, &e) < 0) {
        snprintf(line, sizeof line, "err %s\n", e.msg);
    } else {
        unsigned running = 0;
        for (size_t i = 0; i < nd; i++)
            if (qvm_power_is_running(d[i].state) &&
                coll && (qvm_collection_by_name(coll, d[i].name) || qvm_is_dispvm_name(d[i].name)))
                running++;
        snprintf(line, sizeof line, "ok %llu %llu %u\n", h.free_kib, h.total_kib, running);
    }
    vmm_domains_free(d, nd);
    if (write(fd, line, strlen(line)) < 0)
        _exit(1);
    _exit(0);
}

void qhosts_probe(const struct qubes_config *cfg, const struct qvm_collection *coll,
                  const char *const *uris, size_t n, long timeout_ms, struct qhost_state *out)
{
    pid_t *pid = calloc(n + 1, sizeof *pid);
    struct pollfd *pfd = calloc(n + 1, sizeof *pfd);
    char (*buf)[512] = calloc(n + 1, sizeof *buf);
    size_t *used = calloc(n + 1, sizeof *used);
    memset(out, 0, n * sizeof *out);
    if (!pid || !pfd || !buf || !used) {
        for (size_t i = 0; i < n; i++)
            snprintf(out[i].why, sizeof out[i].why, "out of memory");
        goto done;
    }
    fflush(NULL);
    for (size_t i = 0; i < n; i++) {
        int p[2];
        pfd[i].fd = -1;
        pid[i] = -1;
        if (pipe2(p, O_CLOEXEC) < 0) {
            snprintf(out[i].why, sizeof out[i].why, "pipe: %s", strerror(errno));
            continue;
        }
        pid[i] = fork();
        if (pid[i] == 0) {
            close(p[0]);
            probe_one(cfg, coll, uris[i], p[1]);
        }
        close(p[1]);
        if (pid[i] < 0) {
            snprintf(out[i].why, sizeof out[i].why, "fork: %s", strerror(errno));
            close(p[0]);
            continue;
        }
        pfd[i].fd = p[0];
        pfd[i].events = POLLIN;
    }
    long deadline = qnow_ms() + timeout_ms;
    for (;;) {
        bool open_left = false;
        for (size_t i = 0; i < n; i++)
            open_left |= pfd[i].fd >= 0;
        long left = deadline - qnow_ms();
        if (!open_left || left <= 0)
            break;
        if (poll(pfd, n, (int)left) < 0 && errno != EINTR)
            break;
        for (size_t i = 0; i < n; i++) {
            if (pfd[i].fd < 0 || !pfd[i].revents)
                continue;
            ssize_t r = read(pfd[i].fd, buf[i] + used[i], sizeof buf[i] - 1 - used[i]);
            if (r > 0 && used[i] + (size_t)r < sizeof buf[i] - 1) {
                used[i] += (size_t)r;
                continue;
            }
            close(pfd[i].fd);   /* the end (or more than a line: cut) */
            pfd[i].fd = -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (pfd[i].fd >= 0) {
            close(pfd[i].fd);
            if (!out[i].why[0])
                snprintf(out[i].why, sizeof out[i].why, "no answer within %ld s", timeout_ms / 1000);
            if (pid[i] > 0)
                kill(pid[i], SIGKILL);
            used[i] = 0;
        }
        if (pid[i] > 0)
            waitpid(pid[i], NULL, 0);
        buf[i][used[i]] = '\0';
        char *nl = strchr(buf[i], '\n');
        if (nl)
            *nl = '\0';
        if (strncmp(buf[i], "ok ", 3) == 0 &&
            sscanf(buf[i] + 3, "%llu %llu %u", &out[i].free_kib, &out[i].total_kib,
                   &out[i].running) == 3)
            out[i].reachable = 1;
        else if (strncmp(buf[i], "err ", 4) == 0)
            snprintf(out[i].why, sizeof out[i].why, "%s", buf[i] + 4);
        else if (!out[i].why[0])
            snprintf(out[i].why, sizeof out[i].why, "the probe ended without an answer");
    }
done:
    free(pid);
    free(pfd);
    free(buf);
    free(used);
}
