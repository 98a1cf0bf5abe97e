/* profile.c: train --profile. Where a training step's time goes, per layer
 * and phase, and how much of it ran on one thread.
 *
 * A clock runs through every profiled step and is always charged to one
 * section, (layer, phase): the kernels move it as each layer's forward,
 * backward and update begins (wtn_profile_mark), the runtime for data,
 * loss, mirror steps and the rest of its step loop. So the sections add up
 * to the step. Alongside, a count of busy threads: the calling thread, plus
 * the pool's workers while they run a part, plus OpenBLAS's extra threads
 * while it runs a product threaded (it keeps products of m*n*k <= 262,144
 * on one). A section's one-thread time is its time with at most one busy,
 * which includes the calling thread waiting for the last worker.
 *
 * Off (the default) the kernels test wtn_profiling and branch past the
 * call; the runtime's own hooks test it the same way. Only the calling
 * thread moves the clock; workers only change the busy count. */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "wtnrt.h"

int wtn_profiling;

typedef struct Section {
	double wall;           /* seconds charged to it */
	double multi;          /* of which with two threads or more busy */
	long marks;            /* times it began */
} Section;

static struct {
	bool enabled;          /* --profile */
	int nlayers;
	Section *sections;     /* [(layer + 1) * WTN_NPHASES + phase]; layer -1: the step's own */
	int cur;               /* the section the clock is charged to */
	int busy;              /* threads working now */
	double last;           /* when the clock was last charged */
	long steps, samples;
	pthread_mutex_t lock;
} prof = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* The thread that runs the step loop; set by rt_profile_begin. */
static _Thread_local bool step_thread;

