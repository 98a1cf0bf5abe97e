/* lexer.re: the wtn lexer (re2c 3.0). One token per call; newlines are
 * tokens (they end statements), comments and other blanks are skipped.
 * The lexer also keeps the stack of open brackets, so a syntax error can
 * say which '{' is still waiting for its '}'. */
#include "wtnc.h"
#include "parser.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static Pos pos_at(const Lexer *lx, const char *p)
{
	return (Pos){lx->file, lx->line, (int)(p - lx->line_start) + 1};
}

/* Where end-of-file errors point: just after the last line's text, so the
 * caret sits on a line the reader can see. */
static Pos eof_pos(const Lexer *lx)
{
	const char *start = lx->file->text, *end = lx->lim;
	if (end > start && end[-1] == '\n')
		end--;
	if (end > start && end[-1] == '\r')
		end--;
	const char *line_start = end;
	while (line_start > start && line_start[-1] != '\n')
		line_start--;
	int line = 1;
	for (const char *p = start; p < line_start; p++)
		line += *p == '\n';
	return (Pos){lx->file, line, (int)(end - line_start) + 1};
}

static void push_open(Lexer *lx, char ch, Pos pos)
{
	if (lx->nopen == lx->capopen) {
		lx->capopen = lx->capopen ? 2 * lx->capopen : 16;
		lx->open = realloc(lx->open, sizeof *lx->open * (size_t)lx->capopen);
		if (!lx->open) {
			fprintf(stderr, "wtnc: out of memory\n");
			exit(1);
		}
	}
	lx->open[lx->nopen++] = (Open){ch, pos};
}

/* A closer pops its opener; a stray closer leaves the stack alone (the
 * parser reports it). A '}' also closes any '(' or '[' left open inside
 * its block, which the parser has already complained about. */
static void pop_open(Lexer *lx, char opener)
{
	int i = lx->nopen - 1;
	if (opener == '{')
		while (i >= 0 && lx->open[i].ch != '{')
			i--;
	lx->stray = !(i >= 0 && lx->open[i].ch == opener);
	if (!lx->stray)
		lx->nopen = i;
}

/* After a syntax error the parser skips to the end of the line: brackets
 * opened on the skipped statement are forgotten with it. */
void lex_forget_parens(Lexer *lx)
{
	while (lx->nopen > 0 && lx->open[lx->nopen - 1].ch != '{')
		lx->nopen--;
}

/* Reports a run of bytes that cannot start a token, once for the run. */
static void bad_chars(Lexer *lx)
{
	Pos pos = pos_at(lx, lx->tok);
	unsigned char c = (unsigned char)*lx->tok;
	if (c >= 0xC0 && c < 0xF8) {
		/* show one whole UTF-8 character */
		const char *p = lx->tok + 1;
		while (p < lx->lim && ((unsigned char)*p & 0xC0) == 0x80 && p - lx->tok < 4)
			p++;
		diag_error(pos, "unexpected character '%.*s'", (int)(p - lx->tok), lx->tok);
	} else if (c >= 0x21 && c < 0x7f) {
		diag_error(pos, "unexpected character '%c'", c);
	} else {
		diag_error(pos, "unexpected byte 0x%02x", c);
	}
	/* skip the rest of a run of non-ASCII or control bytes (binary junk) */
	while (lx->cur < lx->lim) {
		unsigned char d = (unsigned char)*lx->cur;
		if (d >= 0x80 || (d < 0x20 && d != '\t' && d != '\n' && d != '\r'))
			lx->cur++;
		else
			break;
	}
}

static int number(Lexer *lx, YYSTYPE *v)
{
	size_t len = (size_t)(lx->cur - lx->tok);
	v->tok.text = ast_strdup(lx->tok, len);
	errno = 0;
	v->tok.num = strtod(v->tok.text, NULL);
	if (errno == ERANGE && (v->tok.num > 1 || v->tok.num < -1))
		diag_error(pos_at(lx, lx->tok), "number '%.40s%s' is too large", v->tok.text,
		           len > 40 ? "..." : "");
	return NUM;
}

