/* plot.c: summarises the runs of tools/reproduce.sh.
 *
 *   plot OUTDIR < MANIFEST
 *
 * The manifest (written by reproduce.sh) has one tab-separated record a line:
 *
 *   config  NAME  SPEC               SPEC: "h1=bp h2=kp out=wm"
 *   run     NAME  SEED  SECONDS  FILE   FILE: the run's --metrics JSON lines
 *   error   NAME  SEED  MESSAGE      SEED "-": the configuration did not compile
 *   published  NAME  ERROR       a published test error % for NAME (optional)
 *
 * and OUTDIR may be followed by a LABEL (the network and data set, e.g.
 * "LeNet, Fashion-MNIST") that starts the plots' titles.
 *
 * It writes OUTDIR/accuracy.svg (test accuracy per epoch), OUTDIR/angle.svg
 * and OUTDIR/delta_angle.svg (one panel per layer), each line the mean over
 * a configuration's seeds, and prints the Markdown tables of the results to
 * standard output. JSON null (NaN, infinity, no feedback matrix) is a
 * missing value: left out of means and shown as a gap. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors and memory ---- */

static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("plot: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void *xrealloc(void *p, size_t size)
{
	p = realloc(p, size ? size : 1);
	if (!p)
		fail("out of memory");
	return p;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(xrealloc(NULL, n), s, n);
}

/* Appends one element to a growable array: *items has *n elements. */
#define PUSH(items, n, value)                                              \
	do {                                                               \
		(items) = xrealloc((items), ((n) + 1) * sizeof *(items));  \
		(items)[(n)++] = (value);                                  \
	} while (0)

/* ---- a small JSON reader ---- */

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } JKind;

typedef struct JVal {
	JKind kind;
	double num;           /* J_NUM, J_BOOL */
	char *str;            /* J_STR */
	int n;                /* J_ARR, J_OBJ: number of items */
	struct JVal **items;
	char **keys;          /* J_OBJ */
} JVal;

typedef struct {
	const char *p;
	const char *err;      /* first error, or NULL */
} JParser;

static JVal *json_value(JParser *jp, int depth);

static JVal *json_new(JKind kind)
{
	JVal *v = xrealloc(NULL, sizeof *v);
	memset(v, 0, sizeof *v);
	v->kind = kind;
	return v;
}

static void json_skip_space(JParser *jp)
{
	while (*jp->p == ' ' || *jp->p == '\t' || *jp->p == '\r' || *jp->p == '\n')
		jp->p++;
}

static JVal *json_error(JParser *jp, const char *msg)
{
	if (!jp->err)
		jp->err = msg;
	return NULL;
}

static bool json_word(JParser *jp, const char *w)
{
	size_t n = strlen(w);
	if (strncmp(jp->p, w, n) != 0)
		return false;
	jp->p += n;
	return true;
}

static void utf8_put(char **buf, int *len, unsigned c)
{
	char tmp[4];
	int k = 0;
	if (c < 0x80) {
		tmp[k++] = (char)c;
	} else if (c < 0x800) {
		tmp[k++] = (char)(0xc0 | c >> 6);
		tmp[k++] = (char)(0x80 | (c & 0x3f));
	} else {
		tmp[k++] = (char)(0xe0 | c >> 12);
		tmp[k++] = (char)(0x80 | (c >> 6 & 0x3f));
		tmp[k++] = (char)(0x80 | (c & 0x3f));
	}
	for (int i = 0; i < k; i++)
		PUSH(*buf, *len, tmp[i]);
}

static char *json_string(JParser *jp)
{
	char *buf = NULL;
	int len = 0;
	jp->p++;   /* the opening quote */
	for (;;) {
		unsigned char c = (unsigned char)*jp->p;
		if (c == '"')
			break;
		if (c < 0x20) {
			free(buf);
			json_error(jp, c ? "control character in string" : "unterminated string");
			return NULL;
		}
		jp->p++;
		if (c != '\\') {
			PUSH(buf, len, (char)c);
			continue;
		}
		char e = *jp->p++;
		const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
		const char *hit = e ? strchr(from, e) : NULL;
		if (hit) {
			PUSH(buf, len, to[hit - from]);
		} else if (e == 'u' && isxdigit((unsigned char)jp->p[0]) && isxdigit((unsigned char)jp->p[1]) &&
		           isxdigit((unsigned char)jp->p[2]) && isxdigit((unsigned char)jp->p[3])) {
			char hex[5] = { jp->p[0], jp->p[1], jp->p[2], jp->p[3], 0 };
			utf8_put(&buf, &len, (unsigned)strtoul(hex, NULL, 16));
			jp->p += 4;
		} else {
			free(buf);
			json_error(jp, "bad escape in string");
			return NULL;
		}
	}
	jp->p++;   /* the closing quote */
	PUSH(buf, len, '\0');
	return buf;
}

static JVal *json_number(JParser *jp)
{
	/* Strict JSON numbers, plus the NaN and Infinity some writers emit. */
	const char *s = jp->p;
	JVal *v = json_new(J_NUM);
	if (json_word(jp, "NaN") || json_word(jp, "nan")) {
		v->num = NAN;
		return v;
	}
	bool neg = *jp->p == '-';
	if (neg)
		jp->p++;
	if (json_word(jp, "Infinity") || json_word(jp, "inf")) {
		v->num = neg ? -INFINITY : INFINITY;
		return v;
	}
	if (!isdigit((unsigned char)*jp->p)) {
		free(v);
		return json_error(jp, "bad number");
	}
	char *end;
	errno = 0;
	v->num = strtod(s, &end);
	if (end == s) {
		free(v);
		return json_error(jp, "bad number");
	}
	jp->p = end;
	return v;
}

