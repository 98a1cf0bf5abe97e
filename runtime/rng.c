/* rng.c: a small, fast, seeded generator (xoshiro256**, seeded through
 * splitmix64) so every run with the same seed draws the same numbers. */
#include <math.h>
#include "wtnrt.h"

uint64_t rt_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

void rt_rng_seed(RtRng *r, uint64_t seed)
{
	/* Consecutive splitmix64 outputs: never all zero. */
	for (int i = 0; i < 4; i++) {
		seed += 0x9e3779b97f4a7c15ULL;
		r->s[i] = rt_mix64(seed);
	}
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t rt_rng_next(RtRng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

double rt_rng_uniform(RtRng *r)
{
	return (rt_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Box-Muller; one value per call keeps the generator's state simple. */
double rt_rng_normal(RtRng *r)
{
	double u1 = 1.0 - rt_rng_uniform(r);   /* (0, 1]: log is finite */
	double u2 = rt_rng_uniform(r);
	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* Lemire-style rejection keeps the draw unbiased. */
uint64_t rt_rng_below(RtRng *r, uint64_t n)
{
	uint64_t limit = -n % n;   /* 2^64 mod n */
	for (;;) {
		uint64_t x = rt_rng_next(r);
		if (x >= limit)
			return x % n;
	}
}
