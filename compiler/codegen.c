/* codegen.c: the LLVM backend. One module per network holding the kernels of
 * runtime/wtn_abi.h. Every shape is a constant; only the batch n is a
 * runtime value. Each layer's elementwise work is its own internal function
 * whose pointer parameters are noalias, so after inlining LLVM still knows
 * the buffers are disjoint and vectorises the fused loops. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/Support.h>
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
	LLVMTypeRef sgemm_ty, f32_fn_ty, noise_ty, range_ty, pfor_ty;
	LLVMValueRef sgemm, noise, pfor, f_expf, f_logf, f_erff, f_sqrt;
	LLVMValueRef allreduce;    /* wtn_allreduce: batchnorm sums over MPI ranks */
	LLVMValueRef profiling, profile_mark;  /* wtn_profiling, wtn_profile_mark */
	LLVMValueRef step_hyper;   /* wtn_step_hyper: the update runs inside wtn_backward */
	LLVMTypeRef profile_mark_ty;
	LLVMValueRef f_vexp, f_vtanh;  /* inlined, vectorisable (below) */
	LLVMValueRef fn;           /* function being built */
	char helper_name[272];      /* name of the helper being built (helper()) */
	const IRNetwork *net;
	struct SlotView *view;     /* the range body being built reads its slots here */
	LLVMValueRef view_fn;      /* the last range body helper() gave, and the */
	int view_slots[16], view_n;  /* slots its context must hold, in order */
} Cg;

/* A range body (a parallel loop's body, whose one pointer is its context)
 * reads its layer's tensors as slot_ptr(bufs, slot). Shared between layers,
 * its context is not the whole bufs but a view: the slots it reads, in the
 * order it first reads them, which the caller fills (emit_parallel). */
typedef struct SlotView { LLVMValueRef bufs; int slots[16]; int n; } SlotView;

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

/* An alloca at the top of the current function's entry block, where a
 * loop does not repeat it and SROA can turn it into SSA. */
static LLVMValueRef entry_alloca(Cg *cg, LLVMTypeRef t, const char *name)
{
	LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(cg->fn);
	LLVMBuilderRef tmp = LLVMCreateBuilderInContext(cg->ctx);
	LLVMValueRef first = LLVMGetFirstInstruction(entry);
	if (first)
		LLVMPositionBuilderBefore(tmp, first);
	else
		LLVMPositionBuilderAtEnd(tmp, entry);
	LLVMValueRef a = LLVMBuildAlloca(tmp, t, name);
	LLVMDisposeBuilder(tmp);
	return a;
}

/* A variable in the current function's entry block, set to init here. */
static LLVMValueRef entry_var(Cg *cg, LLVMTypeRef t, LLVMValueRef init)
{
	LLVMValueRef var = entry_alloca(cg, t, "");
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
	SlotView *v = cg->view;
	if (v && bufs == v->bufs) {   /* a view's own index for slot */
		int k = 0;
		while (k < v->n && v->slots[k] != slot)
			k++;
		if (k == v->n) {
			if (v->n == (int)(sizeof v->slots / sizeof v->slots[0])) {
				fprintf(stderr, "wtnc: internal error: a range body reads too many slots\n");
				exit(1);
			}
			v->slots[v->n++] = slot;
		}
		slot = k;
	}
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
	case ACT_GELU:  /* PyTorch's exact form: x Phi(x) = x (1 + erf(x / sqrt 2)) / 2 */
		return fmul(cg, fmul(cg, cf32(cg, 0.5), v),
		            fadd(cg, one, call1(cg, cg->f_erff, fmul(cg, v, cf32(cg, 0.70710678118654752)))));
	}
	return v;
}

/* d * f'(a), with f' written in terms of y = f(a) as torch's backward does;
 * gelu's in terms of a itself (y is then the input, see bwd_finish). */
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
	case ACT_GELU: {  /* Phi(a) + a phi(a) */
		LLVMValueRef a = y, half = cf32(cg, 0.5);
		LLVMValueRef cdf = fmul(cg, half, fadd(cg, one, call1(cg, cg->f_erff,
		                         fmul(cg, a, cf32(cg, 0.70710678118654752)))));
		LLVMValueRef pdf = fmul(cg, cf32(cg, 0.39894228040143268),
		                        call1(cg, cg->f_expf, fmul(cg, fmul(cg, LLVMBuildFNeg(cg->b, a, ""), a), half)));
		return fmul(cg, d, fadd(cg, cdf, fmul(cg, a, pdf)));
	}
	}
	return d;
}

/* ---- control flow and shapes ---- */

/* if (cond) { ... }: returns the join block for if_end. */
static LLVMBasicBlockRef if_begin(Cg *cg, LLVMValueRef cond)
{
	LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "then");
	LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "join");
	LLVMBuildCondBr(cg->b, cond, then, join);
	LLVMPositionBuilderAtEnd(cg->b, then);
	return join;
}

static void if_end(Cg *cg, LLVMBasicBlockRef join)
{
	LLVMBuildBr(cg->b, join);
	LLVMPositionBuilderAtEnd(cg->b, join);
}

static LLVMValueRef imul(Cg *cg, LLVMValueRef a, long c) { return LLVMBuildNSWMul(cg->b, a, ci64(cg, c), ""); }
static LLVMValueRef iadd(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWAdd(cg->b, a, b, ""); }
static LLVMValueRef imax(Cg *cg, LLVMValueRef a, LLVMValueRef b)
{
	return LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, a, b, ""), a, b, "");
}
static LLVMValueRef imin(Cg *cg, LLVMValueRef a, LLVMValueRef b)
{
	return LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, a, b, ""), a, b, "");
}
static LLVMValueRef n64(Cg *cg, LLVMValueRef n32) { return LLVMBuildSExt(cg->b, n32, cg->t_i64, ""); }
static LLVMValueRef to_i32(Cg *cg, LLVMValueRef v) { return LLVMBuildTrunc(cg->b, v, cg->t_i32, ""); }

/* 0 <= v < hi, as one unsigned compare */
static LLVMValueRef in_range(Cg *cg, LLVMValueRef v, int hi)
{
	return LLVMBuildICmp(cg->b, LLVMIntULT, v, ci64(cg, hi), "");
}

static int in_slot(const IRNetwork *net, int input)
{
	return input < 0 ? net->x_slot : net->layers[input].y;
}

static LLVMValueRef layer_input_ptr(Cg *cg, LLVMValueRef bufs, const IRLayer *l)
{
	return slot_ptr(cg, bufs, in_slot(cg->net, l->input));
}

/* Output pixels (rows of an NHWC activation) per sample. */
static long pixels(Shape s) { return (long)s.h * s.w; }

static bool has_params(const IRLayer *l)
{
	return wtn_op_has(l->kind, WTN_OP_PARAMS);
}

/* A kind's lowering, darknet-style: forward_ and backward_ per kind (the
 * update is one loop for every parameter tensor). backward gets the FIN_
 * bits of the error's finishing pass (below): the derivative of the
 * activation, a zero error, the bias's gradient (when sums_bias). */
typedef struct Bwd Bwd;
typedef struct Lowering {
	void (*forward)(Cg *cg, LLVMValueRef bufs, LLVMValueRef n, const IRLayer *l, int li, bool eval);
	void (*backward)(Cg *cg, Bwd *bw, const IRLayer *l, int li, LLVMValueRef d, int fin);
	bool sums_bias;
} Lowering;
static const Lowering *lowering_of(int kind);

/* for k in [0, n): body(cg, ctx, k). A short loop (n < 16) is written
 * out: the vectoriser would turn it into masked loads and stores, which
 * are slow on AMD's cores. */
typedef void (*EachFn)(Cg *cg, void *ctx, LLVMValueRef k);
static void emit_each(Cg *cg, long n, EachFn body, void *ctx)
{
	if (n < 16) {
		for (long k = 0; k < n; k++)
			body(cg, ctx, ci64(cg, k));
		return;
	}
	Loop lp;
	body(cg, ctx, loop_begin(cg, &lp, ci64(cg, 0), ci64(cg, n)));
	loop_end(cg, &lp);
}

/* dst[0..count) = 0 */
static void emit_zero(Cg *cg, LLVMValueRef dst, LLVMValueRef count)
{
	Loop lp;
	LLVMValueRef i = loop_begin(cg, &lp, ci64(cg, 0), count);
	store_f32(cg, cf32(cg, 0), dst, i);
	loop_end(cg, &lp);
}

/* Helpers whose bodies read the layer's slots from bufs (range bodies:
 * their one argument is bufs) are the layer's own; every other helper
 * takes its tensors as arguments, so layers of the same signature share it. */
static bool helper_reads_slots(const char *what)
{
	static const char *const own[] = { "conv_fwd", "conv_bwd", "pool_body", "dc_fwd_body",
	                                   "dc_bwd_body", "eltwise_body", "conv_mirror_body",
	                                   "dc_mirror_body", "tc_fwd", "tc_bwd", "reshape_body",
	                                   "tcf_bwd", "tc_mirror_body",
	                                   "tcf_mirror_body" };
	for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
		if (!strcmp(what, own[i]))
			return true;
	return false;
}

/* What a shared helper may bake in of its layer: shapes, geometry,
 * activation, bias and the per-kind constants. Two layers with the same
 * signature get the same code, so ResNets' repeated blocks compile once. */
static void helper_signature(char *dst, size_t size, const IRLayer *l)
{
	snprintf(dst, size, "k%d.%dx%dx%d.%dx%dx%d.%d.%d.k%dx%ds%dp%d.a%d.b%d.%a.%a.%a",
	         l->kind, l->in_shape.c, l->in_shape.h, l->in_shape.w, l->out_shape.c,
	         l->out_shape.h, l->out_shape.w, l->in, l->out, l->kh, l->kw, l->stride, l->pad,
	         l->act, l->b >= 0, l->eps, l->momentum, l->p);
}

/* A helper function "what.KEY.variant", built on the side the first time a
 * kernel calls it (the builder names it cg->helper_name); KEY is the
 * layer's signature, or its index for helpers that read its slots. */
typedef LLVMValueRef (*HelperFn)(Cg *cg, const IRLayer *l, int li, int variant);
static LLVMValueRef helper(Cg *cg, HelperFn build, const char *what, const IRLayer *l,
                           int li, int variant)
{
	char key[160], name[256];
	helper_signature(key, sizeof key, l);
	snprintf(name, sizeof name, "%s.%s.%d", what, key, variant);
	LLVMValueRef f = LLVMGetNamedFunction(cg->mod, name);
	if (f && !helper_reads_slots(what))
		return f;
	snprintf(cg->helper_name, sizeof cg->helper_name, "%s", name);
	Saved s = save_pos(cg);
	if (!helper_reads_slots(what)) {
		f = build(cg, l, li, variant);
		restore_pos(cg, s);
		return f;
	}
	/* A range body: built for every layer (IR is cheap) to learn which
	 * slots it reads, kept only for the first layer of its signature. */
	SlotView v = { NULL, {0}, 0 };
	SlotView *outer = cg->view;
	cg->view = &v;
	snprintf(cg->helper_name, sizeof cg->helper_name, "%s.new", name);
	LLVMValueRef made = build(cg, l, li, variant);
	cg->view = outer;
	restore_pos(cg, s);
	if (f)
		LLVMDeleteFunction(made);
	else {
		LLVMSetValueName2(made, name, strlen(name));
		f = made;
	}
	cg->view_fn = f;
	memcpy(cg->view_slots, v.slots, sizeof v.slots);
	cg->view_n = v.n;
	return f;
}

/* ---- forward ---- */

/* y[r, j] = f(y[r, j] + b[j]) over rows r of width `width`: one fused pass
 * after a product (dense: rows = samples; conv: rows = output pixels). */
static LLVMValueRef build_bias_act(Cg *cg, const IRLayer *l, int li, int has_bias)
{
	int width = l->out_shape.c;
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_i64 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 3, true);
	LLVMValueRef y = LLVMGetParam(f, 0), b = LLVMGetParam(f, 1), rows = LLVMGetParam(f, 2);
	Loop lr, lc;
	LLVMValueRef i = loop_begin(cg, &lr, ci64(cg, 0), rows);
	LLVMValueRef row = elem_ptr(cg, y, imul(cg, i, width));
	LLVMValueRef j = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, width));
	LLVMValueRef v = load_f32(cg, row, j);
	if (has_bias)
		v = fadd(cg, v, load_f32(cg, b, j));
	store_f32(cg, emit_act(cg, l->act, v), row, j);
	loop_end(cg, &lc);
	loop_end(cg, &lr);
	LLVMBuildRetVoid(cg->b);
	return f;
}

static void emit_bias_act(Cg *cg, const IRLayer *l, int li, LLVMValueRef y,
                          LLVMValueRef b, LLVMValueRef rows)
{
	bool bias = !LLVMIsNull(b);
	if (!bias && l->act == ACT_IDENTITY)
		return;
	LLVMValueRef args[] = { y, b, rows };
	call_fn(cg, helper(cg, build_bias_act, "bias_act", l, li, bias), args, 3);
}

static void forward_dense(Cg *cg, LLVMValueRef bufs, LLVMValueRef n, const IRLayer *l, int li)
{
	LLVMValueRef x = layer_input_ptr(cg, bufs, l);
	LLVMValueRef w = slot_ptr(cg, bufs, l->W), y = slot_ptr(cg, bufs, l->y);
	emit_sgemm(cg, 0, 1, n, ci32(cg, l->out), ci32(cg, l->in), x, l->in,
	           w, l->in, 0.0, y, l->out);
	emit_bias_act(cg, l, li, y, opt_slot_ptr(cg, bufs, l->b), n64(cg, n));
}

/* ---- conv2d: columns, chunks, permuted weights ---- */

/* Walks the patch of every output pixel of `cnt` samples: calls body for
 * each in-image tap (src offset into the NHWC input, dst offset into the
 * columns, both at channel 0) and, with pad_body, for each tap in the
 * padding. Columns: row per output pixel, (i, j, c) within the row. */
typedef void (*TapFn)(Cg *cg, const IRLayer *l, LLVMValueRef *P, LLVMValueRef src, LLVMValueRef dst);
static void emit_patch_walk(Cg *cg, const IRLayer *l, LLVMValueRef *P, LLVMValueRef cnt,
                            TapFn body, TapFn pad_body)
{
	Shape in = l->in_shape, out = l->out_shape;
	long patch = ir_conv_patch(l);
	Loop ls, lh, lw, li, lj;
	LLVMValueRef s = loop_begin(cg, &ls, ci64(cg, 0), cnt);
	LLVMValueRef oh = loop_begin(cg, &lh, ci64(cg, 0), ci64(cg, out.h));
	LLVMValueRef ow = loop_begin(cg, &lw, ci64(cg, 0), ci64(cg, out.w));
	LLVMValueRef pix = iadd(cg, imul(cg, iadd(cg, imul(cg, s, out.h), oh), out.w), ow);
	LLVMValueRef row = imul(cg, pix, patch);
	LLVMValueRef i = loop_begin(cg, &li, ci64(cg, 0), ci64(cg, l->kh));
	LLVMValueRef h = iadd(cg, imul(cg, oh, l->stride), LLVMBuildSub(cg->b, i, ci64(cg, l->pad), ""));
	LLVMValueRef j = loop_begin(cg, &lj, ci64(cg, 0), ci64(cg, l->kw));
	LLVMValueRef w = iadd(cg, imul(cg, ow, l->stride), LLVMBuildSub(cg->b, j, ci64(cg, l->pad), ""));
	LLVMValueRef dst = iadd(cg, row, imul(cg, iadd(cg, imul(cg, i, l->kw), j), in.c));
	LLVMValueRef ok = LLVMBuildAnd(cg->b, in_range(cg, h, in.h), in_range(cg, w, in.w), "");
	LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "tap");
	LLVMBasicBlockRef other = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "pad");
	LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "next");
	LLVMBuildCondBr(cg->b, ok, then, other);
	LLVMPositionBuilderAtEnd(cg->b, then);
	LLVMValueRef src = imul(cg, iadd(cg, imul(cg, iadd(cg, imul(cg, s, in.h), h), in.w), w), in.c);
	body(cg, l, P, src, dst);
	LLVMBuildBr(cg->b, join);
	LLVMPositionBuilderAtEnd(cg->b, other);
	if (pad_body)
		pad_body(cg, l, P, NULL, dst);
	LLVMBuildBr(cg->b, join);
	LLVMPositionBuilderAtEnd(cg->b, join);
	loop_end(cg, &lj);
	loop_end(cg, &li);
	loop_end(cg, &lw);
	loop_end(cg, &lh);
	loop_end(cg, &ls);
}

/* The channels of one tap, c in [0, C) (emit_each). */
typedef void (*ChanFn)(Cg *cg, LLVMValueRef *P, LLVMValueRef src, LLVMValueRef dst, LLVMValueRef c);
typedef struct Chan { ChanFn body; LLVMValueRef *P, src, dst; } Chan;
static void chan_each(Cg *cg, void *ctx, LLVMValueRef c)
{
	Chan *ch = ctx;
	ch->body(cg, ch->P, ch->src, ch->dst, c);
}

static void emit_channels(Cg *cg, int C, ChanFn body, LLVMValueRef *P, LLVMValueRef src,
                          LLVMValueRef dst)
{
	Chan ch = { body, P, src, dst };
	emit_each(cg, C, chan_each, &ch);
}

static void chan_copy(Cg *cg, LLVMValueRef *P, LLVMValueRef src, LLVMValueRef dst, LLVMValueRef c)
{
	store_f32(cg, load_f32(cg, P[0], iadd(cg, src, c)), P[1], iadd(cg, dst, c));
}

static void chan_zero(Cg *cg, LLVMValueRef *P, LLVMValueRef src, LLVMValueRef dst, LLVMValueRef c)
{
	store_f32(cg, cf32(cg, 0), P[1], iadd(cg, dst, c));
}

/* P[0] = input (NHWC), P[1] = columns */
static void tap_copy(Cg *cg, const IRLayer *l, LLVMValueRef *P, LLVMValueRef src, LLVMValueRef dst)
{
	emit_channels(cg, l->in_shape.c, chan_copy, P, src, dst);
}

static void tap_zero(Cg *cg, const IRLayer *l, LLVMValueRef *P, LLVMValueRef src, LLVMValueRef dst)
{
	emit_channels(cg, l->in_shape.c, chan_zero, P, src, dst);
}

/* The body of im2col and col2im, helpers (image, columns, cnt): the
 * patches of cnt samples through emit_patch_walk. */
static LLVMValueRef build_columns_fn(Cg *cg, const IRLayer *l, TapFn body, TapFn pad_body)
{
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_i64 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 3, true);
	LLVMValueRef P[2] = { LLVMGetParam(f, 0), LLVMGetParam(f, 1) };
	emit_patch_walk(cg, l, P, LLVMGetParam(f, 2), body, pad_body);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* im2col(x, col, cnt): the columns of cnt samples starting at x */
static LLVMValueRef build_im2col(Cg *cg, const IRLayer *l, int li, int variant)
{
	return build_columns_fn(cg, l, tap_copy, tap_zero);
}

/* P[0] = the input's error (NHWC), P[1] = columns of errors */
static void chan_accumulate(Cg *cg, LLVMValueRef *P, LLVMValueRef src, LLVMValueRef dst,
                            LLVMValueRef c)
{
	LLVMValueRef at = iadd(cg, src, c);
	store_f32(cg, fadd(cg, load_f32(cg, P[0], at), load_f32(cg, P[1], iadd(cg, dst, c))), P[0], at);
}

static void tap_accumulate(Cg *cg, const IRLayer *l, LLVMValueRef *P, LLVMValueRef src, LLVMValueRef dst)
{
	emit_channels(cg, l->in_shape.c, chan_accumulate, P, src, dst);
}

/* col2im(dx, dcol, cnt): adds each column entry into the input tap it came
 * from; taps in the padding are dropped. */
static LLVMValueRef build_col2im(Cg *cg, const IRLayer *l, int li, int variant)
{
	return build_columns_fn(cg, l, tap_accumulate, NULL);
}

/* Weights between PyTorch's [F, C, kh, kw] and patch order [F, kh, kw, C].
 * variant 0: dst(patch order) = src(PyTorch order);
 * variant 1: dst(PyTorch) = src(patch);
 * variant 2: dst(PyTorch) = beta * dst + src(patch), beta a parameter. */
static LLVMValueRef build_permute(Cg *cg, const IRLayer *l, int li, int variant)
{
	int F = l->out_shape.c, C = l->in_shape.c, Q = l->kh * l->kw;
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_f32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 3, true);
	LLVMValueRef dst = LLVMGetParam(f, 0), src = LLVMGetParam(f, 1);
	Loop lf, la, lb;
	/* the inner loop runs along dst, so the stores are contiguous */
	int outer = variant == 0 ? Q : C, inner = variant == 0 ? C : Q;
	LLVMValueRef fi = loop_begin(cg, &lf, ci64(cg, 0), ci64(cg, F));
	LLVMValueRef a = loop_begin(cg, &la, ci64(cg, 0), ci64(cg, outer));
	LLVMValueRef b = loop_begin(cg, &lb, ci64(cg, 0), ci64(cg, inner));
	LLVMValueRef base = imul(cg, fi, (long)C * Q);
	LLVMValueRef di = iadd(cg, base, iadd(cg, imul(cg, a, inner), b));
	LLVMValueRef si = iadd(cg, base, iadd(cg, imul(cg, b, outer), a));
	LLVMValueRef v = load_f32(cg, src, si);
	if (variant == 2)
		v = fadd(cg, fmul(cg, LLVMGetParam(f, 2), load_f32(cg, dst, di)), v);
	store_f32(cg, v, dst, di);
	loop_end(cg, &lb);
	loop_end(cg, &la);
	loop_end(cg, &lf);
	LLVMBuildRetVoid(cg->b);
	return f;
}

static void emit_permute(Cg *cg, const IRLayer *l, int li, int variant, LLVMValueRef dst,
                         LLVMValueRef src, LLVMValueRef beta)
{
	LLVMValueRef args[] = { dst, src, beta ? beta : cf32(cg, 0) };
	call_fn(cg, helper(cg, build_permute, "permute", l, li, variant), args, 3);
}

/* The conv's working pointers: its columns scratch, and the two halves of
 * the permuted-weights scratch (NULL when W's order is the patch order). */
typedef struct ConvScratch { LLVMValueRef col, wp, wp2, wu; } ConvScratch;

static ConvScratch conv_scratch(Cg *cg, LLVMValueRef bufs, const IRLayer *l)
{
	ConvScratch cs = { NULL, NULL, NULL, NULL };
	if (l->aux >= 0)
		cs.col = slot_ptr(cg, bufs, l->aux);
	if (ir_conv_permuted(l) || ir_conv_tiled_few(l)) {
		long W = (long)l->out_shape.c * ir_conv_patch(l);
		cs.wp = slot_ptr(cg, bufs, l->aux2);
		cs.wp2 = elem_ptr(cg, cs.wp, ci64(cg, W));
		cs.wu = elem_ptr(cg, cs.wp, ci64(cg, 2 * W));   /* ir_plan_buffers */
	}
	return cs;
}

/* Chunks of samples: for (s0 = lo; s0 < hi; s0 += chunk) with cnt samples
 * (lo, hi: i64). */
typedef struct Chunks { Loop lp; LLVMValueRef s0, cnt, first; } Chunks;

static void chunks_begin(Cg *cg, Chunks *ck, LLVMValueRef lo, LLVMValueRef hi, int chunk)
{
	LLVMValueRef nn = LLVMBuildSub(cg->b, hi, lo, "");
	LLVMValueRef count = LLVMBuildSDiv(cg->b, iadd(cg, nn, ci64(cg, chunk - 1)), ci64(cg, chunk), "");
	LLVMValueRef k = loop_begin(cg, &ck->lp, ci64(cg, 0), count);
	LLVMValueRef off = imul(cg, k, chunk);
	ck->s0 = iadd(cg, lo, off);
	LLVMValueRef left = LLVMBuildSub(cg->b, nn, off, "");
	ck->cnt = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, left, ci64(cg, chunk), ""),
	                          left, ci64(cg, chunk), "");
	ck->first = LLVMBuildICmp(cg->b, LLVMIntEQ, k, ci64(cg, 0), "");
}

static void chunks_end(Cg *cg, Chunks *ck) { loop_end(cg, &ck->lp); }

/* C = alpha op(A) op(B) + beta C with run-time alpha and beta. */
static void emit_sgemm_v(Cg *cg, int ta, int tb, LLVMValueRef m, LLVMValueRef n,
                         LLVMValueRef k, LLVMValueRef alpha, LLVMValueRef a, int lda,
                         LLVMValueRef b, int ldb, LLVMValueRef beta, LLVMValueRef c, int ldc)
{
	LLVMValueRef args[] = {
		ci32(cg, ta), ci32(cg, tb), m, n, k, alpha, a, ci32(cg, lda),
		b, ci32(cg, ldb), beta, c, ci32(cg, ldc),
	};
	LLVMBuildCall2(cg->b, cg->sgemm_ty, cg->sgemm, args, 13, "");
}

/* ---- parallel loops over samples (wtn_parallel_for) ---- */

/* parts = wtn_parallel_for(body, view, n, max_parts), body from helper():
 * view holds the slots it reads (SlotView), in this frame. */
static LLVMValueRef emit_parallel_upto(Cg *cg, LLVMValueRef body, LLVMValueRef bufs, LLVMValueRef n,
                                       int max_parts)
{
	if (body != cg->view_fn) {
		fprintf(stderr, "wtnc: internal error: a range body without its view\n");
		exit(1);
	}
	LLVMTypeRef t_view = LLVMArrayType(cg->t_pf32, (unsigned)(cg->view_n ? cg->view_n : 1));
	LLVMValueRef view = entry_alloca(cg, t_view, "view");
	view = LLVMBuildBitCast(cg->b, view, cg->t_ppf32, "");
	for (int k = 0; k < cg->view_n; k++)
{
		LLVMValueRef idx = ci64(cg, k);
		LLVMBuildStore(cg->b, slot_ptr(cg, bufs, cg->view_slots[k]),
		               LLVMBuildInBoundsGEP2(cg->b, cg->t_pf32, view, &idx, 1, ""));
	}
	LLVMTypeRef t_pi8 = LLVMPointerType(LLVMInt8TypeInContext(cg->ctx), 0);
	LLVMValueRef args[] = { body, LLVMBuildBitCast(cg->b, view, t_pi8, ""), n64(cg, n),
	                        ci32(cg, max_parts) };
	return LLVMBuildCall2(cg->b, cg->pfor_ty, cg->pfor, args, 4, "");
}

static LLVMValueRef emit_parallel(Cg *cg, LLVMValueRef body, LLVMValueRef bufs, LLVMValueRef n)
{
	return emit_parallel_upto(cg, body, bufs, n, IR_MAX_PARTS);
}

/* This part's gradient partials of conv l. */
static LLVMValueRef conv_partials(Cg *cg, LLVMValueRef bufs, const IRLayer *l, LLVMValueRef part)
{
	return elem_ptr(cg, slot_ptr(cg, bufs, ir_partials_slot(cg->net)),
	                imul(cg, part, ir_partials_stride(l)));
}

/* A range body named cg->helper_name: (ctx = its view of bufs, lo, hi, part). */
typedef struct Range { LLVMValueRef bufs, lo, hi, part; } Range;

static Range begin_range_body(Cg *cg)
{
	LLVMTypeRef ps[4];
	LLVMGetParamTypes(cg->range_ty, ps);
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 4, true);
	Range r = { LLVMBuildBitCast(cg->b, LLVMGetParam(f, 0), cg->t_ppf32, ""),
	            LLVMGetParam(f, 1), LLVMGetParam(f, 2), n64(cg, LLVMGetParam(f, 3)) };
	if (cg->view)
		cg->view->bufs = r.bufs;
	return r;
}

/* This part's columns in the shared scratch. */
static LLVMValueRef part_columns(Cg *cg, const ConvScratch *cs, LLVMValueRef part)
{
	return elem_ptr(cg, cs->col, imul(cg, part, ir_col_part_elems(cg->net)));
}

static LLVMValueRef build_finish_error(Cg *cg, const IRLayer *l, int li, int variant);

/* What every conv range body (forward, backward, mirror; im2col, direct,
 * tiled) starts with: its range, its scratch, the input x, the pointers
 * its role reads (BODY_ bits) and this part's columns, or padded image,
 * cols. One function loads them so that every body reads its slots in the
 * same order, which is the order of its view of bufs. Pointers a body
 * does not read stay NULL; b is then a null pointer, as the kernels take
 * "no bias". */
typedef struct ConvBody {
	Range r;
	LLVMValueRef f;   /* the body; helper() moves cg->fn while it builds */
	ConvScratch cs;
	LLVMValueRef d, G, cnt;   /* the error, this part's partials, its sample count */
	LLVMValueRef x, y, w, b, cols;
} ConvBody;

enum {
	BODY_ERROR = 1,      /* d, G, cnt, the error finished first where fin asks */
	BODY_Y = 2,
	BODY_W = 4,          /* W as stored (PyTorch order) */
	BODY_W_PATCH = 8,    /* W in patch order: wp where W needs permuting */
	BODY_BIAS = 16,
	BODY_PARTIALS = 32,  /* G with no error (the mirror's correlation) */
	BODY_ZERO_G = 64,    /* G = 0 before the samples add to it */
};

static ConvBody begin_conv_body(Cg *cg, const IRLayer *l, int li, int what, int fin)
{
	ConvBody cb = { .r = begin_range_body(cg) };
	Range r = cb.r;
	cb.f = cg->fn;
	cb.cs = conv_scratch(cg, r.bufs, l);
	if (what & BODY_ERROR) {
		cb.d = slot_ptr(cg, r.bufs, l->d);
		cb.G = conv_partials(cg, r.bufs, l, r.part);
		cb.cnt = LLVMBuildSub(cg->b, r.hi, r.lo, "");
		if (fin) {   /* build_finish_error: the activation's derivative, the bias's sums */
			LLVMValueRef at = imul(cg, r.lo, l->out);
			LLVMValueRef args[] = { elem_ptr(cg, cb.d, at),
			                        elem_ptr(cg, slot_ptr(cg, r.bufs, l->y), at),
			                        elem_ptr(cg, cb.G, ci64(cg, l->out_shape.c * ir_conv_patch(l))),
			                        to_i32(cg, cb.cnt) };
			call_fn(cg, helper(cg, build_finish_error, "finish", l, li, fin), args, 4);
		}
	}
	cb.x = layer_input_ptr(cg, r.bufs, l);
	if (what & BODY_Y)
		cb.y = slot_ptr(cg, r.bufs, l->y);
	if (what & BODY_W)
		cb.w = slot_ptr(cg, r.bufs, l->W);
	if (what & BODY_W_PATCH)
		cb.w = cb.cs.wp ? cb.cs.wp : slot_ptr(cg, r.bufs, l->W);
	cb.b = what & BODY_BIAS ? opt_slot_ptr(cg, r.bufs, l->b) : null_f32(cg);
	if (what & BODY_PARTIALS)
		cb.G = conv_partials(cg, r.bufs, l, r.part);
	if (what & BODY_ZERO_G)
		emit_zero(cg, cb.G, ci64(cg, l->out_shape.c * ir_conv_patch(l)));
	cb.cols = part_columns(cg, &cb.cs, r.part);
	return cb;
}

