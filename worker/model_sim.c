/*
 * model_sim.c - the sim model's node classes (see model_sim.h).
 *
 * SimSampler's lifecycle, one struct sim_run per running node (SimVideoSampler
 * runs the same machine with one frame per step: each tick renders the next
 * frame into the batch and sends progress frame/frames):
 *
 *   run() -- allocates, starts the timer --> SAMPLING
 *   SAMPLING -- on_tick, step < steps --> SAMPLING (progress sent)
 *   SAMPLING -- on_tick, last step --> done (image rendered)
 *   SAMPLING -- on_tick, interrupt requested, or cancel() --> interrupted
 *   SAMPLING -- on_tick, fail oom/error after step 1 --> failed
 *   SAMPLING -- on_tick, fail crash at half the steps --> SIGKILL to itself
 *   SAMPLING -- on_tick, fail hang at half the steps --> hung: the timer is
 *       closed, the node never ends, cancel() finds no state and does
 *       nothing; only killing the process ends it.
 *
 * sim_stop() is the one exit from SAMPLING: it detaches the run from the
 * node (node_ctx_set_state(NULL)) and closes the timer; the run is freed in
 * the close callback, which never touches the node.
 */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "image.h"
#include "log.h"
#include "model_sim.h"
#include "node.h"
#include "nodes_image.h"
#include "nodes_video.h"
#include "util.h"

/* Most frames SimVideoSampler makes (10 minutes at 60 fps). */
#define SIM_MAX_FRAMES 36000

enum sim_fail { SIM_FAIL_NONE, SIM_FAIL_OOM, SIM_FAIL_ERROR, SIM_FAIL_CRASH, SIM_FAIL_HANG };

/* Indexed by enum sim_fail; also SimSampler's combo. */
static const char *const sim_fail_names[] = {"none", "oom", "error", "crash", "hang", NULL};

struct sim_run {
	uv_timer_t timer;     /* one tick per step; timer.data is this run */
	struct node_ctx *ctx; /* borrowed; NULL once detached by sim_stop() */
	char *text;           /* the conditioning; owned */
	uint64_t seed;
	int width, height;    /* pixels */
	int steps;            /* total steps, >= 1 */
	int step;             /* steps done */
	int fail;             /* enum sim_fail */
	uint64_t step_ms;     /* per step; 0: re-armed at once */
	struct image *frames; /* SimVideoSampler: the batch being filled, one frame per
				 step (owned until handed to the output); NULL for stills */
};

static const char oom_message[] =
	"CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
	"79.11 GiB of which 1.06 GiB is free. Including non-PyTorch memory, this process "
	"has 78.04 GiB memory in use. Of the allocated memory 76.12 GiB is allocated by "
	"PyTorch, and 1.35 GiB is reserved by PyTorch but unallocated.\n"
	"This error means you ran out of memory on your GPU.\n\n"
	"TIPS: If the workflow worked before you might have accidentally set the "
	"batch_size to a large number.";

static const struct nodes_frame oom_frames[] = {
	{"ComfyUI/custom_nodes/sim/nodes.py", 74, "sample",
	 "x = self.model.denoise(x, sigma, conditioning)", 4},
	{"ComfyUI/custom_nodes/sim/model.py", 118, "denoise",
	 "h = torch.empty((x.shape[0], 4096, 64, 64), device=x.device, dtype=torch.float32)",
	 4},
};

static const struct nodes_frame error_frames[] = {
	{"ComfyUI/custom_nodes/sim/nodes.py", 71, "sample",
	 "raise RuntimeError(f\"sim sampler failed at step {step} of {steps}\")", 0},
};

static int sim_fail_parse(const char *name)
{
	for (int i = 0; name != NULL && sim_fail_names[i] != NULL; i++)
		if (strcmp(sim_fail_names[i], name) == 0)
			return i;
	return SIM_FAIL_NONE;
}

/* The worker's --fail wins over the input unless it is unset or "none". */
static int sim_fail_mode(struct node_ctx *ctx)
{
	const struct worker_settings *ws = node_settings();

	if (ws != NULL && ws->fail_mode != NULL && strcmp(ws->fail_mode, "none") != 0)
		return sim_fail_parse(ws->fail_mode);
	return sim_fail_parse(node_ctx_str(ctx, "fail", "none"));
}

