/*
 * propagation.c - bench/propagation: the timing half of
 * bench/propagation.sh (issue 5, section 6: "a `coffer put` to their
 * group; p50 and p99 time until every agent's file holds the new value").
 *
 * The agents under test write their [file] sinks as DIR/PREFIX1 ..
 * DIR/PREFIXN (all in one directory).  For each of R rotations (after
 * one warm-up rotation that is not counted) this program:
 *   1. writes a fresh value ("rotation-R-<16 hex>", no newline) to
 *      --value-file, which the put command reads;
 *   2. stamps t0 (CLOCK_MONOTONIC) and starts the put command (the
 *      arguments after "--", e.g. `coffer put NAME --to group:G --file
 *      VALUE_FILE`), its stdout to /dev/null;
 *   3. watches DIR with inotify: every IN_MOVED_TO / IN_CLOSE_WRITE of
 *      PREFIXi makes it read DIR/PREFIXi, and the first time that file
 *      holds exactly the new value, agent i's time is stamped; the put's
 *      exit is seen through a pidfd (t1), in the same poll, so neither
 *      clock is polled;
 *   4. ends the rotation when the put has exited 0 and every agent's file
 *      holds the value, then waits --gap seconds so that the agents are
 *      parked in their long poll again before the next put.
 * The agents write their files atomically (temp file + rename), so the
 * rename's IN_MOVED_TO is the moment the new content becomes visible to
 * a reader; the stamp is taken when this process reads the event, which
 * is later by this process's own scheduling delay only.
 *
 * Reported: per rotation, "all agents have it" from the put's start
 * (t_all - t0) and from the put's return (t_all - t1; negative when the
 * last agent had it before the put process exited), the put's own
 * duration (t1 - t0) and mean CPU time (user + system); over all (agent, rotation) pairs, each agent's
 * latency from t0.  Percentiles are nearest-rank.  Text, or one JSON
 * object with --json (for the driver).
 *
 * Exit status: 0 when every rotation completed; 1 when an agent did not
 * get a value within --timeout seconds or the put failed (a real failure,
 * not a missed target); 2 on a usage or set-up error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define VALUE_MAX 64

static struct {
	const char *dir, *prefix, *value_file;
	long agents, rotations;
	double timeout_s, gap_s;
	int json;
	char **put_argv;
} opt = { .prefix = "agent-", .agents = 100, .rotations = 20,
	  .timeout_s = 30, .gap_s = 0.5 };

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile p (0..100) of n sorted values. */
static double pct(const double *sorted, size_t n, double p)
{
	size_t rank;

	if (n == 0)
		return 0;
	rank = (size_t)((p / 100.0) * (double)n + 0.999999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return sorted[rank - 1];
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: propagation --dir DIR --value-file F [--prefix P] [--agents N]\n"
		"                   [--rotations R] [--timeout S] [--gap S] [--json]\n"
		"                   -- PUT_COMMAND [ARGS...]\n"
		"\n"
		"Runs R rotations (plus one warm-up): writes a new value to F, runs\n"
		"PUT_COMMAND (which must put F's content), and times, with inotify on\n"
		"DIR, until every file DIR/P1 .. DIR/PN holds the new value.\n"
		"Defaults: --prefix agent- --agents 100 --rotations 20 --timeout 30\n"
		"--gap 0.5 (seconds between the end of a rotation and the next put).\n");
}

