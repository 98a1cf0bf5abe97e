/* report.c: what a run records about itself. The configuration of a run
 * (network and its content hash, rule and arguments per layer, every train
 * setting in force, run-time settings, seed, threads, data, wtn version,
 * CPU and BLAS kernel) as one JSON object: the first record of a metrics
 * file and the wtn_config entry of a checkpoint's __metadata__. eval
 * compares a checkpoint's recorded configuration with its own. */
#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "wtnrt.h"
#include "wtn_version.h"

/* The network as compiled, before run-time settings: its hash and train
 * record, so a run can name what it changed. */
static uint64_t compiled_hash;
static RtTrain compiled_train;
static char *current_config;    /* of the running command, for checkpoints */

typedef struct Buf { char *s; size_t len, cap; } Buf;

static void put(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(Buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *s = realloc(b->s, cap);
		if (!s)
			return;
		b->s = s;
		b->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += n;
}

static void put_string(Buf *b, const char *s)
{
	put(b, "\"");
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			put(b, "\\%c", c);
		else if (c < 0x20)
			put(b, "\\u%04x", c);
		else
			put(b, "%c", c);
	}
	put(b, "\"");
}

static void put_number(Buf *b, double v)
{
	if (isfinite(v))
		put(b, "%.9g", v);
	else
		put(b, "null");
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * 0x100000001b3ULL;
	return h;
}

/* A canonical text of what the kernels were compiled from: layers, their
 * shapes and rules, the loss and the compiled train record. */
static uint64_t model_hash(const RtModel *m)
{
	Buf b = {0};
	put(&b, "%s|%s|%d|%dx%dx%d|loss %d\n", m->name, m->input_name, m->in_units, m->in_shape.c,
	    m->in_shape.h, m->in_shape.w, m->loss);
	for (int i = 0; i < m->nlayers; i++) {
		const RtLayer *l = &m->layers[i];
		put(&b, "%s %d %d %d %d %d %d %d %d %d %d %d %d %d %.9g %.9g %.9g %s", l->name, l->kind,
		    l->input, l->input2, l->in, l->out, l->kh, l->kw, l->stride, l->pad, l->act, l->bias,
		    l->init, l->B, l->init_arg, l->eps, l->momentum, l->rule);
		for (int k = 0; k < l->nargs; k++)
			put(&b, " %s=%.9g", l->arg_name[k], l->arg[k]);
		put(&b, "\n");
	}
	const RtTrain *t = &m->train;
	put(&b, "train %s %d %d %ld %d %.9g %.9g %.9g %.9g %.9g %.9g %d %d %d %.9g %.9g %d %d %d",
	    t->data, t->batch, t->epochs, t->seed, t->optimizer, t->lr, t->momentum,
	    t->weight_decay, t->beta1, t->beta2, t->eps, t->nesterov, t->schedule, t->step_every,
	    t->gamma, t->min_lr, t->crop_pad, t->flip, t->nnorm);
	for (int i = 0; i < t->nnorm; i++)
		put(&b, " %.9g/%.9g", t->norm_mean[i], t->norm_std[i]);
	uint64_t h = fnv1a(0xcbf29ce484222325ULL, b.s ? b.s : "", b.len);
	free(b.s);
	return h;
}

void rt_config_note_compiled(const RtModel *m)
{
	compiled_hash = model_hash(m);
	compiled_train = m->train;
}

static const char *const opt_names[] = {"sgd", "adam"};
static const char *const sched_names[] = {"none", "step", "cosine"};

double rt_rule_arg_in_force(const RtModel *m, const RtLayer *l, int k)
{
	/* kp's decay -1: W and B decay with the optimiser's weight decay. */
	if (strcmp(l->rule, "kp") == 0 && strcmp(l->arg_name[k], "decay") == 0 && l->arg[k] < 0)
		return m->train.weight_decay;
	/* usf's scale 0: the fan-in default */
	if (strcmp(l->rule, "usf") == 0 && strcmp(l->arg_name[k], "scale") == 0)
		return rt_usf_scale(l);
	return l->arg[k];
}

static void cpu_name(char *out, size_t len)
{
	snprintf(out, len, "unknown");
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (!f)
		return;
	char line[512];
	while (fgets(line, sizeof line, f))
		if (strncmp(line, "model name", 10) == 0) {
			char *colon = strchr(line, ':');
			if (colon) {
				colon += colon[1] == ' ' ? 2 : 1;
				colon[strcspn(colon, "\n")] = '\0';
				snprintf(out, len, "%s", colon);
			}
			break;
		}
	fclose(f);
}

