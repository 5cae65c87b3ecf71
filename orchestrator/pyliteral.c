#include "pyliteral.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cursor {
    const char *text;
    size_t pos;
    struct qerr *err;
};

static void skip_ws(struct cursor *c)
{
    while (c->text[c->pos] == ' ' || c->text[c->pos] == '\t' ||
           c->text[c->pos] == '\n' || c->text[c->pos] == '\r')
        c->pos++;
}

static int fail(struct cursor *c, const char *what)
{
    char ch = c->text[c->pos];
    if (ch == '\0')
        return qerr_set(c->err, "%s at end of text", what);
    if (isprint((unsigned char)ch))
        return qerr_set(c->err, "%s at offset %zu ('%c')", what, c->pos, ch);
    return qerr_set(c->err, "%s at offset %zu (byte 0x%02x)", what, c->pos,
                    (unsigned char)ch);
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* A quoted string with the escapes repr() produces. */
static int parse_string(struct cursor *c, char **out)
{
    char quote = c->text[c->pos];
    if (quote != '\'' && quote != '"')
        return fail(c, "expected a quoted string");
    c->pos++;
    size_t start = c->pos, cap = 16, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return qerr_errno(c->err, ENOMEM, "parsing string");
    for (;;) {
        char ch = c->text[c->pos];
        if (ch == '\0') {
            free(buf);
            c->pos = start - 1;
            return fail(c, "unterminated string");
        }
        c->pos++;
        if (ch == quote)
            break;
        if (ch == '\\') {
            char e = c->text[c->pos++];
            switch (e) {
            case '\\': ch = '\\'; break;
            case '\'': ch = '\''; break;
            case '"': ch = '"'; break;
            case 'n': ch = '\n'; break;
            case 't': ch = '\t'; break;
            case 'r': ch = '\r'; break;
            case 'x': {
                int h = hexval(c->text[c->pos]);
                int l = h < 0 ? -1 : hexval(c->text[c->pos + 1]);
                if (h < 0 || l < 0 || (h == 0 && l == 0)) {
                    free(buf);
                    c->pos--;
                    return fail(c, "bad \\x escape");
                }
                c->pos += 2;
                ch = (char)(h * 16 + l);
                break;
            }
            default:
                free(buf);
                c->pos--;
                return fail(c, "unsupported escape");
            }
        }
        if (len + 2 > cap) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                return qerr_errno(c->err, ENOMEM, "parsing string");
            }
            buf = nb;
        }
        buf[len++] = ch;
    }
    buf[len] = '\0';
    *out = buf;
    return 0;
}

static bool match_word(struct cursor *c, const char *word)
{
    size_t n = strlen(word);
    if (strncmp(c->text + c->pos, word, n) != 0)
        return false;
    char next = c->text[c->pos + n];
    if (isalnum((unsigned char)next) || next == '_')
        return false;
    c->pos += n;
    return true;
}

static int parse_value(struct cursor *c, struct pyval *v)
{
    char ch = c->text[c->pos];
    memset(v, 0, sizeof *v);
    if (ch == '\'' || ch == '"') {
        v->type = PYV_STR;
        return parse_string(c, &v->s);
    }
    if (match_word(c, "True")) {
        v->type = PYV_BOOL;
        v->b = true;
        return 0;
    }
    if (match_word(c, "False")) {
        v->type = PYV_BOOL;
        v->b = false;
        return 0;
    }
    if (match_word(c, "None")) {
        v->type = PYV_NONE;
        return 0;
    }
    if (ch == '-' || isdigit((unsigned char)ch)) {
        char *end;
        errno = 0;
        long long n = strtoll(c->text + c->pos, &end, 10);
        if (errno == ERANGE)
            return fail(c, "integer out of range");
        if (end == c->text + c->pos)
            return fail(c, "expected a value");
        c->pos = end - c->text;
        v->type = PYV_INT;
        v->i = n;
        return 0;
    }
    return fail(c, "expected a string, True, False, None or an integer");
}

static void pyval_free(struct pyval *v)
{
    if (v->type == PYV_STR)
        free(v->s);
    v->s = NULL;
}

static int expect_end(struct cursor *c)
{
    skip_ws(c);
    if (c->text[c->pos] != '\0')
        return fail(c, "unexpected text after the literal");
    return 0;
}

