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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	SrcFile f = {.name = "fuzz.wtn", .text = malloc(size + 1), .len = size};
	memcpy(f.text, data, size);
	f.text[size] = '\0';
	diag_errors = 0;
	Program *prog = parse_program(&f);
	IRNetwork *net = prog ? sema_program(prog, NULL, 0) : NULL;
	if (net && !diag_errors) {
		ir_plan_buffers(net);
		free(ir_spec_string(net));
	}
	free(f.text);
	return 0;
}
