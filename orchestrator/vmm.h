/* The hypervisor, behind a small backend interface. The connection is
 * opened at the first call that needs it, never at start-up, so tools that
 * only read or change qubes.xml never touch the hypervisor. In offline mode
 * every operation fails with "VMM operations disabled in offline mode" and
 * every VM reads as Halted.
 *
 * A backend is a shared object loaded at that first call
 * (qubes-vmm-libvirt.so, beside the tools in ../lib/qubes-orchestrator/, or
 * in QUBES_VMM_PLUGIN_DIR): linking libvirt into every tool would cost each
 * of them ~7 ms of start-up for 50-odd libraries they mostly never use. */
#ifndef QUBES_VMM_H
#define QUBES_VMM_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "error.h"

enum qvm_power {
    QVM_POWER_HALTED,
    QVM_POWER_RUNNING,
    QVM_POWER_TRANSIENT,
    QVM_POWER_PAUSED,
    QVM_POWER_SUSPENDED,
    QVM_POWER_HALTING,
    QVM_POWER_DYING,
    QVM_POWER_CRASHED,
    QVM_POWER_NA,
};
const char *qvm_power_name(enum qvm_power p);

struct vmm_domain {
    char *name;
    enum qvm_power state;
    int id;                         /* changes at every start; -1 when not running */
    unsigned long long cpu_ns;      /* CPU time used */
    unsigned long mem_kib;          /* current memory */
};

struct vmm_host {
    unsigned long long free_kib, total_kib;
    unsigned cpus;
};

/* A disk of a running domain as the hypervisor has it now (vmm_domain_disks). */
struct vmm_disk {
    char *target;               /* its frontend: vda, vdb, ... (NULL for a backing file) */
    char *source;               /* a file or a block device; NULL when it has none (network) */
    bool block;                 /* the source is a block device */
    bool readonly;
    bool backing;               /* a file of the backing chain of the disk listed before */
    char *tag;                  /* the tag it was attached with (vmm_attach_disk), else NULL */
};

/* A disk to hot-plug (raw, virtio) or to unplug (by its target). */
struct vmm_disk_spec {
    const char *source;
    bool block;                 /* a block device, else a regular file */
    bool readonly;
    const char *target;         /* vdb ... vdz */
    const char *tag;            /* kept with the disk, found again by vmm_domain_disks */
};

struct vmm;
struct domain_spec;