static JVal *json_container(JParser *jp, int depth, bool object)
{
	JVal *v = json_new(object ? J_OBJ : J_ARR);
	char close = object ? '}' : ']';
	int nkeys = 0;
	jp->p++;
	json_skip_space(jp);
	if (*jp->p == close) {
		jp->p++;
		return v;
	}
	for (;;) {
		json_skip_space(jp);
		if (object) {
			if (*jp->p != '"')
				return json_error(jp, "expected a key");
			char *key = json_string(jp);
			if (!key)
				return NULL;
			PUSH(v->keys, nkeys, key);
			json_skip_space(jp);
			if (*jp->p++ != ':')
				return json_error(jp, "expected ':'");
		}
		JVal *item = json_value(jp, depth + 1);
		if (!item)
			return NULL;
		PUSH(v->items, v->n, item);
		json_skip_space(jp);
		if (*jp->p == ',') {
			jp->p++;
			continue;
		}
		if (*jp->p++ != close)
			return json_error(jp, object ? "expected ',' or '}'" : "expected ',' or ']'");
		return v;
	}
}

static JVal *json_value(JParser *jp, int depth)
{
	if (depth > 64)
		return json_error(jp, "nested too deeply");
	json_skip_space(jp);
	char c = *jp->p;
	if (c == '{' || c == '[')
		return json_container(jp, depth, c == '{');
	if (c == '"') {
		char *s = json_string(jp);
		if (!s)
			return NULL;
		JVal *v = json_new(J_STR);
		v->str = s;
		return v;
	}
	if (json_word(jp, "null"))
		return json_new(J_NULL);
	bool is_true = json_word(jp, "true");
	if (is_true || json_word(jp, "false")) {
		JVal *v = json_new(J_BOOL);
		v->num = is_true;
		return v;
	}
	if (c == '-' || isdigit((unsigned char)c) || c == 'N' || c == 'n' || c == 'I' || c == 'i')
		return json_number(jp);
	return json_error(jp, c ? "unexpected character" : "unexpected end of line");
}

static const JVal *json_get(const JVal *obj, const char *key)
{
	if (!obj || obj->kind != J_OBJ)
		return NULL;
	for (int i = 0; i < obj->n; i++)
		if (strcmp(obj->keys[i], key) == 0)
			return obj->items[i];
	return NULL;
}

/* A number field; NaN when missing or null. A value of another type is an
 * error: the file is not what this tool understands. */
static double json_num_field(const JVal *obj, const char *key, const char *where)
{
	const JVal *v = json_get(obj, key);
	if (!v || v->kind == J_NULL)
		return NAN;
	if (v->kind != J_NUM)
		fail("%s: field \"%s\" is not a number", where, key);
	return v->num;
}

static const char *json_str_field(const JVal *obj, const char *key, const char *where)
{
	const JVal *v = json_get(obj, key);
	if (!v || v->kind == J_NULL)
		return NULL;
	if (v->kind != J_STR)
		fail("%s: field \"%s\" is not a string", where, key);
	return v->str;
}

/* ---- the runs ---- */

typedef struct {
	char *name, *rule;
	double angle, norm_ratio, delta;
} LayerRec;

typedef struct {
	int epoch;
	double train_acc, test_acc, train_loss, test_loss, samples_per_sec;
	LayerRec *layers;
	int nlayers;
} EpochRec;

typedef struct {
	char *seed;
	double seconds;
	EpochRec *epochs;
	int nepochs;
} Run;

typedef struct {
	char *seed;      /* "-": the whole configuration failed */
	char *message;
} RunError;

typedef struct {
	char *name, *spec;
	char **layer_names, **layer_rules;   /* parsed from spec, in order */
	int nspec;
	bool mixed;                          /* rules differ between layers */
	double published;                    /* published test error %, or NaN */
	Run *runs;
	int nruns;
	RunError *errors;
	int nerrors;
} Config;

static Config *configs;
static int nconfigs;
static char **all_layers;   /* every layer name of every spec, first-seen order */
static int nall_layers;
static int max_epoch;

static Config *find_config(const char *name)
{
	for (int i = 0; i < nconfigs; i++)
		if (strcmp(configs[i].name, name) == 0)
			return &configs[i];
	return NULL;
}

static int layer_index(const char *name)
{
	for (int i = 0; i < nall_layers; i++)
		if (strcmp(all_layers[i], name) == 0)
			return i;
	return -1;
}

static void parse_spec(Config *c)
{
	char *copy = xstrdup(c->spec);
	for (char *tok = strtok(copy, " "); tok; tok = strtok(NULL, " ")) {
		char *eq = strchr(tok, '=');
		if (!eq || eq == tok || !eq[1])
			fail("configuration %s: bad spec item '%s' (want LAYER=RULE)", c->name, tok);
		*eq = '\0';
		int nrules = c->nspec;
		PUSH(c->layer_rules, nrules, xstrdup(eq + 1));
		PUSH(c->layer_names, c->nspec, xstrdup(tok));
		if (layer_index(tok) < 0)
			PUSH(all_layers, nall_layers, xstrdup(tok));
	}
	free(copy);
	if (c->nspec == 0)
		fail("configuration %s: empty spec", c->name);
	for (int i = 1; i < c->nspec; i++)
		if (strcmp(c->layer_rules[i], c->layer_rules[0]) != 0)
			c->mixed = true;
}

