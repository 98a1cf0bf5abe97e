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

static void count_correct(const RtModel *m, float **bufs, const int32_t *labels, int n,
                          EpochTotals *e)
{
	const RtLayer *last = &m->layers[m->nlayers - 1];
	const float *y = bufs[last->y];
	for (int i = 0; i < n; i++)
		e->correct += rt_argmax(y + (long)i * last->out, last->out) == labels[i];
}

/* Progress of the whole run, for the ETA and step records. */
typedef struct RunClock {
	double start;          /* of the first step */
	long samples, total;   /* trained so far; to train in the run */
	double log_start, log_loss;  /* since the last step record */
	long log_samples;
} RunClock;

/* The metrics file, opened at its first record, which is the run's
 * configuration (so a run that fails before its first record writes
 * nothing). NULL after a message when it cannot be written. */
static FILE *metrics_out(Run *r, const RtOptions *o)
{
	if (r->metrics)
		return r->metrics;
	if (!(r->metrics = fopen(o->metrics, "w"))) {
		fprintf(stderr, "wtn: %s: cannot write metrics: %m\n", o->metrics);
		return NULL;
	}
	if (rt_config_current() &&
	    (fprintf(r->metrics, "{\"config\":%s}\n", rt_config_current()) < 0 ||
	     fflush(r->metrics) != 0)) {
		fprintf(stderr, "wtn: %s: cannot write metrics\n", o->metrics);
		return NULL;
	}
	return r->metrics;
}

static int write_step_record(Run *r, const RtOptions *o, const RtOptim *opt, int epoch,
                             RunClock *c)
{
	if (!metrics_out(r, o))
		return -1;
	double tnow = now_seconds(), secs = tnow - c->log_start;
	fprintf(r->metrics, "{\"step\":%ld,\"in_epoch\":%d,\"loss\":%.9g,\"lr\":%.9g,"
	        "\"samples_per_sec\":%.9g}\n", opt->step, epoch + 1,
	        c->log_samples ? c->log_loss / c->log_samples : 0.0, opt->lr,
	        secs > 0 ? c->log_samples / secs : 0.0);
	c->log_start = tnow;
	c->log_loss = 0;
	c->log_samples = 0;
	if (fflush(r->metrics) != 0 || ferror(r->metrics)) {
		fprintf(stderr, "wtn: %s: cannot write metrics\n", o->metrics);
		return -1;
	}
	return 0;
}

/* One epoch of steps. Returns -1 (after the message) on a non-finite loss. */
static int train_epoch(Run *r, const RtOptions *o, RtOptim *opt, int epoch, bool tty,
                       EpochTotals *e, RunClock *clock)
{
	RtModel *m = r->m;
	const RtTrain *t = &m->train;
	double last_draw = 0;
	int step = 0, n;
	rt_batcher_start_epoch(&r->batcher);
	while ((!o->steps || opt->step < o->steps) &&
	       (n = rt_batcher_next(&r->batcher, r->bufs[m->x_slot], r->labels)) > 0) {
		step++;
		wtn_forward(r->bufs, n);
		float loss = wtn_loss(r->bufs, r->labels, n);
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
		count_correct(m, r->bufs, r->labels, n, e);
		wtn_backward(r->bufs, n);
		const float *hyper = rt_optim_next(opt);
		rt_pool_update(r->pool, r->bufs, hyper);
		rt_mirror_after_step(m, r->bufs, opt->step);
		clock->samples += n;
		clock->log_samples += n;
		clock->log_loss += (double)loss * n;
		if (o->metrics && o->log_every && opt->step % o->log_every == 0 &&
		    write_step_record(r, o, opt, epoch, clock) < 0)
			return -1;
		if (tty) {
			double tnow = now_seconds();
			if (tnow - last_draw > 0.1 || r->batcher.pos == r->data.train.n) {
				last_draw = tnow;
				double eta = (tnow - clock->start) / clock->samples *
				             (clock->total - clock->samples);
				rt_progress(stdout, epoch + 1, t->epochs, e->seen, r->data.train.n,
				            e->loss_sum / e->seen, 100.0 * e->correct / e->seen, eta);
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
	rt_config_set_current(rt_config_json(m, o, r.data.source));
	bool tty = isatty(STDOUT_FILENO) && !o->quiet;
	RunClock clock = {.start = now_seconds(), .total = (long)t->epochs * r.data.train.n};
	if (o->steps && o->steps * t->batch < clock.total)
		clock.total = o->steps * t->batch;
	clock.log_start = clock.start;
	for (int epoch = 0; epoch < t->epochs && (!o->steps || opt.step < o->steps); epoch++) {
		EpochTotals e = {0};
		rt_optim_begin_epoch(&opt, epoch);
		double t0 = now_seconds();
		if (train_epoch(&r, o, &opt, epoch, tty, &e, &clock) < 0)
			goto out;
		double elapsed = now_seconds() - t0;
		RtEpochStats s = {.epoch = epoch + 1, .epochs = t->epochs, .lr = opt.lr,
		                  .layers = r.stats};
		s.train_loss = e.loss_sum / e.seen;
		s.train_acc = 100.0 * e.correct / e.seen;
		s.samples_per_sec = elapsed > 0 ? e.seen / elapsed : 0;
		if (tty) {
			printf("\r\033[Kepoch %d/%d evaluating on %ld test samples...", epoch + 1, t->epochs,
			       r.data.test.n);
			fflush(stdout);
		}
		rt_evaluate(m, r.bufs, &r.data.test, t->batch, r.labels, &s.test_loss, &s.test_acc);
		rt_layer_stats(m, r.bufs, r.stats);
		rt_probe_delta(r.probe, r.bufs, r.labels, r.stats);
		if (tty)
			fputs("\r\033[K", stdout);
		if (!o->quiet)
			rt_print_epoch(stdout, m, &s);
		if (!o->quiet && o->layer_table)
			rt_print_layer_table(stdout, m, &s);
		if (o->metrics && !metrics_out(&r, o))
			goto out;
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
		char *now = rt_config_json(m, o, r.data.source);
		if (now)
			rt_config_compare(stdout, o->init, now);
		free(now);
		openblas_set_num_threads(rt_thread_count(o));
		rt_evaluate(m, r.bufs, &r.data.test, m->train.batch, r.labels, &loss, &acc);
		printf("test loss %.4f acc %.2f%%  (%ld samples, %s)\n", loss, acc, r.data.test.n,
		       r.data.source);
		status = 0;
	}
	run_close(&r);
	return status;
}
