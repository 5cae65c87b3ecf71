#include "xmlfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/parser.h>

#include "util.h"

int qxml_read_file(const char *path, size_t max, const char *root, xmlDocPtr *doc,
                   struct qerr *err)
{
    *doc = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT ? 0 : qerr_errno(err, errno, "cannot read %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (unsigned long long)st.st_size > max) {
        close(fd);
        return qerr_set(err, "%s: not a regular file of at most %zu bytes", path, max);
    }
    size_t len;
    char *text = qread_fd(fd, &len);
    close(fd);
    if (!text)
        return qerr_errno(err, errno, "cannot read %s", path);
    if (strstr(text, "<!DOCTYPE")) {
        free(text);
        return qerr_set(err, "%s: a DOCTYPE is not allowed", path);
    }
    xmlDocPtr d = xmlReadMemory(text, (int)len, path, NULL,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    free(text);
    if (!d) {
        const xmlError *x = xmlGetLastError();
        return qerr_set(err, "%s:%d: not well-formed XML: %s", path, x ? x->line : 0,
                        x && x->message ? x->message : "?");
    }
    xmlNode *r = xmlDocGetRootElement(d);
    if (!r || strcmp((const char *)r->name, root) != 0) {
        xmlFreeDoc(d);
        return qerr_set(err, "%s: the root element is not %s", path, root);
    }
    *doc = d;
    return 0;
}

char *qxml_build(int (*body)(xmlTextWriterPtr w, const void *ctx), const void *ctx,
                 const char *indent, bool declaration)
{
    xmlBufferPtr buf = xmlBufferCreate();
    xmlTextWriterPtr w = buf ? xmlNewTextWriterMemory(buf, 0) : NULL;
    char *out = NULL;
    int e = ENOMEM;
    if (w && indent) {
        xmlTextWriterSetIndent(w, 1);
        xmlTextWriterSetIndentString(w, (const xmlChar *)indent);
    }
    if (w && ((declaration && xmlTextWriterStartDocument(w, NULL, "UTF-8", NULL) < 0) ||
              body(w, ctx) < 0 || (declaration && xmlTextWriterEndDocument(w) < 0) ||
              xmlTextWriterFlush(w) < 0))
        e = EIO;
    else if (w)
        out = strdup((const char *)xmlBufferContent(buf));
    if (w)
        xmlFreeTextWriter(w);
    if (buf)
        xmlBufferFree(buf);
    if (!out)
        errno = e;
    return out;
}

int qxml_write_file(const char *path, unsigned mode, bool durable,
                    int (*body)(xmlTextWriterPtr w, const void *ctx), const void *ctx,
                    const char *tag, const char *value, struct qerr *err)
{
    char *text = qxml_build(body, ctx, "  ", true);
    if (!text)
        return errno == EIO ? qerr_set(err, "formatting %s: libxml2 writer failed", path)
                            : qerr_errno(err, ENOMEM, "formatting %s", path);
    int rc = qwrite_file_tagged(path, text, strlen(text), mode, durable, tag, value, err);
    free(text);
    return rc;
}
