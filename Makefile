# The VM orchestrator: a library (orchestrator/, storage/, templates/, qrexec/,
# dispvm/) and thin command-line tools over it.
#
#   make            tools in build/bin/
#   make check      installs missing packages (as root), runs every test
#                   against a sanitizer build (build/san/)
#   make demo       template HVM and child on libvirt, narrated (installs libvirt)
#   make bench      figures, printed: the database and its locks, cold starts,
#                   DispVMs against them (bench/bench_dispvm.c), qrexec
#   make fuzz       the loader, the savefile reader and the agent relay under
#                   libFuzzer, FUZZ_SECONDS each (default 60)
#   make install    PREFIX (default /usr/local) and DESTDIR: what the Debian
#                   package holds (debian/); make uninstall removes it
#   make man        the manual pages in build/man/ (help2man over --help)
#   make package    the Debian packages, in build/package/
#   make vmm-up     a libvirt daemon at QUBES_VMM_URI, started if none answers
#   make host2-up   a second one, another host for the tests (mk/host2-up.sh)
#   make guest      the test guest in build/guest/

PREFIX ?= /usr/local
DESTDIR ?=
CC ?= cc
FUZZ_SECONDS ?= 60
.DEFAULT_GOAL := all

# The library and tools need libxml2; only the libvirt backend, a shared
# object loaded at the first hypervisor call, links libvirt.
PKG_CFLAGS = $(shell pkg-config --cflags libxml-2.0 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs libxml-2.0 2>/dev/null)
VIRT_CFLAGS = $(shell pkg-config --cflags libvirt libvirt-qemu 2>/dev/null)
VIRT_LIBS = $(shell pkg-config --libs libvirt libvirt-qemu 2>/dev/null)
PLUGIN := lib/qubes-orchestrator/qubes-vmm-libvirt.so
# The database work of qrexec-daemon, which links no XML parser
# (qrexec/daemon.h), beside the backends.
QREXECD_DB := lib/qubes-orchestrator/qrexec-daemon-db
PLUGIN_SRCS := orchestrator/vmm_libvirt.c orchestrator/error.c orchestrator/timing.c

# The libxl backend (Xen without libvirt) is built when pkg-config finds
# xenlight (Debian: libxen-dev); LIBXL=no leaves it out, LIBXL=yes insists.
LIBXL ?= auto
ifneq ($(LIBXL),no)
HAVE_XL := $(shell pkg-config --exists xenlight xentoollog 2>/dev/null && echo yes)
ifeq ($(LIBXL)$(HAVE_XL),yes)
$(error LIBXL=yes but pkg-config finds no xenlight: install libxen-dev)
endif
endif
XL_CFLAGS = $(shell pkg-config --cflags xenlight xentoollog 2>/dev/null)
XL_LIBS = $(shell pkg-config --libs xenlight xentoollog 2>/dev/null)
XL_PLUGIN := lib/qubes-orchestrator/qubes-vmm-libxl.so
XL_PLUGIN_SRCS := orchestrator/vmm_libxl.c orchestrator/libxl_config.c orchestrator/error.c \
                  orchestrator/util.c orchestrator/ifconf.c
# Its translation's test, built only with it.
XL_TEST_SRCS := tests/unit/test_libxl_config.c orchestrator/libxl_config.c

WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral -Wno-format-truncation
BASE_CFLAGS := -std=gnu11 -D_GNU_SOURCE $(WARN) -I. -g
OPT_CFLAGS := -O2 -fstack-protector-strong -D_FORTIFY_SOURCE=2
SAN_CFLAGS := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all

