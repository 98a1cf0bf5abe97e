/* model.c: the model the runtime gets (runtime/wtn_model.h): checked on
 * every compile, printed by --emit-ir, emitted into the object file as the
 * constant `wtn_model`. All three walk the X-macro field lists, so a new
 * field is one entry there. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <llvm-c/Core.h>
#include <llvm-c/Target.h>
#include "wtnc.h"

/* ---- verification: what the runtime relies on, checked here once ---- */

static int verify_errors;

static void bad(const IRNetwork *net, const char *fmt, const char *who, const char *what)
{
	fprintf(stderr, "wtnc: internal error: network '%s': ", net->name);
	fprintf(stderr, fmt, who, what);
	fputc('\n', stderr);
	verify_errors++;
}

static long units(Shape s) { return (long)s.c * s.h * s.w; }
static bool same(Shape a, Shape b) { return a.c == b.c && a.h == b.h && a.w == b.w; }

/* slot is -1, or a buffer of this kind (kind < 0: any) holding elems
 * elements (elems < 0: any); present says which of the two it must be. */
static void check_slot(const IRNetwork *net, const IRLayer *l, const char *what, int slot,
                       int kind, long elems, bool present)
{
	if (slot < -1 || slot >= net->nbufs) {
		bad(net, "layer %s: slot %s out of range", l->name, what);
		return;
	}
	if ((slot >= 0) != present)
		bad(net, present ? "layer %s: no %s buffer" : "layer %s: a %s buffer it has no use for",
		    l->name, what);
	if (slot < 0 || !present)
		return;
	const IRBuf *b = &net->bufs[slot];
	if ((kind >= 0 && b->kind != kind) || (elems >= 0 && b->elems != elems))
		bad(net, "layer %s: buffer %s has the wrong kind or size", l->name, what);
}

static Shape source_shape(const IRNetwork *net, int input)
{
	return input < 0 ? net->in_shape : net->layers[input].out_shape;
}

static void verify_layer(const IRNetwork *net, int i)
{
	const IRLayer *l = &net->layers[i];
	bool params = wtn_op_has(l->kind, WTN_OP_PARAMS), rule = wtn_op_has(l->kind, WTN_OP_RULE);
	if (l->kind < 0 || l->kind >= WTN_NOPS || l->input < -1 || l->input >= i ||
	    l->input2 < -1 || l->input2 >= i || (l->input2 >= 0 && l->kind != OP_ADD)) {
		bad(net, "layer %s: %s", l->name, "bad kind or inputs");
		return;
	}
	if (!same(l->in_shape, source_shape(net, l->input)) || l->in != units(l->in_shape) ||
	    l->out != units(l->out_shape) || l->in <= 0 || l->out <= 0)
		bad(net, "layer %s: %s", l->name, "shapes disagree with the input or the sizes");
	if (!wtn_op_has(l->kind, WTN_OP_ACT) && l->act != ACT_IDENTITY)
		bad(net, "layer %s: a %s has no activation", l->name, wtn_op_names[l->kind]);
	/* the rule's tensors exist exactly when it needs them */
	bool is_out = i == net->nlayers - 1;
	long w = params ? net->bufs[l->W >= 0 && l->W < net->nbufs ? l->W : 0].elems : 0;
	check_slot(net, l, "W", l->W, BUF_PARAM, -1, params);
	check_slot(net, l, "b", l->b, BUF_PARAM, l->out_shape.c, params && l->bias);
	check_slot(net, l, "B", l->B, BUF_PARAM, w, rule && l->carry == FB_CARRY_B);
	check_slot(net, l, "D", l->D, BUF_PARAM, (long)net->layers[net->nlayers - 1].out * l->out,
	           rule && l->carry == FB_CARRY_D && !is_out);
	check_slot(net, l, "M", l->M, BUF_STATE, w, rule && l->change == FB_CHANGE_RANDMAG_SIGN_W);
	check_slot(net, l, "gW", l->gW, BUF_GRAD, w, params);
	check_slot(net, l, "gb", l->gb, BUF_GRAD, l->out_shape.c, params && l->bias);
	check_slot(net, l, "rmean", l->rmean, BUF_STAT, l->out_shape.c, l->kind == OP_BATCHNORM);
	check_slot(net, l, "rvar", l->rvar, BUF_STAT, l->out_shape.c, l->kind == OP_BATCHNORM);
	long positions = (long)l->out_shape.h * l->out_shape.w;
	if (l->kind == OP_DROPOUT || l->kind == OP_MAXPOOL)   /* mask, argmax */
		check_slot(net, l, "aux", l->aux, BUF_BATCH, l->out, true);
	if (l->kind == OP_LAYERNORM) {   /* each position's mean and 1/std */
		check_slot(net, l, "aux", l->aux, BUF_BATCH, positions, true);
		check_slot(net, l, "aux2", l->aux2, BUF_BATCH, positions, true);
	}
	check_slot(net, l, "y", l->y, BUF_BATCH, l->out, true);
	check_slot(net, l, "d", l->d, BUF_BATCH, l->out, true);
	int any[] = { l->mW, l->mb, l->mB, l->vW, l->vb, l->vB, l->aux, l->aux2 };
	for (size_t k = 0; k < sizeof any / sizeof any[0]; k++)
		if (any[k] < -1 || any[k] >= net->nbufs)
			bad(net, "layer %s: %s", l->name, "a state or scratch slot out of range");
	if (!rule && (l->start != FB_START_NONE || l->carry != FB_CARRY_W || l->nargs))
		bad(net, "layer %s: a %s has no feedback rule", l->name, wtn_op_names[l->kind]);
	/* every argument of the rule, defaults filled in (wm's schedule among them) */
	const RuleDef *r = ir_layer_rule(l);
	if (rule && l->feedback.def && (l->nargs != r->nparams || strcmp(l->rule, r->name)))
		bad(net, "layer %s: rule %s without all its arguments", l->name, r->name);
}

