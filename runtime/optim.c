/* optim.c: the learning-rate schedule and the scalars of each optimiser
 * step; the per-element update itself is the generated wtn_update, or
 * wtn_backward's while wtn_step_hyper is set (wtn_abi.h). */
#include <math.h>
#include <string.h>
#include "wtnrt.h"

double rt_sched_lr(const RtTrain *t, int epoch)
{
	switch (t->schedule) {
	case RT_SCHED_STEP:
		if (t->step_every <= 0)
			return t->lr;
		return t->lr * pow(t->gamma, epoch / t->step_every);
	case RT_SCHED_COSINE:
		return t->min_lr + (t->lr - t->min_lr) * (1 + cos(M_PI * epoch / t->epochs)) / 2;
	}
	return t->lr;
}

void rt_optim_init(RtOptim *o, const RtTrain *t)
{
	memset(o, 0, sizeof *o);
	o->t = t;
	o->lr = t->lr;
}

void rt_optim_begin_epoch(RtOptim *o, int epoch)
{
	o->lr = rt_sched_lr(o->t, epoch);
}

const float *rt_optim_next(RtOptim *o)
{
	const RtTrain *t = o->t;
	double step = (double)(o->step + 1);
	float *h = o->hyper;
	h[WTN_H_LR] = (float)o->lr;
	h[WTN_H_MOMENTUM] = (float)t->momentum;
	h[WTN_H_WEIGHT_DECAY] = (float)t->weight_decay;
	h[WTN_H_BETA1] = (float)t->beta1;
	h[WTN_H_BETA2] = (float)t->beta2;
	h[WTN_H_EPS] = (float)t->eps;
	h[WTN_H_BC1] = (float)(1.0 - pow(t->beta1, step));
	h[WTN_H_BC2] = (float)(1.0 - pow(t->beta2, step));
	/* A float holds integers exactly below 2^24. */
	h[WTN_H_SEED] = (float)(rt_mix64((uint64_t)t->seed * 0x9e3779b1ULL + o->step) & 0xffffff);
	h[WTN_H_STEP] = (float)o->step;   /* exact below 2^24 steps */
	o->step++;
	return h;
}
