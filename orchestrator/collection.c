#include "collection.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlwriter.h>

#include "../templates/templates.h"

static const char *const global_attrs[QG_COUNT] = {
    [QG_DEFAULT_TEMPLATE] = "default_template",
    [QG_DEFAULT_NETVM] = "default_netvm",
    [QG_DEFAULT_FW_NETVM] = "default_fw_netvm",
    [QG_UPDATEVM] = "updatevm",
    [QG_CLOCKVM] = "clockvm",
};

const char *qglobal_attr(enum qglobal g)
{
    return global_attrs[g];
}

int qglobal_from_attr(const char *attr)
{
    for (int g = 0; g < QG_COUNT; g++)
        if (strcmp(global_attrs[g], attr) == 0)
            return g;
    return -1;
}

struct qvm_collection *qvm_collection_new(void)
{
    struct qvm_collection *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    for (int g = 0; g < QG_COUNT; g++)
        c->globals[g] = -1;
    return c;
}

void qvm_collection_free(struct qvm_collection *c)
{
    if (!c)
        return;
    struct qvm *vm, *tmp;
    HASH_ITER(hh_qid, c->by_qid, vm, tmp) {
        HASH_DELETE(hh_qid, c->by_qid, vm);
        HASH_DELETE(hh_name, c->by_name, vm);
        qvm_free(vm);
    }
    qattrs_free(&c->root_attrs);
    free(c);
}

struct qvm *qvm_collection_by_qid(const struct qvm_collection *c, int qid)
{
    struct qvm *vm = NULL;
    HASH_FIND(hh_qid, c->by_qid, &qid, sizeof qid, vm);
    return vm;
}

struct qvm *qvm_collection_by_name(const struct qvm_collection *c, const char *name)
{
    struct qvm *vm = NULL;
    HASH_FIND(hh_name, c->by_name, name, strlen(name), vm);
    return vm;
}

size_t qvm_collection_count(const struct qvm_collection *c)
{
    return HASH_CNT(hh_qid, c->by_qid);
}

static int cmp_qid(const void *a, const void *b)
{
    const struct qvm *x = *(struct qvm *const *)a, *y = *(struct qvm *const *)b;
    return (x->qid > y->qid) - (x->qid < y->qid);
}

struct qvm **qvm_collection_sorted(const struct qvm_collection *c, size_t *n)
{
    size_t count = qvm_collection_count(c), i = 0;
    struct qvm **arr = malloc((count ? count : 1) * sizeof *arr);
    if (!arr)
        return NULL;
    for (struct qvm *vm = c->by_qid; vm; vm = vm->hh_qid.next)
        arr[i++] = vm;
    qsort(arr, count, sizeof *arr, cmp_qid);
    *n = count;
    return arr;
}

int qvm_collection_add(struct qvm_collection *c, struct qvm *vm, struct qerr *err)
{
    struct qvm *other;
    if (!vm->name || vm->qid < 0)
        return qerr_set(err, "a VM record needs a qid and a name");
    if ((other = qvm_collection_by_qid(c, vm->qid)))
        return qerr_set(err, "qid %d is already used by '%s'", vm->qid, other->name);
    if ((other = qvm_collection_by_name(c, vm->name)))
        return qerr_set(err, "name '%s' is already used by the VM with qid %d", vm->name,
                        other->qid);
    HASH_ADD(hh_qid, c->by_qid, qid, sizeof vm->qid, vm);
    HASH_ADD_KEYPTR(hh_name, c->by_name, vm->name, strlen(vm->name), vm);
    vm->indexed = true;
    return 0;
}

void qvm_collection_remove(struct qvm_collection *c, struct qvm *vm)
{
    HASH_DELETE(hh_qid, c->by_qid, vm);
    HASH_DELETE(hh_name, c->by_name, vm);
    vm->indexed = false;
    for (int g = 0; g < QG_COUNT; g++)
        if (c->globals[g] == vm->qid)
            qvm_collection_set_global(c, (enum qglobal)g, -1, NULL);
}

