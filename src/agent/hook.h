/*
 * hook.h - running reload commands (docs/AGENT.md "Reload").
 *
 * fork + execv of an argv (never a shell), standard input /dev/null,
 * standard output and error the agent's (so they reach its log), in a
 * process group of its own so a timeout kills the whole command.  The
 * child gets the agent's environment, which holds no secret.
 */
#ifndef CF_AGENT_HOOK_H
#define CF_AGENT_HOOK_H

#include "error.h"

/*
 * Runs argv[0] (an absolute path) with argv and waits at most timeout_s
 * seconds; then SIGTERM to its process group, and SIGKILL 2 s later.
 * *status is the wait status (WIFEXITED/WEXITSTATUS...).  Returns CF_OK
 * when the command ran and exited (whatever its status), CF_ERR_TIMEOUT
 * when it was killed for time, CF_ERR_IO when it could not be started
 * (the message names the program and errno's reason).
 */
cf_status ag_hook_run(char *const argv[], long timeout_s, int *status,
		      cf_error *err);

#endif
