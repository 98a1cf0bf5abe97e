/* diag.c: source files and diagnostics.
 * A diagnostic is "file:line:col: kind: message", then the source line and a
 * caret under the column. The caret line copies the tabs of the source
 * prefix, so it lines up however the terminal expands them. */
#include "wtnc.h"
#include "wtn_edit.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int diag_errors;

enum { MAX_SHOWN_ERRORS = 25, LINE_WINDOW = 160 };
enum { MAX_SOURCE_BYTES = 8 << 20 };  /* beyond any real network; /dev/zero stops here */
static bool suppressing;        /* past the limit: errors and their notes are hidden */

SrcFile *diag_read_file(const char *path)
{
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		fprintf(stderr, "wtnc: error: cannot open '%s': %s\n", path, strerror(errno));
		diag_errors++;
		return NULL;
	}
	size_t cap = 4096, len = 0;
	char *text = malloc(cap);
	for (;;) {
		if (!text) {
			fprintf(stderr, "wtnc: error: out of memory reading '%s'\n", path);
			exit(1);
		}
		size_t n = fread(text + len, 1, cap - len - 1, fp);
		len += n;
		if (n == 0)
			break;
		if (len > MAX_SOURCE_BYTES) {
			fprintf(stderr, "wtnc: error: '%s' is larger than %d MB, the limit for a .wtn "
			        "file\n", path, MAX_SOURCE_BYTES >> 20);
			fclose(fp);
			free(text);
			diag_errors++;
			return NULL;
		}
		if (cap - len - 1 == 0) {
			char *grown = realloc(text, cap *= 2);
			if (!grown)
				free(text);
			text = grown;
		}
	}
	if (ferror(fp)) {
		fprintf(stderr, "wtnc: error: cannot read '%s': %s\n", path, strerror(errno));
		fclose(fp);
		free(text);
		diag_errors++;
		return NULL;
	}
	fclose(fp);
	text[len] = '\0';
	SrcFile *f = malloc(sizeof *f);
	if (!f)
		exit(1);
	f->name = path;
	f->text = text;
	f->len = len;
	return f;
}

/* Start and length of line `line` (1-based), without its newline. */
static const char *find_line(const SrcFile *f, int line, size_t *len)
{
	const char *p = f->text, *end = f->text + f->len;
	for (int l = 1; l < line && p < end; p++)
		if (*p == '\n')
			l++;
	const char *q = p;
	while (q < end && *q != '\n')
		q++;
	if (q > p && q[-1] == '\r')
		q--;
	*len = (size_t)(q - p);
	return p;
}

/* Prints the line with non-printing bytes as '?', then the caret. Lines
 * longer than the window are cut around the column, with "..." marks. */
static void show_source(Pos pos)
{
	if (!pos.file || pos.line < 1)
		return;
	size_t len;
	const char *s = find_line(pos.file, pos.line, &len);
	if (len == 0)
		return;              /* nothing to point at (an empty file) */
	size_t col = pos.col > 0 ? (size_t)pos.col - 1 : 0;
	size_t from = 0, to = len;
	if (col > len)
		col = len;
	if (len > LINE_WINDOW) {
		from = col > LINE_WINDOW / 2 ? col - LINE_WINDOW / 2 : 0;
		to = from + LINE_WINDOW < len ? from + LINE_WINDOW : len;
	}
	const char *lead = from > 0 ? "..." : "";
	fputs(lead, stderr);
	for (size_t i = from; i < to; i++) {
		unsigned char c = (unsigned char)s[i];
		fputc(c == '\t' || c >= 0x80 || (c >= 0x20 && c < 0x7f) ? c : '?', stderr);
	}
	fputs(to < len ? "...\n" : "\n", stderr);
	fputs(from > 0 ? "   " : "", stderr);
	for (size_t i = from; i < col; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\t')
			fputc('\t', stderr);
		else if ((c & 0xC0) != 0x80)   /* one space per UTF-8 character */
			fputc(' ', stderr);
	}
	fputs("^\n", stderr);
}

static void report(Pos pos, const char *kind, const char *fmt, va_list ap)
{
	if (pos.file)
		fprintf(stderr, "%s:%d:%d: %s: ", pos.file->name, pos.line, pos.col, kind);
	else
		fprintf(stderr, "wtnc: %s: ", kind);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	show_source(pos);
}

/* Open block calls, outermost first: each error and warning inside one
 * gets a note per call, innermost first (like a compiler's "in
 * instantiation of" notes). */
enum { MAX_CONTEXT = 64 };
static struct { Pos pos; char text[160]; } context[MAX_CONTEXT];
static int ncontext;

void diag_push_context(Pos pos, const char *fmt, ...)
{
	if (ncontext < MAX_CONTEXT) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(context[ncontext].text, sizeof context[ncontext].text, fmt, ap);
		va_end(ap);
		context[ncontext].pos = pos;
	}
	ncontext++;
}

void diag_pop_context(void)
{
	if (ncontext > 0)
		ncontext--;
}

static void report_context(void)
{
	int top = ncontext < MAX_CONTEXT ? ncontext : MAX_CONTEXT;
	for (int i = top - 1; i >= 0; i--) {
		fprintf(stderr, "%s:%d:%d: note: %s\n", context[i].pos.file->name, context[i].pos.line,
		        context[i].pos.col, context[i].text);
		show_source(context[i].pos);
	}
}

void diag_error(Pos pos, const char *fmt, ...)
{
	diag_errors++;
	suppressing = diag_errors > MAX_SHOWN_ERRORS;
	if (diag_errors == MAX_SHOWN_ERRORS + 1)
		fprintf(stderr, "wtnc: too many errors; the rest are not shown\n");
	if (suppressing)
		return;
	va_list ap;
	va_start(ap, fmt);
	report(pos, "error", fmt, ap);
	va_end(ap);
	report_context();
}

bool diag_will_show(void)
{
	return diag_errors < MAX_SHOWN_ERRORS;
}

void diag_warning(Pos pos, const char *fmt, ...)
{
	suppressing = diag_errors > MAX_SHOWN_ERRORS;
	if (suppressing)
		return;
	va_list ap;
	va_start(ap, fmt);
	report(pos, "warning", fmt, ap);
	va_end(ap);
	report_context();
}

void diag_note(Pos pos, const char *fmt, ...)
{
	if (suppressing)
		return;
	va_list ap;
	va_start(ap, fmt);
	report(pos, "note", fmt, ap);
	va_end(ap);
}

const char *diag_suggest(const char *name, const char *const *names, int n)
{
	/* Close enough: at most a third of the name's letters wrong, and at
	 * least one letter right (so 'x' does not suggest 'h'). */
	int len = (int)strlen(name);
	int limit = len <= 2 ? 1 : len / 3 + 1;
	const char *best = NULL;
	int best_d = limit + 1;
	for (int i = 0; i < n; i++) {
		if (!names[i] || !strcmp(names[i], name))
			continue;
		int d = wtn_edit_distance(name, names[i], limit);
		/* a prefix of three or more letters: 'fashion' for 'fashion_mnist' */
		if (len >= 3 && !strncmp(name, names[i], (size_t)len))
			d = limit < 1 ? 0 : limit;
		/* ties go to the later name: for layers, the most recent one */
		if (d <= best_d && d <= limit && d < (int)strlen(names[i])) {
			best = names[i];
			best_d = d;
		}
	}
	return best;
}
