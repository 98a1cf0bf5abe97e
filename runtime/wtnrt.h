/* wtnrt.h: the runtime library's shared header, one section per file.
 * The runtime reads a compiled network's model (wtn_model.h), owns every
 * buffer, the data, the optimiser's schedule and state, metrics and
 * checkpoints, and calls the generated kernels. */
#ifndef WTNRT_H
#define WTNRT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "wtn_abi.h"
#include "wtn_model.h"

/* ---- model.c: the compiled network's model (wtn_model.h) ---- */
#define RT_ACT_E(N, ...) RT_ACT_##N,
#define RT_LOSS_E(N, ...) RT_LOSS_##N,
#define RT_INIT_E(N, ...) RT_INIT_##N,
#define RT_START_E(N, ...) RT_START_##N,
#define RT_CARRY_E(N, ...) RT_CARRY_##N,
#define RT_CHANGE_E(N, ...) RT_CHANGE_##N,
#define RT_OPT_E(N, ...) RT_OPT_##N,
#define RT_SCHED_E(N, ...) RT_SCHED_##N,
#define RT_BUF_E(N, ...) RT_BUF_##N,
#define RT_OP_E(N, ...) RT_OP_##N,
enum { WTN_ACTS(RT_ACT_E) };
enum { WTN_LOSSES(RT_LOSS_E) };
enum { WTN_INITS(RT_INIT_E) };
enum { WTN_STARTS(RT_START_E) };
enum { WTN_CARRIES(RT_CARRY_E) };
enum { WTN_CHANGES(RT_CHANGE_E) };
enum { WTN_OPTS(RT_OPT_E) };
enum { WTN_SCHEDS(RT_SCHED_E) };
enum { WTN_BUF_KINDS(RT_BUF_E) };
enum { WTN_OPS(RT_OP_E) };

#define RT_MAX_RULE_ARGS WTN_MAX_ARGS
#define RT_MAX_DIMS WTN_MAX_DIMS
#define RT_MAX_NORM WTN_MAX_NORM
typedef WtnShape RtShape;
typedef WtnBuf RtBuf;
typedef WtnLayer RtLayer;
typedef WtnTrain RtTrain;
/* A copy of wtn_model: the command line changes its train settings. */
typedef WtnModel RtModel;

/* *m = wtn_model, after checking its version; -1 after a message. */
int rt_model_load(RtModel *m);
/* Value of the layer's rule argument `name`, or def if absent. */
double rt_rule_arg(const RtLayer *l, const char *name, double def);
/* Writes the rule arguments in force into the model's rule.args buffer,
 * where the kernels read them (rt_alloc_buffers does; call again after
 * changing an argument). */
void rt_rule_args_write(const RtModel *m, float **bufs);
/* The largest batch the kernels can index (any batch below it is planned
 * at start-up: --batch may exceed the compiled one). */
int rt_batch_limit(const RtModel *m);
/* usf's |B| in force: its scale, or the fan-in default for scale 0. */
double rt_usf_scale(const RtLayer *l);
/* Whether the layer has a feedback path with a rule (dense and conv2d). */
bool rt_layer_has_rule(const RtLayer *l);
/* The name of a layer kind, as the language spells it. */
const char *rt_op_name(int kind);
/* Allocates every buffer (batch buffers for max_batch samples; scratch
 * buffers once), zeroed, 64-byte aligned. Returns the array of slot pointers. */
float **rt_alloc_buffers(const RtModel *m, int max_batch);
void rt_free_buffers(const RtModel *m, float **bufs);
/* ---- rng.c: seeded xoshiro256** (seeded through splitmix64) ---- */
typedef struct RtRng { uint64_t s[4]; } RtRng;
void rt_rng_seed(RtRng *r, uint64_t seed);
uint64_t rt_rng_next(RtRng *r);
double rt_rng_uniform(RtRng *r);            /* [0, 1) */
double rt_rng_normal(RtRng *r);             /* standard normal */
uint64_t rt_rng_below(RtRng *r, uint64_t n);/* uniform in [0, n) */
uint64_t rt_mix64(uint64_t x);              /* splitmix64 finaliser: hashes seeds */

