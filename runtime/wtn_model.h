/* wtn_model.h: the typed model a compiled network hands the runtime. The
 * compiler (compiler/model.c) checks it and emits it as the constant
 * `wtn_model` of the network's object file; the runtime checks its version
 * and allocates one buffer per slot; it parses nothing. Every enum's names
 * and every struct's fields are listed once, here, as X-macros: the
 * compiler's and the runtime's enums, the structs, `wtnc --emit-ir`, the
 * LLVM constant and the runtime's messages are all expanded from them. */
#ifndef WTN_MODEL_H
#define WTN_MODEL_H

#define WTN_MODEL_VERSION 5   /* bump on any change below */

/* ---- enums: X(NAME, "spelling", ...) in value order ---- */
#define WTN_ACTS(X) X(IDENTITY, "identity") X(RELU, "relu") X(TANH, "tanh") \
	X(SIGMOID, "sigmoid") X(GELU, "gelu")
#define WTN_LOSSES(X) X(SOFTMAX_CE, "softmax_cross_entropy") X(MSE, "mse")
#define WTN_INITS(X) X(HE, "he") X(XAVIER, "xavier") X(NORMAL, "normal") X(UNIFORM, "uniform")
/* A learning rule: how B starts, what carries the error back, how B changes. */
#define WTN_STARTS(X) X(NONE, "none") X(LIKE_W, "like_w") X(SIGN_W, "sign_w") \
	X(RANDMAG_SIGN_W, "randmag_sign_w")
#define WTN_CARRIES(X) X(W, "W") X(B, "B") X(D, "D")
#define WTN_CHANGES(X) X(NONE, "none") X(AS_W, "as_w") X(SIGN_W, "sign_w") \
	X(RANDMAG_SIGN_W, "randmag_sign_w") X(REDRAW_SIGN_W, "redraw_sign_w") X(MIRROR, "mirror")
#define WTN_OPTS(X) X(SGD, "sgd") X(ADAM, "adam")
#define WTN_SCHEDS(X) X(NONE, "none") X(STEP, "step") X(COSINE, "cosine")
/* stat: saved in checkpoints like params, never trained (batchnorm's
 * running statistics); state: what else training carries from step to
 * step (optimiser moments, frsf's magnitudes), saved in resumable
 * checkpoints; batch: elems per sample; scratch: elems in all. */
#define WTN_BUF_KINDS(X) X(PARAM, "param") X(STAT, "stat") X(STATE, "state") \
	X(GRAD, "grad") X(BATCH, "batch") X(SCRATCH, "scratch")
/* How the runtime fills a buffer before training (WtnInit). */
#define WTN_FILLS(X) X(ZERO, "zero") X(CONST, "const") X(NORMAL, "normal") \
	X(UNIFORM, "uniform") X(SIGN, "sign") X(RANDMAG_SIGN, "randmag_sign")
/* Layer kinds and what every consumer of the model needs to know of them:
 * PARAMS: trained tensors W (and b); RULE: a feedback path with a learning
 * rule (the others learn by backprop); ACT: a fused activation. */
enum { WTN_OP_PARAMS = 1, WTN_OP_RULE = 2, WTN_OP_ACT = 4 };
#define WTN_OPS(X) \
	X(DENSE, "dense", WTN_OP_PARAMS | WTN_OP_RULE | WTN_OP_ACT) \
	X(CONV2D, "conv2d", WTN_OP_PARAMS | WTN_OP_RULE | WTN_OP_ACT) \
	X(BATCHNORM, "batchnorm", WTN_OP_PARAMS | WTN_OP_ACT) \
	X(MAXPOOL, "maxpool", 0) X(AVGPOOL, "avgpool", 0) \
	X(GLOBAL_AVGPOOL, "global_avgpool", 0) X(FLATTEN, "flatten", 0) \
	X(ADD, "add", WTN_OP_ACT) X(ACT, "act", WTN_OP_ACT) \
	X(DROPOUT, "dropout", 0) X(LAYERNORM, "layernorm", WTN_OP_PARAMS | WTN_OP_ACT)