/* Where an item of a dict literal is in its text: its key's opening quote,
 * its value, and the end of its value. */
struct item_span {
    size_t key, val, val_end;
};

/* Parses a dict literal; with `spans` (an array of one span per item,
 * malloc'ed) and `close` (the offset of its '}') it also says where each
 * item is, for an edit that keeps the rest of the text as it was. */
static int dict_parse(const char *text, struct pydict *out, struct item_span **spans,
                      size_t *close, struct qerr *err)
{
    struct cursor c = { .text = text, .pos = 0, .err = err };
    struct pydict d = { 0 };
    struct item_span *sp = NULL;
    skip_ws(&c);
    if (text[c.pos] != '{')
        return fail(&c, "expected '{'");
    c.pos++;
    skip_ws(&c);
    while (text[c.pos] != '}') {
        char *key = NULL;
        struct pyval v;
        struct item_span here = { .key = c.pos };
        if (parse_string(&c, &key) < 0)
            goto bad;
        skip_ws(&c);
        if (text[c.pos] != ':') {
            free(key);
            fail(&c, "expected ':'");
            goto bad;
        }
        c.pos++;
        skip_ws(&c);
        here.val = c.pos;
        if (parse_value(&c, &v) < 0) {
            free(key);
            goto bad;
        }
        here.val_end = c.pos;
        if (pydict_get(&d, key)) {
            free(key);
            pyval_free(&v);
            qerr_set(err, "duplicate key in dict");
            goto bad;
        }
        int r = pydict_set(&d, key, &v);
        free(key);
        pyval_free(&v);
        if (r == 0 && spans) {
            struct item_span *nsp = realloc(sp, d.n * sizeof *sp);
            if (nsp) {
                sp = nsp;
                sp[d.n - 1] = here;
            } else {
                r = -1;
            }
        }
        if (r < 0) {
            qerr_errno(err, ENOMEM, "parsing dict");
            goto bad;
        }
        skip_ws(&c);
        if (text[c.pos] == ',') {
            c.pos++;
            skip_ws(&c);
        } else if (text[c.pos] != '}') {
            fail(&c, "expected ',' or '}'");
            goto bad;
        }
    }
    if (close)
        *close = c.pos;
    c.pos++;
    if (expect_end(&c) < 0)
        goto bad;
    *out = d;
    if (spans)
        *spans = sp;
    return 0;
bad:
    free(sp);
    pydict_free(&d);
    return -1;
}

int pydict_parse(const char *text, struct pydict *out, struct qerr *err)
{
    return dict_parse(text, out, NULL, NULL, err);
}

int pylist_parse(const char *text, struct pylist *out, struct qerr *err)
{
    struct cursor c = { .text = text, .pos = 0, .err = err };
    struct pylist l = { 0 };
    skip_ws(&c);
    if (text[c.pos] != '[')
        return fail(&c, "expected '['");
    c.pos++;
    skip_ws(&c);
    while (text[c.pos] != ']') {
        char *s = NULL;
        if (parse_string(&c, &s) < 0)
            goto bad;
        int r = pylist_append(&l, s);
        free(s);
        if (r < 0) {
            qerr_errno(err, ENOMEM, "parsing list");
            goto bad;
        }
        skip_ws(&c);
        if (text[c.pos] == ',') {
            c.pos++;
            skip_ws(&c);
        } else if (text[c.pos] != ']') {
            fail(&c, "expected ',' or ']'");
            goto bad;
        }
    }
    c.pos++;
    if (expect_end(&c) < 0)
        goto bad;
    *out = l;
    return 0;
bad:
    pylist_free(&l);
    return -1;
}

