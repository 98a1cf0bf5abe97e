/* sweep_report.c: the results of a sweep directory (plan.tsv and the
 * finished runs' metrics) as results.md and results.csv (mean +- sd over
 * seeds of final and best test accuracy, end angle and delta angle per
 * layer, samples/s), SVG plots (test accuracy with seed bands, training
 * loss per logged step, angle and delta angle per layer) and index.html.
 * Lines are coloured by the rule of the first swept feedback axis, the
 * same colour in every plot; configurations sharing a colour differ in
 * dash. */
#include "wtnc.h"
#include "wtnrt.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_LAYERS = 256, MAX_CFG = 4096 };

typedef struct RunData {
	long seed;
	bool ok;
	int nep;
	double *acc, *sps;          /* per epoch */
	double *angle, *delta;      /* [epoch * nlayers + layer] */
	int nsteps;
	double *step, *loss;
} RunData;

typedef struct Cfg {
	char *name, *dir;
	char *rules[MAX_LAYERS];    /* per report layer, from the metrics */
	char *colour_key;           /* the swept rule, or the name */
	const char *colour, *dash;
	RunData *runs;
	int nruns, nplanned;
} Cfg;

typedef struct Report {
	const char *out;
	char *command, *network;
	Cfg *cfgs;
	int ncfg;
	char *layers[MAX_LAYERS];
	int nlayers;
	int colour_axis;            /* index among feedback axes, or -1 */
	int max_epoch;
} Report;

static void *grow(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p) {
		fprintf(stderr, "wtnc sweep: out of memory\n");
		exit(1);
	}
	return p;
}

static int layer_index(Report *R, const char *name, bool add)
{
	for (int i = 0; i < R->nlayers; i++)
		if (!strcmp(R->layers[i], name))
			return i;
	if (!add || R->nlayers == MAX_LAYERS)
		return -1;
	R->layers[R->nlayers] = strdup(name);
	return R->nlayers++;
}

static double num(const RtJson *o, const char *key)
{
	const RtJson *v = o ? rt_json_get(o, key) : NULL;
	return v && v->type == RT_JSON_NUMBER ? v->number : NAN;
}

/* One metrics file: config record, epoch records, step records. */
static int read_metrics(Report *R, Cfg *c, RunData *rd, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int lineno = 0;
	/* Epoch records come first in a pass that sizes the arrays. */
	while ((len = getline(&line, &cap, f)) > 0) {
		lineno++;
		RtJson j;
		char err[128];
		if (rt_json_parse(line, (size_t)len, &j, err, sizeof err) < 0) {
			fprintf(stderr, "wtnc sweep: %s:%d: bad JSON: %s\n", path, lineno, err);
			continue;
		}
		const RtJson *cfg = rt_json_get(&j, "config");
		if (cfg) {
			const RtJson *ls = rt_json_get(cfg, "layers");
			for (int i = 0; ls && i < ls->nitems; i++) {
				const RtJson *n = rt_json_get(&ls->items[i], "name");
				const RtJson *r = rt_json_get(&ls->items[i], "rule");
				if (!n || n->type != RT_JSON_STRING)
					continue;
				int k = layer_index(R, n->string, true);
				if (k >= 0 && !c->rules[k] && r && r->type == RT_JSON_STRING)
					c->rules[k] = strdup(r->string);
			}
		} else if (rt_json_get(&j, "epoch")) {
			int e = rd->nep++;
			rd->acc = grow(rd->acc, sizeof(double) * rd->nep);
			rd->sps = grow(rd->sps, sizeof(double) * rd->nep);
			rd->angle = grow(rd->angle, sizeof(double) * rd->nep * MAX_LAYERS);
			rd->delta = grow(rd->delta, sizeof(double) * rd->nep * MAX_LAYERS);
			rd->acc[e] = num(&j, "test_acc");
			rd->sps[e] = num(&j, "samples_per_sec");
			for (int k = 0; k < MAX_LAYERS; k++)
				rd->angle[e * MAX_LAYERS + k] = rd->delta[e * MAX_LAYERS + k] = NAN;
			const RtJson *ls = rt_json_get(&j, "layers");
			for (int i = 0; ls && i < ls->nitems; i++) {
				const RtJson *n = rt_json_get(&ls->items[i], "name");
				int k = n && n->type == RT_JSON_STRING ? layer_index(R, n->string, false) : -1;
				if (k < 0)
					continue;
				rd->angle[e * MAX_LAYERS + k] = num(&ls->items[i], "angle");
				rd->delta[e * MAX_LAYERS + k] = num(&ls->items[i], "delta");
			}
			if (rd->nep > R->max_epoch)
				R->max_epoch = rd->nep;
		} else if (rt_json_get(&j, "step")) {
			int k = rd->nsteps++;
			rd->step = grow(rd->step, sizeof(double) * rd->nsteps);
			rd->loss = grow(rd->loss, sizeof(double) * rd->nsteps);
			rd->step[k] = num(&j, "step");
			rd->loss[k] = num(&j, "loss");
		}
		rt_json_free(&j);
	}
	free(line);
	fclose(f);
	rd->ok = rd->nep > 0;
	return rd->ok ? 0 : -1;
}

