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
 * Without mpirun (no launcher in the environment) nothing here touches MPI
 * and every function is the single-process path. Built without MPI (no
 * mpicc when the runtime was built), a launch on several ranks is refused. */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include "wtnrt.h"
#ifdef WTN_MPI
#include <mpi.h>
#endif

static struct {
	int rank, size;
	bool on;               /* MPI initialised by rt_dist_init */
	bool sync_bn;          /* --sync-bn: batchnorm over the global batch */
	bool in_step;          /* between rt_dist_shard and rt_dist_gradients */
	int local;             /* samples this rank holds in the current step */
	double weight;         /* its share of the global batch (0: a stand-in sample) */
} dist = {.size = 1, .weight = 1};

/* The world size a launcher announces (Open MPI's mpirun, PMIx, PMI as
 * MPICH's hydra and Slurm's srun --mpi=pmi2 set), or 0 outside one. */
static int launcher_size(void)
{
	static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"};
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
		const char *v = getenv(vars[i]);
		if (v && atoi(v) > 0)
			return atoi(v);
	}
	/* PMIx announces a rank but not always a size: MPI_Init will tell. */
	return getenv("PMIX_RANK") ? 1 : 0;
}

int rt_dist_rank(void) { return dist.rank; }
int rt_dist_size(void) { return dist.size; }
bool rt_dist_on(void) { return dist.on; }

/* Samples [*lo, *hi) of n that rank r takes. */
static void shard_of(long n, long *lo, long *hi)
{
	*lo = n * dist.rank / dist.size;
	*hi = n * (dist.rank + 1) / dist.size;
}

#ifdef WTN_MPI
static void on_mpi_error(MPI_Comm *comm, int *code, ...)
{
	char text[MPI_MAX_ERROR_STRING];
	int len = 0;
	MPI_Error_string(*code, text, &len);
	fflush(stdout);
	fprintf(stderr, "wtn: rank %d of %d: MPI failed (%s), most likely because another rank "
	        "died; ending the job (the last checkpoint written is whole)\n",
	        dist.rank, dist.size, text);
	MPI_Abort(*comm, 1);
}

static void sum_in_place(void *buf, long count, MPI_Datatype type)
{
	/* MPI counts are int: large tensors go in pieces. */
	size_t elem = type == MPI_DOUBLE ? sizeof(double) : sizeof(float);
	for (long done = 0; done < count;) {
		int part = count - done > (1L << 30) ? 1 << 30 : (int)(count - done);
		MPI_Allreduce(MPI_IN_PLACE, (char *)buf + done * elem, part, type, MPI_SUM,
		              MPI_COMM_WORLD);
		done += part;
	}
}

/* CPUs this process may run on (mpirun binds ranks to cores or sockets). */
static int cpus_allowed(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) != 0)
		return 0;
	return CPU_COUNT(&set);
}
#endif

int rt_dist_init(RtOptions *o)
{
	int announced = launcher_size();
	dist.sync_bn = o->sync_bn;
	if (!o->mpi && announced <= 1)
		return 0;   /* one process: as if MPI did not exist */
#ifndef WTN_MPI
	fprintf(stderr, "wtn: this binary was built without MPI (no mpicc when the wtn runtime "
	        "was built), so it cannot train data-parallel%s; install libopenmpi-dev and "
	        "openmpi-bin, rebuild wtn (make clean all) and compile the network again\n",
	        announced > 1 ? " on the ranks mpirun started" : "");
	return -1;
#else
	int provided;
	/* Only the main thread calls MPI; the pool's threads run kernels. */
	if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
		fprintf(stderr, "wtn: MPI_Init failed\n");
		return -1;
	}
	dist.on = true;
	MPI_Errhandler handler;
	MPI_Comm_create_errhandler(on_mpi_error, &handler);
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, handler);
	MPI_Comm_rank(MPI_COMM_WORLD, &dist.rank);
	MPI_Comm_size(MPI_COMM_WORLD, &dist.size);
	/* Rank 0 prints, writes metrics and checkpoints; the others only compute. */
	if (dist.rank != 0) {
		o->save = o->metrics = NULL;
		if (!freopen("/dev/null", "w", stdout))
			fprintf(stderr, "wtn: rank %d: cannot silence stdout\n", dist.rank);
	}
	/* Threads per rank: the cores mpirun left to it, not the whole machine. */
	if (!o->threads && dist.size > 1) {
		int cpus = cpus_allowed();
		if (cpus > 0)
			o->threads = cpus > 64 ? 64 : cpus;
	}
	return 0;
#endif
}

int rt_dist_finish(int status)
{
#ifdef WTN_MPI
	if (dist.on) {
		fflush(stdout);
		fflush(stderr);
		/* A rank that fails alone would leave the others waiting in a
		 * collective: end them all. */
		if (status != 0 && dist.size > 1)
			MPI_Abort(MPI_COMM_WORLD, status);
		MPI_Finalize();
		dist.on = false;
	}
#endif
	return status;
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
#ifdef WTN_MPI
	/* The loss kernel divided the error by the local count: scale it to
	 * this rank's part of the global mean; the backward pass is linear in
	 * it, so every gradient comes out as its share of the global one. */
	float w = (float)dist.weight, *d = bufs[last->d];
	for (long i = 0; i < (long)dist.local * last->out; i++)
		d[i] *= w;
	double v[2] = {dist.weight ? loss * dist.weight : 0, dist.weight ? right : 0};
	sum_in_place(v, 2, MPI_DOUBLE);
	*correct += (long)v[1];
	return (float)v[0];
#else
	return loss;
#endif
}

void rt_dist_gradients(const RtModel *m, float **bufs)
{
	dist.in_step = false;
	if (dist.size == 1)
		return;
#ifdef WTN_MPI
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
		sum_in_place(bufs[s], b->elems, MPI_FLOAT);
	}
#endif
}

void rt_dist_evaluate(const RtModel *m, float **bufs, const RtSet *set, int batch,
                      int32_t *labels, double *loss, double *acc)
{
	if (dist.size == 1) {
		rt_evaluate(m, bufs, set, batch, labels, loss, acc);
		return;
	}
#ifdef WTN_MPI
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
	sum_in_place(v, 2, MPI_DOUBLE);
	*loss = set->n ? v[0] / set->n : 0.0 / 0.0;
	*acc = set->n ? 100.0 * v[1] / set->n : 0.0 / 0.0;
#endif
}

void rt_dist_mirror(const RtModel *m, float **bufs, int layer, int n)
{
	if (dist.size == 1) {
		wtn_mirror(bufs, layer, n);
		return;
	}
#ifdef WTN_MPI
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
	sum_in_place(B, elems, MPI_FLOAT);
#endif
}

void wtn_allreduce(double *v, int count)
{
#ifdef WTN_MPI
	/* Only inside a training step, which every rank takes: not in the
	 * evaluation, the probe or the mirror steps. */
	if (!dist.sync_bn || !dist.in_step || dist.size == 1)
		return;
	if (dist.weight == 0)   /* a stand-in sample: adds nothing to the sums */
		memset(v, 0, count * sizeof *v);
	sum_in_place(v, count, MPI_DOUBLE);
#endif
}
