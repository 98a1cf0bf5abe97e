/* cifar.c: fuzzes the CIFAR-10 loader. The five training files and the
 * test file are links to one file holding the input. */
#include <limits.h>
#include <string.h>
#include "wtnrt.h"
#include "memfile.h"

static char dir[PATH_MAX];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	snprintf(dir, sizeof dir, "/tmp/wtn-fuzz-cifar.XXXXXX");
	if (!mkdtemp(dir))
		abort();
	memfile_write((const uint8_t *)"", 0);
	const char *names[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
	                       "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
	for (int i = 0; i < 6; i++) {
		char link[PATH_MAX + 32], target[PATH_MAX];
		snprintf(link, sizeof link, "%s/%s", dir, names[i]);
		snprintf(target, sizeof target, "/proc/%d/fd/%d", (int)getpid(), memfile_fd);
		if (symlink(target, link) != 0)
			abort();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	memfile_write(data, size);
	RtData d;
	memset(&d, 0, sizeof d);
	/* 10 classes, then fewer than CIFAR-10 has */
	if (rt_cifar_load(dir, (RtShape){3, 32, 32}, size & 1 ? 10 : 4, &d) == 0 && d.test.n <= 0)
		abort();
	rt_data_free(&d);
	return 0;
}
