/*
 * runtime_external.c - the external runtime: a model server that already
 * runs at a URL (an existing ComfyUI, say). Nothing is started or
 * stopped; an instance stands for one URL of the model (`url:` or one of
 * `urls:`), so that the runner can probe it, follow its /ws and send it
 * jobs. on_started and on_exit come from a 0 ms timer, so they never run
 * inside runtime_start or runtime_stop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "log.h"
#include "registry.h"
#include "runtime.h"
#include "server.h"
#include "url.h"
#include "util.h"

struct ext_inst {
	struct runtime_inst base; /* first: the runner sees only this */
	uv_timer_t timer;         /* the start notice, then the exit notice */
	int stopping;
};

static void on_closed(uv_handle_t *h)
{
	struct ext_inst *x = h->data;

	x->base.cb.on_exit(&x->base, -1, "stopped", x->base.ud);
	free(x);
}

static void on_notice(uv_timer_t *t)
{
	struct ext_inst *x = t->data;

	if (x->stopping) {
		uv_close((uv_handle_t *)&x->timer, on_closed);
		return;
	}
	x->base.started = 1;
	x->base.cb.on_started(&x->base, x->base.ud);
}

static struct runtime_inst *ext_start(const struct runtime_spec *spec,
				      const struct runtime_cbs *cb, void *ud, struct err *err)
{
	struct ext_inst *x;
	struct url u;

	if (spec->url == NULL || url_parse_model_server(spec->url, &u, err) < 0) {
		err_set(err, ERR_INVALID, "model %s has no usable url", spec->model->id);
		return NULL;
	}
	x = xcalloc(1, sizeof *x);
	x->base.rt = &runtime_external;
	x->base.cb = *cb;
	x->base.ud = ud;
	snprintf(x->base.host, sizeof x->base.host, "%s", u.host);
	x->base.port = u.port;
	uv_timer_init(server.loop, &x->timer);
	x->timer.data = x;
	uv_timer_start(&x->timer, on_notice, 0, 0);
	return &x->base;
}

static void ext_stop(struct runtime_inst *inst, uint64_t grace_ms)
{
	struct ext_inst *x = (struct ext_inst *)inst;

	if (x->stopping)
		return;
	x->stopping = 1;
	uv_timer_start(&x->timer, on_notice, 0, 0);
}

const struct runtime runtime_external = {
	.name = "external",
	.start = ext_start,
	.stop = ext_stop,
	.health = runtime__health_http,
	.log_tail = NULL, /* its output is not ours to read */
};
