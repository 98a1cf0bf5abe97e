/* sema.c: checks and shape inference, AST -> IRNetwork.
 * The grammar accepts any value anywhere; this file decides what each
 * position takes and says so when it gets something else. It reports every
 * error it can find, skipping only checks that would repeat an earlier one
 * (a layer with a bad source is not also called "unused").
 *
 * The network body runs like a program: each statement defines a node of
 * the graph, a block call runs the block's body in a new scope whose names
 * get the call's path as a prefix ("layer2.0." + "conv1"), `if` picks a
 * branch at compile time, and repeat(N, call) chains N calls. */
#include "wtnc.h"
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_UNITS = 1 << 20, MAX_NODES = 16384, MAX_DIM = 1 << 15, MAX_DEPTH = 32 };
enum { MAX_NAME = 63 };            /* characters of a network, input or layer path */
enum { MAX_PATTERNS = 1024 };      /* feedback entries with * or ? */
#define MAX_WEIGHTS 2147483647L
#define MAX_ACTIVATION (1L << 28)   /* units per sample of one layer's output */

/* Names to indices, so that lookups stay constant-time however many names
 * a file defines (open addressing; the keys are not owned). */
typedef struct NameMap {
	const char **keys;
	int *vals;
	int cap, n;
} NameMap;

static unsigned long name_hash(const char *s)
{
	unsigned long h = 1469598103934665603UL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211UL;
	return h;
}

