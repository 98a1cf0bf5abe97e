/* json.c: a small strict JSON parser, enough for safetensors headers
 * (objects, arrays, strings, numbers, true/false/null). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "wtnrt.h"

typedef struct JsonParser {
	const char *p, *end, *start;
	char *err;
	size_t errlen;
	int depth;
} JsonParser;

enum { JSON_MAX_DEPTH = 32 };

static int json_fail(JsonParser *jp, const char *fmt, ...)
{
	if (jp->err[0])   /* keep the innermost reason */
		return -1;
	int n = snprintf(jp->err, jp->errlen, "at byte %ld: ", (long)(jp->p - jp->start));
	va_list ap;
	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < jp->errlen)
		vsnprintf(jp->err + n, jp->errlen - n, fmt, ap);
	va_end(ap);
	return -1;
}

static void skip_space(JsonParser *jp)
{
	while (jp->p < jp->end && (*jp->p == ' ' || *jp->p == '\t' || *jp->p == '\n' || *jp->p == '\r'))
		jp->p++;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

static int put_utf8(char *out, unsigned cp)
{
	if (cp < 0x80) { out[0] = (char)cp; return 1; }
	if (cp < 0x800) { out[0] = (char)(0xc0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12); out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f)); return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18); out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (char)(0x80 | (cp >> 6 & 0x3f)); out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

static int read_hex4(JsonParser *jp, unsigned *cp)
{
	if (jp->end - jp->p < 4)
		return json_fail(jp, "short \\u escape");
	*cp = 0;
	for (int i = 0; i < 4; i++) {
		int h = hexval(jp->p[i]);
		if (h < 0)
			return json_fail(jp, "bad \\u escape");
		*cp = *cp << 4 | h;
	}
	jp->p += 4;
	return 0;
}