struct vmm_backend {
    const char *name;
    int (*connect)(struct vmm *vmm, struct qerr *err);
    void (*disconnect)(struct vmm *vmm);
    /* State of one domain; QVM_POWER_HALTED when it does not exist. */
    int (*domain_state)(struct vmm *vmm, const char *name, enum qvm_power *out,
                        struct qerr *err);
    /* Every domain the hypervisor knows, in one call. */
    int (*list_domains)(struct vmm *vmm, struct vmm_domain **out, size_t *n,
                        struct qerr *err);
    /* One domain's details; name NULL in *out (and Halted) when it does not exist. */
    int (*domain_info)(struct vmm *vmm, const char *name, struct vmm_domain *out,
                       struct qerr *err);
    /* Starts a transient domain from its libvirt XML description. */
    int (*create)(struct vmm *vmm, const char *xml, struct qerr *err);
    /* Optional: starts a transient domain from its description; backends
     * without it get domain_xml(spec) through create. */
    int (*create_spec)(struct vmm *vmm, const struct domain_spec *spec, struct qerr *err);
    int (*destroy)(struct vmm *vmm, const char *name, struct qerr *err);
    int (*suspend)(struct vmm *vmm, const char *name, struct qerr *err);
    int (*resume)(struct vmm *vmm, const char *name, struct qerr *err);
    int (*host_info)(struct vmm *vmm, struct vmm_host *out, struct qerr *err);
    /* Saves a running domain's memory and device state to `path` (the
     * domain stops); restores a domain from such a file, running. */
    int (*save)(struct vmm *vmm, const char *name, const char *path, struct qerr *err);
    int (*restore)(struct vmm *vmm, const char *path, struct qerr *err);
    /* Sets a running domain's balloon target. */
    int (*set_memory)(struct vmm *vmm, const char *name, unsigned long kib, struct qerr *err);
    /* Shared-memory DispVMs (optional: NULL where the backend cannot).
     * shares_memory: 1 when domains of this connection can keep their RAM
     * in a file of ours (domain_spec.mem_file) and save device state only.
     * save_device_state: like save, but the RAM of a shared memory file is
     * left out of the savefile. restore_device_state: creates the domain
     * `xml` (prepared to receive it), paused, and loads the device state
     * from the savefile `path`, whose stream starts at `offset`; the domain
     * stays paused. domain_pid: the domain's emulator process on this host,
     * 0 when unknown. */
    int (*shares_memory)(struct vmm *vmm);
    int (*save_device_state)(struct vmm *vmm, const char *name, const char *path,
                             struct qerr *err);
    int (*restore_device_state)(struct vmm *vmm, const char *xml, const char *path,
                                long long offset, struct qerr *err);
    int (*domain_pid)(struct vmm *vmm, const char *name);
    /* Optional: kills the domain's emulator process and returns 1 once it
     * is gone, leaving the hypervisor to forget the domain by itself (it
     * may list it a moment longer); 0 when it cannot (then destroy). For
     * domains whose name is not reused at once: DispVMs. */
    int (*kill)(struct vmm *vmm, const char *name);
    /* Makes sure the isolated network `name` is up: a bridge of that name
     * with no address of the host on it, no forwarding and no DHCP, the
     * segment between a NetVM or ProxyVM and the VMs behind it. */
    int (*network_ensure)(struct vmm *vmm, const char *name, struct qerr *err);
    /* Block devices of running domains (optional: NULL where the backend
     * cannot hot-plug). live_xml: the running domain's description in
     * libvirt's terms (malloc'ed). attach_device / detach_device: hot-plug
     * or unplug the device `xml` describes, on the running domain only;
     * an unplug may still be under way when detach_device returns (the
     * guest must let the device go). */
    int (*live_xml)(struct vmm *vmm, const char *name, char **xml, struct qerr *err);
    int (*attach_device)(struct vmm *vmm, const char *name, const char *xml, struct qerr *err);
    int (*detach_device)(struct vmm *vmm, const char *name, const char *xml, struct qerr *err);
    /* Storage on the hypervisor's host, reached through the connection only
     * (optional: NULL where the backend has none). pool_ensure: the
     * directory pool `pool` at `path` on that host, defined, built, started
     * and marked autostart when missing or inactive. volume_upload: a new
     * raw volume `name` in `pool` of `size` bytes holding the local file
     * `src` (NULL: all zeros, nothing sent), sent as a sparse stream: holes
     * travel as lengths and stay holes where the host's file system can; an
     * existing volume of that name is an error; a failure midway removes
     * the volume. *sent counts the bytes of data sent. volume_delete:
     * removes it; 0 when there is none. */
    int (*pool_ensure)(struct vmm *vmm, const char *pool, const char *path, struct qerr *err);
    int (*volume_upload)(struct vmm *vmm, const char *pool, const char *name, const char *src,
                         unsigned long long size, unsigned long long *sent, struct qerr *err);
    int (*volume_delete)(struct vmm *vmm, const char *pool, const char *name, struct qerr *err);
    /* volume_path: the path of the volume on its host (for a domain there
     * to name); 1 with it, 0 when there is no such volume. */
    int (*volume_path)(struct vmm *vmm, const char *pool, const char *name, char *out,
                       size_t len, struct qerr *err);
    /* volume_layer: a new qcow2 volume `name` over the volume `backing` of
     * the same pool (raw), of its size: a copy-on-write layer, made on
     * that host. volume_clone: a new raw volume `name`, a copy of `from` made
     * on that host (nothing travels), which the host must know to be of the
     * format `from_fmt` (raw, or qcow2: then its data, backing file and
     * all, is copied): a guest's raw disk whose first bytes look like
     * another format is refused, never read as that format. Both: an
     * existing `name` is an error. */
    int (*volume_layer)(struct vmm *vmm, const char *pool, const char *name, const char *backing,
                        struct qerr *err);
    int (*volume_clone)(struct vmm *vmm, const char *pool, const char *name, const char *from,
                        const char *from_fmt, struct qerr *err);
    /* volume_read: `len` bytes of the volume from `offset` into `buf`
     * (fewer at its end: *got says how many), downloaded by stream.
     * volume_write: `len` bytes of `buf` written over the volume at
     * `offset`, in place (the rest of it stays), uploaded by stream. */
    int (*volume_read)(struct vmm *vmm, const char *pool, const char *name,
                       unsigned long long offset, void *buf, size_t len, size_t *got,
                       struct qerr *err);
    int (*volume_write)(struct vmm *vmm, const char *pool, const char *name,
                        unsigned long long offset, const void *buf, size_t len, struct qerr *err);
    /* volume_stamp: what tells a change of the volume's data on its host:
     * its capacity and modification time, as one line in `out`; 1 with
     * it, 0 when there is no such volume. */
    int (*volume_stamp)(struct vmm *vmm, const char *pool, const char *name, char *out,
                        size_t len, struct qerr *err);
    /* volume_names: the names of the pool's volumes (malloc'ed, and the
     * array); none when there is no such pool. */
    int (*volume_names)(struct vmm *vmm, const char *pool, char ***names, size_t *n,
                        struct qerr *err);
    /* Optional: the guest channel `channel` of the running domain `name`
     * (a unix channel the emulator listens on, wherever its host is),
     * served on this host: each connection accepted on `listen_fd` gets the
     * channel through the hypervisor's connection (a newer one takes it
     * from an older, as a second client of the emulator's socket would
     * wait), bytes both ways unchanged. Returns 0 once the domain has
     * stopped, -1 when the hypervisor is gone. Called on an unconnected
     * `vmm`: it connects itself (its event loop comes first). */
    int (*channel_relay)(struct vmm *vmm, const char *name, const char *channel, int listen_fd,
                         struct qerr *err);
};

