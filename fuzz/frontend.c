/* frontend.c: fuzzes wtnc's front end: lexer, parser, checks and shape
 * inference (sema), the buffer plan and the IR's text. Code generation is
 * LLVM's and is left out. The front end never frees its tree (it lives as
 * long as wtnc runs), so leaks are not reported. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "wtnc.h"

/* The tree is never freed: no leak report at exit either. */
const char *__asan_default_options(void)
{
	return "detect_leaks=0";
}

/* An input whose first line is "--feedback OVERRIDE" also runs that
 * command-line override; the rest is the source. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char flag[] = "--feedback ";
	char *override = NULL;
	size_t skip = 0;
	if (size > sizeof flag - 1 && !memcmp(data, flag, sizeof flag - 1)) {
		const uint8_t *nl = memchr(data, '\n', size);
		skip = nl ? (size_t)(nl - data) + 1 : size;
		size_t len = (nl ? (size_t)(nl - data) : size) - (sizeof flag - 1);
		override = strndup((const char *)data + sizeof flag - 1, len);
	}
	SrcFile f = {.name = "fuzz.wtn", .text = malloc(size - skip + 1), .len = size - skip};
	memcpy(f.text, data + skip, size - skip);
	f.text[size - skip] = '\0';
	diag_errors = 0;
	const char *overrides[] = {override};
	Program *prog = parse_program(&f);
	IRNetwork *net = prog ? sema_program(prog, overrides, override ? 1 : 0) : NULL;
	if (net && !diag_errors) {
		ir_plan_buffers(net);
		model_verify(net);
	}
	free(f.text);
	free(override);
	return 0;
}
