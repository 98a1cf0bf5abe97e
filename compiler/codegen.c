/* codegen.c: the LLVM backend. One module per network holding the kernels of
 * runtime/wtn_abi.h. Every shape is a constant; only the batch n is a
 * runtime value. Each layer's elementwise work is its own internal function
 * whose pointer parameters are noalias, so after inlining LLVM still knows
 * the buffers are disjoint and vectorises the fused loops. */
#include <stdlib.h>
#include <string.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include "wtnc.h"
#include "wtn_abi.h"

typedef struct Cg {
	LLVMContextRef ctx;
	LLVMModuleRef mod;
	LLVMBuilderRef b;
	LLVMTypeRef t_void, t_f32, t_f64, t_i1, t_i32, t_i64, t_pf32, t_ppf32, t_pi32;
	LLVMTypeRef sgemm_ty, f32_fn_ty, noise_ty;
	LLVMValueRef sgemm, noise, f_expf, f_logf, f_sqrt;
	LLVMValueRef f_vexp, f_vtanh;  /* inlined, vectorisable (below) */
	LLVMValueRef fn;           /* function being built */
	const IRNetwork *net;
} Cg;

/* ---- small IR helpers ---- */

static LLVMValueRef ci64(Cg *cg, long v) { return LLVMConstInt(cg->t_i64, (unsigned long long)v, 1); }
static LLVMValueRef ci32(Cg *cg, int v) { return LLVMConstInt(cg->t_i32, (unsigned long long)v, 1); }
static LLVMValueRef cf32(Cg *cg, double v) { return LLVMConstReal(cg->t_f32, v); }
static LLVMValueRef null_f32(Cg *cg) { return LLVMConstPointerNull(cg->t_pf32); }

static LLVMValueRef elem_ptr(Cg *cg, LLVMValueRef base, LLVMValueRef idx)
{
	return LLVMBuildInBoundsGEP2(cg->b, cg->t_f32, base, &idx, 1, "");
}

static LLVMValueRef load_f32(Cg *cg, LLVMValueRef base, LLVMValueRef idx)
{
	return LLVMBuildLoad2(cg->b, cg->t_f32, elem_ptr(cg, base, idx), "");
}

static void store_f32(Cg *cg, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx)
{
	LLVMBuildStore(cg->b, v, elem_ptr(cg, base, idx));
}

static LLVMValueRef fadd(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(cg->b, a, b, ""); }
static LLVMValueRef fsub(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFSub(cg->b, a, b, ""); }
static LLVMValueRef fmul(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(cg->b, a, b, ""); }
static LLVMValueRef fdiv(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFDiv(cg->b, a, b, ""); }

static LLVMValueRef call1(Cg *cg, LLVMValueRef f, LLVMValueRef x)
{
	return LLVMBuildCall2(cg->b, cg->f32_fn_ty, f, &x, 1, "");
}

/* A variable in the current function's entry block; SROA turns it into SSA. */
static LLVMValueRef entry_var(Cg *cg, LLVMTypeRef t, LLVMValueRef init)
{
	LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(cg->fn);
	LLVMBuilderRef tmp = LLVMCreateBuilderInContext(cg->ctx);
	LLVMValueRef first = LLVMGetFirstInstruction(entry);
	if (first)
		LLVMPositionBuilderBefore(tmp, first);
	else
		LLVMPositionBuilderAtEnd(tmp, entry);
	LLVMValueRef var = LLVMBuildAlloca(tmp, t, "");
	LLVMDisposeBuilder(tmp);
	LLVMBuildStore(cg->b, init, var);
	return var;
}

/* Counted loop [lo, hi) in rotated form (guard, body, latch). */
typedef struct Loop {
	LLVMValueRef iv, hi;
	LLVMBasicBlockRef body, exit;
} Loop;

static LLVMValueRef loop_begin(Cg *cg, Loop *lp, LLVMValueRef lo, LLVMValueRef hi)
{
	LLVMBasicBlockRef pre = LLVMGetInsertBlock(cg->b);
	lp->body = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "loop");
	lp->exit = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "done");
	lp->hi = hi;
	LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, lo, hi, ""),
	                lp->body, lp->exit);
	LLVMPositionBuilderAtEnd(cg->b, lp->body);
	lp->iv = LLVMBuildPhi(cg->b, cg->t_i64, "i");
	LLVMAddIncoming(lp->iv, &lo, &pre, 1);
	return lp->iv;
}

static void loop_end(Cg *cg, Loop *lp)
{
	LLVMValueRef next = LLVMBuildNSWAdd(cg->b, lp->iv, ci64(cg, 1), "");
	LLVMBasicBlockRef latch = LLVMGetInsertBlock(cg->b);
	LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, next, lp->hi, ""),
	                lp->body, lp->exit);
	LLVMAddIncoming(lp->iv, &next, &latch, 1);
	LLVMPositionBuilderAtEnd(cg->b, lp->exit);
}

/* ---- functions ---- */

typedef struct Saved { LLVMValueRef fn; LLVMBasicBlockRef bb; } Saved;

static Saved save_pos(Cg *cg)
{
	return (Saved){ cg->fn, LLVMGetInsertBlock(cg->b) };
}

static void restore_pos(Cg *cg, Saved s)
{
	cg->fn = s.fn;
	LLVMPositionBuilderAtEnd(cg->b, s.bb);
}

static void add_fn_attr(Cg *cg, LLVMValueRef f, const char *name)
{
	unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
	LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex,
	                        LLVMCreateEnumAttribute(cg->ctx, kind, 0));
}

/* Starts a function and positions the builder in its entry block. Internal
 * helpers get noalias on every pointer parameter: their callers pass
 * distinct buffers. */
static LLVMValueRef begin_fn(Cg *cg, const char *name, LLVMTypeRef ret,
                             LLVMTypeRef *params, int np, bool internal)
{
	LLVMTypeRef ty = LLVMFunctionType(ret, params, (unsigned)np, 0);
	LLVMValueRef f = LLVMAddFunction(cg->mod, name, ty);
	add_fn_attr(cg, f, "nounwind");
	if (internal) {
		LLVMSetLinkage(f, LLVMInternalLinkage);
		unsigned noalias = LLVMGetEnumAttributeKindForName("noalias", 7);
		unsigned nocapture = LLVMGetEnumAttributeKindForName("nocapture", 9);
		for (int i = 0; i < np; i++) {
			if (LLVMGetTypeKind(params[i]) != LLVMPointerTypeKind)
				continue;
			LLVMAddAttributeAtIndex(f, (unsigned)i + 1,
			                        LLVMCreateEnumAttribute(cg->ctx, noalias, 0));
			LLVMAddAttributeAtIndex(f, (unsigned)i + 1,
			                        LLVMCreateEnumAttribute(cg->ctx, nocapture, 0));
		}
	}
	cg->fn = f;
	LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, f, "entry"));
	return f;
}

static LLVMValueRef call_fn(Cg *cg, LLVMValueRef f, LLVMValueRef *args, int n)
{
	LLVMTypeRef ty = LLVMGlobalGetValueType(f);
	return LLVMBuildCall2(cg->b, ty, f, args, (unsigned)n, "");
}

/* Pointer held in bufs[slot]. */
static LLVMValueRef slot_ptr(Cg *cg, LLVMValueRef bufs, int slot)
{
	LLVMValueRef idx = ci64(cg, slot);
	LLVMValueRef p = LLVMBuildInBoundsGEP2(cg->b, cg->t_pf32, bufs, &idx, 1, "");
	return LLVMBuildLoad2(cg->b, cg->t_pf32, p, "");
}

static LLVMValueRef opt_slot_ptr(Cg *cg, LLVMValueRef bufs, int slot)
{
	return slot >= 0 ? slot_ptr(cg, bufs, slot) : null_f32(cg);
}

