#include "savefile.h"

#include "../orchestrator/util.h"
#include "../storage/storage.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#define MAGIC "LibvirtQemudSave"
#define HEADER_SIZE SAVEFILE_FIXED_SIZE

static int read_at(int fd, void *buf, size_t len, off_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t r = pread(fd, (char *)buf + done, len - done, off + (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        done += (size_t)r;
    }
    return 0;
}

/* The fixed part of a header, checked; out->size and stream_offset as the
 * file's size `size` allows (0: a header alone, its size unknown). */
static int parse_fixed(const unsigned char *h, const char *what, off_t size,
                       struct savefile_info *out, struct qerr *err)
{
    if (memcmp(h, MAGIC, 16) != 0)
        return qerr_set(err, "%s: not a libvirt QEMU savefile (bad magic)", what);
    uint32_t f[5];
    memcpy(f, h + 16, sizeof f);
    out->version = f[0];
    out->data_len = f[1];
    out->was_running = f[2];
    out->compressed = f[3];
    out->cookie_offset = f[4];
    out->size = size;
    out->stream_offset = HEADER_SIZE + (off_t)out->data_len;
    if (out->version != 2 || out->compressed != 0 || out->data_len == 0 ||
        out->data_len > SAVEFILE_DATA_MAX || (size && out->stream_offset >= size) ||
        out->cookie_offset > out->data_len)
        return qerr_set(err, "%s: unsupported savefile (version %u, compressed %u, data %u bytes)",
                        what, out->version, out->compressed, out->data_len);
    return 0;
}

/* The domain XML and cookie of the data part `data` (data_len bytes). */
static int parse_data(const char *data, const char *what, struct savefile_info *out,
                      struct qerr *err)
{
    size_t xml_end = out->cookie_offset ? out->cookie_offset : out->data_len;
    out->xml = strndup(data, xml_end);
    out->cookie = out->cookie_offset ? strndup(data + out->cookie_offset,
                                               out->data_len - out->cookie_offset) : strdup("");
    if (!out->xml || !out->cookie) {
        savefile_info_free(out);
        return qerr_errno(err, ENOMEM, "reading %s", what);
    }
    return 0;
}

int savefile_read(const char *path, struct savefile_info *out, struct qerr *err)
{
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qerr_errno(err, errno, "cannot open the savefile %s", path);
    unsigned char h[HEADER_SIZE];
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0 || read_at(fd, h, sizeof h, 0) < 0) {
        rc = qerr_set(err, "%s: too short for a savefile", path);
        goto out;
    }
    if ((rc = parse_fixed(h, path, st.st_size, out, err)) < 0)
        goto out;
    char *data = calloc(1, (size_t)out->data_len + 1);
    if (!data || read_at(fd, data, out->data_len, HEADER_SIZE) < 0) {
        free(data);
        rc = qerr_errno(err, data ? EIO : ENOMEM, "cannot read the header of %s", path);
        goto out;
    }
    rc = parse_data(data, path, out, err);
    free(data);
out:
    close(fd);
    return rc;
}

int savefile_header_size(const void *buf, size_t len, size_t *size, struct qerr *err)
{
    struct savefile_info si;
    if (len < HEADER_SIZE)
        return qerr_set(err, "a savefile's header: %zu bytes, too short", len);
    if (parse_fixed(buf, "the savefile", 0, &si, err) < 0)
        return -1;
    *size = HEADER_SIZE + (size_t)si.data_len;
    return 0;
}

int savefile_parse_header(const void *buf, size_t len, struct savefile_info *out,
                          struct qerr *err)
{
    memset(out, 0, sizeof *out);
    size_t need = 0;
    if (savefile_header_size(buf, len, &need, err) < 0)
        return -1;
    if (len < need)
        return qerr_set(err, "the savefile's header: %zu of its %zu bytes", len, need);
    parse_fixed(buf, "the savefile", 0, out, err);
    char *data = calloc(1, (size_t)out->data_len + 1);
    if (!data)
        return qerr_errno(err, ENOMEM, "reading a savefile's header");
    memcpy(data, (const char *)buf + HEADER_SIZE, out->data_len);
    int rc = parse_data(data, "the savefile's header", out, err);
    free(data);
    return rc;
}

void savefile_info_free(struct savefile_info *si)
{
    free(si->xml);
    free(si->cookie);
    si->xml = si->cookie = NULL;
}