static char *next_field(char **p)
{
	char *s = *p;
	if (!s)
		return NULL;
	char *tab = strchr(s, '\t');
	if (tab) {
		*tab = '\0';
		*p = tab + 1;
	} else
		*p = NULL;
	return s;
}

static Cfg *find_cfg(Report *R, const char *name)
{
	for (int i = 0; i < R->ncfg; i++)
		if (!strcmp(R->cfgs[i].name, name))
			return &R->cfgs[i];
	return NULL;
}

/* "h2=kp(decay=0.01)" -> "kp(decay=0.01)"; the rule name is before '('. */
static char *rule_of_override(const char *over)
{
	const char *eq = strchr(over, '=');
	return strdup(eq ? eq + 1 : over);
}

static int read_plan(Report *R)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/plan.tsv", R->out);
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "wtnc sweep: %s: %s\n", path, strerror(errno));
		return -1;
	}
	char *line = NULL;
	size_t cap = 0;
	int feedback_axes = 0;
	R->colour_axis = -1;
	while (getline(&line, &cap, f) > 0) {
		line[strcspn(line, "\n")] = '\0';
		char *p = line, *kind = next_field(&p);
		if (!strcmp(kind, "command"))
			R->command = strdup(p ? p : "");
		else if (!strcmp(kind, "network"))
			R->network = strdup(p ? p : "");
		else if (!strcmp(kind, "axis")) {
			char *what = next_field(&p);
			if (!what)
				continue;
			int n = 0;
			while (next_field(&p))
				n++;
			if (!strcmp(what, "feedback")) {
				if (n > 1 && R->colour_axis < 0)
					R->colour_axis = feedback_axes;
				feedback_axes++;
			}
		} else if (!strcmp(kind, "config")) {
			char *name = next_field(&p), *dir = next_field(&p);
			if (!name || !dir)
				continue;   /* a damaged line: the runs it names are left out */
			R->cfgs = grow(R->cfgs, sizeof *R->cfgs * (R->ncfg + 1));
			Cfg *c = &R->cfgs[R->ncfg++];
			memset(c, 0, sizeof *c);
			c->name = strdup(name);
			c->dir = strdup(dir);
			char *over;
			for (int k = 0; (over = next_field(&p)); k++)
				if (k == R->colour_axis)
					c->colour_key = rule_of_override(over);
			if (!c->colour_key)
				c->colour_key = strdup(c->name);
		} else if (!strcmp(kind, "run")) {
			char *name = next_field(&p);
			Cfg *c = name ? find_cfg(R, name) : NULL;
			char *seed = next_field(&p), *file = next_field(&p);
			if (!c || !seed || !file)
				continue;
			c->nplanned++;
			char mpath[4200];
			snprintf(mpath, sizeof mpath, "%s/%s", R->out, file);
			RunData rd = {.seed = atol(seed)};
			if (read_metrics(R, c, &rd, mpath) == 0) {
				c->runs = grow(c->runs, sizeof *c->runs * (c->nruns + 1));
				c->runs[c->nruns++] = rd;
			}
		}
	}
	free(line);
	fclose(f);
	return 0;
}

/* ---- colours ---- */

static const char *rule_colour(const char *rule)
{
	static const char *const known[][2] = {
		{"bp", "#222222"}, {"fa", "#1f77b4"}, {"usf", "#9467bd"}, {"frsf", "#8c564b"},
		{"brsf", "#e377c2"}, {"kp", "#2ca02c"}, {"wm", "#ff7f0e"}, {"dfa", "#d62728"},
	};
	size_t n = strcspn(rule, "(");
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
		if (strlen(known[i][0]) == n && !strncmp(rule, known[i][0], n))
			return known[i][1];
	return NULL;
}

