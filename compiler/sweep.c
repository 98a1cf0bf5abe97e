/* sweep.c: `wtnc sweep`, runs a network under every combination of its
 * axes (rules per layer or pattern, run-time settings, seeds) and writes a
 * results directory.
 *
 * Each distinct network is compiled once into a cache keyed by the hash of
 * its checked IR (with wtn's version, this wtnc and the runtime it links),
 * so a repeated sweep compiles nothing. Runs share the cores: jobs x
 * threads <= online CPUs. A run's metrics go to a .part file that becomes
 * the final one only when the run succeeds, so a killed sweep, run again,
 * skips the finished runs and redoes the interrupted ones. The report
 * (sweep_report.c) reads the finished runs. */
#include "wtnc.h"
#include "wtn_version.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef WTN_BUILD_DIR
#define WTN_BUILD_DIR "build"
#endif

enum { MAX_AXES = 32, MAX_VALUES = 64, MAX_CONFIGS = 4096, MAX_SEEDS = 256 };

typedef struct Axis {
	bool feedback;           /* --feedback (compiled) or --set (run time) */
	char *values[MAX_VALUES];   /* each a whole "LAYER=RULE" or "KEY=VALUE" */
	int n;
} Axis;

typedef struct Sweep {
	const char *input, *out, *cache, *data, *target_cpu, *name;
	Axis axes[MAX_AXES];
	int naxes;
	long seeds[MAX_SEEDS];
	int nseeds;
	long epochs, steps, log_every;
	int jobs, threads, opt_level;
	bool dry_run, report_only;
} Sweep;

static void sweep_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void sweep_die(const char *fmt, ...)
{
	va_list ap;
	fputs("wtnc sweep: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void *xmalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);
	if (!p)
		sweep_die("out of memory");
	return p;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		sweep_die("out of memory");
	va_end(ap);
	return s;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: wtnc sweep FILE.wtn [AXES] [OPTIONS]\n"
		"Trains FILE's network under every combination of the axes, each distinct\n"
		"network compiled once, and writes tables, plots and index.html to a directory.\n\n"
		"axes (repeatable; a single value is a fixed setting of every run):\n"
		"  --feedback 'LAYER=R1,R2'   rules of a layer or a pattern ('layer3.*=kp,wm';\n"
		"                             rule arguments allowed: 'out=kp(decay=0.01),fa')\n"
		"  --set 'KEY=V1,V2'          a run-time setting of the binary (lr, momentum,\n"
		"                             weight_decay, schedule, ..., LAYER.ARG)\n"
		"  --seeds N | S1,S2,...      seeds 1..N, or a list (default 1)\n\n"
		"options:\n"
		"  -o, --out DIR              results directory (default: sweep-NAME)\n"
		"  --epochs N                 epochs of every run (default: the file's)\n"
		"  --steps N                  stop every run after N training steps\n"
		"  --data DIR                 the binaries' --data\n"
		"  --jobs J                   runs at once (default 1)\n"
		"  --threads T                threads per run (default: CPUs / jobs);\n"
		"                             jobs x threads must not exceed the CPUs\n"
		"  --log-every N              step records every N steps (default 20)\n"
		"  --cache DIR                compiled networks (default: DIR/bin)\n"
		"  --name NAME                the configuration's name when no axis has\n"
		"                             two values (default: base)\n"
		"  --dry-run                  list the networks and runs, run nothing\n"
		"  --report                   only rewrite the report of -o DIR from its runs\n"
		"  --target-cpu CPU, -O0..-O3 passed to the compiler\n"
		"A sweep run again in the same directory compiles and trains only what is\n"
		"missing: finished runs of the same network and arguments are kept;\n"
		"interrupted runs, and runs of another network or settings, run again.\n");
}

static long parse_count(const char *opt, const char *s, long lo, long hi)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (end == s || *end || errno || v < lo || v > hi)
		sweep_die("%s %s: expected a whole number from %ld to %ld", opt, s, lo, hi);
	return v;
}

/* "h2=bp,fa,kp(decay=0.01)" -> "h2=bp", "h2=fa", "h2=kp(decay=0.01)":
 * commas inside parentheses belong to a rule's arguments. */
