/* ir.c: the buffer plan (one slot per tensor the kernels touch) and the
 * spec text the compiler embeds and the runtime parses (runtime/wtn_abi.h). */
#include <stdlib.h>
#include <string.h>
#include "wtnc.h"

const char *act_name(Act a)
{
	switch (a) {
	case ACT_IDENTITY: return "identity";
	case ACT_RELU: return "relu";
	case ACT_TANH: return "tanh";
	case ACT_SIGMOID: return "sigmoid";
	}
	return "?";
}

const char *loss_name(Loss l)
{
	switch (l) {
	case LOSS_SOFTMAX_CE: return "softmax_cross_entropy";
	case LOSS_MSE: return "mse";
	}
	return "?";
}

const char *init_name(Init i)
{
	switch (i) {
	case INIT_HE: return "he";
	case INIT_XAVIER: return "xavier";
	case INIT_NORMAL: return "normal";
	case INIT_UNIFORM: return "uniform";
	}
	return "?";
}

static const char *buf_kind_name(BufKind k)
{
	switch (k) {
	case BUF_PARAM: return "param";
	case BUF_STAT: return "stat";
	case BUF_STATE: return "state";
	case BUF_GRAD: return "grad";
	case BUF_BATCH: return "batch";
	case BUF_SCRATCH: return "scratch";
	}
	return "?";
}

const char *op_kind_name(OpKind k)
{
	switch (k) {
	case OP_DENSE: return "dense";
	case OP_CONV2D: return "conv2d";
	case OP_BATCHNORM: return "batchnorm";
	case OP_MAXPOOL: return "maxpool";
	case OP_AVGPOOL: return "avgpool";
	case OP_GLOBAL_AVGPOOL: return "global_avgpool";
	case OP_FLATTEN: return "flatten";
	case OP_ADD: return "add";
	case OP_ACT: return "act";
	}
	return "?";
}

static const char *opt_name(Opt o) { return o == OPT_ADAM ? "adam" : "sgd"; }

static const char *sched_name(Sched s)
{
	switch (s) {
	case SCHED_NONE: return "none";
	case SCHED_STEP: return "step";
	case SCHED_COSINE: return "cosine";
	}
	return "?";
}

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
	b->rows = ndim > 0 ? dims[0] : 1;
	b->cols = ndim > 0 ? (int)(b->elems / dims[0]) : 1;
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
	bool has_m = t->opt == OPT_ADAM || t->momentum > 0 || t->nesterov;
	IRBuf pb = net->bufs[p];   /* copy: add_buf_dims moves the array */
	*m = has_m ? add_buf_dims(net, pb.name, ".m", BUF_STATE, pb.ndim, pb.dims) : -1;
	*v = t->opt == OPT_ADAM ? add_buf_dims(net, pb.name, ".v", BUF_STATE, pb.ndim, pb.dims) : -1;
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
	if (l->kind != OP_DENSE && l->kind != OP_CONV2D)
		return bp;
	return l->rule.def ? l->rule.def : bp;
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

/* Weights, feedback, gradients and optimiser states of a dense or conv2d
 * layer; n_out is the network's output width (dfa's D). */
static void plan_weights(IRNetwork *net, IRLayer *l, int n_out, bool is_output)
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
}

static void clear_slots(IRLayer *l)
{
	l->W = l->b = l->B = l->D = l->M = -1;
	l->gW = l->gb = -1;
	l->mW = l->mb = l->mB = l->vW = l->vb = l->vB = -1;
	l->rmean = l->rvar = l->aux = l->aux2 = -1;
	l->y = l->d = -1;
}

/* Fills what a front end written for dense networks leaves zero: vector
 * shapes, no second operand. */
static void normalise_layer(IRLayer *l)
{
	if (l->in_shape.c <= 0)
		l->in_shape = (Shape){ l->in, 1, 1 };
	if (l->out_shape.c <= 0)
		l->out_shape = (Shape){ l->out, 1, 1 };
	if (l->kind != OP_ADD)
		l->input2 = -1;
}