/* C[m,n] = alpha op(A) op(B) + beta C through the runtime's shim. */
static void emit_sgemm_scaled(Cg *cg, int ta, int tb, LLVMValueRef m, LLVMValueRef n,
                              LLVMValueRef k, LLVMValueRef alpha, LLVMValueRef a, int lda,
                              LLVMValueRef b, int ldb, double beta, LLVMValueRef c, int ldc)
{
	LLVMValueRef args[] = {
		ci32(cg, ta), ci32(cg, tb), m, n, k, alpha, a, ci32(cg, lda),
		b, ci32(cg, ldb), cf32(cg, beta), c, ci32(cg, ldc),
	};
	LLVMBuildCall2(cg->b, cg->sgemm_ty, cg->sgemm, args, 13, "");
}

static void emit_sgemm(Cg *cg, int ta, int tb, LLVMValueRef m, LLVMValueRef n,
                       LLVMValueRef k, LLVMValueRef a, int lda, LLVMValueRef b,
                       int ldb, double beta, LLVMValueRef c, int ldc)
{
	emit_sgemm_scaled(cg, ta, tb, m, n, k, cf32(cg, 1.0), a, lda, b, ldb, beta, c, ldc);
}

/* ---- vectorisable exp and tanh ----
 * libm's expf/tanhf are opaque calls the loop vectoriser cannot widen, so
 * activations use these: straight-line float code inlined into the loops.
 * exp: x = k ln2 + r with |r| <= ln2/2 (ln2 split in two so k ln2 is
 * exact), e^r by a degree-7 minimax polynomial (the classic Cephes expf
 * coefficients), 2^k built in the exponent bits in two halves so results
 * down to the subnormals are right. Swept over [-120, 120] against double
 * precision: sigmoid within 2.1 ulp, tanh within 1.3 ulp. */

static LLVMValueRef intrinsic(Cg *cg, const char *name)
{
	unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
	return LLVMGetIntrinsicDeclaration(cg->mod, id, &cg->t_f32, 1);
}

static LLVMValueRef call_intrinsic(Cg *cg, const char *name, LLVMValueRef *args, int n)
{
	LLVMValueRef f = intrinsic(cg, name);
	return LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(f), f, args, (unsigned)n, "");
}

static LLVMValueRef fselect(Cg *cg, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b,
                            LLVMValueRef then, LLVMValueRef otherwise)
{
	return LLVMBuildSelect(cg->b, LLVMBuildFCmp(cg->b, p, a, b, ""), then, otherwise, "");
}

/* Horner: c[0] x^(n-1) + ... + c[n-1] */
static LLVMValueRef horner(Cg *cg, LLVMValueRef x, const double *c, int n)
{
	LLVMValueRef p = cf32(cg, c[0]);
	for (int i = 1; i < n; i++)
		p = fadd(cg, fmul(cg, p, x), cf32(cg, c[i]));
	return p;
}

static LLVMValueRef pow2i(Cg *cg, LLVMValueRef k)
{
	LLVMValueRef bits = LLVMBuildShl(cg->b, LLVMBuildAdd(cg->b, k, ci32(cg, 127), ""),
	                                 ci32(cg, 23), "");
	return LLVMBuildBitCast(cg->b, bits, cg->t_f32, "");
}

static LLVMValueRef build_vexp(Cg *cg)
{
	static const double poly[] = {
		1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
		4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1,
	};
	const double hi = 88.72283905206835, lo = -103.97207708;
	LLVMTypeRef ps[] = { cg->t_f32 };
	LLVMValueRef f = begin_fn(cg, "wtn.exp", cg->t_f32, ps, 1, true);
	add_fn_attr(cg, f, "alwaysinline");
	LLVMValueRef x = LLVMGetParam(f, 0);
	/* clamp (NaN to 0) so the integer part stays small; fixed up below */
	LLVMValueRef xc = fselect(cg, LLVMRealOGT, x, cf32(cg, hi), cf32(cg, hi), x);
	xc = fselect(cg, LLVMRealOLT, xc, cf32(cg, lo), cf32(cg, lo), xc);
	xc = fselect(cg, LLVMRealUNO, xc, xc, cf32(cg, 0), xc);
	LLVMValueRef t = fadd(cg, fmul(cg, xc, cf32(cg, 1.44269504088896341)), cf32(cg, 0.5));
	LLVMValueRef fk = call_intrinsic(cg, "llvm.floor", &t, 1);
	LLVMValueRef r = fsub(cg, xc, fmul(cg, fk, cf32(cg, 0.693359375)));
	r = fsub(cg, r, fmul(cg, fk, cf32(cg, -2.12194440e-4)));
	LLVMValueRef z = fmul(cg, r, r);
	LLVMValueRef er = fadd(cg, fadd(cg, fmul(cg, horner(cg, r, poly, 6), z), r), cf32(cg, 1));
	LLVMValueRef k = LLVMBuildFPToSI(cg->b, fk, cg->t_i32, "");
	LLVMValueRef k1 = LLVMBuildAShr(cg->b, k, ci32(cg, 1), "");
	LLVMValueRef k2 = LLVMBuildSub(cg->b, k, k1, "");
	LLVMValueRef y = fmul(cg, fmul(cg, er, pow2i(cg, k1)), pow2i(cg, k2));
	y = fselect(cg, LLVMRealOGT, x, cf32(cg, hi), LLVMConstReal(cg->t_f32, __builtin_inff()), y);
	y = fselect(cg, LLVMRealOLT, x, cf32(cg, lo), cf32(cg, 0), y);
	y = fselect(cg, LLVMRealUNO, x, x, x, y);
	LLVMBuildRet(cg->b, y);
	return f;
}

/* tanh: an odd polynomial near 0 (Cephes tanhf coefficients; there
 * 1 - 2/(e^2a + 1) would cancel),
 * that formula elsewhere; it reaches exactly 1 once e^2a overflows. */
static LLVMValueRef build_vtanh(Cg *cg)
{
	static const double poly[] = {
		-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2,
		1.33314422036e-1, -3.33332819422e-1,
	};
	LLVMTypeRef ps[] = { cg->t_f32 };
	LLVMValueRef f = begin_fn(cg, "wtn.tanh", cg->t_f32, ps, 1, true);
	add_fn_attr(cg, f, "alwaysinline");
	LLVMValueRef x = LLVMGetParam(f, 0);
	LLVMValueRef a = call_intrinsic(cg, "llvm.fabs", &x, 1);
	LLVMValueRef z = fmul(cg, x, x);
	LLVMValueRef small = fadd(cg, fmul(cg, fmul(cg, horner(cg, z, poly, 5), z), x), x);
	LLVMValueRef e = call1(cg, cg->f_vexp, fadd(cg, a, a));
	LLVMValueRef big = fsub(cg, cf32(cg, 1), fdiv(cg, cf32(cg, 2), fadd(cg, e, cf32(cg, 1))));
	/* the sign from x: keeps tanh(-0) = -0, which the polynomial loses */
	LLVMValueRef sargs[] = { fselect(cg, LLVMRealOLT, a, cf32(cg, 0.625), small, big), x };
	LLVMBuildRet(cg->b, call_intrinsic(cg, "llvm.copysign", sargs, 2));
	return f;
}

/* ---- activations ---- */

static LLVMValueRef emit_act(Cg *cg, Act act, LLVMValueRef v)
{
	LLVMValueRef zero = cf32(cg, 0), one = cf32(cg, 1);
	switch (act) {
	case ACT_IDENTITY:
		return v;
	case ACT_RELU:  /* olt keeps NaN, like torch.relu */
		return LLVMBuildSelect(cg->b, LLVMBuildFCmp(cg->b, LLVMRealOLT, v, zero, ""),
		                       zero, v, "");
	case ACT_TANH:
		return call1(cg, cg->f_vtanh, v);
	case ACT_SIGMOID:
		return fdiv(cg, one, fadd(cg, one, call1(cg, cg->f_vexp, LLVMBuildFNeg(cg->b, v, ""))));
	}
	return v;
}