static EpochRec parse_epoch(const JVal *obj, const char *where)
{
	EpochRec e = { 0 };
	if (obj->kind != J_OBJ)
		fail("%s: not a JSON object", where);
	double ep = json_num_field(obj, "epoch", where);
	if (!(ep >= 1 && ep <= 1000000 && ep == floor(ep)))
		fail("%s: missing or bad \"epoch\"", where);
	e.epoch = (int)ep;
	e.train_acc = json_num_field(obj, "train_acc", where);
	e.test_acc = json_num_field(obj, "test_acc", where);
	e.train_loss = json_num_field(obj, "train_loss", where);
	e.test_loss = json_num_field(obj, "test_loss", where);
	e.samples_per_sec = json_num_field(obj, "samples_per_sec", where);
	const JVal *layers = json_get(obj, "layers");
	if (!layers || layers->kind == J_NULL)
		return e;
	if (layers->kind != J_ARR)
		fail("%s: \"layers\" is not an array", where);
	for (int i = 0; i < layers->n; i++) {
		const JVal *l = layers->items[i];
		if (l->kind != J_OBJ)
			fail("%s: layers[%d] is not an object", where, i);
		const char *name = json_str_field(l, "name", where);
		const char *rule = json_str_field(l, "rule", where);
		if (!name)
			fail("%s: layers[%d] has no name", where, i);
		LayerRec r = { xstrdup(name), xstrdup(rule ? rule : "?"),
		               json_num_field(l, "angle", where), json_num_field(l, "norm_ratio", where),
		               json_num_field(l, "delta", where) };
		PUSH(e.layers, e.nlayers, r);
	}
	return e;
}

static void read_run(Run *run, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		fail("%s: %s", path, strerror(errno));
	char *line = NULL;
	size_t cap = 0;
	int lineno = 0;
	while (getline(&line, &cap, f) != -1) {
		lineno++;
		char where[4200];
		snprintf(where, sizeof where, "%s:%d", path, lineno);
		JParser jp = { line, NULL };
		json_skip_space(&jp);
		if (!*jp.p)
			continue;   /* blank line */
		JVal *v = json_value(&jp, 0);
		if (v) {
			json_skip_space(&jp);
			if (*jp.p)
				json_error(&jp, "trailing characters");
		}
		if (jp.err)
			fail("%s: bad JSON at column %d: %s", where, (int)(jp.p - line) + 1, jp.err);
		/* The run's configuration and step records (--log-every) carry no
		 * "epoch": only epoch records are plotted. */
		if (v->kind == J_OBJ && !json_get(v, "epoch"))
			continue;
		EpochRec e = parse_epoch(v, where);
		PUSH(run->epochs, run->nepochs, e);
		if (e.epoch > max_epoch)
			max_epoch = e.epoch;
	}
	if (ferror(f))
		fail("%s: read error", path);
	free(line);
	fclose(f);
	if (run->nepochs == 0)
		fail("%s: no epochs (empty metrics file)", path);
}

/* Splits a tab-separated line in place into at most max fields; the last
 * field keeps any further tabs. */
static int split_tabs(char *line, char **fields, int max)
{
	int n = 0;
	line[strcspn(line, "\n")] = '\0';
	fields[n++] = line;
	for (char *p = line; *p && n < max; p++)
		if (*p == '\t') {
			*p = '\0';
			fields[n++] = p + 1;
		}
	return n;
}

static void read_manifest(FILE *in)
{
	char *line = NULL;
	size_t cap = 0;
	int lineno = 0;
	while (getline(&line, &cap, in) != -1) {
		lineno++;
		char *f[5];
		int n = split_tabs(line, f, 5);
		if (n == 1 && !f[0][0])
			continue;
		if (strcmp(f[0], "config") == 0 && n == 3) {
			if (find_config(f[1]))
				fail("manifest line %d: configuration %s given twice", lineno, f[1]);
			Config c = { .name = xstrdup(f[1]), .spec = xstrdup(f[2]), .published = NAN };
			PUSH(configs, nconfigs, c);
			parse_spec(&configs[nconfigs - 1]);
			continue;
		}
		if (strcmp(f[0], "published") == 0 && n == 3) {
			Config *c = find_config(f[1]);
			if (!c)
				fail("manifest line %d: unknown configuration %s", lineno, f[1]);
			char *end;
			c->published = strtod(f[2], &end);
			if (end == f[2] || *end || !(c->published >= 0 && c->published <= 100))
				fail("manifest line %d: bad published error '%s' (want a percentage)", lineno, f[2]);
			continue;
		}
		bool is_run = strcmp(f[0], "run") == 0 && n == 5;
		bool is_error = strcmp(f[0], "error") == 0 && n == 4;
		if (!is_run && !is_error)
			fail("manifest line %d: expected config/run/error/published with tab-separated fields", lineno);
		Config *c = find_config(f[1]);
		if (!c)
			fail("manifest line %d: unknown configuration %s", lineno, f[1]);
		if (is_error) {
			RunError e = { xstrdup(f[2]), xstrdup(f[3]) };
			PUSH(c->errors, c->nerrors, e);
			continue;
		}
		char *end;
		double secs = strtod(f[3], &end);
		if (end == f[3] || *end)
			fail("manifest line %d: bad seconds '%s'", lineno, f[3]);
		Run run = { .seed = xstrdup(f[2]), .seconds = secs };
		read_run(&run, f[4]);
		PUSH(c->runs, c->nruns, run);
	}
	free(line);
	if (nconfigs == 0)
		fail("the manifest names no configuration");
}

