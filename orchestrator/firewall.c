#include "firewall.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlwriter.h>

#include "qubes.h"
#include "runtime.h"
#include "util.h"
#include "xmlfile.h"

/* A file of thousands of rules is some 100 KB: anything near this is not ours. */
#define QFW_MAX_SIZE (1 << 20)

void qfw_defaults(struct qfw *fw)
{
    memset(fw, 0, sizeof *fw);
    fw->allow = fw->dns = fw->icmp = true;
    fw->yum_proxy = false;
}

void qfw_free(struct qfw *fw)
{
    free(fw->rules);
    fw->rules = NULL;
    fw->n = 0;
}

int qfw_path(const struct qubes *q, const struct qvm *vm, char *out, size_t len,
             struct qerr *err)
{
    const char *file = qvm_get_attr(vm, "firewall_conf");
    if (!file || !*file)
        file = "firewall.xml";
    if (strchr(file, '/') || strcmp(file, "..") == 0 || strcmp(file, ".") == 0)
        return qerr_set(err, "firewall_conf=\"%s\" of '%s': a file name is expected", file,
                        vm->name);
    char dir[PATH_MAX];
    if (vm->cls == QVM_DISP) {
        if (qrt_vm_path(&q->cfg, vm->name, NULL, dir, sizeof dir, err) < 0)
            return -1;
    } else if (qubes_config_vm_dir(&q->cfg, qvm_class_subdir(vm->cls), vm->name, dir, sizeof dir,
                                 err) < 0)
        return -1;
    if ((size_t)snprintf(out, len, "%s/%s", dir, file) >= len)
        return qerr_set(err, "the firewall file of '%s' has too long a path", vm->name);
    return 0;
}

static bool valid_host(const char *a)
{
    struct in_addr in;
    if (inet_pton(AF_INET, a, &in) == 1)
        return true;
    /* A host name: letters, digits, dots and dashes. */
    size_t n = strlen(a);
    if (n == 0 || n > 253 || a[0] == '-' || a[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)a[i]) && a[i] != '.' && a[i] != '-')
            return false;
    return true;
}

static int parse_port(const char *text, int *out)
{
    long v;
    if (qparse_int(text, 1, 65535, &v) < 0)
        return -1;
    *out = (int)v;
    return 0;
}

/* Checks a rule as read or given; the message names the problem. */
static int check_rule(const struct qfw_rule *r, struct qerr *err)
{
    if (!valid_host(r->address))
        return qerr_set(err, "address \"%s\": not an IPv4 address or host name", r->address);
    if (r->netmask < 0 || r->netmask > 32)
        return qerr_set(err, "netmask %d: not in 0..32", r->netmask);
    if (strcmp(r->proto, "tcp") != 0 && strcmp(r->proto, "udp") != 0 &&
        strcmp(r->proto, "any") != 0)
        return qerr_set(err, "protocol \"%s\": not tcp, udp or any", r->proto);
    if (strcmp(r->proto, "any") == 0 && (r->port || r->toport))
        return qerr_set(err, "ports need the protocol tcp or udp");
    if (r->toport && r->toport < r->port)
        return qerr_set(err, "port range %d-%d ends before it begins", r->port, r->toport);
    return 0;
}

int qfw_add(struct qfw *fw, const struct qfw_rule *r, struct qerr *err)
{
    struct qfw_rule *n = realloc(fw->rules, (fw->n + 1) * sizeof *n);
    if (!n)
        return qerr_errno(err, ENOMEM, "firewall rules");
    fw->rules = n;
    fw->rules[fw->n++] = *r;
    return 0;
}

static int allow_attr(xmlNode *root, const char *name, bool dflt, bool *out, struct qerr *err)
{
    xmlChar *v = xmlGetProp(root, (const xmlChar *)name);
    int rc = 0;
    *out = dflt;
    if (v && strcmp((const char *)v, "allow") == 0)
        *out = true;
    else if (v && strcmp((const char *)v, "deny") == 0)
        *out = false;
    else if (v)
        rc = qerr_set(err, "%s=\"%s\": not allow or deny", name, (const char *)v);
    xmlFree(v);
    return rc;
}

static int int_attr(xmlNode *n, const char *name, long min, long max, long dflt, long *out,
                    struct qerr *err)
{
    xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
    *out = dflt;
    int rc = 0;
    if (v && qparse_int((const char *)v, min, max, out) < 0)
        rc = qerr_set(err, "%s=\"%s\": not a number in %ld..%ld", name, (const char *)v, min, max);
    xmlFree(v);
    return rc;
}

