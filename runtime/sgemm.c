/* sgemm.c: the matrix product the generated kernels call, on OpenBLAS. */
#include <cblas.h>
#include "wtnrt.h"

void wtn_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
               const float *a, int lda, const float *b, int ldb, float beta,
               float *c, int ldc)
{
	rt_pool_quiet();
	int extra = wtn_profiling ? rt_profile_blas_threads(m, n, k) : 0;
	if (extra)
		rt_profile_busy(extra);
	cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
	            trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb,
	            beta, c, ldc);
	if (extra)
		rt_profile_busy(-extra);
}
