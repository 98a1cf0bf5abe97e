/* train.c: the train and eval commands: load data, initialise or load the
 * parameters, run the step loop over the generated kernels, report and
 * checkpoint each epoch. Everything the step needs is allocated before the
 * first step. */
#include <cblas.h>
#include <math.h>
#include <signal.h>
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
	RtRng dropout;         /* the dropout masks' stream */
	double start_loss;     /* the run's first step's: explosions are measured from it */
	double *w0;            /* each layer's |W| at the start, for the blame */
	int last_n;            /* samples of the last forward pass */
	int saved_epoch;       /* the epoch of the last checkpoint --save wrote, 0: none yet */
	long saved_step;       /* its step, when written inside the epoch (--save-every) */
	bool stopped;          /* a signal asked the run to stop */
	bool save_due;         /* --save-every: save once the next step's loss is sane */
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
	free(r->w0);
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
	rt_rng_seed(&r->dropout, rt_mix64((uint64_t)t->seed ^ 0x64726f706f7574ULL));
	r->start_loss = NAN;
	return 0;
}

int rt_max_batch(const RtModel *m, const RtOptions *o)
{
	int most = o->max_batch > m->train.batch ? o->max_batch : m->train.batch;
	int mb = rt_mirror_max_batch(m);
	return mb > most ? mb : most;
}

/* The end of a diverged run: a message naming where it blew up, and what
 * became of the checkpoint (never replaced by the diverged state). */
static void report_divergence(Run *r, const RtOptions *o, const char *what)
{
	char blame[200];
	rt_blame(r->m, r->bufs, r->last_n, r->w0, blame, sizeof blame);
	fflush(stdout);
	fprintf(stderr, "wtn: %s; first blow-up: %s; stopping", what, blame);
	if (o->save && r->saved_step > 0)
		fprintf(stderr, " (checkpoint %s keeps step %ld, in epoch %d)\n", o->save, r->saved_step,
		        r->saved_epoch);
	else if (o->save && r->saved_epoch > 0)
		fprintf(stderr, " (checkpoint %s keeps epoch %d)\n", o->save, r->saved_epoch);
	else if (o->save)
		fprintf(stderr, " (checkpoint %s not written by this run)\n", o->save);
	else
		fputc('\n', stderr);
}

int rt_thread_count(const RtOptions *o)
{
	if (o->threads > 0)
		return o->threads;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

typedef struct EpochTotals { double loss_sum; long correct, seen; } EpochTotals;

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

/* A checkpoint inside an epoch (--save-every, or a signal): never of a
 * diverged state. */
static int save_mid_epoch(Run *r, const RtOptions *o, int epoch, long step)
{
	if (!rt_params_finite(r->m, r->bufs)) {
		char what[80];
		snprintf(what, sizeof what, "parameters are not finite at epoch %d step %ld", epoch + 1,
		         step);
		report_divergence(r, o, what);
		return -1;
	}
	if (rt_checkpoint_save(o->save, r->m, r->bufs, epoch + 1, step) < 0)
		return -1;
	r->saved_epoch = epoch + 1;
	r->saved_step = step;
	return 0;
}

/* One epoch of steps. Returns -1 (after the message) on a non-finite loss.
 * A stop request ends it after the step in progress (r->stopped). */
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
		rt_dropout_masks(m, r->bufs, n, &r->dropout);
		int local = rt_dist_shard(m, r->bufs[m->x_slot], r->labels, n);
		wtn_forward(r->bufs, local);
		r->last_n = local;
		wtn_profile_mark(-1, WTN_PHASE_LOSS);
		float loss = rt_dist_loss(m, r->bufs, r->labels, wtn_loss(r->bufs, r->labels, local),
		                          &e->correct);
		if (!isfinite(loss)) {
			if (tty)
				fputs("\r\033[K", stdout);
			char what[80];
			snprintf(what, sizeof what, "non-finite loss at epoch %d step %d", epoch + 1, step);
			report_divergence(r, o, what);
			return -1;
		}
		if (isnan(r->start_loss))
			r->start_loss = loss;
		/* A periodic save waits for this forward pass: the parameters it
		 * saves have just given a finite, unexploded loss on a new batch. */
		if (r->save_due) {
			r->save_due = false;
			if (rt_loss_exploded(loss, r->start_loss)) {
				char what[120];
				snprintf(what, sizeof what, "loss %.4g at epoch %d step %d, over %g times the "
				         "first step's %.4g", loss, epoch + 1, step, RT_EXPLODE_FACTOR,
				         r->start_loss);
				report_divergence(r, o, what);
				return -1;
			}
			if (save_mid_epoch(r, o, epoch, opt->step) < 0)
				return -1;
		}
		e->loss_sum += (double)loss * n;
		e->seen += n;
		wtn_backward(r->bufs, local);
		wtn_profile_mark(-1, WTN_PHASE_OTHER);
		rt_dist_gradients(m, r->bufs);
		wtn_profile_mark(-1, WTN_PHASE_UPDATE);
		const float *hyper = rt_optim_next(opt);
		rt_pool_update(r->pool, r->bufs, hyper);
		rt_mirror_after_step(m, r->bufs, opt->step);
		wtn_profile_mark(-1, WTN_PHASE_OTHER);
		rt_profile_step(n);
		clock->samples += n;
		clock->log_samples += n;
		clock->log_loss += (double)loss * n;
		if (o->metrics && o->log_every && opt->step % o->log_every == 0 &&
		    write_step_record(r, o, opt, epoch, clock) < 0)
			return -1;
		if (o->save_every && opt->step % o->save_every == 0)
			r->save_due = true;
		if (rt_stop_requested()) {
			r->stopped = true;
			break;
		}
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
		wtn_profile_mark(-1, WTN_PHASE_DATA);
	}
	return 0;
}

