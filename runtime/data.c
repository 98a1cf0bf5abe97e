/* data.c: finds and loads a data set by name or directory, normalises it
 * once, and cuts it into (shuffled, augmented) batches. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "wtnrt.h"

static const char *const known_dirs[][2] = {
	{"fashion_mnist", "/usr/share/datasets/fashion-mnist"},
	{"mnist", "/usr/share/datasets/mnist"},
};

/* Finds DIR/base or DIR/base.gz; reports the missing file by name. */
static int find_file(const char *dir, const char *base, char *out, size_t outlen)
{
	struct stat st;
	for (int gz = 0; gz <= 1; gz++) {
		snprintf(out, outlen, gz ? "%s/%s.gz" : "%s/%s", dir, base);
		if (stat(out, &st) == 0)
			return 0;
		if (errno != ENOENT) {   /* a symlink loop, a permission: not "missing" */
			fprintf(stderr, "wtn: %s: cannot open: %s\n", out, strerror(errno));
			return -1;
		}
	}
	fprintf(stderr, "wtn: %s/%s: missing data file (also tried %s.gz)\n", dir, base, base);
	return -1;
}

static int load_split(const char *dir, const char *images, const char *labels,
                      RtShape in, int nclasses, RtSet *s)
{
	char ipath[4200], lpath[4200];
	long ni, nl;
	if (find_file(dir, images, ipath, sizeof ipath) < 0 ||
	    find_file(dir, labels, lpath, sizeof lpath) < 0)
		return -1;
	if (rt_idx_load_images(ipath, in, &s->x, &ni) < 0)
		return -1;
	if (rt_idx_load_labels(lpath, nclasses, &s->y, &nl) < 0)
		return -1;
	if (ni != nl) {
		fprintf(stderr, "wtn: %s: %ld labels, but %s has %ld images\n", lpath, nl, ipath, ni);
		return -1;
	}
	s->n = ni;
	s->dim = in.c * in.h * in.w;
	return 0;
}

static bool has_file(const char *dir, const char *base)
{
	char path[4200];
	struct stat st;
	snprintf(path, sizeof path, "%s/%s", dir, base);
	return stat(path, &st) == 0;
}

/* A directory of IDX files or of CIFAR-10 binaries, told apart by the files
 * it holds; when it holds neither, by the data set's name (the loader then
 * names the missing file). */
static int load_dir(const char *dir, bool cifar, RtShape in, int nclasses, RtData *d)
{
	struct stat st;
	if (stat(dir, &st) != 0) {
		fprintf(stderr, "wtn: %s: data directory not found: %s\n", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "wtn: %s: not a directory\n", dir);
		return -1;
	}
	bool idx = has_file(dir, "train-images-idx3-ubyte") ||
	           has_file(dir, "train-images-idx3-ubyte.gz");
	if (has_file(dir, "data_batch_1.bin") || has_file(dir, "test_batch.bin") || (cifar && !idx))
		return rt_cifar_load(dir, in, nclasses, d);
	snprintf(d->source, sizeof d->source, "%s", dir);
	if (load_split(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
	               in, nclasses, &d->train) < 0)
		return -1;
	return load_split(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
	                  in, nclasses, &d->test);
}

/* x = (x - mean[c]) / std[c] over NHWC samples (the compiler gives one
 * pair per channel). */
static void normalise(RtSet *s, const RtTrain *t, int channels)
{
	long total = s->n * s->dim;
	for (long i = 0; i < total; i++) {
		int c = (int)(i % channels);
		s->x[i] = (float)((s->x[i] - t->norm_mean[c]) / t->norm_std[c]);
	}
}

static int load_named(const RtModel *m, const char *dir, RtData *d)
{
	const char *name = m->train.data;
	const char *what = dir ? dir : name;
	int nclasses = m->layers[m->nlayers - 1].out;
	bool cifar = strcmp(name, "cifar10") == 0;
	if (strcmp(what, "synthetic") == 0) {
		rt_synthetic_make(m->in_shape, nclasses, (uint64_t)m->train.seed, d);
		return 0;
	}
	for (size_t i = 0; i < sizeof known_dirs / sizeof known_dirs[0]; i++)
		if (strcmp(what, known_dirs[i][0]) == 0)
			return load_dir(known_dirs[i][1], false, m->in_shape, nclasses, d);
	if (strcmp(what, "cifar10") == 0) {
		fprintf(stderr, "wtn: data cifar10: no directory given: pass --data DIR, the "
		        "directory holding data_batch_1.bin .. data_batch_5.bin and test_batch.bin\n");
		return -1;
	}
	/* The spec names a directory with a '/'; --data always names one. */
	if (!dir && !strchr(name, '/')) {
		fprintf(stderr, "wtn: unknown data set '%s' (expected fashion_mnist, mnist, cifar10, "
		        "synthetic or a directory)\n", name);
		return -1;
	}
	return load_dir(what, cifar, m->in_shape, nclasses, d);
}