/* d * f'(a), with f' written in terms of y = f(a) as torch's backward does. */
static LLVMValueRef emit_deriv(Cg *cg, Act act, LLVMValueRef d, LLVMValueRef y)
{
	LLVMValueRef zero = cf32(cg, 0), one = cf32(cg, 1);
	switch (act) {
	case ACT_IDENTITY:
		return d;
	case ACT_RELU:
		return LLVMBuildSelect(cg->b, LLVMBuildFCmp(cg->b, LLVMRealOLE, y, zero, ""),
		                       zero, d, "");
	case ACT_TANH:
		return fmul(cg, d, fsub(cg, one, fmul(cg, y, y)));
	case ACT_SIGMOID:
		return fmul(cg, d, fmul(cg, fsub(cg, one, y), y));
	}
	return d;
}

/* ---- forward ---- */

/* y[i,j] = f(y[i,j] + b[j]) over the batch: one fused pass after the GEMM. */
static LLVMValueRef build_bias_act(Cg *cg, const IRLayer *l, int li)
{
	char name[64];
	snprintf(name, sizeof name, "fwd_bias_act.%d", li);
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_i32 };
	LLVMValueRef f = begin_fn(cg, name, cg->t_void, ps, 3, true);
	LLVMValueRef y = LLVMGetParam(f, 0), b = LLVMGetParam(f, 1);
	LLVMValueRef n = LLVMBuildSExt(cg->b, LLVMGetParam(f, 2), cg->t_i64, "");
	Loop rows, cols;
	LLVMValueRef i = loop_begin(cg, &rows, ci64(cg, 0), n);
	LLVMValueRef row = elem_ptr(cg, y, LLVMBuildNSWMul(cg->b, i, ci64(cg, l->out), ""));
	LLVMValueRef j = loop_begin(cg, &cols, ci64(cg, 0), ci64(cg, l->out));
	LLVMValueRef v = load_f32(cg, row, j);
	if (l->bias)
		v = fadd(cg, v, load_f32(cg, b, j));
	store_f32(cg, emit_act(cg, l->act, v), row, j);
	loop_end(cg, &cols);
	loop_end(cg, &rows);
	LLVMBuildRetVoid(cg->b);
	return f;
}

static LLVMValueRef layer_input_ptr(Cg *cg, LLVMValueRef bufs, const IRLayer *l)
{
	const IRNetwork *net = cg->net;
	int slot = l->input < 0 ? net->x_slot : net->layers[l->input].y;
	return slot_ptr(cg, bufs, slot);
}

static void build_forward(Cg *cg)
{
	const IRNetwork *net = cg->net;
	LLVMTypeRef ps[] = { cg->t_ppf32, cg->t_i32 };
	LLVMValueRef f = begin_fn(cg, "wtn_forward", cg->t_void, ps, 2, false);
	LLVMValueRef bufs = LLVMGetParam(f, 0), n = LLVMGetParam(f, 1);
	for (int li = 0; li < net->nlayers; li++) {
		const IRLayer *l = &net->layers[li];
		LLVMValueRef x = layer_input_ptr(cg, bufs, l);
		LLVMValueRef w = slot_ptr(cg, bufs, l->W), y = slot_ptr(cg, bufs, l->y);
		emit_sgemm(cg, 0, 1, n, ci32(cg, l->out), ci32(cg, l->in), x, l->in,
		           w, l->in, 0.0, y, l->out);
		if (!l->bias && l->act == ACT_IDENTITY)
			continue;
		LLVMValueRef b = opt_slot_ptr(cg, bufs, l->b);
		Saved s = save_pos(cg);
		LLVMValueRef helper = build_bias_act(cg, l, li);
		restore_pos(cg, s);
		LLVMValueRef args[] = { y, b, n };
		call_fn(cg, helper, args, 3);
	}
	LLVMBuildRetVoid(cg->b);
}

/* ---- loss ---- */

/* One row of softmax cross-entropy: returns the row's loss, writes
 * d = (softmax - onehot) * scale * f'(y). The exponentials wait in d. */
static LLVMValueRef emit_ce_row(Cg *cg, Act act, int k, LLVMValueRef yr,
                                LLVMValueRef dr, LLVMValueRef lab,
                                LLVMValueRef scale)
{
	LLVMValueRef mx = entry_var(cg, cg->t_f32, load_f32(cg, yr, ci64(cg, 0)));
	Loop lp;
	LLVMValueRef j = loop_begin(cg, &lp, ci64(cg, 1), ci64(cg, k));
	LLVMValueRef v = load_f32(cg, yr, j), m = LLVMBuildLoad2(cg->b, cg->t_f32, mx, "");
	LLVMBuildStore(cg->b, LLVMBuildSelect(cg->b, LLVMBuildFCmp(cg->b, LLVMRealOGT, v, m, ""),
	                                      v, m, ""), mx);
	loop_end(cg, &lp);
	LLVMValueRef mxv = LLVMBuildLoad2(cg->b, cg->t_f32, mx, "max");

	LLVMValueRef sum = entry_var(cg, cg->t_f32, cf32(cg, 0));
	j = loop_begin(cg, &lp, ci64(cg, 0), ci64(cg, k));
	LLVMValueRef e = call1(cg, cg->f_expf, fsub(cg, load_f32(cg, yr, j), mxv));
	store_f32(cg, e, dr, j);
	LLVMBuildStore(cg->b, fadd(cg, LLVMBuildLoad2(cg->b, cg->t_f32, sum, ""), e), sum);
	loop_end(cg, &lp);
	LLVMValueRef s = LLVMBuildLoad2(cg->b, cg->t_f32, sum, "sum");

	LLVMValueRef row_loss = fsub(cg, call1(cg, cg->f_logf, s),
	                             fsub(cg, load_f32(cg, yr, lab), mxv));
	j = loop_begin(cg, &lp, ci64(cg, 0), ci64(cg, k));
	LLVMValueRef p = fdiv(cg, load_f32(cg, dr, j), s);
	LLVMValueRef hot = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, j, lab, ""),
	                                   cf32(cg, 1), cf32(cg, 0), "");
	LLVMValueRef g = fmul(cg, fsub(cg, p, hot), scale);
	store_f32(cg, emit_deriv(cg, act, g, load_f32(cg, yr, j)), dr, j);
	loop_end(cg, &lp);
	return row_loss;
}

/* One row of mean squared error against one-hot targets: returns the row's
 * sum of squares, writes d = scale * (y - t) * f'(y). */
static LLVMValueRef emit_mse_row(Cg *cg, Act act, int k, LLVMValueRef yr,
                                 LLVMValueRef dr, LLVMValueRef lab,
                                 LLVMValueRef scale)
{
	LLVMValueRef sq = entry_var(cg, cg->t_f64, LLVMConstReal(cg->t_f64, 0));
	Loop lp;
	LLVMValueRef j = loop_begin(cg, &lp, ci64(cg, 0), ci64(cg, k));
	LLVMValueRef y = load_f32(cg, yr, j);
	LLVMValueRef t = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, j, lab, ""),
	                                 cf32(cg, 1), cf32(cg, 0), "");
	LLVMValueRef diff = fsub(cg, y, t);
	LLVMValueRef diff2 = fmul(cg, diff, diff);
	LLVMBuildStore(cg->b, LLVMBuildFAdd(cg->b, LLVMBuildLoad2(cg->b, cg->t_f64, sq, ""),
	                                    LLVMBuildFPExt(cg->b, diff2, cg->t_f64, ""), ""), sq);
	store_f32(cg, emit_deriv(cg, act, fmul(cg, scale, diff), y), dr, j);
	loop_end(cg, &lp);
	return LLVMBuildLoad2(cg->b, cg->t_f64, sq, "");
}