static LLVMValueRef end_conv_body(Cg *cg, const ConvBody *cb)
{
	LLVMBuildRetVoid(cg->b);
	return cb->f;
}

/* sample s of a batch of size-float samples at base */
static LLVMValueRef sample_ptr(Cg *cg, LLVMValueRef base, LLVMValueRef s, long size)
{
	return elem_ptr(cg, base, imul(cg, s, size));
}

/* The sample loop of the direct and tiled bodies: for s in [lo, hi),
 * first x[s] into the padded image (cols) by pad. Returns s; loop_end
 * closes it. */
static LLVMValueRef samples_begin(Cg *cg, const ConvBody *cb, const IRLayer *l, LLVMValueRef pad,
                                  Loop *ls)
{
	LLVMValueRef s = loop_begin(cg, ls, cb->r.lo, cb->r.hi);
	LLVMValueRef args[] = { sample_ptr(cg, cb->x, s, l->in), cb->cols };
	call_fn(cg, pad, args, 2);
	return s;
}

/* The chunk loop of the im2col bodies: for each chunk of the part's
 * samples, its columns (im2col of x into cols). */
static void im2col_chunks_begin(Cg *cg, const ConvBody *cb, const IRLayer *l, int li, Chunks *ck)
{
	LLVMValueRef im2col = helper(cg, build_im2col, "im2col", l, li, 0);
	chunks_begin(cg, ck, cb->r.lo, cb->r.hi, ir_conv_chunk(cg->net, l));
	LLVMValueRef args[] = { sample_ptr(cg, cb->x, ck->s0, l->in), cb->cols, ck->cnt };
	call_fn(cg, im2col, args, 3);
}

/* A chunk's rows (output pixels) of y = cols W^T, the linear response. */
static void emit_chunk_response(Cg *cg, const ConvBody *cb, const IRLayer *l, LLVMValueRef rows,
                                LLVMValueRef yc)
{
	int F = l->out_shape.c, patch = (int)ir_conv_patch(l);
	emit_sgemm(cg, 0, 1, rows, ci32(cg, F), ci32(cg, patch), cb->cols, patch,
	           cb->w, patch, 0.0, yc, F);
}

/* The part's partials G = e^T cols from a chunk's error (or response) e:
 * the first chunk sets them, later chunks add. */
static void emit_chunk_wgrad(Cg *cg, const ConvBody *cb, const IRLayer *l, const Chunks *ck,
                             LLVMValueRef rows, LLVMValueRef e)
{
	int F = l->out_shape.c, patch = (int)ir_conv_patch(l);
	LLVMValueRef beta = LLVMBuildSelect(cg->b, ck->first, cf32(cg, 0), cf32(cg, 1), "");
	emit_sgemm_v(cg, 1, 0, ci32(cg, F), ci32(cg, patch), rows, cf32(cg, 1), e, F,
	             cb->cols, patch, beta, cb->G, patch);
}

/* Forward of an im2col conv over samples [lo, hi): per chunk, columns,
 * one product, bias and activation while y is in cache. W is already in
 * patch order (wp) where it needs to be. */
static LLVMValueRef build_conv_fwd_body(Cg *cg, const IRLayer *l, int li, int variant)
{
	ConvBody cb = begin_conv_body(cg, l, li, BODY_Y | BODY_W_PATCH | BODY_BIAS, 0);
	Chunks ck;
	im2col_chunks_begin(cg, &cb, l, li, &ck);
	LLVMValueRef rows = imul(cg, ck.cnt, pixels(l->out_shape));
	LLVMValueRef yc = sample_ptr(cg, cb.y, ck.s0, l->out);
	emit_chunk_response(cg, &cb, l, to_i32(cg, rows), yc);
	emit_bias_act(cg, l, li, yc, cb.b, rows);
	chunks_end(cg, &ck);
	return end_conv_body(cg, &cb);
}

/* ---- direct convolution for few input channels ----
 * A stride-1 conv on one to four input channels (a first layer on images)
 * makes poor products: im2col copies every pixel kh*kw times into columns
 * only C*kh*kw wide, and the product is too thin for the BLAS. Instead each
 * sample's input is copied into zero-padded planes xp[c] of row length Wp,
 * and the output is built per filter as a plane of the same row length:
 *   yt[f][e] += W[f, c, i, j] * xp[c][e + i*Wp + j]   for every e,
 * one long contiguous axpy per tap (e = oh*Wp + ow; the Wp - OW columns
 * past each output row are computed and dropped). The weight gradient is
 * the same walk as dot products of the error's planes with xp. */
typedef struct DirectGeo { long wp, len, pitch, elems; } DirectGeo;
enum { DC_LANES = 8 };

static long round_up(long v, long m) { return (v + m - 1) / m * m; }

static bool conv_small_direct(const IRNetwork *net, const IRLayer *l, DirectGeo *g)
{
	if (l->kind != OP_CONV2D || ir_conv_direct(l) || l->stride != 1 || l->in_shape.c > 4
	    || l->kw > 8 || l->aux < 0)
		return false;
	long hp = l->in_shape.h + 2L * l->pad;
	g->wp = l->in_shape.w + 2L * l->pad;
	g->len = round_up((long)l->out_shape.h * g->wp, DC_LANES);
	long reach = (l->kh - 1) * g->wp + l->kw - 1 + g->len;
	g->pitch = round_up(reach > hp * g->wp ? reach : hp * g->wp, DC_LANES);
	g->elems = l->in_shape.c * g->pitch + l->out_shape.c * g->len;
	return g->elems <= ir_col_part_elems(net);
}

static LLVMTypeRef v8_type(Cg *cg) { return LLVMVectorType(cg->t_f32, DC_LANES); }

/* eight floats at base[idx], any alignment */
static LLVMValueRef load_v8(Cg *cg, LLVMValueRef base, LLVMValueRef idx)
{
	LLVMValueRef p = LLVMBuildBitCast(cg->b, elem_ptr(cg, base, idx),
	                                  LLVMPointerType(v8_type(cg), 0), "");
	LLVMValueRef v = LLVMBuildLoad2(cg->b, v8_type(cg), p, "");
	LLVMSetAlignment(v, 4);
	return v;
}

static void store_v8(Cg *cg, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx)
{
	LLVMValueRef p = LLVMBuildBitCast(cg->b, elem_ptr(cg, base, idx),
	                                  LLVMPointerType(v8_type(cg), 0), "");
	LLVMSetAlignment(LLVMBuildStore(cg->b, v, p), 4);
}

static LLVMValueRef splat_v8(Cg *cg, LLVMValueRef s)
{
	LLVMTypeRef v8 = v8_type(cg);
	LLVMValueRef one = LLVMBuildInsertElement(cg->b, LLVMGetUndef(v8), s, ci32(cg, 0), "");
	LLVMValueRef zeros = LLVMConstNull(LLVMVectorType(cg->t_i32, DC_LANES));
	return LLVMBuildShuffleVector(cg->b, one, LLVMGetUndef(v8), zeros, "");
}

/* a * b + c on eight lanes (fused where the target has FMA) */
static LLVMValueRef fmuladd_v8(Cg *cg, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c)
{
	LLVMTypeRef v8 = v8_type(cg);
	unsigned id = LLVMLookupIntrinsicID("llvm.fmuladd", 12);
	LLVMValueRef f = LLVMGetIntrinsicDeclaration(cg->mod, id, &v8, 1);
	LLVMValueRef args[] = { a, b, c };
	return LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(f), f, args, 3, "");
}

/* n sums of eight lanes for a register tile, entry_vars set to zero */
static void acc_vars_v8(Cg *cg, LLVMValueRef *acc, int n)
{
	for (int k = 0; k < n; k++)
		acc[k] = entry_var(cg, v8_type(cg), LLVMConstNull(v8_type(cg)));
}

/* the n sums back to zero, as a tile starts */
static void acc_zero_v8(Cg *cg, LLVMValueRef const *acc, int n)
{
	for (int k = 0; k < n; k++)
		LLVMBuildStore(cg->b, LLVMConstNull(v8_type(cg)), acc[k]);
}

/* *acc += a * b */
static void acc_fmuladd_v8(Cg *cg, LLVMValueRef acc, LLVMValueRef a, LLVMValueRef b)
{
	LLVMValueRef s = LLVMBuildLoad2(cg->b, v8_type(cg), acc, "");
	LLVMBuildStore(cg->b, fmuladd_v8(cg, a, b, s), acc);
}

/* dst[at..at+8) += *acc */
static void acc_add_to_v8(Cg *cg, LLVMValueRef acc, LLVMValueRef dst, LLVMValueRef at)
{
	LLVMValueRef s = LLVMBuildLoad2(cg->b, v8_type(cg), acc, "");
	store_v8(cg, LLVMBuildFAdd(cg->b, load_v8(cg, dst, at), s, ""), dst, at);
}

/* xp(x, xp): one sample's NHWC input into the interior of its planes; the
 * padding around it stays as the caller zeroed it. */
static LLVMValueRef build_dc_pad(Cg *cg, const IRLayer *l, int li, int variant)
{
	DirectGeo g;
	conv_small_direct(cg->net, l, &g);
	Shape in = l->in_shape;
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 2, true);
	LLVMValueRef x = LLVMGetParam(f, 0), xp = LLVMGetParam(f, 1);
	Loop lh, lw, lc;
	LLVMValueRef h = loop_begin(cg, &lh, ci64(cg, 0), ci64(cg, in.h));
	LLVMValueRef w = loop_begin(cg, &lw, ci64(cg, 0), ci64(cg, in.w));
	LLVMValueRef src = imul(cg, iadd(cg, imul(cg, h, in.w), w), in.c);
	LLVMValueRef dst = iadd(cg, imul(cg, iadd(cg, h, ci64(cg, l->pad)), g.wp),
	                        iadd(cg, w, ci64(cg, l->pad)));
	LLVMValueRef c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, in.c));
	store_f32(cg, load_f32(cg, x, iadd(cg, src, c)), xp, iadd(cg, dst, imul(cg, c, g.pitch)));
	loop_end(cg, &lc);
	loop_end(cg, &lw);
	loop_end(cg, &lh);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* The walk shared by the forward and the weight gradient: for every filter
 * f, channel c and kernel row i, a loop over the plane in blocks of eight
 * lanes e with the kw taps of the row: P[0] = xp, P[1] = W or the gradient,
 * P[2] = the output (or error) planes. */
typedef struct DcRow { LLVMValueRef f, c, i, wrow, xrow, plane; } DcRow;

static void dc_rows_begin(Cg *cg, const IRLayer *l, const DirectGeo *g, LLVMValueRef *P,
                          Loop *lp, DcRow *r)
{
	int C = l->in_shape.c;
	r->f = loop_begin(cg, &lp[0], ci64(cg, 0), ci64(cg, l->out_shape.c));
	r->c = loop_begin(cg, &lp[1], ci64(cg, 0), ci64(cg, C));
	r->i = loop_begin(cg, &lp[2], ci64(cg, 0), ci64(cg, l->kh));
	/* W[f, c, i, 0] in PyTorch order */
	r->wrow = imul(cg, iadd(cg, imul(cg, iadd(cg, imul(cg, r->f, C), r->c), l->kh), r->i), l->kw);
	r->xrow = elem_ptr(cg, P[0], iadd(cg, imul(cg, r->c, g->pitch), imul(cg, r->i, g->wp)));
	r->plane = elem_ptr(cg, P[2], imul(cg, r->f, g->len));
}

static void dc_rows_end(Cg *cg, Loop *lp)
{
	loop_end(cg, &lp[2]);
	loop_end(cg, &lp[1]);
	loop_end(cg, &lp[0]);
}

/* dc_fwd(xp, w, yt): yt[f] = sum over c, i, j of W[f, c, i, j] xp[c] shifted
 * by i*Wp + j, in blocks of eight, the kw taps of a row per pass over yt. */
static LLVMValueRef build_dc_fwd(Cg *cg, const IRLayer *l, int li, int variant)
{
	DirectGeo g;
	conv_small_direct(cg->net, l, &g);
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_pf32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 3, true);
	LLVMValueRef P[3] = { LLVMGetParam(f, 0), LLVMGetParam(f, 1), LLVMGetParam(f, 2) };
	emit_zero(cg, P[2], ci64(cg, l->out_shape.c * g.len));
	Loop lp[3], le;
	DcRow r;
	dc_rows_begin(cg, l, &g, P, lp, &r);
	LLVMValueRef wv[8];
	for (int j = 0; j < l->kw; j++)
		wv[j] = splat_v8(cg, load_f32(cg, P[1], iadd(cg, r.wrow, ci64(cg, j))));
	LLVMValueRef blk = loop_begin(cg, &le, ci64(cg, 0), ci64(cg, g.len / DC_LANES));
	LLVMValueRef e = imul(cg, blk, DC_LANES);
	LLVMValueRef acc = load_v8(cg, r.plane, e);
	for (int j = 0; j < l->kw; j++)
		acc = fmuladd_v8(cg, wv[j], load_v8(cg, r.xrow, iadd(cg, e, ci64(cg, j))), acc);
	store_v8(cg, acc, r.plane, e);
	loop_end(cg, &le);
	dc_rows_end(cg, lp);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* For every output pixel (oh, ow) of a direct conv: its index in the
 * planes of row length Wp and the NHWC index of its channel 0. */
typedef struct DcPixels { Loop lh, lw; LLVMValueRef plane, nhwc; } DcPixels;

static void dc_pixels_begin(Cg *cg, const IRLayer *l, const DirectGeo *g, DcPixels *px)
{
	Shape out = l->out_shape;
	LLVMValueRef oh = loop_begin(cg, &px->lh, ci64(cg, 0), ci64(cg, out.h));
	LLVMValueRef ow = loop_begin(cg, &px->lw, ci64(cg, 0), ci64(cg, out.w));
	px->plane = iadd(cg, imul(cg, oh, g->wp), ow);
	px->nhwc = imul(cg, iadd(cg, imul(cg, oh, out.w), ow), out.c);
}

static void dc_pixels_end(Cg *cg, DcPixels *px)
{
	loop_end(cg, &px->lw);
	loop_end(cg, &px->lh);
}

typedef struct DcOut { const IRLayer *l; int bias; LLVMValueRef yt, src; long len;
                      LLVMValueRef y, dst, b; bool linear; } DcOut;
static void dc_out_elem(Cg *cg, void *ctx, LLVMValueRef fi)
{
	DcOut *co = ctx;
	LLVMValueRef v = load_f32(cg, co->yt, iadd(cg, co->src, imul(cg, fi, co->len)));
	if (co->bias)
		v = fadd(cg, v, load_f32(cg, co->b, fi));
	store_f32(cg, co->linear ? v : emit_act(cg, co->l->act, v), co->y, iadd(cg, co->dst, fi));
}

/* dc_out(yt, y, b): one sample's output, NHWC, y = f(yt + b); variant 1: a
 * bias; variant 2: y = yt, the linear response (the mirror) */
static LLVMValueRef build_dc_out(Cg *cg, const IRLayer *l, int li, int variant)
{
	DirectGeo g;
	conv_small_direct(cg->net, l, &g);
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_pf32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 3, true);
	LLVMValueRef yt = LLVMGetParam(f, 0), y = LLVMGetParam(f, 1), b = LLVMGetParam(f, 2);
	DcPixels px;
	dc_pixels_begin(cg, l, &g, &px);
	DcOut co = { l, variant & 1, yt, px.plane, g.len, y, px.nhwc, b, variant == 2 };
	emit_each(cg, l->out_shape.c, dc_out_elem, &co);
	dc_pixels_end(cg, &px);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* The output's (or the error's) planes, after the input's in the part's
 * scratch. */
static LLVMValueRef dc_out_planes(Cg *cg, const ConvBody *cb, const IRLayer *l, const DirectGeo *g)
{
	return elem_ptr(cg, cb->cols, ci64(cg, l->in_shape.c * g->pitch));
}

/* A sample's direct forward, as dc_fwd_body and dc_mirror_body run it:
 * its padded planes (pad, by samples_begin), the output's planes yt (fwd)
 * and y[s] from them (out: dc_out's variant). */
typedef struct DcForward { LLVMValueRef pad, fwd, out; } DcForward;

static DcForward dc_forward_helpers(Cg *cg, const IRLayer *l, int li, int out_variant)
{
	DcForward df;
	df.pad = helper(cg, build_dc_pad, "dc_pad", l, li, 0);
	df.fwd = helper(cg, build_dc_fwd, "dc_fwd", l, li, 0);
	df.out = helper(cg, build_dc_out, "dc_out", l, li, out_variant);
	return df;
}

static void emit_dc_forward(Cg *cg, const ConvBody *cb, const IRLayer *l, const DcForward *df,
                            LLVMValueRef yt, LLVMValueRef s)
{
	LLVMValueRef a2[] = { cb->cols, cb->w, yt };
	call_fn(cg, df->fwd, a2, 3);
	LLVMValueRef a3[] = { yt, sample_ptr(cg, cb->y, s, l->out), cb->b };
	call_fn(cg, df->out, a3, 3);
}

/* Forward of a direct conv over samples [lo, hi), sample by sample in this
 * part's scratch (planes xp, then the output planes). */
static LLVMValueRef build_dc_fwd_body(Cg *cg, const IRLayer *l, int li, int variant)
{
	DirectGeo g;
	conv_small_direct(cg->net, l, &g);
	ConvBody cb = begin_conv_body(cg, l, li, BODY_Y | BODY_W | BODY_BIAS, 0);
	LLVMValueRef yt = dc_out_planes(cg, &cb, l, &g);
	emit_zero(cg, cb.cols, ci64(cg, l->in_shape.c * g.pitch));
	DcForward df = dc_forward_helpers(cg, l, li, l->b >= 0);
	Loop ls;
	LLVMValueRef s = samples_begin(cg, &cb, l, df.pad, &ls);
	emit_dc_forward(cg, &cb, l, &df, yt, s);
	loop_end(cg, &ls);
	return end_conv_body(cg, &cb);
}

/* ---- register-tiled direct convolution ----
 * A stride-1 conv on many channels through im2col spends its time copying:
 * every input pixel written kh*kw times into columns, which OpenBLAS then
 * packs again (and the data gradient writes columns of errors and adds
 * them back, col2im). Instead each sample is copied once into a
 * zero-padded NHWC image and the products read it in place: an output
 * pixel's patch is, for each kernel row i, kw*C consecutive floats of the
 * padded image. A tile of TC_PIX pixels by 8*NV output channels keeps its
 * sums in registers across the whole patch (one broadcast input value per
 * pixel, NV weight vectors per tap), and the bias and relu are applied as
 * the tile is stored. The data gradient is the same kernel: a "full"
 * correlation of the error, padded by kh-1-pad, with the kernel flipped
 * and its channels swapped. The weight gradient sums, per kernel row and
 * per tile of 8*TV patch entries by FB filters, the products over a
 * sample's pixels in registers, then adds them to the part's partials. */
static bool conv_tiled(const IRNetwork *net, const IRLayer *l, IRTiledGeo *g)
{
	ir_tiled_geo(l, g);
	return ir_conv_tiled(net, l) && l->aux >= 0;
}

/* The forward alone also takes few input channels (ir_conv_tiled_few): the
 * weight and data gradients want whole vectors of C, the forward only of
 * filters. For a first layer on images this replaces the direct conv's
 * per-filter planes and their transposition into NHWC. */
static bool conv_tiled_fwd(const IRNetwork *net, const IRLayer *l, IRTiledGeo *g)
{
	if (conv_tiled(net, l, g))
		return true;
	if (!ir_conv_tiled_few(l) || l->aux < 0 || l->aux2 < 0)
		return false;
	ir_tiled_geo(l, g);
	return g->xsize <= ir_col_part_elems(net);
}

/* tc_pad(src, dst): one sample into the interior of its padded image; the
 * border stays as the caller zeroed it. Variant 0: the input (pad each
 * side); 1: the output's error (kh-1-pad, kw-1-pad each side). */
static LLVMValueRef build_tc_pad(Cg *cg, const IRLayer *l, int li, int variant)
{
	IRTiledGeo g;
	ir_tiled_geo(l, &g);
	Shape s = variant ? l->out_shape : l->in_shape;
	long width = variant ? g.dw : g.xw;
	long top = variant ? l->kh - 1 - l->pad : l->pad, left = variant ? l->kw - 1 - l->pad : l->pad;
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 2, true);
	LLVMValueRef src = LLVMGetParam(f, 0), dst = LLVMGetParam(f, 1);
	Loop lh, le;
	long row = (long)s.w * s.c;
	LLVMValueRef h = loop_begin(cg, &lh, ci64(cg, 0), ci64(cg, s.h));
	LLVMValueRef to = iadd(cg, imul(cg, iadd(cg, h, ci64(cg, top)), width * s.c), ci64(cg, left * s.c));
	LLVMValueRef from = imul(cg, h, row);
	LLVMValueRef e = loop_begin(cg, &le, ci64(cg, 0), ci64(cg, row));
	store_f32(cg, load_f32(cg, src, iadd(cg, from, e)), dst, iadd(cg, to, e));
	loop_end(cg, &le);
	loop_end(cg, &lh);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* Vectors of output channels a tile keeps per pixel: two where they divide
 * the channels (12 pixels' sums then fill the registers as 6 by 2). */
static int tc_vectors(int co) { return co % 16 == 0 ? 2 : 1; }

/* tc_weights(dst, src): the kernel, PyTorch order [F, C, kh, kw], as the
 * tile reads it: per block of a tile's 8*nv output channels, contiguous,
 * so a tile streams its weights in order. Variant 0 (forward):
 * dst[f / B][i, j, c][f % B] = W[f, c, i, j]; 1 (data gradient), with the
 * roles of f and c swapped: dst[c / B][i, j, f][c % B] = W[f, c, kh-1-i,
 * kw-1-j]; B = 8 * tc_vectors(output channels). */
static LLVMValueRef build_tc_weights(Cg *cg, const IRLayer *l, int li, int variant)
{
	int F = l->out_shape.c, C = l->in_shape.c, kh = l->kh, kw = l->kw;
	int outer = variant ? F : C, inner = variant ? C : F, bw = 8 * tc_vectors(inner);
	long block = (long)kh * kw * outer * bw;
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 2, true);
	LLVMValueRef dst = LLVMGetParam(f, 0), src = LLVMGetParam(f, 1);
	Loop lk, li_, lj, la, lb;
	LLVMValueRef k = loop_begin(cg, &lk, ci64(cg, 0), ci64(cg, inner / bw));
	LLVMValueRef i = loop_begin(cg, &li_, ci64(cg, 0), ci64(cg, kh));
	LLVMValueRef j = loop_begin(cg, &lj, ci64(cg, 0), ci64(cg, kw));
	LLVMValueRef a = loop_begin(cg, &la, ci64(cg, 0), ci64(cg, outer));
	LLVMValueRef lane = loop_begin(cg, &lb, ci64(cg, 0), ci64(cg, bw));
	LLVMValueRef b = iadd(cg, imul(cg, k, bw), lane);
	LLVMValueRef di = iadd(cg, iadd(cg, imul(cg, k, block),
	                                imul(cg, iadd(cg, imul(cg, iadd(cg, imul(cg, i, kw), j), outer), a), bw)),
	                       lane);
	LLVMValueRef fi = variant ? a : b, ci = variant ? b : a, si, sj;
	if (variant) {
		si = LLVMBuildSub(cg->b, ci64(cg, kh - 1), i, "");
		sj = LLVMBuildSub(cg->b, ci64(cg, kw - 1), j, "");
	} else {
		si = i, sj = j;
	}
	LLVMValueRef s = iadd(cg, imul(cg, iadd(cg, imul(cg, iadd(cg, imul(cg, fi, C), ci), kh), si), kw), sj);
	store_f32(cg, load_f32(cg, src, s), dst, di);
	loop_end(cg, &lb);
	loop_end(cg, &la);
	loop_end(cg, &lj);
	loop_end(cg, &li_);
	loop_end(cg, &lk);
	LLVMBuildRetVoid(cg->b);
	return f;
}

static void emit_tc_weights(Cg *cg, const IRLayer *l, int li, int variant, LLVMValueRef dst,
                            LLVMValueRef src)
{
	LLVMValueRef args[] = { dst, src };
	call_fn(cg, helper(cg, build_tc_weights, "tc_weights", l, li, variant), args, 2);
}

enum { TC_PIX_REGS = 12 };   /* accumulators of a tile: 16 ymm less weights and broadcast */

/* tc_tile(src, wts, out, b): every output pixel of one sample from its
 * padded image src and the tile's weights (tc_weights). Variant 0: the
 * forward, out = b + sum, relu applied here (other activations after);
 * 1: the data gradient, out = sum; 2: out += sum; 3: the forward's linear
 * part, out = sum (the weight mirror's response to noise). */
static LLVMValueRef build_tc_tile(Cg *cg, const IRLayer *l, int li, int variant)
{
	IRTiledGeo g;
	ir_tiled_geo(l, &g);
	bool data = variant == 1 || variant == 2;
	Shape o = data ? l->in_shape : l->out_shape;
	int cs = data ? l->out_shape.c : l->in_shape.c, co = o.c;
	long pitch = (data ? g.dw : g.xw) * cs, taps = (long)l->kw * cs;
	int nv = tc_vectors(co), R = TC_PIX_REGS / nv;
	long P = pixels(o), tiles = (P + R - 1) / R;
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_pf32, cg->t_pf32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 4, true);
	LLVMValueRef src = LLVMGetParam(f, 0), wts = LLVMGetParam(f, 1);
	LLVMValueRef out = LLVMGetParam(f, 2), bias = LLVMGetParam(f, 3);
	LLVMTypeRef v8 = v8_type(cg);
	LLVMValueRef zero = LLVMConstNull(v8), acc[TC_PIX_REGS], base[TC_PIX_REGS];
	acc_vars_v8(cg, acc, R * nv);
	Loop lt, lf, li2, le;
	LLVMValueRef p0 = imul(cg, loop_begin(cg, &lt, ci64(cg, 0), ci64(cg, tiles)), R);
	for (int r = 0; r < R; r++) {   /* a short last tile repeats its last pixel */
		LLVMValueRef p = iadd(cg, p0, ci64(cg, r));
		p = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, p, ci64(cg, P), ""), p,
		                    ci64(cg, P - 1), "");
		LLVMValueRef oh = LLVMBuildSDiv(cg->b, p, ci64(cg, o.w), "");
		LLVMValueRef ow = LLVMBuildSRem(cg->b, p, ci64(cg, o.w), "");
		base[r] = iadd(cg, imul(cg, oh, pitch), imul(cg, ow, cs));
	}
	/* kernel rows that read only the zero border for every pixel of the
	 * tile are skipped (their products are all +-0): rows [i_lo, i_hi)
	 * reach the source's rows [top, top + height) from the tile's rows */
	int top = data ? l->kh - 1 - l->pad : l->pad, height = data ? l->out_shape.h : l->in_shape.h;
	LLVMValueRef first = LLVMBuildSDiv(cg->b, p0, ci64(cg, o.w), "");
	LLVMValueRef last = LLVMBuildSDiv(cg->b, imin(cg, iadd(cg, p0, ci64(cg, R - 1)), ci64(cg, P - 1)),
	                                  ci64(cg, o.w), "");
	LLVMValueRef i_lo = imax(cg, ci64(cg, 0), LLVMBuildSub(cg->b, ci64(cg, top), last, ""));
	LLVMValueRef i_hi = imin(cg, ci64(cg, l->kh), LLVMBuildSub(cg->b, ci64(cg, top + height), first, ""));
	LLVMValueRef fo = imul(cg, loop_begin(cg, &lf, ci64(cg, 0), ci64(cg, co / (8 * nv))), 8L * nv);
	acc_zero_v8(cg, acc, R * nv);
	LLVMValueRef i = loop_begin(cg, &li2, i_lo, i_hi);
	LLVMValueRef xo = imul(cg, i, pitch), wr = imul(cg, i, taps);
	LLVMValueRef t = loop_begin(cg, &le, ci64(cg, 0), ci64(cg, taps));
	/* fo's block of weights (tc_weights), then tap (i, t) */
	LLVMValueRef wi = iadd(cg, imul(cg, fo, (long)l->kh * taps), imul(cg, iadd(cg, wr, t), 8L * nv)), w[2];
	for (int v = 0; v < nv; v++)
		w[v] = load_v8(cg, wts, iadd(cg, wi, ci64(cg, 8L * v)));
	LLVMValueRef xt = iadd(cg, xo, t);
	for (int r = 0; r < R; r++) {
		LLVMValueRef xv = splat_v8(cg, load_f32(cg, src, iadd(cg, base[r], xt)));
		for (int v = 0; v < nv; v++)
			acc_fmuladd_v8(cg, acc[r * nv + v], xv, w[v]);
	}
	loop_end(cg, &le);
	loop_end(cg, &li2);
	for (int r = 0; r < R; r++) {
		LLVMValueRef p = iadd(cg, p0, ci64(cg, r));
		LLVMBasicBlockRef join = P % R && r ? if_begin(cg, LLVMBuildICmp(cg->b, LLVMIntSLT, p, ci64(cg, P), "")) : NULL;
		for (int v = 0; v < nv; v++) {
			LLVMValueRef at = iadd(cg, iadd(cg, imul(cg, p, co), fo), ci64(cg, 8L * v));
			LLVMValueRef s = LLVMBuildLoad2(cg->b, v8, acc[r * nv + v], "");
			if (variant == 0 && l->b >= 0)
				s = LLVMBuildFAdd(cg->b, s, load_v8(cg, bias, iadd(cg, fo, ci64(cg, 8L * v))), "");
			if (variant == 0 && l->act == ACT_RELU)   /* olt keeps NaN, as emit_act */
				s = LLVMBuildSelect(cg->b, LLVMBuildFCmp(cg->b, LLVMRealOLT, s, zero, ""), zero, s, "");
			if (variant == 2)
				s = LLVMBuildFAdd(cg->b, load_v8(cg, out, at), s, "");
			store_v8(cg, s, out, at);
		}
		if (join)
			if_end(cg, join);
	}
	loop_end(cg, &lf);
	loop_end(cg, &lt);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* ---- Winograd convolution (winograd.c, ir_conv_winograd) ----
 * The forward and the data gradient of a tiled conv as F(m x m, r x r),
 * per sample and per chunk of IR_WINO_TILES of its m x m output tiles:
 *   V[xi][t][c] = (BT d B)[xi] of tile t, per vector of 8 source channels;
 *   M[xi][t][f] = sum over c of V[xi][t][c] U[xi][c][f], for each of the
 *                 n*n positions xi, in register tiles of R tiles by the
 *                 8*nv output channels (the shape of tc_tile's);
 *   Y = AT M A, stored as tc_tile stores its pixels.
 * U = G w GT of the kernel in tile order (tc_weights, either variant), once
 * per pass. Per output value: n*n/(m*m) products per source channel, not
 * r*r (F(2x2, 5x5): 9 instead of 25; F(4x4, 3x3): 2.25 instead of 9). */
typedef struct WinoGeo {
	WinoMats w;
	int cs, co, nv, R;   /* source and output channels; a register tile: R tiles by 8*nv */
	long pitch;          /* floats per row of the padded source */
	int tw;              /* tiles across */
	long tiles, vsize;   /* tiles of a sample; floats of a chunk's V (M follows) */
} WinoGeo;

static bool wino_geo(const IRNetwork *net, const IRLayer *l, int pass, WinoGeo *g)
{
	bool data = pass == IR_WINO_DATA;
	int m = pass == IR_WINO_FWD ? l->wino_fwd : data ? l->wino_data : l->wino_wgrad;
	IRTiledGeo tg;
	if (!m || !conv_tiled(net, l, &tg) || !wino_mats(m, l->kh, &g->w))
		return false;
	Shape o = data ? l->in_shape : l->out_shape;
	long nn = (long)g->w.n * g->w.n;
	g->cs = data ? l->out_shape.c : l->in_shape.c;
	g->co = o.c;
	g->nv = tc_vectors(g->co);
	g->R = TC_PIX_REGS / g->nv;
	g->pitch = (data ? tg.dw : tg.xw) * g->cs;
	g->tw = o.w / m;
	g->tiles = (long)(o.h / m) * g->tw;
	g->vsize = nn * IR_WINO_TILES * g->cs;
	return true;
}

/* sum over k of c[k] x[k], with no work for the zero coefficients */
static LLVMValueRef wino_dot(Cg *cg, const double *c, LLVMValueRef *x, int n)
{
	LLVMValueRef s = NULL;
	for (int k = 0; k < n; k++) {
		double ck = c[k];
		if (ck == 0)
			continue;
		if (!s)
			s = ck == 1 ? x[k] : LLVMBuildFMul(cg->b, splat_v8(cg, cf32(cg, ck)), x[k], "");
		else if (ck == 1)
			s = fadd(cg, s, x[k]);
		else if (ck == -1)
			s = fsub(cg, s, x[k]);
		else
			s = fmuladd_v8(cg, splat_v8(cg, cf32(cg, ck)), x[k], s);
	}
	return s ? s : LLVMConstNull(v8_type(cg));
}

/* out[a][b] = sum_ij L[a][i] x[i][j] R[b][j]: a rows x b columns from
 * rows x cols, for one vector of lanes (x and out row-major) */
static void wino_sandwich(Cg *cg, const double L[][WINO_MAX_N], int a_n, int rows, int cols,
                          LLVMValueRef *x, LLVMValueRef *out)
{
	LLVMValueRef col[WINO_MAX_N], t[WINO_MAX_N * WINO_MAX_N];
	for (int a = 0; a < a_n; a++)
		for (int j = 0; j < cols; j++) {
			for (int i = 0; i < rows; i++)
				col[i] = x[i * cols + j];
			t[a * cols + j] = wino_dot(cg, L[a], col, rows);
		}
	for (int a = 0; a < a_n; a++)
		for (int b = 0; b < a_n; b++)
			out[a * a_n + b] = wino_dot(cg, L[b], &t[a * cols], cols);
}

/* wino_weights(U, wp): U[fb][xi][c][f % bw] = (G w GT)[xi] of wp's kernel
 * (tc_weights order: [fb][i, j, c][f % bw]); variant: the data gradient */
static LLVMValueRef build_wino_weights(Cg *cg, const IRLayer *l, int li, int variant)
{
	WinoGeo g;
	wino_geo(cg->net, l, variant ? IR_WINO_DATA : IR_WINO_FWD, &g);
	int r = l->kh, n = g.w.n, bw = 8 * g.nv;
	long block = (long)r * r * g.cs * bw;
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 2, true);
	LLVMValueRef dst = LLVMGetParam(f, 0), src = LLVMGetParam(f, 1);
	LLVMValueRef x[WINO_MAX_N * WINO_MAX_N], u[WINO_MAX_N * WINO_MAX_N];
	Loop lf, lc;
	LLVMValueRef fb = loop_begin(cg, &lf, ci64(cg, 0), ci64(cg, g.co / bw));
	LLVMValueRef c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, g.cs));
	for (int v = 0; v < g.nv; v++) {
		for (int i = 0; i < r * r; i++)
			x[i] = load_v8(cg, src, iadd(cg, imul(cg, fb, block),
			                             iadd(cg, imul(cg, iadd(cg, ci64(cg, (long)i * g.cs), c), bw),
			                                  ci64(cg, 8L * v))));
		wino_sandwich(cg, g.w.G, n, r, r, x, u);
		for (int xi = 0; xi < n * n; xi++)
			store_v8(cg, u[xi], dst,
			         iadd(cg, imul(cg, iadd(cg, imul(cg, iadd(cg, imul(cg, fb, (long)n * n),
			                                                  ci64(cg, xi)), g.cs), c), bw),
			              ci64(cg, 8L * v)));
	}
	loop_end(cg, &lc);
	loop_end(cg, &lf);
	LLVMBuildRetVoid(cg->b);
	return f;
}