static int parse_args(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "value-file", required_argument, NULL, 'v' },
		{ "agents", required_argument, NULL, 'n' },
		{ "rotations", required_argument, NULL, 'r' },
		{ "timeout", required_argument, NULL, 't' },
		{ "gap", required_argument, NULL, 'g' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	char *end;
	int ch;

	while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
		errno = 0;
		switch (ch) {
		case 'd': opt.dir = optarg; break;
		case 'p': opt.prefix = optarg; break;
		case 'v': opt.value_file = optarg; break;
		case 'n':
			opt.agents = strtol(optarg, &end, 10);
			if (*end || errno || opt.agents < 1 || opt.agents > 100000)
				goto bad;
			break;
		case 'r':
			opt.rotations = strtol(optarg, &end, 10);
			if (*end || errno || opt.rotations < 1 || opt.rotations > 100000)
				goto bad;
			break;
		case 't':
			opt.timeout_s = strtod(optarg, &end);
			if (*end || errno || !(opt.timeout_s > 0))
				goto bad;
			break;
		case 'g':
			opt.gap_s = strtod(optarg, &end);
			if (*end || errno || !(opt.gap_s >= 0 && opt.gap_s < 3600))
				goto bad;
			break;
		case 'j': opt.json = 1; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (opt.dir == NULL || opt.value_file == NULL || optind >= argc) {
		usage(stderr);
		return -1;
	}
	if (strlen(opt.prefix) > NAME_MAX - 8) {
		fprintf(stderr, "propagation: --prefix is too long\n");
		return -1;
	}
	opt.put_argv = argv + optind;
	return 0;
bad:
	fprintf(stderr, "propagation: bad value \"%s\"\n", optarg);
	return -1;
}

/* Agent index (1..N) named by a file name, or 0. */
static long agent_of(const char *name)
{
	size_t plen = strlen(opt.prefix);
	char *end;
	long i;

	if (strncmp(name, opt.prefix, plen) != 0 || name[plen] < '1' ||
	    name[plen] > '9')
		return 0;
	errno = 0;
	i = strtol(name + plen, &end, 10);
	if (*end != '\0' || errno || i < 1 || i > opt.agents)
		return 0;
	return i;
}

/* Whether DIR/PREFIXi holds exactly value (len bytes). */
static int holds(long i, const char *value, size_t len)
{
	char path[PATH_MAX], buf[VALUE_MAX + 1];
	ssize_t got;
	int fd;

	if (snprintf(path, sizeof(path), "%s/%s%ld", opt.dir, opt.prefix, i) >=
	    (int)sizeof(path))
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	got = read(fd, buf, sizeof(buf));
	close(fd);
	return got == (ssize_t)len && memcmp(buf, value, len) == 0;
}

/* User + system CPU time of the waited-for children so far. */
static double children_cpu_s(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_CHILDREN, &ru) != 0)
		return 0;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int write_value(const char *value, size_t len)
{
	int fd = open(opt.value_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		      0600);
	int ok;

	if (fd < 0) {
		fprintf(stderr, "propagation: %s: %s\n", opt.value_file,
			strerror(errno));
		return -1;
	}
	ok = write(fd, value, len) == (ssize_t)len;
	if (close(fd) != 0)
		ok = 0;
	if (!ok)
		fprintf(stderr, "propagation: writing %s failed\n", opt.value_file);
	return ok ? 0 : -1;
}

struct rotation {
	double put_s;     /* t1 - t0 */
	double put_cpu_s; /* the put's user + system CPU time */
	double all_s;     /* t_all - t0 */
	double *agent_s;  /* per agent: t_i - t0 */
};

/*
 * One rotation: a new value, the put, and the watch until every agent has
 * it.  Returns 0, or -1 after saying on stderr what failed.
 */