/* At the opening quote; decodes into a malloc'd string. */
static int parse_string(JsonParser *jp, char **out)
{
	jp->p++;
	/* Decoded text is never longer than the source. */
	const char *q = jp->p;
	while (q < jp->end && *q != '"')
		q += (*q == '\\' && q + 1 < jp->end) ? 2 : 1;
	char *s = malloc(q - jp->p + 1), *w = s;
	if (!s)
		return json_fail(jp, "out of memory");
	for (;;) {
		if (jp->p >= jp->end) {
			free(s);
			return json_fail(jp, "unterminated string");
		}
		unsigned char c = (unsigned char)*jp->p++;
		if (c == '"')
			break;
		if (c < 0x20) {
			free(s);
			return json_fail(jp, "control character in string");
		}
		if (c != '\\') {
			*w++ = (char)c;
			continue;
		}
		if (jp->p >= jp->end) {
			free(s);
			return json_fail(jp, "unterminated string");
		}
		char e = *jp->p++;
		unsigned cp, lo;
		switch (e) {
		case '"': *w++ = '"'; break;
		case '\\': *w++ = '\\'; break;
		case '/': *w++ = '/'; break;
		case 'b': *w++ = '\b'; break;
		case 'f': *w++ = '\f'; break;
		case 'n': *w++ = '\n'; break;
		case 'r': *w++ = '\r'; break;
		case 't': *w++ = '\t'; break;
		case 'u':
			if (read_hex4(jp, &cp) < 0) {
				free(s);
				return -1;
			}
			if (cp == 0) {       /* would cut the C string short */
				free(s);
				return json_fail(jp, "\\u0000 in a string");
			}
			if (cp >= 0xd800 && cp < 0xdc00 && jp->end - jp->p >= 6 && jp->p[0] == '\\' &&
			    jp->p[1] == 'u') {
				jp->p += 2;
				if (read_hex4(jp, &lo) < 0) {
					free(s);
					return -1;
				}
				if (lo < 0xdc00 || lo > 0xdfff) {
					free(s);
					return json_fail(jp, "bad surrogate pair");
				}
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			/* Six escape bytes always cover the (at most 4) UTF-8 bytes. */
			w += put_utf8(w, cp);
			break;
		default:
			free(s);
			return json_fail(jp, "bad escape \\%c", e);
		}
	}
	*w = '\0';
	*out = s;
	return 0;
}

static int parse_number(JsonParser *jp, RtJson *out)
{
	const char *s = jp->p;
	const char *q = s;
	if (q < jp->end && *q == '-')
		q++;
	if (q >= jp->end || *q < '0' || *q > '9')
		return json_fail(jp, "bad number");
	if (*q == '0')
		q++;
	else
		while (q < jp->end && *q >= '0' && *q <= '9')
			q++;
	if (q < jp->end && *q == '.') {
		q++;
		if (q >= jp->end || *q < '0' || *q > '9')
			return json_fail(jp, "bad number");
		while (q < jp->end && *q >= '0' && *q <= '9')
			q++;
	}
	if (q < jp->end && (*q == 'e' || *q == 'E')) {
		q++;
		if (q < jp->end && (*q == '+' || *q == '-'))
			q++;
		if (q >= jp->end || *q < '0' || *q > '9')
			return json_fail(jp, "bad number");
		while (q < jp->end && *q >= '0' && *q <= '9')
			q++;
	}
	char buf[64];
	if (q - s >= (long)sizeof buf)
		return json_fail(jp, "number too long");
	memcpy(buf, s, q - s);
	buf[q - s] = '\0';
	out->type = RT_JSON_NUMBER;
	out->number = strtod(buf, NULL);
	jp->p = q;
	return 0;
}

static int parse_value(JsonParser *jp, RtJson *out);

static int push_item(JsonParser *jp, RtJson *parent, int *cap, RtJson *item)
{
	if (parent->nitems == *cap) {
		if (*cap > (1 << 28))
			return json_fail(jp, "too many items");
		RtJson *grown = realloc(parent->items, (*cap ? *cap * 2 : 8) * sizeof *grown);
		if (!grown)
			return json_fail(jp, "out of memory");
		parent->items = grown;
		*cap = *cap ? *cap * 2 : 8;
	}
	parent->items[parent->nitems++] = *item;
	return 0;
}

/* Member names seen in one object: a hash set of indices into its items,
 * so the duplicate check costs O(1) per member, not O(members). */
typedef struct KeySet { int *slots; int cap; } KeySet;

static unsigned long key_hash(const char *s)
{
	unsigned long h = 1469598103934665603UL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211UL;
	return h;
}

/* Adds obj->items[index].key; returns 1 if an earlier member has the same
 * name, -1 when out of memory. */
static int keyset_add(KeySet *ks, const RtJson *obj, int index)
{
	if (2 * (index + 1) > ks->cap) {
		int cap = ks->cap ? 2 * ks->cap : 16;
		int *slots = malloc(cap * sizeof *slots);
		if (!slots)
			return -1;
		for (int i = 0; i < cap; i++)
			slots[i] = -1;
		free(ks->slots);
		ks->slots = slots;
		ks->cap = cap;
		for (int i = 0; i < index; i++) {     /* rehash the earlier members */
			unsigned long h = key_hash(obj->items[i].key) & (cap - 1);
			while (slots[h] >= 0)
				h = (h + 1) & (cap - 1);
			slots[h] = i;
		}
	}
	const char *key = obj->items[index].key;
	unsigned long h = key_hash(key) & (ks->cap - 1);
	for (; ks->slots[h] >= 0; h = (h + 1) & (ks->cap - 1))
		if (strcmp(obj->items[ks->slots[h]].key, key) == 0)
			return 1;
	ks->slots[h] = index;
	return 0;
}

/* Arrays and objects share the loop; objects read "key": before each value. */
static int parse_container_keys(JsonParser *jp, RtJson *out, bool object, KeySet *ks);

static int parse_container(JsonParser *jp, RtJson *out, bool object)
{
	KeySet ks = {0};
	int rc = parse_container_keys(jp, out, object, &ks);
	free(ks.slots);
	return rc;
}

static int parse_container_keys(JsonParser *jp, RtJson *out, bool object, KeySet *ks)
{
	char close = object ? '}' : ']';
	int cap = 0;
	out->type = object ? RT_JSON_OBJECT : RT_JSON_ARRAY;
	if (++jp->depth > JSON_MAX_DEPTH)
		return json_fail(jp, "nested too deeply");
	jp->p++;
	skip_space(jp);
	if (jp->p < jp->end && *jp->p == close) {
		jp->p++;
		jp->depth--;
		return 0;
	}
	for (;;) {
		RtJson item = {0};
		skip_space(jp);
		if (object) {
			if (jp->p >= jp->end || *jp->p != '"')
				return json_fail(jp, "expected a member name");
			if (parse_string(jp, &item.key) < 0)
				return -1;
			skip_space(jp);
			if (jp->p >= jp->end || *jp->p != ':') {
				free(item.key);
				return json_fail(jp, "expected ':'");
			}
			jp->p++;
		}
		if (parse_value(jp, &item) < 0) {
			rt_json_free(&item);
			return -1;
		}
		if (push_item(jp, out, &cap, &item) < 0) {
			rt_json_free(&item);
			return -1;
		}
		if (object) {
			int dup = keyset_add(ks, out, out->nitems - 1);
			if (dup != 0)
				return json_fail(jp, dup > 0 ? "duplicate key \"%s\"" : "out of memory%.0s",
				                 out->items[out->nitems - 1].key);
		}
		skip_space(jp);
		if (jp->p < jp->end && *jp->p == ',') {
			jp->p++;
			continue;
		}
		if (jp->p < jp->end && *jp->p == close) {
			jp->p++;
			jp->depth--;
			return 0;
		}
		return json_fail(jp, "expected ',' or '%c'", close);
	}
}

static int parse_literal(JsonParser *jp, const char *word, int type, double v, RtJson *out)
{
	size_t n = strlen(word);
	if ((size_t)(jp->end - jp->p) < n || memcmp(jp->p, word, n) != 0)
		return json_fail(jp, "unexpected character '%c'", *jp->p);
	jp->p += n;
	out->type = type;
	out->number = v;
	return 0;
}

static int parse_value(JsonParser *jp, RtJson *out)
{
	skip_space(jp);
	if (jp->p >= jp->end)
		return json_fail(jp, "unexpected end of text");
	switch (*jp->p) {
	case '{': return parse_container(jp, out, true);
	case '[': return parse_container(jp, out, false);
	case '"': out->type = RT_JSON_STRING; return parse_string(jp, &out->string);
	case 't': return parse_literal(jp, "true", RT_JSON_BOOL, 1, out);
	case 'f': return parse_literal(jp, "false", RT_JSON_BOOL, 0, out);
	case 'n': return parse_literal(jp, "null", RT_JSON_NULL, 0, out);
	default: return parse_number(jp, out);
	}
}

int rt_json_parse(const char *text, size_t len, RtJson *out, char *err, size_t errlen)
{
	JsonParser jp = {text, text + len, text, err, errlen, 0};
	memset(out, 0, sizeof *out);
	err[0] = '\0';
	if (parse_value(&jp, out) < 0) {
		rt_json_free(out);
		return -1;
	}
	skip_space(&jp);
	if (jp.p != jp.end) {
		json_fail(&jp, "trailing characters after the value");
		rt_json_free(out);
		return -1;
	}
	return 0;
}

void rt_json_free(RtJson *j)
{
	for (int i = 0; i < j->nitems; i++)
		rt_json_free(&j->items[i]);
	free(j->items);
	free(j->string);
	free(j->key);
	memset(j, 0, sizeof *j);
}

const RtJson *rt_json_get(const RtJson *obj, const char *key)
{
	if (obj->type != RT_JSON_OBJECT)
		return NULL;
	for (int i = 0; i < obj->nitems; i++)
		if (strcmp(obj->items[i].key, key) == 0)
			return &obj->items[i];
	return NULL;
}