int model_verify(const IRNetwork *net)
{
	verify_errors = 0;
	if (net->nlayers < 1 || net->version != WTN_MODEL_VERSION)
		bad(net, "%s%s", "no layers or ", "no plan");
	if (net->x_slot < 0 || net->x_slot >= net->nbufs || net->bufs[net->x_slot].elems != net->in_units)
		bad(net, "%s%s", "the input ", "slot");
	if (net->args_slot < 0 || net->args_slot >= net->nbufs ||
	    net->bufs[net->args_slot].elems < (long)net->nlayers * WTN_MAX_ARGS)
		bad(net, "%s%s", "the rule arguments' ", "slot");
	for (int i = 0; i < net->nbufs; i++) {
		const IRBuf *b = &net->bufs[i];
		long prod = 1;
		for (int k = 0; k < b->ndim; k++)
			prod *= b->dims[k];
		if (b->elems <= 0 || prod != b->elems)
			bad(net, "buffer %s: %s", b->name, "its shape does not hold its elements");
		const WtnInit *in = &b->init;
		if (in->fill < 0 || in->fill >= WTN_NFILLS || in->src >= net->nbufs || in->keep >= net->nbufs ||
		    ((in->fill == WTN_FILL_SIGN || in->fill == WTN_FILL_RANDMAG_SIGN) &&
		     (in->src < 0 || net->bufs[in->src].elems != b->elems)))
			bad(net, "buffer %s: %s", b->name, "a bad init descriptor");
		for (int j = 0; j < i; j++)
			if (!strcmp(net->bufs[j].name, b->name))
				bad(net, "buffer %s: %s", b->name, "a duplicate name");
	}
	for (int i = 0; i < net->nlayers && !verify_errors; i++)
		verify_layer(net, i);
	const IRLayer *last = net->nlayers > 0 ? &net->layers[net->nlayers - 1] : NULL;
	if (last && (last->out_shape.h != 1 || last->out_shape.w != 1))
		bad(net, "the output layer %s: %s", last->name, "not a vector of class scores");
	return verify_errors > 0;
}

/* ---- --emit-ir: one line per record, key=value per field ---- */

