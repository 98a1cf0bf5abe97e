/* info.c: the info command: the network's layers with their shapes,
 * feedback rules, parameter counts and forward multiply-adds. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include "wtnrt.h"


/* The rule with its arguments as they act (kp's default decay is the
 * optimiser's weight decay, usf's default scale its fan-in's, and says so). */
static void format_rule(char *out, size_t len, const RtModel *m, const RtLayer *l)
{
	size_t n = snprintf(out, len, "%s", l->rule);
	for (int i = 0; i < l->nargs && n < len; i++) {
		double v = rt_rule_arg_in_force(m, l, i);
		n += snprintf(out + n, len - n, "%s%s=%g%s", i ? ", " : "(", l->arg_name[i], v,
		              v == l->arg[i] ? "" : strcmp(l->rule, "kp") == 0 ? " (weight_decay)"
		              : " (fan-in)");
	}
	if (l->nargs && n < len)
		snprintf(out + n, len - n, ")");
}

/* The rule column: the rule where a layer has one (batchnorm: bp). */
static void format_rule_cell(char *out, size_t len, const RtModel *m, const RtLayer *l)
{
	if (wtn_op_has(l->kind, WTN_OP_PARAMS))
		format_rule(out, len, m, l);
	else
		snprintf(out, len, "-");
}

static void print_dims(FILE *out, const char *what, const RtBuf *b)
{
	fprintf(out, "  %s [", what);
	for (int i = 0; i < b->ndim; i++)
		fprintf(out, "%s%d", i ? ", " : "", b->dims[i]);
	fputc(']', out);
}

/* The tensors the rule keeps besides W, as checkpoints store them. */
static void print_feedback_shapes(FILE *out, const RtModel *m, const RtLayer *l)
{
	if (l->B >= 0)
		print_dims(out, "B", &m->bufs[l->B]);
	if (l->M >= 0)
		print_dims(out, "M", &m->bufs[l->M]);
	if (l->D >= 0)
		print_dims(out, "D", &m->bufs[l->D]);
}

/* A vector as its units, an image as CxHxW. */
static void format_shape(char *out, size_t len, RtShape s)
{
	if (s.h == 1 && s.w == 1)
		snprintf(out, len, "%d", s.c);
	else
		snprintf(out, len, "%dx%dx%d", s.c, s.h, s.w);
}

/* The kind, with the window of convs and pools: "conv2d 3x3/2". */
static void format_kind(char *out, size_t len, const RtLayer *l)
{
	bool windowed = l->kind == RT_OP_CONV2D || l->kind == RT_OP_MAXPOOL ||
	                l->kind == RT_OP_AVGPOOL;
	if (!windowed)
		snprintf(out, len, "%s", rt_op_name(l->kind));
	else if (l->stride == 1)
		snprintf(out, len, "%s %dx%d", rt_op_name(l->kind), l->kh, l->kw);
	else
		snprintf(out, len, "%s %dx%d/%d", rt_op_name(l->kind), l->kh, l->kw, l->stride);
}

/* The conv passes wtnc made Winograd's F(m x m, r x r) (wtnc
 * --direct-convs: none), a line per tile size and pass. */
enum { WINO_FWD = 1, WINO_DATA = 2, WINO_WGRAD = 4 };

static int wino_passes(const RtLayer *l, int m)   /* the passes of l with tile m */
{
	return (l->wino_fwd == m ? WINO_FWD : 0) | (l->wino_data == m ? WINO_DATA : 0)
	       | (l->wino_wgrad == m ? WINO_WGRAD : 0);
}

static void print_winograd(FILE *out, const RtModel *m)
{
	static const char *what[] = { "", "forward", "data gradient", "forward and data gradient",
	                              "weight gradient", "forward and weight gradient",
	                              "data and weight gradients", "forward, data and weight gradients" };
	for (int tile = 2; tile <= 6; tile++)
		for (int r = 2; r <= 5; r++)
			for (int passes = 1; passes <= 7; passes++) {
				bool any = false;
				for (int i = 0; i < m->nlayers; i++) {
					const RtLayer *l = &m->layers[i];
					if (l->kh != r || wino_passes(l, tile) != passes)
						continue;
					if (!any)
						fprintf(out, "winograd F(%dx%d, %dx%d), %s:", tile, tile, r, r, what[passes]);
					fprintf(out, " %s", l->name);
					any = true;
				}
				if (any)
					fputc('\n', out);
			}
}

/* "in -> out", or "a + b -> out" for add. */
static void format_layer_shape(char *out, size_t len, const RtLayer *l)
{
	char from[24], to[24];
	format_shape(from, sizeof from, l->in_shape);
	format_shape(to, sizeof to, l->out_shape);
	if (l->kind == RT_OP_ADD)
		snprintf(out, len, "%s + %s -> %s", from, from, to);
	else
		snprintf(out, len, "%s -> %s", from, to);
}

