/*
 * test_agent_sink.c - atomic, change-only file writes (sink_file.h).
 *
 * A sink file must hold exactly the bytes and mode asked, be rewritten
 * only when its content changes (a new inode then, the same one and the
 * same mtime otherwise), never be written through a symlink (at the file
 * or at any directory above it, with openat2 and with the fallback walk
 * for kernels without it), never leave a temp file behind, report a
 * change that reached the disk even when the directory fsync then fails,
 * and never be seen half-written by a reader looping while it is rotated.
 *
 * Two tests provoke kernel behaviour with a seccomp filter in a forked
 * child (openat2 answering ENOSYS; fsync of the directory failing with
 * EIO); they are skipped where seccomp filters cannot be installed.
 */
#include "fixture.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sink_file.h"

#define NO_UID ((uid_t)-1)
#define NO_GID ((gid_t)-1)

/* A fresh directory per test, removed (with its files) after it. */
typedef struct fixture {
	char dir[256];
} fixture;

/*
 * The directory is a real path (realpath of mkdtemp's): the agent refuses
 * paths with a symlinked directory, and TMPDIR may well be one.
 */
static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");
	char made[256], real[PATH_MAX];

	if (f == NULL)
		return -1;
	snprintf(made, sizeof(made), "%s/coffer-sink-XXXXXX",
		 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	if (mkdtemp(made) == NULL) {
		free(f);
		return -1;
	}
	if (realpath(made, real) == NULL || strlen(real) >= sizeof(f->dir)) {
		rmdir(made);
		free(f);
		return -1;
	}
	/* Fits: checked above (memcpy, so no truncation warning either). */
	memcpy(f->dir, real, strlen(real) + 1);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	fx_remove_tree(f->dir);
	free(f);
	return 0;
}

static void path_in(const fixture *f, const char *name, char *out, size_t size)
{
	int n = snprintf(out, size, "%s/%s", f->dir, name);

	assert_true(n > 0 && (size_t)n < size);
}

/* Reads a whole (small) file into buf; returns its length. */
static size_t slurp(const char *path, unsigned char *buf, size_t size)
{
	size_t done = 0;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	while ((n = read(fd, buf + done, size - done)) > 0)
		done += (size_t)n;
	assert_true(n == 0);
	close(fd);
	return done;
}

/*
 * Fails unless the directory holds exactly the names listed (NULL-ended):
 * any ".x.coffer-XXXX" left over shows up here.
 */
static void assert_dir_holds(const char *dir, const char *const names[])
{
	struct dirent *e;
	size_t seen = 0, want = 0;
	DIR *d = opendir(dir);
	int known;

	assert_non_null(d);
	while (names[want] != NULL)
		want++;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		known = 0;
		for (size_t i = 0; i < want; i++)
			known |= strcmp(e->d_name, names[i]) == 0;
		if (!known)
			fail_msg("unexpected entry %s in %s", e->d_name, dir);
		seen++;
	}
	closedir(d);
	assert_int_equal(seen, want);
}

static void creates_with_content_and_mode(void **state)
{
	const fixture *f = *state;
	const char *const only[] = { "secret", NULL };
	unsigned char buf[64];
	char path[PATH_MAX];
	cf_error err = { 0 };
	struct stat st;
	mode_t old_umask = umask(077);
	int changed = -1;

	path_in(f, "secret", path, sizeof(path));
	/* The umask must not narrow the mode asked for. */
	assert_status(CF_OK, ag_file_put(path, (const unsigned char *)"hunter2\n",
					 8, 0644, NO_UID, NO_GID, &changed, &err),
		      &err);
	umask(old_umask);
	assert_int_equal(changed, 1);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(slurp(path, buf, sizeof(buf)), 8);
	assert_memory_equal(buf, "hunter2\n", 8);
	assert_dir_holds(f->dir, only);

	/* Empty content is content too. */
	path_in(f, "empty", path, sizeof(path));
	assert_status(CF_OK, ag_file_put(path, NULL, 0, 0400, NO_UID, NO_GID,
					 &changed, &err), &err);
	assert_int_equal(changed, 1);
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_size, 0);
	assert_int_equal(st.st_mode & 07777, 0400);
	assert_status(CF_OK, ag_file_put(path, NULL, 0, 0400, NO_UID, NO_GID,
					 &changed, &err), &err);
	assert_int_equal(changed, 0);
}