/* ---- idx.c: IDX files, plain or gzip ----
 * Each loader prints one line "wtn: FILE: problem" and returns -1 on error.
 * Images are 1xHxW: a vector input takes any HxW of its size (flattened),
 * an image input needs exactly its shape. */
int rt_idx_load_images(const char *path, RtShape in, float **pixels, long *count);
int rt_idx_load_labels(const char *path, int nclasses, int32_t **labels, long *count);

/* ---- data.c, cifar.c and synthetic.c: data sets and batches ---- */
typedef struct RtSet {
	long n;                /* samples */
	int dim;               /* values per sample */
	float *x;              /* [n, dim]: pixels in [0, 1] (NHWC), then normalised */
	int32_t *y;            /* [n] class indices */
} RtSet;
typedef struct RtData {
	char source[300];      /* what was loaded, for messages */
	RtSet train, test;
} RtData;
/* The model's data (fashion_mnist, mnist, cifar10, synthetic, or a directory
 * containing '/') or dir, the --data override (a name or a directory), sized
 * to the model's input and classes, normalised as its train record says. */
int rt_data_load(const RtModel *m, const char *dir, RtData *d);
void rt_data_free(RtData *d);
/* The CIFAR-10 binary files in dir (data_batch_1..5.bin, test_batch.bin). */
int rt_cifar_load(const char *dir, RtShape in, int nclasses, RtData *d);
void rt_synthetic_make(RtShape in, int nclasses, uint64_t seed, RtData *d);

/* Random crop (after padding by crop_pad pixels) and horizontal flip of
 * NHWC images, drawn per sample; pad holds each channel's value of a zero
 * pixel after normalisation. */
typedef struct RtAugment {
	RtShape shape;
	int crop_pad;
	bool flip;
	int npad;              /* 0: pad with 0; else C */
	float pad[RT_MAX_NORM];
	RtRng rng;
} RtAugment;
typedef struct RtBatcher {
	const RtSet *set;
	long *order;           /* permutation of the samples this epoch */
	long pos;
	int batch;
	bool shuffle;
	RtRng rng;
	RtAugment *augment;    /* NULL: copy samples as they are */
} RtBatcher;
void rt_batcher_init(RtBatcher *b, const RtSet *set, int batch, bool shuffle, uint64_t seed);
void rt_batcher_free(RtBatcher *b);
/* Turns on the model's augmentation (if its train record asks for any). */
void rt_batcher_augment(RtBatcher *b, const RtModel *m, uint64_t seed);
void rt_batcher_start_epoch(RtBatcher *b);  /* reshuffles unless shuffle is off */
/* Copies the next batch into x [n, dim] and labels [n]; returns n (0 at the
 * end of the epoch). The last batch may be partial. */
int rt_batcher_next(RtBatcher *b, float *x, int32_t *labels);

/* ---- init.c: parameter initialisation ---- */
/* Fills every param and stat buffer, and the frsf magnitudes M, as their
 * init descriptors say. Returns -1 (after a message) when out of memory. */
int rt_init_params(const RtModel *m, float **bufs, uint64_t seed);
/* After a checkpoint load: M = |B| for layers that keep M (B = |M| sign(W)). */
void rt_init_mags_from_feedback(const RtModel *m, float **bufs);
/* Each dropout layer's mask for n samples: 0 with probability p, else
 * 1/(1-p) (inverted dropout), from the run's stream r. */
void rt_dropout_masks(const RtModel *m, float **bufs, int n, RtRng *r);

/* After loading feedback tensors a checkpoint lacked (left as drawn from
 * the seed): those whose init takes W's signs take the loaded W's. */
void rt_init_redraw_signs(const RtModel *m, float **bufs, int slot);

/* ---- noise.c: the generator behind wtn_noise ---- */
void rt_noise_seed(uint64_t seed);
/* The generator's state, for resumable checkpoints. */
RtRng rt_noise_state(void);
void rt_noise_restore(const RtRng *r);
/* The next wtn_noise call returns values [first, first + count) of a call
 * for total values and moves the stream as far as that call would: a rank's
 * slice of a noise batch split across ranks. */
