"""The verbs put together from the layers below: the settings of a run (settings.py), launching training
runs (launch.py) and a trained run ready to use (run.py: `Run`, `load`)."""