static void unchanged_content_is_not_rewritten(void **state)
{
	const fixture *f = *state;
	char path[PATH_MAX];
	cf_error err = { 0 };
	struct stat before, after;
	struct timespec pause = { 0, 20 * 1000 * 1000 };
	int changed = -1;

	path_in(f, "same", path, sizeof(path));
	assert_status(CF_OK, ag_file_put(path, (const unsigned char *)"v1", 2,
					 0600, NO_UID, NO_GID, &changed, &err),
		      &err);
	assert_int_equal(changed, 1);
	assert_int_equal(stat(path, &before), 0);
	/* Give a rewrite the chance to show in the mtime. */
	nanosleep(&pause, NULL);
	assert_status(CF_OK, ag_file_put(path, (const unsigned char *)"v1", 2,
					 0600, NO_UID, NO_GID, &changed, &err),
		      &err);
	assert_int_equal(changed, 0);
	assert_int_equal(stat(path, &after), 0);
	assert_int_equal(after.st_ino, before.st_ino);
	assert_int_equal(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
	assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
	assert_int_equal(after.st_ctim.tv_nsec, before.st_ctim.tv_nsec);
}

/*
 * Opens path and keeps it open, so that its inode cannot be freed and
 * reused by the next file: comparing inode numbers then proves a rename.
 */
static int hold(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	return fd;
}

/* Fails unless path is now another inode than held, and held kept old. */
static void assert_replaced(const char *path, int held, const char *old)
{
	unsigned char buf[64];
	struct stat was, now;
	ssize_t n;

	assert_int_equal(fstat(held, &was), 0);
	assert_int_equal(stat(path, &now), 0);
	assert_int_not_equal(now.st_ino, was.st_ino);
	/* The old inode was not written to: a reader holding it is safe. */
	n = pread(held, buf, sizeof(buf), 0);
	assert_int_equal(n, strlen(old));
	assert_memory_equal(buf, old, strlen(old));
	close(held);
}

static void changed_content_is_replaced(void **state)
{
	const fixture *f = *state;
	const char *const only[] = { "rot", NULL };
	unsigned char buf[64];
	char path[PATH_MAX];
	cf_error err = { 0 };
	int changed = -1, held;

	path_in(f, "rot", path, sizeof(path));
	assert_status(CF_OK, ag_file_put(path, (const unsigned char *)"old-value", 9,
					 0600, NO_UID, NO_GID, &changed, &err),
		      &err);
	held = hold(path);

	/* Same length, last byte differs: the bytes are compared, not sizes. */
	assert_status(CF_OK, ag_file_put(path, (const unsigned char *)"old-valuX", 9,
					 0600, NO_UID, NO_GID, &changed, &err),
		      &err);
	assert_int_equal(changed, 1);
	assert_replaced(path, held, "old-value");
	assert_int_equal(slurp(path, buf, sizeof(buf)), 9);
	assert_memory_equal(buf, "old-valuX", 9);

	/* First byte differs. */
	held = hold(path);
	assert_status(CF_OK, ag_file_put(path, (const unsigned char *)"Xld-valuX", 9,
					 0600, NO_UID, NO_GID, &changed, &err),
		      &err);
	assert_int_equal(changed, 1);
	assert_replaced(path, held, "old-valuX");

	/* Shorter: the old tail must not survive. */
	held = hold(path);
	assert_status(CF_OK, ag_file_put(path, (const unsigned char *)"new", 3,
					 0600, NO_UID, NO_GID, &changed, &err),
		      &err);
	assert_int_equal(changed, 1);
	assert_replaced(path, held, "Xld-valuX");
	assert_int_equal(slurp(path, buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "new", 3);
	assert_dir_holds(f->dir, only);
}

/* A file larger than the comparison chunk, differing at the very end. */
static void large_content_compared_to_the_end(void **state)
{
	const fixture *f = *state;
	const size_t size = 100000;
	unsigned char *data = malloc(size);
	char path[PATH_MAX];
	cf_error err = { 0 };
	int changed = -1;

	assert_non_null(data);
	for (size_t i = 0; i < size; i++)
		data[i] = (unsigned char)(i * 7);
	path_in(f, "big", path, sizeof(path));
	assert_status(CF_OK, ag_file_put(path, data, size, 0600, NO_UID,
					 NO_GID, &changed, &err), &err);
	assert_int_equal(changed, 1);
	assert_status(CF_OK, ag_file_put(path, data, size, 0600, NO_UID,
					 NO_GID, &changed, &err), &err);
	assert_int_equal(changed, 0);
	data[size - 1] ^= 1;
	assert_status(CF_OK, ag_file_put(path, data, size, 0600, NO_UID,
					 NO_GID, &changed, &err), &err);
	assert_int_equal(changed, 1);
	data[16384] ^= 1;       /* the first byte of the second chunk */
	assert_status(CF_OK, ag_file_put(path, data, size, 0600, NO_UID,
					 NO_GID, &changed, &err), &err);
	assert_int_equal(changed, 1);
	free(data);
}

static void mode_fixed_without_rewrite(void **state)
{
	const fixture *f = *state;
	char path[PATH_MAX];
	cf_error err = { 0 };
	struct stat before, after;
	int changed = -1;

	path_in(f, "mode", path, sizeof(path));
	assert_status(CF_OK, ag_file_put(path, (const unsigned char *)"pw", 2,
					 0600, NO_UID, NO_GID, &changed, &err),
		      &err);
	assert_int_equal(stat(path, &before), 0);
	assert_int_equal(before.st_mode & 07777, 0600);
	assert_status(CF_OK, ag_file_put(path, (const unsigned char *)"pw", 2,
					 0440, NO_UID, NO_GID, &changed, &err),
		      &err);
	assert_int_equal(changed, 0);
	assert_int_equal(stat(path, &after), 0);
	assert_int_equal(after.st_mode & 07777, 0440);
	assert_int_equal(after.st_ino, before.st_ino);
	assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
}

/* A second hard link must not get the new mode through the shared inode. */
static void hard_linked_file_not_fixed_in_place(void **state)
{
	const fixture *f = *state;
	const char *const both[] = { "hl", "other", NULL };
	char path[PATH_MAX], other[PATH_MAX];
	cf_error err = { 0 };
	struct stat st;
	int changed = -1;

	path_in(f, "hl", path, sizeof(path));
	path_in(f, "other", other, sizeof(other));
	assert_status(CF_OK, ag_file_put(path, (const unsigned char *)"pw", 2,
					 0600, NO_UID, NO_GID, &changed, &err),
		      &err);
	assert_int_equal(link(path, other), 0);
	assert_status(CF_OK, ag_file_put(path, (const unsigned char *)"pw", 2,
					 0644, NO_UID, NO_GID, &changed, &err),
		      &err);
	assert_int_equal(changed, 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(st.st_nlink, 1);
	assert_int_equal(stat(other, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_dir_holds(f->dir, both);
}

/*
 * Owner: as root the file gets the ids asked for, on creation and as a
 * fix of an unchanged file; otherwise a chown to our own ids works and
 * one to another user is an error naming the owner, leaving no temp.
 */
static void owner_set_or_refused(void **state)
{
	const fixture *f = *state;
	const char *const only[] = { "owned", NULL };
	char path[PATH_MAX];
	cf_error err = { 0 };
	struct stat st;
	int changed = -1;

	path_in(f, "owned", path, sizeof(path));
	assert_status(CF_OK, ag_file_put(path, (const unsigned char *)"x", 1,
					 0640, getuid(), getgid(), &changed,
					 &err), &err);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_uid, getuid());
	assert_int_equal(st.st_gid, getgid());
	if (geteuid() == 0) {
		assert_status(CF_OK, ag_file_put(path, (const unsigned char *)"x",
						 1, 0640, 4242, 4343, &changed,
						 &err), &err);
		assert_int_equal(changed, 0);
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_uid, 4242);
		assert_int_equal(st.st_gid, 4343);
		assert_int_equal(st.st_mode & 07777, 0640);
		/* Set-id bits survive the chown (mode after owner). */
		assert_status(CF_OK, ag_file_put(path, (const unsigned char *)"y",
						 1, 02750, 4244, 4343, &changed,
						 &err), &err);
		assert_int_equal(changed, 1);
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_uid, 4244);
		assert_int_equal(st.st_mode & 07777, 02750);
		/* Only the group asked for: the owner stays. */
		assert_status(CF_OK, ag_file_put(path, (const unsigned char *)"z",
						 1, 0640, NO_UID, 4545, &changed,
						 &err), &err);
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_uid, 0);
		assert_int_equal(st.st_gid, 4545);
	} else {
		assert_status(CF_ERR_IO, ag_file_put(path, (const unsigned char *)"y",
						     1, 0640, getuid() + 1,
						     NO_GID, &changed, &err),
			      &err);
		assert_non_null(strstr(err.msg, "owner"));
		assert_non_null(strstr(err.msg, path));
	}
	assert_dir_holds(f->dir, only);
}

static void symlink_target_refused(void **state)
{
	const fixture *f = *state;
	const char *const only[] = { "link", "victim", NULL };
	unsigned char buf[64];
	char path[PATH_MAX], victim[PATH_MAX];
	cf_error err = { 0 };
	struct stat st;
	int changed = -1;
	int fd;

	path_in(f, "link", path, sizeof(path));
	path_in(f, "victim", victim, sizeof(victim));
	fd = open(victim, O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "keep", 4), 4);
	close(fd);
	assert_int_equal(symlink("victim", path), 0);

	assert_status(CF_ERR_IO, ag_file_put(path, (const unsigned char *)"evil",
					     4, 0600, NO_UID, NO_GID, &changed,
					     &err), &err);
	assert_int_equal(changed, 0);
	assert_non_null(strstr(err.msg, "symlink"));
	assert_non_null(strstr(err.msg, path));
	/* Same bytes as the victim: still refused, not "unchanged". */
	assert_status(CF_ERR_IO, ag_file_put(path, (const unsigned char *)"keep",
					     4, 0600, NO_UID, NO_GID, &changed,
					     &err), &err);
	assert_status(CF_ERR_IO, ag_file_replace(path, "evil", 4, 0600, &err),
		      &err);
	assert_non_null(strstr(err.msg, "symlink"));

	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(lstat(victim, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(slurp(victim, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "keep", 4);
	assert_dir_holds(f->dir, only);
}

static void directory_and_fifo_targets_refused(void **state)
{
	const fixture *f = *state;
	const char *const only[] = { "adir", "fifo", NULL };
	char path[PATH_MAX];
	cf_error err = { 0 };
	int changed = -1;

	path_in(f, "adir", path, sizeof(path));
	assert_int_equal(mkdir(path, 0700), 0);
	assert_status(CF_ERR_IO, ag_file_put(path, (const unsigned char *)"x", 1,
					     0600, NO_UID, NO_GID, &changed,
					     &err), &err);
	assert_non_null(strstr(err.msg, "directory"));
	assert_status(CF_ERR_IO, ag_file_replace(path, "x", 1, 0600, &err),
		      &err);
	/* A trailing slash names a directory too. */
	path_in(f, "new/", path, sizeof(path));
	assert_status(CF_ERR_USAGE, ag_file_put(path, (const unsigned char *)"x",
						1, 0600, NO_UID, NO_GID,
						&changed, &err), &err);
	/* A FIFO must be refused, not hang the agent on open. */
	path_in(f, "fifo", path, sizeof(path));
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_status(CF_ERR_IO, ag_file_put(path, (const unsigned char *)"x", 1,
					     0600, NO_UID, NO_GID, &changed,
					     &err), &err);
	assert_non_null(strstr(err.msg, "regular"));
	assert_dir_holds(f->dir, only);
}

static void missing_directory_is_an_error(void **state)
{
	const fixture *f = *state;
	const char *const none[] = { NULL };
	char path[PATH_MAX];
	cf_error err = { 0 };
	int changed = -1;

	path_in(f, "nodir/secret", path, sizeof(path));
	assert_status(CF_ERR_IO, ag_file_put(path, (const unsigned char *)"x", 1,
					     0600, NO_UID, NO_GID, &changed,
					     &err), &err);
	assert_int_equal(changed, 0);
	assert_non_null(strstr(err.msg, path));
	assert_non_null(strstr(err.msg, "No such file or directory"));
	assert_status(CF_ERR_IO, ag_file_replace(path, "x", 1, 0600, &err),
		      &err);
	assert_dir_holds(f->dir, none);
}

static void bad_arguments_refused(void **state)
{
	const fixture *f = *state;
	char path[PATH_MAX];
	cf_error err = { 0 };
	int changed = -1;

	path_in(f, "x", path, sizeof(path));
	assert_status(CF_ERR_USAGE, ag_file_put(path, (const unsigned char *)"x",
						1, 010000, NO_UID, NO_GID,
						&changed, &err), &err);
	assert_status(CF_ERR_USAGE, ag_file_put(path, NULL, 1, 0600, NO_UID,
						NO_GID, &changed, &err), &err);
	assert_status(CF_ERR_USAGE, ag_file_put("", (const unsigned char *)"x",
						1, 0600, NO_UID, NO_GID,
						&changed, &err), &err);
	assert_status(CF_ERR_USAGE, ag_file_put(path, (const unsigned char *)"x",
						1, 0600, NO_UID, NO_GID, NULL,
						&err), &err);
	assert_int_equal(access(path, F_OK), -1);
}

/*
 * A write that fails half-way (the file size limit stands in for a full
 * disk) leaves the old content in place and no temp file.
 */
static void failed_write_leaves_target_and_no_temp(void **state)
{
	const fixture *f = *state;
	const char *const only[] = { "full", NULL };
	static unsigned char big[8192];
	unsigned char buf[64];
	char path[PATH_MAX];
	cf_error err = { 0 };
	struct rlimit old_lim, lim;
	struct sigaction ign = { 0 }, old_xfsz;
	int changed = -1;

	path_in(f, "full", path, sizeof(path));
	assert_status(CF_OK, ag_file_put(path, (const unsigned char *)"good", 4,
					 0600, NO_UID, NO_GID, &changed, &err),
		      &err);
	memset(big, 'z', sizeof(big));

	ign.sa_handler = SIG_IGN;
	assert_int_equal(sigaction(SIGXFSZ, &ign, &old_xfsz), 0);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old_lim), 0);
	lim = old_lim;
	lim.rlim_cur = 4096;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	cf_error_clear(&err);
	{
		cf_status put = ag_file_put(path, big, sizeof(big), 0600,
					    NO_UID, NO_GID, &changed, &err);
		cf_status rep = ag_file_replace(path, big, sizeof(big), 0600,
						&err);

		assert_int_equal(setrlimit(RLIMIT_FSIZE, &old_lim), 0);
		assert_int_equal(sigaction(SIGXFSZ, &old_xfsz, NULL), 0);
		assert_int_equal(put, CF_ERR_IO);
		assert_int_equal(rep, CF_ERR_IO);
	}
	assert_int_equal(changed, 0);
	assert_non_null(strstr(err.msg, "writing the temp file"));
	assert_int_equal(slurp(path, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "good", 4);
	assert_dir_holds(f->dir, only);
}

static void replace_writes_without_comparison(void **state)
{
	const fixture *f = *state;
	const char *const only[] = { "state.json", NULL };
	unsigned char buf[64];
	char path[PATH_MAX];
	cf_error err = { 0 };
	struct stat st;
	int held;

	path_in(f, "state.json", path, sizeof(path));
	assert_status(CF_OK, ag_file_replace(path, "{\"v\":1}", 7, 0600, &err),
		      &err);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	/* The same bytes again: replaced all the same (a new inode). */
	held = hold(path);
	assert_status(CF_OK, ag_file_replace(path, "{\"v\":1}", 7, 0640, &err),
		      &err);
	assert_replaced(path, held, "{\"v\":1}");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(slurp(path, buf, sizeof(buf)), 7);
	assert_memory_equal(buf, "{\"v\":1}", 7);
	assert_dir_holds(f->dir, only);
}

static void relative_path_and_long_name(void **state)
{
	const fixture *f = *state;
	char cwd[PATH_MAX], name[NAME_MAX + 1], path[PATH_MAX];
	cf_error err = { 0 };
	struct stat st;
	int changed = -1;

	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(f->dir), 0);
	assert_status(CF_OK, ag_file_put("rel", (const unsigned char *)"r", 1,
					 0600, NO_UID, NO_GID, &changed, &err),
		      &err);
	assert_int_equal(chdir(cwd), 0);
	path_in(f, "rel", path, sizeof(path));
	assert_int_equal(stat(path, &st), 0);

	/* The longest name allowed still gets a temp name that fits. */
	memset(name, 'n', NAME_MAX);
	name[NAME_MAX] = '\0';
	path_in(f, name, path, sizeof(path));
	assert_status(CF_OK, ag_file_put(path, (const unsigned char *)"l", 1,
					 0600, NO_UID, NO_GID, &changed, &err),
		      &err);
	assert_int_equal(changed, 1);
	assert_int_equal(stat(path, &st), 0);
	{
		const char *const both[] = { "rel", name, NULL };

		assert_dir_holds(f->dir, both);
	}
}

/*
 * The symlinked-ancestor checks, shared by the openat2 test and the
 * fallback test (which runs them in a child without cmocka): returns 0
 * when all hold, else the line of the first check that failed.
 *
 * Layout: real/ and real/sub/ are directories; plink -> real (relative),
 * alink -> DIR/real (absolute), glink -> real again, used as the
 * grandparent of real/sub/secret.  Writing through any of the links must
 * be refused, naming the path and the link's reason, and leave real/ and
 * real/sub/ as they were; the real path itself must still work.
 */
#define CHECK(cond) do { if (!(cond)) return __LINE__; } while (0)

static int dir_entries(const char *dir)
{
	struct dirent *e;
	int n = 0;
	DIR *d = opendir(dir);

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static int refused_as_link(const char *path, const char *dir)
{
	cf_error err = { 0 };
	int changed = -1;

	if (ag_file_put(path, (const unsigned char *)"evil", 4, 0600, NO_UID,
			NO_GID, &changed, &err) != CF_ERR_IO || changed != 0)
		return 0;
	if (strstr(err.msg, path) == NULL ||
	    strstr(err.msg, "is a symbolic link") == NULL ||
	    strstr(err.msg, "give the real path") == NULL ||
	    strstr(err.msg, dir) == NULL)
		return 0;
	cf_error_clear(&err);
	if (ag_file_replace(path, "evil", 4, 0600, &err) != CF_ERR_IO ||
	    strstr(err.msg, "is a symbolic link") == NULL)
		return 0;
	return 1;
}

/* out = a + b, or 0 when it does not fit. */
static int join(char *out, size_t size, const char *a, const char *b)
{
	int n = snprintf(out, size, "%s%s", a, b);

	return n > 0 && (size_t)n < size;
}

static int symlinked_ancestor_checks(const char *base)
{
	char real[PATH_MAX], sub[PATH_MAX], link_path[PATH_MAX];
	char path[PATH_MAX], dir[PATH_MAX];
	unsigned char buf[16];
	cf_error err = { 0 };
	int changed = -1, fd;
	ssize_t n;

	CHECK(join(real, sizeof(real), base, "/real"));
	CHECK(join(sub, sizeof(sub), base, "/real/sub"));
	CHECK(mkdir(real, 0700) == 0 && mkdir(sub, 0700) == 0);

	/* The parent a relative symlink. */
	CHECK(join(link_path, sizeof(link_path), base, "/plink"));
	CHECK(symlink("real", link_path) == 0);
	CHECK(join(path, sizeof(path), link_path, "/secret"));
	CHECK(refused_as_link(path, link_path));
	/* The parent an absolute symlink. */
	CHECK(join(link_path, sizeof(link_path), base, "/alink"));
	CHECK(symlink(real, link_path) == 0);
	CHECK(join(path, sizeof(path), link_path, "/secret"));
	CHECK(refused_as_link(path, link_path));
	/* The grandparent a symlink. */
	CHECK(join(link_path, sizeof(link_path), base, "/glink"));
	CHECK(symlink("real", link_path) == 0);
	CHECK(join(path, sizeof(path), link_path, "/sub/secret"));
	CHECK(join(dir, sizeof(dir), link_path, "/sub"));
	CHECK(refused_as_link(path, dir));
	/* Nothing reached the links' targets. */
	CHECK(dir_entries(real) == 1);
	CHECK(dir_entries(sub) == 0);

	/* The real path still works, with ag_file_put and ag_file_replace. */
	CHECK(join(path, sizeof(path), real, "/sub/secret"));
	CHECK(ag_file_put(path, (const unsigned char *)"good", 4, 0600,
			  NO_UID, NO_GID, &changed, &err) == CF_OK);
	CHECK(changed == 1);
	CHECK(ag_file_put(path, (const unsigned char *)"good", 4, 0600,
			  NO_UID, NO_GID, &changed, &err) == CF_OK);
	CHECK(changed == 0);
	CHECK(join(path, sizeof(path), real, "/state"));
	CHECK(ag_file_replace(path, "st", 2, 0600, &err) == CF_OK);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0);
	n = read(fd, buf, sizeof(buf));
	close(fd);
	CHECK(n == 2 && memcmp(buf, "st", 2) == 0);
	/* "." and ".." are no links: a plain relative spelling is fine. */
	CHECK(join(path, sizeof(path), real, "/sub/../sub/./dots"));
	CHECK(ag_file_put(path, (const unsigned char *)"d", 1, 0600, NO_UID,
			  NO_GID, &changed, &err) == CF_OK);
	CHECK(dir_entries(sub) == 2);
	return 0;
}

static void symlinked_directory_refused(void **state)
{
	const fixture *f = *state;
	int line = symlinked_ancestor_checks(f->dir);

	if (line != 0)
		fail_msg("the check at line %d failed", line);
}

/*
 * Runs check(dir) in a child under a seccomp filter that makes syscall
 * nr fail with errnum, for every call (arg0 < 0) or only when its first
 * argument is arg0.  Returns the child's line (0: all held), or -1 when
 * seccomp filters are not available here (the test is then skipped).
 */
static int run_filtered(long nr, int arg0, int errnum,
			int (*check)(const char *dir, int arg0),
			const char *dir)
{
	/* The first argument's low 32 bits (little-endian layout). */
	const unsigned int arg0_off = offsetof(struct seccomp_data, args[0])
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
		+ 4
#endif
		;
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned int)nr, 0, 4),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, arg0_off),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned int)arg0,
			 1, 0),
		/* Every call when arg0 < 0, else only the one descriptor. */
		BPF_JUMP(BPF_JMP | BPF_JA, arg0 < 0 ? 0 : 1, 0, 0),
		BPF_STMT(BPF_RET | BPF_K,
			 SECCOMP_RET_ERRNO | ((unsigned int)errnum &
					      SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(code) / sizeof(code[0]), code };
	int wstatus = 0;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
		    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
			_exit(255);
		_exit(check(dir, arg0) & 0xff);
	}
	assert_int_equal(waitpid(pid, &wstatus, 0), pid);
	assert_true(WIFEXITED(wstatus));
	return WEXITSTATUS(wstatus) == 255 ? -1 : WEXITSTATUS(wstatus);
}