/* ---- statistics over seeds ---- */

typedef enum { M_TEST_ACC, M_TRAIN_ACC, M_ANGLE, M_NORM, M_DELTA, M_RATE } Metric;

static const EpochRec *run_epoch(const Run *r, int epoch)
{
	for (int i = 0; i < r->nepochs; i++)
		if (r->epochs[i].epoch == epoch)
			return &r->epochs[i];
	return NULL;
}

static const EpochRec *run_last(const Run *r)
{
	const EpochRec *last = &r->epochs[0];
	for (int i = 1; i < r->nepochs; i++)
		if (r->epochs[i].epoch > last->epoch)
			last = &r->epochs[i];
	return last;
}

/* The metric's value in one epoch record (NaN if absent or null). */
static double metric_value(const EpochRec *e, Metric m, const char *layer)
{
	switch (m) {
	case M_TEST_ACC: return e->test_acc;
	case M_TRAIN_ACC: return e->train_acc;
	case M_RATE: return e->samples_per_sec;
	default: break;
	}
	for (int i = 0; i < e->nlayers; i++) {
		const LayerRec *l = &e->layers[i];
		if (strcmp(l->name, layer) != 0)
			continue;
		return m == M_ANGLE ? l->angle : m == M_NORM ? l->norm_ratio : l->delta;
	}
	return NAN;
}

typedef struct {
	int n;
	double mean, std, min, max;   /* std: sample standard deviation (n - 1) */
} Stats;

static Stats stats_of(const double *v, int count)
{
	Stats s = { 0, 0, NAN, INFINITY, -INFINITY };
	for (int i = 0; i < count; i++)
		if (isfinite(v[i])) {
			s.n++;
			s.mean += v[i];
			s.min = fmin(s.min, v[i]);
			s.max = fmax(s.max, v[i]);
		}
	if (s.n == 0) {
		s.mean = NAN;
		return s;
	}
	s.mean /= s.n;
	if (s.n > 1) {
		double ss = 0;
		for (int i = 0; i < count; i++)
			if (isfinite(v[i]))
				ss += (v[i] - s.mean) * (v[i] - s.mean);
		s.std = sqrt(ss / (s.n - 1));
	}
	return s;
}

/* Over a configuration's seeds: the metric at one epoch, or (epoch 0) at
 * each run's last epoch. */
static Stats config_stats(const Config *c, Metric m, const char *layer, int epoch)
{
	double *v = xrealloc(NULL, (c->nruns + 1) * sizeof *v);
	for (int i = 0; i < c->nruns; i++) {
		const EpochRec *e = epoch ? run_epoch(&c->runs[i], epoch) : run_last(&c->runs[i]);
		v[i] = e ? metric_value(e, m, layer) : NAN;
	}
	Stats s = stats_of(v, c->nruns);
	free(v);
	return s;
}

/* The mean over all epochs and seeds (for throughput). */
static double config_mean_all(const Config *c, Metric m)
{
	double sum = 0;
	int n = 0;
	for (int i = 0; i < c->nruns; i++)
		for (int k = 0; k < c->runs[i].nepochs; k++) {
			double x = metric_value(&c->runs[i].epochs[k], m, NULL);
			if (isfinite(x)) {
				sum += x;
				n++;
			}
		}
	return n ? sum / n : NAN;
}

static const char *config_rule(const Config *c, const char *layer)
{
	for (int i = 0; i < c->nspec; i++)
		if (strcmp(c->layer_names[i], layer) == 0)
			return c->layer_rules[i];
	return NULL;
}

/* The legend's and tables' short label: the rule, or h1/h2/out rules. */
static void config_label(const Config *c, char *buf, size_t size)
{
	if (!c->mixed) {
		snprintf(buf, size, "%s", c->layer_rules[0]);
		return;
	}
	size_t len = 0;
	buf[0] = '\0';
	for (int i = 0; i < c->nspec && len < size; i++)
		len += snprintf(buf + len, size - len, "%s%s", i ? "/" : "", c->layer_rules[i]);
}

/* ---- SVG ---- */

static const char *palette[] = {
	"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
	"#e377c2", "#17becf", "#7f7f7f", "#bcbd22", "#000000", "#393b79",
	"#e6ab02", "#a6761d", "#fb9a99", "#66a61e",
};
enum { NPALETTE = sizeof palette / sizeof palette[0] };

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

/* A 1, 2 or 5 times a power of ten near range / target. */
static double nice_step(double range, int target)
{
	double raw = range / target;
	double mag = pow(10, floor(log10(raw)));
	double r = raw / mag;
	return (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10) * mag;
}

typedef struct {
	double lo, hi, step;
} Axis;

