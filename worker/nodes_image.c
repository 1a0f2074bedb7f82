/*
 * nodes_image.c - ComfyUI's weightless built-in image nodes (see
 * nodes_image.h) and the ComfyUI-style failure helper.
 *
 * Each class is one static table entry plus a run() that reads its coerced
 * inputs, calls the pixel code of image.h and ends the node synchronously
 * with exactly one of node_ctx_done() or node_ctx_fail(). None has a
 * cancel(): they are interrupted at the next node boundary, as in ComfyUI.
 *
 * The declarations copy ComfyUI 0.3.64: nodes.py (EmptyImage, ImageInvert,
 * ImageScale, SaveImage, PreviewImage), comfy_extras/nodes_post_processing.py
 * (ImageBlur, a V3 node without a display name), comfy_extras/nodes_images.py
 * (GetImageSize) and comfy_extras/nodes_preview_any.py (PreviewAny).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "image.h"
#include "json.h" /* -I/usr/include/json-c has a json.h too */
#include "node.h"
#include "nodes_image.h"
#include "util.h"

/* --- ComfyUI-style failures. --- */

/* What ComfyUI 0.3.64's execution.py puts above every node's own frames. */
static const struct nodes_frame exec_frames[] = {
	{"ComfyUI/execution.py", 496, "execute",
	 "output_data, output_ui, has_subgraph, has_pending_tasks = await "
	 "get_output_data(prompt_id, unique_id, obj, input_data_all, "
	 "execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, "
	 "hidden_inputs=hidden_inputs)",
	 58},
	{"ComfyUI/execution.py", 315, "get_output_data",
	 "return_values = await _async_map_node_over_list(prompt_id, unique_id, obj, "
	 "input_data_all, obj.FUNCTION, allow_interrupt=True, "
	 "execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, "
	 "hidden_inputs=hidden_inputs)",
	 16},
	{"ComfyUI/execution.py", 289, "_async_map_node_over_list",
	 "await process_inputs(input_dict, i)", 0},
	{"ComfyUI/execution.py", 277, "process_inputs", "result = f(**inputs)", 9},
};

#define EXEC_FRAMES (sizeof exec_frames / sizeof exec_frames[0])
#define MAX_FRAMES 16

/* "  File ..., line N, in f\n    code\n    ^^^^\n". Caller frees. */
static char *frame_text(const struct nodes_frame *f)
{
	size_t len = strlen(f->code);
	char *carets;
	char *s;

	if (f->caret_col <= 0 || (size_t)f->caret_col >= len)
		return xasprintf("  File \"%s\", line %d, in %s\n    %s\n", f->file, f->line,
				 f->func, f->code);
	carets = xmalloc(len + 1);
	memset(carets, ' ', (size_t)f->caret_col);
	memset(carets + f->caret_col, '^', len - (size_t)f->caret_col);
	carets[len] = '\0';
	s = xasprintf("  File \"%s\", line %d, in %s\n    %s\n    %s\n", f->file, f->line,
		      f->func, f->code, carets);
	free(carets);
	return s;
}

void nodes_image_fail(struct node_ctx *ctx, const char *exc_type, const char *message,
		      const struct nodes_frame *frames, size_t nframes)
{
	char *lines[EXEC_FRAMES + MAX_FRAMES];
	size_t n = 0;

	for (size_t i = 0; i < EXEC_FRAMES; i++)
		lines[n++] = frame_text(&exec_frames[i]);
	for (size_t i = 0; i < nframes && i < MAX_FRAMES; i++)
		lines[n++] = frame_text(&frames[i]);
	node_ctx_fail(ctx, exc_type, message, (const char *const *)lines, n);
	for (size_t i = 0; i < n; i++)
		free(lines[i]);
}

/* What torch says when a CPU tensor cannot be allocated. */
static void fail_alloc(struct node_ctx *ctx, int w, int h, int n)
{
	uint64_t bytes = (uint64_t)w * (uint64_t)h * (uint64_t)n * 3 * sizeof(float);
	char *msg = xasprintf("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
			      "not enough memory: you tried to allocate %" PRIu64 " bytes.",
			      bytes);

	nodes_image_fail(ctx, "RuntimeError", msg, NULL, 0);
	free(msg);
}

