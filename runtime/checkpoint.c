/* checkpoint.c: parameters as safetensors: an 8-byte little-endian header
 * length, a JSON header naming each tensor's dtype, shape and byte range,
 * then the raw little-endian data. Saving goes through a temporary file and
 * a rename, so a checkpoint on disk is always whole; loading checks every
 * field against the network before copying anything. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "wtnrt.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint.c writes host floats as little-endian data"
#endif

static int ck_fail(const char *path, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "wtn: %s: ", path);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -1;
}

/* Tensors a checkpoint holds: parameters and batchnorm running statistics. */
static bool is_saved(const RtBuf *b)
{
	return b->kind == RT_BUF_PARAM || b->kind == RT_BUF_STAT;
}

/* The shape as PyTorch stores the tensor (the spec gives it). */
static int expected_shape(const RtModel *m, int slot, long *dims)
{
	const RtBuf *b = &m->bufs[slot];
	for (int i = 0; i < b->ndim; i++)
		dims[i] = b->dims[i];
	return b->ndim;
}

static void format_shape(char *out, size_t len, const long *dims, int nd)
{
	size_t n = snprintf(out, len, "[");
	for (int i = 0; i < nd && n < len; i++)
		n += snprintf(out + n, len - n, "%s%ld", i ? ", " : "", dims[i]);
	if (n < len)
		snprintf(out + n, len - n, "]");
}

/* ---- save ---- */
typedef struct Text { char *s; size_t len, cap; } Text;

/* Appends to t; false (t->s freed and NULL) when out of memory. */
static bool text_add(Text *t, const char *fmt, ...)
{
	va_list ap;
	for (;;) {
		if (t->s) {
			va_start(ap, fmt);
			int n = vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
			va_end(ap);
			if (t->len + n < t->cap) {
				t->len += n;
				return true;
			}
			t->cap = (t->cap + n) * 2 + 64;
		} else if (t->cap) {
			return false;          /* an earlier failure */
		} else {
			t->cap = 4096;
		}
		char *grown = realloc(t->s, t->cap);
		if (!grown) {
			free(t->s);
			t->s = NULL;
			return false;
		}
		t->s = grown;
	}
}

static void text_add_json_string(Text *t, const char *s)
{
	text_add(t, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			text_add(t, "\\%c", c);
		else if (c < 0x20)
			text_add(t, "\\u%04x", c);
		else
			text_add(t, "%c", c);
	}
	text_add(t, "\"");
}

static Text build_header(const RtModel *m, int epoch, long step)
{
	Text t = {0};
	long offset = 0, dims[RT_MAX_DIMS];
	text_add(&t, "{");
	for (int i = 0; i < m->nbufs; i++) {
		if (!is_saved(&m->bufs[i]))
			continue;
		int nd = expected_shape(m, i, dims);
		long bytes = m->bufs[i].elems * 4;
		text_add_json_string(&t, m->bufs[i].name);
		text_add(&t, ":{\"dtype\":\"F32\",\"shape\":[%ld", dims[0]);
		for (int k = 1; k < nd; k++)
			text_add(&t, ",%ld", dims[k]);
		text_add(&t, "],\"data_offsets\":[%ld,%ld]},", offset, offset + bytes);
		offset += bytes;
	}
	text_add(&t, "\"__metadata__\":{\"format\":\"pt\",\"producer\":\"wtn\",\"network\":");
	text_add_json_string(&t, m->name);
	text_add(&t, ",\"epoch\":\"%d\",\"step\":\"%ld\"", epoch, step);
	/* The run's whole configuration, as safetensors metadata: a string. */
	if (rt_config_current()) {
		text_add(&t, ",\"wtn_config\":");
		text_add_json_string(&t, rt_config_current());
	}
	text_add(&t, "}}");
	/* Pad with spaces so the data starts 8-byte aligned. */
	while (t.len % 8)
		text_add(&t, " ");
	return t;
}

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = write(fd, c, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += w;
		n -= w;
	}
	return 0;
}

int rt_checkpoint_save(const char *path, const RtModel *m, float **bufs, int epoch, long step)
{
	size_t plen = strlen(path);
	char *tmp = malloc(plen + 16);
	if (!tmp)
		return ck_fail(path, "out of memory");
	snprintf(tmp, plen + 16, "%s.tmpXXXXXX", path);
	int fd = mkstemp(tmp);
	if (fd < 0) {
		ck_fail(path, "cannot create a temporary file next to it: %s", strerror(errno));
		free(tmp);
		return -1;
	}
	Text h = build_header(m, epoch, step);
	if (!h.s) {
		ck_fail(path, "out of memory");
		close(fd);
		unlink(tmp);
		free(tmp);
		return -1;
	}
	rt_tmp_register(tmp);
	unsigned char len8[8];
	for (int i = 0; i < 8; i++)
		len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
	int rc = write_all(fd, len8, 8) | write_all(fd, h.s, h.len);
	for (int i = 0; i < m->nbufs && rc == 0; i++)
		if (is_saved(&m->bufs[i]))
			rc = write_all(fd, bufs[i], m->bufs[i].elems * sizeof(float));
	free(h.s);
	if (rc == 0)
		rc = fsync(fd);
	if (close(fd) != 0)
		rc = -1;
	if (rc == 0)
		rc = rename(tmp, path);
	if (rc != 0) {
		ck_fail(path, "cannot write checkpoint: %s", strerror(errno));
		unlink(tmp);
		rt_tmp_register(NULL);
		free(tmp);
		return -1;
	}
	rt_tmp_register(NULL);
	/* Make the rename itself durable. */
	char *dcopy = strdup(path);
	int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	free(dcopy);
	free(tmp);
	return 0;
}

