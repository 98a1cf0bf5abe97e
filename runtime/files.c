/* files.c: opening the files a run reads and writes without surprises. An
 * input must be a regular file (a FIFO would hang, a device never ends); an
 * output must be a regular file or a new name, checked before any work, so
 * that a run neither replaces /dev/null nor finds an unwritable path after
 * an hour of training. A signal during a save removes the temporary file. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "wtnrt.h"

const char *rt_file_kind(mode_t mode)
{
	return S_ISDIR(mode) ? "a directory" : S_ISLNK(mode) ? "a symbolic link"
	     : S_ISFIFO(mode) ? "a FIFO" : S_ISCHR(mode) || S_ISBLK(mode) ? "a device"
	     : S_ISSOCK(mode) ? "a socket" : "not a regular file";
}

int rt_open_regular(const char *path, struct stat *st)
{
	/* O_NONBLOCK: opening a FIFO without a writer returns at once. */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fstat(fd, st) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	if (!S_ISREG(st->st_mode)) {
		close(fd);
		return -2;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

long rt_read_at(int fd, void *buf, long n, long offset)
{
	long got = 0;
	while (got < n) {
		ssize_t r = pread(fd, (char *)buf + got, n - got, offset + got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -1 : got;
		got += r;
	}
	return got;
}

int rt_check_output(const char *path, const char *option)
{
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISREG(st.st_mode)) {
			fprintf(stderr, "wtn: %s %s: will not write there: it is %s\n", option, path,
			        rt_file_kind(st.st_mode));
			return -1;
		}
		if (access(path, W_OK) != 0) {
			fprintf(stderr, "wtn: %s %s: cannot write: %s\n", option, path, strerror(errno));
			return -1;
		}
	} else if (errno != ENOENT) {
		fprintf(stderr, "wtn: %s %s: %s\n", option, path, strerror(errno));
		return -1;
	}
	/* Saves create a temporary file next to the target and rename it. */
	char *dir = strdup(path);
	char *slash = dir ? strrchr(dir, '/') : NULL;
	const char *d = !dir ? "." : !slash ? "." : slash == dir ? "/" : (*slash = '\0', dir);
	int rc = 0;
	if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "wtn: %s %s: directory %s does not exist\n", option, path, d);
		rc = -1;
	} else if (access(d, W_OK | X_OK) != 0) {
		fprintf(stderr, "wtn: %s %s: cannot create files in %s: %s\n", option, path, d,
		        strerror(errno));
		rc = -1;
	}
	free(dir);
	return rc;
}

/* Whether two paths name the same file (or the same new name). */
static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	if (stat(a, &sa) == 0 && stat(b, &sb) == 0)
		return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
	return strcmp(a, b) == 0;
}

int rt_check_outputs(const RtOptions *o)
{
	bool train = strcmp(o->command, "train") == 0, mirror = strcmp(o->command, "mirror") == 0;
	const char *save = train || mirror ? o->save : NULL;
	const char *metrics = train ? o->metrics : NULL;
	if (save && rt_check_output(save, "--save") < 0)
		return -1;
	if (metrics && rt_check_output(metrics, "--metrics") < 0)
		return -1;
	if (metrics && save && same_file(metrics, save)) {
		fprintf(stderr, "wtn: --metrics %s is also the --save checkpoint\n", metrics);
		return -1;
	}
	/* --save over --init continues a checkpoint; metrics over it would not. */
	if (metrics && o->init && same_file(metrics, o->init)) {
		fprintf(stderr, "wtn: --metrics %s is also the --init checkpoint\n", metrics);
		return -1;
	}
	if (metrics && o->resume && same_file(metrics, o->resume)) {
		fprintf(stderr, "wtn: --metrics %s is also the --resume checkpoint\n", metrics);
		return -1;
	}
	return 0;
}

/* ---- signals ---- */
static char *volatile pending_tmp;   /* the save in progress, removed on a signal */
static volatile sig_atomic_t stop_signal;
static bool deferring;               /* train: finish the step, save, then exit */

/* The first signal of a deferring run only asks it to stop (the step and
 * any save in progress finish); otherwise, or at a second signal, the
 * process dies of it, removing a half-written temporary file first. */
static void on_signal(int sig)
{
	if (deferring && !stop_signal) {
		stop_signal = sig;
		return;
	}
	char *tmp = pending_tmp;
	if (tmp)
		unlink(tmp);
	signal(sig, SIG_DFL);
	raise(sig);
}

void rt_signals_install(bool defer)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
	deferring = defer;
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = on_signal;
		sigemptyset(&sa.sa_mask);
		sigaction(sigs[i], &sa, NULL);
	}
}

int rt_stop_requested(void)
{
	return stop_signal;
}

void rt_tmp_register(char *path)
{
	pending_tmp = path;
}
