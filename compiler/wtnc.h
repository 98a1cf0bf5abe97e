/* wtnc.h: the compiler's shared header, one section per file.
 * Pipeline: lexer.re -> parser.y (AST) -> sema.c (checks, shapes -> IR)
 *           -> ir.c (buffer plan, spec text) -> codegen.c (LLVM) -> main.c. */
#ifndef WTNC_H
#define WTNC_H
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* ---- diag.c: source files and diagnostics ---- */
typedef struct SrcFile {
	const char *name;     /* as given on the command line */
	char *text;           /* whole file, NUL-terminated */
	size_t len;
} SrcFile;

typedef struct Pos {
	const SrcFile *file;
	int line, col;        /* 1-based; col counts bytes */
} Pos;

extern int diag_errors;   /* errors reported so far */
SrcFile *diag_read_file(const char *path);   /* NULL (and a message) on failure */
/* "file:line:col: error: message", then the source line and a caret. */
void diag_error(Pos pos, const char *fmt, ...);
void diag_warning(Pos pos, const char *fmt, ...);
void diag_note(Pos pos, const char *fmt, ...);
/* Context notes: while a block body is being instantiated, every error and
 * warning is followed by "note: in block 'B' called here" for each open
 * call, innermost first. */
void diag_push_context(Pos pos, const char *fmt, ...);
void diag_pop_context(void);
/* The closest of names[0..n) to `name`, or NULL if none is close enough. */
const char *diag_suggest(const char *name, const char *const *names, int n);

/* ---- lexer.re, parser.y, ast.c: the syntax tree ----
 * The grammar is deliberately generic about values: a value is a number, a
 * name, a string or a call `name(arg, key=value, ...)`, and sema.c decides
 * what each position accepts. That keeps the grammar small and lets sema
 * say "expected a layer name, found number '3'" instead of a bare syntax
 * error. Every node carries the Pos of its first token. */
/* VAL_LIST: `[a, b]`, elements in args (no keys). VAL_OP: a condition of
 * `if`: text is "==", "!=", "<", "<=", ">", ">=", "and", "or" or "not",
 * operands in args. */
typedef enum { VAL_NUM, VAL_NAME, VAL_STR, VAL_CALL, VAL_LIST, VAL_OP } ValKind;

typedef struct Value Value;
typedef struct Arg {
	char *key;              /* NULL for a positional argument */
	Pos key_pos;
	Value *val;
} Arg;

struct Value {
	ValKind kind;
	Pos pos;
	char *text;             /* the name, the string's contents, the number as written */
	double num;             /* VAL_NUM */
	Arg *args;              /* VAL_CALL */
	int nargs;
};

typedef enum {
	ST_LET,                 /* let NAME = value */
	ST_NETWORK,             /* network NAME { body } */
	ST_TRAIN,               /* train { body } */
	ST_INPUT,               /* input NAME [value] */
	ST_LAYER,               /* NAME = value */
	ST_LOSS,                /* loss value */
	ST_FEEDBACK,            /* feedback { body } */
	ST_SETTING,             /* NAME value: a train setting or a feedback entry */
	ST_DEFAULT,             /* default value (feedback block) */
	ST_BLOCK,               /* block NAME(params) { body }: val is the header call */
	ST_IF,                  /* if COND { body } else { else_body }: val is COND */
	ST_RETURN               /* return value (block body) */
} StmtKind;

typedef struct Stmt Stmt;
struct Stmt {
	StmtKind kind;
	Pos pos;                /* the statement's first token */
	char *name;             /* NULL for train, loss, feedback, default */
	Pos name_pos;
	Value *val;
	Stmt *body;             /* network, train, feedback: the block's statements */
	Stmt *else_body;        /* if: the else branch (NULL if none) */
	Pos close_pos;          /* the block's '}' */
	Stmt *next;
};

struct Program {
	Stmt *items;            /* top level: let, network, train */
	const SrcFile *file;
};

typedef struct Program Program;
Program *parse_program(const SrcFile *f);   /* NULL after syntax errors */
/* One --feedback override, "LAYER=RULE" or "default=RULE(args)": a ST_SETTING
 * or ST_DEFAULT statement, or NULL after a syntax error (reported). */
Stmt *parse_override(const SrcFile *f);

/* ast.c: constructors (abort on out-of-memory) */
void *ast_alloc(size_t size);
char *ast_strdup(const char *s, size_t len);
Value *ast_value(ValKind kind, Pos pos, char *text);
void ast_add_arg(Value *call, char *key, Pos key_pos, Value *val);
Stmt *ast_stmt(StmtKind kind, Pos pos, char *name, Pos name_pos, Value *val);
/* "number '3'", "name 'x'", "string \"p\"", "call 'f(...)'": for messages */
const char *ast_describe(const Value *v);

