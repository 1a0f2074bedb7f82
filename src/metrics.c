/*
 * metrics.c - labelled counters and fixed-bucket histograms in the
 * Prometheus text format, and the operator events ring; see metrics.h.
 *
 * Storage: one series per (family, label values), in a chained hash table
 * of fixed size and on its family's list in creation order, so a scrape
 * walks the families in table order and each family's series once. A
 * series renders its label text once, when it is made; a scrape only
 * copies it. Histogram buckets are kept non-cumulative and summed while
 * rendering.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "buf.h"
#include "json.h"
#include "metrics.h"
#include "util.h"

enum label_bit {
	LB_FUNCTION = 1 << 0,
	LB_QUALITY = 1 << 1,
	LB_MODEL = 1 << 2,
	LB_CODE = 1 << 3,
	LB_STATUS = 1 << 4,
	LB_FALLBACK = 1 << 5,
};
#define NLABELS 6
#define FQ (LB_FUNCTION | LB_QUALITY)

static const char *const label_names[NLABELS] = {"function", "quality", "model",
						 "code",     "status",  "fallback"};

struct family {
	const char *name; /* the sample name (counters end in _total) */
	const char *help;
	int labels;       /* enum label_bit mask: the labels this family may carry */
};

/* Indexed by enum metrics_counter. */
static const struct family counters[MC_COUNT] = {
	{"fnrun_jobs_submitted_total", "Jobs accepted (202).", FQ},
	{"fnrun_jobs_completed_total", "Jobs completed, by the model that made them.",
	 FQ | LB_MODEL},
	{"fnrun_jobs_failed_total", "Jobs failed, by error code and the model of the last attempt.",
	 FQ | LB_MODEL | LB_CODE},
	{"fnrun_jobs_cancelled_total", "Jobs cancelled by their user.", FQ},
	{"fnrun_jobs_retried_total", "Job attempts retried, by the model that failed the attempt.",
	 FQ | LB_MODEL},
	{"fnrun_runners_started_total", "Model servers started.", LB_MODEL},
	{"fnrun_runner_restarts_total",
	 "Ready model servers that failed (exit, hang, failed probes) and were replaced.", LB_MODEL},
	{"fnrun_runner_start_failures_total", "Model servers that never became ready.", LB_MODEL},
	{"fnrun_runners_crashed_total", "Model servers that failed while holding a job.", LB_MODEL},
	{"fnrun_model_cooldowns_total", "Times a model was rested after repeated failures.",
	 LB_MODEL},
	{"fnrun_fallbacks_total", "Jobs moved from a model to its fallback.",
	 FQ | LB_MODEL | LB_FALLBACK},
	{"fnrun_oom_retries_total", "Out-of-memory jobs retried one quality down.", FQ | LB_MODEL},
	{"fnrun_evictions_total", "Idle model servers stopped to make room in GPU memory.",
	 LB_MODEL},
	{"fnrun_store_commits_total", "Group commits of the job store.", 0},
	{"fnrun_store_rows_written_total", "Job rows the commits wrote.", 0},
	{"fnrun_store_commit_failures_total",
	 "Commits that failed (disk full, I/O error); their changes were held and retried.", 0},
};

/* Indexed by enum metrics_hist. */
static const struct family hists[MH_COUNT] = {
	{"fnrun_job_queue_wait_seconds", "Time a job waited in a queue before a runner took it.",
	 FQ},
	{"fnrun_job_submit_to_dispatch_seconds",
	 "Time from a job's submit to its prompt being sent to a model server (first attempt).", FQ},
	{"fnrun_runner_cold_start_seconds", "Time from starting a model server to it being ready.",
	 LB_MODEL},
	{"fnrun_job_run_seconds", "Time a completed job ran on its model server.", FQ | LB_MODEL},
	{"fnrun_job_end_to_end_seconds", "Time from a job's submit to its final state.",
	 FQ | LB_STATUS},
	{"fnrun_store_commit_duration_seconds", "Time one group commit of the job store took.", 0},
};

/* Upper bounds in seconds; the last bucket is +Inf. */
static const double bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
				0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10,
				30,     60,      120,    300,   600,    1800};
static const char *const bound_label[] = {
	"le=\"0.0001\"", "le=\"0.00025\"", "le=\"0.0005\"", "le=\"0.001\"", "le=\"0.0025\"",
	"le=\"0.005\"",  "le=\"0.01\"",    "le=\"0.025\"",  "le=\"0.05\"",  "le=\"0.1\"",
	"le=\"0.25\"",   "le=\"0.5\"",     "le=\"1\"",      "le=\"2.5\"",   "le=\"5\"",
	"le=\"10\"",     "le=\"30\"",      "le=\"60\"",     "le=\"120\"",   "le=\"300\"",
	"le=\"600\"",    "le=\"1800\"",    "le=\"+Inf\""};