typedef struct WinoArgs { LLVMValueRef src, U, out, bias, V, M, acc[TC_PIX_REGS]; } WinoArgs;

/* M[xi][t0 + r][fb*bw ..] for rows r < rows of the chunk: V's rows by U */
static void wino_product(Cg *cg, const WinoGeo *g, const WinoArgs *a, LLVMValueRef fb,
                         LLVMValueRef xi, LLVMValueRef t0, int rows)
{
	LLVMTypeRef v8 = v8_type(cg);
	int nv = g->nv, bw = 8 * nv, nn = g->w.n * g->w.n;
	LLVMValueRef w[2], vrow[TC_PIX_REGS];
	acc_zero_v8(cg, a->acc, rows * nv);
	LLVMValueRef ub = imul(cg, iadd(cg, imul(cg, fb, nn), xi), (long)g->cs * bw);
	LLVMValueRef vb = imul(cg, iadd(cg, imul(cg, xi, IR_WINO_TILES), t0), g->cs);
	for (int r = 0; r < rows; r++)
		vrow[r] = iadd(cg, vb, ci64(cg, (long)r * g->cs));
	Loop lc;
	LLVMValueRef c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, g->cs));
	for (int v = 0; v < nv; v++)
		w[v] = load_v8(cg, a->U, iadd(cg, ub, iadd(cg, imul(cg, c, bw), ci64(cg, 8L * v))));
	for (int r = 0; r < rows; r++) {
		LLVMValueRef xv = splat_v8(cg, load_f32(cg, a->V, iadd(cg, vrow[r], c)));
		for (int v = 0; v < nv; v++)
			acc_fmuladd_v8(cg, a->acc[r * nv + v], xv, w[v]);
	}
	loop_end(cg, &lc);
	LLVMValueRef mb = iadd(cg, imul(cg, iadd(cg, imul(cg, xi, IR_WINO_TILES), t0), g->co), imul(cg, fb, bw));
	for (int r = 0; r < rows; r++)
		for (int v = 0; v < nv; v++)
			store_v8(cg, LLVMBuildLoad2(cg->b, v8, a->acc[r * nv + v], ""), a->M,
			         iadd(cg, mb, ci64(cg, (long)r * g->co + 8L * v)));
}

/* V[xi][tl][c] (tile stride ld) = (BT d B)[xi] of tiles first + tl, tl <
 * len, of the padded source, 8 channels at a time */
static void wino_input(Cg *cg, const WinoGeo *g, LLVMValueRef src, LLVMValueRef V,
                       LLVMValueRef first, long len, long ld)
{
	const WinoMats *w = &g->w;
	int m = w->m, n = w->n, nn = n * n;
	LLVMValueRef x[WINO_MAX_N * WINO_MAX_N], y[WINO_MAX_N * WINO_MAX_N];
	Loop lt, lv;
	LLVMValueRef tl = loop_begin(cg, &lt, ci64(cg, 0), ci64(cg, len));
	LLVMValueRef t = iadd(cg, first, tl);
	LLVMValueRef tr = LLVMBuildSDiv(cg->b, t, ci64(cg, g->tw), "");
	LLVMValueRef tc = LLVMBuildSRem(cg->b, t, ci64(cg, g->tw), "");
	LLVMValueRef base = iadd(cg, imul(cg, tr, m * g->pitch), imul(cg, tc, (long)m * g->cs));
	LLVMValueRef cv = imul(cg, loop_begin(cg, &lv, ci64(cg, 0), ci64(cg, g->cs / 8)), 8);
	LLVMValueRef at = iadd(cg, base, cv);
	for (int i = 0; i < nn; i++)
		x[i] = load_v8(cg, src, iadd(cg, at, ci64(cg, (i / n) * g->pitch + (long)(i % n) * g->cs)));
	wino_sandwich(cg, w->BT, n, n, n, x, y);
	LLVMValueRef vt = iadd(cg, imul(cg, tl, g->cs), cv);
	for (int xi = 0; xi < nn; xi++)
		store_v8(cg, y[xi], V, iadd(cg, vt, ci64(cg, (long)xi * ld * g->cs)));
	loop_end(cg, &lv);
	loop_end(cg, &lt);
}

/* One chunk: len tiles from tile first (len a constant). */
static void wino_chunk(Cg *cg, const IRLayer *l, const WinoGeo *g, int variant, const WinoArgs *a,
                       LLVMValueRef first, int len)
{
	const WinoMats *w = &g->w;
	int m = w->m, n = w->n, nn = n * n, ow = g->tw * m;
	LLVMValueRef x[WINO_MAX_N * WINO_MAX_N], y[WINO_MAX_N * WINO_MAX_N];
	Loop lt, lv, lf, lx, lb;
	/* 1. V: the input transform of each tile */
	wino_input(cg, g, a->src, a->V, first, len, IR_WINO_TILES);
	LLVMValueRef tl, t, tr, tc;
	/* 2. M: n*n products over the source channels */
	LLVMValueRef fb = loop_begin(cg, &lf, ci64(cg, 0), ci64(cg, g->co / (8 * g->nv)));
	LLVMValueRef xi = loop_begin(cg, &lx, ci64(cg, 0), ci64(cg, nn));
	if (len / g->R) {
		LLVMValueRef blk = loop_begin(cg, &lb, ci64(cg, 0), ci64(cg, len / g->R));
		wino_product(cg, g, a, fb, xi, imul(cg, blk, g->R), g->R);
		loop_end(cg, &lb);
	}
	if (len % g->R)
		wino_product(cg, g, a, fb, xi, ci64(cg, len - len % g->R), len % g->R);
	loop_end(cg, &lx);
	loop_end(cg, &lf);
	/* 3. Y: the output transform, bias and relu as tc_tile */
	tl = loop_begin(cg, &lt, ci64(cg, 0), ci64(cg, len));
	t = iadd(cg, first, tl);
	tr = LLVMBuildSDiv(cg->b, t, ci64(cg, g->tw), "");
	tc = LLVMBuildSRem(cg->b, t, ci64(cg, g->tw), "");
	LLVMValueRef ob = imul(cg, iadd(cg, imul(cg, tr, (long)m * ow), imul(cg, tc, m)), g->co);
	LLVMValueRef fo = imul(cg, loop_begin(cg, &lv, ci64(cg, 0), ci64(cg, g->co / 8)), 8);
	LLVMValueRef mt = iadd(cg, imul(cg, tl, g->co), fo);
	for (int i = 0; i < nn; i++)
		x[i] = load_v8(cg, a->M, iadd(cg, mt, ci64(cg, (long)i * IR_WINO_TILES * g->co)));
	wino_sandwich(cg, w->AT, m, n, n, x, y);
	LLVMValueRef zero = LLVMConstNull(v8_type(cg));
	LLVMValueRef bias = variant == 0 && l->b >= 0 ? load_v8(cg, a->bias, fo) : NULL;
	for (int u = 0; u < m; u++)
		for (int v = 0; v < m; v++) {
			LLVMValueRef s = y[u * m + v];
			LLVMValueRef to = iadd(cg, ob, iadd(cg, fo, ci64(cg, ((long)u * ow + v) * g->co)));
			if (bias)
				s = LLVMBuildFAdd(cg->b, s, bias, "");
			if (variant == 0 && l->act == ACT_RELU)   /* olt keeps NaN, as emit_act */
				s = LLVMBuildSelect(cg->b, LLVMBuildFCmp(cg->b, LLVMRealOLT, s, zero, ""), zero, s, "");
			if (variant == 2)
				s = LLVMBuildFAdd(cg->b, load_v8(cg, a->out, to), s, "");
			store_v8(cg, s, a->out, to);
		}
	loop_end(cg, &lv);
	loop_end(cg, &lt);
}

/* wino_tile(src, U, out, b, scratch): tc_tile's job (same variants) for a
 * Winograd pass; scratch holds a chunk's V and M. */
static LLVMValueRef build_wino_tile(Cg *cg, const IRLayer *l, int li, int variant)
{
	WinoGeo g;
	wino_geo(cg->net, l, variant == 1 || variant == 2 ? IR_WINO_DATA : IR_WINO_FWD, &g);
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_pf32, cg->t_pf32, cg->t_pf32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 5, true);
	WinoArgs a = { LLVMGetParam(f, 0), LLVMGetParam(f, 1), LLVMGetParam(f, 2), LLVMGetParam(f, 3),
	               LLVMGetParam(f, 4), NULL, {0} };
	a.M = elem_ptr(cg, a.V, ci64(cg, g.vsize));
	acc_vars_v8(cg, a.acc, TC_PIX_REGS);
	long full = g.tiles / IR_WINO_TILES;
	if (full) {
		Loop lc;
		LLVMValueRef c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, full));
		wino_chunk(cg, l, &g, variant, &a, imul(cg, c, IR_WINO_TILES), IR_WINO_TILES);
		loop_end(cg, &lc);
	}
	if (g.tiles % IR_WINO_TILES)
		wino_chunk(cg, l, &g, variant, &a, ci64(cg, full * IR_WINO_TILES), (int)(g.tiles % IR_WINO_TILES));
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* The weight gradient: the forward's algorithm run backwards. With E =
 * A dY AT (n x n from each m x m tile of the error) and V the input
 * transform of the same tile, dU[xi][f][c] = sum over tiles and samples of
 * E[xi][t][f] V[xi][t][c], and dW = GT dU G. Per sample, V and E of every
 * tile go to scratch, then per position xi a register-tiled product over
 * the tiles (R filters by nv vectors of channels) adds into the part's dU;
 * after the part's samples, dW goes into its partials (wino_wgrad_out). */
static void wino_wgrad_tile(const WinoGeo *g, int *R, int *nv)
{
	*nv = g->cs % 16 == 0 ? 2 : 1;
	*R = 1;
	static const int rows[] = { 6, 4, 3, 2, 1 };
	for (int k = 0; k < 5; k++)
		if (g->co % rows[k] == 0 && rows[k] * *nv <= TC_PIX_REGS) {
			*R = rows[k];
			return;
		}
}

/* L transposed: rows x cols of L become cols x rows */
static void wino_transpose(const double L[][WINO_MAX_N], int rows, int cols, double T[][WINO_MAX_N])
{
	for (int i = 0; i < rows; i++)
		for (int j = 0; j < cols; j++)
			T[j][i] = L[i][j];
}

/* wino_wgrad(xp, d, dU, scratch): one sample's padded image and error
 * into dU[xi][f][c] */
static LLVMValueRef build_wino_wgrad(Cg *cg, const IRLayer *l, int li, int variant)
{
	WinoGeo g;
	wino_geo(cg->net, l, IR_WINO_WGRAD, &g);
	int m = g.w.m, n = g.w.n, nn = n * n, C = g.cs, F = g.co, ow = g.tw * m, R, nv;
	long T = g.tiles;
	wino_wgrad_tile(&g, &R, &nv);
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_pf32, cg->t_pf32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 4, true);
	LLVMValueRef xp = LLVMGetParam(f, 0), d = LLVMGetParam(f, 1), dU = LLVMGetParam(f, 2);
	LLVMValueRef V = LLVMGetParam(f, 3), E = elem_ptr(cg, V, ci64(cg, nn * T * C));
	LLVMValueRef acc[TC_PIX_REGS], w[2];
	acc_vars_v8(cg, acc, R * nv);
	/* 1. V of every tile */
	wino_input(cg, &g, xp, V, ci64(cg, 0), T, T);
	/* 2. E = A dY AT of every tile, 8 filters at a time */
	double A[WINO_MAX_N][WINO_MAX_N];
	wino_transpose(g.w.AT, m, n, A);
	LLVMValueRef y[WINO_MAX_N * WINO_MAX_N], e[WINO_MAX_N * WINO_MAX_N];
	Loop lt, lv, lx, lf, lc;
	LLVMValueRef t = loop_begin(cg, &lt, ci64(cg, 0), ci64(cg, T));
	LLVMValueRef tr = LLVMBuildSDiv(cg->b, t, ci64(cg, g.tw), "");
	LLVMValueRef tc = LLVMBuildSRem(cg->b, t, ci64(cg, g.tw), "");
	LLVMValueRef base = imul(cg, iadd(cg, imul(cg, tr, (long)m * ow), imul(cg, tc, m)), F);
	LLVMValueRef fv = imul(cg, loop_begin(cg, &lv, ci64(cg, 0), ci64(cg, F / 8)), 8);
	for (int u = 0; u < m; u++)
		for (int v = 0; v < m; v++)
			y[u * m + v] = load_v8(cg, d, iadd(cg, iadd(cg, base, fv), ci64(cg, ((long)u * ow + v) * F)));
	wino_sandwich(cg, A, n, m, m, y, e);
	LLVMValueRef et = iadd(cg, imul(cg, t, F), fv);
	for (int xi = 0; xi < nn; xi++)
		store_v8(cg, e[xi], E, iadd(cg, et, ci64(cg, (long)xi * T * F)));
	loop_end(cg, &lv);
	loop_end(cg, &lt);
	/* 3. dU[xi][f][c] += sum over t of E[xi][t][f] V[xi][t][c] */
	LLVMValueRef xi = loop_begin(cg, &lx, ci64(cg, 0), ci64(cg, nn));
	LLVMValueRef f0 = imul(cg, loop_begin(cg, &lf, ci64(cg, 0), ci64(cg, F / R)), R);
	LLVMValueRef c0 = imul(cg, loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C / (8 * nv))), 8L * nv);
	acc_zero_v8(cg, acc, R * nv);
	LLVMValueRef vb = iadd(cg, imul(cg, xi, T * C), c0), eb = iadd(cg, imul(cg, xi, T * F), f0);
	t = loop_begin(cg, &lt, ci64(cg, 0), ci64(cg, T));
	LLVMValueRef vt = iadd(cg, vb, imul(cg, t, C)), etf = iadd(cg, eb, imul(cg, t, F));
	for (int v = 0; v < nv; v++)
		w[v] = load_v8(cg, V, iadd(cg, vt, ci64(cg, 8L * v)));
	for (int r = 0; r < R; r++) {
		LLVMValueRef ev = splat_v8(cg, load_f32(cg, E, iadd(cg, etf, ci64(cg, r))));
		for (int v = 0; v < nv; v++)
			acc_fmuladd_v8(cg, acc[r * nv + v], ev, w[v]);
	}
	loop_end(cg, &lt);
	LLVMValueRef ub = iadd(cg, imul(cg, iadd(cg, imul(cg, xi, F), f0), C), c0);
	for (int r = 0; r < R; r++)
		for (int v = 0; v < nv; v++) {
			LLVMValueRef at = iadd(cg, ub, ci64(cg, (long)r * C + 8L * v));
			acc_add_to_v8(cg, acc[r * nv + v], dU, at);
		}
	loop_end(cg, &lc);
	loop_end(cg, &lf);
	loop_end(cg, &lx);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* wino_wgrad_out(dU, G): G[f][(i*kw + j)*C + c] += (GT dU G)[i][j], the
 * part's partials in patch order */
static LLVMValueRef build_wino_wgrad_out(Cg *cg, const IRLayer *l, int li, int variant)
{
	WinoGeo g;
	wino_geo(cg->net, l, IR_WINO_WGRAD, &g);
	int n = g.w.n, r = l->kh, C = g.cs, F = g.co;
	long patch = ir_conv_patch(l);
	double GT[WINO_MAX_N][WINO_MAX_N];
	wino_transpose(g.w.G, n, r, GT);
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 2, true);
	LLVMValueRef dU = LLVMGetParam(f, 0), G = LLVMGetParam(f, 1);
	LLVMValueRef x[WINO_MAX_N * WINO_MAX_N], y[WINO_MAX_N * WINO_MAX_N];
	Loop lf, lc;
	LLVMValueRef fi = loop_begin(cg, &lf, ci64(cg, 0), ci64(cg, F));
	LLVMValueRef cv = imul(cg, loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C / 8)), 8);
	LLVMValueRef ub = iadd(cg, imul(cg, fi, C), cv);
	for (int xi = 0; xi < n * n; xi++)
		x[xi] = load_v8(cg, dU, iadd(cg, ub, ci64(cg, (long)xi * F * C)));
	wino_sandwich(cg, GT, r, n, n, x, y);
	LLVMValueRef gb = iadd(cg, imul(cg, fi, patch), cv);
	for (int q = 0; q < r * r; q++) {
		LLVMValueRef at = iadd(cg, gb, ci64(cg, (long)q * C));
		store_v8(cg, LLVMBuildFAdd(cg->b, load_v8(cg, G, at), y[q], ""), G, at);
	}
	loop_end(cg, &lc);
	loop_end(cg, &lf);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* A tiled pass's kernel: tc_tile, or wino_tile where the pass is
 * Winograd's (then its weights are U, in wu, and it takes a scratch for V
 * and M). A conv on few input channels always gets tc_tile: wino_geo
 * wants conv_tiled. */
typedef struct TilePass { bool wino; LLVMValueRef fn, w; } TilePass;

static TilePass tile_pass(Cg *cg, const IRLayer *l, int li, const ConvScratch *cs, int pass,
                          int variant)
{
	WinoGeo wg;
	TilePass tp = { wino_geo(cg->net, l, pass, &wg), NULL, NULL };
	tp.fn = tp.wino ? helper(cg, build_wino_tile, "wino_tile", l, li, variant)
	                : helper(cg, build_tc_tile, "tc_tile", l, li, variant);
	tp.w = tp.wino ? cs->wu : cs->wp;
	return tp;
}

/* dst = the tiles of the padded src (bias b, or a null pointer) */
static void emit_tile(Cg *cg, const TilePass *tp, LLVMValueRef src, LLVMValueRef dst, LLVMValueRef b,
                      LLVMValueRef scratch)
{
	LLVMValueRef args[] = { src, tp->w, dst, b, scratch };
	call_fn(cg, tp->fn, args, tp->wino ? 5 : 4);
}

/* The kernel w in tile order into wp (tc_weights; variant 0: the
 * forward's, 1: the data gradient's, flipped) and, where the pass is
 * Winograd's, U = G w GT into wu: once per pass, before its body. */
static void emit_tiled_weights(Cg *cg, const IRLayer *l, int li, int variant, const ConvScratch *cs,
                               LLVMValueRef w)
{
	emit_tc_weights(cg, l, li, variant, cs->wp, w);
	WinoGeo wg;
	if (wino_geo(cg->net, l, variant ? IR_WINO_DATA : IR_WINO_FWD, &wg)) {
		LLVMValueRef args[] = { cs->wu, cs->wp };
		call_fn(cg, helper(cg, build_wino_weights, "wino_weights", l, li, variant), args, 2);
	}
}

/* Forward of a tiled conv over samples [lo, hi): per sample its padded
 * image, then the tiles; W is already in tile order (wp). */
static LLVMValueRef build_tc_fwd_body(Cg *cg, const IRLayer *l, int li, int variant)
{
	IRTiledGeo g;
	ir_tiled_geo(l, &g);
	ConvBody cb = begin_conv_body(cg, l, li, BODY_Y | BODY_BIAS, 0);
	LLVMValueRef xp = cb.cols;
	emit_zero(cg, xp, ci64(cg, g.xsize));
	LLVMValueRef pad = helper(cg, build_tc_pad, "tc_pad", l, li, 0);
	TilePass tp = tile_pass(cg, l, li, &cb.cs, IR_WINO_FWD, 0);
	Loop ls;
	LLVMValueRef s = samples_begin(cg, &cb, l, pad, &ls);
	LLVMValueRef ys = sample_ptr(cg, cb.y, s, l->out);
	emit_tile(cg, &tp, xp, ys, cb.b, elem_ptr(cg, xp, ci64(cg, round_up(g.xsize + g.dsize, 16))));
	if (l->act != ACT_RELU)   /* relu is done as the tile is stored */
		emit_bias_act(cg, l, li, ys, null_f32(cg), ci64(cg, pixels(l->out_shape)));
	loop_end(cg, &ls);
	return end_conv_body(cg, &cb);
}

static void forward_conv(Cg *cg, LLVMValueRef bufs, LLVMValueRef n, const IRLayer *l, int li)
{
	ConvScratch cs = conv_scratch(cg, bufs, l);
	IRTiledGeo tg;
	if (conv_tiled_fwd(cg->net, l, &tg)) {
		emit_tiled_weights(cg, l, li, 0, &cs, slot_ptr(cg, bufs, l->W));
		emit_parallel(cg, helper(cg, build_tc_fwd_body, "tc_fwd", l, li, 0), bufs, n);
		return;
	}
	DirectGeo g;
	if (conv_small_direct(cg->net, l, &g)) {
		emit_parallel(cg, helper(cg, build_dc_fwd_body, "dc_fwd_body", l, li, 0), bufs, n);
		return;
	}
	if (ir_conv_direct(l)) {   /* 1x1, stride 1: one product over every pixel */
		long patch = ir_conv_patch(l);
		LLVMValueRef rows = imul(cg, n64(cg, n), pixels(l->out_shape));
		LLVMValueRef y = slot_ptr(cg, bufs, l->y);
		emit_sgemm(cg, 0, 1, to_i32(cg, rows), ci32(cg, l->out_shape.c), ci32(cg, (int)patch),
		           layer_input_ptr(cg, bufs, l), (int)patch, slot_ptr(cg, bufs, l->W),
		           (int)patch, 0.0, y, l->out_shape.c);
		emit_bias_act(cg, l, li, y, opt_slot_ptr(cg, bufs, l->b), rows);
		return;
	}
	if (cs.wp)
		emit_permute(cg, l, li, 0, cs.wp, slot_ptr(cg, bufs, l->W), NULL);
	emit_parallel(cg, helper(cg, build_conv_fwd_body, "conv_fwd", l, li, 0), bufs, n);
}

/* ---- tables in the frame ---- */

/* A per-channel array in the helper's frame (C is a constant). */
static LLVMValueRef frame_array(Cg *cg, LLVMTypeRef t, int c)
{
	LLVMValueRef a = entry_alloca(cg, LLVMArrayType(t, (unsigned)c), "");
	return LLVMBuildBitCast(cg->b, a, LLVMPointerType(t, 0), "");
}

static LLVMValueRef elem_ptr_t(Cg *cg, LLVMTypeRef t, LLVMValueRef base, LLVMValueRef idx)
{
	return LLVMBuildInBoundsGEP2(cg->b, t, base, &idx, 1, "");
}

static LLVMValueRef load_t(Cg *cg, LLVMTypeRef t, LLVMValueRef base, LLVMValueRef idx)
{
	return LLVMBuildLoad2(cg->b, t, elem_ptr_t(cg, t, base, idx), "");
}

static void store_t(Cg *cg, LLVMTypeRef t, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx)
{
	LLVMBuildStore(cg->b, v, elem_ptr_t(cg, t, base, idx));
}

static LLVMValueRef f2d(Cg *cg, LLVMValueRef v) { return LLVMBuildFPExt(cg->b, v, cg->t_f64, ""); }
static LLVMValueRef d2f(Cg *cg, LLVMValueRef v) { return LLVMBuildFPTrunc(cg->b, v, cg->t_f32, ""); }
static LLVMValueRef cf64(Cg *cg, double v) { return LLVMConstReal(cg->t_f64, v); }

static LLVMValueRef dsqrt(Cg *cg, LLVMValueRef v)
{
	LLVMValueRef f = LLVMGetIntrinsicDeclaration(cg->mod, LLVMLookupIntrinsicID("llvm.sqrt", 9),
	                                             &cg->t_f64, 1);
	return LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(f), f, &v, 1, "");
}

/* ---- parallel loops of shared helpers ----
 * A helper shared by layers of the same signature takes its tensors as
 * arguments, not slots; its parallel loops get them as a context of
 * pointers that the caller fills in its frame (emit_parallel_ptrs), and
 * their bodies read them back by position (part_ptr). */
static LLVMValueRef emit_parallel_ptrs(Cg *cg, LLVMValueRef body, LLVMValueRef *ptrs, int k,
                                       LLVMValueRef count)
{
	LLVMValueRef ctx = frame_array(cg, cg->t_pf32, k);
	for (int i = 0; i < k; i++)
		store_t(cg, cg->t_pf32, LLVMBuildBitCast(cg->b, ptrs[i], cg->t_pf32, ""), ctx, ci64(cg, i));
	LLVMTypeRef t_pi8 = LLVMPointerType(LLVMInt8TypeInContext(cg->ctx), 0);
	LLVMValueRef args[] = { body, LLVMBuildBitCast(cg->b, ctx, t_pi8, ""), count,
	                        ci32(cg, IR_MAX_PARTS) };
	return LLVMBuildCall2(cg->b, cg->pfor_ty, cg->pfor, args, 4, "");
}

/* A part body named cg->helper_name: samples [lo, hi), part number part. */
typedef struct Part { LLVMValueRef ctx, lo, hi, part; } Part;

static Part begin_part_body(Cg *cg)
{
	LLVMTypeRef ps[4];
	LLVMGetParamTypes(cg->range_ty, ps);
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 4, true);
	return (Part){ LLVMBuildBitCast(cg->b, LLVMGetParam(f, 0), cg->t_ppf32, ""), LLVMGetParam(f, 1),
	               LLVMGetParam(f, 2), n64(cg, LLVMGetParam(f, 3)) };
}

static LLVMValueRef part_ptr(Cg *cg, const Part *p, int k)
{
	return load_t(cg, cg->t_pf32, p->ctx, ci64(cg, k));
}

static LLVMValueRef as_f64_ptr(Cg *cg, LLVMValueRef p)
{
	return LLVMBuildBitCast(cg->b, p, LLVMPointerType(cg->t_f64, 0), "");
}

/* dst[0..C) = src[0..C): a small per-channel table copied into the body's
 * frame, where the vectoriser knows nothing else writes it. */
static LLVMValueRef frame_copy(Cg *cg, LLVMTypeRef t, LLVMValueRef src, int C)
{
	LLVMValueRef dst = frame_array(cg, t, C);
	Loop lc;
	LLVMValueRef c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
	store_t(cg, t, load_t(cg, t, src, c), dst, c);
	loop_end(cg, &lc);
	return dst;
}

