/* memfile.h: the fuzz input as a file the loaders can open by path: a
 * memfd (a regular file in memory), rewritten for every input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static int memfile_fd = -1;
static char memfile_path[64];

static const char *memfile_write(const uint8_t *data, size_t size)
{
	if (memfile_fd < 0) {
		memfile_fd = memfd_create("wtn-fuzz", 0);
		if (memfile_fd < 0) {
			perror("memfd_create");
			abort();
		}
		snprintf(memfile_path, sizeof memfile_path, "/proc/self/fd/%d", memfile_fd);
	}
	if (ftruncate(memfile_fd, 0) != 0 ||
	    (size && pwrite(memfile_fd, data, size, 0) != (ssize_t)size)) {
		perror("memfile");
		abort();
	}
	return memfile_path;
}