int qvm_collection_rename(struct qvm_collection *c, struct qvm *vm, const char *name,
                          struct qerr *err)
{
    struct qvm *other = qvm_collection_by_name(c, name);
    if (other && other != vm)
        return qerr_set(err, "name '%s' is already used by the VM with qid %d", name,
                        other->qid);
    HASH_DELETE(hh_name, c->by_name, vm);
    vm->indexed = false;
    int r = qvm_set_attr(vm, "name", name, err);
    vm->indexed = true;
    HASH_ADD_KEYPTR(hh_name, c->by_name, vm->name, strlen(vm->name), vm);
    return r;
}

int qvm_collection_set_global(struct qvm_collection *c, enum qglobal g, int qid,
                              struct qerr *err)
{
    char buf[16];
    if (qid < 0)
        snprintf(buf, sizeof buf, "None");
    else
        snprintf(buf, sizeof buf, "%d", qid);
    if (qattrs_set(&c->root_attrs, global_attrs[g], buf) < 0)
        return qerr_errno(err, ENOMEM, "setting %s", global_attrs[g]);
    c->globals[g] = qid;
    return 0;
}

const char *qvm_collection_default_kernel(const struct qvm_collection *c)
{
    const char *k = qattrs_get(&c->root_attrs, "default_kernel");
    return k && strcmp(k, "None") != 0 ? k : NULL;
}

int qvm_collection_set_default_kernel(struct qvm_collection *c, const char *kernel,
                                      struct qerr *err)
{
    if (qattrs_set(&c->root_attrs, "default_kernel", kernel ? kernel : "None") < 0)
        return qerr_errno(err, ENOMEM, "setting default_kernel");
    return 0;
}

int qvm_collection_add_dom0(struct qvm_collection *c, struct qerr *err)
{
    if (qvm_collection_by_qid(c, 0))
        return 0;
    struct qvm *vm = qvm_new(QVM_ADMIN);
    if (!vm)
        return qerr_errno(err, ENOMEM, "creating dom0");
    if (qvm_set_attr(vm, "qid", "0", err) < 0 || qvm_set_attr(vm, "name", "dom0", err) < 0 ||
        qvm_set_attr(vm, "label", "black", err) < 0 ||
        qvm_collection_add(c, vm, err) < 0) {
        qvm_free(vm);
        return -1;
    }
    return 0;
}

int qvm_collection_alloc_qid(const struct qvm_collection *c, struct qerr *err)
{
    for (int qid = 1; qid <= QUBES_MAX_QID; qid++)
        if (!qvm_collection_by_qid(c, qid))
            return qid;
    return qerr_set(err, "no free qid: all %d are in use", QUBES_MAX_QID);
}

int qvm_collection_alloc_netid(const struct qvm_collection *c, struct qerr *err)
{
    unsigned char used[QUBES_MAX_NETID + 1] = { 0 };
    for (struct qvm *vm = c->by_qid; vm; vm = vm->hh_qid.next)
        if (qvm_class_is_netvm(vm->cls) && vm->netid > 0)
            used[vm->netid] = 1;
    for (int id = 1; id <= QUBES_MAX_NETID; id++)
        if (!used[id])
            return id;
    return qerr_set(err, "no free netid: all %d are in use", QUBES_MAX_NETID);
}

struct qvm **qvm_collection_children(const struct qvm_collection *c, const struct qvm *tpl,
                                     size_t *n)
{
    size_t count = 0, i = 0;
    for (struct qvm *vm = c->by_qid; vm; vm = vm->hh_qid.next)
        if (vm->template_qid == tpl->qid && vm != tpl)
            count++;
    struct qvm **arr = malloc((count ? count : 1) * sizeof *arr);
    if (!arr)
        return NULL;
    for (struct qvm *vm = c->by_qid; vm; vm = vm->hh_qid.next)
        if (vm->template_qid == tpl->qid && vm != tpl)
            arr[i++] = vm;
    qsort(arr, count, sizeof *arr, cmp_qid);
    *n = count;
    return arr;
}

