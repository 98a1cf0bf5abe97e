/* gennet.c: writes a random small .wtn network to stdout, reproducibly
 * from a seed, for the reference tests.
 *
 *   gennet SEED [--smooth] [--bp-only] [--expect FILE]
 *
 * 1-4 dense layers of 1-40 units on an input of 1-30, every activation
 * (or the default), biases on and off, either loss, a random rule per layer
 * (bp fa usf frsf brsf kp wm dfa, random arguments) through the feedback
 * block, sgd (plain, momentum, nesterov) or adam, random weight
 * decay. --smooth: tanh, sigmoid and identity only (finite differences);
 * --bp-only: no feedback block. --expect FILE: what the spec must say
 * (input, layers, rules, loss, batch, optimiser), for refcheck --expect. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t state;

static uint32_t rnd(uint32_t n)
{
	state = state * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(state >> 33) % n;
}

static const char *pick(const char *const *v, int n) { return v[rnd(n)]; }

/* Everything written to the .wtn that the spec must reflect; refcheck
 * --expect compares, so a compiler that drops `bias=false` or a feedback
 * entry cannot pass by having the reference read the same wrong spec. */
static FILE *expect;

static void expect_line(const char *fmt, ...)
{
	if (!expect)
		return;
	va_list ap;
	va_start(ap, fmt);
	vfprintf(expect, fmt, ap);
	va_end(ap);
}

static void write_optimizer(void)
{
	static const char *const decays[] = {"0", "1e-4", "1e-3", "0.01", "0.05"};
	int opt = rnd(4);
	const char *wd = pick(decays, 5);
	double lr;
	if (opt == 0) {
		lr = 0.05 * (1 + rnd(10));
		printf("    optimizer sgd(lr=%g", lr);
	} else if (opt == 1) {
		double mom = 0.1 * (1 + rnd(9));
		lr = 0.01 * (1 + rnd(10));
		printf("    optimizer sgd(lr=%g, momentum=%g", lr, mom);
		expect_line("hyper momentum %g\n", mom);
		if (rnd(2)) {
			int nesterov = rnd(2);
			printf(", nesterov=%s", nesterov ? "true" : "false");
			expect_line("hyper nesterov %d\n", nesterov);
		}
	} else if (opt == 3) {
		lr = 0.01 * (1 + rnd(5));
		printf("    optimizer sgd(lr=%g, momentum=0.9, nesterov=true", lr);
		expect_line("hyper momentum 0.9\nhyper nesterov 1\n");
	} else {
		lr = 0.002 * (1 + rnd(10));
		printf("    optimizer adam(lr=%g", lr);
		if (rnd(2)) {
			double b1 = 0.5 + 0.05 * rnd(9), b2 = 0.9 + 0.01 * rnd(10);
			double eps = rnd(2) ? 1e-8 : 1e-3;
			printf(", beta1=%g, beta2=%g, eps=%g", b1, b2, eps);
			expect_line("hyper beta1 %g\nhyper beta2 %g\nhyper eps %g\n", b1, b2, eps);
		}
	}
	expect_line("optimizer %s\nhyper lr %g\n", opt == 2 ? "adam" : "sgd", lr);
	if (rnd(3)) {
		printf(", weight_decay=%s", wd);
		expect_line("hyper weight_decay %s\n", wd);
	}
	printf(")\n");
}

/* ---- rules and their arguments ---- */
typedef struct Rule {
	const char *name;
	char args[160];        /* "" or "(name=value, ...)" */
} Rule;

/* Arguments of each rule with issue 3's defaults; a generated rule gives
 * some of them, and refcheck --expect checks all of them in the spec. */
typedef struct ArgDef { const char *rule, *name; double def; } ArgDef;
static const ArgDef arg_defs[] = {
	{"usf", "scale", 0},
	{"kp", "decay", -1},
	{"wm", "noise", 1}, {"wm", "rate", 0.001}, {"wm", "decay", 0.001},
	{"wm", "batch", 128}, {"wm", "every", 1}, {"wm", "warmup", 1000},
};
enum { NARG_DEFS = sizeof arg_defs / sizeof arg_defs[0] };

static void add_arg(Rule *r, const char *name, double v)
{
	size_t len = strlen(r->args);
	snprintf(r->args + (len ? len - 1 : 0), sizeof r->args - (len ? len - 1 : 0),
	         "%s%s=%g)", len ? ", " : "(", name, v);
}

static double arg_value(const Rule *r, const char *name, double def)
{
	char key[32];
	snprintf(key, sizeof key, "%s=", name);
	const char *p = strstr(r->args, key);
	if (p && (p == r->args + 1 || p[-1] == ' '))
		return atof(p + strlen(key));
	return def;
}

static void expect_args(const char *layer, const Rule *r)
{
	for (int i = 0; i < NARG_DEFS; i++)
		if (!strcmp(arg_defs[i].rule, r->name))
			expect_line("arg %s %s %.9g\n", layer, arg_defs[i].name,
			            arg_value(r, arg_defs[i].name, arg_defs[i].def));
}

