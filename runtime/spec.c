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
enum { F_INT, F_LONG, F_DOUBLE, F_STR, F_ENUM, F_DIMS, F_PAIR, F_LIST };
typedef struct Field {
	const char *key;
	int type;
	void *ptr;
	size_t size;                 /* F_STR: capacity; F_LIST: capacity in doubles */
	const char *const *names;    /* F_ENUM: NULL-terminated */
	int *count;                  /* F_DIMS, F_LIST: how many values were read */
} Field;

/* Field initialisers: every other member stays zero. */
#define FIELD(k, t, p) {.key = (k), .type = (t), .ptr = (p)}
#define FSTR(k, p) {.key = (k), .type = F_STR, .ptr = (p), .size = sizeof(p)}
#define FENUM(k, p, n) {.key = (k), .type = F_ENUM, .ptr = (p), .names = (n)}
#define FMANY(k, t, p, cap, cnt) {.key = (k), .type = (t), .ptr = (p), .size = (cap), .count = (cnt)}

static const char *const act_names[] = {"identity", "relu", "tanh", "sigmoid", NULL};
static const char *const loss_names[] = {"softmax_cross_entropy", "mse", NULL};
static const char *const init_names[] = {"he", "xavier", "normal", "uniform", NULL};
static const char *const start_names[] = {"none", "like_w", "sign_w", "randmag_sign_w", NULL};
static const char *const carry_names[] = {"W", "B", "D", NULL};
static const char *const change_names[] = {"none", "as_w", "sign_w", "randmag_sign_w",
                                           "redraw_sign_w", "mirror", NULL};
static const char *const opt_names[] = {"sgd", "adam", NULL};
static const char *const sched_names[] = {"none", "step", "cosine", NULL};
static const char *const buf_kind_names[] = {"param", "stat", "state", "grad", "batch",
                                             "scratch", NULL};
static const char *const op_names[] = {"dense", "conv2d", "batchnorm", "maxpool", "avgpool",
                                       "global_avgpool", "flatten", "add", "act", NULL};

const char *rt_op_name(int kind)
{
	return kind >= 0 && kind <= RT_OP_ACT ? op_names[kind] : "?";
}

bool rt_layer_has_rule(const RtLayer *l)
{
	return l->kind == RT_OP_DENSE || l->kind == RT_OP_CONV2D;
}

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

/* "AxBx..." of up to max whole numbers, each >= min (dims: 1; kernel: 0). */
static int parse_dims(const char *key, const char *s, int *dims, int max, int min, int *count)
{
	int n = 0;
	const char *p = s;
	for (;;) {
		char *end;
		errno = 0;
		long v = strtol(p, &end, 10);
		if (end == p || *p == '-' || *p == '+' || errno || v < min || v > 1L << 30 || n == max)
			return spec_error("%s=%s: not a shape of up to %d sizes AxB...", key, s, max);
		dims[n++] = (int)v;
		if (*end == '\0')
			break;
		if (*end != 'x')
			return spec_error("%s=%s: not a shape of up to %d sizes AxB...", key, s, max);
		p = end + 1;
	}
	*count = n;
	return 0;
}

/* Comma-separated numbers; the empty string is an empty list. */
static int parse_list(const Field *f, const char *s)
{
	double *out = f->ptr;
	int n = 0;
	char buf[64];
	while (*s) {
		const char *comma = strchr(s, ',');
		size_t len = comma ? (size_t)(comma - s) : strlen(s);
		if (len == 0 || len >= sizeof buf)
			return spec_error("%s: malformed list of numbers", f->key);
		if ((size_t)n == f->size)
			return spec_error("%s: more than %zu values", f->key, f->size);
		memcpy(buf, s, len);
		buf[len] = '\0';
		if (parse_double(f->key, buf, &out[n]) < 0)
			return -1;
		n++;
		s += len;
		if (comma && *++s == '\0')
			return spec_error("%s: malformed list of numbers", f->key);
	}
	*f->count = n;
	return 0;
}