/* ---- load ---- */
/* safetensors' own limit on the header; a bigger one is not a checkpoint */
enum { MAX_HEADER = 100 << 20 };

/* Names and strings from the file, made safe to print: control bytes as
 * \xNN (a checkpoint cannot write escapes to the terminal), long ones cut. */
static const char *shown(const char *s)
{
	static char buf[4][200];
	static int k;
	char *b = buf[k++ & 3];
	size_t n = 0;
	for (; *s && n < sizeof buf[0] - 8; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f)
			n += snprintf(b + n, 8, "\\x%02x", c);
		else
			b[n++] = (char)c;
	}
	if (*s)
		n += snprintf(b + n, 8, "...");
	b[n] = '\0';
	return b;
}

static int param_slot(const RtModel *m, const char *name)
{
	for (int i = 0; i < m->nbufs; i++)
		if (is_saved(&m->bufs[i]) && strcmp(m->bufs[i].name, name) == 0)
			return i;
	return -1;
}

static bool json_is_count(const RtJson *j)
{
	return j && j->type == RT_JSON_NUMBER && j->number >= 0 && j->number <= 1e15 &&
	       j->number == floor(j->number);
}

typedef struct Range { long a, b; const char *name; } Range;

static int cmp_range(const void *x, const void *y)
{
	const Range *p = x, *q = y;
	return p->a < q->a ? -1 : p->a > q->a;
}

/* Checks one tensor entry and records its byte range. */
static int check_tensor(const char *path, const RtModel *m, const RtJson *t, long datalen,
                        int *slot, Range *r)
{
	const char *name = t->key;
	*slot = param_slot(m, name);
	if (*slot < 0)
		return ck_fail(path, "unknown tensor %s (the network %s has no such parameter or statistic)",
		               shown(name), m->name);
	if (t->type != RT_JSON_OBJECT)
		return ck_fail(path, "%s: entry is not an object", name);
	const RtJson *dtype = rt_json_get(t, "dtype");
	const RtJson *shape = rt_json_get(t, "shape");
	const RtJson *offs = rt_json_get(t, "data_offsets");
	if (!dtype || dtype->type != RT_JSON_STRING)
		return ck_fail(path, "%s has no dtype", name);
	if (strcmp(dtype->string, "F32") != 0)
		return ck_fail(path, "%s has dtype %s, expected F32", name, shown(dtype->string));
	if (!shape || shape->type != RT_JSON_ARRAY || shape->nitems > 8)
		return ck_fail(path, "%s has no valid shape", name);
	long dims[8], want[RT_MAX_DIMS];
	for (int i = 0; i < shape->nitems; i++) {
		if (!json_is_count(&shape->items[i]))
			return ck_fail(path, "%s has no valid shape", name);
		dims[i] = (long)shape->items[i].number;
	}
	int nd = expected_shape(m, *slot, want);
	bool same = shape->nitems == nd;
	for (int i = 0; same && i < nd; i++)
		same = dims[i] == want[i];
	if (!same) {
		char got[128], exp[64];
		format_shape(got, sizeof got, dims, shape->nitems);
		format_shape(exp, sizeof exp, want, nd);
		return ck_fail(path, "%s has shape %s, the network expects %s", name, got, exp);
	}
	if (!offs || offs->type != RT_JSON_ARRAY || offs->nitems != 2 ||
	    !json_is_count(&offs->items[0]) || !json_is_count(&offs->items[1]))
		return ck_fail(path, "%s has no valid data_offsets", name);
	r->a = (long)offs->items[0].number;
	r->b = (long)offs->items[1].number;
	r->name = name;
	if (r->a > r->b || r->b > datalen)
		return ck_fail(path, "%s: data offsets [%ld, %ld] out of range (%ld data bytes)",
		               name, r->a, r->b, datalen);
	if (r->b - r->a != m->bufs[*slot].elems * 4)
		return ck_fail(path, "%s: data offsets [%ld, %ld] hold %ld bytes, expected %ld",
		               name, r->a, r->b, r->b - r->a, m->bufs[*slot].elems * 4);
	return 0;
}

/* PyTorch's state_dict keeps an int64 counter NAME.num_batches_tracked per
 * batchnorm layer; it only matters for momentum=None, which wtn does not
 * have, so such entries are accepted and ignored. */
