/* spec.c: parses the spec text a compiled network embeds (wtn_abi.h) into an
 * RtModel, checks it for consistency, and allocates the buffers it plans.
 * The text is machine-written, so the parser is strict: every record and key
 * must be present exactly once and in the documented order. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "wtnrt.h"

static int spec_line;   /* line being parsed, for messages */

static int spec_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "wtn: bad spec: line %d: ", spec_line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -1;
}

/* ---- words: a line split at single spaces ---- */
#define MAX_WORDS 96
typedef struct Line {
	char *word[MAX_WORDS];
	int nwords;
} Line;

/* Splits buf (modified in place). Empty words (double spaces, leading or
 * trailing spaces) are malformed. */
static int split_line(char *buf, Line *ln)
{
	ln->nwords = 0;
	if (*buf == '\0')
		return spec_error("empty line");
	for (char *p = buf;;) {
		char *sp = strchr(p, ' ');
		if (sp)
			*sp = '\0';
		if (*p == '\0')
			return spec_error("empty word (stray space)");
		if (ln->nwords == MAX_WORDS)
			return spec_error("too many words");
		ln->word[ln->nwords++] = p;
		if (!sp)
			break;
		p = sp + 1;
	}
	return 0;
}

/* ---- typed fields of one record ---- */
enum { F_INT, F_LONG, F_DOUBLE, F_STR, F_ENUM, F_SHAPE };
typedef struct Field {
	const char *key;
	int type;
	void *ptr;
	size_t size;                 /* F_STR: capacity */
	const char *const *names;    /* F_ENUM: NULL-terminated */
} Field;

static const char *const act_names[] = {"identity", "relu", "tanh", "sigmoid", NULL};
static const char *const loss_names[] = {"softmax_cross_entropy", "mse", NULL};
static const char *const init_names[] = {"he", "xavier", "normal", "uniform", NULL};
static const char *const start_names[] = {"none", "like_w", "sign_w", "randmag_sign_w", NULL};
static const char *const carry_names[] = {"W", "B", "D", NULL};
static const char *const change_names[] = {"none", "as_w", "sign_w", "randmag_sign_w",
                                           "redraw_sign_w", "mirror", NULL};
static const char *const opt_names[] = {"sgd", "adam", NULL};
static const char *const sched_names[] = {"none", "step", "cosine", NULL};
static const char *const buf_kind_names[] = {"param", "state", "grad", "batch", NULL};

static int parse_long(const char *key, const char *s, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (end == s || *end != '\0' || errno)
		return spec_error("%s=%s: not an integer", key, s);
	*out = v;
	return 0;
}

static int parse_int(const char *key, const char *s, int *out)
{
	long v;
	if (parse_long(key, s, &v) < 0)
		return -1;
	if (v < -2147483647L || v > 2147483647L)
		return spec_error("%s=%s: out of range", key, s);
	*out = (int)v;
	return 0;
}

static int parse_double(const char *key, const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || *end != '\0' || !isfinite(v))
		return spec_error("%s=%s: not a finite number", key, s);
	*out = v;
	return 0;
}

/* "AxB"; a bare "N" is taken as a vector 1xN. */
static int parse_shape(const char *key, const char *s, int *rc)
{
	char *end;
	long a = strtol(s, &end, 10), b;
	if (end == s || a <= 0 || a > 1L << 30)
		return spec_error("%s=%s: not a shape AxB", key, s);
	if (*end == '\0') {
		rc[0] = 1, rc[1] = (int)a;
		return 0;
	}
	const char *p = end + 1;
	if (*end != 'x')
		return spec_error("%s=%s: not a shape AxB", key, s);
	b = strtol(p, &end, 10);
	if (end == p || *end != '\0' || b <= 0 || b > 1L << 30)
		return spec_error("%s=%s: not a shape AxB", key, s);
	rc[0] = (int)a, rc[1] = (int)b;
	return 0;
}

