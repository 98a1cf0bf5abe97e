/* main.c: the command line of a compiled network: picks the command, reads
 * the options (which override the model's train settings) and runs it. */
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "wtnrt.h"
#include "wtn_version.h"

static const char *prog = "wtn";

static void usage(FILE *out, const RtModel *m)
{
	fprintf(out,
	        "usage: %s [COMMAND] [OPTIONS]\n"
	        "Trains and evaluates the network %s (compiled by wtnc).\n"
	        "\n"
	        "commands:\n"
	        "  train            train the network (the default)\n"
	        "  eval --init FILE test loss and accuracy of a checkpoint\n"
	        "  info             layers, shapes, feedback rules, parameters, multiply-adds\n"
	        "  mirror --steps N run N weight-mirror steps alone (W fixed), printing each\n"
	        "                   wm layer's angle(B, W) and |B|/|W|; --save keeps B\n"
	        "\n"
	        "options (override the program's train block):\n"
	        "  --data DIR       data: fashion_mnist, mnist, synthetic, or a directory of\n"
	        "                   IDX files (plain or .gz) or of CIFAR-10 binaries\n"
	        "                   (data_batch_1..5.bin, test_batch.bin) [%s]\n"
	        "  --epochs N       epochs [%d]\n"
	        "  --batch N        batch size; buffers are planned for it at start-up [%d]\n"
	        "  --lr X           learning rate [%g]\n"
	        "  --seed N         seed for initialisation, shuffling and noise [%ld]\n"
	        "  --threads N      threads for matrix products and updates [online CPUs]\n"
	        "  --no-shuffle     keep the data order\n"
	        "  --set KEY=VALUE  a run-time setting: lr, momentum, weight_decay, schedule,\n"
	        "                   ..., or LAYER.ARG (h2.decay=0.01, 'layer3.*.noise=0.5');\n"
	        "                   repeatable;\n"
	        "                   '--set help' lists them with their compiled values\n"
	        "  --steps N        train: stop after N training steps; mirror: run N steps\n"
	        "  --init FILE      start from a safetensors checkpoint's parameters\n"
	        "  --init-draw-missing  draw the feedback matrices the --init file lacks\n"
	        "                   (a PyTorch state_dict) as the rules' init says\n"
	        "  --resume FILE    train: continue a resumable checkpoint's run exactly\n"
	        "  --allow-changes  --resume even if the configuration differs\n"
	        "  --save FILE      write a safetensors checkpoint after every epoch\n"
	        "  --save-state     make every --save checkpoint resumable (optimiser state,\n"
	        "                   counters, random streams)\n"
	        "  --save-every N   train: also write it after every N steps (resumable)\n"
	        "  --metrics FILE   write the run's configuration, then one JSON object per epoch\n"
	        "  --log-every N    also write a step record (loss, lr, samples/s) every N steps\n"
	        "  --layers         print a per-layer table (angle, |B|/|W|, delta) after each epoch\n"
	        "  --profile        train: print where the step's time goes, per layer and phase\n"
	        "  --quiet          print nothing but errors\n"
	        "  --version        wtn's version\n"
	        "  --mpi            use MPI even when no launcher (mpirun, srun) is seen\n"
	        "  --sync-bn        data-parallel: batchnorm statistics of the global batch\n"
	        "                   rather than of each rank's shard\n"
	        "  -h, --help       this text\n"
	        "\n"
	        "SIGINT or SIGTERM during train: finish the step, save (with --save), exit\n"
	        "exit status: 0 success, 1 runtime error, 2 usage error, 128+N stopped by signal N\n",
	        prog, m->name, m->train.data, m->train.epochs, m->train.batch, m->train.lr,
	        m->train.seed);
}

static int usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "wtn: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (try '%s --help')\n", prog);
	return 2;
}