/* Rows whose label is outside [0,k) get no loss and no error. */
static LLVMValueRef build_loss_impl(Cg *cg)
{
	const IRNetwork *net = cg->net;
	const IRLayer *out = &net->layers[net->nlayers - 1];
	int k = out->out;
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_pi32, cg->t_i32 };
	LLVMValueRef f = begin_fn(cg, "loss_impl", cg->t_f32, ps, 4, true);
	LLVMValueRef y = LLVMGetParam(f, 0), d = LLVMGetParam(f, 1), labels = LLVMGetParam(f, 2);
	LLVMValueRef n32 = LLVMGetParam(f, 3);
	LLVMValueRef n = LLVMBuildSExt(cg->b, n32, cg->t_i64, "");
	LLVMValueRef nd = LLVMBuildSIToFP(cg->b, n32, cg->t_f64, "");
	bool mse = net->loss == LOSS_MSE;
	/* torch: CE's error is (p - onehot) * (1/n); MSE's is (2/numel) (y - t) */
	LLVMValueRef count = mse ? LLVMBuildFMul(cg->b, nd, LLVMConstReal(cg->t_f64, k), "") : nd;
	LLVMValueRef scale_d = LLVMBuildFDiv(cg->b, LLVMConstReal(cg->t_f64, mse ? 2 : 1), count, "");
	LLVMValueRef scale = LLVMBuildFPTrunc(cg->b, scale_d, cg->t_f32, "");
	LLVMValueRef total = entry_var(cg, cg->t_f64, LLVMConstReal(cg->t_f64, 0));

	Loop rows;
	LLVMValueRef i = loop_begin(cg, &rows, ci64(cg, 0), n);
	LLVMValueRef off = LLVMBuildNSWMul(cg->b, i, ci64(cg, k), "");
	LLVMValueRef yr = elem_ptr(cg, y, off), dr = elem_ptr(cg, d, off);
	LLVMValueRef lab32 = LLVMBuildLoad2(cg->b, cg->t_i32,
	                                    LLVMBuildInBoundsGEP2(cg->b, cg->t_i32, labels, &i, 1, ""), "");
	LLVMValueRef valid = LLVMBuildICmp(cg->b, LLVMIntULT, lab32, ci32(cg, k), "");
	LLVMValueRef lab = LLVMBuildZExt(cg->b, LLVMBuildSelect(cg->b, valid, lab32, ci32(cg, 0), ""),
	                                 cg->t_i64, "");
	LLVMValueRef row_scale = LLVMBuildSelect(cg->b, valid, scale, cf32(cg, 0), "");
	LLVMValueRef row_loss = mse
		? emit_mse_row(cg, out->act, k, yr, dr, lab, row_scale)
		: LLVMBuildFPExt(cg->b, emit_ce_row(cg, out->act, k, yr, dr, lab, row_scale),
		                 cg->t_f64, "");
	row_loss = LLVMBuildSelect(cg->b, valid, row_loss, LLVMConstReal(cg->t_f64, 0), "");
	LLVMBuildStore(cg->b, LLVMBuildFAdd(cg->b, LLVMBuildLoad2(cg->b, cg->t_f64, total, ""),
	                                    row_loss, ""), total);
	loop_end(cg, &rows);

	LLVMValueRef mean = LLVMBuildFDiv(cg->b, LLVMBuildLoad2(cg->b, cg->t_f64, total, ""), count, "");
	LLVMValueRef empty = LLVMBuildICmp(cg->b, LLVMIntSLE, n32, ci32(cg, 0), "");
	mean = LLVMBuildSelect(cg->b, empty, LLVMConstReal(cg->t_f64, 0), mean, "");
	LLVMBuildRet(cg->b, LLVMBuildFPTrunc(cg->b, mean, cg->t_f32, ""));
	return f;
}

static void build_loss(Cg *cg)
{
	const IRNetwork *net = cg->net;
	const IRLayer *out = &net->layers[net->nlayers - 1];
	LLVMValueRef impl = build_loss_impl(cg);
	LLVMTypeRef ps[] = { cg->t_ppf32, cg->t_pi32, cg->t_i32 };
	LLVMValueRef f = begin_fn(cg, "wtn_loss", cg->t_f32, ps, 3, false);
	LLVMValueRef bufs = LLVMGetParam(f, 0);
	LLVMValueRef args[] = { slot_ptr(cg, bufs, out->y), slot_ptr(cg, bufs, out->d),
	                        LLVMGetParam(f, 1), LLVMGetParam(f, 2) };
	LLVMBuildRet(cg->b, call_fn(cg, impl, args, 4));
}

/* ---- backward ---- */

/* The layer's error is complete: d *= f'(y) (unless the loss did it) and
 * gb[j] = sum_i d[i,j], in one pass over d. A layer nothing sent an error
 * to (a dead end) gets d = 0. */
static LLVMValueRef build_finish_error(Cg *cg, const IRLayer *l, int li,
                                       bool apply_deriv, bool zero, const char *prefix)
{
	char name[64];
	snprintf(name, sizeof name, "%s.%d", prefix, li);
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_pf32, cg->t_i32 };
	LLVMValueRef f = begin_fn(cg, name, cg->t_void, ps, 4, true);
	LLVMValueRef d = LLVMGetParam(f, 0), y = LLVMGetParam(f, 1), gb = LLVMGetParam(f, 2);
	LLVMValueRef n = LLVMBuildSExt(cg->b, LLVMGetParam(f, 3), cg->t_i64, "");
	LLVMValueRef width = ci64(cg, l->out);
	Loop rows, cols;
	LLVMValueRef j;
	if (l->bias) {
		j = loop_begin(cg, &cols, ci64(cg, 0), width);
		store_f32(cg, cf32(cg, 0), gb, j);
		loop_end(cg, &cols);
	}
	LLVMValueRef i = loop_begin(cg, &rows, ci64(cg, 0), n);
	LLVMValueRef off = LLVMBuildNSWMul(cg->b, i, width, "");
	LLVMValueRef dr = elem_ptr(cg, d, off), yr = elem_ptr(cg, y, off);
	j = loop_begin(cg, &cols, ci64(cg, 0), width);
	LLVMValueRef v;
	if (zero) {
		v = cf32(cg, 0);
		store_f32(cg, v, dr, j);
	} else {
		v = load_f32(cg, dr, j);
		if (apply_deriv) {
			v = emit_deriv(cg, l->act, v, load_f32(cg, yr, j));
			store_f32(cg, v, dr, j);
		}
	}
	if (l->bias)
		store_f32(cg, fadd(cg, load_f32(cg, gb, j), v), gb, j);
	loop_end(cg, &cols);
	loop_end(cg, &rows);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* The matrix that carries layer l's error to its input layer. */
static int carry_matrix(const IRLayer *l, bool all_bp)
{
	if (!all_bp && l->rule.def->carry == FB_CARRY_B && l->B >= 0)
		return l->B;
	return l->W;
}

/* Does layer l take its error straight from the output error (dfa)? */
static bool takes_direct(const IRLayer *l, bool all_bp)
{
	return !all_bp && l->rule.def->carry == FB_CARRY_D && l->D >= 0;
}

/* wtn_backward (all_bp false): errors as each layer's rule says.
 * wtn_backward_bp (all_bp true): every layer carries through W and dfa
 * layers take theirs from above like any other, as backprop would. */
