/* sema.c: checks and shape inference, AST -> IRNetwork.
 * The grammar accepts any value anywhere; this file decides what each
 * position takes and says so when it gets something else. It reports every
 * error it can find, skipping only checks that would repeat an earlier one
 * (a layer with a bad source is not also called "unused"). */
#include "wtnc.h"
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_UNITS = 1 << 20, MAX_NODES = 4096 };
#define MAX_WEIGHTS 2147483647L

typedef struct Const {
	const char *name;
	Pos pos;
	double val;
	bool ok;                 /* false after an error in its value */
} Const;

/* A node is the input or a dense layer: anything a layer may read from. */
typedef struct Node {
	const char *name;
	Pos pos;
	Stmt *stmt;
	int layer;               /* index into layers, -1 for the input */
	bool broken;             /* a layer whose definition had errors */
	int units;
	Pos units_pos;
	int consumers;           /* layers reading this node */
	Pos consumer_pos;        /* where the first of them names it */
	const char *consumer;
	Stmt *rule_entry;        /* its feedback entry, if any */
} Node;

typedef struct Sema {
	const SrcFile *file;
	Const *consts;
	int nconsts;
	Node nodes[MAX_NODES];   /* in definition order: input and layers */
	int nnodes;
	const char *all_names[MAX_NODES];   /* every defined name, for "did you mean" */
	Pos all_pos[MAX_NODES];
	int nall;
	IRLayer *layers;
	int nlayers;
	Stmt *input, *loss, *feedback, *data_stmt;
	int loss_layer;          /* -1 if unknown */
	Pos loss_arg_pos;
	IRRule default_rule;
	Stmt *default_entry;
} Sema;

/* ---- small helpers ---- */

static bool pos_before(Pos a, Pos b)
{
	if (a.file != b.file)
		return true;         /* main-file definitions precede the overrides */
	return a.line < b.line || (a.line == b.line && a.col < b.col);
}

static const char *suggest_from(const char *name, const char *const *names, int n)
{
	return diag_suggest(name, names, n);
}

/* " (did you mean 'x'?)" or "" */
static const char *mean(const char *name, const char *const *names, int n)
{
	static char buf[160];
	const char *s = suggest_from(name, names, n);
	if (!s)
		return "";
	snprintf(buf, sizeof buf, " (did you mean '%s'?)", s);
	return buf;
}

static int index_of(const char *name, const char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(name, names[i]))
			return i;
	return -1;
}

static const char *describe(const Value *v)
{
	return ast_describe(v);
}

/* ---- constants and numbers ---- */

static Const *find_const(Sema *S, const char *name)
{
	for (int i = 0; i < S->nconsts; i++)
		if (!strcmp(S->consts[i].name, name))
			return &S->consts[i];
	return NULL;
}

/* The number a value stands for: a literal or an earlier constant.
 * `what` names the expected thing for messages ("a number of units"). */
static bool num_value(Sema *S, const Value *v, const char *what, double *out)
{
	if (v->kind == VAL_NUM) {
		*out = v->num;
		return true;
	}
	if (v->kind == VAL_NAME) {
		Const *c = find_const(S, v->text);
		if (c && pos_before(c->pos, v->pos)) {
			*out = c->val;
			return c->ok;
		}
		if (c) {
			diag_error(v->pos, "constant '%s' is used before its definition", v->text);
			diag_note(c->pos, "'%s' is defined here", v->text);
			return false;
		}
		const char *names[64];
		int n = 0;
		for (int i = 0; i < S->nconsts && n < 64; i++)
			names[n++] = S->consts[i].name;
		const char *s = suggest_from(v->text, names, n);
		if (s) {
			diag_error(v->pos, "unknown constant '%s' (did you mean '%s'?)", v->text, s);
			return false;
		}
	}
	diag_error(v->pos, "expected %s, found %s", what, describe(v));
	return false;
}

/* "'0'" or "'hidden' (= 0)": what the reader wrote, and its value. */
static const char *shown(const Value *v, double x)
{
	static char buf[128];
	if (v->kind == VAL_NAME)
		snprintf(buf, sizeof buf, "'%.60s' (= %g)", v->text, x);
	else
		snprintf(buf, sizeof buf, "'%.60s'", v->text);
	return buf;
}

/* An integer in [min, max]; `what` is the thing's name ("the batch size"). */
static bool int_value(Sema *S, const Value *v, const char *what, long min, long max, long *out)
{
	double x;
	if (!num_value(S, v, "a number", &x))
		return false;
	if (x != floor(x) || x < (double)min) {
		diag_error(v->pos, "%s must be a %s integer, found %s", what,
		           min > 0 ? "positive" : "non-negative", shown(v, x));
		return false;
	}
	if (x > (double)max) {
		diag_error(v->pos, "%s must be at most %ld, found %s", what, max, shown(v, x));
		return false;
	}
	*out = (long)x;
	return true;
}

/* A real number checked against a range; lo_open/hi_open exclude the ends.
 * `rule` says in words what the range is ("positive"). */