/* ---- validation of the whole collection ---- */

static int vm_where(const struct qvm *vm, const char *origin, char *buf, size_t len)
{
    if (vm->line > 0)
        return snprintf(buf, len, "%s:%d: <%s name='%s'>", origin, vm->line,
                        qvm_class_element(vm->cls), vm->name);
    return snprintf(buf, len, "%s '%s'", qvm_class_label(vm->cls), vm->name);
}

static int check_vm_refs(const struct qvm_collection *c, const struct qvm *vm,
                         const char *origin, struct qerr *err)
{
    char where[512];
    vm_where(vm, origin, where, sizeof where);

    /* A VM named so would take the name (and break the restore) of the
     * DispVM that draws its number. */
    if (vm->cls != QVM_DISP && qvm_is_dispvm_name(vm->name))
        return qerr_set(err, "%s: name=\"%s\": names disp<N> are kept for DispVMs", where,
                        vm->name);
    if (vm->template_qid >= 0) {
        struct qvm *tpl = qvm_collection_by_qid(c, vm->template_qid);
        if (!tpl)
            return qerr_set(err, "%s: template_qid=\"%d\": no VM has this qid", where,
                            vm->template_qid);
        if (template_check_compat(vm->cls, vm->name, tpl, err) < 0)
            return qerr_prefix(err, "%s: template_qid=\"%d\"", where, vm->template_qid);
    } else if (vm->cls == QVM_DISP) {
        return qerr_set(err, "%s: a DisposableVM needs a template_qid", where);
    }

    if (vm->netvm_qid >= 0) {
        struct qvm *net = qvm_collection_by_qid(c, vm->netvm_qid);
        if (!net)
            return qerr_set(err, "%s: netvm_qid=\"%d\": no VM has this qid", where,
                            vm->netvm_qid);
        if (!qvm_class_is_netvm(net->cls))
            return qerr_set(err, "%s: netvm_qid=\"%d\": '%s' is a %s, not a NetVM or ProxyVM",
                            where, vm->netvm_qid, net->name, qvm_class_label(net->cls));
        if (vm->cls == QVM_ADMIN)
            return qerr_set(err, "%s: dom0 has no netvm", where);
        /* Follow the chain: a loop would make every VM on it unstartable. */
        unsigned char seen[QUBES_MAX_QID + 1] = { 0 };
        seen[vm->qid] = 1;
        for (const struct qvm *n = net; n;
             n = n->netvm_qid >= 0 ? qvm_collection_by_qid(c, n->netvm_qid) : NULL) {
            if (seen[n->qid])
                return qerr_set(err, "%s: netvm_qid=\"%d\": the netvm chain loops back to '%s'",
                                where, vm->netvm_qid, n->name);
            seen[n->qid] = 1;
        }
    }

    if (vm->dispvm_netvm_qid >= 0) {
        struct qvm *net = qvm_collection_by_qid(c, vm->dispvm_netvm_qid);
        if (!net || !qvm_class_is_netvm(net->cls))
            return qerr_set(err, "%s: dispvm_netvm_qid=\"%d\": %s", where, vm->dispvm_netvm_qid,
                            net ? "not a NetVM or ProxyVM" : "no VM has this qid");
    }

    if (qvm_class_is_netvm(vm->cls) && vm->netid < 0)
        return qerr_set(err, "%s: a %s needs a netid", where, qvm_class_label(vm->cls));
    if (vm->cls == QVM_DISP && vm->dispid < 0)
        return qerr_set(err, "%s: a DisposableVM needs a dispid", where);
    return 0;
}

