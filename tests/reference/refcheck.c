/* refcheck.c: checks one compiled network's kernels against refmath.c.
 * Linked with NET.o (from `wtnc NET.wtn -c`) and libwtnrt.a.
 *
 *   refcheck [--seed S] [--n N] [--expect FILE]
 *                                    one step: y, loss, d (through W, B or D),
 *                                    gW, gb, backprop's d (wtn_backward_bp),
 *                                    update (W, b, B per rule), wtn_mirror
 *   refcheck --fd [--seed S]         finite differences vs gW (bp layers)
 *   refcheck --fa-props [--seed S]   B fixed while W moves; B != W path
 *   refcheck --rule-props T [--seed S]
 *                                    T training steps; after each, every layer's
 *                                    rule invariant (usf, frsf, brsf, fa/wm/dfa
 *                                    fixed); kp's W - B against its recurrence
 *   refcheck --mirror-steps T [--seed S]
 *                                    T mirror steps per wm layer, W fixed: angle
 *                                    < 5 deg, |B|/|W| within 10% of rate*noise^2/decay
 *   refcheck --noise [--seed S]      the noise stream: N(0, std^2) by its moments
 *                                    and tails; the same numbers in slices
 *   refcheck --dump FILE [--seed S] [--b-equals-w]
 *                                    one step, then every param to FILE
 * --expect FILE (from gennet) first checks the model against the source.
 *
 * Tolerance (reference mode): element i of a buffer passes when
 *   |got_i - want_i| <= 1e-4 * max(|want_i|, max_j |want_j|) + 1e-12.
 * Relative to the larger of the element and the buffer's largest element:
 * scale-free, so buffers of small numbers (errors d ~ 1e-3) are held to the
 * same 1e-4 as buffers of large ones, while an element that is tiny only
 * because of cancellation is not asked for more digits than float keeps. */
#include "refmath.h"
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double TOL = 1e-4;

/* ---- random numbers: splitmix64, seeded per buffer name ---- */
static uint64_t rng_state;

static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double rng_uniform(double lo, double hi)
{
	return lo + (hi - lo) * ((rng_next() >> 11) * (1.0 / 9007199254740992.0));
}

/* Same name and seed, same numbers: two networks sharing a layer start equal. */
static void rng_seed_name(const char *name, long seed)
{
	uint64_t h = 1469598103934665603ull;
	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	rng_state = h ^ ((uint64_t)seed * 0x2545f4914f6cdd1dull);
}

/* ---- the network and its buffers ---- */
enum { ROLE_OTHER, ROLE_X, ROLE_WEIGHT, ROLE_BIAS, ROLE_FEEDBACK, ROLE_DFA, ROLE_MAG,
       ROLE_GRAD, ROLE_M, ROLE_V, ROLE_ACT, ROLE_GAMMA, ROLE_RMEAN, ROLE_RVAR, ROLE_MASK };

typedef struct Ctx {
	RtModel m;
	float **bufs;
	int batch, n;
	long seed;
	int *role;
	int *fan_in;           /* per slot: W's fan_in for weight-like slots */
	double *drop;          /* per slot: a dropout mask's p */
	int *need;             /* per layer, scratch of error_needed */
	int32_t *labels;
	float hyper[WTN_H_COUNT];
	int failures;
} Ctx;

static void fail_head(Ctx *c);

static int lidx(const Ctx *c, const RtLayer *L) { return (int)(L - c->m.layers); }
static long wcount(const Ctx *c, const RtLayer *L) { return ref_weight_count(&c->m, lidx(c, L)); }

static void set_role(Ctx *c, int slot, int role)
{
	if (slot >= 0 && slot < c->m.nbufs)
		c->role[slot] = role;
}

static void assign_roles(Ctx *c)
{
	c->role = calloc(c->m.nbufs, sizeof *c->role);
	c->fan_in = calloc(c->m.nbufs, sizeof *c->fan_in);
	c->drop = calloc(c->m.nbufs, sizeof *c->drop);
	c->need = calloc(c->m.nlayers, sizeof *c->need);
	set_role(c, c->m.x_slot, ROLE_X);
	for (int l = 0; l < c->m.nlayers; l++) {
		const RtLayer *L = &c->m.layers[l];
		const RefOp *o = ref_op(l);
		int bn = ref_is_norm(l);
		set_role(c, L->W, bn ? ROLE_GAMMA : ROLE_WEIGHT);
		if (o->kind == REF_DROPOUT && L->aux >= 0 && L->aux < c->m.nbufs) {
			set_role(c, L->aux, ROLE_MASK);
			c->drop[L->aux] = o->p;
		}
		set_role(c, L->b, ROLE_BIAS);
		set_role(c, L->B, ROLE_FEEDBACK);
		set_role(c, L->D, ROLE_DFA);
		set_role(c, L->M, ROLE_MAG);
		set_role(c, L->gW, ROLE_GRAD);
		set_role(c, L->gb, ROLE_GRAD);
		set_role(c, L->mW, ROLE_M);
		set_role(c, L->mb, ROLE_M);
		set_role(c, L->mB, ROLE_M);
		set_role(c, L->vW, ROLE_V);
		set_role(c, L->vb, ROLE_V);
		set_role(c, L->vB, ROLE_V);
		set_role(c, L->y, ROLE_ACT);
		set_role(c, L->d, ROLE_ACT);
		set_role(c, o->rmean, ROLE_RMEAN);
		set_role(c, o->rvar, ROLE_RVAR);
		int slots[] = {L->W, L->B, L->M};
		for (int i = 0; i < 3; i++)
			if (slots[i] >= 0 && slots[i] < c->m.nbufs && ref_has_rule(&c->m, l))
				c->fan_in[slots[i]] = ref_fan_in(&c->m, l);
	}
}

static long full_len(const Ctx *c, int slot)
{
	return ref_buf_len(&c->m, slot, c->batch);
}

/* Parameters at a scale where every activation is alive; optimiser state
 * small but nonzero so momentum and Adam paths matter; gradients and
 * activations garbage, so a kernel that reads before writing is caught. */
static void fill_buffer(Ctx *c, int slot)
{
	const RtBuf *b = &c->m.bufs[slot];
	float *p = c->bufs[slot];
	long len = full_len(c, slot);
	double fan_in = c->fan_in[slot] > 0 ? c->fan_in[slot] : b->cols > 0 ? b->cols : 1;
	rng_seed_name(b->name, c->seed);
	for (long i = 0; i < len; i++) {
		double v;
		switch (c->role[slot]) {
		case ROLE_X: v = rng_uniform(-1, 1); break;
		case ROLE_WEIGHT:
		case ROLE_MAG:
		case ROLE_FEEDBACK: v = rng_uniform(-1.5, 1.5) / sqrt(fan_in); break;
		case ROLE_BIAS:
		case ROLE_DFA: v = rng_uniform(-0.5, 0.5); break;
		case ROLE_M: v = rng_uniform(-0.05, 0.05); break;
		case ROLE_V: v = rng_uniform(1e-4, 1e-2); break;
		case ROLE_GAMMA: v = rng_uniform(0.5, 1.5); break;
		case ROLE_RMEAN: v = rng_uniform(-0.5, 0.5); break;
		case ROLE_RVAR: v = rng_uniform(0.5, 2); break;
		case ROLE_MASK: v = rng_uniform(0, 1) >= c->drop[slot] ? 1 / (1 - c->drop[slot]) : 0; break;
		case ROLE_GRAD:
		case ROLE_ACT: v = rng_uniform(-1000, 1000); break;
		default: v = rng_uniform(-1, 1); break;
		}
		p[i] = (float)v;
	}
}

static void fill_labels(Ctx *c, long salt)
{
	int k = c->m.layers[c->m.nlayers - 1].out;
	rng_seed_name("labels", c->seed + salt);
	for (int i = 0; i < c->batch; i++)
		c->labels[i] = (int32_t)(rng_next() % (uint64_t)k);
}

static void fill_hyper(Ctx *c, int t)
{
	const RtTrain *tr = &c->m.train;
	memset(c->hyper, 0, sizeof c->hyper);
	c->hyper[WTN_H_LR] = (float)tr->lr;
	c->hyper[WTN_H_MOMENTUM] = (float)tr->momentum;
	c->hyper[WTN_H_WEIGHT_DECAY] = (float)tr->weight_decay;
	c->hyper[WTN_H_BETA1] = (float)tr->beta1;
	c->hyper[WTN_H_BETA2] = (float)tr->beta2;
	c->hyper[WTN_H_EPS] = (float)tr->eps;
	c->hyper[WTN_H_BC1] = (float)(1 - pow(tr->beta1, t));
	c->hyper[WTN_H_BC2] = (float)(1 - pow(tr->beta2, t));
	c->hyper[WTN_H_SEED] = (float)(c->seed % 100000 + t);
}

/* Every slot the reference reads exists and is in range; a model without
 * them is the compiler's bug, reported instead of crashing on bufs[-1]. */