static void build_backward(Cg *cg, const char *fn_name, bool all_bp)
{
	const IRNetwork *net = cg->net;
	int last = net->nlayers - 1;
	const IRLayer *out = &net->layers[last];
	bool *received = calloc((size_t)net->nlayers, sizeof *received);
	if (!received) { perror("wtnc"); exit(1); }
	LLVMTypeRef ps[] = { cg->t_ppf32, cg->t_i32 };
	LLVMValueRef f = begin_fn(cg, fn_name, cg->t_void, ps, 2, false);
	LLVMValueRef bufs = LLVMGetParam(f, 0), n = LLVMGetParam(f, 1);
	LLVMValueRef d_out = slot_ptr(cg, bufs, out->d);

	for (int li = last; li >= 0; li--) {
		const IRLayer *l = &net->layers[li];
		LLVMValueRef d = li == last ? d_out : slot_ptr(cg, bufs, l->d);
		LLVMValueRef y = slot_ptr(cg, bufs, l->y);
		LLVMValueRef gb = opt_slot_ptr(cg, bufs, l->gb);
		bool direct = li != last && takes_direct(l, all_bp);
		if (direct) {  /* dfa: straight from the output error */
			emit_sgemm(cg, 0, 0, n, ci32(cg, l->out), ci32(cg, out->out), d_out,
			           out->out, slot_ptr(cg, bufs, l->D), l->out, 0.0, d, l->out);
			received[li] = true;
		}
		bool zero = li != last && !received[li];
		bool apply_deriv = li != last && l->act != ACT_IDENTITY;
		if (zero || apply_deriv || l->bias) {
			Saved s = save_pos(cg);
			LLVMValueRef helper = build_finish_error(cg, l, li, apply_deriv, zero,
			                                         all_bp ? "bwd_bp_finish" : "bwd_finish");
			restore_pos(cg, s);
			LLVMValueRef args[] = { d, y, gb, n };
			call_fn(cg, helper, args, 4);
		}
		LLVMValueRef x = layer_input_ptr(cg, bufs, l);
		emit_sgemm(cg, 1, 0, ci32(cg, l->out), ci32(cg, l->in), n, d, l->out,
		           x, l->in, 0.0, slot_ptr(cg, bufs, l->gW), l->in);
		if (l->input < 0)
			continue;  /* the network input takes no error */
		const IRLayer *p = &net->layers[l->input];
		if (takes_direct(p, all_bp))
			continue;  /* p takes its error from the output directly */
		emit_sgemm(cg, 0, 0, n, ci32(cg, l->in), ci32(cg, l->out), d, l->out,
		           slot_ptr(cg, bufs, carry_matrix(l, all_bp)), l->in,
		           received[l->input] ? 1.0 : 0.0, slot_ptr(cg, bufs, p->d), l->in);
		received[l->input] = true;
	}
	LLVMBuildRetVoid(cg->b);
	free(received);
}

/* ---- update ---- */

typedef struct Hyper {
	LLVMValueRef lr, mom, wd, b1, one_b1, b2, one_b2, eps, step_size, bc2_sqrt, seed;
} Hyper;

static LLVMValueRef load_hyper(Cg *cg, LLVMValueRef hyper, int idx)
{
	return load_f32(cg, hyper, ci64(cg, idx));
}

static Hyper emit_load_hyper(Cg *cg, LLVMValueRef hyper)
{
	Hyper h;
	LLVMValueRef one = cf32(cg, 1);
	h.lr = load_hyper(cg, hyper, WTN_H_LR);
	h.mom = load_hyper(cg, hyper, WTN_H_MOMENTUM);
	h.wd = load_hyper(cg, hyper, WTN_H_WEIGHT_DECAY);
	h.b1 = load_hyper(cg, hyper, WTN_H_BETA1);
	h.b2 = load_hyper(cg, hyper, WTN_H_BETA2);
	h.eps = load_hyper(cg, hyper, WTN_H_EPS);
	h.one_b1 = fsub(cg, one, h.b1);
	h.one_b2 = fsub(cg, one, h.b2);
	h.step_size = fdiv(cg, h.lr, load_hyper(cg, hyper, WTN_H_BC1));
	h.bc2_sqrt = call1(cg, cg->f_sqrt, load_hyper(cg, hyper, WTN_H_BC2));
	h.seed = load_hyper(cg, hyper, WTN_H_SEED);
	return h;
}

/* One element of torch.optim.SGD (dampening 0) or torch.optim.Adam with L2
 * weight decay wd: p[i] from the raw gradient g, state m[i], v[i].
 * Returns the new p[i]. */
static LLVMValueRef emit_opt_elem(Cg *cg, const Hyper *h, LLVMValueRef wd,
                                  LLVMValueRef g_raw, LLVMValueRef p, LLVMValueRef m,
                                  LLVMValueRef v, LLVMValueRef i)
{
	const TrainCfg *t = &cg->net->train;
	LLVMValueRef w = load_f32(cg, p, i);
	LLVMValueRef g = fadd(cg, g_raw, fmul(cg, wd, w));
	LLVMValueRef step, w1;
	if (t->opt == OPT_ADAM) {
		LLVMValueRef m1 = fadd(cg, fmul(cg, h->b1, load_f32(cg, m, i)), fmul(cg, h->one_b1, g));
		LLVMValueRef v1 = fadd(cg, fmul(cg, h->b2, load_f32(cg, v, i)),
		                       fmul(cg, h->one_b2, fmul(cg, g, g)));
		store_f32(cg, m1, m, i);
		store_f32(cg, v1, v, i);
		LLVMValueRef denom = fadd(cg, fdiv(cg, call1(cg, cg->f_sqrt, v1), h->bc2_sqrt), h->eps);
		w1 = fsub(cg, w, fmul(cg, h->step_size, fdiv(cg, m1, denom)));
		store_f32(cg, w1, p, i);
		return w1;
	}
	if (LLVMIsNull(m)) {
		step = g;
	} else {
		LLVMValueRef m1 = fadd(cg, fmul(cg, h->mom, load_f32(cg, m, i)), g);
		store_f32(cg, m1, m, i);
		step = t->nesterov ? fadd(cg, g, fmul(cg, h->mom, m1)) : m1;
	}
	w1 = fsub(cg, w, fmul(cg, h->lr, step));
	store_f32(cg, w1, p, i);
	return w1;
}

/* How B follows W inside W's update loop, from the layer's rule. */
typedef struct FbUpdate {
	FbChange change;    /* FB_CHANGE_NONE: B is not touched by this loop */
	/* Constants as num / sqrt(root), so the square root is LLVM's (folded
	 * in double precision) and the compiler needs no libm. */
	double scale_num, scale_root;  /* usf: B = sign(W) * scale */
	double std_num, std_root;      /* brsf: std of the magnitudes, W's init std */
	int layer;          /* brsf: mixed into the seed, so layers draw apart */
	bool own_decay;     /* kp(decay >= 0): W and B use `decay`, not the optimiser's */
	double decay;
} FbUpdate;

/* num / sqrt(root) as a float, computed in double. */
static LLVMValueRef const_over_sqrt(Cg *cg, double num, double root)
{
	LLVMValueRef f = LLVMGetIntrinsicDeclaration(cg->mod, LLVMLookupIntrinsicID("llvm.sqrt", 9),
	                                             &cg->t_f64, 1);
	LLVMValueRef r = LLVMConstReal(cg->t_f64, root);
	LLVMValueRef sq = LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(f), f, &r, 1, "");
	LLVMValueRef q = LLVMBuildFDiv(cg->b, LLVMConstReal(cg->t_f64, num), sq, "");
	return LLVMBuildFPTrunc(cg->b, q, cg->t_f32, "");
}

/* sign(w) as a float: -1, 0 or 1. */
static LLVMValueRef emit_sign(Cg *cg, LLVMValueRef w)
{
	LLVMValueRef neg = fselect(cg, LLVMRealOLT, w, cf32(cg, 0), cf32(cg, -1), cf32(cg, 0));
	return fselect(cg, LLVMRealOGT, w, cf32(cg, 0), cf32(cg, 1), neg);
}

/* A 32-bit finaliser (the multiply-xorshift avalanche of MurmurHash3):
 * integer ops only, so the loop vectoriser can widen it. */
static LLVMValueRef emit_mix32(Cg *cg, LLVMValueRef x)
{
	x = LLVMBuildXor(cg->b, x, LLVMBuildLShr(cg->b, x, ci32(cg, 16), ""), "");
	x = LLVMBuildMul(cg->b, x, ci32(cg, (int)0x85ebca6bu), "");
	x = LLVMBuildXor(cg->b, x, LLVMBuildLShr(cg->b, x, ci32(cg, 13), ""), "");
	x = LLVMBuildMul(cg->b, x, ci32(cg, (int)0xc2b2ae35u), "");
	return LLVMBuildXor(cg->b, x, LLVMBuildLShr(cg->b, x, ci32(cg, 16), ""), "");
}