/* A growable string for the formatters. */
struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_putc(struct sbuf *b, char ch)
{
    if (b->oom)
        return;
    if (b->len + 2 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    b->p[b->len++] = ch;
    b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
    while (*s)
        sb_putc(b, *s++);
}

/* repr(str): single quotes unless the text holds ' and no ". */
static void sb_repr_str(struct sbuf *b, const char *s)
{
    char quote = (strchr(s, '\'') && !strchr(s, '"')) ? '"' : '\'';
    sb_putc(b, quote);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\\' || *p == (unsigned char)quote) {
            sb_putc(b, '\\');
            sb_putc(b, (char)*p);
        } else if (*p == '\n') {
            sb_puts(b, "\\n");
        } else if (*p == '\t') {
            sb_puts(b, "\\t");
        } else if (*p == '\r') {
            sb_puts(b, "\\r");
        } else if (*p < 0x20 || *p >= 0x7f) {   /* Python 2's repr of a byte string */
            static const char hex[] = "0123456789abcdef";
            sb_puts(b, "\\x");
            sb_putc(b, hex[*p >> 4]);
            sb_putc(b, hex[*p & 15]);
        } else {
            sb_putc(b, (char)*p);
        }
    }
    sb_putc(b, quote);
}

static void sb_repr_val(struct sbuf *b, const struct pyval *v)
{
    char num[32];
    switch (v->type) {
    case PYV_NONE: sb_puts(b, "None"); break;
    case PYV_BOOL: sb_puts(b, v->b ? "True" : "False"); break;
    case PYV_INT:
        snprintf(num, sizeof num, "%lld", v->i);
        sb_puts(b, num);
        break;
    case PYV_STR: sb_repr_str(b, v->s); break;
    }
}

static char *sb_finish(struct sbuf *b)
{
    if (b->oom) {
        free(b->p);
        return NULL;
    }
    return b->p;
}

char *pydict_format(const struct pydict *d)
{
    struct sbuf b = { 0 };
    sb_putc(&b, '{');
    for (size_t i = 0; i < d->n; i++) {
        if (i)
            sb_puts(&b, ", ");
        sb_repr_str(&b, d->items[i].key);
        sb_puts(&b, ": ");
        sb_repr_val(&b, &d->items[i].val);
    }
    sb_putc(&b, '}');
    return sb_finish(&b);
}

char *pylist_format(const struct pylist *l)
{
    struct sbuf b = { 0 };
    sb_putc(&b, '[');
    for (size_t i = 0; i < l->n; i++) {
        if (i)
            sb_puts(&b, ", ");
        sb_repr_str(&b, l->items[i]);
    }
    sb_putc(&b, ']');
    return sb_finish(&b);
}

void pydict_free(struct pydict *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->items[i].key);
        pyval_free(&d->items[i].val);
    }
    free(d->items);
    d->items = NULL;
    d->n = 0;
}

void pylist_free(struct pylist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

const struct pyval *pydict_get(const struct pydict *d, const char *key)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->items[i].key, key) == 0)
            return &d->items[i].val;
    return NULL;
}

static int pyval_copy(struct pyval *dst, const struct pyval *src)
{
    *dst = *src;
    if (src->type == PYV_STR) {
        dst->s = strdup(src->s);
        if (!dst->s)
            return -1;
    }
    return 0;
}

int pydict_set(struct pydict *d, const char *key, const struct pyval *v)
{
    for (size_t i = 0; i < d->n; i++) {
        if (strcmp(d->items[i].key, key) == 0) {
            struct pyval nv;
            if (pyval_copy(&nv, v) < 0)
                return -1;
            pyval_free(&d->items[i].val);
            d->items[i].val = nv;
            return 0;
        }
    }
    struct pydict_item *ni = realloc(d->items, (d->n + 1) * sizeof *ni);
    if (!ni)
        return -1;
    d->items = ni;
    char *k = strdup(key);
    if (!k || pyval_copy(&ni[d->n].val, v) < 0) {
        free(k);
        return -1;
    }
    ni[d->n].key = k;
    d->n++;
    return 0;
}

int pydict_del(struct pydict *d, const char *key)
{
    for (size_t i = 0; i < d->n; i++) {
        if (strcmp(d->items[i].key, key) == 0) {
            free(d->items[i].key);
            pyval_free(&d->items[i].val);
            memmove(&d->items[i], &d->items[i + 1], (d->n - i - 1) * sizeof *d->items);
            d->n--;
            return 0;
        }
    }
    return -1;
}

int pylist_append(struct pylist *l, const char *s)
{
    char **ni = realloc(l->items, (l->n + 1) * sizeof *ni);
    if (!ni)
        return -1;
    l->items = ni;
    ni[l->n] = strdup(s);
    if (!ni[l->n])
        return -1;
    l->n++;
    return 0;
}

