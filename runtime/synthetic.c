/* synthetic.c: a deterministic, learnable data set sized to the network, so
 * a network can be trained and tested without any files. Each class has a
 * random prototype; a sample is its class's prototype plus Gaussian noise,
 * clipped to [0, 1]. For image inputs the prototype is a coarse 4x4 grid of
 * values per channel stretched over the image (so 1000 classes of 224x224
 * images need little memory and a conv net can learn them), and the set is
 * made smaller as images grow, to stay near 64 MB. */
#include <stdlib.h>
#include <string.h>
#include "wtnrt.h"

enum { SYNTH_TRAIN = 2048, SYNTH_TEST = 512, SYNTH_GRID = 4,
       SYNTH_BUDGET = 16 << 20,   /* floats in train and test together: 64 MB */
       SYNTH_MIN = 20 };
static const double synth_noise = 0.35;

/* The prototype value of element j of a sample: for vectors protos[k][j];
 * for NHWC images the grid cell under pixel (h, w) of channel c. */
static float proto_value(const float *protos, int k, long j, RtShape s)
{
	if (s.h == 1 && s.w == 1)
		return protos[(long)k * s.c + j];
	int c = (int)(j % s.c);
	long pix = j / s.c;
	int h = (int)(pix / s.w), w = (int)(pix % s.w);
	int gh = h * SYNTH_GRID / s.h, gw = w * SYNTH_GRID / s.w;
	return protos[(((long)k * s.c + c) * SYNTH_GRID + gh) * SYNTH_GRID + gw];
}

static void synth_fill(RtSet *s, long n, RtShape shape, int nclasses, const float *protos,
                       RtRng *r)
{
	int dim = shape.c * shape.h * shape.w;
	s->n = n;
	s->dim = dim;
	s->x = malloc(n * dim * sizeof *s->x);
	s->y = malloc(n * sizeof *s->y);
	if (!s->x || !s->y) {
		fprintf(stderr, "wtn: out of memory making the synthetic data set\n");
		exit(1);
	}
	for (long i = 0; i < n; i++) {
		int k = (int)rt_rng_below(r, nclasses);
		s->y[i] = k;
		for (int j = 0; j < dim; j++) {
			double v = proto_value(protos, k, j, shape) + synth_noise * rt_rng_normal(r);
			s->x[i * dim + j] = (float)(v < 0 ? 0 : v > 1 ? 1 : v);
		}
	}
}

void rt_synthetic_make(RtShape in, int nclasses, uint64_t seed, RtData *d)
{
	RtRng r;
	rt_rng_seed(&r, rt_mix64(seed ^ 0x5e7d47a5e7ULL));
	bool image = in.h > 1 || in.w > 1;
	long dim = (long)in.c * in.h * in.w;
	long per_class = image ? (long)in.c * SYNTH_GRID * SYNTH_GRID : dim;
	long ntrain = SYNTH_TRAIN, ntest = SYNTH_TEST;
	if (image && dim * (ntrain + ntest) > SYNTH_BUDGET) {
		long total = SYNTH_BUDGET / dim;
		if (total < SYNTH_MIN)
			total = SYNTH_MIN;
		ntrain = total * 4 / 5;
		ntest = total - ntrain;
	}
	float *protos = malloc(nclasses * per_class * sizeof *protos);
	if (!protos) {
		fprintf(stderr, "wtn: out of memory making the synthetic data set\n");
		exit(1);
	}
	for (long i = 0; i < nclasses * per_class; i++)
		protos[i] = (float)rt_rng_uniform(&r);
	synth_fill(&d->train, ntrain, in, nclasses, protos, &r);
	synth_fill(&d->test, ntest, in, nclasses, protos, &r);
	free(protos);
	snprintf(d->source, sizeof d->source, "synthetic (%ld train, %ld test, seed %llu)",
	         ntrain, ntest, (unsigned long long)seed);
}