char *rt_config_json(const RtModel *m, const RtOptions *o, const char *data_source)
{
	const RtTrain *t = &m->train;
	Buf b = {0};
	char cpu[256];
	cpu_name(cpu, sizeof cpu);
	put(&b, "{\"wtn\":");
	put_string(&b, WTN_VERSION);
	put(&b, ",\"command\":");
	put_string(&b, o->command);
	put(&b, ",\"network\":");
	put_string(&b, m->name);
	put(&b, ",\"network_hash\":\"%016llx\",\"layers\":[", (unsigned long long)compiled_hash);
	bool first = true;
	for (int i = 0; i < m->nlayers; i++) {
		const RtLayer *l = &m->layers[i];
		if (!rt_layer_has_rule(l))
			continue;
		put(&b, "%s{\"name\":", first ? "" : ",");
		put_string(&b, l->name);
		put(&b, ",\"kind\":\"%s\",\"rule\":", rt_op_name(l->kind));
		put_string(&b, l->rule);
		put(&b, ",\"args\":{");
		for (int k = 0; k < l->nargs; k++) {
			put(&b, "%s", k ? "," : "");
			put_string(&b, l->arg_name[k]);
			put(&b, ":");
			put_number(&b, rt_rule_arg_in_force(m, l, k));
		}
		put(&b, "}}");
		first = false;
	}
	put(&b, "],\"train\":{\"data\":");
	put_string(&b, t->data);
	put(&b, ",\"batch\":%d,\"epochs\":%d,\"seed\":%ld,\"optimizer\":\"%s\",\"lr\":", t->batch,
	    t->epochs, t->seed, opt_names[t->optimizer]);
	put_number(&b, t->lr);
	put(&b, ",\"momentum\":");
	put_number(&b, t->momentum);
	put(&b, ",\"nesterov\":%d,\"weight_decay\":", t->nesterov);
	put_number(&b, t->weight_decay);
	put(&b, ",\"beta1\":");
	put_number(&b, t->beta1);
	put(&b, ",\"beta2\":");
	put_number(&b, t->beta2);
	put(&b, ",\"eps\":");
	put_number(&b, t->eps);
	put(&b, ",\"schedule\":\"%s\",\"step_every\":%d,\"gamma\":", sched_names[t->schedule],
	    t->step_every);
	put_number(&b, t->gamma);
	put(&b, ",\"min_lr\":");
	put_number(&b, t->min_lr);
	put(&b, ",\"crop_pad\":%d,\"flip\":%d,\"shuffle\":%s,\"steps\":%ld},\"set\":[", t->crop_pad,
	    t->flip, o->no_shuffle ? "false" : "true", o->steps);
	const char *const *set;
	int nset = rt_settings_changed(&set);
	for (int i = 0; i < nset; i++) {
		put(&b, "%s", i ? "," : "");
		put_string(&b, set[i]);
	}
	put(&b, "],\"init\":");
	if (o->init)
		put_string(&b, o->init);
	else
		put(&b, "null");
	put(&b, ",\"resume\":");
	if (o->resume)
		put_string(&b, o->resume);
	else
		put(&b, "null");
	put(&b, ",\"data_source\":");
	put_string(&b, data_source ? data_source : "");
	put(&b, ",\"threads\":%d,\"cpu\":", rt_thread_count(o));
	put_string(&b, cpu);
	put(&b, ",\"blas\":");
	char blas[256];
	snprintf(blas, sizeof blas, "%s; kernel %s", openblas_get_config(), openblas_get_corename());
	put_string(&b, blas);
	put(&b, "}");
	return b.s;
}

void rt_config_set_current(char *json)
{
	free(current_config);
	current_config = json;
}

const char *rt_config_current(void)
{
	return current_config;
}

/* ---- a checkpoint's recorded configuration ---- */

/* The wtn_config of a safetensors file's __metadata__, parsed; -1 when the
 * file has none (older checkpoints, other producers), -2 when its header
 * cannot be read (the checkpoint loader says why). */
static int read_recorded(const char *path, RtJson *cfg)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -2;
	unsigned char len8[8];
	int rc = -2;
	if (fread(len8, 1, 8, f) == 8) {
		uint64_t n = 0;
		for (int i = 7; i >= 0; i--)
			n = n << 8 | len8[i];
		char *text = n < (1u << 26) ? malloc(n + 1) : NULL;
		RtJson header;
		char err[128];
		if (text && fread(text, 1, n, f) == n &&
		    rt_json_parse(text, n, &header, err, sizeof err) == 0) {
			const RtJson *meta = rt_json_get(&header, "__metadata__");
			const RtJson *s = meta ? rt_json_get(meta, "wtn_config") : NULL;
			rc = -1;
			if (s && s->type == RT_JSON_STRING &&
			    rt_json_parse(s->string, strlen(s->string), cfg, err, sizeof err) == 0)
				rc = 0;
			rt_json_free(&header);
		}
		free(text);
	}
	fclose(f);
	return rc;
}

