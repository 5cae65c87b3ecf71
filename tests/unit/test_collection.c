/* The VM model through the C API: the original's qubes.xml loads as the file
 * says (checked against an independent libxml2 read of the same file), saves
 * stably and without losing an attribute; qid/netid allocation; the hash
 * indexes by qid and by name stay in step through add, rename and remove.
 *
 * The fixture directory comes from QUBES_TEST_FIXTURES, else
 * ../shared/fixtures next to the repository top. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "../../orchestrator/collection.h"
#include "../../orchestrator/pyliteral.h"
#include "../tap.h"

/* ---- an independent reading of a qubes.xml, with libxml2 alone ---- */

struct xattr {
    char *name, *value;
};

struct xelem {
    char *element;
    struct xattr *attrs;
    size_t n;
};

struct xdoc {
    struct xelem root;
    struct xelem *vms;
    size_t n;
};

static void xelem_read(xmlDocPtr doc, xmlNode *node, struct xelem *e)
{
    e->element = strdup((const char *)node->name);
    e->n = 0;
    for (xmlAttr *a = node->properties; a; a = a->next)
        e->n++;
    e->attrs = calloc(e->n ? e->n : 1, sizeof *e->attrs);
    size_t i = 0;
    for (xmlAttr *a = node->properties; a; a = a->next, i++) {
        xmlChar *v = xmlNodeListGetString(doc, a->children, 1);
        e->attrs[i].name = strdup((const char *)a->name);
        e->attrs[i].value = strdup(v ? (const char *)v : "");
        xmlFree(v);
    }
}

static int xdoc_read(const char *buf, size_t len, struct xdoc *x)
{
    memset(x, 0, sizeof *x);
    xmlDocPtr doc = xmlReadMemory(buf, (int)len, "independent.xml", NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc)
        return -1;
    xmlNode *root = xmlDocGetRootElement(doc);
    xelem_read(doc, root, &x->root);
    for (xmlNode *n = root->children; n; n = n->next)
        if (n->type == XML_ELEMENT_NODE)
            x->n++;
    x->vms = calloc(x->n ? x->n : 1, sizeof *x->vms);
    size_t i = 0;
    for (xmlNode *n = root->children; n; n = n->next)
        if (n->type == XML_ELEMENT_NODE)
            xelem_read(doc, n, &x->vms[i++]);
    xmlFreeDoc(doc);
    return 0;
}

static void xelem_free(struct xelem *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->attrs[i].name);
        free(e->attrs[i].value);
    }
    free(e->attrs);
    free(e->element);
}

static void xdoc_free(struct xdoc *x)
{
    xelem_free(&x->root);
    for (size_t i = 0; i < x->n; i++)
        xelem_free(&x->vms[i]);
    free(x->vms);
}

static const char *xget(const struct xelem *e, const char *name)
{
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->attrs[i].name, name) == 0)
            return e->attrs[i].value;
    return NULL;
}

static const struct xelem *xvm_by_attr(const struct xdoc *x, const char *attr, const char *value)
{
    for (size_t i = 0; i < x->n; i++) {
        const char *v = xget(&x->vms[i], attr);
        if (v && strcmp(v, value) == 0)
            return &x->vms[i];
    }
    return NULL;
}

/* The qid a reference attribute names, -1 for none/None or absent. */
static int xref(const struct xelem *e, const char *attr)
{
    const char *v = xget(e, attr);
    if (!v || strcasecmp(v, "none") == 0)
        return -1;
    return atoi(v);
}

/* ---- comparing values: services and pcidevs by meaning, the rest exactly ---- */

static int same_dict(const char *a, const char *b)
{
    struct pydict x, y;
    struct qerr err;
    if (pydict_parse(a, &x, &err) < 0)
        return 0;
    if (pydict_parse(b, &y, &err) < 0) {
        pydict_free(&x);
        return 0;
    }
    int same = x.n == y.n;
    for (size_t i = 0; same && i < x.n; i++) {
        const struct pyval *u = &x.items[i].val, *v = &y.items[i].val;
        same = strcmp(x.items[i].key, y.items[i].key) == 0 && u->type == v->type &&
               (u->type != PYV_BOOL || u->b == v->b) && (u->type != PYV_INT || u->i == v->i) &&
               (u->type != PYV_STR || strcmp(u->s, v->s) == 0);
    }
    pydict_free(&x);
    pydict_free(&y);
    return same;
}

static int same_list(const char *a, const char *b)
{
    struct pylist x, y;
    struct qerr err;
    if (pylist_parse(a, &x, &err) < 0)
        return 0;
    if (pylist_parse(b, &y, &err) < 0) {
        pylist_free(&x);
        return 0;
    }
    int same = x.n == y.n;
    for (size_t i = 0; same && i < x.n; i++)
        same = strcmp(x.items[i], y.items[i]) == 0;
    pylist_free(&x);
    pylist_free(&y);
    return same;
}

