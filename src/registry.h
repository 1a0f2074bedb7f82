/*
 * registry.h - the registry: functions users call, the models that serve
 * them, and the optional server section (docs/registry.md).
 *
 * A registry is loaded from one YAML file into a fresh struct; loading
 * never touches another registry, so a reload builds a new one and the
 * caller swaps it in (jobs in flight keep the version they started on).
 * A loaded registry is immutable and reference-counted: every pointer
 * handed out is borrowed and valid while the caller holds a reference
 * (registry_ref(), registry_unref()); registry_load() returns one.
 *
 * Invariants of a loaded registry:
 *  1. Every model's function exists; its quality is a key of that function's
 *     qualities or REG_QUALITY_AUTO.
 *  2. Fallback chains stay within one function and never cycle.
 *  3. Every bind names a param of the model's function and a node of the
 *     model's workflow that has an `inputs` object.
 *  4. Every function has at least one quality; default_quality indexes one.
 *  5. An external model has 1..64 distinct model server URLs (urls, nurls),
 *     each accepted by url_parse_model_server() and stored as its
 *     normalised base; max_instances <= nurls (one runner per URL) and
 *     min_instances <= max_instances for every model.
 *
 * The catalog (registry_catalog) is what users see: it never names models,
 * images, commands or runtimes.
 *
 * Structs below are read-only for callers. Fields marked private are used
 * by the registry's own files only (registry*.c, registry_internal.h).
 */
#ifndef FNRUN_REGISTRY_H
#define FNRUN_REGISTRY_H

#include <json-c/json.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

/* A model whose tier is assigned later from measured speed and memory. */
#define REG_QUALITY_AUTO (-1)
/* Most model server URLs an external model may list (`urls:`). */
#define REG_MAX_URLS 64

enum reg_type { REG_STRING, REG_INT, REG_FLOAT, REG_BOOL, REG_ENUM };

/* Phases that may carry a plain-language message (`messages:`). */
enum reg_phase {
	REG_PHASE_QUEUED,
	REG_PHASE_PREPARING,
	REG_PHASE_RUNNING,
	REG_PHASE_FINISHING,
	REG_PHASE_DONE,
	REG_PHASE_FAILED,
	REG_PHASE_CANCELLED,
	REG_PHASE_COUNT
};

enum reg_output { REG_OUTPUT_IMAGE, REG_OUTPUT_AUDIO, REG_OUTPUT_VIDEO };

enum reg_runtime { REG_RUNTIME_PROCESS, REG_RUNTIME_DOCKER, REG_RUNTIME_EXTERNAL };

struct reg_param {
	char *name;
	int type;                /* enum reg_type */
	int required;            /* 1: a request must give it */
	int random;              /* 1: default is a random integer in [0, 2^53) */
	struct json_object *def; /* default value of the param's type, or NULL */
	int has_min, has_max;    /* int and float params only */
	int64_t min_int, max_int; /* int bounds, inclusive */
	double min_num, max_num;  /* float bounds, inclusive */
	int64_t max_length;      /* string: most characters (code points); 0: none */
	char **options;          /* enum: allowed values, file order */
	size_t noptions;
	char *description;       /* or NULL */
};

struct reg_quality {
	char *key;            /* e.g. "high" */
	char *label;          /* e.g. "Maximum Detail" */
	int64_t typical_lo_s; /* typical run time, seconds, lower end */
	int64_t typical_hi_s; /* typical run time, seconds, upper end */
	char *description;    /* or NULL */
};

/* Private: enabled models of one quality, file order. */
struct reg_route {
	const struct reg_model **models;
	size_t n;
};

/*
 * `calibration:` of a function: the request run `runs` times on a model of
 * quality auto to measure its run time and GPU memory.
 */
#define REG_CALIBRATION_MAX_RUNS 20
struct reg_calibration {
	struct json_object *params; /* the params given (checked at load); NULL: none or bad */
	int64_t runs;               /* 1..REG_CALIBRATION_MAX_RUNS, default 3 */
	int given;                  /* 1: the file has the key */
};