/* brsf's |m| for element i: counter-based, a pure function of (seed key,
 * i), so no state and no pass of its own. m is approximately normal with
 * standard deviation std: the sum of four 16-bit uniforms (two hashes),
 * centred and scaled to unit variance (a uniform's variance is 1/12). The
 * integer sum is exact, so one conversion to float serves all four. The
 * centred sum c is an integer; |m| is taken as (2|c| + 1) half-units so it
 * is never 0 (B keeps W's sign) at a bias of half a unit, 1e-5 std. */
static LLVMValueRef emit_redraw_magnitude(Cg *cg, LLVMValueRef key, LLVMValueRef i,
                                          LLVMValueRef unit)
{
	LLVMValueRef x = LLVMBuildTrunc(cg->b, i, cg->t_i32, "");
	LLVMValueRef h0 = emit_mix32(cg, LLVMBuildXor(cg->b, x, key, ""));
	LLVMValueRef h1 = emit_mix32(cg, LLVMBuildAdd(cg->b, h0, ci32(cg, (int)0x9e3779b9u), ""));
	LLVMValueRef lo16 = ci32(cg, 0xffff), sh = ci32(cg, 16);
	LLVMValueRef sum = LLVMBuildAdd(cg->b,
		LLVMBuildAdd(cg->b, LLVMBuildAnd(cg->b, h0, lo16, ""), LLVMBuildLShr(cg->b, h0, sh, ""), ""),
		LLVMBuildAdd(cg->b, LLVMBuildAnd(cg->b, h1, lo16, ""), LLVMBuildLShr(cg->b, h1, sh, ""), ""), "");
	/* uniform j = (a_j + 1/2) / 2^16, so sum - 2 = (A + 2 - 2^17) / 2^16 */
	LLVMValueRef c = LLVMBuildSub(cg->b, sum, ci32(cg, 131070), "");
	LLVMValueRef neg = LLVMBuildICmp(cg->b, LLVMIntSLT, c, ci32(cg, 0), "");
	LLVMValueRef abs_c = LLVMBuildSelect(cg->b, neg, LLVMBuildNeg(cg->b, c, ""), c, "");
	LLVMValueRef halves = LLVMBuildOr(cg->b, LLVMBuildShl(cg->b, abs_c, ci32(cg, 1), ""),
	                                  ci32(cg, 1), "");
	return fmul(cg, LLVMBuildSIToFP(cg->b, halves, cg->t_f32, ""), unit);
}

/* B[i] after W[i] became w_new, for the rules whose B is a function of W. */
static void emit_feedback_follow(Cg *cg, const FbUpdate *fb, const Hyper *h,
                                 LLVMValueRef wd, LLVMValueRef g, LLVMValueRef w_new,
                                 LLVMValueRef B, LLVMValueRef mB, LLVMValueRef vB,
                                 LLVMValueRef M, LLVMValueRef key, LLVMValueRef unit,
                                 LLVMValueRef i)
{
	LLVMValueRef mag;
	switch (fb->change) {
	case FB_CHANGE_AS_W:            /* kp: exactly W's gradient and step */
		emit_opt_elem(cg, h, wd, g, B, mB, vB, i);
		return;
	case FB_CHANGE_SIGN_W:          /* usf */
		mag = const_over_sqrt(cg, fb->scale_num, fb->scale_root);
		break;
	case FB_CHANGE_RANDMAG_SIGN_W: {  /* frsf: fixed magnitudes */
		LLVMValueRef mi = load_f32(cg, M, i);
		mag = call_intrinsic(cg, "llvm.fabs", &mi, 1);
		break;
	}
	case FB_CHANGE_REDRAW_SIGN_W:   /* brsf: magnitudes redrawn each step */
		mag = emit_redraw_magnitude(cg, key, i, unit);
		break;
	default:                        /* fixed, or changed by the mirror phase */
		return;
	}
	store_f32(cg, fmul(cg, mag, emit_sign(cg, w_new)), B, i);
}

/* Update of one parameter tensor over [lo, hi): the parameter, and, for a
 * layer whose B follows W, B in the same pass. Parameters:
 * (p, g, m, v, B, mB, vB, M, hyper, lo, hi). */
enum { UPD_NPARAMS = 11 };
static LLVMValueRef build_param_update(Cg *cg, const char *name, const FbUpdate *fb,
                                       bool has_m, bool has_v)
{
	LLVMTypeRef ps[UPD_NPARAMS];
	for (int k = 0; k < 9; k++)
		ps[k] = cg->t_pf32;
	ps[9] = ps[10] = cg->t_i64;
	LLVMValueRef f = begin_fn(cg, name, cg->t_void, ps, UPD_NPARAMS, true);
	LLVMValueRef P[UPD_NPARAMS];
	for (int k = 0; k < UPD_NPARAMS; k++)
		P[k] = LLVMGetParam(f, (unsigned)k);
	/* absent state is a compile-time fact: pass a constant null down */
	LLVMValueRef m = has_m ? P[2] : null_f32(cg), v = has_v ? P[3] : null_f32(cg);
	LLVMValueRef mB = has_m ? P[5] : null_f32(cg), vB = has_v ? P[6] : null_f32(cg);
	Hyper h = emit_load_hyper(cg, P[8]);
	LLVMValueRef wd = fb->own_decay ? cf32(cg, fb->decay) : h.wd;
	LLVMValueRef key = NULL, unit = NULL;
	if (fb->change == FB_CHANGE_REDRAW_SIGN_W) {
		/* the step's seed, as its bits, and the layer, hashed once per call */
		LLVMValueRef bits = LLVMBuildBitCast(cg->b, h.seed, cg->t_i32, "");
		key = emit_mix32(cg, LLVMBuildAdd(cg->b, bits, ci32(cg, (int)(0x9e3779b9u * (unsigned)fb->layer)), ""));
		/* std * sqrt(12 / 4) per unit of the sum of 16-bit uniforms, halved */
		unit = const_over_sqrt(cg, fb->std_num * 1.7320508075688772 / 131072.0, fb->std_root);
	}
	Loop lp;
	LLVMValueRef i = loop_begin(cg, &lp, P[9], P[10]);
	LLVMValueRef g = load_f32(cg, P[1], i);
	LLVMValueRef w_new = emit_opt_elem(cg, &h, wd, g, P[0], m, v, i);
	emit_feedback_follow(cg, fb, &h, wd, g, w_new, P[4], mB, vB, P[7], key, unit, i);
	loop_end(cg, &lp);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* Chunk boundary p of nparts over len elements, a multiple of 16 so threads
 * never share a cache line; the last boundary is len. */
static LLVMValueRef chunk_bound(Cg *cg, long len, LLVMValueRef p, LLVMValueRef np)
{
	LLVMValueRef raw = LLVMBuildSDiv(cg->b, LLVMBuildNSWMul(cg->b, ci64(cg, len), p, ""), np, "");
	LLVMValueRef rounded = LLVMBuildAnd(cg->b, raw, ci64(cg, ~15L), "");
	LLVMValueRef at_end = LLVMBuildICmp(cg->b, LLVMIntSGE, p, np, "");
	return LLVMBuildSelect(cg->b, at_end, ci64(cg, len), rounded, "");
}

/* Slots one tensor update touches; -1 where absent. */
typedef struct UpdSlots { int p, g, m, v, B, mB, vB, M; } UpdSlots;

static void emit_tensor_update(Cg *cg, LLVMValueRef bufs, LLVMValueRef hyper,
                               LLVMValueRef part, LLVMValueRef np, const char *name,
                               long len, const FbUpdate *fb, UpdSlots s)
{
	Saved pos = save_pos(cg);
	LLVMValueRef helper = build_param_update(cg, name, fb, s.m >= 0, s.v >= 0);
	restore_pos(cg, pos);
	LLVMValueRef lo = chunk_bound(cg, len, part, np);
	LLVMValueRef hi = chunk_bound(cg, len, LLVMBuildNSWAdd(cg->b, part, ci64(cg, 1), ""), np);
	LLVMValueRef args[UPD_NPARAMS] = {
		slot_ptr(cg, bufs, s.p), slot_ptr(cg, bufs, s.g), opt_slot_ptr(cg, bufs, s.m),
		opt_slot_ptr(cg, bufs, s.v), opt_slot_ptr(cg, bufs, s.B), opt_slot_ptr(cg, bufs, s.mB),
		opt_slot_ptr(cg, bufs, s.vB), opt_slot_ptr(cg, bufs, s.M), hyper, lo, hi,
	};
	call_fn(cg, helper, args, UPD_NPARAMS);
}

/* A rule argument by name (defaults are filled in by sema). */
static double rule_arg(const IRRule *r, const char *param, double otherwise)
{
	int k = rule_param_index(r->def, param);
	return k >= 0 ? r->args[k] : otherwise;
}

/* The standard deviation of the layer's W at initialisation, as
 * num / sqrt(root). */
static void init_std(const IRLayer *l, double *num, double *root)
{
	*num = 1;
	switch (l->init) {
	case INIT_HE: *root = l->in / 2.0; return;
	case INIT_XAVIER: *root = (l->in + l->out) / 2.0; return;
	case INIT_NORMAL: *num = l->init_arg; *root = 1; return;
	case INIT_UNIFORM: *num = l->init_arg; *root = 3; return;
	}
	*root = 1;
}

/* What W's update loop does to B for layer l. */
static FbUpdate feedback_update(const IRLayer *l, int li)
{
	const IRRule *r = &l->rule;
	FbUpdate fb = { .change = l->B >= 0 ? r->def->change : FB_CHANGE_NONE, .layer = li };
	if (fb.change == FB_CHANGE_MIRROR)
		fb.change = FB_CHANGE_NONE;  /* B moves in wtn_mirror instead */
	double s = rule_arg(r, "scale", 0);  /* usf: 0 means 1/sqrt(fan_in) */
	fb.scale_num = s > 0 ? s : 1;
	fb.scale_root = s > 0 ? 1 : l->in;
	init_std(l, &fb.std_num, &fb.std_root);
	if (fb.change == FB_CHANGE_AS_W) {
		fb.decay = rule_arg(r, "decay", -1);
		fb.own_decay = fb.decay >= 0;
	}
	return fb;
}

static void build_update(Cg *cg)
{
	const IRNetwork *net = cg->net;
	LLVMTypeRef ps[] = { cg->t_ppf32, cg->t_pf32, cg->t_i32, cg->t_i32 };
	LLVMValueRef f = begin_fn(cg, "wtn_update", cg->t_void, ps, 4, false);
	LLVMValueRef bufs = LLVMGetParam(f, 0), hyper = LLVMGetParam(f, 1);
	LLVMValueRef part = LLVMBuildSExt(cg->b, LLVMGetParam(f, 2), cg->t_i64, "");
	LLVMValueRef np = LLVMBuildSExt(cg->b, LLVMGetParam(f, 3), cg->t_i64, "");
	np = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, np, ci64(cg, 1), ""),
	                     ci64(cg, 1), np, "");
	const FbUpdate plain = { .change = FB_CHANGE_NONE, .scale_root = 1, .std_root = 1 };
	for (int li = 0; li < net->nlayers; li++) {
		const IRLayer *l = &net->layers[li];
		FbUpdate fb = feedback_update(l, li);
		char name[64];
		snprintf(name, sizeof name, "upd_weight.%d", li);
		emit_tensor_update(cg, bufs, hyper, part, np, name, (long)l->out * l->in, &fb,
		                   (UpdSlots){ l->W, l->gW, l->mW, l->vW,
		                               fb.change != FB_CHANGE_NONE ? l->B : -1,
		                               l->mB, l->vB, l->M });
		if (l->bias) {
			snprintf(name, sizeof name, "upd_bias.%d", li);
			emit_tensor_update(cg, bufs, hyper, part, np, name, l->out, &plain,
			                   (UpdSlots){ l->b, l->gb, l->mb, l->vb, -1, -1, -1, -1 });
		}
	}
	LLVMBuildRetVoid(cg->b);
}