static int same_value(const char *attr, const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    if (strcmp(attr, "services") == 0)
        return same_dict(a, b);
    if (strcmp(attr, "pcidevs") == 0)
        return same_list(a, b);
    return strcmp(a, b) == 0;
}

/* Every attribute of `want` is in `got` with the same value, and `got` has
 * no other. Prints what differs. Returns 1 when equal. */
static int same_attrs(const struct xelem *want, const struct xelem *got, const char *who)
{
    int same = 1;
    for (size_t i = 0; i < want->n; i++) {
        const char *v = xget(got, want->attrs[i].name);
        if (!same_value(want->attrs[i].name, want->attrs[i].value, v)) {
            diag("%s: %s=\"%s\", want \"%s\"", who, want->attrs[i].name, v ? v : "(missing)",
                 want->attrs[i].value);
            same = 0;
        }
    }
    for (size_t i = 0; i < got->n; i++)
        if (!xget(want, got->attrs[i].name)) {
            diag("%s: extra attribute %s=\"%s\"", who, got->attrs[i].name, got->attrs[i].value);
            same = 0;
        }
    return same;
}

/* The attribute names of both in the same order. */
static int same_order(const struct xelem *want, const struct xelem *got)
{
    if (want->n != got->n)
        return 0;
    for (size_t i = 0; i < want->n; i++)
        if (strcmp(want->attrs[i].name, got->attrs[i].name) != 0)
            return 0;
    return 1;
}

/* ---- the model's own invariants ---- */

/* Both indexes hold the same VMs, each findable under its current qid and
 * name. Prints the first inconsistency. */
static int indexes_consistent(const struct qvm_collection *c)
{
    if (HASH_CNT(hh_qid, c->by_qid) != HASH_CNT(hh_name, c->by_name)) {
        diag("index sizes differ: %u by qid, %u by name", HASH_CNT(hh_qid, c->by_qid),
             HASH_CNT(hh_name, c->by_name));
        return 0;
    }
    for (struct qvm *vm = c->by_qid; vm; vm = vm->hh_qid.next) {
        if (qvm_collection_by_name(c, vm->name) != vm) {
            diag("qid %d ('%s') not found under its name", vm->qid, vm->name);
            return 0;
        }
        const char *attr = qvm_get_attr(vm, "name");
        if (!attr || strcmp(attr, vm->name) != 0) {
            diag("qid %d: name attribute '%s', typed name '%s'", vm->qid, attr ? attr : "-",
                 vm->name);
            return 0;
        }
    }
    for (struct qvm *vm = c->by_name; vm; vm = vm->hh_name.next)
        if (qvm_collection_by_qid(c, vm->qid) != vm) {
            diag("'%s' not found under its qid %d", vm->name, vm->qid);
            return 0;
        }
    return 1;
}

static struct qvm *make_vm(enum qvm_class cls, int qid, const char *name)
{
    struct qvm *vm = qvm_new(cls);
    struct qerr err;
    char q[16];
    snprintf(q, sizeof q, "%d", qid);
    if (!vm || qvm_set_attr(vm, "qid", q, &err) < 0 || qvm_set_attr(vm, "name", name, &err) < 0) {
        diag("make_vm %d %s: %s", qid, name, err.msg);
        qvm_free(vm);
        return NULL;
    }
    return vm;
}

static struct qvm *make_netvm(int qid, const char *name, int netid)
{
    struct qvm *vm = make_vm(QVM_NET, qid, name);
    struct qerr err;
    char n[16];
    snprintf(n, sizeof n, "%d", netid);
    if (vm && qvm_set_attr(vm, "netid", n, &err) < 0) {
        diag("netid %d: %s", netid, err.msg);
        qvm_free(vm);
        return NULL;
    }
    return vm;
}

/* ---- files ---- */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

static char *fixture_path(void)
{
    const char *dir = getenv("QUBES_TEST_FIXTURES");
    char *path = NULL;
    if (dir && *dir) {
        if (asprintf(&path, "%s/qubes-r2.xml", dir) < 0)
            return NULL;
        return path;
    }
    /* build/san/tests/test_collection -> the repository top, 3 levels up. */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        for (int up = 0; up < 4; up++) {
            char *slash = strrchr(exe, '/');
            if (slash)
                *slash = '\0';
        }
        if (asprintf(&path, "%s/../shared/fixtures/qubes-r2.xml", exe) < 0)
            return NULL;
        if (access(path, R_OK) == 0)
            return path;
        free(path);
    }
    return strdup("../shared/fixtures/qubes-r2.xml");
}

/* Inserts `what` right after the first occurrence of `after` in `text`. */
static char *insert_after(const char *text, const char *after, const char *what)
{
    const char *at = strstr(text, after);
    if (!at)
        return NULL;
    at += strlen(after);
    size_t head = (size_t)(at - text);
    char *out = malloc(strlen(text) + strlen(what) + 1);
    memcpy(out, text, head);
    strcpy(out + head, what);
    strcat(out, at);
    return out;
}

