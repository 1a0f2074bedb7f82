/*
 * model_sim.h - the sim model: a fake text-to-image pipeline that makes
 * real PNG-able pictures over N timed steps, for tests and benchmarks.
 *
 * SimTextEncode turns text into CONDITIONING; SimSampler "samples" with a
 * libuv timer, reports progress per step and returns image_sim_render()'s
 * picture. Its fail input (or the worker's --fail setting) makes it fail
 * the ways real GPU workers do: CUDA OOM, a RuntimeError, a process killed
 * mid-run, or a hang that ignores interrupts. SimVideoSampler does the same
 * one frame per step (image_sim_frame(): a panning camera) and returns the
 * frames as an IMAGE batch for CreateVideo and SaveVideo (nodes_video.h).
 */
#ifndef FNRUN_MODEL_SIM_H
#define FNRUN_MODEL_SIM_H

/*
 * Registers SimTextEncode, SimSampler and SimVideoSampler, then
 * nodes_image_register() and nodes_video_register().
 */
void model_sim_register(void);

#endif