/* --- Shared run() pieces. --- */

/* The IMAGE input `name`; the executor has checked it is there. */
static const struct image *input_image(struct node_ctx *ctx, const char *name)
{
	const struct value *v = node_ctx_input(ctx, name);

	return v != NULL && v->type == VAL_IMAGE ? v->img : NULL;
}

/* Sets output 0 to img (taking the reference) and ends the node. */
static void finish_image(struct node_ctx *ctx, struct image *img, int w, int h, int n)
{
	struct value v = {0};

	if (img == NULL) {
		fail_alloc(ctx, w, h, n);
		return;
	}
	v.type = VAL_IMAGE;
	v.img = img;
	node_ctx_set_output(ctx, 0, &v);
	node_ctx_done(ctx);
}

static int missing_image(struct node_ctx *ctx, const struct image *img)
{
	if (img != NULL)
		return 0;
	nodes_image_fail(ctx, "RuntimeError", "the image input is missing", NULL, 0);
	return 1;
}

/* --- EmptyImage, ImageInvert, ImageBlur, ImageScale. --- */

static void run_empty_image(struct node_ctx *ctx)
{
	int w = (int)node_ctx_int(ctx, "width", 512);
	int h = (int)node_ctx_int(ctx, "height", 512);
	int n = (int)node_ctx_int(ctx, "batch_size", 1);
	uint32_t color = (uint32_t)node_ctx_int(ctx, "color", 0);

	finish_image(ctx, image_fill(w, h, n, color), w, h, n);
}

static void run_image_invert(struct node_ctx *ctx)
{
	const struct image *img = input_image(ctx, "image");

	if (missing_image(ctx, img))
		return;
	finish_image(ctx, image_invert(img), img->w, img->h, img->n);
}

static void run_image_blur(struct node_ctx *ctx)
{
	const struct image *img = input_image(ctx, "image");
	int radius = (int)node_ctx_int(ctx, "blur_radius", 1);
	double sigma = node_ctx_float(ctx, "sigma", 1.0);

	if (missing_image(ctx, img))
		return;
	finish_image(ctx, image_blur(img, radius, sigma), img->w, img->h, img->n);
}

static void run_image_scale(struct node_ctx *ctx)
{
	const struct image *img = input_image(ctx, "image");
	int w = (int)node_ctx_int(ctx, "width", 512);
	int h = (int)node_ctx_int(ctx, "height", 512);

	if (missing_image(ctx, img))
		return;
	finish_image(ctx,
		     image_scale(img, w, h, node_ctx_str(ctx, "upscale_method", "nearest-exact"),
				 node_ctx_str(ctx, "crop", "disabled")),
		     w, h, img->n);
}

/* --- GetImageSize, PreviewAny. --- */

static void set_int_output(struct node_ctx *ctx, size_t idx, int64_t i)
{
	struct value v = {0};

	v.type = VAL_INT;
	v.i = i;
	node_ctx_set_output(ctx, idx, &v);
}

static void run_get_image_size(struct node_ctx *ctx)
{
	const struct image *img = input_image(ctx, "image");
	char *text;

	if (missing_image(ctx, img))
		return;
	text = xasprintf("width: %d, height: %d\n batch size: %d", img->w, img->h, img->n);
	node_ctx_text(ctx, text);
	free(text);
	set_int_output(ctx, 0, img->w);
	set_int_output(ctx, 1, img->h);
	set_int_output(ctx, 2, img->n);
	node_ctx_done(ctx);
}

static void run_preview_any(struct node_ctx *ctx)
{
	const struct value *v = node_ctx_input(ctx, "source");
	char *text = v != NULL ? value_to_text(v) : xstrdup("None");
	struct json_object *ui = json_object_new_object();
	struct json_object *list = json_object_new_array();

	json_object_array_add(list, json_str(text));
	json_put(ui, "text", list);
	free(text);
	node_ctx_set_ui(ctx, ui);
	node_ctx_done(ctx);
}

