/* PLACEHOLDER (client helper replaces this file) */
#include <stdio.h>
#include "cli.h"
int cmd_put(int argc, char **argv) { fprintf(stderr, "not built yet\n"); return 1; }
int cmd_get(int argc, char **argv) { fprintf(stderr, "not built yet\n"); return 1; }
int cmd_ls(int argc, char **argv) { fprintf(stderr, "not built yet\n"); return 1; }
int cmd_history(int argc, char **argv) { fprintf(stderr, "not built yet\n"); return 1; }
int cmd_rm(int argc, char **argv) { fprintf(stderr, "not built yet\n"); return 1; }
