/* settings.c: run-time settings, `--set KEY=VALUE`. A key is a train
 * setting (lr, momentum, schedule, ...) or LAYER.ARG, a rule argument of
 * every layer whose name matches the glob LAYER (`h2.every`,
 * `layer3.*.noise`). Each key says who owns its value: the runtime (it
 * reaches the kernels as a per-step scalar or through the rule.args buffer,
 * or is runtime logic) or the compiled kernels (baked in: the message says
 * to recompile). Every rule argument is the runtime's. */
#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "wtnrt.h"
#include "wtn_edit.h"

enum { S_REAL, S_INT, S_LONG, S_BOOL, S_SCHEDULE, S_COMPILED };
enum { ANY_OPT, SGD_ONLY, ADAM_ONLY, IMAGE_ONLY };

typedef struct Setting {
	const char *key;
	int type;
	size_t offset;          /* into RtTrain */
	double lo, hi;          /* accepted range (lo_open: lo excluded) */
	bool lo_open;
	int only;               /* ANY_OPT, SGD_ONLY, ADAM_ONLY, IMAGE_ONLY */
	const char *help;
} Setting;

#define T(f) offsetof(RtTrain, f)
static const Setting settings[] = {
	{"lr", S_REAL, T(lr), 0, INFINITY, true, ANY_OPT, "learning rate (before the schedule)"},
	{"epochs", S_INT, T(epochs), 1, 1e6, false, ANY_OPT, "epochs"},
	{"batch", S_INT, T(batch), 1, 0, false, ANY_OPT, "batch size (buffers are planned at start-up)"},
	{"seed", S_LONG, T(seed), 0, 9.2e18, false, ANY_OPT, "seed of initialisation, shuffling, noise"},
	{"momentum", S_REAL, T(momentum), 0, 1, false, SGD_ONLY,
	 "sgd momentum in [0, 1)"},
	{"weight_decay", S_REAL, T(weight_decay), 0, INFINITY, false, ANY_OPT, "L2 weight decay"},
	{"beta1", S_REAL, T(beta1), 0, 1, false, ADAM_ONLY, "adam's beta1 in [0, 1)"},
	{"beta2", S_REAL, T(beta2), 0, 1, false, ADAM_ONLY, "adam's beta2 in [0, 1)"},
	{"eps", S_REAL, T(eps), 0, INFINITY, true, ADAM_ONLY, "adam's epsilon"},
	{"schedule", S_SCHEDULE, T(schedule), 0, 0, false, ANY_OPT, "none, step or cosine"},
	{"step_every", S_INT, T(step_every), 1, 1e6, false, ANY_OPT, "step schedule: epochs per step"},
	{"gamma", S_REAL, T(gamma), 0, INFINITY, true, ANY_OPT, "step schedule: factor per step"},
	{"min_lr", S_REAL, T(min_lr), 0, INFINITY, false, ANY_OPT, "cosine schedule: final lr"},
	{"crop_pad", S_INT, T(crop_pad), 0, 0, false, IMAGE_ONLY, "random crop after padding (0: none)"},
	{"flip", S_BOOL, T(flip), 0, 1, false, IMAGE_ONLY, "random horizontal flip, 0 or 1"},
	{"optimizer", S_COMPILED, 0, 0, 0, false, ANY_OPT, "compiled: sgd or adam"},
	{"nesterov", S_COMPILED, 0, 0, 0, false, ANY_OPT, "compiled: nesterov momentum"},
};
#undef T
enum { NSETTINGS = sizeof settings / sizeof settings[0] };

/* What each rule argument accepts (as wtnc's sema checks it). The kernels
 * read them from the rule.args buffer (rt_rule_args_write) and mirror.c
 * runs the weight mirror's schedule, so all are run-time settings. */
enum { A_POSITIVE, A_NONNEG, A_FRACTION, A_NONNEG_OR_DEFAULT, A_POS_INT, A_NONNEG_INT };
static const char *const arg_kind_help[] = {
	"positive", "zero or positive", "in [0, 1)",
	"zero or positive (or -1 for the optimizer's weight_decay)",
	"a positive whole number", "a whole number, zero or positive",
};
typedef struct RuleArgSetting {
	const char *rule, *arg;
	int kind;
} RuleArgSetting;
static const RuleArgSetting rule_args[] = {
	{"usf", "scale", A_NONNEG},                  /* 0: 1/sqrt(fan_in) */
	{"kp", "decay", A_NONNEG_OR_DEFAULT},
	{"kp", "decay_steps", A_NONNEG_INT},
	{"wm", "noise", A_POSITIVE},
	{"wm", "rate", A_POSITIVE},
	{"wm", "decay", A_FRACTION},
	{"wm", "batch", A_POS_INT},                  /* up to the compiled value (buffer size) */
	{"wm", "every", A_POS_INT},
	{"wm", "warmup", A_NONNEG_INT},
	{"wm", "growth", A_NONNEG},
};
enum { NRULE_ARGS = sizeof rule_args / sizeof rule_args[0] };

