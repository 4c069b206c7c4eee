/*
 * sink_file.h - putting bytes into files safely (DESIGN 2 "Reading").
 *
 * A file is replaced atomically: a temp file in the same directory is
 * created 0600, given its owner and mode, filled, fsync'd, renamed over
 * the target, and the directory fsync'd, so a reader sees either the old
 * file or the new one, never a half-written one, and a crash leaves one
 * of the two.  Unchanged content is not rewritten.
 */
#ifndef CF_AGENT_SINK_FILE_H
#define CF_AGENT_SINK_FILE_H

#include <stddef.h>
#include <sys/types.h>

#include "error.h"

/*
 * Makes path hold exactly len bytes of data with mode, uid and gid
 * ((uid_t)-1 / (gid_t)-1: leave as the agent makes them).  When the file
 * already holds those bytes, it is not rewritten and *changed is 0 (its
 * mode and owner are still corrected if they differ); otherwise it is
 * replaced atomically and *changed is 1.  The existing content is read
 * for the comparison into secure memory and wiped.  The directory must
 * exist, and neither it nor any directory above it may be a symbolic
 * link (nor may the file itself be one): the agent runs as root and never
 * writes through a link, so give the real path (/run/x, not /var/run/x).
 * Errors: CF_ERR_IO naming the path, the step and the reason.
 *
 * *changed can be 1 on an error return: when the new content was renamed
 * into place but the directory fsync then failed (CF_ERR_IO, the message
 * says the content is in place).  Readers already see the new bytes and a
 * later call finds them equal, so the caller must honour *changed (run
 * the reload) whatever the status.
 */
cf_status ag_file_put(const char *path, const unsigned char *data, size_t len,
		      mode_t mode, uid_t uid, gid_t gid, int *changed,
		      cf_error *err);

/*
 * Atomic replace for the agent's own state files (no comparison, no
 * owner change): temp file, write, fsync, rename, directory fsync.  The
 * same refusal of symbolic links in the path as ag_file_put.
 */
cf_status ag_file_replace(const char *path, const void *data, size_t len,
			  mode_t mode, cf_error *err);

#endif