static void key(FILE *out, const char *k) { fprintf(out, k ? " %s=" : ",", k); }
static void put_I32(FILE *o, const char *k, const int *v) { key(o, k); fprintf(o, "%d", *v); }
static void put_I64(FILE *o, const char *k, const long *v) { key(o, k); fprintf(o, "%ld", *v); }
static void put_F64(FILE *o, const char *k, const double *v) { key(o, k); fprintf(o, "%.9g", *v); }
static void put_STR(FILE *o, const char *k, const char *const *v) { key(o, k); fputs(*v ? *v : "-", o); }
static void put_SHAPE(FILE *o, const char *k, const Shape *v)
{
	key(o, k);
	fprintf(o, "%dx%dx%d", v->c, v->h, v->w);
}
#define PUT_ENUM(T, names, n) \
	static void put_##T(FILE *o, const char *k, const int *v) { key(o, k); fputs(wtn_name(names, n, *v), o); }
PUT_ENUM(FILL, wtn_fill_names, WTN_NFILLS)
PUT_ENUM(BUFK, wtn_buf_kind_names, WTN_NBUF_KINDS)
PUT_ENUM(OP, wtn_op_names, WTN_NOPS)
PUT_ENUM(ACT, wtn_act_names, WTN_NACTS)
PUT_ENUM(INITK, wtn_init_names, WTN_NINITS)
PUT_ENUM(START, wtn_start_names, WTN_NSTARTS)
PUT_ENUM(CARRY, wtn_carry_names, WTN_NCARRIES)
PUT_ENUM(CHANGE, wtn_change_names, WTN_NCHANGES)
PUT_ENUM(OPT, wtn_opt_names, WTN_NOPTS)
PUT_ENUM(SCHED, wtn_sched_names, WTN_NSCHEDS)
PUT_ENUM(LOSS, wtn_loss_names, WTN_NLOSSES)
/* records of their own, after the network line */
static void put_LAYERS(FILE *o, const char *k, IRLayer *const *v) { }
static void put_BUFS(FILE *o, const char *k, IRBuf *const *v) { }
static void put_TRAIN(FILE *o, const char *k, const TrainCfg *v) { }
#define PUT(T, f) put_##T(out, #f, &x->f);
#define PUT_ARRAY(T, f, n, count) \
	for (int i_ = 0; i_ < x->count; i_++) put_##T(out, i_ ? NULL : #f, &x->f[i_]);
static void put_INIT(FILE *out, const char *k, const WtnInit *x)
{
	if (x->fill == WTN_FILL_ZERO) {
		put_FILL(out, "fill", &x->fill);
	} else {
		WTN_INIT_FIELDS(PUT, PUT_ARRAY)
	}
}

void model_print(FILE *out, const IRNetwork *net)
{
	const IRNetwork *x = net;
	fputs("network", out);
	WTN_MODEL_FIELDS(PUT, PUT_ARRAY)
	fputs("\ntrain", out);
	{
		const TrainCfg *x = &net->train;
		WTN_TRAIN_FIELDS(PUT, PUT_ARRAY)
	}
	for (int i = 0; i < net->nbufs; i++) {
		const IRBuf *x = &net->bufs[i];
		fprintf(out, "\nbuf slot=%d", i);
		WTN_BUF_FIELDS(PUT, PUT_ARRAY)
	}
	for (int i = 0; i < net->nlayers; i++) {
		const IRLayer *x = &net->layers[i];
		fputs("\nlayer", out);
		WTN_LAYER_FIELDS(PUT, PUT_ARRAY)
	}
	fputs("\n", out);
}

/* ---- the LLVM constant: each struct as an LLVM struct of the same
 * layout (checked against the C compiler's offsets) ---- */

typedef struct Em {
	LLVMContextRef ctx;
	LLVMModuleRef mod;
	LLVMTargetDataRef td;
	const IRNetwork *net;
	LLVMTypeRef shape, init, buf, layer, train, model, str;
	bool bad_layout;
} Em;

