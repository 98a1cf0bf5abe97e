/* parser.y: the wtn grammar (Bison 3.8), building the AST of wtnc.h.
 *
 * Syntax choices of language version 2 (docs/language.md has the details):
 * - A file holds top-level `let` constants, one `network NAME { ... }` and
 *   at most one `train { ... }`, in any order.
 * - Statements end at a newline; several may share a line where that is
 *   unambiguous (`feedback { default bp  out fa }`). Blank lines and
 *   `# comments` are ignored. A call's arguments may continue on the next
 *   lines after '(' or ','.
 * - Values: numbers (1, 0.5, 3., .5, 1e-4, -2), names, "strings" (no
 *   escapes, one line) and calls `name(arg, key=value, ...)`; `true` and
 *   `false` are plain names. A constant from `let NAME = NUMBER` may stand
 *   wherever a number is expected, from its definition to the end of the
 *   file (constants share one namespace, whichever block defines them).
 * - network statements: `input NAME[UNITS]`, `NAME = dense(SRC, UNITS,
 *   act=A, init=I, bias=B)`, `loss KIND(LAYER)`, `feedback { ... }`, `let`.
 * - feedback entries: `default RULE` and `LAYER RULE`, where RULE is a name
 *   or `name(key=value, ...)`.
 * - train settings: `SETTING VALUE` lines (data, batch, epochs, seed,
 *   optimizer, schedule) and `let`.
 * - A --feedback override is `LAYER=RULE` or `default=RULE`.
 * - Version 2: `input NAME[C, H, W]` (a list value `[a, b]`), `block
 *   NAME(params) { ... return VALUE }` at the top level, `if COND { }
 *   else { }` and `return` among the network statements (sema.c says where
 *   each belongs), conditions with == != < <= > >= and or not. Names may
 *   be dotted paths and, for feedback patterns, hold * and ?.
 * What each position accepts (a layer name, a positive integer, ...) is
 * checked by sema.c, which gives better messages than a syntax error can.
 */
%define api.pure full
%define parse.error custom
%define parse.lac full
%define api.location.type {Pos}
%locations
%parse-param {ParseCtx *ctx}
%lex-param {ParseCtx *ctx}
%expect 0

%code requires {
#include "wtnc.h"
typedef struct Tok { char *text; double num; } Tok;
typedef struct StmtList { Stmt *head, *tail; } StmtList;
typedef struct Open { char ch; Pos pos; } Open;
typedef struct Lexer {
	const SrcFile *file;
	const char *cur, *lim, *tok, *marker;
	const char *line_start;
	int line;
	int start_token;        /* returned first: picks the grammar's start */
	Open *open;             /* brackets not yet closed */
	int nopen, capopen;
	bool stray;             /* the last token was a closer matching nothing */
	bool stop;              /* give up: return end of file from now on */
} Lexer;
typedef struct ParseCtx {
	Lexer lx;
	Stmt *result;
} ParseCtx;
}

%code provides {
void lex_init(Lexer *lx, const SrcFile *f, int start_token);
int lex_token(YYSTYPE *v, Pos *loc, Lexer *lx);
void lex_forget_parens(Lexer *lx);
}