static Axis axis_for(double lo, double hi, int target)
{
	if (!(hi > lo)) {   /* a single value: give it room */
		double pad = fabs(lo) > 0 ? fabs(lo) * 0.05 : 1;
		lo -= pad;
		hi += pad;
	}
	Axis a;
	a.step = nice_step(hi - lo, target);
	a.lo = floor(lo / a.step + 1e-9) * a.step;
	a.hi = ceil(hi / a.step - 1e-9) * a.step;
	return a;
}

static void format_tick(char *buf, size_t size, double v, double step)
{
	int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
	snprintf(buf, size, "%.*f", decimals, fabs(v) < step * 1e-6 ? 0.0 : v);
}

enum {
	PANEL_W = 320, PANEL_H = 280, MARGIN_L = 64, MARGIN_T = 66, MARGIN_B = 56,
	PANEL_GAP = 56, LEGEND_W = 280, LEGEND_ROW = 18,
};

typedef struct {
	const char *file, *title, *subtitle, *ylabel;
	Metric metric;
	bool per_layer;      /* one panel per layer; else one panel */
	bool y_from_zero;    /* angles: start the axis at 0 */
} PlotSpec;

static double plot_value(const Config *c, const PlotSpec *ps, const char *layer, int epoch)
{
	Stats s = config_stats(c, ps->metric, layer, epoch);
	return s.n ? s.mean : NAN;
}

static void draw_panel(FILE *f, const PlotSpec *ps, const char *layer, double x0, double y0,
                       Axis xa, Axis ya, bool first)
{
	double w = PANEL_W, h = PANEL_H;
#define PX(v) (x0 + ((v) - xa.lo) / (xa.hi - xa.lo) * w)
#define PY(v) (y0 + h - ((v) - ya.lo) / (ya.hi - ya.lo) * h)
	fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"white\" stroke=\"#444\"/>\n",
	        x0, y0, w, h);
	char buf[64];
	for (double t = ya.lo; t <= ya.hi + ya.step * 1e-6; t += ya.step) {
		double y = PY(t);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n",
		        x0, y, x0 + w, y);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>\n",
		        x0 - 5, y, x0, y);
		format_tick(buf, sizeof buf, t, ya.step);
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", x0 - 8, y + 4, buf);
	}
	for (double t = ceil(xa.lo / xa.step - 1e-9) * xa.step; t <= xa.hi + 1e-9; t += xa.step) {
		if (t < 1 - 1e-9)
			continue;   /* there is no epoch 0 */
		double x = PX(t);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>\n",
		        x, y0 + h, x, y0 + h + 5);
		format_tick(buf, sizeof buf, t, 1);
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", x, y0 + h + 19, buf);
	}
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">epoch</text>\n", x0 + w / 2,
	        y0 + h + 40);
	if (first) {   /* the panels share the y axis: label it once */
		fprintf(f, "<text transform=\"translate(%.1f,%.1f) rotate(-90)\" text-anchor=\"middle\">",
		        x0 - 46, y0 + h / 2);
		svg_text(f, ps->ylabel);
		fputs("</text>\n", f);
	}
	if (layer) {
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-weight=\"bold\">layer ",
		        x0 + w / 2, y0 - 8);
		svg_text(f, layer);
		fputs("</text>\n", f);
	}

	/* One polyline per unbroken stretch of epochs with a value, and a
	 * marker on every point so that a single epoch still shows. */
	for (int ci = 0; ci < nconfigs; ci++) {
		const Config *c = &configs[ci];
		const char *colour = palette[ci % NPALETTE];
		const char *dash = c->mixed ? " stroke-dasharray=\"7,4\"" : "";
		bool open = false;
		for (int ep = 1; ep <= max_epoch; ep++) {
			double v = plot_value(c, ps, layer, ep);
			if (!isfinite(v)) {
				if (open)
					fputs("\"/>\n", f);
				open = false;
				continue;
			}
			if (!open)
				fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"",
				        colour, dash);
			fprintf(f, "%s%.1f,%.1f", open ? " " : "", PX(ep), PY(v));
			open = true;
		}
		if (open)
			fputs("\"/>\n", f);
		for (int ep = 1; ep <= max_epoch; ep++) {
			double v = plot_value(c, ps, layer, ep);
			if (isfinite(v))
				fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(ep), PY(v),
				        colour);
		}
	}
#undef PX
#undef PY
}

static void draw_legend(FILE *f, double x, double y)
{
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-weight=\"bold\">rules</text>\n", x,
	        y);
	for (int ci = 0; ci < nconfigs; ci++) {
		const Config *c = &configs[ci];
		double ry = y + (ci + 1) * LEGEND_ROW;
		char label[256];
		if (c->mixed) {
			/* Spell out the layers: "h1 bp, h2 kp, out wm". */
			size_t len = 0;
			label[0] = '\0';
			for (int i = 0; i < c->nspec && len < sizeof label; i++)
				len += snprintf(label + len, sizeof label - len, "%s%s %s", i ? ", " : "",
				                c->layer_names[i], c->layer_rules[i]);
		} else {
			config_label(c, label, sizeof label);
		}
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>\n",
		        x, ry - 4, x + 26, ry - 4, palette[ci % NPALETTE],
		        c->mixed ? " stroke-dasharray=\"7,4\"" : "");
		fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", x + 13, ry - 4,
		        palette[ci % NPALETTE]);
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", x + 32, ry);
		svg_text(f, label);
		if (c->nruns == 0)
			fputs(" (error: no data)", f);
		fputs("</text>\n", f);
	}
}