static void value_text(const RtJson *v, char *out, size_t len)
{
	if (!v)
		snprintf(out, len, "(absent)");
	else if (v->type == RT_JSON_STRING)
		snprintf(out, len, "%s", v->string);
	else if (v->type == RT_JSON_NUMBER)
		snprintf(out, len, "%.9g", v->number);
	else if (v->type == RT_JSON_BOOL)
		snprintf(out, len, "%s", v->number ? "true" : "false");
	else if (v->type == RT_JSON_NULL)
		snprintf(out, len, "null");
	else
		snprintf(out, len, "...");
}

/* How a difference is worded: eval's checkpoint was trained so; a resumed
 * run's checkpoint holds so. */
static const char *then_words = "when trained";

/* Prints "  KEY: RECORDED (checkpoint) vs NOW (this run)" for fields that
 * differ; returns how many. */
static int compare_object(FILE *out, const char *prefix, const RtJson *then, const RtJson *now)
{
	int n = 0;
	for (int i = 0; now && i < now->nitems; i++) {
		const RtJson *b = &now->items[i];
		if (b->type == RT_JSON_OBJECT || b->type == RT_JSON_ARRAY)
			continue;
		char x[160], y[160];
		value_text(rt_json_get(then, b->key), x, sizeof x);
		value_text(b, y, sizeof y);
		if (strcmp(x, y) != 0) {
			fprintf(out, "  %s%s: %s %s, %s now\n", prefix, b->key, x, then_words, y);
			n++;
		}
	}
	return n;
}

/* The rules of every layer of now, by name, against then's; returns the
 * differences printed. */
static int compare_layers(FILE *out, const RtJson *then, const RtJson *now)
{
	int diffs = 0;
	const RtJson *lt = rt_json_get(then, "layers"), *ln = rt_json_get(now, "layers");
	for (int i = 0; ln && i < ln->nitems; i++) {
		const RtJson *a = &ln->items[i], *b = NULL;
		const RtJson *name = rt_json_get(a, "name");
		for (int k = 0; lt && name && k < lt->nitems; k++) {
			const RtJson *nk = rt_json_get(&lt->items[k], "name");
			if (nk && nk->type == RT_JSON_STRING && !strcmp(nk->string, name->string))
				b = &lt->items[k];
		}
		char prefix[200];
		snprintf(prefix, sizeof prefix, "%s ", name ? name->string : "?");
		if (!b) {
			fprintf(out, "  layer %s: not in the checkpoint's network\n", prefix);
			diffs++;
			continue;
		}
		diffs += compare_object(out, prefix, b, a);
		char pa[240];
		snprintf(pa, sizeof pa, "%s%s.", prefix, "args");
		diffs += compare_object(out, pa, rt_json_get(b, "args"), rt_json_get(a, "args"));
	}
	return diffs;
}

/* The train settings of now against then's, but for the keys in skip. */
static int compare_train(FILE *out, const RtJson *then, const RtJson *now,
                         const char *const *skip, int nskip)
{
	const RtJson *tt = rt_json_get(then, "train"), *tn = rt_json_get(now, "train");
	if (!tn)
		return 0;
	RtJson trimmed = *tn;
	RtJson items[64];
	int n = 0;
	for (int i = 0; i < tn->nitems && n < 64; i++) {
		bool skipped = false;
		for (int k = 0; k < nskip; k++)
			skipped |= strcmp(tn->items[i].key, skip[k]) == 0;
		if (!skipped)
			items[n++] = tn->items[i];
	}
	trimmed.items = items;
	trimmed.nitems = n;
	return compare_object(out, "train.", tt, &trimmed);
}

