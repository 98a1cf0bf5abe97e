/* noise.c: the Gaussian noise the weight-mirror kernels ask for
 * (wtn_noise). One generator for the whole process, seeded from the train
 * seed, so a run is repeatable; the kernels call it with batch*in values per
 * mirror step, so it makes two values per Box-Muller pair from one 64-bit
 * draw, in single precision. */
#include <math.h>
#include "wtnrt.h"

static RtRng noise_rng;
static bool noise_seeded;
/* rt_noise_window: the next call returns values [window_first, +count) of
 * a call for window_total values (0: no window). */
static long window_first, window_total;

void rt_noise_seed(uint64_t seed)
{
	/* A stream of its own: the init and shuffling streams hash the same seed
	 * differently. */
	rt_rng_seed(&noise_rng, rt_mix64(seed ^ 0x6e6f6973656e6f69ULL));
	noise_seeded = true;
}

void rt_noise_window(long first, long total)
{
	window_first = first;
	window_total = total;
}

void wtn_noise(float *dst, long count, float std)
{
	if (!noise_seeded)
		rt_noise_seed(0);
	long first = window_total ? window_first : 0, total = window_total ? window_total : count;
	window_total = 0;
	const float two_pi = 6.28318530717958647692f;
	long pair = first / 2, pairs = (total + 1) / 2;
	for (long p = 0; p < pair; p++)
		rt_rng_next(&noise_rng);
	for (long v = pair * 2; v < first + count; v += 2, pair++) {
		uint64_t bits = rt_rng_next(&noise_rng);
		/* u1 in (0, 1] keeps the log finite; 32 bits each bound |z| by 6.7. */
		float u1 = (float)(((bits >> 32) + 1) * 0x1.0p-32);
		float u2 = (float)((bits & 0xffffffffu) * 0x1.0p-32);
		float r = std * sqrtf(-2.0f * logf(u1));
		float s, c;
		sincosf(two_pi * u2, &s, &c);
		if (v >= first)
			dst[v - first] = r * c;
		if (v + 1 >= first && v + 1 < first + count)
			dst[v + 1 - first] = r * s;
	}
	/* the stream moves on as far as for the whole call */
	for (; pair < pairs; pair++)
		rt_rng_next(&noise_rng);
}

RtRng rt_noise_state(void)
{
	if (!noise_seeded)
		rt_noise_seed(0);
	return noise_rng;
}

void rt_noise_restore(const RtRng *r)
{
	noise_rng = *r;
	noise_seeded = true;
}
