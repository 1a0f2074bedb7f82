/*
 * modelinfo.h - what each model's server says of its node classes (GET
 * /object_info), kept for the catalog (GET /api/functions), the
 * operators' view of a model (GET /api/admin/models/{id}/nodes) and so for
 * `fnrun docs`.
 *
 * A model's server is read when the model's first runner of this gateway
 * run is ready, and again when a runner of a changed definition is ready
 * (a reload): asynchronously on the loop (httpc), the answer capped at
 * MODELINFO_MAX_BYTES, then parsed and cut down to a summary (nodeinfo.h)
 * on the thread pool, and saved under the data directory
 * (DATA/nodes/<model id>.json). Saved summaries are read at the first use
 * after a start, so they are there before any runner starts. A read that
 * fails (no answer, too large, not JSON) keeps what was known, and says
 * why in a warning.
 *
 * Loop thread only. The summaries live until the process exits.
 */
#ifndef FNRUN_MODELINFO_H
#define FNRUN_MODELINFO_H

#include <stddef.h>

struct json_object;
struct reg_model;
struct registry;

#define MODELINFO_MAX_BYTES (32u << 20) /* a /object_info answer; more is refused */
#define MODELINFO_TIMEOUT_MS 60000      /* to read it */
#define MODELINFO_MAX_FILE (16u << 20)  /* a saved summary; a larger file is not read */

/*
 * A runner of m is ready at base_url ("http://HOST:PORT"): reads its
 * server's node classes unless this definition of m was read already in
 * this run, or is being read. m and base_url are borrowed for the call.
 */
void modelinfo_runner_ready(const struct reg_model *m, const char *base_url);

/*
 * Fills in what r leaves empty in catalog (registry_catalog(r)) from the
 * summaries known (nodeinfo_enrich()). Never names a model.
 */
void modelinfo_enrich(struct json_object *catalog, const struct registry *r);

/*
 * The operators' view of model id of r: {model, function, quality,
 * version, runtime, enabled, fetched_at, classes, names, names_cut,
 * missing, nodes: [{node, class_type, known, display_name?, category?,
 * description?, inputs, binds: [{param, input}]}]}; fetched_at, classes,
 * names and missing are null, and each node's known null, until its
 * server was read. NULL when r has no such model. Caller owns the result.
 */
struct json_object *modelinfo_nodes_view(const struct registry *r, const char *id);

#endif