static void assign_colours(Report *R)
{
	static const char *const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
	                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
	static const char *const dashes[] = {"", "7 4", "2 3", "9 3 2 3", "4 2"};
	int next_palette = 0;
	for (int i = 0; i < R->ncfg; i++) {
		Cfg *c = &R->cfgs[i];
		c->colour = R->colour_axis >= 0 ? rule_colour(c->colour_key) : NULL;
		if (!c->colour)
			c->colour = palette[next_palette++ % 10];
		int same = 0;
		for (int k = 0; k < i; k++)
			same += !strcmp(R->cfgs[k].colour, c->colour);
		c->dash = dashes[same % 5];
	}
}

/* ---- statistics ---- */

typedef struct Stat { double mean, sd, lo, hi; int n; } Stat;

static Stat stat_of(const double *v, int n)
{
	Stat s = {NAN, NAN, NAN, NAN, 0};
	double sum = 0;
	for (int i = 0; i < n; i++)
		if (isfinite(v[i])) {
			sum += v[i];
			s.lo = s.n ? fmin(s.lo, v[i]) : v[i];
			s.hi = s.n ? fmax(s.hi, v[i]) : v[i];
			s.n++;
		}
	if (!s.n)
		return s;
	s.mean = sum / s.n;
	double ss = 0;
	for (int i = 0; i < n; i++)
		if (isfinite(v[i]))
			ss += (v[i] - s.mean) * (v[i] - s.mean);
	s.sd = s.n > 1 ? sqrt(ss / (s.n - 1)) : 0;
	return s;
}

enum { M_ACC, M_BEST_ACC, M_ANGLE, M_DELTA, M_SPS };

/* A metric of one run at epoch e (e < 0: its last epoch). */
static double run_value(const RunData *r, int metric, int layer, int e)
{
	if (e < 0)
		e = r->nep - 1;
	if (e >= r->nep)
		return NAN;
	switch (metric) {
	case M_ACC: return r->acc[e];
	case M_BEST_ACC: {
		double best = NAN;
		for (int k = 0; k < r->nep; k++)
			if (isfinite(r->acc[k]) && !(best >= r->acc[k]))
				best = r->acc[k];
		return best;
	}
	case M_ANGLE: return r->angle[e * MAX_LAYERS + layer];
	case M_DELTA: return r->delta[e * MAX_LAYERS + layer];
	case M_SPS: {
		double s = 0;
		int n = 0;
		for (int k = 0; k < r->nep; k++)
			if (isfinite(r->sps[k])) {
				s += r->sps[k];
				n++;
			}
		return n ? s / n : NAN;
	}
	}
	return NAN;
}

static Stat cfg_stat(const Cfg *c, int metric, int layer, int e)
{
	double v[512];
	int n = 0;
	for (int i = 0; i < c->nruns && n < 512; i++)
		v[n++] = run_value(&c->runs[i], metric, layer, e);
	return stat_of(v, n);
}

static void fmt_stat(char *buf, size_t len, Stat s, int decimals, bool spread)
{
	if (!s.n)
		snprintf(buf, len, "-");
	else if (spread && s.n > 1)
		snprintf(buf, len, "%.*f ± %.*f", decimals, s.mean, decimals, s.sd);
	else
		snprintf(buf, len, "%.*f", decimals, s.mean);
}

/* Layers that have a value of the metric in some run. */
static bool layer_has(const Report *R, int metric, int layer)
{
	for (int i = 0; i < R->ncfg; i++)
		if (cfg_stat(&R->cfgs[i], metric, layer, -1).n)
			return true;
	return false;
}

static bool always_zero(const Report *R, int metric, int layer)
{
	for (int i = 0; i < R->ncfg; i++)
		for (int e = 0; e < R->max_epoch; e++) {
			Stat st = cfg_stat(&R->cfgs[i], metric, layer, e);
			if (st.n && (st.lo != 0 || st.hi != 0))
				return false;
		}
	return true;
}

/* Per-layer columns in the Markdown table up to this many layers; beyond,
 * the mean and worst (CSV always has every layer). */
enum { TABLE_MAX_LAYERS = 6 };

/* The rule of every layer in order, or with many layers each rule's count
 * ("bp×15 kp×7"; the CSV has every layer). */
