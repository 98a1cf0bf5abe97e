/* train.c: the train and eval commands: load data, initialise or load the
 * parameters, run the step loop over the generated kernels, report and
 * checkpoint each epoch. Everything the step needs is allocated before the
 * first step. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "wtnrt.h"

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Everything one run holds; freed by run_close. */
typedef struct Run {
	RtModel *m;
	RtData data;
	float **bufs;
	int32_t *labels;
	RtPool *pool;
	RtBatcher batcher;
	FILE *metrics;
	RtLayerStat *stats;
	RtProbe *probe;
} Run;

static void run_close(Run *r)
{
	if (r->metrics)
		fclose(r->metrics);
	rt_pool_stop(r->pool);
	rt_batcher_free(&r->batcher);
	rt_probe_free(r->probe);
	rt_free_buffers(r->m, r->bufs);
	free(r->labels);
	free(r->stats);
	rt_data_free(&r->data);
}

/* Data, buffers and parameters (fresh or from --init). */
static int run_open(Run *r, RtModel *m, const RtOptions *o)
{
	const RtTrain *t = &m->train;
	memset(r, 0, sizeof *r);
	r->m = m;
	if (rt_data_load(m, o->data, &r->data) < 0)
		return -1;
	r->bufs = rt_alloc_buffers(m, rt_max_batch(m, o));
	r->labels = calloc(rt_max_batch(m, o), sizeof *r->labels);
	r->stats = calloc(m->nlayers, sizeof *r->stats);
	if (!r->bufs || !r->labels || !r->stats) {
		fprintf(stderr, "wtn: out of memory\n");
		return -1;
	}
	if (rt_init_params(m, r->bufs, (uint64_t)t->seed) < 0)
		return -1;
	if (o->init) {
		if (rt_checkpoint_load(o->init, m, r->bufs) < 0)
			return -1;
		rt_init_mags_from_feedback(m, r->bufs);
	}
	rt_noise_seed((uint64_t)t->seed);
	return 0;
}

int rt_thread_count(const RtOptions *o)
{
	if (o->threads > 0)
		return o->threads;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

typedef struct EpochTotals { double loss_sum; long correct, seen; } EpochTotals;

/* One epoch of steps. Returns -1 (after the message) on a non-finite loss. */
static int train_epoch(Run *r, const RtOptions *o, RtOptim *opt, int epoch, bool tty,
                       EpochTotals *e)
{
	RtModel *m = r->m;
	const RtTrain *t = &m->train;
	double last_draw = 0;
	int step = 0, n;
	rt_batcher_start_epoch(&r->batcher);
	while ((!o->steps || opt->step < o->steps) &&
	       (n = rt_batcher_next(&r->batcher, r->bufs[m->x_slot], r->labels)) > 0) {
		step++;
		int local = rt_dist_shard(m, r->bufs[m->x_slot], r->labels, n);
		wtn_forward(r->bufs, local);
		float loss = rt_dist_loss(m, r->bufs, r->labels, wtn_loss(r->bufs, r->labels, local),
		                          &e->correct);
		if (!isfinite(loss)) {
			if (tty)
				fputs("\r\033[K", stdout);
			fflush(stdout);
			fprintf(stderr, "wtn: non-finite loss at epoch %d step %d; stopping", epoch + 1, step);
			if (o->save && epoch > 0)
				fprintf(stderr, " (checkpoint %s keeps epoch %d)\n", o->save, epoch);
			else if (o->save)
				fprintf(stderr, " (checkpoint %s not written by this run)\n", o->save);
			else
				fputc('\n', stderr);
			return -1;
		}
		e->loss_sum += (double)loss * n;
		e->seen += n;
		wtn_backward(r->bufs, local);
		rt_dist_gradients(m, r->bufs);
		const float *hyper = rt_optim_next(opt);
		rt_pool_update(r->pool, r->bufs, hyper);
		rt_mirror_after_step(m, r->bufs, opt->step);
		if (tty) {
			double tnow = now_seconds();
			if (tnow - last_draw > 0.1 || r->batcher.pos == r->data.train.n) {
				last_draw = tnow;
				rt_progress(stdout, epoch + 1, t->epochs, e->seen, r->data.train.n,
				            e->loss_sum / e->seen, 100.0 * e->correct / e->seen);
			}
		}
	}
	return 0;
}

int rt_cmd_train(RtModel *m, const RtOptions *o)
{
	const RtTrain *t = &m->train;
	Run r;
	int status = 1;
	if (run_open(&r, m, o) < 0)
		goto out;
	if (o->metrics && !(r.metrics = fopen(o->metrics, "w"))) {
		fprintf(stderr, "wtn: %s: cannot write metrics: %m\n", o->metrics);
		goto out;
	}
	int threads = rt_thread_count(o);
	openblas_set_num_threads(threads);
	r.pool = rt_pool_start(threads);
	rt_batcher_init(&r.batcher, &r.data.train, t->batch, !o->no_shuffle, (uint64_t)t->seed);
	rt_batcher_augment(&r.batcher, m, (uint64_t)t->seed);
	RtOptim opt;
	rt_optim_init(&opt, t);
	/* Starting from a checkpoint, B is already mirrored. */
	if (!o->init)
		rt_mirror_warmup(m, r.bufs);
	if (!(r.probe = rt_probe_new(m, &r.data.test, t->batch)))
		goto out;
	/* mpirun hands its ranks a pseudo-terminal even when its own output is a log */
	bool tty = isatty(STDOUT_FILENO) && !rt_dist_on();
	for (int epoch = 0; epoch < t->epochs && (!o->steps || opt.step < o->steps); epoch++) {
		EpochTotals e = {0};
		rt_optim_begin_epoch(&opt, epoch);
		double t0 = now_seconds();
		if (train_epoch(&r, o, &opt, epoch, tty, &e) < 0)
			goto out;
		double elapsed = now_seconds() - t0;
		RtEpochStats s = {.epoch = epoch + 1, .epochs = t->epochs, .lr = opt.lr,
		                  .layers = r.stats};
		s.train_loss = e.loss_sum / e.seen;
		s.train_acc = 100.0 * e.correct / e.seen;
		s.samples_per_sec = elapsed > 0 ? e.seen / elapsed : 0;
		rt_dist_evaluate(m, r.bufs, &r.data.test, t->batch, r.labels, &s.test_loss, &s.test_acc);
		rt_layer_stats(m, r.bufs, r.stats);
		rt_probe_delta(r.probe, r.bufs, r.labels, r.stats);
		if (tty)
			fputs("\r\033[K", stdout);
		rt_print_epoch(stdout, m, &s);
		if (r.metrics && rt_write_metrics_json(r.metrics, m, &s) < 0) {
			fprintf(stderr, "wtn: %s: cannot write metrics\n", o->metrics);
			goto out;
		}
		if (o->save && rt_checkpoint_save(o->save, m, r.bufs, epoch + 1) < 0)
			goto out;
	}
	status = 0;
out:
	run_close(&r);
	return status;
}

int rt_cmd_eval(RtModel *m, const RtOptions *o)
{
	Run r;
	int status = 1;
	if (run_open(&r, m, o) == 0) {
		double loss, acc;
		openblas_set_num_threads(rt_thread_count(o));
		rt_dist_evaluate(m, r.bufs, &r.data.test, m->train.batch, r.labels, &loss, &acc);
		printf("test loss %.4f acc %.2f%%  (%ld samples, %s)\n", loss, acc, r.data.test.n,
		       r.data.source);
		status = 0;
	}
	run_close(&r);
	return status;
}