static int read_rule(xmlNode *e, struct qfw_rule *r, struct qerr *err)
{
    memset(r, 0, sizeof *r);
    xmlChar *addr = xmlGetProp(e, (const xmlChar *)"address");
    xmlChar *proto = xmlGetProp(e, (const xmlChar *)"proto");
    int rc = 0;
    long mask, port, toport, expire;
    if (!addr)
        rc = qerr_set(err, "a rule without an address");
    else if (strlen((const char *)addr) >= sizeof r->address)
        rc = qerr_set(err, "address too long");
    if (rc == 0) {
        snprintf(r->address, sizeof r->address, "%s", (const char *)addr);
        if (int_attr(e, "netmask", 0, 32, 32, &mask, err) < 0 ||
            int_attr(e, "port", 0, 65535, 0, &port, err) < 0 ||
            int_attr(e, "toport", 0, 65535, 0, &toport, err) < 0 ||
            int_attr(e, "expire", 0, 1L << 40, 0, &expire, err) < 0)
            rc = -1;
    }
    if (rc == 0) {
        r->netmask = (int)mask;
        r->port = (int)port;
        r->toport = (int)toport;
        r->expire = expire;
        /* Older files have no protocol: tcp with a port, else any. */
        snprintf(r->proto, sizeof r->proto, "%s",
                 proto ? (const char *)proto : r->port ? "tcp" : "any");
        if (proto && strlen((const char *)proto) >= sizeof r->proto)
            rc = qerr_set(err, "protocol \"%s\": not tcp, udp or any", (const char *)proto);
        else
            rc = check_rule(r, err);
    }
    xmlFree(addr);
    xmlFree(proto);
    return rc;
}

int qfw_load(const char *path, struct qfw *fw, struct qerr *err)
{
    qfw_defaults(fw);
    xmlDocPtr doc;
    if (qxml_read_file(path, QFW_MAX_SIZE, "QubesFirewallRules", &doc, err) < 0)
        return -1;
    if (!doc)
        return 0;       /* no file: the defaults */
    xmlNode *root = xmlDocGetRootElement(doc);
    int rc = 0;
    if (allow_attr(root, "policy", true, &fw->allow, err) < 0 ||
        allow_attr(root, "dns", true, &fw->dns, err) < 0 ||
        allow_attr(root, "icmp", true, &fw->icmp, err) < 0 ||
        allow_attr(root, "yumProxy", false, &fw->yum_proxy, err) < 0)
        rc = qerr_prefix(err, "%s:%d", path, (int)root->line);
    long long now = (long long)time(NULL);
    for (xmlNode *e = root->children; rc == 0 && e; e = e->next) {
        if (e->type != XML_ELEMENT_NODE)
            continue;
        struct qfw_rule r;
        if (strcmp((const char *)e->name, "rule") != 0)
            rc = qerr_set(err, "%s:%d: unknown element <%s>", path, (int)e->line,
                          (const char *)e->name);
        else if (read_rule(e, &r, err) < 0)
            rc = qerr_prefix(err, "%s:%d: rule", path, (int)e->line);
        else if (!r.expire || r.expire > now)
            rc = qfw_add(fw, &r, err);
    }
    xmlFreeDoc(doc);
    if (rc < 0)
        qfw_free(fw);
    return rc;
}

#define W(call)                                                                               \
    do {                                                                                      \
        if ((call) < 0)                                                                       \
            return -1;                                                                        \
    } while (0)
#define ATTR(w, k, v) xmlTextWriterWriteAttribute(w, (const xmlChar *)(k), (const xmlChar *)(v))

static int body(xmlTextWriterPtr w, const void *ctx)
{
    const struct qfw *fw = ctx;
    char num[32];
    W(xmlTextWriterStartElement(w, (const xmlChar *)"QubesFirewallRules"));
    W(ATTR(w, "policy", fw->allow ? "allow" : "deny"));
    W(ATTR(w, "dns", fw->dns ? "allow" : "deny"));
    W(ATTR(w, "icmp", fw->icmp ? "allow" : "deny"));
    W(ATTR(w, "yumProxy", fw->yum_proxy ? "allow" : "deny"));
    for (size_t i = 0; i < fw->n; i++) {
        const struct qfw_rule *r = &fw->rules[i];
        W(xmlTextWriterStartElement(w, (const xmlChar *)"rule"));
        W(ATTR(w, "address", r->address));
        W(ATTR(w, "proto", r->proto));
        if (r->netmask != 32) {
            snprintf(num, sizeof num, "%d", r->netmask);
            W(ATTR(w, "netmask", num));
        }
        if (r->port > 0) {
            snprintf(num, sizeof num, "%d", r->port);
            W(ATTR(w, "port", num));
        }
        if (r->toport > 0) {
            snprintf(num, sizeof num, "%d", r->toport);
            W(ATTR(w, "toport", num));
        }
        if (r->expire > 0) {
            snprintf(num, sizeof num, "%lld", r->expire);
            W(ATTR(w, "expire", num));
        }
        W(xmlTextWriterEndElement(w));
    }
    return xmlTextWriterEndElement(w);
}