static void plan_layer(IRNetwork *net, IRLayer *l, int n_out, bool is_output)
{
	clear_slots(l);
	if (l->kind == OP_DENSE || l->kind == OP_CONV2D)
		plan_weights(net, l, n_out, is_output);
	else if (l->kind == OP_BATCHNORM)
		plan_batchnorm(net, l);
	else if (l->kind == OP_MAXPOOL)
		l->aux = add_act_buf(net, l->name, ".argmax", l->out_shape);
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

/* A part's gradient partials: W's gradient (patch order) then the bias's,
 * rounded to whole cache lines so parts never share one. */
long ir_partials_stride(const IRNetwork *net)
{
	long most = 0;
	for (int i = 0; i < net->nlayers; i++) {
		const IRLayer *l = &net->layers[i];
		if (l->kind != OP_CONV2D || ir_conv_direct(l))
			continue;
		long need = (long)l->out_shape.c * ir_conv_patch(l) + l->out_shape.c;
		if (need > most)
			most = need;
	}
	return (most + 15) / 16 * 16;
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
	net->bufs = NULL;
	net->nbufs = 0;
	if (net->in_shape.c <= 0)
		net->in_shape = (Shape){ net->in_units, 1, 1 };
	const char *xname = net->input_name ? net->input_name : "x";
	net->x_slot = add_act_buf(net, xname, "", net->in_shape);
	int n_out = net->nlayers > 0 ? net->layers[net->nlayers - 1].out : 0;
	for (int i = 0; i < net->nlayers; i++) {
		IRLayer *l = &net->layers[i];
		normalise_layer(l);
		plan_layer(net, l, n_out, i == net->nlayers - 1);
	}
	/* one im2col buffer, shared by every conv layer, with room for the
	 * columns of every part that may run at once (wtn_parallel_for) */
	long cols = ir_col_part_elems(net);
	if (cols > 0) {
		int slot = add_vec(net, "im2col", "", BUF_SCRATCH, cols * IR_MAX_PARTS);
		for (int i = 0; i < net->nlayers; i++)
			if (net->layers[i].kind == OP_CONV2D && !ir_conv_direct(&net->layers[i]))
				net->layers[i].aux = slot;
		/* and each part's sums of the weight and bias gradients */
		add_vec(net, "conv.partials", "", BUF_SCRATCH, ir_partials_stride(net) * IR_MAX_PARTS);
	}
	/* and room for two weight tensors in patch order (see ir_conv_permuted) */
	long wp = 0;
	for (int i = 0; i < net->nlayers; i++) {
		const IRLayer *l = &net->layers[i];
		if (ir_conv_permuted(l) && 2 * net->bufs[l->W].elems > wp)
			wp = 2 * net->bufs[l->W].elems;
	}
	if (wp > 0) {
		int slot = add_vec(net, "im2col.weights", "", BUF_SCRATCH, wp);
		for (int i = 0; i < net->nlayers; i++)
			if (ir_conv_permuted(&net->layers[i]))
				net->layers[i].aux2 = slot;
	}
}

static void print_shape(FILE *out, Shape s)
{
	fprintf(out, "%dx%dx%d", s.c, s.h, s.w);
}

static void print_layer(FILE *out, const IRLayer *l)
{
	const RuleDef *r = ir_layer_rule(l);
	bool has_rule = l->kind == OP_DENSE || l->kind == OP_CONV2D;
	bool bn = l->kind == OP_BATCHNORM;
	fprintf(out, "layer name=%s kind=%s input=%d input2=%d in=%d out=%d in_shape=",
	        l->name, op_kind_name(l->kind), l->input, l->input2, l->in, l->out);
	print_shape(out, l->in_shape);
	fprintf(out, " out_shape=");
	print_shape(out, l->out_shape);
	fprintf(out, " kernel=%dx%d stride=%d pad=%d act=%s bias=%d init=%s init_arg=%.9g"
	        " eps=%.9g momentum=%.9g",
	        l->kh, l->kw, l->stride, l->pad, act_name(l->act), l->bias ? 1 : 0,
	        init_name(l->init), l->init_arg, bn ? l->bn_eps : 0, bn ? l->bn_momentum : 0);
	fprintf(out, " rule=%s start=%s carry=%s change=%s mirror=%d", r->name,
	        fb_start_name(r->start), fb_carry_name(r->carry), fb_change_name(r->change),
	        r->change == FB_CHANGE_MIRROR ? 1 : 0);
	fprintf(out, " W=%d b=%d B=%d D=%d M=%d gW=%d gb=%d mW=%d mb=%d mB=%d vW=%d vb=%d"
	        " vB=%d rmean=%d rvar=%d aux=%d aux2=%d y=%d d=%d", l->W, l->b, l->B, l->D,
	        l->M, l->gW, l->gb, l->mW, l->mb, l->mB, l->vW, l->vb, l->vB, l->rmean,
	        l->rvar, l->aux, l->aux2, l->y, l->d);
	if (has_rule && l->rule.def)
		for (int i = 0; i < r->nparams; i++)
			fprintf(out, " arg.%s=%.9g", r->params[i].name, l->rule.args[i]);
	fputc('\n', out);
}

static void print_list(FILE *out, const double *v, int n)
{
	for (int i = 0; i < n; i++)
		fprintf(out, i ? ",%.9g" : "%.9g", v[i]);
}

static void print_train(FILE *out, const TrainCfg *t)
{
	fprintf(out, "train data=%s batch=%d epochs=%d seed=%ld optimizer=%s"
	        " lr=%.9g momentum=%.9g nesterov=%d weight_decay=%.9g beta1=%.9g"
	        " beta2=%.9g eps=%.9g schedule=%s step_every=%d gamma=%.9g"
	        " min_lr=%.9g crop_pad=%d flip=%d norm_mean=",
	        t->data ? t->data : "synthetic", t->batch, t->epochs, t->seed,
	        opt_name(t->opt), t->lr, t->momentum, t->nesterov ? 1 : 0,
	        t->weight_decay, t->beta1, t->beta2, t->eps, sched_name(t->sched),
	        t->step_every, t->gamma, t->min_lr, t->crop_pad, t->flip ? 1 : 0);
	print_list(out, t->norm_mean, t->nnorm);
	fprintf(out, " norm_std=");
	print_list(out, t->norm_std, t->nnorm);
	fputc('\n', out);
}

void ir_print(FILE *out, const IRNetwork *net)
{
	fprintf(out, "wtn 2\n");
	fprintf(out, "network name=%s\n", net->name);
	fprintf(out, "input name=%s units=%d shape=",
	        net->input_name ? net->input_name : "x", net->in_units);
	print_shape(out, net->in_shape);
	fprintf(out, " slot=%d\n", net->x_slot);
	for (int i = 0; i < net->nbufs; i++) {
		const IRBuf *b = &net->bufs[i];
		fprintf(out, "buf slot=%d name=%s kind=%s elems=%ld shape=", i,
		        b->name, buf_kind_name(b->kind), b->elems);
		for (int k = 0; k < b->ndim; k++)
			fprintf(out, k ? "x%d" : "%d", b->dims[k]);
		fputc('\n', out);
	}
	for (int i = 0; i < net->nlayers; i++)
		print_layer(out, &net->layers[i]);
	fprintf(out, "loss kind=%s\n", loss_name(net->loss));
	print_train(out, &net->train);
	fprintf(out, "end\n");
}

char *ir_spec_string(const IRNetwork *net)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f) { perror("wtnc"); exit(1); }
	ir_print(f, net);
	fclose(f);
	return text;
}
