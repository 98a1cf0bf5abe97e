/* refmath.c: the reference math in double precision (see refmath.h).
 * Plain loops on purpose: nothing here shares code or tricks with the
 * compiler's kernels. */
#include "refmath.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ref_input_slot(const RtModel *m, int l)
{
	int src = m->layers[l].input;
	return src < 0 ? m->x_slot : m->layers[src].y;
}

long ref_buf_len(const RtModel *m, int slot, int n)
{
	const RtBuf *b = &m->bufs[slot];
	return b->kind == RT_BUF_BATCH ? b->elems * n : b->elems;
}

int ref_takes_output_error(const RtModel *m, int l)
{
	return l < m->nlayers - 1 && m->layers[l].carry == RT_CARRY_D;
}

double ref_act(int act, double a)
{
	switch (act) {
	case RT_ACT_RELU: return a > 0 ? a : 0;
	case RT_ACT_TANH: return tanh(a);
	case RT_ACT_SIGMOID: return 1 / (1 + exp(-a));
	default: return a;
	}
}

double ref_act_grad_from_y(int act, double y)
{
	switch (act) {
	case RT_ACT_RELU: return y > 0 ? 1 : 0;
	case RT_ACT_TANH: return 1 - y * y;
	case RT_ACT_SIGMOID: return y * (1 - y);
	default: return 1;
	}
}

void ref_layer_forward(const RtModel *m, float **bufs, int l, const double *in,
                       int n, double *y)
{
	const RtLayer *L = &m->layers[l];
	const float *W = bufs[L->W];
	const float *b = L->b >= 0 ? bufs[L->b] : NULL;
	for (int i = 0; i < n; i++)
		for (int j = 0; j < L->out; j++) {
			double a = b ? b[j] : 0;
			for (int k = 0; k < L->in; k++)
				a += in[(long)i * L->in + k] * W[(long)j * L->in + k];
			y[(long)i * L->out + j] = ref_act(L->act, a);
		}
}

/* Loss and output error from the output activations y (double). */
static double loss_from_y(const RtModel *m, const double *y, const int32_t *labels,
                          int n, double *d)
{
	const RtLayer *L = &m->layers[m->nlayers - 1];
	int k = L->out;
	double total = 0;
	for (int i = 0; i < n; i++) {
		const double *row = y + (long)i * k;
		double *drow = d ? d + (long)i * k : NULL;
		if (m->loss == RT_LOSS_SOFTMAX_CE) {
			double mx = row[0], sum = 0;
			for (int j = 1; j < k; j++)
				mx = row[j] > mx ? row[j] : mx;
			for (int j = 0; j < k; j++)
				sum += exp(row[j] - mx);
			total += mx + log(sum) - row[labels[i]];
			for (int j = 0; drow && j < k; j++) {
				double p = exp(row[j] - mx) / sum;
				double e = (p - (j == labels[i])) / n;
				drow[j] = e * ref_act_grad_from_y(L->act, row[j]);
			}
		} else {
			for (int j = 0; j < k; j++) {
				double diff = row[j] - (j == labels[i]);
				total += diff * diff;
				if (drow)
					drow[j] = 2 * diff / ((double)n * k) *
					          ref_act_grad_from_y(L->act, row[j]);
			}
		}
	}
	return m->loss == RT_LOSS_SOFTMAX_CE ? total / n : total / ((double)n * k);
}

double ref_loss(const RtModel *m, float **bufs, const int32_t *labels, int n,
                double *d_out)
{
	const RtLayer *L = &m->layers[m->nlayers - 1];
	long len = (long)n * L->out;
	double *y = malloc(len * sizeof *y);
	for (long i = 0; i < len; i++)
		y[i] = bufs[L->y][i];
	double loss = loss_from_y(m, y, labels, n, d_out);
	free(y);
	return loss;
}

/* A dfa hidden layer: d = (d_out D) * f'(a), D [n_out, out]. */
static void error_from_output(const RtModel *m, float **bufs, int p, int n, double *d)
{
	const RtLayer *P = &m->layers[p], *O = &m->layers[m->nlayers - 1];
	const float *D = bufs[P->D], *dout = bufs[O->d];
	for (int i = 0; i < n; i++)
		for (int k = 0; k < O->out; k++) {
			double e = dout[(long)i * O->out + k];
			for (int j = 0; j < P->out; j++)
				d[(long)i * P->out + j] += e * D[(long)k * P->out + j];
		}
}

/* What consumer L sends down through (a dfa layer's own error comes from
 * D, so what it sends below is W^T d, as backprop). */
static const float *carried_by(const RtLayer *L, float **bufs, int force_w)
{
	return bufs[force_w || L->carry != RT_CARRY_B ? L->W : L->B];
}

int ref_layer_error(const RtModel *m, float **bufs, int p, int n, double *d,
                    int force_w)
{
	const RtLayer *P = &m->layers[p];
	long len = (long)n * P->out;
	memset(d, 0, len * sizeof *d);
	if (!force_w && ref_takes_output_error(m, p)) {
		error_from_output(m, bufs, p, n, d);
	} else {
		for (int l = p + 1; l < m->nlayers; l++) {
			const RtLayer *L = &m->layers[l];
			if (L->input != p)
				continue;
			const float *M = carried_by(L, bufs, force_w);
			const float *dl = bufs[L->d];
			for (int i = 0; i < n; i++)
				for (int j = 0; j < L->out; j++) {
					double e = dl[(long)i * L->out + j];
					for (int k = 0; k < L->in; k++)
						d[(long)i * P->out + k] += e * M[(long)j * L->in + k];
				}
		}
	}
	const float *y = bufs[P->y];
	for (long i = 0; i < len; i++)
		d[i] *= ref_act_grad_from_y(P->act, y[i]);
	return 0;
}