static bool is_batch_counter(const RtModel *m, const char *key)
{
	static const char suffix[] = ".num_batches_tracked";
	size_t n = strlen(key), ns = sizeof suffix - 1;
	if (n <= ns || strcmp(key + n - ns, suffix) != 0)
		return false;
	for (int i = 0; i < m->nlayers; i++)
		if (m->layers[i].kind == RT_OP_BATCHNORM && strlen(m->layers[i].name) == n - ns &&
		    strncmp(m->layers[i].name, key, n - ns) == 0)
			return true;
	return false;
}

/* Checks every entry against the network, then reads each tensor's bytes
 * from the file (at data_start + its offsets) into its buffer. */
static int load_tensors(const char *path, const RtModel *m, float **bufs, const RtJson *hdr,
                        int fd, long data_start, long datalen)
{
	int n = 0, rc = 0;
	Range *ranges = calloc(hdr->nitems + 1, sizeof *ranges);
	int *slots = calloc(hdr->nitems + 1, sizeof *slots);
	if (!ranges || !slots) {
		free(ranges);
		free(slots);
		return ck_fail(path, "out of memory");
	}
	for (int i = 0; i < hdr->nitems && rc == 0; i++) {
		const RtJson *t = &hdr->items[i];
		if (strcmp(t->key, "__metadata__") == 0 || is_batch_counter(m, t->key))
			continue;
		rc = check_tensor(path, m, t, datalen, &slots[n], &ranges[n]);
		n++;
	}
	for (int i = 0; i < m->nbufs && rc == 0; i++)
		if (is_saved(&m->bufs[i]) && !rt_json_get(hdr, m->bufs[i].name))
			rc = ck_fail(path, "missing tensor %s", m->bufs[i].name);
	/* Copy before sorting: slots[k] pairs with ranges[k]. */
	for (int k = 0; k < n && rc == 0; k++) {
		long bytes = ranges[k].b - ranges[k].a;
		errno = 0;
		if (rt_read_at(fd, bufs[slots[k]], bytes, data_start + ranges[k].a) != bytes) {
			rc = ck_fail(path, "cannot read checkpoint: %s", errno ? strerror(errno) : "short read");
			break;
		}
		const float *v = bufs[slots[k]];
		for (long e = 0; e < m->bufs[slots[k]].elems; e++)
			if (!isfinite(v[e])) {
				rc = ck_fail(path, "%s contains non-finite values", ranges[k].name);
				break;
			}
	}
	if (rc == 0) {
		qsort(ranges, n, sizeof *ranges, cmp_range);
		for (int k = 1; k < n && rc == 0; k++)
			if (ranges[k].a < ranges[k - 1].b)
				rc = ck_fail(path, "data offsets of %s and %s overlap", ranges[k - 1].name,
				             ranges[k].name);
	}
	free(ranges);
	free(slots);
	return rc;
}

int rt_checkpoint_load(const char *path, const RtModel *m, float **bufs)
{
	struct stat st;
	int fd = rt_open_regular(path, &st);
	if (fd == -2)
		return ck_fail(path, "not a regular file (it is %s)", rt_file_kind(st.st_mode));
	if (fd < 0)
		return ck_fail(path, "cannot open checkpoint: %s", strerror(errno));
	long size = st.st_size;
	int rc = -1;
	char *header = NULL;
	unsigned char len8[8];
	if (size < 8) {
		ck_fail(path, "file too short for a safetensors checkpoint (%ld bytes)", size);
		goto out;
	}
	if (rt_read_at(fd, len8, 8, 0) != 8) {
		ck_fail(path, "cannot read checkpoint: %s", strerror(errno));
		goto out;
	}
	uint64_t hlen = 0;
	for (int i = 0; i < 8; i++)
		hlen |= (uint64_t)len8[i] << (8 * i);
	if (hlen > (uint64_t)(size - 8)) {
		ck_fail(path, "header length %llu is larger than the file (%ld bytes)",
		        (unsigned long long)hlen, size);
		goto out;
	}
	if (hlen > MAX_HEADER) {
		ck_fail(path, "header length %llu is over safetensors' limit of %d bytes",
		        (unsigned long long)hlen, MAX_HEADER);
		goto out;
	}
	header = malloc(hlen ? hlen : 1);
	if (!header || rt_read_at(fd, header, (long)hlen, 8) != (long)hlen) {
		ck_fail(path, header ? "cannot read checkpoint" : "out of memory");
		goto out;
	}
	RtJson hdr;
	char err[160];
	if (rt_json_parse(header, hlen, &hdr, err, sizeof err) < 0) {
		ck_fail(path, "header is not valid JSON: %s", shown(err));
		goto out;
	}
	if (hdr.type != RT_JSON_OBJECT)
		ck_fail(path, "header is not a JSON object");
	else
		rc = load_tensors(path, m, bufs, &hdr, fd, 8 + (long)hlen, size - 8 - (long)hlen);
	rt_json_free(&hdr);
out:
	free(header);
	close(fd);
	return rc;
}
