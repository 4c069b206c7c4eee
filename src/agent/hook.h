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

#include <signal.h>

#include "error.h"

/*
 * Runs argv[0] (an absolute path) with argv and waits at most timeout_s
 * seconds; then SIGTERM to its process group, and SIGKILL 2 s later.
 * *status is the wait status (WIFEXITED/WEXITSTATUS...).  Returns CF_OK
 * when the command ran and exited (whatever its status), CF_ERR_TIMEOUT
 * when it was killed for time or because the agent is stopping (see
 * ag_hook_set_abort), CF_ERR_IO when it could not be started (the message
 * names the program and errno's reason).
 */
cf_status ag_hook_run(char *const argv[], long timeout_s, int *status,
		      cf_error *err);

/*
 * Makes every later ag_hook_run watch *flag (process-wide; NULL, the
 * default, watches nothing).  The flag is meant to be set by the agent's
 * SIGTERM/SIGINT handler.  When it is set before a command starts, the
 * command is not run (CF_ERR_TIMEOUT, "...not started (the agent is
 * stopping)"); when it is set while a command runs, the wait ends within
 * about 250 ms, at once when the signal interrupts it: SIGTERM to the
 * command's process group, SIGKILL 2 s later if it is still there, the
 * leader reaped, and CF_ERR_TIMEOUT with "reload command X interrupted
 * (the agent is stopping)".  Call it from the thread that runs the hooks,
 * before it runs any; the flag must outlive every call.
 */
void ag_hook_set_abort(volatile sig_atomic_t *flag);

#endif
