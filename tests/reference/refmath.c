/* refmath.c: the reference math in double precision (see refmath.h).
 * Plain loops on purpose (direct convolution, no im2col): nothing here
 * shares code or tricks with the compiler's kernels. */
#include "refmath.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the model's layers, as the reference reads them ---- */
const char *const ref_kind_names[REF_NKINDS] = {"dense", "conv2d", "batchnorm", "maxpool",
	"avgpool", "global_avgpool", "flatten", "add", "act", "dropout", "layernorm"};

static RefOp *ops;
static int nops;
static int *buf_kinds;
static int nbuf_kinds;
static RefShape input_shape;

const RefOp *ref_op(int l) { return &ops[l]; }
int ref_buf_kind(int slot) { return slot >= 0 && slot < nbuf_kinds ? buf_kinds[slot] : -1; }
RefShape ref_input_shape(void) { return input_shape; }

static int units(RefShape s) { return s.c * s.h * s.w; }
static RefShape ref_shape(RtShape s) { return (RefShape){s.c, s.h, s.w}; }

static int load_layer(const RtModel *m, int l)
{
	RefOp *o = &ops[l];
	const RtLayer *L = &m->layers[l];
	o->kind = L->kind >= 0 && L->kind < REF_NKINDS ? L->kind : -1;
	if (o->kind < 0) {
		printf("refmath: layer %s: unknown kind %d\n", L->name, L->kind);
		return -1;
	}
	o->input2 = L->input2;
	o->in = ref_shape(L->in_shape);
	o->out = ref_shape(L->out_shape);
	o->kh = L->kh, o->kw = L->kw, o->stride = L->stride, o->pad = L->pad;
	if (o->kind == REF_DENSE)   /* a 1x1 convolution of a 1x1 image */
		o->kh = o->kw = o->stride = 1, o->pad = 0;
	o->eps = L->eps;
	o->momentum = L->momentum;
	o->p = L->p;
	o->rmean = L->rmean, o->rvar = L->rvar, o->aux = L->aux, o->aux2 = L->aux2;
	if (units(o->in) != L->in || units(o->out) != L->out) {
		printf("refmath: layer %s: in_shape %dx%dx%d, out_shape %dx%dx%d do not match "
		       "in=%d out=%d\n", L->name, o->in.c, o->in.h, o->in.w, o->out.c, o->out.h,
		       o->out.w, L->in, L->out);
		return -1;
	}
	if (o->kind == REF_ADD && (o->input2 >= l || o->input2 < -1)) {
		printf("refmath: layer %s: input2 %d is not an earlier layer\n", L->name, o->input2);
		return -1;
	}
	return 0;
}

int ref_model_load(const RtModel *m)
{
	free(ops);
	free(buf_kinds);
	nops = m->nlayers;
	ops = calloc(nops ? nops : 1, sizeof *ops);
	nbuf_kinds = m->nbufs;
	buf_kinds = calloc(nbuf_kinds ? nbuf_kinds : 1, sizeof *buf_kinds);
	input_shape = ref_shape(m->in_shape);
	for (int s = 0; s < m->nbufs; s++)
		buf_kinds[s] = m->bufs[s].kind;
	for (int l = 0; l < nops; l++)
		if (load_layer(m, l) < 0)
			return -1;
	if (units(input_shape) != m->in_units) {
		printf("refmath: input shape %dx%dx%d is not %d units\n", input_shape.c,
		       input_shape.h, input_shape.w, m->in_units);
		return -1;
	}
	return 0;
}

int ref_has_weights(const RtModel *m, int l)
{
	int k = ops[l].kind;
	return (k == REF_DENSE || k == REF_CONV || ref_is_norm(l)) && m->layers[l].W >= 0;
}

int ref_is_norm(int l)
{
	return ops[l].kind == REF_BN || ops[l].kind == REF_LN;
}

