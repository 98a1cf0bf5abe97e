/* ir.c: the buffer plan (one slot per tensor the kernels touch), with how
 * the runtime fills each one before training, and each layer's rule as the
 * model carries it (runtime/wtn_model.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "wtnc.h"

static char *concat(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = malloc(la + lb + 1);
	if (!s) { perror("wtnc"); exit(1); }
	memcpy(s, a, la);
	memcpy(s + la, b, lb + 1);
	return s;
}

/* Appends a buffer of shape dims[0..ndim) and returns its slot. */
static int add_buf_dims(IRNetwork *net, const char *layer, const char *suffix,
                        BufKind kind, int ndim, const int *dims)
{
	IRBuf *nb = realloc(net->bufs, (size_t)(net->nbufs + 1) * sizeof *nb);
	if (!nb) { perror("wtnc"); exit(1); }
	net->bufs = nb;
	IRBuf *b = &net->bufs[net->nbufs];
	memset(b, 0, sizeof *b);
	b->name = concat(layer, suffix);
	b->kind = kind;
	b->ndim = ndim;
	b->elems = 1;
	for (int i = 0; i < ndim; i++) {
		b->dims[i] = dims[i];
		b->elems *= dims[i];
	}
	b->init = (WtnInit){ .fill = WTN_FILL_ZERO, .src = -1, .keep = -1 };
	b->rows = ndim > 1 ? dims[0] : 1;
	b->cols = (int)(b->elems / b->rows);
	return net->nbufs++;
}

static int add_vec(IRNetwork *net, const char *layer, const char *suffix,
                   BufKind kind, long len)
{
	int d[1] = { (int)len };
	return add_buf_dims(net, layer, suffix, kind, 1, d);
}

/* A tensor shaped like the layer's weight: [out, in] for dense,
 * [F, C, kh, kw] for conv2d. */
static int add_like_w(IRNetwork *net, const IRLayer *l, const char *suffix, BufKind kind)
{
	if (l->kind == OP_CONV2D) {
		int d[4] = { l->out_shape.c, l->in_shape.c, l->kh, l->kw };
		return add_buf_dims(net, l->name, suffix, kind, 4, d);
	}
	int d[2] = { l->out, l->in };
	return add_buf_dims(net, l->name, suffix, kind, 2, d);
}

/* Per-sample activation buffer in memory order: [units] for vectors,
 * [h, w, c] (NHWC) for images. */
static int add_act_buf(IRNetwork *net, const char *layer, const char *suffix, Shape s)
{
	if (s.h == 1 && s.w == 1)
		return add_vec(net, layer, suffix, BUF_BATCH, s.c);
	int d[3] = { s.h, s.w, s.c };
	return add_buf_dims(net, layer, suffix, BUF_BATCH, 3, d);
}

/* Optimiser state buffers for one parameter (slot `p`): m for sgd with
 * momentum (or nesterov) and for adam, v for adam only; p's shape. */
static void add_state(IRNetwork *net, int p, int *m, int *v)
{
	const TrainCfg *t = &net->train;
	bool has_m = t->optimizer == OPT_ADAM || t->momentum > 0 || t->nesterov;
	IRBuf pb = net->bufs[p];   /* copy: add_buf_dims moves the array */
	*m = has_m ? add_buf_dims(net, pb.name, ".m", BUF_STATE, pb.ndim, pb.dims) : -1;
	*v = t->optimizer == OPT_ADAM ? add_buf_dims(net, pb.name, ".v", BUF_STATE, pb.ndim, pb.dims) : -1;
}

static int grad_of(IRNetwork *net, int p)
{
	IRBuf pb = net->bufs[p];
	return add_buf_dims(net, pb.name, ".grad", BUF_GRAD, pb.ndim, pb.dims);
}

const RuleDef *ir_layer_rule(const IRLayer *l)
{
	static const RuleDef *bp;
	if (!bp)
		bp = rule_lookup("bp");
	if (!wtn_op_has(l->kind, WTN_OP_RULE))
		return bp;
	return l->feedback.def ? l->feedback.def : bp;
}

bool ir_conv_direct(const IRLayer *l)
{
	return l->kind == OP_CONV2D && l->kh == 1 && l->kw == 1 && l->stride == 1 && l->pad == 0;
}

bool ir_conv_permuted(const IRLayer *l)
{
	return l->kind == OP_CONV2D && !ir_conv_direct(l) && l->in_shape.c > 1
	       && l->kh * l->kw > 1;
}

