/* idx.c: reads IDX files (the MNIST format), plain or gzip-compressed (zlib
 * reads both), and checks them before any value is used. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "wtnrt.h"

enum { IDX_LABELS = 0x00000801, IDX_IMAGES = 0x00000803 };

static int idx_fail(const char *path, const char *fmt, long a, long b)
{
	fprintf(stderr, "wtn: %s: ", path);
	fprintf(stderr, fmt, a, b);
	fputc('\n', stderr);
	return -1;
}

/* Reads exactly n bytes or reports how many were there. */
static long read_full(gzFile f, void *buf, long n)
{
	long got = 0;
	while (got < n) {
		unsigned chunk = n - got > (1L << 30) ? 1u << 30 : (unsigned)(n - got);
		int r = gzread(f, (char *)buf + got, chunk);
		if (r <= 0)
			break;
		got += r;
	}
	return got;
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Opens the file and reads the magic and ndims dimensions. */
static gzFile open_idx(const char *path, uint32_t magic, int ndims, uint32_t *dims)
{
	gzFile f = gzopen(path, "rb");
	if (!f) {
		fprintf(stderr, "wtn: %s: cannot open: %s\n", path, strerror(errno));
		return NULL;
	}
	unsigned char head[16];
	long want = 4 + 4L * ndims;
	long got = read_full(f, head, want);
	if (got < want) {
		idx_fail(path, "truncated: expected a %ld-byte header, found %ld", want, got);
		gzclose(f);
		return NULL;
	}
	uint32_t m = be32(head);
	if (m != magic) {
		fprintf(stderr, "wtn: %s: bad magic 0x%08x: not an IDX %s file (expected 0x%08x)\n",
		        path, m, magic == IDX_IMAGES ? "image" : "label", magic);
		gzclose(f);
		return NULL;
	}
	for (int i = 0; i < ndims; i++)
		dims[i] = be32(head + 4 + 4 * i);
	return f;
}

/* Reads n payload bytes and checks that nothing follows them. */
static unsigned char *read_payload(gzFile f, const char *path, long n, const char *what)
{
	unsigned char *buf = malloc(n ? n : 1);
	if (!buf) {
		fprintf(stderr, "wtn: %s: out of memory\n", path);
		return NULL;
	}
	long got = read_full(f, buf, n);
	int err;
	const char *zmsg = gzerror(f, &err);
	if (got < n && err != Z_OK && err != Z_BUF_ERROR) {
		fprintf(stderr, "wtn: %s: corrupt compressed data: %s\n", path, zmsg);
		free(buf);
		return NULL;
	}
	if (got < n) {
		fprintf(stderr, "wtn: %s: truncated: expected %ld bytes of %s, found %ld\n",
		        path, n, what, got);
		free(buf);
		return NULL;
	}
	unsigned char extra;
	if (gzread(f, &extra, 1) > 0) {
		fprintf(stderr, "wtn: %s: unexpected data after %ld bytes of %s\n", path, n, what);
		free(buf);
		return NULL;
	}
	return buf;
}

int rt_idx_load_images(const char *path, RtShape in, float **pixels, long *count)
{
	uint32_t dims[3];
	gzFile f = open_idx(path, IDX_IMAGES, 3, dims);
	if (!f)
		return -1;
	long n = dims[0], size = (long)dims[1] * dims[2], units = (long)in.c * in.h * in.w;
	/* A vector input takes the image flattened; an image input is 1xHxW. */
	bool vector = in.h == 1 && in.w == 1;
	if (vector && size != units) {
		fprintf(stderr, "wtn: %s: images are %ux%u = %ld values, the network's input has %ld units\n",
		        path, dims[1], dims[2], size, units);
		gzclose(f);
		return -1;
	}
	if (!vector && (in.c != 1 || (long)in.h != dims[1] || (long)in.w != dims[2])) {
		fprintf(stderr, "wtn: %s: images are 1x%ux%u, the network's input is %dx%dx%d\n",
		        path, dims[1], dims[2], in.c, in.h, in.w);
		gzclose(f);
		return -1;
	}
	if (n == 0 || n > (1L << 33) / size) {
		fprintf(stderr, "wtn: %s: implausible image count %ld\n", path, n);
		gzclose(f);
		return -1;
	}
	unsigned char *raw = read_payload(f, path, n * size, "pixels");
	gzclose(f);
	if (!raw)
		return -1;
	float *x = malloc(n * size * sizeof *x);
	if (!x) {
		fprintf(stderr, "wtn: %s: out of memory\n", path);
		free(raw);
		return -1;
	}
	for (long i = 0; i < n * size; i++)
		x[i] = raw[i] * (1.0f / 255.0f);
	free(raw);
	*pixels = x;
	*count = n;
	return 0;
}

int rt_idx_load_labels(const char *path, int nclasses, int32_t **labels, long *count)
{
	uint32_t dims[1];
	gzFile f = open_idx(path, IDX_LABELS, 1, dims);
	if (!f)
		return -1;
	long n = dims[0];
	if (n == 0 || n > 1000000000L) {
		fprintf(stderr, "wtn: %s: implausible label count %ld\n", path, n);
		gzclose(f);
		return -1;
	}
	unsigned char *raw = read_payload(f, path, n, "labels");
	gzclose(f);
	if (!raw)
		return -1;
	int32_t *y = malloc(n * sizeof *y);
	if (!y) {
		fprintf(stderr, "wtn: %s: out of memory\n", path);
		free(raw);
		return -1;
	}
	for (long i = 0; i < n; i++) {
		if (raw[i] >= nclasses) {
			fprintf(stderr, "wtn: %s: label %d of sample %ld is not below the network's %d classes\n",
			        path, raw[i], i, nclasses);
			free(raw);
			free(y);
			return -1;
		}
		y[i] = raw[i];
	}
	free(raw);
	*labels = y;
	*count = n;
	return 0;
}
