/* stcmp.c: compares every tensor of two safetensors checkpoints.
 *
 *   stcmp A B TOL
 *
 * Exit 0 when both hold the same tensors (names, shapes) and each agrees
 * to max |a - b| <= TOL * max |b|; else prints each tensor that does not
 * and exits 1 (2: a file is unreadable). Uses the runtime's JSON parser. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "wtnrt.h"

typedef struct File { char *bytes; long size; RtJson header; long data; } File;

static int load(const char *path, File *f)
{
	FILE *in = fopen(path, "rb");
	if (!in || fseek(in, 0, SEEK_END) || (f->size = ftell(in)) < 8 || fseek(in, 0, SEEK_SET)) {
		fprintf(stderr, "stcmp: %s: cannot read\n", path);
		return -1;
	}
	f->bytes = malloc(f->size);
	if (fread(f->bytes, 1, f->size, in) != (size_t)f->size) {
		fprintf(stderr, "stcmp: %s: short read\n", path);
		return -1;
	}
	fclose(in);
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | (unsigned char)f->bytes[i];
	char err[200];
	if (hlen > (uint64_t)f->size - 8 ||
	    rt_json_parse(f->bytes + 8, hlen, &f->header, err, sizeof err) < 0) {
		fprintf(stderr, "stcmp: %s: bad header\n", path);
		return -1;
	}
	f->data = 8 + (long)hlen;
	return 0;
}

/* The float32 values of tensor `name`, or NULL. */
static const float *tensor(const File *f, const char *name, long *count)
{
	const RtJson *t = rt_json_get(&f->header, name), *off = t ? rt_json_get(t, "data_offsets") : NULL;
	if (!off || off->nitems != 2)
		return NULL;
	long lo = (long)off->items[0].number, hi = (long)off->items[1].number;
	if (lo < 0 || hi < lo || f->data + hi > f->size)
		return NULL;
	*count = (hi - lo) / 4;
	return (const float *)(f->bytes + f->data + lo);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: stcmp A B TOL\n");
		return 2;
	}
	File a, b;
	if (load(argv[1], &a) < 0 || load(argv[2], &b) < 0)
		return 2;
	double tol = atof(argv[3]);
	int bad = 0, compared = 0;
	if (a.header.nitems != b.header.nitems) {
		printf("stcmp: %s has %d entries, %s %d\n", argv[1], a.header.nitems, argv[2],
		       b.header.nitems);
		bad++;
	}
	for (int i = 0; i < a.header.nitems; i++) {
		const char *name = a.header.items[i].key;
		if (!strcmp(name, "__metadata__"))
			continue;
		long na, nb;
		const float *va = tensor(&a, name, &na), *vb = tensor(&b, name, &nb);
		if (!va || !vb || na != nb) {
			printf("stcmp: %s: missing or of another size in %s\n", name, argv[2]);
			bad++;
			continue;
		}
		double diff = 0, scale = 0;
		for (long k = 0; k < na; k++) {
			diff = fmax(diff, fabs((double)va[k] - vb[k]));
			scale = fmax(scale, fabs((double)vb[k]));
		}
		if (!(diff <= tol * scale)) {
			printf("stcmp: %s: max diff %.3g, limit %.3g\n", name, diff, tol * scale);
			bad++;
		}
		compared++;
	}
	if (!compared) {
		printf("stcmp: no tensors compared\n");
		return 1;
	}
	return bad ? 1 : 0;
}
