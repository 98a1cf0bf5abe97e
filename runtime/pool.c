/* pool.c: a few threads that share the fused update step. Idle workers
 * sleep on a condition variable (never spin), so the cores stay free for
 * OpenBLAS during the forward and backward passes. The caller runs part 0. */
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
	float **bufs;
	const float *hyper;
};

typedef struct Worker { RtPool *pool; int part; } Worker;

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
		wtn_update(p->bufs, p->hyper, w->part, p->nthreads);
		pthread_mutex_lock(&p->lock);
		if (--p->pending == 0)
			pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->lock);
	free(w);
	return NULL;
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
	return p;
}

void rt_pool_update(RtPool *p, float **bufs, const float *hyper)
{
	if (p->nthreads == 1) {
		wtn_update(bufs, hyper, 0, 1);
		return;
	}
	pthread_mutex_lock(&p->lock);
	p->bufs = bufs;
	p->hyper = hyper;
	p->pending = p->nthreads - 1;
	p->generation++;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	wtn_update(bufs, hyper, 0, p->nthreads);
	pthread_mutex_lock(&p->lock);
	while (p->pending > 0)
		pthread_cond_wait(&p->done, &p->lock);
	pthread_mutex_unlock(&p->lock);
}

void rt_pool_stop(RtPool *p)
{
	if (!p)
		return;
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