int qfw_write(const struct qubes *q, const char *path, const struct qfw *fw, struct qerr *err)
{
    /* The caller's critical section, not ours: see firewall.h. */
    if (q->db.lock != QDB_WRITE)
        return qerr_set(err, "%s: firewall rules are written under the qubes.xml write lock, "
                        "and it is not held", path);
    for (size_t i = 0; i < fw->n; i++)
        if (check_rule(&fw->rules[i], err) < 0)
            return qerr_prefix(err, "%s: rule %zu", path, i + 1);
    /* A DispVM's rules live in the run directory: no fsync there. */
    size_t rl = strlen(q->cfg.run_dir);
    bool runtime = strncmp(path, q->cfg.run_dir, rl) == 0 && path[rl] == '/';
    char next[24];
    snprintf(next, sizeof next, "%lld", qfw_next_expiry(fw, (long long)time(NULL)));
    return qxml_write_file(path, 0640, !runtime, body, fw, QFW_NEXT_TAG, next, err);
}

int qfw_parse_rule(int argc, char *const argv[], struct qfw_rule *r, struct qerr *err)
{
    memset(r, 0, sizeof *r);
    r->netmask = 32;
    snprintf(r->proto, sizeof r->proto, "any");
    if (argc < 1 || argc > 3)
        return qerr_set(err, "a rule is ADDRESS[/NETMASK] [any | tcp|udp PORT[-TOPORT]]");
    const char *slash = strchr(argv[0], '/');
    size_t alen = slash ? (size_t)(slash - argv[0]) : strlen(argv[0]);
    if (alen >= sizeof r->address)
        return qerr_set(err, "address too long");
    memcpy(r->address, argv[0], alen);
    r->address[alen] = '\0';
    long mask = 32;
    if (slash && qparse_int(slash + 1, 0, 32, &mask) < 0)
        return qerr_set(err, "netmask \"%s\": not a number in 0..32", slash + 1);
    r->netmask = (int)mask;
    struct in_addr in;
    if (valid_host(r->address) && inet_pton(AF_INET, r->address, &in) != 1)
        return qerr_set(err, "address \"%s\": a host name; a rule takes an IPv4 address (names "
                        "are not resolved: the rules would follow DNS answers)", r->address);
    if (argc >= 2) {
        if (strcmp(argv[1], "tcp") != 0 && strcmp(argv[1], "udp") != 0 &&
            strcmp(argv[1], "any") != 0)
            return qerr_set(err, "protocol \"%s\": not tcp, udp or any", argv[1]);
        snprintf(r->proto, sizeof r->proto, "%s", argv[1]);
    }
    if (argc == 3) {
        char ports[32];
        snprintf(ports, sizeof ports, "%s", argv[2]);
        char *dash = strchr(ports, '-');
        if (dash)
            *dash = '\0';
        if (parse_port(ports, &r->port) < 0 || (dash && parse_port(dash + 1, &r->toport) < 0))
            return qerr_set(err, "port \"%s\": not PORT or PORT-PORT in 1..65535", argv[2]);
    } else if (argc == 2 && strcmp(r->proto, "any") != 0) {
        return qerr_set(err, "protocol %s needs a port", r->proto);
    }
    return check_rule(r, err);
}

void qfw_rule_text(const struct qfw_rule *r, char *out, size_t len)
{
    char mask[8] = "", ports[32] = "", exp[48] = "";
    if (r->netmask != 32)
        snprintf(mask, sizeof mask, "/%d", r->netmask);
    if (r->port && r->toport)
        snprintf(ports, sizeof ports, " %d-%d", r->port, r->toport);
    else if (r->port)
        snprintf(ports, sizeof ports, " %d", r->port);
    if (r->expire)
        snprintf(exp, sizeof exp, " (expires at %lld)", r->expire);
    snprintf(out, len, "%s%s %s%s%s", r->address, mask, r->proto, ports, exp);
}

long long qfw_next_expiry(const struct qfw *fw, long long now)
{
    long long next = 0;
    for (size_t i = 0; i < fw->n; i++)
        if (fw->rules[i].expire > now && (!next || fw->rules[i].expire < next))
            next = fw->rules[i].expire;
    return next;
}