struct vmm {
    const struct vmm_backend *backend;
    char uri[1024];
    bool offline;
    bool connected;
    unsigned connects;          /* how many connections were opened */
    void *priv;
};

void vmm_init(struct vmm *vmm, const struct qubes_config *cfg);
void vmm_close(struct vmm *vmm);
/* Loads the backend the URI asks for without connecting: a process that
 * forks workers loads it once for all of them (each connects itself). */
int vmm_load(struct vmm *vmm, struct qerr *err);
/* Fails in offline mode; otherwise connects if not yet connected. */
int vmm_require(struct vmm *vmm, struct qerr *err);
int vmm_domain_state(struct vmm *vmm, const char *name, enum qvm_power *out, struct qerr *err);
int vmm_list_domains(struct vmm *vmm, struct vmm_domain **out, size_t *n, struct qerr *err);
/* Details of one domain: Halted with id -1 when it does not exist (and in
 * offline mode). The caller frees out->name. */
int vmm_domain_info(struct vmm *vmm, const char *name, struct vmm_domain *out, struct qerr *err);
/* These fail in offline mode. */
int vmm_create(struct vmm *vmm, const char *xml, struct qerr *err);
/* Starts the domain `spec` describes, in the backend's own terms. */
int vmm_create_spec(struct vmm *vmm, const struct domain_spec *spec, struct qerr *err);
int vmm_destroy(struct vmm *vmm, const char *name, struct qerr *err);
int vmm_suspend(struct vmm *vmm, const char *name, struct qerr *err);
int vmm_resume(struct vmm *vmm, const char *name, struct qerr *err);
int vmm_host_info(struct vmm *vmm, struct vmm_host *out, struct qerr *err);
int vmm_save(struct vmm *vmm, const char *name, const char *path, struct qerr *err);
int vmm_restore(struct vmm *vmm, const char *path, struct qerr *err);
int vmm_set_memory(struct vmm *vmm, const char *name, unsigned long kib, struct qerr *err);
void vmm_domains_free(struct vmm_domain *d, size_t n);
/* Shared-memory DispVMs, see struct vmm_backend. vmm_shares_memory is 0
 * when offline, on a backend without them, or when the connection fails. */
int vmm_shares_memory(struct vmm *vmm);
int vmm_save_device_state(struct vmm *vmm, const char *name, const char *path, struct qerr *err);
int vmm_restore_device_state(struct vmm *vmm, const char *xml, const char *path, long long offset,
                             struct qerr *err);
int vmm_domain_pid(struct vmm *vmm, const char *name);
/* Sets the scheduling priority (a nice value) of every thread of the
 * domain's emulator, where vmm_domain_pid knows it (threads it makes
 * later take their maker's); returns how many threads, 0 when the
 * process is unknown (another host, another backend) or gone. */
int vmm_domain_nice(struct vmm *vmm, const char *name, int nice, struct qerr *err);
/* See struct vmm_backend; fails in offline mode. */
int vmm_network_ensure(struct vmm *vmm, const char *name, struct qerr *err);
/* See struct vmm_backend: storage pools and volumes on the connection's
 * host; an error naming the backend where it has none. */
