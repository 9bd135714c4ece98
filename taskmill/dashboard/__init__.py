"""Diagnostics: what a cluster is doing and why a computation is slow or failing.

* :mod:`~taskmill.dashboard.monitor`: the cheap recorder the scheduler shell
  feeds (a bounded task-stream ring buffer, running counters, memory samples).
  No third-party imports: it is always on.
* :mod:`~taskmill.dashboard.views`: pure functions that turn the scheduler's
  state and the recorder into plain dicts (JSON for the web pages, the
  performance report, ``get_task_stream``).  Unit tested without a network.
* :mod:`~taskmill.dashboard.metrics`: a Prometheus collector over the same.
* :mod:`~taskmill.dashboard.app`: the aiohttp web app on the scheduler's loop
  (imported only when a dashboard port is configured).
* :mod:`~taskmill.dashboard.report`: the self-contained performance report.
"""
