/* gennet.c: writes a random small .wtn network to stdout, reproducibly
 * from a seed, for the reference tests.
 *
 *   gennet SEED [--smooth] [--bp-only] [--expect FILE]
 *
 * 1-4 dense layers of 1-40 units on an input of 1-30 (sometimes a layernorm,
 * dropout or gelu between them), every activation
 * (or the default), biases on and off, either loss, a random rule per layer
 * (bp fa usf frsf brsf kp wm dfa, random arguments) through the feedback
 * block, sgd (plain, momentum, nesterov) or adam, random weight
 * decay. --smooth: tanh, sigmoid and identity only (finite differences);
 * --bp-only: no feedback block. --expect FILE: what the model must say
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

/* Everything written to the .wtn that the model must reflect; refcheck
 * --expect compares, so a compiler that drops `bias=false` or a feedback
 * entry cannot pass by having the reference read the same wrong model. */
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
 * some of them, and refcheck --expect checks all of them in the model. */
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

/* ---- conv networks (--conv) ---- */
typedef struct Node {
	char name[16], kind[16], src[16], src2[16], act[12], rule_name[8];
	int c, h, w, oc, oh, ow, k, stride, pad, bias;   /* k = 0: no kernel */
	double p;                                         /* dropout */
	Rule rule;
	int has_rule, entry;
} Node;

enum { MAX_NODES = 40 };
static Node nodes[MAX_NODES];
static int nnodes;
static int smooth_acts_only, no_feedback, conv_batch;
static const char *cur;           /* the layer the next one reads */
static int cc, ch, cw;            /* its shape */

static const char *random_act(int allow_empty)
{
	static const char *const acts[] = {"identity", "tanh", "sigmoid", "relu", "relu", ""};
	int n = smooth_acts_only ? 3 : 5;
	return acts[allow_empty && rnd(4) == 0 ? 5 : rnd(n)];
}

static Node *add_node(const char *prefix, const char *kind)
{
	Node *nd = &nodes[nnodes++];
	memset(nd, 0, sizeof *nd);
	snprintf(nd->name, sizeof nd->name, "%s%d", prefix, nnodes);
	snprintf(nd->kind, sizeof nd->kind, "%s", kind);
	snprintf(nd->src, sizeof nd->src, "%s", cur);
	nd->c = cc, nd->h = ch, nd->w = cw;
	nd->oc = cc, nd->oh = ch, nd->ow = cw;
	nd->bias = -1;
	return nd;
}

static void moved_to(Node *nd)
{
	cur = nd->name;
	cc = nd->oc, ch = nd->oh, cw = nd->ow;
}

