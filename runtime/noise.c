/* noise.c: the Gaussian noise the weight-mirror kernels ask for. One
 * stream for the whole process, seeded from the train seed, so a run is
 * repeatable.
 *
 * The stream is counter-based: value v of the stream is a pure function of
 * (key, v): Philox4x32-10 (Salmon et al. 2011) turns block v / 4 into four
 * 32-bit words, and Box-Muller turns each pair of words into two normals.
 * So any slice of a noise batch can be made on its own, in any order and on
 * any thread, and gives the same numbers: the mirror kernels fill each
 * part's samples inside their parallel loop (wtn_noise_part), and a rank of
 * a data-parallel run makes just its slice. The state is the key and the
 * index of the next value. Eight blocks are made at once in vector
 * registers (AVX2 where the CPU has it; both paths do the same IEEE
 * operations, without FMA, so they give the same bits), with polynomial
 * log, sin and cos (Cephes' single-precision ones, within a few ulp). */
#include <math.h>
#include <string.h>
#include "wtnrt.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* the state in an RtRng (resumable checkpoints): key, next value, 0, tag */
enum { NOISE_TAG = 0x7068696c6f78ULL };   /* "philox" */
static uint64_t noise_key, noise_next;
static bool noise_seeded;
/* rt_noise_window: the next batch is values [window_first, +count) of a
 * batch of window_total values (0: no window). */
static long window_first, window_total;
/* the batch wtn_noise_begin started: its first value and std */
static uint64_t batch_base;
static float batch_std;

void rt_noise_seed(uint64_t seed)
{
	/* A stream of its own: the init and shuffling streams hash the same seed
	 * differently. */
	noise_key = rt_mix64(seed ^ 0x6e6f6973656e6f69ULL);
	noise_next = 0;
	noise_seeded = true;
}

void rt_noise_window(long first, long total)
{
	window_first = first;
	window_total = total;
}

RtRng rt_noise_state(void)
{
	if (!noise_seeded)
		rt_noise_seed(0);
	RtRng r = { { noise_key, noise_next, 0, NOISE_TAG } };
	return r;
}

void rt_noise_restore(const RtRng *r)
{
	noise_key = r->s[0];
	noise_next = r->s[1];
	noise_seeded = true;
}

/* ---- eight Philox blocks, 32 normals, at a time ---- */
typedef uint32_t u32x8 __attribute__((vector_size(32)));
typedef int32_t i32x8 __attribute__((vector_size(32)));
typedef uint64_t u64x4 __attribute__((vector_size(32)));
typedef float f32x8 __attribute__((vector_size(32)));

static inline __attribute__((always_inline)) f32x8 splat(float v)
{
	return (f32x8){ v, v, v, v, v, v, v, v };
}

/* high and low halves of a * m, per lane: the even and the odd lanes'
 * 64-bit products (pmuludq), put back together */
#if defined(__x86_64__)
static inline __attribute__((always_inline)) u32x8 mul_even_sse2(u32x8 a, uint32_t m)
{
	__m128i lo, hi, mm = _mm_set1_epi32((int)m);
	memcpy(&lo, &a, 16);
	memcpy(&hi, (char *)&a + 16, 16);
	lo = _mm_mul_epu32(lo, mm);
	hi = _mm_mul_epu32(hi, mm);
	u32x8 r;
	memcpy(&r, &lo, 16);
	memcpy((char *)&r + 16, &hi, 16);
	return r;
}
__attribute__((target("avx2")))
static inline u32x8 mul_even_avx2(u32x8 a, uint32_t m)
{
	return (u32x8)_mm256_mul_epu32((__m256i)a, _mm256_set1_epi32((int)m));
}
#define MULHILO_BODY(MUL_EVEN)                                                   \
	{                                                                        \
		const u32x8 odd_mask = { 0, ~0u, 0, ~0u, 0, ~0u, 0, ~0u };      \
		u32x8 even = MUL_EVEN(a, m);                                     \
		u32x8 odd = MUL_EVEN((u32x8)((u64x4)a >> 32), m);               \
		*hi = ((u32x8)((u64x4)even >> 32) & ~odd_mask) | (odd & odd_mask); \
		*lo = (even & ~odd_mask) | ((u32x8)((u64x4)odd << 32) & odd_mask); \
	}
static inline __attribute__((always_inline)) void mulhilo_sse2(u32x8 a, uint32_t m, u32x8 *hi, u32x8 *lo)
	MULHILO_BODY(mul_even_sse2)
__attribute__((target("avx2")))
static inline void mulhilo_avx2(u32x8 a, uint32_t m, u32x8 *hi, u32x8 *lo)
	MULHILO_BODY(mul_even_avx2)
