/*
 * sink_file.c - atomic, change-only file writes (sink_file.h).
 *
 * Every write goes through one path: open the target's directory, create
 * a temp file ".NAME.coffer-XXXXXX" in it (O_EXCL, O_NOFOLLOW, 0600, so
 * nobody else can open it while it fills), give it owner and mode, fill
 * it, fsync it, rename it over NAME and fsync the directory.  All steps
 * use the directory's descriptor (openat, fchown/fchmod on descriptors,
 * renameat, unlinkat, fsync of the directory descriptor), so a directory
 * renamed or swapped meanwhile cannot redirect the temp file and the
 * final rename to different places.
 *
 * The directory itself is opened without following any symlink, in any
 * component (openat2 with RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS).
 * The agent runs as root, and applications legitimately own the
 * directories their secrets go to: a user who can write an ancestor of a
 * sink path could otherwise swap a directory for a symlink and have root
 * create, chown and chmod a file of its choosing anywhere.  Refusing
 * symlinked ancestors closes that hole entirely, so no ownership check of
 * the directories (in the manner of sshd's StrictModes) is made: it would
 * refuse the ordinary case of an application owning its own directory and
 * add nothing once no link is followed.  Where openat2 is missing (Linux
 * < 5.6, or a seccomp filter that refuses it with ENOSYS or EPERM) the
 * path is walked component by component from "/" (or the working
 * directory), each opened with O_PATH | O_NOFOLLOW relative to the one
 * before: the same guarantee, a few more system calls.
 *
 * Invariants:
 * - a reader of NAME sees the old content or the new one, never a mix;
 * - on any failure before the rename the temp file is unlinked and NAME
 *   is untouched; no temp file outlives a call;
 * - the agent never writes through a symlink: a symlink at NAME, or as
 *   any directory above it, is refused, as is a directory or any other
 *   non-regular file at NAME;
 * - once the rename succeeded, the caller learns that the content
 *   changed, even when the directory fsync then fails;
 * - the existing content, which is a secret, is read only into a small
 *   cf_secret (secure heap) chunk by chunk, compared in constant time
 *   per chunk, and wiped.
 */
#include "sink_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "secmem.h"

/* Bytes of the existing file held in secure memory at a time. */
#define COMPARE_CHUNK_BYTES 16384u
/* Temp names tried before giving up (each has 48 random bits). */
#define TEMP_ATTEMPTS 64
/* ".NAME.coffer-XXXXXXXX" must fit NAME_MAX; longer NAMEs are cut. */
#define TEMP_PREFIX_MAX (NAME_MAX - 24)
/* openat2 calls retried when the kernel reports a racing rename (EAGAIN). */
#define OPENAT2_ATTEMPTS 16

/* The target split into the directory to open and the name inside it. */
typedef struct target {
	const char *path;       /* as the caller gave it, for messages */
	char dir[PATH_MAX];
	char base[NAME_MAX + 1];
} target;

static cf_status split_path(const char *path, target *t, cf_error *err)
{
	const char *slash;
	size_t path_len, base_len, dir_len;

	t->path = path;
	path_len = strlen(path);
	if (path_len == 0 || path_len >= PATH_MAX)
		return cf_error_set(err, CF_ERR_USAGE,
				    "writing a file: the path is empty or longer than %d bytes",
				    PATH_MAX - 1);
	if (path[path_len - 1] == '/')
		return cf_error_set(err, CF_ERR_USAGE,
				    "writing %s: the path ends with '/', which names a directory; give a file path",
				    path);
	slash = strrchr(path, '/');
	if (slash == NULL) {
		snprintf(t->dir, sizeof(t->dir), ".");
		base_len = path_len;
		slash = path - 1;
	} else {
		dir_len = (size_t)(slash - path);
		if (dir_len == 0)
			dir_len = 1;    /* "/name": the root directory */
		memcpy(t->dir, path, dir_len);
		t->dir[dir_len] = '\0';
		base_len = path_len - (size_t)(slash + 1 - path);
	}
	if (base_len > NAME_MAX)
		return cf_error_set(err, CF_ERR_USAGE,
				    "writing %s: the file name is longer than %d bytes",
				    path, NAME_MAX);
	memcpy(t->base, slash + 1, base_len);
	t->base[base_len] = '\0';
	if (strcmp(t->base, ".") == 0 || strcmp(t->base, "..") == 0)
		return cf_error_set(err, CF_ERR_USAGE,
				    "writing %s: the path names a directory; give a file path",
				    path);
	return CF_OK;
}

static cf_status step_failed(const target *t, const char *step, int errnum,
			     const char *advice, cf_error *err)
{
	return cf_error_set(err, CF_ERR_IO, "writing %s: %s failed: %s; %s",
			    t->path, step, strerror(errnum), advice);
}