/* In the child: openat2 really is gone, and the walk holds the line. */
static int walk_checks(const char *dir, int arg0)
{
	struct open_how how = { .flags = O_RDONLY | O_DIRECTORY };
	int line;

	(void)arg0;
	if (syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof(how)) >= 0 ||
	    errno != ENOSYS)
		return 2;       /* the filter did not take */
	line = symlinked_ancestor_checks(dir);
	if (line != 0)
		fprintf(stderr, "fallback walk: the check at line %d failed\n",
			line);
	return line == 0 ? 0 : 1;
}

static void symlinked_directory_refused_without_openat2(void **state)
{
	const fixture *f = *state;
	int rc = run_filtered(SYS_openat2, -1, ENOSYS, walk_checks, f->dir);

	if (rc < 0)
		skip();
	assert_int_equal(rc, 0);
}

/*
 * In the child: the lowest free descriptor (arg0) is the one the
 * directory gets, since ag_file_put opens it first; its fsync fails.
 */
static int fsync_checks(const char *dir, int arg0)
{
	char path[PATH_MAX];
	unsigned char buf[16];
	cf_error err = { 0 };
	int changed = -1, fd;
	ssize_t n;
	cf_status rc;

	(void)arg0;
	snprintf(path, sizeof(path), "%s/durable", dir);
	rc = ag_file_put(path, (const unsigned char *)"new", 3, 0600, NO_UID,
			 NO_GID, &changed, &err);
	if (rc != CF_ERR_IO)
		return 2;
	if (changed != 1)
		return 3;
	if (strstr(err.msg, "fsync of the directory") == NULL ||
	    strstr(err.msg, "in place") == NULL)
		return 4;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 5;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n != 3 || memcmp(buf, "new", 3) != 0)
		return 6;
	/* The same bytes again: unchanged (so the first call must say so). */
	rc = ag_file_put(path, (const unsigned char *)"new", 3, 0600, NO_UID,
			 NO_GID, &changed, &err);
	if (rc != CF_OK || changed != 0)
		return 7;
	return 0;
}

