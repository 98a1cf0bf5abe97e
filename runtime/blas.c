/* blas.c: which kernels OpenBLAS runs and how its idle threads wait.
 * OpenBLAS 0.3.21 does not recognise AMD's AVX-512 CPUs (Zen 4) and falls
 * back to its AVX2 kernels; its idle threads also spin for about 0.1 s after
 * each product, longer than many training steps, taking the core our own
 * threads need. Both settings are read only when OpenBLAS loads, so the
 * binary sets them in its environment and executes itself again, once,
 * before anything else. WTN_OPENBLAS=keep leaves OpenBLAS as it is. */
#include "wtnrt.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *openblas_get_corename(void);

static bool has_avx512(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	       __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}

static bool is_avx512_core(const char *core)
{
	static const char *const cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
	for (size_t i = 0; i < sizeof cores / sizeof cores[0]; i++)
		if (core && strcasestr(core, cores[i]))
			return true;
	return false;
}

void rt_blas_setup(char **argv)
{
	if (getenv("WTN_OPENBLAS"))
		return;
	bool changed = false;
	if (!getenv("OPENBLAS_CORETYPE") && has_avx512() && !is_avx512_core(openblas_get_corename())) {
		setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
		changed = true;
	}
	if (!getenv("OPENBLAS_THREAD_TIMEOUT")) {
		setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);  /* 2^4 * 1024 cycles of spinning */
		changed = true;
	}
	setenv("WTN_OPENBLAS", "set", 1);
	if (changed)
		execv("/proc/self/exe", argv);
	/* a failed exec leaves OpenBLAS's own choice, which still works */
}