static void write_plot(const char *dir, const PlotSpec *ps)
{
	int npanels = ps->per_layer ? nall_layers : 1;
	double lo = INFINITY, hi = -INFINITY;
	for (int p = 0; p < npanels; p++)
		for (int ci = 0; ci < nconfigs; ci++)
			for (int ep = 1; ep <= max_epoch; ep++) {
				double v = plot_value(&configs[ci], ps, ps->per_layer ? all_layers[p] : NULL, ep);
				if (isfinite(v)) {
					lo = fmin(lo, v);
					hi = fmax(hi, v);
				}
			}
	bool empty = !(lo <= hi);
	if (!empty) {   /* headroom, so that a line on the edge stays visible */
		double pad = (hi > lo ? hi - lo : fabs(hi)) * 0.03;
		lo -= pad;
		hi += pad;
	}
	if (ps->y_from_zero && !empty)
		lo = 0;

	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, ps->file);
	FILE *f = fopen(path, "w");
	if (!f)
		fail("%s: %s", path, strerror(errno));
	int legend_h = (nconfigs + 1) * LEGEND_ROW + 10;
	int width = MARGIN_L + npanels * PANEL_W + (npanels - 1) * PANEL_GAP + 30 + LEGEND_W;
	int height = MARGIN_T + (PANEL_H > legend_h ? PANEL_H : legend_h) + MARGIN_B;
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
	        "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n",
	        width, height, width, height);
	fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", width, height);
	fprintf(f, "<text x=\"%d\" y=\"22\" font-size=\"15\" font-weight=\"bold\">", MARGIN_L);
	svg_text(f, ps->title);
	fputs("</text>\n", f);
	fprintf(f, "<text x=\"%d\" y=\"40\" fill=\"#555\">", MARGIN_L);
	svg_text(f, ps->subtitle);
	fputs("</text>\n", f);
	if (empty) {
		fprintf(f, "<text x=\"%d\" y=\"%d\">no data: no run reported this value "
		        "(all null or missing)</text>\n", MARGIN_L, MARGIN_T + 20);
	} else {
		Axis ya = axis_for(lo, hi, 6);
		Axis xa;
		if (max_epoch <= 1) {
			xa = (Axis){ 0.5, 1.5, 1 };
		} else {
			xa.lo = 1;
			xa.hi = max_epoch;
			xa.step = fmax(1, ceil(nice_step(max_epoch - 1, 8)));
		}
		for (int p = 0; p < npanels; p++)
			draw_panel(f, ps, ps->per_layer ? all_layers[p] : NULL,
			           MARGIN_L + p * (PANEL_W + PANEL_GAP), MARGIN_T, xa, ya, p == 0);
	}
	draw_legend(f, MARGIN_L + npanels * PANEL_W + (npanels - 1) * PANEL_GAP + 30, MARGIN_T + 4);
	fputs("</svg>\n", f);
	if (fclose(f) != 0)
		fail("%s: write error", path);
}

/* ---- Markdown ---- */

static void md_number(char *buf, size_t size, double v, int decimals)
{
	if (isfinite(v))
		snprintf(buf, size, "%.*f", decimals, v);
	else
		snprintf(buf, size, "—");
}

static void md_mean_spread(char *buf, size_t size, Stats s, int decimals)
{
	if (s.n == 0)
		snprintf(buf, size, "—");
	else if (s.n == 1)
		snprintf(buf, size, "%.*f", decimals, s.mean);
	else
		snprintf(buf, size, "%.*f ± %.*f", decimals, s.mean, decimals, s.std);
}

static int config_attempts(const Config *c)
{
	int n = c->nruns;
	for (int i = 0; i < c->nerrors; i++)
		if (strcmp(c->errors[i].seed, "-") != 0)
			n++;
	return n;
}

static void md_summary(FILE *out)
{
	fputs("| configuration |", out);
	for (int i = 0; i < nall_layers; i++)
		fprintf(out, " %s |", all_layers[i]);
	fputs(" seeds ok | test acc % (mean ± std) | min – max | train acc % | samples/s |\n|---|", out);
	for (int i = 0; i < nall_layers; i++)
		fputs("---|", out);
	fputs("---|---|---|---|---|\n", out);
	for (int ci = 0; ci < nconfigs; ci++) {
		const Config *c = &configs[ci];
		fprintf(out, "| [%s](#%s) |", c->name, c->name);
		for (int i = 0; i < nall_layers; i++) {
			const char *r = config_rule(c, all_layers[i]);
			fprintf(out, " %s |", r ? r : "—");
		}
		if (c->nruns == 0) {
			fprintf(out, " 0 of %d | **ERROR** (see below) | | | |\n", config_attempts(c));
			continue;
		}
		Stats acc = config_stats(c, M_TEST_ACC, NULL, 0);
		Stats tr = config_stats(c, M_TRAIN_ACC, NULL, 0);
		char a[64], lo[32], hi[32], t[32], rate[32];
		md_mean_spread(a, sizeof a, acc, 2);
		md_number(lo, sizeof lo, acc.min, 2);
		md_number(hi, sizeof hi, acc.max, 2);
		md_number(t, sizeof t, tr.mean, 2);
		md_number(rate, sizeof rate, config_mean_all(c, M_RATE), 0);
		fprintf(out, " %d of %d%s | %s | %s – %s | %s | %s |\n", c->nruns, config_attempts(c),
		        c->nerrors ? " **ERROR**" : "", a, lo, hi, t, rate);
	}
}

