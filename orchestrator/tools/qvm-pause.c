/* qvm-pause: Pause a running VM. */
#include "../lifecycle.h"
#include "tool.h"

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    return tool_vm_op_main(argc, argv, "qvm-pause", "Pause a running VM.", qubes_vm_pause);
}
