/* A VM's description (struct domain_spec) as a libxl domain configuration:
 * the libxl backend's counterpart of domain_xml(). Kept apart from the
 * backend so that it can be tested on a host without Xen. */
#ifndef QUBES_LIBXL_CONFIG_H
#define QUBES_LIBXL_CONFIG_H

#include <libxl.h>

#include "domain.h"
#include "error.h"

/* The agent's channel, as the guest sees it named. */
#define QXL_AGENT_CHANNEL "org.qubes.agent.0"

/* Fills `out`, which the caller has initialised with
 * libxl_domain_config_init and disposes of with libxl_domain_config_dispose
 * whatever the outcome. Needs no libxl context: everything it allocates is
 * plain malloc, as the generated dispose functions expect. -1 with err when
 * the spec cannot be expressed (a memory file, a bad UUID or MAC). */
int qxl_config_from_spec(const struct domain_spec *s, libxl_domain_config *out,
                         struct qerr *err);

#endif