/* ---- the tests ---- */

static void test_fixture_model(const struct qvm_collection *c, const struct xdoc *x)
{
    ok(qvm_collection_count(c) == x->n + 1, "%zu VMs: the file's %zu and dom0",
       qvm_collection_count(c), x->n);

    struct qvm *dom0 = qvm_collection_by_qid(c, 0);
    ok(dom0 && dom0->cls == QVM_ADMIN && strcmp(dom0->name, "dom0") == 0 &&
       qvm_collection_by_name(c, "dom0") == dom0, "dom0 is synthesised: qid 0, AdminVM, named dom0");
    ok(!xvm_by_attr(x, "qid", "0"), "(the file itself has no dom0)");
    ok(dom0 && dom0->template_qid == -1 && dom0->netvm_qid == -1,
       "dom0 has neither template nor netvm");

    for (size_t i = 0; i < x->n; i++) {
        const struct xelem *e = &x->vms[i];
        const char *name = xget(e, "name");
        struct qvm *vm = name ? qvm_collection_by_name(c, name) : NULL;
        if (!ok(vm != NULL, "%s '%s' is in the collection", e->element, name ? name : "?"))
            continue;
        ok(vm->qid == atoi(xget(e, "qid")) && qvm_collection_by_qid(c, vm->qid) == vm,
           "%s: qid %d as in the file (%s)", name, vm->qid, xget(e, "qid"));
        ok(strcmp(qvm_class_element(vm->cls), e->element) == 0, "%s: class %s as in the file",
           name, qvm_class_label(vm->cls));

        /* template: the VM the file's template_qid names, by its name there. */
        int tq = xref(e, "template_qid");
        const char *want_tpl = "none", *got_tpl = "none";
        char buf[16];
        if (tq >= 0) {
            snprintf(buf, sizeof buf, "%d", tq);
            const struct xelem *t = xvm_by_attr(x, "qid", buf);
            want_tpl = t ? xget(t, "name") : "(dangling)";
        }
        if (vm->template_qid >= 0) {
            struct qvm *t = qvm_collection_by_qid(c, vm->template_qid);
            got_tpl = t ? t->name : "(dangling)";
        }
        ok(vm->template_qid == tq && strcmp(got_tpl, want_tpl) == 0, "%s: template %s (file: %s)",
           name, got_tpl, want_tpl);

        int nq = xref(e, "netvm_qid");
        const char *want_net = "none", *got_net = "none";
        if (nq >= 0) {
            snprintf(buf, sizeof buf, "%d", nq);
            const struct xelem *n = xvm_by_attr(x, "qid", buf);
            want_net = n ? xget(n, "name") : "(dangling)";
        }
        if (vm->netvm_qid >= 0) {
            struct qvm *n = qvm_collection_by_qid(c, vm->netvm_qid);
            got_net = n ? n->name : "(dangling)";
        }
        ok(vm->netvm_qid == nq && strcmp(got_net, want_net) == 0, "%s: netvm %s (file: %s)",
           name, got_net, want_net);

        const char *label = xget(e, "label");
        ok(label && vm->label && strcmp(vm->label->name, label) == 0, "%s: label %s", name,
           vm->label ? vm->label->name : "?");
        const char *netid = xget(e, "netid");
        if (netid)
            ok(vm->netid == atoi(netid), "%s: netid %d (file: %s)", name, vm->netid, netid);
        const char *dispid = xget(e, "dispid");
        if (dispid)
            ok(vm->dispid == atoi(dispid), "%s: dispid %d (file: %s)", name, vm->dispid, dispid);

        /* Every attribute, through the API, exactly as the file has it. */
        int same = vm->attrs.n == e->n;
        for (size_t k = 0; k < e->n; k++) {
            const char *v = qvm_get_attr(vm, e->attrs[k].name);
            if (!v || strcmp(v, e->attrs[k].value) != 0) {
                diag("%s: qvm_get_attr(%s) = %s, file: %s", name, e->attrs[k].name,
                     v ? v : "(none)", e->attrs[k].value);
                same = 0;
            }
        }
        ok(same, "%s: qvm_get_attr gives all %zu attributes of the file", name, e->n);
    }

    /* The root's references. */
    for (int g = 0; g < QG_COUNT; g++) {
        const char *v = xget(&x->root, qglobal_attr(g));
        int want = v && strcasecmp(v, "none") != 0 ? atoi(v) : -1;
        ok(c->globals[g] == want, "global %s = %d (file: %s)", qglobal_attr(g), c->globals[g],
           v ? v : "absent");
    }
    const char *k = qvm_collection_default_kernel(c);
    ok(k && strcmp(k, xget(&x->root, "default_kernel")) == 0, "default_kernel %s", k ? k : "-");
    ok(indexes_consistent(c), "qid and name indexes agree after loading");
}

