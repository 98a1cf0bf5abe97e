/* main.c: the wtnc driver. Reads a .wtn file, runs the phases in order and
 * links the generated kernels with the runtime into a training binary. */
#include "wtnc.h"
#include "wtn_version.h"
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef WTN_BUILD_DIR
#define WTN_BUILD_DIR "build"
#endif
#ifndef WTN_LINK_CC
#define WTN_LINK_CC "cc"
#endif

enum { MAX_OVERRIDES = 256 };

typedef struct Options {
	const char *input, *output;
	bool compile_only, emit_ir, emit_llvm, direct_convs;
	const char *overrides[MAX_OVERRIDES];
	int noverrides;
	CodegenOpts cg;
	const char *cc;
} Options;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: wtnc [options] FILE.wtn\n"
		"       wtnc sweep FILE.wtn [axes] [options]   (see 'wtnc sweep --help')\n"
		"Compiles a wtn network into a native training binary.\n\n"
		"  -o FILE                 output file (default: the input's name without .wtn)\n"
		"  -c                      stop after writing the object file\n"
		"  --emit-ir               print the checked model the binary embeds and stop\n"
		"  --emit-llvm             print the optimised LLVM IR and stop\n"
		"  --feedback LAYER=RULE   use RULE (e.g. fa, bp) on LAYER's feedback path;\n"
		"                          repeatable, overrides the file's feedback block\n"
		"  --target-cpu CPU        generate code for CPU (default: this machine's)\n"
		"  -O0 .. -O3              optimisation level (default -O3)\n"
		"  --direct-convs          no Winograd convolutions: every conv sums its\n"
		"                          kernel's products directly (other rounding)\n"
		"  --cc CC                 C compiler used to link (default: $CC, else the\n"
		"                          one wtnc was built with)\n"
		"  --version               wtn's version\n"
		"  -h, --help              this text\n");
}

static void die_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "wtnc: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n(run 'wtnc --help' for the options)\n");
	exit(2);
}

static const char *need_arg(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc)
		die_usage("option '%s' needs an argument", argv[*i]);
	return argv[++*i];
}

static Options parse_args(int argc, char **argv)
{
	Options o = {0};
	o.cg.opt_level = 3;
	o.cc = getenv("CC");
	if (!o.cc || !*o.cc)
		o.cc = WTN_LINK_CC;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			exit(0);
		} else if (!strcmp(a, "--version")) {
			printf("wtnc (wtn) %s\n", WTN_VERSION);
			exit(0);
		} else if (!strcmp(a, "-o")) {
			o.output = need_arg(argc, argv, &i);
		} else if (!strcmp(a, "-c")) {
			o.compile_only = true;
		} else if (!strcmp(a, "--emit-ir")) {
			o.emit_ir = true;
		} else if (!strcmp(a, "--direct-convs")) {
			o.direct_convs = true;
		} else if (!strcmp(a, "--emit-llvm")) {
			o.emit_llvm = true;
		} else if (!strcmp(a, "--feedback") || !strncmp(a, "--feedback=", 11)) {
			const char *v = a[10] == '=' ? a + 11 : need_arg(argc, argv, &i);
			if (o.noverrides == MAX_OVERRIDES)
				die_usage("too many %s options", "--feedback");
			o.overrides[o.noverrides++] = v;
		} else if (!strcmp(a, "--target-cpu") || !strncmp(a, "--target-cpu=", 13)) {
			o.cg.target_cpu = a[12] == '=' ? a + 13 : need_arg(argc, argv, &i);
		} else if (!strcmp(a, "--cc")) {
			o.cc = need_arg(argc, argv, &i);
		} else if (a[0] == '-' && a[1] == 'O' && a[2] >= '0' && a[2] <= '3' && !a[3]) {
			o.cg.opt_level = a[2] - '0';
		} else if (a[0] == '-' && a[1]) {
			die_usage("unknown option '%s'", a);
		} else if (o.input) {
			die_usage("more than one input file ('%s')", a);
		} else {
			o.input = a;
		}
	}
	if (!o.input)
		die_usage("no input file%s", "");
	if (o.cg.target_cpu && !codegen_cpu_known(o.cg.target_cpu))
		die_usage("unknown CPU '%s' for --target-cpu (llc-14 -mcpu=help lists them)",
		          o.cg.target_cpu);
	return o;
}