static void md_config(FILE *out, const Config *c)
{
	fprintf(out, "\n### %s\n\n", c->name);
	fprintf(out, "Rules: `%s`.", c->spec);
	if (c->nruns) {
		Stats acc = config_stats(c, M_TEST_ACC, NULL, 0);
		double secs = 0;
		for (int i = 0; i < c->nruns; i++)
			secs += c->runs[i].seconds;
		fprintf(out, " Test accuracy after the last epoch: **%.2f %%**", acc.mean);
		if (acc.n > 1)
			fprintf(out, " ± %.2f (sample std over %d seeds; min %.2f, max %.2f)", acc.std, acc.n,
			        acc.min, acc.max);
		else
			fprintf(out, " (one seed)");
		fprintf(out, ". Wall time per run: %.0f s.\n\n", secs / c->nruns);
		fputs("| layer | rule | angle(B,W) ° after epoch 1 | angle(B,W) ° final | \\|B\\|/\\|W\\| final "
		      "| delta angle ° final |\n|---|---|---|---|---|---|\n", out);
		for (int i = 0; i < c->nspec; i++) {
			const char *layer = c->layer_names[i];
			char a1[64], af[64], nr[64], d[64];
			md_mean_spread(a1, sizeof a1, config_stats(c, M_ANGLE, layer, 1), 1);
			md_mean_spread(af, sizeof af, config_stats(c, M_ANGLE, layer, 0), 1);
			md_mean_spread(nr, sizeof nr, config_stats(c, M_NORM, layer, 0), 2);
			md_mean_spread(d, sizeof d, config_stats(c, M_DELTA, layer, 0), 1);
			fprintf(out, "| %s | %s | %s | %s | %s | %s |\n", layer, c->layer_rules[i], a1, af, nr, d);
		}
	} else {
		fputs(" No run finished.\n", out);
	}
	for (int i = 0; i < c->nerrors; i++) {
		RunError *e = &c->errors[i];
		for (char *p = e->message; *p; p++)
			if (*p == '`')
				*p = '\'';   /* it would end the code span */
		if (strcmp(e->seed, "-") == 0)
			fprintf(out, "\n**ERROR** (compile): `%s`\n", e->message);
		else
			fprintf(out, "\n**ERROR** (seed %s): `%s`\n", e->seed, e->message);
	}
}

/* Our test error (100 - accuracy) beside a published one, for the
 * configurations that have one, each as a gap to the configuration "bp". */
static bool any_published(void)
{
	for (int ci = 0; ci < nconfigs; ci++)
		if (!isnan(configs[ci].published))
			return true;
	return false;
}

static void md_gap(char *buf, size_t size, double v, double bp)
{
	if (isfinite(v) && isfinite(bp))
		snprintf(buf, size, "%+.2f", v - bp);
	else
		snprintf(buf, size, "—");
}

/* "bp 9.20 < usf 9.69 < ...": the configurations with a published error,
 * ordered by one of the two errors (ours: mean over seeds). */
static int rank_by_ours;   /* qsort has no context argument */

static double rank_error(const Config *c)
{
	if (!rank_by_ours)
		return c->published;
	Stats acc = config_stats(c, M_TEST_ACC, NULL, 0);
	return acc.n ? 100 - acc.mean : NAN;
}

static int by_error(const void *a, const void *b)
{
	double x = rank_error(*(const Config *const *)a), y = rank_error(*(const Config *const *)b);
	if (isnan(x) || isnan(y))
		return isnan(x) - isnan(y);   /* missing last */
	return (x > y) - (x < y);
}

static void md_ranking(FILE *out, bool ours)
{
	const Config **order = xrealloc(NULL, nconfigs * sizeof *order);
	int n = 0;
	rank_by_ours = ours;   /* rank_error reads it */
	for (int ci = 0; ci < nconfigs; ci++)
		if (!isnan(configs[ci].published) && !isnan(rank_error(&configs[ci])))
			order[n++] = &configs[ci];
	qsort(order, n, sizeof *order, by_error);
	fputs(ours ? "- ours: " : "- published: ", out);
	for (int i = 0; i < n; i++) {
		char label[256], v[32];
		config_label(order[i], label, sizeof label);
		md_number(v, sizeof v, rank_error(order[i]), 2);
		fprintf(out, "%s%s %s", i ? " < " : "", label, v);
	}
	if (n == 0)
		fputs("(no run finished)", out);
	fputc('\n', out);
	free(order);
}

