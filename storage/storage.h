/* VM images and directories: sparse files, sparse copies, removal. */
#ifndef QUBES_STORAGE_H
#define QUBES_STORAGE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../orchestrator/error.h"

#define STORAGE_PRIVATE_SIZE (2ULL << 30)       /* a fresh private.img: 2 GiB */
#define STORAGE_HVM_ROOT_SIZE (20ULL << 30)     /* a fresh HVM root.img: 20 GiB */
#define STORAGE_PV_ROOT_SIZE (10ULL << 30)

/* A new sparse file of `size` bytes; fails if `path` exists. */
int storage_create_sparse(const char *path, uint64_t size, struct qerr *err);
/* Copies src to a new file dst, keeping holes: a reflink where the file
 * system offers one, else copy_file_range over the data extents only.
 * Written under a temporary name and renamed, so dst is whole or absent. */
int storage_copy_sparse(const char *src, const char *dst, struct qerr *err);
/* How far a copy has come: `done` of `total` bytes of the source's data
 * (its holes are neither copied nor counted). Called with done 0 before
 * anything is copied, after each step of at most STORAGE_COPY_STEP bytes,
 * and with done == total once all is copied. A nonzero return stops the
 * copy, which then fails with ECANCELED and leaves no file. */
typedef int (*storage_progress_fn)(void *ctx, uint64_t done, uint64_t total);
#define STORAGE_COPY_STEP (16ULL << 20)
/* storage_copy_sparse telling `fn` (with `ctx`; NULL for none) how far it
 * has come. *reflinked (when not NULL) says whether the copy is a reflink:
 * it shares the source's blocks, and nothing was copied. */
int storage_copy_sparse_progress(const char *src, const char *dst, storage_progress_fn fn,
                                 void *ctx, bool *reflinked, struct qerr *err);
/* Copies `len` bytes from in at *in_off to out at its current offset:
 * copy_file_range where the kernel can (same file system), else read and
 * write. Advances *in_off. */
int storage_copy_range(int in, off_t *in_off, int out, off_t len);
/* Renames src to dst, copying (then removing src) across file systems. */
int storage_move(const char *src, const char *dst, struct qerr *err);
/* A new qcow2 copy-on-write layer `layer` over `backing` (read-only, of
 * format `backing_fmt`, "raw" or "qcow2"), by qemu-img; mode 0600. */
int storage_create_layer(const char *backing, const char *backing_fmt, const char *layer,
                         struct qerr *err);
/* Points the layer at another backing file of the same contents (its
 * name only: nothing is read or checked), by qemu-img. */
int storage_rebase_layer(const char *layer, const char *backing, const char *backing_fmt,
                         struct qerr *err);
/* A backing file no one but its owner may write: group and other write
 * bits go (a regular file, not followed through a link). */
int storage_backing_readonly(const char *path, struct qerr *err);
/* The backing file a qcow2 image's header names: its path in `path` (a
 * relative name is taken from the image's directory) and its format in
 * `fmt` ("" when the header names none). 0; 1 when the image has no
 * backing file (path ""); -1 when it cannot be read or is not qcow2. */
int storage_qcow2_backing(const char *image, char *path, size_t len, char *fmt, size_t fmtlen,
                          struct qerr *err);
/* A new layer `dst` (mode 0600, created exclusively) as a copy of the
 * empty layer `empty` made ahead by storage_create_layer: the same file a
 * qemu-img run would make, without the process. Not fsync'ed: a layer of a
 * running VM means nothing after the host restarts. */
int storage_clone_layer(const char *empty, const char *dst, struct qerr *err);
/* Removes a directory tree without following symbolic links. */
int storage_remove_tree(const char *dir, struct qerr *err);

#endif