/* A saved text, read independently, holds what the original did. */
static void test_saved_matches(const char *saved, size_t len, const struct xdoc *orig,
                               const char *what)
{
    struct xdoc s;
    if (!ok(xdoc_read(saved, len, &s) == 0, "%s: the saved text is well-formed XML", what))
        return;
    ok(strcmp(s.root.element, "QubesVmCollection") == 0 && same_attrs(&orig->root, &s.root, "root"),
       "%s: the root keeps all %zu attributes", what, orig->root.n);
    ok(same_order(&orig->root, &s.root), "%s: root attributes in document order", what);
    ok(s.n == orig->n + 1, "%s: %zu VM elements (the file's %zu and dom0)", what, s.n, orig->n);
    const struct xelem *d = xvm_by_attr(&s, "qid", "0");
    ok(d && strcmp(d->element, "QubesAdminVm") == 0 && strcmp(xget(d, "name"), "dom0") == 0,
       "%s: dom0 is saved as a QubesAdminVm", what);
    int all_same = 1, all_order = 1;
    for (size_t i = 0; i < orig->n; i++) {
        const struct xelem *e = &orig->vms[i];
        const struct xelem *g = xvm_by_attr(&s, "name", xget(e, "name"));
        if (!g) {
            diag("%s: VM '%s' missing from the saved text", what, xget(e, "name"));
            all_same = 0;
            continue;
        }
        if (strcmp(g->element, e->element) != 0) {
            diag("%s: '%s' saved as <%s>, was <%s>", what, xget(e, "name"), g->element,
                 e->element);
            all_same = 0;
        }
        if (!same_attrs(e, g, xget(e, "name")))
            all_same = 0;
        if (!same_order(e, g))
            all_order = 0;
    }
    ok(all_same, "%s: every attribute of every VM survives with the same value", what);
    ok(all_order, "%s: every VM keeps its attributes in document order", what);
    xdoc_free(&s);
}

static void test_unknown_attrs(const char *fixture)
{
    /* The first AppVm and the root get attributes nobody knows. */
    char *t1 = insert_after(fixture, "<QubesVmCollection", " foo_bar=\"x y\"");
    char *text = t1 ? insert_after(t1, "<QubesAppVm", " foo_bar=\"x y\" zz_odd=\"&lt;a&gt; &amp; &quot;q&quot; 'p'\"") : NULL;
    free(t1);
    if (!ok(text != NULL, "fixture with unknown attributes prepared"))
        return;
    struct qvm_collection *c = NULL, *c2 = NULL;
    struct qerr err;
    int r = qvm_collection_parse(text, strlen(text), "unknown.xml", &c, &err);
    ok(r == 0, "unknown attributes load: %s", r == 0 ? "yes" : err.msg);
    if (!c) {
        free(text);
        return;
    }
    struct qvm *vm = qvm_collection_by_name(c, "fedora-20-x64-dvm");
    const char *v = vm ? qvm_get_attr(vm, "foo_bar") : NULL;
    ok(v && strcmp(v, "x y") == 0, "the VM's foo_bar is \"x y\"");
    v = vm ? qvm_get_attr(vm, "zz_odd") : NULL;
    ok(v && strcmp(v, "<a> & \"q\" 'p'") == 0, "an unknown value with markup characters: %s",
       v ? v : "-");
    v = qattrs_get(&c->root_attrs, "foo_bar");
    ok(v && strcmp(v, "x y") == 0, "the root's foo_bar is \"x y\"");

    /* One more, set through the API on another VM. */
    struct qvm *bank = qvm_collection_by_name(c, "banking");
    ok(bank && qvm_set_attr(bank, "my_tag", "a\tb", &err) == 0, "qvm_set_attr of an unknown attribute");

    size_t len1, len2;
    char *s1 = qvm_collection_format(c, &len1, &err);
    ok(s1 && qvm_collection_parse(s1, len1, "saved.xml", &c2, &err) == 0,
       "saved with unknown attributes, loads again");
    if (c2) {
        struct qvm *vm2 = qvm_collection_by_name(c2, "fedora-20-x64-dvm");
        v = vm2 ? qvm_get_attr(vm2, "foo_bar") : NULL;
        ok(v && strcmp(v, "x y") == 0, "the VM's foo_bar survives the round trip");
        v = vm2 ? qvm_get_attr(vm2, "zz_odd") : NULL;
        ok(v && strcmp(v, "<a> & \"q\" 'p'") == 0, "zz_odd survives the round trip: %s", v ? v : "-");
        v = qattrs_get(&c2->root_attrs, "foo_bar");
        ok(v && strcmp(v, "x y") == 0, "the root's foo_bar survives the round trip");
        struct qvm *b2 = qvm_collection_by_name(c2, "banking");
        v = b2 ? qvm_get_attr(b2, "my_tag") : NULL;
        ok(v && strcmp(v, "a\tb") == 0, "an unknown attribute set through the API survives (tab kept)");
        char *s2 = qvm_collection_format(c2, &len2, &err);
        ok(s2 && len1 == len2 && memcmp(s1, s2, len1) == 0, "and saves byte-identically");
        free(s2);
        /* Independently: the saved text holds them too. */
        struct xdoc x;
        if (xdoc_read(s1, len1, &x) == 0) {
            const struct xelem *e = xvm_by_attr(&x, "name", "fedora-20-x64-dvm");
            ok(e && xget(e, "foo_bar") && strcmp(xget(e, "foo_bar"), "x y") == 0 &&
               xget(&x.root, "foo_bar") && strcmp(xget(&x.root, "foo_bar"), "x y") == 0,
               "a plain libxml2 read of the save finds foo_bar on the VM and the root");
            xdoc_free(&x);
        }
    }
    free(s1);
    qvm_collection_free(c);
    qvm_collection_free(c2);
    free(text);
}