static bool real_value(Sema *S, const Value *v, const char *what, double lo, bool lo_open,
                       double hi, bool hi_open, const char *rule, double *out)
{
	double x;
	if (!num_value(S, v, "a number", &x))
		return false;
	bool ok = (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
	if (!ok) {
		diag_error(v->pos, "%s must be %s, found %s", what, rule, shown(v, x));
		return false;
	}
	*out = x;
	return true;
}

static bool bool_value(const Value *v, const char *what, bool *out)
{
	if (v->kind == VAL_NAME && !strcmp(v->text, "true")) {
		*out = true;
		return true;
	}
	if (v->kind == VAL_NAME && !strcmp(v->text, "false")) {
		*out = false;
		return true;
	}
	diag_error(v->pos, "expected true or false for %s, found %s", what, describe(v));
	return false;
}

/* Pass 1: every `let`, in source order (top level and inside blocks). */
static void collect_let(Sema *S, Stmt *s)
{
	Const *prev = find_const(S, s->name);
	if (prev) {
		diag_error(s->name_pos, "duplicate constant '%s'", s->name);
		diag_note(prev->pos, "'%s' was first defined here", s->name);
		return;
	}
	Const c = {s->name, s->name_pos, 0, false};
	char what[96];
	snprintf(what, sizeof what, "a number for constant '%.40s'", s->name);
	c.ok = num_value(S, s->val, what, &c.val);
	S->consts = realloc(S->consts, sizeof *S->consts * (size_t)(S->nconsts + 1));
	if (!S->consts)
		exit(1);
	S->consts[S->nconsts++] = c;
}

static void collect_consts(Sema *S, Stmt *items)
{
	for (Stmt *s = items; s; s = s->next) {
		if (s->kind == ST_LET)
			collect_let(S, s);
		else if (s->kind == ST_NETWORK || s->kind == ST_TRAIN)
			for (Stmt *b = s->body; b; b = b->next)
				if (b->kind == ST_LET)
					collect_let(S, b);
	}
}

/* ---- call arguments, checked against a list of parameter names ---- */

/* Binds call's arguments to slots[0..n): the first npositional may be
 * given by position, all by name. `what` names the callee in messages
 * ("dense", "rule 'usf'"), `usage` shows a correct call. Returns false
 * (after reporting) on unknown, extra or repeated arguments. */
static bool bind_args(const Value *call, const char *const *names, int n, int npositional,
                      const char *what, const char *usage, const Arg **slots)
{
	bool ok = true;
	int next_pos = 0;
	for (int i = 0; i < n; i++)
		slots[i] = NULL;
	for (int i = 0; i < call->nargs; i++) {
		const Arg *a = &call->args[i];
		int slot;
		if (!a->key) {
			if (next_pos >= npositional) {
				if (n == 0)
					diag_error(a->val->pos, "%s takes no arguments", what);
				else if (npositional == 0)
					diag_error(a->val->pos, "arguments of %s must be named, as in %s", what, usage);
				else
					diag_error(a->val->pos, "too many arguments to %s (expected %s)", what, usage);
				ok = false;
				continue;
			}
			slot = next_pos++;
		} else {
			slot = index_of(a->key, names, n);
			if (slot < 0) {
				if (n == 0)
					diag_error(a->key_pos, "%s takes no arguments", what);
				else
					diag_error(a->key_pos, "unknown argument '%s' to %s%s", a->key, what,
					           mean(a->key, names, n));
				ok = false;
				continue;
			}
		}
		if (slots[slot]) {
			diag_error(a->key ? a->key_pos : a->val->pos, "duplicate argument '%s' to %s",
			           names[slot], what);
			diag_note(slots[slot]->key ? slots[slot]->key_pos : slots[slot]->val->pos,
			          "'%s' was first given here", names[slot]);
			ok = false;
			continue;
		}
		slots[slot] = a;
	}
	return ok;
}

/* ---- the network: input, layers, loss ---- */

static Node *find_node(Sema *S, const char *name)
{
	for (int i = 0; i < S->nnodes; i++)
		if (!strcmp(S->nodes[i].name, name))
			return &S->nodes[i];
	return NULL;
}

/* Pass over the network's statements collecting every defined name, so a
 * reference can tell "defined later" from "unknown". */
static void collect_names(Sema *S, Stmt *net)
{
	for (Stmt *s = net->body; s; s = s->next) {
		if ((s->kind == ST_INPUT || s->kind == ST_LAYER) && S->nall < MAX_NODES &&
		    index_of(s->name, S->all_names, S->nall) < 0) {
			S->all_pos[S->nall] = s->name_pos;
			S->all_names[S->nall++] = s->name;
		}
	}
}

/* Adds a node, or reports a duplicate name and returns NULL. */
static Node *define_node(Sema *S, Stmt *s)
{
	Node *prev = find_node(S, s->name);
	if (prev) {
		diag_error(s->name_pos, "duplicate name '%s'", s->name);
		diag_note(prev->pos, "'%s' was first defined here", s->name);
		return NULL;
	}
	if (S->nnodes == MAX_NODES) {
		diag_error(s->name_pos, "too many layers (the limit is %d)", MAX_NODES - 1);
		return NULL;
	}
	Node *n = &S->nodes[S->nnodes++];
	memset(n, 0, sizeof *n);
	n->name = s->name;
	n->pos = s->name_pos;
	n->stmt = s;
	n->layer = -1;
	return n;
}

/* Resolves a reference to a layer or the input. `user` is the layer being
 * defined (NULL for the loss). */
static Node *resolve_node(Sema *S, const Value *v, const char *user)
{
	if (v->kind != VAL_NAME) {
		diag_error(v->pos, "expected a layer name, found %s", describe(v));
		return NULL;
	}
	if (user && !strcmp(v->text, user)) {
		diag_error(v->pos, "layer '%s' cannot take itself as input", user);
		return NULL;
	}
	Node *n = find_node(S, v->text);
	if (n)
		return n->broken ? NULL : n;   /* broken: already reported */
	int later = index_of(v->text, S->all_names, S->nall);
	if (later >= 0) {
		diag_error(v->pos, "layer '%s' is used before it is defined", v->text);
		diag_note(S->all_pos[later], "'%s' is defined here", v->text);
		return NULL;
	}
	diag_error(v->pos, "unknown layer '%s'%s", v->text, mean(v->text, S->all_names, S->nall));
	return NULL;
}

static void check_input(Sema *S, Stmt *s)
{
	if (S->input) {
		diag_error(s->pos, "a network has one input; '%s' is a second", s->name);
		diag_note(S->input->pos, "the input '%s' is defined here", S->input->name);
		return;
	}
	S->input = s;
	Node *n = define_node(S, s);
	long units = 0;
	bool ok = int_value(S, s->val, "the input size", 1, MAX_UNITS, &units);
	if (n) {
		n->units = ok ? (int)units : 0;
		n->units_pos = s->val->pos;
	}
}

static const char *const act_names[] = {"identity", "relu", "tanh", "sigmoid"};
static const char *const init_names[] = {"he", "xavier", "normal", "uniform"};

static bool check_act(const Value *v, Act *out)
{
	if (v->kind != VAL_NAME) {
		diag_error(v->pos, "expected an activation (identity, relu, tanh or sigmoid), found %s",
		           describe(v));
		return false;
	}
	int i = index_of(v->text, act_names, 4);
	if (i < 0) {
		const char *s = suggest_from(v->text, act_names, 4);
		if (s)
			diag_error(v->pos, "unknown activation '%s' (did you mean '%s'?)", v->text, s);
		else
			diag_error(v->pos, "unknown activation '%s' (expected identity, relu, tanh or sigmoid)",
			           v->text);
		return false;
	}
	*out = (Act)i;
	return true;
}

static bool check_init(Sema *S, const Value *v, Init *init, double *arg)
{
	if (v->kind != VAL_NAME && v->kind != VAL_CALL) {
		diag_error(v->pos, "expected an initialiser (he, xavier, normal(STD) or uniform(A)), found %s",
		           describe(v));
		return false;
	}
	int i = index_of(v->text, init_names, 4);
	if (i < 0) {
		const char *s = suggest_from(v->text, init_names, 4);
		if (s)
			diag_error(v->pos, "unknown initialiser '%s' (did you mean '%s'?)", v->text, s);
		else
			diag_error(v->pos, "unknown initialiser '%s' (expected he, xavier, normal(STD) or uniform(A))",
			           v->text);
		return false;
	}
	*init = (Init)i;
	*arg = 0;
	if (i == INIT_HE || i == INIT_XAVIER) {
		if (v->kind == VAL_CALL) {
			diag_error(v->pos, "initialiser '%s' takes no arguments", v->text);
			return false;
		}
		return true;
	}
	const char *param = i == INIT_NORMAL ? "std" : "a";
	const char *usage = i == INIT_NORMAL ? "normal(0.01)" : "uniform(0.05)";
	const char *desc = i == INIT_NORMAL ? "the standard deviation" : "the bound of uniform";
	const Arg *slot;
	char what[32];
	snprintf(what, sizeof what, "'%s'", v->text);
	if (v->kind == VAL_NAME || v->nargs == 0) {
		diag_error(v->pos, "initialiser '%s' needs %s, as in %s", v->text, desc, usage);
		return false;
	}
	if (!bind_args(v, &param, 1, 1, what, usage, &slot) || !slot)
		return false;
	return real_value(S, slot->val, desc, 0, true, HUGE_VAL, false, "positive", arg);
}

static void check_layer(Sema *S, Stmt *s)
{
	Node *self = define_node(S, s);
	if (self)
		self->broken = true;     /* until the layer is built */
	const Value *v = s->val;
	if (v->kind != VAL_CALL) {
		diag_error(v->pos, "expected a layer such as dense(x, 10), found %s", describe(v));
		return;
	}
	if (strcmp(v->text, "dense")) {
		static const char *const kinds[] = {"dense"};
		const char *sg = suggest_from(v->text, kinds, 1);
		diag_error(v->pos, "unknown layer kind '%s' (%s)", v->text,
		           sg ? "did you mean 'dense'?" : "version 1 has only 'dense'");
		return;
	}
	static const char *const params[] = {"source", "units", "act", "init", "bias"};
	const Arg *a[5];
	const char *usage = "dense(SOURCE, UNITS, act=..., init=..., bias=...)";
	bool ok = bind_args(v, params, 5, 2, "dense", usage, a);
	IRLayer L = {0};
	L.name = s->name;
	L.pos = s->name_pos;
	L.act = ACT_IDENTITY;
	L.init = INIT_HE;
	L.bias = true;
	L.W = L.b = L.B = L.D = L.gW = L.gb = L.mW = L.mb = L.mB = L.vW = L.vb = L.vB = L.y = L.d = -1;

	Node *src = NULL;
	if (!a[0]) {
		diag_error(v->pos, "dense needs a source layer, as in %s", usage);
		ok = false;
	} else if ((src = resolve_node(S, a[0]->val, s->name)) != NULL) {
		if (src->consumers > 0) {
			diag_error(a[0]->val->pos, "'%s' already feeds '%s'; in version 1 each layer feeds only one other",
			           src->name, src->consumer);
			diag_note(src->consumer_pos, "'%s' reads '%s' here", src->consumer, src->name);
			ok = false;
		}
		src->consumers++;
		if (src->consumers == 1) {
			src->consumer = s->name;
			src->consumer_pos = a[0]->val->pos;
		}
		L.input = src->layer;
		L.in = src->units;
		ok = ok && src->units > 0;
	} else {
		ok = false;
	}
	long units = 0;
	Pos units_pos = v->pos;
	if (!a[1]) {
		diag_error(v->pos, "dense needs a number of units, as in %s", usage);
		ok = false;
	} else {
		units_pos = a[1]->val->pos;
		if (int_value(S, a[1]->val, "the number of units", 1, MAX_UNITS, &units))
			L.out = (int)units;
		else
			ok = false;
	}
	if (a[2] && !check_act(a[2]->val, &L.act))
		ok = false;
	if (a[3] && !check_init(S, a[3]->val, &L.init, &L.init_arg))
		ok = false;
	if (a[4] && !bool_value(a[4]->val, "bias", &L.bias))
		ok = false;
	if (ok && (long)L.in * L.out > MAX_WEIGHTS) {
		diag_error(units_pos, "layer '%s' would have %ld weights; the limit is %ld",
		           s->name, (long)L.in * L.out, MAX_WEIGHTS);
		ok = false;
	}
	if (!self)
		return;
	/* The layer exists even after errors, so later references resolve. */
	self->layer = S->nlayers;
	self->broken = false;
	self->units = ok ? L.out : 0;
	self->units_pos = units_pos;
	S->layers = realloc(S->layers, sizeof *S->layers * (size_t)(S->nlayers + 1));
	if (!S->layers)
		exit(1);
	S->layers[S->nlayers++] = L;
}

static const char *const loss_names[] = {"softmax_cross_entropy", "mse"};

static void check_loss(Sema *S, Stmt *s)
{
	if (S->loss) {
		diag_error(s->pos, "a network has one loss");
		diag_note(S->loss->pos, "the loss is defined here");
		return;
	}
	S->loss = s;
	S->loss_layer = -1;
	const Value *v = s->val;
	if (v->kind != VAL_CALL && v->kind != VAL_NAME) {
		diag_error(v->pos, "expected a loss such as softmax_cross_entropy(out), found %s", describe(v));
		return;
	}
	if (index_of(v->text, loss_names, 2) < 0) {
		const char *sg = suggest_from(v->text, loss_names, 2);
		if (sg)
			diag_error(v->pos, "unknown loss '%s' (did you mean '%s'?)", v->text, sg);
		else
			diag_error(v->pos, "unknown loss '%s' (expected softmax_cross_entropy or mse)", v->text);
		return;
	}
	if (v->kind == VAL_NAME || v->nargs == 0) {
		diag_error(v->pos, "the loss needs the network's output layer, as in %s(out)", v->text);
		return;
	}
	static const char *const params[] = {"output"};
	const Arg *a;
	char what[48], usage[48];
	snprintf(what, sizeof what, "loss '%s'", v->text);
	snprintf(usage, sizeof usage, "%s(out)", v->text);
	if (!bind_args(v, params, 1, 1, what, usage, &a) || !a)
		return;
	S->loss_arg_pos = a->val->pos;
	Node *n = resolve_node(S, a->val, NULL);
	if (!n)
		return;
	if (n->layer < 0) {
		diag_error(a->val->pos, "the loss needs a dense layer, not the input '%s'", n->name);
		return;
	}
	S->loss_layer = n->layer;
}

/* ---- feedback rules ---- */

/* What a rule argument of this kind must be, in words, or NULL when x
 * is acceptable. */
static const char *rule_arg_problem(RuleArgKind kind, double x)
{
	bool integer = x == floor(x) && fabs(x) <= 1 << 30;
	switch (kind) {
	case RULE_ARG_ANY: return NULL;
	case RULE_ARG_POSITIVE: return x > 0 ? NULL : "positive";
	case RULE_ARG_NONNEG: return x >= 0 ? NULL : "zero or positive";
	case RULE_ARG_FRACTION: return x >= 0 && x < 1 ? NULL : "in [0, 1)";
	case RULE_ARG_NONNEG_OR_DEFAULT:
		return x >= 0 || x == -1 ? NULL
		       : "zero or positive (or -1 for the optimizer's weight_decay)";
	case RULE_ARG_POS_INT: return integer && x > 0 ? NULL : "a positive integer";
	case RULE_ARG_NONNEG_INT: return integer && x >= 0 ? NULL : "a non-negative integer";
	}
	return NULL;
}

/* Argument i of rule def, checked against what the rule accepts
 * (rule_arg_kind); the error points at the value. */
static bool rule_arg_value(Sema *S, const RuleDef *def, int i, const Value *v, double *out)
{
	const char *name = def->params[i].name;
	char expect[64];
	snprintf(expect, sizeof expect, "a number for '%s'", name);
	if (!num_value(S, v, expect, out))
		return false;
	const char *problem = rule_arg_problem(rule_arg_kind(def, i), *out);
	if (problem) {
		diag_error(v->pos, "'%s' must be %s, found %s", name, problem, shown(v, *out));
		return false;
	}
	return true;
}

static bool check_rule(Sema *S, const Value *v, IRRule *out)
{
	if (v->kind != VAL_NAME && v->kind != VAL_CALL) {
		diag_error(v->pos, "expected a rule such as bp or fa, found %s", describe(v));
		return false;
	}
	const RuleDef *def = rule_lookup(v->text);
	if (!def) {
		const char *names[32];
		int n = 0;
		for (int i = 0; i < rule_count && n < 32; i++)
			names[n++] = rule_table[i].name;
		const char *sg = suggest_from(v->text, names, n);
		if (sg)
			diag_error(v->pos, "unknown rule '%s' (did you mean '%s'?)", v->text, sg);
		else
			diag_error(v->pos, "unknown rule '%s'", v->text);
		return false;
	}
	bool ok = true;
	if (!def->supported) {
		diag_error(v->pos, "rule '%s' is not supported yet", def->name);
		ok = false;
	}
	out->def = def;
	out->pos = v->pos;
	for (int i = 0; i < def->nparams; i++)
		out->args[i] = def->params[i].def;
	if (v->kind == VAL_NAME)
		return ok;
	const char *names[RULE_MAX_PARAMS];
	const Arg *slots[RULE_MAX_PARAMS];
	for (int i = 0; i < def->nparams; i++)
		names[i] = def->params[i].name;
	char what[48], usage[64];
	snprintf(what, sizeof what, "rule '%s'", def->name);
	if (def->nparams > 0)
		snprintf(usage, sizeof usage, "%s(%s=%g)", def->name, names[0], def->params[0].def);
	else
		snprintf(usage, sizeof usage, "%s", def->name);
	if (!bind_args(v, names, def->nparams, 0, what, usage, slots))
		ok = false;
	for (int i = 0; i < def->nparams; i++)
		if (slots[i] && !rule_arg_value(S, def, i, slots[i]->val, &out->args[i]))
			ok = false;
	return ok;
}

/* One feedback entry (from the file or, with `override`, the command
 * line, where a later entry replaces an earlier one). */
static void feedback_entry(Sema *S, Stmt *e, bool override)
{
	if (e->kind == ST_DEFAULT) {
		if (S->default_entry && !override) {
			diag_error(e->pos, "duplicate default rule");
			diag_note(S->default_entry->pos, "the default is first set here");
			return;
		}
		check_rule(S, e->val, &S->default_rule);
		S->default_entry = e;
		return;
	}
	Node *n = find_node(S, e->name);
	if (n && n->broken) {
		check_rule(S, e->val, &(IRRule){0});
		return;
	}
	if (!n) {
		diag_error(e->name_pos, "unknown layer '%s' in feedback%s", e->name,
		           mean(e->name, S->all_names, S->nall));
		check_rule(S, e->val, &(IRRule){0});
		return;
	}
	if (n->layer < 0) {
		diag_error(e->name_pos, "'%s' has no weights; only dense layers take a feedback rule", e->name);
		return;
	}
	if (n->rule_entry && !override) {
		diag_error(e->name_pos, "duplicate feedback entry for '%s'", e->name);
		diag_note(n->rule_entry->name_pos, "'%s' is first given a rule here", e->name);
		return;
	}
	check_rule(S, e->val, &S->layers[n->layer].rule);
	n->rule_entry = e;
}

static void check_feedback(Sema *S, const char *const *overrides, int noverrides)
{
	S->default_rule = (IRRule){.def = rule_lookup("bp")};
	for (Node *n = S->nodes; n < S->nodes + S->nnodes; n++)
		if (n->layer >= 0)
			S->layers[n->layer].rule = S->default_rule;
	if (S->feedback)
		for (Stmt *e = S->feedback->body; e; e = e->next)
			feedback_entry(S, e, false);
	for (int i = 0; i < noverrides; i++) {
		SrcFile *f = ast_alloc(sizeof *f);
		f->name = "--feedback";
		f->len = strlen(overrides[i]);
		f->text = ast_strdup(overrides[i], f->len);
		Stmt *e = parse_override(f);
		if (e)
			feedback_entry(S, e, true);
	}
	/* Layers without an entry of their own follow the default. */
	for (Node *n = S->nodes; n < S->nodes + S->nnodes; n++)
		if (n->layer >= 0 && !n->rule_entry)
			S->layers[n->layer].rule = S->default_rule;
}

/* ---- whole-network checks ---- */

static void check_chain(Sema *S, Stmt *net)
{
	if (S->nlayers == 0) {
		diag_error(net->name_pos, "network '%s' has no layers (add e.g. 'out = dense(x, 10)')",
		           net->name);
		return;
	}
	for (Node *n = S->nodes; n < S->nodes + S->nnodes; n++) {
		if (n->consumers > 0 || n->layer == S->nlayers - 1)
			continue;
		if (n->layer < 0)
			diag_error(n->pos, "input '%s' is not used by any layer", n->name);
		else
			diag_error(n->pos, "layer '%s' feeds nothing; every layer but the last must feed another",
			           n->name);
	}
}

static void check_output(Sema *S, Stmt *net, bool layers_ok)
{
	if (!S->loss) {
		const char *out = S->nlayers ? S->layers[S->nlayers - 1].name : "out";
		diag_error(net->name_pos, "network '%s' has no loss (add e.g. 'loss softmax_cross_entropy(%s)')",
		           net->name, out);
		return;
	}
	if (S->loss_layer < 0 || S->nlayers == 0 || !layers_ok)
		return;
	const IRLayer *last = &S->layers[S->nlayers - 1];
	if (S->loss_layer != S->nlayers - 1) {
		diag_error(S->loss_arg_pos, "the loss takes '%s', but the network's output is its last layer, '%s'",
		           S->layers[S->loss_layer].name, last->name);
		return;
	}
}

/* ---- train ---- */

typedef struct DataSet { const char *name; int inputs, classes; } DataSet;
static const DataSet data_sets[] = {
	{"fashion_mnist", 784, 10}, {"mnist", 784, 10}, {"synthetic", 0, 0},
};

static const char *const setting_names[] = {"data", "batch", "epochs", "seed", "optimizer", "schedule"};

static void check_data(Sema *S, const Value *v, TrainCfg *t)
{
	if (v->kind == VAL_STR) {
		if (!v->text[0])
			diag_error(v->pos, "the data path is empty");
		t->data = v->text;
		return;
	}
	if (v->kind != VAL_NAME) {
		diag_error(v->pos, "expected a data set name or a \"path\", found %s", describe(v));
		return;
	}
	const char *names[] = {"fashion_mnist", "mnist", "synthetic"};
	if (index_of(v->text, names, 3) < 0) {
		const char *sg = suggest_from(v->text, names, 3);
		if (sg)
			diag_error(v->pos, "unknown data set '%s' (did you mean '%s'?)", v->text, sg);
		else
			diag_error(v->pos, "unknown data set '%s' (expected fashion_mnist, mnist, synthetic or a \"path\")",
			           v->text);
		return;
	}
	t->data = v->text;
}

static void check_optimizer(Sema *S, const Value *v, TrainCfg *t)
{
	static const char *const opts[] = {"sgd", "adam"};
	if (v->kind != VAL_NAME && v->kind != VAL_CALL) {
		diag_error(v->pos, "expected an optimizer such as sgd(lr=0.1), found %s", describe(v));
		return;
	}
	int o = index_of(v->text, opts, 2);
	if (o < 0) {
		const char *sg = suggest_from(v->text, opts, 2);
		if (sg)
			diag_error(v->pos, "unknown optimizer '%s' (did you mean '%s'?)", v->text, sg);
		else
			diag_error(v->pos, "unknown optimizer '%s' (expected sgd or adam)", v->text);
		return;
	}
	t->opt = (Opt)o;
	if (o == OPT_ADAM)
		t->lr = 0.001;
	if (v->kind == VAL_NAME)
		return;
	static const char *const sgd_params[] = {"lr", "momentum", "nesterov", "weight_decay"};
	static const char *const adam_params[] = {"lr", "beta1", "beta2", "eps", "weight_decay"};
	const char *const *params = o == OPT_SGD ? sgd_params : adam_params;
	int n = o == OPT_SGD ? 4 : 5;
	const Arg *a[5];
	char what[32];
	snprintf(what, sizeof what, "optimizer '%s'", v->text);
	bind_args(v, params, n, 0, what, o == OPT_SGD ? "sgd(lr=0.1)" : "adam(lr=0.001)", a);
	for (int i = 0; i < n; i++) {
		if (!a[i])
			continue;
		const char *p = params[i];
		const Value *x = a[i]->val;
		if (!strcmp(p, "lr"))
			real_value(S, x, "the learning rate", 0, true, HUGE_VAL, false, "positive", &t->lr);
		else if (!strcmp(p, "momentum"))
			real_value(S, x, "'momentum'", 0, false, 1, true, "in [0, 1)", &t->momentum);
		else if (!strcmp(p, "nesterov"))
			bool_value(x, "nesterov", &t->nesterov);
		else if (!strcmp(p, "weight_decay"))
			real_value(S, x, "weight decay", 0, false, HUGE_VAL, false, "zero or positive", &t->weight_decay);
		else if (!strcmp(p, "beta1"))
			real_value(S, x, "'beta1'", 0, false, 1, true, "in [0, 1)", &t->beta1);
		else if (!strcmp(p, "beta2"))
			real_value(S, x, "'beta2'", 0, false, 1, true, "in [0, 1)", &t->beta2);
		else if (!strcmp(p, "eps"))
			real_value(S, x, "'eps'", 0, true, HUGE_VAL, false, "positive", &t->eps);
	}
	if (t->nesterov && t->momentum == 0 && a[2])
		diag_warning(a[2]->key_pos, "nesterov has no effect without momentum");
}

static void check_schedule(Sema *S, const Value *v, TrainCfg *t)
{
	static const char *const scheds[] = {"none", "step", "cosine"};
	if (v->kind != VAL_NAME && v->kind != VAL_CALL) {
		diag_error(v->pos, "expected a schedule such as step(every=10, gamma=0.1), found %s", describe(v));
		return;
	}
	int k = index_of(v->text, scheds, 3);
	if (k < 0) {
		const char *sg = suggest_from(v->text, scheds, 3);
		if (sg)
			diag_error(v->pos, "unknown schedule '%s' (did you mean '%s'?)", v->text, sg);
		else
			diag_error(v->pos, "unknown schedule '%s' (expected none, step or cosine)", v->text);
		return;
	}
	t->sched = (Sched)k;
	if (v->kind == VAL_NAME)
		return;
	static const char *const step_params[] = {"every", "gamma"};
	static const char *const cos_params[] = {"min_lr"};
	const Arg *a[2] = {0};
	char what[32];
	snprintf(what, sizeof what, "schedule '%s'", v->text);
	if (k == SCHED_NONE) {
		bind_args(v, NULL, 0, 0, what, "none", a);
	} else if (k == SCHED_STEP) {
		bind_args(v, step_params, 2, 0, what, "step(every=10, gamma=0.1)", a);
		long every;
		if (a[0] && int_value(S, a[0]->val, "'every'", 1, INT_MAX, &every))
			t->step_every = (int)every;
		if (a[1])
			real_value(S, a[1]->val, "'gamma'", 0, true, HUGE_VAL, false, "positive", &t->gamma);
	} else {
		bind_args(v, cos_params, 1, 0, what, "cosine(min_lr=0.0001)", a);
		if (a[0])
			real_value(S, a[0]->val, "'min_lr'", 0, false, HUGE_VAL, false, "zero or positive", &t->min_lr);
	}
}

static TrainCfg default_train(void)
{
	return (TrainCfg){
		.data = "synthetic", .batch = 32, .epochs = 1, .seed = 1, .opt = OPT_SGD,
		.lr = 0.01, .momentum = 0, .weight_decay = 0, .beta1 = 0.9, .beta2 = 0.999,
		.eps = 1e-8, .nesterov = false, .sched = SCHED_NONE, .step_every = 1,
		.gamma = 0.1, .min_lr = 0,
	};
}

static void check_train(Sema *S, Stmt *train, TrainCfg *t)
{
	Stmt *seen[6] = {0};
	for (Stmt *s = train->body; s; s = s->next) {
		if (s->kind == ST_LET)
			continue;
		int k = index_of(s->name, setting_names, 6);
		if (k < 0) {
			const char *sg = suggest_from(s->name, setting_names, 6);
			if (sg)
				diag_error(s->name_pos, "unknown train setting '%s' (did you mean '%s'?)", s->name, sg);
			else
				diag_error(s->name_pos, "unknown train setting '%s' (expected data, batch, epochs, seed, optimizer or schedule)",
				           s->name);
			continue;
		}
		if (seen[k]) {
			diag_error(s->name_pos, "duplicate train setting '%s'", s->name);
			diag_note(seen[k]->name_pos, "'%s' is first set here", s->name);
			continue;
		}
		seen[k] = s;
		long n;
		switch (k) {
		case 0:
			S->data_stmt = s;
			check_data(S, s->val, t);
			break;
		case 1:
			if (int_value(S, s->val, "the batch size", 1, 1 << 20, &n))
				t->batch = (int)n;
			break;
		case 2:
			if (int_value(S, s->val, "the number of epochs", 1, 1000000, &n))
				t->epochs = (int)n;
			break;
		case 3:
			if (int_value(S, s->val, "the seed", 0, LONG_MAX / 2, &n))
				t->seed = n;
			break;
		case 4:
			/* the optimiser sets its own default lr, so it must be read
			 * before the schedule compares min_lr with lr */
			check_optimizer(S, s->val, t);
			break;
		case 5:
			check_schedule(S, s->val, t);
			break;
		}
	}
	if (t->sched == SCHED_COSINE && seen[5] && t->min_lr >= t->lr)
		diag_warning(seen[5]->val->pos, "min_lr (%g) is not below the learning rate (%g)", t->min_lr, t->lr);
}

/* The data set fixes the input size and the number of classes. */
static void check_data_shapes(Sema *S, const TrainCfg *t)
{
	const DataSet *d = NULL;
	for (int i = 0; i < 3; i++)
		if (!strcmp(data_sets[i].name, t->data) && data_sets[i].inputs > 0)
			d = &data_sets[i];
	if (!d || !S->data_stmt)
		return;
	Node *in = S->input ? find_node(S, S->input->name) : NULL;
	if (in && in->layer < 0 && in->units > 0 && in->units != d->inputs) {
		diag_error(in->units_pos, "input '%s' has %d units, but %s examples have %d",
		           in->name, in->units, d->name, d->inputs);
		diag_note(S->data_stmt->val->pos, "the data set is chosen here");
	}
	if (S->nlayers > 0 && S->loss_layer == S->nlayers - 1) {
		const IRLayer *out = &S->layers[S->nlayers - 1];
		Node *n = find_node(S, out->name);
		if (out->out > 0 && out->out != d->classes && n) {
			diag_error(n->units_pos, "the output layer '%s' has %d units, but %s has %d classes",
			           out->name, out->out, d->name, d->classes);
			diag_note(S->data_stmt->val->pos, "the data set is chosen here");
		}
	}
}

/* Does an earlier layer share layer i's rule entry (a default rule)? Its
 * warning was given there already. */
static bool warned_before(Sema *S, int i)
{
	Pos p = S->layers[i].rule.pos;
	for (int j = 0; j < i; j++) {
		Pos q = S->layers[j].rule.pos;
		if (q.file == p.file && q.line == p.line && q.col == p.col)
			return true;
	}
	return false;
}

/* Warnings that need the network and the train block together. */
static void check_combination(Sema *S, const TrainCfg *t)
{
	for (int i = 0; i < S->nlayers; i++) {
		/* B takes W's steps: only weight decay shrinks W - B (kp). */
		const IRRule *r = &S->layers[i].rule;
		if (!r->def || r->def->change != FB_CHANGE_AS_W)
			continue;
		int k = rule_param_index(r->def, "decay");
		double decay = k >= 0 && r->args[k] >= 0 ? r->args[k] : t->weight_decay;
		if (decay != 0 || warned_before(S, i))
			continue;
		if (k >= 0 && r->args[k] == 0)
			diag_warning(r->pos, "%s with decay=0: B never converges to W "
			             "(give it a positive decay)", r->def->name);
		else
			diag_warning(r->pos, "%s without weight decay: B never converges to W "
			             "(set weight_decay in the optimizer)", r->def->name);
	}
	if (S->loss && S->loss_layer >= 0 && S->loss_layer == S->nlayers - 1) {
		const IRLayer *out = &S->layers[S->loss_layer];
		if (out->act != ACT_IDENTITY && S->loss->val->text &&
		    !strcmp(S->loss->val->text, "softmax_cross_entropy"))
			diag_warning(out->pos, "'%s' has act=%s, but softmax_cross_entropy applies softmax itself; "
			             "the output usually has no activation", out->name, act_names[out->act]);
	}
}

/* ---- the program ---- */

static Loss loss_kind(const Stmt *loss)
{
	return loss && !strcmp(loss->val->text, "mse") ? LOSS_MSE : LOSS_SOFTMAX_CE;
}

IRNetwork *sema_program(Program *p, const char *const *overrides, int noverrides)
{
	int errors_before = diag_errors;
	Sema *S = ast_alloc(sizeof *S);
	S->file = p->file;
	S->loss_layer = -1;
	collect_consts(S, p->items);

	Stmt *net = NULL, *train = NULL;
	for (Stmt *s = p->items; s; s = s->next) {
		if (s->kind == ST_NETWORK) {
			if (net) {
				diag_error(s->name_pos, "a file holds one network; '%s' is a second", s->name);
				diag_note(net->name_pos, "network '%s' is defined here", net->name);
			} else {
				net = s;
			}
		} else if (s->kind == ST_TRAIN) {
			if (train) {
				diag_error(s->pos, "duplicate train block");
				diag_note(train->pos, "the first train block is here");
			} else {
				train = s;
			}
		}
	}
	if (!net) {
		diag_error((Pos){p->file, 1, 1}, "no network in this file (expected 'network NAME { ... }')");
		return NULL;
	}

	collect_names(S, net);
	for (Stmt *s = net->body; s; s = s->next) {
		switch (s->kind) {
		case ST_INPUT: check_input(S, s); break;
		case ST_LAYER: check_layer(S, s); break;
		case ST_LOSS: check_loss(S, s); break;
		case ST_FEEDBACK:
			if (S->feedback) {
				diag_error(s->pos, "duplicate feedback block");
				diag_note(S->feedback->pos, "the first feedback block is here");
			} else {
				S->feedback = s;
			}
			break;
		default: break;
		}
	}
	int errors_in_layers = diag_errors;
	if (!S->input)
		diag_error(net->name_pos, "network '%s' has no input (add e.g. 'input x[784]')", net->name);
	if (errors_in_layers == errors_before)
		check_chain(S, net);
	check_output(S, net, errors_in_layers == errors_before);
	check_feedback(S, overrides, noverrides);

	TrainCfg t = default_train();
	if (train)
		check_train(S, train, &t);
	check_data_shapes(S, &t);
	if (diag_errors == errors_before)
		check_combination(S, &t);
	if (diag_errors > errors_before)
		return NULL;

	IRNetwork *ir = ast_alloc(sizeof *ir);
	ir->name = net->name;
	ir->input_name = S->input->name;
	ir->in_units = find_node(S, S->input->name)->units;
	ir->x_slot = -1;
	ir->layers = S->layers;
	ir->nlayers = S->nlayers;
	ir->loss = loss_kind(S->loss);
	ir->train = t;
	ir->bufs = NULL;
	ir->nbufs = 0;
	return ir;
}
