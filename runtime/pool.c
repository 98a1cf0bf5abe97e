/* pool.c: a few threads that share the fused update step and the kernels'
 * parallel loops (wtn_parallel_for). The caller runs part 0.
 *
 * A step hands the pool a dozen jobs, most of them back to back (a conv's
 * loop, then its pool's). Waking a thread asleep on a condition variable
 * takes tens of microseconds here, far more when its core is idle in a
 * virtual machine, and a job waits twice: for its workers to start and
 * for the caller to notice they finished. So both sides first look at the
 * job counter and the count of parts still running a few dozen times
 * (LOOKS, a few microseconds) and only then sleep: enough to catch a job
 * that follows at once, never a busy wait that takes a core from another
 * process (a 0.2 ms spin measured no clear gain). A product the caller
 * starts between jobs (wtn_sgemm, rt_pool_quiet) sends looking workers to
 * sleep at once, so the cores stay free for OpenBLAS's own threads. */
#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>
#include "wtnrt.h"

/* How many times a worker looks for the next job, and the caller for the
 * end of one, before sleeping. */
enum { LOOKS = 64 };

struct RtPool {
	int nthreads;
	pthread_t *threads;
	pthread_mutex_t lock;
	pthread_cond_t wake, done;
	long generation;       /* bumped for every job (atomic; written under lock) */
	int pending;           /* workers still running the current job (atomic) */
	bool quit;             /* (atomic; written under lock) */
	long quiets;           /* bumped by rt_pool_quiet (atomic) */
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

/* Where part k of parts over [0, count) starts (count >= parts). The
 * parts shrink from about twice the mean to one item: a loop ends when its
 * slowest thread does, and the part that thread is still running when the
 * others run out is then a short one. Each part has at least one item,
 * and a part's range depends only on (count, parts, k). */
static long part_start(long count, int parts, int k)
{
	double left = (double)(parts - k) / parts;
	return k + (long)((count - parts) * (1 - left * left));
}

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
		p->body(p->ctx, part_start(p->count, p->parts, k), part_start(p->count, p->parts, k + 1), k);
		k = __atomic_fetch_add(&p->next_part, 1, __ATOMIC_RELAXED);
	}
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Looks LOOKS times for a job newer than seen (or quit); true if there is
 * one. False at once when the caller announced a product after quiets was
 * read (rt_pool_quiet). */
static bool spin_for_job(RtPool *p, long seen, long quiets)
{
	for (int i = 0; i < LOOKS; i++) {
		if (__atomic_load_n(&p->generation, __ATOMIC_ACQUIRE) != seen
		    || __atomic_load_n(&p->quit, __ATOMIC_ACQUIRE))
			return true;
		if (__atomic_load_n(&p->quiets, __ATOMIC_RELAXED) != quiets)
			return false;
		cpu_relax();
	}
	return false;
}

/* Looks LOOKS times whether *count is 0; true if it is. */
static bool spin_until_zero(const int *count)
{
	for (int i = 0; i < LOOKS; i++) {
		if (__atomic_load_n(count, __ATOMIC_ACQUIRE) == 0)
			return true;
		cpu_relax();
	}
	return false;
}

static void *worker_main(void *arg)
{
	Worker *w = arg;
	RtPool *p = w->pool;
	long seen = 0, quiets = 0;
	for (;;) {
		if (!spin_for_job(p, seen, quiets)) {
			pthread_mutex_lock(&p->lock);
			while (p->generation == seen && !p->quit)
				pthread_cond_wait(&p->wake, &p->lock);
			pthread_mutex_unlock(&p->lock);
		}
		if (__atomic_load_n(&p->quit, __ATOMIC_ACQUIRE))
			break;
		seen = __atomic_load_n(&p->generation, __ATOMIC_ACQUIRE);
		quiets = __atomic_load_n(&p->quiets, __ATOMIC_RELAXED);
		rt_profile_busy(1);
		run_part(p, w->part);
		rt_profile_busy(-1);
		if (__atomic_sub_fetch(&p->pending, 1, __ATOMIC_ACQ_REL) == 0) {
			/* under the lock: the caller checks pending under it before sleeping */
			pthread_mutex_lock(&p->lock);
			pthread_cond_signal(&p->done);
			pthread_mutex_unlock(&p->lock);
		}
	}
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
	__atomic_store_n(&p->pending, p->nthreads - 1, __ATOMIC_RELAXED);
	p->busy = true;
	pthread_mutex_lock(&p->lock);
	__atomic_add_fetch(&p->generation, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	run_part(p, 0);
	if (join)
		rt_profile_join();
	rt_profile_busy(-1);   /* the caller only waits now */
	if (!spin_until_zero(&p->pending)) {
		pthread_mutex_lock(&p->lock);
		while (__atomic_load_n(&p->pending, __ATOMIC_ACQUIRE) > 0)
			pthread_cond_wait(&p->done, &p->lock);
		pthread_mutex_unlock(&p->lock);
	}
	p->busy = false;
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

/* Splits [0, count) into up to PARTS_PER_THREAD parts per thread, as many
 * for each thread (at most max_parts, the kernels' scratch: 3 threads get
 * 15 of 16, not 16), run as the threads come free (run_part); returns the
 * number of parts, each run once with its own part number. */
enum { PARTS_PER_THREAD = 8 };
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

/* The caller is about to run a product outside any job: workers spinning
 * for the next job sleep now instead of competing with OpenBLAS. */
void rt_pool_quiet(void)
{
	RtPool *p = current;
	if (p && p->nthreads > 1 && !p->busy)
		__atomic_add_fetch(&p->quiets, 1, __ATOMIC_RELAXED);
}

void rt_pool_stop(RtPool *p)
{
	if (!p)
		return;
	if (current == p)
		current = NULL;
	pthread_mutex_lock(&p->lock);
	__atomic_store_n(&p->quit, true, __ATOMIC_RELEASE);
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