static void rules_text(const Report *R, const Cfg *c, char *buf, size_t len)
{
	size_t n = 0;
	buf[0] = '\0';
	if (R->nlayers <= TABLE_MAX_LAYERS) {
		for (int k = 0; k < R->nlayers && n < len; k++)
			n += snprintf(buf + n, len - n, "%s%s", k ? " " : "", c->rules[k] ? c->rules[k] : "?");
		return;
	}
	for (int k = 0; k < R->nlayers && n < len; k++) {
		const char *r = c->rules[k] ? c->rules[k] : "?";
		bool seen = false;
		for (int j = 0; j < k; j++)
			seen |= !strcmp(c->rules[j] ? c->rules[j] : "?", r);
		if (seen)
			continue;
		int count = 0;
		for (int j = k; j < R->nlayers; j++)
			count += !strcmp(c->rules[j] ? c->rules[j] : "?", r);
		n += snprintf(buf + n, len - n, "%s%s×%d", n ? " " : "", r, count);
	}
}

static void write_markdown_table(FILE *f, const Report *R, bool html)
{
	bool per_layer = R->nlayers <= TABLE_MAX_LAYERS;
	const char *row0 = html ? "<tr><th>" : "| ", *sep = html ? "</th><th>" : " | ",
	           *end0 = html ? "</th></tr>\n" : " |\n";
	fprintf(f, "%s", html ? "<table>\n" : "");
	fprintf(f, "%sconfiguration%srules", row0, sep);
	if (per_layer) {
		fprintf(f, " (");
		for (int k = 0; k < R->nlayers; k++)
			fprintf(f, "%s%s", k ? " " : "", R->layers[k]);
		fprintf(f, ")");
	} else
		fprintf(f, " (%d layers)", R->nlayers);
	fprintf(f, "%sseeds%sfinal test acc %%%sbest test acc %%", sep, sep, sep);
	if (per_layer) {
		for (int k = 0; k < R->nlayers; k++)
			if (layer_has(R, M_ANGLE, k))
				fprintf(f, "%sangle %s", sep, R->layers[k]);
		for (int k = 0; k < R->nlayers; k++)
			fprintf(f, "%sδ %s", sep, R->layers[k]);
	} else
		fprintf(f, "%smean angle%sworst angle%smean δ%sworst δ", sep, sep, sep, sep);
	fprintf(f, "%ssamples/s%s", sep, end0);
	if (!html) {
		int cols = 5 + (per_layer ? R->nlayers : 4) + 1;
		if (per_layer)
			for (int k = 0; k < R->nlayers; k++)
				cols += layer_has(R, M_ANGLE, k);
		for (int i = 0; i < cols; i++)
			fprintf(f, "|---");
		fprintf(f, "|\n");
	}
	const char *row = html ? "<tr><td>" : "| ", *cell = html ? "</td><td>" : " | ",
	           *end = html ? "</td></tr>\n" : " |\n";
	for (int i = 0; i < R->ncfg; i++) {
		const Cfg *c = &R->cfgs[i];
		char rules[1024], a[64], b[64];
		rules_text(R, c, rules, sizeof rules);
		fmt_stat(a, sizeof a, cfg_stat(c, M_ACC, 0, -1), 2, true);
		fmt_stat(b, sizeof b, cfg_stat(c, M_BEST_ACC, 0, -1), 2, true);
		if (html)
			fprintf(f, "<tr><td><span style=\"color:%s\">&#9644;</span> ", c->colour);
		else
			fprintf(f, "%s", row);
		fprintf(f, "%s%s%s%s%d of %d%s%s%s%s", c->name, cell, rules, cell, c->nruns, c->nplanned,
		        cell, a, cell, b);
		if (per_layer) {
			for (int k = 0; k < R->nlayers; k++)
				if (layer_has(R, M_ANGLE, k)) {
					fmt_stat(a, sizeof a, cfg_stat(c, M_ANGLE, k, -1), 1, true);
					fprintf(f, "%s%s", cell, a);
				}
			for (int k = 0; k < R->nlayers; k++) {
				fmt_stat(a, sizeof a, cfg_stat(c, M_DELTA, k, -1), 1, true);
				fprintf(f, "%s%s", cell, a);
			}
		} else {
			for (int metric = M_ANGLE; metric <= M_DELTA; metric++) {
				double sum = 0, worst = NAN;
				int n = 0, wk = -1;
				for (int k = 0; k < R->nlayers; k++) {
					Stat s = cfg_stat(c, metric, k, -1);
					if (!s.n)
						continue;
					sum += s.mean;
					n++;
					if (!(worst >= s.mean)) {
						worst = s.mean;
						wk = k;
					}
				}
				if (n)
					fprintf(f, "%s%.1f%s%.1f (%s)", cell, sum / n, cell, worst, R->layers[wk]);
				else
					fprintf(f, "%s-%s-", cell, cell);
			}
		}
		fmt_stat(a, sizeof a, cfg_stat(c, M_SPS, 0, -1), 0, false);
		fprintf(f, "%s%s%s", cell, a, end);
	}
	fprintf(f, "%s", html ? "</table>\n" : "");
}