static int parse_field(const Field *f, const char *val)
{
	switch (f->type) {
	case F_INT: return parse_int(f->key, val, f->ptr);
	case F_LONG: return parse_long(f->key, val, f->ptr);
	case F_DOUBLE: return parse_double(f->key, val, f->ptr);
	case F_SHAPE: return parse_shape(f->key, val, f->ptr);
	case F_STR:
		if (strlen(val) >= f->size)
			return spec_error("%s=%s: too long", f->key, val);
		strcpy(f->ptr, val);
		return 0;
	case F_ENUM:
		for (int i = 0; f->names[i]; i++)
			if (strcmp(f->names[i], val) == 0) {
				*(int *)f->ptr = i;
				return 0;
			}
		return spec_error("%s=%s: unknown value", f->key, val);
	}
	return spec_error("internal: bad field type");
}

/* Parses words [1..) of ln as key=value in exactly the order of fields[];
 * words after them are left for the caller (returned via *next). */
static int parse_fields(const Line *ln, const Field *fields, int nfields, int *next)
{
	if (ln->nwords - 1 < nfields)
		return spec_error("%s: expected key %s", ln->word[0],
		                  fields[ln->nwords - 1].key);
	for (int i = 0; i < nfields; i++) {
		char *w = ln->word[i + 1];
		char *eq = strchr(w, '=');
		size_t klen = strlen(fields[i].key);
		if (!eq || (size_t)(eq - w) != klen || strncmp(w, fields[i].key, klen) != 0)
			return spec_error("%s: expected %s=..., found '%s'", ln->word[0],
			                  fields[i].key, w);
		if (parse_field(&fields[i], eq + 1) < 0)
			return -1;
	}
	*next = nfields + 1;
	return 0;
}

static int parse_exact(const Line *ln, const Field *fields, int nfields)
{
	int next;
	if (parse_fields(ln, fields, nfields, &next) < 0)
		return -1;
	if (next != ln->nwords)
		return spec_error("%s: unexpected '%s'", ln->word[0], ln->word[next]);
	return 0;
}

#define NFIELDS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- records ---- */
static int parse_network(const Line *ln, RtModel *m)
{
	Field f[] = {{"name", F_STR, m->name, sizeof m->name, NULL}};
	return parse_exact(ln, f, NFIELDS(f));
}

static int parse_input(const Line *ln, RtModel *m)
{
	Field f[] = {
		{"name", F_STR, m->input_name, sizeof m->input_name, NULL},
		{"units", F_INT, &m->in_units, 0, NULL},
		{"slot", F_INT, &m->x_slot, 0, NULL},
	};
	if (parse_exact(ln, f, NFIELDS(f)) < 0)
		return -1;
	if (m->in_units <= 0)
		return spec_error("input units must be positive");
	return 0;
}

static int parse_buf(const Line *ln, RtModel *m)
{
	RtBuf b = {0};
	int slot, shape[2];
	Field f[] = {
		{"slot", F_INT, &slot, 0, NULL},
		{"name", F_STR, b.name, sizeof b.name, NULL},
		{"kind", F_ENUM, &b.kind, 0, buf_kind_names},
		{"elems", F_LONG, &b.elems, 0, NULL},
		{"shape", F_SHAPE, shape, 0, NULL},
	};
	if (parse_exact(ln, f, NFIELDS(f)) < 0)
		return -1;
	if (slot != m->nbufs)
		return spec_error("buf slot=%d out of order (expected %d)", slot, m->nbufs);
	if (b.elems <= 0)
		return spec_error("buf %s: elems must be positive", b.name);
	b.rows = shape[0], b.cols = shape[1];
	if (b.kind != RT_BUF_BATCH && (long)b.rows * b.cols != b.elems)
		return spec_error("buf %s: shape %dx%d does not hold %ld elements",
		                  b.name, b.rows, b.cols, b.elems);
	m->bufs = realloc(m->bufs, (m->nbufs + 1) * sizeof *m->bufs);
	m->bufs[m->nbufs++] = b;
	return 0;
}