%code {
#include <stdlib.h>
#include <string.h>

#define YYLLOC_DEFAULT(Cur, Rhs, N) \
	do { (Cur) = (N) ? YYRHSLOC(Rhs, 1) : YYRHSLOC(Rhs, 0); } while (0)

static int yylex(YYSTYPE *v, Pos *loc, ParseCtx *ctx)
{
	return lex_token(v, loc, &ctx->lx);
}

static void yyerror(const Pos *loc, ParseCtx *ctx, const char *msg)
{
	/* only "memory exhausted" reaches here: input nested absurdly deep */
	diag_error(*loc, "%s (nesting too deep?)", msg);
}

static StmtList append(StmtList l, Stmt *s)
{
	if (!s)
		return l;
	if (l.tail)
		l.tail->next = s;
	else
		l.head = s;
	l.tail = s;
	return l;
}

static Stmt *block(StmtKind kind, Pos pos, char *name, Pos name_pos,
                   Stmt *body, Pos close_pos)
{
	Stmt *s = ast_stmt(kind, pos, name, name_pos, NULL);
	s->body = body;
	s->close_pos = close_pos;
	return s;
}

/* A condition node: operator `name` at pos, operands a and b (b NULL for not). */
static Value *op(const char *name, Pos pos, Value *a, Value *b)
{
	Value *v = ast_value(VAL_OP, pos, (char *)name);
	ast_add_arg(v, NULL, a->pos, a);
	if (b)
		ast_add_arg(v, NULL, b->pos, b);
	return v;
}

static Value *negative(Pos pos, Tok t)
{
	size_t len = strlen(t.text);
	char *text = ast_alloc(len + 2);
	text[0] = '-';
	memcpy(text + 1, t.text, len);
	Value *v = ast_value(VAL_NUM, pos, text);
	v->num = -t.num;
	return v;
}
}

%union {
	Tok tok;
	Value *val;
	Stmt *stmt;
	StmtList list;
}

%token <tok> NAME "name" NUM "number" STR "string"
%token LET "'let'" NETWORK "'network'" TRAIN "'train'" INPUT "'input'"
%token LOSS "'loss'" FEEDBACK "'feedback'" DEFAULT "'default'"
%token BLOCK "'block'" IF "'if'" ELSE "'else'" RETURN "'return'"
%token AND "'and'" OR "'or'" NOT "'not'"
%token EQ "'=='" NE "'!='" LE "'<='" GE "'>='"
%token NL "end of line"
%token START_FILE START_OVERRIDE
%type <val> value call list elems cond cond_and cond_not cmp
%type <stmt> item let net_stmt train_stmt fb_stmt override if_stmt else_part
%type <list> items net_stmts train_stmts fb_stmts

%%

start
	: START_FILE items              { ctx->result = $2.head; }
	| START_OVERRIDE nls override nls { ctx->result = $3; }
	;

nls
	: %empty
	| nls NL
	;

/* No error recovery at the top level: after a mangled `network` line the
 * block's statements would each look wrong too. */
items
	: %empty                        { $$ = (StmtList){0}; }
	| items NL
	| items item                    { $$ = append($1, $2); }
	;

item
	: let
	| NETWORK NAME nls '{' net_stmts '}'
		{ $$ = block(ST_NETWORK, @1, $2.text, @2, $5.head, @6); }
	| NETWORK NAME nls '{' net_stmts error '}'
		{ $$ = block(ST_NETWORK, @1, $2.text, @2, $5.head, @7); }
	| TRAIN nls '{' train_stmts '}'
		{ $$ = block(ST_TRAIN, @1, NULL, @1, $4.head, @5); }
	| TRAIN nls '{' train_stmts error '}'
		{ $$ = block(ST_TRAIN, @1, NULL, @1, $4.head, @6); }
	| BLOCK call nls '{' net_stmts '}'
		{ $$ = block(ST_BLOCK, @1, $2->text, $2->pos, $5.head, @6); $$->val = $2; }
	| BLOCK call nls '{' net_stmts error '}'
		{ $$ = block(ST_BLOCK, @1, $2->text, $2->pos, $5.head, @7); $$->val = $2; }
	;

let
	: LET NAME '=' value            { $$ = ast_stmt(ST_LET, @1, $2.text, @2, $4); }
	;

net_stmts
	: %empty                        { $$ = (StmtList){0}; }
	| net_stmts NL
	| net_stmts net_stmt            { $$ = append($1, $2); }
	| net_stmts error NL            { yyerrok; lex_forget_parens(&ctx->lx); }
	;