static void check_slots(Ctx *c)
{
	int bad = 0;
	for (int l = 0; l < c->m.nlayers; l++) {
		const RtLayer *L = &c->m.layers[l];
		const RefOp *o = ref_op(l);
		const char *missing = NULL;
		int rule = ref_has_rule(&c->m, l), norm = ref_is_norm(l), bn = o->kind == REF_BN;
		int drop = o->kind == REF_DROPOUT;
		int need[] = {rule || norm ? L->W : 0, L->y, L->d, rule || norm ? L->gW : 0,
		              L->bias || norm ? L->b : 0, L->bias || norm ? L->gb : 0,
		              rule && (L->carry == RT_CARRY_B || L->change != RT_CHANGE_NONE) ? L->B : 0,
		              ref_takes_output_error(&c->m, l) ? L->D : 0,
		              rule && L->change == RT_CHANGE_RANDMAG_SIGN_W ? L->M : 0,
		              bn ? o->rmean : 0, bn ? o->rvar : 0, norm || drop ? o->aux : 0,
		              norm ? o->aux2 : 0};
		static const char *const names[] = {"W", "y", "d", "gW", "b", "gb", "B", "D", "M",
		                                    "rmean", "rvar", "aux", "aux2"};
		for (int i = 0; i < 13 && !missing; i++)
			if (need[i] < 0 || need[i] >= c->m.nbufs)
				missing = names[i];
		if (L->input >= l || L->input < -1)
			missing = "input layer";
		if (o->kind == REF_ADD && (o->input2 >= l || o->input2 < -1))
			missing = "input2 layer";
		if (!missing && bn && (ref_buf_kind(o->rmean) != REF_BUF_STAT ||
		                       ref_buf_kind(o->rvar) != REF_BUF_STAT))
			missing = "rmean/rvar of kind stat";
		if (!missing && bn && (c->m.bufs[o->aux].elems < o->in.c ||
		                       c->m.bufs[o->aux2].elems < o->in.c))
			missing = "aux/aux2 of >= C elements";
		int n_out = c->m.layers[c->m.nlayers - 1].out;
		if (!missing && ref_takes_output_error(&c->m, l) &&
		    (long)c->m.bufs[L->D].elems != (long)n_out * L->out)
			missing = "D of shape [n_out, out]";
		if (missing) {
			fail_head(c);
			printf("  FAIL model: layer %s has no valid %s slot\n", L->name, missing);
			bad++;
		}
	}
	if (c->m.x_slot < 0 || c->m.x_slot >= c->m.nbufs) {
		fail_head(c);
		printf("  FAIL model: no valid input slot\n");
		bad++;
	}
	if (bad)
		exit(1);
}

static void setup(Ctx *c, long seed, int n)
{
	if (rt_model_load(&c->m) != 0) {
		fprintf(stderr, "refcheck: the network's model does not load\n");
		exit(2);
	}
	if (c->m.nlayers < 1) {
		fprintf(stderr, "refcheck: network has no layers\n");
		exit(2);
	}
	if (ref_model_load(&c->m) != 0) {
		printf("refcheck: FAIL model: the reference cannot read the layers\n");
		exit(1);
	}
	c->seed = seed;
	c->batch = c->m.train.batch > 0 ? c->m.train.batch : 1;
	if (n <= 0) {   /* half the seeds use a partial batch */
		rng_seed_name("n", seed);
		n = rng_next() % 2 ? c->batch : 1 + (int)(rng_next() % (uint64_t)c->batch);
	}
	/* batchnorm of one value per channel has no variance (PyTorch refuses it) */
	for (int l = 0; l < c->m.nlayers; l++)
		if (ref_op(l)->kind == REF_BN && n < 2 && c->batch >= 2)
			n = 2;
	c->n = n < c->batch ? n : c->batch;
	/* a wm layer's noise batch may be larger than the training batch */
	int alloc = c->batch;
	for (int l = 0; l < c->m.nlayers; l++)
		if (c->m.layers[l].change == RT_CHANGE_MIRROR &&
		    rt_rule_arg(&c->m.layers[l], "batch", 0) > alloc)
			alloc = (int)rt_rule_arg(&c->m.layers[l], "batch", 0);
	c->bufs = rt_alloc_buffers(&c->m, alloc);
	if (!c->bufs)
		exit(2);
	c->labels = calloc(c->batch, sizeof *c->labels);
	assign_roles(c);
	check_slots(c);
	for (int s = 0; s < c->m.nbufs; s++)
		fill_buffer(c, s);
	rt_rule_args_write(&c->m, c->bufs);   /* not garbage: the kernels' rule arguments */
	fill_labels(c, 0);
	fill_hyper(c, 1 + (int)(seed % 7));
}

/* ---- snapshots ---- */
static float **snapshot(const Ctx *c)
{
	float **copy = calloc(c->m.nbufs, sizeof *copy);
	for (int s = 0; s < c->m.nbufs; s++) {
		long len = full_len(c, s);
		copy[s] = malloc((len ? len : 1) * sizeof(float));
		memcpy(copy[s], c->bufs[s], len * sizeof(float));
	}
	return copy;
}

static void restore(Ctx *c, float **copy)
{
	for (int s = 0; s < c->m.nbufs; s++)
		memcpy(c->bufs[s], copy[s], full_len(c, s) * sizeof(float));
}

static void free_snapshot(const Ctx *c, float **copy)
{
	for (int s = 0; s < c->m.nbufs; s++)
		free(copy[s]);
	free(copy);
}

/* ---- comparisons ---- */
static void fail_head(Ctx *c)
{
	if (c->failures++ == 0)
		printf("refcheck: network %s, seed %ld, n %d of batch %d\n",
		       c->m.name, c->seed, c->n, c->batch);
}

/* Elementwise check with the tolerance of the header comment, plus
 * 1e-5 slack[i] when slack is given (sums of absolute terms, so a sum that
 * cancels to almost nothing is not asked for digits float never had). */
static int check_close_slack(Ctx *c, const char *stage, const char *name, const float *got,
                             const double *want, const double *slack, long count, double tol)
{
	double scale = 0;
	for (long i = 0; i < count; i++)
		scale = fmax(scale, fabs(want[i]));
	int bad = 0;
	for (long i = 0; i < count; i++) {
		double lim = tol * fmax(fabs(want[i]), scale) + 1e-12;
		if (slack)
			lim += 1e-5 * slack[i];
		if (fabs(got[i] - want[i]) <= lim)
			continue;
		if (bad++ == 0)
			fail_head(c);
		if (bad <= 4)
			printf("  FAIL %s %s[%ld]: got %.9g want %.9g\n", stage, name, i,
			       got[i], want[i]);
	}
	if (bad > 4)
		printf("  ... %d of %ld elements of %s differ\n", bad, count, name);
	return bad;
}

static int check_close(Ctx *c, const char *stage, const char *name,
                       const float *got, const double *want, long count, double tol)
{
	return check_close_slack(c, stage, name, got, want, NULL, count, tol);
}

/* Bit-for-bit equality of every listed slot with a snapshot. */
static int check_unchanged(Ctx *c, const char *stage, float **before,
                           int (*which)(const Ctx *, int), float **now)
{
	int bad = 0;
	for (int s = 0; s < c->m.nbufs; s++) {
		if (!which(c, s))
			continue;
		long len = full_len(c, s);
		for (long i = 0; i < len; i++)
			if (memcmp(&before[s][i], &now[s][i], sizeof(float))) {
				fail_head(c);
				printf("  FAIL %s changed %s[%ld]: was %.9g now %.9g\n", stage,
				       c->m.bufs[s].name, i, before[s][i], now[s][i]);
				bad++;
				break;
			}
	}
	return bad;
}

/* params, optimiser state and the input: no pass but the update may
 * change them (running statistics: see is_fixed) */
static int is_param_or_state(const Ctx *c, int s)
{
	int k = ref_buf_kind(s);
	return k == REF_BUF_PARAM || k == REF_BUF_STATE || c->role[s] == ROLE_X;
}

/* ... and batchnorm's running statistics, which only the training
 * forward changes */
static int is_fixed(const Ctx *c, int s)
{
	return is_param_or_state(c, s) || ref_buf_kind(s) == REF_BUF_STAT;
}

/* what an update must leave alone */
static int is_not_param_or_state(const Ctx *c, int s)
{
	(void)c;
	int k = ref_buf_kind(s);
	return k != REF_BUF_PARAM && k != REF_BUF_STATE;
}

static int is_any(const Ctx *c, int s) { (void)c; (void)s; return 1; }

static double *to_double(const float *p, long count)
{
	double *d = malloc((count ? count : 1) * sizeof *d);
	for (long i = 0; i < count; i++)
		d[i] = p[i];
	return d;
}

/* Whether the backward pass must compute layer l's error: the output's
 * and a dfa layer's always; otherwise when l has weights or passes errors
 * on to a layer that needs them. A layer below which nothing learns (an
 * act or pool on the input) may leave its d slot alone. */
static int error_needed(const Ctx *c, int l, int force_w)
{
	if (l == c->m.nlayers - 1 || (!force_w && ref_takes_output_error(&c->m, l)))
		return 1;
	int need = 0;
	for (int p = 0; p <= l; p++) {
		int in1 = c->m.layers[p].input, in2 = ref_op(p)->kind == REF_ADD ? ref_op(p)->input2 : -1;
		int up = (in1 >= 0 && c->need[in1]) || (in2 >= 0 && c->need[in2]);
		c->need[p] = (force_w || !ref_takes_output_error(&c->m, p)) &&
		             (ref_has_weights(&c->m, p) || up);
		need = c->need[p];
	}
	return need;
}

/* One layer's d against the reference (the output layer's against d_out),
 * and its gradients. force_w: the errors backprop would send. */