static int validate_with_origin(const struct qvm_collection *c, const char *origin, struct qerr *err)
{
    struct qvm *by_netid[QUBES_MAX_NETID + 1] = { 0 };
    size_t n;
    struct qvm **vms = qvm_collection_sorted(c, &n);
    if (!vms)
        return qerr_errno(err, ENOMEM, "validating");
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct qvm *vm = vms[i];
        rc = check_vm_refs(c, vm, origin, err);
        if (rc == 0 && qvm_class_is_netvm(vm->cls)) {
            if (by_netid[vm->netid]) {
                char where[512];
                vm_where(vm, origin, where, sizeof where);
                rc = qerr_set(err, "%s: netid=\"%d\": already used by '%s'", where, vm->netid,
                              by_netid[vm->netid]->name);
            }
            by_netid[vm->netid] = vm;
        }
    }
    free(vms);
    if (rc < 0)
        return rc;

    for (int g = 0; g < QG_COUNT; g++) {
        int qid = c->globals[g];
        if (qid < 0)
            continue;
        struct qvm *vm = qvm_collection_by_qid(c, qid);
        if (!vm)
            return qerr_set(err, "%s: <QubesVmCollection %s=\"%d\">: no VM has this qid",
                            origin, global_attrs[g], qid);
        bool ok = true;
        const char *need = "";
        if (vm->cls == QVM_ADMIN) {
            ok = false;
            need = "a VM other than dom0";
        } else if (g == QG_DEFAULT_TEMPLATE) {
            ok = qvm_class_is_template(vm->cls);
            need = "a template";
        } else if (g == QG_DEFAULT_NETVM || g == QG_DEFAULT_FW_NETVM) {
            ok = qvm_class_is_netvm(vm->cls);
            need = "a NetVM or ProxyVM";
        }
        if (!ok)
            return qerr_set(err, "%s: <QubesVmCollection %s=\"%d\">: '%s' is a %s, not %s",
                            origin, global_attrs[g], qid, vm->name, qvm_class_label(vm->cls),
                            need);
    }
    return 0;
}

int qvm_collection_validate(const struct qvm_collection *c, struct qerr *err)
{
    return validate_with_origin(c, "qubes.xml", err);
}

/* ---- parsing ---- */

static bool has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

/* Attributes and elements live in no namespace: a prefixed one would be
 * read under its bare name and could override another. */
static int check_namespace(const xmlNode *node, const xmlAttr *a, const char *origin,
                           struct qerr *err)
{
    if (node->ns)
        return qerr_set(err, "%s:%d: <%s:%s>: namespaced elements are not allowed", origin,
                        node->line, node->ns->prefix ? (const char *)node->ns->prefix : "",
                        (const char *)node->name);
    if (a && a->ns)
        return qerr_set(err, "%s:%d: <%s> attribute %s:%s: namespaced attributes are not allowed",
                        origin, node->line, (const char *)node->name,
                        a->ns->prefix ? (const char *)a->ns->prefix : "", (const char *)a->name);
    return 0;
}