static int map_get(const NameMap *m, const char *key)
{
	if (!m->cap)
		return -1;
	for (unsigned long i = name_hash(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (!m->keys[i])
			return -1;
		if (!strcmp(m->keys[i], key))
			return m->vals[i];
	}
}

/* Sets key's value (a later definition replaces an earlier one). */
static void map_put(NameMap *m, const char *key, int val)
{
	if (2 * (m->n + 1) > m->cap) {
		NameMap bigger = {calloc(m->cap ? 2 * m->cap : 16, sizeof *m->keys),
		                  calloc(m->cap ? 2 * m->cap : 16, sizeof *m->vals),
		                  m->cap ? 2 * m->cap : 16, 0};
		if (!bigger.keys || !bigger.vals) {
			fprintf(stderr, "wtnc: out of memory\n");
			exit(1);
		}
		for (int i = 0; i < m->cap; i++)
			if (m->keys[i])
				map_put(&bigger, m->keys[i], m->vals[i]);
		free(m->keys);
		free(m->vals);
		*m = bigger;
	}
	unsigned long i = name_hash(key) & (m->cap - 1);
	while (m->keys[i] && strcmp(m->keys[i], key))
		i = (i + 1) & (m->cap - 1);
	if (!m->keys[i])
		m->n++;
	m->keys[i] = key;
	m->vals[i] = val;
}

typedef struct Const {
	const char *name;
	Pos pos;
	double val;
	bool ok;                 /* false after an error in its value */
} Const;

/* A node is the input or a layer: anything a layer may read from. */
typedef struct Node {
	const char *name;        /* full path: "layer2.0.conv1" */
	Pos pos;
	int layer;               /* index into layers, -1 for the input */
	bool broken;             /* a layer whose definition had errors */
	Shape shape;
	Pos shape_pos;           /* where its size is written (units, filters) */
	int consumers;           /* layers reading this node */
	bool has_rule;           /* a feedback entry or pattern chose its rule */
	Stmt *exact_entry;       /* the feedback entry naming it exactly */
} Node;

/* A name of a scope that is not a layer of its own: a block parameter
 * bound to a layer (node >= 0) or to a value, or an alias (`s = x`, and the
 * name of a block call, which stands for the block's result). */
typedef struct Binding {
	const char *name;
	Pos pos;
	int node;                /* -1: a value parameter */
	const Value *val;
} Binding;

typedef struct BlockDef {
	Stmt *stmt;
	bool failed;             /* an instantiation had errors: later calls stay quiet */
} BlockDef;

typedef struct Scope {
	struct Scope *up;        /* the caller's scope */
	const char *prefix;      /* "" for the network body, else "layer2.0." */
	BlockDef *block;         /* NULL for the network body */
	Binding *binds;
	int nbinds;
	NameMap bind_index;      /* name -> its latest binding */
	const char **later;      /* every name the body defines, for "defined later" */
	Pos *later_pos;
	int nlater;
	NameMap later_index;     /* name -> index in later */
	int result;              /* the node `return` gives, -1 */
	Stmt *return_stmt;
} Scope;

typedef struct Sema {
	const SrcFile *file;
	Const *consts;
	int nconsts;
	NameMap const_index;     /* name -> index in consts */
	Node *nodes;             /* in definition order: input and layers */
	int nnodes;
	NameMap paths;           /* node path -> index */
	NameMap next_suffix;     /* path of a generated name -> the next _K to try */
	bool too_many;           /* past MAX_NODES: the rest of the body is not run */
	int npatterns;           /* feedback patterns seen */
	BlockDef *blocks;
	int nblocks;
	const char **instances;  /* paths of block calls, for feedback messages */
	int ninstances;
	NameMap instance_index;  /* path -> index in instances */
	Scope *scope;            /* the scope being run */
	int depth;
	IRLayer *layers;
	int nlayers;
	Stmt *input, *loss, *feedback, *data_stmt;
	int input_node;          /* -1 until defined */
	int loss_layer;          /* -1 if unknown */
	Pos loss_arg_pos;
	IRRule default_rule;
	Stmt *default_entry;
} Sema;

static void *grow(void *p, int n, size_t size)
{
	/* capacity: the next power of two >= n + 1 */
	if (n & (n - 1) && n != 0)
		return p;
	p = realloc(p, size * (size_t)(n ? 2 * n : 1));
	if (!p) {
		fprintf(stderr, "wtnc: out of memory\n");
		exit(1);
	}
	return p;
}

static char *cat(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = ast_alloc(la + lb + 1);
	memcpy(s, a, la);
	memcpy(s + la, b, lb);
	return s;
}

static bool is_pattern(const char *name)
{
	return strpbrk(name, "*?") != NULL;
}

static bool is_vector(Shape s)
{
	return s.h == 1 && s.w == 1;
}

/* "16x32x32" for an image, "10 units" for a vector */
static const char *shape_str(Shape s)
{
	static char buf[4][48];
	static int k;
	char *b = buf[k++ & 3];
	if (is_vector(s))
		snprintf(b, 48, "%d unit%s", s.c, s.c == 1 ? "" : "s");
	else
		snprintf(b, 48, "%dx%dx%d", s.c, s.h, s.w);
	return b;
}

/* The value a block parameter named `name` stands for in the current
 * scope, or NULL if it is not a value parameter. */
static const Value *param_value(Sema *S, const char *name)
{
	if (!S->scope)
		return NULL;
	for (int i = S->scope->nbinds - 1; i >= 0; i--) {
		const Binding *b = &S->scope->binds[i];
		if (!strcmp(b->name, name))
			return b->node < 0 ? b->val : NULL;
	}
	return NULL;
}

/* v with every value parameter replaced by what the call gave it. */
static const Value *subst(Sema *S, const Value *v)
{
	if (v->kind == VAL_NAME) {
		const Value *p = param_value(S, v->text);
		return p ? p : v;
	}
	if (v->kind != VAL_CALL && v->kind != VAL_LIST && v->kind != VAL_OP)
		return v;
	Value *c = ast_value(v->kind, v->pos, v->text);
	for (int i = 0; i < v->nargs; i++)
		ast_add_arg(c, v->args[i].key, v->args[i].key_pos, (Value *)subst(S, v->args[i].val));
	return c;
}

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
	if (!diag_will_show())
		return "";            /* past the shown errors: save the search */
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

/* The index of name in names[0..n); else reports "unknown WHAT 'name'"
 * with " (did you mean 'x'?)" or " (expected a, b or c)" (`expected`, if
 * not NULL, in place of the list) and returns -1. */
static int lookup_name(Pos pos, const char *what, const char *name, const char *const *names,
                       int n, const char *expected)
{
	int i = index_of(name, names, n);
	if (i >= 0)
		return i;
	const char *sg = suggest_from(name, names, n);
	if (sg) {
		diag_error(pos, "unknown %s '%s' (did you mean '%s'?)", what, name, sg);
		return -1;
	}
	char list[512] = "";
	size_t len = 0;
	for (int k = 0; !expected && k < n && len < sizeof list; k++)
		len += snprintf(list + len, sizeof list - len, "%s%s", k == 0 ? "" : k == n - 1 ? " or " : ", ",
		                names[k]);
	diag_error(pos, "unknown %s '%s' (expected %s)", what, name, expected ? expected : list);
	return -1;
}

static const char *describe(const Value *v)
{
	return ast_describe(v);
}

/* ---- constants and numbers ---- */

static Const *find_const(Sema *S, const char *name)
{
	int i = map_get(&S->const_index, name);
	return i >= 0 ? &S->consts[i] : NULL;
}

/* The number a value stands for: a literal or an earlier constant.
 * `what` names the expected thing for messages ("a number of units"). */
static bool num_value(Sema *S, const Value *v, const char *what, double *out)
{
	if (v->kind == VAL_NAME && param_value(S, v->text))
		v = param_value(S, v->text);
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

static bool bool_value(const Value *v, const char *what, int *out)
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
	S->consts = grow(S->consts, S->nconsts, sizeof *S->consts);
	map_put(&S->const_index, c.name, S->nconsts);
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



static bool check_act(const Value *v, int *out)
{
	if (v->kind != VAL_NAME) {
		diag_error(v->pos, "expected an activation (identity, relu, tanh or sigmoid), found %s",
		           describe(v));
		return false;
	}
	int i = lookup_name(v->pos, "activation", v->text, wtn_act_names, WTN_NACTS, NULL);
	if (i < 0)
		return false;
	*out = (Act)i;
	return true;
}

static bool check_init(Sema *S, const Value *v, int *init, double *arg)
{
	if (v->kind != VAL_NAME && v->kind != VAL_CALL) {
		diag_error(v->pos, "expected an initialiser (he, xavier, normal(STD) or uniform(A)), found %s",
		           describe(v));
		return false;
	}
	int i = lookup_name(v->pos, "initialiser", v->text, wtn_init_names, WTN_NINITS,
	                    "he, xavier, normal(STD) or uniform(A)");
	if (i < 0)
		return false;
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

static void check_loss(Sema *S, Stmt *s);

/* ---- scopes and names ---- */

static Node *node_at(Sema *S, int i)
{
	return i >= 0 ? &S->nodes[i] : NULL;
}

static int find_path(Sema *S, const char *path)
{
	return map_get(&S->paths, path);
}

static Binding *find_binding(Scope *sc, const char *name)
{
	int i = map_get(&sc->bind_index, name);
	return i >= 0 ? &sc->binds[i] : NULL;
}

static void bind(Scope *sc, const char *name, Pos pos, int node, const Value *val)
{
	sc->binds = grow(sc->binds, sc->nbinds, sizeof *sc->binds);
	map_put(&sc->bind_index, name, sc->nbinds);
	sc->binds[sc->nbinds++] = (Binding){name, pos, node, val};
}

/* Every name a body defines (in both branches of its ifs), so a reference
 * can tell "defined later" from "unknown". */
static void collect_names(Scope *sc, Stmt *body)
{
	for (Stmt *s = body; s; s = s->next) {
		if (s->kind == ST_IF) {
			collect_names(sc, s->body);
			collect_names(sc, s->else_body);
		}
		if (s->kind != ST_INPUT && s->kind != ST_LAYER)
			continue;
		if (map_get(&sc->later_index, s->name) >= 0)
			continue;
		map_put(&sc->later_index, s->name, sc->nlater);
		sc->later = grow(sc->later, sc->nlater, sizeof *sc->later);
		sc->later_pos = grow(sc->later_pos, sc->nlater, sizeof *sc->later_pos);
		sc->later_pos[sc->nlater] = s->name_pos;
		sc->later[sc->nlater++] = s->name;
	}
}

/* Is `name` taken in the scope? Reports a duplicate. */
static bool name_taken(Sema *S, const char *name, Pos pos)
{
	Scope *sc = S->scope;
	Binding *b = find_binding(sc, name);
	int n = b ? -1 : find_path(S, cat(sc->prefix, name));
	if (!b && n < 0)
		return false;
	diag_error(pos, "duplicate name '%s'", name);
	diag_note(b ? b->pos : S->nodes[n].pos, "'%s' was first defined here", name);
	return true;
}

static bool valid_name(const char *name, Pos pos)
{
	if (!is_pattern(name))
		return true;
	diag_error(pos, "'%s' is not a valid layer name (* and ? are for feedback patterns)", name);
	return false;
}

/* A new node at path prefix+local (marked broken until built). */
static int new_node(Sema *S, const char *local, Pos pos)
{
	if (S->nnodes == MAX_NODES) {
		diag_error(pos, "too many layers (the limit is %d)", MAX_NODES - 1);
		S->too_many = true;
		return -1;
	}
	const char *path = cat(S->scope->prefix, local);
	if (strlen(path) > MAX_NAME) {
		diag_error(pos, "the layer name '%.*s...' is %zu characters long; the limit is %d",
		           MAX_NAME / 2, path, strlen(path), MAX_NAME);
		return -1;
	}
	S->nodes = grow(S->nodes, S->nnodes, sizeof *S->nodes);
	Node *n = &S->nodes[S->nnodes];
	memset(n, 0, sizeof *n);
	n->name = path;
	map_put(&S->paths, path, S->nnodes);
	n->pos = pos;
	n->layer = -1;
	n->broken = true;
	return S->nnodes++;
}

/* "did you mean" candidates: the scope's names and parameters. */
static const char *mean_in_scope(Sema *S, const char *name)
{
	Scope *sc = S->scope;
	int n = sc->nlater + sc->nbinds;
	const char **names = ast_alloc(sizeof *names * (size_t)(n + 1));
	int k = 0;
	for (int i = 0; i < sc->nbinds; i++)
		names[k++] = sc->binds[i].name;
	for (int i = 0; i < sc->nlater; i++)
		names[k++] = sc->later[i];
	return mean(name, names, k);
}

/* The node a name stands for in the current scope, -1 after an error
 * (reported unless a broken layer explains it). `self` is the name being
 * defined (NULL if none). */
static int lookup_node(Sema *S, const Value *v, const char *self)
{
	Scope *sc = S->scope;
	if (v->kind != VAL_NAME) {
		diag_error(v->pos, "expected a layer name, found %s", describe(v));
		return -1;
	}
	if (self && !strcmp(v->text, self)) {
		diag_error(v->pos, "layer '%s' cannot take itself as input", cat(sc->prefix, self));
		return -1;
	}
	Binding *b = find_binding(sc, v->text);
	if (b && b->node < 0 && b->val) {
		diag_error(v->pos, "expected a layer name, found parameter '%s' (= %s)", v->text,
		           describe(b->val));
		return -1;
	}
	int n = b ? b->node : find_path(S, cat(sc->prefix, v->text));
	if (n >= 0)
		return S->nodes[n].broken ? -1 : n;
	if (b)
		return -1;             /* bound to a broken result */
	int later = map_get(&sc->later_index, v->text);
	if (later >= 0) {
		diag_error(v->pos, "layer '%s' is used before it is defined", cat(sc->prefix, v->text));
		diag_note(sc->later_pos[later], "'%s' is defined here", v->text);
		return -1;
	}
	if (is_pattern(v->text))
		diag_error(v->pos, "expected a layer name, found pattern '%s'", v->text);
	else
		diag_error(v->pos, "unknown layer '%s'%s", v->text, mean_in_scope(S, v->text));
	return -1;
}

/* ---- layer kinds: one row per kind ---- */

/* A layer being built: its arguments, sources and shapes. */
typedef struct OpDef OpDef;
typedef struct Build {
	Sema *S;
	const OpDef *op;
	const Value *v;
	const Arg **a;           /* a[i]: the argument for op->params[i], or NULL */
	IRLayer *L;
	const char *path, *local, *self;
	int src;                 /* the source node (-1 after an error) */
	Shape in, out;           /* out starts as in */
	bool have_in;
	Pos src_pos, size_pos;   /* size_pos: where its size is written (units, filters) */
} Build;

/* A kind's shape rule: sets B->out (and the layer's own sizes) from the
 * input and the kind's arguments; false after reporting an error. */
typedef bool ShapeRule(Build *B);

/* A row: the name in programs, the IR kind (and, for the standalone
 * activations, the function), the parameters (the first npositional may
 * be given by position), the defaults of eps, momentum and p, the shape
 * rule. What the kind has (weights, a rule, an activation) is WTN_OPS's
 * flags in runtime/wtn_model.h; its lowering is in codegen.c. */
struct OpDef {
	const char *name;
	OpKind kind;
	Act act;
	int nparams, npositional;
	const char *params[8];
	const char *usage;
	ShapeRule *shape;
	double eps, momentum, p;
};

static int source_node(Sema *S, const Value *v, const char *owner, const char *self);

static bool shape_same(Build *B) { return true; }

static bool shape_dense(Build *B)
{
	long n;
	bool ok = true;
	if (!B->a[1]) {
		diag_error(B->v->pos, "dense needs a number of units, as in %s", B->op->usage);
		ok = false;
	} else {
		B->size_pos = B->a[1]->val->pos;
		if (int_value(B->S, B->a[1]->val, "the number of units", 1, MAX_UNITS, &n))
			B->out = (Shape){(int)n, 1, 1};
		else
			ok = false;
	}
	if (B->have_in && !is_vector(B->in)) {
		diag_error(B->src_pos, "dense needs a vector input, but '%s' is %s; flatten it first",
		           B->S->nodes[B->src].name, shape_str(B->in));
		ok = false;
	}
	return ok;
}

/* conv2d(SOURCE, FILTERS, KERNEL, stride, pad) and the pools
 * (SOURCE, KERNEL, stride=KERNEL, pad <= KERNEL/2): a window over the image. */
static bool shape_window(Build *B)
{
	Sema *S = B->S;
	const OpDef *op = B->op;
	const Arg **a = B->a;
	bool conv = op->kind == OP_CONV2D, ok = true;
	int ki = conv ? 2 : 1;        /* index of the kernel parameter */
	long filters = 0, k = 0, stride = 0, pad = 0;
	if (conv) {
		if (!a[1]) {
			diag_error(B->v->pos, "conv2d needs a number of filters, as in %s", op->usage);
			ok = false;
		} else {
			B->size_pos = a[1]->val->pos;
			ok = int_value(S, a[1]->val, "the number of filters", 1, MAX_DIM, &filters) && ok;
		}
	}
	if (!a[ki]) {
		if (!conv || a[1])
			diag_error(B->v->pos, "%s needs a kernel size, as in %s", op->name, op->usage);
		ok = false;
	} else {
		ok = int_value(S, a[ki]->val, "the kernel size", 1, MAX_DIM, &k) && ok;
	}
	stride = conv ? 1 : k;
	if (a[ki + 1])
		ok = int_value(S, a[ki + 1]->val, "the stride", 1, MAX_DIM, &stride) && ok;
	if (a[ki + 2])
		ok = int_value(S, a[ki + 2]->val, "the padding", 0, MAX_DIM, &pad) && ok;
	if (!conv && a[ki + 2] && k > 0 && pad > k / 2) {
		diag_error(a[ki + 2]->val->pos, "the padding of a pool must be at most half its kernel "
		           "(%ld), found %ld", k / 2, pad);
		ok = false;
	}
	B->L->kh = B->L->kw = (int)k;
	B->L->stride = (int)stride;
	B->L->pad = (int)pad;
	Shape in = B->in;
	if (B->have_in && ok) {
		if (k > in.h + 2 * pad || k > in.w + 2 * pad) {
			diag_error(a[ki]->val->pos, "kernel %ld of '%s' is larger than its input '%s' (%dx%d, pad %ld)",
			           k, B->path, S->nodes[B->src].name, in.h, in.w, pad);
			return false;
		}
		B->out.h = (int)((in.h + 2 * pad - k) / stride + 1);
		B->out.w = (int)((in.w + 2 * pad - k) / stride + 1);
		if (conv)
			B->out.c = (int)filters;
	}
	return ok;
}

static bool shape_gap(Build *B)
{
	B->out = (Shape){B->in.c, 1, 1};
	return true;
}

static bool shape_flatten(Build *B)
{
	B->out = (Shape){(int)((long)B->in.c * B->in.h * B->in.w), 1, 1};
	return true;
}

/* add(A, B): the second source, of the first's shape. */
static bool shape_add(Build *B)
{
	Sema *S = B->S;
	const Arg *b = B->a[1];
	if (!b) {
		if (B->a[0])
			diag_error(B->v->pos, "add needs two layers, as in %s", B->op->usage);
		return false;
	}
	int src2 = source_node(S, b->val, B->local, B->self);
	if (src2 < 0)
		return false;
	B->L->input2 = S->nodes[src2].layer;
	Shape s = S->nodes[src2].shape;
	if (B->have_in && (s.c != B->in.c || s.h != B->in.h || s.w != B->in.w)) {
		diag_error(b->val->pos, "add needs two layers of the same shape, but '%s' is %s "
		           "and '%s' is %s", S->nodes[B->src].name, shape_str(B->in),
		           S->nodes[src2].name, shape_str(s));
		return false;
	}
	return true;
}

static const OpDef op_defs[] = {
	{"dense", OP_DENSE, ACT_IDENTITY, 5, 2, {"source", "units", "act", "init", "bias"},
	 "dense(SOURCE, UNITS, act=..., init=..., bias=...)", .shape = shape_dense},
	{"conv2d", OP_CONV2D, ACT_IDENTITY, 8, 6,
	 {"source", "filters", "kernel", "stride", "pad", "bias", "act", "init"},
	 "conv2d(SOURCE, FILTERS, KERNEL, stride=1, pad=0, bias=true, act=..., init=...)", .shape = shape_window},
	{"maxpool", OP_MAXPOOL, ACT_IDENTITY, 4, 4, {"source", "kernel", "stride", "pad"},
	 "maxpool(SOURCE, KERNEL, stride=KERNEL, pad=0)", .shape = shape_window},
	{"avgpool", OP_AVGPOOL, ACT_IDENTITY, 4, 4, {"source", "kernel", "stride", "pad"},
	 "avgpool(SOURCE, KERNEL, stride=KERNEL, pad=0)", .shape = shape_window},
	{"global_avgpool", OP_GLOBAL_AVGPOOL, ACT_IDENTITY, 1, 1, {"source"}, "global_avgpool(SOURCE)",
	 .shape = shape_gap},
	{"batchnorm", OP_BATCHNORM, ACT_IDENTITY, 4, 1, {"source", "act", "eps", "momentum"},
	 "batchnorm(SOURCE, act=..., eps=1e-5, momentum=0.1)", .shape = shape_same, .eps = 1e-5, .momentum = 0.1},
	{"layernorm", OP_LAYERNORM, ACT_IDENTITY, 3, 1, {"source", "act", "eps"},
	 "layernorm(SOURCE, act=..., eps=1e-5)", .shape = shape_same, .eps = 1e-5},
	{"dropout", OP_DROPOUT, ACT_IDENTITY, 2, 2, {"source", "p"}, "dropout(SOURCE, P)", .shape = shape_same,
	 .p = 0.5},
	{"flatten", OP_FLATTEN, ACT_IDENTITY, 1, 1, {"source"}, "flatten(SOURCE)", .shape = shape_flatten},
	{"add", OP_ADD, ACT_IDENTITY, 3, 2, {"a", "b", "act"}, "add(A, B, act=...)", .shape = shape_add},
	{"relu", OP_ACT, ACT_RELU, 1, 1, {"source"}, "relu(SOURCE)", .shape = shape_same},
	{"tanh", OP_ACT, ACT_TANH, 1, 1, {"source"}, "tanh(SOURCE)", .shape = shape_same},
	{"sigmoid", OP_ACT, ACT_SIGMOID, 1, 1, {"source"}, "sigmoid(SOURCE)", .shape = shape_same},
	{"gelu", OP_ACT, ACT_GELU, 1, 1, {"source"}, "gelu(SOURCE)", .shape = shape_same},
};
enum { NOPS = sizeof op_defs / sizeof op_defs[0] };

static const OpDef *find_op(const char *name)
{
	for (int i = 0; i < NOPS; i++)
		if (!strcmp(op_defs[i].name, name))
			return &op_defs[i];
	return NULL;
}

static BlockDef *find_block(Sema *S, const char *name)
{
	for (int i = 0; i < S->nblocks; i++)
		if (!strcmp(S->blocks[i].stmt->name, name))
			return &S->blocks[i];
	return NULL;
}

static bool has_weights(OpKind k)
{
	return wtn_op_has(k, WTN_OP_RULE);
}

static int build(Sema *S, const Value *v, const char *local, Pos name_pos, const char *self);

/* A name for a nested call that the program does not name: the name of
 * the layer it feeds, a dot and its kind ("h.add"), with "_2", "_3", ...
 * if that is taken. */
static const char *nested_name(Sema *S, const char *owner, const char *kind)
{
	const char *base = owner[0] ? cat(cat(owner, "."), kind) : kind;
	const char *name = base;
	/* Probing resumes where the last name with this base stopped, so n
	 * duplicates cost n probes, not n^2. */
	const char *path = cat(S->scope->prefix, base);
	int k = map_get(&S->next_suffix, path);
	if (k < 2)
		k = 2;
	for (; find_path(S, cat(S->scope->prefix, name)) >= 0 || find_binding(S->scope, name); k++) {
		char suffix[16];
		snprintf(suffix, sizeof suffix, "_%d", k);
		name = cat(base, suffix);
	}
	map_put(&S->next_suffix, path, k);
	return name;
}

/* The node a source argument stands for: a name, or a nested call built
 * here (named after `owner`). Counts the use. -1 after an error. */
static int source_node(Sema *S, const Value *v, const char *owner, const char *self)
{
	int n;
	size_t len = strlen(S->scope->prefix) + strlen(owner) + 1 + strlen(v->text);
	if (v->kind == VAL_CALL && len > MAX_NAME) {
		/* checked before building, or deep nesting would cost n^2 in names */
		diag_error(v->pos, "this nested %s(...) would be named '%s%.20s...', %zu characters "
		           "long; the limit is %d (give it a name of its own)", v->text,
		           S->scope->prefix, owner, len, MAX_NAME);
		return -1;
	}
	if (v->kind == VAL_CALL)
		n = build(S, v, nested_name(S, owner, v->text), v->pos, NULL);
	else
		n = lookup_node(S, v, self);
	if (n >= 0)
		S->nodes[n].consumers++;
	return n;
}

static IRLayer new_layer(const char *path, Pos pos, OpKind kind)
{
	IRLayer L = {0};
	L.name = (char *)path;
	L.pos = pos;
	L.kind = kind;
	L.input = L.input2 = -1;
	L.act = ACT_IDENTITY;
	L.init = INIT_HE;
	L.feedback = (IRRule){.def = rule_lookup("bp")};
	L.W = L.b = L.B = L.D = L.M = L.gW = L.gb = L.mW = L.mb = L.mB = L.vW = L.vb = L.vB = -1;
	L.rmean = L.rvar = L.aux = L.aux2 = L.y = L.d = -1;
	return L;
}

/* The arguments every kind spells the same way: act, init, bias, eps,
 * momentum, p. */
static bool named_args(Build *B)
{
	bool ok = true;
	IRLayer *L = B->L;
	for (int i = 0; i < B->op->nparams; i++) {
		if (!B->a[i])
			continue;
		const char *p = B->op->params[i];
		const Value *x = B->a[i]->val;
		if (!strcmp(p, "act")) {
			ok = check_act(x, &L->act) && ok;
			/* its derivative needs the pre-activation, which only a layer of its own keeps */
			if (L->act == ACT_GELU) {
				diag_error(x->pos, "gelu is not fused into %s; write gelu(%s) as a layer of its own",
				           B->op->name, B->path);
				ok = false;
			}
		} else if (!strcmp(p, "init")) {
			ok = check_init(B->S, x, &L->init, &L->init_arg) && ok;
		} else if (!strcmp(p, "bias")) {
			ok = bool_value(x, "bias", &L->bias) && ok;
		} else if (!strcmp(p, "eps")) {
			ok = real_value(B->S, x, "'eps'", 0, true, HUGE_VAL, false, "positive", &L->eps) && ok;
		} else if (!strcmp(p, "momentum")) {
			ok = real_value(B->S, x, "'momentum'", 0, false, 1, false, "in [0, 1]", &L->momentum) && ok;
		} else if (!strcmp(p, "p")) {
			ok = real_value(B->S, x, "the drop probability", 0, false, 1, true, "in [0, 1)", &L->p) && ok;
		}
	}
	return ok;
}

/* Builds a built-in layer. Returns its node, -1 after errors. */
static int build_op(Sema *S, const OpDef *op, const Value *v, const char *local, Pos name_pos,
                    const char *self)
{
	int me = new_node(S, local, name_pos);
	const char *path = cat(S->scope->prefix, local);
	const Arg *a[8];
	bool ok = bind_args(v, op->params, op->nparams, op->npositional, op->name, op->usage, a);
	IRLayer L = new_layer(path, name_pos, op->kind);
	L.act = op->act;
	L.bias = wtn_op_has(op->kind, WTN_OP_PARAMS);
	L.eps = op->eps;
	L.momentum = op->momentum;
	L.p = op->p;
	Build B = { .S = S, .op = op, .v = v, .a = a, .L = &L, .path = path, .local = local,
	            .self = self, .src = -1,
	            .src_pos = v->pos, .size_pos = v->pos };
	/* sources first: nested calls become layers before this one */
	if (!a[0]) {
		if (op->kind == OP_ADD)
			diag_error(v->pos, "add needs two layers, as in %s", op->usage);
		else
			diag_error(v->pos, "%s needs a source layer, as in %s", op->name, op->usage);
		ok = false;
	} else {
		B.src_pos = a[0]->val->pos;
		B.src = source_node(S, a[0]->val, local, self);
		ok = ok && B.src >= 0;
	}
	B.in = B.src >= 0 ? S->nodes[B.src].shape : (Shape){0, 0, 0};
	B.have_in = B.src >= 0 && B.in.c > 0;
	B.out = B.in;
	ok = op->shape(&B) && ok;
	ok = named_args(&B) && ok;
	if (ok && B.src < 0)
		ok = false;
	Shape in = B.in, out = B.out;
	long weights = op->kind == OP_DENSE ? (long)in.c * out.c
	             : op->kind == OP_CONV2D ? (long)out.c * in.c * L.kh * L.kw : 0;
	if (ok && weights > MAX_WEIGHTS) {
		diag_error(B.size_pos, "layer '%s' would have %ld weights; the limit is %ld", path, weights,
		           MAX_WEIGHTS);
		ok = false;
	}
	if (ok && (long)out.c * out.h * out.w > MAX_ACTIVATION) {
		diag_error(B.size_pos, "layer '%s' would have %ld outputs per sample; the limit is %ld", path,
		           (long)out.c * out.h * out.w, MAX_ACTIVATION);
		ok = false;
	}
	if (me < 0 || !ok)
		return -1;
	L.input = S->nodes[B.src].layer;
	L.in_shape = in;
	L.out_shape = out;
	L.in = in.c * in.h * in.w;
	L.out = out.c * out.h * out.w;
	/* The layer exists even after errors elsewhere, so later references resolve. */
	Node *self_node = &S->nodes[me];
	self_node->layer = S->nlayers;
	self_node->broken = false;
	self_node->shape = out;
	self_node->shape_pos = B.size_pos;
	S->layers = grow(S->layers, S->nlayers, sizeof *S->layers);
	S->layers[S->nlayers++] = L;
	return me;
}

/* ---- blocks ---- */

static void exec_body(Sema *S, Stmt *body);

/* Binds a block parameter to what the call gives it: a layer (a name of
 * one, or a nested call, built in the caller's scope) or a value. */
static void bind_param(Sema *S, Scope *inner, const char *param, const Value *v,
                       const char *local, bool *ok)
{
	Scope *sc = S->scope;
	if (v->kind == VAL_NAME) {
		Binding *b = find_binding(sc, v->text);
		int n = b ? b->node : find_path(S, cat(sc->prefix, v->text));
		if (b && b->node < 0 && !b->val) {
			*ok = false;        /* a broken layer, reported */
			return;
		}
		if (b && b->node < 0) {
			bind(inner, param, v->pos, -1, b->val);
			return;
		}
		if (n >= 0 || b) {
			if (n < 0 || S->nodes[n].broken)
				*ok = false;
			else
				S->nodes[n].consumers++;
			bind(inner, param, v->pos, n, NULL);
			return;
		}
		if (map_get(&sc->later_index, v->text) >= 0) {
			lookup_node(S, v, NULL);   /* "used before it is defined" */
			*ok = false;
			return;
		}
	} else if (v->kind == VAL_CALL && (find_op(v->text) || find_block(S, v->text) ||
	                                   !strcmp(v->text, "repeat"))) {
		int n = source_node(S, v, local, NULL);
		if (n < 0)
			*ok = false;
		bind(inner, param, v->pos, n, NULL);
		return;
	}
	bind(inner, param, v->pos, -1, subst(S, v));
}

static int instantiate(Sema *S, BlockDef *bd, const Value *call, const char *local)
{
	Stmt *blk = bd->stmt;
	const Value *head = blk->val;
	for (Scope *sc = S->scope; sc; sc = sc->up)
		if (sc->block == bd) {
			diag_error(call->pos, "block '%s' calls itself", blk->name);
			return -1;
		}
	if (S->depth >= MAX_DEPTH) {
		diag_error(call->pos, "blocks are nested too deeply (the limit is %d)", MAX_DEPTH);
		return -1;
	}
	int np = head->nargs;
	const char **names = ast_alloc(sizeof *names * (size_t)(np + 1));
	const Arg **slots = ast_alloc(sizeof *slots * (size_t)(np + 1));
	for (int i = 0; i < np; i++)
		names[i] = head->args[i].key ? head->args[i].key : head->args[i].val->text;
	char what[80], usage[200];
	snprintf(what, sizeof what, "block '%s'", blk->name);
	size_t u = (size_t)snprintf(usage, sizeof usage, "%s(", blk->name);
	for (int i = 0; i < np && u < sizeof usage; i++)
		u += (size_t)snprintf(usage + u, sizeof usage - u, "%s%s%s", i ? ", " : "",
		                      names[i], head->args[i].key ? "=..." : "");
	if (u < sizeof usage)
		snprintf(usage + u, sizeof usage - u, ")");
	bool ok = bind_args(call, names, np, np, what, usage, slots);
	for (int i = 0; i < np; i++)
		if (!slots[i] && !head->args[i].key) {
			diag_error(call->pos, "block '%s' needs its parameter '%s', as in %s", blk->name,
			           names[i], usage);
			ok = false;
		}
	if (!ok)
		return -1;
	Scope inner = {.up = S->scope, .prefix = cat(cat(S->scope->prefix, local), "."),
	               .block = bd, .result = -1};
	for (int i = 0; i < np; i++) {
		if (slots[i])
			bind_param(S, &inner, names[i], slots[i]->val, local, &ok);
		else
			bind(&inner, names[i], head->args[i].key_pos, -1, head->args[i].val);
	}
	if (!ok)
		return -1;
	if (bd->failed)
		return -1;             /* its errors were shown at the first call */
	S->instances = grow(S->instances, S->ninstances, sizeof *S->instances);
	S->instances[S->ninstances] = cat(S->scope->prefix, local);
	map_put(&S->instance_index, S->instances[S->ninstances], S->ninstances);
	S->ninstances++;
	collect_names(&inner, blk->body);
	int before = diag_errors;
	Scope *outer = S->scope;
	S->scope = &inner;
	S->depth++;
	diag_push_context(call->pos, "in block '%s' called here", blk->name);
	exec_body(S, blk->body);
	if (!inner.return_stmt && diag_errors == before)
		diag_error(blk->name_pos, "block '%s' has no 'return' (add e.g. 'return %s')", blk->name,
		           inner.nlater ? inner.later[inner.nlater - 1] : "out");
	diag_pop_context();
	S->depth--;
	S->scope = outer;
	if (diag_errors > before)
		bd->failed = true;
	return diag_errors > before ? -1 : inner.result;
}

/* repeat(N, CALL, key=value, ...): N calls chained, named LOCAL.0 ...
 * LOCAL.N-1; call k > 0 reads call k-1's result instead of CALL's source
 * and takes the keyword arguments, which replace CALL's. */
static int build_repeat(Sema *S, const Value *v, const char *local)
{
	const char *usage = "repeat(N, basic(x, 64), stride=1)";
	const Value *count = NULL, *call = NULL;
	Value *extra = ast_value(VAL_CALL, v->pos, NULL);
	bool ok = true;
	for (int i = 0; i < v->nargs; i++) {
		const Arg *a = &v->args[i];
		if (a->key)
			ast_add_arg(extra, a->key, a->key_pos, a->val);
		else if (!count)
			count = a->val;
		else if (!call)
			call = a->val;
		else {
			diag_error(a->val->pos, "too many arguments to repeat (expected %s)", usage);
			ok = false;
		}
	}
	long n = 0;
	if (!count || !call) {
		diag_error(v->pos, "repeat needs a count and a call, as in %s", usage);
		return -1;
	}
	ok = int_value(S, count, "the repeat count", 1, 1000, &n) && ok;
	if (call->kind != VAL_CALL || !(find_op(call->text) || find_block(S, call->text))) {
		if (call->kind == VAL_CALL)
			diag_error(call->pos, "repeat needs a layer or block call, found unknown '%s'", call->text);
		else
			diag_error(call->pos, "repeat needs a layer or block call, found %s", describe(call));
		return -1;
	}
	if (call->nargs == 0 || call->args[0].key) {
		diag_error(call->pos, "repeat needs the call's source layer as its first argument, as in %s",
		           usage);
		return -1;
	}
	if (!ok)
		return -1;
	int out = -1;
	for (long k = 0; k < n; k++) {
		char idx[24];
		snprintf(idx, sizeof idx, ".%ld", k);
		const char *name = cat(local, idx);
		const Value *c = call;
		if (k > 0) {
			Value *next = ast_value(VAL_CALL, call->pos, call->text);
			char prev[24];
			snprintf(prev, sizeof prev, ".%ld", k - 1);
			ast_add_arg(next, NULL, call->args[0].key_pos,
			            ast_value(VAL_NAME, call->args[0].val->pos, cat(local, prev)));
			for (int i = 1; i < call->nargs; i++) {
				const Arg *a = &call->args[i];
				bool replaced = false;
				for (int j = 0; a->key && j < extra->nargs; j++)
					replaced |= !strcmp(a->key, extra->args[j].key);
				if (!replaced)
					ast_add_arg(next, a->key, a->key_pos, a->val);
			}
			for (int j = 0; j < extra->nargs; j++)
				ast_add_arg(next, extra->args[j].key, extra->args[j].key_pos, extra->args[j].val);
			c = next;
		}
		out = build(S, c, name, c->pos, NULL);
		if (out < 0)
			return -1;
		if (find_path(S, cat(S->scope->prefix, name)) != out)
			bind(S->scope, name, c->pos, out, NULL);
	}
	return out;
}

/* Builds what a call defines under the local name `local`: a layer, a
 * block instance or a repeat. Returns the node of its result, -1 after
 * errors. */
static int build(Sema *S, const Value *v, const char *local, Pos name_pos, const char *self)
{
	const Value *c = subst(S, v);
	const OpDef *op = find_op(c->text);
	if (op)
		return build_op(S, op, c, local, name_pos, self);
	BlockDef *bd = find_block(S, c->text);
	if (bd)
		return instantiate(S, bd, c, local);
	if (!strcmp(c->text, "repeat"))
		return build_repeat(S, c, local);
	const char *kinds[NOPS + 64];
	int k = 0;
	for (int i = 0; i < NOPS; i++)
		kinds[k++] = op_defs[i].name;
	for (int i = 0; i < S->nblocks && k < NOPS + 64; i++)
		kinds[k++] = S->blocks[i].stmt->name;
	lookup_name(c->pos, "layer kind", c->text, kinds, k,
	            "a layer such as dense or conv2d, a block or repeat");
	return -1;
}

/* ---- statements ---- */

static void check_input(Sema *S, Stmt *s)
{
	if (S->input) {
		diag_error(s->pos, "a network has one input; '%s' is a second", s->name);
		diag_note(S->input->pos, "the input '%s' is defined here", S->input->name);
		return;
	}
	S->input = s;
	bool fresh = valid_name(s->name, s->name_pos) && !name_taken(S, s->name, s->name_pos);
	int me = fresh ? new_node(S, s->name, s->name_pos) : -1;
	S->input_node = me;
	const Value *v = s->val;
	long dims[3] = {0, 1, 1};
	bool ok = true;
	Pos size_pos = v->pos;
	if (v->nargs == 1) {
		size_pos = v->args[0].val->pos;
		ok = int_value(S, v->args[0].val, "the input size", 1, MAX_UNITS, &dims[0]);
	} else if (v->nargs == 3) {
		static const char *const what[] = {"the number of channels", "the height", "the width"};
		for (int i = 0; i < 3; i++)
			ok = int_value(S, v->args[i].val, what[i], 1, MAX_DIM, &dims[i]) && ok;
		if (ok && dims[0] * dims[1] * dims[2] > MAX_ACTIVATION) {
			diag_error(v->pos, "the input has %ld values per sample; the limit is %ld",
			           dims[0] * dims[1] * dims[2], MAX_ACTIVATION);
			ok = false;
		}
	} else {
		diag_error(v->pos, "expected the input's size as [UNITS] or [CHANNELS, HEIGHT, WIDTH], "
		           "found %d value%s", v->nargs, v->nargs == 1 ? "" : "s");
		ok = false;
	}
	if (me < 0)
		return;
	Node *n = &S->nodes[me];
	n->broken = false;    /* an input with a bad size is still an input */
	n->shape = ok ? (Shape){(int)dims[0], (int)dims[1], (int)dims[2]} : (Shape){0, 0, 0};
	n->shape_pos = size_pos;
}

static void define_layer(Sema *S, Stmt *s)
{
	const Value *v = s->val;
	bool fresh = valid_name(s->name, s->name_pos) && !name_taken(S, s->name, s->name_pos);
	if (v->kind == VAL_NAME) {
		/* an alias: `shortcut = x` */
		int n = lookup_node(S, v, s->name);
		if (fresh)
			bind(S->scope, s->name, s->name_pos, n, NULL);
		return;
	}
	if (v->kind != VAL_CALL) {
		diag_error(v->pos, "expected a layer such as dense(x, 10), found %s", describe(v));
		if (fresh)
			bind(S->scope, s->name, s->name_pos, -1, NULL);
		return;
	}
	const OpDef *op = find_op(v->text);
	int n = build(S, v, fresh || !op ? s->name : nested_name(S, s->name, "dup"), s->name_pos,
	              s->name);
	/* a block call's or a repeat's name stands for its result */
	if (fresh && !op)
		bind(S->scope, s->name, s->name_pos, n, NULL);
	else if (!fresh && op && n >= 0)
		S->nodes[n].consumers++;   /* not also "feeds nothing" */
}

static void define_return(Sema *S, Stmt *s)
{
	Scope *sc = S->scope;
	if (!sc->block) {
		diag_error(s->pos, "'return' belongs in a block body");
		return;
	}
	if (sc->return_stmt) {
		diag_error(s->pos, "a block returns once");
		diag_note(sc->return_stmt->pos, "it returns here");
		return;
	}
	sc->return_stmt = s;
	const Value *v = s->val;
	int n;
	if (v->kind == VAL_CALL)
		n = build(S, v, nested_name(S, "", v->text), v->pos, NULL);
	else
		n = lookup_node(S, v, NULL);
	if (n >= 0)
		S->nodes[n].consumers++;
	sc->result = n;
}

/* An `if` condition: 1 true, 0 false, -1 after an error. */
static int eval_cond(Sema *S, const Value *v);

static bool cond_operand(Sema *S, const Value *v, double *out)
{
	v = subst(S, v);
	if (v->kind == VAL_CALL && (!strcmp(v->text, "channels") || !strcmp(v->text, "height") ||
	                            !strcmp(v->text, "width"))) {
		if (v->nargs != 1 || v->args[0].key) {
			diag_error(v->pos, "%s takes one layer, as in %s(x)", v->text, v->text);
			return false;
		}
		int n = lookup_node(S, v->args[0].val, NULL);
		if (n < 0)
			return false;
		Shape s = S->nodes[n].shape;
		*out = v->text[0] == 'c' ? s.c : v->text[0] == 'h' ? s.h : s.w;
		return true;
	}
	return num_value(S, v, "a number, channels(x), height(x) or width(x)", out);
}

static int eval_cond(Sema *S, const Value *v)
{
	if (v->kind == VAL_OP) {
		const char *o = v->text;
		if (!strcmp(o, "not")) {
			int a = eval_cond(S, v->args[0].val);
			return a < 0 ? -1 : !a;
		}
		if (!strcmp(o, "and") || !strcmp(o, "or")) {
			int a = eval_cond(S, v->args[0].val), b = eval_cond(S, v->args[1].val);
			if (a < 0 || b < 0)
				return -1;
			return o[0] == 'a' ? a && b : a || b;
		}
		double x, y;
		bool ok = cond_operand(S, v->args[0].val, &x);
		ok = cond_operand(S, v->args[1].val, &y) && ok;
		if (!ok)
			return -1;
		if (!strcmp(o, "==")) return x == y;
		if (!strcmp(o, "!=")) return x != y;
		if (!strcmp(o, "<")) return x < y;
		if (!strcmp(o, "<=")) return x <= y;
		if (!strcmp(o, ">")) return x > y;
		return x >= y;
	}
	int b;
	if (!bool_value(subst(S, v), "the condition", &b))
		return -1;
	return b;
}

static void exec_stmt(Sema *S, Stmt *s)
{
	bool in_block = S->scope->block != NULL;
	switch (s->kind) {
	case ST_LET:
		if (in_block)
			diag_error(s->pos, "'let' belongs in the network or at the top level; "
			           "a block takes parameters instead");
		break;
	case ST_INPUT:
		if (in_block)
			diag_error(s->pos, "'input' belongs in the network body; a block reads its parameters");
		else
			check_input(S, s);
		break;
	case ST_LAYER: define_layer(S, s); break;
	case ST_RETURN: define_return(S, s); break;
	case ST_IF: {
		int c = eval_cond(S, s->val);
		if (c >= 0)
			exec_body(S, c ? s->body : s->else_body);
		break;
	}
	case ST_LOSS:
	case ST_FEEDBACK:
		if (in_block) {
			diag_error(s->pos, "'%s' belongs in the network body, not in a block",
			           s->kind == ST_LOSS ? "loss" : "feedback");
		} else if (s->kind == ST_LOSS) {
			check_loss(S, s);
		} else if (S->feedback) {
			diag_error(s->pos, "duplicate feedback block");
			diag_note(S->feedback->pos, "the first feedback block is here");
		} else {
			S->feedback = s;
		}
		break;
	default:
		break;
	}
}

static void exec_body(Sema *S, Stmt *body)
{
	for (Stmt *s = body; s && !S->too_many; s = s->next)
		exec_stmt(S, s);
}

/* Block definitions: names, parameters. Bodies are checked when called. */
static void collect_blocks(Sema *S, Stmt *items)
{
	for (Stmt *s = items; s; s = s->next) {
		if (s->kind != ST_BLOCK)
			continue;
		BlockDef *prev = find_block(S, s->name);
		if (prev) {
			diag_error(s->name_pos, "duplicate block '%s'", s->name);
			diag_note(prev->stmt->name_pos, "'%s' was first defined here", s->name);
			continue;
		}
		if (find_op(s->name) || !strcmp(s->name, "repeat")) {
			diag_error(s->name_pos, "'%s' is a built-in layer kind; a block needs another name", s->name);
			continue;
		}
		bool ok = valid_name(s->name, s->name_pos);
		const Value *h = s->val;
		for (int i = 0; i < h->nargs; i++) {
			const Arg *a = &h->args[i];
			const char *name = a->key ? a->key : a->val->kind == VAL_NAME ? a->val->text : NULL;
			if (!name || strchr(name, '.') || is_pattern(name)) {
				diag_error(a->key ? a->key_pos : a->val->pos, "expected a parameter name, found %s",
				           describe(a->val));
				ok = false;
				continue;
			}
			for (int j = 0; j < i; j++) {
				const Arg *b = &h->args[j];
				const char *other = b->key ? b->key : b->val->text;
				if (!strcmp(other, name)) {
					diag_error(a->key ? a->key_pos : a->val->pos,
					           "duplicate parameter '%s' of block '%s'", name, s->name);
					ok = false;
				}
			}
		}
		if (!ok)
			continue;
		S->blocks = grow(S->blocks, S->nblocks, sizeof *S->blocks);
		S->blocks[S->nblocks++] = (BlockDef){s, false};
	}
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
		lookup_name(v->pos, "rule", v->text, names, n, NULL);
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

/* Glob match: '*' any run of characters (dots included), '?' one. */
static bool glob_match(const char *pat, const char *s)
{
	const char *star = NULL, *resume = NULL;
	while (*s) {
		if (*pat == '*') {
			star = pat++;
			resume = s;
		} else if (*pat == '?' || *pat == *s) {
			pat++;
			s++;
		} else if (star) {
			pat = star + 1;
			s = ++resume;
		} else {
			return false;
		}
	}
	while (*pat == '*')
		pat++;
	return !*pat;
}

static const char *kind_name(OpKind k)
{
	return k == OP_ACT ? "activation" : wtn_name(wtn_op_names, WTN_NOPS, k);
}

/* A feedback pattern: every layer with weights whose path matches. */
static void feedback_pattern(Sema *S, Stmt *e)
{
	/* Each pattern is matched against every layer: the limit keeps that
	 * product (and a 1 MB file) to a fraction of a second. */
	if (++S->npatterns > MAX_PATTERNS) {
		if (S->npatterns == MAX_PATTERNS + 1)
			diag_error(e->name_pos, "too many feedback patterns (the limit is %d)", MAX_PATTERNS);
		return;
	}
	IRRule r = {0};
	bool ok = check_rule(S, e->val, &r);
	int matched = 0;
	for (int i = 0; i < S->nnodes; i++) {
		Node *n = &S->nodes[i];
		if (n->layer < 0 || n->broken || !has_weights(S->layers[n->layer].kind) ||
		    !glob_match(e->name, n->name))
			continue;
		matched++;
		if (ok)
			S->layers[n->layer].feedback = r;
		n->has_rule = true;
	}
	if (!matched)
		diag_error(e->name_pos, "pattern '%s' matches no layer with weights (dense or conv2d)",
		           e->name);
}

/* One feedback entry (from the file or, with `override`, the command
 * line). Entries apply in order, so a later one wins over an earlier
 * pattern; naming the same layer twice in the file is an error. */
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
	if (is_pattern(e->name)) {
		feedback_pattern(S, e);
		return;
	}
	int i = find_path(S, e->name);
	Node *n = node_at(S, i);
	if (n && n->broken) {
		check_rule(S, e->val, &(IRRule){0});
		return;
	}
	if (!n) {
		if (map_get(&S->instance_index, e->name) >= 0) {
			diag_error(e->name_pos, "'%s' is a block call, not a layer; '%s.*' names its layers",
			           e->name, e->name);
		} else {
			/* only layers a rule can go on are worth suggesting (and only
			 * while errors are shown: the list costs O(layers) per entry) */
			bool shown = diag_will_show();
			const char **names = shown ? ast_alloc(sizeof *names * (size_t)(S->nnodes + 1)) : NULL;
			int k = 0;
			for (int j = 0; shown && j < S->nnodes; j++) {
				int li = S->nodes[j].layer;
				if (li >= 0 && li < S->nlayers &&
				    (S->layers[li].kind == OP_DENSE || S->layers[li].kind == OP_CONV2D))
					names[k++] = S->nodes[j].name;
			}
			diag_error(e->name_pos, "unknown layer '%s' in feedback%s", e->name,
			           mean(e->name, names, k));
		}
		check_rule(S, e->val, &(IRRule){0});
		return;
	}
	if (n->layer < 0) {
		diag_error(e->name_pos, "'%s' has no weights; only dense and conv2d layers take a feedback rule",
		           e->name);
		return;
	}
	OpKind kind = S->layers[n->layer].kind;
	if (!has_weights(kind) && wtn_op_has(kind, WTN_OP_PARAMS)) {
		diag_error(e->name_pos, "'%s' is a %s layer: %s always learns by backprop "
		           "and takes no feedback rule", e->name, kind_name(kind), kind_name(kind));
		return;
	}
	if (!has_weights(kind)) {
		diag_error(e->name_pos, "'%s' has no weights (it is a%s %s layer); only dense and conv2d "
		           "layers take a feedback rule", e->name,
		           strchr("aeiou", kind_name(kind)[0]) ? "n" : "", kind_name(kind));
		return;
	}
	if (n->exact_entry && !override) {
		diag_error(e->name_pos, "duplicate feedback entry for '%s'", e->name);
		diag_note(n->exact_entry->name_pos, "'%s' is first given a rule here", e->name);
		return;
	}
	check_rule(S, e->val, &S->layers[n->layer].feedback);
	n->exact_entry = e;
	n->has_rule = true;
}

static void check_feedback(Sema *S, const char *const *overrides, int noverrides)
{
	S->default_rule = (IRRule){.def = rule_lookup("bp")};
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
	/* Layers with weights and no entry of their own follow the default;
	 * the others (batchnorm, pools, ...) keep bp. */
	for (Node *n = S->nodes; n && n < S->nodes + S->nnodes; n++)
		if (n->layer >= 0 && !n->has_rule && has_weights(S->layers[n->layer].kind))
			S->layers[n->layer].feedback = S->default_rule;
}

/* ---- whole-network checks ---- */

static void check_chain(Sema *S, Stmt *net)
{
	if (S->nlayers == 0) {
		diag_error(net->name_pos, "network '%s' has no layers (add e.g. 'out = dense(x, 10)')",
		           net->name);
		return;
	}
	for (Node *n = S->nodes; n && n < S->nodes + S->nnodes; n++) {
		if (n->consumers > 0 || n->broken || n->layer == S->nlayers - 1)
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
	if (lookup_name(v->pos, "loss", v->text, wtn_loss_names, WTN_NLOSSES, NULL) < 0)
		return;
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
	int i = lookup_node(S, a->val, NULL);
	if (i < 0)
		return;
	Node *n = &S->nodes[i];
	if (n->layer < 0) {
		diag_error(a->val->pos, "the loss needs a layer, not the input '%s'", n->name);
		return;
	}
	if (!is_vector(n->shape)) {
		diag_error(a->val->pos, "the loss needs a vector output, but '%s' is %s; flatten it first",
		           n->name, shape_str(n->shape));
		return;
	}
	S->loss_layer = n->layer;
}

/* ---- train ---- */

typedef struct DataSet { const char *name; Shape shape; int classes; } DataSet;
static const DataSet data_sets[] = {
	{"fashion_mnist", {1, 28, 28}, 10}, {"mnist", {1, 28, 28}, 10}, {"cifar10", {3, 32, 32}, 10},
	{"synthetic", {0, 0, 0}, 0},
};
enum { NDATA = sizeof data_sets / sizeof data_sets[0] };

enum { SET_DATA, SET_BATCH, SET_EPOCHS, SET_SEED, SET_OPT, SET_SCHED, SET_MEAN, SET_STD, SET_CROP,
       SET_FLIP, NSETTINGS };
static const char *const setting_names[] = {"data", "batch", "epochs", "seed", "optimizer",
                                            "schedule", "mean", "std", "crop", "flip"};

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
	const char *names[NDATA];
	for (int i = 0; i < NDATA; i++)
		names[i] = data_sets[i].name;
	if (lookup_name(v->pos, "data set", v->text, names, NDATA,
	                "fashion_mnist, mnist, cifar10, synthetic or a \"path\"") < 0)
		return;
	t->data = v->text;
}

static void check_optimizer(Sema *S, const Value *v, TrainCfg *t)
{
	if (v->kind != VAL_NAME && v->kind != VAL_CALL) {
		diag_error(v->pos, "expected an optimizer such as sgd(lr=0.1), found %s", describe(v));
		return;
	}
	int o = lookup_name(v->pos, "optimizer", v->text, wtn_opt_names, WTN_NOPTS, NULL);
	if (o < 0)
		return;
	t->optimizer = (Opt)o;
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
	if (v->kind != VAL_NAME && v->kind != VAL_CALL) {
		diag_error(v->pos, "expected a schedule such as step(every=10, gamma=0.1), found %s", describe(v));
		return;
	}
	int k = lookup_name(v->pos, "schedule", v->text, wtn_sched_names, WTN_NSCHEDS, NULL);
	if (k < 0)
		return;
	t->schedule = (Sched)k;
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
		.data = "synthetic", .batch = 32, .epochs = 1, .seed = 1, .optimizer = OPT_SGD,
		.lr = 0.01, .momentum = 0, .weight_decay = 0, .beta1 = 0.9, .beta2 = 0.999,
		.eps = 1e-8, .nesterov = false, .schedule = SCHED_NONE, .step_every = 1,
		.gamma = 0.1, .min_lr = 0,
	};
}

/* mean or std: a list of numbers, one per input channel. */
static void check_norm_list(Sema *S, Stmt *s, double *out, int *count, bool positive)
{
	const Value *v = s->val;
	if (v->kind != VAL_LIST) {
		diag_error(v->pos, "expected a list of numbers, one per input channel, as in [0.5, 0.5, 0.5]; "
		           "found %s", describe(v));
		return;
	}
	Node *in = node_at(S, S->input_node);
	if (!in || in->shape.c == 0)
		return;
	if (is_vector(in->shape)) {
		diag_error(s->name_pos, "per-channel '%s' needs an image input such as input x[1, 28, 28]",
		           s->name);
		diag_note(in->shape_pos, "input '%s' is a vector of %d units", in->name, in->shape.c);
		return;
	}
	if (v->nargs != in->shape.c) {
		diag_error(v->pos, "'%s' has %d value%s, but input '%s' has %d channel%s", s->name, v->nargs,
		           v->nargs == 1 ? "" : "s", in->name, in->shape.c, in->shape.c == 1 ? "" : "s");
		diag_note(in->shape_pos, "the channels are set here");
		return;
	}
	if (v->nargs > 4) {
		diag_error(v->pos, "normalisation supports at most 4 channels, found %d", v->nargs);
		return;
	}
	bool ok = true;
	for (int i = 0; i < v->nargs; i++) {
		char what[32];
		snprintf(what, sizeof what, "'%s' value", s->name);
		if (positive)
			ok = real_value(S, v->args[i].val, what, 0, true, HUGE_VAL, false, "positive", &out[i]) && ok;
		else
			ok = num_value(S, v->args[i].val, "a number", &out[i]) && ok;
	}
	if (ok)
		*count = v->nargs;
}

/* crop and flip move pixels: they need an image input. */
static bool image_input(Sema *S, Stmt *s)
{
	Node *in = node_at(S, S->input_node);
	if (!in || in->shape.c == 0 || !is_vector(in->shape))
		return true;
	diag_error(s->name_pos, "'%s' needs an image input such as input x[1, 28, 28]", s->name);
	diag_note(in->shape_pos, "input '%s' is a vector of %d units", in->name, in->shape.c);
	return false;
}

static void check_train(Sema *S, Stmt *train, TrainCfg *t)
{
	Stmt *seen[NSETTINGS] = {0};
	int nmean = 0, nstd = 0;
	for (Stmt *s = train->body; s; s = s->next) {
		if (s->kind == ST_LET)
			continue;
		int k = lookup_name(s->name_pos, "train setting", s->name, setting_names, NSETTINGS, NULL);
		if (k < 0)
			continue;
		if (seen[k]) {
			diag_error(s->name_pos, "duplicate train setting '%s'", s->name);
			diag_note(seen[k]->name_pos, "'%s' is first set here", s->name);
			continue;
		}
		seen[k] = s;
		long n;
		switch (k) {
		case SET_DATA:
			S->data_stmt = s;
			check_data(S, s->val, t);
			break;
		case SET_BATCH:
			if (int_value(S, s->val, "the batch size", 1, 1 << 20, &n))
				t->batch = (int)n;
			break;
		case SET_EPOCHS:
			if (int_value(S, s->val, "the number of epochs", 1, 1000000, &n))
				t->epochs = (int)n;
			break;
		case SET_SEED:
			if (int_value(S, s->val, "the seed", 0, LONG_MAX / 2, &n))
				t->seed = n;
			break;
		case SET_OPT:
			/* the optimiser sets its own default lr, so it must be read
			 * before the schedule compares min_lr with lr */
			check_optimizer(S, s->val, t);
			break;
		case SET_SCHED:
			check_schedule(S, s->val, t);
			break;
		case SET_MEAN:
			check_norm_list(S, s, t->norm_mean, &nmean, false);
			break;
		case SET_STD:
			check_norm_list(S, s, t->norm_std, &nstd, true);
			break;
		case SET_CROP: {
			Node *in = node_at(S, S->input_node);
			long max = in && in->shape.h > 0 ? (in->shape.h < in->shape.w ? in->shape.h : in->shape.w) : MAX_DIM;
			if (image_input(S, s) && int_value(S, s->val, "the crop padding", 0, max, &n))
				t->crop_pad = (int)n;
			break;
		}
		case SET_FLIP:
			if (image_input(S, s))
				bool_value(s->val, "flip", &t->flip);
			break;
		}
	}
	if (t->schedule == SCHED_COSINE && seen[SET_SCHED] && t->min_lr >= t->lr)
		diag_warning(seen[SET_SCHED]->val->pos, "min_lr (%g) is not below the learning rate (%g)",
		             t->min_lr, t->lr);
	if ((seen[SET_MEAN] != NULL) != (seen[SET_STD] != NULL)) {
		Stmt *s = seen[SET_MEAN] ? seen[SET_MEAN] : seen[SET_STD];
		diag_error(s->name_pos, "'%s' needs '%s' too (normalisation is (x - mean) / std per channel)",
		           s->name, seen[SET_MEAN] ? "std" : "mean");
	} else if (nmean && nstd) {
		t->nnorm = nmean;
	}
}

/* The data set fixes the input size and the number of classes. */
static void check_data_shapes(Sema *S, const TrainCfg *t)
{
	const DataSet *d = NULL;
	for (int i = 0; i < NDATA; i++)
		if (!strcmp(data_sets[i].name, t->data) && data_sets[i].classes > 0)
			d = &data_sets[i];
	if (!d || !S->data_stmt)
		return;
	Node *in = node_at(S, S->input_node);
	Shape ds = d->shape;
	int units = ds.c * ds.h * ds.w;
	if (in && in->shape.c > 0) {
		Shape s = in->shape;
		if (is_vector(s) && ds.c > 1) {
			/* the loaders keep colour images channels-last; a flat input
			 * would silently see another pixel order than PyTorch's */
			diag_error(in->shape_pos, "input '%s' is a vector, but %s examples are %s images"
			           " (declare it as %s[%d, %d, %d])", in->name, d->name, shape_str(ds),
			           in->name, ds.c, ds.h, ds.w);
			diag_note(S->data_stmt->val->pos, "the data set is chosen here");
		} else if (is_vector(s) && s.c != units) {
			diag_error(in->shape_pos, "input '%s' has %d units, but %s examples have %d",
			           in->name, s.c, d->name, units);
			diag_note(S->data_stmt->val->pos, "the data set is chosen here");
		} else if (!is_vector(s) && (s.c != ds.c || s.h != ds.h || s.w != ds.w)) {
			diag_error(in->shape_pos, "input '%s' is %s, but %s examples are %s",
			           in->name, shape_str(s), d->name, shape_str(ds));
			diag_note(S->data_stmt->val->pos, "the data set is chosen here");
		}
	}
	if (S->nlayers > 0 && S->loss_layer == S->nlayers - 1) {
		const IRLayer *out = &S->layers[S->nlayers - 1];
		Node *n = node_at(S, find_path(S, out->name));
		if (out->out > 0 && out->out != d->classes && n) {
			diag_error(n->shape_pos, "the output layer '%s' has %d units, but %s has %d classes",
			           out->name, out->out, d->name, d->classes);
			diag_note(S->data_stmt->val->pos, "the data set is chosen here");
		}
	}
}

/* Does an earlier layer share layer i's rule entry (a default rule)? Its
 * warning was given there already. */
static bool warned_before(Sema *S, int i)
{
	Pos p = S->layers[i].feedback.pos;
	for (int j = 0; j < i; j++) {
		Pos q = S->layers[j].feedback.pos;
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
		const IRRule *r = &S->layers[i].feedback;
		if (!r->def || r->def->change != FB_CHANGE_AS_W)
			continue;
		int k = rule_param_index(r->def, "decay");
		int ks = rule_param_index(r->def, "decay_steps");
		if (ks >= 0 && r->args[ks] > 0 && k >= 0 && r->args[k] < 0 && !warned_before(S, i))
			diag_warning(r->pos, "%s: decay_steps has no effect without its own decay "
			             "(give it decay=...)", r->def->name);
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
		/* the loss's kernel takes f' from the output, which gelu's is not written in */
		if (out->act == ACT_GELU)
			diag_error(out->pos, "the output '%s' cannot be a gelu; put a dense layer after it",
			           out->name);
		else if (out->act != ACT_IDENTITY && S->loss->val->text &&
		    !strcmp(S->loss->val->text, "softmax_cross_entropy"))
			diag_warning(out->pos, "'%s' has act=%s, but softmax_cross_entropy applies softmax itself; "
			             "the output usually has no activation", out->name, wtn_act_names[out->act]);
	}
}

/* ---- the program ---- */

static Loss loss_kind(const Stmt *loss)
{
	return loss ? index_of(loss->val->text, wtn_loss_names, WTN_NLOSSES) : LOSS_SOFTMAX_CE;
}


IRNetwork *sema_program(Program *p, const char *const *overrides, int noverrides)
{
	int errors_before = diag_errors;
	Sema *S = ast_alloc(sizeof *S);
	S->file = p->file;
	S->loss_layer = -1;
	S->input_node = -1;
	collect_consts(S, p->items);
	collect_blocks(S, p->items);

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

	if (strlen(net->name) > MAX_NAME)
		diag_error(net->name_pos, "the network name is %zu characters long; the limit is %d",
		           strlen(net->name), MAX_NAME);
	Scope root = {.prefix = "", .result = -1};
	collect_names(&root, net->body);
	S->scope = &root;
	exec_body(S, net->body);
	if (S->too_many)
		return NULL;          /* the rest would only repeat the limit */
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

	Node *in = &S->nodes[S->input_node];
	IRNetwork *ir = ast_alloc(sizeof *ir);
	ir->name = net->name;
	ir->input_name = S->input->name;
	ir->in_shape = in->shape;
	ir->in_units = in->shape.c * in->shape.h * in->shape.w;
	ir->x_slot = -1;
	ir->args_slot = -1;
	ir->layers = S->layers;
	ir->nlayers = S->nlayers;
	ir->loss = loss_kind(S->loss);
	ir->train = t;
	ir->bufs = NULL;
	ir->nbufs = 0;
	return ir;
}
