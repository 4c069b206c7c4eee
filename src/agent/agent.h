/*
 * agent.h - the agent's commands, dispatched from `coffer agent`
 * (src/cli/agent.c): run (the daemon), once (one sync), exec (a command
 * with secrets in its environment).  docs/AGENT.md.
 */
#ifndef CF_AGENT_AGENT_H
#define CF_AGENT_AGENT_H

int ag_cmd_run(int argc, char **argv);   /* run.c */
int ag_cmd_once(int argc, char **argv);  /* run.c */
int ag_cmd_exec(int argc, char **argv);  /* exec.c */
int ag_cmd_status(int argc, char **argv); /* status.c */
int ag_cmd_cluster_join(int argc, char **argv); /* member.c */
int ag_cmd_cache(int argc, char **argv);  /* member.c */

#endif