static int parse_rule_args(const Line *ln, int first, RtLayer *l)
{
	for (int i = first; i < ln->nwords; i++) {
		char *w = ln->word[i];
		char *eq = strchr(w, '=');
		if (strncmp(w, "arg.", 4) != 0 || !eq || eq == w + 4)
			return spec_error("layer %s: unexpected '%s'", l->name, w);
		if (l->nargs == RT_MAX_RULE_ARGS)
			return spec_error("layer %s: too many rule arguments", l->name);
		size_t len = eq - (w + 4);
		if (len >= sizeof l->arg_name[0])
			return spec_error("layer %s: rule argument name too long", l->name);
		memcpy(l->arg_name[l->nargs], w + 4, len);
		l->arg_name[l->nargs][len] = '\0';
		for (int j = 0; j < l->nargs; j++)
			if (strcmp(l->arg_name[j], l->arg_name[l->nargs]) == 0)
				return spec_error("layer %s: duplicate rule argument %s",
				                  l->name, l->arg_name[j]);
		if (parse_double(w, eq + 1, &l->arg[l->nargs]) < 0)
			return -1;
		l->nargs++;
	}
	return 0;
}

static int parse_layer(const Line *ln, RtModel *m)
{
	RtLayer l = {0};
	char kind[16];
	Field f[] = {
		{"name", F_STR, l.name, sizeof l.name, NULL},
		{"kind", F_STR, kind, sizeof kind, NULL},
		{"input", F_INT, &l.input, 0, NULL},
		{"in", F_INT, &l.in, 0, NULL},
		{"out", F_INT, &l.out, 0, NULL},
		{"act", F_ENUM, &l.act, 0, act_names},
		{"bias", F_INT, &l.bias, 0, NULL},
		{"init", F_ENUM, &l.init, 0, init_names},
		{"init_arg", F_DOUBLE, &l.init_arg, 0, NULL},
		{"rule", F_STR, l.rule, sizeof l.rule, NULL},
		{"start", F_ENUM, &l.start, 0, start_names},
		{"carry", F_ENUM, &l.carry, 0, carry_names},
		{"change", F_ENUM, &l.change, 0, change_names},
		{"mirror", F_INT, &l.mirror, 0, NULL},
		{"W", F_INT, &l.W, 0, NULL}, {"b", F_INT, &l.b, 0, NULL},
		{"B", F_INT, &l.B, 0, NULL}, {"D", F_INT, &l.D, 0, NULL},
		{"M", F_INT, &l.M, 0, NULL},
		{"gW", F_INT, &l.gW, 0, NULL}, {"gb", F_INT, &l.gb, 0, NULL},
		{"mW", F_INT, &l.mW, 0, NULL}, {"mb", F_INT, &l.mb, 0, NULL},
		{"mB", F_INT, &l.mB, 0, NULL}, {"vW", F_INT, &l.vW, 0, NULL},
		{"vb", F_INT, &l.vb, 0, NULL}, {"vB", F_INT, &l.vB, 0, NULL},
		{"y", F_INT, &l.y, 0, NULL}, {"d", F_INT, &l.d, 0, NULL},
	};
	int next;
	if (parse_fields(ln, f, NFIELDS(f), &next) < 0)
		return -1;
	if (strcmp(kind, "dense") != 0)
		return spec_error("layer %s: unknown kind %s", l.name, kind);
	if (parse_rule_args(ln, next, &l) < 0)
		return -1;
	m->layers = realloc(m->layers, (m->nlayers + 1) * sizeof *m->layers);
	m->layers[m->nlayers++] = l;
	return 0;
}

static int parse_loss(const Line *ln, RtModel *m)
{
	Field f[] = {{"kind", F_ENUM, &m->loss, 0, loss_names}};
	return parse_exact(ln, f, NFIELDS(f));
}