/* Trained parameters: weights, biases, batchnorm's gamma and beta. */
static long layer_params(const RtModel *m, const RtLayer *l)
{
	long p = 0;
	if (l->W >= 0)
		p += m->bufs[l->W].elems;
	if (l->b >= 0)
		p += m->bufs[l->b].elems;
	return p;
}

/* Multiply-adds of one sample's forward pass through the layer's product. */
static long layer_macs(const RtLayer *l)
{
	if (l->kind == RT_OP_DENSE)
		return (long)l->in * l->out;
	if (l->kind == RT_OP_CONV2D)
		return (long)l->out * l->in_shape.c * l->kh * l->kw;
	return 0;
}

static void print_count(FILE *out, long n)
{
	if (n >= 1000000000L)
		fprintf(out, "%ld (%.2f G)", n, n / 1e9);
	else if (n >= 1000000L)
		fprintf(out, "%ld (%.2f M)", n, n / 1e6);
	else
		fprintf(out, "%ld", n);
}

int rt_cmd_info(const RtModel *m, FILE *out)
{
	long params = 0, feedback = 0, stats = 0, macs = 0;
	/* Columns as wide as their widest entry, so they line up for every kind. */
	int width = 12, kind_w = 16, shape_w = 28, rule_w = 0;
	for (int i = 0; i < m->nlayers; i++) {
		const RtLayer *l = &m->layers[i];
		char kind[48], shape[80], rule[200];
		format_rule_cell(rule, sizeof rule, m, l);
		if ((int)strlen(rule) > rule_w)
			rule_w = (int)strlen(rule);
		format_kind(kind, sizeof kind, l);
		format_layer_shape(shape, sizeof shape, l);
		if ((int)strlen(l->name) > width)
			width = (int)strlen(l->name);
		if ((int)strlen(kind) > kind_w)
			kind_w = (int)strlen(kind);
		if ((int)strlen(shape) > shape_w)
			shape_w = (int)strlen(shape);
	}
	char in[48];
	format_shape(in, sizeof in, m->in_shape);
	fprintf(out, "network %s\n", m->name);
	fprintf(out, "input %s: %s (%d units)\n", m->input_name, in, m->in_units);
	fprintf(out, "%-*s %-*s %-*s %-9s %10s %13s  %s\n", width, "layer", kind_w, "kind",
	        shape_w, "shape", "act", "params", "multiply-adds", "feedback rule");
	for (int i = 0; i < m->nlayers; i++) {
		const RtLayer *l = &m->layers[i];
		char kind[48], shape[80];
		format_kind(kind, sizeof kind, l);
		format_layer_shape(shape, sizeof shape, l);
		long p = layer_params(m, l), mac = layer_macs(l);
		fprintf(out, "%-*s %-*s %-*s %-9s %10ld %13ld  ", width, l->name, kind_w, kind, shape_w,
		        shape, wtn_name(wtn_act_names, WTN_NACTS, l->act), p, mac);
		char rule[200];
		format_rule_cell(rule, sizeof rule, m, l);
		bool shapes = l->B >= 0 || l->M >= 0 || l->D >= 0;
		fprintf(out, "%-*s", shapes ? rule_w : 0, rule);
		print_feedback_shapes(out, m, l);
		fputc('\n', out);
		params += p;
		macs += mac;
		if (l->B >= 0)
			feedback += m->bufs[l->B].elems;
		if (l->D >= 0)
			feedback += m->bufs[l->D].elems;
		if (l->rmean >= 0)
			stats += m->bufs[l->rmean].elems + m->bufs[l->rvar].elems;
	}
	fprintf(out, "loss %s\n", wtn_name(wtn_loss_names, WTN_NLOSSES, m->loss));
	fprintf(out, "parameters: ");
	print_count(out, params);
	fprintf(out, " trained (weights, biases, normalisation gamma and beta)");
	if (feedback)
		fprintf(out, ", plus %ld in feedback matrices", feedback);
	if (stats)
		fprintf(out, ", plus %ld batchnorm running statistics", stats);
	fputc('\n', out);
	fprintf(out, "forward multiply-adds per sample: ");
	print_count(out, macs);
	fprintf(out, " (conv F*C*k*k*OH*OW, dense in*out; batchnorm, pools, activations and "
	        "loss not counted)\n");
	print_winograd(out, m);
	/* The kernels OpenBLAS runs here, after rt_blas_setup, and why. */
	const char *core = getenv("OPENBLAS_CORETYPE"), *spin = getenv("OPENBLAS_THREAD_TIMEOUT");
	fprintf(out, "blas: %s; kernel %s (OPENBLAS_CORETYPE%s%s; OPENBLAS_THREAD_TIMEOUT%s%s)\n",
	        openblas_get_config(), openblas_get_corename(), core ? "=" : " ", core ? core : "unset",
	        spin ? "=" : " ", spin ? spin : "unset");
	return 0;
}