#define WTN_NAME_OF(N, s, ...) s,
#define WTN_PLUS_ONE(...) + 1
static const char *const wtn_act_names[] = { WTN_ACTS(WTN_NAME_OF) };
static const char *const wtn_loss_names[] = { WTN_LOSSES(WTN_NAME_OF) };
static const char *const wtn_init_names[] = { WTN_INITS(WTN_NAME_OF) };
static const char *const wtn_start_names[] = { WTN_STARTS(WTN_NAME_OF) };
static const char *const wtn_carry_names[] = { WTN_CARRIES(WTN_NAME_OF) };
static const char *const wtn_change_names[] = { WTN_CHANGES(WTN_NAME_OF) };
static const char *const wtn_opt_names[] = { WTN_OPTS(WTN_NAME_OF) };
static const char *const wtn_sched_names[] = { WTN_SCHEDS(WTN_NAME_OF) };
static const char *const wtn_buf_kind_names[] = { WTN_BUF_KINDS(WTN_NAME_OF) };
static const char *const wtn_fill_names[] = { WTN_FILLS(WTN_NAME_OF) };
static const char *const wtn_op_names[] = { WTN_OPS(WTN_NAME_OF) };
#define WTN_FLAGS_OF(N, s, f) f,
static const int wtn_op_flags[] = { WTN_OPS(WTN_FLAGS_OF) };
enum {
	WTN_NACTS = 0 WTN_ACTS(WTN_PLUS_ONE), WTN_NLOSSES = 0 WTN_LOSSES(WTN_PLUS_ONE),
	WTN_NINITS = 0 WTN_INITS(WTN_PLUS_ONE), WTN_NSTARTS = 0 WTN_STARTS(WTN_PLUS_ONE),
	WTN_NCARRIES = 0 WTN_CARRIES(WTN_PLUS_ONE), WTN_NCHANGES = 0 WTN_CHANGES(WTN_PLUS_ONE),
	WTN_NOPTS = 0 WTN_OPTS(WTN_PLUS_ONE), WTN_NSCHEDS = 0 WTN_SCHEDS(WTN_PLUS_ONE),
	WTN_NBUF_KINDS = 0 WTN_BUF_KINDS(WTN_PLUS_ONE), WTN_NFILLS = 0 WTN_FILLS(WTN_PLUS_ONE),
	WTN_NOPS = 0 WTN_OPS(WTN_PLUS_ONE)
};
#define WTN_FILL_E(N, ...) WTN_FILL_##N,
enum { WTN_FILLS(WTN_FILL_E) };
#define WTN_KIND_E(N, ...) WTN_KIND_##N,
enum { WTN_OPS(WTN_KIND_E) };
static inline int wtn_op_has(int kind, int flag)
{
	return kind >= 0 && kind < WTN_NOPS && (wtn_op_flags[kind] & flag);
}
/* names[v], or "?" out of range */
static inline const char *wtn_name(const char *const *names, int n, int v)
{
	return v >= 0 && v < n ? names[v] : "?";
}

/* ---- structs: S(TYPE, field) scalars, A(TYPE, field, n, count) arrays
 * of n, of which the first `count` (another field) are used ----
 * TYPE is one of the WTN_T_* below: C's type, and LLVM's in model.c.
 * The enum-valued ones are ints printed by name. */
#define WTN_MAX_ARGS 8
#define WTN_MAX_DIMS 4
#define WTN_MAX_NORM 16
typedef struct WtnShape { int c, h, w; } WtnShape;   /* a vector of n units: {n, 1, 1} */

/* How the runtime fills a buffer before training. NORMAL and UNIFORM draw
 * from the random stream `stream` (a layer's own, so one layer's draws do
 * not shift another's) with std or bound a; CONST fills a; SIGN writes
 * sign(bufs[src]) * a; RANDMAG_SIGN draws magnitudes m as `dist` with
 * spread a, keeps them in slot keep (-1: nowhere) and writes
 * |m| * sign(bufs[src]). Buffers are filled in slot order. */
#define WTN_INIT_FIELDS(S, A) S(FILL, fill) S(I32, stream) S(FILL, dist) S(I32, src) \
	S(I32, keep) S(F64, a)
#define WTN_BUF_FIELDS(S, A) S(STR, name) S(BUFK, kind) S(I64, elems) S(I32, rows) \
	S(I32, cols) S(I32, ndim) A(I32, dims, WTN_MAX_DIMS, ndim) S(INIT, init)
/* slots: -1 where absent. eps and momentum: batchnorm, layernorm (eps);
 * p: dropout's drop probability. rule..arg: the learning rule, as
 * compiler/rules.c defines it, arguments with defaults filled in (bp for
 * the kinds without WTN_OP_RULE). */
