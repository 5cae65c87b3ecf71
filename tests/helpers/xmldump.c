/* Prints every attribute of every element of an XML file, one sorted line
 * each: "ELEMENT[name] attr=value". Read with libxml2 alone, independently
 * of the project's loader, so the tests can compare what a save kept. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: xmldump FILE\n");
        return 2;
    }
    xmlDocPtr doc = xmlReadFile(argv[1], NULL, XML_PARSE_NONET);
    if (!doc)
        return 1;
    size_t n = 0, cap = 1024;
    char **lines = malloc(cap * sizeof *lines);
    xmlNode *root = xmlDocGetRootElement(doc);
    for (xmlNode *node = root; node; node = node == root ? root->children : node->next) {
        if (node->type != XML_ELEMENT_NODE)
            continue;
        xmlChar *name = xmlGetProp(node, (const xmlChar *)"name");
        for (xmlAttr *a = node->properties; a; a = a->next) {
            xmlChar *v = xmlNodeListGetString(doc, a->children, 1);
            if (n == cap)
                lines = realloc(lines, (cap *= 2) * sizeof *lines);
            if (asprintf(&lines[n++], "%s[%s] %s=%s", (const char *)node->name,
                         name ? (const char *)name : "", (const char *)a->name,
                         v ? (const char *)v : "") < 0)
                return 1;
            xmlFree(v);
        }
        xmlFree(name);
    }
    qsort(lines, n, sizeof *lines, cmp);
    for (size_t i = 0; i < n; i++) {
        puts(lines[i]);
        free(lines[i]);
    }
    free(lines);
    xmlFreeDoc(doc);
    return 0;
}
