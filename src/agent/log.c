/*
 * log.c - see log.h.  One fprintf per line, so lines of several threads
 * or processes sharing the stream do not interleave mid-line.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int max_level = AG_LOG_INFO;

void ag_log_set_level(int level)
{
	max_level = level;
}

int ag_log_level_from_name(const char *name)
{
	if (strcmp(name, "error") == 0)
		return AG_LOG_ERROR;
	if (strcmp(name, "warn") == 0 || strcmp(name, "warning") == 0)
		return AG_LOG_WARN;
	if (strcmp(name, "info") == 0)
		return AG_LOG_INFO;
	if (strcmp(name, "debug") == 0)
		return AG_LOG_DEBUG;
	return -1;
}

static const char *level_name(int level)
{
	switch (level) {
	case AG_LOG_ERROR: return "error";
	case AG_LOG_WARN: return "warning";
	case AG_LOG_INFO: return "info";
	default: return "debug";
	}
}

void ag_log(int level, const char *fmt, ...)
{
	char msg[1536];
	va_list ap;

	if (level > max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (getenv("JOURNAL_STREAM") != NULL)
		fprintf(stderr, "<%d>coffer agent: %s: %s\n", level,
			level_name(level), msg);
	else
		fprintf(stderr, "coffer agent: %s: %s\n", level_name(level), msg);
}
