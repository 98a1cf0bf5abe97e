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
	return bufs;
}

void rt_free_buffers(const RtModel *m, float **bufs)
{
	if (!bufs)
		return;
	for (int i = 0; i < m->nbufs; i++)
		free(bufs[i]);
	free(bufs);
}
