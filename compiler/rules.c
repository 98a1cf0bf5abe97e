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
	 FB_START_SIGN_W, FB_CARRY_B, FB_CHANGE_SIGN_W, 1, {{"scale", 0}}, false},
	{"frsf", "fixed random-magnitude sign-concordant feedback",
	 FB_START_RANDMAG_SIGN_W, FB_CARRY_B, FB_CHANGE_RANDMAG_SIGN_W, 1, {{"scale", 0}}, false},
	{"brsf", "batchwise random-magnitude sign-concordant feedback",
	 FB_START_RANDMAG_SIGN_W, FB_CARRY_B, FB_CHANGE_REDRAW_SIGN_W, 1, {{"scale", 0}}, false},
	{"kp", "Kolen-Pollack",
	 FB_START_LIKE_W, FB_CARRY_B, FB_CHANGE_AS_W, 1, {{"decay", -1}}, false},
	{"wm", "weight mirror",
	 FB_START_LIKE_W, FB_CARRY_B, FB_CHANGE_MIRROR, 6,
	 {{"noise", 0.1}, {"rate", 0.01}, {"decay", 0.0001}, {"batch", 128},
	  {"every", 1}, {"warmup", 100}}, false},
	{"dfa", "direct feedback alignment",
	 FB_START_LIKE_W, FB_CARRY_D, FB_CHANGE_NONE, 0, {{0}}, false},
};
const int rule_count = sizeof rule_table / sizeof rule_table[0];

const RuleDef *rule_lookup(const char *name)
{
	for (int i = 0; i < rule_count; i++)
		if (!strcmp(rule_table[i].name, name))
			return &rule_table[i];
	return NULL;
}

const char *fb_start_name(FbStart s)
{
	static const char *const names[] = {"none", "like_w", "sign_w", "randmag_sign_w"};
	return (unsigned)s < 4 ? names[s] : "?";
}

const char *fb_carry_name(FbCarry c)
{
	static const char *const names[] = {"W", "B", "D"};
	return (unsigned)c < 3 ? names[c] : "?";
}

const char *fb_change_name(FbChange c)
{
	static const char *const names[] = {
		"none", "as_w", "sign_w", "randmag_sign_w", "redraw_sign_w", "mirror"};
	return (unsigned)c < 6 ? names[c] : "?";
}