void rt_noise_window(long first, long total);

/* ---- optim.c: learning-rate schedule and per-step scalars ---- */
typedef struct RtOptim {
	const RtTrain *t;
	long step;             /* optimiser steps taken so far */
	double lr;             /* this epoch's learning rate */
	float hyper[WTN_H_COUNT];
} RtOptim;
double rt_sched_lr(const RtTrain *t, int epoch);   /* epoch counts from 0 */
void rt_optim_init(RtOptim *o, const RtTrain *t);
void rt_optim_begin_epoch(RtOptim *o, int epoch);
const float *rt_optim_next(RtOptim *o);            /* fills hyper, counts a step */

/* ---- pool.c: threads sharing the fused update ---- */
typedef struct RtPool RtPool;
RtPool *rt_pool_start(int nthreads);
/* Runs wtn_update(bufs, hyper, part, nthreads) for every part and waits. */
void rt_pool_update(RtPool *p, float **bufs, const float *hyper);
bool rt_pool_splits(const RtPool *p);
void rt_pool_stop(RtPool *p);

/* ---- profile.c: train --profile (wtn_profile_mark in wtn_abi.h) ---- */
/* Turns profiling on for this run (-1 after a message: out of memory). */
int rt_profile_enable(const RtModel *m);
/* Profiled stretches of the step loop: the clock starts charged to data. */
void rt_profile_begin(void);
void rt_profile_end(void);
void rt_profile_step(int samples);   /* one step of `samples` done */
/* The pool: the calling thread is about to wait for the other parts; the
 * wait is charged to the phase's step-wide row (the update's join). */
void rt_profile_join(void);
/* Threads starting (delta > 0) or stopping work, for the one-thread share. */
void rt_profile_busy(int delta);
/* wtn_sgemm: the threads beyond the caller's OpenBLAS will run this
 * product on, while profiling the step loop's thread (else 0). */
int rt_profile_blas_threads(int m, int n, int k);
/* The table at the end of training, and its metrics record. */
void rt_profile_print(FILE *out, const RtModel *m, int threads);
int rt_profile_json(FILE *out, const RtModel *m, int threads);

/* ---- metrics.c: losses, accuracies, alignment, reports ---- */
/* angle(B, W) and |B|/|W| (NaN without B); delta: angle between the error
 * the rule sends to the layer and the one backprop would send (NaN when
 * either is zero). */
typedef struct RtLayerStat { double angle, norm_ratio, delta; } RtLayerStat;
typedef struct RtEpochStats {
	int epoch, epochs;     /* epoch counts from 1 */
	double lr, train_loss, train_acc, test_loss, test_acc, samples_per_sec;
	RtLayerStat *layers;   /* per model layer */
} RtEpochStats;
int rt_argmax(const float *v, int n);
double rt_angle_deg(const float *a, const float *b, long n);  /* NaN for zero vectors */
double rt_norm_ratio(const float *a, const float *b, long n); /* |a| / |b| */
void rt_layer_stats(const RtModel *m, float **bufs, RtLayerStat *out);
/* Forward + loss over a whole set in batches of `batch`. */
void rt_evaluate(const RtModel *m, float **bufs, const RtSet *set, int batch,
                 int32_t *labels, double *loss, double *acc);
void rt_print_epoch(FILE *out, const RtModel *m, const RtEpochStats *s);
int rt_write_metrics_json(FILE *out, const RtModel *m, const RtEpochStats *s);
/* eta: seconds left in the run (NaN: unknown). */
void rt_progress(FILE *out, int epoch, int epochs, long done, long total,
                 double loss, double acc, double eta);
/* --layers: one row per layer with a feedback rule. */
void rt_print_layer_table(FILE *out, const RtModel *m, const RtEpochStats *s);

/* ---- probe.c: the delta angle on a fixed batch ---- */
typedef struct RtProbe RtProbe;
/* The first min(batch, set->n) samples of set; saved errors for them are
 * allocated here, once. NULL (after a message) when out of memory. */