struct reg_function {
	char *name;                      /* e.g. "Create Image" */
	char *description;               /* or NULL */
	int output;                      /* enum reg_output, or -1 when not given */
	struct reg_param *params;        /* file order */
	size_t nparams;
	struct reg_quality *qualities;   /* the ladder: cheapest first */
	size_t nqualities;               /* >= 1 */
	int default_quality;             /* index into qualities */
	int reduce_quality_on_oom;       /* 1: an out-of-memory job retries one quality down */
	char *messages[REG_PHASE_COUNT]; /* NULL: the caller's generic text */
	struct reg_route *routes;        /* private: one per quality */
	struct reg_calibration calibration; /* for models of quality auto */
};

/*
 * A rollout rule (`rollout:`): the model is a variant tried against a
 * baseline; when its failure rate over its last `window` jobs passes the
 * baseline's by more than max_delta, with at least min_jobs of them, its
 * weight goes to 0 and its jobs go to the baseline.
 */
struct reg_rollout {
	const struct reg_model *baseline; /* same function, not this model */
	double max_delta;                 /* 0..1, default 0.05 */
	int64_t min_jobs;                 /* default 20 */
	int64_t window;                   /* last jobs counted, default 200 */
};

/* One bind: the param's value is written to workflow[node].inputs[input]. */
struct reg_bind {
	char *param;
	char *node;
	char *input;
};

struct reg_model {
	char *id;
	const struct reg_function *function; /* same registry */
	int quality;               /* index into function->qualities or REG_QUALITY_AUTO */
	int runtime;               /* enum reg_runtime */
	char **command;            /* argv, NULL-terminated, "{port}" and
				    * "{bindir}", "{configdir}" not yet replaced; NULL if none */
	size_t ncommand;
	char *image;               /* docker: image reference */
	char *url;                 /* external: the first of urls, e.g.
				    * "http://127.0.0.1:8188"; NULL otherwise */
	char **urls;               /* external: the model servers' base URLs,
				    * normalised by url_parse_model_server()
				    * ("http://HOST:PORT", no trailing slash), file
				    * order, distinct; one runner per URL. From
				    * `urls:`, or `url:` as a list of one. NULL
				    * for other runtimes. */
	size_t nurls;              /* 1..REG_MAX_URLS for external, else 0 */
	char **env;                /* "NAME=value" strings */
	size_t nenv;
	char *workflow_path;       /* as resolved against the registry's dir */
	struct json_object *workflow; /* ComfyUI API-format template; never
				       * modify it, registry_bind() copies */
	struct reg_bind *binds;
	size_t nbinds;
	int64_t gpu_memory;        /* bytes reserved while running; 0: none */
	int64_t priority;          /* 0..1000; lower is evicted first */
	int64_t idle_timeout_ms;   /* stop after this long idle */
	int64_t start_timeout_ms;  /* start to ready, at most */
	int64_t step_timeout_ms;   /* no progress for this long means hung */
	int64_t min_instances;
	int64_t max_instances;     /* external: default nurls, at most nurls */
	const struct reg_model *fallback; /* same function, or NULL */
	int64_t weight;            /* A/B weight among a tier's models, default 100 */
	int weight_set;            /* 1: the file gave `weight:`; 0: the default */
	int command_outdir;        /* 1: the command passes {outdir}: outputs are taken from there */
	char *version;             /* `version:` (operators see it with each job), or NULL */
	struct reg_rollout *rollout; /* or NULL */
	int enabled;
	/*
	 * `free_after_job:` POST /free after each job its model server ran:
	 * unload its models, and drop its execution cache too. Both 0: none.
	 */
	int free_unload_models;
	int free_memory;
	int prewarm;               /* `prewarm:` start and keep runners by predicted demand */
	int64_t target_wait_ms;    /* `target_wait:` autoscale on queue wait; 0: off */
};

/*
 * Quotas of one API key (server.quotas): 0 means no limit; in a per-key
 * override, -1 means "as the default".
 */
