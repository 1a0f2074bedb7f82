/*
 * nodes_video.h - ComfyUI 0.3.64's video nodes that need no model weights
 * (comfy_extras/nodes_video.py): CreateVideo (an IMAGE batch and a frame
 * rate make a VIDEO) and SaveVideo (a VIDEO saved as an MP4, H.264, by an
 * ffmpeg child: video_enc.h), declared with ComfyUI's input names, types,
 * defaults, categories and module.
 *
 * SaveVideo's UI result is what ComfyUI's ui.PreviewVideo reports:
 * {"images": [{"filename", "subfolder", "type": "output"}], "animated": [true]}.
 */
#ifndef FNRUN_NODES_VIDEO_H
#define FNRUN_NODES_VIDEO_H

/* Registers CreateVideo and SaveVideo with nodes_register(); static tables. */
void nodes_video_register(void);

#endif