static void csv_stat(FILE *f, Stat s)
{
	if (s.n)
		fprintf(f, ",%.6g,%.6g", s.mean, s.sd);
	else
		fprintf(f, ",,");
}

static void csv_text(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

static int write_csv(const Report *R, const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "configuration");
	for (int k = 0; k < R->nlayers; k++)
		fprintf(f, ",rule_%s", R->layers[k]);
	fprintf(f, ",seeds_done,seeds_planned,final_test_acc_mean,final_test_acc_sd,"
	        "best_test_acc_mean,best_test_acc_sd");
	for (int k = 0; k < R->nlayers; k++)
		fprintf(f, ",angle_%s_mean,angle_%s_sd", R->layers[k], R->layers[k]);
	for (int k = 0; k < R->nlayers; k++)
		fprintf(f, ",delta_%s_mean,delta_%s_sd", R->layers[k], R->layers[k]);
	fprintf(f, ",samples_per_sec_mean,samples_per_sec_sd\n");
	for (int i = 0; i < R->ncfg; i++) {
		const Cfg *c = &R->cfgs[i];
		csv_text(f, c->name);
		for (int k = 0; k < R->nlayers; k++) {
			fputc(',', f);
			csv_text(f, c->rules[k] ? c->rules[k] : "");
		}
		fprintf(f, ",%d,%d", c->nruns, c->nplanned);
		csv_stat(f, cfg_stat(c, M_ACC, 0, -1));
		csv_stat(f, cfg_stat(c, M_BEST_ACC, 0, -1));
		for (int k = 0; k < R->nlayers; k++)
			csv_stat(f, cfg_stat(c, M_ANGLE, k, -1));
		for (int k = 0; k < R->nlayers; k++)
			csv_stat(f, cfg_stat(c, M_DELTA, k, -1));
		csv_stat(f, cfg_stat(c, M_SPS, 0, -1));
		fputc('\n', f);
	}
	return fclose(f);
}

/* ---- SVG ---- */

static void svg_text(FILE *f, const char *s)
{
	for (; *s; s++)
		switch (*s) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		default: fputc(*s, f);
		}
}

static double nice_step(double range, int target)
{
	double raw = range / target, mag = pow(10, floor(log10(raw))), r = raw / mag;
	return (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10) * mag;
}

typedef struct Scale { double lo, hi, step; } Scale;

static Scale scale_for(double lo, double hi, int ticks)
{
	if (!isfinite(lo) || !isfinite(hi)) {
		lo = 0;
		hi = 1;
	}
	if (!(hi > lo)) {
		double pad = fabs(lo) > 0 ? fabs(lo) * 0.05 : 1;
		lo -= pad;
		hi += pad;
	}
	Scale s;
	s.step = nice_step(hi - lo, ticks);
	s.lo = floor(lo / s.step + 1e-9) * s.step;
	s.hi = ceil(hi / s.step - 1e-9) * s.step;
	return s;
}

static void tick_label(char *buf, size_t len, double v, double step)
{
	int d = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
	snprintf(buf, len, "%.*f", d, fabs(v) < step * 1e-6 ? 0.0 : v);
}

/* A series: points x with mean y and band [lo, hi] over seeds. */
typedef struct Series { int n; double *x, *y, *lo, *hi; } Series;

enum { PW = 340, PH = 250, ML = 62, MT = 40, MB = 46, GAP = 40, LEG_W = 300, LEG_ROW = 18 };

/* Series of config c for a metric over epochs (M_ACC, M_ANGLE, M_DELTA). */
static Series epoch_series(const Report *R, const Cfg *c, int metric, int layer)
{
	Series s = {0};
	s.x = grow(NULL, sizeof(double) * (R->max_epoch + 1) * 4);
	s.y = s.x + R->max_epoch + 1;
	s.lo = s.y + R->max_epoch + 1;
	s.hi = s.lo + R->max_epoch + 1;
	for (int e = 0; e < R->max_epoch; e++) {
		Stat st = cfg_stat(c, metric, layer, e);
		if (!st.n)
			continue;
		s.x[s.n] = e + 1;
		s.y[s.n] = st.mean;
		s.lo[s.n] = st.lo;
		s.hi[s.n] = st.hi;
		s.n++;
	}
	return s;
}

