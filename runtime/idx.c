/* idx.c: reads IDX files (the MNIST format), plain or gzip-compressed, and
 * checks them before any value is used: the header before the body, the
 * body's length, and that nothing follows it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
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

/* A plain or gzip-compressed file read front to back. zlib's gzread would
 * report a corrupt header as an empty file and skip trailing garbage, so
 * the stream goes through inflate here, where both can be told apart. */
typedef struct Reader {
	const char *path;
	int fd;
	long size;             /* of the file on disk */
	bool gz;
	bool done;             /* gz: the last member ended (or the file did) */
	z_stream z;
	unsigned char in[1 << 16];
} Reader;

static int reader_open(Reader *r, const char *path)
{
	struct stat st;
	memset(r, 0, sizeof *r);
	r->path = path;
	r->fd = rt_open_regular(path, &st);
	if (r->fd == -2) {
		fprintf(stderr, "wtn: %s: not a regular file (it is %s)\n", path, rt_file_kind(st.st_mode));
		return -1;
	}
	if (r->fd < 0) {
		fprintf(stderr, "wtn: %s: cannot open: %s\n", path, strerror(errno));
		return -1;
	}
	r->size = st.st_size;
	unsigned char magic[2];
	r->gz = rt_read_at(r->fd, magic, 2, 0) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
	if (r->gz && inflateInit2(&r->z, 15 + 16) != Z_OK) {
		fprintf(stderr, "wtn: %s: out of memory\n", path);
		close(r->fd);
		return -1;
	}
	return 0;
}

static void reader_close(Reader *r)
{
	if (r->gz)
		inflateEnd(&r->z);
	close(r->fd);
}

/* Refills the input; returns the bytes available (0 at the end of the
 * file) or -1 after a message. */
static long fill(Reader *r)
{
	if (r->z.avail_in > 0)
		return r->z.avail_in;
	for (;;) {
		ssize_t k = read(r->fd, r->in, sizeof r->in);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			fprintf(stderr, "wtn: %s: cannot read: %s\n", r->path, strerror(errno));
			return -1;
		}
		r->z.next_in = r->in;
		r->z.avail_in = (uInt)k;
		return k;
	}
}

/* Reads up to n bytes; fewer only at the end of the data. -1 after a
 * message (a read error, corrupt compressed data, garbage after it). */
static long reader_read(Reader *r, void *buf, long n)
{
	if (!r->gz) {
		long got = 0;
		while (got < n) {
			ssize_t k = read(r->fd, (char *)buf + got, n - got > (1L << 30) ? 1L << 30 : n - got);
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0) {
				fprintf(stderr, "wtn: %s: cannot read: %s\n", r->path, strerror(errno));
				return -1;
			}
			if (k == 0)
				break;
			got += k;
		}
		return got;
	}
	long got = 0;
	while (got < n && !r->done) {
		long avail = fill(r);
		if (avail < 0)
			return -1;
		if (avail == 0) {
			r->done = true;          /* cut off inside the stream: a short read */
			break;
		}
		uInt chunk = n - got > (1L << 30) ? 1u << 30 : (uInt)(n - got);
		r->z.next_out = (unsigned char *)buf + got;
		r->z.avail_out = chunk;
		int zr = inflate(&r->z, Z_NO_FLUSH);
		got += chunk - r->z.avail_out;
		if (zr == Z_STREAM_END) {
			/* gzip allows members one after another; anything else after
			 * the stream is not part of the data. */
			avail = fill(r);
			if (avail < 0)
				return -1;
			if (avail == 0) {
				r->done = true;
				break;
			}
			if (r->z.next_in[0] != 0x1f) {
				fprintf(stderr, "wtn: %s: unexpected data after the compressed stream\n", r->path);
				return -1;
			}
			inflateReset(&r->z);
		} else if (zr != Z_OK && zr != Z_BUF_ERROR) {
			fprintf(stderr, "wtn: %s: corrupt compressed data: %s\n", r->path,
			        r->z.msg ? r->z.msg : zr == Z_MEM_ERROR ? "out of memory" : "bad stream");
			return -1;
		}
	}
	return got;
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Opens the file and reads the magic and ndims dimensions. */
static int open_idx(Reader *r, const char *path, uint32_t magic, int ndims, uint32_t *dims)
{
	if (reader_open(r, path) < 0)
		return -1;
	unsigned char head[16];
	long want = 4 + 4L * ndims;
	long got = reader_read(r, head, want);
	if (got >= 0 && got < want)
		idx_fail(path, "truncated: expected a %ld-byte header, found %ld", want, got);
	if (got < want) {
		reader_close(r);
		return -1;
	}
	uint32_t m = be32(head);
	if (m != magic) {
		fprintf(stderr, "wtn: %s: bad magic 0x%08x: not an IDX %s file (expected 0x%08x)\n",
		        path, m, magic == IDX_IMAGES ? "image" : "label", magic);
		reader_close(r);
		return -1;
	}
	for (int i = 0; i < ndims; i++)
		dims[i] = be32(head + 4 + 4 * i);
	return 0;
}

