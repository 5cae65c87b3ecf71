/* Prints a file's extended attribute NAME (as the tests have no getfattr):
 * its value and a newline, status 0; status 1 when the file has none. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: getxattr NAME FILE\n");
        return 2;
    }
    char v[4096];
    ssize_t n = getxattr(argv[2], argv[1], v, sizeof v - 1);
    if (n < 0) {
        if (errno == ENODATA)
            return 1;
        fprintf(stderr, "getxattr: %s: %s\n", argv[2], strerror(errno));
        return 2;
    }
    v[n] = '\0';
    printf("%s\n", v);
    return 0;
}