void rt_config_compare(FILE *out, const char *path, const char *now_json)
{
	RtJson then, now;
	char err[128];
	if (read_recorded(path, &then) < 0)
		return;   /* another producer's, or an older wtn's: nothing to compare */
	if (rt_json_parse(now_json, strlen(now_json), &now, err, sizeof err) < 0) {
		rt_json_free(&then);
		return;
	}
	char ver[64], hash[64], seed[64], cpu[160];
	value_text(rt_json_get(&then, "wtn"), ver, sizeof ver);
	value_text(rt_json_get(&then, "network_hash"), hash, sizeof hash);
	value_text(rt_json_get(rt_json_get(&then, "train"), "seed"), seed, sizeof seed);
	value_text(rt_json_get(&then, "cpu"), cpu, sizeof cpu);
	fprintf(out, "checkpoint: written by wtn %s, network hash %s, seed %s, on %s\n", ver, hash,
	        seed, cpu);
	then_words = "when trained";
	const char *skip[] = {"command", "init", "resume", "threads", "cpu", "blas", "data_source",
	                      "wtn"};
	RtJson top = now;
	RtJson items[64];
	top.items = items;
	top.nitems = 0;
	for (int i = 0; i < now.nitems && top.nitems < 64; i++) {
		bool skipped = false;
		for (size_t k = 0; k < sizeof skip / sizeof skip[0]; k++)
			skipped |= strcmp(now.items[i].key, skip[k]) == 0;
		if (!skipped)
			items[top.nitems++] = now.items[i];
	}
	int diffs = compare_object(out, "", &then, &top);
	diffs += compare_layers(out, &then, &now);
	/* What eval itself sets differently is not a difference of the model. */
	const char *train_skip[] = {"epochs", "steps", "shuffle"};
	diffs += compare_train(out, &then, &now, train_skip, 3);
	if (!diffs)
		fprintf(out, "  same network, rules and settings as this binary\n");
	rt_json_free(&then);
	rt_json_free(&now);
}

/* A note on a recorded field that does not change the run but may change
 * its last bits. */
static void note_if_differs(const char *path, const RtJson *then, const RtJson *now,
                            const char *key, const char *why)
{
	char x[200], y[200];
	value_text(rt_json_get(then, key), x, sizeof x);
	value_text(rt_json_get(now, key), y, sizeof y);
	if (strcmp(x, y) != 0)
		fprintf(stderr, "wtn: --resume %s: note: %s %s in the checkpoint's run, %s now: %s\n",
		        path, key, x, y, why);
}

int rt_config_check_resume(const char *path, const char *now_json, bool allow_changes)
{
	RtJson then, now;
	char err[128];
	int got = read_recorded(path, &then);
	if (got == -2)
		return 0;   /* not a checkpoint: loading it says what is wrong */
	if (got < 0) {
		fprintf(stderr, "wtn: --resume %s: the checkpoint records no configuration to check "
		        "this run against%s\n", path, allow_changes ? "" : " (--allow-changes resumes "
		        "it anyway)");
		return allow_changes ? 0 : -1;
	}
	if (!now_json || rt_json_parse(now_json, strlen(now_json), &now, err, sizeof err) < 0) {
		rt_json_free(&then);
		fprintf(stderr, "wtn: out of memory\n");
		return -1;
	}
	/* The differences go into a buffer: a heading comes first, if any. */
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	int diffs = 0;
	if (out) {
		then_words = "in the checkpoint's run";
		const char *keys[] = {"network", "network_hash", "data_source"};
		RtJson top = now;
		RtJson items[3];
		top.items = items;
		top.nitems = 0;
		for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
			const RtJson *v = rt_json_get(&now, keys[k]);
			if (v)
				items[top.nitems++] = *v;
		}
		diffs = compare_object(out, "", &then, &top);
		diffs += compare_layers(out, &then, &now);
		/* --epochs and --steps say where to stop: a resumed run sets them anew */
		const char *train_skip[] = {"epochs", "steps"};
		diffs += compare_train(out, &then, &now, train_skip, 2);
		fclose(out);
		then_words = "when trained";
	}
	if (diffs)
		fprintf(stderr, "wtn: --resume %s: %s the checkpoint's run:\n%s", path,
		        allow_changes ? "resuming (--allow-changes) with settings other than"
		                      : "this run's configuration differs from", text ? text : "");
	free(text);
	int rc = 0;
	if (diffs && !allow_changes) {
		fprintf(stderr, "wtn: --resume %s: refusing to continue another configuration "
		        "(--allow-changes resumes anyway, without the bit-for-bit guarantee)\n", path);
		rc = -1;
	} else {
		const char *bits = "a resumed run equals an uninterrupted one bit for bit only with "
		                   "the same thread count and binary";
		note_if_differs(path, &then, &now, "threads", bits);
		note_if_differs(path, &then, &now, "wtn", bits);
		note_if_differs(path, &then, &now, "blas", bits);
		const RtJson *tt = rt_json_get(&then, "train"), *tn = rt_json_get(&now, "train");
		const RtJson *sched = tn ? rt_json_get(tn, "schedule") : NULL;
		if (tt && sched && sched->type == RT_JSON_STRING && !strcmp(sched->string, "cosine"))
			note_if_differs(path, tt, tn, "epochs", "the cosine schedule spans the run's "
			                "epochs, so its learning rates change");
	}
	rt_json_free(&then);
	rt_json_free(&now);
	return rc;
}