static xmlNode *child(xmlNode *n, const char *name)
{
    for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && strcmp((const char *)c->name, name) == 0)
            return c;
    return NULL;
}

static void set_text(xmlNode *n, const char *text)
{
    if (n)
        xmlNodeSetContent(n, (const xmlChar *)text);
}

static xmlNode *dac_label(xmlNode *source, bool relabel, const char *label)
{
    xmlNode *l = xmlNewChild(source, NULL, (const xmlChar *)"seclabel", NULL);
    if (!l)
        return NULL;
    xmlSetProp(l, (const xmlChar *)"model", (const xmlChar *)"dac");
    xmlSetProp(l, (const xmlChar *)"relabel", (const xmlChar *)(relabel ? "yes" : "no"));
    if (label)
        xmlNewTextChild(l, NULL, (const xmlChar *)"label", (const xmlChar *)label);
    return l;
}

/* The disk `d` (its <source> `src`) over the files of `c`: its own layer
 * is not relabelled, each backing file is given `label`, and an empty
 * <backingStore/> ends the chain (libvirt reads no header). */
static int give_chain(xmlNode *d, xmlNode *src, const struct savefile_chain *c, const char *label)
{
    if (!src || !label || !dac_label(src, false, NULL))
        return -1;
    xmlNode *at = d;
    for (int i = 0; i < c->n; i++) {
        xmlNode *bs = xmlNewChild(at, NULL, (const xmlChar *)"backingStore", NULL);
        xmlNode *f = bs ? xmlNewChild(bs, NULL, (const xmlChar *)"format", NULL) : NULL;
        xmlNode *s = f ? xmlNewChild(bs, NULL, (const xmlChar *)"source", NULL) : NULL;
        if (!s || !dac_label(s, true, label))
            return -1;
        xmlSetProp(bs, (const xmlChar *)"type", (const xmlChar *)"file");
        xmlSetProp(f, (const xmlChar *)"type", (const xmlChar *)c->format[i]);
        xmlSetProp(s, (const xmlChar *)"file", (const xmlChar *)c->path[i]);
        at = bs;
    }
    return xmlNewChild(at, NULL, (const xmlChar *)"backingStore", NULL) ? 0 : -1;
}

