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

int qattrs_set(struct qattrs *a, const char *name, const char *value)
{
    char *nv = strdup(value);
    if (!nv)
        return -1;
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->v[i].name, name) == 0) {
            free(a->v[i].value);
            a->v[i].value = nv;
            return 0;
        }
    }
    struct qattr *na = realloc(a->v, (a->n + 1) * sizeof *na);
    char *nn = strdup(name);
    if (!na || !nn) {
        if (na)
            a->v = na;
        free(nn);
        free(nv);
        return -1;
    }
    a->v = na;
    a->v[a->n].name = nn;
    a->v[a->n].value = nv;
    a->n++;
    return 0;
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
    a->n = 0;
}
