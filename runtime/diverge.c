/* diverge.c: telling a diverged run from a bad epoch, and saying where it
 * blew up. A run diverges when a loss is not finite, a parameter is not
 * finite, or an epoch's training loss is far above the run's first step's;
 * the report names the first layer (in forward order) whose weights, output
 * or errors are not finite, else the one whose weights grew the most. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "wtnrt.h"

/* The floor keeps a near-zero start from making every wobble an explosion. */
#define EXPLODE_FLOOR 0.01

static double norm(const float *v, long n)
{
	double s = 0;
	for (long i = 0; i < n; i++)
		s += (double)v[i] * v[i];
	return sqrt(s);
}

static bool all_finite(const float *v, long n)
{
	for (long i = 0; i < n; i++)
		if (!isfinite(v[i]))
			return false;
	return true;
}

double *rt_weight_norms(const RtModel *m, float **bufs)
{
	double *w = calloc(m->nlayers ? m->nlayers : 1, sizeof *w);
	for (int i = 0; w && i < m->nlayers; i++)
		if (m->layers[i].W >= 0)
			w[i] = norm(bufs[m->layers[i].W], m->bufs[m->layers[i].W].elems);
	return w;
}

bool rt_params_finite(const RtModel *m, float **bufs)
{
	for (int i = 0; i < m->nbufs; i++)
		if ((m->bufs[i].kind == RT_BUF_PARAM || m->bufs[i].kind == RT_BUF_STAT) &&
		    !all_finite(bufs[i], m->bufs[i].elems))
			return false;
	return true;
}

bool rt_loss_exploded(double loss, double start)
{
	return !isfinite(loss) || loss > RT_EXPLODE_FACTOR * fmax(start, EXPLODE_FLOOR);
}

void rt_blame(const RtModel *m, float **bufs, int n, const double *w0, char *out, size_t len)
{
	const char *slot_name[] = {"weights", "bias", "feedback matrix"};
	for (int i = 0; i < m->nlayers; i++) {
		const RtLayer *l = &m->layers[i];
		int slots[] = {l->W, l->b, l->B};
		for (int k = 0; k < 3; k++)
			if (slots[k] >= 0 && !all_finite(bufs[slots[k]], m->bufs[slots[k]].elems)) {
				snprintf(out, len, "%s's %s are not finite", l->name, slot_name[k]);
				return;
			}
	}
	for (int i = 0; i < m->nlayers; i++)
		if (!all_finite(bufs[m->layers[i].y], (long)n * m->bufs[m->layers[i].y].elems)) {
			snprintf(out, len, "%s's output is not finite", m->layers[i].name);
			return;
		}
	/* Errors run from the output down: the first to break is the highest. */
	for (int i = m->nlayers - 1; i >= 0; i--)
		if (!all_finite(bufs[m->layers[i].d], (long)n * m->bufs[m->layers[i].d].elems)) {
			snprintf(out, len, "%s's errors are not finite", m->layers[i].name);
			return;
		}
	int worst = -1;
	double worst_growth = 0, worst_norm = 0;
	for (int i = 0; i < m->nlayers; i++) {
		const RtLayer *l = &m->layers[i];
		if (l->W < 0 || !w0 || w0[i] <= 0)
			continue;
		double now = norm(bufs[l->W], m->bufs[l->W].elems);
		if (now / w0[i] > worst_growth) {
			worst_growth = now / w0[i];
			worst_norm = now;
			worst = i;
		}
	}
	if (worst >= 0)
		snprintf(out, len, "%s's weights grew most, |W| %.3g, %.3g times their start",
		         m->layers[worst].name, worst_norm, worst_growth);
	else
		snprintf(out, len, "no layer's weights or outputs are out of range");
}