static void test_alloc(const char *fixture, size_t flen)
{
    struct qvm_collection *c = NULL;
    struct qerr err;
    if (qvm_collection_parse(fixture, flen, "qubes-r2.xml", &c, &err) < 0)
        return;
    /* The fixture uses qids 0..15 and netids 1..4. */
    ok(qvm_collection_alloc_qid(c, &err) == 16, "fixture: the next qid is 16");
    ok(qvm_collection_alloc_netid(c, &err) == 5, "fixture: the next netid is 5");
    struct qvm *tw = qvm_collection_by_qid(c, 5), *ttc = qvm_collection_by_qid(c, 9);
    qvm_collection_remove(c, tw);
    qvm_collection_remove(c, ttc);
    ok(qvm_collection_alloc_qid(c, &err) == 5, "qids 5 and 9 removed: the lowest free is 5");
    qvm_free(tw);
    struct qvm *n5 = make_vm(QVM_APP, 5, "new-five");
    ok(n5 && qvm_collection_add(c, n5, &err) == 0, "a new VM takes qid 5");
    ok(qvm_collection_alloc_qid(c, &err) == 9, "then the lowest free is 9");
    qvm_free(ttc);
    struct qvm *proxy = qvm_collection_by_name(c, "test-testproxy");     /* netid 3 */
    ok(proxy && proxy->netid == 3, "test-testproxy has netid 3");
    qvm_collection_remove(c, proxy);
    qvm_free(proxy);
    ok(qvm_collection_alloc_netid(c, &err) == 3, "its netid removed: the lowest free netid is 3");
    struct qvm *fw = qvm_collection_by_name(c, "firewallvm");             /* netid 2 */
    qvm_collection_remove(c, fw);
    ok(c->globals[QG_DEFAULT_NETVM] == -1 && c->globals[QG_UPDATEVM] == -1,
       "removing firewallvm clears default_netvm and updatevm");
    const char *v = qattrs_get(&c->root_attrs, "default_netvm");
    ok(v && strcmp(v, "None") == 0, "and writes default_netvm as None");
    qvm_free(fw);
    ok(qvm_collection_alloc_netid(c, &err) == 2, "netids 2 and 3 free: the lowest is 2");
    ok(indexes_consistent(c), "indexes agree after the removals");
    qvm_collection_free(c);

    /* From scratch: gaps, and the limits. */
    c = qvm_collection_new();
    ok(qvm_collection_add_dom0(c, &err) == 0, "an empty collection with dom0");
    ok(qvm_collection_alloc_qid(c, &err) == 1, "only dom0: qid 1 is next");
    ok(qvm_collection_alloc_netid(c, &err) == 1, "no NetVM: netid 1 is next");
    int adds_ok = 1;
    for (int q = 1; q <= 10; q++) {
        if (q == 3 || q == 7)
            continue;
        char name[32];
        snprintf(name, sizeof name, "vm%d", q);
        struct qvm *vm = make_vm(QVM_APP, q, name);
        if (!vm || qvm_collection_add(c, vm, &err) < 0) {
            adds_ok = 0;
            qvm_free(vm);
        }
    }
    ok(adds_ok, "qids 1..10 but 3 and 7 added");
    ok(qvm_collection_alloc_qid(c, &err) == 3, "the lowest free qid is 3, not 11");
    struct qvm *vm3 = make_vm(QVM_APP, 3, "vm3");
    qvm_collection_add(c, vm3, &err);
    ok(qvm_collection_alloc_qid(c, &err) == 7, "3 taken: 7 next");
    /* NetVMs with netids 1, 2, 4, 6: an AppVM's netid does not count. */
    struct qvm *app_netid = qvm_collection_by_qid(c, 1);
    ok(qvm_set_attr(app_netid, "netid", "5", &err) == 0,
       "(an AppVM carrying a stray netid attribute)");
    int nids[] = { 1, 2, 4, 6 };
    adds_ok = 1;
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof name, "net%d", nids[i]);
        struct qvm *vm = make_netvm(20 + i, name, nids[i]);
        if (!vm || qvm_collection_add(c, vm, &err) < 0) {
            adds_ok = 0;
            qvm_free(vm);
        }
    }
    ok(adds_ok, "NetVMs with netids 1, 2, 4 and 6 added");
    ok(qvm_collection_alloc_netid(c, &err) == 3, "the lowest free netid is 3");
    struct qvm *n3 = make_netvm(30, "net3", 3);
    qvm_collection_add(c, n3, &err);
    ok(qvm_collection_alloc_netid(c, &err) == 5, "3 taken: 5 next (the AppVM's stray netid ignored)");
    ok(indexes_consistent(c), "indexes agree");
    qvm_collection_free(c);

    /* All 253 qids taken. */
    c = qvm_collection_new();
    qvm_collection_add_dom0(c, &err);
    adds_ok = 1;
    for (int q = 1; q <= QUBES_MAX_QID; q++) {
        char name[32];
        snprintf(name, sizeof name, "vm%d", q);
        struct qvm *vm = q <= QUBES_MAX_NETID ? make_netvm(q, name, q) : make_vm(QVM_APP, q, name);
        if (!vm || qvm_collection_add(c, vm, &err) < 0) {
            adds_ok = 0;
            qvm_free(vm);
        }
    }
    ok(adds_ok && qvm_collection_count(c) == 254, "253 NetVMs with qids and netids 1..253, plus dom0");
    memset(&err, 0, sizeof err);
    int r = qvm_collection_alloc_qid(c, &err);
    ok(r == -1 && strstr(err.msg, "no free qid"), "no qid left: -1 and an error: %s", err.msg);
    memset(&err, 0, sizeof err);
    r = qvm_collection_alloc_netid(c, &err);
    ok(r == -1 && strstr(err.msg, "no free netid"), "no netid left: -1 and an error: %s", err.msg);
    struct qvm *v254 = qvm_new(QVM_APP);
    ok(qvm_set_attr(v254, "qid", "254", &err) < 0, "qid 254 is refused: %s", err.msg);
    qvm_free(v254);
    struct qvm *mid = qvm_collection_by_qid(c, 200);
    qvm_collection_remove(c, mid);
    qvm_free(mid);
    ok(qvm_collection_alloc_qid(c, &err) == 200, "qid 200 freed: allocated again");
    ok(qvm_collection_alloc_netid(c, &err) == 200, "netid 200 freed: allocated again");
    struct qvm *last = qvm_collection_by_qid(c, 253);
    qvm_collection_remove(c, last);
    qvm_free(last);
    ok(qvm_collection_alloc_qid(c, &err) == 200, "still the lowest (200), with 253 free too");
    ok(indexes_consistent(c), "indexes agree with 252 VMs");
    size_t slen;
    char *saved = qvm_collection_format(c, &slen, &err);
    struct qvm_collection *c2 = NULL;
    r = saved ? qvm_collection_parse(saved, slen, "big.xml", &c2, &err) : -1;
    ok(r == 0 && qvm_collection_count(c2) == 252, "a collection of 252 VMs saves and loads: %s",
       r == 0 ? "yes" : err.msg);
    free(saved);
    qvm_collection_free(c2);
    qvm_collection_free(c);
}