/* ---- batchnorm ----
 * The passes over the batch run in the parallel loops. A pass that sums
 * per channel leaves each part's sums (double) in the caller's table of
 * IR_MAX_PARTS rows of bn_part_stride doubles (whole cache lines, so parts
 * never share one); the caller adds the rows of the parts that ran. */
static long bn_part_stride(int C) { return round_up(2L * C, 8); }

static LLVMValueRef bn_part_table(Cg *cg, int C)
{
	LLVMValueRef t = frame_array(cg, cg->t_f64, (int)(IR_MAX_PARTS * bn_part_stride(C)));
	LLVMSetAlignment(LLVMGetOperand(t, 0), 64);   /* the alloca under frame_array's cast */
	return t;
}

/* total[j] = sum over parts p < parts of rows[p * stride + j], j < count */
static void emit_sum_parts(Cg *cg, LLVMValueRef rows, LLVMValueRef parts, long stride, int count,
                           LLVMValueRef total)
{
	Loop lj, lp;
	LLVMValueRef j = loop_begin(cg, &lj, ci64(cg, 0), ci64(cg, count));
	LLVMValueRef acc = entry_var(cg, cg->t_f64, cf64(cg, 0));
	LLVMBuildStore(cg->b, cf64(cg, 0), acc);
	LLVMValueRef p = loop_begin(cg, &lp, ci64(cg, 0), n64(cg, parts));
	LLVMValueRef v = load_t(cg, cg->t_f64, rows, iadd(cg, imul(cg, p, stride), j));
	LLVMBuildStore(cg->b, LLVMBuildFAdd(cg->b, LLVMBuildLoad2(cg->b, cg->t_f64, acc, ""), v, ""), acc);
	loop_end(cg, &lp);
	store_t(cg, cg->t_f64, LLVMBuildLoad2(cg->b, cg->t_f64, acc, ""), total, j);
	loop_end(cg, &lj);
}

/* The moments of one part's rows in one pass, shifted by the batch's
 * first row K (so the variance does not come from the difference of two
 * large sums): s1[c] = sum (x - K), s2[c] = sum (x - K)^2, in double.
 * ctx (x, the parts' table). */
static LLVMValueRef build_bn_moments(Cg *cg, const IRLayer *l, int li, int variant)
{
	int C = l->out_shape.c;
	long pix = pixels(l->out_shape), stride = bn_part_stride(C);
	Part p = begin_part_body(cg);
	LLVMValueRef f = cg->fn;
	LLVMValueRef x = part_ptr(cg, &p, 0);
	LLVMValueRef out = elem_ptr_t(cg, cg->t_f64, as_f64_ptr(cg, part_ptr(cg, &p, 1)),
	                              imul(cg, p.part, stride));
	LLVMValueRef k = frame_array(cg, cg->t_f64, C);
	LLVMValueRef s1 = frame_array(cg, cg->t_f64, C), s2 = frame_array(cg, cg->t_f64, C);
	Loop lc, lr;
	LLVMValueRef c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
	store_t(cg, cg->t_f64, f2d(cg, load_f32(cg, x, c)), k, c);
	store_t(cg, cg->t_f64, cf64(cg, 0), s1, c);
	store_t(cg, cg->t_f64, cf64(cg, 0), s2, c);
	loop_end(cg, &lc);
	LLVMValueRef r = loop_begin(cg, &lr, imul(cg, p.lo, pix), imul(cg, p.hi, pix));
	LLVMValueRef row = elem_ptr(cg, x, imul(cg, r, C));
	c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
	LLVMValueRef v = LLVMBuildFSub(cg->b, f2d(cg, load_f32(cg, row, c)), load_t(cg, cg->t_f64, k, c), "");
	store_t(cg, cg->t_f64, LLVMBuildFAdd(cg->b, load_t(cg, cg->t_f64, s1, c), v, ""), s1, c);
	store_t(cg, cg->t_f64, LLVMBuildFAdd(cg->b, load_t(cg, cg->t_f64, s2, c),
	                                     LLVMBuildFMul(cg->b, v, v, ""), ""), s2, c);
	loop_end(cg, &lc);
	loop_end(cg, &lr);
	c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
	store_t(cg, cg->t_f64, load_t(cg, cg->t_f64, s1, c), out, c);
	store_t(cg, cg->t_f64, load_t(cg, cg->t_f64, s2, c), out, iadd(cg, c, ci64(cg, C)));
	loop_end(cg, &lc);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* y[r, c] = f(x[r, c] * scale[c] + shift[c]) */
static void emit_affine_act(Cg *cg, Act act, LLVMValueRef x, LLVMValueRef y, LLVMValueRef rows,
                            int C, LLVMValueRef scale, LLVMValueRef shift)
{
	Loop lc, lr;
	LLVMValueRef r = loop_begin(cg, &lr, ci64(cg, 0), rows);
	LLVMValueRef off = imul(cg, r, C);
	LLVMValueRef xr = elem_ptr(cg, x, off), yr = elem_ptr(cg, y, off);
	LLVMValueRef c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
	LLVMValueRef v = fadd(cg, fmul(cg, load_f32(cg, xr, c), load_f32(cg, scale, c)),
	                      load_f32(cg, shift, c));
	store_f32(cg, emit_act(cg, act, v), yr, c);
	loop_end(cg, &lc);
	loop_end(cg, &lr);
}

/* One part's rows of the normalised output. ctx (x, y, scale, shift). */
static LLVMValueRef build_bn_affine(Cg *cg, const IRLayer *l, int li, int variant)
{
	int C = l->out_shape.c;
	long pix = pixels(l->out_shape);
	Part p = begin_part_body(cg);
	LLVMValueRef f = cg->fn;
	LLVMValueRef at = imul(cg, p.lo, l->out);
	LLVMValueRef x = elem_ptr(cg, part_ptr(cg, &p, 0), at), y = elem_ptr(cg, part_ptr(cg, &p, 1), at);
	LLVMValueRef scale = frame_copy(cg, cg->t_f32, part_ptr(cg, &p, 2), C);
	LLVMValueRef shift = frame_copy(cg, cg->t_f32, part_ptr(cg, &p, 3), C);
	emit_affine_act(cg, l->act, x, y, imul(cg, LLVMBuildSub(cg->b, p.hi, p.lo, ""), pix), C,
	                scale, shift);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* The runtime sums v[0..count) over the ranks of a data-parallel run with
 * synchronised batchnorm (a no-op otherwise). */
static void emit_allreduce(Cg *cg, LLVMValueRef v, int count)
{
	LLVMValueRef args[] = { v, ci32(cg, count) };
	call_fn(cg, cg->allreduce, args, 2);
}

/* Batchnorm forward. variant 0 (training): the batch's mean and biased
 * variance, saved for the backward as mean and 1/sqrt(var + eps); running
 * statistics move by momentum, the variance's unbiased. One pass over the
 * batch gives each part's shifted moments (build_bn_moments); from their
 * sums this rank's mean and squared deviations M2. The sums of x (and the
 * row count, after them) go through wtn_allreduce, so a data-parallel run
 * can take the mean over the global batch; then each rank's squared
 * deviations from that mean, M2 + rows (its mean - the mean)^2, do too.
 * variant 1 (evaluation): the running statistics. Then the normalised
 * output in a second pass (build_bn_affine).
 * Params: (x, y, gamma, beta, rmean, rvar, mean, invstd, n). */
static LLVMValueRef build_bn_forward(Cg *cg, const IRLayer *l, int li, int variant)
{
	int C = l->out_shape.c;
	LLVMTypeRef ps[9];
	for (int k = 0; k < 8; k++)
		ps[k] = cg->t_pf32;
	ps[8] = cg->t_i32;
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 9, true);
	LLVMValueRef P[9];
	for (int k = 0; k < 9; k++)
		P[k] = LLVMGetParam(f, (unsigned)k);
	LLVMValueRef n = n64(cg, P[8]);
	LLVMValueRef rows = imul(cg, n, pixels(l->out_shape));
	LLVMValueRef scale = frame_array(cg, cg->t_f32, C), shift = frame_array(cg, cg->t_f32, C);
	LLVMValueRef eps = cf64(cg, l->eps);
	Loop lc;
	LLVMValueRef c;
	if (variant == 0) {
		long stride = bn_part_stride(C);
		LLVMValueRef table = bn_part_table(cg, C);
		LLVMValueRef ctx[] = { P[0], table };
		LLVMValueRef parts = emit_parallel_ptrs(cg, helper(cg, build_bn_moments, "bn_moments", l, li, 0),
		                                        ctx, 2, n);
		LLVMValueRef s = frame_array(cg, cg->t_f64, 2 * C);
		emit_sum_parts(cg, table, parts, stride, 2 * C, s);
		LLVMValueRef sum = frame_array(cg, cg->t_f64, C + 1), sq = frame_array(cg, cg->t_f64, C);
		LLVMValueRef lmean = frame_array(cg, cg->t_f64, C);
		LLVMValueRef cnt_at = elem_ptr_t(cg, cg->t_f64, sum, ci64(cg, C));
		LLVMValueRef here = LLVMBuildSIToFP(cg->b, rows, cg->t_f64, "");
		LLVMValueRef some = LLVMBuildFCmp(cg->b, LLVMRealOGT, here, cf64(cg, 0), "");
		c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
		LLVMValueRef k = f2d(cg, load_f32(cg, P[0], c));
		LLVMValueRef s1 = load_t(cg, cg->t_f64, s, c);
		LLVMValueRef s2 = load_t(cg, cg->t_f64, s, iadd(cg, c, ci64(cg, C)));
		LLVMValueRef d1 = LLVMBuildFDiv(cg->b, s1, here, "");
		LLVMValueRef m2 = LLVMBuildFSub(cg->b, s2, LLVMBuildFMul(cg->b, s1, d1, ""), "");
		m2 = LLVMBuildSelect(cg->b, some, m2, cf64(cg, 0), "");
		store_t(cg, cg->t_f64, m2, sq, c);
		store_t(cg, cg->t_f64, LLVMBuildSelect(cg->b, some, LLVMBuildFAdd(cg->b, k, d1, ""), cf64(cg, 0), ""),
		        lmean, c);
		store_t(cg, cg->t_f64, LLVMBuildFAdd(cg->b, LLVMBuildFMul(cg->b, here, k, ""), s1, ""), sum, c);
		loop_end(cg, &lc);
		LLVMBuildStore(cg->b, here, cnt_at);
		emit_allreduce(cg, sum, C + 1);
		LLVMValueRef cnt = LLVMBuildLoad2(cg->b, cg->t_f64, cnt_at, "");
		c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
		LLVMValueRef mu = LLVMBuildFDiv(cg->b, load_t(cg, cg->t_f64, sum, c), cnt, "");
		store_t(cg, cg->t_f64, mu, sum, c);
		LLVMValueRef dm = LLVMBuildFSub(cg->b, load_t(cg, cg->t_f64, lmean, c), mu, "");
		store_t(cg, cg->t_f64, LLVMBuildFAdd(cg->b, load_t(cg, cg->t_f64, sq, c),
		                                     LLVMBuildFMul(cg->b, here, LLVMBuildFMul(cg->b, dm, dm, ""), ""), ""),
		        sq, c);
		loop_end(cg, &lc);
		emit_allreduce(cg, sq, C);
		/* unbiased: cnt / (cnt - 1), with one value per channel taken as is */
		LLVMValueRef unb = LLVMBuildFDiv(cg->b, cnt, LLVMBuildFSub(cg->b, cnt, cf64(cg, 1), ""), "");
		unb = LLVMBuildSelect(cg->b, LLVMBuildFCmp(cg->b, LLVMRealOGT, cnt, cf64(cg, 1), ""),
		                      unb, cf64(cg, 1), "");
		LLVMValueRef m = cf64(cg, l->momentum), keep = cf64(cg, 1 - l->momentum);
		c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
		LLVMValueRef mean = load_t(cg, cg->t_f64, sum, c);
		LLVMValueRef var = LLVMBuildFDiv(cg->b, load_t(cg, cg->t_f64, sq, c), cnt, "");
		LLVMValueRef inv = LLVMBuildFDiv(cg->b, cf64(cg, 1), dsqrt(cg, LLVMBuildFAdd(cg->b, var, eps, "")), "");
		store_f32(cg, d2f(cg, mean), P[6], c);
		store_f32(cg, d2f(cg, inv), P[7], c);
		LLVMValueRef rm = LLVMBuildFAdd(cg->b, LLVMBuildFMul(cg->b, keep, f2d(cg, load_f32(cg, P[4], c)), ""),
		                                LLVMBuildFMul(cg->b, m, mean, ""), "");
		LLVMValueRef rv = LLVMBuildFAdd(cg->b, LLVMBuildFMul(cg->b, keep, f2d(cg, load_f32(cg, P[5], c)), ""),
		                                LLVMBuildFMul(cg->b, m, LLVMBuildFMul(cg->b, var, unb, ""), ""), "");
		store_f32(cg, d2f(cg, rm), P[4], c);
		store_f32(cg, d2f(cg, rv), P[5], c);
		LLVMValueRef sc = LLVMBuildFMul(cg->b, f2d(cg, load_f32(cg, P[2], c)), inv, "");
		store_f32(cg, d2f(cg, sc), scale, c);
		store_f32(cg, d2f(cg, LLVMBuildFSub(cg->b, f2d(cg, load_f32(cg, P[3], c)),
		                                    LLVMBuildFMul(cg->b, mean, sc, ""), "")), shift, c);
		loop_end(cg, &lc);
	} else {
		c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
		LLVMValueRef var = f2d(cg, load_f32(cg, P[5], c));
		LLVMValueRef inv = LLVMBuildFDiv(cg->b, cf64(cg, 1), dsqrt(cg, LLVMBuildFAdd(cg->b, var, eps, "")), "");
		LLVMValueRef sc = LLVMBuildFMul(cg->b, f2d(cg, load_f32(cg, P[2], c)), inv, "");
		store_f32(cg, d2f(cg, sc), scale, c);
		store_f32(cg, d2f(cg, LLVMBuildFSub(cg->b, f2d(cg, load_f32(cg, P[3], c)),
		                                    LLVMBuildFMul(cg->b, f2d(cg, load_f32(cg, P[4], c)), sc, ""), "")),
		          shift, c);
		loop_end(cg, &lc);
	}
	LLVMValueRef ctx[] = { P[0], P[1], scale, shift };
	emit_parallel_ptrs(cg, helper(cg, build_bn_affine, "bn_affine", l, li, 0), ctx, 4, n);
	LLVMBuildRetVoid(cg->b);
	return f;
}

static void forward_batchnorm(Cg *cg, LLVMValueRef bufs, LLVMValueRef n, const IRLayer *l,
                              int li, bool eval)
{
	LLVMValueRef args[] = {
		layer_input_ptr(cg, bufs, l), slot_ptr(cg, bufs, l->y), slot_ptr(cg, bufs, l->W),
		slot_ptr(cg, bufs, l->b), slot_ptr(cg, bufs, l->rmean), slot_ptr(cg, bufs, l->rvar),
		slot_ptr(cg, bufs, l->aux), slot_ptr(cg, bufs, l->aux2), n,
	};
	call_fn(cg, helper(cg, build_bn_forward, "bn_forward", l, li, eval), args, 9);
}

/* ---- pools, flatten, add, activations ---- */

static LLVMValueRef as_i32_ptr(Cg *cg, LLVMValueRef p)
{
	return LLVMBuildBitCast(cg->b, p, cg->t_pi32, "");
}

/* Walks the window of every output pixel of n samples, like
 * emit_patch_walk: start(out offset) once per pixel, tap(src offset, out
 * offset) per in-image tap, finish(out offset) after the window. */
typedef struct PoolWalk {
	void (*start)(Cg *, const IRLayer *, LLVMValueRef *, LLVMValueRef);
	void (*tap)(Cg *, const IRLayer *, LLVMValueRef *, LLVMValueRef, LLVMValueRef, LLVMValueRef);
	void (*finish)(Cg *, const IRLayer *, LLVMValueRef *, LLVMValueRef);
} PoolWalk;

static void emit_pool_walk(Cg *cg, const IRLayer *l, LLVMValueRef *P, LLVMValueRef n,
                           const PoolWalk *pw)
{
	Shape in = l->in_shape, out = l->out_shape;
	Loop ls, lh, lw, li, lj;
	LLVMValueRef s = loop_begin(cg, &ls, ci64(cg, 0), n);
	LLVMValueRef oh = loop_begin(cg, &lh, ci64(cg, 0), ci64(cg, out.h));
	LLVMValueRef ow = loop_begin(cg, &lw, ci64(cg, 0), ci64(cg, out.w));
	LLVMValueRef o = imul(cg, iadd(cg, imul(cg, iadd(cg, imul(cg, s, out.h), oh), out.w), ow), out.c);
	if (pw->start)
		pw->start(cg, l, P, o);
	LLVMValueRef i = loop_begin(cg, &li, ci64(cg, 0), ci64(cg, l->kh));
	LLVMValueRef h = iadd(cg, imul(cg, oh, l->stride), LLVMBuildSub(cg->b, i, ci64(cg, l->pad), ""));
	LLVMBasicBlockRef hjoin = if_begin(cg, in_range(cg, h, in.h));
	LLVMValueRef j = loop_begin(cg, &lj, ci64(cg, 0), ci64(cg, l->kw));
	LLVMValueRef w = iadd(cg, imul(cg, ow, l->stride), LLVMBuildSub(cg->b, j, ci64(cg, l->pad), ""));
	LLVMBasicBlockRef wjoin = if_begin(cg, in_range(cg, w, in.w));
	LLVMValueRef pos = imul(cg, iadd(cg, imul(cg, h, in.w), w), in.c);  /* within the sample */
	pw->tap(cg, l, P, pos, imul(cg, s, l->in), o);
	if_end(cg, wjoin);
	loop_end(cg, &lj);
	if_end(cg, hjoin);
	loop_end(cg, &li);
	if (pw->finish)
		pw->finish(cg, l, P, o);
	loop_end(cg, &lw);
	loop_end(cg, &lh);
	loop_end(cg, &ls);
}

/* maxpool forward: P = (x, y, argmax); the first maximum in scan order
 * wins, NaN propagates (torch's rule), argmax is the offset in the sample. */
static void maxpool_start(Cg *cg, const IRLayer *l, LLVMValueRef *P, LLVMValueRef o)
{
	Loop lc;
	LLVMValueRef c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, l->out_shape.c));
	LLVMValueRef at = iadd(cg, o, c);
	store_f32(cg, cf32(cg, -__builtin_inff()), P[1], at);
	store_t(cg, cg->t_i32, ci32(cg, -1), P[2], at);
	loop_end(cg, &lc);
}

static void maxpool_tap(Cg *cg, const IRLayer *l, LLVMValueRef *P, LLVMValueRef pos,
                        LLVMValueRef sample, LLVMValueRef o)
{
	Loop lc;
	LLVMValueRef c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, l->out_shape.c));
	LLVMValueRef at = iadd(cg, o, c), src = iadd(cg, pos, c);
	LLVMValueRef v = load_f32(cg, P[0], iadd(cg, sample, src));
	LLVMValueRef best = load_f32(cg, P[1], at);
	LLVMValueRef arg = load_t(cg, cg->t_i32, P[2], at);
	LLVMValueRef take = LLVMBuildOr(cg->b, LLVMBuildFCmp(cg->b, LLVMRealOGT, v, best, ""),
	                                LLVMBuildOr(cg->b, LLVMBuildFCmp(cg->b, LLVMRealUNO, v, v, ""),
	                                            LLVMBuildICmp(cg->b, LLVMIntSLT, arg, ci32(cg, 0), ""), ""), "");
	/* a NaN already held stays */
	take = LLVMBuildAnd(cg->b, take, LLVMBuildFCmp(cg->b, LLVMRealORD, best, best, ""), "");
	store_f32(cg, LLVMBuildSelect(cg->b, take, v, best, ""), P[1], at);
	store_t(cg, cg->t_i32, LLVMBuildSelect(cg->b, take, to_i32(cg, src), arg, ""), P[2], at);
	loop_end(cg, &lc);
}

/* avgpool forward: P = (x, y); sum of the in-image taps over k*k */
static void avgpool_start(Cg *cg, const IRLayer *l, LLVMValueRef *P, LLVMValueRef o)
{
	Loop lc;
	LLVMValueRef c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, l->out_shape.c));
	store_f32(cg, cf32(cg, 0), P[1], iadd(cg, o, c));
	loop_end(cg, &lc);
}

static void avgpool_tap(Cg *cg, const IRLayer *l, LLVMValueRef *P, LLVMValueRef pos,
                        LLVMValueRef sample, LLVMValueRef o)
{
	Loop lc;
	LLVMValueRef c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, l->out_shape.c));
	LLVMValueRef at = iadd(cg, o, c);
	LLVMValueRef v = load_f32(cg, P[0], iadd(cg, sample, iadd(cg, pos, c)));
	store_f32(cg, fadd(cg, load_f32(cg, P[1], at), v), P[1], at);
	loop_end(cg, &lc);
}

static void avgpool_finish(Cg *cg, const IRLayer *l, LLVMValueRef *P, LLVMValueRef o)
{
	Loop lc;
	LLVMValueRef c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, l->out_shape.c));
	LLVMValueRef at = iadd(cg, o, c);
	store_f32(cg, fmul(cg, load_f32(cg, P[1], at), cf32(cg, 1.0 / (l->kh * l->kw))), P[1], at);
	loop_end(cg, &lc);
}

/* avgpool backward: P = (d, dx); every in-image tap gets d / (k*k) */
static void avgpool_back_tap(Cg *cg, const IRLayer *l, LLVMValueRef *P, LLVMValueRef pos,
                             LLVMValueRef sample, LLVMValueRef o)
{
	Loop lc;
	LLVMValueRef c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, l->out_shape.c));
	LLVMValueRef at = iadd(cg, sample, iadd(cg, pos, c));
	LLVMValueRef g = fmul(cg, load_f32(cg, P[0], iadd(cg, o, c)), cf32(cg, 1.0 / (l->kh * l->kw)));
	store_f32(cg, fadd(cg, load_f32(cg, P[1], at), g), P[1], at);
	loop_end(cg, &lc);
}

/* Every window inside the image (no padding reached): the maxpool forward
 * then needs no bounds checks and keeps each channel's running maximum in
 * registers across the window, the taps unrolled; same result as the walk
 * (the first maximum in scan order wins, NaN propagates). */
static bool pool_windows_inside(const IRLayer *l)
{
	Shape in = l->in_shape, out = l->out_shape;
	return l->pad == 0 && (out.h - 1) * l->stride + l->kh <= in.h
	       && (out.w - 1) * l->stride + l->kw <= in.w && l->kh * l->kw <= 16;
}

/* One channel c of the window whose first tap is at corner (within the
 * sample xs), the result at y[at] and argmax[at]. */
static void emit_max_window(Cg *cg, const IRLayer *l, LLVMValueRef *P, LLVMValueRef xs,
                            LLVMValueRef corner, LLVMValueRef o, LLVMValueRef c)
{
	Shape in = l->in_shape;
	LLVMValueRef best = NULL, arg = NULL;
	/* the argmax in 32 bits from the start: 8 lanes a vector, not 4 */
	LLVMValueRef c32 = LLVMBuildAdd(cg->b, to_i32(cg, corner), to_i32(cg, c), "");
	for (int i = 0; i < l->kh; i++)
		for (int j = 0; j < l->kw; j++) {
			long tap = ((long)i * in.w + j) * in.c;
			LLVMValueRef src = iadd(cg, iadd(cg, corner, ci64(cg, tap)), c);
			LLVMValueRef at = LLVMBuildAdd(cg->b, c32, ci32(cg, (int)tap), "");
			LLVMValueRef v = load_f32(cg, xs, src);
			if (!best) {
				best = v, arg = at;
				continue;
			}
			LLVMValueRef take = LLVMBuildOr(cg->b, LLVMBuildFCmp(cg->b, LLVMRealOGT, v, best, ""),
			                                LLVMBuildFCmp(cg->b, LLVMRealUNO, v, v, ""), "");
			take = LLVMBuildAnd(cg->b, take, LLVMBuildFCmp(cg->b, LLVMRealORD, best, best, ""), "");
			best = LLVMBuildSelect(cg->b, take, v, best, "");
			arg = LLVMBuildSelect(cg->b, take, at, arg, "");
		}
	LLVMValueRef at = iadd(cg, o, c);
	store_f32(cg, best, P[1], at);
	store_t(cg, cg->t_i32, arg, P[2], at);
}

typedef struct MaxWindow { const IRLayer *l; LLVMValueRef *P, xs, corner, o; } MaxWindow;
static void max_window_each(Cg *cg, void *ctx, LLVMValueRef c)
{
	MaxWindow *mw = ctx;
	emit_max_window(cg, mw->l, mw->P, mw->xs, mw->corner, mw->o, c);
}

static void emit_maxpool_inside(Cg *cg, const IRLayer *l, LLVMValueRef *P, LLVMValueRef n)
{
	Shape in = l->in_shape, out = l->out_shape;
	Loop ls, lh, lw;
	LLVMValueRef s = loop_begin(cg, &ls, ci64(cg, 0), n);
	LLVMValueRef xs = elem_ptr(cg, P[0], imul(cg, s, l->in));
	LLVMValueRef oh = loop_begin(cg, &lh, ci64(cg, 0), ci64(cg, out.h));
	LLVMValueRef ow = loop_begin(cg, &lw, ci64(cg, 0), ci64(cg, out.w));
	LLVMValueRef o = imul(cg, iadd(cg, imul(cg, iadd(cg, imul(cg, s, out.h), oh), out.w), ow), out.c);
	/* the window's first tap, within the sample, at channel 0 */
	LLVMValueRef corner = imul(cg, iadd(cg, imul(cg, imul(cg, oh, l->stride), in.w),
	                                    imul(cg, ow, l->stride)), in.c);
	MaxWindow mw = { l, P, xs, corner, o };
	emit_each(cg, out.c, max_window_each, &mw);
	loop_end(cg, &lw);
	loop_end(cg, &lh);
	loop_end(cg, &ls);
}

/* variant 0: forward (x, y, aux); 1: backward (d, dx) */
static LLVMValueRef build_pool(Cg *cg, const IRLayer *l, int li, int variant)
{
	static const PoolWalk max_fwd = { maxpool_start, maxpool_tap, NULL };
	static const PoolWalk avg_fwd = { avgpool_start, avgpool_tap, avgpool_finish };
	static const PoolWalk avg_bwd = { NULL, avgpool_back_tap, NULL };
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_pf32, cg->t_i32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 4, true);
	LLVMValueRef P[3] = { LLVMGetParam(f, 0), LLVMGetParam(f, 1), NULL };
	LLVMValueRef n = n64(cg, LLVMGetParam(f, 3));
	if (l->kind == OP_MAXPOOL) {
		P[2] = as_i32_ptr(cg, LLVMGetParam(f, 2));
		if (pool_windows_inside(l))
			emit_maxpool_inside(cg, l, P, n);
		else
			emit_pool_walk(cg, l, P, n, &max_fwd);
	} else {
		emit_pool_walk(cg, l, P, n, variant == 0 ? &avg_fwd : &avg_bwd);
	}
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* maxpool backward: dx[s, argmax] += d (params d, dx, argmax, n) */
static LLVMValueRef build_maxpool_back(Cg *cg, const IRLayer *l, int li, int variant)
{
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_pf32, cg->t_i32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 4, true);
	LLVMValueRef d = LLVMGetParam(f, 0), dx = LLVMGetParam(f, 1);
	LLVMValueRef arg = as_i32_ptr(cg, LLVMGetParam(f, 2));
	Loop ls, lo;
	LLVMValueRef s = loop_begin(cg, &ls, ci64(cg, 0), n64(cg, LLVMGetParam(f, 3)));
	LLVMValueRef dxs = elem_ptr(cg, dx, imul(cg, s, l->in));
	LLVMValueRef o = loop_begin(cg, &lo, ci64(cg, 0), ci64(cg, l->out));
	LLVMValueRef at = iadd(cg, imul(cg, s, l->out), o);
	LLVMValueRef a = load_t(cg, cg->t_i32, arg, at);
	LLVMBasicBlockRef join = if_begin(cg, LLVMBuildICmp(cg->b, LLVMIntSGE, a, ci32(cg, 0), ""));
	LLVMValueRef a64 = LLVMBuildSExt(cg->b, a, cg->t_i64, "");
	store_f32(cg, fadd(cg, load_f32(cg, dxs, a64), load_f32(cg, d, at)), dxs, a64);
	if_end(cg, join);
	loop_end(cg, &lo);
	loop_end(cg, &ls);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* Windows that tile the input exactly (stride = kernel, no padding, no
 * rows or columns left over): every input position is in one window, so
 * the backward writes each once, d where the window took its maximum and
 * 0 elsewhere, with no zeroing pass before and no read of dx. */
static bool pool_windows_tile(const IRLayer *l)
{
	Shape in = l->in_shape, out = l->out_shape;
	return pool_windows_inside(l) && l->stride == l->kh && l->stride == l->kw
	       && out.h * l->kh == in.h && out.w * l->kw == in.w;
}

/* maxpool backward for tiling windows: dx[s, tap] = tap == argmax ? d : 0
 * (params d, dx, argmax, n) */
typedef struct MaxCover { const IRLayer *l; LLVMValueRef d, dx, arg, o, corner; } MaxCover;
static void max_cover_each(Cg *cg, void *ctx, LLVMValueRef c)
{
	MaxCover *mc = ctx;
	const IRLayer *l = mc->l;
	LLVMValueRef at = iadd(cg, mc->o, c);
	LLVMValueRef a = load_t(cg, cg->t_i32, mc->arg, at), g = load_f32(cg, mc->d, at);
	/* the argmax's tap offset, compared in 32 bits (8 lanes a vector) */
	LLVMValueRef rel = LLVMBuildSub(cg->b, a, LLVMBuildAdd(cg->b, to_i32(cg, mc->corner),
	                                                       to_i32(cg, c), ""), "");
	for (int i = 0; i < l->kh; i++)
		for (int j = 0; j < l->kw; j++) {
			long tap = ((long)i * l->in_shape.w + j) * l->in_shape.c;
			LLVMValueRef pos = iadd(cg, iadd(cg, mc->corner, ci64(cg, tap)), c);
			LLVMValueRef hit = LLVMBuildICmp(cg->b, LLVMIntEQ, rel, ci32(cg, (int)tap), "");
			store_f32(cg, LLVMBuildSelect(cg->b, hit, g, cf32(cg, 0), ""), mc->dx, pos);
		}
}

