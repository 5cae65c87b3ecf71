#include "attrs.h"

#include <stdlib.h>
#include <string.h>

const char *qattrs_get(const struct qattrs *a, const char *name)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i].name, name) == 0)
            return a->v[i].value;
    return NULL;
}

int qattrs_reserve(struct qattrs *a, size_t n)
{
    if (a->n + n <= a->cap)
        return 0;
    size_t cap = a->cap ? a->cap : 8;
    while (cap < a->n + n)
        cap *= 2;
    struct qattr *nv = realloc(a->v, cap * sizeof *nv);
    if (!nv)
        return -1;
    a->v = nv;
    a->cap = cap;
    return 0;
}

int qattrs_append(struct qattrs *a, const char *name, const char *value)
{
    if (qattrs_reserve(a, 1) < 0)
        return -1;
    char *nn = strdup(name), *nv = strdup(value);
    if (!nn || !nv) {
        free(nn);
        free(nv);
        return -1;
    }
    a->v[a->n].name = nn;
    a->v[a->n].value = nv;
    a->n++;
    return 0;
}

int qattrs_set(struct qattrs *a, const char *name, const char *value)
{
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->v[i].name, name) == 0) {
            char *nv = strdup(value);
            if (!nv)
                return -1;
            free(a->v[i].value);
            a->v[i].value = nv;
            return 0;
        }
    }
    return qattrs_append(a, name, value);
}

void qattrs_del(struct qattrs *a, const char *name)
{
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->v[i].name, name) == 0) {
            free(a->v[i].name);
            free(a->v[i].value);
            memmove(&a->v[i], &a->v[i + 1], (a->n - i - 1) * sizeof *a->v);
            a->n--;
            return;
        }
    }
}

void qattrs_free(struct qattrs *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->v[i].name);
        free(a->v[i].value);
    }
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}
