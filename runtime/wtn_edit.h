/* wtn_edit.h: the edit distance behind every "did you mean" of wtnc and
 * of the training binary (one copy, included by both). */
#ifndef WTN_EDIT_H
#define WTN_EDIT_H
#include <string.h>

/* Levenshtein distance, giving up (returning a large value) past `limit`. */
static inline int wtn_edit_distance(const char *a, const char *b, int limit)
{
	int la = (int)strlen(a), lb = (int)strlen(b);
	if (la - lb > limit || lb - la > limit || lb > 200)
		return limit + 1;
	int row[201];
	for (int j = 0; j <= lb; j++)
		row[j] = j;
	for (int i = 1; i <= la; i++) {
		int diag = row[0];
		row[0] = i;
		for (int j = 1; j <= lb; j++) {
			int up = row[j];
			int best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

#endif