/* --- SaveImage, PreviewImage: ComfyUI's file name rules. --- */

/* Replaces every `from` in s with `to`. Caller frees the result. */
static char *replace_all(const char *s, const char *from, const char *to)
{
	struct buf b;
	const char *hit;

	buf_init(&b, 1 << 20);
	while ((hit = strstr(s, from)) != NULL) {
		buf_append(&b, s, (size_t)(hit - s));
		buf_puts(&b, to);
		s = hit + strlen(from);
	}
	buf_puts(&b, s);
	return b.data ? buf_steal(&b) : xstrdup("");
}

/*
 * folder_paths.get_save_image_path's compute_vars: %width%, %height%,
 * %year%, %month%, %day%, %hour%, %minute%, %second%. Caller frees.
 */
char *nodes_image_prefix_vars(const char *prefix, int w, int h)
{
	time_t now = time(NULL);
	struct tm tm;
	char vals[8][16];
	static const char *const names[8] = {"%width%", "%height%", "%year%",   "%month%",
					     "%day%",   "%hour%",   "%minute%", "%second%"};
	char *s = xstrdup(prefix);

	if (strchr(prefix, '%') == NULL)
		return s;
	localtime_r(&now, &tm);
	snprintf(vals[0], sizeof vals[0], "%d", w);
	snprintf(vals[1], sizeof vals[1], "%d", h);
	snprintf(vals[2], sizeof vals[2], "%d", tm.tm_year + 1900);
	snprintf(vals[3], sizeof vals[3], "%02d", tm.tm_mon + 1);
	snprintf(vals[4], sizeof vals[4], "%02d", tm.tm_mday);
	snprintf(vals[5], sizeof vals[5], "%02d", tm.tm_hour);
	snprintf(vals[6], sizeof vals[6], "%02d", tm.tm_min);
	snprintf(vals[7], sizeof vals[7], "%02d", tm.tm_sec);
	for (int i = 0; i < 8; i++) {
		char *next = replace_all(s, names[i], vals[i]);

		free(s);
		s = next;
	}
	return s;
}

#define PATH_PARTS 256

/* Splits path on '/' into parts (pointing into buf), dropping "" and ".". */
static size_t path_split(char *buf, char **parts)
{
	size_t n = 0;
	char *save = NULL;

	for (char *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save))
		if (strcmp(c, ".") != 0 && n < PATH_PARTS)
			parts[n++] = c;
	return n;
}

/* Joins parts after "/" (absolute) or nothing; "." when empty. */
static void path_join(char **parts, size_t n, int absolute, char *out, size_t size)
{
	size_t len = (size_t)snprintf(out, size, "%s", absolute ? "/" : "");

	for (size_t i = 0; i < n && len < size; i++)
		len += (size_t)snprintf(out + len, size - len, "%s%s", i ? "/" : "", parts[i]);
	if (out[0] == '\0')
		snprintf(out, size, ".");
}

/* Python's posixpath.normpath. */
static void path_norm(const char *path, char *out, size_t size)
{
	char buf[4096], *parts[PATH_PARTS], *kept[PATH_PARTS];
	size_t n, k = 0;
	int absolute = path[0] == '/';

	snprintf(buf, sizeof buf, "%s", path);
	n = path_split(buf, parts);
	for (size_t i = 0; i < n; i++) {
		int up = strcmp(parts[i], "..") == 0;

		if (up && k > 0 && strcmp(kept[k - 1], "..") != 0)
			k--;
		else if (!(up && absolute))
			kept[k++] = parts[i];
	}
	path_join(kept, k, absolute, out, size);
}

/*
 * get_save_image_path's check: the folder of normpath(prefix), joined to
 * base, must stay under base. Returns 1 and ComfyUI's message in msg when
 * it escapes.
 */
