/* checkpoint.c: parameters as safetensors: an 8-byte little-endian header
 * length, a JSON header naming each tensor's dtype, shape and byte range,
 * then the raw little-endian data. Saving goes through a temporary file and
 * a rename, so a checkpoint on disk is always whole; loading checks every
 * field against the network before copying anything. A resumable
 * checkpoint adds the training state after the parameters: the model's
 * STATE buffers and the shuffle order as tensors named wtn_state.*, the
 * scalars (resume.c) as the metadata entry wtn_state. */
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

/* What a resumable checkpoint adds: the buffers the model marks as state
 * (optimiser moments of W, b and kp's B; frsf's magnitudes). */
static bool is_state(const RtBuf *b)
{
	return b->kind == RT_BUF_STATE;
}

static const char state_prefix[] = "wtn_state.";
#define ORDER_NAME "wtn_state.shuffle_order"

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

/* s's characters, escaped for a JSON string */
static void text_add_escaped(Text *t, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			text_add(t, "\\%c", c);
		else if (c < 0x20)
			text_add(t, "\\u%04x", c);
		else
			text_add(t, "%c", c);
	}
}

static void text_add_json_string(Text *t, const char *s)
{
	text_add(t, "\"");
	text_add_escaped(t, s);
	text_add(t, "\"");
}

static void add_entry(Text *t, const char *prefix, const char *name, const char *dtype,
                      const long *dims, int nd, long *offset, long bytes)
{
	text_add(t, "\"%s", prefix);
	text_add_escaped(t, name);
	text_add(t, "\":{\"dtype\":\"%s\",\"shape\":[%ld", dtype, dims[0]);
	for (int k = 1; k < nd; k++)
		text_add(t, ",%ld", dims[k]);
	text_add(t, "],\"data_offsets\":[%ld,%ld]},", *offset, *offset + bytes);
	*offset += bytes;
}

