/* init.c: fills the parameters at the start of training as each buffer's
 * init descriptor says (wtn_model.h; the compiler works out the formulas:
 * fans, scales, PyTorch's starts). Each layer draws from its own stream
 * derived from the seed, so one layer's draws do not shift another's.
 * And dropout's masks, drawn before each training step. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "wtnrt.h"

static void draw(float *w, long n, int dist, double a, RtRng *r)
{
	for (long i = 0; i < n; i++)
		w[i] = dist == WTN_FILL_NORMAL ? (float)(a * rt_rng_normal(r))
		                               : (float)(a * (2.0 * rt_rng_uniform(r) - 1.0));
}

static float signf(float x)
{
	return x > 0 ? 1.0f : x < 0 ? -1.0f : 0.0f;
}

int rt_init_params(const RtModel *m, float **bufs, uint64_t seed)
{
	RtRng *streams = calloc((size_t)m->nlayers, sizeof *streams);
	bool *seeded = calloc((size_t)m->nlayers, sizeof *seeded);
	float *mag = NULL;
	int rc = streams && seeded ? 0 : -1;
	for (int i = 0; i < m->nbufs && rc == 0; i++) {
		const RtBuf *b = &m->bufs[i];
		const WtnInit *in = &b->init;
		float *dst = bufs[i];
		RtRng *r = &streams[in->stream];
		if ((in->fill == WTN_FILL_NORMAL || in->fill == WTN_FILL_UNIFORM ||
		     in->fill == WTN_FILL_RANDMAG_SIGN) && !seeded[in->stream]) {
			rt_rng_seed(r, rt_mix64(seed * 0x100000001b3ULL + (uint64_t)in->stream));
			seeded[in->stream] = true;
		}
		switch (in->fill) {
		case WTN_FILL_ZERO:
			if (b->kind == RT_BUF_PARAM || b->kind == RT_BUF_STAT)
				memset(dst, 0, b->elems * sizeof *dst);
			break;
		case WTN_FILL_CONST:
			for (long k = 0; k < b->elems; k++)
				dst[k] = (float)in->a;
			break;
		case WTN_FILL_NORMAL:
		case WTN_FILL_UNIFORM:
			draw(dst, b->elems, in->fill, in->a, r);
			break;
		case WTN_FILL_SIGN: {
			/* usf's B: |B| is the scale in force (a run-time setting) */
			double a = in->a;
			for (int j = 0; j < m->nlayers; j++)
				if (m->layers[j].B == i && strcmp(m->layers[j].rule, "usf") == 0)
					a = rt_usf_scale(&m->layers[j]);
			for (long k = 0; k < b->elems; k++)
				dst[k] = (float)(signf(bufs[in->src][k]) * a);
			break;
		}
		case WTN_FILL_RANDMAG_SIGN:   /* kept in M (frsf) or dropped (brsf) */
			mag = in->keep >= 0 ? bufs[in->keep] : realloc(mag, b->elems * sizeof *mag);
			if (!mag) {
				rc = -1;
				break;
			}
			draw(mag, b->elems, in->dist, in->a, r);
			for (long k = 0; k < b->elems; k++)
				dst[k] = fabsf(mag[k]) * signf(bufs[in->src][k]);
			if (in->keep >= 0)
				mag = NULL;
			break;
		}
	}
	if (rc < 0)
		fprintf(stderr, "wtn: out of memory\n");
	free(mag);
	free(streams);
	free(seeded);
	return rc;
}

void rt_init_mags_from_feedback(const RtModel *m, float **bufs)
{
	for (int i = 0; i < m->nbufs; i++) {
		const WtnInit *in = &m->bufs[i].init;
		if (in->fill == WTN_FILL_RANDMAG_SIGN && in->keep >= 0)
			for (long k = 0; k < m->bufs[i].elems; k++)
				bufs[in->keep][k] = fabsf(bufs[i][k]);
	}
}

void rt_dropout_masks(const RtModel *m, float **bufs, int n, RtRng *r)
{
	for (int i = 0; i < m->nlayers; i++) {
		const RtLayer *l = &m->layers[i];
		if (l->kind != RT_OP_DROPOUT)
			continue;
		float keep = (float)(1.0 / (1.0 - l->p)), *mask = bufs[l->aux];
		for (long k = 0; k < (long)n * l->out; k++)
			mask[k] = rt_rng_uniform(r) >= l->p ? keep : 0.0f;
	}
}

void rt_init_redraw_signs(const RtModel *m, float **bufs, int slot)
{
	const WtnInit *in = &m->bufs[slot].init;
	float *dst = bufs[slot];
	const float *w = in->src >= 0 ? bufs[in->src] : NULL;
	/* SIGN is sign(W) a; RANDMAG_SIGN keeps its drawn magnitudes: M where
	 * the rule keeps them (frsf), else |dst| (brsf). */
	const float *mag = in->keep >= 0 ? bufs[in->keep] : dst;
	for (long k = 0; w && k < m->bufs[slot].elems; k++)
		if (in->fill == WTN_FILL_SIGN)
			dst[k] = (float)(signf(w[k]) * in->a);
		else if (in->fill == WTN_FILL_RANDMAG_SIGN)
			dst[k] = fabsf(mag[k]) * signf(w[k]);
}
