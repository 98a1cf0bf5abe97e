/* wtnc.h: the compiler's shared header, one section per file.
 * Pipeline: lexer.re -> parser.y (AST) -> sema.c (checks, shapes -> IR)
 *           -> ir.c (buffer plan, spec text) -> codegen.c (LLVM) -> main.c. */
#ifndef WTNC_H
#define WTNC_H
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include "wtn_model.h"

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
/* Whether the next error would be shown (not past the limit). */
bool diag_will_show(void);
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
/* change: none (B fixed), as_w (B gets W's gradient and optimiser step:
 * kp), sign_w (B = sign(W) * s after each update: usf), randmag_sign_w
 * (B = |M| * sign(W), M fixed: frsf), redraw_sign_w (M redrawn each batch:
 * brsf), mirror (weight mirror phase: wm). The enums of the model are
 * spelled here as the compiler spells them, from runtime/wtn_model.h. */
#define C_START(N, ...) FB_START_##N,
#define C_CARRY(N, ...) FB_CARRY_##N,
#define C_CHANGE(N, ...) FB_CHANGE_##N,
typedef enum { WTN_STARTS(C_START) } FbStart;
typedef enum { WTN_CARRIES(C_CARRY) } FbCarry;
typedef enum { WTN_CHANGES(C_CHANGE) } FbChange;

#define RULE_MAX_PARAMS 8
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
#define C_ACT(N, ...) ACT_##N,
#define C_LOSS(N, ...) LOSS_##N,
#define C_INIT(N, ...) INIT_##N,
#define C_OPT(N, ...) OPT_##N,
#define C_SCHED(N, ...) SCHED_##N,
#define C_OP(N, ...) OP_##N,
#define C_BUF(N, ...) BUF_##N,
typedef enum { WTN_ACTS(C_ACT) } Act;
typedef enum { WTN_LOSSES(C_LOSS) } Loss;
typedef enum { WTN_INITS(C_INIT) } Init;
typedef enum { WTN_OPTS(C_OPT) } Opt;
typedef enum { WTN_SCHEDS(C_SCHED) } Sched;

typedef struct IRRule {
	const RuleDef *def;
	double args[RULE_MAX_PARAMS];  /* defaults filled in */
	Pos pos;
} IRRule;

/* Every node of the network graph is an IRLayer of some kind (the
 * WTN_OPS table of runtime/wtn_model.h says which have parameters, a
 * feedback rule, an activation). Its fields are the model's WtnLayer
 * (runtime/wtn_model.h: the same names), plus where it was defined and
 * the feedback entry that chose its rule. */
typedef enum { WTN_OPS(C_OP) } OpKind;
typedef WtnShape Shape;   /* a vector of n units: {n, 1, 1} */

typedef struct IRLayer {
	WTN_LAYER_FIELDS(WTN_FIELD, WTN_FIELD_ARRAY)
	Pos pos;
	IRRule feedback;        /* bp for layers the feedback block leaves alone */
} IRLayer;

typedef WtnTrain TrainCfg;
typedef enum { WTN_BUF_KINDS(C_BUF) } BufKind;
typedef WtnBuf IRBuf;       /* rows, cols: 2-D view, rows = dims[0] (1 for vectors) */

/* WtnModel's fields, with the compiler's layers. */
typedef struct IRNetwork {
	int version;
	const char *name;
	const char *input_name;
	int in_units;
	Shape in_shape;
	int x_slot;
	int args_slot;
	IRLayer *layers;
	int nlayers;
	int loss;               /* Loss */
	TrainCfg train;
	IRBuf *bufs;
	int nbufs;
	bool direct_convs;      /* wtnc --direct-convs: no Winograd (ir_conv_winograd) */
} IRNetwork;

/* Checks the program and infers shapes. overrides: "LAYER=RULE" strings from
 * the command line, applied over the file's feedback block. Fills everything
 * but the buffer plan (every slot is -1). NULL if any error was reported. */
IRNetwork *sema_program(Program *p, const char *const *overrides, int noverrides);

/* ---- ir.c: buffer plan, init descriptors, rules as the model carries them ---- */
void ir_plan_buffers(IRNetwork *net);  /* assigns every slot */
/* How W starts: *dist is WTN_FILL_NORMAL (returns the std) or
 * WTN_FILL_UNIFORM (returns the bound); ir_init_std: its std either way. */
double ir_init_spread(const IRLayer *l, int *dist);
double ir_init_std(const IRLayer *l);
double ir_sign_scale(const IRLayer *l);   /* usf's |B| */
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
/* A stride-1 conv on fewer than 8 input channels with whole vectors of 8
 * filters: codegen's tiled forward, which also takes its kernel from aux2. */