static bool arg_accepts(int kind, double v)
{
	bool whole = v == floor(v) && fabs(v) < 1e9;
	switch (kind) {
	case A_POSITIVE: return v > 0;
	case A_NONNEG: return v >= 0;
	case A_FRACTION: return v >= 0 && v < 1;
	case A_NONNEG_OR_DEFAULT: return v >= 0 || v == -1;
	case A_POS_INT: return whole && v > 0;
	case A_NONNEG_INT: return whole && v >= 0;
	}
	return false;
}

/* What --set changed, in order, for the run's recorded configuration. */
enum { MAX_CHANGED = 64 };
static char changed[MAX_CHANGED][128];
static int nchanged;

static int set_error(const char *assignment, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int set_error(const char *assignment, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "wtn: --set %s: ", assignment);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -1;
}

/* The closest of words to word, or NULL when none is close. */
static const char *closest(const char *word, const char *const *words, int n)
{
	const char *best = NULL;
	int best_d = 3;
	for (int i = 0; i < n; i++) {
		int d = wtn_edit_distance(word, words[i], best_d - 1);
		if (d < best_d) {
			best_d = d;
			best = words[i];
		}
	}
	return best;
}

static const Setting *find_setting(const char *key)
{
	for (int i = 0; i < NSETTINGS; i++)
		if (strcmp(settings[i].key, key) == 0)
			return &settings[i];
	return NULL;
}

static bool parse_real(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || *end || errno || !isfinite(v))
		return false;
	*out = v;
	return true;
}

static bool in_range(const Setting *s, double v, double hi)
{
	return (s->lo_open ? v > s->lo : v >= s->lo) &&
	       (s->type == S_REAL && hi == 1 ? v < hi : v <= hi);
}

static bool has_momentum_buffers(const RtModel *m)
{
	for (int i = 0; i < m->nlayers; i++)
		if (m->layers[i].W >= 0 && m->layers[i].mW >= 0)
			return true;
	return false;
}

static void record(const char *assignment)
{
	if (nchanged < MAX_CHANGED)
		snprintf(changed[nchanged++], sizeof changed[0], "%s", assignment);
}

static int apply_train(RtModel *m, const Setting *s, const char *assignment, const char *val)
{
	RtTrain *t = &m->train;
	if (s->type == S_COMPILED)
		return set_error(assignment, "%s is compiled into this binary's update kernels; "
		                 "change it in the train block and recompile with wtnc", s->key);
	if (s->only == SGD_ONLY && t->optimizer != RT_OPT_SGD)
		return set_error(assignment, "%s is sgd's; this binary was compiled with adam "
		                 "(its settings: beta1, beta2, eps)", s->key);
	if (s->only == ADAM_ONLY && t->optimizer != RT_OPT_ADAM)
		return set_error(assignment, "%s is adam's; this binary was compiled with sgd "
		                 "(its settings: momentum, weight_decay)", s->key);
	if (s->only == IMAGE_ONLY && m->in_shape.h == 1 && m->in_shape.w == 1)
		return set_error(assignment, "%s moves pixels: the input %s is a vector, not an image",
		                 s->key, m->input_name);
	void *field = (char *)t + s->offset;
	if (s->type == S_SCHEDULE) {
		static const char *const names[] = {"none", "step", "cosine"};
		for (int i = 0; i < 3; i++)
			if (strcmp(val, names[i]) == 0) {
				*(int *)field = i;
				record(assignment);
				return 0;
			}
		const char *near = closest(val, names, 3);
		return set_error(assignment, "unknown schedule '%s'%s%s%s (known: none, step, cosine)",
		                 val, near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "");
	}
	double v, hi = s->hi;
	if (strcmp(s->key, "batch") == 0)
		hi = rt_batch_limit(m);
	if (strcmp(s->key, "crop_pad") == 0)
		hi = m->in_shape.h < m->in_shape.w ? m->in_shape.h : m->in_shape.w;
	if (!parse_real(val, &v))
		return set_error(assignment, "'%s' is not a number (%s: %s)", val, s->key, s->help);
	bool whole = s->type != S_REAL;
	if ((whole && v != floor(v)) || !in_range(s, v, hi)) {
		if (strcmp(s->key, "batch") == 0)
			return set_error(assignment, "expected a batch size from 1 to %d (the largest "
			                 "whose activations the kernels can index)", (int)hi);
		return set_error(assignment, "%s out of range (%s%s)", val, s->help,
		                 whole ? ", a whole number" : "");
	}
	if (strcmp(s->key, "momentum") == 0 && v > 0 && !has_momentum_buffers(m))
		return set_error(assignment, "this binary was compiled with momentum 0, so its update "
		                 "kernels keep no momentum buffers; compile with momentum > 0 in the "
		                 "train block, after which --set momentum takes any value in [0, 1)");
	switch (s->type) {
	case S_REAL: *(double *)field = v; break;
	case S_LONG: *(long *)field = (long)v; break;
	default: *(int *)field = (int)v; break;
	}
	record(assignment);
	return 0;
}