#else
static inline __attribute__((always_inline)) void mulhilo_sse2(u32x8 a, uint32_t m, u32x8 *hi, u32x8 *lo)
{
	for (int j = 0; j < 8; j++) {
		uint64_t p = (uint64_t)a[j] * m;
		(*hi)[j] = (uint32_t)(p >> 32);
		(*lo)[j] = (uint32_t)p;
	}
}
#endif

/* natural log of x in (0, 1] (Cephes logf) */
static inline __attribute__((always_inline)) f32x8 log8(f32x8 x)
{
	i32x8 bits;
	memcpy(&bits, &x, sizeof bits);
	f32x8 e = __builtin_convertvector(((bits >> 23) & 0xff) - 126, f32x8);
	i32x8 mb = (bits & 0x807fffff) | 0x3f000000;   /* mantissa in [0.5, 1) */
	f32x8 m;
	memcpy(&m, &mb, sizeof m);
	i32x8 small = m < 0.707106781186547524f;       /* then m+m-1, e-1 */
	f32x8 one;
	i32x8 ones = small & (i32x8)splat(1.0f);
	memcpy(&one, &ones, sizeof one);
	e -= one;
	i32x8 mk = small & (i32x8)m;
	f32x8 madd;
	memcpy(&madd, &mk, sizeof madd);
	x = m + madd - 1.0f;
	f32x8 z = x * x;
	f32x8 y = 7.0376836292E-2f * x - 1.1514610310E-1f;
	y = y * x + 1.1676998740E-1f;
	y = y * x - 1.2420140846E-1f;
	y = y * x + 1.4249322787E-1f;
	y = y * x - 1.6668057665E-1f;
	y = y * x + 2.0000714765E-1f;
	y = y * x - 2.4999993993E-1f;
	y = y * x + 3.3333331174E-1f;
	y = y * x * z;
	y += -2.12194440E-4f * e;
	y += -0.5f * z;
	return x + y + 0.693359375f * e;
}

/* cos and sin of 2 pi t for t in [0, 1): quadrant q = round(4t), the rest
 * r = t - q/4 in [-1/8, 1/8] exactly, Cephes' polynomials on 2 pi r. */
static inline __attribute__((always_inline)) void cossin8(f32x8 t, f32x8 *c, f32x8 *s)
{
	i32x8 q = __builtin_convertvector(t * 4.0f + 0.5f, i32x8);   /* truncation: round */
	f32x8 x = (t - __builtin_convertvector(q, f32x8) * 0.25f) * 6.28318530717958647692f;
	f32x8 z = x * x;
	f32x8 sn = ((-1.9515295891E-4f * z + 8.3321608736E-3f) * z - 1.6666654611E-1f) * z * x + x;
	f32x8 cs = ((2.443315711809948E-5f * z - 1.388731625493765E-3f) * z
	            + 4.166664568298827E-2f) * z * z - 0.5f * z + 1.0f;
	i32x8 swap = (q & 1) != 0, neg_c = ((q + 1) & 2) != 0, neg_s = (q & 2) != 0;
	i32x8 ci, si, sign = (i32x8)splat(-0.0f);
	i32x8 csb, snb;
	memcpy(&csb, &cs, sizeof csb);
	memcpy(&snb, &sn, sizeof snb);
	ci = (swap & snb) | (~swap & csb);
	si = (swap & csb) | (~swap & snb);
	ci ^= neg_c & sign;
	si ^= neg_s & sign;
	memcpy(c, &ci, sizeof *c);
	memcpy(s, &si, sizeof *s);
}

static inline __attribute__((always_inline)) f32x8 sqrt8(f32x8 v)
{
#if defined(__x86_64__)
	__m128 lo = _mm_sqrt_ps((__m128){ v[0], v[1], v[2], v[3] });
	__m128 hi = _mm_sqrt_ps((__m128){ v[4], v[5], v[6], v[7] });
	return (f32x8){ lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3] };
#else
	for (int k = 0; k < 8; k++)
		v[k] = sqrtf(v[k]);
	return v;
#endif
}
#if defined(__x86_64__)
__attribute__((target("avx2")))
static inline f32x8 sqrt8_avx2(f32x8 v)
{
	return (f32x8)_mm256_sqrt_ps((__m256)v);
}
#endif

/* Two normals per pair of words: r = std sqrt(-2 log u1), u1 in (0, 1]
 * from 31 bits (|z| stays below 6.7 std), the angle from 24 bits. */