#define NBOUNDS (sizeof bounds / sizeof bounds[0])
#define NBUCKETS (NBOUNDS + 1)
#define NFAMS (MC_COUNT + MH_COUNT) /* counters, then histograms */
#define HASH_SIZE 4096

struct series {
	struct series *hnext;  /* in its hash chain */
	struct series *fnext;  /* in its family, creation order */
	uint64_t hash;
	int fam;               /* 0..MC_COUNT-1 counters, then histograms */
	char *vals[NLABELS];   /* owned; NULL: label absent */
	char *lstr;            /* owned: k="v",... escaped; "" when no label */
	uint64_t count;        /* the counter, or the histogram's count */
	double sum;            /* histograms: sum of observations, seconds */
	uint64_t bucket[];     /* histograms: NBUCKETS, non-cumulative */
};

struct op_event {
	int64_t time_ms;  /* ms since the epoch */
	const char *kind; /* static */
	char model[128];
	char other[128];
};

static struct {
	struct series *table[HASH_SIZE];
	struct series *head[NFAMS], *tail[NFAMS];
	size_t nseries;
	uint64_t dropped;
	struct op_event ring[METRICS_EVENTS];
	size_t nring, ring_next;
} mx;

static const struct family *fam_of(int fam)
{
	return fam < MC_COUNT ? &counters[fam] : &hists[fam - MC_COUNT];
}

/* The values the family carries, in label order; empty values become NULL. */
static void values_of(int fam, const struct metrics_labels *l, const char *v[NLABELS])
{
	const char *all[NLABELS] = {l ? l->function : NULL, l ? l->quality : NULL,
				    l ? l->model : NULL,    l ? l->code : NULL,
				    l ? l->status : NULL,   l ? l->fallback : NULL};
	int mask = fam_of(fam)->labels;

	for (int i = 0; i < NLABELS; i++)
		v[i] = (mask & (1 << i)) && all[i] && all[i][0] ? all[i] : NULL;
}

static uint64_t hash_of(int fam, const char *const v[NLABELS])
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)fam;

	for (int i = 0; i < NLABELS; i++) {
		const unsigned char *p = (const unsigned char *)(v[i] ? v[i] : "");
		h = (h ^ (uint64_t)(v[i] ? 0x5a : 0xa5)) * 1099511628211ULL;
		for (; *p; p++)
			h = (h ^ *p) * 1099511628211ULL;
	}
	return h;
}

static int same(const struct series *s, int fam, uint64_t h, const char *const v[NLABELS])
{
	if (s->fam != fam || s->hash != h)
		return 0;
	for (int i = 0; i < NLABELS; i++) {
		if ((s->vals[i] == NULL) != (v[i] == NULL))
			return 0;
		if (v[i] && strcmp(s->vals[i], v[i]) != 0)
			return 0;
	}
	return 1;
}

int metrics_escape(struct buf *b, const char *v)
{
	const char *p = v;

	while (*p) {
		size_t n = strcspn(p, "\\\"\n");
		if (n > 0 && buf_append(b, p, n) < 0)
			return -1;
		p += n;
		if (*p == '\0')
			break;
		if (buf_puts(b, *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : "\\n") < 0)
			return -1;
		p++;
	}
	return 0;
}

/* k="v",... for the labels present; caller frees. */
static char *label_text(const char *const v[NLABELS])
{
	struct buf b;
	int first = 1;

	buf_init(&b, 64 * 1024);
	buf_puts(&b, "");
	for (int i = 0; i < NLABELS; i++) {
		if (v[i] == NULL)
			continue;
		buf_printf(&b, "%s%s=\"", first ? "" : ",", label_names[i]);
		metrics_escape(&b, v[i]);
		buf_putc(&b, '"');
		first = 0;
	}
	return buf_steal(&b);
}

/* The series of fam with labels l, made when missing; NULL past the cap. */
static struct series *series_get(int fam, const struct metrics_labels *l)
{
	const char *v[NLABELS];
	uint64_t h;
	struct series *s;
	size_t slot;