int ref_has_rule(const RtModel *m, int l)
{
	(void)m;
	return ops[l].kind == REF_DENSE || ops[l].kind == REF_CONV;
}

long ref_weight_count(const RtModel *m, int l)
{
	const RefOp *o = &ops[l];
	(void)m;
	switch (o->kind) {
	case REF_DENSE:
	case REF_CONV: return (long)o->out.c * o->in.c * o->kh * o->kw;
	case REF_BN:
	case REF_LN: return o->in.c;
	default: return 0;
	}
}

int ref_fan_in(const RtModel *m, int l)
{
	(void)m;
	return ops[l].in.c * ops[l].kh * ops[l].kw;
}

int ref_input_slot(const RtModel *m, int l)
{
	int src = m->layers[l].input;
	return src < 0 ? m->x_slot : m->layers[src].y;
}

int ref_input2_slot(const RtModel *m, int l)
{
	int src = ops[l].input2;
	if (ops[l].kind != REF_ADD)
		return -1;
	return src < 0 ? m->x_slot : m->layers[src].y;
}

long ref_buf_len(const RtModel *m, int slot, int n)
{
	const RtBuf *b = &m->bufs[slot];
	return ref_buf_kind(slot) == REF_BUF_BATCH ? b->elems * n : b->elems;
}

int ref_takes_output_error(const RtModel *m, int l)
{
	return l < m->nlayers - 1 && ref_has_rule(m, l) && m->layers[l].carry == RT_CARRY_D;
}

double ref_act(int act, double a)
{
	switch (act) {
	case RT_ACT_RELU: return a > 0 ? a : 0;
	case RT_ACT_TANH: return tanh(a);
	case RT_ACT_SIGMOID: return 1 / (1 + exp(-a));
	case RT_ACT_GELU: return 0.5 * a * (1 + erf(a / sqrt(2)));
	default: return a;
	}
}