/* The model's layers may be constant data: rule arguments change in a
 * copy, made once, that the model then points to. */
static RtLayer *writable_layers(RtModel *m)
{
	static RtLayer *copy;
	if (!copy) {
		copy = malloc(sizeof *copy * (m->nlayers ? m->nlayers : 1));
		if (!copy)
			return NULL;
		memcpy(copy, m->layers, sizeof *copy * m->nlayers);
		m->layers = copy;
	}
	return copy;
}

/* PATTERN.ARG: every layer whose name matches and whose rule has ARG.
 * All or nothing: a value one matching layer refuses changes none. */
static int apply_rule_arg(RtModel *m, const char *assignment, const char *key, const char *val)
{
	const char *dot = strrchr(key, '.');
	char pattern[128];
	snprintf(pattern, sizeof pattern, "%.*s", (int)(dot - key), key);
	const char *arg = dot + 1;
	double v;
	int matched = 0, applied = 0;
	bool number = parse_real(val, &v);
	for (int pass = 0; pass < 2; pass++) {   /* check every layer, then change them */
		RtLayer *layers = pass ? writable_layers(m) : (RtLayer *)m->layers;
		if (!layers)
			return set_error(assignment, "out of memory");
		matched = applied = 0;
		for (int i = 0; i < m->nlayers; i++) {
			RtLayer *l = &layers[i];
			if (!rt_layer_has_rule(l) || fnmatch(pattern, l->name, 0) != 0)
				continue;
			matched++;
			int k = 0;
			while (k < l->nargs && strcmp(l->arg_name[k], arg) != 0)
				k++;
			if (k == l->nargs)
				continue;
			const RuleArgSetting *r = NULL;
			for (int j = 0; j < NRULE_ARGS; j++)
				if (!strcmp(rule_args[j].rule, l->rule) && !strcmp(rule_args[j].arg, arg))
					r = &rule_args[j];
			if (!r)
				return set_error(assignment, "%s's argument %s is not a run-time setting; "
				                 "recompile with wtnc --feedback '%s=%s(%s=%s)'", l->rule, arg,
				                 l->name, l->rule, arg, val);
			if (!number)
				return set_error(assignment, "'%s' is not a number (%s's %s on layer %s: %s)",
				                 val, l->rule, arg, l->name, arg_kind_help[r->kind]);
			if (!arg_accepts(r->kind, v))
				return set_error(assignment, "%s's %s on layer %s must be %s, not %s", l->rule,
				                 arg, l->name, arg_kind_help[r->kind], val);
			/* the mirror's noise batch: buffers are planned for it at start-up */
			if (strcmp(l->rule, "wm") == 0 && strcmp(arg, "batch") == 0 && v > rt_batch_limit(m))
				return set_error(assignment, "wm's batch on layer %s must be from 1 to %d "
				                 "(the largest the kernels can index)", l->name, rt_batch_limit(m));
			if (pass)
				l->arg[k] = v;
			applied++;
		}
		if (!matched || !applied)
			break;
	}
	if (!matched) {
		const char *names[256];
		int n = 0;
		for (int i = 0; i < m->nlayers && n < 256; i++)
			if (rt_layer_has_rule(&m->layers[i]))
				names[n++] = m->layers[i].name;
		const char *near = closest(pattern, names, n);
		return set_error(assignment, "no layer with a feedback rule matches '%s'%s%s%s", pattern,
		                 near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "");
	}
	if (!applied) {
		/* the arguments the matching layers' rules do have, nearest first */
		const char *names[64], *rules = NULL;
		int n = 0;
		bool one_rule = true;
		for (int i = 0; i < m->nlayers; i++) {
			const RtLayer *l = &m->layers[i];
			if (!rt_layer_has_rule(l) || fnmatch(pattern, l->name, 0) != 0)
				continue;
			if (rules && strcmp(rules, l->rule))
				one_rule = false;
			rules = l->rule;
			for (int k = 0; k < l->nargs && n < 64; k++)
				names[n++] = l->arg_name[k];
		}
		const char *near = closest(arg, names, n);
		char known[256] = "";
		size_t len = 0;
		for (int i = 0; i < n && len < sizeof known; i++) {
			bool dup = false;
			for (int j = 0; j < i; j++)
				dup |= !strcmp(names[i], names[j]);
			if (!dup)
				len += snprintf(known + len, sizeof known - len, "%s%s", len ? ", " : "", names[i]);
		}
		if (near)
			return set_error(assignment, "the rule%s of the layers matching '%s' (%s) %s no "
			                 "argument '%s'; did you mean '%s'?", one_rule ? "" : "s", pattern,
			                 one_rule ? rules : "several", one_rule ? "has" : "have", arg, near);
		return set_error(assignment, "the rule%s of the layers matching '%s' (%s) %s no "
		                 "argument '%s' (%s)", one_rule ? "" : "s", pattern,
		                 one_rule ? rules : "several", one_rule ? "has" : "have", arg,
		                 n ? known : "it takes no arguments");
	}
	record(assignment);
	return 0;
}