int lex_token(YYSTYPE *v, Pos *loc, Lexer *lx)
{
	if (lx->start_token) {
		int t = lx->start_token;
		lx->start_token = 0;
		*loc = pos_at(lx, lx->cur);
		return t;
	}
	for (;;) {
		lx->tok = lx->cur;
		*loc = pos_at(lx, lx->tok);
		lx->stray = false;
		if (lx->cur >= lx->lim || lx->stop || diag_errors > 100) {
			lx->cur = lx->lim;
			lx->tok = lx->cur;
			*loc = eof_pos(lx);
			return YYEOF;
		}
		/*!re2c
		re2c:api:style = free-form;
		re2c:define:YYCTYPE = "unsigned char";
		re2c:define:YYCURSOR = "lx->cur";
		re2c:define:YYMARKER = "lx->marker";
		re2c:define:YYPEEK = "(unsigned char)*lx->cur";
		re2c:define:YYSKIP = "++lx->cur;";
		re2c:define:YYBACKUP = "lx->marker = lx->cur;";
		re2c:define:YYRESTORE = "lx->cur = lx->marker;";
		re2c:yyfill:enable = 0;
		re2c:sentinel = 0;

		digits = [0-9]+;
		exponent = [eE] [+-]? digits;
		number = (digits ("." [0-9]*)? | "." digits) exponent?;
		/* A name may be a dotted path (layer2.0.conv1) and may hold the glob
		 * characters * and ? (feedback patterns); sema.c says where
		 * those are allowed. */
		namechar = [A-Za-z0-9_*?];
		name = [A-Za-z_*?] namechar* ("." namechar+)*;
		/* Anything number-like that is not a number: 12abc, 1e, 1.2.3, 3e+ */
		malformed = ([0-9] | "." [0-9]) ([0-9A-Za-z_.] | [eE] [+-])*;

		[\x00] {
			if (lx->cur > lx->lim) {     /* the terminating NUL */
				lx->cur = lx->lim;
				continue;
			}
			bad_chars(lx);
			continue;
		}
		[ \t\r\f\v]+ { continue; }
		"#" [^\n\x00]* { continue; }
		"\n" {
			lx->line++;
			lx->line_start = lx->cur;
			return NL;
		}
		"let"      { return LET; }
		"network"  { return NETWORK; }
		"train"    { return TRAIN; }
		"input"    { return INPUT; }
		"loss"     { return LOSS; }
		"feedback" { return FEEDBACK; }
		"default"  { return DEFAULT; }
		"block"    { return BLOCK; }
		"if"       { return IF; }
		"else"     { return ELSE; }
		"return"   { return RETURN; }
		"and"      { return AND; }
		"or"       { return OR; }
		"not"      { return NOT; }
		name {
			v->tok.text = ast_strdup(lx->tok, (size_t)(lx->cur - lx->tok));
			return NAME;
		}
		number { return number(lx, v); }
		malformed {
			int len = (int)(lx->cur - lx->tok);
			diag_error(*loc, "malformed number '%.*s%s'", len > 40 ? 40 : len, lx->tok,
			           len > 40 ? "..." : "");
			v->tok.text = ast_strdup(lx->tok, (size_t)(lx->cur - lx->tok));
			v->tok.num = 0;
			return NUM;
		}
		["] [^"\n\x00]* ["] {
			v->tok.text = ast_strdup(lx->tok + 1, (size_t)(lx->cur - lx->tok - 2));
			return STR;
		}
		["] [^"\n\x00]* {
			diag_error(*loc, "unfinished string (a string ends with '\"' on the same line)");
			v->tok.text = ast_strdup(lx->tok + 1, (size_t)(lx->cur - lx->tok - 1));
			return STR;
		}
		"{" { push_open(lx, '{', *loc); return '{'; }
		"(" { push_open(lx, '(', *loc); return '('; }
		"[" { push_open(lx, '[', *loc); return '['; }
		"}" { pop_open(lx, '{'); return '}'; }
		")" { pop_open(lx, '('); return ')'; }
		"]" { pop_open(lx, '['); return ']'; }
		"==" { return EQ; }
		"!=" { return NE; }
		"<=" { return LE; }
		">=" { return GE; }
		[=,<>\-] { return (unsigned char)*lx->tok; }
		* { bad_chars(lx); continue; }
		*/
	}
}

void lex_init(Lexer *lx, const SrcFile *f, int start_token)
{
	memset(lx, 0, sizeof *lx);
	lx->file = f;
	lx->cur = f->text;
	lx->lim = f->text + f->len;
	lx->line_start = f->text;
	lx->line = 1;
	lx->start_token = start_token;
}