/* Training loss at the logged steps, where every run of c has the step. */
static Series loss_series(const Cfg *c)
{
	Series s = {0};
	if (!c->nruns)
		return s;
	int n = c->runs[0].nsteps;
	s.x = grow(NULL, sizeof(double) * (n + 1) * 4);
	s.y = s.x + n + 1;
	s.lo = s.y + n + 1;
	s.hi = s.lo + n + 1;
	for (int k = 0; k < n; k++) {
		double v[512];
		int m = 0;
		for (int r = 0; r < c->nruns && m < 512; r++)
			if (k < c->runs[r].nsteps && c->runs[r].step[k] == c->runs[0].step[k])
				v[m++] = c->runs[r].loss[k];
		Stat st = stat_of(v, m);
		if (!st.n)
			continue;
		s.x[s.n] = c->runs[0].step[k];
		s.y[s.n] = st.mean;
		s.lo[s.n] = st.lo;
		s.hi[s.n] = st.hi;
		s.n++;
	}
	return s;
}

static void draw_panel(FILE *f, const Report *R, Series *ser, double x0, double y0,
                       const char *title, const char *xlabel, const char *ylabel, bool from_zero)
{
	bool integer_x = !strcmp(xlabel, "epoch");
	double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
	for (int i = 0; i < R->ncfg; i++)
		for (int k = 0; k < ser[i].n; k++) {
			xlo = fmin(xlo, ser[i].x[k]);
			xhi = fmax(xhi, ser[i].x[k]);
			ylo = fmin(ylo, ser[i].lo[k]);
			yhi = fmax(yhi, ser[i].hi[k]);
		}
	if (from_zero && ylo > 0)
		ylo = 0;
	Scale xs = scale_for(xlo, xhi, 5), ys = scale_for(ylo, yhi, 5);
	if (integer_x && xs.step < 1) {      /* epochs: whole ones */
		xs = scale_for(xlo, xhi, 5);
		xs.step = 1;
		xs.lo = floor(xlo);
		xs.hi = ceil(xhi);
	}
	if (xlo == xhi && isfinite(xlo)) {   /* one epoch: centre it */
		xs.lo = xlo - 1;
		xs.hi = xlo + 1;
		xs.step = 1;
	}
#define SX(v) (x0 + (v - xs.lo) / (xs.hi - xs.lo) * PW)
#define SY(v) (y0 + PH - (v - ys.lo) / (ys.hi - ys.lo) * PH)
	fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\" fill=\"white\" "
	        "stroke=\"#999\"/>\n", x0, y0, PW, PH);
	char buf[64];
	for (double v = ys.lo; v <= ys.hi + ys.step * 1e-6; v += ys.step) {
		tick_label(buf, sizeof buf, v, ys.step);
		fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
		        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%s</text>\n",
		        x0, x0 + PW, SY(v), SY(v), x0 - 5, SY(v) + 4, buf);
	}
	for (double v = xs.lo; v <= xs.hi + xs.step * 1e-6; v += xs.step) {
		tick_label(buf, sizeof buf, v, xs.step);
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">%s</text>\n",
		        SX(v), y0 + PH + 15, buf);
	}
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\" "
	        "font-weight=\"bold\">", x0 + PW / 2.0, y0 - 10);
	svg_text(f, title);
	fprintf(f, "</text>\n<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">",
	        x0 + PW / 2.0, y0 + PH + 34);
	svg_text(f, xlabel);
	fprintf(f, "</text>\n<text transform=\"translate(%.1f %.1f) rotate(-90)\" "
	        "text-anchor=\"middle\" font-size=\"12\">", x0 - 44, y0 + PH / 2.0);
	svg_text(f, ylabel);
	fprintf(f, "</text>\n");
	for (int i = 0; i < R->ncfg; i++) {
		const Series *s = &ser[i];
		const Cfg *c = &R->cfgs[i];
		if (!s->n)
			continue;
		if (s->n > 1) {   /* the band between the seeds' lowest and highest */
			fprintf(f, "<polygon fill=\"%s\" fill-opacity=\"0.15\" stroke=\"none\" points=\"",
			        c->colour);
			for (int k = 0; k < s->n; k++)
				fprintf(f, "%.1f,%.1f ", SX(s->x[k]), SY(s->hi[k]));
			for (int k = s->n - 1; k >= 0; k--)
				fprintf(f, "%.1f,%.1f ", SX(s->x[k]), SY(s->lo[k]));
			fprintf(f, "\"/>\n<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
			        "stroke-dasharray=\"%s\" points=\"", c->colour, c->dash);
			for (int k = 0; k < s->n; k++)
				fprintf(f, "%.1f,%.1f ", SX(s->x[k]), SY(s->y[k]));
			fprintf(f, "\"/>\n");
		} else {          /* one point: a marker and the seeds' range */
			double dx = (i - (R->ncfg - 1) / 2.0) * 6;   /* side by side */
			fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
			        "stroke-width=\"2\"/><circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n",
			        SX(s->x[0]) + dx, SX(s->x[0]) + dx, SY(s->lo[0]), SY(s->hi[0]), c->colour,
			        SX(s->x[0]) + dx, SY(s->y[0]), c->colour);
		}
	}
