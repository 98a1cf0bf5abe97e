/* noise.c: the Gaussian noise the weight-mirror kernels ask for
 * (wtn_noise). One generator for the whole process, seeded from the train
 * seed, so a run is repeatable; the kernels call it with batch*in values per
 * mirror step, so it makes two values per Box-Muller pair from one 64-bit
 * draw, in single precision. */
#include <math.h>
#include "wtnrt.h"

static RtRng noise_rng;
static bool noise_seeded;

void rt_noise_seed(uint64_t seed)
{
	/* A stream of its own: the init and shuffling streams hash the same seed
	 * differently. */
	rt_rng_seed(&noise_rng, rt_mix64(seed ^ 0x6e6f6973656e6f69ULL));
	noise_seeded = true;
}

void wtn_noise(float *dst, long count, float std)
{
	if (!noise_seeded)
		rt_noise_seed(0);
	const float two_pi = 6.28318530717958647692f;
	for (long i = 0; i < count; i += 2) {
		uint64_t bits = rt_rng_next(&noise_rng);
		/* u1 in (0, 1] keeps the log finite; 32 bits each bound |z| by 6.7. */
		float u1 = (float)(((bits >> 32) + 1) * 0x1.0p-32);
		float u2 = (float)((bits & 0xffffffffu) * 0x1.0p-32);
		float r = std * sqrtf(-2.0f * logf(u1));
		float s, c;
		sincosf(two_pi * u2, &s, &c);
		dst[i] = r * c;
		if (i + 1 < count)
			dst[i + 1] = r * s;
	}
}