static LLVMTypeRef ty_I32(Em *e) { return LLVMInt32TypeInContext(e->ctx); }
static LLVMTypeRef ty_I64(Em *e) { return LLVMInt64TypeInContext(e->ctx); }
static LLVMTypeRef ty_F64(Em *e) { return LLVMDoubleTypeInContext(e->ctx); }
static LLVMTypeRef ty_STR(Em *e) { return e->str; }
static LLVMTypeRef ty_SHAPE(Em *e) { return e->shape; }
static LLVMTypeRef ty_INIT(Em *e) { return e->init; }
static LLVMTypeRef ty_TRAIN(Em *e) { return e->train; }
static LLVMTypeRef ty_LAYERS(Em *e) { return LLVMPointerType(e->layer, 0); }
static LLVMTypeRef ty_BUFS(Em *e) { return LLVMPointerType(e->buf, 0); }

static LLVMValueRef em_I32(Em *e, const int *v) { return LLVMConstInt(ty_I32(e), (unsigned long long)*v, 1); }
static LLVMValueRef em_I64(Em *e, const long *v) { return LLVMConstInt(ty_I64(e), (unsigned long long)*v, 1); }
static LLVMValueRef em_F64(Em *e, const double *v) { return LLVMConstReal(ty_F64(e), *v); }

/* A private constant global holding init, as a pointer of type t. */
static LLVMValueRef em_global(Em *e, LLVMValueRef init, LLVMTypeRef t)
{
	LLVMValueRef g = LLVMAddGlobal(e->mod, LLVMTypeOf(init), "");
	LLVMSetInitializer(g, init);
	LLVMSetGlobalConstant(g, 1);
	LLVMSetLinkage(g, LLVMPrivateLinkage);
	LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
	return LLVMConstPointerCast(g, t);
}

static LLVMValueRef em_STR(Em *e, const char *const *v)
{
	if (!*v)
		return LLVMConstNull(e->str);
	return em_global(e, LLVMConstStringInContext(e->ctx, *v, (unsigned)strlen(*v), 0), e->str);
}

#define em_FILL em_I32
#define em_BUFK em_I32
#define em_OP em_I32
#define em_ACT em_I32
#define em_INITK em_I32
#define em_START em_I32
#define em_CARRY em_I32
#define em_CHANGE em_I32
#define em_OPT em_I32
#define em_SCHED em_I32
#define em_LOSS em_I32
#define ty_FILL ty_I32
#define ty_BUFK ty_I32
#define ty_OP ty_I32
#define ty_ACT ty_I32
#define ty_INITK ty_I32
#define ty_START ty_I32
#define ty_CARRY ty_I32
#define ty_CHANGE ty_I32
#define ty_OPT ty_I32
#define ty_SCHED ty_I32
#define ty_LOSS ty_I32

/* Field types, in order, and the C layout check. */
#define TY(T, f) types[k++] = ty_##T(e);
#define TY_ARRAY(T, f, n, count) types[k++] = LLVMArrayType(ty_##T(e), n);
#define OFF(T, f) e->bad_layout |= LLVMOffsetOfElement(e->td, t, k++) != offsetof(CSTRUCT, f);
#define OFF_ARRAY(T, f, n, count) OFF(T, f)
#define STRUCT_TYPE(var, name, FIELDS) do { \
	LLVMTypeRef types[64]; \
	unsigned k = 0; \
	FIELDS(TY, TY_ARRAY) \
	LLVMTypeRef t = e->var = LLVMStructCreateNamed(e->ctx, name); \
	LLVMStructSetBody(t, types, k, 0); \
	k = 0; \
	FIELDS(OFF, OFF_ARRAY) \
	e->bad_layout |= LLVMABISizeOfType(e->td, t) != sizeof(CSTRUCT); \
} while (0)

/* A constant of a struct's fields read from x (any struct with them). */
#define EM(T, f) vals[k++] = em_##T(e, &x->f);
#define EM_ARRAY(T, f, n, count) do { \
	LLVMValueRef el[n]; \
	for (int i_ = 0; i_ < n; i_++) el[i_] = em_##T(e, &x->f[i_]); \
	vals[k++] = LLVMConstArray(ty_##T(e), el, n); \
} while (0);
#define STRUCT_VALUE(ty, FIELDS) do { \
	LLVMValueRef vals[64]; \
	unsigned k = 0; \
	FIELDS(EM, EM_ARRAY) \
	return LLVMConstNamedStruct(e->ty, vals, k); \
} while (0)