static int rotate(int ino, long r, struct rotation *out)
{
	unsigned char rnd[8];
	char value[VALUE_MAX];
	size_t len;
	long left = opt.agents, i;
	pid_t pid;
	int pidfd = -1, put_done = 0, status, rc = -1, fd;
	double t0, deadline, cpu0 = children_cpu_s();
	posix_spawn_file_actions_t fa;
	_Alignas(struct inotify_event) char buf[64 * 1024];

	fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd)) {
		fprintf(stderr, "propagation: /dev/urandom: %s\n", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	len = (size_t)snprintf(value, sizeof(value),
			       "rotation-%ld-%02x%02x%02x%02x%02x%02x%02x%02x", r,
			       rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5],
			       rnd[6], rnd[7]);
	if (write_value(value, len) != 0)
		return -1;
	for (i = 0; i < opt.agents; i++)
		out->agent_s[i] = -1;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null",
					 O_WRONLY, 0);
	t0 = now_s();
	if (posix_spawnp(&pid, opt.put_argv[0], &fa, NULL, opt.put_argv,
			 environ) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		fprintf(stderr, "propagation: cannot run %s\n", opt.put_argv[0]);
		return -1;
	}
	posix_spawn_file_actions_destroy(&fa);
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		fprintf(stderr, "propagation: pidfd_open: %s\n", strerror(errno));
		waitpid(pid, &status, 0);
		return -1;
	}
	deadline = t0 + opt.timeout_s;

	while (left > 0 || !put_done) {
		struct pollfd p[2] = { { ino, POLLIN, 0 }, { pidfd, POLLIN, 0 } };
		double wait_s = deadline - now_s();
		int n;

		if (wait_s <= 0) {
			fprintf(stderr, "propagation: rotation %ld: after %.1f s, %ld "
				"of %ld agent(s) still lack the new value%s; first: ",
				r, opt.timeout_s, left, opt.agents,
				put_done ? "" : " and the put has not returned");
			for (i = 0; i < opt.agents; i++)
				if (out->agent_s[i] < 0) {
					fprintf(stderr, "%s/%s%ld\n", opt.dir,
						opt.prefix, i + 1);
					break;
				}
			if (!put_done) {
				kill(pid, SIGTERM);
				waitpid(pid, &status, 0);
			}
			goto out;
		}
		n = poll(p, put_done ? 1 : 2, (int)(wait_s * 1000) + 1);
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "propagation: poll: %s\n", strerror(errno));
			goto out;
		}
		if (n <= 0)
			continue;
		if (!put_done && (p[1].revents & POLLIN)) {
			out->put_s = now_s() - t0;
			put_done = 1;
			if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
			    WEXITSTATUS(status) != 0) {
				fprintf(stderr, "propagation: rotation %ld: the put "
					"command failed (status %d)\n", r, status);
				goto out;
			}
			out->put_cpu_s = children_cpu_s() - cpu0;
		}
		if (p[0].revents & POLLIN) {
			ssize_t got = read(ino, buf, sizeof(buf));
			double t = now_s();
			char *q;

			if (got < 0) {
				if (errno == EINTR || errno == EAGAIN)
					continue;
				fprintf(stderr, "propagation: inotify read: %s\n",
					strerror(errno));
				goto out;
			}
			for (q = buf; q < buf + got;) {
				const struct inotify_event *ev =
					(const struct inotify_event *)(void *)q;

				q += sizeof(*ev) + ev->len;
				if (ev->mask & IN_Q_OVERFLOW) {
					/* lost events: look at every file */
					for (i = 1; i <= opt.agents; i++)
						if (out->agent_s[i - 1] < 0 &&
						    holds(i, value, len)) {
							out->agent_s[i - 1] = t - t0;
							left--;
						}
					continue;
				}
				if (ev->len == 0)
					continue;
				i = agent_of(ev->name);
				if (i == 0 || out->agent_s[i - 1] >= 0)
					continue;
				if (holds(i, value, len)) {
					out->agent_s[i - 1] = t - t0;
					left--;
				}
			}
		}
	}
	out->all_s = 0;
	for (i = 0; i < opt.agents; i++)
		if (out->agent_s[i] > out->all_s)
			out->all_s = out->agent_s[i];
	rc = 0;
out:
	close(pidfd);
	return rc;
}