double ref_gelu_grad(double a)
{
	return 0.5 * (1 + erf(a / sqrt(2))) + a * exp(-a * a / 2) / sqrt(2 * M_PI);
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

/* ---- convolution (dense is the 1x1 case) ---- */
static long at(RefShape s, int n, int h, int w, int c)
{
	return (((long)n * s.h + h) * s.w + w) * s.c + c;
}

static long w_at(const RefOp *o, int f, int c, int i, int j)
{
	return (((long)f * o->in.c + c) * o->kh + i) * o->kw + j;
}

/* Input row of output row oy, tap i (may fall into the padding). */
static int tap(const RefOp *o, int oy, int i) { return oy * o->stride - o->pad + i; }

static int inside(RefShape s, int h, int w) { return h >= 0 && h < s.h && w >= 0 && w < s.w; }

/* a = sum over taps of x W (+ b), y = f(a) */
static void conv_forward(const RefOp *o, const float *W, const float *b, int act,
                         const double *x, int n, double *y)
{
	for (int s = 0; s < n; s++)
		for (int oy = 0; oy < o->out.h; oy++)
			for (int ox = 0; ox < o->out.w; ox++)
				for (int f = 0; f < o->out.c; f++) {
					double a = b ? b[f] : 0;
					for (int c = 0; c < o->in.c; c++)
						for (int i = 0; i < o->kh; i++)
							for (int j = 0; j < o->kw; j++) {
								int iy = tap(o, oy, i), ix = tap(o, ox, j);
								if (inside(o->in, iy, ix))
									a += x[at(o->in, s, iy, ix, c)] * W[w_at(o, f, c, i, j)];
							}
					y[at(o->out, s, oy, ox, f)] = ref_act(act, a);
				}
}

/* dx += the transposed convolution of d with M (W, B) */
static void conv_back_data(const RefOp *o, const float *M, const float *d, int n,
                           double *dx)
{
	for (int s = 0; s < n; s++)
		for (int oy = 0; oy < o->out.h; oy++)
			for (int ox = 0; ox < o->out.w; ox++)
				for (int f = 0; f < o->out.c; f++) {
					double e = d[at(o->out, s, oy, ox, f)];
					for (int c = 0; c < o->in.c; c++)
						for (int i = 0; i < o->kh; i++)
							for (int j = 0; j < o->kw; j++) {
								int iy = tap(o, oy, i), ix = tap(o, ox, j);
								if (inside(o->in, iy, ix))
									dx[at(o->in, s, iy, ix, c)] += e * M[w_at(o, f, c, i, j)];
							}
				}
}

/* g[f,c,i,j] = sum over samples and pixels of d x; gb[f] = sum of d */
static void conv_correlate(const RefOp *o, const double *d, const float *x, int n,
                           double *g, double *gb)
{
	memset(g, 0, (long)o->out.c * o->in.c * o->kh * o->kw * sizeof *g);
	if (gb)
		memset(gb, 0, o->out.c * sizeof *gb);
	for (int s = 0; s < n; s++)
		for (int oy = 0; oy < o->out.h; oy++)
			for (int ox = 0; ox < o->out.w; ox++)
				for (int f = 0; f < o->out.c; f++) {
					double e = d[at(o->out, s, oy, ox, f)];
					if (gb)
						gb[f] += e;
					for (int c = 0; c < o->in.c; c++)
						for (int i = 0; i < o->kh; i++)
							for (int j = 0; j < o->kw; j++) {
								int iy = tap(o, oy, i), ix = tap(o, ox, j);
								if (inside(o->in, iy, ix))
									g[w_at(o, f, c, i, j)] += e * x[at(o->in, s, iy, ix, c)];
							}
				}
}

/* ---- pools ---- */
/* Flat input index of the window's maximum: padding is -inf, ties go to
 * the first in scan order (rows, then columns). -1: all padding. */
static long max_at(const RefOp *o, const double *x, int s, int oy, int ox, int c)
{
	long best = -1;
	for (int i = 0; i < o->kh; i++)
		for (int j = 0; j < o->kw; j++) {
			int iy = tap(o, oy, i), ix = tap(o, ox, j);
			if (!inside(o->in, iy, ix))
				continue;
			long k = at(o->in, s, iy, ix, c);
			if (best < 0 || x[k] > x[best])
				best = k;
		}
	return best;
}

static void pool_forward(const RefOp *o, const double *x, int n, double *y)
{
	for (int s = 0; s < n; s++)
		for (int oy = 0; oy < o->out.h; oy++)
			for (int ox = 0; ox < o->out.w; ox++)
				for (int c = 0; c < o->out.c; c++) {
					double v = 0;
					if (o->kind == REF_MAXPOOL) {
						long k = max_at(o, x, s, oy, ox, c);
						v = k < 0 ? -INFINITY : x[k];
					} else {   /* count_include_pad: always k*k */
						for (int i = 0; i < o->kh; i++)
							for (int j = 0; j < o->kw; j++) {
								int iy = tap(o, oy, i), ix = tap(o, ox, j);
								if (inside(o->in, iy, ix))
									v += x[at(o->in, s, iy, ix, c)];
							}
						v /= o->kh * o->kw;
					}
					y[at(o->out, s, oy, ox, c)] = v;
				}
}

static void pool_back(const RefOp *o, const float *xf, const float *d, int n, double *dx)
{
	long len = (long)n * units(o->in);
	double *x = malloc(len * sizeof *x);
	for (long i = 0; i < len; i++)
		x[i] = xf[i];
	for (int s = 0; s < n; s++)
		for (int oy = 0; oy < o->out.h; oy++)
			for (int ox = 0; ox < o->out.w; ox++)
				for (int c = 0; c < o->out.c; c++) {
					double e = d[at(o->out, s, oy, ox, c)];
					if (o->kind == REF_MAXPOOL) {
						long k = max_at(o, x, s, oy, ox, c);
						if (k >= 0)
							dx[k] += e;
						continue;
					}
					for (int i = 0; i < o->kh; i++)
						for (int j = 0; j < o->kw; j++) {
							int iy = tap(o, oy, i), ix = tap(o, ox, j);
							if (inside(o->in, iy, ix))
								dx[at(o->in, s, iy, ix, c)] += e / (o->kh * o->kw);
						}
				}
	free(x);
}

/* ---- batchnorm: per channel over n*h*w ---- */
void ref_bn_batch_stats(const RtModel *m, int l, const double *in, int n, double *mean,
                        double *var)
{
	const RefOp *o = &ops[l];
	(void)m;
	long pix = (long)n * o->in.h * o->in.w;
	int C = o->in.c;
	for (int c = 0; c < C; c++) {
		double s = 0, q = 0;
		for (long p = 0; p < pix; p++)
			s += in[p * C + c];
		mean[c] = s / pix;
		for (long p = 0; p < pix; p++)
			q += (in[p * C + c] - mean[c]) * (in[p * C + c] - mean[c]);
		var[c] = q / pix;
	}
}

static void bn_forward(const RtModel *m, float **bufs, int l, const double *in, int n,
                       int eval, double *y)
{
	const RefOp *o = &ops[l];
	const RtLayer *L = &m->layers[l];
	int C = o->in.c;
	long pix = (long)n * o->in.h * o->in.w;
	double *mean = malloc(C * sizeof *mean), *var = malloc(C * sizeof *var);
	if (eval)
		for (int c = 0; c < C; c++)
			mean[c] = bufs[o->rmean][c], var[c] = bufs[o->rvar][c];
	else
		ref_bn_batch_stats(m, l, in, n, mean, var);
	for (long p = 0; p < pix; p++)
		for (int c = 0; c < C; c++) {
			double xhat = (in[p * C + c] - mean[c]) / sqrt(var[c] + o->eps);
			double a = bufs[L->W][c] * xhat + (L->b >= 0 ? bufs[L->b][c] : 0);
			y[p * C + c] = ref_act(L->act, a);
		}
	free(mean);
	free(var);
}

/* xhat of the kernel's input, with the batch statistics; invstd [C] */
static double *bn_xhat(const RtModel *m, float **bufs, int l, int n, double *invstd)
{
	const RefOp *o = &ops[l];
	int C = o->in.c;
	long len = (long)n * units(o->in);
	const float *xf = bufs[ref_input_slot(m, l)];
	double *x = calloc(len ? len : 1, sizeof *x), *mean = malloc(C * sizeof *mean);
	for (long i = 0; i < len; i++)
		x[i] = xf[i];
	ref_bn_batch_stats(m, l, x, n, mean, invstd);
	for (int c = 0; c < C; c++)
		invstd[c] = 1 / sqrt(invstd[c] + o->eps);
	for (long i = 0; i < len; i++)
		x[i] = (x[i] - mean[i % C]) * invstd[i % C];
	free(mean);
	return x;
}

/* dx += gamma invstd / N (N g - sum g - xhat sum g xhat), g the bn's d */
static void bn_back(const RtModel *m, float **bufs, int l, int n, double *dx)
{
	const RefOp *o = &ops[l];
	int C = o->in.c;
	long pix = (long)n * o->in.h * o->in.w;
	const float *g = bufs[m->layers[l].d], *gamma = bufs[m->layers[l].W];
	double *invstd = malloc(C * sizeof *invstd);
	double *xhat = bn_xhat(m, bufs, l, n, invstd);
	for (int c = 0; c < C; c++) {
		double sg = 0, sgx = 0;
		for (long p = 0; p < pix; p++) {
			sg += g[p * C + c];
			sgx += g[p * C + c] * xhat[p * C + c];
		}
		for (long p = 0; p < pix; p++)
			dx[p * C + c] += gamma[c] * invstd[c] / pix *
			                 (pix * (double)g[p * C + c] - sg - xhat[p * C + c] * sgx);
	}
	free(invstd);
	free(xhat);
}

/* ---- layernorm: over the C channels of each position ---- */
/* xhat of n samples' positions from x (float or double via get) and each
 * position's 1/sqrt(var + eps), the biased variance. */
static double *ln_xhat(const RefOp *o, const float *xf, const double *xd, int n, double **invstd)
{
	int C = o->in.c;
	long rows = (long)n * o->in.h * o->in.w;
	double *xhat = malloc(rows * C * sizeof *xhat);
	*invstd = malloc(rows * sizeof **invstd);
	for (long r = 0; r < rows; r++) {
		double mean = 0, var = 0;
		for (int c = 0; c < C; c++)
			mean += xf ? xf[r * C + c] : xd[r * C + c];
		mean /= C;
		for (int c = 0; c < C; c++) {
			double v = (xf ? xf[r * C + c] : xd[r * C + c]) - mean;
			var += v * v;
		}
		(*invstd)[r] = 1 / sqrt(var / C + o->eps);
		for (int c = 0; c < C; c++)
			xhat[r * C + c] = ((xf ? xf[r * C + c] : xd[r * C + c]) - mean) * (*invstd)[r];
	}
	return xhat;
}

/* dx += invstd (g - mean_c g - xhat mean_c(g xhat)), g = d gamma */
static void ln_back(const RtModel *m, float **bufs, int l, int n, double *dx)
{
	const RefOp *o = &ops[l];
	int C = o->in.c;
	long rows = (long)n * o->in.h * o->in.w;
	const float *d = bufs[m->layers[l].d], *gamma = bufs[m->layers[l].W];
	double *invstd, *xhat = ln_xhat(o, bufs[ref_input_slot(m, l)], NULL, n, &invstd);
	for (long r = 0; r < rows; r++) {
		double sg = 0, sgx = 0;
		for (int c = 0; c < C; c++) {
			sg += d[r * C + c] * (double)gamma[c];
			sgx += d[r * C + c] * (double)gamma[c] * xhat[r * C + c];
		}
		for (int c = 0; c < C; c++)
			dx[r * C + c] += invstd[r] * (d[r * C + c] * (double)gamma[c] - sg / C -
			                              xhat[r * C + c] * sgx / C);
	}
	free(invstd);
	free(xhat);
}

/* gW = sum over positions of d xhat (abs: of |d xhat|), gb = sum of d */
static void ln_grads(const RtModel *m, float **bufs, int l, int n, int abs_terms,
                     double *gW, double *gb)
{
	const RefOp *o = &ops[l];
	int C = o->in.c;
	long len = (long)n * o->in.h * o->in.w * C;
	const float *d = bufs[m->layers[l].d];
	double *invstd, *xhat = ln_xhat(o, bufs[ref_input_slot(m, l)], NULL, n, &invstd);
	for (int c = 0; c < C; c++)
		gW[c] = gb[c] = 0;
	for (long i = 0; i < len; i++) {
		gW[i % C] += abs_terms ? fabs(d[i] * xhat[i]) : d[i] * xhat[i];
		gb[i % C] += abs_terms ? fabs(d[i]) : d[i];
	}
	free(invstd);
	free(xhat);
}

/* ---- forward of one layer ---- */
void ref_layer_forward(const RtModel *m, float **bufs, int l, const double *in,
                       const double *in2, int n, int eval, double *y)
{
	const RtLayer *L = &m->layers[l];
	const RefOp *o = &ops[l];
	long len = (long)n * L->out;
	switch (o->kind) {
	case REF_DENSE:
	case REF_CONV:
		conv_forward(o, bufs[L->W], L->b >= 0 ? bufs[L->b] : NULL, L->act, in, n, y);
		break;
	case REF_BN:
		bn_forward(m, bufs, l, in, n, eval, y);
		break;
	case REF_MAXPOOL:
	case REF_AVGPOOL:
		pool_forward(o, in, n, y);
		break;
	case REF_GAP: {
		int C = o->in.c, hw = o->in.h * o->in.w;
		for (int s = 0; s < n; s++)
			for (int c = 0; c < C; c++) {
				double sum = 0;
				for (int p = 0; p < hw; p++)
					sum += in[((long)s * hw + p) * C + c];
				y[(long)s * C + c] = ref_act(L->act, sum / hw);
			}
		break;
	}
	case REF_FLATTEN:   /* NHWC -> (c, h, w) */
		for (int s = 0; s < n; s++)
			for (int h = 0; h < o->in.h; h++)
				for (int w = 0; w < o->in.w; w++)
					for (int c = 0; c < o->in.c; c++)
						y[(long)s * L->out + ((long)c * o->in.h + h) * o->in.w + w] =
							in[at(o->in, s, h, w, c)];
		break;
	case REF_ADD:
		for (long i = 0; i < len; i++)
			y[i] = ref_act(L->act, in[i] + in2[i]);
		break;
	case REF_ACT:
		for (long i = 0; i < len; i++)
			y[i] = ref_act(L->act, in[i]);
		break;
	case REF_DROPOUT:   /* the mask in aux: 0 or 1/(1-p) */
		for (long i = 0; i < len; i++)
			y[i] = eval ? in[i] : in[i] * bufs[o->aux][i];
		break;
	case REF_LN: {
		int C = o->in.c;
		const float *gamma = bufs[L->W], *beta = bufs[L->b];
		double *invstd, *xhat = ln_xhat(o, NULL, in, n, &invstd);
		for (long i = 0; i < len; i++)
			y[i] = ref_act(L->act, xhat[i] * gamma[i % C] + beta[i % C]);
		free(invstd);
		free(xhat);
		break;
	}
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

/* A dfa hidden layer: d = (d_out D) * f'(a), D [n_out, out] (out in the
 * layer's NHWC order). */
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

/* What consumer l sends down (dL/d its input) into dx (accumulating). A
 * dense or conv layer carries W or B as its rule says (a dfa layer's own
 * error comes from D, so what it sends below is W^T d, as backprop). */
static void send_error(const RtModel *m, float **bufs, int l, int n, int force_w, double *dx)
{
	const RtLayer *L = &m->layers[l];
	const RefOp *o = &ops[l];
	const float *d = bufs[L->d];
	long len = (long)n * L->in;
	switch (o->kind) {
	case REF_DENSE:
	case REF_CONV:
		conv_back_data(o, bufs[force_w || L->carry != RT_CARRY_B ? L->W : L->B], d, n, dx);
		break;
	case REF_BN:
		bn_back(m, bufs, l, n, dx);
		break;
	case REF_MAXPOOL:
	case REF_AVGPOOL:
		pool_back(o, bufs[ref_input_slot(m, l)], d, n, dx);
		break;
	case REF_GAP: {
		int C = o->in.c, hw = o->in.h * o->in.w;
		for (long i = 0; i < len; i++)
			dx[i] += (double)d[(i / ((long)hw * C)) * C + i % C] / hw;
		break;
	}
	case REF_FLATTEN:
		for (int s = 0; s < n; s++)
			for (int h = 0; h < o->in.h; h++)
				for (int w = 0; w < o->in.w; w++)
					for (int c = 0; c < o->in.c; c++)
						dx[at(o->in, s, h, w, c)] +=
							d[(long)s * L->out + ((long)c * o->in.h + h) * o->in.w + w];
		break;
	case REF_ADD:
	case REF_ACT:
		for (long i = 0; i < len; i++)
			dx[i] += d[i];
		break;
	case REF_DROPOUT:
		for (long i = 0; i < len; i++)
			dx[i] += d[i] * (double)bufs[o->aux][i];
		break;
	case REF_LN:
		ln_back(m, bufs, l, n, dx);
		break;
	}
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
			/* add(a, a) sends its error twice */
			if (m->layers[l].input == p)
				send_error(m, bufs, l, n, force_w, d);
			if (ops[l].kind == REF_ADD && ops[l].input2 == p)
				send_error(m, bufs, l, n, force_w, d);
		}
	}
	const float *y = bufs[P->y], *x = bufs[ref_input_slot(m, p)];
	for (long i = 0; i < len; i++)   /* gelu's derivative from its input */
		d[i] *= P->act == RT_ACT_GELU ? ref_gelu_grad(x[i]) : ref_act_grad_from_y(P->act, y[i]);
	return 0;
}

void ref_layer_grads(const RtModel *m, float **bufs, int l, int n,
                     double *gW, double *gb)
{
	const RtLayer *L = &m->layers[l];
	const RefOp *o = &ops[l];
	long len = (long)n * L->out;
	const float *df = bufs[L->d];
	if (o->kind == REF_LN) {
		ln_grads(m, bufs, l, n, 0, gW, gb);
		return;
	}
	if (o->kind == REF_BN) {
		int C = o->in.c;
		double *invstd = malloc(C * sizeof *invstd);
		double *xhat = bn_xhat(m, bufs, l, n, invstd);
		for (int c = 0; c < C; c++)
			gW[c] = gb[c] = 0;
		for (long i = 0; i < len; i++) {
			gW[i % C] += df[i] * xhat[i];
			gb[i % C] += df[i];
		}
		free(invstd);
		free(xhat);
		return;
	}
	double *d = malloc(len * sizeof *d);
	for (long i = 0; i < len; i++)
		d[i] = df[i];
	conv_correlate(o, d, bufs[ref_input_slot(m, l)], n, gW, gb);
	free(d);
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
		int i2 = ops[l].input2;
		ys[l] = malloc((long)n * L->out * sizeof **ys);
		ref_layer_forward(m, bufs, l, L->input < 0 ? x : ys[L->input],
		                  ops[l].kind != REF_ADD ? NULL : i2 < 0 ? x : ys[i2], n, 0, ys[l]);
	}
	double loss = loss_from_y(m, ys[m->nlayers - 1], labels, n, NULL);
	for (int l = 0; l < m->nlayers; l++)
		free(ys[l]);
	free(ys);
	free(x);
	return loss;
}