int rt_setting_apply(RtModel *m, const char *assignment)
{
	const char *eq = strchr(assignment, '=');
	if (!eq || eq == assignment || !eq[1])
		return set_error(assignment, "expected KEY=VALUE (try --set help)");
	char key[128];
	snprintf(key, sizeof key, "%.*s", (int)(eq - assignment), assignment);
	const char *val = eq + 1;
	const Setting *s = find_setting(key);
	if (s)
		return apply_train(m, s, assignment, val);
	if (strchr(key, '.'))
		return apply_rule_arg(m, assignment, key, val);
	const char *keys[NSETTINGS];
	for (int i = 0; i < NSETTINGS; i++)
		keys[i] = settings[i].key;
	const char *near = closest(key, keys, NSETTINGS);
	if (near)
		return set_error(assignment, "unknown setting '%s'; did you mean '%s'?", key, near);
	return set_error(assignment, "unknown setting '%s' (try --set help)", key);
}

void rt_settings_help(FILE *out, const RtModel *m)
{
	fprintf(out, "run-time settings (--set KEY=VALUE; the value compiled into %s in brackets):\n",
	        m->name);
	const RtTrain *t = &m->train;
	static const char *const sched[] = {"none", "step", "cosine"};
	for (int i = 0; i < NSETTINGS; i++) {
		const Setting *s = &settings[i];
		const void *f = (const char *)t + s->offset;
		char now[48];
		switch (s->type) {
		case S_REAL: snprintf(now, sizeof now, "%g", *(const double *)f); break;
		case S_LONG: snprintf(now, sizeof now, "%ld", *(const long *)f); break;
		case S_SCHEDULE: snprintf(now, sizeof now, "%s", sched[*(const int *)f]); break;
		case S_COMPILED:
			snprintf(now, sizeof now, "%s", strcmp(s->key, "optimizer") == 0
			         ? (t->optimizer == RT_OPT_ADAM ? "adam" : "sgd")
			         : (t->nesterov ? "1" : "0"));
			break;
		default: snprintf(now, sizeof now, "%d", *(const int *)f); break;
		}
		fprintf(out, "  %-13s %-44s [%s]\n", s->key, s->help, now);
	}
	fprintf(out, "  LAYER.ARG     a rule argument of every layer matching the glob LAYER\n"
	        "                (h2.decay=0.01, 'layer3.*.noise=0.5'); the values in force:\n");
	for (int i = 0; i < m->nlayers; i++) {
		const RtLayer *l = &m->layers[i];
		if (!rt_layer_has_rule(l) || !l->nargs)
			continue;
		fprintf(out, "                %s (%s):", l->name, l->rule);
		for (int k = 0; k < l->nargs; k++)
			fprintf(out, " %s=%g", l->arg_name[k], l->arg[k]);
		fputc('\n', out);
	}
}

int rt_settings_changed(const char *const **list)
{
	static const char *ptrs[MAX_CHANGED];
	for (int i = 0; i < nchanged; i++)
		ptrs[i] = changed[i];
	*list = ptrs;
	return nchanged;
}
