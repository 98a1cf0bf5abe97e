/* init.c: fills the parameters at the start of training: W by the layer's
 * init kind, biases 0, the feedback matrix B by the rule's start, the dfa
 * matrix D and the frsf magnitudes M like W. Each layer draws from its own
 * stream derived from the seed, so one layer's draws do not shift another's. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "wtnrt.h"

/* Draws n values from the distribution an init kind gives a matrix with
 * these fans. */
static void draw_like(float *w, long n, int init, double arg, int fan_in, int fan_out, RtRng *r)
{
	double std, a;
	switch (init) {
	case RT_INIT_HE:
	case RT_INIT_NORMAL:
		std = init == RT_INIT_HE ? sqrt(2.0 / fan_in) : arg;
		for (long i = 0; i < n; i++)
			w[i] = (float)(std * rt_rng_normal(r));
		break;
	case RT_INIT_XAVIER:
	case RT_INIT_UNIFORM:
		a = init == RT_INIT_XAVIER ? sqrt(6.0 / (fan_in + fan_out)) : arg;
		for (long i = 0; i < n; i++)
			w[i] = (float)(a * (2.0 * rt_rng_uniform(r) - 1.0));
		break;
	}
}

/* n values drawn exactly as the layer's W is drawn (same kind and fans), so
 * B, D and M have W's scale whatever their own shape. */
static void draw_like_w(const RtLayer *l, float *dst, long n, RtRng *r)
{
	draw_like(dst, n, l->init, l->init_arg, l->in, l->out, r);
}

static float signf(float x)
{
	return x > 0 ? 1.0f : x < 0 ? -1.0f : 0.0f;
}

/* The sign-symmetry scale: the rule's `scale` argument when given, else
 * 1/sqrt(fan_in) (Xiao et al. 2018). */
static double sign_scale(const RtLayer *l)
{
	double s = rt_rule_arg(l, "scale", 0);
	return s > 0 ? s : 1.0 / sqrt(l->in);
}

/* B = |M| * sign(W). M lives in the layer's M slot (frsf keeps it); brsf
 * has none, since its kernel redraws M every batch, so the first M is drawn
 * into scratch memory and dropped. */
static int start_randmag(const RtLayer *l, float **bufs, RtRng *r)
{
	long n = (long)l->out * l->in;
	float *mag = l->M >= 0 ? bufs[l->M] : malloc(n * sizeof *mag);
	if (!mag) {
		fprintf(stderr, "wtn: out of memory\n");
		return -1;
	}
	draw_like_w(l, mag, n, r);
	const float *w = bufs[l->W];
	float *b = bufs[l->B];
	for (long i = 0; i < n; i++)
		b[i] = fabsf(mag[i]) * signf(w[i]);
	if (l->M < 0)
		free(mag);
	return 0;
}

static int start_feedback(const RtLayer *l, float **bufs, RtRng *r)
{
	long n = (long)l->out * l->in;
	const float *w = bufs[l->W];
	float *b = bufs[l->B];
	double s;
	switch (l->start) {
	case RT_START_NONE:       /* the spec check rejects a B without a start */
		memcpy(b, w, n * sizeof *b);
		break;
	case RT_START_LIKE_W:     /* a fresh draw, independent of W */
		draw_like_w(l, b, n, r);
		break;
	case RT_START_SIGN_W:
		s = sign_scale(l);
		for (long i = 0; i < n; i++)
			b[i] = (float)(signf(w[i]) * s);
		break;
	case RT_START_RANDMAG_SIGN_W:
		return start_randmag(l, bufs, r);
	}
	return 0;
}

int rt_init_params(const RtModel *m, float **bufs, uint64_t seed)
{
	int n_out = m->layers[m->nlayers - 1].out;
	for (int i = 0; i < m->nlayers; i++) {
		const RtLayer *l = &m->layers[i];
		RtRng r;
		rt_rng_seed(&r, rt_mix64(seed * 0x100000001b3ULL + (uint64_t)i));
		draw_like_w(l, bufs[l->W], (long)l->out * l->in, &r);
		if (l->b >= 0)
			memset(bufs[l->b], 0, l->out * sizeof(float));
		if (l->B >= 0 && start_feedback(l, bufs, &r) < 0)
			return -1;
		if (l->D >= 0)
			draw_like_w(l, bufs[l->D], (long)n_out * l->out, &r);
	}
	return 0;
}

void rt_init_mags_from_feedback(const RtModel *m, float **bufs)
{
	for (int i = 0; i < m->nlayers; i++) {
		const RtLayer *l = &m->layers[i];
		if (l->M < 0 || l->B < 0)
			continue;
		const float *b = bufs[l->B];
		float *mag = bufs[l->M];
		for (long k = 0; k < (long)l->out * l->in; k++)
			mag[k] = fabsf(b[k]);
	}
}
