/* libFuzzer target for what a DispVM restore reads from a savefile: its
 * header (dispvm/savefile.h), the domain XML it carries, rewritten under a
 * DispVM's identity (into a new file, and into a header of the same size,
 * as a savefile on another host is), and the RAM file it names
 * (dispvm/shmem.h). The same bytes as a header alone, in memory. Whatever
 * is read must make sense (nothing past what the header holds) and rewrite
 * without a crash; a RAM file named must be in the shared-memory
 * directory.
 *
 *   make fuzz FUZZ_SECONDS=300
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../dispvm/savefile.h"
#include "../../dispvm/shmem.h"
#include "../../orchestrator/runtime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    static int fd = -1;
    if (fd < 0) {
        fd = memfd_create("savefile", 0);
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    struct savefile_info si;
    struct qerr err;
    size_t need;
    if (savefile_parse_header(data, size, &si, &err) == 0) {
        if (savefile_header_size(data, size, &need, &err) < 0 || need > size ||
            strlen(si.xml) > si.data_len || strlen(si.cookie) > si.data_len)
            abort();
        savefile_info_free(&si);
    }
    if (savefile_read(path, &si, &err) < 0)
        return 0;
    char ram[4096];
    if (dispvm_ram_of_xml(si.xml, ram, sizeof ram) == 0 && ram[0] &&
        strncmp(ram, QRT_SHM_DIR "/", strlen(QRT_SHM_DIR) + 1) != 0)
        abort();
    struct savefile_identity id = {
        .name = "disp1", .uuid = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
        .disks = { "/run/qubes/vms/disp1/root.qcow2", "/run/qubes/vms/disp1/private.qcow2" },
        .formats = { "qcow2", "qcow2" }, .ndisks = 2,
        .agent_socket = "/run/qubes/vms/disp1/agent.sock",
        .serial_log = "/run/qubes/vms/disp1/console.log", .mac = "00:16:3e:7c:8b:01",
        .private_ram = true,
    };
    if (si.stream_offset >= si.size || si.cookie_offset > si.data_len ||
        strlen(si.xml) > si.data_len || strlen(si.cookie) > si.data_len)
        abort();        /* a header read past what it holds */
    free(savefile_domain_xml(si.xml, &id, &err));
    void *h = NULL;
    size_t hlen = 0;
    if (savefile_header_as(&si, &id, &h, &hlen, &err) == 0 &&
        hlen != (size_t)si.stream_offset)
        abort();        /* a header in place must keep the stream where it is */
    free(h);
    savefile_info_free(&si);
    return 0;
}