net_stmt
	: let
	| INPUT NAME list               { $$ = ast_stmt(ST_INPUT, @1, $2.text, @2, $3); }
	| RETURN value                  { $$ = ast_stmt(ST_RETURN, @1, NULL, @1, $2); }
	| if_stmt
	| NAME '=' value                { $$ = ast_stmt(ST_LAYER, @1, $1.text, @1, $3); }
	| LOSS value                    { $$ = ast_stmt(ST_LOSS, @1, NULL, @1, $2); }
	| FEEDBACK nls '{' fb_stmts '}'
		{ $$ = block(ST_FEEDBACK, @1, NULL, @1, $4.head, @5); }
	| FEEDBACK nls '{' fb_stmts error '}'
		{ $$ = block(ST_FEEDBACK, @1, NULL, @1, $4.head, @6); }
	;

/* `} else {` must share a line, as in Go: a newline ends the statement. */
if_stmt
	: IF cond nls '{' net_stmts '}' else_part
		{ $$ = block(ST_IF, @1, NULL, @1, $5.head, @6); $$->val = $2; $$->else_body = $7; }
	| IF cond nls '{' net_stmts error '}' else_part
		{ $$ = block(ST_IF, @1, NULL, @1, $5.head, @7); $$->val = $2; $$->else_body = $8; }
	;

else_part
	: %empty                        { $$ = NULL; }
	| ELSE nls '{' net_stmts '}'      { $$ = $4.head; }
	| ELSE nls '{' net_stmts error '}' { $$ = $4.head; }
	| ELSE if_stmt                  { $$ = $2; }
	;

cond
	: cond_and
	| cond OR nls cond_and          { $$ = op("or", @2, $1, $4); }
	;

cond_and
	: cond_not
	| cond_and AND nls cond_not     { $$ = op("and", @2, $1, $4); }
	;

cond_not
	: cmp
	| NOT cond_not                  { $$ = op("not", @1, $2, NULL); }
	| '(' cond ')'                  { $$ = $2; }
	;

cmp
	: value
	| value EQ value                { $$ = op("==", @2, $1, $3); }
	| value NE value                { $$ = op("!=", @2, $1, $3); }
	| value '<' value               { $$ = op("<", @2, $1, $3); }
	| value LE value                { $$ = op("<=", @2, $1, $3); }
	| value '>' value               { $$ = op(">", @2, $1, $3); }
	| value GE value                { $$ = op(">=", @2, $1, $3); }
	;

train_stmts
	: %empty                        { $$ = (StmtList){0}; }
	| train_stmts NL
	| train_stmts train_stmt        { $$ = append($1, $2); }
	| train_stmts error NL          { yyerrok; lex_forget_parens(&ctx->lx); }
	;

train_stmt
	: let
	| NAME value                    { $$ = ast_stmt(ST_SETTING, @1, $1.text, @1, $2); }
	;

fb_stmts
	: %empty                        { $$ = (StmtList){0}; }
	| fb_stmts NL
	| fb_stmts fb_stmt              { $$ = append($1, $2); }
	| fb_stmts error NL             { yyerrok; lex_forget_parens(&ctx->lx); }
	;

fb_stmt
	: NAME value                    { $$ = ast_stmt(ST_SETTING, @1, $1.text, @1, $2); }
	| DEFAULT value                 { $$ = ast_stmt(ST_DEFAULT, @1, NULL, @1, $2); }
	;

override
	: NAME '=' value                { $$ = ast_stmt(ST_SETTING, @1, $1.text, @1, $3); }
	| DEFAULT '=' value             { $$ = ast_stmt(ST_DEFAULT, @1, NULL, @1, $3); }
	;

value
	: NUM                           { $$ = ast_value(VAL_NUM, @1, $1.text); $$->num = $1.num; }
	| '-' NUM                       { $$ = negative(@1, $2); }
	| NAME                          { $$ = ast_value(VAL_NAME, @1, $1.text); }
	| STR                           { $$ = ast_value(VAL_STR, @1, $1.text); }
	| call
	| list
	;