void ref_layer_grads(const RtModel *m, float **bufs, int l, int n,
                     double *gW, double *gb)
{
	const RtLayer *L = &m->layers[l];
	const float *d = bufs[L->d], *in = bufs[ref_input_slot(m, l)];
	for (int j = 0; j < L->out; j++) {
		for (int k = 0; k < L->in; k++) {
			double s = 0;
			for (int i = 0; i < n; i++)
				s += (double)d[(long)i * L->out + j] * in[(long)i * L->in + k];
			gW[(long)j * L->in + k] = s;
		}
		double s = 0;
		for (int i = 0; i < n; i++)
			s += d[(long)i * L->out + j];
		gb[j] = s;
	}
}

void ref_opt_step(const RtTrain *t, const float *hyper, long count,
                  const float *grad, double *w, double *mstate, double *vstate)
{
	double lr = hyper[WTN_H_LR], wd = hyper[WTN_H_WEIGHT_DECAY];
	for (long i = 0; i < count; i++) {
		double g = grad[i] + wd * w[i];
		if (t->optimizer == RT_OPT_ADAM) {
			double b1 = hyper[WTN_H_BETA1], b2 = hyper[WTN_H_BETA2];
			mstate[i] = b1 * mstate[i] + (1 - b1) * g;
			vstate[i] = b2 * vstate[i] + (1 - b2) * g * g;
			double mhat = mstate[i] / hyper[WTN_H_BC1];
			double vhat = vstate[i] / hyper[WTN_H_BC2];
			w[i] -= lr * mhat / (sqrt(vhat) + hyper[WTN_H_EPS]);
		} else {
			double step = g, mom = hyper[WTN_H_MOMENTUM];
			if (mstate) {
				mstate[i] = mom * mstate[i] + g;
				step = t->nesterov ? g + mom * mstate[i] : mstate[i];
			}
			w[i] -= lr * step;
		}
	}
}

double ref_chain_loss(const RtModel *m, float **bufs, const int32_t *labels, int n)
{
	double **ys = calloc(m->nlayers, sizeof *ys);
	double *x = malloc((long)n * m->in_units * sizeof *x);
	for (long i = 0; i < (long)n * m->in_units; i++)
		x[i] = bufs[m->x_slot][i];
	for (int l = 0; l < m->nlayers; l++) {
		const RtLayer *L = &m->layers[l];
		ys[l] = malloc((long)n * L->out * sizeof **ys);
		ref_layer_forward(m, bufs, l, L->input < 0 ? x : ys[L->input], n, ys[l]);
	}
	double loss = loss_from_y(m, ys[m->nlayers - 1], labels, n, NULL);
	for (int l = 0; l < m->nlayers; l++)
		free(ys[l]);
	free(ys);
	free(x);
	return loss;
}

/* ---- the feedback rules ---- */

double ref_init_std(const RtLayer *L)
{
	switch (L->init) {
	case RT_INIT_HE: return sqrt(2.0 / L->in);
	case RT_INIT_XAVIER: return sqrt(2.0 / (L->in + L->out));  /* uniform a = sqrt(6/(in+out)) */
	case RT_INIT_NORMAL: return L->init_arg;
	default: return L->init_arg / sqrt(3.0);                    /* uniform(-a, a) */
	}
}

double ref_sign_scale(const RtLayer *L)
{
	double s = rt_rule_arg(L, "scale", 0);
	return s > 0 ? s : 1.0 / sqrt(L->in);
}

double ref_weight_decay(const RtLayer *L, const float *hyper)
{
	double decay = L->change == RT_CHANGE_AS_W ? rt_rule_arg(L, "decay", -1) : -1;
	return decay >= 0 ? decay : hyper[WTN_H_WEIGHT_DECAY];
}

void ref_mirror(const RtModel *m, float **bufs, int l, int n, double *y, double *B)
{
	const RtLayer *L = &m->layers[l];
	const float *x = bufs[ref_input_slot(m, l)], *W = bufs[L->W];
	double rate = rt_rule_arg(L, "rate", NAN), decay = rt_rule_arg(L, "decay", NAN);
	for (int i = 0; i < n; i++)
		for (int j = 0; j < L->out; j++) {
			double s = 0;
			for (int k = 0; k < L->in; k++)
				s += (double)x[(long)i * L->in + k] * W[(long)j * L->in + k];
			y[(long)i * L->out + j] = s;
		}
	for (int j = 0; j < L->out; j++)
		for (int k = 0; k < L->in; k++) {
			double s = 0;
			for (int i = 0; i < n; i++)
				s += y[(long)i * L->out + j] * x[(long)i * L->in + k];
			long e = (long)j * L->in + k;
			B[e] = (1 - decay) * B[e] + rate / n * s;
		}
}

double ref_angle_deg(const double *a, const double *b, long count)
{
	double ab = 0, aa = 0, bb = 0;
	for (long i = 0; i < count; i++) {
		ab += a[i] * b[i];
		aa += a[i] * a[i];
		bb += b[i] * b[i];
	}
	if (aa == 0 || bb == 0)
		return NAN;
	double c = ab / sqrt(aa * bb);
	return acos(c > 1 ? 1 : c < -1 ? -1 : c) * 180 / M_PI;
}
