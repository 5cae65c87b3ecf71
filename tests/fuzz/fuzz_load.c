/* libFuzzer target for the qubes.xml loader and the Python-literal parser.
 *
 * Whatever loads must save, load again and save to the very same text: a
 * collection that formats into something the loader refuses, or that keeps
 * changing from one save to the next, is a bug (abort()). The same holds for
 * `services` dicts and `pcidevs` lists, which must also keep their values.
 *
 *   make fuzz FUZZ_SECONDS=300
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>

#include "../../orchestrator/collection.h"
#include "../../orchestrator/pyliteral.h"

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_load: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

/* Two collections hold the same VMs with the same attributes, in order. */
static void same_collection(const struct qvm_collection *a, const struct qvm_collection *b)
{
    if (qvm_collection_count(a) != qvm_collection_count(b))
        die("VM count changed in the round trip", NULL);
    for (int g = 0; g < QG_COUNT; g++)
        if (a->globals[g] != b->globals[g])
            die("a global reference changed in the round trip", qglobal_attr(g));
    if (a->root_attrs.n != b->root_attrs.n)
        die("root attribute count changed", NULL);
    for (size_t i = 0; i < a->root_attrs.n; i++)
        if (strcmp(a->root_attrs.v[i].name, b->root_attrs.v[i].name) != 0 ||
            strcmp(a->root_attrs.v[i].value, b->root_attrs.v[i].value) != 0)
            die("a root attribute changed", a->root_attrs.v[i].name);
    for (struct qvm *x = a->by_qid; x; x = x->hh_qid.next) {
        struct qvm *y = qvm_collection_by_qid(b, x->qid);
        if (!y)
            die("a VM was lost in the round trip", x->name);
        if (y != qvm_collection_by_name(b, x->name))
            die("qid and name indexes disagree after the round trip", x->name);
        if (x->cls != y->cls || x->template_qid != y->template_qid ||
            x->netvm_qid != y->netvm_qid || x->netid != y->netid || x->dispid != y->dispid ||
            x->label != y->label)
            die("a VM's typed fields changed in the round trip", x->name);
        if (x->attrs.n != y->attrs.n)
            die("a VM's attribute count changed", x->name);
        for (size_t i = 0; i < x->attrs.n; i++)
            if (strcmp(x->attrs.v[i].name, y->attrs.v[i].name) != 0 ||
                strcmp(x->attrs.v[i].value, y->attrs.v[i].value) != 0)
                die("a VM attribute changed in the round trip", x->attrs.v[i].name);
    }
}

static void fuzz_collection(const uint8_t *data, size_t size)
{
    struct qvm_collection *c1 = NULL, *c2 = NULL;
    struct qerr err;
    size_t len1 = 0, len2 = 0;

    if (qvm_collection_parse((const char *)data, size, "fuzz.xml", &c1, &err) < 0)
        return;
    /* Every loaded collection has dom0, and its indexes agree. */
    if (!qvm_collection_by_qid(c1, 0) || qvm_collection_by_qid(c1, 0) !=
                                             qvm_collection_by_name(c1, "dom0"))
        die("no dom0 after a successful load", NULL);
    if (HASH_CNT(hh_qid, c1->by_qid) != HASH_CNT(hh_name, c1->by_name))
        die("qid and name indexes differ in size", NULL);
    if (qvm_collection_validate(c1, &err) < 0)
        die("a loaded collection does not validate", err.msg);

    char *t1 = qvm_collection_format(c1, &len1, &err);
    if (!t1)
        die("format failed", err.msg);
    if (strlen(t1) != len1)
        die("formatted text has a NUL byte or a wrong length", NULL);
    if (qvm_collection_parse(t1, len1, "fuzz-saved.xml", &c2, &err) < 0) {
        fprintf(stderr, "----- saved text -----\n%s----------------------\n", t1);
        die("the saved text does not load again", err.msg);
    }
    same_collection(c1, c2);
    char *t2 = qvm_collection_format(c2, &len2, &err);
    if (!t2)
        die("second format failed", err.msg);
    if (len1 != len2 || memcmp(t1, t2, len1) != 0) {
        fprintf(stderr, "----- first save -----\n%s----- second save -----\n%s", t1, t2);
        die("save -> load -> save is not stable", NULL);
    }
    free(t1);
    free(t2);
    qvm_collection_free(c1);
    qvm_collection_free(c2);
}

static void fuzz_dict(const char *text)
{
    struct pydict d1, d2;
    struct qerr err;
    if (pydict_parse(text, &d1, &err) < 0) {
        if (strlen(err.msg) == 0)
            die("dict refused without a message", text);
        return;
    }
    char *f1 = pydict_format(&d1);
    if (!f1)
        die("pydict_format failed", text);
    if (pydict_parse(f1, &d2, &err) < 0) {
        fprintf(stderr, "input: %s\nformatted: %s\n", text, f1);
        die("a formatted dict does not parse again", err.msg);
    }
    if (d1.n != d2.n)
        die("dict length changed in the round trip", f1);
    for (size_t i = 0; i < d1.n; i++) {
        const struct pyval *a = &d1.items[i].val, *b = &d2.items[i].val;
        if (strcmp(d1.items[i].key, d2.items[i].key) != 0 || a->type != b->type ||
            (a->type == PYV_BOOL && a->b != b->b) || (a->type == PYV_INT && a->i != b->i) ||
            (a->type == PYV_STR && strcmp(a->s, b->s) != 0))
            die("a dict item changed in the round trip", f1);
    }
    char *f2 = pydict_format(&d2);
    if (!f2)
        die("pydict_format failed", f1);
    if (strcmp(f1, f2) != 0) {
        fprintf(stderr, "first: %s\nsecond: %s\n", f1, f2);
        die("dict format -> parse -> format is not stable", NULL);
    }
    free(f1);
    free(f2);
    pydict_free(&d1);
    pydict_free(&d2);
}

static void fuzz_list(const char *text)
{
    struct pylist l1, l2;
    struct qerr err;
    if (pylist_parse(text, &l1, &err) < 0) {
        if (strlen(err.msg) == 0)
            die("list refused without a message", text);
        return;
    }
    char *f1 = pylist_format(&l1);
    if (!f1)
        die("pylist_format failed", text);
    if (pylist_parse(f1, &l2, &err) < 0) {
        fprintf(stderr, "input: %s\nformatted: %s\n", text, f1);
        die("a formatted list does not parse again", err.msg);
    }
    if (l1.n != l2.n)
        die("list length changed in the round trip", f1);
    for (size_t i = 0; i < l1.n; i++)
        if (strcmp(l1.items[i], l2.items[i]) != 0)
            die("a list item changed in the round trip", f1);
    char *f2 = pylist_format(&l2);
    if (!f2)
        die("pylist_format failed", f1);
    if (strcmp(f1, f2) != 0) {
        fprintf(stderr, "first: %s\nsecond: %s\n", f1, f2);
        die("list format -> parse -> format is not stable", NULL);
    }
    free(f1);
    free(f2);
    pylist_free(&l1);
    pylist_free(&l2);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    xmlInitParser();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_collection(data, size);

    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    fuzz_dict(text);
    fuzz_list(text);
    free(text);
    return 0;
}
