"""syncd over HTTP: the API's routes, its auth, errors and bodies, webhooks, the console and
intake.
"""