static LLVMValueRef build_maxpool_cover(Cg *cg, const IRLayer *l, int li, int variant)
{
	Shape in = l->in_shape, out = l->out_shape;
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_pf32, cg->t_i32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 4, true);
	LLVMValueRef d = LLVMGetParam(f, 0), dx = LLVMGetParam(f, 1);
	LLVMValueRef arg = as_i32_ptr(cg, LLVMGetParam(f, 2));
	Loop ls, lh, lw;
	LLVMValueRef s = loop_begin(cg, &ls, ci64(cg, 0), n64(cg, LLVMGetParam(f, 3)));
	LLVMValueRef dxs = elem_ptr(cg, dx, imul(cg, s, l->in));
	LLVMValueRef oh = loop_begin(cg, &lh, ci64(cg, 0), ci64(cg, out.h));
	LLVMValueRef ow = loop_begin(cg, &lw, ci64(cg, 0), ci64(cg, out.w));
	LLVMValueRef o = imul(cg, iadd(cg, imul(cg, iadd(cg, imul(cg, s, out.h), oh), out.w), ow), out.c);
	LLVMValueRef corner = imul(cg, iadd(cg, imul(cg, imul(cg, oh, l->stride), in.w),
	                                    imul(cg, ow, l->stride)), in.c);
	MaxCover mc = { l, d, dxs, arg, o, corner };
	emit_each(cg, out.c, max_cover_each, &mc);
	loop_end(cg, &lw);
	loop_end(cg, &lh);
	loop_end(cg, &ls);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* global_avgpool: variant 0 forward y[s, c] = mean over pixels of x;
 * variant 1 backward dx[s, p, c] (+)= d[s, c] / pixels (2: accumulate). */
static LLVMValueRef build_gap(Cg *cg, const IRLayer *l, int li, int variant)
{
	int C = l->in_shape.c;
	long npix = pixels(l->in_shape);
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_i32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 3, true);
	LLVMValueRef a = LLVMGetParam(f, 0), b = LLVMGetParam(f, 1);
	LLVMValueRef inv = cf32(cg, 1.0 / (double)npix);
	Loop ls, lp, lc;
	LLVMValueRef s = loop_begin(cg, &ls, ci64(cg, 0), n64(cg, LLVMGetParam(f, 2)));
	LLVMValueRef row = elem_ptr(cg, variant == 0 ? b : a, imul(cg, s, C));
	LLVMValueRef img = elem_ptr(cg, variant == 0 ? a : b, imul(cg, s, l->in));
	LLVMValueRef c;
	if (variant == 0) {
		c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
		store_f32(cg, cf32(cg, 0), row, c);
		loop_end(cg, &lc);
	}
	LLVMValueRef p = loop_begin(cg, &lp, ci64(cg, 0), ci64(cg, npix));
	LLVMValueRef px = elem_ptr(cg, img, imul(cg, p, C));
	c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
	if (variant == 0) {
		store_f32(cg, fadd(cg, load_f32(cg, row, c), load_f32(cg, px, c)), row, c);
	} else {
		LLVMValueRef g = fmul(cg, load_f32(cg, row, c), inv);
		if (variant == 2)
			g = fadd(cg, load_f32(cg, px, c), g);
		store_f32(cg, g, px, c);
	}
	loop_end(cg, &lc);
	loop_end(cg, &lp);
	if (variant == 0) {
		c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
		store_f32(cg, fmul(cg, load_f32(cg, row, c), inv), row, c);
		loop_end(cg, &lc);
	}
	loop_end(cg, &ls);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* flatten: variant 0 forward y[s, c*H*W + p] = x[s, p*C + c]; variant 1
 * backward dx[s, p*C + c] = d[s, c*H*W + p] (2: accumulate). */
static LLVMValueRef build_flatten(Cg *cg, const IRLayer *l, int li, int variant)
{
	int C = l->in_shape.c;
	long npix = pixels(l->in_shape);
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_i32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 3, true);
	LLVMValueRef src = LLVMGetParam(f, 0), dst = LLVMGetParam(f, 1);
	Loop ls, lp, lc;
	LLVMValueRef s = loop_begin(cg, &ls, ci64(cg, 0), n64(cg, LLVMGetParam(f, 2)));
	LLVMValueRef base = imul(cg, s, l->in);
	LLVMValueRef sp = elem_ptr(cg, src, base), dp = elem_ptr(cg, dst, base);
	/* the inner loop runs along the destination */
	int outer = variant == 0 ? C : (int)npix, inner = variant == 0 ? (int)npix : C;
	LLVMValueRef a = loop_begin(cg, &lp, ci64(cg, 0), ci64(cg, outer));
	LLVMValueRef b = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, inner));
	LLVMValueRef di = iadd(cg, imul(cg, a, inner), b), si = iadd(cg, imul(cg, b, outer), a);
	LLVMValueRef v = load_f32(cg, sp, si);
	if (variant == 2)
		v = fadd(cg, load_f32(cg, dp, di), v);
	store_f32(cg, v, dp, di);
	loop_end(cg, &lc);
	loop_end(cg, &lp);
	loop_end(cg, &ls);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* add and standalone activations: y = f(a + b) or y = f(a) */
static LLVMValueRef build_eltwise(Cg *cg, const IRLayer *l, int li, int variant)
{
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_pf32, cg->t_i32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 4, true);
	LLVMValueRef a = LLVMGetParam(f, 0), b = LLVMGetParam(f, 1), y = LLVMGetParam(f, 2);
	Loop lp;
	LLVMValueRef i = loop_begin(cg, &lp, ci64(cg, 0), imul(cg, n64(cg, LLVMGetParam(f, 3)), l->out));
	LLVMValueRef v = load_f32(cg, a, i);
	if (l->kind == OP_ADD)
		v = fadd(cg, v, load_f32(cg, b, i));
	store_f32(cg, emit_act(cg, l->act, v), y, i);
	loop_end(cg, &lp);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* A pool over samples [lo, hi) (wtn_parallel_for): variant 0 forward
 * (x, y, argmax); POOL_BACK: the error into the input's, which starts at 0
 * unless POOL_ACCUMULATE. */
enum { POOL_BACK = 1, POOL_ACCUMULATE = 2 };
static LLVMValueRef build_pool_body(Cg *cg, const IRLayer *l, int li, int variant)
{
	Range r = begin_range_body(cg);
	LLVMValueRef f = cg->fn;
	LLVMValueRef cnt = to_i32(cg, LLVMBuildSub(cg->b, r.hi, r.lo, ""));
	LLVMValueRef at_in = imul(cg, r.lo, l->in), at_out = imul(cg, r.lo, l->out);
	LLVMValueRef aux = l->aux >= 0 ? elem_ptr(cg, slot_ptr(cg, r.bufs, l->aux), at_out) : null_f32(cg);
	if (!(variant & POOL_BACK)) {
		LLVMValueRef args[] = { elem_ptr(cg, layer_input_ptr(cg, r.bufs, l), at_in),
		                        elem_ptr(cg, slot_ptr(cg, r.bufs, l->y), at_out), aux, cnt };
		call_fn(cg, helper(cg, build_pool, "pool", l, li, 0), args, 4);
	} else {
		LLVMValueRef dx = elem_ptr(cg, slot_ptr(cg, r.bufs, cg->net->layers[l->input].d), at_in);
		LLVMValueRef args[] = { elem_ptr(cg, slot_ptr(cg, r.bufs, l->d), at_out), dx, aux, cnt };
		if (l->kind == OP_MAXPOOL && !(variant & POOL_ACCUMULATE) && pool_windows_tile(l)) {
			call_fn(cg, helper(cg, build_maxpool_cover, "maxpool_cover", l, li, 0), args, 4);
			LLVMBuildRetVoid(cg->b);
			return f;
		}
		if (!(variant & POOL_ACCUMULATE))
			emit_zero(cg, dx, imul(cg, n64(cg, cnt), l->in));
		if (l->kind == OP_MAXPOOL)
			call_fn(cg, helper(cg, build_maxpool_back, "maxpool_back", l, li, 0), args, 4);
		else
			call_fn(cg, helper(cg, build_pool, "pool", l, li, 1), args, 4);
	}
	LLVMBuildRetVoid(cg->b);
	return f;
}

static void fwd_dense(Cg *cg, LLVMValueRef bufs, LLVMValueRef n, const IRLayer *l, int li, bool eval)
{
	forward_dense(cg, bufs, n, l, li);
}

static void fwd_conv(Cg *cg, LLVMValueRef bufs, LLVMValueRef n, const IRLayer *l, int li, bool eval)
{
	forward_conv(cg, bufs, n, l, li);
}

static void fwd_pool(Cg *cg, LLVMValueRef bufs, LLVMValueRef n, const IRLayer *l, int li, bool eval)
{
	emit_parallel(cg, helper(cg, build_pool_body, "pool_body", l, li, 0), bufs, n);
}

/* flatten or global_avgpool over samples [lo, hi) (wtn_parallel_for),
 * variants as build_flatten's and build_gap's: 0 forward, 1 backward (2:
 * accumulating into the input's error). Per-sample copies, but a serial
 * pass between two split loops leaves a core idle. */
static LLVMValueRef build_reshape_body(Cg *cg, const IRLayer *l, int li, int variant)
{
	Range r = begin_range_body(cg);
	LLVMValueRef f = cg->fn;
	LLVMValueRef at_in = imul(cg, r.lo, l->in), at_out = imul(cg, r.lo, l->out), src, dst;
	if (variant == 0) {
		src = elem_ptr(cg, layer_input_ptr(cg, r.bufs, l), at_in);
		dst = elem_ptr(cg, slot_ptr(cg, r.bufs, l->y), at_out);
	} else {
		src = elem_ptr(cg, slot_ptr(cg, r.bufs, l->d), at_out);
		dst = elem_ptr(cg, slot_ptr(cg, r.bufs, cg->net->layers[l->input].d), at_in);
	}
	HelperFn build = l->kind == OP_FLATTEN ? build_flatten : build_gap;
	LLVMValueRef args[] = { src, dst, to_i32(cg, LLVMBuildSub(cg->b, r.hi, r.lo, "")) };
	call_fn(cg, helper(cg, build, "reshape", l, li, variant), args, 3);
	LLVMBuildRetVoid(cg->b);
	return f;
}

static void fwd_reshape(Cg *cg, LLVMValueRef bufs, LLVMValueRef n, const IRLayer *l, int li)
{
	emit_parallel(cg, helper(cg, build_reshape_body, "reshape_body", l, li, 0), bufs, n);
}

static void fwd_gap(Cg *cg, LLVMValueRef bufs, LLVMValueRef n, const IRLayer *l, int li, bool eval)
{
	fwd_reshape(cg, bufs, n, l, li);
}

static void fwd_flatten(Cg *cg, LLVMValueRef bufs, LLVMValueRef n, const IRLayer *l, int li, bool eval)
{
	fwd_reshape(cg, bufs, n, l, li);
}

/* add or activation over samples [lo, hi) (wtn_parallel_for) */
static LLVMValueRef build_eltwise_body(Cg *cg, const IRLayer *l, int li, int variant)
{
	Range r = begin_range_body(cg);
	LLVMValueRef f = cg->fn;
	LLVMValueRef at = imul(cg, r.lo, l->out);   /* add and act: in == out */
	LLVMValueRef x = layer_input_ptr(cg, r.bufs, l);
	LLVMValueRef b = l->kind == OP_ADD ? slot_ptr(cg, r.bufs, in_slot(cg->net, l->input2)) : x;
	LLVMValueRef args[] = { elem_ptr(cg, x, at), elem_ptr(cg, b, at),
	                        elem_ptr(cg, slot_ptr(cg, r.bufs, l->y), at),
	                        to_i32(cg, LLVMBuildSub(cg->b, r.hi, r.lo, "")) };
	call_fn(cg, helper(cg, build_eltwise, "eltwise", l, li, 0), args, 4);
	LLVMBuildRetVoid(cg->b);
	return f;
}

static void fwd_eltwise(Cg *cg, LLVMValueRef bufs, LLVMValueRef n, const IRLayer *l, int li, bool eval)
{
	/* add(x, x) reads one slot fewer: its view differs from other adds' */
	int twice = l->kind == OP_ADD && l->input == l->input2;
	emit_parallel(cg, helper(cg, build_eltwise_body, "eltwise_body", l, li, twice), bufs, n);
}

/* if (wtn_profiling) wtn_profile_mark(li, phase): train --profile's clock
 * (runtime/profile.c); a load and a branch when not profiling. */
static void emit_profile_mark(Cg *cg, int li, int phase)
{
	LLVMValueRef on = LLVMBuildLoad2(cg->b, cg->t_i32, cg->profiling, "");
	LLVMBasicBlockRef join = if_begin(cg, LLVMBuildICmp(cg->b, LLVMIntNE, on, ci32(cg, 0), ""));
	LLVMValueRef args[] = { ci32(cg, li), ci32(cg, phase) };
	LLVMBuildCall2(cg->b, cg->profile_mark_ty, cg->profile_mark, args, 2, "");
	if_end(cg, join);
}

static void build_forward(Cg *cg, const char *fn_name, bool eval)
{
	const IRNetwork *net = cg->net;
	LLVMTypeRef ps[] = { cg->t_ppf32, cg->t_i32 };
	LLVMValueRef f = begin_fn(cg, fn_name, cg->t_void, ps, 2, false);
	LLVMValueRef bufs = LLVMGetParam(f, 0), n = LLVMGetParam(f, 1);
	for (int li = 0; li < net->nlayers; li++) {
		if (!eval)
			emit_profile_mark(cg, li, WTN_PHASE_FORWARD);
		lowering_of(net->layers[li].kind)->forward(cg, bufs, n, &net->layers[li], li, eval);
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

/* Finishing a layer's error, fused in one pass over d: variant bits
 * FIN_DERIV d *= f'(y); FIN_ZERO d = 0 (nothing sent it an error);
 * FIN_BIAS gb[c] = sum over rows of d[r, c]. Params (d, y, gb, n). */
enum { FIN_DERIV = 1, FIN_ZERO = 2, FIN_BIAS = 4 };
typedef struct FinRow { const IRLayer *l; int variant; LLVMValueRef dr, yr, acc; } FinRow;
static void finish_elem(Cg *cg, void *ctx, LLVMValueRef j)
{
	FinRow *fr = ctx;
	LLVMValueRef v;
	if (fr->variant & FIN_ZERO) {
		v = cf32(cg, 0);
		store_f32(cg, v, fr->dr, j);
	} else {
		v = load_f32(cg, fr->dr, j);
		if (fr->variant & FIN_DERIV) {
			v = emit_deriv(cg, fr->l->act, v, load_f32(cg, fr->yr, j));
			store_f32(cg, v, fr->dr, j);
		}
	}
	if (fr->acc)
		store_t(cg, cg->t_f64, LLVMBuildFAdd(cg->b, load_t(cg, cg->t_f64, fr->acc, j), f2d(cg, v), ""),
		        fr->acc, j);
}

static LLVMValueRef build_finish_error(Cg *cg, const IRLayer *l, int li, int variant)
{
	int width = l->out_shape.c;
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_pf32, cg->t_i32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 4, true);
	LLVMValueRef d = LLVMGetParam(f, 0), y = LLVMGetParam(f, 1), gb = LLVMGetParam(f, 2);
	LLVMValueRef rows = imul(cg, n64(cg, LLVMGetParam(f, 3)), pixels(l->out_shape));
	Loop lr, lc;
	LLVMValueRef j;
	/* a conv's bias sums n*OH*OW rows: accumulate in double */
	LLVMValueRef acc = (variant & FIN_BIAS) ? frame_array(cg, cg->t_f64, width) : NULL;
	if (acc) {
		j = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, width));
		store_t(cg, cg->t_f64, cf64(cg, 0), acc, j);
		loop_end(cg, &lc);
	}
	LLVMValueRef i = loop_begin(cg, &lr, ci64(cg, 0), rows);
	LLVMValueRef off = imul(cg, i, width);
	FinRow fr = { l, variant, elem_ptr(cg, d, off), elem_ptr(cg, y, off), acc };
	emit_each(cg, width, finish_elem, &fr);
	loop_end(cg, &lr);
	if (acc) {
		j = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, width));
		store_f32(cg, d2f(cg, load_t(cg, cg->t_f64, acc, j)), gb, j);
		loop_end(cg, &lc);
	}
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* dst[i] = src[i] (variant 1) or dst[i] += src[i] (variant 2) over n*out */
static LLVMValueRef build_pass_error(Cg *cg, const IRLayer *l, int li, int variant)
{
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_i32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 3, true);
	LLVMValueRef src = LLVMGetParam(f, 0), dst = LLVMGetParam(f, 1);
	Loop lp;
	LLVMValueRef i = loop_begin(cg, &lp, ci64(cg, 0), imul(cg, n64(cg, LLVMGetParam(f, 2)), l->out));
	LLVMValueRef v = load_f32(cg, src, i);
	if (variant == 2)
		v = fadd(cg, load_f32(cg, dst, i), v);
	store_f32(cg, v, dst, i);
	loop_end(cg, &lp);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* The matrix that carries layer l's error to its input layer. */
static int carry_matrix(const IRLayer *l, bool all_bp)
{
	if (!all_bp && ir_layer_rule(l)->carry == FB_CARRY_B && l->B >= 0)
		return l->B;
	return l->W;
}

/* Does layer l take its error straight from the output error (dfa)? */
static bool takes_direct(const IRLayer *l, bool all_bp)
{
	return !all_bp && ir_layer_rule(l)->carry == FB_CARRY_D && l->D >= 0;
}

/* State of one backward kernel being built. need[i]: layer i's d must be
 * sent by its consumers (it has parameters, or feeds a layer that needs
 * its error; a dfa layer takes its own). received[i]: a consumer already
 * wrote d[i], so the next one accumulates. Layers run in reverse order, so
 * every consumer has sent before its producer runs. */
struct Bwd {
	LLVMValueRef bufs, n, d_out;
	bool *need, *received;
	bool all_bp;
};

static bool *needs_error(const IRNetwork *net, bool all_bp)
{
	bool *need = calloc((size_t)net->nlayers, sizeof *need);
	if (!need) { perror("wtnc"); exit(1); }
	for (int i = 0; i < net->nlayers; i++) {
		const IRLayer *l = &net->layers[i];
		bool up = (l->input >= 0 && need[l->input]) || (l->input2 >= 0 && need[l->input2]);
		need[i] = !takes_direct(l, all_bp) && (has_params(l) || up);
	}
	return need;
}

/* Where layer p's error goes, if anyone needs it: false for the network
 * input and for layers that do not take errors from their consumers. */
static bool send_to(Cg *cg, Bwd *bw, int p, LLVMValueRef *dst, bool *accumulate)
{
	if (p < 0 || !bw->need[p])
		return false;
	*dst = slot_ptr(cg, bw->bufs, cg->net->layers[p].d);
	*accumulate = bw->received[p];
	bw->received[p] = true;
	return true;
}

/* Whether a training step's backward (wtn_step_hyper set) lets dense layer
 * li's weight-gradient product add straight into W's SGD momentum: plain
 * momentum (nesterov and adam need the gradient itself), and a rule whose
 * update does not read the gradient again (kp's B takes W's gradient). The
 * gradient slot then keeps whatever it held; nothing else reads it in a
 * step. */
static bool grad_into_velocity(const Cg *cg, const IRLayer *l)
{
	const TrainCfg *t = &cg->net->train;
	return l->kind == OP_DENSE && t->optimizer != OPT_ADAM && !t->nesterov && l->mW >= 0 &&
	       !(l->B >= 0 && ir_layer_rule(l)->change == FB_CHANGE_AS_W);
}

/* Zeros in place of the step's scalars outside a step: momentum 0. */
static LLVMValueRef no_hyper(Cg *cg)
{
	LLVMValueRef g = LLVMGetNamedGlobal(cg->mod, "wtn.no_hyper");
	if (!g) {
		LLVMTypeRef ty = LLVMArrayType(cg->t_f32, WTN_H_COUNT);
		g = LLVMAddGlobal(cg->mod, ty, "wtn.no_hyper");
		LLVMSetInitializer(g, LLVMConstNull(ty));
		LLVMSetGlobalConstant(g, 1);
		LLVMSetLinkage(g, LLVMPrivateLinkage);
	}
	return LLVMBuildBitCast(cg->b, g, cg->t_pf32, "");
}

static void backward_dense(Cg *cg, Bwd *bw, const IRLayer *l, int li, LLVMValueRef d)
{
	LLVMValueRef x = layer_input_ptr(cg, bw->bufs, l), dx;
	LLVMValueRef gW = slot_ptr(cg, bw->bufs, l->gW);
	if (!bw->all_bp && grad_into_velocity(cg, l)) {
		/* In a training step (wtn_step_hyper set) the product adds the
		 * gradient to the momentum it decays, v = momentum v + gW: the
		 * update then reads two tensors, not three. One call either way. */
		LLVMValueRef hyper = LLVMBuildLoad2(cg->b, cg->t_pf32, cg->step_hyper, "");
		LLVMValueRef on = LLVMBuildIsNotNull(cg->b, hyper, "");
		LLVMValueRef h = LLVMBuildSelect(cg->b, on, hyper, no_hyper(cg), "");
		LLVMValueRef beta = load_f32(cg, h, ci64(cg, WTN_H_MOMENTUM));
		LLVMValueRef into = LLVMBuildSelect(cg->b, on, slot_ptr(cg, bw->bufs, l->mW), gW, "");
		emit_sgemm_v(cg, 1, 0, ci32(cg, l->out), ci32(cg, l->in), bw->n, cf32(cg, 1), d, l->out,
		             x, l->in, beta, into, l->in);
	} else
		emit_sgemm(cg, 1, 0, ci32(cg, l->out), ci32(cg, l->in), bw->n, d, l->out,
		           x, l->in, 0.0, gW, l->in);
	bool acc;
	if (send_to(cg, bw, l->input, &dx, &acc))
		emit_sgemm(cg, 0, 0, bw->n, ci32(cg, l->in), ci32(cg, l->out), d, l->out,
		           slot_ptr(cg, bw->bufs, carry_matrix(l, bw->all_bp)), l->in,
		           acc ? 1.0 : 0.0, dx, l->in);
}

/* Variant bits of a conv's backward body beyond the FIN_ ones. */
enum { CB_SEND = 8, CB_ACCUMULATE = 16, CB_CARRY_B = 32 };

/* Backward of an im2col conv over samples [lo, hi), into this part's
 * gradient partials: finish the error (FIN_ bits; the bias sum goes to the
 * partials), then per chunk the columns, G_part (+)= d^T col and, if the
 * input needs it, dcol = d M and col2im into the input's error (the
 * samples of different parts never overlap). M is in patch order (wp)
 * where it needs to be. */
static LLVMValueRef build_conv_bwd_body(Cg *cg, const IRLayer *l, int li, int variant)
{
	ConvBody cb = begin_conv_body(cg, l, li, BODY_ERROR, variant & 7);
	Range r = cb.r;
	const IRNetwork *net = cg->net;
	int F = l->out_shape.c, patch = (int)ir_conv_patch(l);
	bool send = variant & CB_SEND;
	LLVMValueRef col = cb.cols, dx = NULL, M = NULL, col2im = NULL;
	if (send) {
		dx = slot_ptr(cg, r.bufs, net->layers[l->input].d);
		M = cb.cs.wp ? cb.cs.wp : slot_ptr(cg, r.bufs, (variant & CB_CARRY_B) ? l->B : l->W);
		col2im = helper(cg, build_col2im, "col2im", l, li, 0);
		if (!(variant & CB_ACCUMULATE))
			emit_zero(cg, sample_ptr(cg, dx, r.lo, l->in), imul(cg, cb.cnt, l->in));
	}
	Chunks ck;
	im2col_chunks_begin(cg, &cb, l, li, &ck);
	LLVMValueRef rows = to_i32(cg, imul(cg, ck.cnt, pixels(l->out_shape)));
	LLVMValueRef dc = sample_ptr(cg, cb.d, ck.s0, l->out);
	emit_chunk_wgrad(cg, &cb, l, &ck, rows, dc);
	if (send) {
		emit_sgemm(cg, 0, 0, rows, ci32(cg, patch), ci32(cg, F), dc, F, M, patch, 0.0,
		           col, patch);
		LLVMValueRef cargs[] = { sample_ptr(cg, dx, ck.s0, l->in), col, ck.cnt };
		call_fn(cg, col2im, cargs, 3);
	}
	chunks_end(cg, &ck);
	return end_conv_body(cg, &cb);
}

/* dst[dat + k*dstep] = src[sat + k*sstep] */
typedef struct DcMove { LLVMValueRef src, sat; long sstep; LLVMValueRef dst, dat; long dstep; } DcMove;
static void dc_move_elem(Cg *cg, void *ctx, LLVMValueRef k)
{
	DcMove *mv = ctx;
	store_f32(cg, load_f32(cg, mv->src, iadd(cg, mv->sat, imul(cg, k, mv->sstep))),
	          mv->dst, iadd(cg, mv->dat, imul(cg, k, mv->dstep)));
}

/* dc_dt(d, dt): one sample's error (NHWC) into planes of row length Wp; the
 * columns past each row stay as the caller zeroed them. */
static LLVMValueRef build_dc_dt(Cg *cg, const IRLayer *l, int li, int variant)
{
	DirectGeo g;
	conv_small_direct(cg->net, l, &g);
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 2, true);
	LLVMValueRef d = LLVMGetParam(f, 0), dt = LLVMGetParam(f, 1);
	DcPixels px;
	dc_pixels_begin(cg, l, &g, &px);
	DcMove mv = { d, px.nhwc, 1, dt, px.plane, g.len };
	emit_each(cg, l->out_shape.c, dc_move_elem, &mv);
	dc_pixels_end(cg, &px);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* dc_wgrad(xp, G, dt): G[f, i, j, c] (patch order) += the dot product of
 * the error plane dt[f] with xp[c] shifted by i*Wp + j: kw accumulators of
 * eight lanes per kernel row, summed across lanes at the end. */
static LLVMValueRef build_dc_wgrad(Cg *cg, const IRLayer *l, int li, int variant)
{
	DirectGeo g;
	conv_small_direct(cg->net, l, &g);
	int C = l->in_shape.c;
	long patch = ir_conv_patch(l);
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_pf32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 3, true);
	LLVMValueRef P[3] = { LLVMGetParam(f, 0), LLVMGetParam(f, 1), LLVMGetParam(f, 2) };
	LLVMValueRef acc[8];
	acc_vars_v8(cg, acc, l->kw);
	Loop lp[3], le;
	DcRow r;
	dc_rows_begin(cg, l, &g, P, lp, &r);
	acc_zero_v8(cg, acc, l->kw);
	LLVMValueRef blk = loop_begin(cg, &le, ci64(cg, 0), ci64(cg, g.len / DC_LANES));
	LLVMValueRef e = imul(cg, blk, DC_LANES);
	LLVMValueRef dv = load_v8(cg, r.plane, e);
	for (int j = 0; j < l->kw; j++) {
		LLVMValueRef a = LLVMBuildLoad2(cg->b, v8_type(cg), acc[j], "");
		a = fmuladd_v8(cg, dv, load_v8(cg, r.xrow, iadd(cg, e, ci64(cg, j))), a);
		LLVMBuildStore(cg->b, a, acc[j]);
	}
	loop_end(cg, &le);
	/* G[f, i, j, c] */
	LLVMValueRef grow = iadd(cg, imul(cg, r.f, patch), iadd(cg, imul(cg, r.i, (long)l->kw * C), r.c));
	for (int j = 0; j < l->kw; j++) {
		LLVMValueRef a = LLVMBuildLoad2(cg->b, v8_type(cg), acc[j], "");
		LLVMValueRef sum = LLVMBuildExtractElement(cg->b, a, ci32(cg, 0), "");
		for (int k = 1; k < DC_LANES; k++)
			sum = fadd(cg, sum, LLVMBuildExtractElement(cg->b, a, ci32(cg, k), ""));
		LLVMValueRef at = iadd(cg, grow, ci64(cg, (long)j * C));
		store_f32(cg, fadd(cg, load_f32(cg, P[1], at), sum), P[1], at);
	}
	dc_rows_end(cg, lp);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* Weight gradient of a direct conv whose input needs no error, over
 * samples [lo, hi), into this part's gradient partials (patch order, as
 * build_conv_reduce expects); fin as in build_conv_bwd_body. */
static LLVMValueRef build_dc_bwd_body(Cg *cg, const IRLayer *l, int li, int variant)
{
	DirectGeo g;
	conv_small_direct(cg->net, l, &g);
	ConvBody cb = begin_conv_body(cg, l, li, BODY_ERROR | BODY_ZERO_G, variant & 7);
	LLVMValueRef xp = cb.cols, dt = dc_out_planes(cg, &cb, l, &g);
	emit_zero(cg, xp, ci64(cg, g.elems));
	LLVMValueRef pad = helper(cg, build_dc_pad, "dc_pad", l, li, 0);
	LLVMValueRef tr = helper(cg, build_dc_dt, "dc_dt", l, li, 0);
	LLVMValueRef wg = helper(cg, build_dc_wgrad, "dc_wgrad", l, li, 0);
	Loop ls;
	LLVMValueRef s = samples_begin(cg, &cb, l, pad, &ls);
	LLVMValueRef a2[] = { sample_ptr(cg, cb.d, s, l->out), dt };
	call_fn(cg, tr, a2, 2);
	LLVMValueRef a3[] = { xp, cb.G, dt };
	call_fn(cg, wg, a3, 3);
	loop_end(cg, &ls);
	return end_conv_body(cg, &cb);
}

/* ---- weight gradient of a first layer's few input channels ----
 * Vectors of (j, c), as tc_wgrad keeps, want C a multiple of 8; with C of
 * 1 to 7 they run along the filters instead, read straight from the NHWC
 * error: Gt[q][f] += d[p, f] * xp[p + tap q] over one sample's pixels p,
 * q = (i, j, c) in patch order, tiles of TQ taps by FV vectors of filters
 * summed in registers over a block of output rows. Gt goes into the
 * part's partials (patch order, G[f][q]) once, after its samples. */
static bool conv_few_wgrad(const IRNetwork *net, const IRLayer *l, IRTiledGeo *g)
{
	if (!ir_conv_tiled_few(l) || l->aux < 0)
		return false;
	ir_tiled_geo(l, g);
	return g->xsize + l->out_shape.c * ir_conv_patch(l) <= ir_col_part_elems(net);
}

/* The weight gradients' blocks of output rows: the most rows, dividing
 * the output's height, whose error and padded image rows fit in bytes. */
static int wgrad_row_block(const IRLayer *l, const IRTiledGeo *g, long bytes)
{
	Shape out = l->out_shape;
	int C = l->in_shape.c, RB = out.h;
	while (RB > 1 && (out.h % RB
	                  || ((long)RB * out.w * out.c + (RB + l->kh - 1L) * g->xw * C) * 4 > bytes))
		RB--;
	return RB;
}