#undef SX
#undef SY
}

static void draw_legend(FILE *f, const Report *R, double x, double y)
{
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" font-weight=\"bold\">"
	        "configuration (band: seeds' range)</text>\n", x, y);
	for (int i = 0; i < R->ncfg; i++) {
		const Cfg *c = &R->cfgs[i];
		double yy = y + (i + 1) * LEG_ROW;
		fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
		        "stroke-width=\"2.5\" stroke-dasharray=\"%s\"/><text x=\"%.1f\" y=\"%.1f\" "
		        "font-size=\"12\">", x, x + 28, yy - 4, yy - 4, c->colour, c->dash, x + 34, yy);
		svg_text(f, c->name);
		fprintf(f, "</text>\n");
	}
}

typedef enum { PLOT_ACC, PLOT_LOSS, PLOT_ANGLE, PLOT_DELTA } PlotKind;

static int write_plot(const Report *R, PlotKind kind, const char *file, const char *title)
{
	int panels[MAX_LAYERS], np = 0;
	if (kind == PLOT_ANGLE || kind == PLOT_DELTA) {
		/* The output layer's delta angle is 0 by definition: no panel. */
		for (int k = 0; k < R->nlayers; k++)
			if (layer_has(R, kind == PLOT_ANGLE ? M_ANGLE : M_DELTA, k) &&
			    (kind == PLOT_ANGLE || !always_zero(R, M_DELTA, k)))
				panels[np++] = k;
	} else
		panels[np++] = 0;
	if (!np)
		return 0;
	int cols = np < 4 ? np : 4, rows = (np + cols - 1) / cols;
	int legend_h = MT + (R->ncfg + 1) * LEG_ROW + 10;
	int panels_h = rows * (PH + MT + MB + GAP) - GAP + 10;
	int w = ML + cols * (PW + ML + GAP) + LEG_W, h = 50 + (panels_h > legend_h ? panels_h : legend_h);
	char path[4200];
	snprintf(path, sizeof path, "%s/%s", R->out, file);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
	        "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n<rect width=\"100%%\" "
	        "height=\"100%%\" fill=\"white\"/>\n<text x=\"%d\" y=\"24\" font-size=\"15\" "
	        "font-weight=\"bold\">", w, h, w, h, ML);
	svg_text(f, title);
	fprintf(f, "</text>\n");
	Series *ser = grow(NULL, sizeof *ser * R->ncfg);
	for (int p = 0; p < np; p++) {
		int k = panels[p];
		for (int i = 0; i < R->ncfg; i++)
			ser[i] = kind == PLOT_LOSS ? loss_series(&R->cfgs[i])
			         : epoch_series(R, &R->cfgs[i], kind == PLOT_ACC ? M_ACC
			                        : kind == PLOT_ANGLE ? M_ANGLE : M_DELTA, k);
		double x0 = ML + (p % cols) * (PW + ML + GAP), y0 = 50 + MT + (p / cols) * (PH + MT + MB + GAP);
		char ptitle[300];
		if (kind == PLOT_ANGLE || kind == PLOT_DELTA)
			snprintf(ptitle, sizeof ptitle, "%s", R->layers[k]);
		else
			snprintf(ptitle, sizeof ptitle, "%s", kind == PLOT_ACC ? "test accuracy" : "training loss");
		draw_panel(f, R, ser, x0, y0, ptitle, kind == PLOT_LOSS ? "step" : "epoch",
		           kind == PLOT_ACC ? "test accuracy (%)" : kind == PLOT_LOSS ? "loss (mean since last record)"
		           : kind == PLOT_ANGLE ? "angle(B, W) (degrees)" : "delta angle (degrees)",
		           kind == PLOT_ANGLE || kind == PLOT_DELTA);
		for (int i = 0; i < R->ncfg; i++)
			free(ser[i].x);
	}
	free(ser);
	draw_legend(f, R, ML + cols * (PW + ML + GAP) - GAP / 2.0, 50 + MT);
	fprintf(f, "</svg>\n");
	return fclose(f);
}

