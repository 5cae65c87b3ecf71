/* The hosts VMs may live on besides this one, by name: the registry in
 * $QUBES_BASE_DIR/qubes-hosts.xml
 *
 *   <QubesHosts>
 *     <host name="NAME" uri="URI"/>
 *   </QubesHosts>
 *
 * No file: the local host alone. The local host is implicit, named
 * "local", and never in the file. Each URI is a libvirt remote URI
 * (qemu+tcp://, qemu+tls://, qemu+ssh://, ...) of that host's daemon.
 *
 * Writes are atomic and need the caller to hold the qubes.xml write lock
 * (as firewall files do), so a change of the registry and of the VMs that
 * live on its hosts is one critical section; a reader sees one whole file
 * or the other. Nothing here contacts a host. */
#ifndef QUBES_HOSTS_H
#define QUBES_HOSTS_H

#include <stddef.h>

#include "error.h"

struct qubes_db;
struct qubes_config;
struct qvm;
struct qvm_collection;
struct vmm;

#define QHOST_LOCAL "local"
#define QHOSTS_FILE "qubes-hosts.xml"
#define QHOST_NAME_MAX 31
#define QHOST_URI_MAX 512
#define QHOSTS_MAX 64

struct qhost {
    char name[QHOST_NAME_MAX + 1];
    char uri[QHOST_URI_MAX];
};

struct qhosts {
    struct qhost host[QHOSTS_MAX];
    size_t n;
};

/* A host's name: the rules of a VM name (letters, digits, '_', '-', a
 * letter first, at most 31), and not "local". */
int qhost_check_name(const char *name, struct qerr *err);
/* A remote URI: SCHEME://HOST[:PORT]/PATH[?QUERY] of printable ASCII
 * without spaces or quotes, with a host part; not a local one (qemu:///,
 * test:///, libxl://). */
int qhost_check_uri(const char *uri, struct qerr *err);

/* $QUBES_BASE_DIR/qubes-hosts.xml. */
int qhosts_path(const struct qubes_config *cfg, char *out, size_t len, struct qerr *err);
/* Reads the registry (none: no hosts). Every entry is checked; the error
 * names the file, the line and the problem. */
int qhosts_load(const char *path, struct qhosts *out, struct qerr *err);
/* Writes it atomically, mode 0640; refused unless `db` (qubes.xml) holds
 * the write lock. */
int qhosts_write(const struct qubes_db *db, const char *path, const struct qhosts *h,
                 struct qerr *err);
/* The entry named `name`, or NULL. */
const struct qhost *qhosts_find(const struct qhosts *h, const char *name);
/* Adds one (name and URI checked, neither taken); removes one by name. */
int qhosts_add(struct qhosts *h, const char *name, const char *uri, struct qerr *err);
int qhosts_remove(struct qhosts *h, const char *name, struct qerr *err);

/* ---- VMs on a host ----
 * A VM lives on the host its `host` attribute names (qubes.xml; none, or
 * "local": this one). On another host its images are volumes of the pool
 * QHOST_POOL there (a directory pool at QHOST_POOL_DIR on that host,
 * defined by the project), named NAME.KIND (root.img, private.img, vmlinuz,
 * initramfs; volatile.img, the copy-on-write layer over its template's
 * root of a VM based on one, made anew at each start: '.' is in no VM
 * name, so no two VMs' volumes meet); nothing of
 * them is a file on this host. Its record, firewall rules and directory of
 * settings stay here. */
#define QHOST_POOL "qubes"
#define QHOST_POOL_DIR "/var/lib/qubes/pool"
/* A volume's name: NAME.KIND, a VM's name and the longest kind. */
#define QHOST_VOLUME_NAME_MAX 64

/* The host `vm` lives on: NULL for this one. */
const char *qvm_host(const struct qvm *vm);
/* Whether any VM of `coll` lives on `name`; *who the first. */
int qhosts_in_use(const struct qvm_collection *coll, const char *name, const char **who);
/* How long a host may take to answer before a command gives up on it
 * (QUBES_HOST_TIMEOUT overrides it). */
#define QHOST_TIMEOUT_S 5
/* That deadline in milliseconds; -1 with the error for a bad setting. */
long qhosts_timeout_ms(struct qerr *err);

/* `out` set up (not connected) for the registered host `name`: the
 * registry is read; an unknown name is an error naming the registry. Not
 * in offline mode, the host is asked first (qhosts_probe) and one that
 * does not answer within QHOST_TIMEOUT_S is an error saying why. */
int qhosts_vmm(const struct qubes_config *cfg, const char *name, struct vmm *out,
               struct qerr *err);
/* The volume of `vm_name`'s image `kind` (root.img, private.img, ...). */
int qhost_volume_name(const char *vm_name, const char *kind, char *out, size_t len,
                      struct qerr *err);
/* The kinds of volume a VM may have there, NULL-terminated. */
extern const char *const qhost_volume_kinds[];
/* Through `vmm` (the VM's host), its volume `kind` of the pool QHOST_POOL:
 * its path on that host (1), or 0 and "" when there is none; deleting it
 * (0 also when there is none); every volume NAME.* of it deleted (its
 * images, and the savefile set of a dvm VM, dispvm/remote.h); a copy of
 * `from`'s volume `kind` made there under `vm_name`'s (nothing travels). */
int qhost_volume_path(struct vmm *vmm, const char *vm_name, const char *kind, char *out,
                      size_t len, struct qerr *err);
int qhost_volume_delete(struct vmm *vmm, const char *vm_name, const char *kind, struct qerr *err);
int qhost_volumes_delete(struct vmm *vmm, const char *vm_name, struct qerr *err);
int qhost_volume_copy(struct vmm *vmm, const char *vm_name, const char *from, const char *kind,
                      struct qerr *err);

/* What qhosts_probe learns of a host. */
struct qhost_state {
    int reachable;              /* 1 answered, 0 did not (see why) */
    unsigned long long free_kib, total_kib;
    unsigned running;           /* its running domains that are VMs of `q` */
    char why[256];
};

/* Asks each URI's daemon (in a child process each, all at once) for its
 * free memory and its running domains, waiting at most `timeout_ms` in
 * all: a host that does not answer by then is killed off as unreachable,
 * named with the deadline. `coll`: the VMs whose running domains count
 * (NULL: none); the hypervisor's settings are `cfg`'s, its URI each one's. */
void qhosts_probe(const struct qubes_config *cfg, const struct qvm_collection *coll,
                  const char *const *uris, size_t n, long timeout_ms, struct qhost_state *out);

#endif
