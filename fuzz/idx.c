/* idx.c: fuzzes the IDX reader (plain and gzip) as a 4x4 image file for a
 * 16-unit input and as a label file for 10 classes. */
#include "wtnrt.h"
#include "memfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = memfile_write(data, size);
	float *pixels = NULL;
	int32_t *labels = NULL;
	long n;
	if (rt_idx_load_images(path, (RtShape){16, 1, 1}, &pixels, &n) == 0)
		free(pixels);
	if (rt_idx_load_images(path, (RtShape){1, 4, 4}, &pixels, &n) == 0)
		free(pixels);
	if (rt_idx_load_labels(path, 10, &labels, &n) == 0)
		free(labels);
	return 0;
}
