/* ast.c: syntax tree constructors. The tree lives as long as the compiler
 * runs, so nodes are never freed. */
#include "wtnc.h"
#include <stdlib.h>
#include <string.h>

void *ast_alloc(size_t size)
{
	void *p = calloc(1, size);
	if (!p) {
		fprintf(stderr, "wtnc: out of memory\n");
		exit(1);
	}
	return p;
}

char *ast_strdup(const char *s, size_t len)
{
	char *d = ast_alloc(len + 1);
	memcpy(d, s, len);
	return d;
}

Value *ast_value(ValKind kind, Pos pos, char *text)
{
	Value *v = ast_alloc(sizeof *v);
	v->kind = kind;
	v->pos = pos;
	v->text = text;
	return v;
}

void ast_add_arg(Value *call, char *key, Pos key_pos, Value *val)
{
	/* Grow by doubling: capacity is the next power of two >= nargs. */
	int n = call->nargs;
	if ((n & (n - 1)) == 0) {
		Arg *args = realloc(call->args, sizeof(Arg) * (size_t)(n ? 2 * n : 1));
		if (!args) {
			fprintf(stderr, "wtnc: out of memory\n");
			exit(1);
		}
		call->args = args;
	}
	call->args[n] = (Arg){key, key_pos, val};
	call->nargs = n + 1;
}

Stmt *ast_stmt(StmtKind kind, Pos pos, char *name, Pos name_pos, Value *val)
{
	Stmt *s = ast_alloc(sizeof *s);
	s->kind = kind;
	s->pos = pos;
	s->name = name;
	s->name_pos = name_pos;
	s->val = val;
	return s;
}

const char *ast_describe(const Value *v)
{
	static char buf[128];
	if (v->kind == VAL_LIST)
		return "a list";
	if (v->kind == VAL_OP)
		return "a condition";
	const char *what = v->kind == VAL_NUM ? "number '%.*s%s'"
	                 : v->kind == VAL_NAME ? "name '%.*s%s'"
	                 : v->kind == VAL_STR ? "string \"%.*s%s\""
	                 : "call '%.*s%s(...)'";
	int len = (int)strlen(v->text);
	snprintf(buf, sizeof buf, what, len > 60 ? 60 : len, v->text, len > 60 ? "..." : "");
	return buf;
}