RtProbe *rt_probe_new(const RtModel *m, const RtSet *set, int batch);
/* Runs the rule's backward and backprop's on the probe batch and sets
 * stats[i].delta. Leaves only y, d, scratch and gradient slots and dropout's
 * masks (its own, the same at every call) changed, which the next step
 * recomputes; batchnorm running statistics, which its training-mode
 * forward passes move, are put back. */
void rt_probe_delta(RtProbe *p, float **bufs, int32_t *labels, RtLayerStat *stats);
void rt_probe_free(RtProbe *p);

/* ---- mirror.c: weight-mirror scheduling and the mirror command ---- */
/* The largest noise batch of the model's weight-mirror layers (0: none). */
int rt_mirror_max_batch(const RtModel *m);
bool rt_mirror_any(const RtModel *m);
/* Each mirror layer's warm-up steps, before training. */
void rt_mirror_warmup(const RtModel *m, float **bufs);
/* After optimiser step `step` (counting from 1): a mirror step of each
 * mirror layer whose `every` divides it. */
void rt_mirror_after_step(const RtModel *m, float **bufs, long step);
/* The mirror command: mirror steps alone, W fixed. */
typedef struct RtOptions RtOptions;
int rt_cmd_mirror(RtModel *m, const RtOptions *o);

/* ---- json.c: the JSON subset of safetensors headers ---- */
enum { RT_JSON_NULL, RT_JSON_BOOL, RT_JSON_NUMBER, RT_JSON_STRING, RT_JSON_ARRAY, RT_JSON_OBJECT };
typedef struct RtJson {
	int type;
	double number;         /* NUMBER, BOOL */
	char *string;          /* STRING; object member key in `key` */
	char *key;
	struct RtJson *items;  /* ARRAY elements or OBJECT members */
	int nitems;
} RtJson;
/* Parses text[0..len); on error returns -1 and writes a reason to err. */
int rt_json_parse(const char *text, size_t len, RtJson *out, char *err, size_t errlen);
void rt_json_free(RtJson *j);
const RtJson *rt_json_get(const RtJson *obj, const char *key);

/* ---- resume.c: the training state a resumable checkpoint adds ---- */
/* Everything a resumed run needs besides the buffers of the model (its
 * parameters, statistics and STATE buffers: optimiser moments, frsf's
 * magnitudes), as it stands where training continues. */
typedef struct RtRunState {
	int epoch;             /* the epoch (from 0) to continue or to start */
	bool in_epoch;         /* it has begun: shuffled, its first pos samples trained */
	long pos;
	long step;             /* optimiser steps taken */
	RtRng shuffle, augment, dropout, noise;   /* every random stream of training */
	double loss_sum;       /* the epoch's totals so far (EpochTotals) */
	long correct, seen;
	double start_loss;     /* the run's first step's loss (NaN: none yet) */
	long n;                /* training samples */
	long *order;           /* [n]: the epoch's shuffle order */
} RtRunState;
/* The scalars as the checkpoint's wtn_state metadata (malloc'd JSON). */
char *rt_state_json(const RtRunState *s);
/* Parses them back (order untouched); -1 with a reason in err. */
int rt_state_parse(const char *text, RtRunState *s, char *err, size_t errlen);
void rt_state_free(RtRunState *s);

/* ---- checkpoint.c: safetensors ---- */
/* epoch and step (optimiser steps so far) go into the metadata. With a
 * state, the checkpoint is resumable: it adds every STATE buffer as
 * wtn_state.NAME, the shuffle order as wtn_state.shuffle_order (I32) and
 * the scalars as the wtn_state metadata entry. */
int rt_checkpoint_save(const char *path, const RtModel *m, float **bufs, int epoch, long step,
                       const RtRunState *state);
/* Loads every parameter and statistic (wtn_state.* entries are skipped).
 * draw_missing: feedback tensors (B, D) the file lacks keep their drawn
 * values and are named on stderr. state: also the training state, which
 * the file must hold (state->order is allocated). */