int rt_data_load(const RtModel *m, const char *dir, RtData *d)
{
	memset(d, 0, sizeof *d);
	if (load_named(m, dir, d) < 0) {
		rt_data_free(d);
		return -1;
	}
	if (m->train.nnorm) {
		normalise(&d->train, &m->train, m->in_shape.c);
		normalise(&d->test, &m->train, m->in_shape.c);
	}
	return 0;
}

void rt_data_free(RtData *d)
{
	free(d->train.x);
	free(d->train.y);
	free(d->test.x);
	free(d->test.y);
	memset(d, 0, sizeof *d);
}

void rt_batcher_init(RtBatcher *b, const RtSet *set, int batch, bool shuffle, uint64_t seed)
{
	b->set = set;
	b->batch = batch;
	b->shuffle = shuffle;
	b->pos = 0;
	b->augment = NULL;
	b->order = malloc((set->n ? set->n : 1) * sizeof *b->order);
	if (!b->order) {
		fprintf(stderr, "wtn: out of memory\n");
		exit(1);
	}
	for (long i = 0; i < set->n; i++)
		b->order[i] = i;
	rt_rng_seed(&b->rng, rt_mix64(seed ^ 0xba7c4ed5ULL));
}

void rt_batcher_free(RtBatcher *b)
{
	free(b->order);
	free(b->augment);
	b->order = NULL;
	b->augment = NULL;
}

void rt_batcher_augment(RtBatcher *b, const RtModel *m, uint64_t seed)
{
	const RtTrain *t = &m->train;
	if (!t->crop_pad && !t->flip)
		return;
	RtAugment *a = calloc(1, sizeof *a);
	if (!a) {
		fprintf(stderr, "wtn: out of memory\n");
		exit(1);
	}
	a->shape = m->in_shape;
	a->crop_pad = t->crop_pad;
	a->flip = t->flip != 0;
	/* torchvision pads the raw image with zeros, then normalises. */
	a->npad = t->nnorm;
	for (int c = 0; c < t->nnorm; c++)
		a->pad[c] = (float)((0.0 - t->norm_mean[c]) / t->norm_std[c]);
	/* A stream of its own: the shuffle order stays that of the seed. */
	rt_rng_seed(&a->rng, rt_mix64(seed ^ 0xa7a7c409ULL));
	b->augment = a;
}

/* Fisher-Yates on the previous order: each epoch's order depends only on
 * the seed and the epoch number. */
void rt_batcher_start_epoch(RtBatcher *b)
{
	b->pos = 0;
	if (!b->shuffle)
		return;
	for (long i = b->set->n - 1; i > 0; i--) {
		long j = (long)rt_rng_below(&b->rng, (uint64_t)i + 1);
		long t = b->order[i];
		b->order[i] = b->order[j];
		b->order[j] = t;
	}
}

/* One sample through RandomCrop(padding=p) then RandomHorizontalFlip:
 * out[h][w] = src[h + dy - p][w' + dx - p] with w' = w or W-1-w, pixels
 * outside the source taking the pad value. */
static void augment_sample(RtAugment *a, const float *src, float *dst)
{
	int C = a->shape.c, H = a->shape.h, W = a->shape.w, p = a->crop_pad;
	int dy = p ? (int)rt_rng_below(&a->rng, 2 * p + 1) - p : 0;
	int dx = p ? (int)rt_rng_below(&a->rng, 2 * p + 1) - p : 0;
	bool flip = a->flip && (rt_rng_next(&a->rng) >> 63);
	for (int h = 0; h < H; h++) {
		int sh = h + dy;
		for (int w = 0; w < W; w++) {
			int sw = (flip ? W - 1 - w : w) + dx;
			float *o = dst + ((long)h * W + w) * C;
			if (sh < 0 || sh >= H || sw < 0 || sw >= W) {
				for (int c = 0; c < C; c++)
					o[c] = a->npad == 0 ? 0.0f : a->pad[c];
				continue;
			}
			memcpy(o, src + ((long)sh * W + sw) * C, C * sizeof *o);
		}
	}
}

int rt_batcher_next(RtBatcher *b, float *x, int32_t *labels)
{
	const RtSet *s = b->set;
	long left = s->n - b->pos;
	int n = left < b->batch ? (int)left : b->batch;
	for (int i = 0; i < n; i++) {
		long k = b->order[b->pos + i];
		if (b->augment)
			augment_sample(b->augment, s->x + k * s->dim, x + (long)i * s->dim);
		else
			memcpy(x + (long)i * s->dim, s->x + k * s->dim, s->dim * sizeof *x);
		labels[i] = s->y[k];
	}
	b->pos += n;
	return n;
}