static void check_layer_backward(Ctx *c, const char *stage, int l, const double *d_out,
                                 int force_w)
{
	const RtLayer *L = &c->m.layers[l];
	if (!error_needed(c, l, force_w))
		return;
	long len = (long)c->n * L->out;
	double *d = malloc(len * sizeof *d);
	if (l == c->m.nlayers - 1)
		memcpy(d, d_out, len * sizeof *d);
	else
		ref_layer_error(&c->m, c->bufs, l, c->n, d, force_w);
	check_close(c, stage, c->m.bufs[L->d].name, c->bufs[L->d], d, len, TOL);
	free(d);
	if (!ref_has_weights(&c->m, l))
		return;
	long nw = wcount(c, L);
	int nb = ref_is_norm(l) ? ref_op(l)->in.c : ref_op(l)->out.c;
	double *gW = malloc(nw * sizeof *gW), *gb = malloc(nb * sizeof *gb);
	double *sW = malloc(nw * sizeof *sW), *sb = malloc(nb * sizeof *sb);
	ref_layer_grads(&c->m, c->bufs, l, c->n, gW, gb);
	ref_layer_grads_magnitude(&c->m, c->bufs, l, c->n, sW, sb);
	if (L->gW < 0) {
		fail_head(c);
		printf("  FAIL layer %s has no gW slot\n", L->name);
	} else {
		check_close_slack(c, stage, c->m.bufs[L->gW].name, c->bufs[L->gW], gW, sW, nw, TOL);
	}
	int bias = L->bias || ref_is_norm(l);
	if (bias && L->gb < 0) {
		fail_head(c);
		printf("  FAIL layer %s has a bias but no gb slot\n", L->name);
	} else if (bias) {
		check_close_slack(c, stage, c->m.bufs[L->gb].name, c->bufs[L->gb], gb, sb, nb, TOL);
	}
	if (!bias && (L->b >= 0 || L->gb >= 0)) {
		fail_head(c);
		printf("  FAIL layer %s has bias=0 but a b or gb slot\n", L->name);
	}
	free(sW);
	free(sb);
	free(gW);
	free(gb);
}

/* wtn_backward_bp, run from the state after the loss: every layer gets the
 * error backprop would send (W^T d all the way down, D ignored) and the
 * gradients that go with it; parameters and state untouched. */
static void check_backward_bp(Ctx *c, float **after_loss)
{
	restore(c, after_loss);
	wtn_backward_bp(c->bufs, c->n);
	float **now = snapshot(c);
	check_unchanged(c, "backward_bp", after_loss, is_fixed, now);
	free_snapshot(c, now);
	int last = c->m.nlayers - 1;
	long nlast = (long)c->n * c->m.layers[last].out;
	double *d_out = to_double(after_loss[c->m.layers[last].d], nlast);
	for (int l = last; l >= 0; l--)
		check_layer_backward(c, "backward_bp", l, d_out, 1);
	free(d_out);
}

/* ---- reference mode ---- */

/* Input activations of layer l (and add's second operand) from the kernels'
 * buffers, in double. */
static double *layer_input(Ctx *c, int l, int second)
{
	int slot = second ? ref_input2_slot(&c->m, l) : ref_input_slot(&c->m, l);
	return slot < 0 ? NULL : to_double(c->bufs[slot], (long)c->n * c->m.layers[l].in);
}

/* Batchnorm in training mode: the batch mean and 1/sqrt(var + eps) in aux
 * and aux2, running statistics moved by momentum (the running variance
 * with the unbiased batch variance) from their values in `before`. */
static void check_bn_stats(Ctx *c, int l, const double *in, float **before)
{
	const RefOp *o = ref_op(l);
	const RtLayer *L = &c->m.layers[l];
	int C = o->in.c;
	double N = (double)c->n * o->in.h * o->in.w, mo = o->momentum;
	double *mean = malloc(C * sizeof *mean), *var = malloc(C * sizeof *var);
	double *want = malloc(C * sizeof *want);
	ref_bn_batch_stats(&c->m, l, in, c->n, mean, var);
	char what[160];
	snprintf(what, sizeof what, "%s batch mean (aux)", L->name);
	check_close(c, "forward", what, c->bufs[o->aux], mean, C, TOL);
	for (int k = 0; k < C; k++)
		want[k] = 1 / sqrt(var[k] + o->eps);
	snprintf(what, sizeof what, "%s 1/sqrt(var+eps) (aux2)", L->name);
	check_close(c, "forward", what, c->bufs[o->aux2], want, C, TOL);
	for (int k = 0; k < C; k++)
		want[k] = (1 - mo) * before[o->rmean][k] + mo * mean[k];
	check_close(c, "forward", c->m.bufs[o->rmean].name, c->bufs[o->rmean], want, C, TOL);
	for (int k = 0; k < C; k++)
		want[k] = (1 - mo) * before[o->rvar][k] + mo * var[k] * N / (N - 1);
	check_close(c, "forward", c->m.bufs[o->rvar].name, c->bufs[o->rvar], want, C, TOL);
	free(mean);
	free(var);
	free(want);
}

/* Every layer's y from the kernels' inputs; eval: batchnorm with running
 * statistics. before: the state before the pass. */
static void check_forward(Ctx *c, int eval, float **before)
{
	for (int l = 0; l < c->m.nlayers; l++) {
		const RtLayer *L = &c->m.layers[l];
		long out_len = (long)c->n * L->out;
		double *in = layer_input(c, l, 0), *in2 = layer_input(c, l, 1);
		double *y = malloc(out_len * sizeof *y);
		ref_layer_forward(&c->m, c->bufs, l, in, in2, c->n, eval, y);
		check_close(c, eval ? "forward_eval" : "forward", c->m.bufs[L->y].name, c->bufs[L->y],
		            y, out_len, TOL);
		if (ref_op(l)->kind == REF_BN && !eval)
			check_bn_stats(c, l, in, before);
		free(in);
		free(in2);
		free(y);
	}
}

static double *check_loss(Ctx *c, float got_loss)
{
	const RtLayer *O = &c->m.layers[c->m.nlayers - 1];
	double *d = malloc((long)c->n * O->out * sizeof *d);
	double want = ref_loss(&c->m, c->bufs, c->labels, c->n, d);
	if (!(fabs(got_loss - want) <= TOL * fmax(1, fabs(want)))) {
		fail_head(c);
		printf("  FAIL loss: got %.9g want %.9g\n", got_loss, want);
	}
	check_close(c, "loss", c->m.bufs[O->d].name, c->bufs[O->d], d, (long)c->n * O->out, TOL);
	return d;
}

static void check_backward(Ctx *c, const double *d_out)
{
	for (int l = 0; l < c->m.nlayers; l++)
		check_layer_backward(c, "backward", l, d_out, 0);
}

/* One tensor's optimiser step: the reference from the snapshot `before`,
 * compared with the kernels' result in c->bufs. Also checks the step
 * itself (new - old), to catch an update that is small next to w. */
static void check_tensor_step(Ctx *c, float **before, int w, int grad, int ms, int vs,
                              const float *hyper)
{
	const RtTrain *t = &c->m.train;
	if (w < 0)
		return;
	long len = full_len(c, w);
	const char *name = c->m.bufs[w].name;
	if (grad < 0) {
		fail_head(c);
		printf("  FAIL %s has no gradient slot\n", name);
		return;
	}
	if (t->optimizer == RT_OPT_ADAM && (ms < 0 || vs < 0)) {
		fail_head(c);
		printf("  FAIL %s: adam but no m or v state slot\n", name);
		return;
	}
	if (t->optimizer == RT_OPT_SGD && t->momentum != 0 && ms < 0) {
		fail_head(c);
		printf("  FAIL %s: sgd momentum %g but no momentum slot\n", name, t->momentum);
		return;
	}
	double *nw = to_double(before[w], len);
	double *m = ms >= 0 ? to_double(before[ms], len) : NULL;
	double *v = vs >= 0 && t->optimizer == RT_OPT_ADAM ? to_double(before[vs], len) : NULL;
	ref_opt_step(t, hyper, len, before[grad], nw, m, v);
	check_close(c, "update", name, c->bufs[w], nw, len, TOL);
	/* plain sgd may leave an unused momentum slot alone: it affects nothing */
	if (m && !(t->optimizer == RT_OPT_SGD && t->momentum == 0))
		check_close(c, "update", c->m.bufs[ms].name, c->bufs[ms], m, len, TOL);
	if (v)
		check_close(c, "update", c->m.bufs[vs].name, c->bufs[vs], v, len, TOL);

	/* the step: float rounding of w itself is allowed on top of 1e-3 */
	double scale = 0;
	for (long i = 0; i < len; i++)
		scale = fmax(scale, fabs(nw[i] - before[w][i]));
	int bad = 0;
	for (long i = 0; i < len; i++) {
		double want = nw[i] - before[w][i], got = (double)c->bufs[w][i] - before[w][i];
		double lim = 1e-3 * fmax(fabs(want), scale) +
		             2 * FLT_EPSILON * fmax(fabs(nw[i]), fabs(before[w][i])) + 1e-12;
		if (fabs(got - want) <= lim)
			continue;
		if (bad++ == 0)
			fail_head(c);
		if (bad <= 3)
			printf("  FAIL update step of %s[%ld]: got %.9g want %.9g\n", name, i, got, want);
	}
	free(nw);
	free(m);
	free(v);
}

/* ---- B after the update, per change kind ---- */
static float sign_of(float w) { return w > 0 ? 1.0f : w < 0 ? -1.0f : 0.0f; }

/* usf: B = sign(W) * s, every element exactly (s to one float rounding). */
static int check_sign_feedback(Ctx *c, const char *stage, const RtLayer *L)
{
	const float *W = c->bufs[L->W], *B = c->bufs[L->B];
	double s = ref_sign_scale(&c->m, lidx(c, L));
	long count = wcount(c, L);
	float first = 0;
	for (long i = 0; i < count; i++) {
		float mag = fabsf(B[i]);
		int ok = sign_of(B[i]) == sign_of(W[i]) &&
		         (W[i] == 0 || (fabs(mag - s) <= 2 * FLT_EPSILON * s &&
		                        (first == 0 || mag == first)));
		if (W[i] != 0 && first == 0)
			first = mag;
		if (!ok) {
			fail_head(c);
			printf("  FAIL %s usf %s[%ld] = %.9g, W = %.9g, want sign(W) * %.9g\n", stage,
			       c->m.bufs[L->B].name, i, B[i], W[i], s);
			return 1;
		}
	}
	return 0;
}