int rt_checkpoint_load(const char *path, const RtModel *m, float **bufs, bool draw_missing,
                       RtRunState *state);

/* ---- train.c: the commands ---- */
typedef struct RtOptions {
	const char *command;   /* train, eval, info, mirror */
	const char *data;      /* --data override, or NULL */
	const char *init, *save, *metrics;
	const char *resume;    /* --resume: a resumable checkpoint to continue */
	bool save_state;       /* --save-state: every save is resumable */
	bool allow_changes;    /* --allow-changes: resume despite another configuration */
	bool draw_missing;     /* --init-draw-missing */
	int threads;           /* 0: online CPUs */
	int max_batch;         /* the compiled batch: buffers hold this many samples */
	bool no_shuffle;
	long steps;            /* --steps: mirror steps, or a limit on training steps */
	long save_every;       /* --save-every: also save after every N steps (0: no) */
	bool quiet;            /* --quiet: no progress bar, no epoch lines */
	bool layer_table;      /* --layers: a per-layer table after each epoch */
	long log_every;        /* --log-every N: a step record every N steps */
	bool mpi;              /* --mpi: start MPI even without a launcher's environment */
	bool sync_bn;          /* --sync-bn: batchnorm statistics over the global batch */
	bool profile;          /* --profile: where the step's time goes (profile.c) */
} RtOptions;
/* Each returns the process exit status (0, or 1 on runtime errors). */
int rt_cmd_train(RtModel *m, const RtOptions *o);
int rt_cmd_eval(RtModel *m, const RtOptions *o);
int rt_cmd_info(const RtModel *m, FILE *out);
/* --threads, or the online CPUs. */
int rt_thread_count(const RtOptions *o);
/* The buffers' batch capacity: compiled batch, train batch, mirror batches. */
int rt_max_batch(const RtModel *m, const RtOptions *o);
/* files.c: --save and --metrics of the command, checked before any work. */
int rt_check_outputs(const RtOptions *o);

/* ---- diverge.c: divergence, and the layer that blew up ---- */
/* |W| of every layer (0 without W); NULL when out of memory. */
double *rt_weight_norms(const RtModel *m, float **bufs);
bool rt_params_finite(const RtModel *m, float **bufs);
/* A loss that is not finite or far above the run's first step's `start`:
 * over RT_EXPLODE_FACTOR times it (or times 0.01, whichever is larger). */
#define RT_EXPLODE_FACTOR 10.0
bool rt_loss_exploded(double loss, double start);
/* Names the first layer whose weights, output (of the last n samples run)
 * or errors are not finite, else the one whose |W| grew most from w0. */
void rt_blame(const RtModel *m, float **bufs, int n, const double *w0, char *out, size_t len);

/* ---- files.c: inputs, outputs and signals ---- */
#include <sys/types.h>
struct stat;
/* "a directory", "a FIFO", "a device", ...: for messages. */
const char *rt_file_kind(mode_t mode);
/* Opens a file for reading without blocking on a FIFO. Returns the fd, -1
 * (errno set) if it cannot be opened, -2 if it is not a regular file (st
 * says what it is). */
int rt_open_regular(const char *path, struct stat *st);
/* Reads n bytes at offset; returns the count read (short at the end of the
 * file) or -1. */
long rt_read_at(int fd, void *buf, long n, long offset);
/* Before any work: path is a writable regular file or a new name in a
 * writable directory. Prints "wtn: OPTION PATH: problem" and returns -1
 * otherwise. */
int rt_check_output(const char *path, const char *option);
/* SIGINT, SIGTERM and SIGHUP remove a save's temporary file before the
 * process dies; with defer, the first one only sets rt_stop_requested. */
void rt_signals_install(bool defer);
int rt_stop_requested(void);          /* the signal number, 0 if none */
void rt_tmp_register(char *path);     /* NULL: no save in progress */

/* ---- settings.c: run-time settings (--set KEY=VALUE) ---- */
/* Applies one KEY=VALUE: a train setting (lr, momentum, schedule, ...) or
 * LAYER.ARG, a rule argument of the layers matching the glob LAYER. Returns
 * 0, or -1 after "wtn: --set ...: why" (with a did-you-mean, or what to
 * recompile when the value is compiled into the kernels). */
