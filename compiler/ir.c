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
	case BUF_STATE: return "state";
	case BUF_GRAD: return "grad";
	case BUF_BATCH: return "batch";
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

/* Appends a buffer and returns its slot. */
static int add_buf(IRNetwork *net, const char *layer, const char *suffix,
                   BufKind kind, int rows, int cols)
{
	IRBuf *nb = realloc(net->bufs, (size_t)(net->nbufs + 1) * sizeof *nb);
	if (!nb) { perror("wtnc"); exit(1); }
	net->bufs = nb;
	IRBuf *b = &net->bufs[net->nbufs];
	b->name = concat(layer, suffix);
	b->kind = kind;
	b->rows = rows;
	b->cols = cols;
	b->elems = (long)rows * cols;
	return net->nbufs++;
}

/* Optimiser state buffers for one parameter: m for sgd with momentum (or
 * nesterov) and for adam, v for adam only. */
static void add_state(IRNetwork *net, const char *pname, int rows, int cols,
                      int *m, int *v)
{
	const TrainCfg *t = &net->train;
	bool has_m = t->opt == OPT_ADAM || t->momentum > 0 || t->nesterov;
	char *mname = concat(pname, ".m"), *vname = concat(pname, ".v");
	*m = has_m ? add_buf(net, mname, "", BUF_STATE, rows, cols) : -1;
	*v = t->opt == OPT_ADAM ? add_buf(net, vname, "", BUF_STATE, rows, cols) : -1;
	free(mname);
	free(vname);
}

static void plan_layer(IRNetwork *net, IRLayer *l, int n_out, bool is_output)
{
	const RuleDef *rule = l->rule.def;
	const char *nm = l->name;
	l->W = add_buf(net, nm, ".weight", BUF_PARAM, l->out, l->in);
	l->b = l->bias ? add_buf(net, nm, ".bias", BUF_PARAM, 1, l->out) : -1;
	/* A dfa layer has D in place of B; the output layer uses its own error,
	 * so a dfa output layer has neither. */
	bool direct = rule->carry == FB_CARRY_D;
	l->B = rule->start != FB_START_NONE && !direct
	       ? add_buf(net, nm, ".feedback", BUF_PARAM, l->out, l->in) : -1;
	l->D = direct && !is_output
	       ? add_buf(net, nm, ".feedback", BUF_PARAM, n_out, l->out) : -1;
	/* frsf's fixed magnitudes (B = |M| sign(W)) */
	l->M = rule->change == FB_CHANGE_RANDMAG_SIGN_W
	       ? add_buf(net, nm, ".feedback.magnitude", BUF_STATE, l->out, l->in) : -1;
	l->gW = add_buf(net, nm, ".weight.grad", BUF_GRAD, l->out, l->in);
	l->gb = l->bias ? add_buf(net, nm, ".bias.grad", BUF_GRAD, 1, l->out) : -1;

	char *pw = concat(nm, ".weight"), *pb = concat(nm, ".bias"),
	     *pf = concat(nm, ".feedback");
	add_state(net, pw, l->out, l->in, &l->mW, &l->vW);
	if (l->bias)
		add_state(net, pb, 1, l->out, &l->mb, &l->vb);
	else
		l->mb = l->vb = -1;
	/* kp: B takes W's optimiser step, so it needs its own state. */
	if (rule->change == FB_CHANGE_AS_W && l->B >= 0)
		add_state(net, pf, l->out, l->in, &l->mB, &l->vB);
	else
		l->mB = l->vB = -1;
	free(pw);
	free(pb);
	free(pf);

	l->y = add_buf(net, nm, ".y", BUF_BATCH, 1, l->out);
	l->d = add_buf(net, nm, ".d", BUF_BATCH, 1, l->out);
}

void ir_plan_buffers(IRNetwork *net)
{
	net->bufs = NULL;
	net->nbufs = 0;
	const char *xname = net->input_name ? net->input_name : "x";
	net->x_slot = add_buf(net, xname, "", BUF_BATCH, 1, net->in_units);
	int n_out = net->nlayers > 0 ? net->layers[net->nlayers - 1].out : 0;
	for (int i = 0; i < net->nlayers; i++)
		plan_layer(net, &net->layers[i], n_out, i == net->nlayers - 1);
}

static void print_layer(FILE *out, const IRLayer *l)
{
	const RuleDef *r = l->rule.def;
	fprintf(out, "layer name=%s kind=dense input=%d in=%d out=%d act=%s bias=%d"
	        " init=%s init_arg=%.9g rule=%s start=%s carry=%s change=%s mirror=%d",
	        l->name, l->input, l->in, l->out, act_name(l->act), l->bias ? 1 : 0,
	        init_name(l->init), l->init_arg, r->name, fb_start_name(r->start),
	        fb_carry_name(r->carry), fb_change_name(r->change),
	        r->change == FB_CHANGE_MIRROR ? 1 : 0);
	fprintf(out, " W=%d b=%d B=%d D=%d M=%d gW=%d gb=%d mW=%d mb=%d mB=%d vW=%d vb=%d"
	        " vB=%d y=%d d=%d", l->W, l->b, l->B, l->D, l->M, l->gW, l->gb, l->mW,
	        l->mb, l->mB, l->vW, l->vb, l->vB, l->y, l->d);
	for (int i = 0; i < r->nparams; i++)
		fprintf(out, " arg.%s=%.9g", r->params[i].name, l->rule.args[i]);
	fputc('\n', out);
}

static void print_train(FILE *out, const TrainCfg *t)
{
	fprintf(out, "train data=%s batch=%d epochs=%d seed=%ld optimizer=%s"
	        " lr=%.9g momentum=%.9g nesterov=%d weight_decay=%.9g beta1=%.9g"
	        " beta2=%.9g eps=%.9g schedule=%s step_every=%d gamma=%.9g"
	        " min_lr=%.9g\n",
	        t->data ? t->data : "synthetic", t->batch, t->epochs, t->seed,
	        opt_name(t->opt), t->lr, t->momentum, t->nesterov ? 1 : 0,
	        t->weight_decay, t->beta1, t->beta2, t->eps, sched_name(t->sched),
	        t->step_every, t->gamma, t->min_lr);
}

void ir_print(FILE *out, const IRNetwork *net)
{
	fprintf(out, "wtn 1\n");
	fprintf(out, "network name=%s\n", net->name);
	fprintf(out, "input name=%s units=%d slot=%d\n",
	        net->input_name ? net->input_name : "x", net->in_units, net->x_slot);
	for (int i = 0; i < net->nbufs; i++) {
		const IRBuf *b = &net->bufs[i];
		fprintf(out, "buf slot=%d name=%s kind=%s elems=%ld shape=%dx%d\n", i,
		        b->name, buf_kind_name(b->kind), b->elems, b->rows, b->cols);
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