/* frsf: B = |M| * sign(W), bit for bit. */
static int check_randmag_feedback(Ctx *c, const char *stage, const RtLayer *L)
{
	const float *W = c->bufs[L->W], *B = c->bufs[L->B], *M = c->bufs[L->M];
	for (long i = 0; i < wcount(c, L); i++) {
		float want = fabsf(M[i]) * sign_of(W[i]);
		if (memcmp(&want, &B[i], sizeof want)) {
			fail_head(c);
			printf("  FAIL %s frsf %s[%ld] = %.9g, want |M| sign(W) = %.9g\n", stage,
			       c->m.bufs[L->B].name, i, B[i], want);
			return 1;
		}
	}
	return 0;
}

/* brsf: W's signs, magnitudes drawn from (an approximation of) a normal
 * with W's init std: a sum of 4 uniforms never exceeds 2 sqrt(3) std, and
 * the mean magnitude is close to sqrt(2/pi) std. prev, when not NULL, is B
 * after the previous step: most magnitudes must have changed. */
static int check_redraw_feedback(Ctx *c, const char *stage, const RtLayer *L, const float *prev)
{
	const float *W = c->bufs[L->W], *B = c->bufs[L->B];
	long count = wcount(c, L), nonzero = 0, same = 0;
	double std = ref_init_std(&c->m, lidx(c, L)), sum = 0;
	for (long i = 0; i < count; i++) {
		float mag = fabsf(B[i]);
		int ok = sign_of(B[i]) == sign_of(W[i]) && isfinite(B[i]) &&
		         mag <= 2 * sqrt(3.0) * std * (1 + 1e-5);
		if (!ok) {
			fail_head(c);
			printf("  FAIL %s brsf %s[%ld] = %.9g, W = %.9g: want W's sign and a magnitude "
			       "in (0, %.4g]\n", stage, c->m.bufs[L->B].name, i, B[i], W[i],
			       2 * sqrt(3.0) * std);
			return 1;
		}
		if (W[i] != 0) {
			nonzero++;
			sum += mag;
			same += prev && fabsf(prev[i]) == mag;
		}
	}
	double mean = nonzero ? sum / nonzero : 0, want = sqrt(2 / M_PI) * std;
	if (nonzero >= 100 && !(fabs(mean - want) <= 0.25 * want)) {
		fail_head(c);
		printf("  FAIL %s brsf %s: mean magnitude %.4g, want about %.4g (std %.4g)\n", stage,
		       c->m.bufs[L->B].name, mean, want, std);
		return 1;
	}
	if (prev && same > nonzero / 10) {
		fail_head(c);
		printf("  FAIL %s brsf %s: %ld of %ld magnitudes did not change since the last "
		       "batch\n", stage, c->m.bufs[L->B].name, same, nonzero);
		return 1;
	}
	return 0;
}

static int same_buffer(const Ctx *c, float **a, float **b, int slot)
{
	return !memcmp(a[slot], b[slot], full_len(c, slot) * sizeof(float));
}

static void check_unchanged_slot(Ctx *c, const char *stage, float **before, int slot,
                                 const char *why)
{
	if (slot >= 0 && !same_buffer(c, before, c->bufs, slot)) {
		fail_head(c);
		printf("  FAIL %s changed %s (%s)\n", stage, c->m.bufs[slot].name, why);
	}
}

static void check_feedback_step(Ctx *c, float **before, const RtLayer *L, const float *hyper)
{
	switch (L->change) {
	case RT_CHANGE_AS_W:
		check_tensor_step(c, before, L->B, L->gW, L->mB, L->vB, hyper);
		break;
	case RT_CHANGE_SIGN_W:
		check_sign_feedback(c, "update", L);
		break;
	case RT_CHANGE_RANDMAG_SIGN_W:
		check_unchanged_slot(c, "update", before, L->M, "frsf keeps M");
		check_randmag_feedback(c, "update", L);
		break;
	case RT_CHANGE_REDRAW_SIGN_W:
		check_redraw_feedback(c, "update", L, NULL);
		break;
	case RT_CHANGE_NONE:
		check_unchanged_slot(c, "update", before, L->B, "change=none");
		break;
	case RT_CHANGE_MIRROR:
		check_unchanged_slot(c, "update", before, L->B, "wm changes B in mirror steps only");
		break;
	default:
		fail_head(c);
		printf("  FAIL layer %s: unknown change kind %d\n", L->name, L->change);
	}
}

static void check_update(Ctx *c, float **before, int (*left_alone)(const Ctx *, int))
{
	for (int l = 0; l < c->m.nlayers; l++) {
		const RtLayer *L = &c->m.layers[l];
		if (!ref_has_weights(&c->m, l))
			continue;
		int rule = ref_has_rule(&c->m, l);
		float hyper[WTN_H_COUNT];   /* kp's decay argument replaces weight_decay */
		memcpy(hyper, c->hyper, sizeof hyper);
		hyper[WTN_H_WEIGHT_DECAY] = (float)ref_weight_decay(L, c->hyper);
		check_tensor_step(c, before, L->W, L->gW, L->mW, L->vW, hyper);
		if (L->bias || !rule)
			check_tensor_step(c, before, L->b, L->gb, L->mb, L->vb, c->hyper);
		if (rule && L->B >= 0)
			check_feedback_step(c, before, L, hyper);
		check_unchanged_slot(c, "update", before, L->D, "dfa's D is fixed");
	}
	/* everything but params and state stays as it was */
	check_unchanged(c, "update", before, left_alone, c->bufs);
}

static int is_not_param_state_or_grad(const Ctx *c, int s)
{
	return is_not_param_or_state(c, s) && ref_buf_kind(s) != REF_BUF_GRAD;
}

/* A training step's wtn_backward (wtn_step_hyper set) makes the update
 * itself, layer by layer: the same step as wtn_backward then wtn_update,
 * up to rounding where a weight-gradient product adds straight into the
 * momentum. That gradient slot then keeps what it held before the
 * backward; every other one holds the gradient. */
static void check_backward_with_step(Ctx *c, float **after_loss, float **before)
{
	restore(c, after_loss);
	wtn_step_hyper = c->hyper;
	wtn_backward(c->bufs, c->n);
	wtn_step_hyper = NULL;
	check_update(c, before, is_not_param_state_or_grad);
	for (int s = 0; s < c->m.nbufs; s++) {
		if (ref_buf_kind(s) != REF_BUF_GRAD)
			continue;
		long len = full_len(c, s), bytes = len * (long)sizeof(float);
		if (memcmp(c->bufs[s], before[s], bytes) && memcmp(c->bufs[s], after_loss[s], bytes)) {
			fail_head(c);
			printf("  FAIL backward with the step: %s is neither the gradient nor as it was\n",
			       c->m.bufs[s].name);
		}
	}
}

/* The step split into nparts chunks, done in the given order, must give
 * bit for bit what one call gives: threads must not change results. */
static void check_partition(Ctx *c, float **before, float **whole, int nparts, int reverse)
{
	restore(c, before);
	for (int i = 0; i < nparts; i++)
		wtn_update(c->bufs, c->hyper, reverse ? nparts - 1 - i : i, nparts);
	char stage[48];
	snprintf(stage, sizeof stage, "update in %d parts vs 1", nparts);
	float **now = snapshot(c);
	check_unchanged(c, stage, whole, is_any, now);
	free_snapshot(c, now);
}

/* ---- weight mirror ---- */
static int is_mirror_output(const Ctx *c, int s, int l)
{
	const RtLayer *L = &c->m.layers[l];
	/* the im2col columns of a conv are scratch the kernel may use */
	return s == ref_input_slot(&c->m, l) || s == L->y || s == L->B ||
	       ref_buf_kind(s) == REF_BUF_SCRATCH;
}

/* The noise the kernel asked wtn_noise for: zero mean, std `noise`. */
static void check_noise(Ctx *c, const RtLayer *L, const float *x, long count)
{
	double noise = rt_rule_arg(L, "noise", NAN), sum = 0, sq = 0;
	for (long i = 0; i < count; i++) {
		sum += x[i];
		sq += (double)x[i] * x[i];
	}
	double mean = sum / count, std = sqrt(fmax(sq / count - mean * mean, 0));
	/* 5 standard errors for the mean; the std of a sample of >= 64 normals
	 * is within 30% with overwhelming probability */
	int bad = !(fabs(mean) <= 5 * noise / sqrt((double)count));
	bad |= count >= 64 && !(fabs(std - noise) <= 0.3 * noise);
	if (bad) {
		fail_head(c);
		printf("  FAIL mirror %s: noise of %ld values has mean %.4g, std %.4g; want 0, %g\n",
		       L->name, count, mean, std, noise);
	}
}

/* wtn_mirror(bufs, l, n) on every layer from the same state: a no-op for
 * layers without a mirror phase; for wm layers noise x[n, in] in the input
 * slot, y = x W^T (conv: conv(x), no bias) in the y slot,
 * B = (1 - decay) B + (rate / n) y^T col(x), and
 * nothing else touched. */