static bool parse_long_arg(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (end == s || *end || errno || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

static bool parse_double_arg(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || *end || !isfinite(v) || v <= 0)
		return false;
	*out = v;
	return true;
}

/* Applies one option with a value. Returns 0, or 2 after a message. */
static int apply_option(const char *name, const char *val, RtModel *m, RtOptions *o)
{
	RtTrain *t = &m->train;
	long v;
	if (strcmp(name, "--data") == 0)
		o->data = val;
	else if (strcmp(name, "--init") == 0)
		o->init = val;
	else if (strcmp(name, "--resume") == 0)
		o->resume = val;
	else if (strcmp(name, "--save") == 0)
		o->save = val;
	else if (strcmp(name, "--metrics") == 0)
		o->metrics = val;
	else if (strcmp(name, "--epochs") == 0) {
		if (!parse_long_arg(val, 1, 1000000, &v))
			return usage_error("--epochs %s: expected a whole number of epochs >= 1", val);
		t->epochs = (int)v;
	} else if (strcmp(name, "--batch") == 0) {
		if (!parse_long_arg(val, 1, rt_batch_limit(m), &v))
			return usage_error("--batch %s: expected a batch size from 1 to %d (the largest "
			                   "whose activations the kernels can index)", val, rt_batch_limit(m));
		t->batch = (int)v;
	} else if (strcmp(name, "--lr") == 0) {
		if (!parse_double_arg(val, &t->lr))
			return usage_error("--lr %s: expected a positive number", val);
	} else if (strcmp(name, "--seed") == 0) {
		if (!parse_long_arg(val, 0, 0x7fffffffffffffffL, &v))
			return usage_error("--seed %s: expected a non-negative integer", val);
		t->seed = v;
	} else if (strcmp(name, "--steps") == 0) {
		if (!parse_long_arg(val, 1, 1000000000, &v))
			return usage_error("--steps %s: expected a whole number of steps >= 1", val);
		o->steps = v;
	} else if (strcmp(name, "--save-every") == 0) {
		if (!parse_long_arg(val, 1, 1000000000, &v))
			return usage_error("--save-every %s: expected a whole number of steps >= 1", val);
		o->save_every = v;
	} else if (strcmp(name, "--log-every") == 0) {
		if (!parse_long_arg(val, 1, 1000000000, &v))
			return usage_error("--log-every %s: expected a whole number of steps >= 1", val);
		o->log_every = v;
	} else if (strcmp(name, "--set") == 0) {
		if (strcmp(val, "help") == 0) {
			rt_settings_help(stdout, m);
			return 0;
		}
		if (rt_setting_apply(m, val) < 0)
			return 1;
	} else if (strcmp(name, "--threads") == 0) {
		if (!parse_long_arg(val, 1, 64, &v))
			return usage_error("--threads %s: expected a thread count from 1 to 64", val);
		o->threads = (int)v;
	} else
		return usage_error("unknown option %s", name);
	return 0;
}

static bool takes_value(const char *name)
{
	static const char *const with_value[] = {"--data", "--epochs", "--batch", "--lr", "--seed",
	                                         "--threads", "--init", "--resume", "--save",
	                                         "--metrics",
	                                         "--steps", "--save-every", "--set", "--log-every"};
	for (size_t i = 0; i < sizeof with_value / sizeof with_value[0]; i++)
		if (strcmp(name, with_value[i]) == 0)
			return true;
	return false;
}

/* Returns -1 to go on, or an exit status. */
static int parse_args(int argc, char **argv, RtModel *m, RtOptions *o)
{
	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0 || strcmp(a, "help") == 0) {
			usage(stdout, m);
			return 0;
		}
		if (strcmp(a, "--version") == 0) {
			printf("%s (network %s) wtn %s\n", prog, m->name, WTN_VERSION);
			return 0;
		}
		if (strcmp(a, "--no-shuffle") == 0) {
			o->no_shuffle = true;
			continue;
		}
		if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
			o->quiet = true;
			continue;
		}
		if (strcmp(a, "--layers") == 0) {
			o->layer_table = true;
			continue;
		}
		if (strcmp(a, "--profile") == 0) {
			o->profile = true;
			continue;
		}
		if (strcmp(a, "--mpi") == 0) {
			o->mpi = true;
			continue;
		}
		if (strcmp(a, "--sync-bn") == 0) {
			o->sync_bn = true;
			continue;
		}
		if (strcmp(a, "--save-state") == 0) {
			o->save_state = true;
			continue;
		}
		if (strcmp(a, "--allow-changes") == 0) {
			o->allow_changes = true;
			continue;
		}
		if (strcmp(a, "--init-draw-missing") == 0) {
			o->draw_missing = true;
			continue;
		}
		if (a[0] != '-') {
			if (o->command)
				return usage_error("unexpected argument '%s'", a);
			if (strcmp(a, "train") && strcmp(a, "eval") && strcmp(a, "info") &&
			    strcmp(a, "mirror"))
				return usage_error("unknown command '%s'", a);
			o->command = a;
			continue;
		}
		char name[32];
		const char *val;
		char *eq = strchr(a, '=');
		if (eq && (size_t)(eq - a) < sizeof name) {
			memcpy(name, a, eq - a);
			name[eq - a] = '\0';
			val = eq + 1;
		} else {
			snprintf(name, sizeof name, "%s", a);
			val = NULL;
		}
		if (!takes_value(name))
			return usage_error("unknown option %s", a);
		if (!val) {
			if (i + 1 >= argc)
				return usage_error("%s needs a value", name);
			val = argv[++i];
		}
		int rc = apply_option(name, val, m, o);
		if (rc)
			return rc;
		if (strcmp(name, "--set") == 0 && strcmp(val, "help") == 0)
			return 0;
	}
	if (!o->command)
		o->command = "train";
	if (strcmp(o->command, "eval") == 0 && !o->init)
		return usage_error("eval needs --init FILE (a checkpoint to evaluate)");
	bool mirror = strcmp(o->command, "mirror") == 0;
	if (mirror && !o->steps)
		return usage_error("mirror needs --steps N (how many mirror steps)");
	if (!mirror && o->steps && strcmp(o->command, "train") != 0)
		return usage_error("--steps is for the train and mirror commands");
	if (o->profile && strcmp(o->command, "train") != 0)
		return usage_error("--profile is for the train command");
	if (o->save_every && strcmp(o->command, "train") != 0)
		return usage_error("--save-every is for the train command");
	if (o->save_every && !o->save)
		return usage_error("--save-every needs --save FILE (where to write)");
	if (o->resume && strcmp(o->command, "train") != 0)
		return usage_error("--resume is for the train command (eval and mirror take --init)");
	if (o->resume && o->init)
		return usage_error("--resume and --init exclude each other: --resume continues a run, "
		                   "--init starts one from parameters");
	if (o->save_state && (strcmp(o->command, "train") != 0 || !o->save))
		return usage_error("--save-state is for train with --save FILE");
	if (o->allow_changes && !o->resume)
		return usage_error("--allow-changes is for --resume");
	if (o->draw_missing && !o->init)
		return usage_error("--init-draw-missing needs --init FILE");
	return -1;
}

int main(int argc, char **argv)
{
	RtModel m;
	RtOptions o = {0};
	rt_blas_setup(argv);
	if (argc > 0 && argv[0][0])
		prog = basename(argv[0]);
	if (rt_model_load(&m) < 0)
		return 1;
	o.max_batch = m.train.batch;
	rt_config_note_compiled(&m);
	int rc = parse_args(argc, argv, &m, &o);
	if (rc < 0 && rt_check_outputs(&o) < 0)
		rc = 1;
	rt_signals_install(false);
	if (rc < 0 && rt_dist_init(&o) < 0)
		rc = 1;
	if (rc < 0) {
		if (strcmp(o.command, "info") == 0)
			rc = rt_cmd_info(&m, stdout);
		else if (strcmp(o.command, "mirror") == 0)
			rc = rt_cmd_mirror(&m, &o);
		else if (strcmp(o.command, "eval") == 0)
			rc = rt_cmd_eval(&m, &o);
		else
			rc = rt_cmd_train(&m, &o);
	}
	return rt_dist_finish(rc);
}
