/* checkpoint.c: fuzzes the safetensors reader (and its JSON parser) against
 * the network of tests/runtime/cnn.wtn (conv weights, batchnorm statistics
 * and counters, a dense layer with a feedback matrix), compiled into
 * fuzz_cnn.o. */
#include "wtnrt.h"
#include "memfile.h"

static RtModel model;
static float **bufs;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* The model as runtime/main.c obtains it from the compiled network. */
	if (rt_model_load(&model) < 0)
		abort();
	bufs = rt_alloc_buffers(&model, 1);
	if (!bufs)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = memfile_write(data, size);
	/* as --init (feedback may be missing), and as --resume */
	rt_checkpoint_load(path, &model, bufs, true, NULL);
	RtRunState state = {0};
	if (rt_checkpoint_load(path, &model, bufs, false, &state) == 0)
		rt_state_free(&state);
	return 0;
}
