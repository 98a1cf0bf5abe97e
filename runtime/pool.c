/* pool.c: a few threads that share the fused update step and the kernels'
 * parallel loops (wtn_parallel_for). Idle workers sleep on a condition
 * variable (never spin), so the cores stay free for OpenBLAS during its
 * products. The caller runs part 0. */
#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>
#include "wtnrt.h"

struct RtPool {
	int nthreads;
	pthread_t *threads;
	pthread_mutex_t lock;
	pthread_cond_t wake, done;
	long generation;       /* bumped for every job */
	int pending;           /* workers still running the current job */
	bool quit;
	/* the current job: the update (body NULL) or a parallel loop */
	float **bufs;
	const float *hyper;
	wtn_range_fn *body;
	void *ctx;
	long count;
	int parts;
	int next_part;         /* the next part a thread takes (atomic) */
	bool busy;             /* a job is running: nested loops run serially */
	bool split;            /* wtn_parallel_for may use the threads */
};

/* The pool of the running command, for the kernels' parallel loops. */
static RtPool *current;

typedef struct Worker { RtPool *pool; int part; } Worker;

static void run_part(RtPool *p, int part)
{
	if (!p->body) {
		wtn_update(p->bufs, p->hyper, part, p->nthreads);
		return;
	}
	/* The caller runs part 0 (a body may count on it: the profile's marks
	 * count on the step's thread only); then each thread takes the next
	 * part until none is left, so a thread whose core is shared with
	 * another process takes fewer, instead of the others waiting for its
	 * share. Part k always covers the same samples, whichever thread runs
	 * it, so results do not depend on timing. */
	int k = part == 0 ? 0 : __atomic_fetch_add(&p->next_part, 1, __ATOMIC_RELAXED);
	while (k < p->parts) {
		long lo = p->count * k / p->parts, hi = p->count * (k + 1) / p->parts;
		p->body(p->ctx, lo, hi, k);
		k = __atomic_fetch_add(&p->next_part, 1, __ATOMIC_RELAXED);
	}
}

static void *worker_main(void *arg)
{
	Worker *w = arg;
	RtPool *p = w->pool;
	long seen = 0;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->generation == seen && !p->quit)
			pthread_cond_wait(&p->wake, &p->lock);
		if (p->quit)
			break;
		seen = p->generation;
		pthread_mutex_unlock(&p->lock);
		rt_profile_busy(1);
		run_part(p, w->part);
		rt_profile_busy(-1);
		pthread_mutex_lock(&p->lock);
		if (--p->pending == 0)
			pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->lock);
	free(w);
	return NULL;
}

/* After a threaded product OpenBLAS's idle workers spin (sched_yield) for
 * 2^28 cycles unless OPENBLAS_THREAD_TIMEOUT (read when OpenBLAS loads)
 * shortens it; the parts of a parallel loop would then take turns with
 * them on the same cores and run slower than one thread plus OpenBLAS
 * (measured: 1,800 against 2,000 samples/s on the bench convnet, 2,270
 * with OPENBLAS_THREAD_TIMEOUT=4). So loops split only when the workers
 * sleep promptly or OpenBLAS runs single-threaded. */
static bool blas_spins(void)
{
	if (openblas_get_num_threads() <= 1)
		return false;
	const char *t = getenv("OPENBLAS_THREAD_TIMEOUT");
	return !(t && atoi(t) >= 1 && atoi(t) <= 16);
}

RtPool *rt_pool_start(int nthreads)
{
	RtPool *p = calloc(1, sizeof *p);
	p->nthreads = nthreads < 1 ? 1 : nthreads;
	p->threads = calloc(p->nthreads, sizeof *p->threads);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	pthread_cond_init(&p->done, NULL);
	for (int i = 1; i < p->nthreads; i++) {
		Worker *w = malloc(sizeof *w);
		w->pool = p;
		w->part = i;
		if (pthread_create(&p->threads[i], NULL, worker_main, w) != 0) {
			/* Fewer threads still give a correct update. */
			free(w);
			p->nthreads = i;
			break;
		}
	}
	p->split = !blas_spins();
	current = p;
	return p;
}

/* Wakes every worker for the job already stored in p, runs part 0 and
 * waits for the others (join: the profile charges the wait to the phase,
 * not to the layer part 0 ended in). */
static void run_job(RtPool *p, bool join)
{
	pthread_mutex_lock(&p->lock);
	p->pending = p->nthreads - 1;
	p->generation++;
	p->busy = true;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	run_part(p, 0);
	if (join)
		rt_profile_join();
	rt_profile_busy(-1);   /* the caller only waits now */
	pthread_mutex_lock(&p->lock);
	while (p->pending > 0)
		pthread_cond_wait(&p->done, &p->lock);
	p->busy = false;
	pthread_mutex_unlock(&p->lock);
	rt_profile_busy(1);
}

void rt_pool_update(RtPool *p, float **bufs, const float *hyper)
{
	if (p->nthreads == 1) {
		wtn_update(bufs, hyper, 0, 1);
		return;
	}
	p->bufs = bufs;
	p->hyper = hyper;
	p->body = NULL;
	run_job(p, true);
}

/* Whether wtn_parallel_for uses every thread of p: then the update can run
 * inside wtn_backward (wtn_step_hyper) as fast as rt_pool_update runs it. */
bool rt_pool_splits(const RtPool *p)
{
	return p->nthreads == 1 || p->split;
}

/* Splits [0, count) into up to two parts per thread, as many for each
 * thread (at most max_parts, the kernels' scratch: 3 threads get 3 parts,
 * not 4), run as the threads come free (run_part); returns the number of
 * parts, each run once with its own part number. */
enum { PARTS_PER_THREAD = 2 };
int wtn_parallel_for(wtn_range_fn *body, void *ctx, long count, int max_parts)
{
	RtPool *p = current;
	int parts = p && p->split && !p->busy ? p->nthreads : 1;
	if (parts > 1 && parts <= max_parts) {
		int each = max_parts / parts;
		parts *= each < PARTS_PER_THREAD ? each : PARTS_PER_THREAD;
	}
	if (parts > max_parts)
		parts = max_parts;
	if (parts > count)
		parts = count > 1 ? (int)count : 1;
	if (parts <= 1) {
		body(ctx, 0, count, 0);
		return 1;
	}
	/* The parts take every core: a threaded product inside one would only
	 * make the threads queue for each other. */
	int blas = openblas_get_num_threads();
	openblas_set_num_threads(1);
	p->body = body;
	p->ctx = ctx;
	p->count = count;
	p->parts = parts;
	p->next_part = 1;   /* part 0 is the caller's */
	run_job(p, false);
	p->body = NULL;
	openblas_set_num_threads(blas);
	return parts;
}

void rt_pool_stop(RtPool *p)
{
	if (!p)
		return;
	if (current == p)
		current = NULL;
	pthread_mutex_lock(&p->lock);
	p->quit = true;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	for (int i = 1; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->wake);
	pthread_cond_destroy(&p->done);
	free(p->threads);
	free(p);
}