/* ---- mirror ---- */

/* One mirror step of layer l: noise x [n, in] in its input slot, linear
 * response y = x W^T in its y slot, then in one product
 * B = (1 - decay) B + (rate / n) y^T x. */
static void emit_mirror_step(Cg *cg, LLVMValueRef bufs, LLVMValueRef n, const IRLayer *l)
{
	const IRRule *r = &l->rule;
	double noise = rule_arg(r, "noise", 1), rate = rule_arg(r, "rate", 0);
	double decay = rule_arg(r, "decay", 0);
	LLVMValueRef x = layer_input_ptr(cg, bufs, l), y = slot_ptr(cg, bufs, l->y);
	LLVMValueRef count = LLVMBuildNSWMul(cg->b, LLVMBuildSExt(cg->b, n, cg->t_i64, ""),
	                                     ci64(cg, l->in), "");
	LLVMValueRef nargs[] = { x, count, cf32(cg, noise) };
	LLVMBuildCall2(cg->b, cg->noise_ty, cg->noise, nargs, 3, "");
	emit_sgemm(cg, 0, 1, n, ci32(cg, l->out), ci32(cg, l->in), x, l->in,
	           slot_ptr(cg, bufs, l->W), l->in, 0.0, y, l->out);
	LLVMValueRef alpha = fdiv(cg, cf32(cg, rate), LLVMBuildSIToFP(cg->b, n, cg->t_f32, ""));
	emit_sgemm_scaled(cg, 1, 0, ci32(cg, l->out), ci32(cg, l->in), n, alpha, y, l->out,
	                  x, l->in, 1.0 - decay, slot_ptr(cg, bufs, l->B), l->in);
}

/* wtn_mirror(bufs, layer, n): a switch on the layer index, one case per
 * layer with a mirror phase; other indices do nothing. */
static void build_mirror(Cg *cg)
{
	const IRNetwork *net = cg->net;
	LLVMTypeRef ps[] = { cg->t_ppf32, cg->t_i32, cg->t_i32 };
	LLVMValueRef f = begin_fn(cg, "wtn_mirror", cg->t_void, ps, 3, false);
	LLVMValueRef bufs = LLVMGetParam(f, 0), n = LLVMGetParam(f, 2);
	LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(cg->ctx, f, "done");
	int ncases = 0;
	for (int li = 0; li < net->nlayers; li++)
		ncases += net->layers[li].rule.def->change == FB_CHANGE_MIRROR && net->layers[li].B >= 0;
	/* n <= 0: no noise, so no step (B would only decay) */
	LLVMBasicBlockRef pick = LLVMAppendBasicBlockInContext(cg->ctx, f, "pick");
	LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLE, n, ci32(cg, 0), ""), done, pick);
	LLVMPositionBuilderAtEnd(cg->b, pick);
	LLVMValueRef sw = LLVMBuildSwitch(cg->b, LLVMGetParam(f, 1), done, (unsigned)ncases);
	for (int li = 0; li < net->nlayers; li++) {
		const IRLayer *l = &net->layers[li];
		if (l->rule.def->change != FB_CHANGE_MIRROR || l->B < 0)
			continue;
		LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(cg->ctx, f, "mirror");
		LLVMAddCase(sw, ci32(cg, li), bb);
		LLVMPositionBuilderAtEnd(cg->b, bb);
		emit_mirror_step(cg, bufs, n, l);
		LLVMBuildBr(cg->b, done);
	}
	LLVMPositionBuilderAtEnd(cg->b, done);
	LLVMBuildRetVoid(cg->b);
}

/* ---- module ---- */

