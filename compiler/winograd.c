/* winograd.c: the transforms of Winograd's minimal filtering F(m, r), which
 * codegen uses for stride-1 convolutions (ir_conv_winograd). A tile of
 * n = m + r - 1 inputs d gives m outputs of the correlation with r taps g:
 *     y = AT [ (G g) .* (BT d) ],
 * and in two dimensions Y = AT [ (G g GT) .* (BT d B) ] A. The matrices come
 * from Toom-Cook on the points 0, 1, -1, 2, -2 (the first n - 1) and
 * infinity: AT evaluates at the points, G evaluates g scaled by the
 * Lagrange denominators, BT holds the coefficients of the Lagrange
 * numerators (and of the product of every x - p for infinity). Every entry
 * is a small integer or a simple fraction, so the transforms cost a few
 * adds per value and round little. */
#include <math.h>
#include <string.h>
#include "wtnc.h"

static const double wino_points[] = { 0, 1, -1, 2, -2, 0.5, -0.5 };

/* coefficients (lowest first) of prod over k != skip of (x - p[k]), k < count */
static void poly_of_roots(const double *p, int count, int skip, double *coef, int n)
{
	memset(coef, 0, sizeof(double) * (size_t)n);
	coef[0] = 1;
	int deg = 0;
	for (int k = 0; k < count; k++) {
		if (k == skip)
			continue;
		/* coef *= (x - p[k]) */
		for (int e = deg + 1; e >= 1; e--)
			coef[e] = coef[e - 1] - p[k] * coef[e];
		coef[0] *= -p[k];
		deg++;
	}
}

bool wino_mats(int m, int r, WinoMats *w)
{
	int n = m + r - 1, finite = n - 1;
	if (m < 1 || r < 2 || n > WINO_MAX_N || finite > (int)(sizeof wino_points / sizeof *wino_points))
		return false;
	memset(w, 0, sizeof *w);
	w->m = m, w->r = r, w->n = n;
	const double *p = wino_points;
	for (int j = 0; j < finite; j++) {
		double den = 1, pw;
		for (int k = 0; k < finite; k++)
			if (k != j)
				den *= p[j] - p[k];
		pw = 1;
		for (int i = 0; i < m; i++, pw *= p[j])
			w->AT[i][j] = pw;
		pw = 1;
		for (int k = 0; k < r; k++, pw *= p[j])
			w->G[j][k] = pw / den;
		poly_of_roots(p, finite, j, w->BT[j], n);
	}
	w->AT[m - 1][n - 1] = 1;   /* infinity: the leading coefficients */
	w->G[n - 1][r - 1] = 1;
	poly_of_roots(p, finite, -1, w->BT[n - 1], n);
	/* the identity y_i = sum_k g_k d_{i+k}, exactly: every entry is a
	 * dyadic fraction or a ratio of small integers */
	for (int i = 0; i < m; i++)
		for (int k = 0; k < r; k++)
			for (int l = 0; l < n; l++) {
				double s = 0;
				for (int j = 0; j < n; j++)
					s += w->AT[i][j] * w->G[j][k] * w->BT[j][l];
				if (fabs(s - (l == i + k)) > 1e-9)
					return false;
			}
	return true;
}