struct reg_quota {
	int64_t running;             /* its jobs queued or running at once */
	int64_t per_minute;          /* its submits in any 60 s */
	int64_t gpu_seconds_per_day; /* run time of its jobs on GPU models, per UTC day */
};

struct reg_key_quota {
	char *name;                  /* the key's name (fnrun keys create --name) */
	struct reg_quota q;
};

/* The optional `server:` section; defaults filled, flags override it. */
struct reg_server {
	char *listen;          /* "HOST:PORT", default "127.0.0.1:8180" */
	char *data;            /* data directory, default "./data" */
	int log_level;         /* enum log_level, default LOG_INFO */
	int64_t gpu_vram;      /* bytes per GPU; 0: detect */
	int64_t gpu_devices;   /* GPU count; 0: detect */
	char *docker_socket;   /* or NULL: $DOCKER_HOST or the default */
	char *models_dir;      /* shared read-only model dir, or NULL */
	char *cache_dir;       /* cache volume dir, or NULL */
	char *store;           /* a postgres:// URL (several nodes), or NULL: DATA/fnrun.db */
	char *node;            /* this node's name, or NULL: the host name */
	int64_t lease_ms;      /* a claim's lease on a shared store, default 10 s */
	int64_t max_queue;     /* jobs queued at once, default 10000 */
	int64_t max_body;      /* request body bytes, default 1 MiB */
	int64_t max_json_depth; /* default 32 */
	int64_t max_watchers;  /* SSE + WebSocket watchers, default 10000 */
	char **hosts;          /* names the API answers to besides IP literals and localhost */
	size_t nhosts;
	struct reg_quota quota;        /* every key's, unless overridden */
	struct reg_key_quota *key_quotas; /* per key name, file order */
	size_t nkey_quotas;
};


/* Private: use the accessors below. */
struct registry {
	atomic_size_t refs;            /* references held; freed when it drops to 0 */
	char *path;                    /* the file it was loaded from */
	struct reg_function *functions; /* file order */
	size_t nfunctions;
	struct reg_model *models;      /* file order */
	size_t nmodels;
	struct reg_server server;
};

/*
 * Loads and validates the registry at path (a workflow path is relative to
 * the registry file's directory). Returns a new registry, or NULL with the
 * first error (in file order) in err: ERR_INVALID for a bad file,
 * "FILE:LINE:COL: path.to.key: what is wrong; what is allowed"; ERR_IO when
 * it cannot be read. The result holds one reference, the caller's; drop it
 * with registry_unref() (or registry_free()).
 */
/*
 * The quotas of the key named name (NULL or unknown: the default), each
 * field resolved (never -1).
 */
struct reg_quota registry_quota(const struct registry *r, const char *name);

struct registry *registry_load(const char *path, struct err *err);

/*
 * The registry `fnrun serve` loads without --config: examples/registry.yaml
 * beside the binary (its ../examples), else that path from the current
 * directory. Caller frees.
 */
char *registry_default_path(void);
/* 1 when s is a valid node name (server.node, --node): 1-64 of [A-Za-z0-9._-]. */
int registry_node_name_ok(const char *s);

/*
 * Validates the registry at path and writes every error, one per line in
 * file order, to out (NULL: none written). Returns the number of errors;
 * 0 means valid. Backs `fnrun check FILE`.
 */
int registry_check(const char *path, FILE *out);

/*
 * Reference counting, for holders that must outlive a reload (a running
 * job's model, a runner's model): take a reference where the pointer is
 * stored, drop it where it is let go. The count is atomic, so references
 * may be taken and dropped on any thread; the registry itself is
 * immutable.
 *
 * registry_ref() adds a reference and returns r (NULL gives NULL).
 * registry_unref() drops one; the last one frees r and everything it owns,
 * so every pointer borrowed from r becomes invalid. NULL is a no-op.
 * Dropping more references than were taken is a use after free.
 */
struct registry *registry_ref(struct registry *r);
void registry_unref(struct registry *r);

