/* metrics.c: test evaluation, alignment of feedback matrices with the
 * forward weights, and the per-epoch report (a line, a JSON object, and a
 * progress bar on terminals). */
#include <math.h>
#include <string.h>
#include "wtnrt.h"

int rt_argmax(const float *v, int n)
{
	int best = 0;
	for (int i = 1; i < n; i++)
		if (v[i] > v[best])
			best = i;
	return best;
}

/* 2 atan2(|a^ - b^|, |a^ + b^|) over the unit vectors: unlike acos of the
 * cosine it keeps small angles accurate, and equal vectors give exactly 0. */
double rt_angle_deg(const float *a, const float *b, long n)
{
	double aa = 0, bb = 0;
	for (long i = 0; i < n; i++) {
		aa += (double)a[i] * a[i];
		bb += (double)b[i] * b[i];
	}
	if (aa == 0 || bb == 0)
		return NAN;
	double ia = 1 / sqrt(aa), ib = 1 / sqrt(bb), diff = 0, sum = 0;
	for (long i = 0; i < n; i++) {
		double u = a[i] * ia, v = b[i] * ib;
		diff += (u - v) * (u - v);
		sum += (u + v) * (u + v);
	}
	return 2 * atan2(sqrt(diff), sqrt(sum)) * 180.0 / M_PI;
}

double rt_norm_ratio(const float *a, const float *b, long n)
{
	double aa = 0, bb = 0;
	for (long i = 0; i < n; i++) {
		aa += (double)a[i] * a[i];
		bb += (double)b[i] * b[i];
	}
	return bb == 0 ? NAN : sqrt(aa) / sqrt(bb);
}

void rt_layer_stats(const RtModel *m, float **bufs, RtLayerStat *out)
{
	for (int i = 0; i < m->nlayers; i++) {
		const RtLayer *l = &m->layers[i];
		out[i].angle = out[i].norm_ratio = NAN;
		if (l->B < 0)
			continue;
		long n = m->bufs[l->W].elems;
		out[i].angle = rt_angle_deg(bufs[l->B], bufs[l->W], n);
		out[i].norm_ratio = rt_norm_ratio(bufs[l->B], bufs[l->W], n);
	}
}

void rt_evaluate(const RtModel *m, float **bufs, const RtSet *set, int batch,
                 int32_t *labels, double *loss, double *acc)
{
	const RtLayer *last = &m->layers[m->nlayers - 1];
	double sum = 0;
	long correct = 0;
	for (long start = 0; start < set->n; start += batch) {
		int n = set->n - start < batch ? (int)(set->n - start) : batch;
		memcpy(bufs[m->x_slot], set->x + start * set->dim, (size_t)n * set->dim * sizeof(float));
		memcpy(labels, set->y + start, n * sizeof *labels);
		wtn_forward_eval(bufs, n);
		sum += (double)wtn_loss(bufs, labels, n) * n;
		const float *y = bufs[last->y];
		for (int i = 0; i < n; i++)
			correct += rt_argmax(y + (long)i * last->out, last->out) == labels[i];
	}
	*loss = set->n ? sum / set->n : NAN;
	*acc = set->n ? 100.0 * correct / set->n : NAN;
}

static void print_rate(FILE *out, double r)
{
	if (r >= 1e6)
		fprintf(out, "%.1fM samples/s", r / 1e6);
	else if (r >= 1e3)
		fprintf(out, "%.1fk samples/s", r / 1e3);
	else
		fprintf(out, "%.0f samples/s", r);
}

/* Above this many layers with a feedback rule, the epoch line gives the mean
 * and worst angle and delta angle instead of every layer (--layers lists
 * them). */
enum { EPOCH_LINE_MAX_LAYERS = 4 };

/* Mean and largest finite value of a field over the layers with a rule. */
static void summarise(const RtModel *m, const RtEpochStats *s, bool delta, double *mean,
                      int *worst)
{
	double sum = 0;
	int n = 0;
	*worst = -1;
	for (int i = 0; i < m->nlayers; i++) {
		double v = delta ? s->layers[i].delta : s->layers[i].angle;
		if (!rt_layer_has_rule(&m->layers[i]) || !isfinite(v))
			continue;
		sum += v;
		n++;
		if (*worst < 0 || v > (delta ? s->layers[*worst].delta : s->layers[*worst].angle))
			*worst = i;
	}
	*mean = n ? sum / n : NAN;
}

static void print_summary(FILE *out, const RtModel *m, const RtEpochStats *s, bool delta)
{
	double mean;
	int worst;
	summarise(m, s, delta, &mean, &worst);
	fputs(delta ? "  \u03b4" : "  angle", out);
	if (worst < 0) {
		fputs(" -", out);
		return;
	}
	fprintf(out, " mean %.1f\u00b0 worst %.1f\u00b0 (%s)", mean,
	        delta ? s->layers[worst].delta : s->layers[worst].angle, m->layers[worst].name);
}