/* The end of a run stopped by a signal; returns the exit status, 128 + N. */
static int report_stop(Run *r, const RtOptions *o, int epoch, long step)
{
	int sig = rt_stop_requested();
	fflush(stdout);
	fprintf(stderr, "wtn: stopped by %s after step %ld (epoch %d)", sig == SIGINT ? "SIGINT"
	        : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "a signal", step, epoch + 1);
	if (o->save)
		fprintf(stderr, "; checkpoint %s holds it\n", o->save);
	else
		fprintf(stderr, "; nothing saved (no --save)\n");
	return 128 + sig;
}

int rt_cmd_train(RtModel *m, const RtOptions *o)
{
	const RtTrain *t = &m->train;
	Run r;
	int status = 1;
	if (run_open(&r, m, o) < 0)
		goto out;
	if (!(r.w0 = rt_weight_norms(m, r.bufs))) {
		fprintf(stderr, "wtn: out of memory\n");
		goto out;
	}
	/* From here a signal stops the run after its step, saving first. */
	rt_signals_install(true);
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
	if (o->profile && rt_profile_enable(m) < 0)
		goto out;
	rt_config_set_current(rt_config_json(m, o, r.data.source));
	/* mpirun hands its ranks a pseudo-terminal even when its own output is a log */
	bool tty = isatty(STDOUT_FILENO) && !o->quiet && !rt_dist_on();
	RunClock clock = {.start = now_seconds(), .total = (long)t->epochs * r.data.train.n};
	if (o->steps && o->steps * t->batch < clock.total)
		clock.total = o->steps * t->batch;
	clock.log_start = clock.start;
	for (int epoch = 0; epoch < t->epochs && (!o->steps || opt.step < o->steps); epoch++) {
		EpochTotals e = {0};
		rt_optim_begin_epoch(&opt, epoch);
		double t0 = now_seconds();
		rt_profile_begin();
		int trained = train_epoch(&r, o, &opt, epoch, tty, &e, &clock);
		rt_profile_end();
		if (trained < 0)
			goto out;
		if (r.stopped) {
			if (tty)
				fputs("\r\033[K", stdout);
			if (o->save && r.saved_step != opt.step && save_mid_epoch(&r, o, epoch, opt.step) < 0)
				goto out;
			status = report_stop(&r, o, epoch, opt.step);
			goto out;
		}
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
		rt_dist_evaluate(m, r.bufs, &r.data.test, t->batch, r.labels, &s.test_loss, &s.test_acc);
		/* A diverged epoch is shown but neither saved nor written to the
		 * metrics: the files keep the last good epoch. */
		char what[160] = "";
		if (rt_loss_exploded(s.train_loss, r.start_loss))
			snprintf(what, sizeof what, "epoch %d diverged: train loss %.4g, over %g times "
			         "the first step's %.4g", epoch + 1, s.train_loss, RT_EXPLODE_FACTOR,
			         r.start_loss);
		else if (!isfinite(s.test_loss))
			snprintf(what, sizeof what, "epoch %d diverged: test loss %g", epoch + 1, s.test_loss);
		else if (!rt_params_finite(m, r.bufs))
			snprintf(what, sizeof what, "epoch %d diverged: parameters are not finite", epoch + 1);
		if (what[0]) {
			long tail = r.data.test.n % t->batch;
			r.last_n = tail ? (int)tail : t->batch;   /* the last evaluated batch */
			if (tty)
				fputs("\r\033[K", stdout);
			rt_layer_stats(m, r.bufs, r.stats);
			for (int i = 0; i < m->nlayers; i++)
				r.stats[i].delta = NAN;
			rt_print_epoch(stdout, m, &s);
			report_divergence(&r, o, what);
			goto out;
		}
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
		if (o->save && rt_checkpoint_save(o->save, m, r.bufs, epoch + 1, opt.step) < 0)
			goto out;
		if (o->save) {
			r.saved_epoch = epoch + 1;
			r.saved_step = 0;
			r.save_due = false;   /* the epoch's checkpoint covers it */
		}
		if (rt_stop_requested()) {   /* during the evaluation or the save */
			status = report_stop(&r, o, epoch, opt.step);
			goto out;
		}
	}
	if (o->profile && !o->quiet)
		rt_profile_print(stdout, m, threads);
	if (o->profile && r.metrics && rt_profile_json(r.metrics, m, threads) < 0) {
		fprintf(stderr, "wtn: %s: cannot write metrics\n", o->metrics);
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
		rt_dist_evaluate(m, r.bufs, &r.data.test, m->train.batch, r.labels, &loss, &acc);
		printf("test loss %.4f acc %.2f%%  (%ld samples, %s)\n", loss, acc, r.data.test.n,
		       r.data.source);
		status = 0;
	}
	run_close(&r);
	return status;
}