static void parse_axis(Sweep *s, bool feedback, const char *spec)
{
	const char *opt = feedback ? "--feedback" : "--set";
	const char *eq = strchr(spec, '=');
	if (!eq || eq == spec || !eq[1])
		sweep_die("%s '%s': expected %s", opt, spec, feedback ? "LAYER=RULE[,RULE...]"
		          : "KEY=VALUE[,VALUE...]");
	if (s->naxes == MAX_AXES)
		sweep_die("more than %d axes", MAX_AXES);
	Axis *a = &s->axes[s->naxes++];
	a->feedback = feedback;
	size_t klen = eq - spec;
	const char *p = eq + 1;
	while (*p) {
		int depth = 0;
		const char *q = p;
		while (*q && (depth > 0 || *q != ',')) {
			depth += *q == '(';
			depth -= *q == ')';
			q++;
		}
		if (q == p)
			sweep_die("%s '%s': an empty value", opt, spec);
		if (a->n == MAX_VALUES)
			sweep_die("%s '%s': more than %d values", opt, spec, MAX_VALUES);
		char *v = xmalloc(klen + 1 + (q - p) + 1);
		memcpy(v, spec, klen + 1);
		memcpy(v + klen + 1, p, q - p);
		for (int i = 0; i < a->n; i++)
			if (!strcmp(a->values[i], v))
				sweep_die("%s '%s': '%s' twice", opt, spec, v);
		a->values[a->n++] = v;
		p = *q ? q + 1 : q;
	}
}

static int online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : (int)n;
}

static Sweep parse_sweep_args(int argc, char **argv)
{
	Sweep s = {.opt_level = 3, .jobs = 1, .log_every = 20};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
#define VALUE() (i + 1 < argc ? argv[++i] : (sweep_die("option '%s' needs a value", a), ""))
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			exit(0);
		} else if (!strcmp(a, "--feedback")) {
			parse_axis(&s, true, VALUE());
		} else if (!strcmp(a, "--set")) {
			parse_axis(&s, false, VALUE());
		} else if (!strcmp(a, "--seeds")) {
			const char *v = VALUE();
			if (!strchr(v, ',')) {
				long n = parse_count("--seeds", v, 1, MAX_SEEDS);
				for (long k = 1; k <= n; k++)
					s.seeds[s.nseeds++] = k;
			} else {
				char *copy = strdup(v), *save = NULL;
				for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
					if (s.nseeds == MAX_SEEDS)
						sweep_die("more than %d seeds", MAX_SEEDS);
					s.seeds[s.nseeds++] = parse_count("--seeds", t, 0, 0x7fffffffffffffffL);
				}
				free(copy);
			}
		} else if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
			s.out = VALUE();
		} else if (!strcmp(a, "--name")) {
			s.name = VALUE();
		} else if (!strcmp(a, "--cache")) {
			s.cache = VALUE();
		} else if (!strcmp(a, "--data")) {
			s.data = VALUE();
		} else if (!strcmp(a, "--epochs")) {
			s.epochs = parse_count(a, VALUE(), 1, 1000000);
		} else if (!strcmp(a, "--steps")) {
			s.steps = parse_count(a, VALUE(), 1, 1000000000);
		} else if (!strcmp(a, "--log-every")) {
			s.log_every = parse_count(a, VALUE(), 1, 1000000000);
		} else if (!strcmp(a, "--jobs") || !strcmp(a, "-j")) {
			s.jobs = (int)parse_count(a, VALUE(), 1, 256);
		} else if (!strcmp(a, "--threads")) {
			s.threads = (int)parse_count(a, VALUE(), 1, 64);
		} else if (!strcmp(a, "--target-cpu")) {
			s.target_cpu = VALUE();
		} else if (!strcmp(a, "--report")) {
			s.report_only = true;
		} else if (!strcmp(a, "--dry-run")) {
			s.dry_run = true;
		} else if (a[0] == '-' && a[1] == 'O' && a[2] >= '0' && a[2] <= '3' && !a[3]) {
			s.opt_level = a[2] - '0';
		} else if (a[0] == '-') {
			sweep_die("unknown option '%s' (run 'wtnc sweep --help')", a);
		} else if (s.input) {
			sweep_die("more than one network file ('%s')", a);
		} else {
			s.input = a;
		}
