/* libFuzzer target for the qubes.xml loader and the Python-literal parser.
 * Whatever parses must format, parse again and format to the same text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../orchestrator/collection.h"
#include "../../orchestrator/pyliteral.h"

static void check_collection(const uint8_t *data, size_t size)
{
    struct qvm_collection *c, *c2;
    struct qerr err;
    if (qvm_collection_parse((const char *)data, size, "fuzz", &c, &err) < 0)
        return;
    size_t len1, len2;
    char *t1 = qvm_collection_format(c, &len1, &err);
    if (!t1)
        abort();
    if (qvm_collection_parse(t1, len1, "fuzz-1", &c2, &err) < 0)
        abort();                /* what we wrote must load */
    char *t2 = qvm_collection_format(c2, &len2, &err);
    if (!t2 || len1 != len2 || memcmp(t1, t2, len1) != 0)
        abort();                /* and be stable */
    free(t1);
    free(t2);
    qvm_collection_free(c);
    qvm_collection_free(c2);
}

static void check_literals(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return;
    memcpy(text, data, size);
    text[size] = '\0';
    struct qerr err;
    struct pydict d, d2;
    if (pydict_parse(text, &d, &err) == 0) {
        char *f1 = pydict_format(&d);
        if (!f1 || pydict_parse(f1, &d2, &err) < 0)
            abort();
        char *f2 = pydict_format(&d2);
        if (!f2 || strcmp(f1, f2) != 0)
            abort();
        free(f1);
        free(f2);
        pydict_free(&d);
        pydict_free(&d2);
    }
    struct pylist l, l2;
    if (pylist_parse(text, &l, &err) == 0) {
        char *f1 = pylist_format(&l);
        if (!f1 || pylist_parse(f1, &l2, &err) < 0)
            abort();
        char *f2 = pylist_format(&l2);
        if (!f2 || strcmp(f1, f2) != 0)
            abort();
        free(f1);
        free(f2);
        pylist_free(&l);
        pylist_free(&l2);
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_collection(data, size);
    check_literals(data, size);
    return 0;
}
