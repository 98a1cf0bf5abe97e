/* model.c: the compiled network's model (wtn_model.h), which the compiler
 * checked: its version, its rules' arguments, its buffers. */
#include <stdlib.h>
#include <string.h>
#include "wtnrt.h"

int rt_model_load(RtModel *m)
{
	if (wtn_model.version != WTN_MODEL_VERSION) {
		fprintf(stderr, "wtn: the network's model is version %d, this runtime reads %d "
		        "(recompile the network with this wtnc)\n", wtn_model.version, WTN_MODEL_VERSION);
		return -1;
	}
	*m = wtn_model;
	return 0;
}

const char *rt_op_name(int kind)
{
	return wtn_name(wtn_op_names, WTN_NOPS, kind);
}

bool rt_layer_has_rule(const RtLayer *l)
{
	return wtn_op_has(l->kind, WTN_OP_RULE);
}

double rt_rule_arg(const RtLayer *l, const char *name, double def)
{
	for (int i = 0; i < l->nargs; i++)
		if (strcmp(l->arg_name[i], name) == 0)
			return l->arg[i];
	return def;
}

/* The kernels take any batch n (only chunk sizes are compiled in) and the
 * buffers are planned at start-up, so the batch is bounded only by their
 * 32-bit row counts: n times a sample's elements must fit in an int. */
int rt_batch_limit(const RtModel *m)
{
	long limit = 1L << 20;
	for (int i = 0; i < m->nbufs; i++)
		if (m->bufs[i].kind == RT_BUF_BATCH && m->bufs[i].elems > 0 &&
		    0x7fffffffL / m->bufs[i].elems < limit)
			limit = 0x7fffffffL / m->bufs[i].elems;
	return limit < 1 ? 1 : (int)limit;
}

float **rt_alloc_buffers(const RtModel *m, int max_batch)
{
	float **bufs = calloc(m->nbufs ? m->nbufs : 1, sizeof *bufs);
	if (!bufs)
		return NULL;
	for (int i = 0; i < m->nbufs; i++) {
		const RtBuf *b = &m->bufs[i];
		size_t n = b->kind == RT_BUF_BATCH ? (size_t)b->elems * max_batch : (size_t)b->elems;
		size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
		bufs[i] = aligned_alloc(64, bytes);
		if (!bufs[i]) {
			fprintf(stderr, "wtn: out of memory allocating %s (%zu bytes)\n", b->name, bytes);
			rt_free_buffers(m, bufs);
			return NULL;
		}
		memset(bufs[i], 0, bytes);
	}
	rt_rule_args_write(m, bufs);
	return bufs;
}

/* What the kernels read of argument k: the value, with usf's scale 0
 * resolved to its fan-in default (kp's decay -1 stays: the kernel takes the
 * step's weight decay then). */
static double kernel_value(const RtLayer *l, int k)
{
	if (strcmp(l->rule, "usf") == 0 && strcmp(l->arg_name[k], "scale") == 0)
		return wtn_sign_scale(l->kind, l->kh, l->kw, l->out_shape.c, l->in, l->arg[k]);
	return l->arg[k];
}

void rt_rule_args_write(const RtModel *m, float **bufs)
{
	float *ra = bufs[m->args_slot];
	for (int i = 0; i < m->nlayers; i++)
		for (int k = 0; k < m->layers[i].nargs; k++)
			ra[(long)i * WTN_MAX_ARGS + k] = (float)kernel_value(&m->layers[i], k);
}

double rt_usf_scale(const RtLayer *l)
{
	for (int k = 0; k < l->nargs; k++)
		if (strcmp(l->arg_name[k], "scale") == 0)
			return kernel_value(l, k);
	return wtn_sign_scale(l->kind, l->kh, l->kw, l->out_shape.c, l->in, 0);
}

void rt_free_buffers(const RtModel *m, float **bufs)
{
	if (!bufs)
		return;
	for (int i = 0; i < m->nbufs; i++)
		free(bufs[i]);
	free(bufs);
}