static LLVMValueRef build_tcf_wgrad(Cg *cg, const IRLayer *l, int li, int variant)
{
	IRTiledGeo g;
	ir_tiled_geo(l, &g);
	Shape out = l->out_shape;
	int C = l->in_shape.c, F = out.c, Q = (int)ir_conv_patch(l);
	/* up to 4 vectors of filters (a pixel's error read in whole cache lines,
	 * once), TQ taps: FV error vectors, a broadcast and the TQ * FV sums
	 * within the 16 registers (4 by 3 spilled one) */
	int FV = F / 8 < 4 ? F / 8 : 4;
	while ((F / 8) % FV)
		FV--;
	int TQ = (15 - FV) / FV < TC_PIX_REGS / FV ? (15 - FV) / FV : TC_PIX_REGS / FV;
	/* rows of error and image that stay in L1 while every tile passes */
	int RB = wgrad_row_block(l, &g, 24L << 10);
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_pf32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 3, true);
	LLVMValueRef xp = LLVMGetParam(f, 0), d = LLVMGetParam(f, 1), Gt = LLVMGetParam(f, 2);
	LLVMValueRef acc[TC_PIX_REGS], dv[4];
	acc_vars_v8(cg, acc, TQ * FV);
	Loop lb, lf, lh, lw;
	LLVMValueRef oh0 = imul(cg, loop_begin(cg, &lb, ci64(cg, 0), ci64(cg, out.h / RB)), RB);
	LLVMValueRef f0 = imul(cg, loop_begin(cg, &lf, ci64(cg, 0), ci64(cg, F / (8 * FV))), 8L * FV);
	for (int q0 = 0; q0 < Q; q0 += TQ) {   /* the tap tiles, written out */
		int nq = Q - q0 < TQ ? Q - q0 : TQ;
		acc_zero_v8(cg, acc, nq * FV);
		LLVMValueRef oh = loop_begin(cg, &lh, oh0, iadd(cg, oh0, ci64(cg, RB)));
		LLVMValueRef ow = loop_begin(cg, &lw, ci64(cg, 0), ci64(cg, out.w));
		LLVMValueRef db = iadd(cg, imul(cg, iadd(cg, imul(cg, oh, out.w), ow), F), f0);
		LLVMValueRef xb = imul(cg, iadd(cg, imul(cg, oh, g.xw), ow), C);
		for (int k = 0; k < FV; k++)
			dv[k] = load_v8(cg, d, iadd(cg, db, ci64(cg, 8L * k)));
		for (int t = 0; t < nq; t++) {
			int q = q0 + t, i = q / (l->kw * C), j = q / C % l->kw, c = q % C;
			LLVMValueRef xv = splat_v8(cg, load_f32(cg, xp, iadd(cg, xb, ci64(cg, ((long)i * g.xw + j) * C + c))));
			for (int k = 0; k < FV; k++)
				acc_fmuladd_v8(cg, acc[t * FV + k], xv, dv[k]);
		}
		loop_end(cg, &lw);
		loop_end(cg, &lh);
		for (int t = 0; t < nq; t++)
			for (int k = 0; k < FV; k++) {
				LLVMValueRef at = iadd(cg, f0, ci64(cg, (long)(q0 + t) * F + 8L * k));
				acc_add_to_v8(cg, acc[t * FV + k], Gt, at);
			}
	}
	loop_end(cg, &lf);
	loop_end(cg, &lb);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* G[f][q] = Gt[q][f]: tcf_wgrad's sums into the partials' patch order */
static void emit_gt_to_patch(Cg *cg, LLVMValueRef Gt, LLVMValueRef G, int F, long patch)
{
	Loop lq, lf;
	LLVMValueRef q = loop_begin(cg, &lq, ci64(cg, 0), ci64(cg, patch));
	LLVMValueRef fi = loop_begin(cg, &lf, ci64(cg, 0), ci64(cg, F));
	store_f32(cg, load_f32(cg, Gt, iadd(cg, imul(cg, q, F), fi)), G, iadd(cg, imul(cg, fi, patch), q));
	loop_end(cg, &lf);
	loop_end(cg, &lq);
}

/* Weight gradient of a conv on few input channels whose input needs no
 * error, over samples [lo, hi), into this part's gradient partials (patch
 * order); fin as in build_conv_bwd_body. Scratch: the padded image, then
 * Gt. */
static LLVMValueRef build_tcf_bwd_body(Cg *cg, const IRLayer *l, int li, int variant)
{
	IRTiledGeo g;
	ir_tiled_geo(l, &g);
	int F = l->out_shape.c;
	long patch = ir_conv_patch(l);
	ConvBody cb = begin_conv_body(cg, l, li, BODY_ERROR, variant & 7);
	LLVMValueRef xp = cb.cols, Gt = elem_ptr(cg, xp, ci64(cg, g.xsize));
	emit_zero(cg, xp, ci64(cg, g.xsize + F * patch));
	LLVMValueRef pad = helper(cg, build_tc_pad, "tc_pad", l, li, 0);
	LLVMValueRef wg = helper(cg, build_tcf_wgrad, "tcf_wgrad", l, li, 0);
	Loop ls;
	LLVMValueRef s = samples_begin(cg, &cb, l, pad, &ls);
	LLVMValueRef a2[] = { xp, sample_ptr(cg, cb.d, s, l->out), Gt };
	call_fn(cg, wg, a2, 3);
	loop_end(cg, &ls);
	emit_gt_to_patch(cg, Gt, cb.G, F, patch);
	return end_conv_body(cg, &cb);
}

/* tc_wgrad(xp, d, G): G[f, i, j, c] (patch order) += the products of one
 * sample's padded image with its error, summed over its pixels: per kernel
 * row i, tiles of TV vectors of (j, c) by FB filters kept in registers. */
static LLVMValueRef build_tc_wgrad(Cg *cg, const IRLayer *l, int li, int variant)
{
	IRTiledGeo g;
	ir_tiled_geo(l, &g);
	Shape out = l->out_shape;
	int C = l->in_shape.c, F = out.c;
	long patch = ir_conv_patch(l), taps = (long)l->kw * C, nt = taps / 8;
	int TV = 5, FB;
	while (nt % TV)
		TV--;
	for (FB = TC_PIX_REGS / TV; F % FB; FB--)
		;
	/* blocks of RB output rows, whose error and image rows stay near
	 * (64 KB: L1 and the closest of L2) while every tile passes over them;
	 * each tile adds its sums to G once per block, so taller blocks mean
	 * fewer passes over G (measured on the bench convnet's conv2: 7 rows
	 * of 14 ran its weight gradient 15% faster than 2 rows, in 24 KB) */
	int RB = wgrad_row_block(l, &g, 64L << 10);
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_pf32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 3, true);
	LLVMValueRef xp = LLVMGetParam(f, 0), d = LLVMGetParam(f, 1), G = LLVMGetParam(f, 2);
	LLVMValueRef acc[TC_PIX_REGS], xv[5];
	acc_vars_v8(cg, acc, TV * FB);
	Loop lb, li2, lt, lf, lh, lw;
	LLVMValueRef oh0 = imul(cg, loop_begin(cg, &lb, ci64(cg, 0), ci64(cg, out.h / RB)), RB);
	LLVMValueRef i = loop_begin(cg, &li2, ci64(cg, 0), ci64(cg, l->kh));
	LLVMValueRef t0 = imul(cg, loop_begin(cg, &lt, ci64(cg, 0), ci64(cg, nt / TV)), 8L * TV);
	/* and the columns where some tap column j of the tile is inside */
	LLVMValueRef j_lo = LLVMBuildSDiv(cg->b, t0, ci64(cg, C), "");
	LLVMValueRef j_hi = LLVMBuildSDiv(cg->b, iadd(cg, t0, ci64(cg, 8L * TV - 1)), ci64(cg, C), "");
	LLVMValueRef ow_lo = imax(cg, ci64(cg, 0), LLVMBuildSub(cg->b, ci64(cg, l->pad), j_hi, ""));
	LLVMValueRef ow_hi = imin(cg, ci64(cg, out.w),
	                          LLVMBuildSub(cg->b, ci64(cg, l->pad + l->in_shape.w), j_lo, ""));
	LLVMValueRef f0 = imul(cg, loop_begin(cg, &lf, ci64(cg, 0), ci64(cg, F / FB)), FB);
	acc_zero_v8(cg, acc, TV * FB);
	/* only the rows whose image row oh + i is inside, not the zero border */
	LLVMValueRef oh_lo = imax(cg, oh0, LLVMBuildSub(cg->b, ci64(cg, l->pad), i, ""));
	LLVMValueRef oh_hi = imin(cg, iadd(cg, oh0, ci64(cg, RB)),
	                          LLVMBuildSub(cg->b, ci64(cg, l->pad + l->in_shape.h), i, ""));
	LLVMValueRef oh = loop_begin(cg, &lh, oh_lo, oh_hi);
	LLVMValueRef xrow = iadd(cg, imul(cg, iadd(cg, oh, i), g.xw * C), t0);
	LLVMValueRef drow = iadd(cg, imul(cg, oh, (long)out.w * F), f0);
	LLVMValueRef ow = loop_begin(cg, &lw, ow_lo, ow_hi);
	LLVMValueRef xb = iadd(cg, xrow, imul(cg, ow, C)), db = iadd(cg, drow, imul(cg, ow, F));
	for (int v = 0; v < TV; v++)
		xv[v] = load_v8(cg, xp, iadd(cg, xb, ci64(cg, 8L * v)));
	for (int q = 0; q < FB; q++) {
		LLVMValueRef dv = splat_v8(cg, load_f32(cg, d, iadd(cg, db, ci64(cg, q))));
		for (int v = 0; v < TV; v++)
			acc_fmuladd_v8(cg, acc[q * TV + v], dv, xv[v]);
	}
	loop_end(cg, &lw);
	loop_end(cg, &lh);
	LLVMValueRef grow = iadd(cg, imul(cg, i, taps), t0);
	for (int q = 0; q < FB; q++)
		for (int v = 0; v < TV; v++) {
			LLVMValueRef at = iadd(cg, iadd(cg, imul(cg, iadd(cg, f0, ci64(cg, q)), patch), grow),
			                       ci64(cg, 8L * v));
			acc_add_to_v8(cg, acc[q * TV + v], G, at);
		}
	loop_end(cg, &lf);
	loop_end(cg, &lt);
	loop_end(cg, &li2);
	loop_end(cg, &lb);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* A tiled conv's weight gradient in a part's body: tc_wgrad into the
 * partials G, or wino_wgrad into the sums dU (zeroed here, after the
 * padded image and error in the part's columns) and wino_wgrad_out from dU
 * into G after the part's samples. scratch: where the part's columns are
 * free for the Winograd passes' transforms. */
typedef struct TiledWgrad { bool wino; LLVMValueRef fn, G, dU, scratch; } TiledWgrad;

static TiledWgrad begin_tiled_wgrad(Cg *cg, const IRLayer *l, int li, const IRTiledGeo *g,
                                    LLVMValueRef xp, LLVMValueRef G)
{
	WinoGeo wg;
	TiledWgrad tw = { wino_geo(cg->net, l, IR_WINO_WGRAD, &wg), NULL, G, NULL, NULL };
	long du_size = tw.wino ? (long)wg.w.n * wg.w.n * l->in_shape.c * l->out_shape.c : 0;
	tw.dU = elem_ptr(cg, xp, ci64(cg, round_up(g->xsize + g->dsize, 16)));
	tw.scratch = elem_ptr(cg, tw.dU, ci64(cg, du_size));
	if (tw.wino)
		emit_zero(cg, tw.dU, ci64(cg, du_size));
	tw.fn = tw.wino ? helper(cg, build_wino_wgrad, "wino_wgrad", l, li, 0)
	                : helper(cg, build_tc_wgrad, "tc_wgrad", l, li, 0);
	return tw;
}

/* one sample: its padded image xp and its error (or response) d */
static void emit_tiled_wgrad(Cg *cg, const TiledWgrad *tw, LLVMValueRef xp, LLVMValueRef d)
{
	LLVMValueRef args[] = { xp, d, tw->wino ? tw->dU : tw->G, tw->scratch };
	call_fn(cg, tw->fn, args, tw->wino ? 4 : 3);
}

static void end_tiled_wgrad(Cg *cg, const TiledWgrad *tw, const IRLayer *l, int li)
{
	if (tw->wino) {
		LLVMValueRef args[] = { tw->dU, tw->G };
		call_fn(cg, helper(cg, build_wino_wgrad_out, "wino_wgrad_out", l, li, 0), args, 2);
	}
}

/* Backward of a tiled conv over samples [lo, hi), into this part's
 * gradient partials (variant bits as build_conv_bwd_body): finish the
 * error, then per sample its padded image and the weight gradient, and,
 * if the input needs it, the padded error and the data gradient's tiles
 * (M flipped in wp). */
static LLVMValueRef build_tc_bwd_body(Cg *cg, const IRLayer *l, int li, int variant)
{
	const IRNetwork *net = cg->net;
	IRTiledGeo g;
	ir_tiled_geo(l, &g);
	bool send = variant & CB_SEND;
	ConvBody cb = begin_conv_body(cg, l, li, BODY_ERROR | BODY_ZERO_G, variant & 7);
	LLVMValueRef xp = cb.cols, dp = elem_ptr(cg, xp, ci64(cg, g.xsize));
	emit_zero(cg, xp, ci64(cg, g.xsize));
	LLVMValueRef pad = helper(cg, build_tc_pad, "tc_pad", l, li, 0);
	TiledWgrad tw = begin_tiled_wgrad(cg, l, li, &g, xp, cb.G);
	LLVMValueRef dx = NULL, dpad = NULL;
	TilePass tp = { false, NULL, NULL };
	if (send) {
		dx = slot_ptr(cg, cb.r.bufs, net->layers[l->input].d);
		emit_zero(cg, dp, ci64(cg, g.dsize));
		dpad = helper(cg, build_tc_pad, "tc_pad", l, li, 1);
		tp = tile_pass(cg, l, li, &cb.cs, IR_WINO_DATA, (variant & CB_ACCUMULATE) ? 2 : 1);
	}
	Loop ls;   /* samples_begin's loop, with ds taken before the padding */
	LLVMValueRef s = loop_begin(cg, &ls, cb.r.lo, cb.r.hi);
	LLVMValueRef ds = sample_ptr(cg, cb.d, s, l->out);
	LLVMValueRef a1[] = { sample_ptr(cg, cb.x, s, l->in), xp };
	call_fn(cg, pad, a1, 2);
	emit_tiled_wgrad(cg, &tw, xp, ds);
	if (send) {
		LLVMValueRef a3[] = { ds, dp };
		call_fn(cg, dpad, a3, 2);
		emit_tile(cg, &tp, dp, sample_ptr(cg, dx, s, l->in), null_f32(cg), tw.scratch);
	}
	loop_end(cg, &ls);
	end_tiled_wgrad(cg, &tw, l, li);
	return end_conv_body(cg, &cb);
}

/* The partials' sum at src over the parts that ran (parts of stride
 * floats, at least one). */
static LLVMValueRef emit_parts_sum(Cg *cg, LLVMValueRef P, LLVMValueRef src, LLVMValueRef parts,
                                  long stride)
{
	Loop lp;
	LLVMValueRef sum = entry_var(cg, cg->t_f32, load_f32(cg, P, src));
	LLVMValueRef p = loop_begin(cg, &lp, ci64(cg, 1), parts);
	LLVMValueRef v = load_f32(cg, P, iadd(cg, imul(cg, p, stride), src));
	LLVMBuildStore(cg->b, fadd(cg, LLVMBuildLoad2(cg->b, cg->t_f32, sum, ""), v), sum);
	loop_end(cg, &lp);
	return LLVMBuildLoad2(cg->b, cg->t_f32, sum, "");
}

/* For every weight of conv l: its index src in patch order [F, kh, kw, C]
 * and dst in PyTorch's [F, C, kh, kw]; the loops run along src (the
 * partials; W is small, the scattered stores are cheap). */
typedef struct PatchWalk { Loop lf, lq, lc; LLVMValueRef src, dst; } PatchWalk;

static void patch_walk_begin(Cg *cg, const IRLayer *l, PatchWalk *pw)
{
	int F = l->out_shape.c, C = l->in_shape.c, Q = l->kh * l->kw;
	LLVMValueRef fi = loop_begin(cg, &pw->lf, ci64(cg, 0), ci64(cg, F));
	LLVMValueRef q = loop_begin(cg, &pw->lq, ci64(cg, 0), ci64(cg, Q));
	LLVMValueRef c = loop_begin(cg, &pw->lc, ci64(cg, 0), ci64(cg, C));
	pw->src = iadd(cg, imul(cg, fi, (long)Q * C), iadd(cg, imul(cg, q, C), c));
	pw->dst = iadd(cg, imul(cg, fi, (long)C * Q), iadd(cg, imul(cg, c, Q), q));
}

static void patch_walk_end(Cg *cg, PatchWalk *pw)
{
	loop_end(cg, &pw->lc);
	loop_end(cg, &pw->lq);
	loop_end(cg, &pw->lf);
}

/* gW and gb from the parts' partials: sums over the parts that ran, W's
 * gradient from patch order [F, kh, kw, C] to PyTorch's [F, C, kh, kw].
 * Params (gW, gb, partials, parts); variant 1: the layer has a bias. */
static LLVMValueRef build_conv_reduce(Cg *cg, const IRLayer *l, int li, int variant)
{
	int F = l->out_shape.c, C = l->in_shape.c, Q = l->kh * l->kw;
	long stride = ir_partials_stride(l), wsize = (long)F * C * Q;
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_pf32, cg->t_i32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 4, true);
	LLVMValueRef gW = LLVMGetParam(f, 0), gb = LLVMGetParam(f, 1), P = LLVMGetParam(f, 2);
	LLVMValueRef parts = n64(cg, LLVMGetParam(f, 3));
	PatchWalk pw;
	patch_walk_begin(cg, l, &pw);
	store_f32(cg, emit_parts_sum(cg, P, pw.src, parts, stride), gW, pw.dst);
	patch_walk_end(cg, &pw);
	if (variant) {
		Loop lf;
		LLVMValueRef j = loop_begin(cg, &lf, ci64(cg, 0), ci64(cg, F));
		LLVMValueRef at = iadd(cg, j, ci64(cg, wsize));
		store_f32(cg, emit_parts_sum(cg, P, at, parts, stride), gb, j);
		loop_end(cg, &lf);
	}
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* gW = d^T col(x) and, if the input needs it, dcol = d M then col2im into
 * the input's error: samples split between parts (wtn_parallel_for), each
 * chunk by chunk through its own columns; fin: the FIN_ bits of the
 * error's finishing pass, done per part. 1x1 convs: two whole products. */
static void backward_conv(Cg *cg, Bwd *bw, const IRLayer *l, int li, LLVMValueRef d, int fin)
{
	int F = l->out_shape.c, patch = (int)ir_conv_patch(l);
	long pix = pixels(l->out_shape);
	LLVMValueRef x = layer_input_ptr(cg, bw->bufs, l), dx = NULL;
	LLVMValueRef gW = slot_ptr(cg, bw->bufs, l->gW);
	int carry = carry_matrix(l, bw->all_bp);
	LLVMValueRef M = slot_ptr(cg, bw->bufs, carry);
	bool acc = false, send = send_to(cg, bw, l->input, &dx, &acc);
	if (ir_conv_direct(l)) {
		if (fin) {
			LLVMValueRef args[] = { d, slot_ptr(cg, bw->bufs, l->y),
			                        opt_slot_ptr(cg, bw->bufs, l->gb), bw->n };
			call_fn(cg, helper(cg, build_finish_error, "finish", l, li, fin), args, 4);
		}
		LLVMValueRef rows = to_i32(cg, imul(cg, n64(cg, bw->n), pix));
		emit_sgemm(cg, 1, 0, ci32(cg, F), ci32(cg, patch), rows, d, F, x, patch, 0.0, gW, patch);
		if (send)
			emit_sgemm(cg, 0, 0, rows, ci32(cg, patch), ci32(cg, F), d, F, M, patch,
			           acc ? 1.0 : 0.0, dx, patch);
		return;
	}
	DirectGeo g;
	IRTiledGeo tg;
	bool few = !send && conv_few_wgrad(cg->net, l, &tg);
	bool small = !send && conv_small_direct(cg->net, l, &g);
	bool tiled = conv_tiled(cg->net, l, &tg);
	ConvScratch cs = conv_scratch(cg, bw->bufs, l);
	if (send && tiled)
		emit_tiled_weights(cg, l, li, 1, &cs, M);
	else if (send && cs.wp)
		emit_permute(cg, l, li, 0, cs.wp, M, NULL);
	int variant = fin | (send ? CB_SEND : 0) | (acc ? CB_ACCUMULATE : 0)
	            | (carry == l->B ? CB_CARRY_B : 0);
	LLVMValueRef body = tiled ? helper(cg, build_tc_bwd_body, "tc_bwd", l, li, variant)
	                  : few ? helper(cg, build_tcf_bwd_body, "tcf_bwd", l, li, variant)
	                  : small ? helper(cg, build_dc_bwd_body, "dc_bwd_body", l, li, variant)
	                          : helper(cg, build_conv_bwd_body, "conv_bwd", l, li, variant);
	LLVMValueRef parts = emit_parallel_upto(cg, body, bw->bufs, bw->n, ir_conv_parts(l));
	LLVMValueRef args[] = { gW, opt_slot_ptr(cg, bw->bufs, l->gb),
	                        slot_ptr(cg, bw->bufs, ir_partials_slot(cg->net)), parts };
	call_fn(cg, helper(cg, build_conv_reduce, "conv_reduce", l, li, (fin & FIN_BIAS) ? 1 : 0),
	        args, 4);
}

/* Batchnorm's exact backward in two passes over d, with xhat recomputed
 * from the input and the saved batch statistics, each pass in the
 * parallel loops:
 *   pass 1: d *= f'(y); gb = sum d; gW = sum d xhat   (per channel, double;
 *           each part's sums into the caller's table, build_bn_grad_sums)
 *   pass 2: dx (+)= gamma invstd (d - gb/R - xhat gW/R)   (build_bn_dx)
 * With synchronised batchnorm the sums and R of pass 2 are the global
 * batch's (wtn_allreduce); gW and gb keep this rank's, summed later with
 * every other gradient.
 * Params (d, y, x, gamma, mean, invstd, gW, gb, dx, n). */
enum { BN_DERIV = 1, BN_ZERO = 2, BN_SEND = 4, BN_ACCUMULATE = 8 };

/* Pass 1 over one part's rows (variant: BN_DERIV, BN_ZERO): the part's
 * row of the table holds sum d, then sum d xhat. ctx (d, y, x, mean,
 * invstd, table). */
static LLVMValueRef build_bn_grad_sums(Cg *cg, const IRLayer *l, int li, int variant)
{
	int C = l->out_shape.c;
	long pix = pixels(l->out_shape), stride = bn_part_stride(C);
	Part p = begin_part_body(cg);
	LLVMValueRef f = cg->fn;
	LLVMValueRef d = part_ptr(cg, &p, 0), y = part_ptr(cg, &p, 1), x = part_ptr(cg, &p, 2);
	LLVMValueRef mean = frame_copy(cg, cg->t_f32, part_ptr(cg, &p, 3), C);
	LLVMValueRef invstd = frame_copy(cg, cg->t_f32, part_ptr(cg, &p, 4), C);
	LLVMValueRef out = elem_ptr_t(cg, cg->t_f64, as_f64_ptr(cg, part_ptr(cg, &p, 5)),
	                              imul(cg, p.part, stride));
	LLVMValueRef sdy = frame_array(cg, cg->t_f64, C), sdx = frame_array(cg, cg->t_f64, C);
	Loop lr, lc;
	LLVMValueRef c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
	store_t(cg, cg->t_f64, cf64(cg, 0), sdy, c);
	store_t(cg, cg->t_f64, cf64(cg, 0), sdx, c);
	loop_end(cg, &lc);
	LLVMValueRef r = loop_begin(cg, &lr, imul(cg, p.lo, pix), imul(cg, p.hi, pix));
	LLVMValueRef off = imul(cg, r, C);
	LLVMValueRef dr = elem_ptr(cg, d, off), yr = elem_ptr(cg, y, off), xr = elem_ptr(cg, x, off);
	c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
	LLVMValueRef v;
	if (variant & BN_ZERO) {
		v = cf32(cg, 0);
		store_f32(cg, v, dr, c);
	} else {
		v = load_f32(cg, dr, c);
		if (variant & BN_DERIV) {
			v = emit_deriv(cg, l->act, v, load_f32(cg, yr, c));
			store_f32(cg, v, dr, c);
		}
	}
	LLVMValueRef xhat = fmul(cg, fsub(cg, load_f32(cg, xr, c), load_f32(cg, mean, c)),
	                         load_f32(cg, invstd, c));
	store_t(cg, cg->t_f64, LLVMBuildFAdd(cg->b, load_t(cg, cg->t_f64, sdy, c), f2d(cg, v), ""), sdy, c);
	store_t(cg, cg->t_f64, LLVMBuildFAdd(cg->b, load_t(cg, cg->t_f64, sdx, c),
	                                     f2d(cg, fmul(cg, v, xhat)), ""), sdx, c);
	loop_end(cg, &lc);
	loop_end(cg, &lr);
	c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
	store_t(cg, cg->t_f64, load_t(cg, cg->t_f64, sdy, c), out, c);
	store_t(cg, cg->t_f64, load_t(cg, cg->t_f64, sdx, c), out, iadd(cg, c, ci64(cg, C)));
	loop_end(cg, &lc);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* Pass 2 over one part's rows (variant: BN_ACCUMULATE). ctx (d, x, mean,
 * invstd, dx, ka, kb, kc): dx (+)= ka (d - kb - xhat kc). */
static LLVMValueRef build_bn_dx(Cg *cg, const IRLayer *l, int li, int variant)
{
	int C = l->out_shape.c;
	long pix = pixels(l->out_shape);
	Part p = begin_part_body(cg);
	LLVMValueRef f = cg->fn;
	LLVMValueRef d = part_ptr(cg, &p, 0), x = part_ptr(cg, &p, 1), dx = part_ptr(cg, &p, 4);
	LLVMValueRef mean = frame_copy(cg, cg->t_f32, part_ptr(cg, &p, 2), C);
	LLVMValueRef invstd = frame_copy(cg, cg->t_f32, part_ptr(cg, &p, 3), C);
	LLVMValueRef ka = frame_copy(cg, cg->t_f32, part_ptr(cg, &p, 5), C);
	LLVMValueRef kb = frame_copy(cg, cg->t_f32, part_ptr(cg, &p, 6), C);
	LLVMValueRef kc = frame_copy(cg, cg->t_f32, part_ptr(cg, &p, 7), C);
	Loop lr, lc;
	LLVMValueRef r = loop_begin(cg, &lr, imul(cg, p.lo, pix), imul(cg, p.hi, pix));
	LLVMValueRef off = imul(cg, r, C);
	LLVMValueRef dr = elem_ptr(cg, d, off), xr = elem_ptr(cg, x, off), dxr = elem_ptr(cg, dx, off);
	LLVMValueRef c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
	LLVMValueRef xhat = fmul(cg, fsub(cg, load_f32(cg, xr, c), load_f32(cg, mean, c)),
	                         load_f32(cg, invstd, c));
	LLVMValueRef g = fsub(cg, fsub(cg, load_f32(cg, dr, c), load_f32(cg, kb, c)),
	                      fmul(cg, xhat, load_f32(cg, kc, c)));
	g = fmul(cg, load_f32(cg, ka, c), g);
	if (variant & BN_ACCUMULATE)
		g = fadd(cg, load_f32(cg, dxr, c), g);
	store_f32(cg, g, dxr, c);
	loop_end(cg, &lc);
	loop_end(cg, &lr);
	LLVMBuildRetVoid(cg->b);
	return f;
}

static LLVMValueRef build_bn_backward(Cg *cg, const IRLayer *l, int li, int variant)
{
	int C = l->out_shape.c;
	long stride = bn_part_stride(C);
	LLVMTypeRef ps[10];
	for (int k = 0; k < 9; k++)
		ps[k] = cg->t_pf32;
	ps[9] = cg->t_i32;
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 10, true);
	LLVMValueRef P[10];
	for (int k = 0; k < 10; k++)
		P[k] = LLVMGetParam(f, (unsigned)k);
	LLVMValueRef n = n64(cg, P[9]);
	LLVMValueRef rows = imul(cg, n, pixels(l->out_shape));
	LLVMValueRef table = bn_part_table(cg, C);
	LLVMValueRef c1[] = { P[0], P[1], P[2], P[4], P[5], table };
	LLVMValueRef parts = emit_parallel_ptrs(cg, helper(cg, build_bn_grad_sums, "bn_grad_sums", l, li,
	                                                   variant & (BN_DERIV | BN_ZERO)), c1, 6, n);
	/* sdy[0..C), sdx[0..C), then the row count */
	LLVMValueRef sdy = frame_array(cg, cg->t_f64, 2 * C + 1);
	LLVMValueRef sdx = elem_ptr_t(cg, cg->t_f64, sdy, ci64(cg, C));
	emit_sum_parts(cg, table, parts, stride, 2 * C, sdy);
	LLVMValueRef ka = frame_array(cg, cg->t_f32, C), kb = frame_array(cg, cg->t_f32, C),
	             kc = frame_array(cg, cg->t_f32, C);
	Loop lc;
	LLVMValueRef c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
	store_f32(cg, d2f(cg, load_t(cg, cg->t_f64, sdx, c)), P[6], c);
	store_f32(cg, d2f(cg, load_t(cg, cg->t_f64, sdy, c)), P[7], c);
	loop_end(cg, &lc);
	LLVMValueRef cnt_at = elem_ptr_t(cg, cg->t_f64, sdy, ci64(cg, 2 * C));
	LLVMBuildStore(cg->b, LLVMBuildSIToFP(cg->b, rows, cg->t_f64, ""), cnt_at);
	emit_allreduce(cg, sdy, 2 * C + 1);
	LLVMValueRef cnt = LLVMBuildLoad2(cg->b, cg->t_f64, cnt_at, "");
	c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
	LLVMValueRef s1 = load_t(cg, cg->t_f64, sdy, c), s2 = load_t(cg, cg->t_f64, sdx, c);
	store_f32(cg, fmul(cg, load_f32(cg, P[3], c), load_f32(cg, P[5], c)), ka, c);
	store_f32(cg, d2f(cg, LLVMBuildFDiv(cg->b, s1, cnt, "")), kb, c);
	store_f32(cg, d2f(cg, LLVMBuildFDiv(cg->b, s2, cnt, "")), kc, c);
	loop_end(cg, &lc);
	if (variant & BN_SEND) {
		LLVMValueRef c2[] = { P[0], P[2], P[4], P[5], P[8], ka, kb, kc };
		emit_parallel_ptrs(cg, helper(cg, build_bn_dx, "bn_dx", l, li, variant & BN_ACCUMULATE),
		                   c2, 8, n);
	}
	LLVMBuildRetVoid(cg->b);
	return f;
}