static void changed_even_when_directory_fsync_fails(void **state)
{
	const fixture *f = *state;
	const char *const only[] = { "durable", NULL };
	char path[PATH_MAX];
	cf_error err = { 0 };
	int changed = -1, next_fd, rc;

	path_in(f, "durable", path, sizeof(path));
	assert_status(CF_OK, ag_file_put(path, (const unsigned char *)"old", 3,
					 0600, NO_UID, NO_GID, &changed, &err),
		      &err);
	next_fd = dup(STDIN_FILENO);
	assert_true(next_fd >= 0);
	close(next_fd);
	rc = run_filtered(SYS_fsync, next_fd, EIO, fsync_checks, f->dir);
	if (rc < 0)
		skip();
	if (rc != 0)
		fail_msg("the child's check %d failed", rc);
	assert_dir_holds(f->dir, only);
}

#define READER_A_BYTES (10 * 1024)
#define READER_B_BYTES (20 * 1024)
#define ROTATIONS 500

/*
 * The reader: reads the whole file again and again until its stop pipe
 * closes; exit status 0 when every read was all-'a' (10 KiB) or all-'b'
 * (20 KiB), 1 on a torn or mixed read, 2 on an error, 3 if it never read.
 */
static int reader(const char *path, int stop_fd)
{
	static unsigned char buf[READER_B_BYTES + 1];
	unsigned long reads = 0;
	size_t len;
	ssize_t n;
	char c;
	int fd;

	for (;;) {
		n = read(stop_fd, &c, 1);
		if (n == 0)
			break;
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return 2;
		len = 0;
		while ((n = read(fd, buf + len, sizeof(buf) - len)) > 0)
			len += (size_t)n;
		close(fd);
		if (n < 0)
			return 2;
		if (len != READER_A_BYTES && len != READER_B_BYTES)
			return 1;
		for (size_t i = 0; i < len; i++)
			if (buf[i] != (len == READER_A_BYTES ? 'a' : 'b'))
				return 1;
		reads++;
	}
	return reads > 0 ? 0 : 3;
}