/* Reads n payload bytes and checks that nothing follows them. Memory grows
 * with the data actually there, not with what the header claims. */
static unsigned char *read_payload(Reader *r, long n, const char *what)
{
	long header = 0;
	if (!r->gz && (header = lseek(r->fd, 0, SEEK_CUR)) >= 0 && r->size - header < n) {
		fprintf(stderr, "wtn: %s: truncated: expected %ld bytes of %s, found %ld\n",
		        r->path, n, what, r->size - header);
		return NULL;
	}
	long cap = r->gz && n > (1L << 20) ? 1L << 20 : n, got = 0;
	unsigned char *buf = malloc(cap ? cap : 1);
	while (buf && got < n) {
		if (got == cap) {
			cap = 2 * cap < n ? 2 * cap : n;
			unsigned char *grown = realloc(buf, cap);
			if (!grown)
				break;
			buf = grown;
		}
		long k = reader_read(r, buf + got, cap - got);
		if (k < 0) {
			free(buf);
			return NULL;
		}
		got += k;
		if (got < cap)
			break;               /* the data ended */
	}
	if (!buf || (got < n && got == cap)) {
		fprintf(stderr, "wtn: %s: out of memory\n", r->path);
		free(buf);
		return NULL;
	}
	if (got < n) {
		fprintf(stderr, "wtn: %s: truncated: expected %ld bytes of %s, found %ld\n",
		        r->path, n, what, got);
		free(buf);
		return NULL;
	}
	unsigned char extra;
	long k = reader_read(r, &extra, 1);
	if (k != 0) {
		if (k > 0)
			fprintf(stderr, "wtn: %s: unexpected data after %ld bytes of %s\n", r->path, n, what);
		free(buf);
		return NULL;
	}
	return buf;
}

int rt_idx_load_images(const char *path, RtShape in, float **pixels, long *count)
{
	uint32_t dims[3];
	Reader rd, *f = &rd;
	if (open_idx(f, path, IDX_IMAGES, 3, dims) < 0)
		return -1;
	/* Two 32-bit sides can overflow a long: multiply unsigned, 64-bit. */
	uint64_t values = (uint64_t)dims[1] * dims[2];
	long n = dims[0], units = (long)in.c * in.h * in.w;
	/* A vector input takes the image flattened; an image input is 1xHxW. */
	bool vector = in.h == 1 && in.w == 1;
	if (vector && values != (uint64_t)units) {
		fprintf(stderr, "wtn: %s: images are %ux%u = %llu values, the network's input has %ld units\n",
		        path, dims[1], dims[2], (unsigned long long)values, units);
		reader_close(f);
		return -1;
	}
	if (!vector && (in.c != 1 || (long)in.h != dims[1] || (long)in.w != dims[2])) {
		fprintf(stderr, "wtn: %s: images are 1x%ux%u, the network's input is %dx%dx%d\n",
		        path, dims[1], dims[2], in.c, in.h, in.w);
		reader_close(f);
		return -1;
	}
	long size = (long)values;  /* the input's size now */
	if (n == 0 || n > (1L << 33) / size) {
		fprintf(stderr, "wtn: %s: implausible image count %ld\n", path, n);
		reader_close(f);
		return -1;
	}
	unsigned char *raw = read_payload(f, n * size, "pixels");
	reader_close(f);
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
	Reader rd, *f = &rd;
	if (open_idx(f, path, IDX_LABELS, 1, dims) < 0)
		return -1;
	long n = dims[0];
	if (n == 0 || n > 1000000000L) {
		fprintf(stderr, "wtn: %s: implausible label count %ld\n", path, n);
		reader_close(f);
		return -1;
	}
	unsigned char *raw = read_payload(f, n, "labels");
	reader_close(f);
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