/* The domain XML of the savefile, changed to the clone's identity. */
static char *rewrite(const char *xml, const struct savefile_identity *id, struct qerr *err)
{
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "savefile.xml", NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc) {
        qerr_set(err, "the savefile's domain XML does not parse");
        return NULL;
    }
    xmlNode *dom = xmlDocGetRootElement(doc);
    set_text(child(dom, "name"), id->name);
    set_text(child(dom, "uuid"), id->uuid);
    if (id->genid)
        set_text(child(dom, "genid"), id->genid);
    xmlNode *devices = child(dom, "devices");
    int disk = 0;
    for (xmlNode *d = devices ? devices->children : NULL; d; d = d->next) {
        if (d->type != XML_ELEMENT_NODE)
            continue;
        const char *tag = (const char *)d->name;
        if (strcmp(tag, "disk") == 0 && disk < id->ndisks) {
            xmlNode *src = child(d, "source"), *drv = child(d, "driver");
            if (src)
                xmlSetProp(src, (const xmlChar *)"file", (const xmlChar *)id->disks[disk]);
            /* A raw disk of the saved VM may be a qcow2 layer in the clone:
             * read as raw, the guest would see the layer's metadata. */
            if (drv && id->formats[disk])
                xmlSetProp(drv, (const xmlChar *)"type", (const xmlChar *)id->formats[disk]);
            /* The clone's layer has other backing files: the caller's
             * chain, or libvirt reads it from the images. */
            xmlNode *bs;
            while ((bs = child(d, "backingStore"))) {
                xmlUnlinkNode(bs);
                xmlFreeNode(bs);
            }
            if (id->chains[disk].n > 0 &&
                give_chain(d, src, &id->chains[disk], id->image_label) < 0) {
                xmlFreeDoc(doc);
                qerr_set(err, "cannot describe the backing files of %s", id->disks[disk]);
                return NULL;
            }
            disk++;
        } else if (strcmp(tag, "channel") == 0 && id->agent_socket) {
            xmlNode *src = child(d, "source");
            if (src)
                xmlSetProp(src, (const xmlChar *)"path", (const xmlChar *)id->agent_socket);
        } else if (strcmp(tag, "interface") == 0 && id->mac) {
            xmlNode *mac = child(d, "mac"), *target;
            if (mac)
                xmlSetProp(mac, (const xmlChar *)"address", (const xmlChar *)id->mac);
            /* The host side's device name is the saved domain's: the
             * clone's own, or one libvirt picks. */
            while ((target = child(d, "target"))) {
                xmlUnlinkNode(target);
                xmlFreeNode(target);
            }
            xmlNode *src = child(d, "source"), *link;
            if (src && id->network)
                xmlSetProp(src, (const xmlChar *)"network", (const xmlChar *)id->network);
            while ((link = child(d, "link"))) {
                xmlUnlinkNode(link);
                xmlFreeNode(link);
            }
            if (id->link_down && (link = xmlNewChild(d, NULL, (const xmlChar *)"link", NULL)))
                xmlSetProp(link, (const xmlChar *)"state", (const xmlChar *)"down");
            if (id->ifname) {
                target = xmlNewChild(d, NULL, (const xmlChar *)"target", NULL);
                if (target)
                    xmlSetProp(target, (const xmlChar *)"dev", (const xmlChar *)id->ifname);
            }
        } else if ((strcmp(tag, "serial") == 0 || strcmp(tag, "console") == 0) && id->serial_log) {
            xmlNode *src = child(d, "source");
            if (src && xmlHasProp(src, (const xmlChar *)"path"))
                xmlSetProp(src, (const xmlChar *)"path", (const xmlChar *)id->serial_log);
        }
    }
    xmlNode *os = child(dom, "os"), *kernel = child(os, "kernel"), *initrd;
    if (id->boot_stub && kernel) {
        set_text(kernel, id->boot_stub);
        while ((initrd = child(os, "initrd"))) {
            xmlNode *indent = initrd->prev;     /* and its line's indentation */
            if (indent && xmlIsBlankNode(indent)) {
                xmlUnlinkNode(indent);
                xmlFreeNode(indent);
            }
            xmlUnlinkNode(initrd);
            xmlFreeNode(initrd);
        }
    }
    xmlNode *qemu = child(dom, "commandline");
    if (id->private_ram && qemu) {
        for (xmlNode *a = qemu->children; a; a = a->next) {
            xmlChar *v = a->type == XML_ELEMENT_NODE ? xmlGetProp(a, (const xmlChar *)"value") : NULL;
            char *share = v && strncmp((const char *)v, "memory-backend-file,", 20) == 0
                              ? strstr((char *)v, ",share=on") : NULL;
            if (share) {
                /* ",share=on" becomes ",share=off". */
                size_t head = (size_t)(share - (char *)v);
                char *nv = malloc(strlen((char *)v) + 2);
                if (nv) {
                    sprintf(nv, "%.*s,share=off%s", (int)head, (char *)v, share + 9);
                    xmlSetProp(a, (const xmlChar *)"value", (const xmlChar *)nv);
                    free(nv);
                }
            }
            xmlFree(v);
        }
        const char *args[] = { "-incoming", "defer" };
        for (int i = 0; i < 2; i++) {
            xmlNode *a = xmlNewChild(qemu, qemu->ns, (const xmlChar *)"arg", NULL);
            xmlSetProp(a, (const xmlChar *)"value", (const xmlChar *)args[i]);
        }
    }
    xmlChar *outbuf = NULL;
    int len = 0;
    xmlDocDumpMemory(doc, &outbuf, &len);
    xmlFreeDoc(doc);
    if (!outbuf) {
        qerr_errno(err, ENOMEM, "rewriting the savefile's XML");
        return NULL;
    }
    /* Without the XML declaration, as libvirt writes it. */
    const char *start = strstr((const char *)outbuf, "<domain");
    char *copy = strdup(start ? start : (const char *)outbuf);
    xmlFree(outbuf);
    if (!copy)
        qerr_errno(err, ENOMEM, "rewriting the savefile's XML");
    return copy;
}

/* Writes the clone to `out`: the new header, then src's stream (spliced
 * when `out` is a pipe, so the stream's pages are not copied). */