	values_of(fam, l, v);
	h = hash_of(fam, v);
	slot = h & (HASH_SIZE - 1);
	for (s = mx.table[slot]; s; s = s->hnext)
		if (same(s, fam, h, v))
			return s;
	if (mx.nseries >= METRICS_MAX_SERIES) {
		mx.dropped++;
		return NULL;
	}
	s = xcalloc(1, sizeof *s + (fam >= MC_COUNT ? NBUCKETS * sizeof(uint64_t) : 0));
	s->fam = fam;
	s->hash = h;
	for (int i = 0; i < NLABELS; i++)
		s->vals[i] = v[i] ? xstrdup(v[i]) : NULL;
	s->lstr = label_text(v);
	s->hnext = mx.table[slot];
	mx.table[slot] = s;
	if (mx.tail[fam])
		mx.tail[fam]->fnext = s;
	else
		mx.head[fam] = s;
	mx.tail[fam] = s;
	mx.nseries++;
	return s;
}

static void series_free(struct series *s)
{
	for (int i = 0; i < NLABELS; i++)
		free(s->vals[i]);
	free(s->lstr);
	free(s);
}

/* The unlabelled families show from the first scrape. */
static void seed(void)
{
	for (int c = MC_STORE_COMMITS; c <= MC_STORE_FAILURES; c++)
		series_get(c, NULL);
	series_get(MC_COUNT + MH_STORE_COMMIT, NULL);
}

void metrics_reset(void)
{
	for (int f = 0; f < NFAMS; f++)
		for (struct series *s = mx.head[f], *next; s; s = next) {
			next = s->fnext;
			series_free(s);
		}
	memset(&mx, 0, sizeof mx);
	seed();
}

void metrics_inc(int counter, const struct metrics_labels *l, uint64_t by)
{
	struct series *s;

	if (counter < 0 || counter >= MC_COUNT)
		return;
	s = series_get(counter, l);
	if (s)
		s->count += by;
}

void metrics_observe(int hist, const struct metrics_labels *l, double seconds)
{
	struct series *s;
	size_t i = 0;

	if (hist < 0 || hist >= MH_COUNT)
		return;
	s = series_get(MC_COUNT + hist, l);
	if (s == NULL)
		return;
	if (!(seconds > 0)) /* negative (a clock step) and NaN count as 0 */
		seconds = 0;
	while (i < NBOUNDS && seconds > bounds[i])
		i++;
	s->bucket[i]++;
	s->count++;
	s->sum += seconds;
}

uint64_t metrics_value(int counter, const struct metrics_labels *l)
{
	const char *v[NLABELS];
	uint64_t h;

	if (counter < 0 || counter >= MC_COUNT)
		return 0;
	values_of(counter, l, v);
	h = hash_of(counter, v);
	for (struct series *s = mx.table[h & (HASH_SIZE - 1)]; s; s = s->hnext)
		if (same(s, counter, h, v))
			return s->count;
	return 0;
}

size_t metrics_series(void)
{
	return mx.nseries;
}

/* ---- rendering ---- */

/* Decimal digits of v into the end of out; returns where they start. */
static char *u64_text(uint64_t v, char *end)
{
	*--end = '\0';
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return end;
}

/* Appends n bytes of p at *at when they fit before end; a NULL *at means full. */
static void put(char **at, const char *end, const char *p, size_t n)
{
	if (*at == NULL || (size_t)(end - *at) < n) {
		*at = NULL;
		return;
	}
	memcpy(*at, p, n);
	*at += n;
}

/*
 * name{lstr[,extra]} value\n, built in one piece and appended once (a
 * scrape writes tens of thousands of these: no printf).
 */
static int line(struct buf *b, const char *name, const char *suffix, const char *lstr,
		const char *extra, const char *value)
{
	char text[2048], *at = text;
	const char *end = text + sizeof text;
	int has = lstr[0] || extra;

	put(&at, end, name, strlen(name));
	put(&at, end, suffix, strlen(suffix));
	if (has)
		put(&at, end, "{", 1);
	put(&at, end, lstr, strlen(lstr));
	if (lstr[0] && extra)
		put(&at, end, ",", 1);
	if (extra)
		put(&at, end, extra, strlen(extra));
	if (has)
		put(&at, end, "}", 1);
	put(&at, end, " ", 1);
	put(&at, end, value, strlen(value));
	put(&at, end, "\n", 1);
	if (at)
		return buf_append(b, text, (size_t)(at - text));
	/* A long label set: piece by piece. */
	return buf_printf(b, "%s%s%s%s%s%s%s %s\n", name, suffix, has ? "{" : "", lstr,
			  lstr[0] && extra ? "," : "", extra ? extra : "", has ? "}" : "", value);
}