/* ---- the feedback rules ---- */

double ref_init_std(const RtModel *m, int l)
{
	const RtLayer *L = &m->layers[l];
	const RefOp *o = &ops[l];
	double fan_in = ref_fan_in(m, l), fan_out = (double)o->out.c * o->kh * o->kw;
	switch (L->init) {
	case RT_INIT_HE: return sqrt(2.0 / fan_in);
	case RT_INIT_XAVIER: return sqrt(2.0 / (fan_in + fan_out)); /* uniform a = sqrt(6/(in+out)) */
	case RT_INIT_NORMAL: return L->init_arg;
	default: return L->init_arg / sqrt(3.0);                   /* uniform(-a, a) */
	}
}

double ref_sign_scale(const RtModel *m, int l)
{
	const RefOp *o = &ops[l];
	double s = rt_rule_arg(&m->layers[l], "scale", 0);
	if (s > 0)
		return s;
	if (o->kind == REF_CONV)
		return sqrt(2.0 / ((double)o->kh * o->kw * o->out.c));
	return 1.0 / sqrt(ref_fan_in(m, l));
}

double ref_weight_decay(const RtLayer *L, const float *hyper)
{
	double decay = L->change == RT_CHANGE_AS_W ? rt_rule_arg(L, "decay", -1) : -1;
	return decay >= 0 ? decay : hyper[WTN_H_WEIGHT_DECAY];
}

