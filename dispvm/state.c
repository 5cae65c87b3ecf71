#include "state.h"

#include "../orchestrator/hosts.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../orchestrator/runtime.h"
#include "../orchestrator/util.h"

int dispvm_template_find_on(struct qubes *q, const char *name, const char *host,
                            struct dispvm_template *t, struct qerr *err)
{
    struct qvm *tpl;
    if (host && (!*host || strcmp(host, QHOST_LOCAL) == 0))
        host = NULL;
    if (name) {
        if (!(tpl = qubes_find_vm(q, name, err)))
            return -1;
    } else {
        int qid = q->coll->globals[QG_DEFAULT_TEMPLATE];
        if (!(tpl = qid >= 0 ? qvm_collection_by_qid(q->coll, qid) : NULL))
            return qerr_set(err, "no default template: name one (qubes-prefs default-template)");
    }
    if (!qvm_class_is_template(tpl->cls))
        return qerr_set(err, "'%s' is a %s, not a template", tpl->name, qvm_class_label(tpl->cls));
    if (host && qhost_check_name(host, err) < 0)
        return -1;
    /* Its DispVMs' disks are layers over copies of its root there: one
     * sent from here (a template here), or its own (on that host; its
     * DispVMs go nowhere else). */
    if (host && qvm_host(tpl) && strcmp(qvm_host(tpl), host) != 0)
        return qerr_set(err, "'%s' lives on host '%s': its DispVMs cannot go to host '%s'",
                        tpl->name, qvm_host(tpl), host);
    if (!host && qvm_host(tpl))
        return qerr_set(err, "'%s' lives on host '%s': its DispVMs go there (--host %s)",
                        tpl->name, qvm_host(tpl), qvm_host(tpl));
    memset(t, 0, sizeof *t);
    int n = host ? snprintf(t->dvm, sizeof t->dvm, "%s-dvm-%s", tpl->name, host)
                 : snprintf(t->dvm, sizeof t->dvm, "%s-dvm", tpl->name);
    if (n >= (int)sizeof t->dvm)
        return qerr_set(err, "template name '%s' is too long for its '%s' VM", tpl->name,
                        host ? "-dvm-HOST" : "-dvm");
    snprintf(t->name, sizeof t->name, "%s", tpl->name);
    snprintf(t->host, sizeof t->host, "%s", host ? host : "");
    t->qid = tpl->qid;
    t->hvm = tpl->cls == QVM_TEMPLATE_HVM;
    t->memory_mib = qvm_get_int(tpl, "memory", 512);
    const struct qvm *dv = qvm_collection_by_name(q->coll, t->dvm);
    t->dvm_qid = dv ? dv->qid : -1;
    t->dvm_netvm_qid = dv ? dv->netvm_qid : -1;
    return dvmdata_of(&q->cfg, t->dvm, &t->set, err);
}

int dispvm_template_find(struct qubes *q, const char *name, struct dispvm_template *t,
                         struct qerr *err)
{
    return dispvm_template_find_on(q, name, NULL, t, err);
}

struct vmm *dispvm_template_vmm(struct qubes *q, const struct dispvm_template *t,
                               struct qerr *err)
{
    return qubes_host_vmm(q, t->host[0] ? t->host : NULL, err);
}

static struct qvm *by_qid_named(const struct qvm_collection *c, int qid, const char *name)
{
    struct qvm *vm = qid >= 0 ? qvm_collection_by_qid(c, qid) : NULL;
    return vm && strcmp(vm->name, name) == 0 ? vm : NULL;
}

struct qvm *dispvm_template_vm(const struct qvm_collection *c, const struct dispvm_template *t)
{
    return by_qid_named(c, t->qid, t->name);
}

struct qvm *dispvm_dvm_vm(const struct qvm_collection *c, const struct dispvm_template *t)
{
    return by_qid_named(c, t->dvm_qid, t->dvm);
}

int dispvm_preload_target(const struct qvm_collection *c)
{
    const char *v = qattrs_get(&c->root_attrs, "dispvm_preload");
    long n;
    return v && qparse_int(v, 0, QUBES_DISPVM_PRELOAD_MAX, &n) == 0 ? (int)n : 0;
}

