/* resume.c: the training state beyond the parameters, which a resumable
 * checkpoint carries so that a resumed run continues bit for bit: the
 * counters, the position in the epoch, every random stream and the
 * epoch's running totals. The tensors of the state (the model's STATE
 * buffers and the shuffle order) go through checkpoint.c; this file turns
 * the scalars into the `wtn_state` metadata string and back. Integers are
 * JSON numbers (exact below 2^53), doubles hexadecimal floats and random
 * streams 64 hex digits, so nothing is rounded on the way. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "wtnrt.h"

enum { STATE_VERSION = 1 };

static const char *const stream_names[] = {"shuffle", "augment", "dropout", "noise"};
enum { NSTREAMS = sizeof stream_names / sizeof stream_names[0] };

static RtRng *stream(RtRunState *s, int i)
{
	RtRng *all[NSTREAMS] = {&s->shuffle, &s->augment, &s->dropout, &s->noise};
	return all[i];
}

char *rt_state_json(const RtRunState *s)
{
	char rng[NSTREAMS][80];
	for (int i = 0; i < NSTREAMS; i++) {
		const RtRng *r = stream((RtRunState *)s, i);
		snprintf(rng[i], sizeof rng[i], "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64,
		         r->s[0], r->s[1], r->s[2], r->s[3]);
	}
	char *out = NULL;
	if (asprintf(&out, "{\"version\":%d,\"epoch\":%d,\"in_epoch\":%s,\"pos\":%ld,\"step\":%ld,"
	             "\"samples\":%ld,\"rng\":{\"%s\":\"%s\",\"%s\":\"%s\",\"%s\":\"%s\",\"%s\":\"%s\"},"
	             "\"loss_sum\":\"%a\",\"correct\":%ld,\"seen\":%ld,\"start_loss\":\"%a\"}",
	             STATE_VERSION, s->epoch, s->in_epoch ? "true" : "false", s->pos, s->step, s->n,
	             stream_names[0], rng[0], stream_names[1], rng[1], stream_names[2], rng[2],
	             stream_names[3], rng[3], s->loss_sum, s->correct, s->seen, s->start_loss) < 0)
		return NULL;
	return out;
}

static int state_fail(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return -1;
}

/* A whole number in [0, hi]. */
static bool get_count(const RtJson *obj, const char *key, double hi, long *out)
{
	const RtJson *v = rt_json_get(obj, key);
	if (!v || v->type != RT_JSON_NUMBER || v->number < 0 || v->number > hi ||
	    v->number != floor(v->number))
		return false;
	*out = (long)v->number;
	return true;
}

/* A double written as a hexadecimal float (or nan, inf). */
static bool get_double(const RtJson *obj, const char *key, double *out)
{
	const RtJson *v = rt_json_get(obj, key);
	if (!v || v->type != RT_JSON_STRING)
		return false;
	char *end;
	errno = 0;
	*out = strtod(v->string, &end);
	return end != v->string && !*end;
}

static bool get_stream(const RtJson *rng, const char *key, RtRng *r)
{
	const RtJson *v = rng ? rt_json_get(rng, key) : NULL;
	if (!v || v->type != RT_JSON_STRING || strlen(v->string) != 64)
		return false;
	for (int i = 0; i < 4; i++) {
		char word[17];
		memcpy(word, v->string + 16 * i, 16);
		word[16] = '\0';
		char *end;
		r->s[i] = strtoull(word, &end, 16);
		if (*end)
			return false;
	}
	/* xoshiro's one forbidden state: it would draw zeros forever */
	return r->s[0] | r->s[1] | r->s[2] | r->s[3];
}

int rt_state_parse(const char *text, RtRunState *s, char *err, size_t errlen)
{
	RtJson j;
	char why[160];
	if (rt_json_parse(text, strlen(text), &j, why, sizeof why) < 0)
		return state_fail(err, errlen, "wtn_state is not valid JSON: %s", why);
	int rc = -1;
	long version, epoch, step, pos, n, correct, seen;
	const RtJson *in_epoch = rt_json_get(&j, "in_epoch"), *rng = rt_json_get(&j, "rng");
	if (j.type != RT_JSON_OBJECT)
		state_fail(err, errlen, "wtn_state is not a JSON object");
	else if (!get_count(&j, "version", 1e9, &version) || version != STATE_VERSION)
		state_fail(err, errlen, "wtn_state has no version %d (written by another wtn?)",
		           STATE_VERSION);
	else if (!get_count(&j, "epoch", 1e6, &epoch) || !get_count(&j, "step", 1e15, &step) ||
	         !get_count(&j, "samples", 1e12, &n) || !get_count(&j, "pos", (double)n, &pos) ||
	         !get_count(&j, "correct", 1e15, &correct) || !get_count(&j, "seen", 1e15, &seen) ||
	         !in_epoch || in_epoch->type != RT_JSON_BOOL)
		state_fail(err, errlen, "wtn_state lacks a valid epoch, step, samples, pos, correct, "
		           "seen or in_epoch");
	else if (!get_double(&j, "loss_sum", &s->loss_sum) ||
	         !get_double(&j, "start_loss", &s->start_loss))
		state_fail(err, errlen, "wtn_state lacks a valid loss_sum or start_loss");
	else {
		rc = 0;
		for (int i = 0; i < NSTREAMS && rc == 0; i++)
			if (!get_stream(rng, stream_names[i], stream(s, i)))
				rc = state_fail(err, errlen, "wtn_state lacks a valid random stream rng.%s",
				                stream_names[i]);
		s->epoch = (int)epoch;
		s->step = step;
		s->pos = pos;
		s->n = n;
		s->correct = correct;
		s->seen = seen;
		s->in_epoch = in_epoch->number != 0;
	}
	rt_json_free(&j);
	return rc;
}

void rt_state_free(RtRunState *s)
{
	free(s->order);
	s->order = NULL;
}