bool pyval_truth(const struct pyval *v)
{
    switch (v->type) {
    case PYV_NONE: return false;
    case PYV_BOOL: return v->b;
    case PYV_INT: return v->i != 0;
    case PYV_STR: return v->s[0] != '\0';
    }
    return false;
}

int pydict_edit(const char *text, const char *key, const struct pyval *v, char **out,
                struct qerr *err)
{
    struct pydict d;
    struct item_span *sp = NULL;
    size_t close, i, from = 0, to = 0;
    struct sbuf ins = { 0 };

    if (dict_parse(text, &d, &sp, &close, err) < 0)
        return -1;
    for (i = 0; i < d.n && strcmp(d.items[i].key, key) != 0; i++)
        ;
    if (v && i < d.n) {                 /* a new value in the old one's place */
        from = sp[i].val;
        to = sp[i].val_end;
        sb_repr_val(&ins, v);
    } else if (v) {                     /* a new key after the last one */
        from = to = d.n ? sp[d.n - 1].val_end : close;
        if (d.n)
            sb_puts(&ins, ", ");
        sb_repr_str(&ins, key);
        sb_puts(&ins, ": ");
        sb_repr_val(&ins, v);
    } else if (i == d.n) {              /* nothing to remove */
    } else if (d.n == 1) {              /* the only key: "{ 'a': 1}" -> "{ }" */
        from = sp[0].key;
        to = close;
    } else if (i + 1 < d.n) {           /* the key, its comma, up to the next key */
        from = sp[i].key;
        to = sp[i + 1].key;
    } else {                            /* the last key, from the previous value's end */
        from = sp[i - 1].val_end;
        to = sp[i].val_end;
    }
    free(sp);
    pydict_free(&d);

    struct sbuf res = { 0 };
    for (size_t k = 0; k < from; k++)
        sb_putc(&res, text[k]);
    if (ins.p)
        sb_puts(&res, ins.p);
    sb_puts(&res, text + to);
    bool oom = ins.oom;
    free(ins.p);
    char *r = sb_finish(&res);          /* never empty: the text has its braces */
    if (oom || !r) {
        free(r);
        return qerr_errno(err, ENOMEM, "editing a dict literal");
    }
    *out = r;
    return 0;
}

int qservice_check_name(const char *name, struct qerr *err)
{
    size_t n = strlen(name);
    if (n == 0)
        return qerr_set(err, "a service name cannot be empty");
    if (n > QSERVICE_NAME_MAX)
        return qerr_set(err, "service name '%.*s...' is longer than %d characters", 20, name,
                        QSERVICE_NAME_MAX);
    if (name[0] == '.' || name[0] == '-')
        return qerr_set(err, "service name '%s' starts with '%c' (names are [A-Za-z0-9_.-], "
                        "not starting with '.' or '-')", name, name[0]);
    for (const char *c = name; *c; c++) {
        bool okc = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                   (*c >= '0' && *c <= '9') || *c == '_' || *c == '.' || *c == '-';
        if (!okc)
            return qerr_set(err, "service name '%s' has a character outside [A-Za-z0-9_.-] "
                            "(they reach the guest as file names)", name);
    }
    return 0;
}

int qservices_cmdline(const struct pydict *d, char out[QSERVICES_ARG_MAX + 1], struct qerr *err)
{
    static const char head[] = "qubes.services=";
    size_t len = 0;
    bool any = false;
    struct qerr ignored;
    out[0] = '\0';
    for (size_t i = 0; i < d->n; i++) {
        const char *name = d->items[i].key;
        if (qservice_check_name(name, &ignored) < 0)
            continue;
        int n = snprintf(out + len, QSERVICES_ARG_MAX + 1 - len, "%s%s%s",
                         any ? "," : head, pyval_truth(&d->items[i].val) ? "" : "!", name);
        if (n < 0 || (size_t)n > QSERVICES_ARG_MAX - len) {
            out[0] = '\0';
            return qerr_set(err, "its services do not fit the kernel command line's %d bytes "
                            "of qubes.services= (remove some with qvm-service -D)",
                            QSERVICES_ARG_MAX);
        }
        len += (size_t)n;
        any = true;
    }
    return 0;
}
