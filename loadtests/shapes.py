"""A step-load shape: add ``--step-users`` every ``--step-seconds`` up to ``-u``, stop at ``-t``.

    locust -f loadtests/locustfile.py,loadtests/shapes.py --headless -u 32 -r 32 -t 20s \\
        --step-users 8 --step-seconds 5 --model iris_xgb TritonHttpUser

Kept out of locustfile.py because Locust uses any shape class it finds in its locustfiles:
a plain run (-u users at once) must not pick it up. The step options are declared in
locustfile.py, which this file is always loaded with.
"""
from __future__ import annotations

from locust import LoadTestShape


class StepLoadShape(LoadTestShape):
    # Reads -u, -r and -t as the ceiling, the spawn rate and the run's length.
    use_common_options = True

    def tick(self):
        options = self.runner.environment.parsed_options
        elapsed = self.get_run_time()
        if options.run_time and elapsed >= options.run_time:
            return None
        step = int(elapsed // max(options.step_seconds, 0.1)) + 1
        users = min(options.num_users or options.step_users, step * options.step_users)
        return users, options.spawn_rate