typedef f32x8 sqrt8_fn(f32x8 v);
static inline __attribute__((always_inline)) void box_muller8(const u32x8 *a, const u32x8 *b, float std,
                                                              f32x8 *z0, f32x8 *z1, sqrt8_fn *sqrt8)
{
	f32x8 u1 = (__builtin_convertvector((i32x8)(*a >> 1), f32x8) + 0.5f) * 0x1.0p-31f;
	f32x8 u2 = __builtin_convertvector((i32x8)(*b >> 8), f32x8) * 0x1.0p-24f;
	f32x8 r = sqrt8(-2.0f * log8(u1)) * std;
	f32x8 c, s;
	cossin8(u2, &c, &s);
	*z0 = r * c;
	*z1 = r * s;
}

/* out[0..32 groups) = stream values [32 group, +32 groups): group g is
 * Philox blocks 8g + j (lanes j); its value 8k + j is lane j's k-th normal. */
#define MAKE_GROUPS_BODY(MULHILO, SQRT8)                                                \
	{                                                                        \
		const u32x8 iota = { 0, 1, 2, 3, 4, 5, 6, 7 };                  \
		for (long g = 0; g < groups; g++, out += 32) {                  \
			uint64_t block = (group + g) * 8;   /* low word: no carry */ \
			u32x8 c0 = iota + (uint32_t)block, c2 = { 0 }, c3 = { 0 };   \
			u32x8 c1 = c2 + (uint32_t)(block >> 32);                  \
			uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);  \
			for (int round = 0; round < 10; round++) {                \
				u32x8 hi0, lo0, hi1, lo1;                          \
				MULHILO(c0, 0xD2511F53u, &hi0, &lo0);              \
				MULHILO(c2, 0xCD9E8D57u, &hi1, &lo1);              \
				c0 = hi1 ^ c1 ^ k0;                                \
				c1 = lo1;                                          \
				c2 = hi0 ^ c3 ^ k1;                                \
				c3 = lo0;                                          \
				k0 += 0x9E3779B9u;                                 \
				k1 += 0xBB67AE85u;                                 \
			}                                                         \
			f32x8 z[4];                                               \
			box_muller8(&c0, &c1, std, &z[0], &z[1], SQRT8);                   \
			box_muller8(&c2, &c3, std, &z[2], &z[3], SQRT8);                   \
			memcpy(out, z, sizeof z);                                 \
		}                                                                 \
	}

static void make_groups_base(uint64_t key, uint64_t group, long groups, float std, float *out)
	MAKE_GROUPS_BODY(mulhilo_sse2, sqrt8)

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2")))
static void make_groups_avx2(uint64_t key, uint64_t group, long groups, float std, float *out)
	MAKE_GROUPS_BODY(mulhilo_avx2, sqrt8_avx2)
#endif

static void make_groups_any(uint64_t key, uint64_t group, long groups, float std, float *out)
{
#if defined(__x86_64__) && defined(__GNUC__)
	static int avx2 = -1;
	if (avx2 < 0)
		avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
	if (avx2) {
		make_groups_avx2(key, group, groups, std, out);
		return;
	}
#endif
	make_groups_base(key, group, groups, std, out);
}

/* dst[0..count) = stream values [first, first + count) */
static void noise_values(float *dst, uint64_t first, long count, float std)
{
	float tmp[32];
	while (count > 0) {
		uint64_t group = first / 32;
		long skip = (long)(first % 32);
		if (skip == 0 && count >= 32) {   /* whole groups straight into dst */
			long groups = count / 32;
			make_groups_any(noise_key, group, groups, std, dst);
			dst += groups * 32;
			first += (uint64_t)groups * 32;
			count -= groups * 32;
			continue;
		}
		make_groups_any(noise_key, group, 1, std, tmp);
		long take = 32 - skip < count ? 32 - skip : count;
		memcpy(dst, tmp + skip, (size_t)take * sizeof *dst);
		dst += take;
		first += (uint64_t)take;
		count -= take;
	}
}

void wtn_noise_begin(long count, float std)
{
	if (!noise_seeded)
		rt_noise_seed(0);
	long first = window_total ? window_first : 0, total = window_total ? window_total : count;
	window_total = 0;
	batch_base = noise_next + (uint64_t)first;
	batch_std = std;
	noise_next += (uint64_t)total;   /* the stream moves on as far as for the whole batch */
}

void wtn_noise_part(float *dst, long first, long count)
{
	noise_values(dst, batch_base + (uint64_t)first, count, batch_std);
}

static void noise_range(void *ctx, long lo, long hi, int part)
{
	wtn_noise_part((float *)ctx + lo, lo, hi - lo);
}

void wtn_noise(float *dst, long count, float std)
{
	wtn_noise_begin(count, std);
	/* parts of whole groups of 32 values; small batches in one */
	long groups = (count + 31) / 32;
	if (groups < 64) {
		wtn_noise_part(dst, 0, count);
		return;
	}
	wtn_parallel_for(noise_range, dst, count, 64);
}