static int parse_root(struct qvm_collection *c, xmlNode *root, const char *origin,
                      struct qerr *err)
{
    if (check_namespace(root, NULL, origin, err) < 0)
        return -1;
    for (xmlAttr *a = root->properties; a; a = a->next) {
        if (check_namespace(root, a, origin, err) < 0)
            return -1;
        const char *name = (const char *)a->name;
        xmlChar *value = xmlNodeListGetString(root->doc, a->children, 1);
        const char *v = value ? (const char *)value : "";
        int rc = 0;
        int g = qglobal_from_attr(name);
        if (g >= 0) {
            if (qparse_qidref(v, &c->globals[g]) < 0)
                rc = qerr_set(err, "%s:%d: <QubesVmCollection %s=\"%s\">: neither a qid nor None",
                              origin, root->line, name, v);
        } else if (strcmp(name, "default_kernel") == 0 &&
                   (strchr(v, '/') || v[0] == '.' || has_control(v))) {
            rc = qerr_set(err, "%s:%d: <QubesVmCollection default_kernel=\"%s\">: not a kernel version",
                          origin, root->line, v);
        }
        if (rc == 0 && qattrs_set(&c->root_attrs, name, v) < 0)
            rc = qerr_errno(err, ENOMEM, "loading %s", origin);
        xmlFree(value);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static bool is_blank(const xmlChar *s)
{
    for (; s && *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
            return false;
    return true;
}

static int parse_vm(struct qvm_collection *c, xmlNode *node, const char *origin,
                    struct qerr *err)
{
    const char *element = (const char *)node->name;
    int line = node->line;
    int cls = qvm_class_from_element(element);
    if (cls < 0)
        return qerr_set(err, "%s:%d: <%s>: unknown VM class", origin, line, element);
    for (xmlNode *ch = node->children; ch; ch = ch->next) {
        if (ch->type == XML_ELEMENT_NODE || (ch->type == XML_TEXT_NODE && !is_blank(ch->content)))
            return qerr_set(err, "%s:%d: <%s>: a VM element holds attributes only, no content",
                            origin, line, element);
    }

    xmlChar *xname = xmlGetProp(node, (const xmlChar *)"name");
    char where[256];
    if (xname && strlen((char *)xname) < 64)
        snprintf(where, sizeof where, "%s:%d: <%s name='%s'>", origin, line, element,
                 (char *)xname);
    else
        snprintf(where, sizeof where, "%s:%d: <%s>", origin, line, element);
    xmlFree(xname);

    struct qvm *vm = qvm_new((enum qvm_class)cls);
    if (!vm)
        return qerr_errno(err, ENOMEM, "loading %s", origin);
    vm->line = line;
    int rc = 0;
    size_t nattrs = 0;
    for (xmlAttr *a = node->properties; a && rc == 0; a = a->next) {
        nattrs++;
        rc = check_namespace(node, a, origin, err);
    }
    if (rc == 0)
        rc = check_namespace(node, NULL, origin, err);
    if (rc < 0) {
        qvm_free(vm);
        return -1;
    }
    if (qattrs_reserve(&vm->attrs, nattrs) < 0)
        rc = qerr_errno(err, ENOMEM, "loading %s", origin);
    for (xmlAttr *a = node->properties; a && rc == 0; a = a->next) {
        /* The usual attribute value is one text node: read it in place. */
        xmlNode *t = a->children;
        if (t && !t->next && t->type == XML_TEXT_NODE) {
            rc = qvm_load_attr(vm, (const char *)a->name, (const char *)t->content, err);
        } else {
            xmlChar *value = xmlNodeListGetString(node->doc, t, 1);
            rc = qvm_load_attr(vm, (const char *)a->name, value ? (const char *)value : "", err);
            xmlFree(value);
        }
    }
    if (rc == 0 && vm->qid < 0)
        rc = qerr_set(err, "missing attribute qid");
    if (rc == 0 && !vm->name)
        rc = qerr_set(err, "missing attribute name");
    if (rc == 0) {
        struct qvm *other = qvm_collection_by_qid(c, vm->qid);
        if (other)
            rc = qerr_set(err, "qid=\"%d\": already used by '%s' (line %d)", vm->qid,
                          other->name, other->line);
        else if ((other = qvm_collection_by_name(c, vm->name)))
            rc = qerr_set(err, "name=\"%s\": already used by the VM with qid %d (line %d)",
                          vm->name, other->qid, other->line);
        else
            rc = qvm_collection_add(c, vm, err);
    }
    if (rc < 0) {
        qvm_free(vm);
        return qerr_prefix(err, "%s", where);
    }
    return 0;
}

/* The end of a construct opened at buf[i] that is not a start tag
 * (comment, declaration, processing instruction, end tag), or len. */
static size_t skip_markup(const char *buf, size_t len, size_t i, int *line)
{
    const char *close = len - i >= 4 && memcmp(buf + i, "<!--", 4) == 0 ? "-->" : ">";
    const char *end = memmem(buf + i + 1, len - i - 1, close, strlen(close));
    size_t stop = end ? (size_t)(end - buf) : len;
    for (size_t k = i; k < stop; k++)
        *line += buf[k] == '\n';
    return stop;
}

/* Counts the attributes of every start tag on the raw text ('=' outside
 * quoted values): a bound, not a parser; what it misreads the parser
 * refuses. */
static int check_attr_counts(const char *buf, size_t len, const char *origin, struct qerr *err)
{
    int line = 1;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '\n')
            line++;
        if (buf[i] != '<')
            continue;
        if (i + 1 < len && strchr("!?/", buf[i + 1])) {
            i = skip_markup(buf, len, i, &line);
            continue;
        }
        size_t name = i + 1, name_len = 0;
        while (name + name_len < len && !strchr(" \t\r\n/>", buf[name + name_len]))
            name_len++;
        int tag_line = line, n = 0;
        char quote = 0;
        for (i = name; i < len && (quote || buf[i] != '>'); i++) {
            line += buf[i] == '\n';
            if (quote)
                quote = buf[i] == quote ? 0 : quote;
            else if (buf[i] == '"' || buf[i] == '\'')
                quote = buf[i];
            else
                n += buf[i] == '=';
        }
        if (n > QUBES_MAX_ATTRS)
            return qerr_set(err, "%s:%d: <%.*s> has more than %d attributes", origin, tag_line,
                            (int)(name_len < 64 ? name_len : 64), buf + name, QUBES_MAX_ATTRS);
    }
    return 0;
}

int qvm_collection_parse(const char *buf, size_t len, const char *origin,
                         struct qvm_collection **out, struct qerr *err)
{
    size_t blank = 0;
    while (blank < len && strchr(" \t\r\n", buf[blank]) && buf[blank])
        blank++;
    if (blank == len)
        return qerr_set(err, "%s: empty file (no <QubesVmCollection> element)", origin);
    if (len > INT32_MAX)
        return qerr_set(err, "%s: file too large", origin);
    if (memchr(buf, '\0', len))
        return qerr_set(err, "%s: contains a NUL byte at offset %zu: not an XML text file",
                        origin, (size_t)((const char *)memchr(buf, '\0', len) - buf));