static void test_indexes(const char *fixture, size_t flen)
{
    struct qvm_collection *c = NULL;
    struct qerr err;
    if (qvm_collection_parse(fixture, flen, "qubes-r2.xml", &c, &err) < 0)
        return;
    size_t count = qvm_collection_count(c);

    /* add */
    struct qvm *nv = make_vm(QVM_APP, 16, "work2");
    ok(nv && qvm_collection_add(c, nv, &err) == 0, "add qid 16 'work2'");
    ok(qvm_collection_by_qid(c, 16) == nv && qvm_collection_by_name(c, "work2") == nv &&
       qvm_collection_count(c) == count + 1, "found by qid and by name, count + 1");
    struct qvm *dupq = make_vm(QVM_APP, 16, "other");
    memset(&err, 0, sizeof err);
    ok(qvm_collection_add(c, dupq, &err) < 0 && strstr(err.msg, "qid 16"),
       "a second qid 16 is refused: %s", err.msg);
    qvm_free(dupq);
    struct qvm *dupn = make_vm(QVM_APP, 17, "banking");
    memset(&err, 0, sizeof err);
    ok(qvm_collection_add(c, dupn, &err) < 0 && strstr(err.msg, "banking"),
       "a second 'banking' is refused: %s", err.msg);
    qvm_free(dupn);
    struct qvm *noname = qvm_new(QVM_APP);
    ok(qvm_collection_add(c, noname, &err) < 0, "a VM without qid and name is refused");
    qvm_free(noname);
    ok(qvm_collection_by_qid(c, 17) == NULL && qvm_collection_count(c) == count + 1 &&
       indexes_consistent(c), "refused adds change nothing");

    /* rename */
    struct qvm *bank = qvm_collection_by_name(c, "banking");
    ok(bank && qvm_collection_rename(c, bank, "bank2", &err) == 0, "rename banking -> bank2");
    ok(qvm_collection_by_name(c, "banking") == NULL && qvm_collection_by_name(c, "bank2") == bank &&
       qvm_collection_by_qid(c, 6) == bank && strcmp(bank->name, "bank2") == 0,
       "the old name is gone, the new one finds it, the qid still does");
    const char *v = qvm_get_attr(bank, "name");
    ok(v && strcmp(v, "bank2") == 0, "the name attribute follows");
    memset(&err, 0, sizeof err);
    ok(qvm_collection_rename(c, bank, "personal", &err) < 0 && strstr(err.msg, "personal"),
       "rename to a taken name is refused: %s", err.msg);
    ok(qvm_collection_by_name(c, "bank2") == bank &&
       qvm_collection_by_name(c, "personal") == qvm_collection_by_qid(c, 7) && indexes_consistent(c),
       "after a refused rename both VMs are where they were");
    memset(&err, 0, sizeof err);
    ok(qvm_collection_rename(c, bank, "9lives", &err) < 0, "rename to an invalid name is refused: %s",
       err.msg);
    ok(qvm_collection_by_name(c, "bank2") == bank && qvm_collection_by_name(c, "9lives") == NULL &&
       indexes_consistent(c), "after an invalid rename the VM keeps its name in both indexes");
    memset(&err, 0, sizeof err);
    ok(qvm_collection_rename(c, bank, "dom0", &err) < 0, "rename to dom0 is refused: %s", err.msg);
    ok(qvm_collection_by_name(c, "dom0") == qvm_collection_by_qid(c, 0) && indexes_consistent(c),
       "dom0 is still dom0");
    ok(qvm_collection_rename(c, bank, "bank2", &err) == 0 && qvm_collection_by_name(c, "bank2") == bank,
       "rename to its own name is a no-op");
    struct qvm *d0 = qvm_collection_by_qid(c, 0);
    ok(qvm_collection_rename(c, d0, "notdom0", &err) < 0 && qvm_collection_by_name(c, "dom0") == d0,
       "dom0 cannot be renamed: %s", err.msg);
    /* a chain of renames through names just freed */
    struct qvm *pers = qvm_collection_by_name(c, "personal");
    ok(qvm_collection_rename(c, pers, "tmpname", &err) == 0 &&
       qvm_collection_rename(c, bank, "personal", &err) == 0 &&
       qvm_collection_rename(c, pers, "banking", &err) == 0,
       "swap two names through a third");
    ok(qvm_collection_by_name(c, "personal") == bank && qvm_collection_by_name(c, "banking") == pers &&
       qvm_collection_by_name(c, "tmpname") == NULL && indexes_consistent(c),
       "after the swap each name finds the other VM");

    /* remove */
    struct qvm *tw = qvm_collection_by_name(c, "test-work");
    qvm_collection_remove(c, tw);
    ok(qvm_collection_by_name(c, "test-work") == NULL && qvm_collection_by_qid(c, 5) == NULL &&
       qvm_collection_count(c) == count && indexes_consistent(c), "remove: gone from both indexes");
    ok(qvm_collection_add(c, tw, &err) == 0 && qvm_collection_by_qid(c, 5) == tw &&
       qvm_collection_by_name(c, "test-work") == tw, "and it can be added back");
    ok(qvm_collection_rename(c, tw, "work-again", &err) == 0 && indexes_consistent(c),
       "then renamed");

    /* The saved text shows it all, and is stable. */
    size_t l1, l2;
    char *s1 = qvm_collection_format(c, &l1, &err);
    struct qvm_collection *c2 = NULL;
    int r = s1 ? qvm_collection_parse(s1, l1, "renamed.xml", &c2, &err) : -1;
    ok(r == 0, "the changed collection saves and loads: %s", r == 0 ? "yes" : err.msg);
    if (c2) {
        ok(qvm_collection_by_name(c2, "personal") && qvm_collection_by_name(c2, "personal")->qid == 6 &&
           qvm_collection_by_name(c2, "banking")->qid == 7 &&
           qvm_collection_by_name(c2, "work2")->qid == 16 &&
           qvm_collection_by_name(c2, "work-again")->qid == 5 &&
           !qvm_collection_by_name(c2, "test-work") && !qvm_collection_by_name(c2, "bank2"),
           "the reloaded names and qids are the changed ones");
        char *s2 = qvm_collection_format(c2, &l2, &err);
        ok(s2 && l1 == l2 && memcmp(s1, s2, l1) == 0, "and save byte-identically");
        ok(indexes_consistent(c2), "indexes agree after reloading");
        free(s2);
    }
    free(s1);
    qvm_collection_free(c2);

    /* Many operations in a row. */
    int fine = 1;
    for (int q = 17; q <= 253 && fine; q++) {
        char name[32];
        snprintf(name, sizeof name, "s%d", q);
        struct qvm *vm = make_vm(QVM_APP, q, name);
        if (!vm || qvm_collection_add(c, vm, &err) < 0) {
            qvm_free(vm);
            fine = 0;
        }
    }
    for (int q = 17; q <= 253 && fine; q += 2) {
        char name[32];
        snprintf(name, sizeof name, "r%d-%d", q, q * 7);
        if (qvm_collection_rename(c, qvm_collection_by_qid(c, q), name, &err) < 0)
            fine = 0;
    }
    for (int q = 18; q <= 253 && fine; q += 3) {
        struct qvm *vm = qvm_collection_by_qid(c, q);
        qvm_collection_remove(c, vm);
        qvm_free(vm);
    }
    ok(fine && indexes_consistent(c), "237 adds, 119 renames, 79 removals: indexes agree");
    ok(qvm_collection_alloc_qid(c, &err) == 18, "and the lowest free qid is 18");
    qvm_collection_free(c);
}

