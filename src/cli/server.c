/* PLACEHOLDER (server helper replaces this file) */
#include <stdio.h>
#include "cli.h"
int cmd_server(int argc, char **argv) { fprintf(stderr, "coffer server: not built yet\n"); return 1; }