    /* Entities are declared in a DTD: refuse one before the parser could
     * expand anything (entity bombs, external entities). */
    if (memmem(buf, len, "<!DOCTYPE", 9))
        return qerr_set(err, "%s: a document type declaration (DOCTYPE) is not allowed", origin);
    if (check_attr_counts(buf, len, origin, err) < 0)
        return -1;

    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt)
        return qerr_errno(err, ENOMEM, "loading %s", origin);
    xmlDocPtr doc = xmlCtxtReadMemory(ctxt, buf, (int)len, origin, NULL,
                                      XML_PARSE_NONET | XML_PARSE_NOERROR |
                                          XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
    if (!doc) {
        xmlErrorPtr e = xmlCtxtGetLastError(ctxt);
        if (e && e->message) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", e->message);
            size_t l = strlen(msg);
            while (l > 0 && (msg[l - 1] == '\n' || msg[l - 1] == ' '))
                msg[--l] = '\0';
            qerr_set(err, "%s:%d: malformed XML: %s", origin, e->line, msg);
        } else {
            qerr_set(err, "%s: malformed XML", origin);
        }
        xmlFreeParserCtxt(ctxt);
        return -1;
    }
    xmlFreeParserCtxt(ctxt);

    int rc = 0;
    struct qvm_collection *c = NULL;
    xmlNode *root = xmlDocGetRootElement(doc);
    if (doc->intSubset || doc->extSubset) {
        rc = qerr_set(err, "%s: a document type declaration (DOCTYPE) is not allowed", origin);
        goto out;
    }
    if (!root || strcmp((const char *)root->name, "QubesVmCollection") != 0) {
        rc = qerr_set(err, "%s:%d: root element is <%s>, expected <QubesVmCollection>", origin,
                      root ? root->line : 1, root ? (const char *)root->name : "(none)");
        goto out;
    }
    c = qvm_collection_new();
    if (!c) {
        rc = qerr_errno(err, ENOMEM, "loading %s", origin);
        goto out;
    }
    if ((rc = parse_root(c, root, origin, err)) < 0)
        goto out;
    for (xmlNode *node = root->children; node; node = node->next) {
        if (node->type == XML_ELEMENT_NODE) {
            if ((rc = parse_vm(c, node, origin, err)) < 0)
                goto out;
        } else if (node->type == XML_TEXT_NODE && !is_blank(node->content)) {
            rc = qerr_set(err, "%s:%d: unexpected text inside <QubesVmCollection>", origin,
                          node->line);
            goto out;
        } else if (node->type == XML_ENTITY_REF_NODE) {
            rc = qerr_set(err, "%s:%d: entity references are not allowed", origin, node->line);
            goto out;
        }
    }
    if ((rc = qvm_collection_add_dom0(c, err)) < 0)
        goto out;
    rc = validate_with_origin(c, origin, err);
out:
    xmlFreeDoc(doc);
    if (rc < 0) {
        qvm_collection_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

/* ---- serialising ---- */

static int write_attrs(xmlTextWriterPtr w, const struct qattrs *a)
{
    for (size_t i = 0; i < a->n; i++)
        if (xmlTextWriterWriteAttribute(w, (const xmlChar *)a->v[i].name,
                                        (const xmlChar *)a->v[i].value) < 0)
            return -1;
    return 0;
}

char *qvm_collection_format(const struct qvm_collection *c, size_t *len, struct qerr *err)
{
    size_t n;
    struct qvm **vms = qvm_collection_sorted(c, &n);
    xmlBufferPtr buf = xmlBufferCreate();
    xmlTextWriterPtr w = buf ? xmlNewTextWriterMemory(buf, 0) : NULL;
    char *out = NULL;
    if (!vms || !w) {
        qerr_errno(err, ENOMEM, "formatting qubes.xml");
        goto done;
    }
    xmlTextWriterSetIndent(w, 1);
    xmlTextWriterSetIndentString(w, (const xmlChar *)"  ");
    if (xmlTextWriterStartElement(w, (const xmlChar *)"QubesVmCollection") < 0 ||
        write_attrs(w, &c->root_attrs) < 0)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        if (xmlTextWriterStartElement(w, (const xmlChar *)qvm_class_element(vms[i]->cls)) < 0 ||
            write_attrs(w, &vms[i]->attrs) < 0 || xmlTextWriterEndElement(w) < 0)
            goto fail;
    }
    if (xmlTextWriterEndElement(w) < 0 || xmlTextWriterFlush(w) < 0)
        goto fail;
    xmlFreeTextWriter(w);
    w = NULL;
    /* Own the text: xmlBufferDetach hands over the buffer's memory. */
    *len = (size_t)xmlBufferLength(buf);
    out = malloc(*len + 2);
    if (!out) {
        qerr_errno(err, ENOMEM, "formatting qubes.xml");
        goto done;
    }
    memcpy(out, xmlBufferContent(buf), *len);
    if (*len == 0 || out[*len - 1] != '\n')
        out[(*len)++] = '\n';
    out[*len] = '\0';
    goto done;
fail:
    qerr_set(err, "formatting qubes.xml: libxml2 writer failed");
done:
    if (w)
        xmlFreeTextWriter(w);
    if (buf)
        xmlBufferFree(buf);
    free(vms);
    return out;
}