static void on_close(uv_handle_t *h)
{
	struct sim_run *run = h->data;

	image_unref(run->frames);
	free(run->text);
	free(run);
}

/* Detaches run from its node and frees it once the timer has closed. */
static void sim_stop(struct sim_run *run)
{
	node_ctx_set_state(run->ctx, NULL);
	run->ctx = NULL;
	uv_timer_stop(&run->timer);
	uv_close((uv_handle_t *)&run->timer, on_close);
}

/* The step at which crash and hang strike. */
static int sim_half(const struct sim_run *run)
{
	return run->steps / 2 > 0 ? run->steps / 2 : 1;
}

static void sim_finish(struct sim_run *run)
{
	struct node_ctx *ctx = run->ctx;
	struct image *img = run->frames;
	struct value v = {0};

	run->frames = NULL;
	if (img == NULL)
		img = image_sim_render(run->text, run->seed, run->width, run->height, run->steps,
				       run->steps);
	sim_stop(run);
	if (img == NULL) {
		nodes_image_fail(ctx, "torch.OutOfMemoryError", oom_message, oom_frames, 2);
		return;
	}
	v.type = VAL_IMAGE;
	v.img = img;
	node_ctx_set_output(ctx, 0, &v);
	node_ctx_done(ctx);
}

/*
 * Acts out the failure mode after a step. Returns 1 when the run is over
 * (failed or hung; run is freed), 0 to go on.
 */
static int sim_misbehave(struct sim_run *run)
{
	struct node_ctx *ctx = run->ctx;
	char *msg;

	if (run->fail == SIM_FAIL_OOM && run->step == 1) {
		sim_stop(run);
		nodes_image_fail(ctx, "torch.OutOfMemoryError", oom_message, oom_frames, 2);
		return 1;
	}
	if (run->fail == SIM_FAIL_ERROR && run->step == 1) {
		msg = xasprintf("sim sampler failed at step %d of %d", run->step, run->steps);
		sim_stop(run);
		nodes_image_fail(ctx, "RuntimeError", msg, error_frames, 1);
		free(msg);
		return 1;
	}
	if (run->step != sim_half(run))
		return 0;
	if (run->fail == SIM_FAIL_CRASH) {
		/* What the kernel's OOM killer does to a real worker. */
		log_warn("sim: fail=crash, killing the worker node=%s step=%d/%d",
			 log_q(node_ctx_node_id(ctx)), run->step, run->steps);
		kill(getpid(), SIGKILL);
	}
	if (run->fail == SIM_FAIL_HANG) {
		log_warn("sim: fail=hang, the node will never end node=%s step=%d/%d",
			 log_q(node_ctx_node_id(ctx)), run->step, run->steps);
		sim_stop(run);
		return 1;
	}
	return 0;
}

static void on_tick(uv_timer_t *t)
{
	struct sim_run *run = t->data;
	struct node_ctx *ctx = run->ctx;

	/* A hung kernel ignores interrupts too, so hang mode never checks. */
	if (run->fail != SIM_FAIL_HANG && node_ctx_interrupt_requested(ctx)) {
		sim_stop(run);
		node_ctx_interrupted(ctx);
		return;
	}
	run->step++;
	if (run->frames != NULL)
		image_sim_frame(run->frames, run->step - 1, run->text, run->seed);
	node_ctx_progress(ctx, run->step, run->steps);
	if (sim_misbehave(run))
		return;
	if (run->step >= run->steps) {
		sim_finish(run);
		return;
	}
	if (run->step_ms == 0)
		uv_timer_start(&run->timer, on_tick, 0, 0);
}

/* A run with what both samplers read; the caller sets steps (and frames). Caller owns it. */
static struct sim_run *sim_run_new(struct node_ctx *ctx)
{
	const struct value *cond = node_ctx_input(ctx, "conditioning");
	const struct value *seed = node_ctx_input(ctx, "seed");
	const struct worker_settings *ws = node_settings();
	int64_t step_ms = node_ctx_int(ctx, "step_ms", -1);
	struct sim_run *run = xcalloc(1, sizeof *run);

