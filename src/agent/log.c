/*
 * log.c - see log.h.  One fprintf per line, so lines of several threads
 * or processes sharing the stream do not interleave mid-line.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int max_level = AG_LOG_INFO;

/*
 * Whether stderr is the journal's stream: JOURNAL_STREAM ("DEV:INO")
 * names it, and is only believed when it matches stderr itself (a child
 * with stderr redirected inherits the variable, not the stream).
 */
static int to_journal(void)
{
	static int known, yes;
	const char *env;
	unsigned long long dev, ino;
	struct stat sb;

	if (known)
		return yes;
	known = 1;
	env = getenv("JOURNAL_STREAM");
	yes = env != NULL && sscanf(env, "%llu:%llu", &dev, &ino) == 2 &&
	      fstat(STDERR_FILENO, &sb) == 0 &&
	      (unsigned long long)sb.st_dev == dev &&
	      (unsigned long long)sb.st_ino == ino;
	return yes;
}

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
	if (to_journal())
		fprintf(stderr, "<%d>coffer agent: %s: %s\n", level,
			level_name(level), msg);
	else
		fprintf(stderr, "coffer agent: %s: %s\n", level_name(level), msg);
}