/*
 * The same as registry_unref(): kept for callers that hold the one
 * reference registry_load() gave them, for whom it frees r as before. With
 * other references still held, r stays alive until the last is dropped.
 */
void registry_free(struct registry *r);

/* Lookups. Borrowed; NULL when missing or out of range. */
const struct reg_function *registry_function(const struct registry *r, const char *name);
const struct reg_model *registry_model(const struct registry *r, const char *id);
size_t registry_function_count(const struct registry *r);
const struct reg_function *registry_function_at(const struct registry *r, size_t i);
size_t registry_model_count(const struct registry *r);
const struct reg_model *registry_model_at(const struct registry *r, size_t i);
const struct reg_server *registry_server(const struct registry *r);

/*
 * The index of quality key in f's ladder, or -1 when f has none of that
 * name. A NULL key gives the function's default quality.
 */
int registry_quality_index(const struct reg_function *f, const char *key);
/* The next cheaper quality than index q, or -1 at the bottom of the ladder. */
int registry_quality_lower(const struct reg_function *f, int q);

/*
 * The enabled models serving quality index q of f, in file order, into
 * *models (borrowed array). Returns their count: 0 when none serve it or q
 * is out of range. Models of quality `auto` are not listed.
 */
size_t registry_route(const struct registry *r, const struct reg_function *f, int q,
		      const struct reg_model *const **models);

/* The plain-language message of a phase, or NULL when f gives none. */
const char *registry_message(const struct reg_function *f, int phase);

/*
 * One command argument with its placeholders replaced: {port}, {bindir},
 * {configdir}, {outdir} (NULL: left empty; process runtime only). Caller
 * frees the result.
 */
char *registry_expand(const char *arg, int port, const char *bindir, const char *configdir,
		      const char *outdir);
/* "queued", "preparing", ...; NULL when out of range. */
const char *registry_phase_name(int phase);

/*
 * Checks a request's params against f: params must be an object (NULL is
 * taken as {}); no unknown params; required ones present; JSON types strict
 * (an int param rejects "12" and 1.5, a float accepts integers); ranges,
 * lengths and options respected. A JSON null counts as not given.
 * On success *out is a new object with the given values and the defaults
 * (a `random` default draws an integer in [0, 2^53)), in f's param order;
 * caller owns it (json_object_put). On failure returns -1 with ERR_INVALID,
 * e.g. "params.width: must be an integer from 256 to 2048", and *out NULL.
 */
int registry_validate_params(const struct reg_function *f, const struct json_object *params,
			     struct json_object **out, struct err *err);
/*
 * The validated params one calibration run of f sends: its
 * `calibration.params` with f's defaults, a `random` default drawn anew
 * each call. A new object (json_object_put), or NULL when f cannot be
 * calibrated (a required param without a value).
 */
struct json_object *registry_calibration_params(const struct reg_function *f);

/*
 * Deep-copies m's workflow template into *workflow and writes each bound
 * param present in validated (from registry_validate_params) at its path.
 * The template is left unchanged. Caller owns *workflow (json_object_put).
 * Returns 0, or -1 with ERR_INVALID when validated is not an object.
 */
int registry_bind(const struct reg_model *m, const struct json_object *validated,
		  struct json_object **workflow, struct err *err);

/*
 * The public catalog for GET /api/functions:
 * {"functions": [{name, description?, output?, params: {NAME: {type,
 * required, default? | random: true, min?, max?, max_length?, options?,
 * description?}}, qualities: [{key, label, typical_seconds: [lo, hi],
 * available}], default_quality}]}. Names no model, image, command or
 * runtime. Caller owns the result (json_object_put).
 */
struct json_object *registry_catalog(const struct registry *r);

/*
 * 1 when a request's Host (its name, port removed) is one the API answers:
 * an IP literal, "localhost", or one of server.hosts (case ignored). Any
 * other name is what a DNS rebinding page sends.
 */
int registry_host_ok(const struct registry *r, const char *host, size_t len);

#endif