#define WTN_LAYER_FIELDS(S, A) S(STR, name) S(OP, kind) S(I32, input) S(I32, input2) \
	S(I32, in) S(I32, out) S(SHAPE, in_shape) S(SHAPE, out_shape) S(I32, kh) S(I32, kw) \
	S(I32, stride) S(I32, pad) S(ACT, act) S(I32, bias) S(INITK, init) S(F64, init_arg) \
	S(F64, eps) S(F64, momentum) S(F64, p) S(STR, rule) S(START, start) S(CARRY, carry) \
	S(CHANGE, change) S(I32, mirror) S(I32, nargs) A(STR, arg_name, WTN_MAX_ARGS, nargs) \
	A(F64, arg, WTN_MAX_ARGS, nargs) S(I32, W) S(I32, b) S(I32, B) S(I32, D) S(I32, M) \
	S(I32, gW) S(I32, gb) S(I32, mW) S(I32, mb) S(I32, mB) S(I32, vW) S(I32, vb) \
	S(I32, vB) S(I32, rmean) S(I32, rvar) S(I32, aux) S(I32, aux2) S(I32, y) S(I32, d) \
	S(I32, wino_fwd) S(I32, wino_data) S(I32, wino_wgrad)
/* data: a name (fashion_mnist, mnist, cifar10, synthetic) or a directory. */
#define WTN_TRAIN_FIELDS(S, A) S(STR, data) S(I32, batch) S(I32, epochs) S(I64, seed) \
	S(OPT, optimizer) S(F64, lr) S(F64, momentum) S(F64, weight_decay) S(F64, beta1) \
	S(F64, beta2) S(F64, eps) S(I32, nesterov) S(SCHED, schedule) S(I32, step_every) \
	S(F64, gamma) S(F64, min_lr) S(I32, crop_pad) S(I32, flip) S(I32, nnorm) \
	A(F64, norm_mean, WTN_MAX_NORM, nnorm) A(F64, norm_std, WTN_MAX_NORM, nnorm)
/* Layers in forward order (inputs before consumers); the last is the output.
 * args_slot: a scratch buffer of nlayers * WTN_MAX_ARGS floats, the rule
 * arguments in force (layer i's argument k at i * WTN_MAX_ARGS + k), which
 * the runtime writes before training (wtn_rule_arg_value) and the kernels
 * read: rule arguments are run-time settings, not constants. */
#define WTN_MODEL_FIELDS(S, A) S(I32, version) S(STR, name) S(STR, input_name) \
	S(I32, in_units) S(SHAPE, in_shape) S(I32, x_slot) S(I32, args_slot) \
	S(LAYERS, layers) S(I32, nlayers) \
	S(LOSS, loss) S(TRAIN, train) S(BUFS, bufs) S(I32, nbufs)

#define WTN_T_I32 int
#define WTN_T_I64 long
#define WTN_T_F64 double
#define WTN_T_STR const char *
#define WTN_T_SHAPE WtnShape
#define WTN_T_INIT WtnInit
#define WTN_T_TRAIN WtnTrain
#define WTN_T_LAYERS const struct WtnLayer *
#define WTN_T_BUFS const struct WtnBuf *
#define WTN_T_FILL int
#define WTN_T_BUFK int
#define WTN_T_OP int
#define WTN_T_ACT int
#define WTN_T_INITK int
#define WTN_T_START int
#define WTN_T_CARRY int
#define WTN_T_CHANGE int
#define WTN_T_OPT int
#define WTN_T_SCHED int
#define WTN_T_LOSS int
#define WTN_FIELD(T, f) WTN_T_##T f;
#define WTN_FIELD_ARRAY(T, f, n, count) WTN_T_##T f[n];

typedef struct WtnInit { WTN_INIT_FIELDS(WTN_FIELD, WTN_FIELD_ARRAY) } WtnInit;
typedef struct WtnBuf { WTN_BUF_FIELDS(WTN_FIELD, WTN_FIELD_ARRAY) } WtnBuf;
typedef struct WtnLayer { WTN_LAYER_FIELDS(WTN_FIELD, WTN_FIELD_ARRAY) } WtnLayer;
typedef struct WtnTrain { WTN_TRAIN_FIELDS(WTN_FIELD, WTN_FIELD_ARRAY) } WtnTrain;
typedef struct WtnModel { WTN_MODEL_FIELDS(WTN_FIELD, WTN_FIELD_ARRAY) } WtnModel;

/* usf's |B| when its scale is 0: 1/sqrt(fan_in) for dense layers (Xiao
 * et al. 2018), sqrt(2/(kh kw C_out)) for conv layers (He et al.'s conv
 * init). Shared by the compiler (B's init) and the runtime (the kernels'
 * value), so both agree to the bit. */
static inline double wtn_sign_scale(int kind, int kh, int kw, int out_c, int in, double scale)
{
	if (scale > 0)
		return scale;
	return kind == WTN_KIND_CONV2D ? __builtin_sqrt(2.0 / ((double)kh * kw * out_c))
	                                : 1.0 / __builtin_sqrt(in);
}

/* Defined by every compiled network. */
extern const WtnModel wtn_model;
#endif