/* A stride-1 conv on fewer than 8 input channels whose filters fill whole
 * vectors of 8: its forward may run codegen's register-tiled kernel, which
 * reads the kernel tap by filter from the weights scratch (a first layer
 * on images; its other passes stay direct). */
bool ir_conv_tiled_few(const IRLayer *l)
{
	return l->kind == OP_CONV2D && !ir_conv_direct(l) && l->stride == 1 && l->in_shape.c < 8
	       && l->out_shape.c % 8 == 0 && l->pad < l->kh && l->pad < l->kw;
}

long ir_conv_patch(const IRLayer *l)
{
	return (long)l->in_shape.c * l->kh * l->kw;
}

/* The im2col columns of one sample take OH*OW*C*kh*kw floats. A chunk of
 * samples shares one product; the bound keeps the columns in the outer
 * caches (they are written once and read right away) and the scratch small
 * whatever the batch. */
#ifndef IR_COL_BYTES
#define IR_COL_BYTES (4L << 20)   /* -D to measure other sizes */
#endif
int ir_conv_chunk(const IRNetwork *net, const IRLayer *l)
{
	long per = (long)l->out_shape.h * l->out_shape.w * ir_conv_patch(l);
	long c = per > 0 ? IR_COL_BYTES / (long)sizeof(float) / per : 1;
	long batch = net->train.batch > 0 ? net->train.batch : 1;
	if (c > batch)
		c = batch;
	return c < 1 ? 1 : (int)c;
}

/* PyTorch's fans: in and out for dense; C*kh*kw and F*kh*kw for conv2d. */
static void fans(const IRLayer *l, double *fan_in, double *fan_out)
{
	double k = (double)l->kh * l->kw;
	bool conv = l->kind == OP_CONV2D;
	*fan_in = conv ? l->in_shape.c * k : l->in;
	*fan_out = conv ? l->out_shape.c * k : l->out;
}

/* How W is drawn: a normal (he, normal) of std, or a uniform (xavier,
 * uniform) on [-bound, bound]; the spread returned is std or bound. */
double ir_init_spread(const IRLayer *l, int *dist)
{
	double fan_in, fan_out;
	fans(l, &fan_in, &fan_out);
	bool normal = l->init == INIT_HE || l->init == INIT_NORMAL;
	*dist = normal ? WTN_FILL_NORMAL : WTN_FILL_UNIFORM;
	switch (l->init) {
	case INIT_HE: return sqrt(2.0 / fan_in);
	case INIT_XAVIER: return sqrt(6.0 / (fan_in + fan_out));
	default: return l->init_arg;
	}
}

double ir_init_std(const IRLayer *l)
{
	int dist;
	double a = ir_init_spread(l, &dist);
	return dist == WTN_FILL_NORMAL ? a : a / sqrt(3.0);
}

/* usf's |B|: the rule's `scale` when given, else 1/sqrt(fan_in) for dense
 * layers (Xiao et al. 2018) and sqrt(2/(kh kw C_out)) for conv layers (He
 * et al.'s conv init). */
double ir_sign_scale(const IRLayer *l)
{
	int k = l->feedback.def ? rule_param_index(l->feedback.def, "scale") : -1;
	return wtn_sign_scale(l->kind, l->kh, l->kw, l->out_shape.c, l->in,
	                      k >= 0 ? l->feedback.args[k] : 0);
}

/* The rule as the model carries it: its name, axes and arguments. */
static void fill_rule(IRLayer *l)
{
	const RuleDef *r = ir_layer_rule(l);
	l->rule = r->name;
	l->start = r->start;
	l->carry = r->carry;
	l->change = r->change;
	l->mirror = r->change == FB_CHANGE_MIRROR;
	l->nargs = l->feedback.def == r ? r->nparams : 0;
	for (int i = 0; i < l->nargs; i++) {
		l->arg_name[i] = r->params[i].name;
		l->arg[i] = l->feedback.args[i];
	}
}

/* Draws like the layer's W, from the layer's stream. */
static void init_like_w(IRNetwork *net, const IRLayer *l, int li, int slot)
{
	WtnInit *in = &net->bufs[slot].init;
	in->a = ir_init_spread(l, &in->fill);
	in->stream = li;
}

static void init_const(IRNetwork *net, int slot, double v)
{
	net->bufs[slot].init.fill = WTN_FILL_CONST;
	net->bufs[slot].init.a = v;
}

/* How B starts: a fresh draw like W; sign(W) * scale; |M| sign(W) with
 * M drawn like W (kept in M for frsf; brsf redraws it every step). */
