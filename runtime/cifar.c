/* cifar.c: the CIFAR-10 binary format. Each file is a run of 3073-byte
 * records: a label byte (0..9), then the 32x32 red, green and blue planes.
 * The five training files and the test file are checked whole before use,
 * and the pixels turned into NHWC floats in [0, 1]. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "wtnrt.h"

enum { CIFAR_SIDE = 32, CIFAR_PLANE = 32 * 32, CIFAR_PIXELS = 3 * 32 * 32,
       CIFAR_RECORD = 1 + 3 * 32 * 32, CIFAR_CLASSES = 10, CIFAR_TRAIN_FILES = 5 };

/* Reads the whole file after checking that it is a nonempty run of records. */
static unsigned char *cifar_read(const char *path, long *records)
{
	struct stat st;
	int fd = rt_open_regular(path, &st);
	if (fd == -2) {
		fprintf(stderr, "wtn: %s: not a regular file (it is %s)\n", path, rt_file_kind(st.st_mode));
		return NULL;
	}
	if (fd < 0) {
		if (errno == ENOENT)
			fprintf(stderr, "wtn: %s: missing CIFAR-10 file\n", path);
		else
			fprintf(stderr, "wtn: %s: cannot open: %s\n", path, strerror(errno));
		return NULL;
	}
	long size = st.st_size;
	if (size == 0 || size % CIFAR_RECORD != 0) {
		fprintf(stderr, "wtn: %s: %ld bytes is not a whole number of %d-byte CIFAR-10 "
		        "records (truncated or not CIFAR-10 binary)\n", path, size, CIFAR_RECORD);
		close(fd);
		return NULL;
	}
	unsigned char *raw = malloc(size);
	if (!raw || rt_read_at(fd, raw, size, 0) != size) {
		fprintf(stderr, "wtn: %s: %s\n", path, raw ? "cannot read" : "out of memory");
		free(raw);
		close(fd);
		return NULL;
	}
	close(fd);
	*records = size / CIFAR_RECORD;
	return raw;
}

/* Appends the file's records to s, labels checked, pixels NHWC. */
static int cifar_append(const char *path, int nclasses, RtSet *s)
{
	long k;
	unsigned char *raw = cifar_read(path, &k);
	if (!raw)
		return -1;
	int limit = nclasses < CIFAR_CLASSES ? nclasses : CIFAR_CLASSES;
	for (long r = 0; r < k; r++) {
		int label = raw[r * CIFAR_RECORD];
		if (label >= limit) {
			fprintf(stderr, "wtn: %s: label %d of record %ld is not below %d%s\n", path,
			        label, r, limit, limit < CIFAR_CLASSES ? " (the network's classes)"
			                                               : " (CIFAR-10 has 10 classes)");
			free(raw);
			return -1;
		}
	}
	float *x = realloc(s->x, (s->n + k) * CIFAR_PIXELS * sizeof *x);
	int32_t *y = x ? realloc(s->y, (s->n + k) * sizeof *y) : NULL;
	if (x)
		s->x = x;
	if (y)
		s->y = y;
	if (!x || !y) {
		fprintf(stderr, "wtn: %s: out of memory\n", path);
		free(raw);
		return -1;
	}
	for (long r = 0; r < k; r++) {
		const unsigned char *rec = raw + r * CIFAR_RECORD;
		float *dst = s->x + (s->n + r) * CIFAR_PIXELS;
		s->y[s->n + r] = rec[0];
		for (int p = 0; p < CIFAR_PLANE; p++)
			for (int c = 0; c < 3; c++)
				dst[p * 3 + c] = rec[1 + c * CIFAR_PLANE + p] * (1.0f / 255.0f);
	}
	s->n += k;
	s->dim = CIFAR_PIXELS;
	free(raw);
	return 0;
}

int rt_cifar_load(const char *dir, RtShape in, int nclasses, RtData *d)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/data_batch_1.bin", dir);
	if (in.c != 3 || in.h != CIFAR_SIDE || in.w != CIFAR_SIDE) {
		fprintf(stderr, "wtn: %s: CIFAR-10 images are 3x32x32, the network's input is "
		        "%dx%dx%d\n", path, in.c, in.h, in.w);
		return -1;
	}
	/* Name a missing file before reading 150 MB of the others. */
	for (int i = 0; i <= CIFAR_TRAIN_FILES; i++) {
		struct stat st;
		if (i == 0)
			snprintf(path, sizeof path, "%s/test_batch.bin", dir);
		else
			snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, i);
		if (stat(path, &st) != 0) {
			if (errno == ENOENT)
				fprintf(stderr, "wtn: %s: missing CIFAR-10 file\n", path);
			else
				fprintf(stderr, "wtn: %s: cannot open: %s\n", path, strerror(errno));
			return -1;
		}
	}
	snprintf(d->source, sizeof d->source, "%s", dir);
	for (int i = 1; i <= CIFAR_TRAIN_FILES; i++) {
		snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, i);
		if (cifar_append(path, nclasses, &d->train) < 0)
			return -1;
	}
	snprintf(path, sizeof path, "%s/test_batch.bin", dir);
	return cifar_append(path, nclasses, &d->test);
}
