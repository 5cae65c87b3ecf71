/* qvm-unpause: Resume a paused VM. */
#include "../lifecycle.h"
#include "tool.h"

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    return tool_vm_op_main(argc, argv, "qvm-unpause", "Resume a paused VM.", qubes_vm_unpause);
}