/* The qid and name of a VM in a collection are index keys: changing them
 * through qvm_set_attr would leave the index pointing at freed text. */
static void test_keys_guarded(const char *fixture, size_t flen)
{
    struct qvm_collection *c;
    struct qerr err;
    if (qvm_collection_parse(fixture, flen, "qubes-r2.xml", &c, &err) < 0)
        return;
    struct qvm *vm = qvm_collection_by_name(c, "banking");
    ok(vm && qvm_set_attr(vm, "name", "bank2", &err) < 0 && strstr(err.msg, "does not change"),
       "qvm_set_attr refuses a new name for an indexed VM: %s", err.msg);
    ok(vm && qvm_set_attr(vm, "qid", "77", &err) < 0, "and a new qid");
    ok(qvm_collection_by_name(c, "banking") == vm, "the name index still finds it");
    ok(vm && qvm_collection_rename(c, vm, "bank2", &err) == 0 &&
       qvm_collection_by_name(c, "bank2") == vm && !qvm_collection_by_name(c, "banking"),
       "qvm_collection_rename changes it with the index");
    qvm_collection_remove(c, vm);
    ok(qvm_set_attr(vm, "name", "free-again", &err) == 0, "once removed, the VM is free to change");
    qvm_free(vm);
    qvm_collection_free(c);
}

