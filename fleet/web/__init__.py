"""The operator's web console (``fleet web``): pages over the business state, and ``/metrics``.

| module | what |
|---|---|
| :mod:`fleet.web.app` | routes, error pages, the ASGI app (Starlette + Jinja2, htmx for live refresh) |
| :mod:`fleet.web.data` | the one adapter to fleet's read side and its two operator actions |
| :mod:`fleet.web.graph` | the stage graph and the schedule chart, drawn as SVG from definitions |
| :mod:`fleet.web.metrics` | the Prometheus collector, computed from the shared state at scrape time |
| :mod:`fleet.web.security` | basic auth and anti-forgery tokens |
| :mod:`fleet.web.command` | the ``fleet web`` command (uvicorn) |
"""