static int parse_train(const Line *ln, RtModel *m)
{
	RtTrain *t = &m->train;
	Field f[] = {
		{"data", F_STR, t->data, sizeof t->data, NULL},
		{"batch", F_INT, &t->batch, 0, NULL},
		{"epochs", F_INT, &t->epochs, 0, NULL},
		{"seed", F_LONG, &t->seed, 0, NULL},
		{"optimizer", F_ENUM, &t->optimizer, 0, opt_names},
		{"lr", F_DOUBLE, &t->lr, 0, NULL},
		{"momentum", F_DOUBLE, &t->momentum, 0, NULL},
		{"nesterov", F_INT, &t->nesterov, 0, NULL},
		{"weight_decay", F_DOUBLE, &t->weight_decay, 0, NULL},
		{"beta1", F_DOUBLE, &t->beta1, 0, NULL},
		{"beta2", F_DOUBLE, &t->beta2, 0, NULL},
		{"eps", F_DOUBLE, &t->eps, 0, NULL},
		{"schedule", F_ENUM, &t->schedule, 0, sched_names},
		{"step_every", F_INT, &t->step_every, 0, NULL},
		{"gamma", F_DOUBLE, &t->gamma, 0, NULL},
		{"min_lr", F_DOUBLE, &t->min_lr, 0, NULL},
	};
	if (parse_exact(ln, f, NFIELDS(f)) < 0)
		return -1;
	if (t->batch <= 0 || t->epochs <= 0)
		return spec_error("train: batch and epochs must be positive");
	return 0;
}

/* ---- consistency checks after the whole text is read ---- */
static int check_slot(const RtModel *m, const RtLayer *l, const char *what, int slot,
                      int kind, int rows, int cols, bool required)
{
	if (slot == -1) {
		if (required)
			return spec_error("layer %s: missing %s buffer", l->name, what);
		return 0;
	}
	if (slot < 0 || slot >= m->nbufs)
		return spec_error("layer %s: %s slot %d out of range", l->name, what, slot);
	const RtBuf *b = &m->bufs[slot];
	if (b->kind != kind)
		return spec_error("layer %s: %s slot %d (%s) has kind %s", l->name, what, slot,
		                  b->name, buf_kind_names[b->kind]);
	long want = (long)rows * cols;
	if (b->elems != want)
		return spec_error("layer %s: %s buffer %s has %ld elements, expected %ld",
		                  l->name, what, b->name, b->elems, want);
	if (kind != RT_BUF_BATCH && (b->rows != rows || b->cols != cols))
		return spec_error("layer %s: %s buffer %s has shape %dx%d, expected %dx%d",
		                  l->name, what, b->name, b->rows, b->cols, rows, cols);
	return 0;
}

/* A weight-mirror rule's schedule arguments must be whole numbers in range:
 * the runtime turns them into batch sizes and step counts. */
static int check_mirror_args(const RtLayer *l)
{
	static const struct { const char *name; double min; } args[] = {
		{"batch", 1}, {"every", 1}, {"warmup", 0}};
	for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
		double v = rt_rule_arg(l, args[i].name, args[i].min);
		if (v != floor(v) || v < args[i].min || v > 1e9)
			return spec_error("layer %s: rule argument %s=%g must be a whole number >= %g",
			                  l->name, args[i].name, v, args[i].min);
	}
	return 0;
}