static void check_mirror(Ctx *c, float **start)
{
	for (int l = 0; l < c->m.nlayers; l++) {
		const RtLayer *L = &c->m.layers[l];
		int mirror = L->change == RT_CHANGE_MIRROR;
		restore(c, start);
		wtn_mirror(c->bufs, l, c->n);
		char stage[160];
		snprintf(stage, sizeof stage, "mirror of %s%s", L->name,
		         mirror ? "" : " (no mirror phase)");
		for (int s = 0; s < c->m.nbufs; s++)
			if (!(mirror && is_mirror_output(c, s, l)))
				check_unchanged_slot(c, stage, start, s, "not the mirror's output");
		if (!mirror)
			continue;
		long nx = (long)c->n * L->in, ny = (long)c->n * L->out, nw = wcount(c, L);
		check_noise(c, L, c->bufs[ref_input_slot(&c->m, l)], nx);
		double *y = malloc(ny * sizeof *y), *B = to_double(start[L->B], nw);
		ref_mirror(&c->m, c->bufs, l, c->n, y, B);
		check_close(c, stage, c->m.bufs[L->y].name, c->bufs[L->y], y, ny, TOL);
		check_close(c, stage, c->m.bufs[L->B].name, c->bufs[L->B], B, nw, TOL);
		free(y);
		free(B);
	}
	restore(c, start);
}

/* The runtime's dropout masks (rt_dropout_masks): every value 0 or
 * 1/(1-p), zeros a fraction p of them within 5 standard deviations, and
 * another stream gives other masks. */
static void check_dropout_masks(Ctx *c)
{
	for (int l = 0; l < c->m.nlayers; l++) {
		const RtLayer *L = &c->m.layers[l];
		if (ref_op(l)->kind != REF_DROPOUT)
			continue;
		long len = (long)c->batch * L->out, zeros = 0, same = 0;
		float **bufs = calloc(c->m.nbufs, sizeof *bufs), *first = malloc(len * sizeof *first);
		bufs[L->aux] = malloc(len * sizeof **bufs);
		RtRng r;
		rt_rng_seed(&r, (uint64_t)c->seed);
		rt_dropout_masks(&c->m, bufs, c->batch, &r);
		memcpy(first, bufs[L->aux], len * sizeof *first);
		rt_rng_seed(&r, (uint64_t)c->seed + 1);
		rt_dropout_masks(&c->m, bufs, c->batch, &r);
		double keep = 1 / (1 - L->p), sd = sqrt(L->p * (1 - L->p) / len);
		for (long i = 0; i < len; i++) {
			zeros += first[i] == 0;
			same += first[i] == bufs[L->aux][i];
			if (first[i] != 0 && fabs(first[i] - keep) > 1e-6 * keep) {
				fail_head(c);
				printf("  FAIL dropout %s: mask value %g, not 0 or %g\n", L->name, first[i], keep);
				break;
			}
		}
		if (fabs((double)zeros / len - L->p) > 5 * sd + 1e-12 || (L->p > 0 && same == len)) {
			fail_head(c);
			printf("  FAIL dropout %s: %ld of %ld zeros for p %g (or one mask for two streams)\n",
			       L->name, zeros, len, L->p);
		}
		free(bufs[L->aux]);
		free(bufs);
		free(first);
	}
}

static int mode_reference(Ctx *c)
{
	check_dropout_masks(c);
	float **init = snapshot(c);
	wtn_forward_eval(c->bufs, c->n);
	float **now = snapshot(c);
	check_unchanged(c, "forward_eval", init, is_fixed, now);
	free_snapshot(c, now);
	check_forward(c, 1, init);
	restore(c, init);

	wtn_forward(c->bufs, c->n);
	now = snapshot(c);
	check_unchanged(c, "forward", init, is_param_or_state, now);
	free_snapshot(c, now);
	check_forward(c, 0, init);

	float loss = wtn_loss(c->bufs, c->labels, c->n);
	double *d_out = check_loss(c, loss);
	float **after_loss = snapshot(c);

	wtn_backward(c->bufs, c->n);
	now = snapshot(c);
	check_unchanged(c, "backward", after_loss, is_fixed, now);
	free_snapshot(c, now);
	check_backward(c, d_out);
	free(d_out);

	float **before = snapshot(c);
	check_backward_bp(c, after_loss);
	check_mirror(c, before);
	restore(c, before);
	wtn_update(c->bufs, c->hyper, 0, 1);
	check_update(c, before, is_not_param_or_state);
	float **whole = snapshot(c);
	check_partition(c, before, whole, 2, 0);
	check_partition(c, before, whole, 3, 1);
	check_partition(c, before, whole, 64, 0);
	free_snapshot(c, whole);
	check_backward_with_step(c, after_loss, before);
	free_snapshot(c, after_loss);
	free_snapshot(c, before);
	free_snapshot(c, init);
	if (c->failures) {
		printf("refcheck: %s seed %ld: FAILED\n", c->m.name, c->seed);
		return 1;
	}
	printf("refcheck: %s seed %ld: ok (%d layers, n %d, %s)\n", c->m.name, c->seed,
	       c->m.nlayers, c->n, c->m.train.optimizer == RT_OPT_ADAM ? "adam" : "sgd");
	return 0;
}

/* ---- finite-difference mode ---- */
typedef double LossFn(Ctx *c);

static double kernel_loss(Ctx *c)
{
	wtn_forward(c->bufs, c->n);
	return wtn_loss(c->bufs, c->labels, c->n);
}

static double double_loss(Ctx *c)
{
	return ref_chain_loss(&c->m, c->bufs, c->labels, c->n);
}

/* Central difference of the loss in parameter p[i]; the step actually
 * taken is what float can represent, so divide by that. */
static double central_diff(Ctx *c, LossFn *loss, float *p, long i, double h)
{
	float w0 = p[i];
	p[i] = (float)(w0 + h);
	double up = p[i];
	double lp = loss(c);
	p[i] = (float)(w0 - h);
	double down = p[i];
	double lm = loss(c);
	p[i] = w0;
	return (lp - lm) / (up - down);
}

/* ||a - scale*g|| / ||g|| */
static double rel_err(const double *a, const double *g, double scale, int count)
{
	double num = 0, den = 0;
	for (int i = 0; i < count; i++) {
		num += (a[i] - scale * g[i]) * (a[i] - scale * g[i]);
		den += g[i] * g[i];
	}
	return sqrt(num) / fmax(sqrt(den), 1e-7);
}

/* A layer's gW is the true gradient when every error path above it is bp. */
static int true_gradient(const RtModel *m, int l)
{
	if (l == m->nlayers - 1)
		return 1;
	if (ref_takes_output_error(m, l))
		return 0;
	int consumers = 0;
	for (int k = l + 1; k < m->nlayers; k++) {
		if (m->layers[k].input != l && !(ref_op(k)->kind == REF_ADD && ref_op(k)->input2 == l))
			continue;
		if ((ref_has_rule(m, k) && m->layers[k].carry != RT_CARRY_W) || !true_gradient(m, k))
			return 0;
		consumers++;
	}
	return consumers > 0;
}

enum { FD_SAMPLES = 24 };

/* Base tolerance of the float finite differences (step 1e-2): batchnorm
 * makes the loss curve strongly in a conv weight before it (scale
 * invariance), and a maxpool may switch, so their truncation error is
 * larger; the double differences (step 1e-3, 1e-3 tolerance) stay strict. */
static double fd_float_base(const Ctx *c)
{
	for (int l = 0; l < c->m.nlayers; l++)
		if (ref_op(l)->kind == REF_BN || ref_op(l)->kind == REF_MAXPOOL)
			return 5e-2;
	return 2e-2;
}

static int mode_fd(Ctx *c)
{
	double loss0 = kernel_loss(c);
	wtn_backward(c->bufs, c->n);
	float **grads = snapshot(c);
	int checked = 0;
	for (int l = 0; l < c->m.nlayers; l++) {
		const RtLayer *L = &c->m.layers[l];
		if (!ref_has_weights(&c->m, l) || !true_gradient(&c->m, l))
			continue;
		int nb = ref_is_norm(l) ? ref_op(l)->in.c : ref_op(l)->out.c;
		double g[FD_SAMPLES], fdf[FD_SAMPLES], fdd[FD_SAMPLES];
		int k = 0;
		rng_seed_name(L->name, c->seed + 17);
		long nw = wcount(c, L);
		for (; k < FD_SAMPLES * 3 / 4; k++) {
			long i = (long)(rng_next() % (uint64_t)nw);
			g[k] = grads[L->gW][i];
			fdf[k] = central_diff(c, kernel_loss, c->bufs[L->W], i, 1e-2);
			fdd[k] = central_diff(c, double_loss, c->bufs[L->W], i, 1e-3);
		}
		for (; L->b >= 0 && k < FD_SAMPLES; k++) {
			long i = (long)(rng_next() % (uint64_t)nb);
			g[k] = grads[L->gb][i];
			fdf[k] = central_diff(c, kernel_loss, c->bufs[L->b], i, 1e-2);
			fdd[k] = central_diff(c, double_loss, c->bufs[L->b], i, 1e-3);
		}
		double ef = rel_err(fdf, g, 1, k), ed = rel_err(fdd, g, 1, k);
		/* the float loss is good to about 1e-6 relative after a deep float
		 * forward; over a step of 2h that is 1e-4 |L| per sample, which
		 * matters next to a small gradient (an early conv behind sigmoids) */
		double gnorm = 0;
		for (int i = 0; i < k; i++)
			gnorm += g[i] * g[i];
		double float_tol = fd_float_base(c) + sqrt((double)k) * 1e-4 * fmax(1, fabs(loss0)) / fmax(sqrt(gnorm), 1e-12);
		/* the check must be able to fail: 2*g and -g have to be rejected */
		double e2 = rel_err(fdf, g, 2, k), en = rel_err(fdf, g, -1, k);
		printf("fd: layer %-8s |g| sample %d: float fd err %.2e (tol %.2g), double fd err %.2e "
		       "(vs 2g %.2e, vs -g %.2e)\n", L->name, k, ef, float_tol, ed, e2, en);
		if (!(ef <= float_tol) || !(ed <= 1e-3)) {
			fail_head(c);
			printf("  FAIL fd: layer %s gradient disagrees with finite differences\n",
			       L->name);
		} else if (e2 <= 2e-2 || en <= 2e-2) {
			fail_head(c);
			printf("  FAIL fd sanity: layer %s: the check cannot tell g from 2g or -g "
			       "(is the gradient all zero?)\n", L->name);
		}
		checked++;
	}
	free_snapshot(c, grads);
	if (!checked) {
		fail_head(c);
		printf("  FAIL fd: no layer has a true gradient to check\n");
	}
	printf("refcheck --fd: %s seed %ld: %s\n", c->m.name, c->seed,
	       c->failures ? "FAILED" : "ok");
	return c->failures != 0;
}