static void init_feedback(IRNetwork *net, const IRLayer *l, int li)
{
	WtnInit *in = &net->bufs[l->B].init;
	switch (ir_layer_rule(l)->start) {
	case FB_START_SIGN_W:
		*in = (WtnInit){ .fill = WTN_FILL_SIGN, .src = l->W, .keep = -1, .a = ir_sign_scale(l) };
		break;
	case FB_START_RANDMAG_SIGN_W:
		*in = (WtnInit){ .fill = WTN_FILL_RANDMAG_SIGN, .stream = li, .src = l->W, .keep = l->M };
		in->a = ir_init_spread(l, &in->dist);
		break;
	default:
		init_like_w(net, l, li, l->B);
	}
}

/* Weights, feedback, gradients and optimiser states of a dense or conv2d
 * layer; n_out is the network's output width (dfa's D). */
static void plan_weights(IRNetwork *net, IRLayer *l, int li, int n_out, bool is_output)
{
	const RuleDef *rule = ir_layer_rule(l);
	const char *nm = l->name;
	l->W = add_like_w(net, l, ".weight", BUF_PARAM);
	l->b = l->bias ? add_vec(net, nm, ".bias", BUF_PARAM, l->out_shape.c) : -1;
	/* A dfa layer has D in place of B; the output layer uses its own error,
	 * so a dfa output layer has neither. */
	bool direct = rule->carry == FB_CARRY_D;
	l->B = rule->start != FB_START_NONE && !direct ? add_like_w(net, l, ".feedback", BUF_PARAM) : -1;
	if (direct && !is_output) {
		int d[2] = { n_out, l->out };
		l->D = add_buf_dims(net, nm, ".feedback", BUF_PARAM, 2, d);
	} else {
		l->D = -1;
	}
	/* frsf's fixed magnitudes (B = |M| sign(W)) */
	l->M = rule->change == FB_CHANGE_RANDMAG_SIGN_W
	       ? add_like_w(net, l, ".feedback.magnitude", BUF_STATE) : -1;
	l->gW = grad_of(net, l->W);
	l->gb = l->bias ? grad_of(net, l->b) : -1;
	add_state(net, l->W, &l->mW, &l->vW);
	if (l->bias)
		add_state(net, l->b, &l->mb, &l->vb);
	/* kp: B takes W's optimiser step, so it needs its own state. */
	if (rule->change == FB_CHANGE_AS_W && l->B >= 0)
		add_state(net, l->B, &l->mB, &l->vB);
	init_like_w(net, l, li, l->W);
	if (l->B >= 0)
		init_feedback(net, l, li);
	if (l->D >= 0)
		init_like_w(net, l, li, l->D);
}

/* gamma and beta are params trained by backprop; the running statistics
 * are saved but never trained; the batch's mean and 1/std are scratch the
 * backward reads. */
static void plan_batchnorm(IRNetwork *net, IRLayer *l)
{
	const char *nm = l->name;
	int c = l->out_shape.c;
	l->W = add_vec(net, nm, ".weight", BUF_PARAM, c);
	l->b = add_vec(net, nm, ".bias", BUF_PARAM, c);
	l->bias = true;
	l->rmean = add_vec(net, nm, ".running_mean", BUF_STAT, c);
	l->rvar = add_vec(net, nm, ".running_var", BUF_STAT, c);
	l->gW = grad_of(net, l->W);
	l->gb = grad_of(net, l->b);
	add_state(net, l->W, &l->mW, &l->vW);
	add_state(net, l->b, &l->mb, &l->vb);
	l->aux = add_vec(net, nm, ".batch_mean", BUF_SCRATCH, c);
	l->aux2 = add_vec(net, nm, ".batch_invstd", BUF_SCRATCH, c);
	init_const(net, l->W, 1);      /* PyTorch's start: gamma 1, beta 0, */
	init_const(net, l->rvar, 1);   /* running mean 0 and variance 1 */
}

/* gamma and beta, trained by backprop; each position's mean and 1/std
 * are batch buffers the backward reads. */
static void plan_layernorm(IRNetwork *net, IRLayer *l)
{
	int c = l->out_shape.c;
	Shape rows = { l->out_shape.h * l->out_shape.w, 1, 1 };
	l->W = add_vec(net, l->name, ".weight", BUF_PARAM, c);
	l->b = add_vec(net, l->name, ".bias", BUF_PARAM, c);
	l->gW = grad_of(net, l->W);
	l->gb = grad_of(net, l->b);
	add_state(net, l->W, &l->mW, &l->vW);
	add_state(net, l->b, &l->mb, &l->vb);
	l->aux = add_act_buf(net, l->name, ".mean", rows);
	l->aux2 = add_act_buf(net, l->name, ".invstd", rows);
	init_const(net, l->W, 1);
}

