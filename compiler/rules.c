/* rules.c: the learning rules as data. One row per rule; sema.c checks
 * arguments against the row and the backend reads only its fields, so a
 * new rule is a new row (plus, for a new kind of B update, backend code). */
#include "wtnc.h"
#include <string.h>

const RuleDef rule_table[] = {
	{"bp", "backpropagation",
	 FB_START_NONE, FB_CARRY_W, FB_CHANGE_NONE, 0, {{0}}, true},
	{"fa", "feedback alignment",
	 FB_START_LIKE_W, FB_CARRY_B, FB_CHANGE_NONE, 0, {{0}}, true},
	{"usf", "uniform sign-concordant feedback",
	 FB_START_SIGN_W, FB_CARRY_B, FB_CHANGE_SIGN_W, 1, {{"scale", 0}}, true},
	{"frsf", "fixed random-magnitude sign-concordant feedback",
	 FB_START_RANDMAG_SIGN_W, FB_CARRY_B, FB_CHANGE_RANDMAG_SIGN_W, 0, {{0}}, true},
	{"brsf", "batchwise random-magnitude sign-concordant feedback",
	 FB_START_RANDMAG_SIGN_W, FB_CARRY_B, FB_CHANGE_REDRAW_SIGN_W, 0, {{0}}, true},
	{"kp", "Kolen-Pollack",
	 FB_START_LIKE_W, FB_CARRY_B, FB_CHANGE_AS_W, 2, {{"decay", -1}, {"decay_steps", 0}}, true},
	{"wm", "weight mirror",
	 FB_START_LIKE_W, FB_CARRY_B, FB_CHANGE_MIRROR, 7,
	 {{"noise", 1}, {"rate", 0.001}, {"decay", 0.001}, {"batch", 128},
	  {"every", 1}, {"warmup", 1000}, {"growth", 0}}, true},
	{"dfa", "direct feedback alignment",
	 FB_START_LIKE_W, FB_CARRY_D, FB_CHANGE_NONE, 0, {{0}}, true},
};
const int rule_count = sizeof rule_table / sizeof rule_table[0];

/* What each argument accepts, row for row with rule_table. */
static const RuleArgKind arg_kinds[][RULE_MAX_PARAMS] = {
	{0},                                           /* bp */
	{0},                                           /* fa */
	{RULE_ARG_NONNEG},                             /* usf scale (0: 1/sqrt(in)) */
	{0},                                           /* frsf */
	{0},                                           /* brsf */
	{RULE_ARG_NONNEG_OR_DEFAULT, RULE_ARG_NONNEG_INT},  /* kp decay (-1: the optimiser's), decay_steps */
	{RULE_ARG_POSITIVE, RULE_ARG_POSITIVE, RULE_ARG_FRACTION,
	 RULE_ARG_POS_INT, RULE_ARG_POS_INT, RULE_ARG_NONNEG_INT,
	 RULE_ARG_NONNEG},                             /* wm (growth 0: off) */
	{0},                                           /* dfa */
};
_Static_assert(sizeof arg_kinds / sizeof arg_kinds[0] ==
               sizeof rule_table / sizeof rule_table[0], "one arg_kinds row per rule");

RuleArgKind rule_arg_kind(const RuleDef *r, int i)
{
	return arg_kinds[r - rule_table][i];
}

int rule_param_index(const RuleDef *r, const char *param)
{
	for (int i = 0; i < r->nparams; i++)
		if (!strcmp(r->params[i].name, param))
			return i;
	return -1;
}

const RuleDef *rule_lookup(const char *name)
{
	for (int i = 0; i < rule_count; i++)
		if (!strcmp(rule_table[i].name, name))
			return &rule_table[i];
	return NULL;
}