/* "dir/net.wtn" -> "dir/net" + suffix. */
static char *default_output(const char *input, const char *suffix)
{
	size_t n = strlen(input);
	if (n > 4 && !strcmp(input + n - 4, ".wtn"))
		n -= 4;
	char *s = malloc(n + strlen(suffix) + 1);
	memcpy(s, input, n);
	strcpy(s + n, suffix);
	return s;
}

/* Where the runtime library and the binary's main live: $WTN_HOME, else the
 * build directory this wtnc was built in. */
static const char *runtime_dir(void)
{
	const char *home = getenv("WTN_HOME");
	return home && *home ? home : WTN_BUILD_DIR;
}

static char *path_join(const char *dir, const char *name)
{
	char *s = malloc(strlen(dir) + strlen(name) + 2);
	sprintf(s, "%s/%s", dir, name);
	return s;
}

/* The private temporary directory (in TMPDIR) that holds the object file and,
 * through TMPDIR, the linker's own temporaries; and the running linker, whose
 * process group a signal kills so nothing is left behind. */
static char *volatile temp_dir;
static volatile pid_t child_pid;

/* Runs argv without a shell, in its own process group; returns its exit
 * status or -1. */
static int run(char *const argv[])
{
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "wtnc: cannot start '%s': %s\n", argv[0], strerror(errno));
		return -1;
	}
	if (pid == 0) {
		setpgid(0, 0);
		if (temp_dir)
			setenv("TMPDIR", temp_dir, 1);
		execvp(argv[0], argv);
		fprintf(stderr, "wtnc: cannot run '%s': %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	setpgid(pid, pid); /* also here, so a signal right after fork finds the group */
	child_pid = pid;
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			child_pid = 0;
			return -1;
		}
	child_pid = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* An output may be a new path or a regular file other than the input: never
 * a device, a FIFO, a directory, a symbolic link, or the source itself. */
static int check_output(const char *input, const char *output)
{
	struct stat in, out;
	if (lstat(output, &out) != 0) {
		/* a new name: its directory must take it (found now, not after compiling) */
		char *dir = strdup(output), *slash = strrchr(dir, '/');
		const char *d = !slash ? "." : slash == dir ? "/" : (*slash = '\0', dir);
		int ok = access(d, W_OK | X_OK) == 0;
		if (!ok)
			fprintf(stderr, "wtnc: cannot write '%s': %s: %s\n", output, d, strerror(errno));
		free(dir);
		return !ok;
	}
	if (!S_ISREG(out.st_mode)) {
		const char *kind = S_ISLNK(out.st_mode) ? "a symbolic link" : S_ISDIR(out.st_mode)
		                 ? "a directory" : S_ISFIFO(out.st_mode) ? "a FIFO"
		                 : S_ISCHR(out.st_mode) || S_ISBLK(out.st_mode) ? "a device"
		                 : "not a regular file";
		fprintf(stderr, "wtnc: will not write to '%s': it is %s\n", output, kind);
		return 1;
	}
	if (stat(input, &in) == 0 && in.st_dev == out.st_dev && in.st_ino == out.st_ino) {
		fprintf(stderr, "wtnc: will not write the output over the input '%s' (name another "
		        "file with -o)\n", input);
		return 1;
	}
	return 0;
}

/* argv for CC, which may carry flags ("clang -fsanitize=address"). */
enum { MAX_CC_WORDS = 32 };
static int split_words(char *s, char **words, int max)
{
	int n = 0;
	for (char *w = strtok(s, " \t"); w && n < max; w = strtok(NULL, " \t"))
		words[n++] = w;
	return n;
}

/* The libraries the runtime itself needs beyond OpenBLAS, zlib and libm
 * (MPI's, when it was built with MPI): the words of DIR/libwtnrt.libs, which
 * the Makefile writes; NULL when absent. */
static char *runtime_libs(const char *dir)
{
	char *path = path_join(dir, "libwtnrt.libs");
	FILE *f = fopen(path, "r");
	free(path);
	if (!f)
		return NULL;
	char *text = calloc(1, 4096);
	if (text && fread(text, 1, 4095, f) == 0)
		text[0] = '\0';
	fclose(f);
	return text;
}

static int link_binary(const Options *o, const char *object, const char *output)
{
	const char *dir = runtime_dir();
	char *lib = path_join(dir, "libwtnrt.a"), *main_obj = path_join(dir, "wtn_main.o");
	struct stat st;
	if (stat(lib, &st) || stat(main_obj, &st)) {
		fprintf(stderr, "wtnc: the wtn runtime is not in '%s' (build it with 'make', "
			"or set WTN_HOME to the directory holding libwtnrt.a and wtn_main.o)\n", dir);
		return 1;
	}
	char *cc = strdup(o->cc);
	char *argv[MAX_CC_WORDS + 80];
	int n = split_words(cc, argv, MAX_CC_WORDS);
	if (n == 0)
		argv[n++] = "cc";
	char *rest[] = {"-o", (char *)output, (char *)object, main_obj, lib,
		"-lopenblas", "-lz", "-lm", "-lpthread"};
	memcpy(argv + n, rest, sizeof rest);
	n += sizeof rest / sizeof rest[0];
	/* MPI's link flags, when the runtime was built with it */
	char *extra = runtime_libs(dir);
	for (char *w = extra ? strtok(extra, " \t\n") : NULL; w && n < MAX_CC_WORDS + 79;
	     w = strtok(NULL, " \t\n"))
		argv[n++] = w;
	argv[n] = NULL;
	int status = run(argv);
	free(cc);
	free(extra);
	free(lib);
	free(main_obj);
	if (status != 0) {
		fprintf(stderr, "wtnc: linking '%s' with %s failed\n", output, o->cc);
		return 1;
	}
	return 0;
}

/* Removes the private temporary directory and what is in it. */
static void remove_temp_dir(void)
{
	char *dir = temp_dir;
	if (!dir)
		return;
	DIR *d = opendir(dir);
	for (struct dirent *e; d && (e = readdir(d));) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(dir);
}

/* A signal while wtnc compiles or links: the linker and everything it
 * started die at once (so none writes another temporary), then the private
 * directory goes. The handler only walks the directory while the main flow
 * waits for the linker, so it never interrupts a malloc. */
static void remove_temp_and_die(int sig)
{
	pid_t pid = child_pid;
	if (pid > 0) {
		kill(-pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		remove_temp_dir();
	} else if (temp_dir) {
		char path[4096];
		snprintf(path, sizeof path, "%s/net.o", temp_dir);
		unlink(path);
		rmdir(temp_dir);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

/* The file wtnc will write, or NULL for standard output. */
static const char *output_path(const Options *o)
{
	if (o->emit_ir)
		return NULL;
	if (o->emit_llvm)
		return o->output && strcmp(o->output, "-") ? o->output : NULL;
	if (o->output)
		return o->output;
	return default_output(o->input, o->compile_only ? ".o" : "");
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "sweep"))
		return sweep_main(argc - 1, argv + 1);
	Options o = parse_args(argc, argv);
	const char *out = output_path(&o);
	if (out && !o.output && !strcmp(out, o.input)) {
		fprintf(stderr, "wtnc: '%s' has no .wtn suffix: name the binary with -o\n", o.input);
		return 1;
	}
	if (out && check_output(o.input, out))
		return 1;
	SrcFile *file = diag_read_file(o.input);
	if (!file)
		return 1;
	Program *prog = parse_program(file);
	IRNetwork *net = prog ? sema_program(prog, o.overrides, o.noverrides) : NULL;
	if (!net || diag_errors)
		return 1;
	net->direct_convs = o.direct_convs;
	ir_plan_buffers(net);
	if (model_verify(net))
		return 1;
	if (o.emit_ir) {
		model_print(stdout, net);
		return 0;
	}
	if (o.emit_llvm)
		return codegen(net, &o.cg, o.output ? o.output : "-", true);
	if (o.compile_only)
		return codegen(net, &o.cg, o.output ? o.output : default_output(o.input, ".o"), false);

	const char *output = o.output ? o.output : default_output(o.input, "");
	const char *tmpdir = getenv("TMPDIR");
	char *dir = path_join(tmpdir && *tmpdir ? tmpdir : "/tmp", "wtnc-XXXXXX");
	signal(SIGINT, remove_temp_and_die);
	signal(SIGTERM, remove_temp_and_die);
	signal(SIGHUP, remove_temp_and_die);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "wtnc: cannot create a temporary directory in '%s': %s\n",
			tmpdir && *tmpdir ? tmpdir : "/tmp", strerror(errno));
		return 1;
	}
	temp_dir = dir;
	char *object = path_join(dir, "net.o");
	int status = codegen(net, &o.cg, object, false) || link_binary(&o, object, output);
	remove_temp_dir();
	temp_dir = NULL;
	return status;
}
