/* Small XML files of ours beside qubes.xml (a VM's firewall rules, the host
 * registry), read as untrusted input: a regular file (a symbolic link is not
 * followed, a FIFO or a device is refused before anything reads it) of at
 * most `max` bytes, without a DOCTYPE (no entities), parsed without the
 * network, whose root element is `root`. */
#ifndef QUBES_XMLFILE_H
#define QUBES_XMLFILE_H

#include <stdbool.h>
#include <stddef.h>

#include <libxml/tree.h>
#include <libxml/xmlwriter.h>

#include "error.h"

/* *doc is the parsed document (xmlFreeDoc it), or NULL with 0 when there is
 * no file at `path`. Errors name the file (and the line, when the XML is
 * not well-formed). */
int qxml_read_file(const char *path, size_t max, const char *root, xmlDocPtr *doc,
                   struct qerr *err);

/* What `body` writes with a fresh writer, as a malloc'ed string: indented
 * with `indent` (NULL: not indented), after an XML declaration when
 * `declaration`. NULL with errno ENOMEM when memory ran out, EIO when a
 * writer call failed (body returns < 0 then). */
char *qxml_build(int (*body)(xmlTextWriterPtr w, const void *ctx), const void *ctx,
                 const char *indent, bool declaration);

/* Writes `path` atomically (util.h: qwrite_file, fsynced when `durable`)
 * with `mode`: an XML declaration, then what `body` writes with `w`
 * (indented by two spaces); body returns < 0 when a writer call failed.
 * With `tag`, the file has that extended attribute, `value`
 * (qwrite_file_tagged). */
int qxml_write_file(const char *path, unsigned mode, bool durable,
                    int (*body)(xmlTextWriterPtr w, const void *ctx), const void *ctx,
                    const char *tag, const char *value, struct qerr *err);

#endif