static int clone_to_fd(const char *src, int out, const char *dst, const struct savefile_identity *id,
                       struct qerr *err)
{
    struct savefile_info si;
    if (savefile_read(src, &si, err) < 0)
        return -1;
    char *xml = rewrite(si.xml, id, err);
    int rc = -1, in = -1;
    if (!xml)
        goto done;
    size_t xml_len = strlen(xml) + 1, cookie_len = strlen(si.cookie) + 1;
    uint32_t data_len = (uint32_t)(xml_len + cookie_len);
    unsigned char h[HEADER_SIZE] = { 0 };
    uint32_t f[5] = { si.version, data_len, si.was_running, si.compressed, (uint32_t)xml_len };
    memcpy(h, MAGIC, 16);
    memcpy(h + 16, f, sizeof f);

    in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        qerr_errno(err, errno, "cannot open %s", src);
        goto done;
    }
    if (qwrite_all(out, h, sizeof h) < 0 || qwrite_all(out, xml, xml_len) < 0 ||
        qwrite_all(out, si.cookie, cookie_len) < 0) {
        qerr_errno(err, errno, "cannot write %s", dst);
        goto done;
    }
    off_t ipos = si.stream_offset;
    struct stat st;
    if (fstat(out, &st) == 0 && S_ISFIFO(st.st_mode)) {
        while (ipos < si.size) {
            ssize_t r = splice(in, &ipos, out, NULL, (size_t)(si.size - ipos), SPLICE_F_MOVE);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                qerr_errno(err, r < 0 ? errno : EIO, "cannot feed the savefile's stream to %s", dst);
                goto done;
            }
        }
    } else if (storage_copy_range(in, &ipos, out, si.size - si.stream_offset) < 0) {
        qerr_errno(err, errno, "cannot copy the savefile's stream to %s", dst);
        goto done;
    }
    rc = 0;
done:
    if (in >= 0)
        close(in);
    free(xml);
    savefile_info_free(&si);
    return rc;
}

int savefile_clone(const char *src, const char *dst, const struct savefile_identity *id,
                   struct qerr *err)
{
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0)
        return qerr_errno(err, errno, "cannot create %s", dst);
    int rc = clone_to_fd(src, out, dst, id, err);
    close(out);
    if (rc < 0)
        unlink(dst);
    return rc;
}

pid_t savefile_feed(const char *src, const char *fifo, const struct savefile_identity *id,
                    struct qerr *err)
{
    if (mkfifo(fifo, 0600) < 0)
        return qerr_errno(err, errno, "cannot create %s", fifo);
    pid_t pid = fork();
    if (pid < 0) {
        unlink(fifo);
        return qerr_errno(err, errno, "fork");
    }
    if (pid == 0) {
        /* Blocks until the reader (libvirt) opens the other end. */
        int out = open(fifo, O_WRONLY | O_CLOEXEC);
        struct qerr e;
        if (out >= 0)
            fcntl(out, F_SETPIPE_SZ, 1 << 20);  /* fewer, larger hand-overs */
        _exit(out >= 0 && clone_to_fd(src, out, fifo, id, &e) == 0 ? 0 : 1);
    }
    return pid;
}

int savefile_header_as(const struct savefile_info *si, const struct savefile_identity *id,
                       void **out, size_t *len, struct qerr *err)
{
    *out = NULL;
    cleanup_free char *xml = rewrite(si->xml, id, err);
    if (!xml)
        return -1;
    size_t xml_len = strlen(xml) + 1, cookie_len = strlen(si->cookie) + 1;
    if (xml_len + cookie_len > si->data_len)
        return qerr_set(err, "the domain XML of %s (%zu bytes) does not fit in the savefile's "
                        "header (%u bytes)", id->name, xml_len + cookie_len, si->data_len);
    *len = HEADER_SIZE + (size_t)si->data_len;
    unsigned char *h = calloc(1, *len);
    if (!h)
        return qerr_errno(err, ENOMEM, "a savefile header for %s", id->name);
    uint32_t f[5] = { si->version, si->data_len, si->was_running, si->compressed,
                      (uint32_t)xml_len };
    memcpy(h, MAGIC, 16);
    memcpy(h + 16, f, sizeof f);
    memcpy(h + HEADER_SIZE, xml, xml_len);
    memcpy(h + HEADER_SIZE + xml_len, si->cookie, cookie_len);
    *out = h;
    return 0;
}

char *savefile_domain_xml(const char *xml, const struct savefile_identity *id, struct qerr *err)
{
    return rewrite(xml, id, err);
}