int vmm_pool_ensure(struct vmm *vmm, const char *pool, const char *path, struct qerr *err);
int vmm_volume_upload(struct vmm *vmm, const char *pool, const char *name, const char *src,
                      unsigned long long size, unsigned long long *sent, struct qerr *err);
int vmm_volume_delete(struct vmm *vmm, const char *pool, const char *name, struct qerr *err);
int vmm_volume_path(struct vmm *vmm, const char *pool, const char *name, char *out, size_t len,
                    struct qerr *err);
int vmm_volume_layer(struct vmm *vmm, const char *pool, const char *name, const char *backing,
                     struct qerr *err);
int vmm_volume_clone(struct vmm *vmm, const char *pool, const char *name, const char *from,
                     const char *from_fmt, struct qerr *err);
int vmm_volume_read(struct vmm *vmm, const char *pool, const char *name, unsigned long long offset,
                    void *buf, size_t len, size_t *got, struct qerr *err);
int vmm_volume_write(struct vmm *vmm, const char *pool, const char *name,
                     unsigned long long offset, const void *buf, size_t len, struct qerr *err);
int vmm_volume_names(struct vmm *vmm, const char *pool, char ***names, size_t *n,
                     struct qerr *err);
void vmm_names_free(char **names, size_t n);
int vmm_volume_stamp(struct vmm *vmm, const char *pool, const char *name, char *out, size_t len,
                     struct qerr *err);
/* Serves a domain's channel on `listen_fd` until the domain stops (see
 * struct vmm_backend); `vmm` not yet connected. */
int vmm_channel_relay(struct vmm *vmm, const char *name, const char *channel, int listen_fd,
                      struct qerr *err);
/* Block devices of a running domain (see struct vmm_backend), in libvirt's
 * domain XML: every disk of the domain `name` with its backing chain
 * (none, and 0, when the domain does not run); free with vmm_disks_free.
 * Fail offline, and on backends that cannot hot-plug. */
int vmm_domain_disks(struct vmm *vmm, const char *name, struct vmm_disk **out, size_t *n,
                     struct qerr *err);
void vmm_disks_free(struct vmm_disk *d, size_t n);
/* Hot-plugs a raw virtio disk into the running domain (not its persistent
 * definition). On the local qemu:///system, a file QEMU's user could not
 * reach is named first (qemulator_reaches). */
int vmm_attach_disk(struct vmm *vmm, const char *name, const struct vmm_disk_spec *d,
                    struct qerr *err);
/* Asks the running domain to let the disk d->target go; the caller waits
 * (vmm_domain_disks) for it to be gone. */
int vmm_detach_disk(struct vmm *vmm, const char *name, const struct vmm_disk_spec *d,
                    struct qerr *err);
/* The translations, for the tests: the disks of a libvirt domain
 * description, and the <disk> element of a spec (malloc'ed). */
int vmm_disks_from_xml(const char *xml, struct vmm_disk **out, size_t *n, struct qerr *err);
char *vmm_disk_xml(const struct vmm_disk_spec *d, struct qerr *err);

/* Kills the domain at once where the backend can, else destroys it when it
 * runs (one that is not there is no error). */
int vmm_kill_or_destroy(struct vmm *vmm, const char *name, struct qerr *err);
/* 0 when domains run on this host and use its devices (bridges); 1 for
 * libvirt's test driver, whose domains are simulated in the client. */
int vmm_is_test_driver(const struct vmm *vmm);

/* The symbol a backend object exports: a `const struct vmm_backend`. */
#define VMM_BACKEND_SYMBOL "qubes_vmm_backend"
#define VMM_LIBVIRT_PLUGIN "qubes-vmm-libvirt.so"
/* Xen through libxl directly: QUBES_VMM_URI "libxl://" (built when
 * pkg-config finds xenlight). */
#define VMM_LIBXL_PLUGIN "qubes-vmm-libxl.so"
#define VMM_LIBXL_URI_PREFIX "libxl:"

/* The directory backend objects are loaded from ($QUBES_VMM_PLUGIN_DIR,
 * else ../lib/qubes-orchestrator/ next to the running program). */
int vmm_plugin_dir(char *out, size_t len, struct qerr *err);
/* For --version: which backend objects this installation has, e.g.
 * "libvirt, libxl" or "libvirt (libxl: not built)". */
void vmm_backends_available(char *out, size_t len);

#endif