static void declare_externals(Cg *cg)
{
	LLVMTypeRef sg[] = { cg->t_i32, cg->t_i32, cg->t_i32, cg->t_i32, cg->t_i32,
	                     cg->t_f32, cg->t_pf32, cg->t_i32, cg->t_pf32, cg->t_i32,
	                     cg->t_f32, cg->t_pf32, cg->t_i32 };
	cg->sgemm_ty = LLVMFunctionType(cg->t_void, sg, 13, 0);
	cg->sgemm = LLVMAddFunction(cg->mod, "wtn_sgemm", cg->sgemm_ty);
	LLVMTypeRef nz[] = { cg->t_pf32, cg->t_i64, cg->t_f32 };
	cg->noise_ty = LLVMFunctionType(cg->t_void, nz, 3, 0);
	cg->noise = LLVMAddFunction(cg->mod, "wtn_noise", cg->noise_ty);
	cg->f32_fn_ty = LLVMFunctionType(cg->t_f32, &cg->t_f32, 1, 0);
	cg->f_expf = LLVMAddFunction(cg->mod, "expf", cg->f32_fn_ty);
	cg->f_logf = LLVMAddFunction(cg->mod, "logf", cg->f32_fn_ty);
	unsigned sqrt_id = LLVMLookupIntrinsicID("llvm.sqrt", 9);
	cg->f_sqrt = LLVMGetIntrinsicDeclaration(cg->mod, sqrt_id, &cg->t_f32, 1);
	cg->f_vexp = build_vexp(cg);
	cg->f_vtanh = build_vtanh(cg);
}

static void emit_spec_global(Cg *cg)
{
	char *spec = ir_spec_string(cg->net);
	LLVMValueRef init = LLVMConstStringInContext(cg->ctx, spec, (unsigned)strlen(spec), 0);
	LLVMValueRef g = LLVMAddGlobal(cg->mod, LLVMTypeOf(init), "wtn_spec");
	LLVMSetInitializer(g, init);
	LLVMSetGlobalConstant(g, 1);
	LLVMSetLinkage(g, LLVMExternalLinkage);
	free(spec);
}

/* The IR must have a layer (sema guarantees it). */
static int check_network(const IRNetwork *net)
{
	if (net->nlayers == 0) {
		fprintf(stderr, "wtnc: internal error: network '%s' has no layers\n", net->name);
		return 1;
	}
	return 0;
}

static void init_types(Cg *cg)
{
	cg->t_void = LLVMVoidTypeInContext(cg->ctx);
	cg->t_f32 = LLVMFloatTypeInContext(cg->ctx);
	cg->t_f64 = LLVMDoubleTypeInContext(cg->ctx);
	cg->t_i1 = LLVMInt1TypeInContext(cg->ctx);
	cg->t_i32 = LLVMInt32TypeInContext(cg->ctx);
	cg->t_i64 = LLVMInt64TypeInContext(cg->ctx);
	cg->t_pf32 = LLVMPointerType(cg->t_f32, 0);
	cg->t_ppf32 = LLVMPointerType(cg->t_pf32, 0);
	cg->t_pi32 = LLVMPointerType(cg->t_i32, 0);
}

static LLVMTargetMachineRef create_target_machine(const CodegenOpts *opts, char **triple_out)
{
	LLVMInitializeNativeTarget();
	LLVMInitializeNativeAsmPrinter();
	char *triple = LLVMGetDefaultTargetTriple();
	char *err = NULL;
	LLVMTargetRef target;
	if (LLVMGetTargetFromTriple(triple, &target, &err)) {
		fprintf(stderr, "wtnc: no LLVM target for %s: %s\n", triple, err);
		LLVMDisposeMessage(err);
		LLVMDisposeMessage(triple);
		return NULL;
	}
	char *cpu = opts && opts->target_cpu ? strdup(opts->target_cpu) : LLVMGetHostCPUName();
	/* An overriding CPU brings its own features. x86-64 still needs 64-bit
	 * mode spelled out, or an unknown CPU name is a fatal LLVM error rather
	 * than a warning and generic code. */
	char *features = !(opts && opts->target_cpu) ? LLVMGetHostCPUFeatures()
	               : strdup(strncmp(triple, "x86_64", 6) == 0 ? "+64bit" : "");
	int lvl = opts ? opts->opt_level : 3;
	LLVMCodeGenOptLevel cg_level = lvl <= 0 ? LLVMCodeGenLevelNone
	                             : lvl == 1 ? LLVMCodeGenLevelLess
	                             : lvl == 2 ? LLVMCodeGenLevelDefault
	                             : LLVMCodeGenLevelAggressive;
	LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, cpu, features,
	                                                  cg_level, LLVMRelocPIC,
	                                                  LLVMCodeModelDefault);
	free(cpu);
	free(features);
	*triple_out = triple;
	return tm;
}

static int optimise(LLVMModuleRef mod, LLVMTargetMachineRef tm, int level)
{
	char pipeline[32];
	if (level < 0) level = 0;
	if (level > 3) level = 3;
	snprintf(pipeline, sizeof pipeline, "default<O%d>", level);
	LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
	LLVMPassBuilderOptionsSetLoopVectorization(po, level >= 2);
	LLVMPassBuilderOptionsSetSLPVectorization(po, level >= 2);
	LLVMPassBuilderOptionsSetLoopInterleaving(po, level >= 2);
	LLVMPassBuilderOptionsSetLoopUnrolling(po, level >= 2);
	LLVMErrorRef e = LLVMRunPasses(mod, pipeline, tm, po);
	LLVMDisposePassBuilderOptions(po);
	if (e) {
		char *msg = LLVMGetErrorMessage(e);
		fprintf(stderr, "wtnc: internal error: LLVM passes failed: %s\n", msg);
		LLVMDisposeErrorMessage(msg);
		return 1;
	}
	return 0;
}

static int write_output(LLVMModuleRef mod, LLVMTargetMachineRef tm,
                        const char *out_path, bool emit_llvm)
{
	char *err = NULL;
	if (emit_llvm) {
		if (strcmp(out_path, "-") == 0) {
			char *text = LLVMPrintModuleToString(mod);
			fputs(text, stdout);
			LLVMDisposeMessage(text);
			return fflush(stdout) != 0;
		}
		if (LLVMPrintModuleToFile(mod, out_path, &err)) {
			fprintf(stderr, "wtnc: cannot write %s: %s\n", out_path, err);
			LLVMDisposeMessage(err);
			return 1;
		}
		return 0;
	}
	if (strcmp(out_path, "-") == 0) {
		fprintf(stderr, "wtnc: will not write an object file to standard output\n");
		return 1;
	}
	if (LLVMTargetMachineEmitToFile(tm, mod, (char *)out_path, LLVMObjectFile, &err)) {
		fprintf(stderr, "wtnc: cannot write %s: %s\n", out_path, err);
		LLVMDisposeMessage(err);
		return 1;
	}
	return 0;
}

int codegen(const IRNetwork *net, const CodegenOpts *opts, const char *out_path,
            bool emit_llvm)
{
	if (check_network(net))
		return 1;
	char *triple = NULL;
	LLVMTargetMachineRef tm = create_target_machine(opts, &triple);
	if (!tm)
		return 1;
	Cg cg = { .net = net };
	cg.ctx = LLVMContextCreate();
	cg.mod = LLVMModuleCreateWithNameInContext(net->name, cg.ctx);
	cg.b = LLVMCreateBuilderInContext(cg.ctx);
	LLVMSetTarget(cg.mod, triple);
	LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
	LLVMSetModuleDataLayout(cg.mod, td);
	init_types(&cg);
	declare_externals(&cg);

	build_forward(&cg);
	build_loss(&cg);
	build_backward(&cg, "wtn_backward", false);
	build_backward(&cg, "wtn_backward_bp", true);
	build_update(&cg);
	build_mirror(&cg);
	emit_spec_global(&cg);

	int rc = 0;
	char *err = NULL;
	if (LLVMVerifyModule(cg.mod, LLVMReturnStatusAction, &err)) {
		fprintf(stderr, "wtnc: internal error: generated module is invalid:\n%s\n", err);
		rc = 1;
	}
	LLVMDisposeMessage(err);
	if (!rc)
		rc = optimise(cg.mod, tm, opts ? opts->opt_level : 3);
	if (!rc)
		rc = write_output(cg.mod, tm, out_path, emit_llvm);

	LLVMDisposeBuilder(cg.b);
	LLVMDisposeModule(cg.mod);
	LLVMDisposeTargetData(td);
	LLVMContextDispose(cg.ctx);
	LLVMDisposeTargetMachine(tm);
	LLVMDisposeMessage(triple);
	return rc;
}
