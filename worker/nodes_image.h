/*
 * nodes_image.h - ComfyUI's built-in image node classes that need no model
 * weights: EmptyImage, ImageInvert, ImageBlur, ImageScale, SaveImage,
 * PreviewImage, GetImageSize and PreviewAny, declared with ComfyUI 0.3.64's
 * input names, types, defaults, ranges, categories and modules.
 *
 * Also the ComfyUI-style failure every class here and in model_sim.c uses:
 * an execution_error whose traceback reads like ComfyUI's.
 */
#ifndef FNRUN_NODES_IMAGE_H
#define FNRUN_NODES_IMAGE_H

#include <stddef.h>

struct node_ctx;

/* Registers the classes with nodes_register(). They are static tables. */
void nodes_image_register(void);

/* One Python traceback frame, printed as Python 3.12 prints it. */
struct nodes_frame {
	const char *file; /* e.g. "ComfyUI/nodes.py" */
	int line;
	const char *func;
	const char *code;  /* the source line, without indentation */
	int caret_col;     /* carets from this column to the end of code; 0: none */
};

/*
 * Ends the node with node_ctx_fail(): the traceback is the four
 * execution.py frames ComfyUI 0.3.64 shows above every node, then frames.
 * message is the exception text (no trailing newline). Copies everything.
 */
void nodes_image_fail(struct node_ctx *ctx, const char *exc_type, const char *message,
		      const struct nodes_frame *frames, size_t nframes);

/*
 * folder_paths.get_save_image_path's compute_vars on a filename prefix:
 * %width%, %height% (of the image), %year%, %month%, %day%, %hour%,
 * %minute%, %second%. Caller frees the result.
 */
char *nodes_image_prefix_vars(const char *prefix, int w, int h);

#endif