static int out_size(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

static Node *conv(int filters, int k, int stride, int pad)
{
	Node *nd = add_node("conv", "conv2d");
	nd->k = k, nd->stride = stride, nd->pad = pad;
	nd->oc = filters, nd->oh = out_size(ch, k, stride, pad), nd->ow = out_size(cw, k, stride, pad);
	snprintf(nd->act, sizeof nd->act, "%s", random_act(1));
	nd->bias = rnd(3) != 0;
	nd->has_rule = 1;
	moved_to(nd);
	return nd;
}

static int fits(int k, int pad) { return ch + 2 * pad >= k && cw + 2 * pad >= k; }

static void random_conv(void)
{
	static const int ks[] = {1, 3, 5};
	int k, pad, tries = 0;
	do {
		k = ks[rnd(3)], pad = rnd(3);
	} while (!fits(k, pad) && ++tries < 20);
	if (!fits(k, pad))
		k = 1, pad = 0;
	conv(1 + rnd(6), k, 1 + rnd(2), pad);
}

static void batchnorm(void)
{
	Node *nd = add_node("bn", "batchnorm");
	snprintf(nd->act, sizeof nd->act, "%s", random_act(1));
	moved_to(nd);
}

static void random_pool(void)
{
	int k = 2 + rnd(2), pad = rnd(k / 2 + 1);
	if (!fits(k, pad))
		return;
	Node *nd = add_node("pool", rnd(2) ? "maxpool" : "avgpool");
	int strides[] = {k, 1, 2};
	nd->k = k, nd->pad = pad, nd->stride = strides[rnd(3)];
	nd->oh = out_size(ch, k, nd->stride, pad), nd->ow = out_size(cw, k, nd->stride, pad);
	moved_to(nd);
}

/* main path conv [bn] [conv [bn]], shortcut identity or a 1x1 stride-2
 * projection when the main path halves the image; add with an act */
static void residual(void)
{
	char skip[16];
	int sc = cc, sh = ch, sw = cw;
	snprintf(skip, sizeof skip, "%s", cur);
	int down = ch >= 3 && cw >= 3 && rnd(3) == 0;
	int filters = down ? 1 + (int)rnd(6) : cc;
	if (down) {
		conv(filters, 3, 2, 1);
	} else {
		int k = rnd(2) ? 3 : 1;
		conv(filters, k, 1, k / 2);
	}
	if (rnd(2))
		batchnorm();
	if (rnd(2)) {
		conv(filters, 3, 1, 1);
		if (rnd(2))
			batchnorm();
	}
	if (down) {   /* projection of the block's input */
		int main_end = nnodes - 1, mc = cc, mh = ch, mw = cw;
		for (int i = 0; i < nnodes; i++)
			if (!strcmp(nodes[i].name, skip))
				cur = nodes[i].name;
		if (!strcmp(skip, "x"))
			cur = "x";
		cc = sc, ch = sh, cw = sw;
		snprintf(skip, sizeof skip, "%s", conv(filters, 1, 2, 0)->name);
		cur = nodes[main_end].name, cc = mc, ch = mh, cw = mw;
	}
	Node *a = add_node("add", "add");
	snprintf(a->src2, sizeof a->src2, "%s", skip);
	snprintf(a->act, sizeof a->act, "%s", random_act(1));
	moved_to(a);
}

static void standalone_act(void)
{
	static const char *const acts[] = {"relu", "tanh", "sigmoid"};
	const char *act = acts[smooth_acts_only ? 1 + rnd(2) : rnd(3)];
	Node *nd = add_node(act, "act");
	snprintf(nd->act, sizeof nd->act, "%s", act);
	moved_to(nd);
}

/* layernorm over the channels, dropout, or a gelu */
static void norm_drop_gelu(void)
{
	static const char *const kinds[] = {"layernorm", "dropout", "gelu"};
	int i = rnd(3);
	if (i == 0 && cc < 4)   /* over fewer channels its error is mostly rounding */
		i = 1;
	Node *nd = add_node(i == 0 ? "ln" : i == 1 ? "drop" : "gelu", i == 2 ? "act" : kinds[i]);
	if (i == 2)
		snprintf(nd->act, sizeof nd->act, "gelu");
	nd->p = i == 1 ? 0.1 * rnd(6) : 0;
	moved_to(nd);
}

static void dense(int units, int last)
{
	Node *nd = add_node(last ? "out" : "fc", "dense");
	if (last)
		snprintf(nd->name, sizeof nd->name, "out");
	nd->oc = units, nd->oh = nd->ow = 1;
	snprintf(nd->act, sizeof nd->act, "%s", random_act(1));
	nd->bias = rnd(4) != 0;
	nd->has_rule = 1;
	moved_to(nd);
}

static void write_node(const Node *nd)
{
	printf("    %s = ", nd->name);
	if (!strcmp(nd->kind, "conv2d"))
		printf("conv2d(%s, %d, %d, stride=%d, pad=%d", nd->src, nd->oc, nd->k, nd->stride,
		       nd->pad);
	else if (!strcmp(nd->kind, "maxpool") || !strcmp(nd->kind, "avgpool"))
		printf("%s(%s, %d, stride=%d, pad=%d", nd->kind, nd->src, nd->k, nd->stride, nd->pad);
	else if (!strcmp(nd->kind, "dense"))
		printf("dense(%s, %d", nd->src, nd->oc);
	else if (!strcmp(nd->kind, "add"))
		printf("add(%s, %s", nd->src, nd->src2);
	else if (!strcmp(nd->kind, "act"))
		printf("%s(%s", nd->act, nd->src);
	else if (!strcmp(nd->kind, "dropout"))
		printf("dropout(%s, %g", nd->src, nd->p);
	else
		printf("%s(%s", nd->kind, nd->src);
	if (*nd->act && strcmp(nd->kind, "act"))
		printf(", act=%s", nd->act);
	if (nd->bias == 0)
		printf(", bias=false");
	printf(")\n");
	char kernel[16] = "-", stride[8] = "-", pad[8] = "-";
	if (nd->k) {
		snprintf(kernel, sizeof kernel, "%dx%d", nd->k, nd->k);
		snprintf(stride, sizeof stride, "%d", nd->stride);
		snprintf(pad, sizeof pad, "%d", nd->pad);
	}
	const char *act = *nd->act ? nd->act : nd->has_rule || !strcmp(nd->kind, "batchnorm") ||
	                  !strcmp(nd->kind, "add") || !strcmp(nd->kind, "layernorm") ? "identity" : "-";
	char bias[12] = "-";
	if (nd->bias >= 0)
		snprintf(bias, sizeof bias, "%d", nd->bias);
	expect_line("node %s %s %dx%dx%d %dx%dx%d %s %s %s %s %s %s %s %s\n", nd->name, nd->kind,
	            nd->c, nd->h, nd->w, nd->oc, nd->oh, nd->ow, kernel, stride, pad, act, bias,
	            nd->has_rule ? nd->rule.name : "-", nd->src, *nd->src2 ? nd->src2 : "-");
	if (nd->has_rule)
		expect_args(nd->name, &nd->rule);
}

static int gen_conv(long seed, int smooth, int bp_only)
{
	smooth_acts_only = smooth;
	no_feedback = bp_only;
	int c = 1 + rnd(3), h = 4 + rnd(6), w = 4 + rnd(6);
	cur = "x", cc = c, ch = h, cw = w;
	conv_batch = 2 + rnd(5);
	int blocks = 1 + rnd(3);
	for (int b = 0; b < blocks && nnodes < MAX_NODES - 12; b++) {
		switch (rnd(5)) {
		case 0:
			random_conv();
			if (rnd(2))
				batchnorm();
			break;
		case 1: random_pool(); break;
		case 2: residual(); break;
		case 3: rnd(2) ? standalone_act() : norm_drop_gelu(); break;
		default:
			random_conv();
			random_pool();
			break;
		}
	}
	if (nnodes == 0 || rnd(2))
		random_conv();
	if (ch * cw > 1 && rnd(3) == 0) {
		Node *g = add_node("gap", "global_avgpool");
		g->oh = g->ow = 1;
		moved_to(g);
	}
	if (ch * cw > 1 || rnd(2)) {
		Node *f = add_node("flat", "flatten");
		f->oc = cc * ch * cw, f->oh = f->ow = 1;
		moved_to(f);
	}
	if (rnd(2))
		dense(1 + rnd(12), 0);
	dense(2 + rnd(7), 1);   /* softmax of one class has no gradient */

	/* rules on the conv and dense layers */
	int has_feedback = !bp_only && rnd(6) != 0;
	Rule deflt = {"bp", ""};
	if (has_feedback && rnd(3))
		deflt = pick_rule(conv_batch);
	for (int i = 0; i < nnodes; i++) {
		Node *nd = &nodes[i];
		if (!nd->has_rule)
			continue;
		nd->entry = has_feedback && rnd(2);
		nd->rule = nd->entry ? pick_rule(conv_batch) : deflt;
	}

	printf("# generated by gennet %ld --conv%s%s\n", seed, smooth ? " --smooth" : "",
	       bp_only ? " --bp-only" : "");
	printf("network gen%ld {\n    input x[%d, %d, %d]\n\n", seed, c, h, w);
	expect_line("input %d\ninput_shape %dx%dx%d\n", c * h * w, c, h, w);
	for (int i = 0; i < nnodes; i++)
		write_node(&nodes[i]);
	int mse = rnd(3) == 0;
	printf("\n    loss %s(out)\n", mse ? "mse" : "softmax_cross_entropy");
	expect_line("loss %s\n", mse ? "mse" : "softmax_cross_entropy");
	if (has_feedback) {
		printf("\n    feedback {\n        default %s%s\n", deflt.name, deflt.args);
		for (int i = 0; i < nnodes; i++)
			if (nodes[i].entry)
				printf("        %s %s%s\n", nodes[i].name, nodes[i].rule.name,
				       nodes[i].rule.args);
		printf("    }\n");
	}
	printf("}\n\ntrain {\n    data synthetic\n    batch %d\n    epochs 1\n", conv_batch);
	expect_line("batch %d\n", conv_batch);
	write_optimizer();
	printf("    seed %ld\n}\n", seed);
	if (expect && fclose(expect) != 0) {
		perror("gennet: --expect");
		return 2;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: gennet SEED [--conv] [--smooth] [--bp-only] [--expect FILE]\n");
		return 2;
	}
	long seed = atol(argv[1]);
	int smooth = 0, bp_only = 0, conv_net = 0;
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--conv")) {
			conv_net = 1;
		} else 		if (!strcmp(argv[i], "--smooth")) {
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
	if (conv_net)
		return gen_conv(seed, smooth, bp_only);

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
	/* after a hidden layer, sometimes a layernorm (of 4 units or more: of 2,
	 * its output is +-1 and its error nearly nothing but rounding), a
	 * dropout or a gelu */
	int extra[4] = {0};
	for (int l = 0; l < nlayers - 1; l++)
		if (rnd(4) == 0)
			extra[l] = 1 + (int)rnd(3);
	for (int l = 0; l < nlayers - 1; l++)
		if (extra[l] == 1 && units[l] < 4)
			extra[l] = 0;
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
		if (extra[l]) {
			static const char *const kinds[] = {"", "layernorm", "dropout", "act"};
			static char extra_name[8];
			snprintf(extra_name, sizeof extra_name, "e%d", l + 1);
			if (extra[l] == 1)
				printf("    %s = layernorm(%s)\n", extra_name, src);
			else if (extra[l] == 2)
				printf("    %s = dropout(%s, 0.%d)\n", extra_name, src, 1 + (int)rnd(5));
			else
				printf("    %s = gelu(%s)\n", extra_name, src);
			expect_line("node %s %s %dx1x1 %dx1x1 - - - %s - - %s -\n", extra_name, kinds[extra[l]],
			            units[l], units[l], extra[l] == 3 ? "gelu" : extra[l] == 1 ? "identity" : "-",
			            src);
			src = extra_name;
		}
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