static int prefix_escapes(const char *base, const char *prefix, char *msg, size_t size)
{
	char norm[4096], full[8192], abs_dir[4096], common[4096], b1[4096], b2[4096];
	char *p1[PATH_PARTS], *p2[PATH_PARTS], *slash;
	size_t n1, n2, same = 0;

	path_norm(prefix, norm, sizeof norm);
	slash = strrchr(norm, '/');
	if (slash == NULL)
		norm[0] = '\0';
	else
		slash[slash == norm ? 1 : 0] = '\0';
	if (norm[0] == '/')
		snprintf(full, sizeof full, "%s", norm);
	else
		snprintf(full, sizeof full, "%s/%s", base, norm);
	path_norm(full, abs_dir, sizeof abs_dir);
	snprintf(b1, sizeof b1, "%s", base);
	snprintf(b2, sizeof b2, "%s", abs_dir);
	n1 = path_split(b1, p1);
	n2 = path_split(b2, p2);
	while (same < n1 && same < n2 && strcmp(p1[same], p2[same]) == 0)
		same++;
	path_join(p1, same, 1, common, sizeof common);
	path_norm(base, b1, sizeof b1);
	if (strcmp(common, b1) == 0)
		return 0;
	snprintf(msg, size,
		 "**** ERROR: Saving image outside the output folder is not allowed."
		 "\n full_output_folder: %s\n         output_dir: %s\n         commonpath: %s",
		 abs_dir, base, common);
	return 1;
}

static const struct nodes_frame save_path_frames[] = {
	{"ComfyUI/nodes.py", 1590, "save_images",
	 "full_output_folder, filename, counter, subfolder, filename_prefix = "
	 "folder_paths.get_save_image_path(filename_prefix, self.output_dir, "
	 "images[0].shape[1], images[0].shape[0])",
	 68},
	{"ComfyUI/folder_paths.py", 397, "get_save_image_path", "raise Exception(err)", 0},
};

static const struct nodes_frame save_write_frames[] = {
	{"ComfyUI/nodes.py", 1607, "save_images",
	 "img.save(os.path.join(full_output_folder, file), pnginfo=metadata, "
	 "compress_level=self.compress_level)",
	 0},
};

static void fail_save_path(struct node_ctx *ctx, int temp, const char *prefix,
			   const char *errbuf)
{
	const struct worker_settings *ws = node_settings();
	const char *base = temp ? ws->temp_dir : ws->output_dir;
	char msg[16384];

	if (!prefix_escapes(base, prefix, msg, sizeof msg))
		snprintf(msg, sizeof msg, "%s", errbuf);
	nodes_image_fail(ctx, "Exception", msg, save_path_frames,
			 sizeof save_path_frames / sizeof save_path_frames[0]);
}

static void fail_save_write(struct node_ctx *ctx, int errnum, const char *path)
{
	char *msg = xasprintf("[Errno %d] %s: '%s'", errnum, strerror(errnum), path);

	nodes_image_fail(ctx, errnum == ENOENT ? "FileNotFoundError" : "OSError", msg,
			 save_write_frames, 1);
	free(msg);
}

static struct json_object *saved_entry(const struct save_path *sp)
{
	struct json_object *o = json_object_new_object();

	json_put(o, "filename", json_str(sp->filename));
	json_put(o, "subfolder", json_str(sp->subfolder));
	json_put(o, "type", json_str(sp->type ? sp->type : "output"));
	return o;
}

/*
 * Writes each batch entry as <prefix>_<counter>_.png with the prompt as
 * tEXt "prompt", then sets {"images": [...]}. Ends the node.
 */