/* A rule with random arguments. wm always names its noise batch, since
 * the default (128) is more than these networks' batch. */
static Rule pick_rule(int batch)
{
	static const char *const rules[] = {"bp", "fa", "usf", "frsf", "brsf", "kp", "wm", "dfa"};
	Rule r = {rules[rnd(8)], ""};
	if (!strcmp(r.name, "usf") && rnd(2)) {
		static const double scales[] = {0, 0.05, 0.3, 1};
		add_arg(&r, "scale", scales[rnd(4)]);
	} else if (!strcmp(r.name, "kp") && rnd(2)) {
		static const double decays[] = {0, 0.01, 0.1, -1};
		add_arg(&r, "decay", decays[rnd(4)]);
	} else if (!strcmp(r.name, "wm")) {
		static const double noises[] = {0.5, 1, 2}, rates[] = {0.01, 0.1, 0.001},
		                    decays[] = {0.01, 0.05, 0.001};
		if (rnd(2))
			add_arg(&r, "noise", noises[rnd(3)]);
		if (rnd(2))
			add_arg(&r, "rate", rates[rnd(3)]);
		if (rnd(2))
			add_arg(&r, "decay", decays[rnd(3)]);
		add_arg(&r, "batch", 1 + rnd(batch));
		if (rnd(2))
			add_arg(&r, "every", 1 + rnd(3));
		if (rnd(2))
			add_arg(&r, "warmup", rnd(50));
	}
	return r;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: gennet SEED [--smooth] [--bp-only] [--expect FILE]\n");
		return 2;
	}
	long seed = atol(argv[1]);
	int smooth = 0, bp_only = 0;
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--smooth")) {
			smooth = 1;
		} else if (!strcmp(argv[i], "--bp-only")) {
			bp_only = 1;
		} else if (!strcmp(argv[i], "--expect") && i + 1 < argc) {
			expect = fopen(argv[++i], "w");
			if (!expect) {
				perror(argv[i]);
				return 2;
			}
		} else {
			fprintf(stderr, "gennet: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	state = (uint64_t)seed * 2654435761u + 12345;
	for (int i = 0; i < 4; i++)
		rnd(2);

	static const char *const names[] = {"h1", "h2", "h3", "out"};
	static const char *const acts[] = {"relu", "tanh", "sigmoid", "identity", ""};
	static const char *const smooth_acts[] = {"tanh", "sigmoid", "identity", ""};
	int nlayers = 1 + rnd(4), in = 1 + rnd(30);
	int units[4], bias[4];
	const char *act[4];
	for (int l = 0; l < nlayers; l++) {
		units[l] = l == nlayers - 1 ? 1 + rnd(12) : 1 + rnd(40);
		act[l] = smooth ? pick(smooth_acts, 4) : pick(acts, 5);
		bias[l] = rnd(4) != 0;
	}
	int mse = rnd(2);

	/* the batch first: a wm layer's noise batch may not exceed it */
	int batch = 1 + rnd(16);

	/* rules: a default and per-layer entries, later entries win */
	int has_feedback = !bp_only && rnd(8) != 0;
	Rule deflt = {"bp", ""}, rule[4];
	int entry[4];
	if (has_feedback && rnd(3))
		deflt = pick_rule(batch);
	for (int l = 0; l < nlayers; l++) {
		entry[l] = has_feedback && rnd(2);
		rule[l] = entry[l] ? pick_rule(batch) : deflt;
	}
	printf("# generated by gennet %ld%s%s\n", seed, smooth ? " --smooth" : "",
	       bp_only ? " --bp-only" : "");
	printf("network gen%ld {\n    input x[%d]\n\n", seed, in);
	expect_line("input %d\n", in);
	const char *src = "x";
	for (int l = 0; l < nlayers; l++) {
		const char *name = names[4 - nlayers + l];
		printf("    %s = dense(%s, %d", name, src, units[l]);
		if (*act[l])
			printf(", act=%s", act[l]);
		if (!bias[l])
			printf(", bias=false");
		printf(")\n");
		expect_line("layer %s %d %d %s %d %s\n", name, l ? units[l - 1] : in, units[l],
		            *act[l] ? act[l] : "-", bias[l], rule[l].name);
		expect_args(name, &rule[l]);
		src = name;
	}
	printf("\n    loss %s(%s)\n", mse ? "mse" : "softmax_cross_entropy", src);
	expect_line("loss %s\n", mse ? "mse" : "softmax_cross_entropy");
	if (has_feedback) {
		printf("\n    feedback {\n        default %s%s\n", deflt.name, deflt.args);
		for (int l = 0; l < nlayers; l++)
			if (entry[l])
				printf("        %s %s%s\n", names[4 - nlayers + l], rule[l].name, rule[l].args);
		printf("    }\n");
	}
	printf("}\n\ntrain {\n    data synthetic\n    batch %d\n    epochs 1\n", batch);
	expect_line("batch %d\n", batch);
	write_optimizer();
	printf("    seed %ld\n}\n", seed);
	if (expect && fclose(expect) != 0) {
		perror("gennet: --expect");
		return 2;
	}
	return 0;
}
