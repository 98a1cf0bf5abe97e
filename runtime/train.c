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
	bool save_state;       /* saves are resumable (--save-state, --save-every, --resume) */
	RtRunState resumed;    /* --resume: the state the run continues */
	bool continue_epoch;   /* the first epoch is resumed.epoch, already begun */
	RtRunState at_step;    /* the state at the start of the step in progress */
	float **stat_view;     /* bufs, but batchnorm statistics as at_step had them */
} Run;

static void run_close(Run *r)
{
	if (r->metrics)
		fclose(r->metrics);
	rt_pool_stop(r->pool);
	rt_batcher_free(&r->batcher);
	rt_probe_free(r->probe);
	free(r->labels);
	free(r->stats);
	free(r->w0);
	rt_state_free(&r->resumed);
	if (r->stat_view)
		for (int i = 0; i < r->m->nbufs; i++)
			if (r->stat_view[i] != r->bufs[i])
				free(r->stat_view[i]);
	free(r->stat_view);
	rt_free_buffers(r->m, r->bufs);
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
		if (rt_checkpoint_load(o->init, m, r->bufs, o->draw_missing, NULL) < 0)
			return -1;
		rt_init_mags_from_feedback(m, r->bufs);
	}
	/* The configuration first: another network's tensors would not fit.
	 * frsf's magnitudes are state: loaded, not rebuilt. */
	if (o->resume) {
		char *now = rt_config_json(m, o, r->data.source);
		int rc = rt_config_check_resume(o->resume, now, o->allow_changes);
		free(now);
		if (rc < 0 || rt_checkpoint_load(o->resume, m, r->bufs, false, &r->resumed) < 0)
			return -1;
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

/* The training state as it stands in epoch `epoch` with totals e; after
 * the epoch's evaluation (finished), training goes on with the next one. */
static void capture_state(Run *r, const RtOptim *opt, int epoch, const EpochTotals *e,
                          bool finished, RtRunState *s)
{
	bool next = finished && r->batcher.pos >= r->data.train.n;   /* --steps may cut it */
	s->epoch = next ? epoch + 1 : epoch;
	s->in_epoch = !next;
	s->pos = next ? 0 : r->batcher.pos;
	s->step = opt->step;
	s->shuffle = r->batcher.rng;
	if (r->batcher.augment)
		s->augment = r->batcher.augment->rng;
	else
		rt_rng_seed(&s->augment, 0);   /* unused; any valid stream */
	s->dropout = r->dropout;
	s->noise = rt_noise_state();
	s->loss_sum = next ? 0 : e->loss_sum;
	s->correct = next ? 0 : e->correct;
	s->seen = next ? 0 : e->seen;
	s->start_loss = r->start_loss;
	s->n = r->data.train.n;
	s->order = r->batcher.order;
}

/* Continues the --resume checkpoint's run (run_open checked its
 * configuration): its counters and streams take over. */
static int resume_apply(Run *r, const RtOptions *o, RtOptim *opt, EpochTotals *e)
{
	RtRunState *s = &r->resumed;
	if (s->n != r->data.train.n) {
		fprintf(stderr, "wtn: --resume %s: the checkpoint's run trained on %ld samples, this "
		        "data set has %ld\n", o->resume, s->n, r->data.train.n);
		return -1;
	}
	memcpy(r->batcher.order, s->order, s->n * sizeof *s->order);
	r->batcher.pos = s->pos;
	r->batcher.rng = s->shuffle;
	if (r->batcher.augment)
		r->batcher.augment->rng = s->augment;
	r->dropout = s->dropout;
	rt_noise_restore(&s->noise);
	opt->step = s->step;
	r->start_loss = s->start_loss;
	r->continue_epoch = s->in_epoch;
	*e = (EpochTotals){s->loss_sum, s->correct, s->seen};
	return 0;
}

/* Writes the --save checkpoint of bufs, with the state s when saves are
 * resumable. */
static int save_checkpoint(Run *r, const RtOptions *o, float **bufs, int epoch, long step,
                           const RtRunState *s)
{
	return rt_checkpoint_save(o->save, r->m, bufs, epoch, step, r->save_state ? s : NULL);
}

/* Periodic saves are written after the next step's forward pass, which
 * moves batchnorm's running statistics: they are kept as they were. */
static int stat_view_open(Run *r)
{
	const RtModel *m = r->m;
	if (!(r->stat_view = calloc(m->nbufs ? m->nbufs : 1, sizeof *r->stat_view)))
		return -1;
	for (int i = 0; i < m->nbufs; i++)
		r->stat_view[i] = m->bufs[i].kind != RT_BUF_STAT ? r->bufs[i]
		                : malloc(m->bufs[i].elems * sizeof(float));
	for (int i = 0; i < m->nbufs; i++)
		if (!r->stat_view[i])
			return -1;
	return 0;
}

static void stat_view_keep(Run *r)
{
	for (int i = 0; i < r->m->nbufs; i++)
		if (r->stat_view[i] != r->bufs[i])
			memcpy(r->stat_view[i], r->bufs[i], r->m->bufs[i].elems * sizeof(float));
}

/* A checkpoint inside an epoch (--save-every, or a signal) of bufs and the
 * state s: never of a diverged state. */
static int save_mid_epoch(Run *r, const RtOptions *o, int epoch, float **bufs,
                          const RtRunState *s)
{
	long step = s->step;
	if (!rt_params_finite(r->m, r->bufs)) {
		char what[80];
		snprintf(what, sizeof what, "parameters are not finite at epoch %d step %ld", epoch + 1,
		         step);
		report_divergence(r, o, what);
		return -1;
	}
	if (save_checkpoint(r, o, bufs, epoch + 1, step, s) < 0)
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
	int step = (int)(r->batcher.pos / t->batch), n;   /* resumed inside the epoch: not 0 */
	if (!r->continue_epoch)
		rt_batcher_start_epoch(&r->batcher);
	r->continue_epoch = false;
	for (;;) {
		if (o->steps && opt->step >= o->steps)
			break;
		capture_state(r, opt, epoch, e, false, &r->at_step);
		if ((n = rt_batcher_next(&r->batcher, r->bufs[m->x_slot], r->labels)) <= 0)
			break;
		step++;
		rt_dropout_masks(m, r->bufs, n, &r->dropout);
		if (r->save_due)
			stat_view_keep(r);
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
			if (save_mid_epoch(r, o, epoch, r->stat_view, &r->at_step) < 0)
				return -1;
		}
		e->loss_sum += (double)loss * n;
		e->seen += n;
		const float *hyper = rt_optim_next(opt);
		/* Each layer's update right after its backward, its gradients still
		 * in cache; not when the gradients are first summed over ranks. */
		bool fused = !rt_dist_on() && rt_pool_splits(r->pool);
		wtn_step_hyper = fused ? hyper : NULL;
		wtn_backward(r->bufs, local);
		wtn_step_hyper = NULL;
		wtn_profile_mark(-1, WTN_PHASE_OTHER);
		rt_dist_gradients(m, r->bufs);
		wtn_profile_mark(-1, WTN_PHASE_UPDATE);
		if (!fused)
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
	if (!o->init && !o->resume)
		rt_mirror_warmup(m, r.bufs);
	if (!(r.probe = rt_probe_new(m, &r.data.test, t->batch)))
		goto out;
	if (o->profile && rt_profile_enable(m) < 0)
		goto out;
	rt_config_set_current(rt_config_json(m, o, r.data.source));
	/* a resumed run stays resumable */
	r.save_state = o->save && (o->save_state || o->save_every || o->resume);
	if (o->save_every && stat_view_open(&r) < 0) {
		fprintf(stderr, "wtn: out of memory\n");
		goto out;
	}
	EpochTotals resumed_totals = {0};
	if (o->resume && resume_apply(&r, o, &opt, &resumed_totals) < 0)
		goto out;
	int first_epoch = o->resume ? r.resumed.epoch : 0;
	if (first_epoch >= t->epochs) {
		fprintf(stderr, "wtn: --resume %s: the checkpoint's run has trained %d epoch%s%s; "
		        "--epochs %d leaves nothing to train\n", o->resume, first_epoch,
		        first_epoch == 1 ? "" : "s", r.resumed.in_epoch ? " and part of the next" : "",
		        t->epochs);
		status = 0;
		goto out;
	}
	/* mpirun hands its ranks a pseudo-terminal even when its own output is a log */
	bool tty = isatty(STDOUT_FILENO) && !o->quiet && !rt_dist_on();
	RunClock clock = {.start = now_seconds(),
	                  .total = (long)(t->epochs - first_epoch) * r.data.train.n - r.batcher.pos};
	if (o->steps && (o->steps - opt.step) * t->batch < clock.total)
		clock.total = (o->steps - opt.step) * t->batch;
	clock.log_start = clock.start;
	for (int epoch = first_epoch; epoch < t->epochs && (!o->steps || opt.step < o->steps);
	     epoch++) {
		EpochTotals e = r.continue_epoch ? resumed_totals : (EpochTotals){0};
		long seen0 = e.seen;
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
			RtRunState now;
			capture_state(&r, &opt, epoch, &e, false, &now);
			if (o->save && r.saved_step != opt.step &&
			    save_mid_epoch(&r, o, epoch, r.bufs, &now) < 0)
				goto out;
			status = report_stop(&r, o, epoch, opt.step);
			goto out;
		}
		double elapsed = now_seconds() - t0;
		RtEpochStats s = {.epoch = epoch + 1, .epochs = t->epochs, .lr = opt.lr,
		                  .layers = r.stats};
		s.train_loss = e.loss_sum / e.seen;
		s.train_acc = 100.0 * e.correct / e.seen;
		s.samples_per_sec = elapsed > 0 ? (e.seen - seen0) / elapsed : 0;
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
		RtRunState now;
		capture_state(&r, &opt, epoch, &e, true, &now);
		if (o->save && save_checkpoint(&r, o, r.bufs, epoch + 1, opt.step, &now) < 0)
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