static void save_images(struct node_ctx *ctx, const char *prefix, int temp)
{
	const struct image *img = input_image(ctx, "images");
	const struct json_object *prompt = node_ctx_prompt(ctx);
	const char *keys[1] = {"prompt"}, *values[1] = {NULL};
	struct json_object *list;
	struct save_path sp;
	char errbuf[1024] = "";
	char *name;

	if (missing_image(ctx, img))
		return;
	name = nodes_image_prefix_vars(prefix, img->w, img->h);
	values[0] = prompt != NULL ? json_dumps(prompt) : NULL;
	list = json_object_new_array();
	for (int i = 0; i < img->n; i++) {
		memset(&sp, 0, sizeof sp);
		if (node_ctx_save_path(ctx, name, "png", temp, &sp, errbuf, sizeof errbuf) < 0) {
			fail_save_path(ctx, temp, name, errbuf);
			break;
		}
		if (png_write(sp.path, img, i, keys, values, values[0] ? 1 : 0) < 0) {
			fail_save_write(ctx, errno, sp.path);
			break;
		}
		json_object_array_add(list, saved_entry(&sp));
	}
	if (json_object_array_length(list) == (size_t)img->n) {
		struct json_object *ui = json_object_new_object();

		json_put(ui, "images", list);
		node_ctx_set_ui(ctx, ui);
		node_ctx_done(ctx);
	} else {
		json_object_put(list);
	}
	free((char *)values[0]);
	free(name);
}

static void run_save_image(struct node_ctx *ctx)
{
	save_images(ctx, node_ctx_str(ctx, "filename_prefix", "ComfyUI"), 0);
}

/*
 * PreviewImage's prefix: "ComfyUI_temp_" and five random lower-case
 * letters, drawn once per process (ComfyUI draws them once per node
 * instance, and keeps the instance for the life of the server).
 */
static const char *preview_prefix(void)
{
	static char prefix[32];

	if (prefix[0] == '\0') {
		unsigned char r[5];

		util_random(r, sizeof r);
		snprintf(prefix, sizeof prefix, "ComfyUI_temp_%c%c%c%c%c", 'a' + r[0] % 26,
			 'a' + r[1] % 26, 'a' + r[2] % 26, 'a' + r[3] % 26, 'a' + r[4] % 26);
	}
	return prefix;
}

static void run_preview_image(struct node_ctx *ctx)
{
	save_images(ctx, preview_prefix(), 1);
}

/* --- The class table. --- */

static const char *const image_out[] = {"IMAGE"};
static const char *const size_out[] = {"INT", "INT", "INT"};
static const char *const size_names[] = {"width", "height", "batch_size"};
static const char *const upscale_methods[] = {"nearest-exact", "bilinear", "area",
					      "bicubic",       "lanczos",  NULL};
static const char *const crop_methods[] = {"disabled", "center", NULL};

static const struct node_input empty_image_in[] = {
	{.name = "width", .type = "INT", .required = 1, .def = "512", .has_min = 1,
	 .has_max = 1, .min = 1, .max = 16384, .step = 1},
	{.name = "height", .type = "INT", .required = 1, .def = "512", .has_min = 1,
	 .has_max = 1, .min = 1, .max = 16384, .step = 1},
	/* ComfyUI declares no step for batch_size. */
	{.name = "batch_size", .type = "INT", .required = 1, .def = "1", .has_min = 1,
	 .has_max = 1, .min = 1, .max = 4096},
	{.name = "color", .type = "INT", .required = 1, .def = "0", .has_min = 1,
	 .has_max = 1, .min = 0, .max = 0xFFFFFF, .step = 1, .display = "color"},
};
static const struct node_input image_in[] = {
	{.name = "image", .type = "IMAGE", .required = 1},
};
static const struct node_input blur_in[] = {
	{.name = "image", .type = "IMAGE", .required = 1},
	{.name = "blur_radius", .type = "INT", .required = 1, .def = "1", .has_min = 1,
	 .has_max = 1, .min = 1, .max = 31, .step = 1},
	{.name = "sigma", .type = "FLOAT", .required = 1, .def = "1.0", .has_min = 1,
	 .has_max = 1, .min = 0.1, .max = 10.0, .step = 0.1},
};
static const struct node_input scale_in[] = {
	{.name = "image", .type = "IMAGE", .required = 1},
	{.name = "upscale_method", .type = "COMBO", .required = 1, .options = upscale_methods},
	{.name = "width", .type = "INT", .required = 1, .def = "512", .has_min = 1,
	 .has_max = 1, .min = 0, .max = 16384, .step = 1},
	{.name = "height", .type = "INT", .required = 1, .def = "512", .has_min = 1,
	 .has_max = 1, .min = 0, .max = 16384, .step = 1},
	{.name = "crop", .type = "COMBO", .required = 1, .options = crop_methods},
};
static const struct node_input save_in[] = {
	{.name = "images", .type = "IMAGE", .required = 1, .tooltip = "The images to save."},
	{.name = "filename_prefix", .type = "STRING", .required = 1, .def = "\"ComfyUI\"",
	 .tooltip = "The prefix for the file to save. This may include formatting information "
		    "such as %date:yyyy-MM-dd% or %Empty Latent Image.width% to include values "
		    "from nodes."},
};
static const struct node_input preview_in[] = {
	{.name = "images", .type = "IMAGE", .required = 1},
};
static const struct node_input any_in[] = {
	{.name = "source", .type = "*", .required = 1},
};

