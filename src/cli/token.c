/* PLACEHOLDER (client helper replaces this file) */
#include <stdio.h>
#include "cli.h"
int cmd_token(int argc, char **argv) { fprintf(stderr, "coffer token: not built yet\n"); return 1; }