void ref_mirror(const RtModel *m, float **bufs, int l, int n, double *y, double *B)
{
	const RtLayer *L = &m->layers[l];
	const RefOp *o = &ops[l];
	const float *xf = bufs[ref_input_slot(m, l)];
	double rate = rt_rule_arg(L, "rate", NAN), decay = rt_rule_arg(L, "decay", NAN);
	long nx = (long)n * L->in, nw = ref_weight_count(m, l);
	double *x = malloc(nx * sizeof *x), *corr = malloc(nw * sizeof *corr);
	for (long i = 0; i < nx; i++)
		x[i] = xf[i];
	conv_forward(o, bufs[L->W], NULL, RT_ACT_IDENTITY, x, n, y);
	conv_correlate(o, y, xf, n, corr, NULL);
	/* averaged over the n*OH*OW output pixels (dense: OH = OW = 1) */
	double pixels = (double)o->out.h * o->out.w;
	for (long e = 0; e < nw; e++)
		B[e] = (1 - decay) * B[e] + rate / (n * pixels) * corr[e];
	free(x);
	free(corr);
}

/* Expected update E[y^T col(x)] / (n*OH*OW) for x ~ N(0, noise^2): the taps
 * of one patch are distinct pixels, so each weight meets its own input once
 * per output pixel where its tap is inside the image; the fixed point is
 * rate * noise^2 / decay * W times the fraction of such pixels. */