static void backward_batchnorm(Cg *cg, Bwd *bw, const IRLayer *l, int li, LLVMValueRef d,
                               bool deriv, bool zero)
{
	LLVMValueRef dx = NULL;
	bool acc = false, send = send_to(cg, bw, l->input, &dx, &acc);
	int variant = (deriv ? BN_DERIV : 0) | (zero ? BN_ZERO : 0) | (send ? BN_SEND : 0)
	            | (acc ? BN_ACCUMULATE : 0);
	LLVMValueRef args[] = {
		d, slot_ptr(cg, bw->bufs, l->y), layer_input_ptr(cg, bw->bufs, l),
		slot_ptr(cg, bw->bufs, l->W), slot_ptr(cg, bw->bufs, l->aux),
		slot_ptr(cg, bw->bufs, l->aux2), slot_ptr(cg, bw->bufs, l->gW),
		slot_ptr(cg, bw->bufs, l->gb), send ? dx : null_f32(cg), bw->n,
	};
	call_fn(cg, helper(cg, build_bn_backward, "bn_backward", l, li, variant), args, 10);
}

/* add and standalone activations, backward over one part's samples in
 * one pass: the error finished (the FIN_DERIV and FIN_ZERO bits of
 * variant) and sent on to each input that needs it (EB_ bits: the first
 * and the second input, stored or accumulated; the same buffer twice
 * for add(x, x), so the second reads what the first wrote).
 * ctx (d, y, first input's error, second's). */
enum { EB_SEND1 = 8, EB_ACC1 = 16, EB_SEND2 = 32, EB_ACC2 = 64 };
static LLVMValueRef build_eltwise_back(Cg *cg, const IRLayer *l, int li, int variant)
{
	Part p = begin_part_body(cg);
	LLVMValueRef f = cg->fn;
	LLVMValueRef at = imul(cg, p.lo, l->out);   /* add and act: in == out */
	LLVMValueRef d = elem_ptr(cg, part_ptr(cg, &p, 0), at), y = elem_ptr(cg, part_ptr(cg, &p, 1), at);
	LLVMValueRef dst[2] = { elem_ptr(cg, part_ptr(cg, &p, 2), at), elem_ptr(cg, part_ptr(cg, &p, 3), at) };
	Loop lp;
	LLVMValueRef i = loop_begin(cg, &lp, ci64(cg, 0), imul(cg, LLVMBuildSub(cg->b, p.hi, p.lo, ""), l->out));
	LLVMValueRef v;
	if (variant & FIN_ZERO) {
		v = cf32(cg, 0);
		store_f32(cg, v, d, i);
	} else {
		v = load_f32(cg, d, i);
		if (variant & FIN_DERIV) {
			v = emit_deriv(cg, l->act, v, load_f32(cg, y, i));
			store_f32(cg, v, d, i);
		}
	}
	static const int send[2] = { EB_SEND1, EB_SEND2 }, acc[2] = { EB_ACC1, EB_ACC2 };
	for (int k = 0; k < 2; k++) {
		if (!(variant & send[k]))
			continue;
		LLVMValueRef w = (variant & acc[k]) ? fadd(cg, load_f32(cg, dst[k], i), v) : v;
		store_f32(cg, w, dst[k], i);
	}
	loop_end(cg, &lp);
	LLVMBuildRetVoid(cg->b);
	return f;
}

static void backward_eltwise(Cg *cg, Bwd *bw, const IRLayer *l, int li, LLVMValueRef d, int fin)
{
	int inputs[2] = { l->input, l->kind == OP_ADD ? l->input2 : -1 };
	static const int send[2] = { EB_SEND1, EB_SEND2 }, acc[2] = { EB_ACC1, EB_ACC2 };
	int variant = fin & (FIN_DERIV | FIN_ZERO);
	LLVMValueRef dst[2] = { null_f32(cg), null_f32(cg) };
	for (int k = 0; k < 2; k++) {
		bool accumulate;
		if (send_to(cg, bw, inputs[k], &dst[k], &accumulate))
			variant |= send[k] | (accumulate ? acc[k] : 0);
	}
	/* gelu's derivative reads the pre-activation (bwd_finish) */
	LLVMValueRef y = l->act == ACT_GELU ? layer_input_ptr(cg, bw->bufs, l) : slot_ptr(cg, bw->bufs, l->y);
	LLVMValueRef ctx[] = { d, y, dst[0], dst[1] };
	emit_parallel_ptrs(cg, helper(cg, build_eltwise_back, "eltwise_back", l, li, variant), ctx, 4,
	                   n64(cg, bw->n));
}

/* The layers without parameters: each sends its error on to its inputs. */
static void backward_plain(Cg *cg, Bwd *bw, const IRLayer *l, int li, LLVMValueRef d)
{
	LLVMValueRef dx;
	bool acc;
	if (l->kind == OP_ADD || l->kind == OP_ACT) {
		int inputs[2] = { l->input, l->kind == OP_ADD ? l->input2 : -1 };
		for (int k = 0; k < 2; k++) {
			if (!send_to(cg, bw, inputs[k], &dx, &acc))
				continue;
			LLVMValueRef args[] = { d, dx, bw->n };
			call_fn(cg, helper(cg, build_pass_error, "pass_error", l, li, acc ? 2 : 1), args, 3);
		}
		return;
	}
	if (!send_to(cg, bw, l->input, &dx, &acc))
		return;
	if (l->kind == OP_GLOBAL_AVGPOOL || l->kind == OP_FLATTEN) {
		emit_parallel(cg, helper(cg, build_reshape_body, "reshape_body", l, li, acc ? 2 : 1),
		              bw->bufs, bw->n);
		return;
	}
	/* the pools scatter into the input's error, so it starts at 0 */
	int variant = POOL_BACK | (acc ? POOL_ACCUMULATE : 0);
	emit_parallel(cg, helper(cg, build_pool_body, "pool_body", l, li, variant), bw->bufs, bw->n);
}

static void backward_layer(Cg *cg, Bwd *bw, int li)
{
	const IRNetwork *net = cg->net;
	int last = net->nlayers - 1;
	const IRLayer *l = &net->layers[li], *out = &net->layers[last];
	bool direct = li != last && takes_direct(l, bw->all_bp);
	if (li != last && !direct && !bw->need[li])
		return;  /* nothing upstream learns from this error */
	if (!bw->all_bp)
		emit_profile_mark(cg, li, WTN_PHASE_BACKWARD);
	LLVMValueRef d = li == last ? bw->d_out : slot_ptr(cg, bw->bufs, l->d);
	if (direct) {  /* dfa: straight from the output error */
		emit_sgemm(cg, 0, 0, bw->n, ci32(cg, l->out), ci32(cg, out->out), bw->d_out,
		           out->out, slot_ptr(cg, bw->bufs, l->D), l->out, 0.0, d, l->out);
		bw->received[li] = true;
	}
	/* the loss already applied the output layer's derivative */
	bool zero = li != last && !bw->received[li];
	bool deriv = li != last && l->act != ACT_IDENTITY;
	const Lowering *lw = lowering_of(l->kind);
	bool bias = lw->sums_bias && l->bias;
	int variant = (deriv ? FIN_DERIV : 0) | (zero ? FIN_ZERO : 0) | (bias ? FIN_BIAS : 0);
	lw->backward(cg, bw, l, li, d, variant);
}

/* The finishing pass over d (FIN_ bits); gelu's derivative reads the
 * input, the pre-activation. */
static void bwd_finish(Cg *cg, Bwd *bw, const IRLayer *l, int li, LLVMValueRef d, int fin)
{
	if (!fin)
		return;
	LLVMValueRef y = l->act == ACT_GELU ? layer_input_ptr(cg, bw->bufs, l) : slot_ptr(cg, bw->bufs, l->y);
	LLVMValueRef args[] = { d, y, opt_slot_ptr(cg, bw->bufs, l->gb), bw->n };
	call_fn(cg, helper(cg, build_finish_error, "finish", l, li, fin), args, 4);
}

static void bwd_dense(Cg *cg, Bwd *bw, const IRLayer *l, int li, LLVMValueRef d, int fin)
{
	bwd_finish(cg, bw, l, li, d, fin);
	backward_dense(cg, bw, l, li, d);
}

static void bwd_plain(Cg *cg, Bwd *bw, const IRLayer *l, int li, LLVMValueRef d, int fin)
{
	if (l->kind == OP_ADD || l->kind == OP_ACT) {   /* finished as it is sent */
		backward_eltwise(cg, bw, l, li, d, fin);
		return;
	}
	bwd_finish(cg, bw, l, li, d, fin);
	backward_plain(cg, bw, l, li, d);
}

static void bwd_batchnorm(Cg *cg, Bwd *bw, const IRLayer *l, int li, LLVMValueRef d, int fin)
{
	backward_batchnorm(cg, bw, l, li, d, fin & FIN_DERIV, fin & FIN_ZERO);
}

/* ---- dropout ---- */

/* y = x * mask (the runtime draws the mask, 0 or 1/(1-p), before each
 * training forward: rt_dropout_masks); eval: y = x. Params (x, mask, y, n);
 * variant 2, 3: the backward, dx = (or +=, variant 3) d * mask, params
 * (d, mask, dx, n). */
static LLVMValueRef build_dropout(Cg *cg, const IRLayer *l, int li, int variant)
{
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_pf32, cg->t_i32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 4, true);
	LLVMValueRef x = LLVMGetParam(f, 0), mask = LLVMGetParam(f, 1), y = LLVMGetParam(f, 2);
	Loop lp;
	LLVMValueRef i = loop_begin(cg, &lp, ci64(cg, 0), imul(cg, n64(cg, LLVMGetParam(f, 3)), l->out));
	LLVMValueRef v = load_f32(cg, x, i);
	if (variant != 1)
		v = fmul(cg, v, load_f32(cg, mask, i));
	if (variant == 3)
		v = fadd(cg, load_f32(cg, y, i), v);
	store_f32(cg, v, y, i);
	loop_end(cg, &lp);
	LLVMBuildRetVoid(cg->b);
	return f;
}

static void fwd_dropout(Cg *cg, LLVMValueRef bufs, LLVMValueRef n, const IRLayer *l, int li, bool eval)
{
	LLVMValueRef args[] = { layer_input_ptr(cg, bufs, l), slot_ptr(cg, bufs, l->aux),
	                        slot_ptr(cg, bufs, l->y), n };
	call_fn(cg, helper(cg, build_dropout, "dropout", l, li, eval ? 1 : 0), args, 4);
}

static void bwd_dropout(Cg *cg, Bwd *bw, const IRLayer *l, int li, LLVMValueRef d, int fin)
{
	LLVMValueRef dx;
	bool acc;
	bwd_finish(cg, bw, l, li, d, fin);
	if (!send_to(cg, bw, l->input, &dx, &acc))
		return;
	LLVMValueRef args[] = { d, slot_ptr(cg, bw->bufs, l->aux), dx, bw->n };
	call_fn(cg, helper(cg, build_dropout, "dropout", l, li, acc ? 3 : 2), args, 4);
}

/* ---- layernorm ---- */

/* Over the C channels (features) of each of the n * H * W positions, as
 * PyTorch's LayerNorm(C) on channels-last data: y = f((x - mean) invstd
 * gamma + beta), invstd = 1/sqrt(var + eps), the biased variance, summed
 * in double; mean and invstd saved per position (aux, aux2) for the
 * backward. Params (x, y, gamma, beta, mean, invstd, n). */
static LLVMValueRef build_ln_forward(Cg *cg, const IRLayer *l, int li, int variant)
{
	int C = l->out_shape.c;
	LLVMTypeRef ps[7];
	for (int k = 0; k < 6; k++)
		ps[k] = cg->t_pf32;
	ps[6] = cg->t_i32;
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 7, true), P[7];
	for (int k = 0; k < 7; k++)
		P[k] = LLVMGetParam(f, (unsigned)k);
	LLVMValueRef rows = imul(cg, n64(cg, P[6]), pixels(l->out_shape));
	LLVMValueRef s1 = entry_var(cg, cg->t_f64, cf64(cg, 0)), s2 = entry_var(cg, cg->t_f64, cf64(cg, 0));
	Loop lr, lc;
	LLVMValueRef r = loop_begin(cg, &lr, ci64(cg, 0), rows);
	LLVMValueRef xr = elem_ptr(cg, P[0], imul(cg, r, C)), yr = elem_ptr(cg, P[1], imul(cg, r, C));
	LLVMBuildStore(cg->b, cf64(cg, 0), s1);
	LLVMBuildStore(cg->b, cf64(cg, 0), s2);
	LLVMValueRef c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
	LLVMValueRef x = f2d(cg, load_f32(cg, xr, c));
	LLVMBuildStore(cg->b, LLVMBuildFAdd(cg->b, LLVMBuildLoad2(cg->b, cg->t_f64, s1, ""), x, ""), s1);
	LLVMBuildStore(cg->b, LLVMBuildFAdd(cg->b, LLVMBuildLoad2(cg->b, cg->t_f64, s2, ""),
	                                    LLVMBuildFMul(cg->b, x, x, ""), ""), s2);
	loop_end(cg, &lc);
	LLVMValueRef mean = LLVMBuildFDiv(cg->b, LLVMBuildLoad2(cg->b, cg->t_f64, s1, ""), cf64(cg, C), "");
	LLVMValueRef var = LLVMBuildFSub(cg->b, LLVMBuildFDiv(cg->b, LLVMBuildLoad2(cg->b, cg->t_f64, s2, ""),
	                                                      cf64(cg, C), ""),
	                                 LLVMBuildFMul(cg->b, mean, mean, ""), "");
	var = LLVMBuildSelect(cg->b, LLVMBuildFCmp(cg->b, LLVMRealOLT, var, cf64(cg, 0), ""),
	                      cf64(cg, 0), var, "");
	LLVMValueRef invstd = LLVMBuildFDiv(cg->b, cf64(cg, 1),
	                                    dsqrt(cg, LLVMBuildFAdd(cg->b, var, cf64(cg, l->eps), "")), "");
	LLVMValueRef mf = d2f(cg, mean), sf = d2f(cg, invstd);
	store_f32(cg, mf, P[4], r);
	store_f32(cg, sf, P[5], r);
	c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
	LLVMValueRef xhat = fmul(cg, fsub(cg, load_f32(cg, xr, c), mf), sf);
	LLVMValueRef v = fadd(cg, fmul(cg, xhat, load_f32(cg, P[2], c)), load_f32(cg, P[3], c));
	store_f32(cg, emit_act(cg, l->act, v), yr, c);
	loop_end(cg, &lc);
	loop_end(cg, &lr);
	LLVMBuildRetVoid(cg->b);
	return f;
}

static void fwd_layernorm(Cg *cg, LLVMValueRef bufs, LLVMValueRef n, const IRLayer *l, int li, bool eval)
{
	LLVMValueRef args[] = {
		layer_input_ptr(cg, bufs, l), slot_ptr(cg, bufs, l->y), slot_ptr(cg, bufs, l->W),
		slot_ptr(cg, bufs, l->b), slot_ptr(cg, bufs, l->aux), slot_ptr(cg, bufs, l->aux2), n,
	};
	call_fn(cg, helper(cg, build_ln_forward, "ln_forward", l, li, 0), args, 7);
}

/* After the finishing pass (d *= f'(y)), with g = d gamma and xhat
 * recomputed from the saved mean and invstd:
 * dx (+)= invstd (g - mean_c g - xhat mean_c(g xhat)) per position;
 * gW = sum d xhat, gb = sum d over positions (double). Params (d, x,
 * gamma, mean, invstd, gW, gb, dx, n); variant LN_SEND, LN_ACCUMULATE. */
enum { LN_SEND = 1, LN_ACCUMULATE = 2 };
static LLVMValueRef build_ln_backward(Cg *cg, const IRLayer *l, int li, int variant)
{
	int C = l->out_shape.c;
	LLVMTypeRef ps[9];
	for (int k = 0; k < 8; k++)
		ps[k] = cg->t_pf32;
	ps[8] = cg->t_i32;
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 9, true), P[9];
	for (int k = 0; k < 9; k++)
		P[k] = LLVMGetParam(f, (unsigned)k);
	LLVMValueRef rows = imul(cg, n64(cg, P[8]), pixels(l->out_shape));
	LLVMValueRef gg = frame_array(cg, cg->t_f64, C), gbeta = frame_array(cg, cg->t_f64, C);
	LLVMValueRef m1 = entry_var(cg, cg->t_f64, cf64(cg, 0)), m2 = entry_var(cg, cg->t_f64, cf64(cg, 0));
	Loop lr, lc;
	LLVMValueRef c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
	store_t(cg, cg->t_f64, cf64(cg, 0), gg, c);
	store_t(cg, cg->t_f64, cf64(cg, 0), gbeta, c);
	loop_end(cg, &lc);
	LLVMValueRef r = loop_begin(cg, &lr, ci64(cg, 0), rows);
	LLVMValueRef off = imul(cg, r, C);
	LLVMValueRef dr = elem_ptr(cg, P[0], off), xr = elem_ptr(cg, P[1], off), dxr = elem_ptr(cg, P[7], off);
	LLVMValueRef mean = load_f32(cg, P[3], r), invstd = load_f32(cg, P[4], r);
	LLVMBuildStore(cg->b, cf64(cg, 0), m1);
	LLVMBuildStore(cg->b, cf64(cg, 0), m2);
	c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
	LLVMValueRef dv = load_f32(cg, dr, c);
	LLVMValueRef xhat = fmul(cg, fsub(cg, load_f32(cg, xr, c), mean), invstd);
	store_t(cg, cg->t_f64, LLVMBuildFAdd(cg->b, load_t(cg, cg->t_f64, gg, c), f2d(cg, fmul(cg, dv, xhat)), ""), gg, c);
	store_t(cg, cg->t_f64, LLVMBuildFAdd(cg->b, load_t(cg, cg->t_f64, gbeta, c), f2d(cg, dv), ""), gbeta, c);
	LLVMValueRef g = f2d(cg, fmul(cg, dv, load_f32(cg, P[2], c)));
	LLVMBuildStore(cg->b, LLVMBuildFAdd(cg->b, LLVMBuildLoad2(cg->b, cg->t_f64, m1, ""), g, ""), m1);
	LLVMBuildStore(cg->b, LLVMBuildFAdd(cg->b, LLVMBuildLoad2(cg->b, cg->t_f64, m2, ""),
	                                    LLVMBuildFMul(cg->b, g, f2d(cg, xhat), ""), ""), m2);
	loop_end(cg, &lc);
	if (variant & LN_SEND) {
		LLVMValueRef a = d2f(cg, LLVMBuildFDiv(cg->b, LLVMBuildLoad2(cg->b, cg->t_f64, m1, ""), cf64(cg, C), ""));
		LLVMValueRef b = d2f(cg, LLVMBuildFDiv(cg->b, LLVMBuildLoad2(cg->b, cg->t_f64, m2, ""), cf64(cg, C), ""));
		c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
		xhat = fmul(cg, fsub(cg, load_f32(cg, xr, c), mean), invstd);
		g = fmul(cg, load_f32(cg, dr, c), load_f32(cg, P[2], c));
		LLVMValueRef v = fmul(cg, invstd, fsub(cg, fsub(cg, g, a), fmul(cg, xhat, b)));
		if (variant & LN_ACCUMULATE)
			v = fadd(cg, load_f32(cg, dxr, c), v);
		store_f32(cg, v, dxr, c);
		loop_end(cg, &lc);
	}
	loop_end(cg, &lr);
	c = loop_begin(cg, &lc, ci64(cg, 0), ci64(cg, C));
	store_f32(cg, d2f(cg, load_t(cg, cg->t_f64, gg, c)), P[5], c);
	store_f32(cg, d2f(cg, load_t(cg, cg->t_f64, gbeta, c)), P[6], c);
	loop_end(cg, &lc);
	LLVMBuildRetVoid(cg->b);
	return f;
}

static void bwd_layernorm(Cg *cg, Bwd *bw, const IRLayer *l, int li, LLVMValueRef d, int fin)
{
	LLVMValueRef dx = NULL;
	bool acc = false;
	bwd_finish(cg, bw, l, li, d, fin);
	bool send = send_to(cg, bw, l->input, &dx, &acc);
	LLVMValueRef args[] = {
		d, layer_input_ptr(cg, bw->bufs, l), slot_ptr(cg, bw->bufs, l->W),
		slot_ptr(cg, bw->bufs, l->aux), slot_ptr(cg, bw->bufs, l->aux2),
		slot_ptr(cg, bw->bufs, l->gW), slot_ptr(cg, bw->bufs, l->gb), send ? dx : null_f32(cg), bw->n,
	};
	int variant = (send ? LN_SEND : 0) | (acc ? LN_ACCUMULATE : 0);
	call_fn(cg, helper(cg, build_ln_backward, "ln_backward", l, li, variant), args, 9);
}

/* One row per kind, in WTN_OPS's order. */
static const Lowering lowerings[WTN_NOPS] = {
	[OP_DENSE] = { fwd_dense, bwd_dense, true },
	[OP_CONV2D] = { fwd_conv, backward_conv, true },  /* finishes its error itself, in parallel */
	[OP_BATCHNORM] = { forward_batchnorm, bwd_batchnorm, false },
	[OP_MAXPOOL] = { fwd_pool, bwd_plain, false },
	[OP_AVGPOOL] = { fwd_pool, bwd_plain, false },
	[OP_GLOBAL_AVGPOOL] = { fwd_gap, bwd_plain, false },
	[OP_FLATTEN] = { fwd_flatten, bwd_plain, false },
	[OP_ADD] = { fwd_eltwise, bwd_plain, false },
	[OP_ACT] = { fwd_eltwise, bwd_plain, false },
	[OP_DROPOUT] = { fwd_dropout, bwd_dropout, false },
	[OP_LAYERNORM] = { fwd_layernorm, bwd_layernorm, false },
};

static const Lowering *lowering_of(int kind)
{
	return &lowerings[kind];
}

static void emit_update_in_backward(Cg *cg, LLVMValueRef bufs, int li);

/* wtn_backward (all_bp false): errors as each layer's rule says.
 * wtn_backward_bp (all_bp true): every layer carries through W and dfa
 * layers take theirs from above like any other, as backprop would. */
static void build_backward(Cg *cg, const char *fn_name, bool all_bp)
{
	const IRNetwork *net = cg->net;
	int last = net->nlayers - 1;
	LLVMTypeRef ps[] = { cg->t_ppf32, cg->t_i32 };
	LLVMValueRef f = begin_fn(cg, fn_name, cg->t_void, ps, 2, false);
	Bwd bw = { .bufs = LLVMGetParam(f, 0), .n = LLVMGetParam(f, 1), .all_bp = all_bp };
	bw.d_out = slot_ptr(cg, bw.bufs, net->layers[last].d);
	bw.need = needs_error(net, all_bp);
	bw.received = calloc((size_t)net->nlayers, sizeof *bw.received);
	if (!bw.received) { perror("wtnc"); exit(1); }
	for (int li = last; li >= 0; li--) {
		backward_layer(cg, &bw, li);
		if (!all_bp)
			emit_update_in_backward(cg, bw.bufs, li);
	}
	LLVMBuildRetVoid(cg->b);
	free(bw.need);
	free(bw.received);
}

/* ---- update ---- */

typedef struct Hyper {
	LLVMValueRef lr, mom, wd, b1, one_b1, b2, one_b2, eps, step_size, bc2_sqrt, seed, step;
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
	h.step = load_hyper(cg, hyper, WTN_H_STEP);
	return h;
}

/* One element of torch.optim.SGD (dampening 0) or torch.optim.Adam with L2
 * weight decay wd: p[i] from the raw gradient g, state m[i], v[i].
 * Returns the new p[i]. g_raw NULL: SGD's momentum m[i] already holds
 * momentum m[i] + g (the weight-gradient product put it there: see
 * grad_into_velocity); only the decay is left to add. */