/* ---- rules.c: learning rules as data ----
 * A rule answers: how B starts, what carries the error back, how B changes,
 * whether it has a mirror phase. The backend reads only these fields. */
typedef enum { FB_START_NONE, FB_START_LIKE_W, FB_START_SIGN_W, FB_START_RANDMAG_SIGN_W } FbStart;
typedef enum { FB_CARRY_W, FB_CARRY_B, FB_CARRY_D } FbCarry;
typedef enum {
	FB_CHANGE_NONE,            /* B fixed */
	FB_CHANGE_AS_W,            /* B gets W's gradient and optimiser step (kp) */
	FB_CHANGE_SIGN_W,          /* B = sign(W) * s after each update (usf) */
	FB_CHANGE_RANDMAG_SIGN_W,  /* B = |M| * sign(W), M fixed (frsf) */
	FB_CHANGE_REDRAW_SIGN_W,   /* B = |M| * sign(W), M redrawn each batch (brsf) */
	FB_CHANGE_MIRROR           /* weight mirror phase (wm) */
} FbChange;

#define RULE_MAX_PARAMS 6
typedef struct RuleParam { const char *name; double def; } RuleParam;
typedef struct RuleDef {
	const char *name, *title;
	FbStart start;
	FbCarry carry;
	FbChange change;
	int nparams;
	RuleParam params[RULE_MAX_PARAMS];
	bool supported;            /* false: a reserved name, "not supported yet" */
} RuleDef;

extern const RuleDef rule_table[];
extern const int rule_count;
const RuleDef *rule_lookup(const char *name);
const char *fb_start_name(FbStart s);
const char *fb_carry_name(FbCarry c);
const char *fb_change_name(FbChange c);
/* What a rule argument accepts (sema.c checks it at the argument). */
typedef enum {
	RULE_ARG_ANY,                /* any number */
	RULE_ARG_POSITIVE,           /* > 0 */
	RULE_ARG_NONNEG,             /* >= 0 */
	RULE_ARG_FRACTION,           /* in [0, 1) */
	RULE_ARG_NONNEG_OR_DEFAULT,  /* >= 0, or -1 for "the optimiser's" */
	RULE_ARG_POS_INT,            /* 1, 2, ... */
	RULE_ARG_NONNEG_INT          /* 0, 1, ... */
} RuleArgKind;
RuleArgKind rule_arg_kind(const RuleDef *r, int i);
/* Index of the parameter called `param` in r->params, -1 if none. */
int rule_param_index(const RuleDef *r, const char *param);

/* ---- sema.c: checks and shape inference, AST -> IR ---- */
typedef enum { ACT_IDENTITY, ACT_RELU, ACT_TANH, ACT_SIGMOID } Act;
typedef enum { LOSS_SOFTMAX_CE, LOSS_MSE } Loss;
typedef enum { INIT_HE, INIT_XAVIER, INIT_NORMAL, INIT_UNIFORM } Init;
typedef enum { OPT_SGD, OPT_ADAM } Opt;
typedef enum { SCHED_NONE, SCHED_STEP, SCHED_COSINE } Sched;

typedef struct IRRule {
	const RuleDef *def;
	double args[RULE_MAX_PARAMS];  /* defaults filled in */
	Pos pos;
} IRRule;

/* Every node of the network graph is an IRLayer of some kind. Only dense
 * and conv2d have a feedback path with a rule; batchnorm learns gamma and
 * beta by backprop. */
typedef enum {
	OP_DENSE, OP_CONV2D, OP_BATCHNORM, OP_MAXPOOL, OP_AVGPOOL,
	OP_GLOBAL_AVGPOOL, OP_FLATTEN, OP_ADD, OP_ACT
} OpKind;

typedef struct Shape { int c, h, w; } Shape;   /* a vector of n units: {n, 1, 1} */

typedef struct IRLayer {
	char *name;             /* full path: "layer2.0.conv1" */
	Pos pos;
	OpKind kind;
	int input;              /* index of the producing layer, -1 = network input */
	int input2;             /* add: the second operand; -1 otherwise */
	int in, out;            /* units per sample: c*h*w of the shapes */
	Shape in_shape, out_shape;
	int kh, kw, stride, pad;  /* conv2d and the pools */
	double bn_eps, bn_momentum;
	Act act;
	bool bias;
	Init init;
	double init_arg;        /* std for normal, a for uniform */
	IRRule rule;            /* bp for layers the feedback block leaves alone */
	/* buffer slots (ir.c), -1 where absent */
	int W, b, B, D, M;      /* params: weight, bias, feedback, dfa matrix; frsf magnitudes */
	int gW, gb;             /* gradients */
	int mW, mb, mB;         /* optimiser state 1: momentum or adam m */
	int vW, vb, vB;         /* adam v */
	int rmean, rvar;        /* batchnorm running statistics (BUF_STAT) */
	int aux, aux2;          /* per-kind scratch, see runtime/wtn_abi.h */
	int y, d;               /* activations [n,out], error dL/da [n,out] */
} IRLayer;

