/* sgemm_bound.c: the speed limit OpenBLAS sets on a training step. It
 * times the matrix products one step makes, and nothing else, so a
 * network whose step is mostly products (the MLP) can be measured against
 * it. bench/run.sh reads the products from the kernels wtnc generates
 * (the wtn_sgemm calls of wtn_forward and wtn_backward) and passes them on
 * standard input, one a line, as wtn_sgemm's arguments without pointers:
 *     ta tb m n k alpha lda ldb beta ldc
 * where m, n or k may be "n", the batch.
 * usage: sgemm_bound BATCH THREADS [SECONDS [WINDOW]]
 * Prints one line: the products per step, the median time of a step's
 * products over repeated passes (at least 5, about SECONDS in all,
 * default 2) and the samples/s that time allows; with WINDOW, also the
 * mean pass time of the fastest of the runs of WINDOW consecutive passes
 * (split end to end), to compare with a training run's fastest window of
 * as many steps on a machine whose speed changes from second to second.
 * Each product has its own operands, as in the step, so caches see what
 * they see in training. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct Product {
	int ta, tb, m, n, k, lda, ldb, ldc;
	float alpha, beta;
	float *a, *b, *c;
} Product;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A dimension: a number, or "n" for the batch. */
static int dim(const char *s, int batch)
{
	if (strcmp(s, "n") == 0)
		return batch;
	char *end;
	long v = strtol(s, &end, 10);
	if (*end || v < 1 || v > 1 << 24) {
		fprintf(stderr, "sgemm_bound: bad dimension '%s'\n", s);
		exit(2);
	}
	return (int)v;
}

static float *operand(long rows, long ld)
{
	float *p = malloc(rows * ld * sizeof *p);
	if (!p) {
		fprintf(stderr, "sgemm_bound: out of memory\n");
		exit(1);
	}
	for (long i = 0; i < rows * ld; i++)
		p[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
	return p;
}

static void run(const Product *p, int count)
{
	for (int i = 0; i < count; i++)
		cblas_sgemm(CblasRowMajor, p[i].ta ? CblasTrans : CblasNoTrans,
		            p[i].tb ? CblasTrans : CblasNoTrans, p[i].m, p[i].n, p[i].k, p[i].alpha,
		            p[i].a, p[i].lda, p[i].b, p[i].ldb, p[i].beta, p[i].c, p[i].ldc);
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: sgemm_bound BATCH THREADS [SECONDS [WINDOW]] < products\n");
		return 2;
	}
	int batch = atoi(argv[1]), threads = atoi(argv[2]);
	double seconds = argc > 3 ? atof(argv[3]) : 2.0;
	int window = argc > 4 ? atoi(argv[4]) : 0;
	if (batch < 1 || threads < 1 || seconds <= 0 || window < 0) {
		fprintf(stderr, "sgemm_bound: bad arguments\n");
		return 2;
	}
	openblas_set_num_threads(threads);
	Product p[256];
	int count = 0;
	double madds = 0;
	char ta[16], tb[16], m[16], n[16], k[16], alpha[32], lda[16], ldb[16], beta[32], ldc[16];
	while (scanf("%15s %15s %15s %15s %15s %31s %15s %15s %31s %15s", ta, tb, m, n, k, alpha,
	             lda, ldb, beta, ldc) == 10) {
		if (count == 256) {
			fprintf(stderr, "sgemm_bound: more than 256 products\n");
			return 2;
		}
		Product *q = &p[count++];
		q->ta = atoi(ta);
		q->tb = atoi(tb);
		q->m = dim(m, batch);
		q->n = dim(n, batch);
		q->k = dim(k, batch);
		q->lda = dim(lda, batch);
		q->ldb = dim(ldb, batch);
		q->ldc = dim(ldc, batch);
		q->alpha = strtof(alpha, NULL);
		q->beta = strtof(beta, NULL);
		q->a = operand(q->ta ? q->k : q->m, q->lda);   /* row-major op(A) is m x k */
		q->b = operand(q->tb ? q->n : q->k, q->ldb);
		q->c = operand(q->m, q->ldc);
		madds += (double)q->m * q->n * q->k;
	}
	if (count == 0) {
		fprintf(stderr, "sgemm_bound: no products on standard input\n");
		return 2;
	}
	run(p, count);   /* warm up: OpenBLAS's buffers and threads, page faults */
	enum { MAX_PASSES = 100000 };
	static double pass[MAX_PASSES];
	int passes = 0;
	double start = now();
	while (passes < MAX_PASSES && (passes < 5 || passes < window || now() - start < seconds)) {
		double t0 = now();
		run(p, count);
		pass[passes++] = now() - t0;
	}
	double fastest_window = 0;
	for (int w = 0; window && (w + 1) * window <= passes; w++) {
		double sum = 0;
		for (int i = w * window; i < (w + 1) * window; i++)
			sum += pass[i];
		if (w == 0 || sum / window < fastest_window)
			fastest_window = sum / window;
	}
	qsort(pass, passes, sizeof *pass, by_value);
	double median = pass[passes / 2];
	printf("sgemm_bound threads=%d products=%d madds=%.0f passes=%d ms=%.3f "
	       "gflops=%.1f kernel=%s", threads, count, madds, passes, 1e3 * median,
	       2 * madds / median / 1e9, openblas_get_corename());
	if (fastest_window > 0)
		printf(" window=%d window_ms=%.3f window_samples/s=%.0f", window, 1e3 * fastest_window,
		       batch / fastest_window);
	printf(" samples/s=%.0f\n", batch / median);
	return 0;
}
