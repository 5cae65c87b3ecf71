/* qvm-kill: Stop a VM at once (its domain is destroyed). */
#include "../lifecycle.h"
#include "tool.h"

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    return tool_vm_op_main(argc, argv, "qvm-kill", "Stop a VM at once (its domain is destroyed).", qubes_vm_kill);
}
