/* mirror.c: when the weight-mirror layers take their mirror steps, and the
 * mirror command. Each mirror layer follows its own rule arguments: a noise
 * batch `batch`, `warmup` steps before training, then one step after every
 * `every`-th optimiser step (Akrout et al. 2019). A mirror step writes the
 * layer's input and y slots, which the next forward pass recomputes. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "wtnrt.h"

static bool is_mirror(const RtLayer *l)
{
	return l->change == RT_CHANGE_MIRROR;
}

/* The compiler fills in every argument (wm's defaults are compiler/rules.c's)
 * and checks they are whole numbers in range. */
static int mirror_batch(const RtLayer *l) { return (int)rt_rule_arg(l, "batch", 0); }
static long mirror_every(const RtLayer *l) { return (long)rt_rule_arg(l, "every", 0); }
static long mirror_warmup(const RtLayer *l) { return (long)rt_rule_arg(l, "warmup", 0); }

bool rt_mirror_any(const RtModel *m)
{
	for (int i = 0; i < m->nlayers; i++)
		if (is_mirror(&m->layers[i]))
			return true;
	return false;
}

int rt_mirror_max_batch(const RtModel *m)
{
	int most = 0;
	for (int i = 0; i < m->nlayers; i++)
		if (is_mirror(&m->layers[i]) && mirror_batch(&m->layers[i]) > most)
			most = mirror_batch(&m->layers[i]);
	return most;
}

/* Growth control (biotorch's weight mirror, damping factor g): after each
 * mirror step B is rescaled by one factor per layer so that its response
 * to unit noise has a mean standard deviation of g over the layer's
 * outputs. That std is a row's norm on a dense layer and a filter's norm
 * on a conv layer (at pixels whose window sees no padding), so the factor
 * is g over the mean row or filter norm. One factor keeps the mirror's
 * direction; B just no longer has W's scale, so the error sent down cannot
 * grow with W. (Rescaling each filter on its own, as wtn once did, turns B
 * away from W whenever W's filters differ in norm.) The norms are computed
 * exactly rather than estimated from a second noise batch. */
static void growth_control(const RtModel *m, float **bufs, const RtLayer *l, double g)
{
	const RtBuf *bb = &m->bufs[l->B];
	float *B = bufs[l->B];
	int rows = bb->rows;
	long cols = bb->elems / rows;
	double mean = 0;
	for (int r = 0; r < rows; r++) {
		double s = 0;
		for (long c = 0; c < cols; c++)
			s += (double)B[r * cols + c] * B[r * cols + c];
		mean += sqrt(s) / rows;
	}
	if (mean > 0)
		cblas_sscal((int)bb->elems, (float)(g / mean), B, 1);
}

static void mirror_step(const RtModel *m, float **bufs, int i)
{
	const RtLayer *l = &m->layers[i];
	rt_dist_mirror(m, bufs, i, mirror_batch(l));
	double g = rt_rule_arg(l, "growth", 0);
	if (g > 0)
		growth_control(m, bufs, l, g);
}

void rt_mirror_warmup(const RtModel *m, float **bufs)
{
	for (int i = 0; i < m->nlayers; i++)
		if (is_mirror(&m->layers[i]))
			for (long k = 0; k < mirror_warmup(&m->layers[i]); k++)
				mirror_step(m, bufs, i);
}

void rt_mirror_after_step(const RtModel *m, float **bufs, long step)
{
	for (int i = 0; i < m->nlayers; i++)
		if (is_mirror(&m->layers[i]) && step % mirror_every(&m->layers[i]) == 0) {
			wtn_profile_mark(i, WTN_PHASE_MIRROR);
			mirror_step(m, bufs, i);
		}
}

/* ---- the mirror command ---- */
static void print_alignment(const RtModel *m, float **bufs, long step, long steps)
{
	printf("mirror step %ld/%ld", step, steps);
	for (int i = 0; i < m->nlayers; i++) {
		const RtLayer *l = &m->layers[i];
		if (!is_mirror(l))
			continue;
		long n = m->bufs[l->W].elems;
		printf("  %s angle %.2f\u00b0 |B|/|W| %.3f", l->name,
		       rt_angle_deg(bufs[l->B], bufs[l->W], n),
		       rt_norm_ratio(bufs[l->B], bufs[l->W], n));
	}
	putchar('\n');
	fflush(stdout);
}

int rt_cmd_mirror(RtModel *m, const RtOptions *o)
{
	if (!rt_mirror_any(m)) {
		fprintf(stderr, "wtn: network %s has no weight-mirror (wm) layer: "
		        "nothing for mirror to do\n", m->name);
		return 1;
	}
	int status = 1;
	openblas_set_num_threads(rt_thread_count(o));
	float **bufs = rt_alloc_buffers(m, rt_max_batch(m, o));
	if (!bufs)
		return 1;
	/* the conv mirror splits its noise samples between the threads */
	RtPool *pool = rt_pool_start(rt_thread_count(o));
	if (rt_init_params(m, bufs, (uint64_t)m->train.seed) < 0)
		goto out;
	if (o->init) {
		if (rt_checkpoint_load(o->init, m, bufs, o->draw_missing, NULL) < 0)
			goto out;
		rt_init_mags_from_feedback(m, bufs);
	}
	rt_noise_seed((uint64_t)m->train.seed);
	long every = o->steps / 10 > 1 ? o->steps / 10 : 1;
	print_alignment(m, bufs, 0, o->steps);
	for (long s = 1; s <= o->steps; s++) {
		for (int i = 0; i < m->nlayers; i++)
			if (is_mirror(&m->layers[i]))
				mirror_step(m, bufs, i);
		if (s % every == 0 || s == o->steps)
			print_alignment(m, bufs, s, o->steps);
	}
	rt_config_set_current(rt_config_json(m, o, NULL));
	if (o->save && rt_checkpoint_save(o->save, m, bufs, 0, 0, NULL) < 0)
		goto out;
	status = 0;
out:
	rt_pool_stop(pool);
	rt_free_buffers(m, bufs);
	return status;
}