int main(void)
{
    char *path = fixture_path();
    size_t flen = 0;
    char *fixture = path ? read_file(path, &flen) : NULL;
    if (!ok(fixture != NULL, "fixture read: %s", path ? path : "(no path)")) {
        diag("set QUBES_TEST_FIXTURES to the directory holding qubes-r2.xml");
        free(path);
        return done_testing();
    }
    xmlInitParser();

    struct xdoc x;
    int r = xdoc_read(fixture, flen, &x);
    ok(r == 0 && x.n > 0, "independent read of the fixture: %zu VM elements", x.n);

    struct qvm_collection *c = NULL, *c2 = NULL;
    struct qerr err;
    r = qvm_collection_parse(fixture, flen, "qubes-r2.xml", &c, &err);
    if (!ok(r == 0, "the original's qubes.xml loads: %s", r == 0 ? "yes" : err.msg)) {
        free(fixture);
        free(path);
        return done_testing();
    }
    ok(qvm_collection_validate(c, &err) == 0, "and validates again");
    test_fixture_model(c, &x);

    size_t l1 = 0, l2 = 0;
    char *s1 = qvm_collection_format(c, &l1, &err);
    ok(s1 != NULL && strlen(s1) == l1, "format: %zu bytes", l1);
    r = s1 ? qvm_collection_parse(s1, l1, "saved.xml", &c2, &err) : -1;
    ok(r == 0, "the saved text loads: %s", r == 0 ? "yes" : err.msg);
    char *s2 = c2 ? qvm_collection_format(c2, &l2, &err) : NULL;
    ok(s1 && s2 && l1 == l2 && memcmp(s1, s2, l1) == 0, "format -> parse -> format is byte-identical");
    if (s1)
        test_saved_matches(s1, l1, &x, "first save");
    if (c2) {
        test_fixture_model(c2, &x);
        ok(qvm_collection_count(c2) == qvm_collection_count(c), "the reload has as many VMs");
    }
    free(s1);
    free(s2);
    qvm_collection_free(c);
    qvm_collection_free(c2);

    test_unknown_attrs(fixture);
    test_alloc(fixture, flen);
    test_indexes(fixture, flen);
    test_keys_guarded(fixture, flen);

    xdoc_free(&x);
    free(fixture);
    free(path);
    xmlCleanupParser();
    return done_testing();
}
