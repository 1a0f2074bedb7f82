/*
 * nodes_video.c - CreateVideo and SaveVideo (see nodes_video.h).
 *
 * CreateVideo ends synchronously: its VIDEO value is the IMAGE batch (one
 * more reference, no copy) and the frame rate. SaveVideo is asynchronous:
 * run() picks the file name as ComfyUI's get_save_image_path does (the
 * prefix's %width%, %date% ... expanded as SaveImage does) and
 * starts the encoder; the node ends in on_encoded(), after ffmpeg has
 * exited. cancel() kills ffmpeg, and the node ends interrupted once it has
 * exited and its temp file is gone, so an interrupted prompt leaves neither
 * a process nor a partial file.
 *
 * The declarations copy ComfyUI 0.3.64's comfy_extras/nodes_video.py (V3
 * nodes): SaveVideo's format is "auto" or "mp4" and its codec "auto" or
 * "h264", which is all VideoFromComponents.save_to() writes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "json.h" /* ours, not json-c's */
#include "log.h"
#include "node.h"
#include "nodes_image.h"
#include "nodes_video.h"
#include "util.h"
#include "video_enc.h"

/* A running SaveVideo: node_ctx_state() while ffmpeg runs. */
struct save_video {
	struct node_ctx *ctx;   /* borrowed; the node outlives the encoder's end */
	struct video_enc *enc;  /* NULL once it has ended */
	struct save_path sp;
};

static const struct nodes_frame save_frames[] = {
	{"ComfyUI/comfy_extras/nodes_video.py", 106, "execute",
	 "video.save_to(", 0},
};

static const struct nodes_frame create_frames[] = {
	{"ComfyUI/comfy_extras/nodes_video.py", 136, "execute",
	 "VideoFromComponents(VideoComponents(images=images, audio=audio, "
	 "frame_rate=Fraction(fps)))",
	 0},
};

static void run_create_video(struct node_ctx *ctx)
{
	const struct value *images = node_ctx_input(ctx, "images");
	struct value v = {0};

	if (images == NULL || images->type != VAL_IMAGE || images->img == NULL) {
		nodes_image_fail(ctx, "RuntimeError", "the images input is missing", create_frames,
				 1);
		return;
	}
	v.type = VAL_VIDEO;
	v.img = image_ref(images->img);
	v.f = node_ctx_float(ctx, "fps", 30.0);
	node_ctx_set_output(ctx, 0, &v);
	node_ctx_done(ctx);
}

/* {"images": [{filename, subfolder, type}], "animated": [true]}, as ui.PreviewVideo. */
static struct json_object *preview_video(const struct save_path *sp)
{
	struct json_object *ui = json_object_new_object(), *list = json_object_new_array();
	struct json_object *item = json_object_new_object(), *animated = json_object_new_array();

	json_put(item, "filename", json_str(sp->filename));
	json_put(item, "subfolder", json_str(sp->subfolder));
	json_put(item, "type", json_str(sp->type ? sp->type : "output"));
	json_object_array_add(list, item);
	json_object_array_add(animated, json_object_new_boolean(1));
	json_put(ui, "images", list);
	json_put(ui, "animated", animated);
	return ui;
}

static void on_encoded(void *arg, int outcome, const char *message)
{
	struct save_video *s = arg;
	struct node_ctx *ctx = s->ctx;

	node_ctx_set_state(ctx, NULL);
	s->enc = NULL; /* it frees itself */
	if (outcome == VIDEO_ENC_OK) {
		node_ctx_set_ui(ctx, preview_video(&s->sp));
		node_ctx_done(ctx);
	} else if (outcome == VIDEO_ENC_INTERRUPTED) {
		node_ctx_interrupted(ctx);
	} else {
		log_warn("SaveVideo failed node=%s error=%s", log_q(node_ctx_node_id(ctx)),
			 log_q(message));
		nodes_image_fail(ctx, "RuntimeError", message ? message : "encoding failed",
				 save_frames, 1);
	}
	free(s);
}

