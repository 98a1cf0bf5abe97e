/* refmath.h: an independent double-precision model of the kernels' math
 * (runtime/wtn_abi.h), written from the equations, not from the compiler.
 * Every stage reads its inputs from the kernels' own float buffers, so each
 * stage is checked on its own and a relu at a == 0 cannot flip between the
 * float and double computations. */
#ifndef REFMATH_H
#define REFMATH_H
#include "wtnrt.h"

/* Slot holding the input activations of layer l (network input or the
 * producing layer's y). */
int ref_input_slot(const RtModel *m, int l);
/* Number of floats buffer `slot` holds for a batch of n. */
long ref_buf_len(const RtModel *m, int slot, int n);

/* f'(a) written in terms of y = f(a) (the same function for every act). */
double ref_act_grad_from_y(int act, double y);
double ref_act(int act, double a);

/* y[n, out] of layer l from the given input activations (float or double). */
void ref_layer_forward(const RtModel *m, float **bufs, int l, const double *in,
                       int n, double *y);
/* Mean loss of the output layer's y (float buffer) and its error d. */
double ref_loss(const RtModel *m, float **bufs, const int32_t *labels, int n,
                double *d_out);
/* Error d of layer p from its consumers' (kernel) errors, through W or B as
 * each consumer's carry says (or through W for every consumer if force_w:
 * what backprop would send). Returns 0, or -1 (message) for carry=D. */
int ref_layer_error(const RtModel *m, float **bufs, int p, int n, double *d,
                    int force_w);
/* gW = d^T Y_in and gb = column sums of d, from the kernel's d and Y_in. */
void ref_layer_grads(const RtModel *m, float **bufs, int l, int n,
                     double *gW, double *gb);

/* Layer l is a dfa hidden layer: its error comes from the output's
 * through its own D, and its consumer sends it nothing. */
int ref_takes_output_error(const RtModel *m, int l);
/* Standard deviation of the distribution W is drawn from. */
double ref_init_std(const RtLayer *L);
/* Sign-symmetry scale s of usf: arg scale if > 0, else 1/sqrt(fan_in). */
double ref_sign_scale(const RtLayer *L);
/* Weight decay of this layer's W (and kp's B): kp's decay >= 0, else the
 * optimiser's. */
double ref_weight_decay(const RtLayer *L, const float *hyper);
/* One mirror step of layer l from the noise x in its input slot:
 * y[n, out] = x W^T, B = (1 - decay) B + (rate / n) y^T x (B in place). */
void ref_mirror(const RtModel *m, float **bufs, int l, int n, double *y, double *B);
double ref_angle_deg(const double *a, const double *b, long count);

/* One optimiser step on one tensor: w, m, v updated in place (m, v may be
 * NULL when the tensor has no such state). */
void ref_opt_step(const RtTrain *t, const float *hyper, long count,
                  const float *grad, double *w, double *mstate, double *vstate);

/* The whole forward pass and loss in double from the float parameters
 * (used by the finite-difference check). */
double ref_chain_loss(const RtModel *m, float **bufs, const int32_t *labels, int n);

#endif
