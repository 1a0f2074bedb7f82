"""
Load test of the Function Runner: the seed's two tasks, Create Image at
Balanced quality and Create Video at Fast Preview, each followed to its end.

Every user submits a job (POST /api/generate, reported as "submit ..."),
then follows it on its Server-Sent Events stream until the final state
(reported as "follow ..."), and reports the whole wait, submit to final
state, as a request of type JOB named "... end-to-end": a job that fails,
is cancelled or never ends counts as a failure there.

    locust -f locust/locustfile.py --host http://127.0.0.1:8180
    make load          # headless, against a demo of its own (scripts/load)
"""
import json
import time

from locust import HttpUser, between, task

# A job that has not ended after this long counts as a failure.
JOB_DEADLINE_S = 300
FINAL = ("completed", "failed", "cancelled")


class Creator(HttpUser):
    wait_time = between(1, 3)

    def _follow(self, job_id, label):
        """The final status from the job's event stream, or None."""
        status = None
        with self.client.get(f"/api/jobs/{job_id}/events", name=f"follow {label}",
                             stream=True, timeout=JOB_DEADLINE_S,
                             headers={"Accept": "text/event-stream"},
                             catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"events answered {r.status_code}")
                return None
            for line in r.iter_lines(decode_unicode=True):
                if not line or not line.startswith("data:"):
                    continue
                try:
                    view = json.loads(line[5:])
                except ValueError:
                    continue
                status = view.get("status", status)
                if status in FINAL:
                    break
            r.success()
        return status

    def _create(self, function, quality, params, label):
        start = time.monotonic()
        body = {"function": function, "quality": quality, "params": params}
        with self.client.post("/api/generate", json=body, name=f"submit {label}",
                              catch_response=True) as r:
            if r.status_code != 202:
                r.failure(f"submit answered {r.status_code}: {r.text[:200]}")
                return
            job_id = r.json()["job_id"]
        status = self._follow(job_id, label)
        error = None if status == "completed" else Exception(f"job ended {status}")
        self.environment.events.request.fire(
            request_type="JOB", name=f"{label} end-to-end",
            response_time=(time.monotonic() - start) * 1000.0,
            response_length=0, exception=error, context={})

    @task
    def create_image_standard(self):
        self._create("Create Image", "standard",
                     {"prompt": "a lighthouse at dusk, load test"}, "Create Image standard")

    @task
    def create_video_low(self):
        self._create("Create Video", "low",
                     {"prompt": "waves rolling onto a beach, load test", "seconds": 2},
                     "Create Video low")