/* ---- the files ---- */

static const char *const plot_files[][2] = {
	{"accuracy.svg", "test accuracy per epoch"},
	{"loss.svg", "training loss per logged step"},
	{"angle.svg", "angle between B and W per layer"},
	{"delta_angle.svg", "delta angle per layer: the error each layer gets against backprop's"},
};

static int write_markdown(const Report *R)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/results.md", R->out);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "# Sweep of %s\n\n", R->network ? R->network : "?");
	fprintf(f, "Command: `%s`\n\n", R->command ? R->command : "?");
	fprintf(f, "Mean ± sd over seeds (at the last epoch; best: the best epoch of each run); "
	        "angles and delta angles in degrees at the last epoch; δ is the angle between the "
	        "error a layer gets and the one backprop would send. Every run's metrics: runs/.\n\n");
	write_markdown_table(f, R, false);
	fprintf(f, "\n");
	for (size_t i = 0; i < sizeof plot_files / sizeof plot_files[0]; i++)
		fprintf(f, "![%s](%s)\n\n", plot_files[i][1], plot_files[i][0]);
	return fclose(f);
}

static int write_html(const Report *R)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/index.html", R->out);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>sweep of ");
	svg_text(f, R->network ? R->network : "?");
	fprintf(f, "</title>\n<style>body{font-family:sans-serif;margin:2em}table{border-collapse:"
	        "collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
	        "td:first-child,td:nth-child(2){text-align:left}img{max-width:100%%;display:block;"
	        "margin:1em 0}</style></head><body>\n<h1>Sweep of ");
	svg_text(f, R->network ? R->network : "?");
	fprintf(f, "</h1>\n<p><code>");
	svg_text(f, R->command ? R->command : "?");
	fprintf(f, "</code></p>\n<p>Mean ± sd over seeds at the last epoch (best: the best epoch of "
	        "each run); angles in degrees. Data: <a href=\"results.csv\">results.csv</a>, "
	        "<a href=\"results.md\">results.md</a>, every run's metrics under runs/.</p>\n");
	write_markdown_table(f, R, true);
	for (size_t i = 0; i < sizeof plot_files / sizeof plot_files[0]; i++) {
		char p[4200];
		snprintf(p, sizeof p, "%s/%s", R->out, plot_files[i][0]);
		FILE *t = fopen(p, "r");
		if (!t)
			continue;
		fclose(t);
		fprintf(f, "<h2>%s</h2>\n<img src=\"%s\" alt=\"%s\">\n", plot_files[i][1],
		        plot_files[i][0], plot_files[i][1]);
	}
	fprintf(f, "</body></html>\n");
	return fclose(f);
}

int sweep_report(const char *out)
{
	Report R = {.out = out};
	if (read_plan(&R) < 0)
		return 1;
	assign_colours(&R);
	char csv[4200];
	snprintf(csv, sizeof csv, "%s/results.csv", out);
	char title[512];
	const char *net = R.network ? strrchr(R.network, '/') : NULL;
	net = net ? net + 1 : R.network ? R.network : "?";
	int rc = 0;
	for (size_t i = 0; i < sizeof plot_files / sizeof plot_files[0]; i++) {
		snprintf(title, sizeof title, "%s: %s", net, plot_files[i][1]);
		char p[4200];
		snprintf(p, sizeof p, "%s/%s", out, plot_files[i][0]);
		remove(p);
		rc |= write_plot(&R, (PlotKind)i, plot_files[i][0], title);
	}
	rc |= write_csv(&R, csv) | write_markdown(&R) | write_html(&R);
	if (rc) {
		fprintf(stderr, "wtnc sweep: cannot write the report in %s\n", out);
		return 1;
	}
	fprintf(stderr, "wtnc sweep: wrote %s/index.html, results.md, results.csv and the plots\n", out);
	return 0;
}