/* ---- fa property mode ---- */
static void check_not_bp_error(Ctx *c, int p);

static void train_step(Ctx *c, int t, int check_errors)
{
	rng_seed_name("x-step", c->seed + t);
	float *x = c->bufs[c->m.x_slot];
	for (long i = 0; i < (long)c->n * c->m.in_units; i++)
		x[i] = (float)rng_uniform(-1, 1);
	fill_labels(c, t);
	fill_hyper(c, t);
	wtn_forward(c->bufs, c->n);
	wtn_loss(c->bufs, c->labels, c->n);
	wtn_backward(c->bufs, c->n);
	for (int l = 1; check_errors && l < c->m.nlayers; l++) {
		const RtLayer *L = &c->m.layers[l];
		if (L->carry == RT_CARRY_B && L->input >= 0)
			check_not_bp_error(c, L->input);
	}
	wtn_update(c->bufs, c->hyper, 0, 1);
}

/* The error a layer got differs from what backprop would have sent. */
static void check_not_bp_error(Ctx *c, int p)
{
	const RtLayer *P = &c->m.layers[p];
	long len = (long)c->n * P->out;
	double *bp = malloc(len * sizeof *bp), *viab = malloc(len * sizeof *viab);
	ref_layer_error(&c->m, c->bufs, p, c->n, bp, 1);
	ref_layer_error(&c->m, c->bufs, p, c->n, viab, 0);
	double diff = 0, scale = 0, diffb = 0;
	for (long i = 0; i < len; i++) {
		const float *d = c->bufs[P->d];
		diff = fmax(diff, fabs(d[i] - bp[i]));
		diffb = fmax(diffb, fabs(d[i] - viab[i]));
		scale = fmax(scale, fabs(bp[i]));
	}
	printf("fa: %s error: max |d - d_bp| %.3g, max |d - d_via_B| %.3g (scale %.3g)\n",
	       P->name, diff, diffb, scale);
	if (!(diff > 1e-2 * scale) || !(diffb <= TOL * fmax(scale, 1e-12))) {
		fail_head(c);
		printf("  FAIL fa: the error sent to %s is not B's (or equals W's)\n", P->name);
	}
	free(bp);
	free(viab);
}

static int mode_fa_props(Ctx *c)
{
	float **start = snapshot(c);
	int fa_layers = 0;
	for (int l = 0; l < c->m.nlayers; l++)
		fa_layers += c->m.layers[l].carry == RT_CARRY_B &&
		             c->m.layers[l].change == RT_CHANGE_NONE;
	if (!fa_layers) {
		fail_head(c);
		printf("  FAIL fa: the network has no layer with a fixed B\n");
	}
	for (int t = 1; t <= 5; t++) {
		train_step(c, t, t == 1);
	}
	for (int l = 0; l < c->m.nlayers; l++) {
		const RtLayer *L = &c->m.layers[l];
		if (L->B >= 0 && L->change == RT_CHANGE_NONE &&
		    memcmp(start[L->B], c->bufs[L->B], full_len(c, L->B) * sizeof(float))) {
			fail_head(c);
			printf("  FAIL fa: %s changed during training\n", c->m.bufs[L->B].name);
		}
		if (ref_has_weights(&c->m, l) && !memcmp(start[L->W], c->bufs[L->W], full_len(c, L->W) * sizeof(float))) {
			fail_head(c);
			printf("  FAIL fa: %s did not change in 5 steps\n", c->m.bufs[L->W].name);
		}
	}
	free_snapshot(c, start);
	printf("refcheck --fa-props: %s seed %ld: %s (%d fa layers)\n", c->m.name, c->seed,
	       c->failures ? "FAILED" : "ok", fa_layers);
	return c->failures != 0;
}

/* ---- rule property mode: many training steps, each rule's invariant ---- */

/* W - B of a kp layer under SGD does not depend on the data: both get the
 * same gradient, so diff' = diff - lr (lambda diff + momentum terms). This
 * runs that recurrence in double from the start (momentum buffers too). */
static void kp_predict_step(const Ctx *c, const float *hyper, double lambda, long count,
                            double *diff, double *mdiff)
{
	const RtTrain *t = &c->m.train;
	double lr = hyper[WTN_H_LR], mom = hyper[WTN_H_MOMENTUM];
	for (long i = 0; i < count; i++) {
		double g = lambda * diff[i], step = g;
		if (mdiff) {
			mdiff[i] = mom * mdiff[i] + g;
			step = t->nesterov ? g + mom * mdiff[i] : mdiff[i];
		}
		diff[i] -= lr * step;
	}
}

static double norm_of_diff(const float *a, const float *b, long count)
{
	double s = 0;
	for (long i = 0; i < count; i++)
		s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
	return sqrt(s);
}

static double norm_of(const double *a, long count)
{
	double s = 0;
	for (long i = 0; i < count; i++)
		s += a[i] * a[i];
	return sqrt(s);
}

typedef struct KpTrack { double *diff, *mdiff, start; } KpTrack;

static void kp_track_init(Ctx *c, const RtLayer *L, KpTrack *k)
{
	long count = wcount(c, L);
	k->diff = malloc(count * sizeof *k->diff);
	k->mdiff = NULL;
	for (long i = 0; i < count; i++)
		k->diff[i] = (double)c->bufs[L->W][i] - c->bufs[L->B][i];
	if (L->mW >= 0 && L->mB >= 0) {
		k->mdiff = malloc(count * sizeof *k->mdiff);
		for (long i = 0; i < count; i++)
			k->mdiff[i] = (double)c->bufs[L->mW][i] - c->bufs[L->mB][i];
	}
	k->start = norm_of(k->diff, count);
}

/* After the run: |W - B| against the recurrence, and for plain SGD against
 * the closed form (1 - lr lambda)^t. */
static void kp_track_check(Ctx *c, const RtLayer *L, KpTrack *k, int steps)
{
	const RtTrain *t = &c->m.train;
	long count = wcount(c, L);
	double lambda = ref_weight_decay(L, c->hyper), lr = c->hyper[WTN_H_LR];
	double got = norm_of_diff(c->bufs[L->W], c->bufs[L->B], count) / k->start;
	double want = norm_of(k->diff, count) / k->start;
	int plain = t->momentum == 0;
	printf("kp: %s |W-B| after %d steps / at start = %.7g, want %.7g", L->name, steps, got,
	       want);
	if (plain)
		printf(" ((1 - lr*decay)^t = %.7g)", pow(1 - lr * lambda, steps));
	printf("\n");
	if (!(fabs(got - want) <= 1e-4 * want) ||
	    (plain && !(fabs(got - pow(1 - lr * lambda, steps)) <= 1e-4 * want))) {
		fail_head(c);
		printf("  FAIL kp %s: W - B did not shrink as (1 - lr decay)^t (decay %g)\n",
		       L->name, lambda);
	}
	free(k->diff);
	free(k->mdiff);
}

static int mode_rule_props(Ctx *c, int steps)
{
	if (c->m.train.optimizer == RT_OPT_ADAM) {
		printf("refcheck --rule-props: needs sgd (kp's W - B is only predictable there)\n");
		return 2;
	}
	float **start = snapshot(c);
	KpTrack *kp = calloc(c->m.nlayers, sizeof *kp);
	for (int l = 0; l < c->m.nlayers; l++)
		if (c->m.layers[l].change == RT_CHANGE_AS_W)
			kp_track_init(c, &c->m.layers[l], &kp[l]);
	for (int t = 1; t <= steps && !c->failures; t++) {
		float **prev = snapshot(c);
		train_step(c, t, 0);
		char stage[32];
		snprintf(stage, sizeof stage, "step %d", t);
		for (int l = 0; l < c->m.nlayers; l++) {
			const RtLayer *L = &c->m.layers[l];
			float hyper[WTN_H_COUNT];
			memcpy(hyper, c->hyper, sizeof hyper);
			if (L->change == RT_CHANGE_AS_W)
				kp_predict_step(c, hyper, ref_weight_decay(L, c->hyper),
				                wcount(c, L), kp[l].diff, kp[l].mdiff);
			else if (L->change == RT_CHANGE_SIGN_W)
				check_sign_feedback(c, stage, L);
			else if (L->change == RT_CHANGE_RANDMAG_SIGN_W) {
				check_unchanged_slot(c, stage, start, L->M, "frsf keeps M");
				check_randmag_feedback(c, stage, L);
			} else if (L->change == RT_CHANGE_REDRAW_SIGN_W)
				check_redraw_feedback(c, stage, L, t > 1 ? prev[L->B] : NULL);
			else if (L->B >= 0)
				check_unchanged_slot(c, stage, start, L->B, "fa and wm keep B in training");
			check_unchanged_slot(c, stage, start, L->D, "dfa's D is fixed");
		}
		free_snapshot(c, prev);
	}
	for (int l = 0; l < c->m.nlayers; l++)
		if (c->m.layers[l].change == RT_CHANGE_AS_W)
			kp_track_check(c, &c->m.layers[l], &kp[l], steps);
	free(kp);
	free_snapshot(c, start);
	printf("refcheck --rule-props: %s seed %ld, %d steps: %s\n", c->m.name, c->seed, steps,
	       c->failures ? "FAILED" : "ok");
	return c->failures != 0;
}

