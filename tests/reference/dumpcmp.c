/* dumpcmp.c: compares one tensor of two `refcheck --dump` files.
 *
 *   dumpcmp A B NAME same|differ TOL
 *
 * same:   max |a - b| <= TOL * max |b|   (exit 0), else exit 1
 * differ: max |a - b| >  TOL * max |b|   (exit 0), else exit 1 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads tensor `name` from a dump; NULL (and a message) if absent. */
static double *read_tensor(const char *path, const char *name, long *count)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		perror(path);
		return NULL;
	}
	char tname[128];
	long len;
	while (fscanf(f, "%127s %ld", tname, &len) == 2) {
		double *v = malloc((len ? len : 1) * sizeof *v);
		for (long i = 0; i < len; i++)
			if (fscanf(f, "%lf", &v[i]) != 1) {
				fprintf(stderr, "dumpcmp: %s: truncated tensor %s\n", path, tname);
				exit(2);
			}
		if (!strcmp(tname, name)) {
			fclose(f);
			*count = len;
			return v;
		}
		free(v);
	}
	fclose(f);
	fprintf(stderr, "dumpcmp: %s has no tensor %s\n", path, name);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 6 || (strcmp(argv[4], "same") && strcmp(argv[4], "differ"))) {
		fprintf(stderr, "usage: dumpcmp A B NAME same|differ TOL\n");
		return 2;
	}
	long na, nb;
	double *a = read_tensor(argv[1], argv[3], &na);
	double *b = read_tensor(argv[2], argv[3], &nb);
	if (!a || !b)
		return 2;
	if (na != nb) {
		printf("dumpcmp: %s has %ld elements in %s, %ld in %s\n", argv[3], na, argv[1],
		       nb, argv[2]);
		return 1;
	}
	double diff = 0, scale = 0;
	for (long i = 0; i < na; i++) {
		diff = fmax(diff, fabs(a[i] - b[i]));
		scale = fmax(scale, fabs(b[i]));
	}
	double tol = atof(argv[5]) * scale;
	int want_same = !strcmp(argv[4], "same");
	int ok = want_same ? diff <= tol : diff > tol;
	if (!ok)
		printf("dumpcmp: %s expected %s in %s and %s: max diff %.3g, limit %.3g\n",
		       argv[3], argv[4], argv[1], argv[2], diff, tol);
	return !ok;
}