call
	: NAME '(' nls ')'              { $$ = ast_value(VAL_CALL, @1, $1.text); }
	| NAME '(' nls args nls ')'     { $$ = $4; $$->text = $1.text; $$->pos = @1; }
	| NAME '(' nls args ',' nls ')' { $$ = $4; $$->text = $1.text; $$->pos = @1; }
	;

list
	: '[' nls ']'                 { $$ = ast_value(VAL_LIST, @1, "[]"); }
	| '[' nls elems nls ']'         { $$ = $3; $$->pos = @1; }
	| '[' nls elems ',' nls ']'     { $$ = $3; $$->pos = @1; }
	;

elems
	: value                         { $$ = ast_value(VAL_LIST, @1, "[]"); ast_add_arg($$, NULL, @1, $1); }
	| elems ',' nls value           { $$ = $1; ast_add_arg($$, NULL, @4, $4); }
	;

%type <val> args;
args
	: arg_value                     { $$ = ast_value(VAL_CALL, @1, NULL); ast_add_arg($$, NULL, @1, $1); }
	| NAME '=' value                { $$ = ast_value(VAL_CALL, @1, NULL); ast_add_arg($$, $1.text, @1, $3); }
	| args ',' nls arg_value        { $$ = $1; ast_add_arg($$, NULL, @4, $4); }
	| args ',' nls NAME '=' value   { $$ = $1; ast_add_arg($$, $4.text, @4, $6); }
	;

%type <val> arg_value;
arg_value
	: value
	;

%%

/* ---- syntax error messages ---- */

static const char *open_closer(char open)
{
	return open == '{' ? "}" : open == '(' ? ")" : "]";
}

/* The offending token, as the reader would name it. */
static void describe_token(ParseCtx *ctx, yysymbol_kind_t t, char *buf, size_t size)
{
	const Lexer *lx = &ctx->lx;
	int len = (int)(lx->cur - lx->tok);
	const char *dots = "";
	if (len > 40) {
		len = 40;
		dots = "...";
	}
	switch (t) {
	case YYSYMBOL_YYEOF: snprintf(buf, size, "end of file"); break;
	case YYSYMBOL_NL: snprintf(buf, size, "end of line"); break;
	case YYSYMBOL_NAME: snprintf(buf, size, "name '%.*s%s'", len, lx->tok, dots); break;
	case YYSYMBOL_NUM: snprintf(buf, size, "number '%.*s%s'", len, lx->tok, dots); break;
	case YYSYMBOL_STR: snprintf(buf, size, "string %.*s%s", len, lx->tok, dots); break;
	default: snprintf(buf, size, "%s", yysymbol_name(t)); break;
	}
}

/* Is the punctuation token `ch` among the expected ones? */
static bool expects_char(const yysymbol_kind_t *exp, int n, char ch)
{
	for (int i = 0; i < n; i++) {
		const char *name = yysymbol_name(exp[i]);
		if (name[0] == '\'' && name[1] == ch && name[2] == '\'' && !name[3])
			return true;
	}
	return false;
}

static bool expects(const yysymbol_kind_t *exp, int n, yysymbol_kind_t t)
{
	for (int i = 0; i < n; i++)
		if (exp[i] == t)
			return true;
	return false;
}

/* Names the tokens that could come next. Tokens that only continue a name
 * ('(' or '=' after `x`) are left out when a separator would do, and an
 * end of line is left out when something else is possible: "expected ','
 * or ')'" says more than the full list. */