static void reader_never_sees_a_torn_file(void **state)
{
	const fixture *f = *state;
	static unsigned char a[READER_A_BYTES], b[READER_B_BYTES];
	const char *const only[] = { "rotating", NULL };
	char path[PATH_MAX];
	cf_error err = { 0 };
	int stop[2], wstatus = 0, changed = -1;
	pid_t pid;

	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	path_in(f, "rotating", path, sizeof(path));
	assert_status(CF_OK, ag_file_put(path, a, sizeof(a), 0600, NO_UID,
					 NO_GID, &changed, &err), &err);
	assert_int_equal(pipe2(stop, O_NONBLOCK), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(stop[1]);
		_exit(reader(path, stop[0]));
	}
	close(stop[0]);
	for (int i = 1; i <= ROTATIONS; i++) {
		const unsigned char *data = i % 2 ? b : a;
		size_t len = i % 2 ? sizeof(b) : sizeof(a);

		assert_status(CF_OK, ag_file_put(path, data, len, 0600,
						 NO_UID, NO_GID, &changed,
						 &err), &err);
		assert_int_equal(changed, 1);
	}
	close(stop[1]);
	assert_int_equal(waitpid(pid, &wstatus, 0), pid);
	assert_true(WIFEXITED(wstatus));
	if (WEXITSTATUS(wstatus) != 0)
		fail_msg("the reader saw a torn file or failed (status %d)",
			 WEXITSTATUS(wstatus));
	assert_dir_holds(f->dir, only);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(creates_with_content_and_mode,
						setup, teardown),
		cmocka_unit_test_setup_teardown(unchanged_content_is_not_rewritten,
						setup, teardown),
		cmocka_unit_test_setup_teardown(changed_content_is_replaced,
						setup, teardown),
		cmocka_unit_test_setup_teardown(large_content_compared_to_the_end,
						setup, teardown),
		cmocka_unit_test_setup_teardown(mode_fixed_without_rewrite,
						setup, teardown),
		cmocka_unit_test_setup_teardown(hard_linked_file_not_fixed_in_place,
						setup, teardown),
		cmocka_unit_test_setup_teardown(owner_set_or_refused,
						setup, teardown),
		cmocka_unit_test_setup_teardown(symlink_target_refused,
						setup, teardown),
		cmocka_unit_test_setup_teardown(symlinked_directory_refused,
						setup, teardown),
		cmocka_unit_test_setup_teardown(symlinked_directory_refused_without_openat2,
						setup, teardown),
		cmocka_unit_test_setup_teardown(changed_even_when_directory_fsync_fails,
						setup, teardown),
		cmocka_unit_test_setup_teardown(directory_and_fifo_targets_refused,
						setup, teardown),
		cmocka_unit_test_setup_teardown(missing_directory_is_an_error,
						setup, teardown),
		cmocka_unit_test_setup_teardown(bad_arguments_refused,
						setup, teardown),
		cmocka_unit_test_setup_teardown(failed_write_leaves_target_and_no_temp,
						setup, teardown),
		cmocka_unit_test_setup_teardown(replace_writes_without_comparison,
						setup, teardown),
		cmocka_unit_test_setup_teardown(relative_path_and_long_name,
						setup, teardown),
		cmocka_unit_test_setup_teardown(reader_never_sees_a_torn_file,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, fx_group_setup, NULL);
}