int rt_setting_apply(RtModel *m, const char *assignment);
void rt_settings_help(FILE *out, const RtModel *m);
/* The assignments applied so far, in order. */
int rt_settings_changed(const char *const **list);

/* ---- report.c: a run's recorded configuration ---- */
/* Notes the network as compiled (its content hash), before --set. */
void rt_config_note_compiled(const RtModel *m);
/* The whole configuration of a run as a JSON object (malloc'd). */
char *rt_config_json(const RtModel *m, const RtOptions *o, const char *data_source);
/* The configuration checkpoints record (NULL: none); takes ownership. */
void rt_config_set_current(char *json);
const char *rt_config_current(void);
/* Prints how a checkpoint's recorded configuration differs from now_json. */
void rt_config_compare(FILE *out, const char *path, const char *now_json);
/* Before a resumed run: the checkpoint's recorded configuration must be
 * now_json's (network, its hash, rules, train settings but epochs and
 * steps, data); prints what differs and returns -1, unless allow_changes.
 * Notes a different thread count, wtn or BLAS (the last bits may change). */
int rt_config_check_resume(const char *path, const char *now_json, bool allow_changes);
/* A rule argument as it acts: kp's decay -1 is the optimiser's weight decay. */
double rt_rule_arg_in_force(const RtModel *m, const RtLayer *l, int k);

/* ---- mpi.c: starting and ending MPI (the only file calling it) ---- */
/* Starts MPI when launched by mpirun or srun (or with --mpi); ranks other
 * than 0 get no --save or --metrics and a silent stdout. -1 after a message
 * (a binary built without MPI launched on several ranks). */
int rt_dist_init(RtOptions *o);
/* Ends MPI: MPI_Finalize, or on a nonzero status MPI_Abort (ending every
 * rank, which would otherwise wait for this one). Returns status. */
int rt_dist_finish(int status);

/* ---- dist.c: data-parallel training over MPI ----
 * Without a launcher (mpirun, srun) every function is the single-process
 * path. Collective: every rank calls these in the same order. */
/* Sums v[0..count) (floats, or doubles) in place over the ranks. */
typedef void RtSumFn(void *v, long count, bool doubles);
/* From mpi.c once MPI runs: this rank, the world size, the sum. */
void rt_dist_attach(int rank, int size, RtSumFn *sum);
void rt_dist_sync_bn(bool on);     /* --sync-bn */
int rt_dist_rank(void);
int rt_dist_size(void);
bool rt_dist_on(void);
/* Moves this rank's shard of the global batch of n samples (x [n, dim],
 * labels) to the front; returns its size (>= 1: with fewer samples than
 * ranks, a stand-in sample that counts for nothing). */
int rt_dist_shard(const RtModel *m, float *x, int32_t *labels, int n);
/* After wtn_loss of the shard (its mean loss): weights the output error
 * by the shard's share of the global batch; adds the global batch's correct
 * predictions to *correct and returns its mean loss. */
float rt_dist_loss(const RtModel *m, float **bufs, const int32_t *labels, float loss,
                   long *correct);
/* After wtn_backward: sums every gradient buffer over the ranks, and
 * averages batchnorm's running statistics (weighted by shard). */
void rt_dist_gradients(const RtModel *m, float **bufs);
/* rt_evaluate with the set split across ranks, the sums combined. */
void rt_dist_evaluate(const RtModel *m, float **bufs, const RtSet *set, int batch,
                      int32_t *labels, double *loss, double *acc);
/* wtn_mirror with the noise batch n split across ranks. */
void rt_dist_mirror(const RtModel *m, float **bufs, int layer, int n);

/* ---- blas.c: OpenBLAS's kernels and idle policy ---- */
/* Picks OpenBLAS's AVX-512 kernels where it misses them and a short idle
 * spin, re-executing the binary once (WTN_OPENBLAS=keep: leave it). */
void rt_blas_setup(char **argv);

#endif