void ref_mirror_fixed_point(const RtModel *m, float **bufs, int l, double *B)
{
	const RtLayer *L = &m->layers[l];
	const RefOp *o = &ops[l];
	double noise = rt_rule_arg(L, "noise", NAN);
	double k = rt_rule_arg(L, "rate", NAN) * noise * noise / rt_rule_arg(L, "decay", NAN);
	for (int i = 0; i < o->kh; i++)
		for (int j = 0; j < o->kw; j++) {
			long cnt = 0;
			for (int oy = 0; oy < o->out.h; oy++)
				for (int ox = 0; ox < o->out.w; ox++)
					cnt += inside(o->in, tap(o, oy, i), tap(o, ox, j));
			for (int f = 0; f < o->out.c; f++)
				for (int c = 0; c < o->in.c; c++)
					B[w_at(o, f, c, i, j)] = k * cnt / ((double)o->out.h * o->out.w)
					                         * bufs[L->W][w_at(o, f, c, i, j)];
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

/* The sums of absolute terms behind ref_layer_grads (|d| |x|, |d xhat|):
 * how much float rounding the kernel's summation may leave in a gradient
 * that cancels to nearly nothing (a conv feeding a batchnorm). */
void ref_layer_grads_magnitude(const RtModel *m, float **bufs, int l, int n,
                               double *gW, double *gb)
{
	const RtLayer *L = &m->layers[l];
	const RefOp *o = &ops[l];
	long len = (long)n * L->out, in_len = (long)n * L->in;
	const float *df = bufs[L->d];
	if (o->kind == REF_LN) {
		ln_grads(m, bufs, l, n, 1, gW, gb);
		return;
	}
	if (o->kind == REF_BN) {
		int C = o->in.c;
		double *invstd = malloc(C * sizeof *invstd);
		double *xhat = bn_xhat(m, bufs, l, n, invstd);
		for (int c = 0; c < C; c++)
			gW[c] = gb[c] = 0;
		for (long i = 0; i < len; i++) {
			gW[i % C] += fabs(df[i] * xhat[i]);
			gb[i % C] += fabs(df[i]);
		}
		free(invstd);
		free(xhat);
		return;
	}
	double *d = malloc(len * sizeof *d);
	float *x = malloc(in_len * sizeof *x);
	const float *xf = bufs[ref_input_slot(m, l)];
	for (long i = 0; i < len; i++)
		d[i] = fabs(df[i]);
	for (long i = 0; i < in_len; i++)
		x[i] = fabsf(xf[i]);
	conv_correlate(o, d, x, n, gW, gb);
	free(d);
	free(x);
}