#define COUNT(a) (sizeof a / sizeof a[0])

static const char save_description[] = "Saves the input images to your ComfyUI output directory.";

/* ComfyUI's SaveImage and PreviewImage receive the prompt for PNG metadata. */
static const char *const save_hidden[] = {"prompt", "extra_pnginfo", NULL};

static const struct node_class image_classes[] = {
	{.name = "EmptyImage", .display_name = "EmptyImage", .category = "image",
	 .description = "", .python_module = "nodes", .inputs = empty_image_in,
	 .ninputs = COUNT(empty_image_in), .outputs = image_out, .noutputs = 1,
	 .run = run_empty_image},
	{.name = "ImageInvert", .display_name = "Invert Image", .category = "image",
	 .description = "", .python_module = "nodes", .inputs = image_in, .ninputs = 1,
	 .outputs = image_out, .noutputs = 1, .run = run_image_invert},
	/* V3 without a display name: /object_info says null. */
	{.name = "ImageBlur", .v3 = 1, .display_name = NULL, .category = "image/postprocessing",
	 .description = "", .python_module = "comfy_extras.nodes_post_processing",
	 .inputs = blur_in, .ninputs = COUNT(blur_in), .outputs = image_out, .noutputs = 1,
	 .run = run_image_blur},
	{.name = "ImageScale", .display_name = "Upscale Image", .category = "image/upscaling",
	 .description = "", .python_module = "nodes", .inputs = scale_in,
	 .ninputs = COUNT(scale_in), .outputs = image_out, .noutputs = 1,
	 .run = run_image_scale},
	{.name = "SaveImage", .hidden = save_hidden, .display_name = "Save Image", .category = "image",
	 .description = save_description, .python_module = "nodes", .inputs = save_in,
	 .ninputs = COUNT(save_in), .noutputs = 0, .output_node = 1, .run = run_save_image},
	/* PreviewImage subclasses SaveImage in Python, description included. */
	{.name = "PreviewImage", .hidden = save_hidden, .display_name = "Preview Image", .category = "image",
	 .description = save_description, .python_module = "nodes", .inputs = preview_in,
	 .ninputs = 1, .noutputs = 0, .output_node = 1, .run = run_preview_image},
	{.name = "GetImageSize", .display_name = "Get Image Size", .category = "image",
	 .description = "Returns width and height of the image, and passes it through unchanged.",
	 .python_module = "comfy_extras.nodes_images", .inputs = image_in, .ninputs = 1,
	 .outputs = size_out, .output_names = size_names, .noutputs = 3,
	 .run = run_get_image_size},
	{.name = "PreviewAny", .display_name = "Preview Any", .category = "utils",
	 .description = "", .python_module = "comfy_extras.nodes_preview_any", .inputs = any_in,
	 .ninputs = 1, .noutputs = 0, .output_node = 1, .run = run_preview_any},
};

void nodes_image_register(void)
{
	for (size_t i = 0; i < COUNT(image_classes); i++)
		nodes_register(&image_classes[i]);
}
