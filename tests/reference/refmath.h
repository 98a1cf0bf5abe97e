/* refmath.h: an independent double-precision model of the kernels' math
 * (runtime/wtn_abi.h, issue 4's op semantics), written from the equations,
 * not from the compiler. Every stage reads its inputs from the kernels' own
 * float buffers, so each stage is checked on its own and a relu at a == 0
 * or a maxpool tie cannot flip between the float and double computations.
 * Activations are NHWC: element (n, h, w, c) of a C x H x W shape is at
 * ((n H + h) W + w) C + c. */
#ifndef REFMATH_H
#define REFMATH_H
#include "wtnrt.h"

/* ---- the model's layers (wtn_model.h, from the network's object) ---- */
enum { REF_DENSE, REF_CONV, REF_BN, REF_MAXPOOL, REF_AVGPOOL, REF_GAP, REF_FLATTEN,
       REF_ADD, REF_ACT, REF_DROPOUT, REF_LN, REF_NKINDS };
enum { REF_BUF_PARAM, REF_BUF_STAT, REF_BUF_STATE, REF_BUF_GRAD, REF_BUF_BATCH,
       REF_BUF_SCRATCH };
typedef struct RefShape { int c, h, w; } RefShape;
typedef struct RefOp {
	int kind, input2;
	RefShape in, out;
	int kh, kw, stride, pad;   /* dense: a 1x1 convolution of a 1x1 image */
	double eps, momentum, p;
	int rmean, rvar, aux, aux2;
} RefOp;
extern const char *const ref_kind_names[REF_NKINDS];
/* Reads the layers and buffer kinds of model m. Returns 0, or -1 after a
 * message on stdout. */
int ref_model_load(const RtModel *m);
const RefOp *ref_op(int l);
int ref_buf_kind(int slot);
RefShape ref_input_shape(void);
/* Layers with a weight tensor W: dense, conv2d (W, feedback rule),
 * batchnorm and layernorm (gamma). */
int ref_has_weights(const RtModel *m, int l);
/* batchnorm and layernorm: gamma in W, beta in b, by backprop. */
int ref_is_norm(int l);
/* gelu's derivative at its input a (it is not a function of gelu(a)). */
double ref_gelu_grad(double a);
/* Layers with a feedback rule: dense and conv2d. */
int ref_has_rule(const RtModel *m, int l);
long ref_weight_count(const RtModel *m, int l);
/* fan_in of W: in for dense, C kh kw for conv2d. */
int ref_fan_in(const RtModel *m, int l);

/* Slot holding the input activations of layer l (network input or the
 * producing layer's y); input2: add's second operand (-1 if none). */
int ref_input_slot(const RtModel *m, int l);
int ref_input2_slot(const RtModel *m, int l);
/* Number of floats buffer `slot` holds for a batch of n. */
long ref_buf_len(const RtModel *m, int slot, int n);

/* f'(a) written in terms of y = f(a) (the same function for every act). */
double ref_act_grad_from_y(int act, double y);
double ref_act(int act, double a);

/* y[n, out] of layer l from the given input activations (in2: add's second
 * operand). eval: batchnorm uses its running statistics (from bufs). */
void ref_layer_forward(const RtModel *m, float **bufs, int l, const double *in,
                       const double *in2, int n, int eval, double *y);
/* Batchnorm's batch statistics per channel: mean and the biased variance. */
void ref_bn_batch_stats(const RtModel *m, int l, const double *in, int n, double *mean,
                        double *var);
/* Mean loss of the output layer's y (float buffer) and its error d. */
double ref_loss(const RtModel *m, float **bufs, const int32_t *labels, int n,
                double *d_out);
/* Error d of layer p from its consumers' (kernel) errors, through W or B as
 * each consumer's carry says (or through W for every consumer if force_w:
 * what backprop would send); dfa hidden layers from the output's error
 * through their D. */
int ref_layer_error(const RtModel *m, float **bufs, int p, int n, double *d,
                    int force_w);
/* Gradients of layer l's W and b from its kernel d and input:
 * dense/conv: gW = d^T col(Y_in), gb = sums of d; batchnorm: dgamma =
 * sum d xhat, dbeta = sum d. */
void ref_layer_grads(const RtModel *m, float **bufs, int l, int n,
                     double *gW, double *gb);
/* The sums of absolute values of the terms of those gradients. */
void ref_layer_grads_magnitude(const RtModel *m, float **bufs, int l, int n,
                               double *gW, double *gb);

/* Layer l is a dfa hidden layer: its error comes from the output's
 * through its own D, and its consumers send it nothing. */
int ref_takes_output_error(const RtModel *m, int l);
/* Standard deviation of the distribution W is drawn from. */
double ref_init_std(const RtModel *m, int l);
/* Sign-symmetry scale s of usf: arg scale if > 0, else 1/sqrt(fan_in)
 * (dense) or sqrt(2 / (kh kw C_out)) (conv2d). */
double ref_sign_scale(const RtModel *m, int l);
/* Weight decay of this layer's W (and kp's B): kp's decay >= 0, else the
 * optimiser's. */
double ref_weight_decay(const RtLayer *L, const float *hyper);
/* One mirror step of layer l from the noise x in its input slot:
 * y[n, out] = conv/dense of x without bias, B = (1 - decay) B + (rate / n)
 * y^T col(x) (B in place). */
void ref_mirror(const RtModel *m, float **bufs, int l, int n, double *y, double *B);
/* Where mirror steps alone take B for a fixed W: element (f, c, i, j) of
 * W times rate noise^2 / decay times the number of output pixels whose tap
 * (i, j) falls inside the image (1 for dense). */
void ref_mirror_fixed_point(const RtModel *m, float **bufs, int l, double *B);
double ref_angle_deg(const double *a, const double *b, long count);

/* One optimiser step on one tensor: w, m, v updated in place (m, v may be
 * NULL when the tensor has no such state). */
void ref_opt_step(const RtTrain *t, const float *hyper, long count,
                  const float *grad, double *w, double *mstate, double *vstate);

/* The whole forward pass (training mode) and loss in double from the float
 * parameters (used by the finite-difference check). */
double ref_chain_loss(const RtModel *m, float **bufs, const int32_t *labels, int n);

#endif