bool ir_conv_tiled_few(const IRLayer *l);
long ir_conv_patch(const IRLayer *l);
int ir_conv_chunk(const IRNetwork *net, const IRLayer *l);
/* Up to IR_MAX_PARTS parts (wtn_parallel_for) run chunks of samples of an
 * im2col conv at once, each with its own columns (aux + part *
 * ir_col_part_elems) and, in loops that sum gradients, at most
 * ir_conv_parts(l) parts with their own partials (the scratch slot
 * ir_partials_slot, ir_partials_stride(l) floats per part: W's gradient in
 * patch order, then the bias's; -1 without im2col convs). */
#define IR_MAX_PARTS 16
long ir_col_part_elems(const IRNetwork *net);
/* Stride-1 convs on whole vectors of input and output channels run as
 * codegen's register-tiled kernels when a part's columns hold one sample's
 * zero-padded image and error (NHWC); ir_tiled_geo gives their sizes. */
typedef struct IRTiledGeo {
	long xw, xsize;   /* padded input: row length (pixels), floats per sample */
	long dw, dsize;   /* padded error, for the data gradient: the same */
} IRTiledGeo;
void ir_tiled_geo(const IRLayer *l, IRTiledGeo *g);
bool ir_conv_tiled(const IRNetwork *net, const IRLayer *l);
/* Stride-1 square kernels of 2..5 taps on whole vectors of channels run
 * their forward, data gradient and weight gradient as Winograd's F(m x m,
 * r x r) (winograd.c) when the output the pass tiles (the input's for the
 * data gradient) is tiled exactly by m x m: m is returned (4 for r <= 3
 * where it divides, else 2), 0 if the pass stays direct; the plan keeps it
 * in wino_fwd, wino_data and wino_wgrad. A part's columns then also hold
 * IR_WINO_TILES tiles' transforms (forward, data gradient) or the
 * transforms of a sample's every tile and the part's sums (weight
 * gradient); the transformed kernel, n*n*C*F floats (n = m + r - 1), goes
 * after the two tensors of aux2. */
#define IR_WINO_TILES 12
enum { IR_WINO_FWD, IR_WINO_DATA, IR_WINO_WGRAD };
int ir_conv_winograd(const IRNetwork *net, const IRLayer *l, int pass);
long ir_partials_stride(const IRLayer *l);
int ir_conv_parts(const IRLayer *l);
int ir_partials_slot(const IRNetwork *net);

/* ---- winograd.c: the transforms of F(m, r) ---- */
enum { WINO_MAX_N = 6 };   /* n = m + r - 1 */
typedef struct WinoMats {
	int m, r, n;
	double AT[WINO_MAX_N][WINO_MAX_N];   /* m x n: outputs from products */
	double G[WINO_MAX_N][WINO_MAX_N];    /* n x r: kernel */
	double BT[WINO_MAX_N][WINO_MAX_N];   /* n x n: input tile */
} WinoMats;
/* false if F(m, r) is beyond the points winograd.c has (n > WINO_MAX_N) */
bool wino_mats(int m, int r, WinoMats *w);

/* ---- model.c: the model the runtime gets (runtime/wtn_model.h) ---- */
typedef struct LLVMOpaqueContext *LLVMContextRef;
typedef struct LLVMOpaqueModule *LLVMModuleRef;
typedef struct LLVMOpaqueTargetData *LLVMTargetDataRef;
/* Consistency of the planned network, as the runtime relies on it: 0, or 1
 * after "internal error" messages. */
int model_verify(const IRNetwork *net);
void model_print(FILE *out, const IRNetwork *net);   /* --emit-ir */
/* Adds the constant wtn_model; 1 (after a message) on failure. */
int model_emit(LLVMContextRef ctx, LLVMModuleRef mod, LLVMTargetDataRef td,
               const IRNetwork *net);

/* ---- codegen.c: the LLVM backend ---- */
typedef struct CodegenOpts {
	const char *target_cpu;   /* NULL: host */
	int opt_level;            /* 0..3 */
} CodegenOpts;
/* Writes an object file (or, with emit_llvm, the optimised IR as text).
 * Returns 0 on success; on failure prints a message and returns 1. */
int codegen(const IRNetwork *net, const CodegenOpts *opts,
            const char *out_path, bool emit_llvm);
/* Whether LLVM knows `cpu` as a processor of this machine's target. */
bool codegen_cpu_known(const char *cpu);

/* ---- sweep.c and sweep_report.c: `wtnc sweep` ---- */
/* argv[0] is "sweep". Returns the exit status. */
int sweep_main(int argc, char **argv);
/* Tables, plots and index.html of a sweep directory; 0 or 1. */
int sweep_report(const char *out);

#endif
