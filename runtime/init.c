/* init.c: fills the parameters at the start of training: W by the layer's
 * init kind, biases 0, the feedback matrix B by the rule's start, the dfa
 * matrix D and the frsf magnitudes M like W; batchnorm's gamma 1, beta 0
 * and running statistics 0 and 1, as PyTorch starts them. Each layer draws
 * from its own stream derived from the seed, so one layer's draws do not
 * shift another's. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "wtnrt.h"

/* Draws n values from the distribution an init kind gives a tensor with
 * these fans. */
static void draw_like(float *w, long n, int init, double arg, long fan_in, long fan_out,
                      RtRng *r)
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

/* PyTorch's fans: in and out for dense; C*kh*kw and F*kh*kw for conv2d. */
static void layer_fans(const RtLayer *l, long *fan_in, long *fan_out)
{
	if (l->kind == RT_OP_CONV2D) {
		long k = (long)l->kh * l->kw;
		*fan_in = l->in_shape.c * k;
		*fan_out = l->out_shape.c * k;
	} else {
		*fan_in = l->in;
		*fan_out = l->out;
	}
}

/* n values drawn exactly as the layer's W is drawn (same kind and fans), so
 * B, D and M have W's scale whatever their own shape. */
static void draw_like_w(const RtLayer *l, float *dst, long n, RtRng *r)
{
	long fan_in, fan_out;
	layer_fans(l, &fan_in, &fan_out);
	draw_like(dst, n, l->init, l->init_arg, fan_in, fan_out, r);
}

static float signf(float x)
{
	return x > 0 ? 1.0f : x < 0 ? -1.0f : 0.0f;
}

/* The sign-symmetry scale: the rule's `scale` argument when given, else
 * 1/sqrt(fan_in) for dense layers (Xiao et al. 2018) and
 * sqrt(2/(kh*kw*C_out)) for conv layers (He et al.'s conv init). */
static double sign_scale(const RtLayer *l)
{
	double s = rt_rule_arg(l, "scale", 0);
	if (s > 0)
		return s;
	if (l->kind == RT_OP_CONV2D)
		return sqrt(2.0 / ((double)l->kh * l->kw * l->out_shape.c));
	return 1.0 / sqrt(l->in);
}

static long weight_elems(const RtModel *m, const RtLayer *l)
{
	return m->bufs[l->W].elems;
}

/* B = |M| * sign(W). M lives in the layer's M slot (frsf keeps it); brsf
 * has none, since its kernel redraws M every batch, so the first M is drawn
 * into scratch memory and dropped. */
static int start_randmag(const RtModel *m, const RtLayer *l, float **bufs, RtRng *r)
{
	long n = weight_elems(m, l);
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

static int start_feedback(const RtModel *m, const RtLayer *l, float **bufs, RtRng *r)
{
	long n = weight_elems(m, l);
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
		return start_randmag(m, l, bufs, r);
	}
	return 0;
}

static void fill(float *dst, long n, float v)
{
	for (long i = 0; i < n; i++)
		dst[i] = v;
}

static void init_batchnorm(const RtLayer *l, float **bufs)
{
	int c = l->in_shape.c;
	fill(bufs[l->W], c, 1.0f);
	fill(bufs[l->b], c, 0.0f);
	fill(bufs[l->rmean], c, 0.0f);
	fill(bufs[l->rvar], c, 1.0f);
}

int rt_init_params(const RtModel *m, float **bufs, uint64_t seed)
{
	int n_out = m->layers[m->nlayers - 1].out;
	for (int i = 0; i < m->nlayers; i++) {
		const RtLayer *l = &m->layers[i];
		if (l->kind == RT_OP_BATCHNORM) {
			init_batchnorm(l, bufs);
			continue;
		}
		if (!rt_layer_has_rule(l))
			continue;
		RtRng r;
		rt_rng_seed(&r, rt_mix64(seed * 0x100000001b3ULL + (uint64_t)i));
		draw_like_w(l, bufs[l->W], weight_elems(m, l), &r);
		if (l->b >= 0)
			fill(bufs[l->b], l->out_shape.c, 0.0f);
		if (l->B >= 0 && start_feedback(m, l, bufs, &r) < 0)
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
		for (long k = 0; k < weight_elems(m, l); k++)
			mag[k] = fabsf(b[k]);
	}
}