static void md_comparison(FILE *out)
{
	const Config *bp = find_config("bp");
	double our_bp = NAN;
	if (bp && bp->nruns)
		our_bp = 100 - config_stats(bp, M_TEST_ACC, NULL, 0).mean;
	fputs("## Comparison with the published errors\n\n"
	      "Test error % = 100 − test accuracy after the last epoch: ours is the mean ± sample std "
	      "over the seeds that finished. Gap: the error minus bp's error in the same column, in "
	      "points (positive: worse than bp). Per layer: angle(B,W) ° / delta angle ° after the "
	      "last epoch, mean over seeds (— : not reported; bp and dfa layers have no B).\n\n"
	      "| rule | seeds ok | test error % (ours) | test error % (published) | gap to bp (ours) "
	      "| gap to bp (published) |",
	      out);
	for (int i = 0; i < nall_layers; i++)
		fprintf(out, " %s angle / δ |", all_layers[i]);
	fputs("\n|---|---|---|---|---|---|", out);
	for (int i = 0; i < nall_layers; i++)
		fputs("---|", out);
	fputc('\n', out);
	for (int ci = 0; ci < nconfigs; ci++) {
		const Config *c = &configs[ci];
		char label[256], err[64], pub[32], gap[32], pub_gap[32];
		config_label(c, label, sizeof label);
		Stats acc = config_stats(c, M_TEST_ACC, NULL, 0);
		Stats e = acc;
		e.mean = 100 - acc.mean;   /* the spread of 100 - x is that of x */
		md_mean_spread(err, sizeof err, e, 2);
		md_number(pub, sizeof pub, c->published, 2);
		md_gap(gap, sizeof gap, acc.n ? e.mean : NAN, our_bp);
		md_gap(pub_gap, sizeof pub_gap, c->published, bp ? bp->published : NAN);
		fprintf(out, "| [%s](#%s) | %d of %d%s | %s | %s | %s | %s |", label, c->name, c->nruns,
		        config_attempts(c), c->nerrors ? " **ERROR**" : "", c->nruns ? err : "**ERROR**",
		        pub, gap, pub_gap);
		for (int i = 0; i < nall_layers; i++) {
			char a[32], d[32];
			md_number(a, sizeof a, config_stats(c, M_ANGLE, all_layers[i], 0).mean, 1);
			md_number(d, sizeof d, config_stats(c, M_DELTA, all_layers[i], 0).mean, 1);
			fprintf(out, " %s / %s |", a, d);
		}
		fputc('\n', out);
	}
	fputs("\nRules with a published error, from the lowest error to the highest:\n\n", out);
	md_ranking(out, true);
	md_ranking(out, false);
	fputc('\n', out);
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3 || argv[1][0] == '-') {
		fprintf(stderr, "usage: plot OUTDIR [LABEL] < MANIFEST\n"
		        "writes OUTDIR/accuracy.svg, angle.svg, delta_angle.svg; prints Markdown tables\n");
		return 2;
	}
	read_manifest(stdin);
	if (max_epoch == 0)
		max_epoch = 1;

	/* With a label, every title names the network and the data. */
	const char *label = argc == 3 ? argv[2] : NULL;
	char acc_title[512], angle_title[512], delta_title[512];
	snprintf(acc_title, sizeof acc_title, "%s%stest accuracy (mean over seeds)",
	         label ? label : "Fashion-MNIST", label ? ": " : " ");
	snprintf(angle_title, sizeof angle_title, "%s%sAngle between feedback B and forward W, per layer "
	         "(mean over seeds)", label ? label : "", label ? ": " : "");
	snprintf(delta_title, sizeof delta_title, "%s%sDelta angle: error sent to the layer vs backprop's, "
	         "per layer (mean over seeds)", label ? label : "", label ? ": " : "");
	const PlotSpec plots[] = {
		{ "accuracy.svg", acc_title,
	  "after each epoch, on the whole test set; dashed: per-layer mixes", "test accuracy (%)",
		  M_TEST_ACC, false, false },
		{ "angle.svg", angle_title,
	  "0 = B points like W; bp and dfa layers have no B, so no line; dashed: per-layer mixes",
		  "angle(B, W) (degrees)", M_ANGLE, true, true },
		{ "delta_angle.svg", delta_title,
	  "on a fixed probe batch; 0 = the error backprop would send; dashed: per-layer mixes",
		  "delta angle (degrees)", M_DELTA, true, true },
	};
	for (size_t i = 0; i < sizeof plots / sizeof plots[0]; i++)
		write_plot(argv[1], &plots[i]);

	if (any_published())
		md_comparison(stdout);

	fputs("## Summary\n\n"
	      "Test accuracy after the last epoch: mean ± sample standard deviation (n − 1) over the "
	      "seeds that finished, and min – max. Train accuracy: mean over the last epoch's batches, "
	      "averaged over seeds. samples/s: training throughput, averaged over epochs and seeds.\n\n",
	      stdout);
	md_summary(stdout);
	fputs("\n## Per configuration\n\n"
	      "Per layer, mean ± sample std over seeds at the first and the last epoch. "
	      "angle(B,W): between the feedback matrix and the forward weights; "
	      "|B|/|W|: their norm ratio; delta angle: on a fixed probe batch, between the error the "
	      "rule sends to the layer and the error backprop would send. "
	      "— : not reported (bp and dfa layers have no B; a value the build does not measure; "
	      "NaN). "
	      "A layer's delta angle is about the error it receives, which the rules of the layers "
	      "above it carry down: the output layer's is 0, the first hidden layer's depends on the "
	      "rules above it. The first layer sends no error further, so its own rule does not change "
	      "training (its B is still measured).\n",
	      stdout);
	for (int ci = 0; ci < nconfigs; ci++)
		md_config(stdout, &configs[ci]);
	if (fflush(stdout) != 0 || ferror(stdout))
		fail("write error on standard output");
	return 0;
}
