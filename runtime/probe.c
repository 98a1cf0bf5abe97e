/* probe.c: how far each layer's error is from backprop's. On a fixed batch
 * (the first test samples) the rule's backward pass runs, every layer's
 * error d is saved, then wtn_backward_bp sends the errors backprop would,
 * and the angle between the two is the layer's delta angle. Both passes
 * only write y, d, scratch and gradient slots (and dropout's masks, drawn
 * anew for the probe batch), which the next training step recomputes;
 * parameters and optimiser state are never touched. The
 * forward passes run in training mode (batchnorm needs the batch's
 * statistics, as in training), which moves batchnorm's running statistics:
 * they are saved before and put back after. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "wtnrt.h"

struct RtProbe {
	const RtModel *m;
	const RtSet *set;
	int n;                 /* probe batch */
	float *saved;          /* every layer's d for the probe batch, back to back */
	long *offset;          /* per layer, into saved */
	float *stats;          /* the stat buffers (running statistics), back to back */
};

RtProbe *rt_probe_new(const RtModel *m, const RtSet *set, int batch)
{
	RtProbe *p = calloc(1, sizeof *p);
	if (!p)
		goto oom;
	p->m = m;
	p->set = set;
	p->n = set->n < batch ? (int)set->n : batch;
	p->offset = calloc(m->nlayers, sizeof *p->offset);
	long total = 0, nstats = 0;
	for (int i = 0; i < m->nlayers; i++) {
		if (p->offset)
			p->offset[i] = total;
		total += (long)p->n * m->layers[i].out;
	}
	for (int i = 0; i < m->nbufs; i++)
		if (m->bufs[i].kind == RT_BUF_STAT)
			nstats += m->bufs[i].elems;
	p->saved = malloc((total ? total : 1) * sizeof *p->saved);
	p->stats = malloc((nstats ? nstats : 1) * sizeof *p->stats);
	if (!p->offset || !p->saved || !p->stats)
		goto oom;
	return p;
oom:
	fprintf(stderr, "wtn: out of memory\n");
	rt_probe_free(p);
	return NULL;
}

void rt_probe_free(RtProbe *p)
{
	if (!p)
		return;
	free(p->saved);
	free(p->offset);
	free(p->stats);
	free(p);
}

/* Copies every stat buffer into p->stats (save) or back (restore). */
static void probe_stats(RtProbe *p, float **bufs, bool save)
{
	const RtModel *m = p->m;
	long at = 0;
	for (int i = 0; i < m->nbufs; i++) {
		if (m->bufs[i].kind != RT_BUF_STAT)
			continue;
		size_t bytes = m->bufs[i].elems * sizeof(float);
		if (save)
			memcpy(p->stats + at, bufs[i], bytes);
		else
			memcpy(bufs[i], p->stats + at, bytes);
		at += m->bufs[i].elems;
	}
}

/* Forward and loss on the probe batch: the backward passes start from the
 * output error the loss writes. */
static void probe_forward(RtProbe *p, float **bufs, int32_t *labels)
{
	const RtSet *s = p->set;
	memcpy(bufs[p->m->x_slot], s->x, (size_t)p->n * s->dim * sizeof(float));
	memcpy(labels, s->y, p->n * sizeof *labels);
	wtn_forward(bufs, p->n);
	wtn_loss(bufs, labels, p->n);
}

void rt_probe_delta(RtProbe *p, float **bufs, int32_t *labels, RtLayerStat *stats)
{
	const RtModel *m = p->m;
	for (int i = 0; i < m->nlayers; i++)
		stats[i].delta = NAN;
	if (p->n == 0)
		return;
	probe_stats(p, bufs, true);
	/* Dropout masks of the probe's own, the same at every call: not the
	 * last training batch's, which a resumed run has not drawn. */
	RtRng masks;
	rt_rng_seed(&masks, rt_mix64((uint64_t)m->train.seed ^ 0x70726f6265ULL));
	rt_dropout_masks(m, bufs, p->n, &masks);
	/* A layer the rule sends no error (one feeding only dfa layers) keeps
	 * its d slot as it was: zero, not what an earlier pass left there. */
	for (int i = 0; i < m->nlayers; i++)
		memset(bufs[m->layers[i].d], 0, (size_t)p->n * m->layers[i].out * sizeof(float));
	probe_forward(p, bufs, labels);
	wtn_backward(bufs, p->n);
	for (int i = 0; i < m->nlayers; i++)
		memcpy(p->saved + p->offset[i], bufs[m->layers[i].d],
		       (size_t)p->n * m->layers[i].out * sizeof(float));
	probe_forward(p, bufs, labels);
	wtn_backward_bp(bufs, p->n);
	for (int i = 0; i < m->nlayers; i++)
		stats[i].delta = rt_angle_deg(p->saved + p->offset[i], bufs[m->layers[i].d],
		                              (long)p->n * m->layers[i].out);
	probe_stats(p, bufs, false);
}