static const char *const phase_names[WTN_NPHASES] = {
	[WTN_PHASE_FORWARD] = "forward", [WTN_PHASE_BACKWARD] = "backward",
	[WTN_PHASE_UPDATE] = "update", [WTN_PHASE_MIRROR] = "mirror",
	[WTN_PHASE_DATA] = "data", [WTN_PHASE_LOSS] = "loss", [WTN_PHASE_OTHER] = "other",
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Charges the time since the last event to the current section (lock held). */
static void charge(double t)
{
	Section *s = &prof.sections[prof.cur];
	s->wall += t - prof.last;
	if (prof.busy >= 2)
		s->multi += t - prof.last;
	prof.last = t;
}

int rt_profile_enable(const RtModel *m)
{
	prof.sections = calloc((size_t)(m->nlayers + 1) * WTN_NPHASES, sizeof *prof.sections);
	if (!prof.sections) {
		fprintf(stderr, "wtn: out of memory\n");
		return -1;
	}
	prof.nlayers = m->nlayers;
	prof.enabled = true;
	return 0;
}

void rt_profile_begin(void)
{
	if (!prof.enabled)
		return;
	step_thread = true;
	pthread_mutex_lock(&prof.lock);
	prof.busy = 1;
	prof.cur = WTN_PHASE_DATA;
	prof.sections[prof.cur].marks++;
	prof.last = now();
	__atomic_store_n(&wtn_profiling, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&prof.lock);
}

void rt_profile_end(void)
{
	if (!prof.enabled)
		return;
	pthread_mutex_lock(&prof.lock);
	charge(now());
	__atomic_store_n(&wtn_profiling, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&prof.lock);
}

void rt_profile_step(int samples)
{
	prof.steps++;
	prof.samples += samples;
}

void wtn_profile_mark(int layer, int phase)
{
	if (!wtn_profiling || !step_thread || layer < -1 || layer >= prof.nlayers ||
	    phase < 0 || phase >= WTN_NPHASES)
		return;
	pthread_mutex_lock(&prof.lock);
	charge(now());
	prof.cur = (layer + 1) * WTN_NPHASES + phase;
	prof.sections[prof.cur].marks++;
	pthread_mutex_unlock(&prof.lock);
}

void rt_profile_join(void)
{
	if (!__atomic_load_n(&wtn_profiling, __ATOMIC_RELAXED) || !step_thread)
		return;
	wtn_profile_mark(-1, prof.cur % WTN_NPHASES);
}

void rt_profile_busy(int delta)
{
	if (!__atomic_load_n(&wtn_profiling, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&prof.lock);
	charge(now());
	prof.busy += delta;
	pthread_mutex_unlock(&prof.lock);
}

int rt_profile_blas_threads(int m, int n, int k)
{
	if (!__atomic_load_n(&wtn_profiling, __ATOMIC_RELAXED) || !step_thread)
		return 0;
	int t = openblas_get_num_threads();
	/* OpenBLAS's interface/gemm.c: SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD */
	if (t <= 1 || (double)m * n * k <= 65536.0 * 4)
		return 0;
	return t - 1;
}

/* ---- the report ---- */

static const char *row_name(const RtModel *m, int layer)
{
	return layer < 0 ? "(step)" : m->layers[layer].name;
}

/* Every section that ran, in network order, then the step's own; every
 * layer's forward section even if it took no measurable time. */
static bool row_shown(int layer, int phase)
{
	const Section *s = &prof.sections[(layer + 1) * WTN_NPHASES + phase];
	return s->marks > 0 || (layer >= 0 && phase == WTN_PHASE_FORWARD);
}

static double total_wall(double *multi)
{
	double wall = 0, par = 0;
	for (int i = 0; i < (prof.nlayers + 1) * WTN_NPHASES; i++) {
		wall += prof.sections[i].wall;
		par += prof.sections[i].multi;
	}
	*multi = par;
	return wall;
}

static double one_thread_share(double wall, double multi)
{
	return wall > 0 ? (wall - multi) / wall : NAN;
}

static void print_row(FILE *out, int width, const char *name, const char *phase, double wall,
                      double multi, double total)
{
	fprintf(out, "%-*s %-9s %10.3f %6.1f%%", width, name, phase, 1e3 * wall / prof.steps,
	        total > 0 ? 100 * wall / total : 0.0);
	double one = one_thread_share(wall, multi);
	if (isnan(one))
		fprintf(out, " %9s\n", "-");
	else
		fprintf(out, " %8.1f%%\n", 100 * one);
}

void rt_profile_print(FILE *out, const RtModel *m, int threads)
{
	if (!prof.enabled)
		return;
	if (prof.steps == 0) {
		fprintf(out, "profile: no training steps were taken\n");
		return;
	}
	double multi, total = total_wall(&multi);
	fprintf(out, "profile: %ld steps, %.3f ms per step (%.0f samples/s), %d thread%s; "
	        "%.1f%% of the step ran on one thread\n", prof.steps, 1e3 * total / prof.steps,
	        total > 0 ? prof.samples / total : 0.0, threads, threads == 1 ? "" : "s",
	        100 * one_thread_share(total, multi));
	int width = (int)strlen("(step)");
	for (int i = 0; i < m->nlayers; i++)
		if ((int)strlen(m->layers[i].name) > width)
			width = (int)strlen(m->layers[i].name);
	fprintf(out, "%-*s %-9s %10s %7s %9s\n", width, "layer", "phase", "ms/step", "step",
	        "1-thread");
	for (int layer = 0; layer <= m->nlayers; layer++) {
		int li = layer < m->nlayers ? layer : -1;  /* the step's own rows last */
		for (int ph = 0; ph < WTN_NPHASES; ph++) {
			if (!row_shown(li, ph))
				continue;
			const Section *s = &prof.sections[(li + 1) * WTN_NPHASES + ph];
			print_row(out, width, row_name(m, li), phase_names[ph], s->wall, s->multi, total);
		}
	}
	fprintf(out, "by phase:\n");
	for (int ph = 0; ph < WTN_NPHASES; ph++) {
		double wall = 0, par = 0;
		for (int li = -1; li < m->nlayers; li++) {
			wall += prof.sections[(li + 1) * WTN_NPHASES + ph].wall;
			par += prof.sections[(li + 1) * WTN_NPHASES + ph].multi;
		}
		print_row(out, width, "all", phase_names[ph], wall, par, total);
	}
	print_row(out, width, "all", "step", total, multi, total);
	fflush(out);
}

static void json_share(FILE *out, const char *key, double v)
{
	fprintf(out, ",\"%s\":", key);
	if (isfinite(v))
		fprintf(out, "%.6g", v);
	else
		fputs("null", out);
}

int rt_profile_json(FILE *out, const RtModel *m, int threads)
{
	if (!prof.enabled || prof.steps == 0)
		return 0;
	double multi, total = total_wall(&multi);
	fprintf(out, "{\"profile\":{\"steps\":%ld,\"samples\":%ld,\"threads\":%d", prof.steps,
	        prof.samples, threads);
	json_share(out, "ms_per_step", 1e3 * total / prof.steps);
	json_share(out, "one_thread", one_thread_share(total, multi));
	fputs(",\"rows\":[", out);
	bool first = true;
	for (int li = 0; li <= m->nlayers; li++) {
		int layer = li < m->nlayers ? li : -1;
		for (int ph = 0; ph < WTN_NPHASES; ph++) {
			if (!row_shown(layer, ph))
				continue;
			const Section *s = &prof.sections[(layer + 1) * WTN_NPHASES + ph];
			fprintf(out, "%s{\"layer\":\"%s\",\"phase\":\"%s\"", first ? "" : ",",
			        row_name(m, layer), phase_names[ph]);
			json_share(out, "ms_per_step", 1e3 * s->wall / prof.steps);
			json_share(out, "share", total > 0 ? s->wall / total : NAN);
			json_share(out, "one_thread", one_thread_share(s->wall, s->multi));
			fputc('}', out);
			first = false;
		}
	}
	fputs("]}}\n", out);
	return fflush(out) == 0 && !ferror(out) ? 0 : -1;
}