	run->ctx = ctx;
	run->text = xstrdup(cond != NULL && cond->s != NULL ? cond->s : "");
	/* Seeds above INT64_MAX travel as their two's-complement bits. */
	run->seed = seed != NULL ? (uint64_t)seed->i : 0;
	run->width = (int)node_ctx_int(ctx, "width", 512);
	run->height = (int)node_ctx_int(ctx, "height", 512);
	run->fail = sim_fail_mode(ctx);
	run->step_ms = step_ms >= 0 ? (uint64_t)step_ms : ws != NULL ? ws->step_ms : 0;
	return run;
}

/* Starts the timer; from here sim_stop() is the only way out. Takes run. */
static void sim_start(struct node_ctx *ctx, struct sim_run *run)
{
	uv_timer_init(node_ctx_loop(ctx), &run->timer);
	run->timer.data = run;
	node_ctx_set_state(ctx, run);
	uv_timer_start(&run->timer, on_tick, run->step_ms, run->step_ms);
}

static void run_sampler(struct node_ctx *ctx)
{
	struct sim_run *run = sim_run_new(ctx);

	run->steps = (int)node_ctx_int(ctx, "steps", 20);
	run->steps = run->steps < 1 ? 1 : run->steps;
	sim_start(ctx, run);
}

/* frames when given, else seconds x fps rounded, at least 1 and at most SIM_MAX_FRAMES. */
static int video_frames(struct node_ctx *ctx)
{
	int64_t frames = node_ctx_int(ctx, "frames", 0);
	double n = node_ctx_float(ctx, "seconds", 2.0) * node_ctx_float(ctx, "fps", 24.0);

	if (frames <= 0)
		frames = n >= SIM_MAX_FRAMES ? SIM_MAX_FRAMES : (int64_t)(n + 0.5);
	return frames < 1 ? 1 : frames > SIM_MAX_FRAMES ? SIM_MAX_FRAMES : (int)frames;
}

/*
 * SimVideoSampler: the batch is allocated at once, as a GPU model reserves
 * its latents; one too large for memory fails as CUDA out of memory does.
 */
static void run_video_sampler(struct node_ctx *ctx)
{
	struct sim_run *run = sim_run_new(ctx);

	run->steps = video_frames(ctx);
	run->frames = image_new(run->width, run->height, run->steps);
	if (run->frames == NULL) {
		log_warn("sim: video batch too large node=%s frames=%d size=%dx%d",
			 log_q(node_ctx_node_id(ctx)), run->steps, run->width, run->height);
		free(run->text);
		free(run);
		nodes_image_fail(ctx, "torch.OutOfMemoryError", oom_message, oom_frames, 2);
		return;
	}
	sim_start(ctx, run);
}

static void cancel_sampler(struct node_ctx *ctx)
{
	struct sim_run *run = node_ctx_state(ctx);

	/* No state: the sampler hung and, like a stuck GPU kernel, ignores us. */
	if (run == NULL || run->fail == SIM_FAIL_HANG)
		return;
	sim_stop(run);
	node_ctx_interrupted(ctx);
}

static void run_text_encode(struct node_ctx *ctx)
{
	struct value v = {0};

	v.type = VAL_OPAQUE;
	v.s = xstrdup(node_ctx_str(ctx, "text", ""));
	node_ctx_set_output(ctx, 0, &v);
	node_ctx_done(ctx);
}

/* --- The class table. --- */

static const struct node_input encode_in[] = {
	{.name = "text", .type = "STRING", .required = 1, .def = "\"\"", .multiline = 1,
	 .tooltip = "The text to encode."},
};

static const struct node_input sampler_in[] = {
	{.name = "conditioning", .type = "CONDITIONING", .required = 1},
	{.name = "seed", .type = "INT", .required = 1, .def = "0", .has_min = 1, .has_max = 1,
	 .min = 0, .max = 18446744073709551615.0, .control_after_generate = 1,
	 .tooltip = "The random seed used for creating the picture."},
	{.name = "steps", .type = "INT", .required = 1, .def = "20", .has_min = 1,
	 .has_max = 1, .min = 1, .max = 10000},
	{.name = "width", .type = "INT", .required = 1, .def = "512", .has_min = 1,
	 .has_max = 1, .min = 16, .max = 4096, .step = 8},
	{.name = "height", .type = "INT", .required = 1, .def = "512", .has_min = 1,
	 .has_max = 1, .min = 16, .max = 4096, .step = 8},
	{.name = "step_ms", .type = "INT", .required = 1, .def = "-1", .has_min = 1,
	 .has_max = 1, .min = -1, .max = 600000,
	 .tooltip = "Milliseconds per step; -1 uses the worker's --step-ms."},
	{.name = "fail", .type = "COMBO", .required = 1, .def = "\"none\"",
	 .options = sim_fail_names,
	 .tooltip = "Fail like a real GPU worker: CUDA OOM, an error, a killed process "
		    "or a hang."},
};