void rt_print_epoch(FILE *out, const RtModel *m, const RtEpochStats *s)
{
	fprintf(out, "epoch %d/%d  train loss %.4f acc %.2f%%  test loss %.4f acc %.2f%%",
	        s->epoch, s->epochs, s->train_loss, s->train_acc, s->test_loss, s->test_acc);
	int ruled = 0;
	for (int i = 0; i < m->nlayers; i++)
		ruled += rt_layer_has_rule(&m->layers[i]);
	if (ruled > EPOCH_LINE_MAX_LAYERS) {
		print_summary(out, m, s, false);
		print_summary(out, m, s, true);
		fprintf(out, "  ");
		print_rate(out, s->samples_per_sec);
		fputc('\n', out);
		fflush(out);
		return;
	}
	for (int i = 0; i < m->nlayers; i++)
		if (m->layers[i].B >= 0)
			fprintf(out, "  %s angle %.1f\u00b0 |B|/|W| %.2f", m->layers[i].name,
			        s->layers[i].angle, s->layers[i].norm_ratio);
	/* Delta angles, compactly: the error each layer gets against backprop's. */
	fputs("  \u03b4", out);
	for (int i = 0; i < m->nlayers; i++) {
		if (!rt_layer_has_rule(&m->layers[i]))
			continue;   /* pools, batchnorm and friends: only in the metrics file */
		if (isfinite(s->layers[i].delta))
			fprintf(out, " %s %.1f\u00b0", m->layers[i].name, s->layers[i].delta);
		else
			fprintf(out, " %s -", m->layers[i].name);
	}
	fprintf(out, "  ");
	print_rate(out, s->samples_per_sec);
	fputc('\n', out);
	fflush(out);
}

static void print_cell(FILE *out, double v)
{
	char buf[32];
	if (isfinite(v))
		snprintf(buf, sizeof buf, "%.2f", v);
	else
		snprintf(buf, sizeof buf, "-");
	fprintf(out, " %11s", buf);
}

void rt_print_layer_table(FILE *out, const RtModel *m, const RtEpochStats *s)
{
	int width = 5;
	for (int i = 0; i < m->nlayers; i++)
		if (rt_layer_has_rule(&m->layers[i]) && (int)strlen(m->layers[i].name) > width)
			width = (int)strlen(m->layers[i].name);
	fprintf(out, "  %-*s %-6s %11s %11s %11s\n", width, "layer", "rule", "angle (deg)", "|B|/|W|",
	        "delta (deg)");
	for (int i = 0; i < m->nlayers; i++) {
		const RtLayer *l = &m->layers[i];
		if (!rt_layer_has_rule(l))
			continue;
		fprintf(out, "  %-*s %-6s", width, l->name, l->rule);
		print_cell(out, s->layers[i].angle);
		print_cell(out, s->layers[i].norm_ratio);
		print_cell(out, s->layers[i].delta);
		fputc('\n', out);
	}
	fflush(out);
}

/* JSON has no NaN or infinity: those become null. */
static void json_number(FILE *out, double v)
{
	if (isfinite(v))
		fprintf(out, "%.9g", v);
	else
		fputs("null", out);
}

static void json_field(FILE *out, const char *key, double v)
{
	fprintf(out, ",\"%s\":", key);
	json_number(out, v);
}

int rt_write_metrics_json(FILE *out, const RtModel *m, const RtEpochStats *s)
{
	fprintf(out, "{\"epoch\":%d", s->epoch);
	json_field(out, "lr", s->lr);
	json_field(out, "train_loss", s->train_loss);
	json_field(out, "train_acc", s->train_acc);
	json_field(out, "test_loss", s->test_loss);
	json_field(out, "test_acc", s->test_acc);
	json_field(out, "samples_per_sec", s->samples_per_sec);
	fputs(",\"layers\":[", out);
	bool first = true;
	for (int i = 0; i < m->nlayers; i++) {
		const RtLayer *l = &m->layers[i];
		/* Layer and rule names are identifiers: no escaping needed. */
		fprintf(out, "%s{\"name\":\"%s\",\"rule\":\"%s\",\"angle\":", first ? "" : ",",
		        l->name, l->rule);
		json_number(out, s->layers[i].angle);
		fputs(",\"norm_ratio\":", out);
		json_number(out, s->layers[i].norm_ratio);
		fputs(",\"delta\":", out);
		json_number(out, s->layers[i].delta);
		fputc('}', out);
		first = false;
	}
	fputs("]}\n", out);
	return fflush(out) == 0 && !ferror(out) ? 0 : -1;
}

void rt_progress(FILE *out, int epoch, int epochs, long done, long total, double loss, double acc,
                 double eta)
{
	enum { WIDTH = 30 };
	int filled = total ? (int)(WIDTH * done / total) : WIDTH;
	char bar[WIDTH + 1];
	for (int i = 0; i < WIDTH; i++)
		bar[i] = i < filled ? '#' : '.';
	bar[WIDTH] = '\0';
	fprintf(out, "\r\033[Kepoch %d/%d [%s] %3ld%%  loss %.4f acc %.2f%%", epoch, epochs, bar,
	        total ? 100 * done / total : 100, loss, acc);
	if (isfinite(eta) && eta >= 0) {
		long sec = (long)(eta + 0.5);
		if (sec >= 3600)
			fprintf(out, "  eta %ld:%02ld:%02ld", sec / 3600, sec / 60 % 60, sec % 60);
		else
			fprintf(out, "  eta %ld:%02ld", sec / 60, sec % 60);
	}
	fflush(out);
}