/* Starts the encoder into s->sp.path; 0, or -1 after failing the node. */
static int start_encoder(struct node_ctx *ctx, struct save_video *s, const struct value *video)
{
	const struct json_object *prompt = node_ctx_prompt(ctx);
	char *prompt_json = prompt != NULL ? json_dumps(prompt) : NULL;
	struct video_enc_opts o = {.frames = video->img, .fps = video->f, .path = s->sp.path,
				   .prompt_json = prompt_json, .on_end = on_encoded, .arg = s};
	struct err err = {0};

	s->enc = video_enc_start(node_ctx_loop(ctx), &o, &err);
	free(prompt_json);
	if (s->enc != NULL)
		return 0;
	nodes_image_fail(ctx, err.code == ERR_NOT_FOUND ? "FileNotFoundError" : "RuntimeError",
			 err.msg, save_frames, 1);
	return -1;
}

static void run_save_video(struct node_ctx *ctx)
{
	const struct value *video = node_ctx_input(ctx, "video");
	const char *prefix = node_ctx_str(ctx, "filename_prefix", "video/ComfyUI");
	struct save_video *s;
	char errbuf[1024] = "", *name;
	int rc;

	if (video == NULL || video->type != VAL_VIDEO || video->img == NULL) {
		nodes_image_fail(ctx, "RuntimeError", "the video input is missing", save_frames, 1);
		return;
	}
	s = xcalloc(1, sizeof *s);
	s->ctx = ctx;
	name = nodes_image_prefix_vars(prefix, video->img->w, video->img->h);
	rc = node_ctx_save_path(ctx, name, "mp4", 0, &s->sp, errbuf, sizeof errbuf);
	free(name);
	if (rc < 0) {
		nodes_image_fail(ctx, "Exception", errbuf, save_frames, 1);
		free(s);
		return;
	}
	if (start_encoder(ctx, s, video) < 0) {
		free(s);
		return;
	}
	node_ctx_set_state(ctx, s);
}

static void cancel_save_video(struct node_ctx *ctx)
{
	struct save_video *s = node_ctx_state(ctx);

	/* on_encoded() follows once ffmpeg has exited, and ends the node. */
	if (s != NULL && s->enc != NULL)
		video_enc_cancel(s->enc);
}

/* --- The class table. --- */

static const char *const video_out[] = {"VIDEO"};
static const char *const formats[] = {"auto", "mp4", NULL};
static const char *const codecs[] = {"auto", "h264", NULL};
static const char *const save_hidden[] = {"prompt", "extra_pnginfo", NULL};

static const struct node_input create_in[] = {
	{.name = "images", .type = "IMAGE", .required = 1,
	 .tooltip = "The images to create a video from."},
	{.name = "fps", .type = "FLOAT", .required = 1, .def = "30.0", .has_min = 1, .has_max = 1,
	 .min = 1.0, .max = 120.0, .step = 1.0},
	{.name = "audio", .type = "AUDIO", .required = 0,
	 .tooltip = "The audio to add to the video."},
};

static const struct node_input save_in[] = {
	{.name = "video", .type = "VIDEO", .required = 1, .tooltip = "The video to save."},
	{.name = "filename_prefix", .type = "STRING", .required = 1, .def = "\"video/ComfyUI\"",
	 .tooltip = "The prefix for the file to save. This may include formatting information "
		    "such as %date:yyyy-MM-dd% or %Empty Latent Image.width% to include values "
		    "from nodes."},
	{.name = "format", .type = "COMBO", .required = 1, .def = "\"auto\"", .options = formats,
	 .tooltip = "The format to save the video as."},
	{.name = "codec", .type = "COMBO", .required = 1, .def = "\"auto\"", .options = codecs,
	 .tooltip = "The codec to use for the video."},
};

static const struct node_class video_classes[] = {
	{.name = "CreateVideo", .v3 = 1, .display_name = "Create Video", .category = "image/video",
	 .description = "Create a video from images.", .python_module = "comfy_extras.nodes_video",
	 .inputs = create_in, .ninputs = sizeof create_in / sizeof create_in[0],
	 .outputs = video_out, .noutputs = 1, .run = run_create_video},
	{.name = "SaveVideo", .v3 = 1, .hidden = save_hidden, .display_name = "Save Video",
	 .category = "image/video",
	 .description = "Saves the input images to your ComfyUI output directory.",
	 .python_module = "comfy_extras.nodes_video", .inputs = save_in,
	 .ninputs = sizeof save_in / sizeof save_in[0], .noutputs = 0, .output_node = 1,
	 .run = run_save_video, .cancel = cancel_save_video},
};

void nodes_video_register(void)
{
	for (size_t i = 0; i < sizeof video_classes / sizeof video_classes[0]; i++)
		nodes_register(&video_classes[i]);
}
