/* PLACEHOLDER (client helper replaces this file) */
#include <stdio.h>
#include "cli.h"
int cmd_agent(int argc, char **argv) { fprintf(stderr, "coffer agent: not built yet\n"); return 1; }