#undef VALUE
	}
	if (s.report_only) {
		if (!s.out)
			sweep_die("--report needs -o DIR, the sweep's directory");
		return s;
	}
	if (!s.input)
		sweep_die("no network file (run 'wtnc sweep --help')");
	if (!s.nseeds)
		s.seeds[s.nseeds++] = 1;
	int cpus = online_cpus();
	if (!s.threads)
		s.threads = cpus / s.jobs > 0 ? cpus / s.jobs : 1;
	if (s.jobs * s.threads > cpus)
		sweep_die("--jobs %d x --threads %d = %d threads, more than the %d CPUs", s.jobs,
		          s.threads, s.jobs * s.threads, cpus);
	if (!s.out) {
		const char *base = strrchr(s.input, '/');
		base = base ? base + 1 : s.input;
		size_t n = strlen(base);
		if (n > 4 && !strcmp(base + n - 4, ".wtn"))
			n -= 4;
		s.out = xasprintf("sweep-%.*s", (int)n, base);
	}
	if (!s.cache)
		s.cache = xasprintf("%s/bin", s.out);
	return s;
}

/* ---- child processes ---- */

static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) { stop_signal = sig; }

/* Starts argv with stdout and stderr to `log` (NULL: inherited) and stdout
 * to the pipe fd capture_fd when >= 0. The child dies with the sweep. */
static pid_t start_quiet(char *const argv[], const char *log, int capture_fd, bool quiet);
static pid_t start(char *const argv[], const char *log, int capture_fd)
{
	return start_quiet(argv, log, capture_fd, false);
}

