/* data.c: finds and loads a data set by name or directory, and cuts it into
 * (shuffled) batches. */
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
	snprintf(out, outlen, "%s/%s", dir, base);
	if (stat(out, &st) == 0)
		return 0;
	snprintf(out, outlen, "%s/%s.gz", dir, base);
	if (stat(out, &st) == 0)
		return 0;
	fprintf(stderr, "wtn: %s/%s: missing data file (also tried %s.gz)\n", dir, base, base);
	return -1;
}

static int load_split(const char *dir, const char *images, const char *labels,
                      int in_units, int nclasses, RtSet *s)
{
	char ipath[4200], lpath[4200];
	long ni, nl;
	if (find_file(dir, images, ipath, sizeof ipath) < 0 ||
	    find_file(dir, labels, lpath, sizeof lpath) < 0)
		return -1;
	if (rt_idx_load_images(ipath, in_units, &s->x, &ni) < 0)
		return -1;
	if (rt_idx_load_labels(lpath, nclasses, &s->y, &nl) < 0)
		return -1;
	if (ni != nl) {
		fprintf(stderr, "wtn: %s: %ld labels, but %s has %ld images\n", lpath, nl, ipath, ni);
		return -1;
	}
	s->n = ni;
	s->dim = in_units;
	return 0;
}

static int load_dir(const char *dir, int in_units, int nclasses, RtData *d)
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
	snprintf(d->source, sizeof d->source, "%s", dir);
	if (load_split(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
	               in_units, nclasses, &d->train) < 0 ||
	    load_split(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
	               in_units, nclasses, &d->test) < 0) {
		rt_data_free(d);
		return -1;
	}
	return 0;
}

int rt_data_load(const char *name, const char *dir, int in_units, int nclasses,
                 uint64_t seed, RtData *d)
{
	memset(d, 0, sizeof *d);
	const char *what = dir ? dir : name;
	if (strcmp(what, "synthetic") == 0) {
		rt_synthetic_make(in_units, nclasses, seed, d);
		return 0;
	}
	for (size_t i = 0; i < sizeof known_dirs / sizeof known_dirs[0]; i++)
		if (strcmp(what, known_dirs[i][0]) == 0)
			return load_dir(known_dirs[i][1], in_units, nclasses, d);
	/* The spec names a directory with a '/'; --data always names one. */
	if (!dir && !strchr(name, '/')) {
		fprintf(stderr, "wtn: unknown data set '%s' (expected fashion_mnist, mnist, "
		        "synthetic or a directory)\n", name);
		return -1;
	}
	return load_dir(what, in_units, nclasses, d);
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
	b->order = NULL;
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

int rt_batcher_next(RtBatcher *b, float *x, int32_t *labels)
{
	const RtSet *s = b->set;
	long left = s->n - b->pos;
	int n = left < b->batch ? (int)left : b->batch;
	for (int i = 0; i < n; i++) {
		long k = b->order[b->pos + i];
		memcpy(x + (long)i * s->dim, s->x + k * s->dim, s->dim * sizeof *x);
		labels[i] = s->y[k];
	}
	b->pos += n;
	return n;
}