static int check_layer(const RtModel *m, int i)
{
	const RtLayer *l = &m->layers[i];
	int n_out = m->layers[m->nlayers - 1].out;
	if (l->in <= 0 || l->out <= 0)
		return spec_error("layer %s: in and out must be positive", l->name);
	if (l->input < -1 || l->input >= i)
		return spec_error("layer %s: input %d is not an earlier layer", l->name, l->input);
	int src = l->input < 0 ? m->in_units : m->layers[l->input].out;
	if (l->in != src)
		return spec_error("layer %s: in=%d but its input has %d units", l->name, l->in, src);
	for (int j = 0; j < i; j++)
		if (strcmp(m->layers[j].name, l->name) == 0)
			return spec_error("duplicate layer name %s", l->name);
	/* Each feedback tensor exists exactly when the rule needs it: B for
	 * carry=B, D for carry=D below the output (which uses its own error),
	 * the magnitudes M for frsf. */
	bool has_B = l->carry == RT_CARRY_B;
	bool has_D = l->carry == RT_CARRY_D && i != m->nlayers - 1;
	bool has_M = l->change == RT_CHANGE_RANDMAG_SIGN_W;
	bool bias = l->bias != 0;
	/* Slots: params, gradients, optimiser states, activations. */
	if (check_slot(m, l, "W", l->W, RT_BUF_PARAM, l->out, l->in, true) < 0 ||
	    check_slot(m, l, "b", l->b, RT_BUF_PARAM, 1, l->out, bias) < 0 ||
	    check_slot(m, l, "B", l->B, RT_BUF_PARAM, l->out, l->in, has_B) < 0 ||
	    check_slot(m, l, "D", l->D, RT_BUF_PARAM, n_out, l->out, has_D) < 0 ||
	    check_slot(m, l, "M", l->M, RT_BUF_STATE, l->out, l->in, has_M) < 0 ||
	    check_slot(m, l, "gW", l->gW, RT_BUF_GRAD, l->out, l->in, true) < 0 ||
	    check_slot(m, l, "gb", l->gb, RT_BUF_GRAD, 1, l->out, bias) < 0 ||
	    check_slot(m, l, "mW", l->mW, RT_BUF_STATE, l->out, l->in, false) < 0 ||
	    check_slot(m, l, "mb", l->mb, RT_BUF_STATE, 1, l->out, false) < 0 ||
	    check_slot(m, l, "mB", l->mB, RT_BUF_STATE, l->out, l->in, false) < 0 ||
	    check_slot(m, l, "vW", l->vW, RT_BUF_STATE, l->out, l->in, false) < 0 ||
	    check_slot(m, l, "vb", l->vb, RT_BUF_STATE, 1, l->out, false) < 0 ||
	    check_slot(m, l, "vB", l->vB, RT_BUF_STATE, l->out, l->in, false) < 0 ||
	    check_slot(m, l, "y", l->y, RT_BUF_BATCH, 1, l->out, true) < 0 ||
	    check_slot(m, l, "d", l->d, RT_BUF_BATCH, 1, l->out, true) < 0)
		return -1;
	if (!has_B && l->B != -1)
		return spec_error("layer %s: B buffer but carry is not B", l->name);
	if (!has_D && l->D != -1)
		return spec_error("layer %s: D buffer but carry is not D or it is the output layer",
		                  l->name);
	if (!has_M && l->M != -1)
		return spec_error("layer %s: M buffer but change is not randmag_sign_w", l->name);
	if (l->start == RT_START_NONE && has_B)
		return spec_error("layer %s: carry=B but B has no start", l->name);
	if (!bias && l->b != -1)
		return spec_error("layer %s: bias buffer but bias=0", l->name);
	if (l->mirror != (l->change == RT_CHANGE_MIRROR))
		return spec_error("layer %s: mirror=%d disagrees with change", l->name, l->mirror);
	if (l->change == RT_CHANGE_MIRROR && check_mirror_args(l) < 0)
		return -1;
	return 0;
}

static int check_model(const RtModel *m)
{
	if (m->nlayers == 0)
		return spec_error("no layers");
	if (m->x_slot < 0 || m->x_slot >= m->nbufs || m->bufs[m->x_slot].kind != RT_BUF_BATCH ||
	    m->bufs[m->x_slot].elems != m->in_units)
		return spec_error("input slot %d is not a batch buffer of %d units",
		                  m->x_slot, m->in_units);
	for (int i = 0; i < m->nbufs; i++)
		for (int j = 0; j < i; j++)
			if (strcmp(m->bufs[i].name, m->bufs[j].name) == 0)
				return spec_error("duplicate buffer name %s", m->bufs[i].name);
	for (int i = 0; i < m->nlayers; i++)
		if (check_layer(m, i) < 0)
			return -1;
	return 0;
}

/* ---- driver ---- */
enum { R_WTN, R_NETWORK, R_INPUT, R_BUF, R_LAYER, R_LOSS, R_TRAIN, R_END, R_DONE };

