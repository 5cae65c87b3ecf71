/* libvirt's QEMU savefile, and clones of it under another identity.
 *
 * libvirt refuses to restore a savefile under another name or UUID: the XML
 * it may be given on restore can only change disk and channel paths. So a
 * DispVM is restored from a clone whose header carries its own domain XML.
 * The layout (libvirt 9.0, qemu_saveimage.h): a 92-byte header (16-byte magic
 * "LibvirtQemudSave", uint32 version 2, data_len, was_running, compressed,
 * cookieOffset, 14 unused), then data_len bytes holding the domain XML and,
 * from cookieOffset, a cookie XML, both NUL-terminated and zero-padded; the
 * QEMU migration stream follows at 92 + data_len. libvirt reads the header
 * and hands QEMU the same descriptor, positioned at the stream, so the clone
 * may have any data_len. */
#ifndef QUBES_SAVEFILE_H
#define QUBES_SAVEFILE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../orchestrator/error.h"

struct savefile_info {
    uint32_t version, data_len, was_running, compressed, cookie_offset;
    char *xml;                  /* the domain XML */
    char *cookie;
    off_t stream_offset;
    off_t size;
};

/* Headers larger than this are refused (libvirt pads the data to 64 KiB
 * beyond what it needs). */
#define SAVEFILE_DATA_MAX (16u << 20)
/* The fixed part of a header, before its data. */
#define SAVEFILE_FIXED_SIZE 92

int savefile_read(const char *path, struct savefile_info *out, struct qerr *err);
/* A header alone, in memory (a savefile on another host, read by stream):
 * how long the whole header is, from its first 92 bytes; and the header
 * parsed (size and stream_offset unknown: size 0). */
int savefile_header_size(const void *buf, size_t len, size_t *size, struct qerr *err);
int savefile_parse_header(const void *buf, size_t len, struct savefile_info *out,
                          struct qerr *err);
void savefile_info_free(struct savefile_info *si);

/* The backing files of a disk's layer, nearest first, and their formats. */
#define SAVEFILE_CHAIN_MAX 4
struct savefile_chain {
    int n;
    const char *path[SAVEFILE_CHAIN_MAX], *format[SAVEFILE_CHAIN_MAX];
};

/* What a clone changes in the domain. */
struct savefile_identity {
    const char *name, *uuid;
    const char *genid;          /* its VM generation id, when the saved domain has one */
    const char *disks[4];       /* new source of the domain's 1st, 2nd... disk */
    const char *formats[4];     /* and its format ("qcow2", "raw") */
    int ndisks;
    /* The chain under each disk, given to libvirt whole (n 0: libvirt
     * reads it from the images' headers). A disk with a chain is the
     * caller's to hand to QEMU's user: libvirt leaves it as it is, so it
     * has nothing of it to give back when the domain ends (the caller may
     * remove it first); the backing files are given `image_label`
     * ("+UID:+GID": qemulator_backing_label, root's in QEMU's group) and
     * never given back. */
    struct savefile_chain chains[4];
    const char *image_label;
    const char *agent_socket;   /* the agent channel's unix socket */
    const char *serial_log;
    const char *mac;            /* the NIC's MAC address (when it has one) */
    const char *ifname;         /* the host side's device (NULL: libvirt's choice) */
    const char *network;        /* the NIC's network (NULL: the saved domain's) */
    bool link_down;             /* the NIC without carrier: a DispVM without network */
    /* A shared-memory savefile: map the RAM file private (copy-on-write)
     * and wait for the device state (QEMU's -incoming defer). */
    bool private_ram;
    /* The kernel QEMU loads at its start instead of the saved one (whose
     * initramfs goes too): a restored guest never boots it. NULL: keep. */
    const char *boot_stub;
};

/* The domain XML of a savefile (savefile_info.xml) changed to `id`;
 * malloc'ed. */
char *savefile_domain_xml(const char *xml, const struct savefile_identity *id, struct qerr *err);

/* The header of `si` with its domain XML rewritten for `id`, of the same
 * size (the stream after it stays where it is: a clone written in place
 * over a copy of the savefile); malloc'ed in *out. An XML that does not fit
 * the header's data part is an error. */
int savefile_header_as(const struct savefile_info *si, const struct savefile_identity *id,
                       void **out, size_t *len, struct qerr *err);

/* Writes `dst` (created, mode 0600): src's header with the domain XML
 * rewritten for `id`, then src's stream. */
int savefile_clone(const char *src, const char *dst, const struct savefile_identity *id,
                   struct qerr *err);

/* The same without a copy on disk (QUBES_DISPVM_FEED=fifo): a child process
 * writes the clone into the FIFO `fifo` (created here) as the restore reads it. libvirt 9.0 opens
 * the image once and reads it in order, so this works; should a libvirt not,
 * the restore fails and the caller falls back to savefile_clone(). Returns
 * the writer's pid (the caller kills and reaps it after the restore). */
pid_t savefile_feed(const char *src, const char *fifo, const struct savefile_identity *id,
                    struct qerr *err);

#endif