static void nap(double s)
{
	struct timespec ts;

	if (s <= 0)
		return;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* p50, p99, max of n values (sorted in place), in milliseconds. */
static void summary(double *v, size_t n, double out[3])
{
	qsort(v, n, sizeof(*v), cmp_double);
	out[0] = pct(v, n, 50) * 1000;
	out[1] = pct(v, n, 99) * 1000;
	out[2] = n ? v[n - 1] * 1000 : 0;
}

static json_t *triple(const double s[3])
{
	return json_pack("{s:f, s:f, s:f}", "p50_ms", s[0], "p99_ms", s[1],
			 "max_ms", s[2]);
}

int main(int argc, char **argv)
{
	struct rotation rot = { 0 };
	double *all = NULL, *from_ret = NULL, *put = NULL, *each = NULL;
	double put_cpu_s = 0;
	double s_all[3], s_ret[3], s_put[3], s_each[3];
	size_t n_each = 0;
	long r, i;
	int ino = -1, rc = 2;

	if (parse_args(argc, argv) != 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	all = calloc((size_t)opt.rotations, sizeof(*all));
	from_ret = calloc((size_t)opt.rotations, sizeof(*from_ret));
	put = calloc((size_t)opt.rotations, sizeof(*put));
	each = calloc((size_t)opt.rotations * (size_t)opt.agents, sizeof(*each));
	rot.agent_s = calloc((size_t)opt.agents, sizeof(*rot.agent_s));
	if (!all || !from_ret || !put || !each || !rot.agent_s) {
		fprintf(stderr, "propagation: out of memory\n");
		goto out;
	}
	ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (ino < 0 || inotify_add_watch(ino, opt.dir, IN_MOVED_TO |
					 IN_CLOSE_WRITE) < 0) {
		fprintf(stderr, "propagation: inotify on %s: %s\n", opt.dir,
			strerror(errno));
		goto out;
	}
	rc = 1;
	/* Rotation 0: the warm-up (first value, connections settled). */
	for (r = 0; r <= opt.rotations; r++) {
		if (rotate(ino, r, &rot) != 0)
			goto out;
		fprintf(opt.json ? stderr : stdout, "   rotation %3ld%s: put "
			"%7.1f ms, all %ld agents %7.1f ms after its start, "
			"%+7.1f ms after its return\n", r,
			r == 0 ? " (warm-up)" : "", rot.put_s * 1000, opt.agents,
			rot.all_s * 1000, (rot.all_s - rot.put_s) * 1000);
		if (r > 0) {
			all[r - 1] = rot.all_s;
			from_ret[r - 1] = rot.all_s - rot.put_s;
			put[r - 1] = rot.put_s;
			put_cpu_s += rot.put_cpu_s;
			for (i = 0; i < opt.agents; i++)
				each[n_each++] = rot.agent_s[i];
		}
		nap(opt.gap_s);
	}
	summary(all, (size_t)opt.rotations, s_all);
	summary(from_ret, (size_t)opt.rotations, s_ret);
	summary(put, (size_t)opt.rotations, s_put);
	summary(each, n_each, s_each);
	if (opt.json) {
		json_t *o = json_pack("{s:i, s:i, s:f, s:o, s:o, s:o, s:o}",
				      "agents", (json_int_t)opt.agents,
				      "rotations", (json_int_t)opt.rotations,
				      "put_cpu_ms", put_cpu_s * 1000 /
				      (double)opt.rotations,
				      "all_from_start", triple(s_all),
				      "all_from_return", triple(s_ret),
				      "put", triple(s_put),
				      "each_from_start", triple(s_each));

		if (o == NULL || json_dumpf(o, stdout, JSON_COMPACT) != 0) {
			fprintf(stderr, "propagation: JSON output failed\n");
			json_decref(o);
			goto out;
		}
		putchar('\n');
		json_decref(o);
	} else {
		printf("%ld agents, %ld rotations (ms)          p50      p99      max\n",
		       opt.agents, opt.rotations);
		printf("  all have it, from the put's start  %8.1f %8.1f %8.1f\n",
		       s_all[0], s_all[1], s_all[2]);
		printf("  all have it, from the put's return %8.1f %8.1f %8.1f\n",
		       s_ret[0], s_ret[1], s_ret[2]);
		printf("  each (agent, rotation), from start %8.1f %8.1f %8.1f\n",
		       s_each[0], s_each[1], s_each[2]);
		printf("  the put alone                      %8.1f %8.1f %8.1f\n",
		       s_put[0], s_put[1], s_put[2]);
		printf("  the put's CPU time, mean           %8.1f\n",
		       put_cpu_s * 1000 / (double)opt.rotations);
	}
	rc = fflush(stdout) == 0 ? 0 : 1;
out:
	if (ino >= 0)
		close(ino);
	free(all);
	free(from_ret);
	free(put);
	free(each);
	free(rot.agent_s);
	return rc;
}
