"""Model evaluation: suites of prompts with expected answers, scorers, a runner.

`suites.py` reads a suite (one shipped in ``suites/``, or given in the request) and
checks it; `scorers.py` scores one answer (0..1); `runner.py` runs every case on every
model through the gateway's own call path and gives each model its weighted mean, which
`GatewayService.EvaluateModel` stores as the model's quality in the registry.
"""