static LLVMValueRef emit_opt_elem(Cg *cg, const Hyper *h, LLVMValueRef wd,
                                  LLVMValueRef g_raw, LLVMValueRef p, LLVMValueRef m,
                                  LLVMValueRef v, LLVMValueRef i)
{
	const TrainCfg *t = &cg->net->train;
	LLVMValueRef w = load_f32(cg, p, i);
	if (!g_raw) {
		LLVMValueRef m1 = fadd(cg, load_f32(cg, m, i), fmul(cg, wd, w));
		store_f32(cg, m1, m, i);
		LLVMValueRef w1 = fsub(cg, w, fmul(cg, h->lr, m1));
		store_f32(cg, w1, p, i);
		return w1;
	}
	LLVMValueRef g = fadd(cg, g_raw, fmul(cg, wd, w));
	LLVMValueRef step, w1;
	if (t->optimizer == OPT_ADAM) {
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

/* How B follows W inside W's update loop, from the layer's rule. The
 * rule's arguments are data (the layer's row of the rule.args buffer,
 * wtn_model.h): k_* index it, -1 where the rule has no such argument. */
typedef struct FbUpdate {
	FbChange change;    /* FB_CHANGE_NONE: B is not touched by this loop */
	int k_scale;        /* usf: B = sign(W) * scale (the runtime resolves 0) */
	double std;         /* brsf: std of the magnitudes, W's init std */
	int layer;          /* brsf: mixed into the seed, so layers draw apart */
	int k_decay;        /* kp: decay >= 0: W and B use it, not the optimiser's */
	int k_decay_steps;  /* kp: `decay` for the first decay_steps steps, then the
	                       optimiser's (0: throughout) */
} FbUpdate;

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
                                 LLVMValueRef scale, LLVMValueRef i)
{
	LLVMValueRef mag;
	switch (fb->change) {
	case FB_CHANGE_AS_W:            /* kp: exactly W's gradient and step */
		emit_opt_elem(cg, h, wd, g, B, mB, vB, i);
		return;
	case FB_CHANGE_SIGN_W:          /* usf */
		mag = scale;
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
 * (p, g, m, v, B, mB, vB, M, hyper, lo, hi, rule args of the layer). */
enum { UPD_NPARAMS = 12 };
static LLVMValueRef build_param_update(Cg *cg, const char *name, const FbUpdate *fb,
                                       bool has_m, bool has_v, bool in_velocity)
{
	LLVMTypeRef ps[UPD_NPARAMS];
	for (int k = 0; k < 9; k++)
		ps[k] = cg->t_pf32;
	ps[9] = ps[10] = cg->t_i64;
	ps[11] = cg->t_pf32;
	LLVMValueRef f = begin_fn(cg, name, cg->t_void, ps, UPD_NPARAMS, true);
	LLVMValueRef P[UPD_NPARAMS];
	for (int k = 0; k < UPD_NPARAMS; k++)
		P[k] = LLVMGetParam(f, (unsigned)k);
	/* absent state is a compile-time fact: pass a constant null down */
	LLVMValueRef m = has_m ? P[2] : null_f32(cg), v = has_v ? P[3] : null_f32(cg);
	LLVMValueRef mB = has_m ? P[5] : null_f32(cg), vB = has_v ? P[6] : null_f32(cg);
	Hyper h = emit_load_hyper(cg, P[8]);
	LLVMValueRef wd = h.wd, scale = NULL;
	if (fb->k_decay >= 0) {
		/* kp: its own decay (>= 0) for its first decay_steps steps (0: always) */
		LLVMValueRef decay = load_f32(cg, P[11], ci64(cg, fb->k_decay));
		LLVMValueRef own = LLVMBuildFCmp(cg->b, LLVMRealOGE, decay, cf32(cg, 0), "");
		if (fb->k_decay_steps >= 0) {
			LLVMValueRef steps = load_f32(cg, P[11], ci64(cg, fb->k_decay_steps));
			LLVMValueRef always = LLVMBuildFCmp(cg->b, LLVMRealOLE, steps, cf32(cg, 0), "");
			LLVMValueRef early = LLVMBuildFCmp(cg->b, LLVMRealOLT, h.step, steps, "");
			own = LLVMBuildAnd(cg->b, own, LLVMBuildOr(cg->b, always, early, ""), "");
		}
		wd = LLVMBuildSelect(cg->b, own, decay, h.wd, "");
	}
	if (fb->k_scale >= 0)
		scale = load_f32(cg, P[11], ci64(cg, fb->k_scale));
	LLVMValueRef key = NULL, unit = NULL;
	if (fb->change == FB_CHANGE_REDRAW_SIGN_W) {
		/* the step's seed, as its bits, and the layer, hashed once per call */
		LLVMValueRef bits = LLVMBuildBitCast(cg->b, h.seed, cg->t_i32, "");
		key = emit_mix32(cg, LLVMBuildAdd(cg->b, bits, ci32(cg, (int)(0x9e3779b9u * (unsigned)fb->layer)), ""));
		/* std * sqrt(12 / 4) per unit of the sum of 16-bit uniforms, halved */
		unit = cf32(cg, fb->std * 1.7320508075688772 / 131072.0);
	}
	Loop lp;
	LLVMValueRef i = loop_begin(cg, &lp, P[9], P[10]);
	LLVMValueRef g = in_velocity ? NULL : load_f32(cg, P[1], i);
	LLVMValueRef w_new = emit_opt_elem(cg, &h, wd, g, P[0], m, v, i);
	emit_feedback_follow(cg, fb, &h, wd, g, w_new, P[4], mB, vB, P[7], key, unit, scale, i);
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

/* Layer li's row of the rule arguments in force. */
static LLVMValueRef rule_args_ptr(Cg *cg, LLVMValueRef bufs, int li)
{
	return elem_ptr(cg, slot_ptr(cg, bufs, cg->net->args_slot), ci64(cg, (long)li * WTN_MAX_ARGS));
}

/* The update loop for fb and the states present, shared by every tensor
 * that needs the same one (only brsf's bakes its layer in). */
static LLVMValueRef param_update_fn(Cg *cg, const FbUpdate *fb, bool has_m, bool has_v,
                                    bool in_velocity)
{
	char name[96];
	if (fb->change == FB_CHANGE_REDRAW_SIGN_W)
		snprintf(name, sizeof name, "upd.%d.%d%d%d.%d.%a", fb->change, has_m, has_v,
		         in_velocity, fb->layer, fb->std);
	else
		snprintf(name, sizeof name, "upd.%d.%d%d%d.%d.%d.%d", fb->change, has_m, has_v,
		         in_velocity, fb->k_scale, fb->k_decay, fb->k_decay_steps);
	LLVMValueRef f = LLVMGetNamedFunction(cg->mod, name);
	if (f)
		return f;
	Saved pos = save_pos(cg);
	f = build_param_update(cg, name, fb, has_m, has_v, in_velocity);
	restore_pos(cg, pos);
	return f;
}

/* Chunks [first, end) of np chunks of the tensor. */
static void emit_tensor_update(Cg *cg, LLVMValueRef bufs, LLVMValueRef hyper,
                               LLVMValueRef first, LLVMValueRef end, LLVMValueRef np, int li,
                               long len, const FbUpdate *fb, UpdSlots s, bool in_velocity)
{
	LLVMValueRef helper = param_update_fn(cg, fb, s.m >= 0, s.v >= 0, in_velocity);
	LLVMValueRef lo = chunk_bound(cg, len, first, np);
	LLVMValueRef hi = chunk_bound(cg, len, end, np);
	LLVMValueRef args[UPD_NPARAMS] = {
		slot_ptr(cg, bufs, s.p), slot_ptr(cg, bufs, s.g), opt_slot_ptr(cg, bufs, s.m),
		opt_slot_ptr(cg, bufs, s.v), opt_slot_ptr(cg, bufs, s.B), opt_slot_ptr(cg, bufs, s.mB),
		opt_slot_ptr(cg, bufs, s.vB), opt_slot_ptr(cg, bufs, s.M), hyper, lo, hi,
		rule_args_ptr(cg, bufs, li),
	};
	call_fn(cg, helper, args, UPD_NPARAMS);
}

/* Where a rule argument sits in the layer's row of rule.args (sema fills
 * in the defaults; model_verify checks wm has every one); -1: absent. */
static int rule_arg_index(const IRLayer *l, const char *param)
{
	for (int k = 0; k < l->nargs; k++)
		if (!strcmp(l->arg_name[k], param))
			return k;
	return -1;
}

/* What W's update loop does to B for layer l. */
static FbUpdate feedback_update(const IRLayer *l, int li)
{
	FbUpdate fb = { .change = l->B >= 0 ? ir_layer_rule(l)->change : FB_CHANGE_NONE,
	                .layer = li, .k_scale = -1, .k_decay = -1, .k_decay_steps = -1 };
	if (fb.change == FB_CHANGE_MIRROR)
		fb.change = FB_CHANGE_NONE;  /* B moves in wtn_mirror instead */
	if (fb.change == FB_CHANGE_REDRAW_SIGN_W)
		fb.std = ir_init_std(l);
	if (fb.change == FB_CHANGE_SIGN_W)
		fb.k_scale = rule_arg_index(l, "scale");
	if (fb.change == FB_CHANGE_AS_W) {
		fb.k_decay = rule_arg_index(l, "decay");
		fb.k_decay_steps = rule_arg_index(l, "decay_steps");
	}
	return fb;
}

/* Layer li's optimiser step on chunks [first, end) of np of each of its
 * tensors; in_backward: the step inside wtn_backward, where W's gradient
 * may already be in its momentum (grad_into_velocity). */
static void emit_layer_update(Cg *cg, LLVMValueRef bufs, LLVMValueRef hyper, LLVMValueRef first,
                              LLVMValueRef end, LLVMValueRef np, int li, bool in_backward)
{
	const IRNetwork *net = cg->net;
	const IRLayer *l = &net->layers[li];
	const FbUpdate plain = { .change = FB_CHANGE_NONE, .k_scale = -1, .k_decay = -1,
	                         .k_decay_steps = -1 };
	FbUpdate fb = feedback_update(l, li);
	emit_tensor_update(cg, bufs, hyper, first, end, np, li, net->bufs[l->W].elems, &fb,
	                   (UpdSlots){ l->W, l->gW, l->mW, l->vW,
	                               fb.change != FB_CHANGE_NONE ? l->B : -1,
	                               l->mB, l->vB, l->M },
	                   in_backward && grad_into_velocity(cg, l));
	if (l->b >= 0)
		emit_tensor_update(cg, bufs, hyper, first, end, np, li, net->bufs[l->b].elems, &plain,
		                   (UpdSlots){ l->b, l->gb, l->mb, l->vb, -1, -1, -1, -1 }, false);
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
	LLVMValueRef next = LLVMBuildNSWAdd(cg->b, part, ci64(cg, 1), "");
	for (int li = 0; li < net->nlayers; li++) {
		if (net->layers[li].W < 0)
			continue;  /* no parameters */
		emit_profile_mark(cg, li, WTN_PHASE_UPDATE);
		emit_layer_update(cg, bufs, hyper, part, next, np, li, false);
	}
	LLVMBuildRetVoid(cg->b);
}

/* The step inside wtn_backward (wtn_step_hyper set): layer li's update as
 * a parallel loop's body over UPD_CHUNKS chunks of each tensor (as even
 * shares as wtn_update's for any thread count up to 64), its context
 * bufs. */
enum { UPD_CHUNKS = 64 };
static LLVMValueRef build_update_part(Cg *cg, int li)
{
	char name[32];
	snprintf(name, sizeof name, "updpart.%d", li);
	LLVMTypeRef ps[4];
	LLVMGetParamTypes(cg->range_ty, ps);
	Saved pos = save_pos(cg);
	LLVMValueRef f = begin_fn(cg, name, cg->t_void, ps, 4, true);
	LLVMValueRef bufs = LLVMBuildBitCast(cg->b, LLVMGetParam(f, 0), cg->t_ppf32, "");
	/* part 0 runs on the step's thread, whose marks count */
	LLVMBasicBlockRef join = if_begin(cg, LLVMBuildICmp(cg->b, LLVMIntEQ, LLVMGetParam(f, 3),
	                                                    ci32(cg, 0), ""));
	emit_profile_mark(cg, li, WTN_PHASE_UPDATE);
	if_end(cg, join);
	LLVMValueRef hyper = LLVMBuildLoad2(cg->b, cg->t_pf32, cg->step_hyper, "");
	emit_layer_update(cg, bufs, hyper, LLVMGetParam(f, 1), LLVMGetParam(f, 2),
	                  ci64(cg, UPD_CHUNKS), li, true);
	LLVMBuildRetVoid(cg->b);
	restore_pos(cg, pos);
	return f;
}

/* After layer li's backward in wtn_backward: while wtn_step_hyper is set,
 * its optimiser step, at once, while its gradients and weights are still
 * in cache (the layers below never read them). */
static void emit_update_in_backward(Cg *cg, LLVMValueRef bufs, int li)
{
	if (cg->net->layers[li].W < 0)
		return;
	LLVMValueRef hyper = LLVMBuildLoad2(cg->b, cg->t_pf32, cg->step_hyper, "");
	LLVMBasicBlockRef join = if_begin(cg, LLVMBuildIsNotNull(cg->b, hyper, ""));
	LLVMTypeRef t_pi8 = LLVMPointerType(LLVMInt8TypeInContext(cg->ctx), 0);
	LLVMValueRef args[] = { build_update_part(cg, li), LLVMBuildBitCast(cg->b, bufs, t_pi8, ""),
	                        ci64(cg, UPD_CHUNKS), ci32(cg, UPD_CHUNKS) };
	LLVMBuildCall2(cg->b, cg->pfor_ty, cg->pfor, args, 4, "");
	if_end(cg, join);
}

/* ---- mirror ---- */

/* wtn_noise_begin(count, std) and wtn_noise_part(dst, first, count): the
 * runtime's noise in slices, declared on first use. */
static void emit_noise_call(Cg *cg, const char *name, LLVMValueRef *args, int nargs)
{
	LLVMTypeRef begin[] = { cg->t_i64, cg->t_f32 }, part[] = { cg->t_pf32, cg->t_i64, cg->t_i64 };
	LLVMTypeRef ty = LLVMFunctionType(cg->t_void, nargs == 2 ? begin : part, (unsigned)nargs, 0);
	LLVMValueRef f = LLVMGetNamedFunction(cg->mod, name);
	if (!f)
		f = LLVMAddFunction(cg->mod, name, ty);
	LLVMBuildCall2(cg->b, ty, f, args, (unsigned)nargs, "");
}

/* This part's samples [lo, hi) of the noise batch, into x */
static void emit_noise_part(Cg *cg, LLVMValueRef x, const IRLayer *l, LLVMValueRef lo,
                            LLVMValueRef hi)
{
	LLVMValueRef first = imul(cg, lo, l->in);
	LLVMValueRef args[] = { elem_ptr(cg, x, first), first,
	                        imul(cg, LLVMBuildSub(cg->b, hi, lo, ""), l->in) };
	emit_noise_call(cg, "wtn_noise_part", args, 3);
}

/* A conv mirror step on noise samples [lo, hi), an im2col conv: the noise,
 * then per chunk the columns, y = col W^T and this part's partials
 * G (+)= y^T col, all while the chunk is in cache. W is already in patch
 * order (wp) where it needs to be. */
static LLVMValueRef build_conv_mirror_body(Cg *cg, const IRLayer *l, int li, int variant)
{
	ConvBody cb = begin_conv_body(cg, l, li, BODY_Y | BODY_W_PATCH | BODY_PARTIALS, 0);
	emit_noise_part(cg, cb.x, l, cb.r.lo, cb.r.hi);
	Chunks ck;
	im2col_chunks_begin(cg, &cb, l, li, &ck);
	LLVMValueRef rows = to_i32(cg, imul(cg, ck.cnt, pixels(l->out_shape)));
	LLVMValueRef yc = sample_ptr(cg, cb.y, ck.s0, l->out);
	emit_chunk_response(cg, &cb, l, rows, yc);
	emit_chunk_wgrad(cg, &cb, l, &ck, rows, yc);
	chunks_end(cg, &ck);
	return end_conv_body(cg, &cb);
}

/* A conv mirror step on noise samples [lo, hi) of a tiled conv, with
 * training's kernels: per sample the padded noise, y = conv(x) without
 * bias (tc_tile or wino_tile, variant 3) and this part's partials G += the
 * correlation of y with x (tc_wgrad, or wino_wgrad and wino_wgrad_out),
 * in the scratch layout of build_tc_bwd_body. */
static LLVMValueRef build_tc_mirror_body(Cg *cg, const IRLayer *l, int li, int variant)
{
	IRTiledGeo g;
	ir_tiled_geo(l, &g);
	ConvBody cb = begin_conv_body(cg, l, li, BODY_Y | BODY_PARTIALS, 0);
	LLVMValueRef xp = cb.cols;
	emit_zero(cg, cb.G, ci64(cg, l->out_shape.c * ir_conv_patch(l)));
	emit_zero(cg, xp, ci64(cg, g.xsize));
	emit_noise_part(cg, cb.x, l, cb.r.lo, cb.r.hi);
	TiledWgrad tw = begin_tiled_wgrad(cg, l, li, &g, xp, cb.G);
	LLVMValueRef pad = helper(cg, build_tc_pad, "tc_pad", l, li, 0);
	TilePass tp = tile_pass(cg, l, li, &cb.cs, IR_WINO_FWD, 3);
	Loop ls;
	LLVMValueRef s = samples_begin(cg, &cb, l, pad, &ls);
	LLVMValueRef ys = sample_ptr(cg, cb.y, s, l->out);
	emit_tile(cg, &tp, xp, ys, cb.b, tw.scratch);
	emit_tiled_wgrad(cg, &tw, xp, ys);
	loop_end(cg, &ls);
	end_tiled_wgrad(cg, &tw, l, li);
	return end_conv_body(cg, &cb);
}

/* The same for a conv on few input channels whose training runs the tiled
 * forward and the few-channel weight gradient (tcf_wgrad, into Gt in its
 * scratch, then G in patch order as build_tcf_bwd_body does). */
static LLVMValueRef build_tcf_mirror_body(Cg *cg, const IRLayer *l, int li, int variant)
{
	IRTiledGeo g;
	ir_tiled_geo(l, &g);
	int F = l->out_shape.c;
	long patch = ir_conv_patch(l);
	ConvBody cb = begin_conv_body(cg, l, li, BODY_Y | BODY_PARTIALS, 0);
	LLVMValueRef xp = cb.cols, Gt = elem_ptr(cg, xp, ci64(cg, g.xsize));
	emit_zero(cg, xp, ci64(cg, g.xsize + F * patch));
	emit_noise_part(cg, cb.x, l, cb.r.lo, cb.r.hi);
	LLVMValueRef pad = helper(cg, build_tc_pad, "tc_pad", l, li, 0);
	TilePass tp = tile_pass(cg, l, li, &cb.cs, IR_WINO_FWD, 3);
	LLVMValueRef wg = helper(cg, build_tcf_wgrad, "tcf_wgrad", l, li, 0);
	Loop ls;
	LLVMValueRef s = samples_begin(cg, &cb, l, pad, &ls);
	LLVMValueRef ys = sample_ptr(cg, cb.y, s, l->out);
	emit_tile(cg, &tp, xp, ys, cb.b, NULL);
	LLVMValueRef a3[] = { xp, ys, Gt };
	call_fn(cg, wg, a3, 3);
	loop_end(cg, &ls);
	emit_gt_to_patch(cg, Gt, cb.G, F, patch);
	return end_conv_body(cg, &cb);
}

/* dc_trim(yt): zero the columns of the output planes past each row (and
 * past the last), which dc_fwd computes and dc_out drops, so that the
 * planes can serve as dc_wgrad's error planes. */
static LLVMValueRef build_dc_trim(Cg *cg, const IRLayer *l, int li, int variant)
{
	DirectGeo g;
	conv_small_direct(cg->net, l, &g);
	Shape out = l->out_shape;
	LLVMTypeRef ps[] = { cg->t_pf32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 1, true);
	LLVMValueRef yt = LLVMGetParam(f, 0);
	Loop lf, lh, lw;
	LLVMValueRef plane = imul(cg, loop_begin(cg, &lf, ci64(cg, 0), ci64(cg, out.c)), g.len);
	LLVMValueRef oh = loop_begin(cg, &lh, ci64(cg, 0), ci64(cg, out.h));
	LLVMValueRef row = iadd(cg, plane, imul(cg, oh, g.wp));
	LLVMValueRef ow = loop_begin(cg, &lw, ci64(cg, out.w), ci64(cg, g.wp));
	store_f32(cg, cf32(cg, 0), yt, iadd(cg, row, ow));
	loop_end(cg, &lw);
	loop_end(cg, &lh);
	LLVMValueRef e = loop_begin(cg, &lw, ci64(cg, (long)out.h * g.wp), ci64(cg, g.len));
	store_f32(cg, cf32(cg, 0), yt, iadd(cg, plane, e));
	loop_end(cg, &lw);
	loop_end(cg, &lf);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* A conv mirror step on noise samples [lo, hi) of a direct conv (few input
 * channels, as training does it): the noise, then per sample the padded
 * planes, y's planes (dc_fwd), y itself (linear), and this part's partials
 * G += the correlation of y's planes with the input's (dc_wgrad). */
static LLVMValueRef build_dc_mirror_body(Cg *cg, const IRLayer *l, int li, int variant)
{
	DirectGeo g;
	conv_small_direct(cg->net, l, &g);
	ConvBody cb = begin_conv_body(cg, l, li, BODY_Y | BODY_W | BODY_PARTIALS | BODY_ZERO_G, 0);
	LLVMValueRef yt = dc_out_planes(cg, &cb, l, &g);
	emit_zero(cg, cb.cols, ci64(cg, l->in_shape.c * g.pitch));
	emit_noise_part(cg, cb.x, l, cb.r.lo, cb.r.hi);
	DcForward df = dc_forward_helpers(cg, l, li, 2);
	LLVMValueRef trim = helper(cg, build_dc_trim, "dc_trim", l, li, 0);
	LLVMValueRef wg = helper(cg, build_dc_wgrad, "dc_wgrad", l, li, 0);
	Loop ls;
	LLVMValueRef s = samples_begin(cg, &cb, l, df.pad, &ls);
	emit_dc_forward(cg, &cb, l, &df, yt, s);
	call_fn(cg, trim, &yt, 1);
	LLVMValueRef a4[] = { cb.cols, cb.G, yt };
	call_fn(cg, wg, a4, 3);
	loop_end(cg, &ls);
	return end_conv_body(cg, &cb);
}

/* B = keep B + alpha (the parts' partials summed), from patch order
 * [F, kh, kw, C] to PyTorch's [F, C, kh, kw]: the mirror's decay and its
 * update in one pass. Params (B, partials, parts, alpha, keep). */
static LLVMValueRef build_mirror_fold(Cg *cg, const IRLayer *l, int li, int variant)
{
	long stride = ir_partials_stride(l);
	LLVMTypeRef ps[] = { cg->t_pf32, cg->t_pf32, cg->t_i32, cg->t_f32, cg->t_f32 };
	LLVMValueRef f = begin_fn(cg, cg->helper_name, cg->t_void, ps, 5, true);
	LLVMValueRef B = LLVMGetParam(f, 0), P = LLVMGetParam(f, 1);
	LLVMValueRef parts = n64(cg, LLVMGetParam(f, 2));
	LLVMValueRef alpha = LLVMGetParam(f, 3), keep = LLVMGetParam(f, 4);
	PatchWalk pw;
	patch_walk_begin(cg, l, &pw);
	LLVMValueRef upd = fmul(cg, alpha, emit_parts_sum(cg, P, pw.src, parts, stride));
	store_f32(cg, fadd(cg, fmul(cg, keep, load_f32(cg, B, pw.dst)), upd), B, pw.dst);
	patch_walk_end(cg, &pw);
	LLVMBuildRetVoid(cg->b);
	return f;
}

/* One mirror step of layer l: noise x in its input slot ([n, in]; images
 * for conv), linear response y = x W^T (conv: y = conv(x), no bias) in its
 * y slot, then B = (1 - decay) B + (rate / n) y^T x (conv: y^T col(x)
 * over all n*OH*OW output pixels, divided by n*OH*OW rather than n, so that
 * the fixed point is rate * noise^2 / decay * W as for dense layers). The
 * decay rides in the last product's beta (or the conv's fold). A conv with
 * a kernel wider than 1x1 runs as its training does: samples split between
 * parts (wtn_parallel_for), each making its own noise and, through the
 * direct convolution or im2col, its own y and correlation; the fold sums
 * the parts' correlations into B. */
static void emit_mirror_step(Cg *cg, LLVMValueRef bufs, LLVMValueRef n, const IRLayer *l, int li)
{
	/* the rule's arguments in force */
	LLVMValueRef ra = rule_args_ptr(cg, bufs, li);
	LLVMValueRef noise = load_f32(cg, ra, ci64(cg, rule_arg_index(l, "noise")));
	LLVMValueRef rate = load_f32(cg, ra, ci64(cg, rule_arg_index(l, "rate")));
	LLVMValueRef decay = load_f32(cg, ra, ci64(cg, rule_arg_index(l, "decay")));
	LLVMValueRef keep = fsub(cg, cf32(cg, 1), decay);
	LLVMValueRef x = layer_input_ptr(cg, bufs, l), y = slot_ptr(cg, bufs, l->y);
	LLVMValueRef count = LLVMBuildNSWMul(cg->b, LLVMBuildSExt(cg->b, n, cg->t_i64, ""),
	                                     ci64(cg, l->in), "");
	long pixels = l->kind == OP_CONV2D ? (long)l->out_shape.h * l->out_shape.w : 1;
	LLVMValueRef alpha = fdiv(cg, fdiv(cg, rate, cf32(cg, (double)pixels)),
	                          LLVMBuildSIToFP(cg->b, n, cg->t_f32, ""));
	LLVMValueRef B = slot_ptr(cg, bufs, l->B), W = slot_ptr(cg, bufs, l->W);
	if (l->kind == OP_CONV2D && !ir_conv_direct(l)) {
		DirectGeo g;
		IRTiledGeo tg;
		bool tiled = conv_tiled(cg->net, l, &tg);
		bool few = !tiled && conv_tiled_fwd(cg->net, l, &tg) && conv_few_wgrad(cg->net, l, &tg);
		bool small = !tiled && !few && conv_small_direct(cg->net, l, &g);
		ConvScratch cs = conv_scratch(cg, bufs, l);
		if (tiled || few)   /* few: tc_weights alone (never Winograd) */
			emit_tiled_weights(cg, l, li, 0, &cs, W);
		else if (!small && cs.wp)
			emit_permute(cg, l, li, 0, cs.wp, W, NULL);
		LLVMValueRef bargs[] = { count, noise };
		emit_noise_call(cg, "wtn_noise_begin", bargs, 2);
		LLVMValueRef body = tiled ? helper(cg, build_tc_mirror_body, "tc_mirror_body", l, li, 0)
		                  : few ? helper(cg, build_tcf_mirror_body, "tcf_mirror_body", l, li, 0)
		                  : small ? helper(cg, build_dc_mirror_body, "dc_mirror_body", l, li, 0)
		                          : helper(cg, build_conv_mirror_body, "conv_mirror_body", l, li, 0);
		LLVMValueRef parts = emit_parallel_upto(cg, body, bufs, n, ir_conv_parts(l));
		LLVMValueRef args[] = { B, slot_ptr(cg, bufs, ir_partials_slot(cg->net)), parts,
		                        alpha, keep };
		call_fn(cg, helper(cg, build_mirror_fold, "mirror_fold", l, li, 0), args, 5);
		return;
	}
	LLVMValueRef nargs[] = { x, count, noise };
	LLVMBuildCall2(cg->b, cg->noise_ty, cg->noise, nargs, 3, "");
	/* dense, or a 1x1 conv: a dense layer over n*OH*OW pixels */
	LLVMValueRef rows = LLVMBuildNSWMul(cg->b, n, ci32(cg, (int)pixels), "");
	int in = l->kind == OP_CONV2D ? l->in_shape.c : l->in;
	int out = l->kind == OP_CONV2D ? l->out_shape.c : l->out;
	emit_sgemm(cg, 0, 1, rows, ci32(cg, out), ci32(cg, in), x, in, W, in, 0.0, y, out);
	emit_sgemm_v(cg, 1, 0, ci32(cg, out), ci32(cg, in), rows, alpha, y, out, x, in, keep, B, in);
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
		ncases += ir_layer_rule(&net->layers[li])->change == FB_CHANGE_MIRROR
		          && net->layers[li].B >= 0;
	/* n <= 0: no noise, so no step (B would only decay) */
	LLVMBasicBlockRef pick = LLVMAppendBasicBlockInContext(cg->ctx, f, "pick");
	LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLE, n, ci32(cg, 0), ""), done, pick);
	LLVMPositionBuilderAtEnd(cg->b, pick);
	LLVMValueRef sw = LLVMBuildSwitch(cg->b, LLVMGetParam(f, 1), done, (unsigned)ncases);
	for (int li = 0; li < net->nlayers; li++) {
		const IRLayer *l = &net->layers[li];
		if (ir_layer_rule(l)->change != FB_CHANGE_MIRROR || l->B < 0)
			continue;
		LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(cg->ctx, f, "mirror");
		LLVMAddCase(sw, ci32(cg, li), bb);
		LLVMPositionBuilderAtEnd(cg->b, bb);
		emit_mirror_step(cg, bufs, n, l, li);
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
	LLVMTypeRef ar[] = { LLVMPointerType(cg->t_f64, 0), cg->t_i32 };
	cg->allreduce = LLVMAddFunction(cg->mod, "wtn_allreduce",
	                                LLVMFunctionType(cg->t_void, ar, 2, 0));
	/* void body(i8 *ctx, i64 lo, i64 hi, i32 part) and wtn_parallel_for */
	LLVMTypeRef t_pi8 = LLVMPointerType(LLVMInt8TypeInContext(cg->ctx), 0);
	LLVMTypeRef rg[] = { t_pi8, cg->t_i64, cg->t_i64, cg->t_i32 };
	cg->range_ty = LLVMFunctionType(cg->t_void, rg, 4, 0);
	LLVMTypeRef pf[] = { LLVMPointerType(cg->range_ty, 0), t_pi8, cg->t_i64, cg->t_i32 };
	cg->pfor_ty = LLVMFunctionType(cg->t_i32, pf, 4, 0);
	cg->pfor = LLVMAddFunction(cg->mod, "wtn_parallel_for", cg->pfor_ty);
	cg->profiling = LLVMAddGlobal(cg->mod, cg->t_i32, "wtn_profiling");
	/* defined here, not in the runtime: a runtime that sets it cannot link
	 * with an older object whose backward would leave the update undone */
	cg->step_hyper = LLVMAddGlobal(cg->mod, cg->t_pf32, "wtn_step_hyper");
	LLVMSetInitializer(cg->step_hyper, LLVMConstPointerNull(cg->t_pf32));
	LLVMTypeRef pm[] = { cg->t_i32, cg->t_i32 };
	cg->profile_mark_ty = LLVMFunctionType(cg->t_void, pm, 2, 0);
	cg->profile_mark = LLVMAddFunction(cg->mod, "wtn_profile_mark", cg->profile_mark_ty);
	cg->f32_fn_ty = LLVMFunctionType(cg->t_f32, &cg->t_f32, 1, 0);
	cg->f_expf = LLVMAddFunction(cg->mod, "expf", cg->f32_fn_ty);
	cg->f_logf = LLVMAddFunction(cg->mod, "logf", cg->f32_fn_ty);
	cg->f_erff = LLVMAddFunction(cg->mod, "erff", cg->f32_fn_ty);
	unsigned sqrt_id = LLVMLookupIntrinsicID("llvm.sqrt", 9);
	cg->f_sqrt = LLVMGetIntrinsicDeclaration(cg->mod, sqrt_id, &cg->t_f32, 1);
	cg->f_vexp = build_vexp(cg);
	cg->f_vtanh = build_vtanh(cg);
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

/* LLVM only warns about a CPU it does not know (once per function it
 * compiles) and then generates generic code; catch its warning instead. */
bool codegen_cpu_known(const char *cpu)
{
	LLVMInitializeNativeTarget();
	char *triple = LLVMGetDefaultTargetTriple(), *err = NULL;
	LLVMTargetRef target;
	bool known = true;
	FILE *capture = tmpfile();
	int saved = dup(STDERR_FILENO);
	if (capture && saved >= 0 && !LLVMGetTargetFromTriple(triple, &target, &err)) {
		fflush(stderr);
		dup2(fileno(capture), STDERR_FILENO);
		const char *features = strncmp(triple, "x86_64", 6) == 0 ? "+64bit" : "";
		LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, cpu, features,
		                                                  LLVMCodeGenLevelNone, LLVMRelocPIC,
		                                                  LLVMCodeModelDefault);
		dup2(saved, STDERR_FILENO);
		known = lseek(fileno(capture), 0, SEEK_END) == 0;
		if (tm)
			LLVMDisposeTargetMachine(tm);
	}
	if (saved >= 0)
		close(saved);
	if (capture)
		fclose(capture);
	LLVMDisposeMessage(err);
	LLVMDisposeMessage(triple);
	return known;
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
	/* LLVM's unroller multiplies every layer's loops (their trip counts are
	 * batch sizes, unknown here): 4x the compile time of a deep network,
	 * with training no faster for it (ResNet-20 and the bench conv net
	 * measured at least as fast without). The vectoriser still interleaves. */
	LLVMPassBuilderOptionsSetLoopUnrolling(po, false);
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

/* Helpers shared between layers stay functions: inlined, each call site
 * would be optimised and compiled again (ResNet-18: 2.5x the compile time),
 * for a call per layer and step saved. Only the math kernels marked
 * alwaysinline (vexp, vtanh) go into their loops. */
static void keep_helpers_out_of_line(Cg *cg)
{
	unsigned ai = LLVMGetEnumAttributeKindForName("alwaysinline", 12);
	for (LLVMValueRef f = LLVMGetFirstFunction(cg->mod); f; f = LLVMGetNextFunction(f))
		if (!LLVMIsDeclaration(f) && LLVMGetLinkage(f) == LLVMInternalLinkage
		    && !LLVMGetEnumAttributeAtIndex(f, LLVMAttributeFunctionIndex, ai))
			add_fn_attr(cg, f, "noinline");
}

/* Whether f has a loop: a branch back to a block at or before its own in
 * layout order (the builder appends blocks in order, so code without loops
 * only ever branches forward). */
static bool has_loop(LLVMValueRef f)
{
	unsigned nb = LLVMCountBasicBlocks(f), i = 0;
	LLVMBasicBlockRef *blocks = malloc(sizeof *blocks * (nb ? nb : 1));
	LLVMGetBasicBlocks(f, blocks);
	bool loop = false;
	for (i = 0; i < nb && !loop; i++) {
		LLVMValueRef term = LLVMGetBasicBlockTerminator(blocks[i]);
		unsigned ns = term ? LLVMGetNumSuccessors(term) : 0;
		for (unsigned k = 0; k < ns && !loop; k++) {
			LLVMBasicBlockRef to = LLVMGetSuccessor(term, k);
			for (unsigned j = 0; j <= i && !loop; j++)
				loop = blocks[j] == to;
		}
	}
	free(blocks);
	return loop;
}

/* The exported kernels are mostly a call per layer; one without a loop
 * has nothing for the optimiser to speed up, and in a deep network it is
 * the longest function: compiled as it stands (optnone, the fast
 * instruction selector), it costs a few loads per layer and step. */
static void leave_straight_kernels_alone(Cg *cg)
{
	if (getenv("WTNC_NO_OPTNONE"))
		return;
	unsigned ai = LLVMGetEnumAttributeKindForName("noinline", 8);
	for (LLVMValueRef f = LLVMGetFirstFunction(cg->mod); f; f = LLVMGetNextFunction(f))
		if (!LLVMIsDeclaration(f) && LLVMGetLinkage(f) != LLVMInternalLinkage
		    && !has_loop(f)) {
			if (!LLVMGetEnumAttributeAtIndex(f, LLVMAttributeFunctionIndex, ai))
				add_fn_attr(cg, f, "noinline");
			add_fn_attr(cg, f, "optnone");
		}
}

/* WTNC_TIME=1 prints the seconds each phase took (where compile time goes). */
static double phase_clock(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void phase_mark(const char *what, double *t)
{
	static int on = -1;
	if (on < 0) {
		const char *e = getenv("WTNC_TIME");
		on = e && *e && strcmp(e, "0") != 0;
	}
	double now = phase_clock();
	if (on && what)
		fprintf(stderr, "wtnc: %-10s %.3f s\n", what, now - *t);
	*t = now;
}

int codegen(const IRNetwork *net, const CodegenOpts *opts, const char *out_path,
            bool emit_llvm)
{
	double t;
	phase_mark(NULL, &t);
	if (getenv("WTNC_LLVM_OPTS")) {
		const char *argv[] = { "wtnc", getenv("WTNC_LLVM_OPTS") };
		LLVMParseCommandLineOptions(2, argv, NULL);
	}
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

	build_forward(&cg, "wtn_forward", false);
	build_forward(&cg, "wtn_forward_eval", true);
	build_loss(&cg);
	build_backward(&cg, "wtn_backward", false);
	build_backward(&cg, "wtn_backward_bp", true);
	build_update(&cg);
	build_mirror(&cg);
	phase_mark("build", &t);

	int rc = model_emit(cg.ctx, cg.mod, td, net);
	char *err = NULL;
	if (!rc && LLVMVerifyModule(cg.mod, LLVMReturnStatusAction, &err)) {
		fprintf(stderr, "wtnc: internal error: generated module is invalid:\n%s\n", err);
		rc = 1;
	}
	LLVMDisposeMessage(err);
	phase_mark("verify", &t);
	keep_helpers_out_of_line(&cg);
	leave_straight_kernels_alone(&cg);
	if (!rc)
		rc = optimise(cg.mod, tm, opts ? opts->opt_level : 3);
	phase_mark("optimise", &t);
	if (!rc)
		rc = write_output(cg.mod, tm, out_path, emit_llvm);
	phase_mark("emit", &t);

	LLVMDisposeBuilder(cg.b);
	LLVMDisposeModule(cg.mod);
	LLVMDisposeTargetData(td);
	LLVMContextDispose(cg.ctx);
	LLVMDisposeTargetMachine(tm);
	LLVMDisposeMessage(triple);
	return rc;
}