/* ---- mirror steps alone: W fixed, B converges to (rate noise^2 / decay) W ---- */
static int mode_mirror_steps(Ctx *c, int steps)
{
	int layers = 0;
	for (int l = 0; l < c->m.nlayers; l++) {
		const RtLayer *L = &c->m.layers[l];
		if (L->change != RT_CHANGE_MIRROR)
			continue;
		layers++;
		int n = (int)rt_rule_arg(L, "batch", c->batch);
		float **start = snapshot(c);
		for (int t = 0; t < steps; t++)
			wtn_mirror(c->bufs, l, n);
		long count = wcount(c, L);
		double *B = to_double(c->bufs[L->B], count), *W = to_double(c->bufs[L->W], count);
		double angle = ref_angle_deg(B, W, count), ratio = norm_of(B, count) / norm_of(W, count);
		/* dense: B* = (rate noise^2 / decay) W; conv: times the pixels each tap sees */
		double *fixed = malloc(count * sizeof *fixed);
		ref_mirror_fixed_point(&c->m, c->bufs, l, fixed);
		double want = norm_of(fixed, count) / norm_of(W, count);
		double *B0 = to_double(start[L->B], count);
		double angle0 = ref_angle_deg(B0, W, count), angle_fixed = ref_angle_deg(B, fixed, count);
		printf("mirror: %s after %d steps of %d: angle %.3g deg (from %.3g; to B* %.3g), "
		       "|B|/|W| %.4g, want |B*|/|W| = %.4g\n", L->name, steps, n, angle, angle0,
		       angle_fixed, ratio, want);
		/* B* is parallel to W unless padding leaves border taps fewer pixels */
		int parallel = ref_angle_deg(fixed, W, count) < 1;
		if ((parallel && !(angle < 5)) || !(angle_fixed < 5) ||
		    !(fabs(ratio - want) <= 0.1 * want)) {
			fail_head(c);
			printf("  FAIL mirror %s: B did not converge to B* (%g W)\n", L->name, want);
		}
		free(fixed);
		free(B0);
		check_unchanged_slot(c, "mirror steps", start, L->W, "W is fixed in mirror steps");
		free(B);
		free(W);
		free_snapshot(c, start);
	}
	if (!layers) {
		fail_head(c);
		printf("  FAIL mirror: the network has no wm layer\n");
	}
	printf("refcheck --mirror-steps: %s seed %ld: %s\n", c->m.name, c->seed,
	       c->failures ? "FAILED" : "ok");
	return c->failures != 0;
}

/* ---- the noise stream: N(0, std^2), the same numbers in any slices ---- */
/* Within 6 standard errors of a normal sample's: the mean, variance,
 * third and fourth moments and the share beyond 1, 2, 3 and 4 std. */
static void check_noise_moments(Ctx *c, const float *x, long count, double std)
{
	double m[5] = { 0 }, beyond[5] = { 0 };
	for (long i = 0; i < count; i++) {
		double z = x[i] / std, p = 1;
		for (int k = 1; k <= 4; k++) {
			p *= z;
			m[k] += p / count;
			beyond[k] += (fabs(z) > k) / (double)count;
		}
	}
	const double want[5] = { 0, 0, 1, 0, 3 }, var[5] = { 0, 1, 2, 15, 96 };
	const char *name[5] = { "", "mean", "variance", "third moment", "fourth moment" };
	for (int k = 1; k <= 4; k++) {
		double se = sqrt(var[k] / count), tail = erfc(k / sqrt(2.0));
		double tail_se = sqrt(tail * (1 - tail) / count);
		if (!(fabs(m[k] - want[k]) <= 6 * se)) {
			fail_head(c);
			printf("  FAIL noise: %s of %ld values %.5g, want %g (se %.2g)\n", name[k], count,
			       m[k], want[k], se);
		}
		if (!(fabs(beyond[k] - tail) <= 6 * tail_se + 1.0 / count)) {
			fail_head(c);
			printf("  FAIL noise: %.5g of %ld values beyond %d std, want %.5g\n", beyond[k],
			       count, k, tail);
		}
	}
}

static int same_floats(Ctx *c, const char *what, const float *a, const float *b, long count)
{
	if (memcmp(a, b, count * sizeof *a) == 0)
		return 1;
	fail_head(c);
	printf("  FAIL noise: %s differs\n", what);
	return 0;
}

/* The mirror kernels rely on wtn_noise_part giving a batch's values in any
 * slices, on any thread, and data-parallel ranks on rt_noise_window giving
 * their slice of the one batch; both must leave the stream where the
 * whole batch does. */
static int mode_noise(Ctx *c)
{
	enum { N = 1 << 20, M = 1000 };
	const float std = 2.5f;
	float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
	float *a2 = malloc(M * sizeof *a2), *b2 = malloc(M * sizeof *b2);
	rt_noise_seed((uint64_t)c->seed);
	RtRng start = rt_noise_state();
	wtn_noise(a, N, std);
	wtn_noise(a2, M, std);
	check_noise_moments(c, a, N, std);
	/* slices of uneven length, last first */
	rt_noise_restore(&start);
	wtn_noise_begin(N, std);
	const long cut[] = { 0, 1, 33, 1000, 77777, N / 2 + 3, N };
	for (int k = 5; k >= 0; k--)
		wtn_noise_part(b + cut[k], cut[k], cut[k + 1] - cut[k]);
	wtn_noise(b2, M, std);
	same_floats(c, "wtn_noise_part in slices against the whole batch", a, b, N) &&
		same_floats(c, "the batch after slices against after the whole", a2, b2, M);
	/* a window: values [1001, 1001 + 4096) of the batch, then on */
	rt_noise_restore(&start);
	rt_noise_window(1001, N);
	wtn_noise(b, 4096, std);
	wtn_noise(b2, M, std);
	same_floats(c, "a window against its slice of the batch", a + 1001, b, 4096) &&
		same_floats(c, "the batch after a window against after the whole", a2, b2, M);
	/* another seed, other numbers */
	rt_noise_seed((uint64_t)c->seed + 1);
	wtn_noise(b, M, std);
	if (memcmp(a, b, M * sizeof *a) == 0) {
		fail_head(c);
		printf("  FAIL noise: seeds %ld and %ld give the same numbers\n", c->seed, c->seed + 1);
	}
	free(a);
	free(b);
	free(a2);
	free(b2);
	printf("refcheck --noise: seed %ld: %s\n", c->seed, c->failures ? "FAILED" : "ok");
	return c->failures != 0;
}

/* ---- dump mode: one step, then every parameter by name ---- */
static int mode_dump(Ctx *c, const char *path, int b_equals_w)
{
	for (int l = 0; b_equals_w && l < c->m.nlayers; l++) {
		const RtLayer *L = &c->m.layers[l];
		if (L->B >= 0)
			memcpy(c->bufs[L->B], c->bufs[L->W], full_len(c, L->W) * sizeof(float));
	}
	train_step(c, 1, 0);
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		return 2;
	}
	for (int s = 0; s < c->m.nbufs; s++) {
		if (c->m.bufs[s].kind != RT_BUF_PARAM)
			continue;
		long len = full_len(c, s);
		fprintf(f, "%s %ld\n", c->m.bufs[s].name, len);
		for (long i = 0; i < len; i++)
			fprintf(f, "%.9g\n", c->bufs[s][i]);
	}
	return fclose(f) != 0 ? 2 : 0;
}

/* ---- expectations from gennet --expect: the model says what the source said ---- */
static void expect_fail(Ctx *c, const char *what, const char *want, const char *got)
{
	fail_head(c);
	printf("  FAIL model: %s is %s, the source says %s\n", what, got, want);
}

static void expect_num(Ctx *c, const char *what, double want, double got)
{
	if (fabs(got - want) <= 1e-6 * fmax(1, fabs(want)))
		return;
	char w[32], g[32];
	snprintf(w, sizeof w, "%.9g", want);
	snprintf(g, sizeof g, "%.9g", got);
	expect_fail(c, what, w, g);
}

static void expect_layer(Ctx *c, int l, const char *name, int in, int out,
                         const char *act, int bias, const char *rule)
{
	static const char *const act_names[] = {"identity", "relu", "tanh", "sigmoid"};
	const RtLayer *L = l < c->m.nlayers ? &c->m.layers[l] : NULL;
	char what[160];
	if (!L || strcmp(L->name, name)) {
		expect_fail(c, "a layer name", name, L ? L->name : "(no layer)");
		return;
	}
	snprintf(what, sizeof what, "layer %s in", name);
	expect_num(c, what, in, L->in);
	snprintf(what, sizeof what, "layer %s out", name);
	expect_num(c, what, out, L->out);
	snprintf(what, sizeof what, "layer %s bias", name);
	expect_num(c, what, bias, L->bias);
	snprintf(what, sizeof what, "layer %s act", name);
	if (strcmp(act, "-") && (L->act < 0 || L->act > 3 || strcmp(act, act_names[L->act])))
		expect_fail(c, what, act, L->act >= 0 && L->act <= 3 ? act_names[L->act] : "?");
	snprintf(what, sizeof what, "layer %s rule", name);
	if (strcmp(rule, L->rule))
		expect_fail(c, what, rule, L->rule);
	/* the rule table of issue 3, written out again here */
	static const struct { const char *rule; int carry, change, B, D, M, mirror; } table[] = {
		{"bp", RT_CARRY_W, RT_CHANGE_NONE, 0, 0, 0, 0},
		{"fa", RT_CARRY_B, RT_CHANGE_NONE, 1, 0, 0, 0},
		{"usf", RT_CARRY_B, RT_CHANGE_SIGN_W, 1, 0, 0, 0},
		{"frsf", RT_CARRY_B, RT_CHANGE_RANDMAG_SIGN_W, 1, 0, 1, 0},
		{"brsf", RT_CARRY_B, RT_CHANGE_REDRAW_SIGN_W, 1, 0, 0, 0},
		{"kp", RT_CARRY_B, RT_CHANGE_AS_W, 1, 0, 0, 0},
		{"wm", RT_CARRY_B, RT_CHANGE_MIRROR, 1, 0, 0, 1},
		{"dfa", RT_CARRY_D, RT_CHANGE_NONE, 0, 1, 0, 0},
	};
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
		if (strcmp(table[i].rule, rule))
			continue;
		char want[64], got[64];
		/* a dfa output layer uses its own error: no D */
		int want_d = table[i].D && l < c->m.nlayers - 1;
		snprintf(want, sizeof want, "carry %d change %d B %d D %d M %d mirror %d",
		         table[i].carry, table[i].change, table[i].B, want_d, table[i].M,
		         table[i].mirror);
		snprintf(got, sizeof got, "carry %d change %d B %d D %d M %d mirror %d", L->carry,
		         L->change, L->B >= 0, L->D >= 0, L->M >= 0, L->mirror != 0);
		snprintf(what, sizeof what, "layer %s's rule fields", name);
		if (strcmp(want, got))
			expect_fail(c, what, want, got);
		return;
	}
	snprintf(what, sizeof what, "layer %s's rule (unknown to refcheck)", name);
	expect_fail(c, what, "a known rule", rule);
}