static void clear_slots(IRLayer *l)
{
	l->W = l->b = l->B = l->D = l->M = -1;
	l->gW = l->gb = -1;
	l->mW = l->mb = l->mB = l->vW = l->vb = l->vB = -1;
	l->rmean = l->rvar = l->aux = l->aux2 = -1;
	l->y = l->d = -1;
}

static void plan_layer(IRNetwork *net, IRLayer *l, int li, int n_out, bool is_output)
{
	clear_slots(l);
	fill_rule(l);
	if (wtn_op_has(l->kind, WTN_OP_RULE))
		plan_weights(net, l, li, n_out, is_output);
	else if (l->kind == OP_BATCHNORM)
		plan_batchnorm(net, l);
	else if (l->kind == OP_LAYERNORM)
		plan_layernorm(net, l);
	else if (l->kind == OP_MAXPOOL)
		l->aux = add_act_buf(net, l->name, ".argmax", l->out_shape);
	else if (l->kind == OP_DROPOUT)
		l->aux = add_act_buf(net, l->name, ".mask", l->out_shape);
	l->y = add_act_buf(net, l->name, ".y", l->out_shape);
	l->d = add_act_buf(net, l->name, ".d", l->out_shape);
}

/* Columns of one part: the largest chunk of any im2col conv. */
long ir_col_part_elems(const IRNetwork *net)
{
	long cols = 0;
	for (int i = 0; i < net->nlayers; i++) {
		const IRLayer *l = &net->layers[i];
		if (l->kind != OP_CONV2D || ir_conv_direct(l))
			continue;
		long need = (long)ir_conv_chunk(net, l) * l->out_shape.h * l->out_shape.w
		            * ir_conv_patch(l);
		if (need > cols)
			cols = need;
	}
	return cols;
}

void ir_tiled_geo(const IRLayer *l, IRTiledGeo *g)
{
	Shape in = l->in_shape;
	g->xw = in.w + 2L * l->pad;
	g->xsize = (in.h + 2L * l->pad) * g->xw * in.c;
	g->dw = in.w + l->kw - 1L;
	g->dsize = (in.h + l->kh - 1L) * g->dw * l->out_shape.c;
}

bool ir_conv_tiled(const IRNetwork *net, const IRLayer *l)
{
	if (l->kind != OP_CONV2D || l->stride != 1 || !ir_conv_permuted(l) || l->in_shape.c % 8
	    || l->out_shape.c % 8 || l->pad >= l->kh || l->pad >= l->kw)
		return false;
	IRTiledGeo g;
	ir_tiled_geo(l, &g);
	return g.xsize + g.dsize <= ir_col_part_elems(net);
}

int ir_conv_winograd(const IRNetwork *net, const IRLayer *l, int pass)
{
	if (net->direct_convs || !ir_conv_tiled(net, l) || l->kh != l->kw || l->kh > 5)
		return 0;
	Shape o = pass == IR_WINO_DATA ? l->in_shape : l->out_shape;
	int m = l->kh <= 3 && o.h % 4 == 0 && o.w % 4 == 0 ? 4 : o.h % 2 == 0 && o.w % 2 == 0 ? 2 : 0;
	/* a part's columns hold the padded image and error, then a chunk's
	 * transformed tiles and products (n*n <= 36), or the weight gradient's
	 * sums and a sample's transformed tiles */
	IRTiledGeo g;
	ir_tiled_geo(l, &g);
	long n = m + l->kh - 1, C = l->in_shape.c, F = l->out_shape.c;
	long need = (g.xsize + g.dsize + 15) / 16 * 16 + 36L * IR_WINO_TILES * (C + F);
	if (pass == IR_WINO_WGRAD && m)
		need += n * n * C * F + n * n * (o.h / m) * (o.w / m) * (C + F);
	return m && need <= ir_col_part_elems(net) ? m : 0;
}

static long winograd_weights(const IRLayer *l)
{
	int m = l->wino_fwd > l->wino_data ? l->wino_fwd : l->wino_data;
	long n = m + l->kh - 1;
	return m ? n * n * l->in_shape.c * l->out_shape.c : 0;
}