static int parse_field(const Field *f, const char *val)
{
	int n;
	switch (f->type) {
	case F_INT: return parse_int(f->key, val, f->ptr);
	case F_LONG: return parse_long(f->key, val, f->ptr);
	case F_DOUBLE: return parse_double(f->key, val, f->ptr);
	case F_DIMS: return parse_dims(f->key, val, f->ptr, (int)f->size, 1, f->count);
	case F_PAIR:
		if (parse_dims(f->key, val, f->ptr, 2, 0, &n) < 0)
			return -1;
		if (n != 2)
			return spec_error("%s=%s: expected two sizes AxB", f->key, val);
		return 0;
	case F_LIST: return parse_list(f, val);
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

static long shape_units(RtShape s)
{
	return (long)s.c * s.h * s.w;
}

/* A CxHxW field into an RtShape. */
static int shape_from_dims(const char *key, const int *dims, int n, RtShape *s)
{
	if (n != 3)
		return spec_error("%s: expected a shape CxHxW", key);
	s->c = dims[0], s->h = dims[1], s->w = dims[2];
	if (shape_units(*s) > 1L << 30)
		return spec_error("%s: %dx%dx%d is too large", key, s->c, s->h, s->w);
	return 0;
}

/* ---- records ---- */
static int parse_network(const Line *ln, RtModel *m)
{
	Field f[] = {FSTR("name", m->name)};
	return parse_exact(ln, f, NFIELDS(f));
}

static int parse_input(const Line *ln, RtModel *m)
{
	int dims[RT_MAX_DIMS], nd;
	Field f[] = {
		FSTR("name", m->input_name),
		FIELD("units", F_INT, &m->in_units),
		FMANY("shape", F_DIMS, dims, 3, &nd),
		FIELD("slot", F_INT, &m->x_slot),
	};
	if (parse_exact(ln, f, NFIELDS(f)) < 0 ||
	    shape_from_dims("input shape", dims, nd, &m->in_shape) < 0)
		return -1;
	if (m->in_units <= 0)
		return spec_error("input units must be positive");
	if (shape_units(m->in_shape) != m->in_units)
		return spec_error("input shape %dx%dx%d does not hold %d units", m->in_shape.c,
		                  m->in_shape.h, m->in_shape.w, m->in_units);
	return 0;
}

static int parse_buf(const Line *ln, RtModel *m)
{
	RtBuf b = {0};
	int slot;
	Field f[] = {
		FIELD("slot", F_INT, &slot),
		FSTR("name", b.name),
		FENUM("kind", &b.kind, buf_kind_names),
		FIELD("elems", F_LONG, &b.elems),
		FMANY("shape", F_DIMS, b.dims, RT_MAX_DIMS, &b.ndim),
	};
	if (parse_exact(ln, f, NFIELDS(f)) < 0)
		return -1;
	if (slot != m->nbufs)
		return spec_error("buf slot=%d out of order (expected %d)", slot, m->nbufs);
	if (b.elems <= 0)
		return spec_error("buf %s: elems must be positive", b.name);
	long prod = 1;
	for (int i = 0; i < b.ndim; i++)
		prod *= b.dims[i];
	if (prod != b.elems)
		return spec_error("buf %s: shape %s does not hold %ld elements", b.name,
		                  ln->word[5] + 6, b.elems);
	b.rows = b.ndim == 1 ? 1 : b.dims[0];
	b.cols = (int)(b.elems / b.rows);
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
	int ins[RT_MAX_DIMS], outs[RT_MAX_DIMS], nin, nout, kernel[2];
	Field f[] = {
		FSTR("name", l.name),
		FENUM("kind", &l.kind, op_names),
		FIELD("input", F_INT, &l.input), FIELD("input2", F_INT, &l.input2),
		FIELD("in", F_INT, &l.in), FIELD("out", F_INT, &l.out),
		FMANY("in_shape", F_DIMS, ins, 3, &nin),
		FMANY("out_shape", F_DIMS, outs, 3, &nout),
		FIELD("kernel", F_PAIR, kernel),
		FIELD("stride", F_INT, &l.stride), FIELD("pad", F_INT, &l.pad),
		FENUM("act", &l.act, act_names),
		FIELD("bias", F_INT, &l.bias),
		FENUM("init", &l.init, init_names),
		FIELD("init_arg", F_DOUBLE, &l.init_arg),
		FIELD("eps", F_DOUBLE, &l.eps), FIELD("momentum", F_DOUBLE, &l.momentum),
		FSTR("rule", l.rule),
		FENUM("start", &l.start, start_names),
		FENUM("carry", &l.carry, carry_names),
		FENUM("change", &l.change, change_names),
		FIELD("mirror", F_INT, &l.mirror),
		FIELD("W", F_INT, &l.W), FIELD("b", F_INT, &l.b),
		FIELD("B", F_INT, &l.B), FIELD("D", F_INT, &l.D),
		FIELD("M", F_INT, &l.M),
		FIELD("gW", F_INT, &l.gW), FIELD("gb", F_INT, &l.gb),
		FIELD("mW", F_INT, &l.mW), FIELD("mb", F_INT, &l.mb),
		FIELD("mB", F_INT, &l.mB), FIELD("vW", F_INT, &l.vW),
		FIELD("vb", F_INT, &l.vb), FIELD("vB", F_INT, &l.vB),
		FIELD("rmean", F_INT, &l.rmean), FIELD("rvar", F_INT, &l.rvar),
		FIELD("aux", F_INT, &l.aux), FIELD("aux2", F_INT, &l.aux2),
		FIELD("y", F_INT, &l.y), FIELD("d", F_INT, &l.d),
	};
	int next;
	if (parse_fields(ln, f, NFIELDS(f), &next) < 0 ||
	    shape_from_dims("in_shape", ins, nin, &l.in_shape) < 0 ||
	    shape_from_dims("out_shape", outs, nout, &l.out_shape) < 0)
		return -1;
	l.kh = kernel[0], l.kw = kernel[1];
	if (parse_rule_args(ln, next, &l) < 0)
		return -1;
	m->layers = realloc(m->layers, (m->nlayers + 1) * sizeof *m->layers);
	m->layers[m->nlayers++] = l;
	return 0;
}

static int parse_loss(const Line *ln, RtModel *m)
{
	Field f[] = {FENUM("kind", &m->loss, loss_names)};
	return parse_exact(ln, f, NFIELDS(f));
}

static int parse_train(const Line *ln, RtModel *m)
{
	RtTrain *t = &m->train;
	int nstd;
	Field f[] = {
		FSTR("data", t->data),
		FIELD("batch", F_INT, &t->batch),
		FIELD("epochs", F_INT, &t->epochs),
		FIELD("seed", F_LONG, &t->seed),
		FENUM("optimizer", &t->optimizer, opt_names),
		FIELD("lr", F_DOUBLE, &t->lr),
		FIELD("momentum", F_DOUBLE, &t->momentum),
		FIELD("nesterov", F_INT, &t->nesterov),
		FIELD("weight_decay", F_DOUBLE, &t->weight_decay),
		FIELD("beta1", F_DOUBLE, &t->beta1),
		FIELD("beta2", F_DOUBLE, &t->beta2),
		FIELD("eps", F_DOUBLE, &t->eps),
		FENUM("schedule", &t->schedule, sched_names),
		FIELD("step_every", F_INT, &t->step_every),
		FIELD("gamma", F_DOUBLE, &t->gamma),
		FIELD("min_lr", F_DOUBLE, &t->min_lr),
		FIELD("crop_pad", F_INT, &t->crop_pad),
		FIELD("flip", F_INT, &t->flip),
		FMANY("norm_mean", F_LIST, t->norm_mean, RT_MAX_NORM, &t->nnorm),
		FMANY("norm_std", F_LIST, t->norm_std, RT_MAX_NORM, &nstd),
	};
	if (parse_exact(ln, f, NFIELDS(f)) < 0)
		return -1;
	if (t->batch <= 0 || t->epochs <= 0)
		return spec_error("train: batch and epochs must be positive");
	if (t->flip != 0 && t->flip != 1)
		return spec_error("train: flip=%d must be 0 or 1", t->flip);
	if (t->crop_pad < 0)
		return spec_error("train: crop_pad=%d must not be negative", t->crop_pad);
	if (nstd != t->nnorm)
		return spec_error("train: %d norm_mean values but %d norm_std values", t->nnorm, nstd);
	for (int c = 0; c < nstd; c++)
		if (t->norm_std[c] <= 0)
			return spec_error("train: norm_std %g must be positive", t->norm_std[c]);
	return 0;
}

/* ---- consistency checks after the whole text is read ---- */
/* Expected dims of a tensor: up to four sizes, unused ones 0. */
typedef struct Dims { int n, d[RT_MAX_DIMS]; } Dims;
static Dims dims1(int a) { return (Dims){1, {a}}; }
static Dims dims2(int a, int b) { return (Dims){2, {a, b}}; }

static void format_dims(char *out, size_t len, const int *d, int n)
{
	size_t k = 0;
	out[0] = '\0';
	for (int i = 0; i < n && k < len; i++)
		k += snprintf(out + k, len - k, "%s%d", i ? "x" : "", d[i]);
}

static long dims_elems(Dims s)
{
	long n = 1;
	for (int i = 0; i < s.n; i++)
		n *= s.d[i];
	return n;
}

/* A slot of the given kind. Param and stat tensors (the checkpoint's) must
 * have exactly the expected shape; the others the expected element count. */
static int check_slot(const RtModel *m, const RtLayer *l, const char *what, int slot,
                      int kind, Dims want, bool required)
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
		return spec_error("layer %s: %s slot %d (%s) has kind %s, expected %s", l->name,
		                  what, slot, b->name, buf_kind_names[b->kind], buf_kind_names[kind]);
	char got[64], exp[64];
	format_dims(exp, sizeof exp, want.d, want.n);
	if (b->elems != dims_elems(want))
		return spec_error("layer %s: %s buffer %s has %ld elements, expected %ld (%s)",
		                  l->name, what, b->name, b->elems, dims_elems(want), exp);
	if (kind == RT_BUF_PARAM || kind == RT_BUF_STAT) {
		bool same = b->ndim == want.n;
		for (int i = 0; same && i < want.n; i++)
			same = b->dims[i] == want.d[i];
		format_dims(got, sizeof got, b->dims, b->ndim);
		if (!same)
			return spec_error("layer %s: %s buffer %s has shape %s, expected %s",
			                  l->name, what, b->name, got, exp);
	}
	return 0;
}

/* A slot that must be -1 for this kind of layer. */
static int check_unused(const RtLayer *l, const char *what, int slot)
{
	if (slot != -1)
		return spec_error("layer %s: a %s has no %s buffer (found slot %d)", l->name,
		                  rt_op_name(l->kind), what, slot);
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

static bool same_shape(RtShape a, RtShape b)
{
	return a.c == b.c && a.h == b.h && a.w == b.w;
}

static RtShape source_shape(const RtModel *m, int input)
{
	return input < 0 ? m->in_shape : m->layers[input].out_shape;
}

static int shape_error(const RtLayer *l, const char *what, RtShape got, RtShape want)
{
	return spec_error("layer %s: %s %dx%dx%d, expected %dx%dx%d", l->name, what,
	                  got.c, got.h, got.w, want.c, want.h, want.w);
}

/* Output size of a window sliding over n positions. */
static int window_out(int n, int k, int stride, int pad)
{
	int span = n + 2 * pad - k;
	return span < 0 ? 0 : span / stride + 1;
}

/* Kernel, stride and pad of the kinds that have a window; zero elsewhere. */
static int check_window(const RtLayer *l)
{
	bool windowed = l->kind == RT_OP_CONV2D || l->kind == RT_OP_MAXPOOL ||
	                l->kind == RT_OP_AVGPOOL;
	if (!windowed) {
		if (l->kind != RT_OP_GLOBAL_AVGPOOL && (l->kh || l->kw || l->stride || l->pad))
			return spec_error("layer %s: a %s has no kernel, stride or pad", l->name,
			                  rt_op_name(l->kind));
		return 0;
	}
	if (l->kh < 1 || l->kw < 1 || l->stride < 1 || l->pad < 0)
		return spec_error("layer %s: kernel %dx%d stride %d pad %d: need a kernel and "
		                  "stride of at least 1 and a pad of at least 0", l->name, l->kh,
		                  l->kw, l->stride, l->pad);
	if (l->kind != RT_OP_CONV2D && (2 * l->pad > l->kh || 2 * l->pad > l->kw))
		return spec_error("layer %s: pad %d is more than half the kernel %dx%d", l->name,
		                  l->pad, l->kh, l->kw);
	RtShape want = {l->kind == RT_OP_CONV2D ? l->out_shape.c : l->in_shape.c,
	                window_out(l->in_shape.h, l->kh, l->stride, l->pad),
	                window_out(l->in_shape.w, l->kw, l->stride, l->pad)};
	if (want.h < 1 || want.w < 1)
		return spec_error("layer %s: kernel %dx%d does not fit the input %dx%d (pad %d)",
		                  l->name, l->kh, l->kw, l->in_shape.h, l->in_shape.w, l->pad);
	if (!same_shape(l->out_shape, want))
		return shape_error(l, "out_shape", l->out_shape, want);
	return 0;
}

/* Input shapes and the output shape each kind implies. */
static int check_shapes(const RtModel *m, int i)
{
	const RtLayer *l = &m->layers[i];
	if (l->input < -1 || l->input >= i)
		return spec_error("layer %s: input %d is not an earlier layer", l->name, l->input);
	if (!same_shape(l->in_shape, source_shape(m, l->input)))
		return shape_error(l, "in_shape", l->in_shape, source_shape(m, l->input));
	if (l->in != shape_units(l->in_shape) || l->out != shape_units(l->out_shape))
		return spec_error("layer %s: in=%d out=%d disagree with its shapes", l->name,
		                  l->in, l->out);
	if (l->kind == RT_OP_ADD) {
		if (l->input2 < -1 || l->input2 >= i)
			return spec_error("layer %s: input2 %d is not an earlier layer", l->name,
			                  l->input2);
		if (!same_shape(source_shape(m, l->input2), l->in_shape))
			return shape_error(l, "second operand's shape", source_shape(m, l->input2),
			                   l->in_shape);
	} else if (l->input2 != -1)
		return spec_error("layer %s: input2=%d but only add has a second operand",
		                  l->name, l->input2);
	if (check_window(l) < 0)
		return -1;
	RtShape vec_in = {l->in, 1, 1}, vec_c = {l->in_shape.c, 1, 1};
	switch (l->kind) {
	case RT_OP_DENSE:
		if (!same_shape(l->in_shape, vec_in))
			return spec_error("layer %s: dense needs a vector input, not %dx%dx%d", l->name,
			                  l->in_shape.c, l->in_shape.h, l->in_shape.w);
		if (l->out_shape.h != 1 || l->out_shape.w != 1)
			return spec_error("layer %s: a dense layer's output is a vector", l->name);
		break;
	case RT_OP_BATCHNORM:
	case RT_OP_ADD:
	case RT_OP_ACT:
		if (!same_shape(l->out_shape, l->in_shape))
			return shape_error(l, "out_shape", l->out_shape, l->in_shape);
		break;
	case RT_OP_GLOBAL_AVGPOOL:
		if (!same_shape(l->out_shape, vec_c))
			return shape_error(l, "out_shape", l->out_shape, vec_c);
		break;
	case RT_OP_FLATTEN:
		if (!same_shape(l->out_shape, vec_in))
			return shape_error(l, "out_shape", l->out_shape, vec_in);
		break;
	}
	/* The pools and flatten have no fused activation. */
	bool no_act = l->kind == RT_OP_FLATTEN || l->kind == RT_OP_MAXPOOL ||
	              l->kind == RT_OP_AVGPOOL || l->kind == RT_OP_GLOBAL_AVGPOOL;
	if (no_act && l->act != RT_ACT_IDENTITY)
		return spec_error("layer %s: a %s has no activation", l->name, rt_op_name(l->kind));
	return 0;
}

/* Dense and conv2d: W, bias, the rule's feedback tensors and their states. */
static int check_weighted(const RtModel *m, int i)
{
	const RtLayer *l = &m->layers[i];
	int n_out = m->layers[m->nlayers - 1].out;
	Dims w = l->kind == RT_OP_DENSE ? dims2(l->out, l->in)
	         : (Dims){4, {l->out_shape.c, l->in_shape.c, l->kh, l->kw}};
	Dims bias = dims1(l->out_shape.c);
	/* Each feedback tensor exists exactly when the rule needs it: B for
	 * carry=B, D for carry=D below the output (which uses its own error),
	 * the magnitudes M for frsf. */
	bool has_B = l->carry == RT_CARRY_B;
	bool has_D = l->carry == RT_CARRY_D && i != m->nlayers - 1;
	bool has_M = l->change == RT_CHANGE_RANDMAG_SIGN_W;
	bool has_bias = l->bias != 0;
	if (check_slot(m, l, "W", l->W, RT_BUF_PARAM, w, true) < 0 ||
	    check_slot(m, l, "b", l->b, RT_BUF_PARAM, bias, has_bias) < 0 ||
	    check_slot(m, l, "B", l->B, RT_BUF_PARAM, w, has_B) < 0 ||
	    check_slot(m, l, "D", l->D, RT_BUF_PARAM, dims2(n_out, l->out), has_D) < 0 ||
	    check_slot(m, l, "M", l->M, RT_BUF_STATE, w, has_M) < 0 ||
	    check_slot(m, l, "gW", l->gW, RT_BUF_GRAD, w, true) < 0 ||
	    check_slot(m, l, "gb", l->gb, RT_BUF_GRAD, bias, has_bias) < 0 ||
	    check_slot(m, l, "mW", l->mW, RT_BUF_STATE, w, false) < 0 ||
	    check_slot(m, l, "mb", l->mb, RT_BUF_STATE, bias, false) < 0 ||
	    check_slot(m, l, "mB", l->mB, RT_BUF_STATE, w, false) < 0 ||
	    check_slot(m, l, "vW", l->vW, RT_BUF_STATE, w, false) < 0 ||
	    check_slot(m, l, "vb", l->vb, RT_BUF_STATE, bias, false) < 0 ||
	    check_slot(m, l, "vB", l->vB, RT_BUF_STATE, w, false) < 0)
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
	if (!has_bias && (l->b != -1 || l->gb != -1))
		return spec_error("layer %s: bias buffer but bias=0", l->name);
	if (l->mirror != (l->change == RT_CHANGE_MIRROR))
		return spec_error("layer %s: mirror=%d disagrees with change", l->name, l->mirror);
	if (l->change == RT_CHANGE_MIRROR && check_mirror_args(l) < 0)
		return -1;
	if (check_unused(l, "rmean", l->rmean) < 0 || check_unused(l, "rvar", l->rvar) < 0)
		return -1;
	/* Working memory the kernels plan (im2col columns, a weight copy): absent
	 * or scratch of any size, since the plan may process chunks and share it. */
	int aux[2] = {l->aux, l->aux2};
	for (int k = 0; k < 2; k++)
		if (aux[k] != -1 && (aux[k] < 0 || aux[k] >= m->nbufs ||
		                     m->bufs[aux[k]].kind != RT_BUF_SCRATCH))
			return spec_error("layer %s: %s slot %d is not a scratch buffer", l->name,
			                  k ? "aux2" : "aux", aux[k]);
	return 0;
}

/* Layers without a feedback rule: backprop through them, no B, D or M. */
static int check_ruleless(const RtLayer *l)
{
	if (l->start != RT_START_NONE || l->carry != RT_CARRY_W || l->change != RT_CHANGE_NONE ||
	    l->mirror || l->nargs)
		return spec_error("layer %s: a %s has no feedback rule (expected start=none carry=W "
		                  "change=none mirror=0 and no rule arguments)", l->name,
		                  rt_op_name(l->kind));
	if (l->kind == RT_OP_BATCHNORM && strcmp(l->rule, "bp") != 0)
		return spec_error("layer %s: batchnorm always learns by bp, not %s", l->name, l->rule);
	return check_unused(l, "B", l->B) < 0 || check_unused(l, "D", l->D) < 0 ||
	       check_unused(l, "M", l->M) < 0 || check_unused(l, "mB", l->mB) < 0 ||
	       check_unused(l, "vB", l->vB) < 0 ? -1 : 0;
}

static int check_batchnorm(const RtModel *m, const RtLayer *l)
{
	Dims c = dims1(l->in_shape.c);
	if (!(l->eps > 0) || l->momentum < 0 || l->momentum > 1)
		return spec_error("layer %s: batchnorm needs eps > 0 and momentum in [0, 1] "
		                  "(found eps=%g momentum=%g)", l->name, l->eps, l->momentum);
	if (!l->bias)
		return spec_error("layer %s: batchnorm has a bias (beta): bias=1", l->name);
	return check_slot(m, l, "W (gamma)", l->W, RT_BUF_PARAM, c, true) < 0 ||
	       check_slot(m, l, "b (beta)", l->b, RT_BUF_PARAM, c, true) < 0 ||
	       check_slot(m, l, "gW", l->gW, RT_BUF_GRAD, c, true) < 0 ||
	       check_slot(m, l, "gb", l->gb, RT_BUF_GRAD, c, true) < 0 ||
	       check_slot(m, l, "mW", l->mW, RT_BUF_STATE, c, false) < 0 ||
	       check_slot(m, l, "mb", l->mb, RT_BUF_STATE, c, false) < 0 ||
	       check_slot(m, l, "vW", l->vW, RT_BUF_STATE, c, false) < 0 ||
	       check_slot(m, l, "vb", l->vb, RT_BUF_STATE, c, false) < 0 ||
	       check_slot(m, l, "rmean", l->rmean, RT_BUF_STAT, c, true) < 0 ||
	       check_slot(m, l, "rvar", l->rvar, RT_BUF_STAT, c, true) < 0 ||
	       check_slot(m, l, "aux (batch mean)", l->aux, RT_BUF_SCRATCH, c, true) < 0 ||
	       check_slot(m, l, "aux2 (batch 1/std)", l->aux2, RT_BUF_SCRATCH, c, true) < 0 ? -1 : 0;
}

/* The pools, flatten, add and act: no tensors of their own but maxpool's
 * argmax. */
static int check_plain(const RtModel *m, const RtLayer *l)
{
	static const char *const what[] = {"W", "b", "gW", "gb", "mW", "mb", "vW", "vb",
	                                   "rmean", "rvar", "aux2"};
	int slots[] = {l->W, l->b, l->gW, l->gb, l->mW, l->mb, l->vW, l->vb,
	               l->rmean, l->rvar, l->aux2};
	for (int k = 0; k < NFIELDS(slots); k++)
		if (check_unused(l, what[k], slots[k]) < 0)
			return -1;
	if (l->kind == RT_OP_MAXPOOL)
		return check_slot(m, l, "aux (argmax)", l->aux, RT_BUF_BATCH, dims1(l->out), true);
	return check_unused(l, "aux", l->aux);
}

static int check_layer(const RtModel *m, int i)
{
	const RtLayer *l = &m->layers[i];
	if (l->in <= 0 || l->out <= 0)
		return spec_error("layer %s: in and out must be positive", l->name);
	for (int j = 0; j < i; j++)
		if (strcmp(m->layers[j].name, l->name) == 0)
			return spec_error("duplicate layer name %s", l->name);
	if (check_shapes(m, i) < 0)
		return -1;
	int rc;
	if (rt_layer_has_rule(l))
		rc = check_weighted(m, i);
	else if ((rc = check_ruleless(l)) == 0)
		rc = l->kind == RT_OP_BATCHNORM ? check_batchnorm(m, l) : check_plain(m, l);
	if (rc < 0)
		return -1;
	return check_slot(m, l, "y", l->y, RT_BUF_BATCH, dims1(l->out), true) < 0 ||
	       check_slot(m, l, "d", l->d, RT_BUF_BATCH, dims1(l->out), true) < 0 ? -1 : 0;
}

static int check_train(const RtModel *m)
{
	const RtTrain *t = &m->train;
	RtShape s = m->in_shape;
	bool image = s.h > 1 || s.w > 1;
	if ((t->crop_pad || t->flip) && !image)
		return spec_error("train: crop and flip need an image input, not %d units",
		                  m->in_units);
	if (t->crop_pad > s.h || t->crop_pad > s.w)
		return spec_error("train: crop_pad=%d is larger than the %dx%d images", t->crop_pad,
		                  s.h, s.w);
	if (t->nnorm > 1 && t->nnorm != s.c)
		return spec_error("train: %d normalisation values for %d input channels",
		                  t->nnorm, s.c);
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
	const RtLayer *last = &m->layers[m->nlayers - 1];
	if (last->out_shape.h != 1 || last->out_shape.w != 1)
		return spec_error("the output layer %s gives %dx%dx%d, not a vector of class scores",
		                  last->name, last->out_shape.c, last->out_shape.h, last->out_shape.w);
	return check_train(m);
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
			return spec_error("expected 'wtn 2'");
		if (strcmp(ln->word[1], "2") != 0)
			return spec_error("unsupported spec version %s (this runtime reads 2; recompile the network with this wtnc)",
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
