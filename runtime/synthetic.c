/* synthetic.c: a deterministic, learnable data set sized to the network, so
 * a network can be trained and tested without any files. Each class has a
 * random prototype; a sample is its class's prototype plus Gaussian noise,
 * clipped to [0, 1]. */
#include <stdlib.h>
#include <string.h>
#include "wtnrt.h"

enum { SYNTH_TRAIN = 2048, SYNTH_TEST = 512 };
static const double synth_noise = 0.35;

static void synth_fill(RtSet *s, long n, int dim, int nclasses, const float *protos, RtRng *r)
{
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
			double v = protos[(long)k * dim + j] + synth_noise * rt_rng_normal(r);
			s->x[i * dim + j] = (float)(v < 0 ? 0 : v > 1 ? 1 : v);
		}
	}
}

void rt_synthetic_make(int in_units, int nclasses, uint64_t seed, RtData *d)
{
	RtRng r;
	rt_rng_seed(&r, rt_mix64(seed ^ 0x5e7d47a5e7ULL));
	float *protos = malloc((long)nclasses * in_units * sizeof *protos);
	if (!protos) {
		fprintf(stderr, "wtn: out of memory making the synthetic data set\n");
		exit(1);
	}
	for (long i = 0; i < (long)nclasses * in_units; i++)
		protos[i] = (float)rt_rng_uniform(&r);
	synth_fill(&d->train, SYNTH_TRAIN, in_units, nclasses, protos, &r);
	synth_fill(&d->test, SYNTH_TEST, in_units, nclasses, protos, &r);
	free(protos);
	snprintf(d->source, sizeof d->source, "synthetic (%d train, %d test, seed %llu)",
	         SYNTH_TRAIN, SYNTH_TEST, (unsigned long long)seed);
}