static void expect_arg(Ctx *c, const char *layer, const char *name, double want)
{
	for (int l = 0; l < c->m.nlayers; l++) {
		const RtLayer *L = &c->m.layers[l];
		if (strcmp(L->name, layer))
			continue;
		char what[160];
		snprintf(what, sizeof what, "layer %s arg.%s", layer, name);
		expect_num(c, what, want, rt_rule_arg(L, name, NAN));
		return;
	}
	expect_fail(c, "a layer name", layer, "(absent)");
}

/* The name of layer l's producer `src` (-1: the network input). */
static const char *source_name(const Ctx *c, int src)
{
	if (src < -1 || src >= c->m.nlayers)
		return "(invalid)";
	return src < 0 ? c->m.input_name : c->m.layers[src].name;
}

static void expect_text(Ctx *c, const char *what, const char *want, const char *got)
{
	if (strcmp(want, "-") && strcmp(want, got))
		expect_fail(c, what, want, got);
}

/* node NAME KIND CxHxW CxHxW KHxKW STRIDE PAD ACT BIAS RULE INPUT INPUT2
 * ("-": not checked); a rule other than "-" is checked as a layer line. */
static void expect_node(Ctx *c, int l, char w[13][64])
{
	const RtLayer *L = l < c->m.nlayers ? &c->m.layers[l] : NULL;
	if (!L || strcmp(L->name, w[1])) {
		expect_fail(c, "a layer name", w[1], L ? L->name : "(no layer)");
		return;
	}
	const RefOp *o = ref_op(l);
	char what[160], got[128];
#define EXPECT(field, fmt, ...)                                                 \
	do {                                                                    \
		snprintf(what, sizeof what, "layer %s %s", L->name, field);     \
		snprintf(got, sizeof got, fmt, __VA_ARGS__);                    \
		expect_text(c, what, w[k], got);                                \
		k++;                                                            \
	} while (0)
	int k = 2;
	EXPECT("kind", "%s", ref_kind_names[o->kind]);
	EXPECT("in_shape", "%dx%dx%d", o->in.c, o->in.h, o->in.w);
	EXPECT("out_shape", "%dx%dx%d", o->out.c, o->out.h, o->out.w);
	EXPECT("kernel", "%dx%d", o->kh, o->kw);
	EXPECT("stride", "%d", o->stride);
	EXPECT("pad", "%d", o->pad);
	EXPECT("act", "%s", wtn_name(wtn_act_names, WTN_NACTS, L->act));
	EXPECT("bias", "%d", L->bias);
	k++;   /* the rule, below */
	EXPECT("input", "%s", source_name(c, L->input));
	EXPECT("input2", "%s", o->kind == REF_ADD ? source_name(c, o->input2) : "-");
#undef EXPECT
	if (strcmp(w[10], "-"))
		expect_layer(c, l, w[1], L->in, L->out, w[8], atoi(w[9]), w[10]);
}

static void check_expectations(Ctx *c, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		perror(path);
		exit(2);
	}
	const RtTrain *t = &c->m.train;
	char line[256], w[5][64];
	int layers = 0;
	while (fgets(line, sizeof line, f)) {
		double v = 0;
		int n = sscanf(line, "%63s %63s %63s %63s %63s", w[0], w[1], w[2], w[3], w[4]);
		int i1 = 0, i2 = 0, bias = 0;
		if (!strcmp(w[0], "layer") && sscanf(line, "layer %63s %d %d %63s %d %63s", w[1], &i1,
		                                     &i2, w[2], &bias, w[3]) == 6) {
			expect_layer(c, layers++, w[1], i1, i2, w[2], bias, w[3]);
		} else if (!strcmp(w[0], "node")) {
			char nw[13][64];
			if (sscanf(line, "%63s %63s %63s %63s %63s %63s %63s %63s %63s %63s %63s %63s %63s",
			           nw[0], nw[1], nw[2], nw[3], nw[4], nw[5], nw[6], nw[7], nw[8], nw[9],
			           nw[10], nw[11], nw[12]) != 13) {
				fprintf(stderr, "refcheck: %s: bad node line: %s", path, line);
				exit(2);
			}
			expect_node(c, layers++, nw);
		} else if (!strcmp(w[0], "arg") && n >= 4) {
			expect_arg(c, w[1], w[2], atof(w[3]));
		} else if (!strcmp(w[0], "input") && n >= 2) {
			expect_num(c, "input units", atof(w[1]), c->m.in_units);
		} else if (!strcmp(w[0], "input_shape") && n >= 2) {
			RefShape s = ref_input_shape();
			char got[64];
			snprintf(got, sizeof got, "%dx%dx%d", s.c, s.h, s.w);
			expect_text(c, "the input shape", w[1], got);
		} else if (!strcmp(w[0], "loss") && n >= 2) {
			const char *got = c->m.loss == RT_LOSS_MSE ? "mse" : "softmax_cross_entropy";
			if (strcmp(w[1], got))
				expect_fail(c, "the loss", w[1], got);
		} else if (!strcmp(w[0], "batch") && n >= 2) {
			expect_num(c, "train batch", atof(w[1]), t->batch);
		} else if (!strcmp(w[0], "optimizer") && n >= 2) {
			const char *got = t->optimizer == RT_OPT_ADAM ? "adam" : "sgd";
			if (strcmp(w[1], got))
				expect_fail(c, "the optimizer", w[1], got);
		} else if (!strcmp(w[0], "hyper") && n >= 3) {
			v = atof(w[2]);
			const char *k = w[1];
			double got = !strcmp(k, "lr") ? t->lr : !strcmp(k, "momentum") ? t->momentum
			           : !strcmp(k, "nesterov") ? t->nesterov
			           : !strcmp(k, "weight_decay") ? t->weight_decay
			           : !strcmp(k, "beta1") ? t->beta1 : !strcmp(k, "beta2") ? t->beta2
			           : !strcmp(k, "eps") ? t->eps : NAN;
			char what[80];
			snprintf(what, sizeof what, "train %s", k);
			expect_num(c, what, v, got);
		} else if (n > 0) {
			fprintf(stderr, "refcheck: %s: bad line: %s", path, line);
			exit(2);
		}
	}
	fclose(f);
	expect_num(c, "the number of layers", layers, c->m.nlayers);
}

int main(int argc, char **argv)
{
	long seed = 1;
	int n = 0, b_equals_w = 0, steps = 0;
	const char *mode = "reference", *dump_path = NULL;
	const char *expect_path = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = atol(argv[++i]);
		else if (!strcmp(argv[i], "--n") && i + 1 < argc)
			n = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--fd") || !strcmp(argv[i], "--fa-props") ||
		         !strcmp(argv[i], "--noise"))
			mode = argv[i] + 2;
		else if (!strcmp(argv[i], "--dump") && i + 1 < argc)
			mode = "dump", dump_path = argv[++i];
		else if (!strcmp(argv[i], "--expect") && i + 1 < argc)
			expect_path = argv[++i];
		else if ((!strcmp(argv[i], "--rule-props") || !strcmp(argv[i], "--mirror-steps")) &&
		         i + 1 < argc && atoi(argv[i + 1]) > 0)
			mode = argv[i] + 2, steps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--b-equals-w"))
			b_equals_w = 1;
		else {
			fprintf(stderr, "usage: refcheck [--seed S] [--n N] [--expect FILE] "
			        "[--fd | --fa-props | --noise | --rule-props STEPS | --mirror-steps STEPS |\n"
			        "                 --dump FILE [--b-equals-w]]\n");
			return 2;
		}
	}
	static Ctx c;
	setup(&c, seed, n);
	if (expect_path)
		check_expectations(&c, expect_path);
	if (!strcmp(mode, "fd"))
		return mode_fd(&c);
	if (!strcmp(mode, "fa-props"))
		return mode_fa_props(&c);
	if (!strcmp(mode, "rule-props"))
		return mode_rule_props(&c, steps);
	if (!strcmp(mode, "mirror-steps"))
		return mode_mirror_steps(&c, steps);
	if (!strcmp(mode, "dump"))
		return mode_dump(&c, dump_path, b_equals_w);
	if (!strcmp(mode, "noise"))
		return mode_noise(&c);
	return mode_reference(&c);
}