/* A part's gradient partials of conv l: W's gradient (patch order) then
 * the bias's, rounded to whole cache lines so parts never share one. */
long ir_partials_stride(const IRLayer *l)
{
	long need = (long)l->out_shape.c * ir_conv_patch(l) + l->out_shape.c;
	return (need + 15) / 16 * 16;
}

/* The parts of conv l's loops that keep partials: as many as fit in
 * IR_PARTIALS_FLOATS (their sum is read once per step), at least 4 and at
 * most IR_MAX_PARTS. Small kernels get many parts, which keeps threads
 * busy to the end of the loop; large ones few, so their sums stay cheap. */
#define IR_PARTIALS_FLOATS (1L << 20)
int ir_conv_parts(const IRLayer *l)
{
	long parts = IR_PARTIALS_FLOATS / ir_partials_stride(l);
	return parts < 4 ? 4 : parts > IR_MAX_PARTS ? IR_MAX_PARTS : (int)parts;
}

/* Room for the partials of every conv's parts. */
static long partials_elems(const IRNetwork *net)
{
	long most = 0;
	for (int i = 0; i < net->nlayers; i++) {
		const IRLayer *l = &net->layers[i];
		if (l->kind != OP_CONV2D || ir_conv_direct(l))
			continue;
		long need = ir_partials_stride(l) * ir_conv_parts(l);
		if (need > most)
			most = need;
	}
	return most;
}

int ir_partials_slot(const IRNetwork *net)
{
	for (int i = 0; i < net->nbufs; i++)
		if (net->bufs[i].kind == BUF_SCRATCH && strcmp(net->bufs[i].name, "conv.partials") == 0)
			return i;
	return -1;
}

void ir_plan_buffers(IRNetwork *net)
{
	net->version = WTN_MODEL_VERSION;
	net->bufs = NULL;
	net->nbufs = 0;
	const char *xname = net->input_name ? net->input_name : "x";
	net->x_slot = add_act_buf(net, xname, "", net->in_shape);
	int n_out = net->nlayers > 0 ? net->layers[net->nlayers - 1].out : 0;
	for (int i = 0; i < net->nlayers; i++) {
		IRLayer *l = &net->layers[i];
		plan_layer(net, l, i, n_out, i == net->nlayers - 1);
	}
	/* one im2col buffer, shared by every conv layer, with room for the
	 * columns of every part that may run at once (wtn_parallel_for) */
	long cols = ir_col_part_elems(net);
	for (int i = 0; i < net->nlayers; i++) {   /* no data gradient into the input */
		IRLayer *l = &net->layers[i];
		l->wino_fwd = ir_conv_winograd(net, l, IR_WINO_FWD);
		l->wino_data = l->input >= 0 ? ir_conv_winograd(net, l, IR_WINO_DATA) : 0;
		l->wino_wgrad = ir_conv_winograd(net, l, IR_WINO_WGRAD);
	}
	if (cols > 0) {
		int slot = add_vec(net, "im2col", "", BUF_SCRATCH, cols * IR_MAX_PARTS);
		for (int i = 0; i < net->nlayers; i++)
			if (net->layers[i].kind == OP_CONV2D && !ir_conv_direct(&net->layers[i]))
				net->layers[i].aux = slot;
		/* and each part's sums of the weight and bias gradients */
		add_vec(net, "conv.partials", "", BUF_SCRATCH, partials_elems(net));
	}
	/* the rule arguments in force, written by the runtime (wtn_model.h) */
	net->args_slot = add_vec(net, "rule.args", "", BUF_SCRATCH,
	                         (long)(net->nlayers > 0 ? net->nlayers : 1) * WTN_MAX_ARGS);
	/* and room for two weight tensors in patch or tile order (see
	 * ir_conv_permuted, ir_conv_tiled_few), then a Winograd kernel */
	long wp = 0;
	for (int i = 0; i < net->nlayers; i++) {
		const IRLayer *l = &net->layers[i];
		if (!ir_conv_permuted(l) && !ir_conv_tiled_few(l))
			continue;
		long need = 2 * net->bufs[l->W].elems + winograd_weights(l);
		if (need > wp)
			wp = need;
	}
	if (wp > 0) {
		int slot = add_vec(net, "im2col.weights", "", BUF_SCRATCH, wp);
		for (int i = 0; i < net->nlayers; i++)
			if (ir_conv_permuted(&net->layers[i]) || ir_conv_tiled_few(&net->layers[i]))
				net->layers[i].aux2 = slot;
	}
}