static int expected_list(const yysymbol_kind_t *exp, int n, char *buf, size_t size)
{
	const char *names[8];
	int k = 0;
	bool sep = expects_char(exp, n, ',') || expects_char(exp, n, ')');
	if (expects(exp, n, YYSYMBOL_INPUT)) {
		/* the start of a network statement */
		names[k++] = "a layer";
		names[k++] = "'input'";
		names[k++] = "'loss'";
		names[k++] = "'feedback'";
		names[k++] = "'let'";
		if (expects_char(exp, n, '}'))
			names[k++] = "'}'";
	} else {
		for (int i = 0; i < n && k < 8; i++) {
			yysymbol_kind_t t = exp[i];
			const char *name = yysymbol_name(t);
			if (t == YYSYMBOL_NL && n > 1)
				continue;
			if (sep && (!strcmp(name, "'('") || !strcmp(name, "'='")))
				continue;
			names[k++] = t == YYSYMBOL_NAME ? "a name"
			           : t == YYSYMBOL_NUM ? "a number"
			           : t == YYSYMBOL_STR ? "a string"
			           : name;
		}
	}
	if (k == 0 || k > 6)
		return 0;
	size_t used = 0;
	buf[0] = '\0';
	for (int i = 0; i < k && used < size; i++) {
		const char *join = i == 0 ? "" : i == k - 1 ? " or " : ", ";
		used += (size_t)snprintf(buf + used, size - used, "%s%s", join, names[i]);
	}
	return k;
}

static int yyreport_syntax_error(const yypcontext_t *pc, ParseCtx *ctx)
{
	Pos pos = *yypcontext_location(pc);
	yysymbol_kind_t la = yypcontext_token(pc);
	yysymbol_kind_t exp[YYNTOKENS];
	int n = yypcontext_expected_tokens(pc, exp, YYNTOKENS);
	const Lexer *lx = &ctx->lx;
	const Open *open = lx->nopen > 0 ? &lx->open[lx->nopen - 1] : NULL;

	if (la == YYSYMBOL_YYEOF && open) {
		diag_error(pos, "'%s' expected (to close '%c' at line %d)",
		           open_closer(open->ch), open->ch, open->pos.line);
		return 0;
	}
	/* `network` or `train` inside a block: the block was never closed.
	 * Stop here rather than misread the rest of the file. */
	if ((la == YYSYMBOL_NETWORK || la == YYSYMBOL_TRAIN) && open && open->ch == '{') {
		diag_error(pos, "'}' expected (to close '{' at line %d) before '%s'",
		           open->pos.line, la == YYSYMBOL_NETWORK ? "network" : "train");
		ctx->lx.stop = true;
		return 0;
	}
	if (lx->stray) {
		diag_error(pos, "unexpected '%.1s' (it closes nothing)", lx->tok);
		return 0;
	}
	char found[96], wanted[160], hint[64] = "";
	describe_token(ctx, la, found, sizeof found);
	int k = n > 0 ? expected_list(exp, n, wanted, sizeof wanted) : 0;
	if (open && open->pos.line != pos.line && k > 0 && k <= 2) {
		if (expects_char(exp, n, open_closer(open->ch)[0]))
			snprintf(hint, sizeof hint, " (to close '%c' at line %d)",
			         open->ch, open->pos.line);
	}
	if (k > 0)
		diag_error(pos, "expected %s%s, found %s", wanted, hint, found);
	else
		diag_error(pos, "unexpected %s", found);
	return 0;
}

/* ---- entry points ---- */

static Stmt *run_parser(const SrcFile *f, int start_token)
{
	ParseCtx ctx;
	lex_init(&ctx.lx, f, start_token);
	ctx.result = NULL;
	int before = diag_errors;
	int status = yyparse(&ctx);
	free(ctx.lx.open);
	if (status != 0 || diag_errors > before)
		return NULL;
	return ctx.result;
}

Program *parse_program(const SrcFile *f)
{
	int before = diag_errors;
	Stmt *items = run_parser(f, START_FILE);
	if (diag_errors > before)
		return NULL;
	Program *p = ast_alloc(sizeof *p);
	p->items = items;
	p->file = f;
	return p;
}

Stmt *parse_override(const SrcFile *f)
{
	return run_parser(f, START_OVERRIDE);
}