/*
 * Opens dir (O_RDONLY | O_DIRECTORY) following no symlink in any of its
 * components, the fallback for kernels without openat2.  Each component
 * is opened with O_PATH | O_NOFOLLOW relative to the one before, so a
 * component swapped for a link after it was passed changes nothing.
 * Returns the descriptor, or -1 with errno (ELOOP for a symlink).
 */
static int open_dir_walk(const char *dir)
{
	char part[NAME_MAX + 1];
	const char *p = dir;
	struct stat st;
	size_t len;
	int fd, next, saved;

	do {
		fd = open(dir[0] == '/' ? "/" : ".",
			  O_PATH | O_DIRECTORY | O_CLOEXEC);
	} while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return -1;
	for (;;) {
		while (*p == '/')
			p++;
		if (*p == '\0')
			break;
		len = strcspn(p, "/");
		if (len > NAME_MAX) {
			close(fd);
			errno = ENAMETOOLONG;
			return -1;
		}
		memcpy(part, p, len);
		part[len] = '\0';
		p += len;
		do {
			next = openat(fd, part,
				      O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
		} while (next < 0 && errno == EINTR);
		if (next < 0) {
			saved = errno;
			/* A link opened with O_NOFOLLOW | O_DIRECTORY: ENOTDIR. */
			if (fstatat(fd, part, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISLNK(st.st_mode))
				saved = ELOOP;
			close(fd);
			errno = saved;
			return -1;
		}
		close(fd);
		fd = next;
	}
	/* O_PATH cannot be fsync'd: reopen the directory itself for real. */
	do {
		next = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} while (next < 0 && errno == EINTR);
	saved = errno;
	close(fd);
	errno = saved;
	return next;
}

/* Opens t->dir with no symlink followed anywhere in it (see the top). */
static cf_status open_dir(const target *t, int *dir_fd, cf_error *err)
{
	char step[PATH_MAX + 32];
	struct open_how how;
	long fd;
	int saved, attempt = 0;

	memset(&how, 0, sizeof(how));
	how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
	how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
	do {
		fd = syscall(SYS_openat2, AT_FDCWD, t->dir, &how, sizeof(how));
	} while (fd < 0 && (errno == EINTR ||
			    (errno == EAGAIN && ++attempt < OPENAT2_ATTEMPTS)));
	/* No openat2 (old kernel, or a seccomp filter): the same, by hand. */
	if (fd < 0 && (errno == ENOSYS || errno == EPERM))
		fd = open_dir_walk(t->dir);
	if (fd >= 0) {
		*dir_fd = (int)fd;
		return CF_OK;
	}
	*dir_fd = -1;
	saved = errno;
	if (saved == ELOOP)
		return cf_error_set(err, CF_ERR_IO,
				    "writing %s: %s (or a directory above it) is a symbolic link; the agent never writes through symbolic links; give the real path (e.g. /run/... rather than /var/run/...)",
				    t->path, t->dir);
	snprintf(step, sizeof(step), "opening directory %s", t->dir);
	return step_failed(t, step, saved,
			   saved == ENOENT
			   ? "create the directory first (the agent does not create directories)"
			   : "check that the directory exists and the agent may write to it",
			   err);
}

/* Refuses what the agent must never replace or write through. */
static cf_status check_kind(const target *t, mode_t kind, cf_error *err)
{
	if (S_ISREG(kind))
		return CF_OK;
	if (S_ISLNK(kind))
		return cf_error_set(err, CF_ERR_IO,
				    "writing %s: the path is a symlink, and the agent never writes through one; remove the link or point the configuration at the real file",
				    t->path);
	if (S_ISDIR(kind))
		return cf_error_set(err, CF_ERR_IO,
				    "writing %s: the path is a directory; give a file path",
				    t->path);
	return cf_error_set(err, CF_ERR_IO,
			    "writing %s: the path is not a regular file (a device, socket or FIFO); give a file path",
			    t->path);
}

static cf_status write_all(const target *t, int fd, const unsigned char *data,
			   size_t len, cf_error *err)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = write(fd, data + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return step_failed(t, "writing the temp file", errno,
					   "check the free space and quotas of the file system",
					   err);
		if (n == 0)
			return step_failed(t, "writing the temp file", EIO,
					   "check the file system", err);
		done += (size_t)n;
	}
	return CF_OK;
}

static cf_status set_owner(const target *t, int fd, uid_t uid, gid_t gid,
			   cf_error *err)
{
	char step[96];
	int saved;

	if (uid == (uid_t)-1 && gid == (gid_t)-1)
		return CF_OK;
	if (fchown(fd, uid, gid) == 0)
		return CF_OK;
	saved = errno;
	snprintf(step, sizeof(step), "setting owner %ld:%ld",
		 uid == (uid_t)-1 ? -1L : (long)uid,
		 gid == (gid_t)-1 ? -1L : (long)gid);
	return step_failed(t, step, saved,
			   "run the agent as root, or drop owner/group from the configuration",
			   err);
}

/* Fills name with ".BASE.coffer-" and 12 random hex digits. */
static cf_status temp_name(const target *t, char *name, size_t size,
			   cf_error *err)
{
	unsigned char rnd[6];

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return cf_error_set_ssl(err, CF_ERR_CRYPTO,
					"writing %s: no random bytes for the temp file name",
					t->path);
	snprintf(name, size, ".%.*s.coffer-%02x%02x%02x%02x%02x%02x",
		 TEMP_PREFIX_MAX, t->base, rnd[0], rnd[1], rnd[2], rnd[3],
		 rnd[4], rnd[5]);
	return CF_OK;
}

/*
 * The atomic replace itself, in the directory dir_fd.  Owner uid:gid is
 * applied unless both are -1; the mode always is (after the owner, since
 * chown may clear set-id bits).  *renamed is set to 1 as soon as the new
 * content is in place, which can be before an error (a failed directory
 * fsync).
 */
static cf_status replace_in(const target *t, int dir_fd, const void *data,
			    size_t len, mode_t mode, uid_t uid, gid_t gid,
			    int *renamed, cf_error *err)
{
	char tmp[NAME_MAX + 1];
	int fd = -1, created = 0, attempt;
	cf_status rc;

	*renamed = 0;
	for (attempt = 0; attempt < TEMP_ATTEMPTS; attempt++) {
		rc = temp_name(t, tmp, sizeof(tmp), err);
		if (rc != CF_OK)
			goto out;
		fd = openat(dir_fd, tmp,
			    O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
			    0600);
		if (fd >= 0 || (errno != EEXIST && errno != EINTR))
			break;
	}
	if (fd < 0) {
		rc = step_failed(t, "creating a temp file in its directory",
				 errno,
				 "check that the agent may write to the directory",
				 err);
		goto out;
	}
	created = 1;
	rc = set_owner(t, fd, uid, gid, err);
	if (rc != CF_OK)
		goto out;
	if (fchmod(fd, mode) != 0) {
		rc = step_failed(t, "setting the mode", errno,
				 "check the file system", err);
		goto out;
	}
	rc = write_all(t, fd, data, len, err);
	if (rc != CF_OK)
		goto out;
	if (fsync(fd) != 0) {
		rc = step_failed(t, "fsync of the temp file", errno,
				 "check the file system", err);
		goto out;
	}
	/* close() can report a delayed write error (NFS); EINTR still closed it. */
	if (close(fd) != 0 && errno != EINTR) {
		fd = -1;
		rc = step_failed(t, "closing the temp file", errno,
				 "check the file system", err);
		goto out;
	}
	fd = -1;
	if (renameat(dir_fd, tmp, dir_fd, t->base) != 0) {
		rc = step_failed(t, "renaming the temp file over it", errno,
				 "check that the path is not a directory and the agent may write there",
				 err);
		goto out;
	}
	created = 0;
	/*
	 * From here the new content is in place (readers see it, so the
	 * caller must reload); a failed directory fsync only means it may not
	 * survive a power loss yet.
	 */
	*renamed = 1;
	if (fsync(dir_fd) != 0) {
		rc = step_failed(t, "fsync of the directory", errno,
				 "the new content is in place but may not survive a power loss; check the file system",
				 err);
		goto out;
	}
	rc = CF_OK;
out:
	if (fd >= 0)
		close(fd);
	if (created)
		unlinkat(dir_fd, tmp, 0);
	return rc;
}

/*
 * Compares the open file (of the right size) with data, chunk by chunk in
 * secure memory.  *same is 1 when every byte matched and the file ended
 * exactly at len.
 */
static cf_status same_content(const target *t, int fd,
			      const unsigned char *data, size_t len, int *same,
			      cf_error *err)
{
	cf_secret *buf = cf_secret_new(COMPARE_CHUNK_BYTES);
	unsigned char *p;
	size_t done = 0, want;
	int diff = 0;
	ssize_t n;
	cf_status rc;

	*same = 0;
	if (buf == NULL) {
		rc = cf_error_set(err, CF_ERR_NOMEM,
				  "writing %s: no secure memory to compare the existing content; raise the agent's secure heap",
				  t->path);
		goto out;
	}
	p = cf_secret_data(buf);
	for (;;) {
		/* One byte beyond len shows a file that grew since fstat. */
		want = len - done < COMPARE_CHUNK_BYTES ? len - done + 1
							: COMPARE_CHUNK_BYTES;
		n = read(fd, p, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = step_failed(t, "reading the existing file", errno,
					 "check the file system", err);
			goto out;
		}
		if (n == 0)
			break;
		if ((size_t)n > len - done) {
			diff = 1;
			break;
		}
		diff |= CRYPTO_memcmp(p, data + done, (size_t)n);
		done += (size_t)n;
	}
	*same = !diff && done == len;
	rc = CF_OK;
out:
	cf_secret_free(buf);
	return rc;
}

cf_status ag_file_put(const char *path, const unsigned char *data, size_t len,
		      mode_t mode, uid_t uid, gid_t gid, int *changed,
		      cf_error *err)
{
	target t;
	struct stat st;
	int dir_fd = -1, fd = -1, same = 0, renamed = 0;
	cf_status rc;

	if (changed != NULL)
		*changed = 0;
	if (path == NULL || changed == NULL || (data == NULL && len > 0) ||
	    (mode & ~(mode_t)07777) != 0) {
		rc = cf_error_set(err, CF_ERR_USAGE,
				  "writing a file: missing path, data or result, or a mode beyond 07777");
		goto out;
	}
	rc = split_path(path, &t, err);
	if (rc != CF_OK)
		goto out;
	rc = open_dir(&t, &dir_fd, err);
	if (rc != CF_OK)
		goto out;

	/* O_NONBLOCK: a FIFO planted at the path must not hang the agent. */
	do {
		fd = openat(dir_fd, t.base,
			    O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	} while (fd < 0 && errno == EINTR);
	if (fd < 0 && errno == ELOOP) {
		rc = check_kind(&t, S_IFLNK, err);
		goto out;
	}
	if (fd < 0 && errno != ENOENT) {
		rc = step_failed(&t, "opening the existing file", errno,
				 "check the permissions of the path", err);
		goto out;
	}
	if (fd >= 0) {
		if (fstat(fd, &st) != 0) {
			rc = step_failed(&t, "fstat of the existing file",
					 errno, "check the file system", err);
			goto out;
		}
		rc = check_kind(&t, st.st_mode, err);
		if (rc != CF_OK)
			goto out;
		if ((size_t)st.st_size == len && (off_t)len == st.st_size) {
			rc = same_content(&t, fd, data, len, &same, err);
			if (rc != CF_OK)
				goto out;
		}
	}
	if (!same) {
		/* Even on an error return: the new bytes may be in place. */
		rc = replace_in(&t, dir_fd, data, len, mode, uid, gid,
				&renamed, err);
		*changed = renamed;
		goto out;
	}

	/* Same bytes: at most correct the owner and mode. */
	if ((uid == (uid_t)-1 || st.st_uid == uid) &&
	    (gid == (gid_t)-1 || st.st_gid == gid) &&
	    (st.st_mode & 07777) == mode) {
		rc = CF_OK;
		goto out;
	}
	/*
	 * A file with other hard links is not changed in place: the other
	 * names (maybe planted by someone who can write the directory) would
	 * get the new owner and mode too.  A fresh copy leaves them alone.
	 */
	if (st.st_nlink != 1) {
		/* The same bytes: nothing a reader could notice changed. */
		rc = replace_in(&t, dir_fd, data, len, mode, uid, gid,
				&renamed, err);
		goto out;
	}
	rc = set_owner(&t, fd, uid, gid, err);
	if (rc != CF_OK)
		goto out;
	if (fchmod(fd, mode) != 0) {
		rc = step_failed(&t, "setting the mode", errno,
				 "check the file system", err);
		goto out;
	}
	rc = CF_OK;
out:
	if (fd >= 0)
		close(fd);
	if (dir_fd >= 0)
		close(dir_fd);
	return rc;
}

cf_status ag_file_replace(const char *path, const void *data, size_t len,
			  mode_t mode, cf_error *err)
{
	target t;
	struct stat st;
	int dir_fd = -1, renamed = 0;
	cf_status rc;

	if (path == NULL || (data == NULL && len > 0) ||
	    (mode & ~(mode_t)07777) != 0) {
		rc = cf_error_set(err, CF_ERR_USAGE,
				  "writing a file: missing path or data, or a mode beyond 07777");
		goto out;
	}
	rc = split_path(path, &t, err);
	if (rc != CF_OK)
		goto out;
	rc = open_dir(&t, &dir_fd, err);
	if (rc != CF_OK)
		goto out;
	/* A symlink would be replaced, not followed; still, say so. */
	if (fstatat(dir_fd, t.base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		rc = check_kind(&t, st.st_mode, err);
		if (rc != CF_OK)
			goto out;
	} else if (errno != ENOENT) {
		rc = step_failed(&t, "stat of the existing file", errno,
				 "check the permissions of the path", err);
		goto out;
	}
	rc = replace_in(&t, dir_fd, data, len, mode, (uid_t)-1, (gid_t)-1,
			&renamed, err);
out:
	if (dir_fd >= 0)
		close(dir_fd);
	return rc;
}
