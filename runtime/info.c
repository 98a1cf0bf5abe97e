/* info.c: the info command: the network's layers, their feedback rules,
 * parameter counts and forward cost. */
#include "wtnrt.h"

static const char *const act_label[] = {"identity", "relu", "tanh", "sigmoid"};
static const char *const loss_label[] = {"softmax_cross_entropy", "mse"};

static void print_rule(FILE *out, const RtLayer *l)
{
	fprintf(out, "%s", l->rule);
	for (int i = 0; i < l->nargs; i++)
		fprintf(out, "%s%s=%g", i ? ", " : "(", l->arg_name[i], l->arg[i]);
	if (l->nargs)
		fputc(')', out);
}

/* The tensors the rule keeps besides W, as [rows, cols]. */
static void print_feedback_shapes(FILE *out, const RtLayer *l, int n_out)
{
	if (l->B >= 0)
		fprintf(out, "  B [%d, %d]", l->out, l->in);
	if (l->M >= 0)
		fprintf(out, "  M [%d, %d]", l->out, l->in);
	if (l->D >= 0)
		fprintf(out, "  D [%d, %d]", n_out, l->out);
}

int rt_cmd_info(const RtModel *m, FILE *out)
{
	long params = 0, feedback = 0, flops = 0;
	int n_out = m->layers[m->nlayers - 1].out;
	fprintf(out, "network %s\n", m->name);
	fprintf(out, "input %s: %d units\n", m->input_name, m->in_units);
	fprintf(out, "%-12s %-6s %-16s %-9s %10s  %s\n", "layer", "kind", "shape", "act",
	        "params", "feedback rule");
	for (int i = 0; i < m->nlayers; i++) {
		const RtLayer *l = &m->layers[i];
		long p = (long)l->in * l->out + (l->bias ? l->out : 0);
		char shape[48];
		snprintf(shape, sizeof shape, "%d -> %d", l->in, l->out);
		fprintf(out, "%-12s %-6s %-16s %-9s %10ld  ", l->name, "dense", shape,
		        act_label[l->act], p);
		print_rule(out, l);
		print_feedback_shapes(out, l, n_out);
		fputc('\n', out);
		params += p;
		flops += 2L * l->in * l->out;
		if (l->B >= 0)
			feedback += (long)l->in * l->out;
		if (l->D >= 0)
			feedback += (long)n_out * l->out;
	}
	fprintf(out, "loss %s\n", loss_label[m->loss]);
	fprintf(out, "parameters: %ld trained (weights and biases)", params);
	if (feedback)
		fprintf(out, ", plus %ld in feedback matrices", feedback);
	fputc('\n', out);
	fprintf(out, "forward FLOPs per sample: %ld (2 per multiply-add in dense layers; "
	        "activations and loss not counted)\n", flops);
	return 0;
}