/* quiet: standard error to /dev/null. */
static pid_t start_quiet(char *const argv[], const char *log, int capture_fd, bool quiet)
{
	pid_t pid = fork();
	if (pid < 0)
		sweep_die("cannot start '%s': %s", argv[0], strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		int in = open("/dev/null", O_RDONLY);
		if (in >= 0)
			dup2(in, 0);
		if (log) {
			int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (fd >= 0) {
				dup2(fd, 1);
				dup2(fd, 2);
			}
		}
		if (capture_fd >= 0)
			dup2(capture_fd, 1);
		if (quiet && in >= 0) {
			int null = open("/dev/null", O_WRONLY);
			if (null >= 0)
				dup2(null, 2);
		}
		execv(argv[0], argv);
		fprintf(stderr, "wtnc sweep: cannot run '%s': %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

static int wait_status(pid_t pid)
{
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs argv, returning its standard output (malloc'd) and exit status;
 * quiet: without its standard error. */
static char *run_capture(char *const argv[], int *status, bool quiet)
{
	int fds[2];
	if (pipe(fds) < 0)
		sweep_die("pipe: %s", strerror(errno));
	pid_t pid = start_quiet(argv, NULL, fds[1], quiet);
	close(fds[1]);
	size_t len = 0, cap = 4096;
	char *buf = xmalloc(cap);
	ssize_t n;
	for (;;) {
		if (len + 1 >= cap)
			buf = realloc(buf, cap *= 2);
		if (!buf)
			sweep_die("out of memory");
		n = read(fds[0], buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += n;
	}
	buf[len] = '\0';
	close(fds[0]);
	*status = wait_status(pid);
	return buf;
}

/* ---- the networks and their cache ---- */

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * 0x100000001b3ULL;
	return h;
}

/* Size and time of a file, so a rebuilt wtnc or runtime changes the key. */
static uint64_t file_identity(uint64_t h, const char *path)
{
	struct stat st;
	if (stat(path, &st) == 0) {
		long v[3] = {(long)st.st_size, (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
		h = fnv1a(h, v, sizeof v);
	}
	return fnv1a(h, path, strlen(path));
}

static const char *runtime_dir(void)
{
	const char *home = getenv("WTN_HOME");
	return home && *home ? home : WTN_BUILD_DIR;
}

typedef struct Net {
	const char *over[MAX_AXES];
	int nover;
	char hash[17];
	char *bin;
	bool cached;           /* found in the cache */
} Net;

typedef struct Config {
	char *name, *dir;      /* "h2=kp lr=0.05"; runs/h2=kp_lr=0.05 */
	const char *over[MAX_AXES], *sets[MAX_AXES * (WTN_MAX_ARGS + 1)];
	int nover, nsets;
	int net;
} Config;

static char self_exe[4096];

/* wtnc's argv for FILE with the overrides, then extra arguments. */
static char **compiler_argv(const Sweep *s, const Net *n, const char *a1, const char *a2)
{
	char **argv = xmalloc(sizeof *argv * (2 * n->nover + 10));
	int k = 0;
	argv[k++] = self_exe;
	argv[k++] = (char *)s->input;
	for (int i = 0; i < n->nover; i++) {
		argv[k++] = "--feedback";
		argv[k++] = (char *)n->over[i];
	}
	if (s->target_cpu) {
		argv[k++] = "--target-cpu";
		argv[k++] = (char *)s->target_cpu;
	}
	static char opt[4];
	snprintf(opt, sizeof opt, "-O%d", s->opt_level);
	argv[k++] = opt;
	argv[k++] = (char *)a1;
	if (a2)
		argv[k++] = (char *)a2;
	argv[k] = NULL;
	return argv;
}

/* The cache key: the checked network, as --emit-ir prints it, and what
 * turns it into a binary. */
static void network_hash(const Sweep *s, Net *n)
{
	char **argv = compiler_argv(s, n, "--emit-ir", NULL);
	int status;
	/* Warnings show once, when the network compiles; errors now. */
	char *ir = run_capture(argv, &status, true);
	if (status != 0)
		free(run_capture(argv, &status, false));
	if (status != 0) {
		fprintf(stderr, "wtnc sweep: the network with");
		for (int i = 0; i < n->nover; i++)
			fprintf(stderr, " --feedback %s", n->over[i]);
		fprintf(stderr, " does not compile (see above)\n");
		exit(1);
	}
	uint64_t h = fnv1a(0xcbf29ce484222325ULL, ir, strlen(ir));
	h = fnv1a(h, WTN_VERSION, strlen(WTN_VERSION));
	h = fnv1a(h, &s->opt_level, sizeof s->opt_level);
	if (s->target_cpu)
		h = fnv1a(h, s->target_cpu, strlen(s->target_cpu));
	h = file_identity(h, self_exe);
	char *lib = xasprintf("%s/libwtnrt.a", runtime_dir()), *mo = xasprintf("%s/wtn_main.o", runtime_dir());
	h = file_identity(file_identity(h, lib), mo);
	free(lib);
	free(mo);
	snprintf(n->hash, sizeof n->hash, "%016llx", (unsigned long long)h);
	free(ir);
	free(argv);
}

static bool is_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static void make_dir(const char *path)
{
	char *p = strdup(path);
	for (char *q = p + 1; *q; q++)
		if (*q == '/') {
			*q = '\0';
			mkdir(p, 0755);
			*q = '/';
		}
	if (mkdir(p, 0755) < 0 && errno != EEXIST)
		sweep_die("cannot make directory %s: %s", p, strerror(errno));
	free(p);
}

static void compile_net(const Sweep *s, Net *n)
{
	char *tmp = xasprintf("%s.tmp%d", n->bin, (int)getpid());
	char **argv = compiler_argv(s, n, "-o", tmp);
	fprintf(stderr, "wtnc sweep: compiling");
	for (int i = 0; i < n->nover; i++)
		fprintf(stderr, " --feedback %s", n->over[i]);
	fprintf(stderr, " -> %s\n", n->bin);
	int status = wait_status(start(argv, NULL, -1));
	if (status != 0) {
		unlink(tmp);
		sweep_die("compiling %s failed", s->input);
	}
	if (rename(tmp, n->bin) < 0)
		sweep_die("cannot rename %s to %s: %s", tmp, n->bin, strerror(errno));
	free(tmp);
	free(argv);
}

/* ---- configurations and runs ---- */

/* A directory name from a configuration name: letters, digits and . = , + -
 * kept, the rest '_'. */
static char *dir_name(const char *name, Config *cfgs, int ncfg)
{
	char *d = strdup(name);
	for (char *p = d; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      strchr(".=,+-", *p)))
			*p = '_';
	for (int k = 2;; k++) {
		bool taken = false;
		for (int i = 0; i < ncfg; i++)
			taken |= cfgs[i].dir && !strcmp(cfgs[i].dir + 5, d);
		if (!taken)
			break;
		char *e = xasprintf("%s-%d", name, k);
		free(d);
		d = dir_name(e, cfgs, 0);
		free(e);
	}
	char *full = xasprintf("runs/%s", d);
	free(d);
	return full;
}

/* A rule with arguments, PATTERN=RULE(K=V, ...): the rule is compiled in,
 * its arguments are run-time settings (PATTERN.K=V), so configurations that
 * differ only in them share one binary. `default` keeps its arguments (a
 * --set pattern cannot say "the layers no other line names"). */
static void split_rule_args(Config *c, const char *v)
{
	const char *eq = strchr(v, '='), *open = strchr(v, '(');
	size_t plen = eq ? (size_t)(eq - v) : 0;
	if (!eq || !open || open < eq || v[strlen(v) - 1] != ')' ||
	    (plen == 7 && !strncmp(v, "default", 7))) {
		c->over[c->nover++] = v;
		return;
	}
	c->over[c->nover++] = xasprintf("%.*s", (int)(open - v), v);
	char *args = xasprintf("%.*s", (int)(strlen(open + 1) - 1), open + 1), *save = NULL;
	for (char *a = strtok_r(args, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
		while (*a == ' ')
			a++;
		size_t n = strlen(a);
		while (n && a[n - 1] == ' ')
			a[--n] = '\0';
		char *k_end = strchr(a, '=');
		if (!k_end) {
			free(args);
			sweep_die("--feedback '%s': expected NAME=VALUE arguments", v);
		}
		char *val = k_end + 1;
		while (k_end > a && k_end[-1] == ' ')
			k_end--;
		while (*val == ' ')
			val++;
		c->sets[c->nsets++] = xasprintf("%.*s.%.*s=%s", (int)plen, v, (int)(k_end - a), a, val);
	}
	free(args);
}

/* Every combination of the axes' values, the first axis slowest. */
static int make_configs(const Sweep *s, Config *cfgs)
{
	int idx[MAX_AXES] = {0}, n = 0;
	for (;;) {
		if (n == MAX_CONFIGS)
			sweep_die("more than %d configurations", MAX_CONFIGS);
		Config *c = &cfgs[n];
		char name[2048] = "";
		size_t len = 0;
		for (int a = 0; a < s->naxes; a++) {
			const char *v = s->axes[a].values[idx[a]];
			if (s->axes[a].feedback)
				split_rule_args(c, v);
			else
				c->sets[c->nsets++] = v;
			if (s->axes[a].n > 1)
				len += snprintf(name + len, sizeof name - len, "%s%s", len ? " " : "", v);
		}
		c->name = strdup(len ? name : s->name ? s->name : "base");
		c->dir = dir_name(c->name, cfgs, n);
		n++;
		int a = s->naxes - 1;
		while (a >= 0 && ++idx[a] == s->axes[a].n)
			idx[a--] = 0;
		if (a < 0)
			return n;
	}
}

typedef struct Run {
	int config;
	long seed;
	char *metrics, *part, *log;
	char *keyfile, *key;   /* what the run is: network hash and arguments */
	pid_t pid;
	double started;
	enum { RUN_TODO, RUN_DONE_BEFORE, RUN_RUNNING, RUN_DONE, RUN_FAILED } state;
} Run;

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char **run_argv(const Sweep *s, const Config *c, const Net *n, const Run *r)
{
	char **argv = xmalloc(sizeof *argv * (2 * c->nsets + 32));
	int k = 0;
	argv[k++] = n->bin;
	argv[k++] = "train";
	argv[k++] = "--quiet";
	argv[k++] = "--seed";
	argv[k++] = xasprintf("%ld", r->seed);
	argv[k++] = "--threads";
	argv[k++] = xasprintf("%d", s->threads);
	argv[k++] = "--metrics";
	argv[k++] = r->part;
	argv[k++] = "--log-every";
	argv[k++] = xasprintf("%ld", s->log_every);
	if (s->epochs) {
		argv[k++] = "--epochs";
		argv[k++] = xasprintf("%ld", s->epochs);
	}
	if (s->steps) {
		argv[k++] = "--steps";
		argv[k++] = xasprintf("%ld", s->steps);
	}
	if (s->data) {
		argv[k++] = "--data";
		argv[k++] = (char *)s->data;
	}
	for (int i = 0; i < c->nsets; i++) {
		argv[k++] = "--set";
		argv[k++] = (char *)c->sets[i];
	}
	argv[k] = NULL;
	return argv;
}

/* The identity of a run: its network and every argument but where its
 * metrics go and how many threads it uses. A finished run counts only
 * while its key file holds the same key. */
static char *run_key(const Sweep *s, const Config *c, const Net *n, const Run *r)
{
	char **argv = run_argv(s, c, n, r);
	size_t len = strlen(n->hash) + 2;
	for (int i = 1; argv[i]; i++)
		len += strlen(argv[i]) + 1;
	char *key = xmalloc(len);
	strcpy(key, n->hash);
	for (int i = 1; argv[i]; i++) {
		if (!strcmp(argv[i], "--metrics") || !strcmp(argv[i], "--threads")) {
			i++;
			continue;
		}
		strcat(key, " ");
		strcat(key, argv[i]);
	}
	free(argv);
	return key;
}

static bool key_matches(const char *path, const char *key)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	char line[8192];
	bool same = fgets(line, sizeof line, f) && (line[strcspn(line, "\n")] = '\0', !strcmp(line, key));
	fclose(f);
	return same;
}

static void write_key(const Run *r, double seconds)
{
	FILE *f = fopen(r->keyfile, "w");
	if (!f)
		sweep_die("cannot write %s: %s", r->keyfile, strerror(errno));
	fprintf(f, "%s\n", r->key);
	if (seconds >= 0)
		fprintf(f, "seconds %.1f\n", seconds);
	if (fclose(f) != 0)
		sweep_die("cannot write %s", r->keyfile);
}

/* The run-time settings must be valid before anything trains: the binary
 * applies them and prints its version. */
static void check_settings(const Config *c, const Net *n)
{
	if (!c->nsets)
		return;
	char **argv = xmalloc(sizeof *argv * (2 * c->nsets + 3));
	int k = 0;
	argv[k++] = n->bin;
	for (int i = 0; i < c->nsets; i++) {
		argv[k++] = "--set";
		argv[k++] = (char *)c->sets[i];
	}
	argv[k++] = "--version";
	argv[k] = NULL;
	int status;
	free(run_capture(argv, &status, false));
	free(argv);
	if (status != 0)
		sweep_die("configuration '%s': the binary rejects its settings (see above)", c->name);
}

static const char *last_test_acc(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	snprintf(buf, len, "?");
	if (!f)
		return buf;
	char line[8192];
	while (fgets(line, sizeof line, f)) {
		const char *p = strstr(line, "\"test_acc\":");
		if (strncmp(line, "{\"epoch\"", 8) == 0 && p)
			snprintf(buf, len, "%.2f%%", strtod(p + 11, NULL));
	}
	fclose(f);
	return buf;
}

static void write_plan(const Sweep *s, Config *cfgs, int ncfg, Run *runs, int nruns,
                       int argc, char **argv)
{
	char *path = xasprintf("%s/plan.tsv", s->out), *tmp = xasprintf("%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		sweep_die("cannot write %s: %s", tmp, strerror(errno));
	fprintf(f, "# wtnc sweep plan (wtn %s): read by the report; rewritten by every sweep\n",
	        WTN_VERSION);
	fprintf(f, "command\twtnc");
	for (int i = 0; i < argc; i++)
		fprintf(f, " %s", argv[i]);
	fprintf(f, "\nnetwork\t%s\n", s->input);
	for (int a = 0; a < s->naxes; a++) {
		fprintf(f, "axis\t%s", s->axes[a].feedback ? "feedback" : "set");
		for (int i = 0; i < s->axes[a].n; i++)
			fprintf(f, "\t%s", s->axes[a].values[i]);
		fputc('\n', f);
	}
	for (int i = 0; i < ncfg; i++) {
		fprintf(f, "config\t%s\t%s", cfgs[i].name, cfgs[i].dir);
		for (int k = 0; k < cfgs[i].nover; k++)
			fprintf(f, "\t%s", cfgs[i].over[k]);
		fputc('\n', f);
	}
	for (int i = 0; i < nruns; i++)
		fprintf(f, "run\t%s\t%ld\t%s\n", cfgs[runs[i].config].name, runs[i].seed,
		        runs[i].metrics + strlen(s->out) + 1);
	if (fclose(f) != 0 || rename(tmp, path) < 0)
		sweep_die("cannot write %s", path);
	free(tmp);
	free(path);
}

static void stop_all(Run *runs, int nruns)
{
	for (int i = 0; i < nruns; i++)
		if (runs[i].state == RUN_RUNNING)
			kill(runs[i].pid, SIGTERM);
	for (int i = 0; i < nruns; i++)
		if (runs[i].state == RUN_RUNNING) {
			wait_status(runs[i].pid);
			unlink(runs[i].part);
		}
}

int sweep_main(int argc, char **argv)
{
	Sweep s = parse_sweep_args(argc, argv);
	if (s.report_only)
		return sweep_report(s.out);
	ssize_t len = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
	if (len <= 0)
		sweep_die("cannot find this wtnc (/proc/self/exe)");
	self_exe[len] = '\0';
	if (!is_file(s.input))
		sweep_die("%s: no such network file", s.input);

	static Config cfgs[MAX_CONFIGS];
	int ncfg = make_configs(&s, cfgs);
	static Net nets[MAX_CONFIGS];
	int nnets = 0;
	for (int i = 0; i < ncfg; i++) {
		Net n = {.nover = cfgs[i].nover};
		memcpy(n.over, cfgs[i].over, sizeof n.over);
		network_hash(&s, &n);
		int k = 0;
		while (k < nnets && strcmp(nets[k].hash, n.hash))
			k++;
		if (k == nnets) {
			n.bin = xasprintf("%s/%s", s.cache, n.hash);
			n.cached = is_file(n.bin);
			nets[nnets++] = n;
		}
		cfgs[i].net = k;
	}
	int nruns = ncfg * s.nseeds, todo = 0, cached = 0, stale = 0;
	Run *runs = xmalloc(sizeof *runs * nruns);
	for (int i = 0; i < ncfg; i++)
		for (int k = 0; k < s.nseeds; k++) {
			Run *r = &runs[i * s.nseeds + k];
			r->config = i;
			r->seed = s.seeds[k];
			r->metrics = xasprintf("%s/%s/seed%ld.jsonl", s.out, cfgs[i].dir, r->seed);
			r->part = xasprintf("%s.part", r->metrics);
			r->log = xasprintf("%s/%s/seed%ld.log", s.out, cfgs[i].dir, r->seed);
			r->keyfile = xasprintf("%s/%s/seed%ld.key", s.out, cfgs[i].dir, r->seed);
			r->key = run_key(&s, &cfgs[i], &nets[cfgs[i].net], r);
			r->state = is_file(r->metrics) && key_matches(r->keyfile, r->key) ? RUN_DONE_BEFORE
			           : RUN_TODO;
			stale += r->state == RUN_TODO && is_file(r->metrics);
			todo += r->state == RUN_TODO;
		}
	for (int k = 0; k < nnets; k++)
		cached += nets[k].cached;
	if (stale)
		fprintf(stderr, "wtnc sweep: %d finished runs were made with another network or other "
		        "settings: they run again\n", stale);
	fprintf(stderr, "wtnc sweep: %s: %d configurations x %d seeds = %d runs (%d done before, "
	        "%d to run); %d networks (%d compiled before); %d jobs x %d threads\n", s.input, ncfg,
	        s.nseeds, nruns, nruns - todo, todo, nnets, cached, s.jobs, s.threads);
	if (s.dry_run) {
		for (int k = 0; k < nnets; k++)
			printf("network %s%s\n", nets[k].bin, nets[k].cached ? " (compiled before)" : "");
		for (int i = 0; i < nruns; i++)
			printf("run %s seed %ld -> %s%s\n", cfgs[runs[i].config].name, runs[i].seed,
			       runs[i].metrics, runs[i].state == RUN_DONE_BEFORE ? " (done before)" : "");
		return 0;
	}
	make_dir(s.out);
	make_dir(s.cache);
	for (int i = 0; i < ncfg; i++) {
		char *d = xasprintf("%s/%s", s.out, cfgs[i].dir);
		make_dir(d);
		free(d);
	}
	write_plan(&s, cfgs, ncfg, runs, nruns, argc, argv);
	for (int k = 0; k < nnets; k++)
		if (!nets[k].cached)
			compile_net(&s, &nets[k]);
	for (int i = 0; i < ncfg; i++)
		check_settings(&cfgs[i], &nets[cfgs[i].net]);

	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	int running = 0, finished = 0, failed = 0, next = 0;
	double t0 = now_seconds();
	while (!stop_signal) {
		while (running < s.jobs && next < nruns) {
			Run *r = &runs[next++];
			if (r->state != RUN_TODO)
				continue;
			unlink(r->part);
			unlink(r->metrics);   /* a stale result must not outlive its key */
			write_key(r, -1);
			char **av = run_argv(&s, &cfgs[r->config], &nets[cfgs[r->config].net], r);
			r->pid = start(av, r->log, -1);
			free(av);
			r->state = RUN_RUNNING;
			r->started = now_seconds();
			running++;
		}
		if (!running)
			break;
		int status;
		pid_t pid = waitpid(-1, &status, 0);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		Run *r = NULL;
		for (int i = 0; i < nruns; i++)
			if (runs[i].state == RUN_RUNNING && runs[i].pid == pid)
				r = &runs[i];
		if (!r)
			continue;
		running--;
		finished++;
		double secs = now_seconds() - r->started;
		bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
		if (ok && rename(r->part, r->metrics) == 0) {
			r->state = RUN_DONE;
			write_key(r, secs);
			unlink(r->log);
			char acc[32], left[48] = "";
			/* The rate so far, jobs running side by side. */
			double rest = (now_seconds() - t0) / finished * (todo - finished);
			if (finished < todo)
				snprintf(left, sizeof left, " (about %.0fm%02.0fs left)", floor(rest / 60),
				         fmod(rest, 60));
			fprintf(stderr, "wtnc sweep: [%d/%d] %s seed %ld: test acc %s in %.1fs%s\n", finished,
			        todo, cfgs[r->config].name, r->seed, last_test_acc(r->metrics, acc, sizeof acc),
			        secs, left);
		} else if (!stop_signal) {
			r->state = RUN_FAILED;
			failed++;
			fprintf(stderr, "wtnc sweep: [%d/%d] %s seed %ld: FAILED (see %s)\n", finished, todo,
			        cfgs[r->config].name, r->seed, r->log);
		}
	}
	if (stop_signal) {
		stop_all(runs, nruns);
		fprintf(stderr, "wtnc sweep: stopped; run the same command again to finish the "
		        "remaining runs\n");
		return 128 + stop_signal;
	}
	if (todo)
		fprintf(stderr, "wtnc sweep: %d runs in %.1fs\n", todo, now_seconds() - t0);
	if (sweep_report(s.out) != 0)
		return 1;
	if (failed) {
		fprintf(stderr, "wtnc sweep: %d runs FAILED; their logs are under %s/runs/\n", failed,
		        s.out);
		return 1;
	}
	return 0;
}
