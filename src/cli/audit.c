/* PLACEHOLDER (client helper replaces this file) */
#include <stdio.h>
#include "cli.h"
int cmd_audit(int argc, char **argv) { fprintf(stderr, "coffer audit: not built yet\n"); return 1; }