void dispvm_state_init(struct dispvm_state *d, const struct dispvm_template *t,
                       const struct qvm_collection *c, const char *source, const char *label,
                       bool preload, FILE *progress)
{
    memset(d, 0, sizeof *d);
    d->tpl = t;
    d->preload = preload;
    d->progress = progress;
    d->dispid = -1;
    snprintf(d->host, sizeof d->host, "%s", t ? t->host : "");
    snprintf(d->source, sizeof d->source, "%s", source);
    const struct qvm *src = qvm_collection_by_name(c, source);
    d->source_qid = src ? src->qid : -1;
    /* A VM's DispVMs get its dispvm_netvm; dom0's (and preloads) T-dvm's
     * network, the one the savefile was made on. A savefile made without a
     * network has no interface to give them. */
    d->netvm_qid = t ? t->dvm_netvm_qid : -1;
    /* On another host, a DispVM has no network (networks are this host's). */
    if (t && t->host[0])
        d->netvm_qid = -1;
    else if (src && src->cls != QVM_ADMIN && t) {
        int want = qvm_dispvm_netvm(src);
        if (want >= 0 && t->dvm_netvm_qid < 0)
            qsay(progress, "warning: the DispVMs of %s have no network: %s was saved "
                 "without one (give it a netvm and run qvm-create-default-dvm again)",
                 src->name, t->dvm);
        else
            d->netvm_qid = want;
    }
    snprintf(d->label, sizeof d->label, "%s",
             label ? label : src && src->label ? src->label->name : "red");
}

int dispvm_state_name(struct dispvm_state *d, const struct qubes_config *cfg,
                      const struct qvm_collection *c, const char *name, int dispid,
                      struct qerr *err)
{
    struct {
        char *out;
        const char *file;
    } paths[] = {
        { d->rundir, NULL }, { d->agent_sock, QRT_AGENT_SOCK }, { d->qrexec_sock, QRT_QREXEC_SOCK },
        { d->owner, QRT_OWNER },
        { d->ram, QRT_RAM }, { d->console, QRT_CONSOLE }, { d->root_layer, QRT_ROOT_LAYER },
        { d->private_layer, QRT_PRIVATE_LAYER }, { d->clone, QRT_CLONE },
    };
    if (snprintf(d->name, sizeof d->name, "%s", name) >= (int)sizeof d->name)
        return qerr_set(err, "DispVM name '%s' is too long", name);
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
        if (qrt_vm_path(cfg, name, paths[i].file, paths[i].out, PATH_MAX, err) < 0)
            return -1;
    int netvm = d->tpl ? d->netvm_qid : -1;
    if (dispid < 0) {
        const struct qvm *vm = qvm_collection_by_name(c, name);
        if (!vm || vm->cls != QVM_DISP)
            return qerr_set(err, "'%s' is not a DispVM", name);
        dispid = vm->dispid;
        netvm = vm->netvm_qid;
        snprintf(d->host, sizeof d->host, "%s", qvm_host(vm) ? qvm_host(vm) : "");
    }
    d->dispid = dispid;
    return qnet_of_dispvm(c, name, netvm, dispid, &d->net, err);
}

void dispvm_state_unname(struct dispvm_state *d)
{
    size_t from = offsetof(struct dispvm_state, name);
    memset((char *)d + from, 0, sizeof *d - from);
    d->dispid = -1;
}

struct qvm *dispvm_source_vm(const struct qvm_collection *c, const struct dispvm_state *d)
{
    return by_qid_named(c, d->source_qid, d->source);
}

int dispvm_state_existing(struct dispvm_state *d, const struct qubes_config *cfg,
                          const struct qvm_collection *c, const char *name, struct qerr *err)
{
    memset(d, 0, sizeof *d);
    d->dispid = -1;
    struct qerr ignored;
    /* A teardown needs the paths; a network gone meanwhile does not stop it. */
    if (dispvm_state_name(d, cfg, c, name, -1, &ignored) < 0 && !d->rundir[0])
        return qerr_set(err, "%s", ignored.msg);
    d->has_domain = d->has_record = true;
    return 0;
}

int dispvm_own(const struct dispvm_state *d, struct qerr *err)
{
    return qrt_owner_write(d->owner, err);
}