LIB_SRCS := $(filter-out orchestrator/vmm_libvirt.c orchestrator/vmm_libxl.c orchestrator/libxl_config.c,\
              $(wildcard orchestrator/*.c storage/*.c templates/*.c dispvm/*.c qrexec/*.c))
TOOL_SRCS := $(wildcard orchestrator/tools/*.c)
TOOLS := $(notdir $(TOOL_SRCS:.c=))
UNIT_SRCS := $(filter-out tests/unit/test_libxl_config.c,$(wildcard tests/unit/*.c))
HELPER_SRCS := $(wildcard tests/helpers/*.c)
# bench_util.c is what the benchmarks share, linked into each.
BENCH_SRCS := $(filter-out bench/bench_util.c,$(wildcard bench/*.c))
HDRS := $(wildcard orchestrator/*.h orchestrator/tools/*.h storage/*.h templates/*.h \
                   dispvm/*.h qrexec/*.h guest/*.h tests/*.h)

# One variant per build directory: B is the directory, VCFLAGS its flags.
define variant
$(1)/obj/%.o: %.c $$(HDRS) | deps
	@mkdir -p $$(dir $$@)
	$$(CC) $$(BASE_CFLAGS) $(2) $$(PKG_CFLAGS) -c $$< -o $$@

$(1)/libqubes.a: $$(addprefix $(1)/obj/,$$(LIB_SRCS:.c=.o))
	@rm -f $$@
	ar rcs $$@ $$^

$(1)/$(PLUGIN): $(PLUGIN_SRCS) $$(HDRS) | deps
	@mkdir -p $$(dir $$@)
	$$(CC) $$(BASE_CFLAGS) $(2) -fPIC -shared $$(VIRT_CFLAGS) $(PLUGIN_SRCS) $$(VIRT_LIBS) $$(LDFLAGS) -o $$@

$(1)/$(XL_PLUGIN): $(XL_PLUGIN_SRCS) $$(HDRS) | deps
	@mkdir -p $$(dir $$@)
	$$(CC) $$(BASE_CFLAGS) $(2) -fPIC -shared $$(XL_CFLAGS) $(XL_PLUGIN_SRCS) $$(XL_LIBS) $$(LDFLAGS) -o $$@

$(1)/tests/test_libxl_config: $(XL_TEST_SRCS) $$(HDRS) $(1)/libqubes.a | deps
	@mkdir -p $$(dir $$@)
	$$(CC) $$(BASE_CFLAGS) $(2) $$(XL_CFLAGS) $(XL_TEST_SRCS) $(1)/libqubes.a $$(PKG_LIBS) \
	    $$(XL_LIBS) $(3) -o $$@

# --as-needed: a tool that parses no XML (qfile-daemon-dvm) does not load
# libxml2 and what it pulls in at every start.
$(1)/bin/%: $(1)/obj/orchestrator/tools/%.o $(1)/libqubes.a
	@mkdir -p $$(dir $$@)
	$$(CC) $(2) $$^ -Wl,--as-needed $$(PKG_LIBS) $(3) $$(LDFLAGS) -o $$@

$(1)/$(QREXECD_DB): $(1)/obj/qrexec/helper/qrexec-daemon-db.o $(1)/libqubes.a
	@mkdir -p $$(dir $$@)
	$$(CC) $(2) $$^ $$(PKG_LIBS) $(3) $$(LDFLAGS) -o $$@

$(1)/tests/%: $(1)/obj/tests/unit/%.o $(1)/libqubes.a
	@mkdir -p $$(dir $$@)
	$$(CC) $(2) $$^ $$(PKG_LIBS) $(3) -o $$@

$(1)/helpers/%: $(1)/obj/tests/helpers/%.o $(1)/libqubes.a
	@mkdir -p $$(dir $$@)
	$$(CC) $(2) $$^ $$(PKG_LIBS) $(3) -o $$@

$(1)/bench/%: $(1)/obj/bench/%.o $(1)/obj/bench/bench_util.o $(1)/libqubes.a
	@mkdir -p $$(dir $$@)
	$$(CC) $(2) $$^ $$(PKG_LIBS) $(3) -o $$@

$$(addprefix $(1)/obj/,$$(BENCH_SRCS:.c=.o) bench/bench_util.o): bench/bench_util.h
endef

# ASan intercepts the XDR functions libvirt's client uses; it can only find
# the real ones if libtirpc is loaded at start-up, not later with the backend.
SAN_LDFLAGS := -Wl,--no-as-needed -l:libtirpc.so.3 -Wl,--as-needed

$(eval $(call variant,build,$(OPT_CFLAGS),))
$(eval $(call variant,build/san,$(SAN_CFLAGS),$(SAN_LDFLAGS)))

TOOL_BINS := $(addprefix build/bin/,$(TOOLS)) build/$(PLUGIN) build/$(QREXECD_DB)
SAN_BINS := $(addprefix build/san/bin/,$(TOOLS)) build/san/$(PLUGIN) build/san/$(QREXECD_DB) \
            $(addprefix build/san/tests/,$(notdir $(UNIT_SRCS:.c=))) \
            $(addprefix build/san/helpers/,$(notdir $(HELPER_SRCS:.c=)))
ifeq ($(HAVE_XL),yes)
TOOL_BINS += build/$(XL_PLUGIN)
SAN_BINS += build/san/$(XL_PLUGIN) build/san/tests/test_libxl_config
else
# A backend left by an earlier build with xenlight would outlive this
# build's choice (and --version would still list it).
STALE_XL := $(wildcard build/$(XL_PLUGIN) build/san/$(XL_PLUGIN) build/san/tests/test_libxl_config)
ifneq ($(STALE_XL),)
TOOL_BINS += drop-stale-libxl
SAN_BINS += drop-stale-libxl
endif
endif
OPT_TEST_BINS := $(addprefix build/helpers/,$(notdir $(HELPER_SRCS:.c=))) \
                 $(addprefix build/bench/,$(notdir $(BENCH_SRCS:.c=)))

.PHONY: drop-stale-libxl
drop-stale-libxl:
	@rm -f $(STALE_XL)

.PHONY: all tools deps san check demo bench fuzz install uninstall man package clean vmm-up host2-up guest
.SECONDARY:

# After deps, in a new make: what deps installs (libxen-dev) decides what
# is built, and this make read pkg-config before.
all: deps
	@$(MAKE) --no-print-directory tools

tools: $(TOOL_BINS)

deps:
	@mk/deps.sh build

# The test guest: a Debian cloud kernel, busybox and our agent, in
# build/guest/ (root.img, kernel/vmlinuz, kernel/initramfs).
guest: build/guest/root.img

build/guest/qubes-agent: guest/qubes-agent.c guest/protocol.h qrexec/mux.c qrexec/mux.h \
                         orchestrator/ifconf.c orchestrator/ifconf.h | deps
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -O2 -static guest/qubes-agent.c qrexec/mux.c orchestrator/ifconf.c -o $@

# What programs in the guest call services with (its relay is the mux's).
build/guest/qrexec-client-vm: guest/qrexec-client-vm.c guest/protocol.h qrexec/mux.c \
                              qrexec/mux.h | deps
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -O2 -static guest/qrexec-client-vm.c qrexec/mux.c -o $@

# The DNS server of a NetVM or ProxyVM guest (busybox has none).
build/guest/qubes-dnsd: guest/qubes-dnsd.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -O2 -static guest/qubes-dnsd.c -o $@

build/guest/root.img: build/guest/qubes-agent build/guest/qrexec-client-vm build/guest/qubes-dnsd \
                      guest/build-image.sh guest/initramfs/init guest/rootfs/init \
                      $(wildcard guest/rootfs/qubes-rpc/*) $(wildcard guest/rootfs/bin/*)
	guest/build-image.sh build/guest build/guest/qubes-agent build/guest/qrexec-client-vm \
	    build/guest/qubes-dnsd

# A libvirt daemon at QUBES_VMM_URI (started when none answers).
vmm-up:
	@mk/vmm-up.sh

# A second libvirt daemon standing for another host (mk/host2-up.sh): its
# own mount namespace, qemu+tcp://127.0.0.2:16510/system, no authentication.
host2-up:
	@mk/host2-up.sh

san: $(SAN_BINS)

# The tests run the sanitizer build; QUBES_TEST_BIN and friends tell them where.
check: deps
	@mk/deps.sh package
	$(MAKE) san guest
	@if [ "$$(id -u)" = 0 ]; then mk/vmm-up.sh; \
	 else echo "not root: no libvirt daemon, the end-to-end tests will be skipped"; fi
	QUBES_TEST_BIN=$(CURDIR)/build/san/bin QUBES_TEST_UNIT=$(CURDIR)/build/san/tests \
	QUBES_TEST_HELPERS=$(CURDIR)/build/san/helpers \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	prove -v tests/t/

demo: all guest vmm-up
	demo/run.sh $(CURDIR)/build/bin $(CURDIR)/build/guest

bench: all guest vmm-up $(OPT_TEST_BINS)
	bench/run.sh $(CURDIR)/build

# Each target for FUZZ_SECONDS: the qubes.xml loader, a savefile's header
# and domain XML, the host's side of the agent protocol.
FUZZERS := fuzz_load fuzz_savefile fuzz_agent
fuzz:
	@mk/deps.sh fuzz
	$(MAKE) $(addprefix build/fuzz/,$(FUZZERS))
	mkdir -p $(addprefix build/fuzz/corpus-,$(FUZZERS))
	cp tests/corpus/*.xml ../shared/fixtures/*.xml build/fuzz/corpus-fuzz_load/ 2>/dev/null || true
	cp tests/fuzz/savefile.seed build/fuzz/corpus-fuzz_savefile/
	cp tests/fuzz/agent.seed build/fuzz/corpus-fuzz_agent/
	for f in $(FUZZERS); do \
	    build/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=20 \
	        $$([ $$f = fuzz_load ] && echo -dict=tests/fuzz/qubes.dict) \
	        -artifact_prefix=build/fuzz/$$f- -print_final_stats=1 build/fuzz/corpus-$$f || exit 1; \
	done

build/fuzz/%: tests/fuzz/%.c $(LIB_SRCS) $(HDRS)
	@mkdir -p $(dir $@)
	clang $(BASE_CFLAGS) -Wno-unknown-warning-option -O1 -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) \
	    $< $(LIB_SRCS) $(PKG_LIBS) -o $@

# What `make install` puts where; the Debian package holds the same files
# (debian/rules runs it). The tools find their backends in
# PREFIX/lib/qubes-orchestrator and each other in PREFIX/bin, so both move
# with PREFIX together.
VERSION := $(shell sed -n 's/^\#define QUBES_VERSION "\(.*\)"/\1/p' orchestrator/tools/tool.h)
UNITDIR ?= $(PREFIX)/lib/systemd/system
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
QDIR := $(DESTDIR)$(PREFIX)
GUEST_BINS := qubes-agent qrexec-client-vm qubes-dnsd
GUEST_FILES := build-image.sh initramfs/init rootfs/init $(patsubst guest/%,%,$(wildcard \
               guest/rootfs/bin/* guest/rootfs/qubes-rpc/*))
UNITS := $(notdir $(basename $(wildcard dist/systemd/*.service.in)))

# The manual pages: help2man over each tool's --help, with the sections of
# dist/man/ (files, environment).
man: build/man/.done
build/man/.done: $(addprefix build/bin/,$(TOOLS)) $(wildcard dist/man/*.h2m) dist/man/mkman.sh
	@rm -rf build/man
	dist/man/mkman.sh build/bin build/man $(VERSION)
	@touch $@

install: all man $(addprefix build/guest/,$(GUEST_BINS))
	install -d $(QDIR)/bin $(QDIR)/lib/qubes-orchestrator/guest \
	    $(QDIR)/share/qubes-orchestrator/guest/initramfs \
	    $(QDIR)/share/qubes-orchestrator/guest/rootfs/bin \
	    $(QDIR)/share/qubes-orchestrator/guest/rootfs/qubes-rpc \
	    $(QDIR)/share/man/man1 $(QDIR)/share/bash-completion/completions \
	    $(DESTDIR)$(UNITDIR) $(DESTDIR)$(TMPFILESDIR)
	install -m 0755 $(addprefix build/bin/,$(TOOLS)) $(QDIR)/bin/
	install -m 0644 build/$(PLUGIN) $(QDIR)/$(PLUGIN)
	install -m 0755 build/$(QREXECD_DB) $(QDIR)/$(QREXECD_DB)
	$(if $(HAVE_XL),install -m 0644 build/$(XL_PLUGIN) $(QDIR)/$(XL_PLUGIN))
	install -m 0755 $(addprefix build/guest/,$(GUEST_BINS)) $(QDIR)/lib/qubes-orchestrator/guest/
	for f in $(GUEST_FILES); do \
	    install -m 0755 guest/$$f $(QDIR)/share/qubes-orchestrator/guest/$$f || exit 1; done
	for t in $(TOOLS); do \
	    gzip -9n < build/man/$$t.1 > $(QDIR)/share/man/man1/$$t.1.gz && \
	    chmod 0644 $(QDIR)/share/man/man1/$$t.1.gz || exit 1; done
	install -m 0644 dist/bash-completion/qvm $(QDIR)/share/bash-completion/completions/qvm
	for t in $(TOOLS); do ln -sf qvm $(QDIR)/share/bash-completion/completions/$$t || exit 1; done
	for u in $(UNITS); do \
	    sed -e 's|@BINDIR@|$(PREFIX)/bin|g' -e 's|@BASEDIR@|/var/lib/qubes|g' \
	        dist/systemd/$$u.in > $(DESTDIR)$(UNITDIR)/$$u && \
	    chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; done
	install -m 0644 dist/tmpfiles.d/qubes-orchestrator.conf $(DESTDIR)$(TMPFILESDIR)/
	@[ -n "$(DESTDIR)" ] || echo "installed; then: systemd-tmpfiles --create qubes-orchestrator.conf;" \
	    "systemctl daemon-reload; systemctl enable $(UNITS)"

uninstall:
	rm -f $(addprefix $(QDIR)/bin/,$(TOOLS)) \
	    $(addprefix $(QDIR)/share/man/man1/,$(addsuffix .1.gz,$(TOOLS))) \
	    $(addprefix $(QDIR)/share/bash-completion/completions/,qvm $(TOOLS)) \
	    $(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS)) $(DESTDIR)$(TMPFILESDIR)/qubes-orchestrator.conf
	rm -rf $(QDIR)/lib/qubes-orchestrator $(QDIR)/share/qubes-orchestrator

# The Debian packages (debian/), built from a copy of the tree in
# build/package/ (dpkg-buildpackage writes beside its source directory).
package:
	@mk/deps.sh package
	rm -rf build/package && mkdir -p build/package/src
	git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t build/package/src
	cd build/package/src && dpkg-buildpackage -us -uc -b
	@ls build/package/*.deb

clean:
	rm -rf build
