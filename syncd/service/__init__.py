"""The use cases that the HTTP API, the CLI and the console share.

Each takes its parts from `syncd.app` and knows nothing of HTTP or argv: routes and commands
parse their input, call here, and shape the answer.
"""