static LLVMValueRef em_SHAPE(Em *e, const Shape *x)
{
	LLVMValueRef v[] = { em_I32(e, &x->c), em_I32(e, &x->h), em_I32(e, &x->w) };
	return LLVMConstNamedStruct(e->shape, v, 3);
}
static LLVMValueRef em_INIT(Em *e, const WtnInit *x) { STRUCT_VALUE(init, WTN_INIT_FIELDS); }
static LLVMValueRef em_TRAIN(Em *e, const TrainCfg *x) { STRUCT_VALUE(train, WTN_TRAIN_FIELDS); }
static LLVMValueRef em_buf(Em *e, const IRBuf *x) { STRUCT_VALUE(buf, WTN_BUF_FIELDS); }
static LLVMValueRef em_layer(Em *e, const IRLayer *x) { STRUCT_VALUE(layer, WTN_LAYER_FIELDS); }

static LLVMValueRef em_BUFS(Em *e, IRBuf *const *v)
{
	LLVMValueRef *el = calloc((size_t)e->net->nbufs + 1, sizeof *el);
	if (!el) { perror("wtnc"); exit(1); }
	for (int i = 0; i < e->net->nbufs; i++)
		el[i] = em_buf(e, &(*v)[i]);
	LLVMValueRef a = LLVMConstArray(e->buf, el, (unsigned)e->net->nbufs);
	free(el);
	return em_global(e, a, ty_BUFS(e));
}

static LLVMValueRef em_LAYERS(Em *e, IRLayer *const *v)
{
	LLVMValueRef *el = calloc((size_t)e->net->nlayers + 1, sizeof *el);
	if (!el) { perror("wtnc"); exit(1); }
	for (int i = 0; i < e->net->nlayers; i++)
		el[i] = em_layer(e, &(*v)[i]);
	LLVMValueRef a = LLVMConstArray(e->layer, el, (unsigned)e->net->nlayers);
	free(el);
	return em_global(e, a, ty_LAYERS(e));
}

static LLVMValueRef em_model(Em *e, const IRNetwork *x) { STRUCT_VALUE(model, WTN_MODEL_FIELDS); }

int model_emit(LLVMContextRef ctx, LLVMModuleRef mod, LLVMTargetDataRef td, const IRNetwork *net)
{
	Em em = { .ctx = ctx, .mod = mod, .td = td, .net = net }, *e = &em;
	e->str = LLVMPointerType(LLVMInt8TypeInContext(ctx), 0);
#define SHAPE_FIELDS(S, A) S(I32, c) S(I32, h) S(I32, w)
#define CSTRUCT WtnShape
	STRUCT_TYPE(shape, "wtn.shape", SHAPE_FIELDS);
#undef CSTRUCT
#define CSTRUCT WtnInit
	STRUCT_TYPE(init, "wtn.init", WTN_INIT_FIELDS);
#undef CSTRUCT
#define CSTRUCT WtnBuf
	STRUCT_TYPE(buf, "wtn.buf", WTN_BUF_FIELDS);
#undef CSTRUCT
#define CSTRUCT WtnLayer
	STRUCT_TYPE(layer, "wtn.layer", WTN_LAYER_FIELDS);
#undef CSTRUCT
#define CSTRUCT WtnTrain
	STRUCT_TYPE(train, "wtn.train", WTN_TRAIN_FIELDS);
#undef CSTRUCT
#define CSTRUCT WtnModel
	STRUCT_TYPE(model, "wtn.model", WTN_MODEL_FIELDS);
#undef CSTRUCT
	if (e->bad_layout) {
		fprintf(stderr, "wtnc: internal error: LLVM lays out the model unlike C\n");
		return 1;
	}
	LLVMValueRef g = LLVMAddGlobal(mod, e->model, "wtn_model");
	LLVMSetInitializer(g, em_model(e, net));
	LLVMSetGlobalConstant(g, 1);
	LLVMSetLinkage(g, LLVMExternalLinkage);
	return 0;
}