typedef struct TrainCfg {
	char *data;             /* "fashion_mnist", "mnist", "synthetic", or a path */
	int batch, epochs;
	long seed;
	Opt opt;
	double lr, momentum, weight_decay, beta1, beta2, eps;
	bool nesterov;
	Sched sched;
	int step_every;         /* step: multiply lr by gamma every step_every epochs */
	double gamma, min_lr;   /* cosine anneals lr to min_lr over the epochs */
	int crop_pad;           /* random crop after padding by crop_pad pixels; 0: none */
	bool flip;              /* random horizontal flip */
	int nnorm;              /* per-channel normalisation: 0 (none) or C values */
	double norm_mean[4], norm_std[4];
} TrainCfg;

typedef enum { BUF_PARAM, BUF_STAT, BUF_STATE, BUF_GRAD, BUF_BATCH, BUF_SCRATCH } BufKind;
typedef struct IRBuf {
	char *name;
	BufKind kind;
	long elems;             /* per sample for BUF_BATCH */
	int rows, cols;         /* 2-D view: rows = dims[0], cols = the rest */
	int ndim, dims[4];      /* shape as checkpoints store it */
} IRBuf;

typedef struct IRNetwork {
	char *name;
	char *input_name;
	int in_units;
	Shape in_shape;
	int x_slot;
	IRLayer *layers;
	int nlayers;
	Loss loss;
	TrainCfg train;
	IRBuf *bufs;
	int nbufs;
} IRNetwork;

/* Checks the program and infers shapes. overrides: "LAYER=RULE" strings from
 * the command line, applied over the file's feedback block. Fills everything
 * but the buffer plan (every slot is -1). NULL if any error was reported. */
IRNetwork *sema_program(Program *p, const char *const *overrides, int noverrides);

/* ---- ir.c: buffer plan and the spec text (runtime/wtn_abi.h) ---- */
void ir_plan_buffers(IRNetwork *net);  /* assigns every slot */
void ir_print(FILE *out, const IRNetwork *net); /* --emit-ir: the spec text */
char *ir_spec_string(const IRNetwork *net);      /* same text, malloc'd */
const char *act_name(Act a);
const char *loss_name(Loss l);
const char *init_name(Init i);
const char *op_kind_name(OpKind k);
/* The rule a layer learns by: its own for dense and conv2d, bp for the rest. */
const RuleDef *ir_layer_rule(const IRLayer *l);
/* conv2d lowering, shared by the plan and the backend: a 1x1 stride-1
 * unpadded conv reads its input as the columns (no im2col); otherwise the
 * columns of ir_conv_chunk samples at a time, ir_conv_patch = C*kh*kw
 * floats per output pixel, go through the shared scratch in aux. */
bool ir_conv_direct(const IRLayer *l);
/* The columns hold a patch in (i, j, c) order, so im2col copies runs of C
 * contiguous channels from the NHWC input; the products then use W
 * permuted to [F, kh, kw, C] in scratch aux2 (which holds two such
 * tensors). False where the orders coincide (C = 1 or a 1x1 kernel). */
bool ir_conv_permuted(const IRLayer *l);
long ir_conv_patch(const IRLayer *l);
int ir_conv_chunk(const IRNetwork *net, const IRLayer *l);
/* Up to IR_MAX_PARTS parts (wtn_parallel_for) run chunks of samples of an
 * im2col conv at once, each with its own columns (aux + part *
 * ir_col_part_elems) and gradient partials (the scratch slot
 * ir_partials_slot, ir_partials_stride floats per part: W's gradient in
 * patch order, then the bias's; -1 without im2col convs). */
#define IR_MAX_PARTS 4
long ir_col_part_elems(const IRNetwork *net);
long ir_partials_stride(const IRNetwork *net);
int ir_partials_slot(const IRNetwork *net);

/* ---- codegen.c: the LLVM backend ---- */
typedef struct CodegenOpts {
	const char *target_cpu;   /* NULL: host */
	int opt_level;            /* 0..3 */
} CodegenOpts;
/* Writes an object file (or, with emit_llvm, the optimised IR as text).
 * Returns 0 on success; on failure prints a message and returns 1. */
int codegen(const IRNetwork *net, const CodegenOpts *opts,
            const char *out_path, bool emit_llvm);

/* ---- sweep.c and sweep_report.c: `wtnc sweep` ---- */
/* argv[0] is "sweep". Returns the exit status. */
int sweep_main(int argc, char **argv);
/* Tables, plots and index.html of a sweep directory; 0 or 1. */
int sweep_report(const char *out);

#endif