static int render_counter(struct buf *b, const struct family *f, const struct series *s)
{
	char num[24];

	return line(b, f->name, "", s->lstr, NULL, u64_text(s->count, num + sizeof num));
}

static int render_hist(struct buf *b, const struct family *f, const struct series *s)
{
	char num[24], sum[40];
	uint64_t cum = 0;

	for (size_t i = 0; i < NBUCKETS; i++) {
		cum += s->bucket[i];
		if (line(b, f->name, "_bucket", s->lstr, bound_label[i], u64_text(cum, num + sizeof num)) < 0)
			return -1;
	}
	snprintf(sum, sizeof sum, "%.9g", s->sum);
	if (line(b, f->name, "_sum", s->lstr, NULL, sum) < 0)
		return -1;
	return line(b, f->name, "_count", s->lstr, NULL, u64_text(s->count, num + sizeof num));
}

int metrics_family(struct buf *b, const char *name, const char *type, const char *help)
{
	return buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static int render_family(struct buf *b, int fam)
{
	const struct family *f = fam_of(fam);
	int hist = fam >= MC_COUNT;
	size_t mark = b->len;

	if (mx.head[fam] == NULL)
		return 0;
	if (metrics_family(b, f->name, hist ? "histogram" : "counter", f->help) < 0)
		goto full;
	for (const struct series *s = mx.head[fam]; s; s = s->fnext)
		if ((hist ? render_hist(b, f, s) : render_counter(b, f, s)) < 0)
			goto full;
	return 0;
full:
	b->len = mark; /* whole families only */
	if (b->data)
		b->data[mark] = '\0';
	return -1;
}

int metrics_render(struct buf *b)
{
	char num[24];

	if (mx.head[MC_STORE_COMMITS] == NULL)
		seed();
	for (int f = 0; f < NFAMS; f++)
		if (render_family(b, f) < 0)
			return -1;
	if (metrics_family(b, "fnrun_metrics_series_dropped_total", "counter",
			   "Updates dropped: the series limit was reached.") < 0)
		return -1;
	return line(b, "fnrun_metrics_series_dropped_total", "", "", NULL,
		    u64_text(mx.dropped, num + sizeof num));
}

int metrics_sample(struct buf *b, const char *name, const char *const *kv, size_t nkv,
		   double value)
{
	int first = 1, rc = buf_puts(b, name);

	for (size_t i = 0; rc == 0 && i + 1 < nkv * 2; i += 2) {
		if (kv[i + 1] == NULL || kv[i + 1][0] == '\0')
			continue;
		rc = buf_printf(b, "%s%s=\"", first ? "{" : ",", kv[i]);
		if (rc == 0)
			rc = metrics_escape(b, kv[i + 1]);
		if (rc == 0)
			rc = buf_putc(b, '"');
		first = 0;
	}
	if (rc == 0 && !first)
		rc = buf_putc(b, '}');
	if (rc < 0)
		return -1;
	if (isinf(value))
		return buf_puts(b, value > 0 ? " +Inf\n" : " -Inf\n");
	if (value == floor(value) && fabs(value) < 9e15)
		return buf_printf(b, " %lld\n", (long long)value);
	return buf_printf(b, " %.9g\n", value);
}

/* ---- operator events ---- */

void metrics_event(const char *kind, const char *model, const char *other)
{
	struct op_event *e = &mx.ring[mx.ring_next];

	e->time_ms = util_now_ms();
	e->kind = kind;
	snprintf(e->model, sizeof e->model, "%s", model ? model : "");
	snprintf(e->other, sizeof e->other, "%s", other ? other : "");
	mx.ring_next = (mx.ring_next + 1) % METRICS_EVENTS;
	if (mx.nring < METRICS_EVENTS)
		mx.nring++;
}

struct json_object *metrics_events_json(size_t limit)
{
	struct json_object *a = json_object_new_array();

	for (size_t i = 0; i < mx.nring && i < limit; i++) {
		const struct op_event *e =
			&mx.ring[(mx.ring_next + METRICS_EVENTS - 1 - i) % METRICS_EVENTS];
		struct json_object *o = json_object_new_object();
		json_put(o, "time_ms", json_int(e->time_ms));
		json_put(o, "kind", json_str(e->kind));
		json_put(o, "model", json_str(e->model));
		if (e->other[0])
			json_put(o, "other", json_str(e->other));
		json_object_array_add(a, o);
	}
	return a;
}
