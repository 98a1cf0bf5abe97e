/* dist.c: data-parallel training over MPI. Every rank loads the data, draws
 * the same shuffle and augmentation from the same seed and fetches the whole
 * global batch; it keeps its shard (floor(n r/N) .. floor(n (r+1)/N), so
 * shards differ by at most one sample), weights its output error by
 * n_local/n so that its gradients are its share of the global batch's mean,
 * and the gradients are summed with MPI_Allreduce. Every rank then takes the
 * same optimiser step, so parameters, feedback matrices and optimiser state
 * stay equal without being sent: kp's B follows the summed gradient, fixed
 * matrices come from the shared seed, brsf's redraws from the per-step seed.
 * A weight-mirror step splits its noise batch the same way (each rank draws
 * its slice of the one noise stream) and B is the weighted sum of the
 * ranks' results, which equals one step over the whole noise batch because
 * the step is affine in the correlation.
 *
 * Batchnorm normalises by each rank's shard by default, as PyTorch's
 * DistributedDataParallel does; its running statistics are averaged over
 * the ranks after every step, weighted by shard, which makes the running
 * mean that of the global batch. --sync-bn sums the per-channel sums inside
 * the kernels (wtn_allreduce), so the run equals one process.
 *
 * Without mpirun (no launcher in the environment) MPI is never started and
 * every function is the single-process path. MPI itself is called only in
 * mpi.c, which hands this file an in-place sum (rt_dist_attach). */
#include <stdlib.h>
#include <string.h>
#include "wtnrt.h"

static struct {
	int rank, size;
	bool on;               /* MPI started (rt_dist_attach) */
	bool sync_bn;          /* --sync-bn: batchnorm over the global batch */
	bool in_step;          /* between rt_dist_shard and rt_dist_gradients */
	int local;             /* samples this rank holds in the current step */
	double weight;         /* its share of the global batch (0: a stand-in sample) */
	RtSumFn *sum;          /* mpi.c's in-place sum over the ranks */
} dist = {.size = 1, .weight = 1};

void rt_dist_attach(int rank, int size, RtSumFn *sum)
{
	dist.rank = rank;
	dist.size = size;
	dist.sum = sum;
	dist.on = true;
}

void rt_dist_sync_bn(bool on) { dist.sync_bn = on; }

int rt_dist_rank(void) { return dist.rank; }
int rt_dist_size(void) { return dist.size; }
bool rt_dist_on(void) { return dist.on; }

/* Samples [*lo, *hi) of n that rank r takes. */
static void shard_of(long n, long *lo, long *hi)
{
	*lo = n * dist.rank / dist.size;
	*hi = n * (dist.rank + 1) / dist.size;
}

int rt_dist_shard(const RtModel *m, float *x, int32_t *labels, int n)
{
	dist.local = n;
	dist.weight = 1;
	if (dist.size == 1)
		return n;
	long lo, hi;
	shard_of(n, &lo, &hi);
	if (hi == lo) {
		/* Fewer samples than ranks: compute on a stand-in that counts for
		 * nothing, so every rank still runs the same collectives. */
		lo = 0;
		hi = 1;
		dist.weight = 0;
	} else
		dist.weight = (double)(hi - lo) / n;
	long dim = m->bufs[m->x_slot].elems;
	memmove(x, x + lo * dim, (size_t)(hi - lo) * dim * sizeof *x);
	memmove(labels, labels + lo, (size_t)(hi - lo) * sizeof *labels);
	dist.local = (int)(hi - lo);
	dist.in_step = true;
	return dist.local;
}

float rt_dist_loss(const RtModel *m, float **bufs, const int32_t *labels, float loss,
                   long *correct)
{
	const RtLayer *last = &m->layers[m->nlayers - 1];
	const float *y = bufs[last->y];
	long right = 0;
	for (int i = 0; i < dist.local; i++)
		right += rt_argmax(y + (long)i * last->out, last->out) == labels[i];
	if (dist.size == 1) {
		*correct += right;
		return loss;
	}
	/* The loss kernel divided the error by the local count: scale it to
	 * this rank's part of the global mean; the backward pass is linear in
	 * it, so every gradient comes out as its share of the global one. */
	float w = (float)dist.weight, *d = bufs[last->d];
	for (long i = 0; i < (long)dist.local * last->out; i++)
		d[i] *= w;
	double v[2] = {dist.weight ? loss * dist.weight : 0, dist.weight ? right : 0};
	dist.sum(v, 2, true);
	*correct += (long)v[1];
	return (float)v[0];
}

void rt_dist_gradients(const RtModel *m, float **bufs)
{
	dist.in_step = false;
	if (dist.size == 1)
		return;
	for (int s = 0; s < m->nbufs; s++) {
		const RtBuf *b = &m->bufs[s];
		if (b->kind == RT_BUF_STAT) {
			/* Batchnorm's running statistics moved by each rank's batch:
			 * their weighted mean moves the mean by the global batch's. */
			float w = (float)dist.weight;
			for (long i = 0; i < b->elems; i++)
				bufs[s][i] *= w;
		} else if (b->kind != RT_BUF_GRAD)
			continue;
		else if (dist.weight == 0)
			/* A stand-in's error is zero, but synchronised batchnorm sends
			 * back the other ranks' through it: it must add nothing. */
			memset(bufs[s], 0, b->elems * sizeof(float));
		dist.sum(bufs[s], b->elems, false);
	}
}

void rt_dist_evaluate(const RtModel *m, float **bufs, const RtSet *set, int batch,
                      int32_t *labels, double *loss, double *acc)
{
	if (dist.size == 1) {
		rt_evaluate(m, bufs, set, batch, labels, loss, acc);
		return;
	}
	long lo, hi;
	shard_of(set->n, &lo, &hi);
	RtSet part = {.n = hi - lo, .dim = set->dim, .x = set->x + lo * set->dim, .y = set->y + lo};
	double v[2] = {0, 0};
	if (part.n) {
		double l, a;
		rt_evaluate(m, bufs, &part, batch, labels, &l, &a);
		v[0] = l * part.n;
		v[1] = (long)(a / 100.0 * part.n + 0.5);   /* this shard's correct count */
	}
	dist.sum(v, 2, true);
	*loss = set->n ? v[0] / set->n : 0.0 / 0.0;
	*acc = set->n ? 100.0 * v[1] / set->n : 0.0 / 0.0;
}

void rt_dist_mirror(const RtModel *m, float **bufs, int layer, int n)
{
	if (dist.size == 1) {
		wtn_mirror(bufs, layer, n);
		return;
	}
	const RtLayer *l = &m->layers[layer];
	long lo, hi;
	double weight;
	shard_of(n, &lo, &hi);
	if (hi == lo) {
		lo = 0;
		hi = 1;
		weight = 0;
	} else
		weight = (double)(hi - lo) / n;
	rt_noise_window(lo * l->in, (long)n * l->in);
	wtn_mirror(bufs, layer, (int)(hi - lo));
	float w = (float)weight, *B = bufs[l->B];
	long elems = m->bufs[l->B].elems;
	for (long i = 0; i < elems; i++)
		B[i] *= w;
	dist.sum(B, elems, false);
}

void wtn_allreduce(double *v, int count)
{
	/* Only inside a training step, which every rank takes: not in the
	 * evaluation, the probe or the mirror steps. */
	if (!dist.sync_bn || !dist.in_step || dist.size == 1)
		return;
	if (dist.weight == 0)   /* a stand-in sample: adds nothing to the sums */
		memset(v, 0, count * sizeof *v);
	dist.sum(v, count, true);
}