static Text build_header(const RtModel *m, int epoch, long step, const RtRunState *state)
{
	Text t = {0};
	long offset = 0, dims[RT_MAX_DIMS];
	text_add(&t, "{");
	for (int i = 0; i < m->nbufs; i++)
		if (is_saved(&m->bufs[i])) {
			int nd = expected_shape(m, i, dims);
			add_entry(&t, "", m->bufs[i].name, "F32", dims, nd, &offset, m->bufs[i].elems * 4);
		}
	char *state_text = NULL;
	if (state) {
		for (int i = 0; i < m->nbufs; i++)
			if (is_state(&m->bufs[i])) {
				int nd = expected_shape(m, i, dims);
				add_entry(&t, state_prefix, m->bufs[i].name, "F32", dims, nd, &offset,
				          m->bufs[i].elems * 4);
			}
		add_entry(&t, "", ORDER_NAME, "I32", &state->n, 1, &offset, state->n * 4);
		if (!(state_text = rt_state_json(state))) {
			free(t.s);
			return (Text){0};
		}
	}
	text_add(&t, "\"__metadata__\":{\"format\":\"pt\",\"producer\":\"wtn\",\"network\":");
	text_add_json_string(&t, m->name);
	text_add(&t, ",\"epoch\":\"%d\",\"step\":\"%ld\"", epoch, step);
	/* The run's whole configuration, as safetensors metadata: a string. */
	if (rt_config_current()) {
		text_add(&t, ",\"wtn_config\":");
		text_add_json_string(&t, rt_config_current());
	}
	if (state_text) {
		text_add(&t, ",\"wtn_state\":");
		text_add_json_string(&t, state_text);
		free(state_text);
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

/* The shuffle order as little-endian int32, a chunk at a time. */
static int write_order(int fd, const RtRunState *state)
{
	int32_t chunk[1024];
	for (long i = 0; i < state->n; i += 1024) {
		long k = state->n - i < 1024 ? state->n - i : 1024;
		for (long j = 0; j < k; j++)
			chunk[j] = (int32_t)state->order[i + j];
		if (write_all(fd, chunk, k * sizeof *chunk) < 0)
			return -1;
	}
	return 0;
}

int rt_checkpoint_save(const char *path, const RtModel *m, float **bufs, int epoch, long step,
                       const RtRunState *state)
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
	Text h = build_header(m, epoch, step, state);
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
	for (int i = 0; state && i < m->nbufs && rc == 0; i++)
		if (is_state(&m->bufs[i]))
			rc = write_all(fd, bufs[i], m->bufs[i].elems * sizeof(float));
	if (state && rc == 0)
		rc = write_order(fd, state);
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

/* The slot of a saved buffer (is_saved, or is_state for wtn_state.NAME)
 * called name; -1 when there is none. */
static int slot_named(const RtModel *m, const char *name, bool (*kind)(const RtBuf *))
{
	for (int i = 0; i < m->nbufs; i++)
		if (kind(&m->bufs[i]) && strcmp(m->bufs[i].name, name) == 0)
			return i;
	return -1;
}

static bool json_is_count(const RtJson *j)
{
	return j && j->type == RT_JSON_NUMBER && j->number >= 0 && j->number <= 1e15 &&
	       j->number == floor(j->number);
}

/* One tensor to read: its byte range in the data, where it goes. slot -1:
 * the shuffle order. */
typedef struct Range { long a, b; const char *name; int slot; } Range;

static int cmp_range(const void *x, const void *y)
{
	const Range *p = x, *q = y;
	return p->a < q->a ? -1 : p->a > q->a;
}

/* Checks one tensor entry against what is expected of it (dtype, shape
 * want[nd]) and records its byte range. */
static int check_tensor(const char *path, const RtJson *t, const char *want_dtype,
                        const long *want, int nd, long datalen, Range *r)
{
	const char *name = t->key;
	if (t->type != RT_JSON_OBJECT)
		return ck_fail(path, "%s: entry is not an object", name);
	const RtJson *dtype = rt_json_get(t, "dtype");
	const RtJson *shape = rt_json_get(t, "shape");
	const RtJson *offs = rt_json_get(t, "data_offsets");
	if (!dtype || dtype->type != RT_JSON_STRING)
		return ck_fail(path, "%s has no dtype", name);
	if (strcmp(dtype->string, want_dtype) != 0)
		return ck_fail(path, "%s has dtype %s, expected %s", name, shown(dtype->string), want_dtype);
	if (!shape || shape->type != RT_JSON_ARRAY || shape->nitems > 8)
		return ck_fail(path, "%s has no valid shape", name);
	long dims[8], elems = 1;
	for (int i = 0; i < shape->nitems; i++) {
		if (!json_is_count(&shape->items[i]))
			return ck_fail(path, "%s has no valid shape", name);
		dims[i] = (long)shape->items[i].number;
	}
	bool same = shape->nitems == nd;
	for (int i = 0; same && i < nd; i++) {
		same = dims[i] == want[i];
		elems *= want[i];
	}
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
	if (r->b - r->a != elems * 4)
		return ck_fail(path, "%s: data offsets [%ld, %ld] hold %ld bytes, expected %ld",
		               name, r->a, r->b, r->b - r->a, elems * 4);
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

/* The layer whose feedback tensor (B or D) is in slot, or NULL. */
static const RtLayer *feedback_owner(const RtModel *m, int slot)
{
	for (int i = 0; i < m->nlayers; i++)
		if (m->layers[i].B == slot || m->layers[i].D == slot)
			return &m->layers[i];
	return NULL;
}

/* The training state's scalars from the metadata; state->n must then
 * match the shuffle order's length. */
static int load_state_meta(const char *path, const RtJson *hdr, RtRunState *state)
{
	const RtJson *meta = rt_json_get(hdr, "__metadata__");
	const RtJson *text = meta ? rt_json_get(meta, "wtn_state") : NULL;
	if (!text)
		return ck_fail(path, "not a resumable checkpoint: it holds no training state (a run "
		               "writes it with --save-state or --save-every)");
	char err[200];
	if (text->type != RT_JSON_STRING || rt_state_parse(text->string, state, err, sizeof err) < 0)
		return ck_fail(path, "%s", text->type != RT_JSON_STRING ? "wtn_state is not a string"
		               : shown(err));
	return 0;
}

/* Where the tensors of the checkpoint go: every entry checked, every
 * expected tensor present (or drawn, with draw_missing). found[slot]. */
static int plan_tensors(const char *path, const RtModel *m, const RtJson *hdr, long datalen,
                        bool draw_missing, RtRunState *state, Range *ranges, int *count,
                        bool *found)
{
	int n = 0;
	bool have_order = false;
	for (int i = 0; i < hdr->nitems; i++) {
		const RtJson *t = &hdr->items[i];
		if (strcmp(t->key, "__metadata__") == 0 || is_batch_counter(m, t->key))
			continue;
		bool of_state = strncmp(t->key, state_prefix, sizeof state_prefix - 1) == 0;
		if (of_state && !state)
			continue;   /* --init and eval take the parameters alone */
		long dims[RT_MAX_DIMS];
		int slot, nd, rc;
		if (of_state && strcmp(t->key, ORDER_NAME) == 0) {
			slot = -1;
			have_order = true;
			rc = check_tensor(path, t, "I32", &state->n, 1, datalen, &ranges[n]);
		} else {
			slot = of_state ? slot_named(m, t->key + sizeof state_prefix - 1, is_state)
			                : slot_named(m, t->key, is_saved);
			if (slot < 0 && of_state)
				return ck_fail(path, "unknown state tensor %s (the network %s has no such "
				               "optimiser state or magnitudes)", shown(t->key), m->name);
			if (slot < 0)
				return ck_fail(path, "unknown tensor %s (the network %s has no such parameter "
				               "or statistic)", shown(t->key), m->name);
			nd = expected_shape(m, slot, dims);
			rc = check_tensor(path, t, "F32", dims, nd, datalen, &ranges[n]);
			found[slot] = true;
		}
		if (rc < 0)
			return -1;
		ranges[n++].slot = slot;
	}
	*count = n;
	for (int i = 0; i < m->nbufs; i++) {
		const RtBuf *b = &m->bufs[i];
		if (found[i] || !(is_saved(b) || (state && is_state(b))))
			continue;
		const RtLayer *owner = feedback_owner(m, i);
		if (owner && draw_missing)
			continue;
		if (is_state(b))
			return ck_fail(path, "missing state tensor %s%s", state_prefix, b->name);
		return ck_fail(path, "missing tensor %s%s", b->name, owner ? " (--init-draw-missing "
		               "draws the feedback matrices a file lacks)" : "");
	}
	if (state && !have_order)
		return ck_fail(path, "missing state tensor %s", ORDER_NAME);
	return 0;
}

/* The shuffle order must be a permutation: it indexes the training set. */
static int check_order(const char *path, RtRunState *state)
{
	char *seen = calloc(state->n ? state->n : 1, 1);
	if (!seen)
		return ck_fail(path, "out of memory");
	int rc = 0;
	for (long i = 0; i < state->n && rc == 0; i++) {
		long k = state->order[i];
		if (k < 0 || k >= state->n || seen[k])
			rc = ck_fail(path, "%s is not a permutation of 0..%ld", ORDER_NAME, state->n - 1);
		else
			seen[k] = 1;
	}
	free(seen);
	return rc;
}

/* Reads one tensor's bytes into place: a buffer (finite values only) or
 * the shuffle order. */
static int read_tensor(const char *path, const RtModel *m, float **bufs, RtRunState *state,
                       int fd, long data_start, const Range *r)
{
	long bytes = r->b - r->a;
	void *dst = r->slot >= 0 ? (void *)bufs[r->slot] : (void *)state->order;
	errno = 0;
	if (rt_read_at(fd, dst, bytes, data_start + r->a) != bytes)
		return ck_fail(path, "cannot read checkpoint: %s", errno ? strerror(errno) : "short read");
	if (r->slot < 0) {
		/* widen int32 to long in place, from the end */
		const int32_t *v = (const int32_t *)state->order;
		for (long e = state->n - 1; e >= 0; e--)
			state->order[e] = v[e];
		return check_order(path, state);
	}
	const float *v = bufs[r->slot];
	for (long e = 0; e < m->bufs[r->slot].elems; e++)
		if (!isfinite(v[e]))
			return ck_fail(path, "%s contains non-finite values", r->name);
	return 0;
}

/* Checks every entry against the network, then reads each tensor's bytes
 * from the file (at data_start + its offsets) into its buffer. */
static int load_tensors(const char *path, const RtModel *m, float **bufs, const RtJson *hdr,
                        int fd, long data_start, long datalen, bool draw_missing,
                        RtRunState *state)
{
	int n = 0, rc = 0;
	Range *ranges = calloc(hdr->nitems + 1, sizeof *ranges);
	bool *found = calloc(m->nbufs + 1, sizeof *found);
	if (!ranges || !found) {
		free(ranges);
		free(found);
		return ck_fail(path, "out of memory");
	}
	if (state && (rc = load_state_meta(path, hdr, state)) == 0) {
		if (state->n * 4 > datalen)   /* before allocating for it */
			rc = ck_fail(path, "wtn_state names %ld samples, more than the file holds",
			             state->n);
		else if (!(state->order = malloc((state->n ? state->n : 1) * sizeof *state->order)))
			rc = ck_fail(path, "out of memory");
	}
	if (rc == 0)
		rc = plan_tensors(path, m, hdr, datalen, draw_missing, state, ranges, &n, found);
	qsort(ranges, n, sizeof *ranges, cmp_range);
	for (int k = 1; k < n && rc == 0; k++)
		if (ranges[k].a < ranges[k - 1].b)
			rc = ck_fail(path, "data offsets of %s and %s overlap", ranges[k - 1].name,
			             ranges[k].name);
	for (int k = 0; k < n && rc == 0; k++)
		rc = read_tensor(path, m, bufs, state, fd, data_start, &ranges[k]);
	/* Feedback the file lacks: as drawn from the seed, signs from the loaded W. */
	char names[400] = "";
	size_t len = 0;
	for (int i = 0; i < m->nbufs && rc == 0 && draw_missing; i++) {
		const RtLayer *owner = feedback_owner(m, i);
		if (found[i] || !owner)
			continue;
		rt_init_redraw_signs(m, bufs, i);
		if (len < sizeof names - 100)
			len += snprintf(names + len, sizeof names - len, "%s%s (%s)", len ? ", " : "",
			                m->bufs[i].name, owner->rule);
		else if (!strstr(names, "..."))
			len += snprintf(names + len, sizeof names - len, ", ...");
	}
	if (len)
		fprintf(stderr, "wtn: %s: no %s: drawn from the seed as the rule's init says "
		        "(--init-draw-missing)\n", path, names);
	if (rc < 0 && state)
		rt_state_free(state);
	free(ranges);
	free(found);
	return rc;
}

int rt_checkpoint_load(const char *path, const RtModel *m, float **bufs, bool draw_missing,
                       RtRunState *state)
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
		rc = load_tensors(path, m, bufs, &hdr, fd, 8 + (long)hlen, size - 8 - (long)hlen,
		                  draw_missing, state);
	rt_json_free(&hdr);
out:
	free(header);
	close(fd);
	return rc;
}