static const struct node_input video_sampler_in[] = {
	{.name = "conditioning", .type = "CONDITIONING", .required = 1},
	{.name = "seed", .type = "INT", .required = 1, .def = "0", .has_min = 1, .has_max = 1,
	 .min = 0, .max = 18446744073709551615.0, .control_after_generate = 1,
	 .tooltip = "The random seed used for creating the video."},
	{.name = "seconds", .type = "FLOAT", .required = 1, .def = "2.0", .has_min = 1,
	 .has_max = 1, .min = 0.0, .max = 600.0, .step = 0.1,
	 .tooltip = "Length of the video; frames = seconds x fps unless frames is set."},
	{.name = "fps", .type = "FLOAT", .required = 1, .def = "24.0", .has_min = 1, .has_max = 1,
	 .min = 1.0, .max = 120.0, .step = 1.0},
	{.name = "width", .type = "INT", .required = 1, .def = "480", .has_min = 1,
	 .has_max = 1, .min = 16, .max = 4096, .step = 8},
	{.name = "height", .type = "INT", .required = 1, .def = "272", .has_min = 1,
	 .has_max = 1, .min = 16, .max = 4096, .step = 8},
	{.name = "step_ms", .type = "INT", .required = 1, .def = "-1", .has_min = 1,
	 .has_max = 1, .min = -1, .max = 600000,
	 .tooltip = "Milliseconds per frame; -1 uses the worker's --step-ms."},
	{.name = "fail", .type = "COMBO", .required = 1, .def = "\"none\"",
	 .options = sim_fail_names,
	 .tooltip = "Fail like a real GPU worker: CUDA OOM, an error, a killed process "
		    "or a hang."},
	{.name = "frames", .type = "INT", .required = 0, .def = "0", .has_min = 1, .has_max = 1,
	 .min = 0, .max = SIM_MAX_FRAMES, .tooltip = "Number of frames; 0 uses seconds x fps."},
};

static const char *const conditioning_out[] = {"CONDITIONING"};
static const char *const image_out[] = {"IMAGE"};

static const struct node_class sim_classes[] = {
	{.name = "SimTextEncode", .display_name = "Sim Text Encode", .category = "sim",
	 .description = "Encodes a text prompt for the sim sampler.",
	 .python_module = "custom_nodes.sim", .inputs = encode_in,
	 .ninputs = sizeof encode_in / sizeof encode_in[0], .outputs = conditioning_out,
	 .noutputs = 1, .run = run_text_encode},
	{.name = "SimSampler", .display_name = "Sim Sampler", .category = "sim",
	 .description = "Draws a deterministic picture from the conditioning and seed, "
			"one timed step at a time.",
	 .python_module = "custom_nodes.sim", .inputs = sampler_in,
	 .ninputs = sizeof sampler_in / sizeof sampler_in[0], .outputs = image_out,
	 .noutputs = 1, .run = run_sampler, .cancel = cancel_sampler},
	{.name = "SimVideoSampler", .display_name = "Sim Video Sampler", .category = "sim",
	 .description = "Draws a deterministic moving scene from the conditioning and seed, "
			"one timed frame at a time, as an IMAGE batch.",
	 .python_module = "custom_nodes.sim", .inputs = video_sampler_in,
	 .ninputs = sizeof video_sampler_in / sizeof video_sampler_in[0], .outputs = image_out,
	 .noutputs = 1, .run = run_video_sampler, .cancel = cancel_sampler},
};

void model_sim_register(void)
{
	for (size_t i = 0; i < sizeof sim_classes / sizeof sim_classes[0]; i++)
		nodes_register(&sim_classes[i]);
	nodes_image_register();
	nodes_video_register();
}