/* Which record may come next given the previous one: buf and layer repeat. */
static int dispatch(const Line *ln, int *state, RtModel *m)
{
	const char *kw = ln->word[0];
	int s = *state;
	if (s == R_WTN) {
		if (strcmp(kw, "wtn") != 0 || ln->nwords != 2)
			return spec_error("expected 'wtn 1'");
		if (strcmp(ln->word[1], "1") != 0)
			return spec_error("unsupported spec version %s (this runtime reads 1)",
			                  ln->word[1]);
		*state = R_NETWORK;
		return 0;
	}
	if (s == R_NETWORK && strcmp(kw, "network") == 0)
		return *state = R_INPUT, parse_network(ln, m);
	if (s == R_INPUT && strcmp(kw, "input") == 0)
		return *state = R_BUF, parse_input(ln, m);
	if ((s == R_BUF) && strcmp(kw, "buf") == 0)
		return parse_buf(ln, m);
	if ((s == R_BUF || s == R_LAYER) && strcmp(kw, "layer") == 0)
		return *state = R_LAYER, parse_layer(ln, m);
	if (s == R_LAYER && strcmp(kw, "loss") == 0)
		return *state = R_TRAIN, parse_loss(ln, m);
	if (s == R_TRAIN && strcmp(kw, "train") == 0)
		return *state = R_END, parse_train(ln, m);
	if (s == R_END && strcmp(kw, "end") == 0 && ln->nwords == 1)
		return *state = R_DONE, 0;
	static const char *const expected[] = {
		"wtn", "network", "input", "buf or layer", "layer or loss", "loss",
		"train", "end", "nothing"};
	if (s == R_BUF && strcmp(kw, "layer") != 0 && strcmp(kw, "buf") != 0)
		return spec_error("unexpected '%s', expected buf or layer", kw);
	return spec_error("unexpected '%s', expected %s", kw,
	                  expected[s == R_LAYER ? 4 : s == R_TRAIN ? 6 : s == R_END ? 7 :
	                           s == R_DONE ? 8 : s]);
}

int rt_spec_parse(const char *text, RtModel *m)
{
	memset(m, 0, sizeof *m);
	char *copy = strdup(text);
	int state = R_WTN, rc = 0;
	Line ln;
	spec_line = 0;
	char *p = copy;
	while (*p && rc == 0) {
		char *nl = strchr(p, '\n');
		if (!nl) {
			spec_line++;
			rc = spec_error("last line has no newline");
			break;
		}
		*nl = '\0';
		spec_line++;
		rc = split_line(p, &ln);
		if (rc == 0)
			rc = dispatch(&ln, &state, m);
		p = nl + 1;
	}
	if (rc == 0 && state != R_DONE) {
		spec_line++;
		rc = spec_error("text ends before 'end'");
	}
	if (rc == 0)
		rc = check_model(m);
	free(copy);
	if (rc < 0)
		rt_spec_free(m);
	return rc;
}

void rt_spec_free(RtModel *m)
{
	free(m->layers);
	free(m->bufs);
	m->layers = NULL;
	m->bufs = NULL;
	m->nlayers = m->nbufs = 0;
}

double rt_rule_arg(const RtLayer *l, const char *name, double def)
{
	for (int i = 0; i < l->nargs; i++)
		if (strcmp(l->arg_name[i], name) == 0)
			return l->arg[i];
	return def;
}

float **rt_alloc_buffers(const RtModel *m, int max_batch)
{
	float **bufs = calloc(m->nbufs ? m->nbufs : 1, sizeof *bufs);
	if (!bufs)
		return NULL;
	for (int i = 0; i < m->nbufs; i++) {
		const RtBuf *b = &m->bufs[i];
		size_t n = b->kind == RT_BUF_BATCH ? (size_t)b->elems * max_batch : (size_t)b->elems;
		size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
		bufs[i] = aligned_alloc(64, bytes);
		if (!bufs[i]) {
			fprintf(stderr, "wtn: out of memory allocating %s (%zu bytes)\n", b->name, bytes);
			rt_free_buffers(m, bufs);
			return NULL;
		}
		memset(bufs[i], 0, bytes);
	}
	return bufs;
}

void rt_free_buffers(const RtModel *m, float **bufs)
{
	if (!bufs)
		return;
	for (int i = 0; i < m->nbufs; i++)
		free(bufs[i]);
	free(bufs);
}
